"""The fine band's split-half reliability (``SolveSettings.split_half``): solved from each half of
the views, a band the views share survives at nearly its solved scale, and a band made of the
views' own noise (photo noise, compression: nothing they agree on) is scaled towards zero."""

from __future__ import annotations

import dataclasses

import numpy as np

from mvrecon.detail import PRESETS, solve_height

from test_mid import _corr, _views


def _grooves(R: int, texel_mm: float, rng: np.random.Generator) -> np.ndarray:
    """(R, R) metres: fine detail, forty short grooves (sigma 0.5-1 mm, 50-150 um deep)."""
    y, x = np.mgrid[0:R, 0:R] * texel_mm
    h = np.zeros((R, R))
    for _ in range(40):
        cx, cy = rng.uniform(10, R * texel_mm - 10, 2)
        s, d = rng.uniform(0.5, 1.0), rng.uniform(0.05, 0.15)
        h -= d * np.exp(-((x - cx) ** 2) / (2 * s * s) - ((y - cy) ** 2) / (2 * (6 * s) ** 2))
    return (h * 1e-3).astype(np.float32)


def test_shared_detail_is_kept_and_unshared_noise_is_shrunk():
    rng = np.random.default_rng(1)
    R, texel_mm = 256, 0.25
    mask = np.zeros((R, R), bool)
    mask[8:-8, 8:-8] = True
    k = 0.6 / (R * texel_mm * 1e-3)
    kappas = [(k, 0.3 * k), (-0.5 * k, 0.8 * k), (0.2 * k, -k), (-k, -0.4 * k)]
    st = dataclasses.replace(PRESETS["default"].solve, register=False)
    off = dataclasses.replace(st, split_half=False)
    inner = np.zeros_like(mask)
    inner[30:-30, 30:-30] = True

    h = _grooves(R, texel_mm, rng) * mask
    shared = _views(h, mask, kappas, 0.002, rng)
    sol = solve_height(mask, shared, texel_mm, st)
    print("shared detail: halves r", sol.halves_r, "reliability", sol.reliability)
    assert sol.halves_r is not None and sol.reliability > 0.8
    assert _corr(sol.fine[inner], h[inner] - h[inner].mean()) > 0.5

    # the same views' noise alone (at several times the detail's shading): nothing to agree on
    noise = _views(np.zeros_like(h), mask, kappas, 0.02, rng)
    kept = solve_height(mask, noise, texel_mm, off)
    shrunk = solve_height(mask, noise, texel_mm, st)
    rms_kept = float(np.sqrt((kept.fine[inner] ** 2).mean()))
    rms_shrunk = float(np.sqrt((shrunk.fine[inner] ** 2).mean()))
    print("noise only: halves r", shrunk.halves_r, "reliability", shrunk.reliability,
          "fine RMS um", rms_kept * 1e6, "->", rms_shrunk * 1e6)
    assert rms_kept > 1e-6  # the solve does turn the noise into a band
    assert shrunk.reliability < 0.3 and rms_shrunk < 0.3 * rms_kept
    # fewer than four views: no halves to compare, the band as solved
    three = solve_height(mask, shared[:3], texel_mm, st)
    assert three.halves_r is None and three.reliability == 1.0
