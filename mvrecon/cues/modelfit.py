"""The face model fitted to one view's MediaPipe points, and its part labels rendered there.

The part masks PRDL pulls the geometry onto are defined by the face model's per-vertex part labels
(:mod:`mvrecon.parts`). Outlines drawn from 68 landmarks follow another definition and miss them
(on synthetic sessions even the true landmarks' polygons overlap the model's brows poorly). This
module fits the model to all 478 points of a view through a landmark embedding
(:mod:`mvrecon.cues.embedding`): pose, identity and expression by robust, weighted least squares
in pixels (perspective, with the view's calibrated camera when known), and renders the fitted
head's part labels by ray casting (Open3D), with the occlusion a turned head has.

    fit = fit_view(model, embedding, points, conf, camera)   # ViewFit: pose, coefficients, residual
    labels = render_labels(model, fit, camera)               # (H, W) uint8 part codes
    frame = fit_views(model, embedding, [(points, conf, camera), ...])  # a synchronized frame
    labels = render_labels(model, in_camera(frame, camera), camera)     # one identity, one pose
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cameras import Camera
from ..geometry import axis_angle_to_matrix, triangulate_homogeneous, umeyama
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


def _observation(emb: LandmarkEmbedding, points478: np.ndarray, conf478: np.ndarray, camera: Camera):
    """One view's points as the solver uses them: normalized undistorted coordinates, weights
    (the embedding's reliability times MediaPipe's confidence, at least 0.1) and focal (px)."""
    xn = camera.undistort_points(np.asarray(points478, np.float64)[:, :2])
    w = emb.weights() * np.clip(np.asarray(conf478, np.float64), 0.1, 1.0)
    f = float(np.sqrt(abs(np.linalg.det(camera.K[:2, :2]))))
    return xn, w, f


def fit_view(
    model,
    emb: LandmarkEmbedding,
    points478: np.ndarray,
    conf478: np.ndarray,
    camera: Camera,
    id_reg: float = 1.0,
    exp_reg: float = 0.3,
    iters: int = 10,
    n_id: int | None = 60,
) -> ViewFit:
    """Fit pose, identity and expression of ``model`` to MediaPipe points (478, >=2) in ``camera``'s
    (distorted) pixels; the pose is in the camera's frame (its extrinsics are not used). Point
    weights: the embedding's reliability times MediaPipe's confidence (at least 0.1: hidden points
    are guesses, but MediaPipe's guesses are coherent). The loss is a Cauchy-robust squared pixel
    error (scale 3 px, about MediaPipe's error on a 1024 px view: ``sum_i w_i log(1 + e_i^2 / 3^2)``)
    plus ``id_reg |alpha|^2 + exp_reg |beta|^2`` (identity coefficients are N(0, 1)): a MAP fit.
    ARKit weights are kept in [0, 1]. ``n_id``: the identity modes fitted (the first ones; None:
    all). One view hardly constrains the small ones: on ``bench/cues.py`` sessions 60 modes and 10
    iterations label as well as 100 modes and 15 iterations, in less time."""
    import cv2

    mean_e, _ = _basis(model, emb)
    xn, w, f = _observation(emb, points478, conf478, camera)
    # pose of the mean shape: PnP on the confident points (normalized coordinates, K = I)
    use = w > 0.3 * w.max()
    ok, rvec, tvec = cv2.solvePnP(mean_e[use], xn[use], np.eye(3), None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        raise RuntimeError("PnP failed")
    ok, rvec, tvec = cv2.solvePnP(mean_e[use], xn[use], np.eye(3), None, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE)
    R, t = axis_angle_to_matrix(rvec.ravel()), tvec.ravel().astype(np.float64)
    obs = [(xn, w, f, np.eye(3), np.zeros(3))]
    return _solve(model, emb, obs, R, t, np.zeros(model.n_id + model.n_exp), id_reg, exp_reg, iters, n_id)


def fit_views(
    model,
    emb: LandmarkEmbedding,
    views: list[tuple[np.ndarray, np.ndarray, Camera]],
    id_reg: float = 1.0,
    exp_reg: float = 0.1,
    iters: int = 25,
    init: list[ViewFit] | None = None,
) -> ViewFit:
    """One head seen by several calibrated cameras at once (a synchronized frame): the loss of
    :func:`fit_view` summed over ``views`` (``(points478, conf478, camera)`` each, the cameras with
    their extrinsics), with one identity, one expression and one pose, model to world
    (``X_world = R @ X_model + t``). Every view's MediaPipe errors are its own, so the shared fit
    averages them out, and a turned view is held by the others where its own points are guesses.
    The expression prior is weaker than a single view's (``exp_reg`` 0.1, not 0.3): the views
    together pin the expression down (bench/cues.py measures it on multi-camera frames).

    ``init``: the views' own :func:`fit_view` results (made when not given): the coefficients
    start at their median, the pose at the robust rigid fit of that shape's points to the points
    triangulated from the views (:func:`triangulate_views`, :func:`_rigid`: a view with a wrong face
    does not decide it). Every start on the bench's frames reaches the same optimum."""
    if not views:
        raise ValueError("fit_views needs at least one view")
    if init is None:
        init = [fit_view(model, emb, p, c, cam) for p, c, cam in views]
    obs = []
    for p, c, cam in views:
        xn, w, f = _observation(emb, p, c, cam)
        obs.append((xn, w, f, cam.R, cam.t))
    coeffs = np.median(np.stack([np.r_[v.id_coeffs, v.exp_coeffs] for v in init]), 0)
    if len(obs) >= 2:
        # start: the embedded points of the median shape, fitted rigidly (robust) to the points
        # triangulated from all views; a view's own pose is off in depth and scale (starting
        # from one of those, the frame's RMS begins many times higher than from this)
        mean_e, basis_e = _basis(model, emb)
        X_tri, w_tri = triangulate_views(obs)
        src = mean_e + np.einsum("kpd,k->pd", basis_e, coeffs)
        R, t = _rigid(src, X_tri, w_tri) if (w_tri > 0).sum() >= 20 else (None, None)
    else:
        R = t = None
    if R is None or t is None or not (np.isfinite(R).all() and np.isfinite(t).all()):
        # no usable triangulation (one view, or cameras without a baseline): the view pose
        # that fits the frame best
        own = [(cam.R.T @ v.R, cam.R.T @ (v.t - cam.t)) for v, (_, _, cam) in zip(init, views)]  # to the world
        costs = [_solve(model, emb, obs, Ro, to, coeffs, id_reg, exp_reg, 0).rms_px for Ro, to in own]
        R, t = own[int(np.nanargmin(costs))]
    return _solve(model, emb, obs, R, t, coeffs, id_reg, exp_reg, iters)


def triangulate_views(obs) -> tuple[np.ndarray, np.ndarray]:
    """World points (P, 3) from the observations ``(xn, w, f, Rv, tv)`` of :func:`_solve` (linear,
    weighted DLT per point) and each point's total weight over the views in front (P,)."""
    P = np.stack([np.c_[Rv, tv] for _, _, _, Rv, tv in obs])  # (V, 3, 4), normalized cameras
    xn = np.stack([o[0] for o in obs], 1)  # (P, V, 2)
    sw = np.sqrt(np.stack([o[1] for o in obs], 1))
    X4 = triangulate_homogeneous(P, xn, sw)
    finite = np.abs(X4[:, 3]) > 1e-9
    X = np.zeros((len(X4), 3))
    X[finite] = X4[finite, :3] / X4[finite, 3:4]
    wsum = np.zeros(len(X))
    for _, w, _, Rv, tv in obs:
        wsum += w * ((X @ Rv.T + tv)[:, 2] > 0)
    wsum[~finite] = 0.0  # at infinity: no baseline (cameras in one place)
    return X, wsum


def _rigid(
    src: np.ndarray, dst: np.ndarray, w: np.ndarray, iters: int = 5, scale: float = 0.005
) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """Rotation and translation taking ``src`` onto ``dst`` (P, 3): weighted Kabsch, made robust by
    re-weighting (Cauchy, ``scale`` metres) so points triangulated wrongly do not decide it."""
    wk = np.asarray(w, np.float64).copy()
    if wk.sum() <= 0:
        return None, None
    for _ in range(iters):
        fit = umeyama(src, dst, wk, with_scale=False)
        R, t = fit.rotation, fit.translation
        r2 = ((src @ R.T + t - dst) ** 2).sum(1)
        wk = w / (1.0 + r2 / scale**2)
    return R, t


def in_camera(fit: ViewFit, camera: Camera) -> ViewFit:
    """A world-frame fit (:func:`fit_views`) in ``camera``'s frame, as :func:`render_labels` takes it."""
    return ViewFit(
        R=camera.R @ fit.R,
        t=camera.R @ fit.t + camera.t,
        id_coeffs=fit.id_coeffs,
        exp_coeffs=fit.exp_coeffs,
        rms_px=fit.rms_px,
    )


def view_rms(
    model, emb: LandmarkEmbedding, fit: ViewFit, points478: np.ndarray, conf478: np.ndarray, camera: Camera
) -> float:
    """Weighted RMS (pixels) of one view's points against a world-frame fit (:func:`fit_views`)."""
    xn, w, f = _observation(emb, points478, conf478, camera)
    return _solve(
        model, emb, [(xn, w, f, camera.R, camera.t)], fit.R, fit.t, np.r_[fit.id_coeffs, fit.exp_coeffs], 0.0, 0.0, 0
    ).rms_px


def _solve(
    model,
    emb: LandmarkEmbedding,
    obs,
    R: np.ndarray,
    t: np.ndarray,
    c: np.ndarray,
    id_reg: float,
    exp_reg: float,
    iters: int,
    n_id: int | None = None,
) -> ViewFit:
    """Levenberg-Marquardt (Gauss-Newton on the IRLS form of the Cauchy loss) from ``(R, t, c)``
    over the observations ``(xn, w, f, Rv, tv)``: each view's normalized points, weights, focal and
    world-to-camera rotation and translation. ``n_id``: only the first so many identity modes are
    free (the others stay at zero; None: all). Returns the fit with its weighted RMS (pixels)."""

    mean_e, basis_e = _basis(model, emb)
    n_id = model.n_id if n_id is None else int(min(max(n_id, 0), model.n_id))
    if n_id < model.n_id:
        basis_e = np.concatenate([basis_e[:n_id], basis_e[model.n_id :]], 0)
        c = np.r_[c[:n_id], c[model.n_id :]]
    K_all = n_id + model.n_exp
    n_pts = len(mean_e)
    Bflat = basis_e.transpose(2, 0, 1).reshape(3, -1)  # (3, K * 478): one BLAS product per rotation
    Bmat = basis_e.reshape(K_all, -1).T  # (478 * 3, K): the shape as one matrix product
    blend = model.exp_kind == "blendshape"
    reg = np.concatenate([np.full(n_id, id_reg), np.full(model.n_exp, exp_reg)])
    scale_px = 3.0  # Cauchy scale, pixels
    c = np.asarray(c, np.float64).copy()
    if blend:
        c[n_id:] = np.clip(c[n_id:], 0.0, 1.0)

    def residuals(R, t, c):
        X = mean_e + (Bmat @ c).reshape(n_pts, 3)
        Xw = X @ R.T + t
        out = []
        for xn, _, f, Rv, tv in obs:
            Xc = Xw @ Rv.T + tv
            out.append(((Xc[:, :2] / Xc[:, 2:3] - xn) * f, Xc))
        return out, X

    def cost(res, c):
        if any((Xc[:, 2] <= 0).any() for _, Xc in res):
            return np.inf
        data = sum(float((o[1] * np.log1p((e * e).sum(1) / scale_px**2)).sum()) for (e, _), o in zip(res, obs))
        return data + float((reg * c * c).sum())

    res, X = residuals(R, t, c)
    cur = cost(res, c)
    lam = 1e-3
    J = np.empty((n_pts, 2, 6 + K_all))
    for _ in range(iters):
        H = np.zeros((6 + K_all, 6 + K_all))
        g = np.zeros(6 + K_all)
        RX = X @ R.T
        RB = (R @ Bflat).reshape(3, K_all, n_pts)  # rotated basis, (3, K, 478)
        for (e, Xc), (_xn, w, f, Rv, _tv) in zip(res, obs):
            irls = w / (1.0 + (e * e).sum(1) / scale_px**2) / scale_px**2
            z = Xc[:, 2]
            # M = d(u, v)/d(X_world): the projection's derivative [[f/z, 0, -f x/z^2],
            # [0, f/z, -f y/z^2]] times the camera's rotation
            fz = f / z
            dz = -f * Xc[:, :2] / (z * z)[:, None]
            for a in range(2):
                M = fz[:, None] * Rv[a] + dz[:, a : a + 1] * Rv[2]  # (478, 3)
                J[:, a, :3] = np.cross(RX, M)  # rotation: d(X_world)/d(omega) = -[R X]_x
                J[:, a, 3:6] = M
                J[:, a, 6:] = (M[:, 0] * RB[0] + M[:, 1] * RB[1] + M[:, 2] * RB[2]).T
            Jf = J.reshape(-1, 6 + K_all)
            W = np.repeat(irls, 2)
            H += Jf.T @ (Jf * W[:, None])
            g += Jf.T @ (W * e.reshape(-1))
        H[6:, 6:] += np.diag(reg)
        g[6:] += reg * c
        Hd = np.diag(H) + 1e-9
        if blend:
            # active set: an ARKit weight at a bound that the gradient pushes past stays there for
            # this step (a free step clipped afterwards is a poor step, rejected, and stalls LM)
            e_c = c[n_id:]
            ge = g[6 + n_id :]
            held = np.zeros(len(g), bool)
            held[6 + n_id :] = ((e_c <= 0.0) & (ge > 0)) | ((e_c >= 1.0) & (ge < 0))
            if held.any():
                H[held, :] = 0.0
                H[:, held] = 0.0
                H[held, held] = 1.0
                g = np.where(held, 0.0, g)
                Hd = np.where(held, 1.0, Hd)
        accepted = False
        for _ in range(8):
            step = _solve_spd(H + lam * np.diag(Hd), -g)
            R_new = axis_angle_to_matrix(step[:3]) @ R
            t_new = t + step[3:6]
            c_new = c + step[6:]
            if blend:
                c_new[n_id:] = np.clip(c_new[n_id:], 0.0, 1.0)
            res_new, X_new = residuals(R_new, t_new, c_new)
            new = cost(res_new, c_new)
            if new < cur:
                R, t, c, res, X = R_new, t_new, c_new, res_new, X_new
                accepted = cur - new > 1e-6 * max(cur, 1.0)
                cur = new
                lam = max(lam / 3, 1e-7)
                break
            lam *= 10
        if not accepted:
            break
    num = sum(float((o[1] * (e * e).sum(1)).sum()) for (e, _), o in zip(res, obs))
    den = sum(float(o[1].sum()) for o in obs)
    id_coeffs = np.zeros(model.n_id)
    id_coeffs[:n_id] = c[:n_id]
    return ViewFit(R=R, t=t, id_coeffs=id_coeffs, exp_coeffs=c[n_id:].copy(), rms_px=float(np.sqrt(num / den)))


def _solve_spd(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``A^-1 b`` for a symmetric positive definite ``A`` (Cholesky; LU when it is not)."""
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    try:
        return cho_solve(cho_factor(A, check_finite=False), b, check_finite=False)
    except LinAlgError:
        return np.linalg.solve(A, b)


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


def render_labels(
    model, fit: ViewFit, camera: Camera, box: tuple[int, int, int, int] | None = None, max_grid: int = 320
) -> np.ndarray:
    """(H, W) uint8 part codes of the fitted head seen by ``camera`` (its distortion included):
    the label of the first triangle each pixel's ray meets, background where none. Rays are cast
    on a grid of at most ``max_grid`` per side over ``box`` (x0, y0, x1, y1; default: the
    projected face) and upsampled (nearest)."""
    import cv2

    from ..render.raycast import MeshScene

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
    prim = MeshScene(verts, tris).cast(rays).triangles
    hit = prim >= 0
    grid = np.zeros(len(prim), np.uint8)
    grid[hit] = labels_f[prim[hit]]
    grid = grid.reshape(xx.shape)
    if step > 1:
        grid = cv2.resize(grid, (len(gx) * step, len(gy) * step), interpolation=cv2.INTER_NEAREST)
    out[y0:y1, x0:x1] = grid[: y1 - y0, : x1 - x0]
    return out
