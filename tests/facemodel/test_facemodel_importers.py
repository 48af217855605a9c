"""BFM 2009, BFM front, FaceVerse and FLAME importers on small files in the upstream layouts;
the safe unpickler refuses code."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from mvrecon.errors import InputError
from mvrecon.facemodel.importers import import_bfm2009, import_bfm_front, import_faceverse, import_flame
from mvrecon.parts import PART_CODES


def _orthonormal(rng, rows, k):
    q, _ = np.linalg.qr(rng.normal(size=(rows, k)))
    return q


def _labels_ok(m):
    for part in ("skin", "nose", "right_eye", "left_eye", "right_brow", "upper_lip", "lower_lip"):
        assert (m.part_labels == PART_CODES[part]).sum() > 0, part
    assert m.forehead.sum() > 0 and all(len(v) > 0 for v in m.regions.values())


def write_bfm2009(folder, head, rng, k=6):
    n = len(head.verts)
    um = head.verts * 1e6
    pc = _orthonormal(rng, 3 * n, k)
    ev = np.linspace(3000, 500, k)  # micrometres
    scipy.io.savemat(
        folder / "01_MorphableModel.mat",
        {
            "shapeMU": um.reshape(-1, 1), "shapePC": pc, "shapeEV": ev.reshape(-1, 1),
            "tl": (head.tris + 1).astype(np.float64), "texMU": rng.uniform(0, 255, (3 * n, 1)),
            "texPC": _orthonormal(rng, 3 * n, 4), "texEV": np.ones((4, 1)),
        },
    )
    np.savetxt(folder / "landmarks68.txt", head.lm68, fmt="%d")
    return pc, ev


def test_bfm2009(head, rng, tmp_path):
    pc, ev = write_bfm2009(tmp_path, head, rng)
    m = import_bfm2009(tmp_path / "01_MorphableModel.mat")
    np.testing.assert_allclose(m.mean, head.verts, atol=1e-7)
    np.testing.assert_allclose(m.id_std, ev * 1e-6, rtol=1e-5)
    # coefficient 1 on mode 2 moves vertices by shapePC[:, 2] * shapeEV[2] micrometres
    d = m.vertices(np.eye(6)[2]) - m.mean
    np.testing.assert_allclose(d.reshape(-1), pc[:, 2] * ev[2] * 1e-6, atol=1e-7)
    assert m.n_exp == 0 and m.extras["tex_mean"].shape == (len(head.verts), 3)
    _labels_ok(m)


def test_bfm2009_with_expressions(head, rng, tmp_path):
    write_bfm2009(tmp_path, head, rng)
    n = len(head.verts)
    trim = np.sort(rng.choice(np.arange(68, n), n - 200, replace=False))
    trim = np.concatenate([np.arange(68), trim])  # keep the landmarks
    k = 4
    pcs = rng.normal(size=(k, 3 * len(trim))).astype(np.float32)
    std = np.array([1000.0, 800, 600, 400])
    with open(tmp_path / "Exp_Pca.bin", "wb") as f:
        np.array([k], "<i4").tofile(f)
        np.zeros(3 * len(trim), "<f4").tofile(f)
        pcs.astype("<f4").tofile(f)
    np.savetxt(tmp_path / "std_exp.txt", std)
    scipy.io.savemat(tmp_path / "BFM_exp_idx.mat", {"trimIndex": (trim + 1).reshape(-1, 1).astype(float)})
    m = import_bfm2009(tmp_path / "01_MorphableModel.mat")
    assert m.n_vertices == len(trim) and m.n_exp == k
    np.testing.assert_allclose(m.mean, head.verts[trim], atol=1e-7)
    d = m.vertices(exp_coeffs=np.eye(k)[1]) - m.mean
    np.testing.assert_allclose(d.reshape(-1), pcs[1] * std[1] * 1e-6, rtol=1e-4, atol=3e-8)
    assert m.triangles.max() < len(trim)
    # a wrong-sized expression file is one clear error
    (tmp_path / "Exp_Pca.bin").write_bytes((tmp_path / "Exp_Pca.bin").read_bytes()[:-8])
    with pytest.raises(InputError, match="Exp_Pca.bin.*bytes"):
        import_bfm2009(tmp_path / "01_MorphableModel.mat")


def test_bfm2009_errors(head, rng, tmp_path):
    write_bfm2009(tmp_path, head, rng)
    (tmp_path / "landmarks68.txt").unlink()
    with pytest.raises(InputError, match="no landmarks"):
        import_bfm2009(tmp_path / "01_MorphableModel.mat")
    d = scipy.io.loadmat(tmp_path / "01_MorphableModel.mat")
    d["shapePC"] = d["shapePC"][:-3]
    scipy.io.savemat(tmp_path / "01_MorphableModel.mat", {k: v for k, v in d.items() if not k.startswith("__")})
    with pytest.raises(InputError, match="'shapePC' has shape"):
        import_bfm2009(tmp_path / "01_MorphableModel.mat", landmarks=head.lm68)
    (tmp_path / "v73.mat").write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64" + b"\0" * 200)
    with pytest.raises(InputError, match="v73.mat"):
        import_bfm2009(tmp_path / "v73.mat", landmarks=head.lm68)


def test_bfm_front(head, rng, tmp_path):
    n = len(head.verts)
    idb = rng.normal(0, 0.01, (3 * n, 8))  # decimetres per unit coefficient
    exb = rng.normal(0, 0.01, (3 * n, 5))
    scipy.io.savemat(
        tmp_path / "BFM_model_front.mat",
        {
            "meanshape": (head.verts * 10).reshape(1, -1), "idBase": idb, "exBase": exb,
            "meantex": rng.uniform(0, 255, (1, 3 * n)), "texBase": rng.normal(size=(3 * n, 8)),
            "tri": (head.tris + 1).astype(np.float64), "keypoints": (head.lm68 + 1).reshape(1, -1).astype(float),
            "point_buf": np.ones((n, 8)),
        },
    )
    m = import_bfm_front(tmp_path / "BFM_model_front.mat")
    np.testing.assert_allclose(m.mean, head.verts, atol=1e-7)
    np.testing.assert_allclose((m.vertices(exp_coeffs=np.eye(5)[3]) - m.mean).reshape(-1), exb[:, 3] * 0.1, atol=1e-7)
    np.testing.assert_array_equal(m.landmarks68, head.lm68)
    _labels_ok(m)


def test_faceverse_units_inferred(head, rng, tmp_path):
    n = len(head.verts)
    d = {
        "meanshape": head.verts * 10,  # decimetres, (N, 3)
        "idBase": rng.normal(0, 0.01, (3 * n, 7)),
        "exBase": rng.normal(0, 0.01, (3 * n, 4)),
        "tri": head.tris.astype(np.int64),
        "keypoints": head.lm68.astype(np.int64),
        "meantex": rng.uniform(0, 255, (n, 3)),
    }
    np.save(tmp_path / "faceverse_simple_v2.npy", np.array(d, dtype=object), allow_pickle=True)
    m = import_faceverse(tmp_path / "faceverse_simple_v2.npy")
    np.testing.assert_allclose(m.mean, head.verts, atol=1e-7)
    assert m.n_id == 7 and m.n_exp == 4
    _labels_ok(m)


# ---------------------------------------------------------------- FLAME, chumpy, unsafe pickles


def _fake_chumpy():
    """A stand-in 'chumpy.ch' module so the test can write pickles exactly as chumpy does
    (class chumpy.ch.Ch, state dict with the value under 'x'), then removes it again."""
    mod = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x)
            self._cache = {}
            self._depends_on_deps = {}

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    mod.Ch = Ch
    return mod


def write_flame(folder, head, rng, n_shape=6, n_exp=3):
    n = len(head.verts)
    pkg = types.ModuleType("chumpy")
    ch = _fake_chumpy()
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = pkg, ch
    try:
        shapedirs = rng.normal(0, 1e-3, (n, 3, n_shape + n_exp))
        jreg = sp.csc_matrix(np.abs(rng.normal(size=(5, n))) * (rng.uniform(size=(5, n)) > 0.9))
        d = {
            "v_template": ch.Ch(head.verts),
            "shapedirs": ch.Ch(shapedirs),
            "posedirs": ch.Ch(rng.normal(0, 1e-4, (n, 3, 36))),
            "J_regressor": jreg,
            "weights": ch.Ch(np.full((n, 5), 0.2)),
            "kintree_table": np.array([[2**32 - 1, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.int64),
            "f": head.tris.astype(np.uint32),
            "bs_style": "lbs",
        }
        (folder / "generic_model.pkl").write_bytes(pickle.dumps(d, protocol=2))
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    # DECA's landmark_embedding.npy: barycentric landmarks on faces
    fi = np.array([np.flatnonzero((head.tris == v).any(1))[0] for v in head.lm68])
    corner = np.array([list(head.tris[f]).index(v) for f, v in zip(fi, head.lm68)])
    bary = np.full((68, 3), 0.1)
    bary[np.arange(68), corner] = 0.8
    emb = {"full_lmk_faces_idx": fi[None], "full_lmk_bary_coords": bary[None], "static_lmk_faces_idx": fi[17:]}
    np.save(folder / "landmark_embedding.npy", np.array(emb, dtype=object), allow_pickle=True)
    return shapedirs, jreg


def test_flame_without_chumpy(head, rng, tmp_path):
    assert "chumpy" not in sys.modules
    shapedirs, jreg = write_flame(tmp_path, head, rng)
    m = import_flame(tmp_path / "generic_model.pkl", n_shape=6)
    np.testing.assert_allclose(m.mean, head.verts, atol=1e-7)
    assert m.n_id == 6 and m.n_exp == 3
    np.testing.assert_allclose(m.exp_basis[1], shapedirs[:, :, 7], atol=1e-7)
    np.testing.assert_array_equal(m.landmarks68, head.lm68)
    np.testing.assert_allclose(m.extras["J_regressor"], jreg.toarray(), atol=1e-6)
    assert m.extras["posedirs"].shape == (len(head.verts), 3, 36)
    assert "chumpy" not in sys.modules
    _labels_ok(m)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_code_is_never_run(head, rng, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"v_template": head.verts, "f": _Evil(marker)}, protocol=2)
    # the payload is live: plain pickle in a child process does create the file
    control = tmp_path / "control"
    live = pickle.dumps(_Evil(control), protocol=2)
    subprocess.run([sys.executable, "-c", "import pickle,sys; pickle.loads(sys.stdin.buffer.read())"], input=live, check=True)
    assert control.exists()
    (tmp_path / "generic_model.pkl").write_bytes(payload)
    with pytest.raises(InputError, match="refused to load 'posix.system'|refused to load 'nt.system'"):
        import_flame(tmp_path / "generic_model.pkl")
    assert not marker.exists()
    # same for a pickled .npy dict (FaceVerse)
    npy = tmp_path / "fv.npy"
    with open(npy, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        f.write(payload)
    with pytest.raises(InputError, match="refused"):
        import_faceverse(npy)
    assert not marker.exists()


def test_flame_missing_landmarks(head, rng, tmp_path):
    write_flame(tmp_path, head, rng)
    (tmp_path / "landmark_embedding.npy").unlink()
    with pytest.raises(InputError, match="landmark_embedding.npy"):
        import_flame(tmp_path / "generic_model.pkl", n_shape=6)
    m = import_flame(tmp_path / "generic_model.pkl", n_shape=6, landmarks=head.lm68)
    assert m.n_vertices == len(head.verts)

