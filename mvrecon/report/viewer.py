"""Mesh data for the report's WebGL viewer: split at UV seams, decimated to a budget, packed.

The browser gets one vertex per (position, uv) pair, smooth normals that ignore UV seams, and
little-endian base64 Float32/Uint32 arrays it can hand to WebGL without parsing.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, MvreconError
from .content import ViewerMesh

#: Triangles above this are decimated for the viewer (keeps report.html at a few MB).
DEFAULT_MAX_TRIANGLES = 120_000


@dataclass(frozen=True)
class ViewerData:
    """Arrays ready for WebGL (all float32/uint32, one entry per GPU vertex)."""

    positions: np.ndarray
    """(V, 3) float32 metres, model space."""
    normals: np.ndarray
    """(V, 3) float32 unit normals."""
    uvs: np.ndarray | None
    """(V, 2) float32 texture coordinates, v up; None when untextured."""
    indices: np.ndarray
    """(F, 3) uint32 triangles into the vertex arrays."""
    texture: Path | None
    """Texture image the UVs refer to."""
    source_triangles: int
    """Triangle count before decimation."""

    def packed(self) -> dict:
        """JSON-ready dict with the arrays as base64 little-endian buffers."""

        def b64(a: np.ndarray, dtype: str) -> str:
            return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")

        return {
            "positions": b64(self.positions, "<f4"),
            "normals": b64(self.normals, "<f4"),
            "uvs": None if self.uvs is None else b64(self.uvs, "<f4"),
            "indices": b64(self.indices, "<u4"),
            "vertexCount": int(len(self.positions)),
            "triangleCount": int(len(self.indices)),
            "sourceTriangles": int(self.source_triangles),
        }


def _check(mesh: ViewerMesh) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.triangles)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise MvreconError(f"viewer mesh: vertices must be (N, 3) with N > 0, got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or not np.issubdtype(f.dtype, np.integer):
        raise MvreconError(f"viewer mesh: triangles must be (F, 3) integers with F > 0, got {f.shape} {f.dtype}")
    if f.min() < 0 or f.max() >= len(v):
        raise MvreconError(f"viewer mesh: triangle index {int(f.max())} out of range for {len(v)} vertices")
    if not np.isfinite(v).all():
        raise MvreconError("viewer mesh: vertices hold NaN or infinite values")
    uv, uvf = None, None
    if mesh.uvs is not None:
        uv = np.asarray(mesh.uvs, dtype=np.float64)
        if uv.ndim != 2 or uv.shape[1] != 2:
            raise MvreconError(f"viewer mesh: uvs must be (T, 2), got {uv.shape}")
        if mesh.uv_triangles is None:
            if len(uv) != len(v):
                raise MvreconError(f"viewer mesh: per-vertex uvs need {len(v)} rows, got {len(uv)}")
            uvf = f
        else:
            uvf = np.asarray(mesh.uv_triangles)
            if uvf.shape != f.shape:
                raise MvreconError(f"viewer mesh: uv_triangles {uvf.shape} do not match triangles {f.shape}")
            if uvf.min() < 0 or uvf.max() >= len(uv):
                raise MvreconError(f"viewer mesh: uv index {int(uvf.max())} out of range for {len(uv)} uvs")
    if mesh.keep is not None and np.shape(mesh.keep) != (len(f),):
        raise MvreconError(f"viewer mesh: keep must be ({len(f)},) bool, got {np.shape(mesh.keep)}")
    return v, f.astype(np.int64), uv, None if uvf is None else uvf.astype(np.int64)


def split_seams(
    vertices: np.ndarray, triangles: np.ndarray, uvs: np.ndarray | None, uv_triangles: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """One vertex per distinct (vertex, uv) corner pair.

    Returns ``positions`` (V, 3), ``uvs`` (V, 2) or None, ``indices`` (F, 3) and ``source`` (V,),
    the original vertex of each new vertex (so normals can be shared across seams).
    """
    if uvs is None:
        used = np.unique(triangles)
        remap = np.full(len(vertices), -1, np.int64)
        remap[used] = np.arange(len(used))
        return vertices[used], None, remap[triangles], used
    pairs = np.stack([triangles.ravel(), uv_triangles.ravel()], 1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return vertices[uniq[:, 0]], uvs[uniq[:, 1]], inverse.reshape(-1, 3), uniq[:, 0]


def vertex_normals(positions: np.ndarray, indices: np.ndarray, weld: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted normals, averaged over vertices sharing a ``weld`` id (seam copies)."""
    tri = positions[indices]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 x area: area weighting
    acc = np.zeros((int(weld.max()) + 1, 3))
    for k in range(3):
        np.add.at(acc, weld[indices[:, k]], fn)
    n = acc[weld]
    length = np.linalg.norm(n, axis=1, keepdims=True)
    # Isolated or fully degenerate vertices get +Z (towards the viewer) instead of NaN.
    return np.where(length > 0, n / np.maximum(length, 1e-30), np.array([0.0, 0.0, 1.0]))


