"""The four REALY regions (nose, mouth, forehead, cheek), cut from a scan by its 68 landmarks.

REALY ships its regions pre-cut (``REALY_scan_region/<id>/{nose,mouth,forehead,cheek}.obj``); its
code never cuts them, so the rule below is mvrecon's own, written to match the regions' extent in
the REALY paper and the keypoints REALY attaches to each region (``utils/util.py``
``keypoints_region_map``): the nose around landmarks 27-35, the mouth around the outer lips 48-59,
the forehead with the brows and eyes 17-26 and 36-47, and the cheek as the lower face around nose
and mouth (its keypoints include the eyes' lower lids and the chin, 7-9).

Everything is measured in a face frame built from the landmarks (so the cut is independent of the
scan's pose and units): origin between the eye centres, ``x`` from the subject's right eye to the
left, ``y`` up (away from the mouth), ``z = x × y`` out of the face; lengths in units of ``d``, the
distance between the eye centres (about 62 mm). In the frame's (x, y) plane:

- nose: inside the convex hull of landmarks 27-35, grown by ``0.15 d``;
- mouth: inside the convex hull of the outer lips 48-59, grown by ``0.15 d``;
- forehead: the upper face, between the brows' outer ends (x of 17 and 26, widened by
  ``0.1 d``), from ``0.1 d`` under the lowest lower-lid landmark (40, 41, 46, 47) up to ``0.7 d``
  above the brows' highest landmark. It holds the eyes and brows because REALY's non-rigid step
  anchors the forehead by exactly those landmarks (snapped to the nearest region vertex): a band
  above the brows alone would drag the region down onto the eyes;
- cheek: inside the jaw outline (landmarks 0-16, shrunk by 8 % towards the face centre), below
  ``0.15 d`` under the lowest lower-lid landmark (40, 41, 46, 47), outside the nose and mouth
  hulls grown by ``0.3 d``.

Vertices within ``0.1 d`` of the scan's open border (its outline and holes) are left out: REALY's
regions are interiors, and at a border the non-rigid step's correspondences have nothing beyond to
hold on to. Only vertices in front (``z > -1.0 d``) count, so the side and back of a full-head
scan never project into a region. A vertex belongs to one region at most (nose, mouth, forehead, cheek, in
that order of precedence). A region keeps the scan's triangles whose three vertices it holds,
without specks (connected pieces under 2 % of the largest piece's triangles).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGION_NAMES: tuple[str, ...] = ("nose", "mouth", "forehead", "cheek")

#: Landmarks (iBUG-68, 0-based) that steer each region's rigid ICP: REALY's ``keypoints_region_map``
#: for "forehead", "mouth", "nose_part" and "cheek", without its landmarks 68-84 (REALY uses 85
#: barycentric keypoints; mvrecon has the standard 68).
RIGID_KEYPOINTS: dict[str, tuple[int, ...]] = {
    "nose": (27, 28, 29, 30, 31, 35, 32, 33, 34),
    "mouth": (48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 64),
    "forehead": (36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26),
    "cheek": (48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 64, 36, 41, 40, 39, 42, 47, 46, 45, 7, 8, 9),
}
#: Landmarks that anchor the non-rigid ICP (REALY: forehead, mouth and nose lists; none for the cheek).
NICP_KEYPOINTS: dict[str, tuple[int, ...]] = {
    "nose": (27, 28, 29, 30, 31, 32, 33, 34, 35),
    "mouth": (48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 64),
    "forehead": RIGID_KEYPOINTS["forehead"],
    "cheek": (),
}


@dataclass(frozen=True)
class FaceFrame:
    """Orthonormal face frame: ``origin`` ``(3,)`` metres, ``axes`` ``(3, 3)`` rows x, y, z, and
    ``unit`` ``d`` (metres) the distance between the eye centres."""

    origin: np.ndarray
    axes: np.ndarray
    unit: float

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """``(N, 3)`` points in frame coordinates, in units of ``d``."""
        return (np.asarray(points) - self.origin) @ self.axes.T / self.unit


def face_frame(landmarks: np.ndarray) -> FaceFrame:
    """The :class:`FaceFrame` of iBUG-68 landmarks ``(68, 3)``."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_r = lm[36:42].mean(0)
    eye_l = lm[42:48].mean(0)
    mouth = lm[48:60].mean(0)
    origin = (eye_r + eye_l) / 2
    x = eye_l - eye_r
    d = float(np.linalg.norm(x))
    x = x / d
    up = origin - mouth
    y = up - (up @ x) * x
    y = y / np.linalg.norm(y)
    z = np.cross(x, y)
    return FaceFrame(origin, np.stack([x, y, z]), d)


def _hull(points2d: np.ndarray) -> np.ndarray:
    from scipy.spatial import ConvexHull

    return points2d[ConvexHull(points2d).vertices]


def _in_grown_polygon(pts: np.ndarray, poly: np.ndarray, margin: float) -> np.ndarray:
    """``(N,)`` True for 2D points inside ``poly`` ``(M, 2)`` or within ``margin`` of its outline."""

    lo = poly.min(0) - margin
    hi = poly.max(0) + margin
    near = np.flatnonzero(((pts >= lo) & (pts <= hi)).all(1))
    out = np.zeros(len(pts), bool)
    out[near] = _in_grown_polygon_near(pts[near], poly, margin)
    return out


