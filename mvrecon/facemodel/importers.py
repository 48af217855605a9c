"""Importers for BFM 2009, Deep3DFaceRecon's ``BFM_model_front.mat``, FaceVerse and FLAME.

Each reads the upstream files in their published layout, converts to metres and model space
(+Y up, +Z out of the face; checked from the landmarks), scales identity modes to ~N(0, 1)
coefficients, and derives part labels and regions from the model's landmarks exactly as for ICT
(:func:`mvrecon.facemodel.labels.derive_labels`). Upstream licenses are not redistributable here:
the ``license`` field records the model's terms and where they are.

Units (documented upstream or by the reference converters):

- BFM 2009 ``01_MorphableModel.mat``: micrometres (Deep3DFaceRecon divides by 1e5 "to decimetre");
  ``shapePC`` columns are orthonormal, ``shapeEV`` the standard deviations: id_basis = PC * EV.
  Expression basis (optional, as Deep3DFaceRecon uses it): ``Exp_Pca.bin`` (int32 K, float32
  mean (3*53215), float32 PCs (K, 3*53215)), ``std_exp.txt`` (K stds) and ``BFM_exp_idx.mat``
  (``trimIndex``, 1-based BFM vertices of the 53215): the model is then cut to those vertices.
  Landmarks: BFM 2009 has none; pass 68 0-based BFM vertex indices (``landmarks``) or put
  ``landmarks68.txt`` beside the .mat.
- ``BFM_model_front.mat``: decimetres; ``idBase``/``exBase`` already scaled by their stds;
  ``tri`` and ``keypoints`` 1-based.
- FaceVerse ``.npy`` dict (``meanshape``, ``idBase``, ``exBase``, ``tri``, ``keypoints``, optional
  ``meantex``/``texBase``/``exp_name_list_52``): the units differ between releases, so the unit is
  chosen from {1, 0.1, 0.01, 0.001} m as the one giving an outer-eye-corner distance nearest 9 cm;
  bases are used as stored (their coefficients are regularised as ~N(0, 1) upstream).
- FLAME ``generic_model.pkl`` (chumpy arrays, read by :mod:`.safepickle`): metres; ``shapedirs``
  (N, 3, 300 + 100) split into 300 identity and 100 expression modes (betas ~N(0, 1) as SMPL);
  skinning (``posedirs``, ``J_regressor``, ``weights``, ``kintree_table``) kept in ``extras``.
  Landmarks from ``landmark_embedding.npy`` beside it (``full_lmk_faces_idx`` /
  ``full_lmk_bary_coords``: the corner with the largest barycentric weight) or ``landmarks``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .labels import derive_labels
from .model import FaceModel
from .safepickle import load_npy, load_pickle

_NO_UV = (np.zeros((0, 2), np.float32), np.zeros((0, 3), np.int32))


# ------------------------------------------------------------------------- shared


def read_mat(path: Path) -> dict[str, np.ndarray]:
    """A MATLAB v5 file's variables; v7.3 (HDF5) only with h5py installed."""
    import scipy.io

    if not path.is_file():
        raise InputError("file not found", path)
    try:
        return {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}
    except NotImplementedError:
        try:
            import h5py
        except ImportError:
            raise InputError("MATLAB v7.3 (HDF5) file: install h5py, or re-save it in MATLAB with -v7", path) from None
        with h5py.File(path, "r") as f:
            # MATLAB stores column-major: transpose to the loadmat layout
            return {k: np.asarray(f[k]).T for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    except (ValueError, OSError, TypeError) as e:
        raise InputError(f"not a readable .mat file ({e})", path) from None


def _need(d: dict, key: str, path: Path) -> np.ndarray:
    if key not in d:
        raise InputError(f"missing variable '{key}' (found: {', '.join(sorted(d)[:12])})", path)
    return np.asarray(d[key])


def _basis(arr: np.ndarray, n: int, what: str, path: Path) -> np.ndarray:
    """(3N, K) column basis -> (K, N, 3)."""
    a = np.asarray(arr, np.float64)
    if a.ndim != 2 or a.shape[0] != 3 * n:
        raise InputError(f"'{what}' has shape {a.shape}, expected ({3 * n}, K) for {n} vertices", path)
    return a.T.reshape(a.shape[1], n, 3)


def _landmarks(value: Any, n: int, path: Path, one_based: bool = False) -> np.ndarray:
    if isinstance(value, (str, Path)):
        p = Path(value)
        if not p.is_file():
            raise InputError("landmark file not found", p)
        value = np.load(p) if p.suffix == ".npy" else np.loadtxt(p)
    lm = np.asarray(value).reshape(-1)
    if lm.shape != (68,):
        raise InputError(f"{lm.size} landmark indices, expected 68 (iBUG-68)", path)
    lm = lm.astype(np.int64) - (1 if one_based else 0)
    if lm.min() < 0 or lm.max() >= n:
        raise InputError(f"landmark index outside the model's {n} vertices", path)
    return lm


def _tris(arr: np.ndarray, n: int, path: Path, one_based: bool) -> np.ndarray:
    t = np.asarray(arr).astype(np.int64)
    if t.ndim != 2 or 3 not in t.shape:
        raise InputError(f"triangles have shape {t.shape}, expected (F, 3)", path)
    if t.shape[1] != 3:
        t = t.T
    t = t - (1 if one_based else 0)
    if t.min() < 0 or t.max() >= n:
        raise InputError(f"triangle index outside the model's {n} vertices (1-based vs 0-based?)", path)
    return t.astype(np.int32)


def _check_geometry(mean: np.ndarray, lm: np.ndarray, path: Path) -> None:
    eyes = mean[lm[36:48]].mean(0)
    iod = np.linalg.norm(mean[lm[36:42]].mean(0) - mean[lm[42:48]].mean(0))
    if not 0.035 < iod < 0.1:
        raise InputError(f"eye distance is {iod * 1000:.1f} mm after unit conversion: wrong units?", path)
    if not (mean[lm[30], 2] > eyes[2] and mean[lm[8], 1] < eyes[1]):
        raise InputError("unexpected axes: the nose tip is not at +Z or the chin not at -Y", path)


def build_model(
    name: str,
    path: Path,
    mean: np.ndarray,
    id_basis: np.ndarray,
    exp_basis: np.ndarray,
    exp_names: list[str] | tuple[str, ...],
    triangles: np.ndarray,
    landmarks68: np.ndarray,
    license: str,
    source: str,
    id_std: np.ndarray | None = None,
    exp_kind: str = "pca",
    uvs: tuple[np.ndarray, np.ndarray] = _NO_UV,
    extras: dict[str, np.ndarray] | None = None,
) -> FaceModel:
    """Check geometry, derive labels and regions, and assemble a :class:`FaceModel`."""
    _check_geometry(mean, landmarks68, path)
    labels = derive_labels(mean, triangles, landmarks68)
    if id_std is None:
        id_std = np.linalg.norm(id_basis.reshape(len(id_basis), -1), axis=1)
    try:
        return FaceModel(
            name=name,
            mean=mean.astype(np.float32),
            id_basis=id_basis.astype(np.float32),
            id_std=np.asarray(id_std, np.float32),
            exp_basis=exp_basis.astype(np.float32),
            exp_names=tuple(exp_names),
            triangles=triangles.astype(np.int32),
            uvs=uvs[0].astype(np.float32),
            uv_triangles=uvs[1].astype(np.int32),
            landmarks68=landmarks68,
            part_labels=labels.part_labels,
            forehead=labels.forehead,
            regions=labels.regions,
            submeshes={"face": (0, len(mean))},
            submesh_triangles={"face": (0, len(triangles))},
            license=license,
            source=source,
            exp_kind=exp_kind,
            extras=extras or {},
        )
    except ValueError as e:
        raise InputError(str(e), path) from None


# ------------------------------------------------------------------------- BFM

BFM_LICENSE = (
    "Basel Face Model 2009 (University of Basel): free for non-commercial research only under the "
    "BFM license agreement signed at https://faces.dmi.unibas.ch/bfm/ ; not redistributable. "
    "Expression basis (if present) from Guo et al., https://github.com/Juyong/3DFace ."
)


def _read_exp_pca(folder: Path, n_exp_vertices: int) -> tuple[np.ndarray, np.ndarray] | None:
    binf, stdf = folder / "Exp_Pca.bin", folder / "std_exp.txt"
    if not binf.is_file():
        return None
    if not stdf.is_file():
        raise InputError("Exp_Pca.bin needs std_exp.txt beside it", stdf)
    raw = binf.read_bytes()
    if len(raw) < 4:
        raise InputError("truncated file", binf)
    k = int(np.frombuffer(raw[:4], "<i4")[0])
    want = 4 + 4 * 3 * n_exp_vertices * (1 + k)
    if k <= 0 or len(raw) != want:
        raise InputError(f"is {len(raw)} bytes; {k} modes of {n_exp_vertices} vertices need {want}", binf)
    pcs = np.frombuffer(raw, "<f4", offset=4 + 4 * 3 * n_exp_vertices).reshape(k, 3 * n_exp_vertices)
    std = np.loadtxt(stdf).reshape(-1)
    if std.shape != (k,):
        raise InputError(f"has {std.size} values for {k} expression modes", stdf)
    return pcs, std


def import_bfm2009(path: str | Path, name: str = "bfm", landmarks: Any = None) -> FaceModel:
    """BFM 2009 from ``01_MorphableModel.mat`` (+ the optional expression files beside it)."""
    path = Path(path)
    d = read_mat(path)
    mu = _need(d, "shapeMU", path).reshape(-1).astype(np.float64)
    if mu.size % 3:
        raise InputError(f"'shapeMU' has {mu.size} values, not a multiple of 3", path)
    n = mu.size // 3
    pc = _basis(_need(d, "shapePC", path), n, "shapePC", path)
    ev = _need(d, "shapeEV", path).reshape(-1).astype(np.float64)
    if ev.shape != (len(pc),):
        raise InputError(f"'shapeEV' has {ev.size} values for {len(pc)} shape modes", path)
    tris = _tris(_need(d, "tl", path), n, path, one_based=True)
    um = 1e-6
    mean = mu.reshape(n, 3) * um
    id_basis = pc * ev[:, None, None] * um
    if landmarks is None:
        default = path.parent / "landmarks68.txt"
        if not default.is_file():
            raise InputError(
                "BFM 2009 has no landmarks: pass 68 0-based vertex indices (--landmarks FILE) "
                "or put landmarks68.txt beside the .mat",
                path,
            )
        landmarks = default
    lm = _landmarks(landmarks, n, path)
    extras: dict[str, np.ndarray] = {}
    if "texMU" in d:
        extras["tex_mean"] = np.asarray(d["texMU"], np.float32).reshape(n, 3)
        if "texPC" in d and "texEV" in d:
            tex = _basis(d["texPC"], n, "texPC", path) * np.asarray(d["texEV"]).reshape(-1)[:, None, None]
            extras["tex_basis"] = tex.astype(np.float32)
    exp_basis = np.zeros((0, n, 3))
    exp_names: list[str] = []
    note = "no expression basis"
    idx_file = path.parent / "BFM_exp_idx.mat"
    if (path.parent / "Exp_Pca.bin").is_file():
        trim = _need(read_mat(idx_file), "trimIndex", idx_file).reshape(-1).astype(np.int64) - 1
        if trim.min() < 0 or trim.max() >= n:
            raise InputError(f"'trimIndex' outside BFM's {n} vertices", idx_file)
        pca = _read_exp_pca(path.parent, len(trim))
        assert pca is not None  # Exp_Pca.bin is there (checked above)
        pcs, std = pca
        # cut the model to the vertices the expression basis covers, renumbering everything
        keep = np.full(n, -1, np.int64)
        keep[trim] = np.arange(len(trim))
        if (keep[lm] < 0).any():
            raise InputError("a landmark vertex is not among the expression basis vertices", path)
        tri_ok = (keep[tris] >= 0).all(1)
        tris = keep[tris[tri_ok]].astype(np.int32)
        lm = keep[lm]
        mean, id_basis = mean[trim], id_basis[:, trim]
        extras = {k: v[..., trim, :] for k, v in extras.items()}
        exp_basis = (pcs.astype(np.float64) * std[:, None]).reshape(len(std), len(trim), 3) * um
        exp_names = [f"exp{i:03d}" for i in range(len(std))]
        note = f"{len(std)} expression modes (Exp_Pca.bin * std_exp.txt), cut to {len(trim)} vertices"
    return build_model(
        name,
        path,
        mean,
        id_basis,
        exp_basis,
        exp_names,
        tris,
        lm,
        BFM_LICENSE,
        f"Basel Face Model 2009 from {path.name}: {len(id_basis)} identity modes (shapePC*shapeEV), "
        f"{note}, micrometres -> metres",
        id_std=ev * um,
        extras=extras,
    )


def import_bfm_front(path: str | Path, name: str = "bfm-front") -> FaceModel:
    """Deep3DFaceRecon's ``BFM_model_front.mat`` (35709 vertices, 80 identity, 64 expression)."""
    path = Path(path)
    d = read_mat(path)
    mu = _need(d, "meanshape", path).reshape(-1).astype(np.float64)
    n = mu.size // 3
    dm = 0.1  # decimetres
    id_basis = _basis(_need(d, "idBase", path), n, "idBase", path) * dm
    exp_basis = _basis(_need(d, "exBase", path), n, "exBase", path) * dm
    tris = _tris(_need(d, "tri", path), n, path, one_based=True)
    lm = _landmarks(_need(d, "keypoints", path), n, path, one_based=True)
    extras = {}
    if "meantex" in d:
        extras["tex_mean"] = np.asarray(d["meantex"], np.float32).reshape(n, 3)
    if "texBase" in d:
        extras["tex_basis"] = _basis(d["texBase"], n, "texBase", path).astype(np.float32)
    return build_model(
        name,
        path,
        mu.reshape(n, 3) * dm,
        id_basis,
        exp_basis,
        [f"exp{i:03d}" for i in range(len(exp_basis))],
        tris,
        lm,
        BFM_LICENSE,
        f"Deep3DFaceRecon BFM_model_front.mat ({path.name}): BFM 2009 front face, {len(id_basis)} identity "
        f"and {len(exp_basis)} expression modes (std-scaled), decimetres -> metres",
        extras=extras,
    )


# ------------------------------------------------------------------------- FaceVerse

FACEVERSE_LICENSE = (
    "FaceVerse (Wang et al., CVPR 2022, Tsinghua University & Ant Group): research use under the "
    "terms of https://github.com/LizhenWangT/FaceVerse ; not redistributable here."
)


def import_faceverse(path: str | Path, name: str = "faceverse") -> FaceModel:
    """FaceVerse's ``.npy`` model dict (v1/v2 'simple' layout; v3 extra keys are ignored)."""
    path = Path(path)
    d = load_npy(path)
    if not isinstance(d, dict):
        raise InputError(f"expected a pickled dict, found {type(d).__name__}", path)
    mu = _need(d, "meanshape", path).reshape(-1).astype(np.float64)
    n = mu.size // 3
    id_raw = _basis(_need(d, "idBase", path), n, "idBase", path)
    ex_raw = _basis(_need(d, "exBase", path), n, "exBase", path)
    tris = _tris(_need(d, "tri", path), n, path, one_based=False)
    lm = _landmarks(_need(d, "keypoints", path), n, path)
    raw = mu.reshape(n, 3)
    corner = float(np.linalg.norm(raw[lm[36]] - raw[lm[45]]))
    units = (1.0, 0.1, 0.01, 0.001)
    scale = min(units, key=lambda s: abs(np.log(max(corner * s, 1e-12) / 0.09)))
    names = d.get("exp_name_list_52")
    exp_names = (
        [str(s) for s in names]
        if names is not None and len(names) == len(ex_raw)
        else [f"exp{i:03d}" for i in range(len(ex_raw))]
    )
    extras = {}
    if "meantex" in d:
        extras["tex_mean"] = np.asarray(d["meantex"], np.float32).reshape(n, 3)
    return build_model(
        name,
        path,
        raw * scale,
        id_raw * scale,
        ex_raw * scale,
        exp_names,
        tris,
        lm,
        FACEVERSE_LICENSE,
        f"FaceVerse model dict {path.name}: {len(id_raw)} identity and {len(ex_raw)} expression modes, "
        f"unit {scale} m inferred from the eye-corner distance",
        extras=extras,
    )


# ------------------------------------------------------------------------- FLAME

FLAME_LICENSE = (
    "FLAME (Li, Bolkart et al., SIGGRAPH Asia 2017, MPI for Intelligent Systems): non-commercial "
    "scientific research only under the FLAME license at https://flame.is.tue.mpg.de ; "
    "not redistributable."
)


def _flame_landmarks(path: Path, faces: np.ndarray, n: int, landmarks: Any) -> np.ndarray:
    if landmarks is not None:
        return _landmarks(landmarks, n, path)
    emb_path = path.parent / "landmark_embedding.npy"
    if not emb_path.is_file():
        raise InputError(
            "FLAME has no landmark vertices: put landmark_embedding.npy (DECA's, with "
            "full_lmk_faces_idx) beside it or pass --landmarks FILE (68 vertex indices)",
            path,
        )
    emb = load_npy(emb_path)
    if not isinstance(emb, dict) or "full_lmk_faces_idx" not in emb or "full_lmk_bary_coords" not in emb:
        raise InputError("no 'full_lmk_faces_idx' / 'full_lmk_bary_coords' (68-point embedding)", emb_path)
    fi = np.asarray(emb["full_lmk_faces_idx"]).reshape(-1).astype(np.int64)
    bc = np.asarray(emb["full_lmk_bary_coords"], np.float64).reshape(-1, 3)
    if fi.shape != (68,) or bc.shape != (68, 3) or fi.min() < 0 or fi.max() >= len(faces):
        raise InputError(
            f"embedding has {fi.size} faces / {bc.shape} weights, expected 68 on {len(faces)} faces", emb_path
        )
    return faces[fi, np.argmax(bc, 1)].astype(np.int64)


def import_flame(path: str | Path, name: str = "flame", landmarks: Any = None, n_shape: int = 300) -> FaceModel:
    """FLAME ``generic_model.pkl`` (2020 / 2023), read safely without chumpy."""
    path = Path(path)
    d = load_pickle(path)
    if not isinstance(d, dict):
        raise InputError(f"expected a pickled dict, found {type(d).__name__}", path)
    vt = _need(d, "v_template", path).astype(np.float64)
    if vt.ndim != 2 or vt.shape[1] != 3:
        raise InputError(f"'v_template' has shape {vt.shape}, expected (N, 3)", path)
    n = len(vt)
    sd = _need(d, "shapedirs", path).astype(np.float64)
    if sd.shape[:2] != (n, 3) or sd.ndim != 3 or sd.shape[2] <= n_shape:
        raise InputError(f"'shapedirs' has shape {sd.shape}, expected ({n}, 3, >{n_shape})", path)
    faces = _tris(_need(d, "f", path), n, path, one_based=False)
    lm = _flame_landmarks(path, faces, n, landmarks)
    basis = np.transpose(sd, (2, 0, 1))
    extras: dict[str, np.ndarray] = {}
    for key in ("posedirs", "weights", "kintree_table"):
        if key in d:
            extras[key] = np.asarray(d[key])
    if "J_regressor" in d:
        jr = d["J_regressor"]
        extras["J_regressor"] = np.asarray(jr.toarray() if hasattr(jr, "toarray") else jr, np.float32)
    return build_model(
        name,
        path,
        vt,
        basis[:n_shape],
        basis[n_shape:],
        [f"exp{i:03d}" for i in range(len(basis) - n_shape)],
        faces,
        lm,
        FLAME_LICENSE,
        f"FLAME {path.name}: {n_shape} shape and {len(basis) - n_shape} expression modes (shapedirs), metres; "
        "skinning in extras",
        extras=extras,
    )
