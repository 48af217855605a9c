"""ICT-FaceKit (ICT Face Model Light) importer: the ``FaceXModel/`` folder or its ``.tar.xz``.

Upstream layout (ICT-VGL/ICT-FaceKit): ``generic_neutral_mesh.obj`` (quads and triangles, UVs),
``identity000..099.obj`` and one OBJ per expression, all full meshes on the same topology, and
``vertex_indices.json`` (expression names, landmark and fitting vertex lists).

Conversion (checked against upstream ``Scripts/ict_face_model.py``):

- identity mode k = ``identityNNN.obj - generic_neutral_mesh.obj``; upstream samples identity
  weights from N(0, 1) (``randomize_identity``), so the deltas are already 1-std modes: stored as
  ``id_basis`` unchanged, ``id_std`` = their norms. Modes are ordered by file number;
- expressions: the 53 ARKit-named shapes listed in ``vertex_indices.json['expressions']`` form
  ``exp_basis`` (blendshape deltas, weights in [0, 1]); the non-ARKit extras found in the folder
  (cheekRaiser_L/R, PupilDilate_L/R) are kept apart as ``extras['exp_extra_basis']`` with
  ``extras['exp_extra_names']``, so fits that expect ARKit weights see exactly ARKit;
- units: the head is ~25 units wide, so centimetres: x0.01 to metres. Axes already match model
  space (+Y up, +Z out of the face; the importer checks the nose tip is in front of the ears);
- sub-meshes: the vertex and polygon ranges of upstream's README (checked against the counts);
- landmarks: ``vertex_indices.json['idx_to_landmark_verts']`` (iBUG-68 / Multi-PIE order).

The archive is streamed member by member (``tarfile`` 'r|xz'): nothing is unpacked to disk.
"""

from __future__ import annotations

import functools
import json
import logging
import lzma
import re
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..errors import InputError
from .labels import derive_labels
from .model import RENDER_SUBMESHES, FaceModel
from .obj import ObjError, read_obj, read_obj_vertices

log = logging.getLogger(__name__)

LICENSE_FILE = Path(__file__).parent / "LICENSES" / "ICT-FaceKit-LICENSE.txt"
UPSTREAM_URL = "https://github.com/ICT-VGL/ICT-FaceKit/archive/refs/heads/master.zip"
CM_TO_M = 0.01

#: (name, first vertex, last vertex, first polygon, last polygon), inclusive, from upstream's README.
#: left/right are the subject's (eyeball_left sits at +X, with iBUG's left eye 42-47).
SUBMESH_TABLE = (
    ("face", 0, 9408, 0, 9229),
    ("head_neck", 9409, 11247, 9230, 11143),
    ("mouth_socket", 11248, 13293, 11144, 13225),
    ("eye_socket_left", 13294, 13677, 13226, 13629),
    ("eye_socket_right", 13678, 14061, 13630, 14033),
    ("gums_tongue", 14062, 17038, 14034, 17005),
    ("teeth", 17039, 21450, 17006, 21495),
    ("eyeball_left", 21451, 23020, 21496, 23093),
    ("eyeball_right", 23021, 24590, 23094, 24691),
    ("lacrimal_fluid_left", 24591, 24794, 24692, 24854),
    ("lacrimal_fluid_right", 24795, 24998, 24855, 25017),
    ("eye_blend_left", 24999, 25022, 25018, 25032),
    ("eye_blend_right", 25023, 25046, 25033, 25047),
    ("eye_occlusion_left", 25047, 25198, 25048, 25175),
    ("eye_occlusion_right", 25199, 25350, 25176, 25303),
    ("eyelashes_left", 25351, 26034, 25304, 25843),
    ("eyelashes_right", 26035, 26718, 25844, 26383),
    ("face_narrow", 0, 6705, 0, 6559),
)
N_VERTICES = 26719
N_POLYGONS = 26384
NEUTRAL = "generic_neutral_mesh.obj"
CONFIG = "vertex_indices.json"
_IDENTITY = re.compile(r"^identity(\d{3})\.obj$")


