"""Optimal-step non-rigid ICP (Amberg et al. 2007) as REALY runs it (``utils/NICP.py``).

Each source vertex ``i`` carries an affine map ``X_i`` (4x3); one step solves, in least squares,

    alpha^2 sum_edges |(X_i - X_j) G|^2  +  sum_i w_i |[v_i 1] X_i - u_i|^2  +  sum_k b_k^2 |[v_k 1] X_k - l_k|^2

with ``G = diag(1, 1, 1, gamma)``, ``u_i`` the nearest target point of the current ``v_i`` (a
KD-tree over the target point set), ``w_i`` 1 when that distance is below
``max(2 * mean distance, 1 unit)`` and 0 otherwise, and keypoints ``v_k`` pulled to ``l_k`` with
weight ``b_k``. REALY's schedule, transcribed:

- with keypoints: a first single step with only the keypoint term, stiffness ``alpha2 = 150`` and
  ``G_KP = diag(2, 2, 3, 2 gamma)``, keypoint weight 50; then stiffness ``50, 50 e^-0.5, 50 e^-1``
  with keypoint weight ``5 e^(-0.9 count)`` (``count`` the steps so far), each stage stepping until
  ``|X - X_prev| <= epsilon 0.5^(stage-1)`` or more than 10 steps;
- without keypoints (REALY's cheek): stiffness ``50, 50 e^-0.5, 50 e^-1``, until
  ``|X - X_prev| <= epsilon 0.5^stage``.

Units. REALY's scans are stored in units of about 8.9 mm (the mean of its
``data/metrical_scale.txt``), and its stiffness weights, 1-unit outlier threshold and epsilon only
mean the same thing in those units; positions are therefore divided by :attr:`NicpConfig.unit_m`
before the solve.

Solving. REALY factors every step's normal equations afresh with CHOLMOD (about 47 s for a
subject's four regions on a 2-core CPU). Here a step's system differs from the previous one only by
its data term (the vertices moved a little) and, between stages, by the stiffness weight, so the
last SuperLU factorization serves as the preconditioner of a conjugate-gradient solve warm-started
from the previous maps; a new factorization is made only when that takes more than
:attr:`NicpConfig.refactor_iterations` iterations. The solution is the same to
:attr:`NicpConfig.solver_rtol` (relative residual); the figures do not move (bench/eval.py --parity).

Deviations, for speed, that the ``realy`` protocol does not use (the robust protocol does):
- a region with more than :attr:`NicpConfig.max_nodes` vertices gets one affine map per node of
  a deformation graph (the region's vertices clustered on a voxel grid to about that many nodes,
  clusters joined where a mesh edge joins them) instead of one per vertex; every
  vertex keeps its own data and keypoint term and moves by the blend of its 4 nearest nodes' maps,
  weighted ``(1 - d / d_5)^2`` as in embedded deformation (Sumner et al. 2007). The system then
  has ``4 * max_nodes`` unknowns whatever the scan's resolution. The convergence test scales the
  maps' change by ``sqrt(n_vertices / n_nodes)`` so that it measures what REALY's per-vertex
  test measures;
- a region with more than :attr:`NicpConfig.max_data_points` vertices (a 100k-vertex scan's
  forehead) fits the graph's maps to a fixed random subset of that many vertices; every vertex
  follows the maps (a graph of ``max_nodes`` nodes is pinned as well by 10k vertices as by 30k);
- with :attr:`NicpConfig.cap_keypoint_free`, the keypoint-free schedule stops after
  ``max_steps + 1`` steps per stage like the keypoint one (REALY has no cap there; without it a
  stage still stops after 100 steps rather than loop forever).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NicpConfig:
    """Settings of the optimal-step non-rigid ICP (REALY's values by default)."""

    unit_m: float = 0.0089
    """Length (metres) of one solver unit: REALY's scan unit, about 8.9 mm."""
    epsilon: float = 1.0
    """Convergence threshold on the Frobenius change of the affine maps, in solver units."""
    gamma: float = 1.0
    """Weight of translation against the linear part in the stiffness term."""
    alpha: float = 50.0
    """Stiffness of the first data stage; later stages decay by e^-0.5 each."""
    alpha_keypoints: float = 150.0
    """Stiffness of the keypoint-only first step."""
    keypoint_weight: float = 50.0
    """Keypoint weight of the first step; later steps use it * e^(-0.9 count) / 10."""
    max_steps: int = 10
    """A stage stops after more than this many steps."""
    max_nodes: int | None = None
    """Regions with more vertices get one affine map per node of a clustered graph of about this
    size; None: one map per vertex, as REALY."""
    max_data_points: int | None = None
    """With a deformation graph, fit the data and keypoint terms on a fixed random subset of at
    most this many vertices (all follow the fitted maps); None: all vertices."""
    keypoint_step: bool = True
    """Start with REALY's keypoint-only step; off, the keypoints only join the data stages (a few
    keypoints, such as the eye corners, which lie on one line, cannot pin an affine map)."""
    regularization: float = 1e-6
    """Weight pulling each affine map towards the identity (mvrecon's; keeps islands solvable)."""
    cap_keypoint_free: bool = False
    """Stop the keypoint-free schedule's stages after ``max_steps + 1`` steps too (REALY: no cap)."""
    solver_rtol: float = 1e-6
    """Relative residual at which a step's preconditioned conjugate-gradient solve stops."""
    refactor_iterations: int = 25
    """Factor the step's own matrix when the solve with the previous factor takes more iterations."""


def _edges(triangles: np.ndarray, n: int) -> np.ndarray:
    f = np.asarray(triangles, dtype=np.int64)
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [0, 2]]], 0), 1)
    e = np.unique(e[:, 0] * n + e[:, 1])
    return np.stack([e // n, e % n], 1)


def _laplacian(edges: np.ndarray, n: int):
    import scipy.sparse as sp

    i, j = edges[:, 0], edges[:, 1]
    m = len(edges)
    inc = sp.csr_matrix(
        (np.r_[np.ones(m), -np.ones(m)], (np.r_[np.arange(m), np.arange(m)], np.r_[i, j])), shape=(m, n)
    )
    return (inc.T @ inc).tocsr()


def _data_matrix(cur: np.ndarray, skin):
    """Sparse ``(n, 4m)`` matrix taking the nodes' affine maps to vertex positions:
    row ``i`` holds ``W_ik [p_i 1]`` in the 4 columns of node ``k`` (``skin`` W ``(n, m)`` csr)."""
    import scipy.sparse as sp

    n = len(cur)
    vh = np.concatenate([cur, np.ones((n, 1))], 1)
    if skin is None:
        rows = np.repeat(np.arange(n), 4)
        cols = np.arange(4 * n)
        return sp.csr_matrix((vh.ravel(), (rows, cols)), shape=(n, 4 * n))
    coo = skin.tocoo()
    rows = np.repeat(coo.row, 4)
    cols = (4 * coo.col[:, None] + np.arange(4)[None]).ravel()
    data = (coo.data[:, None] * vh[coo.row]).ravel()
    return sp.csr_matrix((data, (rows, cols)), shape=(n, 4 * skin.shape[1]))


def _blend(cur: np.ndarray, nodes: np.ndarray, weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``_data_matrix(cur, skin) @ x`` without building the matrix: each vertex ``(n, 3)`` moved by
    the affine maps ``x`` ``(4m, 3)`` of its nodes ``nodes`` ``(n, k)`` blended by ``weights`` ``(n, k)``."""
    maps = np.einsum("nk,nkde->nde", weights, x.reshape(-1, 4, 3)[nodes])
    return np.einsum("nd,nde->ne", cur, maps[:, :3]) + maps[:, 3]


def nested_dissection(edges: np.ndarray, points: np.ndarray, leaf: int = 64) -> np.ndarray:
    """Fill-reducing elimination order ``(n,)`` of a mesh's vertices ``points`` ``(n, 3)`` joined by
    ``edges`` ``(E, 2)``: geometric nested dissection. The vertex set is halved at the median along
    its principal axis, the halves ordered recursively and the separator (the vertices of the first
    half with a neighbour in the second) last. SuperLU's minimum-degree orderings give a factor
    of a 20k-vertex region several times denser (about 17 s to factor instead of well under 1 s)."""
    import scipy.sparse as sp

    n = len(points)
    adj = sp.csr_matrix((np.ones(2 * len(edges)), (np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]])),
                        shape=(n, n))
    order: list[np.ndarray] = []
    side = np.zeros(n, bool)

    def split(ids: np.ndarray) -> None:
        if len(ids) <= leaf:
            order.append(ids)
            return
        c = points[ids] - points[ids].mean(0)
        axis = np.linalg.svd(c.T @ c)[0][:, 0]
        proj = c @ axis
        first = proj < np.median(proj)
        if first.all() or not first.any():
            order.append(ids)
            return
        side[ids] = ~first
        # a vertex of the first half next to the second one separates them
        sep = first & (adj[ids] @ side.astype(np.float64) > 0)
        side[ids] = False
        split(ids[first & ~sep])
        split(ids[~first])
        order.append(ids[sep])

    split(np.arange(n))
    return np.concatenate(order) if order else np.zeros(0, np.int64)


class _Permuted:
    """A factorization of ``A[perm][:, perm]`` that solves ``A x = b``."""

    def __init__(self, lu, perm: np.ndarray):
        self.lu, self.perm = lu, perm

    def solve(self, b: np.ndarray) -> np.ndarray:
        x = np.empty_like(b)
        x[self.perm] = self.lu.solve(np.ascontiguousarray(b[self.perm]))
        return x


class _Solver:
    """Solves a sequence of nearby SPD systems ``A X = B`` ``(4m, 3)``: the last factorization
    preconditions a conjugate-gradient solve warm-started from the previous solution, and a new
    factorization is made when that converges slowly."""

    def __init__(self, rtol: float, refactor_iterations: int, order: np.ndarray | None = None):
        # order: the unknowns' elimination order (None: SuperLU's minimum degree)
        self.perm = order
        self.rtol = rtol
        self.refactor_iterations = refactor_iterations
        self.factor = None
        self.n_factor = 0
        self.n_iter = 0

    def _factorize(self, a):
        import scipy.sparse as sp
        import scipy.sparse.linalg as spla

        # the matrix is symmetric positive definite: diagonal pivots, symmetric ordering
        if self.perm is None:
            self.factor = spla.splu(sp.csc_matrix(a), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                                    options=dict(SymmetricMode=True))
        else:
            self.factor = _Permuted(spla.splu(sp.csc_matrix(a[self.perm][:, self.perm]), permc_spec="NATURAL",
                                              diag_pivot_thresh=0.0, options=dict(SymmetricMode=True)), self.perm)
        self.n_factor += 1

    def solve(self, a, b: np.ndarray, x0: np.ndarray | None, fresh: bool = False) -> np.ndarray:
        if fresh or self.factor is None or x0 is None:
            self._factorize(a)
            return self.factor.solve(b)
        x = self._pcg(a, b, x0)
        if x is None:
            self._factorize(a)
            x = self.factor.solve(b)
        return x

    def _pcg(self, a, b: np.ndarray, x0: np.ndarray) -> np.ndarray | None:
        """Column-wise preconditioned CG; None when it has not converged after
        ``refactor_iterations`` iterations."""
        x = x0.copy()
        r = b - a @ x
        bn = np.maximum(np.linalg.norm(b, axis=0), 1e-300)
        z = self.factor.solve(r)
        p = z.copy()
        rz = (r * z).sum(0)
        for _ in range(self.refactor_iterations):
            if (np.linalg.norm(r, axis=0) <= self.rtol * bn).all():
                return x
            ap = a @ p
            step = rz / np.maximum((p * ap).sum(0), 1e-300)
            x += step * p
            r -= step * ap
            z = self.factor.solve(r)
            rz_new = (r * z).sum(0)
            p = z + (rz_new / np.maximum(rz, 1e-300)) * p
            rz = rz_new
            self.n_iter += 1
        return x if (np.linalg.norm(r, axis=0) <= self.rtol * bn).all() else None


def optimal_step_nicp(
    vertices: np.ndarray,
    edges: np.ndarray,
    target_points: np.ndarray,
    keypoint_ids: np.ndarray,
    keypoint_targets: np.ndarray,
    cfg: NicpConfig,
    skin=None,
    all_vertices: np.ndarray | None = None,
    all_skin: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Deformed ``vertices`` ``(n, 3)`` after the REALY schedule, all in solver units.

    ``edges`` ``(E, 2)`` is the stiffness graph over the unknown affine maps: one map per vertex
    (``skin`` None, REALY's formulation) or one per node of a deformation graph, each vertex then
    moved by the blend ``skin`` ``(n, m)`` of its nodes' maps. ``keypoint_ids`` ``(k,)`` vertex
    indices pulled to ``keypoint_targets`` ``(k, 3)``; ``k = 0`` runs the keypoint-free schedule.
    With a graph, ``vertices`` may be a subset of the mesh's that drives the fit while
    ``all_vertices`` ``(N, 3)`` follow the maps, blended by ``all_skin`` = (node ids ``(N, k)``,
    weights ``(N, k)``); they are returned.
    """
    import scipy.sparse as sp
    from scipy.spatial import cKDTree

    n = len(vertices)
    m = n if skin is None else skin.shape[1]
    lap = _laplacian(edges, m)
    g2 = np.diag(np.array([1.0, 1.0, 1.0, cfg.gamma]) ** 2)
    g2_kp = np.diag(np.array([2.0, 2.0, 3.0, 2.0 * cfg.gamma]) ** 2)
    stiff = sp.kron(lap, sp.csr_matrix(g2)).tocsc()
    stiff_kp = sp.kron(lap, sp.csr_matrix(g2_kp)).tocsc()
    targets = np.asarray(target_points, dtype=np.float64)
    tree = cKDTree(targets)
    kp_ids = np.asarray(keypoint_ids, dtype=np.int64)
    kp_tgt = np.asarray(keypoint_targets, dtype=np.float64).reshape(-1, 3)
    has_kp = len(kp_ids) > 0

    kp_step = has_kp and cfg.keypoint_step
    if has_kp:
        stages = [(cfg.alpha_keypoints, 2.0 * cfg.epsilon)] if kp_step else []
        stages += [(cfg.alpha * np.exp(-0.5 * k), cfg.epsilon * 0.5**k) for k in range(3)]
    else:
        stages = [(cfg.alpha * np.exp(-0.5 * k), cfg.epsilon * 0.5**k) for k in range(3)]

    eye_maps = np.tile(np.eye(4)[:, :3], (m, 1))
    # REALY's convergence test sums the change over one map per vertex; with fewer maps (a
    # deformation graph) the same per-vertex change gives a norm sqrt(m / n) smaller
    norm_scale = np.sqrt((n if all_vertices is None else len(all_vertices)) / m)
    cur_all = None if all_vertices is None else np.asarray(all_vertices, dtype=np.float64).copy()
    x = np.ones((4 * m, 3))
    x_prev = np.zeros((4 * m, 3))
    cur = np.asarray(vertices, dtype=np.float64).copy()
    count = 0
    order = None
    if skin is None and m > 2000:
        vorder = nested_dissection(edges, np.asarray(vertices, dtype=np.float64))
        order = (4 * vorder[:, None] + np.arange(4)[None]).ravel()
    solver = _Solver(cfg.solver_rtol, cfg.refactor_iterations, order)
    solved = None  # the last solution, the next solve's starting point
    cap = cfg.max_steps if (has_kp or cfg.cap_keypoint_free) else 99
    for stage, (alpha, eps) in enumerate(stages):
        keypoint_only = kp_step and stage == 0
        step = 0
        while True:
            if np.linalg.norm(x - x_prev) * norm_scale <= eps or step > cap:
                break
            x_prev = x
            dmat = _data_matrix(cur, skin)
            if keypoint_only:
                lhs = alpha**2 * stiff_kp
                rhs = np.zeros((4 * m, 3))
            else:
                dist, idx = tree.query(cur, workers=-1)
                w = (dist < max(2.0 * dist.mean(), 1.0)).astype(np.float64)
                dw = sp.diags(w) @ dmat
                lhs = alpha**2 * stiff + dw.T @ dw
                rhs = dw.T @ (w[:, None] * targets[idx])
            if has_kp:
                kw = cfg.keypoint_weight if keypoint_only else cfg.keypoint_weight * np.exp(-0.9 * count) / 10.0
                dk = kw * dmat[kp_ids]
                lhs = lhs + dk.T @ dk
                rhs = rhs + dk.T @ (kw * kp_tgt)
            # a faint pull of every map towards the identity keeps the system regular where
            # nothing else fixes it (an island of the region with no keypoint in the keypoint step)
            lhs = lhs + cfg.regularization * sp.eye(4 * m)
            rhs = np.asarray(rhs) + cfg.regularization * eye_maps
            # the keypoint-only step's matrix has no data term: nothing before it is close
            x = solver.solve(lhs.tocsr(), rhs, solved, fresh=keypoint_only)
            # the step after the keypoint-only one is far from it: factor afresh
            solved = None if keypoint_only else x
            cur = dmat @ x
            if cur_all is not None:
                cur_all = _blend(cur_all, *all_skin, x)
            step += 1
            count += 1
            if keypoint_only:
                break
    return cur if cur_all is None else cur_all


def _cluster_graph(vertices: np.ndarray, triangles: np.ndarray, max_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Deformation graph of a mesh: vertices clustered on a voxel grid sized for about
    ``max_nodes`` clusters; nodes ``(m, 3)`` at cluster centroids, edges ``(E, 2)`` between
    clusters joined by a mesh edge (so the graph is connected wherever the mesh is)."""
    v = vertices
    f = triangles
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum()
    h = np.sqrt(max(area, 1e-12) / max_nodes)
    for _ in range(6):
        cell = np.floor(v / h).astype(np.int64)
        cell -= cell.min(0)
        span = cell.max(0) + 1
        # one integer per voxel: np.unique on a 1-D key is many times faster than on rows
        key = (cell[:, 0] * span[1] + cell[:, 1]) * span[2] + cell[:, 2]
        _, assign = np.unique(key, return_inverse=True)
        assign = assign.reshape(-1)
        m = int(assign.max()) + 1
        if m <= 1.15 * max_nodes:
            break
        h *= np.sqrt(m / max_nodes)
    counts = np.bincount(assign, minlength=m).astype(np.float64)
    nodes = np.stack([np.bincount(assign, weights=v[:, d], minlength=m) for d in range(3)], 1) / counts[:, None]
    e = _edges(f, len(v))
    a, b = assign[e[:, 0]], assign[e[:, 1]]
    keep = a != b
    pairs = np.sort(np.stack([a[keep], b[keep]], 1), 1)
    pairs = np.unique(pairs[:, 0] * m + pairs[:, 1])
    return nodes, np.stack([pairs // m, pairs % m], 1)


def nicp(
    vertices: np.ndarray,
    triangles: np.ndarray,
    target_points: np.ndarray,
    keypoint_ids: np.ndarray,
    keypoint_targets: np.ndarray,
    cfg: NicpConfig = NicpConfig(),
    origin: np.ndarray | None = None,
) -> np.ndarray:
    """Deform a mesh ``(n, 3)``/``(m, 3)`` (metres) towards ``target_points`` ``(T, 3)`` (metres).

    ``keypoint_ids`` ``(k,)`` vertex indices pulled to ``keypoint_targets`` ``(k, 3)`` metres.
    Returns the deformed vertices ``(n, 3)`` metres; the input is not modified.
    """
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(triangles, dtype=np.int64)
    # the stiffness of an affine map's translation part depends on where the origin is; the
    # caller fixes it (REALY: the scan's own frame), by default the region's centroid
    centre = v.mean(0) if origin is None else np.asarray(origin, dtype=np.float64)
    u = cfg.unit_m
    vs = (v - centre) / u
    tgt = (np.asarray(target_points, dtype=np.float64) - centre) / u
    kp_tgt = (np.asarray(keypoint_targets, dtype=np.float64).reshape(-1, 3) - centre) / u
    kp_ids = np.asarray(keypoint_ids, dtype=np.int64)

    if cfg.max_nodes is None or len(v) <= cfg.max_nodes:
        deformed = optimal_step_nicp(vs, _edges(f, len(v)), tgt, kp_ids, kp_tgt, cfg)
        return deformed * u + centre

    import scipy.sparse as sp

    nodes, node_edges = _cluster_graph(vs, f, cfg.max_nodes)
    if len(nodes) < 8:  # a graph this coarse cannot bend: solve per vertex
        return optimal_step_nicp(vs, _edges(f, len(v)), tgt, kp_ids, kp_tgt, cfg) * u + centre
    k = 4
    dist, idx = cKDTree(nodes).query(vs, k=k + 1)
    w = np.clip(1.0 - dist[:, :k] / np.maximum(dist[:, k:], 1e-12), 0.0, None) ** 2
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
    skin = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(len(vs)), k), idx[:, :k].ravel())), shape=(len(vs), len(nodes)))
    if cfg.max_data_points is not None and len(vs) > cfg.max_data_points:
        # the graph's 4 * max_nodes unknowns are pinned by a few thousand vertices as well as by
        # all of them; every vertex still follows the maps
        sub = np.random.default_rng(0).choice(len(vs), cfg.max_data_points, replace=False)
        sub = np.union1d(sub, kp_ids)
        pos = np.searchsorted(sub, kp_ids)
        deformed = optimal_step_nicp(vs[sub], node_edges, tgt, pos, kp_tgt, cfg, skin=skin[sub], all_vertices=vs,
                                     all_skin=(idx[:, :k], w))
    else:
        deformed = optimal_step_nicp(vs, node_edges, tgt, kp_ids, kp_tgt, cfg, skin=skin)
    return deformed * u + centre
