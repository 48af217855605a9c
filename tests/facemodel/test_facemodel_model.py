"""FaceModel: npz round trip and errors, numpy/torch vertices, normals, registry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mvrecon.errors import InputError, MvreconError
from mvrecon.facemodel import FaceModel, list_models, load_model, models_dir
from mvrecon.facemodel.importers import build_model
from mvrecon.facemodel.model import model_arrays


@pytest.fixture
def small(head, rng, tmp_path) -> FaceModel:
    n = len(head.verts)
    idb = rng.normal(0, 1e-3, (5, n, 3))
    exb = rng.normal(0, 1e-3, (3, n, 3))
    return build_model(
        "small", tmp_path, head.verts, idb, exb, ["a", "b", "c"], head.tris.astype(np.int32), head.lm68,
        "MIT test license\nsecond line", "synthetic",
    )


def test_roundtrip_and_vertices(small, tmp_path, rng):
    p = small.save(tmp_path / "small.npz")
    m = load_model(p)
    for k in ("mean", "id_basis", "exp_basis", "triangles", "landmarks68", "part_labels", "forehead"):
        np.testing.assert_array_equal(getattr(m, k), getattr(small, k))
    assert m.exp_names == ("a", "b", "c") and m.license.startswith("MIT") and m.regions.keys() == small.regions.keys()
    idc, exc = rng.normal(size=5), rng.uniform(size=3)
    v = m.vertices(idc, exc)
    want = m.mean + np.tensordot(idc, m.id_basis, 1) + np.tensordot(exc, m.exp_basis, 1)
    assert np.abs(v - want).max() < 1e-6 and np.abs(v - m.mean).max() > 1e-3
    vt = m.vertices_torch(torch.tensor(np.stack([idc, 0 * idc]), dtype=torch.float32),
                          torch.tensor(np.stack([exc, 0 * exc]), dtype=torch.float32))
    assert vt.shape == (2, m.n_vertices, 3)
    assert np.abs(vt[0].numpy() - want).max() < 1e-5 and np.abs(vt[1].numpy() - m.mean).max() < 1e-7
    assert m.landmarks3d(vt).shape == (2, 68, 3)


def test_gradients_flow(small):
    idc = torch.zeros(1, small.n_id, requires_grad=True)
    small.vertices_torch(idc).sum().backward()
    assert idc.grad.abs().sum() > 0


def test_vertex_normals_point_out(small):
    n = small.vertex_normals()
    # front-facing cap: normals near the centre point to +Z; numpy and torch agree
    forehead = np.argmin(np.linalg.norm(small.mean[:, :2] - [0, 0.07], axis=1))
    side = np.argmin(np.linalg.norm(small.mean[:, :2] - [0.085, -0.02], axis=1))
    assert n[forehead, 2] > 0.9 and n[side, 0] > 0.5
    nt = small.vertex_normals(torch.tensor(small.mean)[None])[0].numpy()
    assert np.abs(nt - n).max() < 1e-4


@pytest.mark.parametrize("drop", ["id_basis", "landmarks68", "format_version"])
def test_missing_array(small, tmp_path, drop):
    arrays = model_arrays(small)
    del arrays[drop]
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(InputError, match=f"{p}.*(missing|format_version)"):
        load_model(p)


def test_wrong_shape(small, tmp_path):
    arrays = model_arrays(small)
    arrays["id_basis"] = arrays["id_basis"][:, :-1]
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(InputError, match="id_basis.*shape"):
        load_model(p)


def test_truncated_npz(small, tmp_path):
    p = small.save(tmp_path / "m.npz")
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(InputError, match="not a readable"):
        load_model(p)


def test_registry_order(small, tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("MVRECON_MODELS", f"{a}:{b}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert models_dir() == a
    dataclasses.replace(small, name="x").save(b / "x.npz")
    (tmp_path / "cache" / "mvrecon" / "models").mkdir(parents=True)
    dataclasses.replace(small, name="y").save(tmp_path / "cache" / "mvrecon" / "models" / "y.npz")
    assert set(list_models()) == {"x", "y"}
    assert load_model("x").name == "x" and load_model("y").name == "y"
    with pytest.raises(MvreconError, match=f"'nope' not found.*{a}.*{b}.*cache"):
        load_model("nope")


def test_replace_does_not_reuse_cached_bases(small):
    idc = torch.ones(1, small.n_id)
    before = small.vertices_torch(idc)
    other = dataclasses.replace(small, id_basis=small.id_basis * 2)
    after = other.vertices_torch(idc)
    mean = torch.as_tensor(small.mean)
    assert torch.allclose(after - mean, 2 * (before - mean), atol=1e-6)
