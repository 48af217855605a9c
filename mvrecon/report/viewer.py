"""Mesh data for the report's WebGL viewer: split at UV seams, decimated to a budget, packed.

The browser gets one vertex per (position, uv) pair, smooth normals that ignore UV seams, and
little-endian base64 Float32/Uint32 arrays it can hand to WebGL without parsing.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, MvreconError
from .content import ViewerMesh

#: Triangles above this are decimated for the viewer (keeps report.html at a few MB).
DEFAULT_MAX_TRIANGLES = 120_000


@dataclass(frozen=True)
class ViewerPart:
    """A run of triangles drawn with one material."""

    start: int
    """First triangle of the part in ``ViewerData.indices``."""
    count: int
    """Number of triangles."""
    texture: Path | bytes | None
    """Texture file or encoded image bytes; None: drawn in ``color``."""
    color: tuple[float, float, float]
    """sRGB colour in [0, 1] for untextured parts."""
    name: str = ""
    """Part name (may be empty)."""


@dataclass(frozen=True)
class ViewerData:
    """Arrays ready for WebGL (all float32/uint32, one entry per GPU vertex)."""

    positions: np.ndarray
    """(V, 3) float32 metres, model space."""
    normals: np.ndarray
    """(V, 3) float32 unit normals."""
    uvs: np.ndarray | None
    """(V, 2) float32 texture coordinates, v up (zeros in untextured parts); None when no part
    is textured."""
    indices: np.ndarray
    """(F, 3) uint32 triangles into the vertex arrays, part after part."""
    parts: tuple[ViewerPart, ...]
    """Materials and their triangle ranges, in order."""
    source_triangles: int
    """Triangle count before decimation."""

    def packed(self) -> dict:
        """JSON-ready dict with the arrays as base64 little-endian buffers (parts not included:
        their textures must be embedded by the caller)."""

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
    assert uv_triangles is not None, "uvs come with their uv_triangles"
    pairs = np.stack([triangles.ravel(), uv_triangles.ravel()], 1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return vertices[uniq[:, 0]], uvs[uniq[:, 1]], inverse.reshape(-1, 3), uniq[:, 0]


def welded_vertex_normals(positions: np.ndarray, indices: np.ndarray, weld: np.ndarray) -> np.ndarray:
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


def _vertex_quadrics(pos: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted plane quadrics summed per vertex: ``A`` (V, 9) (flattened 3x3 of n n^T) and
    ``b`` (V, 3) (n d), so that the sum over planes of (n.x + d)^2 = x^T A x + 2 b.x + const."""
    fn = np.cross(pos[idx[:, 1]] - pos[idx[:, 0]], pos[idx[:, 2]] - pos[idx[:, 0]])
    area = 0.5 * np.linalg.norm(fn, axis=1)
    n = fn / np.maximum(2 * area, 1e-30)[:, None]
    d = -np.einsum("ij,ij->i", n, pos[idx[:, 0]])
    fa = (area[:, None, None] * n[:, :, None] * n[:, None, :]).reshape(-1, 9)
    fb = (area * d)[:, None] * n
    A, b = np.zeros((len(pos), 9)), np.zeros((len(pos), 3))
    for k in range(3):
        np.add.at(A, idx[:, k], fa)
        np.add.at(b, idx[:, k], fb)
    return A, b


def _clusters(pos: np.ndarray, group: np.ndarray, pinned: np.ndarray, cell: float) -> np.ndarray:
    """(V,) cluster id: free vertices sharing a grid cell of ``cell`` metres and a group merge."""
    key = np.c_[np.floor((pos - pos.min(0)) / cell).astype(np.int64), group]
    key[pinned, 3] = -1 - np.arange(int(pinned.sum()))  # each pinned vertex is its own cluster
    return np.unique(key, axis=0, return_inverse=True)[1].reshape(-1)


