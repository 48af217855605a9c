"""Registering the face model to a head mesh it did not make (mvrecon.synth.headmesh)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mvrecon.errors import InputError
from mvrecon.synth import headmesh as hm

LPS = Path(__file__).resolve().parents[2].parent / "shared/models/scans/lee-perry-smith/LeePerrySmith.glb"
LPS_ATTRIBUTION = "Infinite, 3D Head Scan by Lee Perry-Smith, based on a work at triplegangers.com, CC BY 3.0"


# ------------------------------------------------------------------------------ reading, licences


def test_read_head_mesh_rejects_what_is_not_a_head(tmp_path):
    from mvrecon.meshio import write_ply

    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"ply\nthis is not a mesh\n")
    with pytest.raises(InputError, match="garbage.ply"):
        hm.read_head_mesh(garbage)
    with pytest.raises(InputError, match="not found"):
        hm.read_head_mesh(tmp_path / "missing.obj")
    # a tetrahedron: a valid mesh, far too small to be a head
    tet = tmp_path / "tet.ply"
    write_ply(tet, np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]]),
              np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]))
    with pytest.raises(InputError, match="at least 200 triangles"):
        hm.read_head_mesh(tet)
    # a flat sheet with enough triangles
    n = 20
    xs, ys = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float))
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], 1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    sheet = tmp_path / "sheet.ply"
    write_ply(sheet, v, np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]))
    with pytest.raises(InputError, match="flat"):
        hm.read_head_mesh(sheet)


def test_license_summary_and_lookup(tmp_path):
    cc = ("Creative Commons Licence\nInfinite, 3D Head Scan by Lee Perry-Smith is licensed under a Creative "
          "Commons Attribution 3.0 Unported License.\nBased on a work at www.triplegangers.com.\n")
    assert hm.summarize_license(cc) == LPS_ATTRIBUTION
    sa = "Bust by A. Person is licensed under a Creative Commons Attribution-ShareAlike 4.0 International License."
    assert hm.summarize_license(sa) == "Bust by A. Person, CC BY-SA 4.0"
    assert hm.summarize_license("\n  My own scan, all rights mine.\nmore\n") == "My own scan, all rights mine."
    (tmp_path / "head.obj").write_text("")
    assert hm.find_license(tmp_path / "head.obj") == ("", "")
    (tmp_path / "other_LICENSE.txt").write_text("Other notice\n")
    (tmp_path / "head_License.txt").write_text(cc)
    # the licence named after the mesh wins over another one in the folder
    assert hm.find_license(tmp_path / "head.obj") == (LPS_ATTRIBUTION, cc)


def test_no_face_is_one_clear_error(tmp_path, ict_model):
    import trimesh

    from mvrecon.errors import MvreconError
    from mvrecon.meshio import write_ply

    ball = trimesh.creation.icosphere(subdivisions=3, radius=10.0)
    write_ply(tmp_path / "ball.ply", ball.vertices, ball.faces)
    with pytest.raises(MvreconError, match="no face found on the head mesh"):
        hm.register_model(ict_model, hm.read_head_mesh(tmp_path / "ball.ply"), hm.RegisterConfig(render_size=256))


# ------------------------------------------------------------------------------ a known head


def _known_head(model, rng):
    """A model head off the model's span: random identity plus a smooth radial deformation
    (Gaussian bumps of a few mm, 15-30 mm wide), all vertices (N, 3) model space."""
    from mvrecon.synth.head import SkinTopology

    topo = SkinTopology.of(model)
    v = model.vertices(rng.standard_normal(model.n_id) * 0.8).astype(np.float64)
    centres = v[topo.vids][rng.choice(len(topo.vids), 8, replace=False)]
    amp, sig = rng.normal(0, 3e-3, 8), rng.uniform(0.015, 0.03, 8)
    h = sum(a * np.exp(-np.sum((v - c) ** 2, 1) / (2 * s * s)) for c, a, s in zip(centres, amp, sig))
    return v + h[:, None] * v / np.linalg.norm(v, axis=1, keepdims=True)


def test_register_recovers_a_known_head(tmp_path, ict_model):
    """Skin and eyeballs of a known off-span head, scaled x100, Z-up, turned and moved, written
    as PLY and OBJ: the registration finds the similarity and puts every face vertex back where it
    was (up to the size, which only the model's mean proportions can tell)."""
    from mvrecon.geometry import axis_angle_to_matrix
    from mvrecon.geometry import Similarity
    from mvrecon.meshio import write_obj, write_ply
    from mvrecon.synth import meshops as mo

    model = ict_model
    rng = np.random.default_rng(0)
    truth = _known_head(model, rng)
    # stored Z-up with the face towards -Y (Blender's convention), turned a little more: the
    # face is found by the orientation search, not by the glTF guess
    z_up = axis_angle_to_matrix([np.pi / 2, 0, 0])
    S = Similarity(100.0, axis_angle_to_matrix(rng.normal(0, 1, 3) * np.radians(12)) @ z_up, rng.normal(0, 50, 3))
    tri = model.render_triangle_ids(("face", "head_neck", "eyeball_left", "eyeball_right"))
    v, f, _ = mo.compact(S.apply(truth), model.triangles[tri].astype(np.int64))
    write_ply(tmp_path / "head.ply", v, f)
    write_obj(tmp_path / "head.obj", v, f)
    as_obj = hm.read_head_mesh(tmp_path / "head.obj")
    as_ply = hm.read_head_mesh(tmp_path / "head.ply")
    assert np.allclose(as_obj.verts, as_ply.verts, atol=1e-4) and np.array_equal(as_obj.faces, as_ply.faces)

    head = hm.registered_head(model, tmp_path / "head.ply", cache_dir=tmp_path / "cache")
    assert head.verts.shape == (model.n_vertices, 3)
    found = head.to_model.inverse()
    angle = np.degrees(np.arccos(np.clip((np.trace(found.rotation @ S.rotation.T) - 1) / 2, -1, 1)))
    assert angle < 2.0
    assert abs(found.scale / 100.0 - 1) < 0.05

    # correspondence: each registered vertex where the true one is, on the mesh as given
    err_mm = np.linalg.norm(found.apply(head.verts) - S.apply(truth), axis=1) / S.scale * 1e3
    face = np.arange(*model.submeshes["face"])
    face_held = hm.followed_face_vertices(model)
    assert np.median(err_mm[face_held]) < 1.0
    assert np.percentile(err_mm[face_held], 95) < 3.0
    assert np.median(err_mm[face]) < 1.5
    # the non-rigid step improves on the identity fit it starts from
    base = ict_model.vertices(head.id_coeffs).astype(np.float64)
    base_mm = np.linalg.norm(found.apply(base) - S.apply(truth), axis=1) / S.scale * 1e3
    assert np.median(err_mm[face_held]) < np.median(base_mm[face_held])
    for eye in ("eyeball_left", "eyeball_right"):
        assert np.median(err_mm[np.arange(*model.submeshes[eye])]) < 3.0
    assert head.residual_mm[0] < 0.2 and head.fitted_residual_mm[1] < 0.5
    assert head.min_area_ratio > 0
    assert head.n_new_crossings == 0
    assert head.pupils_visible.all()
    assert head.attribution == "" and head.mesh_sha256 == as_ply.sha256

    # cached: the second call reads the file instead of registering again
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 1 and as_ply.sha256[:16] in cached[0].name
    again = hm.registered_head(model, tmp_path / "head.ply", cache_dir=tmp_path / "cache")
    assert np.array_equal(again.verts, head.verts) and again.seconds == head.seconds


# ------------------------------------------------------------------------------ a real scan


@pytest.mark.skipif(not LPS.is_file(), reason=f"Lee Perry-Smith head scan not found at {LPS}")
def test_register_lee_perry_smith_scan(ict_model, tmp_path):
    head = hm.registered_head(ict_model, LPS, cache_dir=tmp_path)
    assert head.attribution == LPS_ATTRIBUTION
    assert "Creative Commons Attribution 3.0" in head.license
    assert head.residual_mm[0] < 1.0                   # the face lies on the scan
    assert head.fitted_residual_mm[1] < 1.0
    assert head.min_area_ratio > 0                     # no folds
    assert head.n_new_crossings == 0                   # eyes and teeth no further through the skin
    # than on the identity fit (the model's own)
    assert head.pupils_visible.all()                   # eyes open, though the scan's are closed
    lm = head.verts[ict_model.landmarks68]
    assert 80 < np.linalg.norm(lm[36] - lm[45]) * 1e3 < 110       # a metric head
    # the open eyes keep their height (lid to lid, mm) instead of closing onto the scan's lids
    for top, bottom in ((37, 41), (38, 40), (43, 47), (44, 46)):
        assert np.linalg.norm(lm[top] - lm[bottom]) * 1e3 > 4.0
