"""Mesh operations the synthetic head needs: welding, Loop subdivision that carries UVs along,
per-vertex UVs, rasterising UV triangles into texture space, and sampling UV maps.

All batched numpy; no per-vertex Python loops. Texture convention (as :mod:`mvrecon.render`):
UV v is up, texel (i, j) of an (H, W) map has its centre at u = (j + 0.5) / W, v = 1 - (i + 0.5) / H.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class UVMesh:
    """A triangle mesh with a separate UV topology (triangle ``i`` of both index the same corners).

    verts (N, 3) metres, faces (F, 3) int64, uvs (T, 2), uv_faces (F, 3) int64, parent (F,) int64:
    the triangle of the original (unsubdivided) mesh each triangle came from.
    """

    verts: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    uv_faces: np.ndarray
    parent: np.ndarray


def weld(verts: np.ndarray, faces: np.ndarray, tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge vertices closer than ``tol`` (metres; grid-snapped) so that separate sub-meshes that
    share a seam (ICT's face and head/neck) become one surface.

    Returns (verts (M, 3), faces (F, 3) into them, old_to_new (N,)). Welded vertices keep the order
    of their first occurrence, so vertices that are not duplicates keep their relative order and a
    leading block without duplicates keeps its indices.
    """
    v = np.asarray(verts, dtype=np.float64)
    key = np.round(v / tol).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(first, kind="stable")  # unique groups sorted by first occurrence
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    old_to_new = rank[inverse]
    return v[first[order]], old_to_new[np.asarray(faces)], old_to_new


def _edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges (E, 2) and, per face corner k, the id of edge (k, k+1): (F, 3)."""
    faces = np.asarray(faces, dtype=np.int64)
    a = faces.reshape(-1)
    b = np.roll(faces, -1, axis=1).reshape(-1)  # half-edge (k, k+1)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    n = int(hi.max()) + 1 if len(hi) else 1
    # one int64 key per undirected edge: a 1-D unique is much faster than unique(axis=0)
    keys, inv = np.unique(lo * n + hi, return_inverse=True)
    edges = np.stack([keys // n, keys % n], 1)
    return edges, inv.reshape(-1, 3)


def _subdivide_uvs(uvs: np.ndarray, uv_faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Midpoint subdivision of the UV topology: (uvs', uv_faces') in the same child order as
    :func:`loop_subdivide` (UVs are linear inside a triangle, so midpoints are exact)."""
    edges, eid = _edges(uv_faces)
    mid = 0.5 * (uvs[edges[:, 0]] + uvs[edges[:, 1]])
    n = len(uvs)
    return np.concatenate([uvs, mid], 0), _children(uv_faces, eid + n)


def _children(faces: np.ndarray, emid: np.ndarray) -> np.ndarray:
    """The 4 children (4F, 3) of each face, child j of face i at row 4i + j (0-2 corners, 3 centre)."""
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    ab, bc, ca = emid[:, 0], emid[:, 1], emid[:, 2]
    ch = np.stack(
        [
            np.stack([a, ab, ca], 1),
            np.stack([ab, b, bc], 1),
            np.stack([ca, bc, c], 1),
            np.stack([ab, bc, ca], 1),
        ],
        axis=1,
    )
    return ch.reshape(-1, 3)


def loop_subdivide(mesh: UVMesh, levels: int = 1) -> UVMesh:
    """Loop subdivision (Warren's weights; boundary edges and vertices follow the cubic B-spline
    boundary rule, so two meshes sharing a boundary polyline keep sharing it).

    The first N vertices of the result are the (moved) original vertices, so an index into the
    input still names the same surface point's limit-ward position. UVs are subdivided linearly.
    """
    out = mesh
    for _ in range(int(levels)):
        out = _loop_once(out)
    return out


def _loop_once(mesh: UVMesh) -> UVMesh:
    v = mesh.verts
    f = np.asarray(mesh.faces, dtype=np.int64)
    n = len(v)
    edges, eid = _edges(f)
    E = len(edges)
    count = np.bincount(eid.reshape(-1), minlength=E)
    # opposite corner of half-edge (k, k+1) is corner k+2; sum them per edge
    opp = np.roll(f, -2, axis=1)
    opp_sum = np.zeros((E, 3))
    for c in range(3):
        opp_sum[:, c] = np.bincount(eid.reshape(-1), weights=v[opp.reshape(-1), c], minlength=E)
    a, b = v[edges[:, 0]], v[edges[:, 1]]
    interior = count == 2
    epts = np.where(interior[:, None], 0.375 * (a + b) + 0.125 * opp_sum, 0.5 * (a + b))

    # even (old) vertices
    valence = np.bincount(edges.reshape(-1), minlength=n).astype(np.float64)
    nsum = np.zeros((n, 3))
    for c in range(3):
        nsum[:, c] = np.bincount(edges[:, 0], weights=v[edges[:, 1], c], minlength=n) + np.bincount(
            edges[:, 1], weights=v[edges[:, 0], c], minlength=n
        )
    beta = np.where(valence > 3, 3.0 / (8.0 * np.maximum(valence, 1)), 3.0 / 16.0)
    even = (1 - valence * beta)[:, None] * v + beta[:, None] * nsum
    even[valence == 0] = v[valence == 0]
    bedges = edges[~interior]
    bval = np.bincount(bedges.reshape(-1), minlength=n)
    bsum = np.zeros((n, 3))
    for c in range(3):
        bsum[:, c] = np.bincount(bedges[:, 0], weights=v[bedges[:, 1], c], minlength=n) + np.bincount(
            bedges[:, 1], weights=v[bedges[:, 0], c], minlength=n
        )
    on_boundary = bval > 0
    regular_b = bval == 2
    even[on_boundary] = v[on_boundary]  # corners (non-manifold boundary) stay put
    even[regular_b] = 0.75 * v[regular_b] + 0.125 * bsum[regular_b]

    new_v = np.concatenate([even, epts], 0)
    new_f = _children(f, eid + n)
    uvs, uvf = _subdivide_uvs(mesh.uvs, np.asarray(mesh.uv_faces, dtype=np.int64))
    return UVMesh(new_v, new_f, uvs, uvf, np.repeat(mesh.parent, 4))


