"""The detail stage on a synthetic session with a known fine layer, fitted perfectly but for it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from mvrecon.detail import PRESETS, DetailConfig, face_grid, load_detail, run
from mvrecon.fit.result import load_fit
from mvrecon.session import load_session
from mvrecon.synth import load_ground_truth

CFG = dataclasses.replace(PRESETS["default"], min_size=512, max_size=512)


def _truth_on_grid(root, model, size):
    """The true fine map at the grid's texels (the fit is the truth: same UV layout) and the
    forehead/crow's-feet envelope (2 mm blur of |fine| above 40 um) and the face (weight > 0.5)."""
    import cv2

    gt = load_ground_truth(root)
    head = load_fit(root / "fit", model)
    grid = face_grid(head, size)
    fine = cv2.resize(gt.fine_map, (size, size), interpolation=cv2.INTER_AREA)
    env = gaussian_filter(np.abs(gt.fine_map), 10.0 * gt.fine_map.shape[0] / 1024)
    env = cv2.resize(env, (size, size), interpolation=cv2.INTER_AREA)
    w = np.zeros((size, size))
    w[grid.mask] = grid.raster.interpolate(gt.face_weight[:, None].astype(np.float64),
                                           model.triangles[grid.tri_ids])[:, 0]
    face = grid.mask & (w > 0.5)
    return fine, face & (env > 40e-6), face


def _corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-30))


@pytest.fixture(scope="module")
def recovered(detail_session, tmp_path_factory):
    res = run(CFG, load_session(detail_session))
    return res


def test_recovers_the_known_wrinkles(detail_session, recovered, ict_model):
    size = recovered.maps.size
    fine_true, wrinkles, face = _truth_on_grid(detail_session, ict_model, size)
    got = recovered.maps.fine[0]
    c = _corr(got[wrinkles], fine_true[wrinkles])
    # a no-op stage (zeros) has no correlation at all; this one has the grooves where they are
    assert c > 0.5, c
    # and at about their depth: not a faint trace (the grooves' high band RMS within a factor 2.5)
    hp_true = fine_true - gaussian_filter(fine_true, 3.0 / (recovered.summary["face_tile_mm"] / size))
    ratio = np.sqrt((got[wrinkles] ** 2).mean() / (hp_true[wrinkles] ** 2).mean())
    assert 0.4 < ratio < 2.5, ratio
    assert (load_detail(detail_session / "detail").fine == recovered.maps.fine).all()
