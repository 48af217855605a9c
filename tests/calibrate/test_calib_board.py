"""ChArUco board: geometry, exact rendering with distortion, detection accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from mvrecon.calibrate.board import board_corners, cv_board, detect_corners, render_board_shot
from mvrecon.calibrate.synthetic import arc_rig, board_pose
from mvrecon.cameras import Board

BOARD = Board(7, 5, 0.04, 0.03)


def test_board_corners_match_the_grid():
    P = board_corners(BOARD)
    assert P.shape == ((7 - 1) * (5 - 1), 3)
    # inner corners: the first one square in from the top-left, rows along +X
    np.testing.assert_allclose(P[0], [0.04, 0.04, 0.0])
    np.testing.assert_allclose(P[1] - P[0], [0.04, 0.0, 0.0])
    np.testing.assert_allclose(P[6] - P[0], [0.0, 0.04, 0.0])


def test_bad_board_definition_refused():
    with pytest.raises(ValueError, match="marker length"):
        cv_board(Board(7, 5, 0.04, 0.05))
    with pytest.raises(ValueError, match="markers"):
        cv_board(Board(30, 30, 0.04, 0.03, dictionary="DICT_4X4_50"))


@pytest.mark.parametrize("dist", [(0.0, 0.0, 0.0, 0.0, 0.0), (-0.25, 0.2, 1e-3, -1e-3, 0.0)])
def test_rendered_corners_are_detected_where_they_project(dist, rng):
    """The renderer's exact per-ray distortion and the detector agree to a small fraction of a
    pixel; a renderer that ignored the distortion would be off by pixels near the image edge."""
    cam = arc_rig(1, 640, 480, focal_mm=35, dist=dist).cameras[0]
    # the board off-centre and tilted, so it reaches where distortion is strong
    M = board_pose(BOARD, np.array([0.26, -0.17, 0.0]), 20.0, -15.0, 10.0)
    img = render_board_shot(BOARD, cam, M, rng)
    assert img.dtype == np.uint8 and img.shape == (480, 640)
    det = detect_corners(BOARD, img)
    assert len(det) >= 20
    truth, _ = cam.project(board_corners(BOARD)[det.ids] @ M[:3, :3].T + M[:3, 3])
    err = np.linalg.norm(det.corners - truth, axis=1)
    assert err.mean() < 0.12 and err.max() < 0.35
    # the distortion really moved these corners by pixels (so the check above could fail)
    undist, _ = cam.project(board_corners(BOARD)[det.ids] @ M[:3, :3].T + M[:3, 3], distort=False)
    if any(dist):
        assert np.linalg.norm(undist - truth, axis=1).max() > 3.0


def test_no_board_no_corners(rng):
    img = (rng.uniform(0, 255, (240, 320))).astype(np.uint8)
    det = detect_corners(BOARD, img)
    assert len(det) == 0 and det.corners.shape == (0, 2)


def test_other_board_reports_foreign_markers(rng):
    """A shot of a bigger board (same dictionary) shows marker ids the 7x5 board lacks."""
    big = Board(10, 8, 0.03, 0.022)
    cam = arc_rig(1, 640, 480, focal_mm=35).cameras[0]
    img = render_board_shot(big, cam, board_pose(big, np.zeros(3), 0.0, 0.0, 0.0), rng)
    det = detect_corners(BOARD, img)
    assert det.foreign_markers > 10
