"""Reading the evaluation inputs: a mesh (OBJ/PLY/GLB) with its 68 landmarks, in known units.

Every problem a user can fix is an :class:`~mvrecon.errors.InputError` naming the file: an empty
mesh, NaN or infinite vertices, edges shared by more than two triangles (non-manifold), landmark
files of the wrong shape, with indices out of range or not in iBUG-68 order
(:func:`~mvrecon.evaluate.landmarks.check_ibug_order`), and units that cannot be told or do not
match between the prediction and the scan.

Units: a mesh is in metres, centimetres or millimetres. ``"auto"`` tells them from the face's
width (the extent of the 68 landmarks along the eye axis, about 0.14 m): the unit whose reading
is nearest to 0.14 m on a log scale wins, so 0.14 reads as metres, 14 as centimetres, 140 as
millimetres. Declared units are checked the same way: a face 140 m wide declared as metres is an
error that names the likely unit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InputError
from .landmarks import check_ibug_order

Units = Literal["auto", "m", "cm", "mm"]
#: Metres per unit.
UNIT_SCALE: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001}
#: A typical face width (metres) between the outermost landmarks along the eye axis.
TYPICAL_FACE_WIDTH_M = 0.14
#: Plausible face widths (metres) once converted; outside this the units are wrong.
FACE_WIDTH_RANGE_M = (0.05, 0.5)
MESH_SUFFIXES = (".obj", ".ply", ".glb", ".gltf", ".off", ".stl")
LANDMARK_SUFFIXES = (".txt", ".npy", ".json")


@dataclass(frozen=True)
class FaceMesh:
    """A triangle mesh with its iBUG-68 landmarks, in metres.

    ``vertices`` ``(N, 3)`` float64 metres; ``triangles`` ``(F, 3)`` int64 vertex indices;
    ``landmarks`` ``(68, 3)`` float64 metres (iBUG-68 order, 0-based); ``units`` the unit the file
    was in (``"m"``, ``"cm"``, ``"mm"``) and ``units_detected`` whether it was told from the face
    width; ``path`` and ``landmarks_path`` the source files, when read from disk.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    landmarks: np.ndarray
    units: str = "m"
    units_detected: bool = False
    path: Path | None = None
    landmarks_path: Path | None = None

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<array>"


def face_width(landmarks: np.ndarray) -> float:
    """Extent of the 68 landmarks ``(68, 3)`` along the outer-eye-corner axis (their units)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    axis = lm[45] - lm[36]
    n = np.linalg.norm(axis)
    if not np.isfinite(n) or n == 0:
        return 0.0
    proj = lm @ (axis / n)
    return float(proj.max() - proj.min())


def detect_units(width: float) -> str:
    """The unit ('m', 'cm', 'mm') in which a face ``width`` wide is nearest to a real face."""
    if not np.isfinite(width) or width <= 0:
        raise ValueError("face width must be positive")
    scores = {u: abs(np.log(width * s / TYPICAL_FACE_WIDTH_M)) for u, s in UNIT_SCALE.items()}
    return min(scores, key=lambda u: scores[u])


def _check_width(width_m: float, units: str, detected: bool, source: str | Path) -> None:
    lo, hi = FACE_WIDTH_RANGE_M
    if lo <= width_m <= hi:
        return
    raw = width_m / UNIT_SCALE[units]
    how = "detected" if detected else "declared"
    likely = detect_units(raw)
    hint = "" if detected or likely == units else f"; the landmarks look like {likely}"
    raise InputError(
        f"face is {raw:.4g} {units} wide ({how} units {units}: {width_m:.4g} m), "
        f"outside the plausible {lo}-{hi} m{hint}",
        source,
    )


def validate_mesh(vertices: np.ndarray, triangles: np.ndarray, source: str | Path) -> None:
    """Raise :class:`InputError` naming ``source`` for an empty, NaN or non-manifold mesh."""
    v = np.asarray(vertices)
    f = np.asarray(triangles)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise InputError(f"mesh is empty ({len(v)} vertices)", source)
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise InputError(f"mesh has no triangles ({len(v)} vertices, 0 faces); a point cloud is not a mesh", source)
    bad = ~np.isfinite(v).all(1)
    if bad.any():
        raise InputError(
            f"{int(bad.sum())} of {len(v)} vertices are NaN or infinite (first: {int(np.argmax(bad))})", source
        )
    if f.min() < 0 or f.max() >= len(v):
        raise InputError(f"triangles index vertex {int(f.max())} but the mesh has {len(v)} vertices", source)
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 0), 1)
    key = edges[:, 0].astype(np.int64) * len(v) + edges[:, 1]
    _, counts = np.unique(key, return_counts=True)
    nonmanifold = int((counts > 2).sum())
    if nonmanifold:
        raise InputError(
            f"mesh is non-manifold: {nonmanifold} edges are shared by more than two triangles; "
            "clean it (e.g. Open3D remove_non_manifold_edges) before evaluating",
            source,
        )


def read_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``(N, 3)`` float64 and triangles ``(F, 3)`` int64 of a mesh file, validated.

    Vertices are kept in file order (no merging, no dropping), so landmark vertex indices stay
    valid: OBJ is parsed here (Open3D's reader reorders vertices by face), PLY/OFF/STL go through
    Open3D, GLB/glTF through trimesh (Open3D drops their unreferenced vertices). Polygons are fanned
    into triangles.
    """
    from ..io import regular_file
    from ..meshio import check_read_whole

    path = Path(path)
    if not path.exists():
        raise InputError("mesh file not found", path)
    regular_file(path, "mesh file")
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise InputError(f"unsupported mesh format '{path.suffix}' (use {', '.join(MESH_SUFFIXES)})", path)
    if path.stat().st_size == 0:
        raise InputError("mesh file is empty (0 bytes)", path)
    if suffix == ".obj":
        v, f = _read_obj(path)
    elif suffix in (".glb", ".gltf"):
        v, f = _read_gltf(path)
    else:
        import open3d as o3d

        # Open3D prints its own warnings for unreadable files; its result (empty) is judged below
        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
            mesh = o3d.io.read_triangle_mesh(str(path), enable_post_processing=False, print_progress=False)
        v = np.asarray(mesh.vertices, dtype=np.float64).copy()
        f = np.asarray(mesh.triangles, dtype=np.int64).copy()
        if suffix in (".ply", ".off"):
            check_read_whole(path, len(v), len(f))
    validate_mesh(v, f, path)
    return v, f


