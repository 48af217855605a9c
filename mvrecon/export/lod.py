"""Levels of detail with meshoptimizer's simplifier (edge collapses with a quadric error).

meshoptimizer only ever removes vertices (its output is an index buffer into the input vertex
buffer), so every LOD vertex is an input vertex: it keeps its UV, normal, model-vertex id, skin
weights and every morph-target delta exactly, and LODs morph and skin like LOD 0. The primitive
is the seam-split mesh (one vertex per (model vertex, UV)): meshoptimizer finds vertices that
share a position and treats them as a UV seam, which it keeps closed, collapsing only along it.
The open borders of a primitive (where one material meets another: lips into the mouth, lids
into the eye sockets, the bottom of the neck) are locked, so materials never part. The collapse
is refused when it would flip a triangle; the vertex normals enter the error (so creases are
kept), and where a fold against the smooth normals remains (thin lip and lid margins) those
vertices are locked and the primitive simplified again.
"""

from __future__ import annotations

import numpy as np

from .asset import HeadAsset, Primitive


def face_flip_share(prim: Primitive) -> float:
    """Share of triangles whose geometric normal points against their corners' (carried over,
    smooth) vertex normals: folded or inverted triangles."""
    if len(prim.indices) == 0:
        return 0.0
    return float(_flipped(prim).mean())


def _simplify(idx: np.ndarray, pos: np.ndarray, normals: np.ndarray, lock: np.ndarray, target: int,
              options: int) -> np.ndarray:
    """meshopt_simplifyWithAttributes (normals as attributes, ``lock`` (n,) uint8 vertices kept)
    through the binding's library handle: the binding's own wrapper passes the float arguments
    without ctypes types and fails, so the C signature is declared here."""
    import ctypes as C

    from meshoptimizer._loader import lib

    fn = lib.meshopt_simplifyWithAttributes
    fn.restype = C.c_size_t
    fp, up = C.POINTER(C.c_float), C.POINTER(C.c_uint)
    fn.argtypes = [up, up, C.c_size_t, fp, C.c_size_t, C.c_size_t, fp, C.c_size_t, fp, C.c_size_t,
                   C.POINTER(C.c_ubyte), C.c_size_t, C.c_float, C.c_uint, fp]
    dest = np.zeros(len(idx), np.uint32)
    attr = np.ascontiguousarray(normals, np.float32)
    weights = np.full(3, NORMAL_WEIGHT, np.float32)
    lock = np.ascontiguousarray(lock, np.uint8)
    err = C.c_float(0.0)
    # target_error is relative to the mesh extent: 1.0 lets the triangle count decide
    n = fn(dest.ctypes.data_as(up), idx.ctypes.data_as(up), len(idx), pos.ctypes.data_as(fp), len(pos), 12,
           attr.ctypes.data_as(fp), 12, weights.ctypes.data_as(fp), 3, lock.ctypes.data_as(C.POINTER(C.c_ubyte)),
           target, 1.0, options, C.byref(err))
    return dest[:n].reshape(-1, 3).astype(np.int64)


#: weight of the vertex normals in the simplifier's error (against positions relative to the mesh size)
NORMAL_WEIGHT = 0.05
#: a LOD whose share of folded triangles is above this is simplified again with their vertices locked
MAX_FLIP_SHARE = 0.002


def decimate_primitive(prim: Primitive, fraction: float, lock_border: bool = True, retries: int = 4) -> Primitive:
    """A primitive with about ``fraction`` of the triangles (fewer when the locked borders and the
    no-flip rule stop the simplifier earlier), keeping morph targets and skin. Where the result
    still folds triangles against the surface's normals (thin creases: lip and lid margins), the
    vertices of the folded triangles and their neighbours are locked and it simplifies again."""
    import meshoptimizer as mo

    if fraction >= 1.0 or len(prim.indices) < 8:
        return prim
    idx = np.ascontiguousarray(prim.indices.reshape(-1), np.uint32)
    pos = np.ascontiguousarray(prim.positions, np.float32)
    target = max(3, int(round(fraction * len(prim.indices))) * 3)
    lock = np.zeros(len(pos), np.uint8)
    options = mo.SIMPLIFY_LOCK_BORDER if lock_border else 0
    tri0 = prim.indices.astype(np.int64)
    for attempt in range(retries + 1):
        tri = _simplify(idx, pos, prim.normals, lock, target, options)
        used = np.unique(tri.reshape(-1))
        new_index = np.full(len(pos), -1, np.int64)
        new_index[used] = np.arange(len(used))
        out = prim.subset(used, new_index[tri])
        bad = _flipped(out)
        if bad.mean() <= MAX_FLIP_SHARE or attempt == retries:
            return out
        # lock the folded triangles' corners and their one-ring in the full mesh
        corners = used[out.indices[bad].astype(np.int64)].reshape(-1)
        ring = np.isin(tri0, corners).any(1)
        lock[tri0[ring].reshape(-1)] = 1
    return out


def _flipped(prim: Primitive) -> np.ndarray:
    t = prim.indices.astype(np.int64)
    p = prim.positions.astype(np.float64)
    fn = np.cross(p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]])
    return (fn * prim.normals.astype(np.float64)[t].sum(1)).sum(1) < 0


def decimate_asset(asset: HeadAsset, fraction: float) -> HeadAsset:
    """An LOD of the asset: each primitive simplified to ``fraction`` of its triangles, with the
    same morph targets, skeleton and animation."""
    from dataclasses import replace

    prims = [decimate_primitive(p, fraction) for p in asset.primitives]
    prims = [p for p in prims if len(p.indices)]
    return replace(asset, primitives=prims, meta={**asset.meta, "lod_fraction": float(fraction)})
