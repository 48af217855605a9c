"""Realism factors of synthetic sessions: each one does what it says, and renders stay deterministic."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from mvrecon.errors import MvreconError
from mvrecon.io import read_image
from mvrecon.synth import SynthConfig, make_session
from mvrecon.synth.dress import MATERIAL_CODES
from mvrecon.synth.realism import FACTORS, CameraResponse, Realism, clutter_backdrop, rig_difference, srgb_decode, srgb_encode

SMALL = SynthConfig(seed=12, cameras=2, width=320, height=240, board=False, texture_size=256, fine_map_size=256,
                    mid_map_size=64)


@pytest.fixture(scope="module")
def full_session(ict_model, tmp_path_factory):
    real = Realism.parse("full").replace(calib_mm=2.5, calib_deg=0.3)
    return make_session(tmp_path_factory.mktemp("real") / "s", SMALL.replace(realism=real), model=ict_model)


def test_parse_presets_and_lists():
    assert Realism.parse("clean") == Realism() and Realism().name == "clean"
    assert Realism.parse("full").factors == FACTORS and Realism.parse("full").name == "full"
    assert Realism.parse("skin, camera").factors == ("skin", "camera")
    assert "hair" not in Realism.parse("full-hair").factors and len(Realism.parse("full-hair").factors) == 6
    with pytest.raises(MvreconError, match="unknown realism factor"):
        Realism.parse("skin,glitter")
    with pytest.raises(MvreconError, match="out of range"):
        Realism(calib_mm=-1)


def _files(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_full_realism_is_deterministic(full_session, ict_model, tmp_path):
    real = Realism.parse("full").replace(calib_mm=2.5, calib_deg=0.3)
    again = make_session(tmp_path / "again", SMALL.replace(realism=real), model=ict_model)
    assert _files(again.root) == _files(full_session.root)


def test_session_records_its_factors_and_ships_jpegs(full_session):
    data = json.loads((full_session.root / "session.json").read_text())
    assert data["options"]["synthetic"]["realism"] == list(FACTORS)
    img = data["frames"][0]["images"]["cam0"]
    assert img.endswith(".jpg")
    assert read_image(full_session.root / img).shape == (240, 320, 3)
    gt = np.load(full_session.root / "gt" / "gt.npz")
    assert str(gt["realism"]) == "full"
    q = gt["camera_response"][:, 8]
    assert np.all((q >= 85) & (q <= 95))


def test_shipped_rig_differs_from_the_render_rig_by_the_asked_amount(full_session):
    from mvrecon.cameras import load_rig

    shipped = load_rig(full_session.root / "rig" / "rig.json")
    gt = np.load(full_session.root / "gt" / "gt.npz")
    assert np.allclose(np.stack([c.world_to_cam for c in shipped.cameras]), gt["shipped_world_to_cam"], atol=1e-9)
    render = shipped.replace(cameras=tuple(c.replace(world_to_cam=w)
                                           for c, w in zip(shipped.cameras, gt["render_world_to_cam"])))
    mm, deg = rig_difference(shipped, render)
    assert np.allclose(mm, 2.5, atol=1e-6) and np.allclose(deg, 0.3, atol=1e-6)


def test_collar_and_hair_pixels_are_not_skin_in_the_truth_labels(full_session):
    mat = read_image(full_session.root / "gt" / "material" / "f000_cam0.png", gray=True)
    parts = read_image(full_session.root / "gt" / "parts" / "f000_cam0.png", gray=True)
    cloth = mat == MATERIAL_CODES["cloth"]
    hair = mat == MATERIAL_CODES["hair"]
    assert cloth.sum() > 200 and hair.sum() > 200          # both are in the picture
    assert np.all(parts[cloth] == 0)
    assert np.mean(parts[hair] == 0) > 0.95
    # the photo's collar and hair are not skin-coloured where the truth says so: dark hair or a cloth colour
    assert np.any(mat == MATERIAL_CODES["skin"]) and np.any(mat == MATERIAL_CODES["eye"])


def test_head_factor_leaves_the_model_span(full_session, ict_model):
    gt = np.load(full_session.root / "gt" / "gt.npz")
    off = gt["head_offset"].astype(np.float64)
    assert np.linalg.norm(off, axis=1).max() == pytest.approx(5e-3, rel=1e-4)
    # the deformed neutral head, fitted by the model's identity (least squares, all modes): what is left
    neutral = ict_model.vertices(gt["id_coeffs"], np.zeros(ict_model.n_exp)).astype(np.float64) + off
    B = ict_model.id_basis.reshape(ict_model.n_id, -1).T.astype(np.float64)
    a = ict_model.submeshes["face"]
    rows = np.arange(3 * a[0], 3 * a[1])
    r = (neutral - ict_model.mean).reshape(-1)[rows]
    x, *_ = np.linalg.lstsq(B[rows], r, rcond=None)
    left = np.linalg.norm((r - B[rows] @ x).reshape(-1, 3), axis=1)
    assert left.max() > 1.5e-3                 # millimetres the model cannot express


def test_annotator_landmarks_move_brows_up_and_keep_the_stable_points(full_session):
    gt = np.load(full_session.root / "gt" / "gt.npz")
    model_lm, scan_lm = gt["landmarks3d"][0], gt["scan_landmarks"]
    assert np.allclose(np.loadtxt(full_session.root / "scan" / "landmarks.txt"), scan_lm, atol=1e-6)
    up = gt["head_to_world"][0][:3, 1]
    d = (scan_lm - model_lm) * 1e3
    brows = d[17:27]
    assert np.all(brows @ up > 2.5) and np.all(np.linalg.norm(brows, axis=1) < 7.0)
    stable = [36, 39, 42, 45, 48, 54]
    assert np.allclose(d[stable], 0)
    jaw = np.linalg.norm(d[:17], axis=1)
    assert np.median(jaw) > 1.0 and jaw.max() <= 12.5


def test_camera_response_exposure_white_balance_vignetting():
    from mvrecon.cameras import Camera

    cam = Camera(name="c", width=200, height=100, K=np.array([[200.0, 0, 99.5], [0, 200.0, 49.5], [0, 0, 1]]),
                 dist=np.zeros(0), world_to_cam=np.eye(4))
    r = CameraResponse(exposure=1.2, white_balance=np.array([1.1, 1.0, 0.9]), vignetting=0.3, blur_px=0.0,
                       shot=0.0, read=0.0, quality=90)
    img = r.apply(np.full((100, 200, 3), 0.2), cam, np.random.default_rng(0))
    centre = srgb_decode(img[50, 100] / 255.0)
    assert np.allclose(centre, 0.2 * 1.2 * np.array([1.1, 1.0, 0.9]), rtol=0.03)
    corner = srgb_decode(img[0, 0] / 255.0)
    assert np.allclose(corner / centre, 1 - 0.3, atol=0.03)
    assert np.allclose(srgb_decode(srgb_encode(np.linspace(0, 1, 11))), np.linspace(0, 1, 11))
    jpg = r.jpeg(img)
    assert jpg[:2] == b"\xff\xd8"


def test_clutter_backdrop_is_busier_than_the_studio_backdrop():
    from mvrecon.cameras import Camera
    from mvrecon.synth.render import backdrop

    cam = Camera(name="c", width=320, height=240, K=np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]]),
                 dist=np.zeros(0), world_to_cam=np.eye(4))
    studio = backdrop(cam, np.random.default_rng(1))
    room = clutter_backdrop(cam, np.random.default_rng(1))
    assert room.shape == studio.shape
    assert room.std(axis=(0, 1)).mean() > 4 * studio.std(axis=(0, 1)).mean()


def test_key_light_casts_soft_shadows():
    import dataclasses

    from mvrecon.synth.render import KeyLight, Scene, key_visibility

    # a floor (z = 0) of vertices and a small square blocker 5 cm above its middle
    g = np.linspace(-0.1, 0.1, 41)
    xx, yy = np.meshgrid(g, g)
    floor = np.stack([xx.ravel(), yy.ravel(), np.zeros(xx.size)], 1)
    idx = np.arange(xx.size).reshape(41, 41)
    quads = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]], -1).reshape(-1, 4)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    blk = np.array([[-0.02, -0.02, 0.05], [0.02, -0.02, 0.05], [0.02, 0.02, 0.05], [-0.02, 0.02, 0.05]])
    verts = np.concatenate([floor, blk])
    n0 = len(floor)
    faces = np.concatenate([faces, np.array([[n0, n0 + 1, n0 + 2], [n0, n0 + 2, n0 + 3]])])
    normals = np.tile([0.0, 0.0, 1.0], (len(verts), 1))
    z = np.zeros(len(verts))
    scene = Scene(verts=verts, faces=faces, textured=np.zeros(len(faces), bool), uvs=np.zeros((1, 2)),
                  uv_faces=np.zeros_like(faces), colors=np.zeros((len(verts), 3)), labels=np.zeros(len(faces), np.uint8),
                  normals=normals, texture=np.zeros((1, 1, 3)), u_tiles=1)
    vis = key_visibility(dataclasses.replace(scene, verts=verts + z[:, None] * 0),
                         KeyLight(direction=np.array([0.0, 0.0, 1.0]), rgb=np.ones(3), radius_deg=8.0), samples=32)
    r = np.hypot(floor[:, 0], floor[:, 1])
    assert vis[:n0][r < 0.005].max() == 0.0              # under the blocker: full shadow
    assert vis[:n0][r > 0.06].min() == 1.0               # far from it: fully lit
    edge = vis[:n0][(np.abs(floor[:, 0]) > 0.018) & (np.abs(floor[:, 0]) < 0.03) & (np.abs(floor[:, 1]) < 0.01)]
    assert np.any((edge > 0) & (edge < 1))               # a penumbra: the shadow is soft
