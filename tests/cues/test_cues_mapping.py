from __future__ import annotations

import numpy as np
import pytest

from mvrecon.cues.mapping import IBUG68_FROM_MP, MP_TO_IBUG68, N_MEDIAPIPE, mediapipe_to_ibug68


def test_table_has_68_entries_unique_and_in_range():
    assert len(IBUG68_FROM_MP) == 68
    flat = [i for entry in IBUG68_FROM_MP for i in entry]
    assert all(0 <= i < N_MEDIAPIPE for i in flat)
    assert len(set(flat)) == len(flat), "a MediaPipe point is used by two iBUG points"
    assert len(set(IBUG68_FROM_MP)) == 68
    assert all(1 <= len(e) <= 2 for e in IBUG68_FROM_MP)
    # iris points (468-477) have no iBUG counterpart
    assert max(flat) < 468


def test_matrix_rows_are_averages():
    np.testing.assert_allclose(MP_TO_IBUG68.sum(1), 1.0)
    assert not MP_TO_IBUG68.flags.writeable


def test_mapping_averages_and_takes_min_confidence(rng):
    pts = rng.normal(size=(478, 3))
    conf = rng.uniform(size=478)
    before = pts.copy(), conf.copy()
    p68, c68 = mediapipe_to_ibug68(pts, conf)
    np.testing.assert_array_equal(pts, before[0])
    np.testing.assert_array_equal(conf, before[1])
    assert p68.shape == (68, 3) and c68.shape == (68,)
    for i, idx in enumerate(IBUG68_FROM_MP):
        np.testing.assert_allclose(p68[i], pts[list(idx)].mean(0))
        assert c68[i] == pytest.approx(conf[list(idx)].min())


def test_mapping_rejects_wrong_shape():
    with pytest.raises(ValueError, match="478"):
        mediapipe_to_ibug68(np.zeros((468, 2)))
