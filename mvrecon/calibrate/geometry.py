"""Small batched geometry helpers shared by the calibration modules (rotations, rigid transforms,
robust pose averaging, alignment, triangulation, projection with distortion)."""

from __future__ import annotations

import numpy as np

from ..cameras import invert_rigid


def rodrigues_batch(rvecs: np.ndarray) -> np.ndarray:
    """Rotation matrices (N, 3, 3) from axis-angle vectors (N, 3), radians."""
    r = np.asarray(rvecs, dtype=np.float64).reshape(-1, 3)
    theta = np.linalg.norm(r, axis=1)
    small = theta < 1e-12
    k = r / np.where(small, 1.0, theta)[:, None]
    Kx = np.zeros((len(r), 3, 3))
    Kx[:, 0, 1], Kx[:, 0, 2] = -k[:, 2], k[:, 1]
    Kx[:, 1, 0], Kx[:, 1, 2] = k[:, 2], -k[:, 0]
    Kx[:, 2, 0], Kx[:, 2, 1] = -k[:, 1], k[:, 0]
    s = np.sin(theta)[:, None, None]
    c = (1 - np.cos(theta))[:, None, None]
    R = np.eye(3)[None] + s * Kx + c * Kx @ Kx
    # first-order form where the angle is tiny (k is undefined there)
    if np.any(small):
        rs = r[small]
        Ks = np.zeros((len(rs), 3, 3))
        Ks[:, 0, 1], Ks[:, 0, 2] = -rs[:, 2], rs[:, 1]
        Ks[:, 1, 0], Ks[:, 1, 2] = rs[:, 2], -rs[:, 0]
        Ks[:, 2, 0], Ks[:, 2, 1] = -rs[:, 1], rs[:, 0]
        R[small] = np.eye(3)[None] + Ks
    return R


def rotvec(R: np.ndarray) -> np.ndarray:
    """Axis-angle vector (3,) of a rotation matrix (3, 3)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_rotvec()


def pose_to_vec(M: np.ndarray) -> np.ndarray:
    """(6,) rvec + t of a rigid 4x4."""
    return np.concatenate([rotvec(M[:3, :3]), M[:3, 3]])


def vec_to_pose(v: np.ndarray) -> np.ndarray:
    """Rigid 4x4 from (6,) rvec + t."""
    M = np.eye(4)
    M[:3, :3] = rodrigues_batch(v[None, :3])[0]
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


def robust_mean_pose(poses: np.ndarray, max_dev_deg: float = 2.0, max_dev_m: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
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


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R (3, 3), t (3,)) minimising ||dst - (s R src + t)||, points (N, 3)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / (a**2).sum(1).mean()) if with_scale else 1.0
    return s, R, mu_d - s * R @ mu_s


def relative_pose(a_world_to_cam: np.ndarray, b_world_to_cam: np.ndarray) -> np.ndarray:
    """``b_from_a`` (4, 4) between two world-to-camera transforms."""
    return np.asarray(b_world_to_cam) @ invert_rigid(a_world_to_cam)


def triangulate(P: np.ndarray, xn: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linear (DLT) triangulation of M points from C views.

    Args:
        P: (C, 3, 4) world-to-camera [R | t] (normalized coordinates, no K).
        xn: (M, C, 2) undistorted normalized observations.
        valid: (M, C) bool, which views observe each point.
    Returns:
        (M, 3) world points (NaN where fewer than two views).
    """
    M, C = valid.shape
    rows = xn[..., 0:1] * P[None, :, 2, :] - P[None, :, 0, :]
    rows2 = xn[..., 1:2] * P[None, :, 2, :] - P[None, :, 1, :]
    A = np.concatenate([rows, rows2], axis=1) * np.concatenate([valid, valid], 1)[..., None]
    _, _, Vt = np.linalg.svd(A)
    X = Vt[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = X[:, :3] / X[:, 3:4]
    out[valid.sum(1) < 2] = np.nan
    return out


def sparse_lm(fun, x0: np.ndarray, sparsity, robust_weights=None, lower: np.ndarray | None = None,
              upper: np.ndarray | None = None, max_iter: int = 60, rtol: float = 1e-10) -> np.ndarray:
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