def vertex_uvs(n_verts: int, faces: np.ndarray, uvs: np.ndarray, uv_faces: np.ndarray) -> np.ndarray:
    """One UV per vertex (n_verts, 2): the UV of the vertex's first corner in face order (a seam
    vertex has several; maps are built to agree across seams where they matter). Vertices no
    face uses get NaN."""
    out = np.full((n_verts, 2), np.nan)
    fv = np.asarray(faces).reshape(-1)
    fu = np.asarray(uv_faces).reshape(-1)
    # reversed assignment: the first occurrence is written last and wins
    out[fv[::-1]] = np.asarray(uvs)[fu[::-1]]
    return out


def rasterize_uv(
    uvs: np.ndarray, uv_faces: np.ndarray, height: int, width: int, u_range: tuple[float, float] = (0.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Which UV triangle covers each texel centre of an (H, W) map spanning ``u_range`` x [0, 1].

    Returns tri (H, W) int64 (-1 where none; index into ``uv_faces``) and barycentrics (H, W, 3).
    Exact (Open3D ray casting against the flat UV mesh).
    """
    from ..render.raycast import MeshScene

    u0, u1 = u_range
    pts = np.concatenate([np.asarray(uvs, np.float64), np.zeros((len(uvs), 1))], 1)
    scene = MeshScene(pts, np.asarray(uv_faces))
    rays = np.zeros((height, width, 6), np.float32)
    rays[..., 0] = (u0 + (u1 - u0) * (np.arange(width) + 0.5) / width)[None, :]
    rays[..., 1] = (1.0 - (np.arange(height) + 0.5) / height)[:, None]
    rays = rays.reshape(-1, 6)
    rays[:, 2] = 1.0
    rays[:, 5] = -1.0
    hit = scene.cast(rays)
    prim = hit.triangles
    buv = hit.uv
    bary = np.stack([1 - buv[:, 0] - buv[:, 1], buv[:, 0], buv[:, 1]], 1)
    bary[prim < 0] = 0
    return prim.reshape(height, width), bary.reshape(height, width, 3)


def interpolate_texels(tri: np.ndarray, bary: np.ndarray, faces: np.ndarray, attrs: np.ndarray) -> np.ndarray:
    """Per-vertex ``attrs`` (N, C) blended at texels (H, W) from :func:`rasterize_uv`: (H, W, C)
    float32, 0 where no triangle covers the texel. ``faces`` (F, 3) are the mesh's vertex triangles."""
    attrs = np.asarray(attrs, dtype=np.float32)
    if attrs.ndim == 1:
        attrs = attrs[:, None]
    flat = tri.reshape(-1)
    hit = np.flatnonzero(flat >= 0)
    corners = np.asarray(faces)[flat[hit]]  # (P, 3)
    b = bary.reshape(-1, 3)[hit].astype(np.float32)
    vals = attrs[corners[:, 0]] * b[:, 0:1]
    vals += attrs[corners[:, 1]] * b[:, 1:2]
    vals += attrs[corners[:, 2]] * b[:, 2:3]
    out = np.zeros((flat.size, attrs.shape[1]), np.float32)
    out[hit] = vals
    return out.reshape(tri.shape + (attrs.shape[1],))


def sample_map(img: np.ndarray, uv: np.ndarray, u_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Bilinear samples (P, C) of a map (H, W[, C]) at uv (P, 2) (border texels repeat), with the
    texel convention of the module docstring."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 2:
        img = img[..., None]
    H, W = img.shape[:2]
    u0, u1 = u_range
    x = (np.asarray(uv[:, 0], np.float64) - u0) / (u1 - u0) * W - 0.5
    y = (1.0 - np.asarray(uv[:, 1], np.float64)) * H - 0.5
    x = np.clip(x, 0, W - 1)
    y = np.clip(y, 0, H - 1)
    x0 = np.clip(np.floor(x).astype(np.int64), 0, W - 2 if W > 1 else 0)
    y0 = np.clip(np.floor(y).astype(np.int64), 0, H - 2 if H > 1 else 0)
    x1 = np.minimum(x0 + 1, W - 1)
    y1 = np.minimum(y0 + 1, H - 1)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bot * fy


def boundary_vertices(faces: np.ndarray, n_verts: int) -> np.ndarray:
    """(N,) bool: the vertex lies on an edge used by exactly one face."""
    edges, eid = _edges(np.asarray(faces, dtype=np.int64))
    count = np.bincount(eid.reshape(-1), minlength=len(edges))
    out = np.zeros(n_verts, bool)
    out[edges[count == 1].reshape(-1)] = True
    return out


def compact(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop vertices no face uses: (verts', faces', old_to_new (N,) with -1 for dropped)."""
    used = np.zeros(len(verts), bool)
    used[np.asarray(faces).reshape(-1)] = True
    old_to_new = np.full(len(verts), -1, np.int64)
    old_to_new[used] = np.arange(int(used.sum()))
    return np.asarray(verts)[used], old_to_new[np.asarray(faces)], old_to_new