def _in_grown_polygon_near(pts: np.ndarray, poly: np.ndarray, margin: float) -> np.ndarray:
    from matplotlib.path import Path as MplPath

    inside = MplPath(poly).contains_points(pts)
    if margin <= 0 or len(pts) == 0:
        return inside
    a = poly
    b = np.roll(poly, -1, 0)
    ab = b - a  # (M, 2)
    ap = pts[:, None, :] - a[None]  # (N, M, 2)
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-300), 0.0, 1.0)
    dist = np.linalg.norm(ap - t[..., None] * ab, axis=-1).min(1)
    return inside | (dist <= margin)


def region_labels(vertices: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Region index per vertex ``(N,)`` int8: 0..3 for :data:`REGION_NAMES`, -1 for none.

    ``vertices`` ``(N, 3)`` and ``landmarks`` ``(68, 3)`` in the same frame and units.
    """
    frame = face_frame(landmarks)
    p = frame.to_frame(vertices)
    lm = frame.to_frame(landmarks)
    xy = p[:, :2]
    front = p[:, 2] > -1.0
    labels = np.full(len(p), -1, np.int8)

    nose_hull = _hull(lm[27:36, :2])
    mouth_hull = _hull(lm[48:60, :2])
    nose = front & _in_grown_polygon(xy, nose_hull, 0.15)
    mouth = front & ~nose & _in_grown_polygon(xy, mouth_hull, 0.15)

    brow_top = lm[17:27, 1].max()
    lid_low = lm[[40, 41, 46, 47], 1].min()
    x_lo, x_hi = sorted((lm[17, 0], lm[26, 0]))
    forehead = front & (xy[:, 0] >= x_lo - 0.1) & (xy[:, 0] <= x_hi + 0.1)
    forehead &= (xy[:, 1] >= lid_low - 0.1) & (xy[:, 1] <= brow_top + 0.7)

    jaw = lm[0:17, :2]
    centre = jaw.mean(0)
    jaw_shrunk = centre + 0.92 * (jaw - centre)
    cheek = front & _in_grown_polygon(xy, jaw_shrunk, 0.0) & (xy[:, 1] <= lid_low - 0.15)
    cheek &= ~_in_grown_polygon(xy, nose_hull, 0.3) & ~_in_grown_polygon(xy, mouth_hull, 0.3)

    for code, mask in ((3, cheek), (2, forehead), (1, mouth), (0, nose)):
        labels[mask] = code
    return labels


@dataclass(frozen=True)
class Region:
    """One region cut from a mesh: ``vertex_ids`` ``(n,)`` into the source mesh, ``vertices``
    ``(n, 3)`` metres, ``triangles`` ``(m, 3)`` indices into ``vertices``."""

    name: str
    vertex_ids: np.ndarray
    vertices: np.ndarray
    triangles: np.ndarray


#: Region vertices closer than this (in eye distances ``d``) to the scan's open border are left out.
BORDER_MARGIN = 0.1


def _near_border(v: np.ndarray, f: np.ndarray, margin: float) -> np.ndarray:
    """``(N,)`` True for vertices within ``margin`` of a vertex on the mesh's open border."""
    from scipy.spatial import cKDTree

    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 0), 1)
    key, counts = np.unique(e[:, 0] * len(v) + e[:, 1], return_counts=True)
    border = np.unique(np.stack([key[counts == 1] // len(v), key[counts == 1] % len(v)], 1))
    out = np.zeros(len(v), bool)
    if len(border) == 0:
        return out
    d, _ = cKDTree(v[border]).query(v, distance_upper_bound=margin)
    return np.isfinite(d)


def _drop_specks(tris: np.ndarray, n_vertices: int) -> np.ndarray:
    """Triangles ``(m, 3)`` without the connected pieces smaller than 2 % of the largest (specks
    the cut leaves along an outline; they would float free in the non-rigid ICP)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    if len(tris) == 0:
        return tris
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]]], 0)
    g = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_vertices, n_vertices))
    _, comp = connected_components(g, directed=False)
    tri_comp = comp[tris[:, 0]]
    sizes = np.bincount(tri_comp)
    return tris[sizes[tri_comp] >= 0.02 * sizes.max()]


def cut_regions(vertices: np.ndarray, triangles: np.ndarray, landmarks: np.ndarray) -> dict[str, Region]:
    """The four :data:`REGION_NAMES` regions of a scan ``(N, 3)``/``(F, 3)`` by its landmarks ``(68, 3)``.

    A region keeps the triangles whose three vertices carry its label, and the vertices those
    triangles use; a region can be empty (a scan without a forehead).
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(triangles, dtype=np.int64)
    labels = region_labels(v, landmarks)
    labels[_near_border(v, f, BORDER_MARGIN * face_frame(landmarks).unit)] = -1
    out = {}
    for code, name in enumerate(REGION_NAMES):
        keep = (labels[f] == code).all(1)
        rf = _drop_specks(f[keep], len(v))
        ids = np.unique(rf)
        remap = np.full(len(v), -1, np.int64)
        remap[ids] = np.arange(len(ids))
        out[name] = Region(name, ids, v[ids].copy(), remap[rf])
    return out