def _weld_ids(positions: np.ndarray) -> np.ndarray:
    """Ids equal for vertices at the same position (to 1 micrometre)."""
    key = np.round(positions * 1e6).astype(np.int64)
    return np.unique(key, axis=0, return_inverse=True)[1].reshape(-1)


def _open_border(indices: np.ndarray, n_vertices: int) -> np.ndarray:
    """(V,) bool: vertices on an edge used by one triangle only (UV seams, region borders, holes)."""
    e = np.sort(np.concatenate([indices[:, [0, 1]], indices[:, [1, 2]], indices[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    out = np.zeros(n_vertices, bool)
    out[uniq[counts == 1].ravel()] = True
    return out


def _cluster_once(pos, uv, idx, group, pinned, cell):
    """Vertex clustering at ``cell`` metres: free vertices in one grid cell (and one group) merge."""
    key = np.c_[np.floor((pos - pos.min(0)) / cell).astype(np.int64), group]
    free = ~pinned
    cl = np.empty(len(pos), np.int64)
    _, cl_free = np.unique(key[free], axis=0, return_inverse=True)
    n_free = int(cl_free.max()) + 1 if free.any() else 0
    cl[free] = cl_free.reshape(-1)
    cl[pinned] = n_free + np.arange(int(pinned.sum()))
    n = n_free + int(pinned.sum())
    count = np.bincount(cl, minlength=n)[:, None]
    new_pos = np.stack([np.bincount(cl, pos[:, k], n) for k in range(3)], 1) / count
    new_uv = None if uv is None else np.stack([np.bincount(cl, uv[:, k], n) for k in range(2)], 1) / count
    t = cl[idx]
    t = t[(t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 2] != t[:, 0])]
    # Triangles landing on the same three clusters come from folds: count them modulo 2 (a pair
    # cancels, an odd group leaves one), which keeps the result closed wherever the input was.
    _, first, counts = np.unique(np.sort(t, axis=1), axis=0, return_index=True, return_counts=True)
    return new_pos, new_uv, t[np.sort(first[counts % 2 == 1])]


def _cluster_decimate(pos: np.ndarray, uv: np.ndarray | None, idx: np.ndarray, target: int):
    """Decimate to at most ``target`` triangles by vertex clustering, searching the cell size.

    Vertices on open borders (UV seams after the split, the border of a kept region) are pinned,
    so the decimated part still meets its neighbours edge for edge: no cracks. Vertices merge only
    within one connected piece (a UV island) and one normal direction, so the two sides of a thin
    part (an ear) or two UV islands never mix.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    # Work on the vertices these triangles use only (the rest would drag the cluster means).
    used = np.unique(idx)
    remap = np.full(len(pos), -1, np.int64)
    remap[used] = np.arange(len(used))
    pos, idx = pos[used], remap[idx]
    uv = None if uv is None else uv[used]
    n = len(pos)
    pinned = _open_border(idx, n)
    e = np.concatenate([idx[:, [0, 1]], idx[:, [1, 2]]])
    _, island = connected_components(coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)), directed=False)
    fn = np.cross(pos[idx[:, 1]] - pos[idx[:, 0]], pos[idx[:, 2]] - pos[idx[:, 0]])
    vn = np.zeros((n, 3))
    for k in range(3):
        np.add.at(vn, idx[:, k], fn)
    axis = np.abs(vn).argmax(1)
    direction = 2 * axis + (vn[np.arange(n), axis] > 0)
    group = island * 6 + direction
    lo = float(np.linalg.norm(pos[idx[:, 1]] - pos[idx[:, 0]], axis=1).mean())
    hi = float(np.linalg.norm(pos.max(0) - pos.min(0))) + lo
    best = _cluster_once(pos, uv, idx, group, pinned, hi)
    for _ in range(14):  # bisection on the cell size: the largest count that fits the budget
        mid = 0.5 * (lo + hi)
        trial = _cluster_once(pos, uv, idx, group, pinned, mid)
        if len(trial[2]) <= target:
            best, hi = trial, mid
        else:
            lo = mid
    return best


def prepare(mesh: ViewerMesh, max_triangles: int = DEFAULT_MAX_TRIANGLES) -> ViewerData:
    """Viewer arrays for ``mesh``: seams split, decimated to ``max_triangles``, normals computed.

    Triangles marked in ``mesh.keep`` stay at full resolution; the rest is decimated to fill the
    remaining budget (all of them when the kept part alone exceeds it).
    """
    v, f, uv, uvf = _check(mesh)
    if mesh.texture is not None and not Path(mesh.texture).is_file():
        raise InputError("viewer texture not found", mesh.texture)
    pos, puv, idx, source = split_seams(v, f, uv, uvf)
    weld = source
    if len(idx) > max_triangles:
        keep = np.zeros(len(idx), bool) if mesh.keep is None else np.asarray(mesh.keep, bool)
        rest_target = max(max_triangles - int(keep.sum()), max_triangles // 10)
        parts = []
        if keep.any():
            parts.append((pos, puv, idx[keep]))
        parts.append(_cluster_decimate(pos, puv, idx[~keep], rest_target))
        # Concatenate, then weld exact copies again (the kept and decimated parts share a border).
        offsets = np.cumsum([0] + [len(p[0]) for p in parts])
        pos = np.concatenate([p[0] for p in parts])
        puv = None if puv is None else np.concatenate([p[1] for p in parts])
        idx = np.concatenate([p[2] + o for p, o in zip(parts, offsets)])
        # Drop unreferenced vertices and merge the exact copies on the kept/decimated border.
        used = np.unique(idx)
        attrs = pos[used] if puv is None else np.c_[pos[used], puv[used]]
        uniq, inverse = np.unique(attrs, axis=0, return_inverse=True)
        remap = np.full(len(pos), -1, np.int64)
        remap[used] = inverse.reshape(-1)
        pos, idx = uniq[:, :3], remap[idx]
        puv = None if puv is None else uniq[:, 3:]
        weld = _weld_ids(pos)
    normals = vertex_normals(pos, idx, weld)
    return ViewerData(
        positions=pos.astype(np.float32),
        normals=normals.astype(np.float32),
        uvs=None if puv is None else puv.astype(np.float32),
        indices=idx.astype(np.uint32),
        texture=None if mesh.texture is None else Path(mesh.texture),
        source_triangles=len(f),
    )


def mesh_from_glb(path: str | Path) -> tuple[ViewerMesh, bytes | None]:
    """Read a binary glTF into a :class:`ViewerMesh` (all primitives merged, scene transforms
    applied) and the base-colour texture's encoded bytes (None when there is none).

    trimesh flips glTF's v-down UVs to v up on import, which is what the viewer expects.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise InputError("GLB file not found", path)
    try:
        scene = trimesh.load(path, file_type="glb", force="scene", process=False)
    except Exception as e:  # trimesh raises many unrelated types on bad files
        raise InputError(f"not a readable GLB ({e.__class__.__name__}: {e})", path) from None
    verts, tris, uvs, texture = [], [], [], None
    offset = 0
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geom = scene.geometry[name]
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        v = trimesh.transform_points(np.asarray(geom.vertices), transform)
        verts.append(v)
        tris.append(np.asarray(geom.faces) + offset)
        offset += len(v)
        uv = getattr(geom.visual, "uv", None)
        uvs.append(np.asarray(uv, float) if uv is not None and len(uv) == len(v) else None)
        mat = getattr(geom.visual, "material", None)
        img = getattr(mat, "baseColorTexture", None) or getattr(mat, "image", None)
        if texture is None and img is not None:
            import io

            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="PNG")
            texture = buf.getvalue()
    if not verts:
        raise InputError("GLB holds no triangle mesh", path)
    all_uv = None
    if texture is not None and all(u is not None for u in uvs):
        all_uv = np.concatenate(uvs)
    mesh = ViewerMesh(vertices=np.concatenate(verts), triangles=np.concatenate(tris), uvs=all_uv)
    return mesh, (texture if all_uv is not None else None)
