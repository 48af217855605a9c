"""Level-of-detail meshes that keep their UVs: vertex clustering with seam vertices locked.

Open3D's ``simplify_quadric_decimation`` moves vertices to new optimal positions and returns no
map back to the input, so UVs (and morph deltas) cannot follow it. Here every output vertex is
an input vertex, so it keeps its UV, normal and model-vertex id exactly:

- vertices are grouped by a 3D grid cell, their UV chart (connected component of the split mesh:
  vertices of different charts never merge, so UVs never jump across the atlas) and their
  dominant normal axis (the two sides of a thin sheet such as an eyelid stay apart);
- vertices on a UV seam (a model vertex with two UVs, in two charts) cluster only with seam
  vertices of the same chart pair, and both sides pick the copy of the same model vertex, so the
  two sides of a seam collapse identically and no crack opens; seam vertices with more copies
  (junctions) or with both copies in one chart are locked;
- interior clusters are represented by their member nearest the centroid; triangles collapsing
  to an edge or a point, and duplicates, are dropped;
- the cell size is found by bisection so that the triangle count matches the requested fraction.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .asset import HeadAsset, Primitive, vertex_tangents


def _charts(n: int, tri: np.ndarray) -> np.ndarray:
    e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    return connected_components(g, directed=False)[1]


def _seam_classes(prim: Primitive, chart: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per vertex: ``pair`` (n,) id of the chart pair of a two-sided UV seam (-1: not such a
    seam vertex) and ``locked`` (n,) bool for seam vertices shared by more than two copies or
    by two copies in one chart (a chart that wraps around), which never move."""
    src = prim.source_vertex
    n = len(src)
    order = np.argsort(src, kind="stable")
    s_sorted = src[order]
    start = np.r_[True, s_sorted[1:] != s_sorted[:-1]]
    group = np.cumsum(start) - 1
    size = np.bincount(group)[group]
    copies = np.empty(n, np.int64)
    copies[order] = size
    pair = np.full(n, -1, np.int64)
    locked = copies > 2
    two = np.flatnonzero(start & (size == 2))            # first copy of each two-copy model vertex
    a, b = order[two], order[two + 1]
    ca, cb = chart[a], chart[b]
    same = ca == cb
    locked[a[same]] = locked[b[same]] = True
    lo, hi = np.minimum(ca, cb), np.maximum(ca, cb)
    pid = lo * (int(chart.max()) + 1) + hi
    pair[a[~same]] = pid[~same]
    pair[b[~same]] = pid[~same]
    return pair, locked


def _cluster(prim: Primitive, cell: float, chart: np.ndarray, pair: np.ndarray, locked: np.ndarray,
             axis: np.ndarray) -> np.ndarray:
    """(n,) representative vertex of every vertex at grid size ``cell``.

    Interior vertices cluster by (cell, chart, normal axis) and are represented by the member
    nearest the centroid. Two-sided seam vertices cluster by (cell, chart pair, own chart): both
    sides of the seam see the same set of model vertices in a cell, and each side takes its copy
    of the smallest model vertex id, so the two sides collapse identically and no crack opens.
    """
    p = prim.positions.astype(np.float64)
    n = len(p)
    q = np.floor((p - p.min(0)) / cell).astype(np.int64)
    seam = pair >= 0
    kind = np.where(locked, 2, np.where(seam, 1, 0))
    key = np.stack([q[:, 0], q[:, 1], q[:, 2], chart, np.where(seam, pair, axis), kind], 1)
    key[locked, :5] = -1 - np.flatnonzero(locked)[:, None]      # a unique key per locked vertex
    _, cl = np.unique(key, axis=0, return_inverse=True)
    cl = cl.reshape(-1)
    k = cl.max() + 1
    cnt = np.bincount(cl, minlength=k)
    cen = np.stack([np.bincount(cl, p[:, d], minlength=k) for d in range(3)], 1) / cnt[:, None]
    score = np.where(seam, prim.source_vertex.astype(np.float64), ((p - cen[cl]) ** 2).sum(1))
    # each cluster's best member: sort by (cluster, score) and take each cluster's first
    order = np.lexsort((score, cl))
    first = np.ones(n, bool)
    first[1:] = cl[order][1:] != cl[order][:-1]
    rep_of_cluster = np.empty(k, np.int64)
    rep_of_cluster[cl[order][first]] = order[first]
    return rep_of_cluster[cl]


def _remap(prim: Primitive, rep: np.ndarray) -> np.ndarray:
    t = rep[prim.indices.astype(np.int64)]
    ok = (t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 2] != t[:, 0])
    t = t[ok]
    # drop duplicates (same corner set), keeping the first orientation
    _, keep = np.unique(np.sort(t, 1), axis=0, return_index=True)
    return t[np.sort(keep)]


def decimate_primitive(prim: Primitive, fraction: float, iters: int = 24) -> Primitive:
    """A primitive with about ``fraction`` of the triangles (morph targets dropped)."""
    if fraction >= 1.0 or len(prim.indices) < 8:
        return replace(prim, targets=None)
    n = len(prim.positions)
    tri = prim.indices.astype(np.int64)
    chart = _charts(n, tri)
    pair, locked = _seam_classes(prim, chart)
    axis = np.argmax(np.abs(prim.normals), 1) * 2 + (np.take_along_axis(prim.normals, np.argmax(np.abs(prim.normals), 1)[:, None], 1)[:, 0] > 0)
    target = max(1, int(round(fraction * len(tri))))
    ext = float(np.linalg.norm(prim.positions.max(0) - prim.positions.min(0)))
    lo, hi = 1e-6, max(ext, 1e-5)
    best = None
    for _ in range(iters):
        mid = np.sqrt(lo * hi)
        t = _remap(prim, _cluster(prim, mid, chart, pair, locked, axis))
        if best is None or abs(len(t) - target) < abs(len(best) - target):
            best = t
        if len(t) > target:
            lo = mid
        else:
            hi = mid
        if abs(len(t) - target) <= 0.02 * target:
            break
    used = np.unique(best.reshape(-1))
    new_index = np.full(n, -1, np.int64)
    new_index[used] = np.arange(len(used))
    ind = new_index[best].astype(np.uint32)
    pos, nrm, uvs = prim.positions[used], prim.normals[used], prim.uvs[used]
    return Primitive(material=prim.material, positions=pos, normals=nrm, uvs=uvs, indices=ind,
                     source_vertex=prim.source_vertex[used], targets=None,
                     tangents=None if prim.tangents is None else vertex_tangents(pos, nrm, uvs, ind))


def decimate_asset(asset: HeadAsset, fraction: float) -> HeadAsset:
    """An LOD of the asset: each primitive decimated to ``fraction`` of its triangles, no morphs."""
    prims = [decimate_primitive(p, fraction) for p in asset.primitives]
    prims = [p for p in prims if len(p.indices)]
    return HeadAsset(primitives=prims, target_names=[], default_weights=np.zeros(0),
                     meta={**asset.meta, "lod_fraction": float(fraction)})
