"""Reading meshes and landmarks, unit detection, and bad input: one clear error naming the file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import save_mesh

from mvrecon.errors import InputError
from mvrecon.evaluate import load_face_mesh, make_face_mesh, read_landmarks, read_mesh
from mvrecon.evaluate.meshes import check_same_scale, detect_units, face_width


@pytest.fixture
def small_face(face_arrays):
    pv, pf, _, _, lm = face_arrays
    return pv, pf, lm


def test_units_are_detected_from_face_width(small_face, tmp_path):
    pv, pf, lm = small_face
    assert face_width(lm) == pytest.approx(0.13, abs=0.02)
    for unit, s in (("m", 1.0), ("cm", 100.0), ("mm", 1000.0)):
        mesh = save_mesh(tmp_path / f"face_{unit}.ply", pv * s, pf)
        np.savetxt(tmp_path / f"lm_{unit}.txt", lm * s)
        fm = load_face_mesh(mesh, tmp_path / f"lm_{unit}.txt")
        assert fm.units == unit and fm.units_detected
        np.testing.assert_allclose(fm.vertices, pv, atol=1e-9)
        np.testing.assert_allclose(fm.landmarks, lm, atol=1e-12)
    assert detect_units(0.14) == "m" and detect_units(14.0) == "cm" and detect_units(140.0) == "mm"


def test_landmark_formats_agree(small_face, tmp_path):
    pv, pf, lm = small_face
    idx = np.random.default_rng(3).choice(len(pv), 68, replace=False)
    pts = pv[idx]
    np.savetxt(tmp_path / "a.txt", pts, delimiter=",")
    np.save(tmp_path / "b.npy", pts)
    np.save(tmp_path / "c.npy", idx)
    (tmp_path / "d.json").write_text(json.dumps({"vertex_indices": idx.tolist()}))
    (tmp_path / "e.json").write_text(json.dumps(pts.tolist()))
    np.savetxt(tmp_path / "f.txt", idx, fmt="%d")
    for name in ("a.txt", "b.npy", "c.npy", "d.json", "e.json", "f.txt"):
        np.testing.assert_allclose(read_landmarks(tmp_path / name, pv), pts, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".glb"])
def test_mesh_formats_keep_vertex_order(small_face, tmp_path, suffix):
    pv, pf, _ = small_face
    v, f = read_mesh(save_mesh(tmp_path / f"m{suffix}", pv, pf))
    assert v.shape == pv.shape and f.shape == pf.shape
    np.testing.assert_allclose(v, pv, atol=1e-6)


def _write(path, text):
    path.write_text(text)
    return path


def test_empty_and_point_cloud_meshes(tmp_path):
    with pytest.raises(InputError, match=r"empty\.obj: mesh file is empty"):
        read_mesh(_write(tmp_path / "empty.obj", ""))
    with pytest.raises(InputError, match=r"cloud\.obj: mesh has no triangles"):
        read_mesh(_write(tmp_path / "cloud.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n"))
    with pytest.raises(InputError, match="mesh file not found"):
        read_mesh(tmp_path / "nothing.ply")
    with pytest.raises(InputError, match="unsupported mesh format"):
        read_mesh(_write(tmp_path / "mesh.xyz", "0 0 0\n"))


def test_nan_vertices_are_refused(tmp_path):
    text = "v 0 0 0\nv 1 0 0\nv 0 nan 0\nv 1 1 0\nf 1 2 3\nf 2 4 3\n"
    with pytest.raises(InputError, match=r"nan\.obj: 1 of 4 vertices are NaN or infinite"):
        read_mesh(_write(tmp_path / "nan.obj", text))
    v = np.array([[0, 0, 0], [1, 0, 0], [0, np.inf, 0.0]])
    with pytest.raises(InputError, match="NaN or infinite"):
        make_face_mesh(v, np.array([[0, 1, 2]]), np.zeros((68, 3)))


def test_non_manifold_mesh_is_refused(tmp_path):
    # three triangles on the edge (0, 1)
    text = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 -1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 2 5\n"
    with pytest.raises(InputError, match=r"nm\.obj: mesh is non-manifold: 1 edges"):
        read_mesh(_write(tmp_path / "nm.obj", text))


def test_bad_landmarks(small_face, tmp_path):
    pv, pf, lm = small_face
    mesh = save_mesh(tmp_path / "m.ply", pv, pf)
    with pytest.raises(InputError, match=r"lm\.txt: landmark file not found"):
        load_face_mesh(mesh, tmp_path / "lm.txt")
    np.savetxt(tmp_path / "short.txt", lm[:60])
    with pytest.raises(InputError, match=r"short\.txt: expected 68 landmarks of 3 coordinates, got shape \(60, 3\)"):
        load_face_mesh(mesh, tmp_path / "short.txt")
    bad = lm.copy()
    bad[[30, 33]] = np.nan
    np.savetxt(tmp_path / "nan.txt", bad)
    with pytest.raises(InputError, match=r"landmarks \[30, 33\] are missing"):
        load_face_mesh(mesh, tmp_path / "nan.txt")
    np.save(tmp_path / "idx.npy", np.arange(68) + len(pv))
    with pytest.raises(InputError, match="out of range"):
        load_face_mesh(mesh, tmp_path / "idx.npy")
    _write(tmp_path / "x.json", '{"points": []}')
    with pytest.raises(InputError, match="'landmarks' or 'vertex_indices'"):
        load_face_mesh(mesh, tmp_path / "x.json")
    _write(tmp_path / "broken.json", "[[1, 2, ")
    with pytest.raises(InputError, match=r"broken\.json: cannot parse landmarks"):
        load_face_mesh(mesh, tmp_path / "broken.json")


def test_units_off_by_1000_are_named(small_face, tmp_path):
    pv, pf, lm = small_face
    mesh = save_mesh(tmp_path / "scan.ply", pv * 1000, pf)
    np.savetxt(tmp_path / "scan_lm.txt", lm * 1000)
    # declared metres, but the face is 130 units wide: the error names the likely unit
    with pytest.raises(InputError, match=r"scan_lm\.txt: face is 1\d\d\.?\d* m wide .* look like mm"):
        load_face_mesh(mesh, tmp_path / "scan_lm.txt", units="m")
    # each face plausible alone (0.13 m and 0.39 m) but 3x apart: not one person, units mixed up
    pred = make_face_mesh(pv, pf, lm, units="m")
    big = make_face_mesh(pv * 3, pf, lm * 3, units="m")
    with pytest.raises(InputError, match=r"differ in size by 0\.333x .* units cannot be reconciled"):
        check_same_scale(pred, big)
    check_same_scale(pred, make_face_mesh(pv * 1.1, pf, lm * 1.1, units="m"))
