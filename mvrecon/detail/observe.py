"""What each photo says about the shading of the face tile's texels.

Per view the fit's image model is ``photo = albedo * irradiance(n) + bias`` in linear light
(:mod:`mvrecon.texture.bake` inverts the same model). For a texel at point P with fitted normal N
the view gives

    s_v = log(sum_c (photo_c - bias_c)) - log(sum_c E_v,c(N))  =  log albedo + log E_v(n') / E_v(N)

and, for the true normal n' = N - grad_S h of the surface displaced by a small height h along N,
log E_v(n') - log E_v(N) ~ -kappa_v . (dh/du, dh/dv), where kappa_v is the gradient of log E_v
in the tangent plane expressed through the UV metric. Each view also gets the bake's weight:
cos(viewing angle)^p x feather(silhouette) x (f / z)^2, zero where it does not see the texel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..render import raycast, sh_basis
from ..texture.bake import BakeView, _bilinear, _silhouette_feather, facing_points
from .grid import SurfaceTexels


@dataclass(frozen=True)
class ViewShading:
    """One view's observation of the M texels."""

    key: str
    log_ratio: np.ndarray
    """(M,) float32 s_v: log of the de-lit grey level (0 where not seen)."""
    kappa: np.ndarray
    """(M, 2) float32: d log E_v / d(h_u, h_v) with the sign folded in: s_v ~ la - kappa . grad h."""
    weight: np.ndarray
    """(M,) float32 >= 0 (0: not seen)."""
    delit: np.ndarray
    """(M, 3) float32 per-channel de-lit colour (photo - bias) / E_v,c(N) (an albedo estimate)."""
    parallax: np.ndarray
    """(M, 2) float32 (du, dv) per metre: where (in UV units) the view sees the true surface when
    it lies a depth e along the normal from the fitted point: at uv + e * parallax."""


def irradiance_and_gradient(normals: np.ndarray, sh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel SH irradiance (M, 3) at unit ``normals`` (M, 3) and the gradient of the grey
    irradiance sum_c E_c with respect to the normal (M, 3) (``sh`` (9, 3), world normals)."""
    n = torch.as_tensor(normals, dtype=torch.float32).clone().requires_grad_(True)
    E = sh_basis(n) @ torch.as_tensor(np.asarray(sh), dtype=torch.float32)
    E.sum().backward()
    assert n.grad is not None
    return E.detach().numpy(), n.grad.numpy()


def observe_views(
    surf: SurfaceTexels,
    views: list[BakeView],
    verts: np.ndarray,
    occluders: np.ndarray,
    min_cos: float = 0.3,
    angle_power: float = 2.0,
    feather_px: float = 8.0,
    min_irradiance: float = 0.05,
    visible_from: np.ndarray | None = None,
) -> list[ViewShading]:
    """Sample every view at the texels' points (see the module docstring). ``verts`` (N, 3) world
    vertices of the group's head and ``occluders`` (F, 3) its opaque triangles (visibility);
    ``visible_from`` (M, 3): test the visibility of these points instead (the fitted surface's,
    when the points were moved off it)."""
    P, N = surf.points, surf.normals
    Pv = P if visible_from is None else np.asarray(visible_from, np.float64)
    Ginv = surf.metric_inverse()
    out = []
    for view in views:
        cam = view.camera
        M = len(P)
        w = np.zeros(M, np.float32)
        s = np.zeros(M, np.float32)
        kap = np.zeros((M, 2), np.float32)
        delit = np.zeros((M, 3), np.float32)
        par = np.zeros((M, 2), np.float32)
        xy, z, cos, to_cam, cand = facing_points(P, N, cam, min_cos)
        if len(cand):
            occ = raycast.occluded(verts, occluders, cam.center[None], Pv[cand][None], 1e-4)[0]
            cand = cand[~occ]
        if len(cand):
            fea = _bilinear(_silhouette_feather(verts, occluders, cam, feather_px)[..., None], xy[cand])[:, 0]
            E, dE = irradiance_and_gradient(N[cand], view.sh)
            rgb = _bilinear(np.asarray(view.image, np.float32), xy[cand].astype(np.float32))
            if view.bias is not None:
                rgb = rgb - np.asarray(view.bias, np.float32)
            Eg = E.sum(1)
            yg = rgb.sum(1)
            ok = (E.min(1) > min_irradiance) & (yg > 1e-3)
            # the tangential part of grad log E, through the metric: d log E / d(h_u, h_v)
            n = N[cand]
            q = dE - np.einsum("mc,mc->m", dE, n)[:, None] * n
            q /= np.maximum(Eg, 1e-6)[:, None]
            qt = np.stack([np.einsum("mc,mc->m", q, surf.dp_du[cand]), np.einsum("mc,mc->m", q, surf.dp_dv[cand])], -1)
            kap[cand] = np.einsum("mij,mj->mi", Ginv[cand], qt)
            s[cand] = np.log(np.maximum(yg, 1e-3)) - np.log(np.maximum(Eg, 1e-6))
            delit[cand] = rgb / np.maximum(E, min_irradiance)
            # the ray through P meets the plane P + e N + tangent at P + e r / (r . N): its
            # tangential part, through the metric, in UV units per metre of e
            ray = -to_cam[cand] / np.maximum(np.linalg.norm(to_cam[cand], axis=1, keepdims=True), 1e-12)
            rn = np.einsum("mc,mc->m", ray, n)
            tang = (ray - rn[:, None] * n) / np.minimum(rn, -1e-3)[:, None]
            tt = np.stack(
                [np.einsum("mc,mc->m", tang, surf.dp_du[cand]), np.einsum("mc,mc->m", tang, surf.dp_dv[cand])], -1
            )
            par[cand] = np.einsum("mij,mj->mi", Ginv[cand], tt)
            density = (cam.K[0, 0] / z[cand]) ** 2
            w[cand] = np.clip(cos[cand], 0, 1) ** angle_power * fea * density * ok
        out.append(ViewShading(view.key, s, kap, w, delit, par))
    wmax = max((float(v.weight.max()) for v in out), default=1.0) or 1.0
    return [
        ViewShading(v.key, v.log_ratio, v.kappa, (v.weight / wmax).astype(np.float32), v.delit, v.parallax) for v in out
    ]
