"""Shape from shading in UV space: the height field whose shading the views agree on.

Unknowns on the face tile's R x R texel grid: the height h (along the fitted normal) and the
high-pass log albedo A, shared by all views. Per view v and texel x (:mod:`.observe`):

    d_v(x) = A(x) - kappa_v(x) . grad h(x) + noise,

d_v the high-pass of the view's log de-lit grey level (its low band: the albedo's low frequencies
and the fit's own mid-band errors, both left alone). Energy

    sum_v w_v (d_v - A + kappa_v . grad h)^2  +  mu(x) A^2  +  lam_curv |lap h|^2  +  lam_0 h^2,

where mu(x) says how much the texel's albedo is believed smooth: large on plain skin (its
shading is geometry), zero where the multi-view albedo estimate shows an albedo feature (much
darker than the skin around it, another chromaticity: brows, lip line, hairline, beard; very
bright: a specular spot), so such a texel's photo variation goes to A, not to h. A is eliminated
in closed form per texel (A = sum_v w_v (d_v + kappa_v . grad h) / (W + mu)); the rest is a
quadratic in h, solved by preconditioned conjugate gradients (torch, matrix-free). The fine band
is the high-pass of h; its low band is the mid layer's business (the fit's deformation map).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .config import SolveSettings
from .grid import scatter
from .observe import ViewShading

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetailSolution:
    """The solve's result on the R x R face grid."""

    height: np.ndarray
    """(R, R) float32 metres: the whole solved h."""
    fine: np.ndarray
    """(R, R) float32 metres: its fine band (h minus its low band), zero off the face, scaled by
    :attr:`reliability`."""
    trust: np.ndarray
    """(R, R) float32 in [0, 1]: how much the texel's shading was taken as geometry."""
    albedo: np.ndarray
    """(R, R, 3) float32 the views' weighted de-lit colour (linear)."""
    seen: np.ndarray
    """(R, R) float32 summed view weight."""
    residual: float
    """Weighted RMS of the data residual after the solve (log units)."""
    residual0: float
    """... and with h = 0."""
    mid: np.ndarray | None = None
    """(R, R) float32 metres: the depth correction of the fitted surface the views' parallax
    shows (the mid band; zero when not estimated)."""
    gain: float = 1.0
    """The debiasing gain applied to the fine band."""
    view_shift_mm: list[float] = dataclasses.field(default_factory=list)
    """Per view the 95th percentile of its registration shift (mm; 0 for the reference)."""
    halves_r: float | None = None
    """Correlation of the fine bands solved from each half of the views (None: not solved)."""
    reliability: float = 1.0
    """The factor the fine band was scaled by (:attr:`SolveSettings.split_half`)."""


def _blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    img = np.ascontiguousarray(img, np.float32)
    if sigma_px < 0.3:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigma_px, borderType=cv2.BORDER_REPLICATE)


def _nblur(values: np.ndarray, weight: np.ndarray, sigma_px: float) -> np.ndarray:
    """Normalised convolution: the weighted blur of ``values`` (R, R[, C]) by ``weight`` (R, R)."""
    w = weight.astype(np.float32)
    num = _blur(values * (w[..., None] if values.ndim == 3 else w), sigma_px)
    den = _blur(w, sigma_px)
    den = np.maximum(den, 1e-6)
    return num / (den[..., None] if values.ndim == 3 else den)


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """1 below ``lo``, 0 above ``hi``, linear between."""
    return np.clip((hi - x) / max(hi - lo, 1e-9), 0.0, 1.0)


