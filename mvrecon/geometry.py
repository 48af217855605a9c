"""Shared geometry, one implementation of each routine: rotation conversions (named by direction,
as pytorch3d does), similarity and rigid fits, linear triangulation, vertex normals and camera
centres.

numpy in, float64 numpy out, unless a function says it also takes torch tensors (then the result is
a tensor of the input's dtype and device, differentiable). Inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

import numpy as np

if TYPE_CHECKING:
    import torch

# --------------------------------------------------------------------------------------------
# rotations


def skew(k: np.ndarray) -> np.ndarray:
    """Cross-product matrices (..., 3, 3), float64, of vectors (..., 3): ``skew(k) @ x == k x x``."""
    K = np.zeros((*k.shape[:-1], 3, 3))
    K[..., 0, 1], K[..., 0, 2] = -k[..., 2], k[..., 1]
    K[..., 1, 0], K[..., 1, 2] = k[..., 2], -k[..., 0]
    K[..., 2, 0], K[..., 2, 1] = -k[..., 1], k[..., 0]
    return K


@overload
def axis_angle_to_matrix(r: torch.Tensor) -> torch.Tensor: ...
@overload
def axis_angle_to_matrix(r: np.ndarray | Sequence[float]) -> np.ndarray: ...
def axis_angle_to_matrix(r: Any) -> Any:
    """Rotation matrices (..., 3, 3) from axis-angle vectors (..., 3), radians (Rodrigues).

    numpy: exact, with the first-order form ``I + [r]_x`` below 1e-12 rad (the axis is undefined
    there). torch: smooth at zero (the angle carries a 1e-16 guard), so it can be optimised through.
    """
    if not isinstance(r, (np.ndarray, list, tuple)):
        return _axis_angle_to_matrix_torch(r)
    rv = np.asarray(r, dtype=np.float64)
    theta = np.linalg.norm(rv, axis=-1)
    small = theta < 1e-12
    K = skew(rv / np.where(small, 1.0, theta)[..., None])
    s = np.sin(theta)[..., None, None]
    c = (1 - np.cos(theta))[..., None, None]
    R = np.eye(3) + s * K + c * K @ K
    if np.any(small):
        R[small] = np.eye(3) + skew(rv[small])
    return R


def _axis_angle_to_matrix_torch(r: torch.Tensor) -> torch.Tensor:
    import torch

    theta = torch.sqrt((r * r).sum(-1, keepdim=True) + 1e-16)
    k = r / theta
    K = torch.zeros(*r.shape[:-1], 3, 3, dtype=r.dtype, device=r.device)
    K[..., 0, 1], K[..., 0, 2] = -k[..., 2], k[..., 1]
    K[..., 1, 0], K[..., 1, 2] = k[..., 2], -k[..., 0]
    K[..., 2, 0], K[..., 2, 1] = -k[..., 1], k[..., 0]
    s = torch.sin(theta)[..., None]
    c = torch.cos(theta)[..., None]
    eye = torch.eye(3, dtype=r.dtype, device=r.device).expand_as(K)
    return eye + s * K + (1 - c) * (K @ K)


def matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    """Axis-angle vectors (..., 3), radians in [0, pi], of rotation matrices (..., 3, 3)."""
    from scipy.spatial.transform import Rotation

    M = np.asarray(R, dtype=np.float64)
    return Rotation.from_matrix(M.reshape(-1, 3, 3)).as_rotvec().reshape(*M.shape[:-2], 3)


def quaternion_to_matrix(q: Sequence[float] | np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) from a quaternion (w, x, y, z) (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Quaternion (w, x, y, z) with w >= 0 from a rotation matrix (3, 3) (Shepperd's method)."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2]) * 2
        q = [(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif R[1, 1] > R[2, 2]:
        s = np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2]) * 2
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s]
    else:
        s = np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1]) * 2
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s]
    out = np.array(q)
    out /= np.linalg.norm(out)
    return -out if out[0] < 0 else out


# --------------------------------------------------------------------------------------------
# similarity and rigid fits


@dataclass(frozen=True)
class Similarity:
    """``x -> scale * rotation @ x + translation`` (rotation ``(3, 3)``, translation ``(3,)`` metres)."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transformed copy of ``points`` ``(N, 3)``."""
        return self.scale * np.asarray(points) @ self.rotation.T + self.translation

    def inverse(self) -> Similarity:
        rt = self.rotation.T
        return Similarity(1.0 / self.scale, rt, -(rt @ self.translation) / self.scale)

    def then(self, other: Similarity) -> Similarity:
        """The transform applying ``self`` first, then ``other``."""
        return Similarity(
            other.scale * self.scale,
            other.rotation @ self.rotation,
            other.scale * other.rotation @ self.translation + other.translation,
        )

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous matrix."""
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = self.translation
        return m


IDENTITY = Similarity(1.0, np.eye(3), np.zeros(3))


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, with_scale: bool = True) -> Similarity:
    """Least-squares similarity (Umeyama 1991) mapping ``src`` ``(N, 3)`` onto ``dst`` ``(N, 3)``.

    Minimises ``sum_i w_i |s R src_i + t - dst_i|^2`` (``weights`` ``(N,)``, relative; uniform when
    None); reflections are excluded. With ``with_scale=False`` it is the weighted Kabsch rigid fit.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s = w @ src
    mu_d = w @ dst
    xs = src - mu_s
    xd = dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    rot = u @ np.diag(d) @ vt
    if with_scale:
        var_s = float(w @ (xs**2).sum(1))
        scale = float((sig * d).sum() / var_s) if var_s > 0 else 1.0
    else:
        scale = 1.0
    return Similarity(scale, rot, mu_d - scale * rot @ mu_s)


