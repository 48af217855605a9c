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

Solving. REALY factors every step's normal equations afresh with CHOLMOD, which is slow on a
subject's four regions. Here a step's system differs from the previous one only by
its data term (the vertices moved a little) and, between stages, by the stiffness weight, so a
float32 SuperLU factorization of an earlier step's matrix (in a nested-dissection order,
:func:`nested_dissection`) serves as the preconditioner of a block conjugate-gradient solve
warm-started from the previous maps. A new factorization is made for the first data step, when the
stiffness has dropped below a quarter of the factor's (REALY's third stage), and when a solve takes
more than :attr:`NicpConfig.refactor_iterations` iterations. The solution is the same to
:attr:`NicpConfig.vertex_solver_rtol` (relative residual); the figures do not move (bench/eval.py --parity).

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
from typing import Any

import numpy as np

from .. import threads


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
    """Relative residual at which a deformation graph's conjugate-gradient solve stops (1e-5
    already moves the robust protocol's figure on a 100k-vertex synthetic scan)."""
    vertex_solver_rtol: float = 1e-5
    """Relative residual at which a per-vertex step's block conjugate-gradient solve stops (1e-5 and
    1e-6 give the parity pair's regions alike; 1e-4 moves the mouth)."""
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


def nested_dissection(edges: np.ndarray, points: np.ndarray, leaf: int = 32) -> np.ndarray:
    """Fill-reducing elimination order ``(n,)`` of a mesh's vertices ``points`` ``(n, 3)`` joined by
    ``edges`` ``(E, 2)``: geometric nested dissection. The vertex set is halved at the median along
    one of four directions (its principal axis, the second one and the two diagonals between them),
    the one with the smallest separator (the vertices of the first half with a neighbour in the
    second); the halves are ordered recursively and the separator last. SuperLU's minimum-degree
    orderings give a factor of a 20k-vertex region several times denser (far slower to make) or, on
    the vertex graph, a slightly sparser factor that solves several times slower (small
    supernodes); the principal axis alone gives a nose region a longer separator and a factor
    slower to make and to apply."""
    import scipy.sparse as sp

    n = len(points)
    adj = sp.csr_matrix(
        (np.ones(2 * len(edges)), (np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]])), shape=(n, n)
    )
    order: list[np.ndarray] = []
    side = np.zeros(n, bool)

    def split(ids: np.ndarray) -> None:
        if len(ids) <= leaf:
            order.append(ids)
            return
        c = points[ids] - points[ids].mean(0)
        axes = np.linalg.svd(c.T @ c)[0]
        rows = adj[ids]
        best = None
        for d in (axes[:, 0], axes[:, 1], axes[:, 0] + axes[:, 1], axes[:, 0] - axes[:, 1]):
            proj = c @ d
            first = proj < np.median(proj)
            if first.all() or not first.any():
                continue
            side[ids] = ~first
            # a vertex of the first half next to the second one separates them
            sep = first & (rows @ side.astype(np.float64) > 0)
            side[ids] = False
            if best is None or sep.sum() < best[1].sum():
                best = (first, sep)
        if best is None:
            order.append(ids)
            return
        first, sep = best
        split(ids[first & ~sep])
        split(ids[~first])
        order.append(ids[sep])

    split(np.arange(n))
    return np.concatenate(order) if order else np.zeros(0, np.int64)