def _read_gltf(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        import trimesh
    except ImportError:
        raise InputError("reading glTF/GLB needs the 'trimesh' package (pip install trimesh)", path) from None
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as e:  # trimesh raises many types for malformed files
        raise InputError(f"cannot read glTF ({e.__class__.__name__}: {e})", path) from None
    if not isinstance(mesh, trimesh.Trimesh):  # force="mesh" makes one; the type says it may not
        raise InputError("cannot read glTF (no triangle mesh)", path)
    return np.asarray(mesh.vertices, dtype=np.float64).copy(), np.asarray(mesh.faces, dtype=np.int64).reshape(
        -1, 3
    ).copy()


def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    verts: list[str] = []
    faces: list[list[int]] = []
    try:
        text = path.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith("v "):
                verts.append(line[2:])
            elif line.startswith("f "):
                idx = [int(p.split("/")[0]) for p in line[2:].split()]
                n = len(verts)
                idx = [i - 1 if i > 0 else n + i for i in idx]
                faces.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
        v = np.array([row.split()[:3] for row in verts], dtype=np.float64).reshape(-1, 3)
    except (ValueError, IndexError):
        raise InputError("malformed OBJ (a 'v' or 'f' line does not parse)", path) from None
    return v, np.asarray(faces, np.int64).reshape(-1, 3)


def read_landmarks(path: str | Path, vertices: np.ndarray | None = None) -> np.ndarray:
    """68 landmarks ``(68, 3)`` (the mesh's units) from a file.

    ``.txt``: 68 rows of ``x y z`` (spaces or commas) or 68 integer vertex indices;
    ``.npy``: a ``(68, 3)`` float array or ``(68,)`` integer vertex indices;
    ``.json``: a list of 68 ``[x, y, z]`` or 68 integers, or an object with ``"landmarks"``
    (points) or ``"vertex_indices"``. Vertex indices need ``vertices`` ``(N, 3)``.
    """
    from ..io import regular_file

    path = Path(path)
    if not path.exists():
        raise InputError("landmark file not found", path)
    regular_file(path, "landmark file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".json":
            from ..io import read_json

            try:
                data = read_json(path)  # bounded: size, nesting, integer length
            except InputError as e:
                raise InputError(f"cannot parse landmarks ({str(e).removeprefix(f'{path}: ')})", path) from None
            if isinstance(data, dict):
                if "vertex_indices" in data:
                    data = np.asarray(data["vertex_indices"], dtype=np.int64)
                elif "landmarks" in data:
                    data = data["landmarks"]
                else:
                    raise InputError("JSON landmarks need a 'landmarks' or 'vertex_indices' key", path)
            arr = np.asarray(data)
        elif suffix == ".txt":
            text = path.read_text(encoding="utf-8").replace(",", " ")
            rows = [r.split() for r in text.splitlines() if r.strip() and not r.lstrip().startswith("#")]
            arr = np.asarray(rows, dtype=np.float64) if rows else np.zeros((0, 3))
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
                if np.all(arr == np.round(arr)):
                    arr = arr.astype(np.int64)
        else:
            raise InputError(f"unsupported landmark format '{path.suffix}' (use .txt, .npy or .json)", path)
    except InputError:
        raise
    except (ValueError, OSError, json.JSONDecodeError) as e:
        raise InputError(f"cannot parse landmarks ({e.__class__.__name__}: {e})", path) from None
    return resolve_landmarks(arr, vertices, path)


def resolve_landmarks(arr: np.ndarray, vertices: np.ndarray | None, source: str | Path) -> np.ndarray:
    """Points ``(68, 3)`` from points or from 68 vertex indices into ``vertices`` ``(N, 3)``."""
    arr = np.asarray(arr)
    if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1):
        idx = arr.reshape(-1)
        if len(idx) != 68:
            raise InputError(f"expected 68 landmark vertex indices, got {len(idx)}", source)
        if not np.issubdtype(idx.dtype, np.integer):
            raise InputError("landmark vertex indices must be integers", source)
        if vertices is None:
            raise InputError("landmarks are vertex indices but no mesh was given to look them up", source)
        if idx.min() < 0 or idx.max() >= len(vertices):
            raise InputError(
                f"landmark vertex index {int(idx.max())} is out of range for a mesh of {len(vertices)} vertices", source
            )
        return np.asarray(vertices, dtype=np.float64)[idx].copy()
    if arr.shape != (68, 3):
        raise InputError(f"expected 68 landmarks of 3 coordinates, got shape {tuple(arr.shape)}", source)
    pts = arr.astype(np.float64)
    bad = ~np.isfinite(pts).all(1)
    if bad.any():
        raise InputError(f"landmarks {np.flatnonzero(bad).tolist()} are missing (NaN or infinite)", source)
    return pts


def make_face_mesh(
    vertices: np.ndarray,
    triangles: np.ndarray,
    landmarks: np.ndarray,
    units: Units = "auto",
    source: str | Path = "<array>",
    landmarks_source: str | Path | None = None,
) -> FaceMesh:
    """Validate arrays (in ``units``) and convert them into a :class:`FaceMesh` in metres.

    ``landmarks`` is ``(68, 3)`` points or ``(68,)`` vertex indices. The inputs are not modified.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(triangles, dtype=np.int64)
    validate_mesh(v, f, source)
    lm = resolve_landmarks(landmarks, v, landmarks_source or source)
    check_ibug_order(lm, landmarks_source or source)
    width = face_width(lm)
    if width <= 0:
        raise InputError(
            "landmarks 36 and 45 (outer eye corners) coincide; cannot tell the face's size", landmarks_source or source
        )
    detected = units == "auto"
    unit = detect_units(width) if detected else units
    if unit not in UNIT_SCALE:
        raise InputError(f"unknown units '{unit}' (use m, cm, mm or auto)", source)
    s = UNIT_SCALE[unit]
    _check_width(width * s, unit, detected, landmarks_source or source)
    path = None if str(source) == "<array>" else Path(source)
    return FaceMesh(
        vertices=v * s,
        triangles=f.copy(),
        landmarks=lm * s,
        units=unit,
        units_detected=detected,
        path=path,
        landmarks_path=None if landmarks_source is None else Path(landmarks_source),
    )


def load_face_mesh(mesh_path: str | Path, landmarks_path: str | Path, units: Units = "auto") -> FaceMesh:
    """Read a mesh file and its landmark file into a :class:`FaceMesh` in metres."""
    v, f = read_mesh(mesh_path)
    lm = read_landmarks(landmarks_path, v)
    return make_face_mesh(v, f, lm, units=units, source=mesh_path, landmarks_source=landmarks_path)


def check_same_scale(pred: FaceMesh, scan: FaceMesh, max_ratio: float = 2.0) -> None:
    """Raise when the prediction and scan faces differ in size by more than ``max_ratio``.

    After unit conversion two faces of one person are within a few per cent; a factor of 10, 100
    or 1000 means one of the two was read in the wrong units.
    """
    wp, ws = face_width(pred.landmarks), face_width(scan.landmarks)
    ratio = wp / ws
    if 1.0 / max_ratio <= ratio <= max_ratio:
        return
    raise InputError(
        f"prediction and scan differ in size by {ratio:.3g}x (prediction face {wp:.4g} m wide read as "
        f"{pred.units}, scan {ws:.4g} m read as {scan.units}); their units cannot be reconciled: "
        "declare the right units (--pred-units/--scan-units)",
        pred.path or "<prediction>",
    )
