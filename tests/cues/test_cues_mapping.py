from __future__ import annotations

import numpy as np
import pytest

from mvrecon.cues.mapping import IBUG68_FROM_MP, MP_TO_IBUG68, N_MEDIAPIPE, mediapipe_to_ibug68


def test_table_has_68_entries_unique_and_in_range():
    assert len(IBUG68_FROM_MP) == 68
    flat = [i for entry in IBUG68_FROM_MP for i in entry]
    assert all(0 <= i < N_MEDIAPIPE for i in flat)
    assert all(1 <= len(e) <= 2 and len(set(e)) == len(e) for e in IBUG68_FROM_MP)
    # no two iBUG points are the same MediaPipe point or the same mean of two
    assert len({tuple(sorted(e)) for e in IBUG68_FROM_MP}) == 68
    singles = [e[0] for e in IBUG68_FROM_MP if len(e) == 1]
    assert len(set(singles)) == len(singles)
    # and none is a combination of the others: the 68 rows are linearly independent
    assert np.linalg.matrix_rank(MP_TO_IBUG68) == 68
    # iris points (468-477) have no iBUG counterpart
    assert max(flat) < 468


# MediaPipe mirror pairs (subject right, subject left) of every point the table uses; the midline
# points map to themselves. Checked against the mesh itself in test_mirror_pairs_are_mirror_images.
MIRROR_PAIRS = [(162, 389), (127, 356), (234, 454), (93, 323), (132, 361), (58, 288), (172, 397),
                (136, 365), (150, 379), (149, 378), (176, 400), (148, 377), (70, 300), (63, 293),
                (105, 334), (66, 296), (107, 336), (98, 327), (97, 326), (33, 263), (160, 387),
                (158, 385), (133, 362), (153, 380), (144, 373), (61, 291), (40, 270), (39, 269),
                (37, 267), (91, 321), (181, 405), (84, 314), (78, 308), (81, 311), (178, 402)]
MIDLINE = (152, 168, 197, 5, 195, 4, 2, 0, 17, 13, 14)


def test_mirror_pairs_are_mirror_images(astronaut_cues):
    """Reflected through the face's mid-plane (fitted to the midline points of the detected
    3D mesh of a near-frontal face), each point lands on its declared partner."""
    p = astronaut_cues.points478[:468]
    mid = p[list(MIDLINE)]
    c = mid.mean(0)
    normal = np.linalg.svd(mid - c)[2][-1]  # the direction the midline points do not spread in
    iod = np.linalg.norm(p[33] - p[263])
    for a, b in MIRROR_PAIRS:
        refl = p[a] - 2 * np.dot(p[a] - c, normal) * normal
        assert np.linalg.norm(refl - p[b]) < 0.12 * iod, (a, b)
        # and the partner is the nearest point to the reflection among all 468
        assert np.argmin(np.linalg.norm(p - refl, axis=1)) == b or np.linalg.norm(refl - p[b]) < 0.05 * iod


def test_table_is_left_right_symmetric():
    """Mirror pairs of iBUG points map to mirror pairs of MediaPipe points."""
    mirror = {c: c for c in MIDLINE}
    for a, b in MIRROR_PAIRS:
        mirror[a], mirror[b] = b, a
    ibug_mirror = list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + list(range(35, 30, -1))
    ibug_mirror += [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    ibug_mirror += [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
    assert sorted(ibug_mirror) == list(range(68))
    for i, j in enumerate(ibug_mirror):
        assert {mirror[k] for k in IBUG68_FROM_MP[i]} == set(IBUG68_FROM_MP[j]), (i, j)


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
