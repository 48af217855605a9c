"""Per-session refinement of a knocked rig from the session's own photos."""

from __future__ import annotations

import numpy as np
import pytest

from mvrecon.calibrate.refine import RefineConfig, refine_extrinsics
from mvrecon.calibrate.synthetic import arc_rig, render_scene, textured_scene
from mvrecon.cameras import rotation_angle_deg, save_rig
from mvrecon.geometry import axis_angle_to_matrix
from mvrecon.errors import MvreconError
from mvrecon.io import write_image
from mvrecon.session import load_session, write_session_file


def _move(cam, mm: float, deg: float):
    axis = np.array([0.3, 1.0, 0.2]) / np.linalg.norm([0.3, 1.0, 0.2])
    R = axis_angle_to_matrix(np.radians(deg) * axis) @ cam.R
    C = cam.center + mm / 1000 * np.array([0.6, -0.4, 0.7]) / np.linalg.norm([0.6, -0.4, 0.7])
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = R, -R @ C
    return cam.replace(world_to_cam=M)


@pytest.mark.slow
def test_refine_recovers_a_moved_camera(tmp_path):
    """cam2 of a calibrated 5-camera rig was knocked by 5 mm / 0.5 deg; the session's own photos
    bring it back within 0.5 mm while the others stay put."""
    rng = np.random.default_rng(5)
    truth = arc_rig(5, 640, 480, rng=rng, span_deg=60)
    planes = textured_scene(rng)
    imgs = {}
    for c in truth.cameras:
        write_image(tmp_path / "images" / f"{c.name}.png", render_scene(c, planes, rng))
        imgs[c.name] = f"images/{c.name}.png"
    knocked = truth.with_cameras([_move(c, 5.0, 0.5) if c.name == "cam2" else c for c in truth.cameras])
    save_rig(knocked, tmp_path / "rig" / "rig.json")
    write_session_file(tmp_path, "rig", [{"name": "f0", "images": imgs}])
    res = refine_extrinsics(load_session(tmp_path), RefineConfig(max_features=2500))
    moved = {m.name: m for m in res.moves}
    assert moved["cam2"].shift_mm == pytest.approx(5.0, abs=0.5)
    assert moved["cam2"].rotation_deg == pytest.approx(0.5, abs=0.05)
    for t, e in zip(truth.cameras, res.rig.cameras):
        assert np.linalg.norm(t.center - e.center) < 0.5e-3, t.name
        assert rotation_angle_deg(t.R, e.R) < 0.05, t.name
    assert res.rms_after_px < 0.5 < res.rms_before_px
    assert (tmp_path / "calibrate" / "rig.json").is_file() and (tmp_path / "calibrate" / "refine.json").is_file()
    assert (tmp_path / "calibrate" / "colmap" / "images.txt").is_file()


def test_refine_needs_three_cameras(tmp_path):
    rig = arc_rig(2, 64, 48)
    save_rig(rig, tmp_path / "rig" / "rig.json")
    for c in rig.cameras:
        write_image(tmp_path / f"{c.name}.png", np.zeros((48, 64), np.uint8))
    write_session_file(tmp_path, "rig", [{"name": "f0", "images": {c.name: f"{c.name}.png" for c in rig.cameras}}])
    with pytest.raises(MvreconError, match="3 or more"):
        refine_extrinsics(load_session(tmp_path))
    assert not (tmp_path / "calibrate").exists()


def test_refine_without_texture_fails_cleanly(tmp_path):
    rig = arc_rig(3, 64, 48)
    save_rig(rig, tmp_path / "rig" / "rig.json")
    for c in rig.cameras:
        write_image(tmp_path / f"{c.name}.png", np.full((48, 64), 90, np.uint8))
    write_session_file(tmp_path, "rig", [{"name": "f0", "images": {c.name: f"{c.name}.png" for c in rig.cameras}}])
    with pytest.raises(MvreconError, match="too little texture"):
        refine_extrinsics(load_session(tmp_path))
    assert not (tmp_path / "calibrate").exists()
