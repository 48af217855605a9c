"""Board-free SfM calibration (pycolmap) on rendered textured scenes."""

from __future__ import annotations

import numpy as np
import pytest

from mvrecon.calibrate.board import board_texture, render_plane
from mvrecon.calibrate.sfm import SfmConfig, calibrate_sfm
from mvrecon.calibrate.synthetic import arc_rig, board_pose, render_scene, textured_scene
from mvrecon.cameras import Board, rotation_angle_deg
from mvrecon.errors import InputError
from mvrecon.geometry import umeyama
from mvrecon.io import write_image

BOARD = Board(7, 5, 0.04, 0.03)


def _with_board(cam, img, M):
    """Paste a ChArUco board (posed by M, in front of the scene) into a rendered image."""
    pps = 64
    tex = np.pad(board_texture(BOARD, pps).astype(np.float32), pps // 2, constant_values=255.0)
    val, cov = render_plane(cam, M, tex, pps / BOARD.square_length, origin_px=(pps // 2, pps // 2))
    return np.clip(np.round(val * cov + img * (1 - cov)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("sfm")
    rng = np.random.default_rng(11)
    rig = arc_rig(4, 640, 480, rng=rng, span_deg=70, board=BOARD)
    planes = textured_scene(rng)
    # the board hangs in front of the scene, facing the arc, seen by every camera
    M = board_pose(BOARD, np.array([0.0, 0.0, 0.2]), 0.0, 0.0, 0.0)
    for c in rig.cameras:
        img = render_scene(c, planes, rng)
        write_image(root / "plain" / f"{c.name}.png", img)
        write_image(root / "board" / f"{c.name}.png", _with_board(c, img, M))
    return root, rig


def _aligned_errors(truth, est):
    Ct = np.array([c.center for c in truth.cameras])
    Ce = np.array([c.center for c in est.cameras])
    fit = umeyama(Ce, Ct)
    s, R, t = fit.scale, fit.rotation, fit.translation
    rot = [rotation_angle_deg(e.R @ R.T, c.R) for c, e in zip(truth.cameras, est.cameras)]
    cen = [np.linalg.norm(s * R @ e.center + t - c.center) for c, e in zip(truth.cameras, est.cameras)]
    return s, np.array(rot), np.array(cen)


def test_sfm_recovers_cameras_with_known_distance(scene):
    root, truth = scene
    a, b = truth.cameras[0], truth.cameras[3]
    d = float(np.linalg.norm(a.center - b.center))
    res = calibrate_sfm(truth, root / "plain", SfmConfig(scale_distance=(a.name, b.name, d)))
    s, rot, cen = _aligned_errors(truth, res.rig)
    assert rot.max() < 0.5
    assert abs(s - 1) < 0.005 and cen.max() < 0.005
    got = np.linalg.norm(res.rig[a.name].center - res.rig[b.name].center)
    assert got == pytest.approx(d, rel=1e-9)


def test_sfm_scale_from_a_board(scene):
    root, truth = scene
    res = calibrate_sfm(truth, root / "board", SfmConfig())
    assert res.scale_source == "ChArUco board"
    s, rot, _ = _aligned_errors(truth, res.rig)
    assert rot.max() < 0.5
    assert abs(s - 1) < 0.01


def test_sfm_bad_input(scene, tmp_path):
    root, truth = scene
    with pytest.raises(InputError, match="no metric scale"):  # refused before any SfM work
        calibrate_sfm(truth.replace(board=None), root / "plain", SfmConfig())
    (tmp_path / "few").mkdir()
    write_image(tmp_path / "few" / "cam0.png", np.zeros((480, 640), np.uint8))
    with pytest.raises(InputError, match="cam1, cam2, cam3"):
        calibrate_sfm(truth, tmp_path / "few", SfmConfig(scale_distance=("cam0", "cam1", 0.5)))
    for c in truth.cameras[1:]:
        write_image(tmp_path / "few" / f"{c.name}.png", np.zeros((480, 640), np.uint8))
    write_image(tmp_path / "few" / "cam2.png", np.zeros((240, 320), np.uint8))
    with pytest.raises(InputError, match="cam2.png: image is 320x240 but camera 'cam2' is 640x480"):
        calibrate_sfm(truth, tmp_path / "few", SfmConfig(scale_distance=("cam0", "cam1", 0.5)))
    with pytest.raises(InputError, match="camX"):
        calibrate_sfm(truth, root / "plain", SfmConfig(scale_distance=("cam0", "camX", 0.5)))
