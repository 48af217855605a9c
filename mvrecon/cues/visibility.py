"""Per-landmark confidence from the face mesh's own geometry.

The legacy MediaPipe face mesh gives no per-point visibility, but it does give a relative depth
for every point, so each point's surface normal and self-occlusion can be computed in the image
frame (x right, y down, z away from the camera, all in pixels). A point's confidence is the
cosine between its normal and the direction to the camera (1 facing the camera, 0.5 at 60
degrees, 0 at grazing or facing away), and 0 when another part of the face (the nose, the cheek
of a turned head) lies in front of it.
"""

from __future__ import annotations

import collections
import functools

import numpy as np

N_MESH = 468  # points with a tessellation; 468-477 are the irises
RIGHT_IRIS = tuple(range(468, 473))
LEFT_IRIS = tuple(range(473, 478))
# Eye-opening contours whose confidence the irises inherit (they have no surface of their own).
RIGHT_EYE_RING = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE_RING = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)


@functools.lru_cache(maxsize=1)
def _edge_key(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def mesh_triangles() -> tuple[np.ndarray, np.ndarray]:
    """Consistently oriented triangles ``(F, 3)`` of the 468-point face mesh, and ``(468, F)``
    True where a point is a corner of a triangle.

    MediaPipe ships the tessellation as an unordered edge set; triangles are its 3-cycles, and
    a breadth-first walk over edges shared by exactly two triangles gives them one orientation
    (whether it points out of the face is decided per image, see
    :func:`landmark_confidence`). Built once per process from the 1.3k edges.
    """
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    edges = {tuple(sorted(e)) for e in FACEMESH_TESSELATION}
    nb: dict[int, set[int]] = collections.defaultdict(set)
    for a, b in edges:
        nb[a].add(b)
        nb[b].add(a)
    tris = sorted((a, b, c) for a, b in edges for c in nb[a] & nb[b] if c > b)
    by_edge: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
    for i, t in enumerate(tris):
        for k in range(3):
            by_edge[_edge_key(t[k], t[(k + 1) % 3])].append(i)

    oriented = [list(t) for t in tris]
    comp = np.full(len(tris), -1, np.int64)
    n_comp = 0
    for seed in range(len(tris)):
        if comp[seed] >= 0:
            continue
        comp[seed] = n_comp
        queue = collections.deque([seed])
        while queue:
            i = queue.popleft()
            ot = oriented[i]
            for k in range(3):
                a, b = ot[k], ot[(k + 1) % 3]
                shared = by_edge[_edge_key(a, b)]
                if len(shared) != 2:  # boundary or a spurious 3-cycle: do not propagate across it
                    continue
                j = shared[0] if shared[1] == i else shared[1]
                if comp[j] >= 0:
                    continue
                u = oriented[j]
                # a consistent neighbour walks the shared edge the other way (b -> a)
                if any(u[m] == a and u[(m + 1) % 3] == b for m in range(3)):
                    oriented[j] = [u[0], u[2], u[1]]
                comp[j] = n_comp
                queue.append(j)
        n_comp += 1
    # Besides the face surface, the edge set has two 4-cliques at the alae whose spare 3-cycles
    # form tiny separate components; only the large component is the surface.
    keep = comp == np.bincount(comp).argmax()
    tri = np.asarray(oriented, np.int64)[keep]
    touches = np.zeros((N_MESH, len(tri)), bool)
    for k in range(3):
        touches[tri[:, k], np.arange(len(tri))] = True
    tri.setflags(write=False)
    touches.setflags(write=False)
    return tri, touches


@functools.lru_cache(maxsize=1)
def _orphans() -> tuple[tuple[int, tuple[int, ...]], ...]:
    """Points left without a triangle (102 and 331, corners only of the dropped 3-cycles) and
    their edge neighbours, whose normals they borrow."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    tri, _ = mesh_triangles()
    used = set(tri.ravel().tolist())
    out = []
    for o in sorted(set(range(N_MESH)) - used):
        nbrs = sorted({b if a == o else a for a, b in FACEMESH_TESSELATION if o in (a, b)} & used)
        out.append((o, tuple(nbrs)))
    return tuple(out)


def landmark_confidence(points: np.ndarray, occlusion_tol: float = 0.05) -> np.ndarray:
    """Confidence ``(478,)`` in [0, 1] for MediaPipe points ``(478, 3)`` in image pixels
    (x right, y down, z = relative depth in pixels, smaller is nearer the camera).

    ``occlusion_tol``: depth margin, as a fraction of the face's 2D size, before a surface in
    front counts as hiding a point (the mesh's own depth is only relative and a little noisy).
    """
    p = np.asarray(points, dtype=np.float64)
    tris, touches = mesh_triangles()
    v = p[:N_MESH]
    a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
    fn = np.cross(b - a, c - a)  # area-weighted face normals
    # The face as a whole faces the camera (negative z) in any image the detector accepted, so the
    # orientation whose area-weighted normal points away is the inward one.
    if fn[:, 2].sum() > 0:
        fn = -fn
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, tris[:, k], fn)
    for o, nbrs in _orphans():
        vn[o] = vn[list(nbrs)].sum(0)
    vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
    facing = np.clip(-vn[:, 2], 0.0, 1.0)

    occluded = _occluded(v, tris, touches, occlusion_tol)
    conf = np.zeros(len(p))
    conf[:N_MESH] = np.where(occluded, 0.0, facing)
    conf[list(RIGHT_IRIS)] = conf[list(RIGHT_EYE_RING)].mean()
    conf[list(LEFT_IRIS)] = conf[list(LEFT_EYE_RING)].mean()
    return conf


def _occluded(v: np.ndarray, tris: np.ndarray, touches: np.ndarray, tol: float) -> np.ndarray:
    """``(V,)`` True where a triangle not touching the point covers it in 2D and is nearer.

    Only (point, triangle) pairs whose 2D bounding boxes overlap get the barycentric test: a few
    thousand of the ~400k pairs.
    """
    xy, z = v[:, :2], v[:, 2]
    size = float(np.ptp(xy, axis=0).max())
    txy = xy[tris]  # (F, 3, 2)
    lo, hi = txy.min(1), txy.max(1)
    cand = (
        (xy[:, None, 0] >= lo[None, :, 0])
        & (xy[:, None, 0] <= hi[None, :, 0])
        & (xy[:, None, 1] >= lo[None, :, 1])
        & (xy[:, None, 1] <= hi[None, :, 1])
        & ~touches
    )
    pi, fi = np.nonzero(cand)
    a, b, c = txy[fi, 0], txy[fi, 1], txy[fi, 2]
    e1, e2, d = b - a, c - a, xy[pi] - a
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ok = np.abs(det) > 1e-9
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    l1 = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) * inv
    l2 = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) * inv
    l0 = 1.0 - l1 - l2
    inside = ok & (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
    zf = z[tris[fi]]
    zt = l0 * zf[:, 0] + l1 * zf[:, 1] + l2 * zf[:, 2]
    hidden = inside & (zt < z[pi] - tol * size)
    out = np.zeros(len(v), bool)
    out[pi[hidden]] = True
    return out