def albedo_trust(albedo: np.ndarray, seen: np.ndarray, texel_mm: float, st: SolveSettings) -> np.ndarray:
    """(R, R) in [0, 1]: 1 where the multi-view albedo looks like plain skin, 0 on albedo features."""
    known = (seen > 0).astype(np.float32)
    a = np.maximum(albedo, 1e-3)
    lum = np.log(a.mean(-1))
    chroma = np.stack([np.log(a[..., 0] / a[..., 1]), np.log(a[..., 2] / a[..., 1])], -1)
    s1 = 1.0 / texel_mm
    lum_s = _nblur(lum, known, s1)
    chroma_s = _nblur(chroma, known, s1)
    # the surrounding skin: a wide blur, once more without the outliers of the first pass
    wide = 6.0 / texel_mm
    ref = _nblur(lum_s, known, wide)
    ref_c = _nblur(chroma_s, known, wide)
    inlier = known * (np.abs(lum_s - ref) < 0.15) * (np.linalg.norm(chroma_s - ref_c, axis=-1) < 0.06)
    ref = _nblur(lum_s, inlier, wide)
    ref_c = _nblur(chroma_s, inlier, wide)
    dev = lum_s - ref
    t = _ramp(-dev, *st.dark_log) * _ramp(dev, *st.bright_log)
    t = t * _ramp(np.linalg.norm(chroma_s - ref_c, axis=-1), *st.chroma_log)
    grow = round(st.distrust_grow_mm / texel_mm)
    if grow > 0:
        t = cv2.erode(t.astype(np.float32), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return (_blur(t, 0.5 * grow + 0.5) * known).astype(np.float32)


def _du(h: torch.Tensor) -> torch.Tensor:
    """Central texel difference along u (columns): 0.5 (h[j+1] - h[j-1]), zero beyond the grid
    (the face lies well inside its tile); its adjoint is its negative."""
    p = torch.nn.functional.pad(h, (1, 1, 0, 0))
    return 0.5 * (p[..., :, 2:] - p[..., :, :-2])


def _dv(h: torch.Tensor) -> torch.Tensor:
    """Central texel difference along v (up: row i-1 minus row i+1), zero beyond the grid."""
    p = torch.nn.functional.pad(h, (0, 0, 1, 1))
    return 0.5 * (p[..., :-2, :] - p[..., 2:, :])


def _laplacian(h: torch.Tensor) -> torch.Tensor:
    """Five-point Laplacian, zero beyond the grid (symmetric)."""
    p = torch.nn.functional.pad(h, (1, 1, 1, 1))
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:] - 4 * h


