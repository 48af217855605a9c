"""Rig import/export: COLMAP text/binary (checked against pycolmap), OpenCV YAML, nerfstudio,
Metashape camera XML and RealityCapture XMP (checked against each one's projection equations)."""

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
                                      ("nerfstudio", "transforms.json"), ("metashape", "cameras.xml"),
                                      ("realitycapture", "xmp")])
def test_round_trip(rig, tmp_path, fmt, name):
    out = export_rig(rig, fmt, tmp_path / name)
    _same(rig, import_rig(out, image_size=(640, 480)))


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
    for fmt, name in (("colmap", "cm"), ("colmap-bin", "cb"), ("opencv", "r.yaml"), ("nerfstudio", "t.json"),
                      ("metashape", "m.xml"), ("realitycapture", "xmp")):
        r = runner.invoke(main, ["rig", "export", str(tmp_path / "rig"), "--format", fmt, str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        size = ["--image-size", "640x480"] if fmt == "realitycapture" else []
        r = runner.invoke(main, ["rig", "import", str(tmp_path / name), "--out", str(tmp_path / f"imp_{fmt}"), *size])
        assert r.exit_code == 0, r.output
        _same(rig, load_rig(tmp_path / f"imp_{fmt}"))
    # a model that does not parse: one clear line, exit 2, nothing written
    (tmp_path / "cm" / "cameras.txt").write_text("1 PINHOLE 640 480 1 2\n")
    r = runner.invoke(main, ["rig", "import", str(tmp_path / "cm"), "--out", str(tmp_path / "never")])
    assert r.exit_code == 2 and "cameras.txt" in r.output and "PINHOLE takes 4 parameters" in r.output
    assert not (tmp_path / "never").exists()


def _world_points(cam_R: np.ndarray, cam_C: np.ndarray) -> np.ndarray:
    """(9, 3) points spread over a camera's view 0.5-0.8 m in front of it (camera R, centre C)."""
    g = np.array([[x, y, z] for x, y, z in zip(np.linspace(-0.15, 0.15, 9), np.tile([-0.1, 0.0, 0.12], 3),
                                               np.linspace(0.5, 0.8, 9))])
    return cam_C + g @ cam_R  # camera frame -> world: R^T x + C


def _brown(x, y, k1, k2, k3, a, b):
    """Brown's distortion as Metashape and RealityCapture write it: the tangential terms
    ``a (r2 + 2 x^2) + 2 b x y`` and ``b (r2 + 2 y^2) + 2 a x y``."""
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    return x * radial + a * (r2 + 2 * x * x) + 2 * b * x * y, y * radial + b * (r2 + 2 * y * y) + 2 * a * x * y


def test_metashape_camera_projects_as_metashape_does(tmp_path):
    """A hand-written Metashape file (a scaled, turned and shifted chunk, the camera in the chunk's
    frame): mvrecon's camera projects world points where Metashape's equations put them (its
    pixel centres at +0.5, its P1/P2 in Brown's order)."""
    from mvrecon.geometry import axis_angle_to_matrix

    w, h, f, cx, cy, b1 = 640, 480, 800.0, 12.5, -7.25, 3.0
    k1, k2, k3, p1, p2 = -0.12, 0.05, 0.01, 1.5e-3, -2e-3
    cam_R, cam_C = axis_angle_to_matrix([0.05, 0.2, -0.1]), np.array([0.1, 0.05, -0.6])
    s, R_chunk, t_chunk = 2.0, axis_angle_to_matrix([0.1, -0.2, 0.3]), np.array([0.5, -1.0, 2.0])
    cam_to_chunk = np.eye(4)
    cam_to_chunk[:3, :3], cam_to_chunk[:3, 3] = cam_R.T, cam_C

    def nums(a):
        return " ".join(repr(float(x)) for x in np.ravel(a))

    (tmp_path / "cams.xml").write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<document version="1.5.0"><chunk label="Chunk 1" enabled="true">
  <sensors next_id="1"><sensor id="0" label="Canon" type="frame"><resolution width="{w}" height="{h}"/>
    <calibration type="frame" class="initial"><resolution width="{w}" height="{h}"/><f>1000</f></calibration>
    <calibration type="frame" class="adjusted"><resolution width="{w}" height="{h}"/>
      <f>{f}</f><cx>{cx}</cx><cy>{cy}</cy><b1>{b1}</b1><k1>{k1}</k1><k2>{k2}</k2><k3>{k3}</k3><p1>{p1}</p1><p2>{p2}</p2>
    </calibration></sensor></sensors>
  <cameras next_id="1" next_group_id="0"><camera id="0" sensor_id="0" label="camA.JPG">
    <transform>{nums(cam_to_chunk)}</transform></camera></cameras>
  <transform><rotation>{nums(R_chunk)}</rotation><translation>{nums(t_chunk)}</translation><scale>{s}</scale></transform>
</chunk></document>
""")
    cam = import_rig(tmp_path / "cams.xml")["camA"]
    X_chunk = _world_points(cam_R, cam_C)
    X_world = s * X_chunk @ R_chunk.T + t_chunk
    Xc = (X_chunk - cam_C) @ cam_R.T
    xd, yd = _brown(Xc[:, 0] / Xc[:, 2], Xc[:, 1] / Xc[:, 2], k1, k2, k3, p1, p2)
    expected = np.stack([w / 2 + cx + xd * (f + b1), h / 2 + cy + yd * f], 1)
    uv, _ = cam.project(X_world)
    np.testing.assert_allclose(uv + 0.5, expected, atol=1e-6)
    np.testing.assert_allclose(cam.center, s * R_chunk @ cam_C + t_chunk, atol=1e-9)


@pytest.mark.parametrize("w,h", [(600, 400), (400, 600)])
def test_realitycapture_camera_projects_as_realitycapture_does(tmp_path, w, h):
    """A hand-written XMP beside its image (which gives the size): the image measured in units of
    its larger side, centred; tangential terms t1, t2 in Brown's order."""
    from mvrecon.geometry import axis_angle_to_matrix
    from mvrecon.io import write_image

    f35, ppu, ppv, aspect = 50.0, 0.012, -0.021, 1.01
    k1, k2, k3, t1, t2 = -0.1, 0.04, 0.02, 1e-3, -3e-3
    R, C = axis_angle_to_matrix([-0.1, 0.3, 0.05]), np.array([0.2, -0.1, -0.9])
    write_image(tmp_path / "rc" / "camB.jpg", np.zeros((h, w, 3), np.uint8))
    (tmp_path / "rc" / "camB.xmp").write_text(f"""<x:xmpmeta xmlns:x="adobe:ns:meta/">
  <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
    <rdf:Description xmlns:xcr="http://www.capturingreality.com/ns/xcr/1.1#" xcr:Version="3"
       xcr:PosePrior="locked" xcr:Coordinates="absolute" xcr:DistortionModel="brown3t2"
       xcr:FocalLength35mm="{f35}" xcr:Skew="0" xcr:AspectRatio="{aspect}" xcr:PrincipalPointU="{ppu}"
       xcr:PrincipalPointV="{ppv}" xcr:CalibrationPrior="locked" xcr:InTexturing="1" xcr:InMeshing="1">
      <xcr:Rotation>{" ".join(map(repr, R.ravel()))}</xcr:Rotation>
      <xcr:Position>{" ".join(map(repr, C))}</xcr:Position>
      <xcr:DistortionCoeficients>{k1} {k2} {k3} 0 {t1} {t2}</xcr:DistortionCoeficients>
    </rdf:Description>
  </rdf:RDF>
</x:xmpmeta>
""")
    cam = import_rig(tmp_path / "rc")["camB"]
    assert (cam.width, cam.height) == (w, h)
    X = _world_points(R, C)
    Xc = (X - C) @ R.T
    xd, yd = _brown(Xc[:, 0] / Xc[:, 2], Xc[:, 1] / Xc[:, 2], k1, k2, k3, t1, t2)
    side = max(w, h)
    expected = np.stack([(f35 / 36 * xd + ppu) * side + w / 2, (f35 / 36 * aspect * yd + ppv) * side + h / 2], 1)
    uv, _ = cam.project(X)
    np.testing.assert_allclose(uv + 0.5, expected, atol=1e-6)


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.replace("<k3>", "<k4>0.01</k4><k3>"), "sensor 'cam0' has k4 = 0.01"),
    (lambda t: t.replace("<transform>", "<nottransform>", 1).replace("</transform>", "</nottransform>", 1),
     "camera 'cam0' has no transform (not aligned in Metashape)"),
    (lambda t: t.replace('sensor_id="1"', 'sensor_id="7"'), "camera 'cam1' names sensor '7'"),
    (lambda t: t.replace("<?xml", '<!DOCTYPE d [<!ENTITY a "aaaa">]><?xml'), "declares a document type"),
])
def test_bad_metashape_files_are_refused(rig, tmp_path, edit, message):
    p = export_rig(rig, "metashape", tmp_path / "cams.xml")
    p.write_text(edit(p.read_text()))
    with pytest.raises(InputError) as e:
        import_rig(p)
    assert str(e.value).startswith(str(p)) and message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_bad_realitycapture_files_are_refused(rig, tmp_path):
    d = export_rig(rig, "realitycapture", tmp_path / "xmp")
    with pytest.raises(InputError, match="cam0.xmp: no image beside it"):
        import_rig(d)
    p = d / "cam1.xmp"
    p.write_text(p.read_text().replace('DistortionModel="brown3t2"', 'DistortionModel="division"'))
    with pytest.raises(InputError, match="cam1.xmp: RealityCapture XMP: distortion model 'division'"):
        import_rig(d, image_size=(640, 480))
