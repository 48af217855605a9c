"""The face model fitted to one view's MediaPipe points, and its part labels rendered there.

The part masks PRDL pulls the geometry onto are defined by the face model's per-vertex part labels
(:mod:`mvrecon.parts`). Outlines drawn from 68 landmarks follow another definition and miss them
(on synthetic sessions even the true landmarks' polygons reach only ~0.6 IoU on the brows). This
module fits the model to all 478 points of a view through a landmark embedding
(:mod:`mvrecon.cues.embedding`): pose, identity and expression by robust, weighted least squares
in pixels (perspective, with the view's calibrated camera when known), and renders the fitted
head's part labels by ray casting (Open3D), with the occlusion a turned head has.

    fit = fit_view(model, embedding, cues, camera)     # ViewFit: pose, coefficients, residual
    labels = render_labels(model, fit, camera)         # (H, W) uint8 part codes
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cameras import Camera
from ..parts import triangle_labels
from .embedding import EMBED_SUBMESHES, LandmarkEmbedding

#: Focal length (in units of the longer image side) assumed for a photo without a camera:
#: a 50 mm lens on a full-frame sensor is ~1.4.
DEFAULT_FOCAL = 1.4


def default_camera(width: int, height: int, focal: float = DEFAULT_FOCAL) -> Camera:
    f = focal * max(width, height)
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])
    return Camera(name="photo", width=width, height=height, K=K, dist=np.zeros(0), world_to_cam=np.eye(4))


@dataclass(frozen=True)
class ViewFit:
    """The model in one view's camera frame: ``X_cam = R @ X_model + t``."""

    R: np.ndarray
    t: np.ndarray
    id_coeffs: np.ndarray
    exp_coeffs: np.ndarray
    rms_px: float
    """Weighted RMS reprojection error of the embedded points, pixels."""


def _basis(model, emb: LandmarkEmbedding) -> tuple[np.ndarray, np.ndarray]:
    """Mean (478, 3) and basis (K_id + K_exp, 478, 3) of the embedded points (cached per model)."""
    key = ("mp-embedding-basis", emb.topology, emb.triangle.tobytes(), emb.bary.tobytes())
    if key not in model._cache:
        idx, w = emb.vertex_weights(model.triangles)
        mean = np.einsum("pk,pkd->pd", w, model.mean[idx])
        B = np.concatenate([model.id_basis, model.exp_basis], 0)
        basis = np.einsum("pk,mpkd->mpd", w, B[:, idx])
        model._cache[key] = (mean.astype(np.float64), basis.astype(np.float64))
    return model._cache[key]


