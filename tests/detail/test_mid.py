"""The mid band's solve (``SolveSettings.mid_mm``) on a height field whose shading is all the views
see (plain albedo): it recovers the field's band between the fine cut and ``mid_mm``."""

from __future__ import annotations

import dataclasses

import numpy as np

from mvrecon.detail import PRESETS, ViewShading, solve_height
from mvrecon.detail.grid import uv_gradient
from mvrecon.detail.solve import _nblur


def _bumps(R: int, texel_mm: float, rng: np.random.Generator) -> np.ndarray:
    """(R, R) metres: a dozen smooth bumps and dents (sigma 4-8 mm, +-0.4 mm)."""
    y, x = np.mgrid[0:R, 0:R] * texel_mm
    h = np.zeros((R, R))
    for _ in range(12):
        cx, cy = rng.uniform(20, R * texel_mm - 20, 2)
        s = rng.uniform(4, 8)
        h += rng.uniform(-0.4, 0.4) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
    return (h * 1e-3).astype(np.float32)


def _views(h: np.ndarray, mask: np.ndarray, kappas, noise: float, rng) -> list[ViewShading]:
    """Views that see every texel of ``mask`` with plain albedo: their log shading is -kappa . grad h."""
    R = h.shape[0]
    M = int(mask.sum())
    du, dv = uv_gradient(h)
    out = []
    for i, (ku, kv) in enumerate(kappas):
        s = -(ku * du + kv * dv) + noise * rng.standard_normal((R, R))
        k = np.tile(np.array([[ku, kv]], np.float32), (M, 1))
        out.append(
            ViewShading(
                f"v{i}",
                s[mask].astype(np.float32),
                k,
                np.ones(M, np.float32),
                np.full((M, 3), 0.5, np.float32),
                np.zeros((M, 2), np.float32),
            )
        )
    return out


def _corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-30))


def test_mid_band_recovers_a_smooth_height_field():
    rng = np.random.default_rng(0)
    R, texel_mm = 256, 0.6
    mask = np.zeros((R, R), bool)
    mask[8:-8, 8:-8] = True
    h = _bumps(R, texel_mm, rng) * mask
    # kappa per UV unit (d log E per radian of tilt over the metre per UV unit): ~0.05 for 5 degrees
    span_m = R * texel_mm * 1e-3
    k = 0.6 / span_m
    views = _views(h, mask, [(k, 0.3 * k), (-0.5 * k, 0.8 * k), (0.2 * k, -k)], 0.002, rng)
    st = dataclasses.replace(PRESETS["default"].solve, register=False, mid_mm=12.0)
    sol = solve_height(mask, views, texel_mm, st)
    assert sol.mid is not None
    W = mask.astype(np.float32)
    band = (_nblur(h, W, 3.0 / texel_mm) - _nblur(h, W, 12.0 / texel_mm)) * mask
    inner = np.zeros_like(mask)
    inner[30:-30, 30:-30] = True
    c = _corr(sol.mid[inner], band[inner])
    gain = float((sol.mid[inner] * band[inner]).sum() / (sol.mid[inner] ** 2).sum())
    print("mid corr", c, "gain", gain)
    # zeros (no mid band) correlate 0 and a field of the wrong sign -1
    assert c > 0.8, c
    assert 0.5 < gain < 2.0, gain
    # without mid_mm there is no mid band
    assert solve_height(mask, views, texel_mm, dataclasses.replace(st, mid_mm=None)).mid is None


def test_the_exported_displacement_is_fine_plus_mid(tmp_path):
    """``fine.npz`` keeps the bands apart; the texture stage's displacement is their sum."""
    from mvrecon.detail import DetailConfig, load_detail
    from mvrecon.detail.stage import DetailMaps, write_detail

    rng = np.random.default_rng(1)
    fine = rng.normal(0, 1e-5, (2, 16, 16)).astype(np.float32)
    mid = rng.normal(0, 1e-4, (2, 16, 16)).astype(np.float32)
    write_detail(tmp_path / "detail", DetailMaps(fine, ["a", "b"], mid), np.ones((16, 16)), DetailConfig(), {})
    back = load_detail(tmp_path / "detail")
    assert back.mid is not None and (back.mid == mid).all() and (back.fine == fine).all()
    assert np.allclose(back.displacement, fine.mean(0) + mid.mean(0))
    assert (DetailMaps(fine, ["a", "b"]).displacement == fine.mean(0)).all()
