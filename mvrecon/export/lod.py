"""Levels of detail with meshoptimizer's simplifier (edge collapses with a quadric error).

meshoptimizer only ever removes vertices (its output is an index buffer into the input vertex
buffer), so every LOD vertex is an input vertex: it keeps its UV, normal, model-vertex id, skin
weights and every morph-target delta exactly, and LODs morph and skin like LOD 0. The primitive
is the seam-split mesh (one vertex per (model vertex, UV)): meshoptimizer finds vertices that
share a position and treats them as a UV seam, which it keeps closed, collapsing only along it.
The open borders of a primitive (where one material meets another: lips into the mouth, lids
into the eye sockets, the bottom of the neck) are locked, so materials never part. The collapse
is refused when it would flip a triangle; the vertex normals enter the error (so creases are
kept).

That refusal only compares a triangle with itself before the collapse, so a chain of collapses
can still turn a coarse triangle against the surface's (carried over, smooth) vertex normals,
which is how a folded triangle is counted (:func:`face_flip_share`; bench/export.py). The folds
are repaired without moving a vertex: an edge of a folded triangle is flipped (swapped for the
other diagonal of its two triangles) when that lowers the number of folded triangles in the rest
pose and, second, under every morph target at full weight. Folds that remain (a triangle on an
open border has no second triangle) get their vertices locked and the primitive simplified again;
if that fails too, the LOD keeps more triangles, so a LOD never folds more than
:data:`MAX_FLIP_SHARE` of its triangles (or the full primitive's share, when that is higher).
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


def _simplify(
    idx: np.ndarray, pos: np.ndarray, normals: np.ndarray, lock: np.ndarray, target: int, options: int
) -> np.ndarray:
    """meshopt_simplifyWithAttributes (normals as attributes, ``lock`` (n,) uint8 vertices kept)
    through the binding's library handle: the binding's own wrapper passes the float arguments
    without ctypes types and fails, so the C signature is declared here."""
    import ctypes as C

    from meshoptimizer._loader import lib

    fn = lib.meshopt_simplifyWithAttributes
    fn.restype = C.c_size_t
    fp, up = C.POINTER(C.c_float), C.POINTER(C.c_uint)
    fn.argtypes = [
        up,
        up,
        C.c_size_t,
        fp,
        C.c_size_t,
        C.c_size_t,
        fp,
        C.c_size_t,
        fp,
        C.c_size_t,
        C.POINTER(C.c_ubyte),
        C.c_size_t,
        C.c_float,
        C.c_uint,
        fp,
    ]
    dest = np.zeros(len(idx), np.uint32)
    attr = np.ascontiguousarray(normals, np.float32)
    weights = np.full(3, NORMAL_WEIGHT, np.float32)
    lock = np.ascontiguousarray(lock, np.uint8)
    err = C.c_float(0.0)
    # target_error is relative to the mesh extent: 1.0 lets the triangle count decide
    n = fn(
        dest.ctypes.data_as(up),
        idx.ctypes.data_as(up),
        len(idx),
        pos.ctypes.data_as(fp),
        len(pos),
        12,
        attr.ctypes.data_as(fp),
        12,
        weights.ctypes.data_as(fp),
        3,
        lock.ctypes.data_as(C.POINTER(C.c_ubyte)),
        target,
        1.0,
        options,
        C.byref(err),
    )
    return dest[:n].reshape(-1, 3).astype(np.int64)


#: weight of the vertex normals in the simplifier's error (against positions relative to the mesh size)
NORMAL_WEIGHT = 0.05
#: the largest share of folded triangles a LOD may have (issue 22 allows 0.5 %; this leaves margin)
MAX_FLIP_SHARE = 0.002
#: a LOD still folded after the repairs and the locking retries is made again with this many times
#: more triangles
GROW_TARGET = 1.25


def decimate_primitive(prim: Primitive, fraction: float, lock_border: bool = True, retries: int = 3) -> Primitive:
    """A primitive with about ``fraction`` of the triangles (fewer when the locked borders and the
    no-flip rule stop the simplifier earlier; more when it cannot be made without folds), keeping
    morph targets and skin. Folded triangles (against the surface's normals) are repaired by edge
    flips; where folds remain, the vertices of the folded triangles and their neighbours are
    locked and it simplifies again, and after ``retries`` such attempts the target grows by
    :data:`GROW_TARGET`, until at most :data:`MAX_FLIP_SHARE` of the triangles fold."""
    import meshoptimizer as mo

    if fraction >= 1.0 or len(prim.indices) < 8:
        return prim
    idx = np.ascontiguousarray(prim.indices.reshape(-1), np.uint32)
    pos = np.ascontiguousarray(prim.positions, np.float32)
    options = mo.SIMPLIFY_LOCK_BORDER if lock_border else 0
    tri0 = prim.indices.astype(np.int64)
    poses = _poses(prim)
    n_full = len(prim.indices)
    while fraction < 1.0:
        target = max(3, int(round(fraction * n_full)) * 3)
        lock = np.zeros(len(pos), np.uint8)
        best: tuple[np.ndarray, float] | None = None
        for _ in range(retries + 1):
            tri = repair_folds(_simplify(idx, pos, prim.normals, lock, target, options), *poses)
            bad = _folded(tri, poses[0][0], poses[1][0])
            share = float(bad.mean()) if len(bad) else 0.0
            if best is None or share < best[1]:
                best = (tri, share)
            assert best is not None  # retries >= 0: one try at least
            if best[1] <= MAX_FLIP_SHARE:
                return _lod_primitive(prim, best[0])
            # lock the folded triangles' corners and their one-ring in the full mesh
            ring = np.isin(tri0, tri[bad].reshape(-1)).any(1)
            lock[tri0[ring].reshape(-1)] = 1
        fraction *= GROW_TARGET
    assert best is not None  # fraction < 1 on entry: the loop ran
    return prim if face_flip_share(prim) <= best[1] else _lod_primitive(prim, best[0])


def _lod_primitive(prim: Primitive, tri: np.ndarray) -> Primitive:
    """``prim`` restricted to the vertices triangles ``tri`` (m, 3) (indices into ``prim``) use."""
    used = np.unique(tri.reshape(-1))
    new_index = np.full(len(prim.positions), -1, np.int64)
    new_index[used] = np.arange(len(used))
    return prim.subset(used, new_index[tri])


def _poses(prim: Primitive) -> tuple[np.ndarray, np.ndarray]:
    """(P, n, 3) positions and (P, n, 3) normals of the rest pose (P index 0) and of every morph
    target at full weight, float64: a triangle should not fold in any of them."""
    pos, nrm = prim.positions.astype(np.float64)[None], prim.normals.astype(np.float64)[None]
    if prim.targets is None or not len(prim.targets):
        return pos, nrm
    dn = prim.normal_targets if prim.normal_targets is not None else np.zeros_like(prim.targets)
    return (np.concatenate([pos, pos + prim.targets]), np.concatenate([nrm, nrm + dn]))


def _folded(tri: np.ndarray, pos: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """(m,) bool: triangles ``tri`` (m, 3) whose geometric normal points against the sum of their
    corners' normals, for positions and normals (n, 3)."""
    t = tri.astype(np.int64)
    fn = np.cross(pos[t[:, 1]] - pos[t[:, 0]], pos[t[:, 2]] - pos[t[:, 0]])
    return (fn * normals[t].sum(1)).sum(-1) < 0


def _fold_cost(tris: np.ndarray | list, pos: np.ndarray, normals: np.ndarray) -> int:
    """Folds of triangles ``tris`` (m, 3) over poses (P, n, 3): a fold in the rest pose (P index 0)
    outweighs folds under every morph target together (at most m (P - 1))."""
    t = np.asarray(tris, np.int64)
    p = pos[:, t]  # (P, m, 3 corners, 3)
    fn = np.cross(p[:, :, 1] - p[:, :, 0], p[:, :, 2] - p[:, :, 0])
    bad = (fn * normals[:, t].sum(2)).sum(-1) < 0  # (P, m)
    return int(bad[0].sum()) * len(t) * len(pos) + int(bad[1:].sum())


def repair_folds(tri: np.ndarray, pos: np.ndarray, normals: np.ndarray, passes: int = 4) -> np.ndarray:
    """Triangles ``tri`` (m, 3) with folded triangles repaired by edge flips: the edge (a, b) of a
    folded triangle (a, b, c), shared with (b, a, d), becomes (c, d) when that lowers
    :func:`_fold_cost` of the two triangles over the poses ``pos``/``normals`` (P, n, 3) (rest
    pose first). The vertices and the surface's open borders stay; an edge is only shared when
    both triangles use the same vertices, so UV seams (split vertices) are never crossed. A new
    array; ``tri`` is not modified."""
    tri = np.array(tri, np.int64)
    edge: dict[tuple[int, int], int] = {}
    for i, (a, b, c) in enumerate(tri.tolist()):
        for e in ((a, b), (b, c), (c, a)):
            edge[e] = -1 if e in edge else i  # a directed edge used twice (non-manifold): never flipped
    for _ in range(passes):
        t = tri
        p = pos[:, t]
        fn = np.cross(p[:, :, 1] - p[:, :, 0], p[:, :, 2] - p[:, :, 0])
        folded = ((fn * normals[:, t].sum(2)).sum(-1) < 0).any(0)
        changed = False
        for i in np.flatnonzero(folded):
            tc = tri[i].tolist()
            for k in range(3):
                a, b, c = tc[k], tc[(k + 1) % 3], tc[(k + 2) % 3]
                j = edge.get((b, a), -1)
                if j < 0 or j == i or any(edge.get(e) != i for e in ((a, b), (b, c), (c, a))):
                    continue
                u = tri[j].tolist()
                d = u[(u.index(a) + 1) % 3]  # u is (b, a, d) up to rotation
                if d == c or (c, d) in edge or (d, c) in edge or edge.get((a, d)) != j or edge.get((d, b)) != j:
                    continue
                new = [(a, d, c), (d, b, c)]
                if _fold_cost(new, pos, normals) >= _fold_cost([tc, u], pos, normals):
                    continue
                for e in ((a, b), (b, c), (c, a), (b, a), (a, d), (d, b)):
                    del edge[e]
                tri[i], tri[j] = new
                edge[(a, d)] = edge[(d, c)] = edge[(c, a)] = i
                edge[(d, b)] = edge[(b, c)] = edge[(c, d)] = j
                changed = True
                break
        if not changed:
            break
    return tri


def _flipped(prim: Primitive) -> np.ndarray:
    return _folded(prim.indices, prim.positions.astype(np.float64), prim.normals.astype(np.float64))


def decimate_asset(asset: HeadAsset, fraction: float) -> HeadAsset:
    """An LOD of the asset: each primitive simplified to ``fraction`` of its triangles, with the
    same morph targets, skeleton and animation."""
    from dataclasses import replace

    prims = [decimate_primitive(p, fraction) for p in asset.primitives]
    prims = [p for p in prims if len(p.indices)]
    return replace(asset, primitives=prims, meta={**asset.meta, "lod_fraction": float(fraction)})
