"""ICT-FaceKit: the imported model (units, axes, modes, sub-meshes), its part labels checked by
rendering, and the importer's errors (truncated archive, missing files, wrong basis shape)."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mvrecon.errors import InputError
from mvrecon.facemodel.ict import import_ict
from mvrecon.facemodel.labels import check_labels
from mvrecon.parts import PART_CODES



def test_ict_geometry(ict_model):
    m = ict_model
    assert m.n_vertices == 26719 and m.n_id == 100 and m.n_exp == 53 and m.exp_kind == "blendshape"
    assert "jawOpen" in m.exp_names and "cheekRaiser_L" not in m.exp_names
    assert sorted(m.extras["exp_extra_names"]) == ["PupilDilate_L", "PupilDilate_R", "cheekRaiser_L", "cheekRaiser_R"]
    lm = m.landmarks3d(m.mean)
    iod = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
    assert 0.055 < iod < 0.075  # metres: a human inter-ocular distance
    assert lm[30, 2] > lm[36:48, 2].mean() + 0.01 and lm[8, 1] < lm[36:48, 1].mean() - 0.08  # +Z front, +Y up
    # jawOpen moves the chin down by centimetres; a 1-std identity change is millimetres
    jaw = m.vertices(exp_coeffs=np.eye(m.n_exp)[m.exp_names.index("jawOpen")])
    assert jaw[m.landmarks68[8], 1] < m.mean[m.landmarks68[8], 1] - 0.01
    rms = m.id_std / np.sqrt(m.n_vertices)
    assert 1e-5 < rms.min() and rms.max() < 0.01 and rms[0] > 10 * rms[-1]  # PCA: decaying stds
    tri = m.render_triangles()
    assert tri.max() < m.n_vertices and len(tri) < len(m.triangles)
    assert m.submeshes["face"] == (0, 9409) and m.submeshes["eyeball_right"] == (23021, 24591)
    a, b = m.submesh_triangles["teeth"]
    assert m.triangles[a:b].min() >= 17039 and m.triangles[a:b].max() <= 21450
    assert m.license.startswith("MIT License") and "USC Institute for Creative Technologies" in m.license
    assert m.uvs.shape[1] == 2 and m.uv_triangles.shape == m.triangles.shape


def test_ict_labels_match_landmark_polygons(ict_model):
    m = ict_model
    for part in ("skin", "right_eye", "left_eye", "right_brow", "left_brow", "nose", "upper_lip", "lower_lip"):
        assert (m.part_labels == PART_CODES[part]).sum() > 20, part
    # eye labels sit on the eyeballs (the visible eye between the lids), not on the socket
    eye = np.flatnonzero(m.part_labels == PART_CODES["right_eye"])
    on_balls = (eye >= 21451) & (eye < 24591)
    assert on_balls.mean() > 0.5
    ious = {}
    for yaw in (0, 30):
        ious[yaw], rendered, expected = check_labels(m, yaw)
        print(f"yaw {yaw:2d}: " + ", ".join(f"{k} {v:.3f}" for k, v in ious[yaw].items()))
    assert min(ious[0].values()) >= 0.8, ious[0]
    # the polygons of projected landmarks are a frontal construct; at 30 degrees still mostly right
    assert np.mean(list(ious[30].values())) > 0.7, ious[30]
    assert m.forehead.sum() > 300 and not (m.forehead & (m.part_labels > 0)).any()
    for name in ("nose", "mouth", "forehead", "cheek"):
        assert len(m.regions[name]) > 100, name


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:xz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(f"FaceXModel/{name}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def _obj(n: int) -> bytes:
    v = "".join(f"v {i * 0.1:g} {i * 0.2:g} 1\n" for i in range(n))
    return (v + "vt 0 0\nf 1/1 2/1 3/1\n").encode()


def test_missing_files(tmp_path):
    cfg = json.dumps({"expressions": ["jawOpen"], "idx_to_landmark_verts": list(range(68))}).encode()
    with pytest.raises(InputError, match="missing generic_neutral_mesh.obj"):
        import_ict(_tar(tmp_path / "a.tar.xz", {"vertex_indices.json": cfg}))
    files = {"vertex_indices.json": cfg, "generic_neutral_mesh.obj": _obj(80), "identity000.obj": _obj(80)}
    with pytest.raises(InputError, match="missing 1 expression file.*jawOpen.obj"):
        import_ict(_tar(tmp_path / "b.tar.xz", files))
    files["identity002.obj"] = _obj(80)
    with pytest.raises(InputError, match="not numbered"):
        import_ict(_tar(tmp_path / "c.tar.xz", files))
    # the upstream repository zip layout (ICT-FaceKit-master/FaceXModel/...) is read as well
    with zipfile.ZipFile(tmp_path / "master.zip", "w") as z:
        z.writestr("ICT-FaceKit-master/FaceXModel/vertex_indices.json", cfg)
    with pytest.raises(InputError, match="master.zip: missing generic_neutral_mesh.obj"):
        import_ict(tmp_path / "master.zip")


def test_wrong_basis_shape(tmp_path):
    cfg = json.dumps({"expressions": ["jawOpen"], "idx_to_landmark_verts": list(range(68))}).encode()
    folder = tmp_path / "FaceXModel"
    folder.mkdir()
    for name, data in {
        "vertex_indices.json": cfg, "generic_neutral_mesh.obj": _obj(80),
        "identity000.obj": _obj(80), "jawOpen.obj": _obj(79),
    }.items():
        (folder / name).write_bytes(data)
    with pytest.raises(InputError, match="jawOpen.obj has 79 vertices, the neutral mesh 80"):
        import_ict(tmp_path)


def test_truncated_archive(tmp_path, ict_archive):
    bad = tmp_path / "FaceXModel.tar.xz"
    with ict_archive.open("rb") as f:
        bad.write_bytes(f.read(3_000_000))
    with pytest.raises(InputError, match="truncated or corrupt"):
        import_ict(bad)