def _du_into(h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """:func:`_du` of an (R, R) ``h`` written into ``out`` (no allocation)."""
    torch.sub(h[:, 2:], h[:, :-2], out=out[:, 1:-1])
    out[:, 0].copy_(h[:, 1])
    out[:, -1].copy_(h[:, -2]).neg_()
    return out.mul_(0.5)


def _dv_into(h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """:func:`_dv` of an (R, R) ``h`` written into ``out`` (no allocation)."""
    torch.sub(h[:-2], h[2:], out=out[1:-1])
    out[0].copy_(h[1]).neg_()
    out[-1].copy_(h[-2])
    return out.mul_(0.5)


def _laplacian_into(h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """:func:`_laplacian` of an (R, R) ``h`` written into ``out`` (no allocation)."""
    torch.mul(h, -4.0, out=out)
    out[1:].add_(h[:-1])
    out[:-1].add_(h[1:])
    out[:, 1:].add_(h[:, :-1])
    out[:, :-1].add_(h[:, 1:])
    return out


def parallax_depth_map(
    mask: np.ndarray, views: list[ViewShading], texel_mm: float, st: SolveSettings = SolveSettings()
) -> np.ndarray:
    """(R, R) mm: how far along the fitted normal the true surface lies, from the parallax between
    the views' registration flows (:func:`.register.parallax_depth`); zero with fewer than 2 views."""
    from .register import parallax_depth, view_flows

    R = mask.shape[0]
    if len(views) < 2:
        return np.zeros((R, R), np.float32)
    ws = [scatter(mask, v.weight) for v in views]
    hp = []
    for w, v in zip(ws, views):
        s = scatter(mask, v.log_ratio)
        hp.append(np.where(w > 0, s - _nblur(s, w, st.highpass_mm / texel_mm), 0.0))
    ref, flows = view_flows(hp, ws, texel_mm)
    # texels (column, row) per mm of depth: UV units per metre x R / 1000, rows run down
    par = [scatter(mask, v.parallax) * np.array([R, -R], np.float32) * 1e-3 for v in views]
    return (parallax_depth(ref, flows, par, ws, texel_mm, st.parallax_smooth_mm) * mask).astype(np.float32)


class _Problem:
    """The quadratic energy in h (mm) of the module docstring on one grid, its data high-passed at
    ``highpass_mm``; matrix-free, solved by Jacobi-preconditioned conjugate gradients."""

    def __init__(
        self,
        grids: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
        trust: np.ndarray,
        texel_mm: float,
        highpass_mm: float,
        curvature: float,
        height: float,
        albedo_prior: float,
    ) -> None:
        R = trust.shape[0]
        sig_d = highpass_mm / texel_mm
        # kappa is per UV unit; h is solved in mm and differenced per texel: fold both scales in
        # h_u (metres per UV unit) = 1e-3 * R * (central texel difference of h in mm)
        to_texel = 1e-3 * R
        ws, ds, ku, kv = [], [], [], []
        for w, s, k in grids:
            # each view's low band from the texels it sees and trusts (an albedo step never leaks into it)
            low = _nblur(s, w * np.maximum(trust, 1e-3), sig_d)
            ws.append(w)
            ds.append(np.where(w > 0, s - low, 0.0))
            ku.append(k[..., 0] * to_texel)
            kv.append(k[..., 1] * to_texel)
        self.R = R
        self.w = torch.as_tensor(np.stack(ws).astype(np.float32))
        self.d = torch.as_tensor(np.stack(ds).astype(np.float32))
        self.ku = torch.as_tensor(np.stack(ku).astype(np.float32))
        self.kv = torch.as_tensor(np.stack(kv).astype(np.float32))
        self.W = self.w.sum(0)
        mu = torch.as_tensor(albedo_prior * trust / np.maximum(1.0 - trust, 1e-2)) * self.W
        denom = self.W + mu
        self.inv = torch.where(denom > 0, 1.0 / denom.clamp_min(1e-12), torch.zeros_like(denom))
        self.lam_c = curvature / texel_mm**4
        self.lam_0 = height
        self._work: list[torch.Tensor] | None = None
        # the data's Hessian is, per texel, a 2x2 form in the gradient (h_u, h_v): with the albedo
        # eliminated, sum_v w_v k_v k_v' - (sum_v w_v k_v)(sum_v w_v k_v)' / (W + mu)
        wku, wkv = (self.w * self.ku).sum(0), (self.w * self.kv).sum(0)
        self.a_uu = (self.w * self.ku * self.ku).sum(0) - wku * wku * self.inv
        self.a_uv = (self.w * self.ku * self.kv).sum(0) - wku * wkv * self.inv
        self.a_vv = (self.w * self.kv * self.kv).sum(0) - wkv * wkv * self.inv

    def shading(self, h: torch.Tensor) -> torch.Tensor:
        """(V, R, R) kappa_v . grad h: each view's linear change of log shading (sign folded)."""
        return self.ku * _du(h) + self.kv * _dv(h)

    def project(self, e: torch.Tensor) -> torch.Tensor:
        """Q e per texel: w_v e_v - w_v (sum_u w_u e_u) / (W + mu) (the albedo eliminated)."""
        we = self.w * e
        return we - self.w * (we.sum(0) * self.inv)

    def data_energy(self, h: torch.Tensor) -> torch.Tensor:
        e = self.shading(h) + self.d
        return (e * self.project(e)).sum()

    def hess(self, p: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The energy's Hessian times p (halved): D'QD p + lam_c L'L p + lam_0 p, into ``out``
        (allocated when None). Works in place in buffers kept between calls: a loop that allocates
        its (R, R) temporaries anew runs 3-10 times slower once the process's heap has served the
        photos (each allocation faults its pages in again)."""
        if out is None:
            out = torch.empty_like(p)
        if self._work is None or self._work[0].shape != p.shape:
            self._work = [torch.empty_like(p) for _ in range(4)]
        gu, gv, t1, t2 = self._work
        _du_into(p, gu)
        _dv_into(p, gv)
        torch.mul(self.a_uu, gu, out=t1).addcmul_(self.a_uv, gv)
        torch.mul(self.a_uv, gu, out=t2).addcmul_(self.a_vv, gv)
        # adjoints of the zero-padded central differences are their negatives
        _du_into(t1, gu)
        _dv_into(t2, gv)
        torch.add(gu, gv, out=out).neg_()
        _laplacian_into(p, t1)
        _laplacian_into(t1, t2)
        return out.add_(t2, alpha=self.lam_c).add_(p, alpha=self.lam_0)

    def solve(self, iterations: int, tolerance: float) -> tuple[torch.Tensor, int]:
        """(h (R, R) mm, CG iterations). On one thread: the iterations are a few dozen element-wise
        passes over (R, R) arrays each, where a second torch thread costs more in wake-ups than it
        saves (on this 2-core machine, with other work beside it, 2 threads took 3-4 times as long)."""
        from ..threads import single_threaded

        with single_threaded():
            return self._solve(iterations, tolerance)

    def _solve(self, iterations: int, tolerance: float) -> tuple[torch.Tensor, int]:
        R = self.R
        y0 = self.project(self.d)
        b = (_du(self.ku * y0) + _dv(self.kv * y0)).sum(0)  # minus the linear term: H h = b
        # Jacobi: the data's diagonal from the neighbours' central differences, the regulariser's own
        diag = 0.5 * (self.w * (1 - self.w * self.inv) * (self.ku**2 + self.kv**2)).sum(0)
        diag = torch.as_tensor(_blur(diag.numpy(), 1.0))
        M = diag + self.lam_c * 20.0 + self.lam_0
        x = torch.zeros((R, R))
        r = b.clone()
        z = r / M
        p = z.clone()
        Hp = torch.empty_like(p)
        rz = float(torch.dot(r.view(-1), z.view(-1)))
        b_norm = float(b.norm()) or 1.0
        it = 0
        # in place throughout (see hess)
        for it in range(iterations):  # noqa: B007 (the count is returned)
            self.hess(p, Hp)
            alpha = rz / max(float(torch.dot(p.view(-1), Hp.view(-1))), 1e-30)
            x.add_(p, alpha=alpha)
            r.add_(Hp, alpha=-alpha)
            if float(torch.linalg.vector_norm(r)) < tolerance * b_norm:
                break
            torch.div(r, M, out=z)
            rz_new = float(torch.dot(r.view(-1), z.view(-1)))
            p.mul_(rz_new / rz).add_(z)
            rz = rz_new
        return x, it + 1


def _shrink(img: np.ndarray, weight: np.ndarray, f: int) -> np.ndarray:
    """(R, R[, C]) -> (R/f, R/f[, C]): the ``weight``-weighted mean of each f x f block."""
    R = img.shape[0]
    n = R // f
    w = weight[: n * f, : n * f].reshape(n, f, n, f)
    x = img[: n * f, : n * f].reshape((n, f, n, f) + img.shape[2:])
    ww = w if img.ndim == 2 else w[..., None]
    den = w.sum((1, 3))
    num = (x * ww).sum((1, 3))
    return (num / np.maximum(den if img.ndim == 2 else den[..., None], 1e-12)).astype(np.float32)


def solve_mid(
    grids: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    trust: np.ndarray,
    mask: np.ndarray,
    texel_mm: float,
    st: SolveSettings,
) -> np.ndarray:
    """(R, R) mm: the mid band of the height field, the correction of the fitted surface between
    the fine cut (``st.fine_mm``) and ``st.mid_mm``, solved on a grid ``st.mid_factor`` times
    coarser from the views' registered (weight, log shading, kappa) ``grids``: the same energy,
    its data high-passed at ``mid_mm`` instead of ``highpass_mm``."""
    if st.mid_mm is None:
        raise ValueError("solve_mid needs SolveSettings.mid_mm")
    R = mask.shape[0]
    f = max(1, int(st.mid_factor))
    small = []
    for w, s, k in grids:
        ws = _shrink(w, np.ones_like(w), f)
        small.append((ws, _shrink(s, w, f), _shrink(k, w, f)))
    tr = _shrink(trust, np.ones_like(trust), f)
    prob = _Problem(small, tr, texel_mm * f, st.mid_mm, st.mid_curvature, st.mid_height, st.albedo_prior)
    h, _ = prob.solve(st.iterations, st.tolerance)
    hs = h.numpy()
    W = prob.W.numpy()
    # the band above the fine cut only (the fine solve owns what is finer), from trusted texels
    hs = _nblur(hs, np.maximum(tr, 1e-3) * (W > 0), st.fine_mm / (texel_mm * f))
    cover = np.clip(_blur((W > 0).astype(np.float32), 1.0), 0, 1)
    hs = hs * cover
    up = cv2.resize(hs, (R, R), interpolation=cv2.INTER_CUBIC)
    return (up * mask).astype(np.float32)


def _fine_band(
    h_mm: np.ndarray, trust: np.ndarray, W: np.ndarray, mask: np.ndarray, texel_mm: float, st: SolveSettings
) -> tuple[np.ndarray, np.ndarray]:
    """(fine band (R, R) mm, cover (R, R)) of a solved height ``h_mm``: h less its low band, where
    some view (summed weight ``W``) saw the face and its shading was taken as geometry."""
    # the low band from the trusted texels only: h under an albedo feature is the regulariser's
    # guess and must not leak into the split around it
    fine_mm = h_mm - _nblur(h_mm, np.maximum(trust, 1e-3) * (W > 0), st.fine_mm / texel_mm)
    # the fine band only where some view saw the face and its shading was taken as geometry:
    # elsewhere h is the regulariser's guess (an albedo feature leaves the surface as it was)
    cover = np.clip(_blur((W > 0).astype(np.float32), 1.0), 0, 1) * mask * np.clip(2 * trust, 0, 1)
    return fine_mm * cover, cover


def solve_height(
    mask: np.ndarray,
    views: list[ViewShading],
    texel_mm: float,
    st: SolveSettings = SolveSettings(),
    mid: np.ndarray | None = None,
) -> DetailSolution:
    """Solve for h on the grid of ``mask`` (R, R) from the views' shading (see the module
    docstring); ``mid`` (R, R) metres: the depth correction the views were sampled with (added to
    the solution's mid band)."""
    t_start = time.perf_counter()
    R = mask.shape[0]
    grids = [
        (scatter(mask, v.weight), scatter(mask, v.log_ratio), scatter(mask, v.kappa), scatter(mask, v.delit))
        for v in views
    ]
    shifts = [0.0] * len(grids)
    if st.register and len(grids) > 1:
        from .register import view_flows, warp

        hp = [np.where(w > 0, s - _nblur(s, w, st.highpass_mm / texel_mm), 0.0) for w, s, _, _ in grids]
        ref, flows = view_flows(hp, [g[0] for g in grids], texel_mm)
        grids = [
            (warp(w, f), warp(s, f), warp(k, f), warp(c, f)) if i != ref else (w, s, k, c)
            for i, ((w, s, k, c), f) in enumerate(zip(grids, flows))
        ]
        shifts = [float(np.percentile(np.linalg.norm(f, axis=-1)[mask], 95)) * texel_mm for f in flows]
    W = np.zeros((R, R), np.float32)
    acc = np.zeros((R, R, 3), np.float32)
    for w, _, _, c in grids:
        W += w
        acc += w[..., None] * c
    albedo = acc / np.maximum(W, 1e-12)[..., None]
    trust = albedo_trust(albedo, W, texel_mm, st)
    prob = _Problem(
        [(w, s, k) for w, s, k, _ in grids], trust, texel_mm, st.highpass_mm, st.curvature, st.height, st.albedo_prior
    )
    t_cg = time.perf_counter()
    x, iters = prob.solve(st.iterations, st.tolerance)
    zero = torch.zeros((R, R))
    with torch.no_grad():
        e0 = prob.data_energy(zero)
        e1 = prob.data_energy(x)
    tot = float(prob.W.sum()) or 1.0
    h_mm = x.numpy()
    fine_mm, cover = _fine_band(h_mm, trust, W, mask, texel_mm, st)
    halves_r, reliability = None, 1.0
    if st.split_half and len(grids) >= 4:
        halves = []
        for part in (grids[0::2], grids[1::2]):
            half = _Problem(
                [(w, s, k) for w, s, k, _ in part],
                trust,
                texel_mm,
                st.highpass_mm,
                st.curvature,
                st.height,
                st.albedo_prior,
            )
            hx, _ = half.solve(st.iterations, st.tolerance)
            halves.append(_fine_band(hx.numpy(), trust, half.W.numpy(), mask, texel_mm, st)[0])
        on = cover > 0.5
        if int(on.sum()) > 100:
            a, b = halves[0][on], halves[1][on]
            r = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0
            halves_r = r
            reliability = float(np.clip(2 * r / (1 + r), 0.0, 1.0)) if r > 0 else 0.0
            fine_mm = fine_mm * reliability
    gain = 1.0
    if st.debias:
        # the priors shrink the whole band alike: one gain, fitted to the data alone, restores
        # its depth (the shape, and so the correlation, is the solve's)
        with torch.no_grad():
            df = prob.shading(torch.as_tensor(fine_mm.astype(np.float32)))
            num = -float((df * prob.project(prob.d)).sum())
            den = float((df * prob.project(df)).sum())
        gain = float(np.clip(num / den, 1.0, st.max_gain)) if den > 0 else 1.0
        fine_mm = fine_mm * gain
    fine = (fine_mm * 1e-3).astype(np.float32)
    t_mid = time.perf_counter()
    mid_band = None
    if st.mid_mm is not None and st.mid_mm > st.fine_mm:
        mid_band = solve_mid([(w, s, k) for w, s, k, _ in grids], trust, mask, texel_mm, st) * 1e-3
    if mid is not None:
        mid_band = np.asarray(mid, np.float32) + (0.0 if mid_band is None else mid_band)
    log.info(
        "detail: solve %dx%d, %d CG iterations (registration and set-up %.1f s, CG %.1f s, mid %.1f s), "
        "data RMS %.4f -> %.4f",
        R,
        R,
        iters,
        t_cg - t_start,
        t_mid - t_cg,
        time.perf_counter() - t_mid,
        np.sqrt(max(float(e0), 0) / tot),
        np.sqrt(max(float(e1), 0) / tot),
    )
    return DetailSolution(
        halves_r=halves_r,
        reliability=reliability,
        height=(h_mm * 1e-3).astype(np.float32),
        fine=fine,
        trust=trust,
        albedo=albedo,
        seen=W,
        residual=float(np.sqrt(max(float(e1), 0) / tot)),
        residual0=float(np.sqrt(max(float(e0), 0) / tot)),
        mid=None if mid_band is None else np.asarray(mid_band, np.float32),
        view_shift_mm=[round(x, 3) for x in shifts],
        gain=gain,
    )