def fit_view(model, emb: LandmarkEmbedding, points478: np.ndarray, conf478: np.ndarray,
             camera: Camera, id_reg: float = 1.0, exp_reg: float = 0.3, iters: int = 15) -> ViewFit:
    """Fit pose, identity and expression of ``model`` to MediaPipe points (478, >=2) in ``camera``'s
    (distorted) pixels. Point weights: the embedding's reliability times MediaPipe's confidence
    (at least 0.1: hidden points are guesses, but MediaPipe's guesses are coherent). The loss is
    a Cauchy-robust squared pixel error (scale 3 px, about MediaPipe's error on a 1024 px view:
    ``sum_i w_i log(1 + e_i^2 / 3^2)``) plus ``id_reg |alpha|^2 + exp_reg |beta|^2`` (identity
    coefficients are N(0, 1)): a MAP fit. ARKit weights are kept in [0, 1] by a penalty."""
    import cv2

    mean_e, basis_e = _basis(model, emb)
    xn = camera.undistort_points(np.asarray(points478, np.float64)[:, :2])
    w = emb.weights() * np.clip(np.asarray(conf478, np.float64), 0.1, 1.0)
    f = float(np.sqrt(abs(np.linalg.det(camera.K[:2, :2]))))

    # pose of the mean shape: PnP on the confident points (normalized coordinates, K = I)
    use = w > 0.3 * w.max()
    ok, rvec, tvec = cv2.solvePnP(mean_e[use], xn[use], np.eye(3), None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        raise RuntimeError("PnP failed")
    ok, rvec, tvec = cv2.solvePnP(mean_e[use], xn[use], np.eye(3), None, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE)

    K_all = model.n_id + model.n_exp
    n_id = model.n_id
    B = basis_e.transpose(1, 2, 0)  # (478, 3, K)
    R = cv2.Rodrigues(rvec)[0]
    t = tvec.ravel().astype(np.float64)
    c = np.zeros(K_all)
    blend = model.exp_kind == "blendshape"
    reg = np.concatenate([np.full(n_id, id_reg), np.full(model.n_exp, exp_reg)])
    scale_px = 3.0  # Cauchy scale, pixels

    def residuals(R, t, c):
        X = mean_e + B @ c
        Xc = X @ R.T + t
        z = Xc[:, 2:3]
        return (Xc[:, :2] / z - xn) * f, X, Xc

    def cost(e, c):
        return float((w * np.log1p((e * e).sum(1) / scale_px**2)).sum() + (reg * c * c).sum())

    e, X, Xc = residuals(R, t, c)
    cur = cost(e, c)
    lam = 1e-3
    for _ in range(iters):
        # Gauss-Newton on the IRLS form of the Cauchy loss, Levenberg-Marquardt damping
        irls = w / (1.0 + (e * e).sum(1) / scale_px**2) / scale_px**2
        z = Xc[:, 2]
        dproj = np.zeros((len(z), 2, 3))
        dproj[:, 0, 0] = f / z
        dproj[:, 1, 1] = f / z
        dproj[:, :, 2] = -f * Xc[:, :2] / (z * z)[:, None]
        RX = X @ R.T
        skew = np.zeros((len(z), 3, 3))  # d(Xc)/d(omega) = -[R X]_x
        skew[:, 0, 1], skew[:, 0, 2] = RX[:, 2], -RX[:, 1]
        skew[:, 1, 0], skew[:, 1, 2] = -RX[:, 2], RX[:, 0]
        skew[:, 2, 0], skew[:, 2, 1] = RX[:, 1], -RX[:, 0]
        J = np.concatenate([dproj @ skew, dproj, dproj @ (R[None] @ B)], 2)  # (478, 2, 6 + K)
        Jf = J.reshape(-1, 6 + K_all)
        W = np.repeat(irls, 2)
        H = Jf.T @ (Jf * W[:, None])
        g = Jf.T @ (W * e.reshape(-1))
        H[6:, 6:] += np.diag(reg)
        g[6:] += reg * c
        accepted = False
        for _ in range(8):
            step = np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-9), -g)
            R_new = cv2.Rodrigues(step[:3])[0] @ R
            t_new = t + step[3:6]
            c_new = c + step[6:]
            if blend:
                c_new[n_id:] = np.clip(c_new[n_id:], 0.0, 1.0)
            e_new, X_new, Xc_new = residuals(R_new, t_new, c_new)
            new = cost(e_new, c_new) if (Xc_new[:, 2] > 0).all() else np.inf
            if new < cur:
                R, t, c, e, X, Xc = R_new, t_new, c_new, e_new, X_new, Xc_new
                accepted = cur - new > 1e-6 * max(cur, 1.0)
                cur = new
                lam = max(lam / 3, 1e-7)
                break
            lam *= 10
        if not accepted:
            break
    e2 = (e * e).sum(1)
    rms = float(np.sqrt((w * e2).sum() / w.sum()))
    return ViewFit(R=R, t=t, id_coeffs=c[:n_id].copy(), exp_coeffs=c[n_id:].copy(), rms_px=rms)


def _interp_matrix(n: int, samples: np.ndarray) -> np.ndarray:
    """(n, len(samples)) linear interpolation weights from sample positions (sorted, 0 and n-1
    included) to every position 0..n-1."""
    W = np.zeros((n, len(samples)))
    pos = np.arange(n)
    j = np.clip(np.searchsorted(samples, pos, side="right") - 1, 0, len(samples) - 2)
    t = (pos - samples[j]) / (samples[j + 1] - samples[j])
    W[pos, j] = 1 - t
    W[pos, j + 1] = t
    return W


