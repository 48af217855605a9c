"""Rig import/export: COLMAP text/binary (checked against pycolmap), OpenCV YAML, nerfstudio."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from mvrecon.calibrate.formats import (ColmapModel, ColmapPoint, export_rig, import_rig, read_colmap, rig_to_colmap,
                                       write_colmap_binary, write_colmap_text)
from mvrecon.calibrate.synthetic import arc_rig
from mvrecon.cameras import load_rig, save_rig
from mvrecon.cli import main
from mvrecon.errors import InputError


@pytest.fixture
def rig(rng):
    r = arc_rig(3, 640, 480, rng=rng)
    # one camera with k3 (FULL_OPENCV in COLMAP), one without distortion (PINHOLE), one OPENCV
    cams = list(r.cameras)
    cams[0] = cams[0].replace(dist=np.array([-0.1, 0.05, 1e-3, -2e-3, 0.01]))
    cams[1] = cams[1].replace(dist=np.zeros(5))
    cams[2] = cams[2].replace(dist=np.array([-0.07, 0.1, 3e-4, 1e-4, 0.0]))
    return r.with_cameras(cams)


def _same(a, b, tol=1e-9):
    assert a.names == b.names
    for x, y in zip(a.cameras, b.cameras):
        assert (x.width, x.height) == (y.width, y.height)
        np.testing.assert_allclose(x.K, y.K, atol=tol, rtol=0)
        np.testing.assert_allclose(x.world_to_cam, y.world_to_cam, atol=tol, rtol=0)
        dx, dy = np.zeros(8), np.zeros(8)
        dx[: x.dist.size], dy[: y.dist.size] = x.dist, y.dist
        np.testing.assert_allclose(dx, dy, atol=tol, rtol=0)


@pytest.mark.parametrize("fmt,name", [("colmap", "model"), ("colmap-bin", "model"), ("opencv", "rig.yaml"),
                                      ("nerfstudio", "transforms.json")])
def test_round_trip(rig, tmp_path, fmt, name):
    out = export_rig(rig, fmt, tmp_path / name)
    _same(rig, import_rig(out))


@pytest.mark.parametrize("fmt", ["colmap", "colmap-bin"])
def test_colmap_models_agree_with_pycolmap(rig, tmp_path, fmt):
    """pycolmap reads what we write, and we read what pycolmap writes (text and binary)."""
    pycolmap = pytest.importorskip("pycolmap")
    export_rig(rig, fmt, tmp_path / "ours")
    rec = pycolmap.Reconstruction()
    rec.read(str(tmp_path / "ours"))
    assert rec.num_images() == len(rig)
    for im in rec.images.values():
        cam = rig[im.name.rsplit(".", 1)[0]]
        np.testing.assert_allclose(np.asarray(im.cam_from_world().matrix()), cam.world_to_cam[:3], atol=1e-12)
        assert rec.cameras[im.camera_id].params[0] == pytest.approx(cam.K[0, 0], abs=1e-12)
    for writer in ("write_text", "write_binary"):
        d = tmp_path / writer
        d.mkdir()
        getattr(rec, writer)(str(d))
        _same(rig, import_rig(d))


def test_colmap_points_and_keypoints_survive(tmp_path, rig):
    """A model with keypoints and a 3D point: our text and binary writers, read by pycolmap and
    by our readers, keep them."""
    import dataclasses

    pycolmap = pytest.importorskip("pycolmap")
    model = rig_to_colmap(rig)
    imgs = dict(model.images)
    for iid in (1, 2):
        imgs[iid] = dataclasses.replace(imgs[iid], xys=np.array([[10.5, 20.25], [33.0, 44.0]]),
                                        point3d_ids=np.array([7, -1]))
    pt = ColmapPoint(7, np.array([0.1, 0.2, 0.3]), np.array([1, 2, 3], np.uint8), 0.25, np.array([[1, 0], [2, 0]]))
    model = ColmapModel(model.cameras, imgs, {7: pt})
    for name, writer in (("t", write_colmap_text), ("b", write_colmap_binary)):
        (tmp_path / name).mkdir()
        writer(model, tmp_path / name)
        rec = pycolmap.Reconstruction()
        rec.read(str(tmp_path / name))
        assert rec.num_points3D() == 1
        np.testing.assert_allclose(rec.points3D[7].xyz, [0.1, 0.2, 0.3])
        assert rec.images[1].num_points3D == 1
        back = read_colmap(tmp_path / name)
        np.testing.assert_allclose(back.points[7].xyz, pt.xyz)
        np.testing.assert_array_equal(back.points[7].track, pt.track)
        np.testing.assert_allclose(back.images[2].xys, [[10.5, 20.25], [33.0, 44.0]])
        np.testing.assert_array_equal(back.images[2].point3d_ids, [7, -1])


def test_broken_colmap_models_are_refused(rig, tmp_path):
    export_rig(rig, "colmap", tmp_path / "t")
    p = tmp_path / "t" / "images.txt"
    p.write_text(p.read_text().replace(" 1 cam0.png", " one cam0.png"))
    with pytest.raises(InputError, match="images.txt.*line"):
        import_rig(tmp_path / "t")
    export_rig(rig, "colmap-bin", tmp_path / "b")
    p = tmp_path / "b" / "cameras.bin"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(InputError, match="cameras.bin.*truncated"):
        import_rig(tmp_path / "b")
    (tmp_path / "e").mkdir()
    with pytest.raises(InputError, match="not a COLMAP model"):
        import_rig(tmp_path / "e")
    (tmp_path / "bad.yaml").write_text("%YAML:1.0\n---\nnb_cameras: [\n")
    with pytest.raises(InputError, match="bad.yaml"):
        import_rig(tmp_path / "bad.yaml")


def test_cli_import_export(rig, tmp_path):
    save_rig(rig, tmp_path / "rig" / "rig.json")
    runner = CliRunner()
    for fmt, name in (("colmap", "cm"), ("colmap-bin", "cb"), ("opencv", "r.yaml"), ("nerfstudio", "t.json")):
        r = runner.invoke(main, ["rig", "export", str(tmp_path / "rig"), "--format", fmt, str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        r = runner.invoke(main, ["rig", "import", str(tmp_path / name), "--out", str(tmp_path / f"imp_{fmt}")])
        assert r.exit_code == 0, r.output
        _same(rig, load_rig(tmp_path / f"imp_{fmt}"))
    # a model that does not parse: one clear line, exit 2, nothing written
    (tmp_path / "cm" / "cameras.txt").write_text("1 PINHOLE 640 480 1 2\n")
    r = runner.invoke(main, ["rig", "import", str(tmp_path / "cm"), "--out", str(tmp_path / "never")])
    assert r.exit_code == 2 and "cameras.txt" in r.output and "PINHOLE takes 4 parameters" in r.output
    assert not (tmp_path / "never").exists()
