"""``mvrecon model import/list/info`` through Click, models written to $MVRECON_MODELS."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner

from mvrecon.cli import main
from mvrecon.facemodel import load_model
from mvrecon.facemodel.obj import read_obj_vertices


@pytest.fixture
def models(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "models"
    monkeypatch.setenv("MVRECON_MODELS", str(d))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return d


def _bfm_front(path: Path, head, rng) -> Path:
    n = len(head.verts)
    scipy.io.savemat(
        path,
        {
            "meanshape": (head.verts * 10).reshape(1, -1), "idBase": rng.normal(0, 0.01, (3 * n, 4)),
            "exBase": rng.normal(0, 0.01, (3 * n, 3)), "tri": (head.tris + 1).astype(float),
            "keypoints": (head.lm68 + 1).reshape(1, -1).astype(float),
        },
    )
    return path


def test_import_list_info(models, head, rng, tmp_path):
    src = _bfm_front(tmp_path / "BFM_model_front.mat", head, rng)
    r = CliRunner().invoke(main, ["model", "import", "bfm-front", str(src), "--name", "front"])
    assert r.exit_code == 0, r.output
    assert (models / "front.npz").is_file() and "4 identity / 3 expression" in r.output
    r = CliRunner().invoke(main, ["model", "list"])
    assert r.exit_code == 0 and "front" in r.output and str(models) in r.output
    r = CliRunner().invoke(main, ["model", "info", "front"])
    assert r.exit_code == 0, r.output
    for text in (f"vertices: {len(head.verts)}", f"triangles: {len(head.tris)}", "identity modes: 4",
                 "expression names: 3", "nose", "regions: nose", "cheek", "license: Basel"):
        assert text in r.output, text
    # a second import without --force is refused and leaves the model as it was
    before = (models / "front.npz").read_bytes()
    r = CliRunner().invoke(main, ["model", "import", "bfm-front", str(src), "--name", "front"])
    assert r.exit_code == 2 and "already exists" in r.output
    assert (models / "front.npz").read_bytes() == before
    r = CliRunner().invoke(main, ["model", "import", "bfm-front", str(src), "--name", "front", "--force"])
    assert r.exit_code == 0


def test_bad_input_is_one_line_and_writes_nothing(models, tmp_path):
    bad = tmp_path / "BFM_model_front.mat"
    bad.write_bytes(b"not a mat file at all" * 10)
    r = CliRunner().invoke(main, ["model", "import", "bfm-front", str(bad)])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and str(bad) in r.output
    assert not models.exists() or not any(models.iterdir())
    r = CliRunner().invoke(main, ["model", "info", "nothing"])
    assert r.exit_code == 2 and "'nothing' not found" in r.output


def test_fetch_offline_is_one_clear_error(models, tmp_path):
    url = (tmp_path / "nowhere.zip").as_uri()
    r = CliRunner().invoke(main, ["model", "fetch", "ict", "--url", url])
    assert r.exit_code == 2 and "cannot download" in r.output and r.output.count("\n") == 2
    assert not models.exists() or not any(models.iterdir())


@pytest.mark.slow
def test_import_ict_archive_end_to_end(models, ict_archive):
    r = CliRunner().invoke(main, ["model", "import", "ict", str(ict_archive)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["model", "info", "ict"])
    assert "vertices: 26719" in r.output and "identity modes: 100" in r.output and "license: MIT License" in r.output
    m = load_model("ict")
    # the stored modes reproduce upstream's meshes: identity007 = neutral + id mode 7 (cm -> m)
    want = {"identity007.obj", "mouthSmile_L.obj"}
    got = {}
    with tarfile.open(ict_archive, "r|*") as t:
        for member in t:
            name = Path(member.name).name
            if name in want:
                got[name] = read_obj_vertices(t.extractfile(member).read()) * 0.01
    np.testing.assert_allclose(m.vertices(id_coeffs=np.eye(100)[7]), got["identity007.obj"], atol=2e-6)
    k = m.exp_names.index("mouthSmile_L")
    np.testing.assert_allclose(m.vertices(exp_coeffs=np.eye(m.n_exp)[k]), got["mouthSmile_L.obj"], atol=2e-6)