# ------------------------------------------------------------------------- reading sources


def _iter_folder(folder: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    for p in sorted(folder.iterdir()):
        if p.is_file():
            yield p.name, p.read_bytes


def _iter_tar(path: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    # stream mode: members are read in archive order and never written to disk
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = Path(member.name).parts
                if len(parts) < 2 or parts[-2] != "FaceXModel":
                    continue
                f = tar.extractfile(member)
                data = f.read() if f is not None else b""
                if len(data) != member.size:
                    raise InputError(f"archive is truncated inside {member.name}", path)
                yield parts[-1], functools.partial(bytes, data)
    except (tarfile.TarError, lzma.LZMAError, EOFError, OSError) as e:
        raise InputError(f"archive is truncated or corrupt ({e.__class__.__name__}: {e})", path) from None


def _iter_zip(path: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    # the upstream repository archive (ICT-FaceKit-master.zip) holds */FaceXModel/*
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                parts = Path(info.filename).parts
                if info.is_dir() or len(parts) < 2 or parts[-2] != "FaceXModel":
                    continue
                yield parts[-1], functools.partial(z.read, info)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise InputError(f"zip archive is truncated or corrupt ({e})", path) from None


def import_ict(path: str | Path, name: str = "ict", progress: Callable[[str], None] | None = None) -> FaceModel:
    """Import ICT-FaceKit from its ``FaceXModel`` folder (or a folder containing it), its
    ``.tar.xz`` / ``.tar`` archive, or the upstream repository ``.zip``. Every problem is one :class:`InputError`; nothing is written."""
    path = Path(path)
    t0 = time.perf_counter()
    if path.is_dir():
        folder = path / "FaceXModel" if (path / "FaceXModel").is_dir() else path
        items = _iter_folder(folder)
        where = folder
    elif path.is_file():
        import zipfile

        items = _iter_zip(path) if zipfile.is_zipfile(path) else _iter_tar(path)
        where = path
    else:
        raise InputError("ICT-FaceKit folder or archive not found", path)

    neutral = None
    config = None
    verts: dict[str, np.ndarray] = {}
    for fname, read in items:
        if fname == NEUTRAL:
            try:
                neutral = read_obj(read())
            except ObjError as e:
                raise InputError(f"{fname}: {e}", where) from None
        elif fname == CONFIG:
            try:
                config = json.loads(read().decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as e:
                raise InputError(f"{fname} is not valid JSON ({e})", where) from None
        elif fname.endswith(".obj"):
            try:
                verts[fname[:-4]] = read_obj_vertices(read())
            except ObjError as e:
                raise InputError(f"{fname}: {e}", where) from None
            if progress is not None and len(verts) % 20 == 0:
                progress(f"read {len(verts)} shapes")

    if neutral is None or config is None:
        missing = [f for f, x in ((NEUTRAL, neutral), (CONFIG, config)) if x is None]
        raise InputError(f"missing {', '.join(missing)} (is this ICT-FaceKit's FaceXModel?)", where)
    for key in ("expressions", "idx_to_landmark_verts"):
        if key not in config:
            raise InputError(f"{CONFIG} has no '{key}' list", where)
    exp_names = [str(s) for s in config["expressions"]]
    id_names = sorted(k for k in verts if _IDENTITY.match(k + ".obj"))
    if not id_names:
        raise InputError("no identityNNN.obj files", where)
    expected_ids = [f"identity{i:03d}" for i in range(len(id_names))]
    if id_names != expected_ids:
        gap = sorted(set(expected_ids) - set(id_names))
        raise InputError(f"identity files are not numbered 000..{len(id_names) - 1}: missing {gap[:3]}", where)
    absent = [e for e in exp_names if e not in verts]
    if absent:
        raise InputError(
            f"missing {len(absent)} expression file(s): {', '.join(a + '.obj' for a in absent[:4])}", where
        )

    nv = len(neutral.vertices)
    for k, v in verts.items():
        if v.shape != neutral.vertices.shape:
            raise InputError(f"{k}.obj has {len(v)} vertices, the neutral mesh {nv}: not the same topology", where)
    if nv != N_VERTICES or int(neutral.polygon_of_triangle.max()) + 1 != N_POLYGONS:
        raise InputError(
            f"{NEUTRAL} has {nv} vertices and {int(neutral.polygon_of_triangle.max()) + 1} polygons, "
            f"expected ICT-FaceKit's {N_VERTICES} and {N_POLYGONS}",
            where,
        )

    mean = neutral.vertices * CM_TO_M
    id_basis = np.stack([verts[k] - neutral.vertices for k in id_names]) * CM_TO_M
    exp_basis = np.stack([verts[e] - neutral.vertices for e in exp_names]) * CM_TO_M
    extra_names = sorted(k for k in verts if k not in exp_names and k not in id_names)
    lms = np.asarray(config["idx_to_landmark_verts"], dtype=np.int64)
    if lms.shape != (68,) or lms.min() < 0 or lms.max() >= nv:
        raise InputError(f"{CONFIG}: 'idx_to_landmark_verts' is not 68 vertex indices", where)

    # axes: nose tip (iBUG 30) must be in front of (+Z) and the chin (8) below (-Y) the eyes
    eyes = mean[lms[36:48]].mean(0)
    if not (mean[lms[30], 2] > eyes[2] and mean[lms[8], 1] < eyes[1]):
        raise InputError("unexpected axes: the nose tip is not at +Z or the chin not at -Y", where)

    poly = neutral.polygon_of_triangle
    submeshes, subtri = {}, {}
    for sname, v0, v1, p0, p1 in SUBMESH_TABLE:
        submeshes[sname] = (v0, v1 + 1)
        tri_ids = np.flatnonzero((poly >= p0) & (poly <= p1))
        subtri[sname] = (int(tri_ids[0]), int(tri_ids[-1]) + 1)

    render_ids = np.concatenate([np.arange(*subtri[s]) for s in RENDER_SUBMESHES])
    tris = neutral.triangles
    skin = np.zeros(nv, bool)
    skin[slice(*submeshes["face"])] = True
    skin[slice(*submeshes["head_neck"])] = True
    candidates = np.zeros(nv, bool)
    candidates[tris[render_ids].reshape(-1)] = True
    labels = derive_labels(mean, tris[render_ids], lms, skin=skin, candidates=candidates)

    license_text = LICENSE_FILE.read_text(encoding="utf-8")
    extras = {}
    if extra_names:
        extras["exp_extra_basis"] = (np.stack([verts[e] - neutral.vertices for e in extra_names]) * CM_TO_M).astype(
            np.float32
        )
        extras["exp_extra_names"] = np.array(extra_names, dtype=str)
    model = FaceModel(
        name=name,
        mean=mean.astype(np.float32),
        id_basis=id_basis.astype(np.float32),
        id_std=np.linalg.norm(id_basis.reshape(len(id_names), -1), axis=1).astype(np.float32),
        exp_basis=exp_basis.astype(np.float32),
        exp_names=tuple(exp_names),
        triangles=tris.astype(np.int32),
        uvs=neutral.uvs.astype(np.float32),
        uv_triangles=neutral.uv_triangles.astype(np.int32),
        landmarks68=lms,
        part_labels=labels.part_labels,
        forehead=labels.forehead,
        regions=labels.regions,
        submeshes=submeshes,
        submesh_triangles=subtri,
        license=license_text,
        source=(
            f"ICT-FaceKit (ICT Face Model Light), ICT-VGL/ICT-FaceKit FaceXModel/, imported from {path.name}: "
            f"{len(id_names)} identity modes (identityNNN - neutral, 1 std), {len(exp_names)} ARKit "
            f"expressions, centimetres -> metres"
        ),
        exp_kind="blendshape",
        extras=extras,
    )
    log.info("imported ICT-FaceKit in %.1f s", time.perf_counter() - t0)
    return model
