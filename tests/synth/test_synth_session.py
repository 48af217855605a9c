"""Synthetic sessions: they load, their truth agrees with their pixels, they are deterministic."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mvrecon.io import read_image
from mvrecon.parts import PART_CODES
from mvrecon.synth import SynthConfig, load_ground_truth, make_session

SMALL = SynthConfig(seed=11, cameras=2, width=320, height=240, calib_shots=4, texture_size=256,
                    fine_map_size=256, mid_map_size=64)


@pytest.fixture(scope="module")
def small_session(ict_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "s"
    res = make_session(out, SMALL, model=ict_model)
    return res


def _load(res):
    from mvrecon.session import load_session

    return load_session(res.root)


def test_session_loads_with_rig_scan_and_calib(small_session):
    s = _load(small_session)
    assert [c.name for c in s.rig.cameras] == ["cam0", "cam1"]
    assert len(s.views()) == 2 and s.frames[0].name == "f000"
    assert s.rig.board is not None and s.rig.cameras[0].has_distortion
    assert s.scan is not None and s.scan.mesh.is_file() and s.scan.landmarks.is_file() and s.scan.units == "m"
    n_calib = len(list(s.calib_dir.glob("s*/cam*.png")))
    assert n_calib == small_session.n_calib_images and 4 <= n_calib <= 4 * 2
    assert np.loadtxt(s.scan.landmarks).shape == (68, 3)
    for v in s.views():
        img = read_image(v.image)
        assert img.shape == (240, 320, 3)
        # a backdrop, not black: the corners are mid-grey
        assert 60 < img[:10, :10].mean() < 200
    cfg = json.loads((small_session.root / "gt" / "config.json").read_text())
    assert cfg["seed"] == 11 and cfg["cameras"] == 2


def _labels(res, view_key: str) -> np.ndarray:
    return read_image(res.root / "gt" / "parts" / f"{view_key}.png", gray=True)


def _near(labels: np.ndarray, uv: np.ndarray, codes: set[int], r: int = 2) -> bool:
    x, y = int(round(uv[0])), int(round(uv[1]))
    win = labels[max(0, y - r): y + r + 1, max(0, x - r): x + r + 1]
    return bool(np.isin(win, list(codes)).any())


def test_projected_landmarks_land_on_their_parts(small_session):
    res = small_session
    lm2d = json.loads((res.root / "gt" / "landmarks2d.json").read_text())["views"]
    checks = {36: {PART_CODES["right_eye"]}, 39: {PART_CODES["right_eye"]}, 42: {PART_CODES["left_eye"]},
              45: {PART_CODES["left_eye"]}, 48: {PART_CODES["upper_lip"], PART_CODES["lower_lip"]},
              54: {PART_CODES["upper_lip"], PART_CODES["lower_lip"]}}
    n_checked = 0
    for key, entry in lm2d.items():
        labels = _labels(res, key)
        pts = np.asarray(entry["points"])
        vis = np.asarray(entry["visible"])
        assert pts.shape == (68, 2) and vis.shape == (68,)
        assert vis.sum() >= 40
        for i, codes in checks.items():
            if vis[i]:
                assert _near(labels, pts[i], codes), f"{key}: landmark {i} at {pts[i]} is not on part {codes}"
                n_checked += 1
        # the nose tip lands on the nose, the chin on skin or the jaw outline
        assert _near(labels, pts[30], {PART_CODES["nose"]})
    assert n_checked >= 8


def test_landmarks2d_are_projections_of_the_3d_truth(small_session, ict_model):
    res = small_session
    gt = load_ground_truth(res.root)
    lm2d = json.loads((res.root / "gt" / "landmarks2d.json").read_text())["views"]
    lm3d_scan = np.loadtxt(res.root / "scan" / "landmarks.txt")
    np.testing.assert_allclose(lm3d_scan, gt.landmarks3d[0], atol=1e-8)
    for cam in res.rig.cameras:
        uv, _ = cam.project(gt.landmarks3d[0])
        np.testing.assert_allclose(np.asarray(lm2d[f"f000_{cam.name}"]["points"]), uv, atol=1e-3)
    # the landmark vertices of the model-topology truth are the 3D landmarks
    np.testing.assert_allclose(gt.verts_detail[0][ict_model.landmarks68], gt.landmarks3d[0], atol=1e-6)


def test_pupil_is_darker_than_the_cheek(small_session):
    res = small_session
    gt = load_ground_truth(res.root)
    lm2d = json.loads((res.root / "gt" / "landmarks2d.json").read_text())["views"]
    for cam in res.rig.cameras:
        img = read_image(res.root / "images" / "f000" / f"{cam.name}.png").astype(np.float64).mean(-1)
        pts = np.asarray(lm2d[f"f000_{cam.name}"]["points"])
        pupils, _ = cam.project(gt.pupils3d[0])
        # the pupil nearer the camera (the other may be hidden behind the nose)
        p = pupils[np.argmin(np.linalg.norm(gt.pupils3d[0] - cam.center, axis=1))]
        side = 2 if p[0] > pts[27, 0] else 14                      # cheek on the same side of the nose
        cheek = 0.5 * (pts[side] + pts[30])
        val = lambda q: img[int(round(q[1])) - 1: int(round(q[1])) + 2, int(round(q[0])) - 1: int(round(q[0])) + 2].mean()  # noqa: E731
        assert val(p) < 0.6 * val(cheek), (cam.name, val(p), val(cheek))


def _scene_of_dots(points: np.ndarray, radius: float = 0.01):
    """A Scene of small bright icospheres at ``points`` (P, 3) (vertex-coloured, no texture)."""
    import trimesh

    from mvrecon.geometry import vertex_normals
    from mvrecon.synth.render import Scene

    ico = trimesh.creation.icosphere(subdivisions=2, radius=radius)
    iv, fi = np.asarray(ico.vertices), np.asarray(ico.faces)
    verts = np.concatenate([iv + p for p in points])
    faces = np.concatenate([fi + k * len(iv) for k in range(len(points))])
    return Scene(verts=verts, faces=faces, textured=np.zeros(len(faces), bool), uvs=np.zeros((1, 2)),
                 uv_faces=np.zeros_like(faces), colors=np.ones((len(verts), 3), np.float32),
                 labels=np.ones(len(faces), np.uint8), normals=vertex_normals(verts, faces),
                 texture=np.zeros((2, 2, 3), np.float32), u_tiles=1)


def test_distorted_rendering_matches_camera_project():
    """Dots near the image corners of a strongly distorted camera are drawn where
    ``Camera.project`` (distortion on) puts them, and far from the pinhole projection."""
    import cv2

    from mvrecon.cameras import Camera
    from mvrecon.synth import render as R
    from mvrecon.synth.rig import look_at_opencv

    W, H = 320, 240
    K = np.array([[300.0, 0, 161.3], [0, 300.0, 118.7], [0, 0, 1]])
    cam = Camera("c", W, H, K, dist=[-0.28, 0.09, 0.002, -0.0015, 0.0], world_to_cam=look_at_opencv([0, 0, 1.0], [0, 0, 0]))
    pix = np.array([[25.0, 22.0], [295.0, 30.0], [30.0, 215.0], [290.0, 212.0], [160.0, 120.0], [100.0, 60.0]])
    pts = cam.unproject(pix, depth=np.full(len(pix), 1.0))
    scene = _scene_of_dots(pts)
    sh = np.zeros((9, 3))
    sh[0] = 1.0 / (np.pi / np.sqrt(4 * np.pi))                     # irradiance 1 everywhere
    view = R.render_view(scene, scene.raycaster(), cam, sh, np.random.default_rng(0), ss=4, noise_sigma=0.0)
    gray = view.image.astype(np.float64).mean(-1)
    n, lab, stats, cents = cv2.connectedComponentsWithStats((gray > 220).astype(np.uint8))
    found = cents[1:][stats[1:, cv2.CC_STAT_AREA] > 3]
    # weighted centroids (anti-aliased edges) of each blob
    weights = np.clip(gray - 110, 0, None)
    uv_dist, _ = cam.project(pts)
    uv_pin, _ = cam.project(pts, distort=False)
    assert len(found) == len(pts)
    for q, qp in zip(uv_dist, uv_pin):
        j = np.argmin(np.linalg.norm(found - q, axis=1))
        x0, y0 = np.round(found[j]).astype(int)
        win = weights[y0 - 8: y0 + 9, x0 - 8: x0 + 9]
        yy, xx = np.mgrid[y0 - 8: y0 + 9, x0 - 8: x0 + 9]
        c = np.array([(win * xx).sum(), (win * yy).sum()]) / win.sum()
        assert np.linalg.norm(c - q) < 0.25
    # near the corners distortion moves points by several pixels: a pinhole render would miss them
    assert np.max(np.linalg.norm(uv_dist - uv_pin, axis=1)) > 5.0
    # each pixel-centre ray hits the surface at a point that projects back onto that pixel centre
    rays = R.world_rays(cam, 1)[0]
    prim, _ = R._cast(scene.raycaster(), rays)
    hit_idx = np.flatnonzero(prim >= 0)
    t = scene.raycaster().cast(rays[hit_idx]).t_hit
    X = rays[hit_idx, :3].astype(np.float64) + t[:, None] * rays[hit_idx, 3:].astype(np.float64)
    back, _ = cam.project(X)
    pix_c = np.stack([hit_idx % W, hit_idx // W], 1)
    assert len(hit_idx) > 50
    np.testing.assert_allclose(back, pix_c, atol=2e-3)


def test_scan_is_denser_than_the_model_and_has_holes(small_session, ict_model):
    import trimesh

    from mvrecon.synth import meshops as mo
    from mvrecon.synth.head import SkinTopology

    res = small_session
    scan = trimesh.load(res.root / "scan" / "scan.ply", process=False)
    v, f = np.asarray(scan.vertices), np.asarray(scan.faces)
    assert len(v) == res.scan_vertices and len(f) == res.scan_triangles
    assert len(v) > 3 * ict_model.n_vertices and len(f) > 3 * len(ict_model.triangles)
    # a different triangulation: model vertices are a small subset of the scan's vertices
    topo = SkinTopology.of(ict_model)
    skin_border_edges = int(mo.boundary_vertices(topo.faces, len(topo.vids)).sum()) * 4   # after 2 levels
    assert mo.boundary_vertices(f, len(v)).sum() > skin_border_edges + 30                   # the holes' rims
    gt = load_ground_truth(res.root)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(v).query(gt.verts_detail[0][topo.vids])
    # model-topology truth lies on the scan surface: nearest scan vertex within noise + spacing,
    # except where a hole was cut
    assert np.median(d) < 0.5e-3 and np.mean(d < 1.5e-3) > 0.97
    # and the detail layers are real: the detailed truth differs from the linear model's surface
    diff = np.linalg.norm(gt.verts_detail[0] - gt.verts[0], axis=1)
    assert diff.max() > 1.5e-3 and np.median(diff[topo.vids]) < 1.0e-3


def test_detail_maps_and_albedo_in_ground_truth(small_session, ict_model):
    gt = load_ground_truth(small_session.root)
    assert gt.mid_map.shape == (64, 64) and gt.fine_map.shape == (256, 256)
    assert 2.5e-3 < np.abs(gt.mid_map).max() <= 3.0001e-3
    assert 0.1e-3 < np.abs(gt.fine_map).max() < 1e-3
    alb = read_image(small_session.root / "gt" / "albedo.png")
    assert alb.shape == (256, 512, 3)
    assert gt.sh.shape == (9, 3) and gt.head_to_world.shape == (1, 4, 4)
    assert gt.exp_coeffs.shape == (1, ict_model.n_exp) and gt.exp_coeffs.max() > 0.05


def test_board_shots_are_detected_where_the_truth_says(small_session):
    from mvrecon.calibrate.board import board_corners, detect_corners

    res = small_session
    gt = load_ground_truth(res.root)
    board = res.rig.board
    corners3d = board_corners(board)
    seen_by = []
    for si, M in enumerate(gt.board_to_world):
        n_cams = 0
        for cam in res.rig.cameras:
            path = res.root / "calib" / f"s{si:02d}" / f"{cam.name}.png"
            if not path.is_file():           # the board faced away from this camera
                continue
            img = read_image(path, gray=True)
            det = detect_corners(board, img)
            if len(det) >= 6:
                n_cams += 1
                truth, _ = cam.project(corners3d[det.ids] @ M[:3, :3].T + M[:3, 3])
                assert np.median(np.linalg.norm(det.corners - truth, axis=1)) < 0.6
        seen_by.append(n_cams)
    assert sum(n >= 2 for n in seen_by) >= len(seen_by) // 2


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(ict_model, tmp_path):
    cfg = SynthConfig(seed=5, cameras=1, width=96, height=72, calib_shots=1, texture_size=64, fine_map_size=64,
                      mid_map_size=32, subdivision=1, scan_holes=2)
    a = _hashes(make_session(tmp_path / "a", cfg, model=ict_model).root)
    b = _hashes(make_session(tmp_path / "b", cfg, model=ict_model).root)
    assert len(a) >= 10 and a == b
    c = _hashes(make_session(tmp_path / "c", cfg.replace(seed=6), model=ict_model).root)
    assert c["images/f000/cam0.png"] != a["images/f000/cam0.png"]
    assert c["gt/gt.npz"] != a["gt/gt.npz"]


def test_existing_output_is_refused_and_left_alone(ict_model, tmp_path):
    from mvrecon.errors import MvreconError

    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(MvreconError, match="exists"):
        make_session(out, SMALL, model=ict_model)
    assert (out / "keep.txt").read_text() == "x"


def test_ground_truth_reader_names_the_file(tmp_path):
    from mvrecon.errors import InputError

    with pytest.raises(InputError, match="gt.npz"):
        load_ground_truth(tmp_path)
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "gt.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="gt.npz: not a readable"):
        load_ground_truth(tmp_path)


def test_bad_config_is_one_clear_error():
    from mvrecon.errors import MvreconError

    with pytest.raises(MvreconError, match="cameras"):
        SynthConfig(cameras=0)
    with pytest.raises(MvreconError, match="image size"):
        SynthConfig(width=8)


def test_cli_errors_are_one_line(tmp_path):
    from click.testing import CliRunner

    from mvrecon.cli import main

    out = tmp_path / "x"
    out.mkdir()
    (out / "f").write_text("x")
    r = CliRunner().invoke(main, ["synth", "session", str(out), "--size", "64x48"])
    assert r.exit_code == 2 and "exists" in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(main, ["synth", "session", str(tmp_path / "y"), "--size", "big"])
    assert r.exit_code != 0 and "WxH" in r.output
    assert not (tmp_path / "y").exists()


def test_cli_makes_a_session(ict_model, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import mvrecon.synth as synth_pkg
    from mvrecon.cli import main
    from mvrecon.session import load_session

    real = synth_pkg.make_session
    seen = {}

    def small_maps(out, cfg, overwrite=False):
        # the CLI's options reach the config; only the map sizes are shrunk to keep the test quick
        seen["cfg"] = cfg
        return real(out, cfg.replace(texture_size=64, fine_map_size=64, mid_map_size=32, subdivision=1),
                    model=ict_model, overwrite=overwrite)

    monkeypatch.setattr(synth_pkg, "make_session", small_maps)
    r = CliRunner().invoke(main, ["synth", "session", str(tmp_path / "s"), "--cameras", "1", "--size", "64x48",
                                  "--no-board", "--seed", "3", "--expression-scale", "0.5"])
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert (cfg.cameras, cfg.width, cfg.height, cfg.board, cfg.seed, cfg.expression_scale) == (1, 64, 48, False, 3, 0.5)
    s = load_session(tmp_path / "s")
    assert s.calib_dir is None and len(s.views()) == 1 and s.rig.board is None
    assert "1 images" in r.output


def test_frames_have_their_own_expression_and_pose(ict_model, tmp_path):
    cfg = SynthConfig(seed=2, cameras=1, width=128, height=96, frames=2, board=False, expression_scale=2.5,
                      texture_size=64, fine_map_size=64, mid_map_size=32, subdivision=1, scan_holes=1)
    res = make_session(tmp_path / "s", cfg, model=ict_model)
    gt = load_ground_truth(res.root)
    assert res.frames == ("f000", "f001") and res.n_calib_images == 0
    assert not (res.root / "calib").exists()
    assert np.abs(gt.exp_coeffs[0] - gt.exp_coeffs[1]).max() > 0.05
    assert np.abs(gt.head_to_world[0] - gt.head_to_world[1]).max() > 1e-4
    # identity and detail are the subject's: the same in both frames (up to pose and expression)
    assert gt.id_coeffs.shape == (ict_model.n_id,)
    lm2d = json.loads((res.root / "gt" / "landmarks2d.json").read_text())["views"]
    assert sorted(lm2d) == ["f000_cam0", "f001_cam0"]
    assert (res.root / "gt" / "parts" / "f001_cam0.png").is_file()
    # a wide-open mouth (scale 2.5) shows the mouth interior: it is rendered, not see-through
    assert gt.mouth_open.all()


def test_a_model_without_head_submeshes_is_refused(ict_model, tmp_path):
    import dataclasses

    from mvrecon.errors import MvreconError

    bare = dataclasses.replace(ict_model, submeshes={}, submesh_triangles={})
    with pytest.raises(MvreconError, match="sub-meshes"):
        make_session(tmp_path / "s", SMALL, model=bare)
    assert not (tmp_path / "s").exists()


def _photo_vs_render(res, model, sh, tex):
    """Per camera (median, 90th percentile) |photo - mvrecon.render of the model-topology truth|
    in grey levels, on skin pixels away from edges, in the undistorted images."""
    import cv2
    import torch

    from mvrecon.render import render_mesh

    gt = load_ground_truth(res.root)
    ids = model.render_triangle_ids(("face", "head_neck"))
    uvs = model.uvs.astype(np.float64).copy()
    uvs[:, 0] /= gt.albedo_u_tiles
    out = []
    for ci, cam in enumerate(res.rig.cameras):
        r = render_mesh(torch.from_numpy(gt.verts_detail[0]).double(), torch.from_numpy(model.triangles[ids]).long(),
                        torch.from_numpy(cam.K)[None], torch.from_numpy(cam.world_to_cam)[None], cam.height, cam.width,
                        uv_faces=torch.from_numpy(model.uv_triangles[ids]).long(), uvs=torch.from_numpy(uvs),
                        texture=torch.from_numpy(tex).permute(2, 0, 1).double(), sh=torch.from_numpy(sh))
        pred = np.clip(r.image[0].numpy() * gt.camera_gain[ci], 0, 1) ** (1 / gt.camera_gamma[ci]) * 255
        photo, _ = cam.undistort_image(read_image(res.root / "images" / "f000" / f"{cam.name}.png"))
        lab, _ = cam.undistort_image(_labels(res, f"f000_{cam.name}"), cv2.INTER_NEAREST)
        mask = ((lab == PART_CODES["skin"]) & r.mask[0].numpy()).astype(np.uint8)
        mask = cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(bool)
        d = np.abs(pred - photo.astype(np.float64))[mask]
        assert mask.sum() > 500
        out.append((np.median(d), np.percentile(d, 90)))
    return np.array(out)


def test_photos_are_reproduced_by_the_project_renderer_from_the_truth(small_session, ict_model):
    """mvrecon.render with the stored truth (model-topology vertices, albedo PNG, SH, camera gain and
    gamma) reproduces the photos: the conventions (UV v up, texture tiles, SH basis, world normals,
    distortion) agree between the generator and the fit's renderer."""
    gt = load_ground_truth(small_session.root)
    tex = read_image(small_session.root / "gt" / "albedo.png").astype(np.float64) / 255
    good = _photo_vs_render(small_session, ict_model, gt.sh, tex)
    print("photo vs render (median, p90) grey levels per camera:", good.round(2).tolist())
    assert np.all(good[:, 0] < 3.0) and np.all(good[:, 1] < 8.0), good
    # controls: light from the mirrored side, or the texture upside down, are clearly worse
    mirrored = gt.sh * np.array([1, 1, 1, -1, -1, 1, 1, -1, 1])[:, None]
    bad_light = _photo_vs_render(small_session, ict_model, mirrored, tex)
    bad_tex = _photo_vs_render(small_session, ict_model, gt.sh, tex[::-1].copy())
    print("controls p90: mirrored light", bad_light[:, 1].round(1).tolist(), "flipped texture", bad_tex[:, 1].round(1).tolist())
    assert np.all(bad_light[:, 1] > 2 * good[:, 1]) and np.all(bad_tex[:, 1] > 2 * good[:, 1]), (bad_light, bad_tex)