def _undistort_grid(camera: Camera, gx: np.ndarray, gy: np.ndarray, every: int = 8) -> np.ndarray:
    """Normalized undistorted coordinates (len(gy) * len(gx), 2) of a pixel grid: exact on every
    ``every``-th row and column, bilinear in between (the distortion is smooth: the in-between
    error is ~1e-4 px), which makes it an order of magnitude cheaper than undistorting every ray."""
    if not camera.has_distortion or len(gx) < 2 * every or len(gy) < 2 * every:
        xx, yy = np.meshgrid(gx, gy)
        return camera.undistort_points(np.stack([xx.ravel(), yy.ravel()], 1))
    sx = np.unique(np.r_[np.arange(0, len(gx), every), len(gx) - 1])
    sy = np.unique(np.r_[np.arange(0, len(gy), every), len(gy) - 1])
    xx, yy = np.meshgrid(gx[sx], gy[sy])
    coarse = camera.undistort_points(np.stack([xx.ravel(), yy.ravel()], 1)).reshape(len(sy), len(sx), 2)
    Wx, Wy = _interp_matrix(len(gx), sx), _interp_matrix(len(gy), sy)
    full = np.stack([Wy @ coarse[..., c] @ Wx.T for c in range(2)], -1)  # (len(gy), len(gx), 2)
    return full.reshape(-1, 2)


def render_labels(model, fit: ViewFit, camera: Camera, box: tuple[int, int, int, int] | None = None,
                  max_grid: int = 320) -> np.ndarray:
    """(H, W) uint8 part codes of the fitted head seen by ``camera`` (its distortion included):
    the label of the first triangle each pixel's ray meets, background where none. Rays are cast
    on a grid of at most ``max_grid`` per side over ``box`` (x0, y0, x1, y1; default: the
    projected face) and upsampled (nearest)."""
    import cv2
    import open3d as o3d

    h, w = camera.height, camera.width
    verts = model.vertices(fit.id_coeffs, fit.exp_coeffs).astype(np.float64) @ fit.R.T + fit.t
    tri_ids = model.render_triangle_ids(EMBED_SUBMESHES)
    tris = model.triangles[tri_ids]
    key = ("render-labels", tri_ids.tobytes())
    if key not in model._cache:
        model._cache[key] = triangle_labels(model)[tri_ids]
    labels_f = model._cache[key]
    out = np.zeros((h, w), np.uint8)
    if box is None:
        face = np.unique(tris[labels_f > 0])
        p = verts[face]
        uv = camera.replace(world_to_cam=np.eye(4)).project(p)[0]
        x0, y0 = np.floor(uv.min(0)).astype(int) - 2
        x1, y1 = np.ceil(uv.max(0)).astype(int) + 3
    else:
        x0, y0, x1, y1 = box
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return out
    step = max(1, int(np.ceil(max(x1 - x0, y1 - y0) / max_grid)))
    gx = np.arange(x0, x1, step, dtype=np.float64) + (step - 1) / 2  # the centres of step x step cells
    gy = np.arange(y0, y1, step, dtype=np.float64) + (step - 1) / 2
    xx, yy = np.meshgrid(gx, gy)
    xn = _undistort_grid(camera, gx, gy)
    rays = np.zeros((len(xn), 6), np.float32)
    rays[:, 3:5], rays[:, 5] = xn, 1.0
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(verts.astype(np.float32)), o3d.core.Tensor(tris.astype(np.uint32)))
    prim = scene.cast_rays(o3d.core.Tensor(rays))["primitive_ids"].numpy().astype(np.int64)
    hit = prim != np.int64(o3d.t.geometry.RaycastingScene.INVALID_ID)
    grid = np.zeros(len(prim), np.uint8)
    grid[hit] = labels_f[prim[hit]]
    grid = grid.reshape(xx.shape)
    if step > 1:
        grid = cv2.resize(grid, (len(gx) * step, len(gy) * step), interpolation=cv2.INTER_NEAREST)
    out[y0:y1, x0:x1] = grid[: y1 - y0, : x1 - x0]
    return out
