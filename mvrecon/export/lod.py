"""Levels of detail with meshoptimizer's simplifier (edge collapses with a quadric error).

meshoptimizer only ever removes vertices (its output is an index buffer into the input vertex
buffer), so every LOD vertex is an input vertex: it keeps its UV, normal, model-vertex id, skin
weights and every morph-target delta exactly, and LODs morph and skin like LOD 0. The primitive
is the seam-split mesh (one vertex per (model vertex, UV)): meshoptimizer finds vertices that
share a position and treats them as a UV seam, which it keeps closed, collapsing only along it.
The open borders of a primitive (where one material meets another: lips into the mouth, lids
into the eye sockets, the bottom of the neck) are locked, so materials never part. The collapse
is refused when it would flip a triangle, which is what keeps the LODs free of folded skin.
"""

from __future__ import annotations

import numpy as np

from .asset import HeadAsset, Primitive


def face_flip_share(prim: Primitive) -> float:
    """Share of triangles whose geometric normal points against their corners' (carried over,
    smooth) vertex normals: folded or inverted triangles."""
    if len(prim.indices) == 0:
        return 0.0
    t = prim.indices.astype(np.int64)
    p = prim.positions.astype(np.float64)
    fn = np.cross(p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]])
    vn = prim.normals.astype(np.float64)[t].sum(1)
    return float(((fn * vn).sum(1) < 0).mean())


def decimate_primitive(prim: Primitive, fraction: float, lock_border: bool = True) -> Primitive:
    """A primitive with about ``fraction`` of the triangles (fewer when the locked borders and the
    no-flip rule stop the simplifier earlier), keeping morph targets and skin."""
    import meshoptimizer as mo

    if fraction >= 1.0 or len(prim.indices) < 8:
        return prim
    idx = np.ascontiguousarray(prim.indices.reshape(-1), np.uint32)
    pos = np.ascontiguousarray(prim.positions, np.float32)
    target = max(3, int(round(fraction * len(prim.indices))) * 3)
    dest = np.zeros(len(idx), np.uint32)
    # target_error is relative to the mesh extent: 1.0 lets the triangle count decide
    n = mo.simplify(dest, idx, pos, target_index_count=target, target_error=1.0,
                    options=mo.SIMPLIFY_LOCK_BORDER if lock_border else 0)
    tri = dest[:n].reshape(-1, 3).astype(np.int64)
    used = np.unique(tri.reshape(-1))
    new_index = np.full(len(pos), -1, np.int64)
    new_index[used] = np.arange(len(used))
    return prim.subset(used, new_index[tri])


def decimate_asset(asset: HeadAsset, fraction: float) -> HeadAsset:
    """An LOD of the asset: each primitive simplified to ``fraction`` of its triangles, with the
    same morph targets, skeleton and animation."""
    from dataclasses import replace

    prims = [decimate_primitive(p, fraction) for p in asset.primitives]
    prims = [p for p in prims if len(p.indices)]
    return replace(asset, primitives=prims, meta={**asset.meta, "lod_fraction": float(fraction)})
