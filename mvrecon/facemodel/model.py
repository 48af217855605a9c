"""The face model type and its versioned ``.npz`` format.

A :class:`FaceModel` is a linear morphable model in metres, model space +Y up, +Z out of the face:

    verts = mean + sum_k id[k] * id_basis[k] + sum_j exp[j] * exp_basis[j]

``id_basis`` is scaled so that identity coefficients are ~N(0, 1); ``id_std[k]`` is the norm of
mode ``k`` (metres), i.e. the standard deviation of the coefficient along the unit-norm mode, as
BFM's ``shapeEV``. ``exp_basis`` holds expression deltas (blendshapes in [0, 1] for ICT, PCA
modes for BFM/FaceVerse/FLAME: see ``exp_kind``).

On disk (``FORMAT_VERSION`` 1) every field is a plain array (no pickles): strings are unicode
arrays, dicts are flattened to ``region__<name>``, ``submesh__<name>``, ``subtri__<name>`` and
``extra__<name>`` keys.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..geometry import vertex_normals
from ..io import write_npz
from ..parts import PART_NAMES

FORMAT_VERSION = 1

#: Sub-meshes rendered for a fit: the outer head surface and the eyeballs, no mouth interior,
#: no transparent eye helpers, no eyelashes.
RENDER_SUBMESHES = ("face", "head_neck", "eyeball_left", "eyeball_right")


@dataclass(frozen=True, eq=False)
class FaceModel:
    """A linear face model (all geometry in metres, float32; indices int32/int64).

    Shapes: N vertices, F triangles, T UV coordinates, K_id identity and K_exp expression modes.
    """

    name: str
    """Short name the registry finds the model by (file stem)."""
    mean: np.ndarray
    """(N, 3) metres: the mean (neutral) shape."""
    id_basis: np.ndarray
    """(K_id, N, 3) metres per unit coefficient; coefficients ~N(0, 1)."""
    id_std: np.ndarray
    """(K_id,) metres: norm of each identity mode (std along the unit-norm mode direction)."""
    exp_basis: np.ndarray
    """(K_exp, N, 3) metres per unit weight: expression deltas."""
    exp_names: tuple[str, ...]
    """K_exp expression names (ARKit names for ICT)."""
    triangles: np.ndarray
    """(F, 3) int32 vertex indices, counter-clockwise seen from outside (quads split)."""
    uvs: np.ndarray
    """(T, 2) UV coordinates in [0, 1], v up (OBJ convention); (0, 2) when the model has none."""
    uv_triangles: np.ndarray
    """(F, 3) int32 indices into ``uvs`` per triangle corner; (0, 3) when the model has no UVs."""
    landmarks68: np.ndarray
    """(68,) int vertex indices of the iBUG-68 landmarks (0-based)."""
    part_labels: np.ndarray
    """(N,) uint8 codes of :data:`mvrecon.parts.PART_CODES` (0 = not a part)."""
    forehead: np.ndarray
    """(N,) bool: skin above the brows (cut from PRDL's skin)."""
    regions: dict[str, np.ndarray]
    """REALY evaluation regions (nose, mouth, forehead, cheek): vertex indices (M,) int64."""
    submeshes: dict[str, tuple[int, int]]
    """Vertex ranges ``[start, end)`` of named sub-meshes (face, head_neck, eyeball_left, ...)."""
    submesh_triangles: dict[str, tuple[int, int]]
    """Triangle ranges ``[start, end)`` of the same sub-meshes (may be empty)."""
    license: str
    """Full upstream license text (carried with every copy)."""
    source: str
    """Where the model came from (upstream name, files, conversion)."""
    exp_kind: str = "blendshape"
    """'blendshape' (weights in [0, 1]) or 'pca' (coefficients ~N(0, 1))."""
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    """Model-specific arrays kept verbatim (FLAME skinning, ICT non-ARKit shapes, textures)."""
    # torch copies of the bases; init=False so that dataclasses.replace() never shares them
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = validate_arrays(self)
        if problems:
            raise ValueError(f"face model '{self.name}': " + "; ".join(problems))

    # ---------------------------------------------------------------- sizes
    @property
    def n_vertices(self) -> int:
        return int(self.mean.shape[0])

    @property
    def n_id(self) -> int:
        return int(self.id_basis.shape[0])

    @property
    def n_exp(self) -> int:
        return int(self.exp_basis.shape[0])

    # ---------------------------------------------------------------- geometry
    def vertices(self, id_coeffs: Any = None, exp_coeffs: Any = None) -> np.ndarray:
        """Vertices (N, 3) float32 metres for identity (K_id,) and expression (K_exp,) coefficients.

        Missing or shorter coefficient vectors mean zeros for the remaining modes.
        """
        out = self.mean.astype(np.float32).reshape(-1).copy()
        for coeffs, basis in ((id_coeffs, self.id_basis), (exp_coeffs, self.exp_basis)):
            if coeffs is None:
                continue
            c = np.asarray(coeffs, dtype=np.float32).reshape(-1)
            if c.shape[0] > basis.shape[0]:
                raise ValueError(f"{c.shape[0]} coefficients for {basis.shape[0]} modes")
            out += c @ basis[: c.shape[0]].reshape(c.shape[0], -1)
        return out.reshape(-1, 3)

    def _torch_mats(self, device: Any, dtype: Any) -> tuple:
        import torch

        key = ("mats", str(device), str(dtype))
        if key not in self._cache:
            # (K, N*3) matrices: one matmul per batch instead of a (B, K, N, 3) broadcast.
            mean = torch.as_tensor(self.mean.reshape(-1), dtype=dtype, device=device)
            idm = torch.as_tensor(self.id_basis.reshape(self.n_id, -1), dtype=dtype, device=device)
            exm = torch.as_tensor(self.exp_basis.reshape(self.n_exp, -1), dtype=dtype, device=device)
            self._cache[key] = (mean, idm, exm)
        return self._cache[key]

    def vertices_torch(self, id_coeffs: Any = None, exp_coeffs: Any = None, device: Any = None, dtype: Any = None):
        """Batched vertices (B, N, 3) torch, differentiable in the coefficients.

        ``id_coeffs`` (B, K_id) or None, ``exp_coeffs`` (B, K_exp) or None (fewer columns than
        modes use the leading modes). Device and dtype follow the coefficients unless given.
        """
        import torch

        ref = id_coeffs if id_coeffs is not None else exp_coeffs
        if device is None:
            device = ref.device if ref is not None else torch.device("cpu")
        if dtype is None:
            dtype = ref.dtype if ref is not None else torch.float32
        mean, idm, exm = self._torch_mats(device, dtype)
        batch = 1 if ref is None else ref.shape[0]
        out = mean.expand(batch, -1)
        if id_coeffs is not None:
            k = id_coeffs.shape[-1]
            if k > self.n_id:
                raise ValueError(f"{k} identity coefficients for {self.n_id} modes")
            out = out + id_coeffs.to(dtype) @ idm[:k]
        if exp_coeffs is not None:
            k = exp_coeffs.shape[-1]
            if k > self.n_exp:
                raise ValueError(f"{k} expression coefficients for {self.n_exp} modes")
            out = out + exp_coeffs.to(dtype) @ exm[:k]
        return out.reshape(batch, -1, 3)

    def landmarks3d(self, verts: Any) -> Any:
        """iBUG-68 landmark positions (..., 68, 3) from vertices (..., N, 3) (numpy or torch)."""
        return verts[..., self.landmarks68, :]

    def vertex_normals(self, verts: Any = None, triangles: np.ndarray | None = None) -> Any:
        """Area-weighted unit vertex normals like ``verts``: (N, 3) float32 numpy or (B, N, 3) torch.

        ``verts`` defaults to the mean; ``triangles`` to all triangles.
        """
        verts = self.mean if verts is None else verts
        tri = self.triangles if triangles is None else triangles
        n = vertex_normals(verts, tri)
        return n.astype(np.float32) if isinstance(n, np.ndarray) else n

    # ---------------------------------------------------------------- rendering subsets
    def render_triangles(self, submeshes: Iterable[str] = RENDER_SUBMESHES) -> np.ndarray:
        """Triangles (M, 3) to render for a fit: face, head/neck and eyeballs (a closed-looking
        head without mouth interior or eye helpers). All triangles for models without sub-meshes."""
        idx = self.render_triangle_ids(submeshes)
        return self.triangles[idx]

    def render_triangle_ids(self, submeshes: Iterable[str] = RENDER_SUBMESHES) -> np.ndarray:
        """Indices (M,) into :attr:`triangles` of :meth:`render_triangles`."""
        names = [s for s in submeshes if s in self.submesh_triangles]
        if not names:
            return np.arange(len(self.triangles))
        return np.concatenate([np.arange(*self.submesh_triangles[s]) for s in names])

    def render_vertex_mask(self, submeshes: Iterable[str] = RENDER_SUBMESHES) -> np.ndarray:
        """(N,) bool: vertices used by :meth:`render_triangles`."""
        mask = np.zeros(self.n_vertices, bool)
        mask[self.render_triangles(submeshes).reshape(-1)] = True
        return mask

    def face_mask(self) -> np.ndarray:
        """(N,) bool alias of :meth:`render_vertex_mask` for the default sub-meshes."""
        return self.render_vertex_mask()

    def part_vertices(self, part: str) -> np.ndarray:
        """Vertex indices (M,) labelled with ``part`` (a name of :data:`mvrecon.parts.PART_NAMES`)."""
        return np.flatnonzero(self.part_labels == PART_NAMES.index(part))

    # ---------------------------------------------------------------- io
    def save(self, path: str | Path) -> Path:
        """Write the model atomically as a versioned ``.npz``."""
        return save_model(self, path)


# ------------------------------------------------------------------------- validation


def validate_arrays(m: FaceModel) -> list[str]:
    """Shape and range problems of a model's arrays, one sentence each (empty when valid)."""
    p: list[str] = []

    def shape(name: str, arr: Any, want: tuple) -> bool:
        a = np.asarray(arr)
        ok = a.ndim == len(want) and all(w is None or w == s for w, s in zip(want, a.shape))
        if not ok:
            txt = ", ".join("*" if w is None else str(w) for w in want)
            p.append(f"'{name}' has shape {a.shape}, expected ({txt})")
        return ok

    if not shape("mean", m.mean, (None, 3)):
        return p
    n = m.mean.shape[0]
    shape("id_basis", m.id_basis, (None, n, 3))
    shape("id_std", m.id_std, (np.asarray(m.id_basis).shape[0],))
    shape("exp_basis", m.exp_basis, (None, n, 3))
    if len(m.exp_names) != np.asarray(m.exp_basis).shape[0]:
        p.append(f"{len(m.exp_names)} expression names for {np.asarray(m.exp_basis).shape[0]} expression modes")
    if shape("triangles", m.triangles, (None, 3)) and len(m.triangles):
        if m.triangles.min() < 0 or m.triangles.max() >= n:
            p.append(f"'triangles' index outside [0, {n})")
    shape("uvs", m.uvs, (None, 2))
    if shape("uv_triangles", m.uv_triangles, (None, 3)) and len(m.uv_triangles):
        if len(m.uv_triangles) != len(m.triangles):
            p.append(f"'uv_triangles' has {len(m.uv_triangles)} rows for {len(m.triangles)} triangles")
        elif m.uv_triangles.min() < 0 or m.uv_triangles.max() >= len(m.uvs):
            p.append(f"'uv_triangles' index outside [0, {len(m.uvs)})")
    if shape("landmarks68", m.landmarks68, (68,)):
        if m.landmarks68.min() < 0 or m.landmarks68.max() >= n:
            p.append(f"'landmarks68' index outside [0, {n})")
    if shape("part_labels", m.part_labels, (n,)) and len(m.part_labels):
        if int(m.part_labels.max()) >= len(PART_NAMES):
            p.append(f"'part_labels' has code {int(m.part_labels.max())}, above {len(PART_NAMES) - 1}")
    shape("forehead", m.forehead, (n,))
    for k, v in m.regions.items():
        if shape(f"region {k}", v, (None,)) and len(v) and (v.min() < 0 or v.max() >= n):
            p.append(f"region '{k}' index outside [0, {n})")
    for k, (a, b) in m.submeshes.items():
        if not 0 <= a <= b <= n:
            p.append(f"sub-mesh '{k}' vertex range [{a}, {b}) outside [0, {n}]")
    for k, (a, b) in m.submesh_triangles.items():
        if not 0 <= a <= b <= len(m.triangles):
            p.append(f"sub-mesh '{k}' triangle range [{a}, {b}) outside [0, {len(m.triangles)}]")
    if m.exp_kind not in ("blendshape", "pca"):
        p.append(f"exp_kind '{m.exp_kind}' is not 'blendshape' or 'pca'")
    return p


# ------------------------------------------------------------------------- npz io

_ARRAYS = (
    "mean",
    "id_basis",
    "id_std",
    "exp_basis",
    "triangles",
    "uvs",
    "uv_triangles",
    "landmarks68",
    "part_labels",
    "forehead",
)
_STRINGS = ("name", "license", "source", "exp_kind")


def model_arrays(m: FaceModel) -> dict[str, np.ndarray]:
    """The flat dict of arrays written to the ``.npz``."""
    out: dict[str, np.ndarray] = {"format_version": np.array(FORMAT_VERSION, np.int32)}
    out["mean"] = np.asarray(m.mean, np.float32)
    out["id_basis"] = np.asarray(m.id_basis, np.float32)
    out["id_std"] = np.asarray(m.id_std, np.float32)
    out["exp_basis"] = np.asarray(m.exp_basis, np.float32)
    out["triangles"] = np.asarray(m.triangles, np.int32)
    out["uvs"] = np.asarray(m.uvs, np.float32)
    out["uv_triangles"] = np.asarray(m.uv_triangles, np.int32)
    out["landmarks68"] = np.asarray(m.landmarks68, np.int64)
    out["part_labels"] = np.asarray(m.part_labels, np.uint8)
    out["forehead"] = np.asarray(m.forehead, bool)
    out["exp_names"] = np.array(list(m.exp_names), dtype=str).reshape(-1)
    for k in _STRINGS:
        out[k] = np.array(getattr(m, k), dtype=str)
    for k, v in m.regions.items():
        out[f"region__{k}"] = np.asarray(v, np.int64)
    for k, vspan in m.submeshes.items():
        out[f"submesh__{k}"] = np.asarray(vspan, np.int64)
    for k, span in m.submesh_triangles.items():
        out[f"subtri__{k}"] = np.asarray(span, np.int64)
    for k, v in m.extras.items():
        a = np.asarray(v)
        if a.dtype == object:
            raise ValueError(f"extra '{k}' is an object array; only plain arrays are stored")
        out[f"extra__{k}"] = a
    return out


def save_model(m: FaceModel, path: str | Path) -> Path:
    """Write ``m`` to ``path`` (``.npz``) atomically."""
    return write_npz(path, **model_arrays(m))


def load_model_file(path: str | Path) -> FaceModel:
    """Read a model ``.npz``; a missing, unreadable, old or malformed file is one InputError."""
    import zipfile

    from ..io import MAX_MODEL_BYTES, check_name, regular_file

    path = Path(path)
    if not os.path.lexists(path):
        raise InputError("face model file not found", path)
    regular_file(path, "face model file", MAX_MODEL_BYTES)
    try:
        with zipfile.ZipFile(path) as zf:  # a zip bomb is refused from its directory, unpacked never
            unpacked = sum(i.file_size for i in zf.infolist())
        if unpacked > MAX_MODEL_BYTES:
            raise InputError(
                f"face model unpacks to {unpacked} bytes, above the limit of {MAX_MODEL_BYTES}; refused", path
            )
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, MemoryError, NotImplementedError) as e:
        raise InputError(f"not a readable face model .npz ({e.__class__.__name__}: {e})", path) from None
    if "format_version" not in data:
        raise InputError("not a mvrecon face model (no 'format_version' array)", path)
    try:
        version = int(data["format_version"])
    except (TypeError, ValueError):
        raise InputError("not a mvrecon face model (a malformed 'format_version')", path) from None
    if version != FORMAT_VERSION:
        raise InputError(
            f"face model format version {version}, this mvrecon reads {FORMAT_VERSION}; re-import it", path
        )
    missing = [k for k in _ARRAYS + _STRINGS + ("exp_names",) if k not in data]
    if missing:
        raise InputError(f"missing array(s) {', '.join(repr(k) for k in missing)}", path)

    def group(prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix)}

    try:
        return FaceModel(
            name=check_name(str(data["name"]), "model name", path),  # embeddings are found by it
            mean=data["mean"],
            id_basis=data["id_basis"],
            id_std=data["id_std"],
            exp_basis=data["exp_basis"],
            exp_names=tuple(str(s) for s in data["exp_names"].reshape(-1)),
            triangles=data["triangles"],
            uvs=data["uvs"],
            uv_triangles=data["uv_triangles"],
            landmarks68=data["landmarks68"],
            part_labels=data["part_labels"],
            forehead=data["forehead"].astype(bool),
            regions=group("region__"),
            submeshes={k: (int(v[0]), int(v[1])) for k, v in group("submesh__").items()},
            submesh_triangles={k: (int(v[0]), int(v[1])) for k, v in group("subtri__").items()},
            license=str(data["license"]),
            source=str(data["source"]),
            exp_kind=str(data["exp_kind"]),
            extras=group("extra__"),
        )
    except (ValueError, IndexError, TypeError, KeyError, AttributeError) as e:
        raise InputError(f"malformed face model ({e.__class__.__name__}: {e})"[:300], path) from None