def _surviving(cl: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Indices of the triangles that survive clustering: not degenerate, and after folds cancel.

    Triangles landing on the same three clusters come from folds: they are counted modulo 2 (a
    pair cancels, an odd group leaves one), which keeps the result closed wherever the input was.
    """
    t = cl[idx]
    alive = np.nonzero((t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 2] != t[:, 0]))[0]
    _, first, counts = np.unique(np.sort(t[alive], axis=1), axis=0, return_index=True, return_counts=True)
    return alive[np.sort(first[counts % 2 == 1])]


def _cluster_points(pos, cl, quadrics, cell) -> np.ndarray:
    """(C, 3) one point per cluster: the one that best keeps the members' planes (Lindstrom's
    quadric clustering), so curved surfaces do not shrink; the mean where that is ill-posed."""
    n = int(cl.max()) + 1
    count = np.bincount(cl, minlength=n)[:, None]
    mean = np.stack([np.bincount(cl, pos[:, k], n) for k in range(3)], 1) / count
    A = np.stack([np.bincount(cl, quadrics[0][:, k], n) for k in range(9)], 1).reshape(-1, 3, 3)
    b = np.stack([np.bincount(cl, quadrics[1][:, k], n) for k in range(3)], 1)
    # A little pull towards the mean makes flat and ridge clusters (rank-deficient A) solvable.
    lam = 1e-3 * np.trace(A, axis1=1, axis2=2)[:, None] + 1e-12
    best = np.linalg.solve(A + lam[:, :, None] * np.eye(3), (-b + lam * mean)[..., None])[..., 0]
    # Single vertices stay exactly where they are (pinned borders must match bit for bit).
    ok = (np.linalg.norm(best - mean, axis=1) < cell) & (count[:, 0] > 1)
    return np.where(ok[:, None], best, mean)


def decimate(
    vertices: np.ndarray,
    triangles: np.ndarray,
    uvs: np.ndarray | None,
    uv_triangles: np.ndarray | None,
    keep: np.ndarray,
    target: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Reduce the triangles outside ``keep`` until the whole mesh has at most ``target`` (when the
    kept part and a cell no coarser than 1/25 of the mesh allow it), by vertex clustering.

    Geometry is clustered on the welded vertices, so UV seams cannot open; vertices shared with
    kept triangles are pinned, so the border to the full-resolution region cannot open either.
    UVs are then averaged per (cluster, UV island): every triangle keeps texture coordinates from
    its own island. Vertices merge only under one normal direction, so the two sides of a thin
    part (an ear) stay apart. Returns ``vertices`` (N', 3), ``triangles`` (F', 3), ``uvs`` (T', 2)
    and ``uv_triangles`` (F', 3) (None without UVs); kept triangles come first, unchanged.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rest = np.nonzero(~keep)[0]
    f = triangles[rest]
    pinned = np.zeros(len(vertices), bool)
    pinned[triangles[keep].ravel()] = True
    # Open borders (a neck cut, holes) stay too, or the silhouette there turns ragged.
    e = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1)
    edges, counts = np.unique(e, axis=0, return_counts=True)
    pinned[edges[counts == 1].ravel()] = True
    A, b = _vertex_quadrics(vertices, f)
    vn = np.zeros((len(vertices), 3))
    fn = np.cross(vertices[f[:, 1]] - vertices[f[:, 0]], vertices[f[:, 2]] - vertices[f[:, 0]])
    for k in range(3):
        np.add.at(vn, f[:, k], fn)
    axis = np.abs(vn).argmax(1)
    group = 2 * axis + (vn[np.arange(len(vn)), axis] > 0)

    budget = max(target - int(keep.sum()), 1)
    lo = float(np.linalg.norm(vertices[f[:, 1]] - vertices[f[:, 0]], axis=1).mean())
    # Cells beyond 1/25 of the mesh would merge whole features (the top of a head into a peak).
    hi = max(float(np.linalg.norm(vertices.max(0) - vertices.min(0))) / 25, lo)
    cell, cl = hi, _clusters(vertices, group, pinned, hi)
    for _ in range(14):  # bisection: the finest cell whose result fits the budget
        mid = 0.5 * (lo + hi)
        trial = _clusters(vertices, group, pinned, mid)
        if len(_surviving(trial, f)) <= budget:
            cell, cl, hi = mid, trial, mid
        else:
            lo = mid
    alive = _surviving(cl, f)
    points = _cluster_points(vertices, cl, (A, b), cell)
    # Kept triangles use the original vertices; the decimated rest uses cluster points after them.
    new_vertices = np.concatenate([vertices, points])
    new_triangles = np.concatenate([triangles[keep], len(vertices) + cl[f[alive]]])
    if uvs is None:
        return new_vertices, new_triangles, None, None
    assert uv_triangles is not None, "uvs come with their uv_triangles"

    uf = uv_triangles[rest]
    e = np.concatenate([uf[:, [0, 1]], uf[:, [1, 2]]])
    _, island = connected_components(
        coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(len(uvs), len(uvs))), directed=False
    )
    # One UV per (cluster, island) corner pair, averaged over all rest corners that map to it.
    pair = np.stack([cl[f].ravel(), island[uf].ravel()], 1)
    uniq, inverse = np.unique(pair, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    count = np.bincount(inverse, minlength=len(uniq))[:, None]
    pair_uv = np.stack([np.bincount(inverse, uvs[uf].reshape(-1, 2)[:, k], len(uniq)) for k in range(2)], 1) / count
    rest_uvf = inverse.reshape(-1, 3)[alive] + len(uvs)
    return new_vertices, new_triangles, np.concatenate([uvs, pair_uv]), np.concatenate([uv_triangles[keep], rest_uvf])


def _prepare_one(mesh: ViewerMesh, max_triangles: int):
    v, f, uv, uvf = _check(mesh)
    if isinstance(mesh.texture, (str, Path)) and not Path(mesh.texture).is_file():
        raise InputError("viewer texture not found", mesh.texture)
    if len(f) > max_triangles:
        keep = np.zeros(len(f), bool) if mesh.keep is None else np.asarray(mesh.keep, bool)
        v, f, uv, uvf = decimate(v, f, uv, uvf, keep, max_triangles)
    pos, puv, idx, _ = split_seams(v, f, uv, uvf)
    # Normals are averaged over vertices at one position: seam copies and the copies on the
    # border between the kept and the decimated part shade as one smooth surface.
    return pos, puv, idx, welded_vertex_normals(pos, idx, _weld_ids(pos))


def prepare(meshes: ViewerMesh | Sequence[ViewerMesh], max_triangles: int = DEFAULT_MAX_TRIANGLES) -> ViewerData:
    """Viewer arrays for one mesh or several parts: decimated to ``max_triangles`` in all (each
    part in proportion to its size), seams split, normals computed per part.

    Triangles marked in a part's ``keep`` stay at full resolution; the rest is decimated to fill
    the remaining budget.
    """
    parts_in = [meshes] if isinstance(meshes, ViewerMesh) else list(meshes)
    if not parts_in:
        raise MvreconError("viewer mesh: no parts given")
    sizes = np.array([len(m.triangles) for m in parts_in])
    total = int(sizes.sum())
    budgets = sizes if total <= max_triangles else np.maximum(np.floor(sizes * max_triangles / total), 1).astype(int)
    pos_l, uv_l, idx_l, nrm_l, parts = [], [], [], [], []
    n_vert = n_tri = 0
    for m, budget in zip(parts_in, budgets):
        pos, puv, idx, nrm = _prepare_one(m, int(budget))
        textured = puv is not None and m.texture is not None
        pos_l.append(pos)
        nrm_l.append(nrm)
        uv_l.append(puv if textured else np.zeros((len(pos), 2)))
        idx_l.append(idx + n_vert)
        parts.append(
            ViewerPart(
                n_tri,
                len(idx),
                m.texture if textured else None,
                (float(m.color[0]), float(m.color[1]), float(m.color[2])),
                m.name,
            )
        )
        n_vert += len(pos)
        n_tri += len(idx)
    any_tex = any(p.texture is not None for p in parts)
    return ViewerData(
        positions=np.concatenate(pos_l).astype(np.float32),
        normals=np.concatenate(nrm_l).astype(np.float32),
        uvs=np.concatenate(uv_l).astype(np.float32) if any_tex else None,
        indices=np.concatenate(idx_l).astype(np.uint32),
        parts=tuple(parts),
        source_triangles=total,
    )


def mesh_from_glb(path: str | Path) -> list[ViewerMesh]:
    """Read a binary glTF into one :class:`ViewerMesh` per primitive (scene transforms applied),
    each with its base-colour texture as encoded PNG bytes, or its base colour when untextured.

    trimesh flips glTF's v-down UVs to v up on import, which is what the viewer expects.
    """
    try:
        import trimesh
    except ImportError:
        raise MvreconError("reading a GLB for the report needs trimesh (pip install trimesh)", path) from None

    path = Path(path)
    if not path.is_file():
        raise InputError("GLB file not found", path)
    try:
        scene = trimesh.load(path, file_type="glb", force="scene", process=False)
    except Exception as e:  # trimesh raises many unrelated types on bad files
        raise InputError(f"not a readable GLB ({e.__class__.__name__}: {e})", path) from None
    if not isinstance(scene, trimesh.Scene):  # force="scene" makes one; the type says it may not
        raise InputError("not a readable GLB (no scene)", path)
    parts = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geom = scene.geometry[name]
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        v = trimesh.transform_points(np.asarray(geom.vertices, float), transform)
        uv = getattr(geom.visual, "uv", None)
        mat = getattr(geom.visual, "material", None)
        img = getattr(mat, "baseColorTexture", None) or getattr(mat, "image", None)
        factor = getattr(mat, "baseColorFactor", None)
        color = (
            (0.78, 0.72, 0.68)
            if factor is None
            else tuple(float(c) / (255 if np.max(factor) > 1 else 1) for c in factor[:3])
        )
        texture = None
        if img is not None and uv is not None and len(uv) == len(v):
            import io

            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="PNG")
            texture = buf.getvalue()
        parts.append(
            ViewerMesh(
                vertices=v,
                triangles=np.asarray(geom.faces, np.int64),
                uvs=np.asarray(uv, float) if texture is not None else None,
                texture=texture,
                color=color,  # type: ignore[arg-type]
                name=str(name),
            )
        )
    if not parts:
        raise InputError("GLB holds no triangle mesh", path)
    return parts
