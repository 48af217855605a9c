"""The ``realy`` protocol against the official REALY code on the parity pair (shared/realy-parity).

The pair is one prediction/scan pair with the figures czh-98/REALY ``main.REALY_eval_all`` gives
on it, run verbatim; CI has a copy of ``shared/`` beside the clone. Without it the test is skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mvrecon.evaluate import REGION_NAMES
from mvrecon.evaluate.parity import OFFICIAL_MM, load_parity_pair, run_parity
from mvrecon.evaluate.realy import realy_global_alignment
from mvrecon.geometry import umeyama
from mvrecon.parts import REALY_KEYPOINTS

PARITY_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "realy-parity"


@pytest.fixture(scope="module")
def pair():
    if not (PARITY_DIR / "pair-example.npz").is_file():
        pytest.skip(f"REALY parity pair not found at {PARITY_DIR} (shared/realy-parity beside the clone)")
    return load_parity_pair(PARITY_DIR)


@pytest.mark.slow
def test_every_region_within_2_percent_of_the_official_code(pair):
    r = run_parity(pair)
    for name in REGION_NAMES:
        assert r.result.regions[name].status == "ok", name
        assert abs(r.difference_pct[name]) <= 2.0, (name, r.result.regions[name].mean_mm, OFFICIAL_MM[name])
    assert abs(r.difference_pct["all"]) <= 2.0


def test_global_alignment_uses_realys_scale(pair):
    """REALY's scale (ratio of absolute centred coordinates) is not the least-squares one; the
    regional steps keep it, so using Umeyama's moves every region."""
    ours = realy_global_alignment(pair.pred_landmarks, pair.scan_landmarks)
    k = list(REALY_KEYPOINTS)
    src, dst = pair.pred_landmarks[k], pair.scan_landmarks[k]
    cs, cd = src - src.mean(0), dst - dst.mean(0)
    assert ours.scale == pytest.approx(np.abs(cd).sum() / np.abs(cs @ ours.rotation.T).sum(), rel=1e-12)
    assert abs(ours.scale / umeyama(src, dst).scale - 1) > 1e-3
    np.testing.assert_allclose(ours.apply(src).mean(0), dst.mean(0), atol=1e-12)