# --------------------------------------------------------------------------------------------
# triangulation


def triangulate_homogeneous(
    P: np.ndarray, x: np.ndarray, weights: np.ndarray | None = None, normalize_rows: bool = False
) -> np.ndarray:
    """Linear (DLT) triangulation of M points from C views, as homogeneous points.

    Args:
        P: (C, 3, 4) projections, or (M, C, 3, 4) per point (``K [R | t]`` with pixels, ``[R | t]``
            with normalized coordinates).
        x: (M, C, 2) undistorted observations in the same units.
        weights: (M, C) weights of each view's two equations (0 leaves a view out); None: all 1.
        normalize_rows: scale each weighted equation to unit length before the solve (better
            conditioned with pixels; the weights then only tell used from unused).
    Returns:
        (M, 4) unit homogeneous points (the sign is arbitrary; ``X[:, 3]`` near 0: at infinity).
    """
    P = np.asarray(P, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    Pb = np.broadcast_to(P, (x.shape[0], *P.shape[-3:]))
    rows = np.concatenate(
        [x[..., 0:1] * Pb[..., 2, :] - Pb[..., 0, :], x[..., 1:2] * Pb[..., 2, :] - Pb[..., 1, :]], axis=1
    )  # (M, 2C, 4)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        rows = rows * np.concatenate([w, w], axis=1)[..., None]
    if normalize_rows:
        rows = rows / np.linalg.norm(rows, axis=-1, keepdims=True).clip(1e-12)
    return np.linalg.svd(rows)[2][:, -1]


def triangulate(
    P: np.ndarray, x: np.ndarray, weights: np.ndarray | None = None, normalize_rows: bool = False
) -> np.ndarray:
    """World points (M, 3) of :func:`triangulate_homogeneous` (same arguments); NaN where fewer
    than two views have a non-zero weight."""
    X = triangulate_homogeneous(P, x, weights, normalize_rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = X[:, :3] / X[:, 3:4]
    used = np.full(x.shape[:2], True) if weights is None else np.asarray(weights) != 0
    out[used.sum(1) < 2] = np.nan
    return out


# --------------------------------------------------------------------------------------------
# normals


@overload
def vertex_normals(verts: torch.Tensor, faces: Any) -> torch.Tensor: ...
@overload
def vertex_normals(verts: np.ndarray, faces: Any) -> np.ndarray: ...
def vertex_normals(verts: Any, faces: Any) -> Any:
    """Unit area-weighted vertex normals, the shape of ``verts``; counter-clockwise triangles ``faces``
    (F, 3) (seen from outside) give outward normals; unreferenced vertices get 0.

    numpy ``verts`` (N, 3): float64. torch ``verts`` (N, 3) or (B, N, 3): differentiable, the input's
    dtype and device.
    """
    if not isinstance(verts, np.ndarray):
        return _vertex_normals_torch(verts, faces)
    v = np.asarray(verts, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v)
    for c in range(3):
        n[:, c] = np.bincount(f.reshape(-1), weights=np.repeat(fn[:, c], 3), minlength=len(v))
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)


def _vertex_normals_torch(verts: torch.Tensor, faces: Any) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    if verts.ndim not in (2, 3) or verts.shape[-1] != 3:
        raise ValueError(f"vertex_normals: verts must be (N, 3) or (B, N, 3), got {tuple(verts.shape)}")
    faces = torch.as_tensor(faces, device=verts.device).to(dtype=torch.long)
    batched = verts if verts.ndim == 3 else verts[None]
    B, N = batched.shape[:2]
    flat = batched.reshape(B * N, 3)
    # one flat gather and one index_add over all views and corners (dim-0 ops are the fast path)
    corners = (faces.T.reshape(1, 3, -1) + (torch.arange(B, device=verts.device) * N).reshape(B, 1, 1)).reshape(B, -1)
    p = flat.index_select(0, corners.reshape(-1)).reshape(B, 3, -1, 3)
    # the cross product's length is twice the triangle area: the area weighting comes for free
    fn = torch.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=-1)  # (B, F, 3)
    acc = flat.new_zeros(B * N, 3).index_add(0, corners.reshape(-1), fn[:, None].expand(B, 3, -1, 3).reshape(-1, 3))
    n = F.normalize(acc.reshape(B, N, 3), dim=-1, eps=1e-20)
    return n if verts.ndim == 3 else n[0]


# --------------------------------------------------------------------------------------------
# cameras


def camera_centres(world_to_cam: torch.Tensor) -> torch.Tensor:
    """World positions (V, 3) of the cameras of rigid transforms ``world_to_cam`` (V, 4, 4):
    ``-R^T t``, in the input's dtype and device (differentiable)."""
    R, t = world_to_cam[:, :3, :3], world_to_cam[:, :3, 3]
    return -(R.transpose(1, 2) @ t[..., None])[..., 0]
