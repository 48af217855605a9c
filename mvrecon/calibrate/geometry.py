"""Small batched geometry helpers of the calibration modules (pose vectors, robust pose averaging,
projection with distortion, sparse Levenberg-Marquardt); rotations, fits and triangulation are in
:mod:`mvrecon.geometry`."""

from __future__ import annotations

import numpy as np

from ..geometry import axis_angle_to_matrix, matrix_to_axis_angle


def pose_to_vec(M: np.ndarray) -> np.ndarray:
    """(6,) rvec + t of a rigid 4x4."""
    return np.concatenate([matrix_to_axis_angle(M[:3, :3]), M[:3, 3]])


def vec_to_pose(v: np.ndarray) -> np.ndarray:
    """Rigid 4x4 from (6,) rvec + t."""
    M = np.eye(4)
    M[:3, :3] = axis_angle_to_matrix(v[:3])
    M[:3, 3] = v[3:6]
    return M


def project_points(Xc: np.ndarray, intr: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) of camera-frame points (N, 3) with per-point intrinsics ``intr`` (N, 4)
    (fx, fy, cx, cy) and OpenCV distortion ``dist`` (N, 5) (k1, k2, p1, p2, k3)."""
    x = Xc[:, 0] / Xc[:, 2]
    y = Xc[:, 1] / Xc[:, 2]
    k1, k2, p1, p2, k3 = dist.T
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([intr[:, 0] * xd + intr[:, 2], intr[:, 1] * yd + intr[:, 3]], 1)


def mean_rotation(Rs: np.ndarray) -> np.ndarray:
    """Chordal L2 mean (3, 3) of rotations (N, 3, 3)."""
    U, _, Vt = np.linalg.svd(np.sum(Rs, axis=0))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def robust_mean_pose(
    poses: np.ndarray, max_dev_deg: float = 2.0, max_dev_m: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """Robust average of rigid transforms (N, 4, 4): the medoid (least summed rotation angle)
    picks the inliers (within ``max_dev_deg`` and ``max_dev_m`` of it, or 3x the median
    deviation, whichever is larger), then the chordal mean rotation and the mean translation of
    the inliers. Returns the mean (4, 4) and the inlier mask (N,)."""
    P = np.asarray(poses, dtype=np.float64)
    R = P[:, :3, :3]
    t = P[:, :3, 3]
    cos = (np.einsum("aij,bij->ab", R, R) - 1) / 2
    ang = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    med = int(np.argmin(ang.sum(1) + np.linalg.norm(t[:, None] - t[None], axis=-1).sum(1) * 10))
    da = ang[med]
    dt = np.linalg.norm(t - t[med], axis=1)
    inl = (da <= max(max_dev_deg, 3 * np.median(da))) & (dt <= max(max_dev_m, 3 * np.median(dt)))
    out = np.eye(4)
    out[:3, :3] = mean_rotation(R[inl])
    out[:3, 3] = t[inl].mean(0)
    return out, inl


def sparse_lm(
    fun,
    x0: np.ndarray,
    sparsity,
    robust_weights=None,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    max_iter: int = 60,
    rtol: float = 1e-10,
) -> np.ndarray:
    """Levenberg-Marquardt for sparse least squares: minimise ``sum(w * fun(x)**2)``.

    The Jacobian is taken by finite differences over ``sparsity`` (an (M, P) 0/1 matrix; columns
    that share no residual are perturbed together, as in scipy's ``least_squares(jac_sparsity=...)``),
    the damped normal equations are solved with a sparse direct solver, and steps are projected
    onto ``[lower, upper]`` (bounds on a few pose parameters; a projected step is accepted only
    when it lowers the cost). ``robust_weights(r) -> (M,)`` gives IRLS weights (Huber etc.),
    recomputed each iteration; the cost minimised is then the robust one it induces.
    """
    import scipy.sparse as sp
    from scipy.optimize._numdiff import approx_derivative, group_columns
    from scipy.sparse.linalg import spsolve

    A = sp.csc_matrix(sparsity)
    groups = group_columns(A)
    lo = np.full(len(x0), -np.inf) if lower is None else lower
    hi = np.full(len(x0), np.inf) if upper is None else upper
    x = np.clip(np.asarray(x0, dtype=np.float64), lo, hi)

    def cost_of(r):
        w = np.ones_like(r) if robust_weights is None else robust_weights(r)
        return float(np.sum(w * r * r)), w

    r = fun(x)
    cost, w = cost_of(r)
    lam = 1e-4
    for _ in range(max_iter):
        J = approx_derivative(fun, x, method="2-point", sparsity=(A, groups)).tocsr()
        JtW = (J.T.multiply(w[None])).tocsr()
        H = (JtW @ J).tocsc()
        g = JtW @ r
        d = np.maximum(H.diagonal(), 1e-12)
        improved = False
        for _ in range(12):
            dx = spsolve((H + sp.diags(lam * d)).tocsc(), -g)
            xn = np.clip(x + dx, lo, hi)
            rn = fun(xn)
            # compare with the weights of the current linearisation (IRLS majorises the robust cost)
            cn, wn = cost_of(rn)
            if cn < cost:
                improved = True
                break
            lam *= 10
        if not improved:
            break
        rel = (cost - cn) / max(cost, 1e-300)
        x, r, cost, w = xn, rn, cn, wn
        lam = max(lam / 10, 1e-10)
        if rel < rtol:
            break
    return x