class _VertexSystem:
    """The per-vertex NICP step's normal equations and their solver.

    The matrix is ``alpha^2 kron(L, G^2) + blockdiag(B_i)`` over ``4n`` unknowns (4x3 per vertex):
    ``L`` the mesh's graph Laplacian, ``G^2`` diagonal ``(4,)``, ``B_i`` ``(4, 4)`` each vertex's
    data, keypoint and regularization terms. Everything is kept in a nested-dissection vertex order
    (:func:`nested_dissection`) and the matrix is filled into a fixed sparse pattern.

    - A data step is solved by block conjugate gradients to :attr:`NicpConfig.vertex_solver_rtol`,
      preconditioned by a float32 SuperLU factorization of an earlier data step's matrix (factored
      afresh when asked, when the step's stiffness is below ``1 / refactor_stiffness_ratio`` of
      the factor's, or when the solve needs more than ``refactor_iterations`` iterations).
      The solve's speed is bound by reading the factor; float32 halves that, and the iterations in
      float64 make up for its precision.
    - The keypoint-only step's matrix is the stiffness plus one rank-1 block per keypoint. The
      stiffness alone separates into one scalar Laplacian system per entry of ``G^2``, so the step
      is solved exactly by the Woodbury identity: scalar factorizations, one solve per keypoint and
      a keypoints x keypoints system, instead of factoring the whole matrix.

    A data step that does not converge falls back on a float64 factorization of its own matrix.
    """

    def __init__(
        self,
        edges: np.ndarray,
        points: np.ndarray,
        rtol: float,
        refactor_iterations: int,
        refactor_stiffness_ratio: float = 4.0,
    ):
        import scipy.sparse as sp

        n = len(points)
        self.n, self.rtol, self.refactor_iterations = n, rtol, refactor_iterations
        self.refactor_stiffness_ratio = refactor_stiffness_ratio
        order = nested_dissection(
            np.asarray(edges, dtype=np.int64).reshape(-1, 2), np.asarray(points, dtype=np.float64)
        )
        self.order = order
        newid = np.empty(n, np.int64)
        newid[order] = np.arange(n)
        e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        e = newid[e[e[:, 0] != e[:, 1]]]  # a degenerate triangle's self-loop adds no stiffness
        self.lap = _laplacian(e, n)  # in the new order
        self.deg = np.asarray(self.lap.diagonal())
        # the matrix's pattern: each vertex's dense 4x4 block and, per edge and direction, the 4
        # diagonal entries of kron(L, G^2); `src` says where each stored entry's value comes from
        # in [blocks (n*16), -alpha^2 G^2 (4)]
        ar = np.arange(4)
        v = np.arange(n)
        rows_d = (4 * v[:, None, None] + ar[None, :, None]) + 0 * ar[None, None, :]
        cols_d = (4 * v[:, None, None] + ar[None, None, :]) + 0 * ar[None, :, None]
        src_d = np.arange(16 * n)
        both = np.concatenate([e, e[:, ::-1]], 0)
        rows_e = (4 * both[:, :1] + ar).ravel()
        cols_e = (4 * both[:, 1:] + ar).ravel()
        src_e = 16 * n + np.tile(ar, len(both))
        rows = np.r_[rows_d.ravel(), rows_e]
        cols = np.r_[cols_d.ravel(), cols_e]
        src = np.r_[src_d, src_e].astype(np.float64) + 1.0  # +1: no source id is a stored zero
        pattern = sp.csc_matrix((src, (rows, cols)), shape=(4 * n, 4 * n))
        pattern.sort_indices()
        self.indptr, self.indices = pattern.indptr, pattern.indices
        self.src = pattern.data.astype(np.int64) - 1
        self.factor: Any = None  # float32 factor of an earlier data step's matrix
        self.factor_alpha2 = 0.0  # that matrix's stiffness weight
        self.scalar: dict[tuple[float, float], Any] = {}  # the keypoint step's scalar factors, by alpha^2 g^2
        self.n_factor = 0
        self.n_iter = 0

    def to_new(self, a: np.ndarray) -> np.ndarray:
        """Per-vertex array ``(n, ...)`` in the solver's vertex order."""
        return a[self.order]

    def from_new(self, a: np.ndarray) -> np.ndarray:
        out = np.empty_like(a)
        out[self.order] = a
        return out

    def _matrix(self, alpha2: float, g2: np.ndarray, blocks: np.ndarray):
        import scipy.sparse as sp

        full = blocks + (alpha2 * self.deg)[:, None, None] * np.diag(g2)
        vals = np.r_[full.ravel(), -alpha2 * g2][self.src]
        return sp.csc_matrix((vals, self.indices, self.indptr), shape=(4 * self.n, 4 * self.n))

    def _matvec(self, alpha2: float, g2: np.ndarray, blocks: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``A x`` for maps ``x`` ``(n, 4, 3)`` from the structure (cheaper than the stored matrix)."""
        lx = (self.lap @ x.reshape(self.n, 12)).reshape(self.n, 4, 3)
        return alpha2 * g2[None, :, None] * lx + blocks @ x

    def _factor32(self, a):
        import scipy.sparse.linalg as spla

        self.n_factor += 1
        dtype = np.float32
        try:
            lu = spla.splu(
                a.astype(dtype), permc_spec="NATURAL", diag_pivot_thresh=0.0, options=dict(SymmetricMode=True)
            )
        except RuntimeError:  # a pivot that only the faint regularization keeps off zero is 0 in float32
            dtype = np.float64
            lu = spla.splu(
                a.astype(dtype), permc_spec="NATURAL", diag_pivot_thresh=0.0, options=dict(SymmetricMode=True)
            )
        return lambda r: lu.solve(r.reshape(-1, 3).astype(dtype)).astype(np.float64).reshape(self.n, 4, 3)

    def _stiffness_solves(self, alpha2: float, g2: np.ndarray, reg: float) -> list:
        """Per component ``c``, a factorization of ``alpha2 g2[c] L + reg I`` (cached)."""
        import scipy.sparse as sp
        import scipy.sparse.linalg as spla

        out = []
        for c in range(4):
            key = (float(alpha2 * g2[c]), float(reg))
            if key not in self.scalar:
                m = (key[0] * self.lap + reg * sp.eye(self.n)).tocsc()
                self.scalar[key] = spla.splu(
                    m, permc_spec="NATURAL", diag_pivot_thresh=0.0, options=dict(SymmetricMode=True)
                )
            out.append(self.scalar[key])
        return out

    def _keypoint_step(
        self, alpha2: float, g2: np.ndarray, reg: float, rhs: np.ndarray, kp_ids: np.ndarray, kp_vecs: np.ndarray
    ) -> np.ndarray:
        """Exact solve of ``(S + sum_j e_j e_j^T (x) c_j c_j^T) X = rhs`` by the Woodbury identity,
        ``S = alpha2 kron(L, G^2) + reg I``: keypoint ``j`` at vertex ``kp_ids[j]`` (new order)
        with ``c_j = kp_vecs[j]`` ``(4,)``. ``rhs`` ``(n, 4, 3)``."""
        solves = self._stiffness_solves(alpha2, g2, reg)
        k = len(kp_ids)
        unit = np.zeros((self.n, k))
        unit[kp_ids, np.arange(k)] = 1.0
        cache: dict[int, np.ndarray] = {}
        e = []  # per component, S_c^-1 at the keypoints' vertices (n, k)
        for c in range(4):
            if id(solves[c]) not in cache:
                cache[id(solves[c])] = solves[c].solve(unit)
            e.append(cache[id(solves[c])])
        y = np.empty_like(rhs)
        for c in range(4):
            y[:, c] = solves[c].solve(np.ascontiguousarray(rhs[:, c]))
        # capacitance I + C S^-1 C^T, (k, k)
        cap = np.eye(k) + sum(kp_vecs[:, c, None] * kp_vecs[None, :, c] * e[c][kp_ids] for c in range(4))
        t = np.einsum("jc,jcd->jd", kp_vecs, y[kp_ids])  # C y, (k, 3)
        z = np.linalg.solve(cap, t)
        for c in range(4):
            y[:, c] -= e[c] @ (kp_vecs[:, c, None] * z)
        return y

    def solve_keypoint_step(
        self, alpha2: float, g2: np.ndarray, reg: float, rhs: np.ndarray, kp_ids: np.ndarray, kp_vecs: np.ndarray
    ) -> np.ndarray:
        """Maps ``(n, 4, 3)`` of the keypoint-only step (caller's vertex order): stiffness ``alpha2``,
        ``G^2`` ``(4,)``, regularization ``reg``, keypoint blocks ``c_j c_j^T`` at vertices ``kp_ids``
        ``(k,)`` with ``c_j = kp_vecs[j]`` ``(k, 4)``."""
        newid = np.empty(self.n, np.int64)
        newid[self.order] = np.arange(self.n)
        return self.from_new(self._keypoint_step(alpha2, g2, reg, self.to_new(rhs), newid[kp_ids], kp_vecs))

    def solve(
        self, alpha2: float, g2: np.ndarray, blocks: np.ndarray, rhs: np.ndarray, x0: np.ndarray | None, fresh: bool
    ) -> np.ndarray:
        """Maps ``(n, 4, 3)`` solving a data step (arrays in the caller's vertex order; ``blocks``
        ``(n, 4, 4)`` hold the data, keypoint and regularization terms); ``fresh``: factor this
        step's matrix for the preconditioner."""
        b = self.to_new(blocks)
        r = self.to_new(rhs)
        x = None if x0 is None else self.to_new(x0)
        matvec = lambda v: self._matvec(alpha2, g2, b, v)  # noqa: E731
        # a factor made with a stiffness several times this step's preconditions it poorly (REALY's
        # third stage, e^-2 of the first: several times the iterations a factor of its own needs)
        if fresh or self.factor is None or alpha2 * self.refactor_stiffness_ratio < self.factor_alpha2:
            self.factor = self._factor32(self._matrix(alpha2, g2, b))
            self.factor_alpha2 = alpha2
            fresh = True
        x = self._pcg(matvec, r, x, self.factor, self.refactor_iterations)
        if x is None and not fresh:
            self.factor = self._factor32(self._matrix(alpha2, g2, b))
            self.factor_alpha2 = alpha2
            x = self._pcg(matvec, r, None, self.factor, 10 * self.refactor_iterations)
        if x is None:  # not converged: a direct float64 solve of this step's own matrix
            import scipy.sparse.linalg as spla

            self.n_factor += 1
            lu = spla.splu(
                self._matrix(alpha2, g2, b),
                permc_spec="NATURAL",
                diag_pivot_thresh=0.0,
                options=dict(SymmetricMode=True),
            )
            x = lu.solve(r.reshape(-1, 3)).reshape(self.n, 4, 3)
        return self.from_new(x)

    def _pcg(self, matvec, b: np.ndarray, x0: np.ndarray | None, prec, max_iter: int) -> np.ndarray | None:
        """Block preconditioned CG (O'Leary 1980) from ``x0`` (None: from the preconditioned
        right-hand side): the right-hand side's columns share one search space, which takes fewer
        iterations than a CG per column (on the parity pair). None when the relative
        residual of a column is not below ``rtol`` after ``max_iter`` iterations (or the float32
        preconditioner is useless here: a direction only the faint regularization pins, such as the
        normal row of a flat patch's maps, is below float32's precision)."""
        shape = b.shape
        flat = lambda a: a.reshape(-1, shape[-1])  # noqa: E731
        norms = lambda a: np.sqrt(np.einsum("ij,ij->j", flat(a), flat(a)))  # noqa: E731
        bn = np.maximum(norms(b), 1e-300)
        done = lambda r: (norms(r) <= self.rtol * bn).all()  # noqa: E731
        # the columns' small systems: least squares, as a converged column makes them singular
        small = lambda a, c: np.linalg.lstsq(a, c, rcond=1e-12)[0]  # noqa: E731
        with np.errstate(over="ignore", invalid="ignore"):
            x = prec(b) if x0 is None else x0.copy()
            r = b - matvec(x)
            z = prec(r)
            p = z.copy()
            rz = flat(z).T @ flat(r)
            for _ in range(max_iter):
                if done(r):
                    return x
                ap = matvec(p)
                step = small(flat(p).T @ flat(ap), rz)
                if not np.isfinite(step).all():
                    return None
                flat(x)[:] += flat(p) @ step
                flat(r)[:] -= flat(ap) @ step
                z = prec(r)
                rz_new = flat(z).T @ flat(r)
                p = z + (flat(p) @ small(rz, rz_new)).reshape(shape)
                rz = rz_new
                self.n_iter += 1
                if not np.isfinite(rz).all():
                    return None
            return x if done(r) else None


class _Solver:
    """Solves a sequence of nearby SPD systems ``A X = B`` ``(4m, 3)`` of a deformation graph's
    maps: the last factorization preconditions a conjugate-gradient solve warm-started from the
    previous solution, and a new factorization is made when that converges slowly."""

    def __init__(self, rtol: float, refactor_iterations: int):
        self.rtol = rtol
        self.refactor_iterations = refactor_iterations
        self.factor: Any = None  # scipy's SuperLU
        self.n_factor = 0
        self.n_iter = 0

    def _factorize(self, a):
        import scipy.sparse as sp
        import scipy.sparse.linalg as spla

        # the matrix is symmetric positive definite: diagonal pivots, symmetric ordering
        self.factor = spla.splu(
            sp.csc_matrix(a), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options=dict(SymmetricMode=True)
        )
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
    g2 = np.diag(np.array([1.0, 1.0, 1.0, cfg.gamma]) ** 2)
    g2_kp = np.diag(np.array([2.0, 2.0, 3.0, 2.0 * cfg.gamma]) ** 2)
    if skin is not None:
        lap = _laplacian(edges, m)
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
    if skin is None:
        system = _VertexSystem(edges, cur, cfg.vertex_solver_rtol, cfg.refactor_iterations)
        g2_diag, g2_kp_diag = np.diag(g2).copy(), np.diag(g2_kp).copy()
        reg_block = cfg.regularization * np.eye(4)
    else:
        solver = _Solver(cfg.solver_rtol, cfg.refactor_iterations)
    solved = None  # the last solution, the next solve's starting point
    cap = cfg.max_steps if (has_kp or cfg.cap_keypoint_free) else 99
    for stage, (alpha, eps) in enumerate(stages):
        keypoint_only = kp_step and stage == 0
        step = 0
        while True:
            if np.linalg.norm(x - x_prev) * norm_scale <= eps or step > cap:
                break
            x_prev = x
            kw = 0.0
            if has_kp:
                kw = cfg.keypoint_weight if keypoint_only else cfg.keypoint_weight * np.exp(-0.9 * count) / 10.0
            if skin is None:
                maps = _vertex_step(
                    system,
                    cur,
                    tree,
                    targets,
                    kp_ids,
                    kp_tgt,
                    kw,
                    alpha,
                    g2_kp_diag if keypoint_only else g2_diag,
                    reg_block,
                    keypoint_only,
                    None if solved is None else solved.reshape(n, 4, 3),
                    cfg.regularization,
                )
                x = maps.reshape(4 * n, 3)
                cur = np.einsum("ni,nic->nc", np.concatenate([cur, np.ones((n, 1))], 1), maps)
            else:
                dmat = _data_matrix(cur, skin)
                if keypoint_only:
                    lhs = alpha**2 * stiff_kp
                    rhs = np.zeros((4 * m, 3))
                else:
                    dist, idx = tree.query(cur, workers=threads.count())
                    w = (dist < max(2.0 * dist.mean(), 1.0)).astype(np.float64)
                    dw = sp.diags(w) @ dmat
                    lhs = alpha**2 * stiff + dw.T @ dw
                    rhs = dw.T @ (w[:, None] * targets[idx])
                if has_kp:
                    dk = kw * dmat[kp_ids]
                    lhs = lhs + dk.T @ dk
                    rhs = rhs + dk.T @ (kw * kp_tgt)
                # a faint pull of every map towards the identity keeps the system regular where
                # nothing else fixes it (an island of the region with no keypoint in the keypoint step)
                lhs = lhs + cfg.regularization * sp.eye(4 * m)
                rhs = np.asarray(rhs) + cfg.regularization * eye_maps
                # the keypoint-only step's matrix has no data term: nothing before it is close
                x = solver.solve(lhs.tocsr(), rhs, solved, fresh=keypoint_only)
                cur = dmat @ x
            # the step after the keypoint-only one is far from it: factor afresh
            solved = None if keypoint_only else x
            if cur_all is not None:
                assert all_skin is not None, "all_vertices come with their all_skin"
                cur_all = _blend(cur_all, all_skin[0], all_skin[1], x)
            step += 1
            count += 1
            if keypoint_only:
                break
    return cur if cur_all is None else cur_all


def _vertex_step(
    system: _VertexSystem,
    cur: np.ndarray,
    tree,
    targets: np.ndarray,
    kp_ids: np.ndarray,
    kp_tgt: np.ndarray,
    kw: float,
    alpha: float,
    g2: np.ndarray,
    reg_block: np.ndarray,
    keypoint_only: bool,
    x0: np.ndarray | None,
    reg: float,
) -> np.ndarray:
    """One step with one affine map per vertex: the maps ``(n, 4, 3)`` taking the current vertices
    ``(n, 3)`` towards their closest targets (data term weight 1 within REALY's outlier threshold,
    else 0) and the keypoints to theirs (weight ``kw``), under stiffness ``alpha`` and ``G^2`` ``(4,)``."""
    n = len(cur)
    vh = np.concatenate([cur, np.ones((n, 1))], 1)
    blocks = np.broadcast_to(reg_block, (n, 4, 4)).copy()
    rhs = np.broadcast_to(reg * np.eye(4)[:, :3], (n, 4, 3)).copy()
    if not keypoint_only:
        dist, idx = tree.query(cur, workers=threads.count())
        w = (dist < max(2.0 * dist.mean(), 1.0)).astype(np.float64)
        blocks += w[:, None, None] * vh[:, :, None] * vh[:, None, :]
        rhs += w[:, None, None] * vh[:, :, None] * targets[idx][:, None, :]
    if len(kp_ids):
        vk = vh[kp_ids]
        np.add.at(rhs, kp_ids, kw**2 * vk[:, :, None] * kp_tgt[:, None, :])
        if keypoint_only:
            return system.solve_keypoint_step(alpha**2, g2, reg, rhs, kp_ids, kw * vk)
        np.add.at(blocks, kp_ids, kw**2 * vk[:, :, None] * vk[:, None, :])
    return system.solve(alpha**2, g2, blocks, rhs, x0, fresh=x0 is None)


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
    from threadpoolctl import threadpool_limits

    # BLAS calls here are small (a block CG's 3x3 systems, 4x4 blocks): a second BLAS thread only
    # spins (about a third more CPU time on the parity pair for a little less wall time)
    with threadpool_limits(limits=1, user_api="blas"):
        return _nicp(vertices, triangles, target_points, keypoint_ids, keypoint_targets, cfg, origin)


def _nicp(vertices, triangles, target_points, keypoint_ids, keypoint_targets, cfg, origin):
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
    skin = sp.csr_matrix(
        (w.ravel(), (np.repeat(np.arange(len(vs)), k), idx[:, :k].ravel())), shape=(len(vs), len(nodes))
    )
    if cfg.max_data_points is not None and len(vs) > cfg.max_data_points:
        # the graph's 4 * max_nodes unknowns are pinned by a few thousand vertices as well as by
        # all of them; every vertex still follows the maps
        sub = np.random.default_rng(0).choice(len(vs), cfg.max_data_points, replace=False)
        sub = np.union1d(sub, kp_ids)
        pos = np.searchsorted(sub, kp_ids)
        deformed = optimal_step_nicp(
            vs[sub], node_edges, tgt, pos, kp_tgt, cfg, skin=skin[sub], all_vertices=vs, all_skin=(idx[:, :k], w)
        )
    else:
        deformed = optimal_step_nicp(vs, node_edges, tgt, kp_ids, kp_tgt, cfg, skin=skin)
    return deformed * u + centre
