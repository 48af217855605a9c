"""Rig import and export: COLMAP text and binary models, OpenCV YAML (``cv2.FileStorage``),
nerfstudio ``transforms.json``, Agisoft Metashape camera XML (:mod:`.metashape`) and
RealityCapture XMP sidecars (:mod:`.realitycapture`).

COLMAP models (``cameras``, ``images``, ``points3D`` as ``.txt`` or ``.bin``) are read and written
here without pycolmap (the layouts of COLMAP's ``src/colmap/scene/reconstruction_io.cc``), one
COLMAP camera and one image per rig camera; the image is named ``<camera>.png`` and a camera's
name on import is its image's file stem. ``rigs``/``frames`` files that COLMAP >= 3.12 also
writes are ignored on import (each image carries its own pose).
Pixel conventions: COLMAP's principal point is +0.5 px from mvrecon's (see ``mvrecon.cameras``).

OpenCV YAML layout (``mvrecon rig export --format opencv``)::

    %YAML:1.0
    nb_cameras: 2
    camera_names: [ cam0, cam1 ]
    cam_0: { name: cam0, image_width, image_height, camera_matrix (3x3),
             distortion_coefficients (1xN), rotation (3x3 world_to_cam R), translation (3x1 metres) }
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..cameras import (
    Camera,
    Rig,
    from_colmap_camera,
    from_colmap_pose,
    from_nerfstudio,
    load_rig,
    to_colmap_camera,
    to_colmap_pose,
    to_nerfstudio,
)
from ..errors import InputError
from ..io import atomic_dir, read_json, write_json, write_text

ExportFormat = Literal["colmap", "colmap-bin", "opencv", "nerfstudio", "metashape", "realitycapture", "mvrecon"]

# COLMAP camera model ids and parameter counts (colmap/sensor/models.h)
COLMAP_MODELS = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
}
COLMAP_MODEL_IDS = {name: (i, n) for i, (name, n) in COLMAP_MODELS.items()}


@dataclass(frozen=True)
class ColmapCamera:
    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray


@dataclass(frozen=True)
class ColmapImage:
    image_id: int
    qvec: np.ndarray
    """(4,) world-to-camera rotation (w, x, y, z)."""
    tvec: np.ndarray
    """(3,) world-to-camera translation."""
    camera_id: int
    name: str
    xys: np.ndarray
    """(N, 2) keypoints, COLMAP pixel convention."""
    point3d_ids: np.ndarray
    """(N,) ids of the 3D points (-1: none)."""


@dataclass(frozen=True)
class ColmapPoint:
    point_id: int
    xyz: np.ndarray
    rgb: np.ndarray
    error: float
    track: np.ndarray
    """(L, 2) (image_id, point2D index)."""


@dataclass(frozen=True)
class ColmapModel:
    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: dict[int, ColmapPoint]


# --------------------------------------------------------------------------------------------
# rig <-> model


def rig_to_colmap(rig: Rig, ext: str = ".png") -> ColmapModel:
    cams, imgs = {}, {}
    for i, cam in enumerate(rig.cameras, start=1):
        model, params = to_colmap_camera(cam)
        cams[i] = ColmapCamera(i, model, cam.width, cam.height, params)
        q, t = to_colmap_pose(cam)
        imgs[i] = ColmapImage(i, q, t, i, f"{cam.name}{ext}", np.zeros((0, 2)), np.zeros(0, np.int64))
    return ColmapModel(cams, imgs, {})


def colmap_to_rig(model: ColmapModel, name: str = "rig") -> Rig:
    cams = []
    for img in sorted(model.images.values(), key=lambda im: im.image_id):
        c = model.cameras.get(img.camera_id)
        if c is None:
            raise ValueError(f"image {img.name!r} refers to camera {img.camera_id}, which is not in the model")
        cam = from_colmap_camera(c.model, c.width, c.height, c.params, name=Path(img.name).stem)
        cams.append(cam.replace(world_to_cam=from_colmap_pose(img.qvec, img.tvec)))
    if not cams:
        raise ValueError("the model has no images")
    return Rig(cameras=tuple(cams), name=name)


# --------------------------------------------------------------------------------------------
# COLMAP text


def _fmt(x: float) -> str:
    return repr(float(x))


def write_colmap_text(model: ColmapModel, directory: Path) -> None:
    """Write cameras.txt, images.txt, points3D.txt into an existing folder."""
    lines = [
        "# Camera list with one line of data per camera:",
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
        f"# Number of cameras: {len(model.cameras)}",
    ]
    for c in model.cameras.values():
        lines.append(" ".join([str(c.camera_id), c.model, str(c.width), str(c.height), *map(_fmt, c.params)]))
    (directory / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
        f"# Number of images: {len(model.images)}",
    ]
    for im in model.images.values():
        lines.append(" ".join([str(im.image_id), *map(_fmt, im.qvec), *map(_fmt, im.tvec), str(im.camera_id), im.name]))
        lines.append(" ".join(f"{_fmt(x)} {_fmt(y)} {int(p)}" for (x, y), p in zip(im.xys, im.point3d_ids)))
    (directory / "images.txt").write_text("\n".join(lines) + "\n")
    lines = [
        "# 3D point list with one line of data per point:",
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
        f"# Number of points: {len(model.points)}",
    ]
    for p in model.points.values():
        lines.append(
            " ".join(
                [
                    str(p.point_id),
                    *map(_fmt, p.xyz),
                    *(str(int(v)) for v in p.rgb),
                    _fmt(p.error),
                    *(f"{int(a)} {int(b)}" for a, b in p.track),
                ]
            )
        )
    (directory / "points3D.txt").write_text("\n".join(lines) + "\n")


def _data_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read ({e})", path) from None
    return [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines()) if not ln.lstrip().startswith("#")]


def read_colmap_text(directory: Path) -> ColmapModel:
    """Read a COLMAP text model; any malformed line is an :class:`InputError` naming file and line."""
    cams: dict[int, ColmapCamera] = {}
    f = directory / "cameras.txt"
    for ln, s in _data_lines(f):
        if not s:
            continue
        try:
            tok = s.split()
            model = tok[1]
            if model not in COLMAP_MODEL_IDS:
                raise ValueError(f"unknown camera model {model}")
            params = np.array([float(x) for x in tok[4:]])
            if len(params) != COLMAP_MODEL_IDS[model][1]:
                raise ValueError(f"{model} takes {COLMAP_MODEL_IDS[model][1]} parameters, got {len(params)}")
            cams[int(tok[0])] = ColmapCamera(int(tok[0]), model, int(tok[2]), int(tok[3]), params)
        except (ValueError, IndexError) as e:
            raise InputError(f"line {ln} does not parse as a COLMAP camera ({e})", f) from None
    imgs: dict[int, ColmapImage] = {}
    f = directory / "images.txt"
    lines = _data_lines(f)
    # the keypoint line of an image may be empty, so pair lines strictly
    while lines and not lines[-1][1]:
        lines.pop()
    i = 0
    while i < len(lines):
        ln, s = lines[i]
        if not s:
            i += 1
            continue
        try:
            tok = s.split()
            if len(tok) < 10:
                raise ValueError(f"expected 10 fields, got {len(tok)}")
            pts = lines[i + 1][1].split() if i + 1 < len(lines) else []
            if len(pts) % 3:
                raise ValueError("POINTS2D line is not (X, Y, POINT3D_ID) triples")
            arr = np.array(pts, dtype=np.float64).reshape(-1, 3)
            im = ColmapImage(
                int(tok[0]),
                np.array(tok[1:5], dtype=np.float64),
                np.array(tok[5:8], dtype=np.float64),
                int(tok[8]),
                " ".join(tok[9:]),
                arr[:, :2],
                arr[:, 2].astype(np.int64),
            )
            if not np.all(np.isfinite(im.qvec)) or np.linalg.norm(im.qvec) < 1e-9:
                raise ValueError("bad quaternion")
            imgs[im.image_id] = im
        except (ValueError, IndexError) as e:
            raise InputError(f"line {ln} does not parse as a COLMAP image ({e})", f) from None
        i += 2
    pts3: dict[int, ColmapPoint] = {}
    f = directory / "points3D.txt"
    if f.is_file():
        for ln, s in _data_lines(f):
            if not s:
                continue
            try:
                tok = s.split()
                track = np.array(tok[8:], dtype=np.int64).reshape(-1, 2)
                pts3[int(tok[0])] = ColmapPoint(
                    int(tok[0]),
                    np.array(tok[1:4], dtype=np.float64),
                    np.array(tok[4:7], dtype=np.uint8),
                    float(tok[7]),
                    track,
                )
            except (ValueError, IndexError) as e:
                raise InputError(f"line {ln} does not parse as a COLMAP 3D point ({e})", f) from None
    return ColmapModel(cams, imgs, pts3)


# --------------------------------------------------------------------------------------------
# COLMAP binary


def write_colmap_binary(model: ColmapModel, directory: Path) -> None:
    """Write cameras.bin, images.bin, points3D.bin into an existing folder (little endian)."""
    b = bytearray(struct.pack("<Q", len(model.cameras)))
    for c in model.cameras.values():
        b += struct.pack("<iiQQ", c.camera_id, COLMAP_MODEL_IDS[c.model][0], c.width, c.height)
        b += np.asarray(c.params, dtype="<f8").tobytes()
    (directory / "cameras.bin").write_bytes(bytes(b))
    b = bytearray(struct.pack("<Q", len(model.images)))
    for im in model.images.values():
        b += (
            struct.pack("<i", im.image_id) + np.asarray(im.qvec, "<f8").tobytes() + np.asarray(im.tvec, "<f8").tobytes()
        )
        b += struct.pack("<i", im.camera_id) + im.name.encode("utf-8") + b"\x00"
        b += struct.pack("<Q", len(im.xys))
        rec = np.zeros(len(im.xys), dtype=[("x", "<f8"), ("y", "<f8"), ("id", "<i8")])
        rec["x"], rec["y"], rec["id"] = im.xys[:, 0], im.xys[:, 1], im.point3d_ids
        b += rec.tobytes()
    (directory / "images.bin").write_bytes(bytes(b))
    b = bytearray(struct.pack("<Q", len(model.points)))
    for p in model.points.values():
        b += struct.pack("<Q", p.point_id) + np.asarray(p.xyz, "<f8").tobytes()
        b += np.asarray(p.rgb, np.uint8).tobytes() + struct.pack("<d", p.error)
        b += struct.pack("<Q", len(p.track)) + np.asarray(p.track, "<i4").tobytes()
    (directory / "points3D.bin").write_bytes(bytes(b))


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = path.read_bytes()
        except OSError as e:
            raise InputError(f"cannot read ({e.strerror})", path) from None
        self.pos = 0

    def take(self, fmt: str):
        n = struct.calcsize(fmt)
        if self.pos + n > len(self.data):
            raise InputError(f"truncated at byte {self.pos}: not a COLMAP binary model", self.path)
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += n
        return out

    def array(self, dtype: str, count: int) -> np.ndarray:
        n = np.dtype(dtype).itemsize * count
        if count < 0 or self.pos + n > len(self.data):
            raise InputError(f"truncated at byte {self.pos}: not a COLMAP binary model", self.path)
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos).copy()
        self.pos += n
        return out

    def cstring(self) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise InputError(f"unterminated image name at byte {self.pos}", self.path)
        s = self.data[self.pos : end].decode("utf-8", errors="replace")
        self.pos = end + 1
        return s

    def done(self) -> None:
        if self.pos != len(self.data):
            raise InputError(
                f"{len(self.data) - self.pos} unexpected trailing bytes: not a COLMAP binary model", self.path
            )


def read_colmap_binary(directory: Path) -> ColmapModel:
    r = _Reader(directory / "cameras.bin")
    cams = {}
    for _ in range(r.take("<Q")[0]):
        cid, mid, w, h = r.take("<iiQQ")
        if mid not in COLMAP_MODELS:
            raise InputError(f"unknown camera model id {mid} at byte {r.pos}: not a COLMAP binary model", r.path)
        name, n = COLMAP_MODELS[mid]
        cams[cid] = ColmapCamera(cid, name, int(w), int(h), r.array("<f8", n))
    r.done()
    r = _Reader(directory / "images.bin")
    imgs = {}
    for _ in range(r.take("<Q")[0]):
        (iid,) = r.take("<i")
        q = r.array("<f8", 4)
        t = r.array("<f8", 3)
        (cid,) = r.take("<i")
        name = r.cstring()
        (n,) = r.take("<Q")
        rec = r.array("<f8", 0) if n == 0 else None
        raw = r.array("u1", 24 * n).view([("x", "<f8"), ("y", "<f8"), ("id", "<i8")])
        del rec
        imgs[iid] = ColmapImage(
            iid,
            q,
            t,
            cid,
            name,
            np.stack([raw["x"], raw["y"]], 1) if n else np.zeros((0, 2)),
            raw["id"].astype(np.int64),
        )
    r.done()
    pts = {}
    p3 = directory / "points3D.bin"
    if p3.is_file():
        r = _Reader(p3)
        for _ in range(r.take("<Q")[0]):
            (pid,) = r.take("<Q")
            xyz = r.array("<f8", 3)
            rgb = r.array("u1", 3)
            (err,) = r.take("<d")
            (n,) = r.take("<Q")
            pts[pid] = ColmapPoint(pid, xyz, rgb, err, r.array("<i4", 2 * n).reshape(-1, 2).astype(np.int64))
        r.done()
    return ColmapModel(cams, imgs, pts)


def read_colmap(directory: str | Path) -> ColmapModel:
    """Read a COLMAP model folder (text or binary, whichever is present; text first)."""
    d = Path(directory)
    if (d / "cameras.txt").is_file() and (d / "images.txt").is_file():
        return read_colmap_text(d)
    if (d / "cameras.bin").is_file() and (d / "images.bin").is_file():
        return read_colmap_binary(d)
    raise InputError("not a COLMAP model: no cameras.txt + images.txt or cameras.bin + images.bin", d)


# --------------------------------------------------------------------------------------------
# OpenCV YAML


def rig_to_opencv_yaml(rig: Rig) -> str:
    """The rig as OpenCV YAML text written by ``cv2.FileStorage`` (layout in the module docstring)."""
    import cv2

    fs = cv2.FileStorage("rig.yaml", cv2.FILE_STORAGE_WRITE | cv2.FILE_STORAGE_MEMORY)
    fs.write("nb_cameras", len(rig))
    fs.startWriteStruct("camera_names", cv2.FILE_NODE_SEQ)
    for c in rig.cameras:
        fs.write("", c.name)
    fs.endWriteStruct()
    for i, c in enumerate(rig.cameras):
        fs.startWriteStruct(f"cam_{i}", cv2.FILE_NODE_MAP)
        fs.write("name", c.name)
        fs.write("image_width", c.width)
        fs.write("image_height", c.height)
        fs.write("camera_matrix", c.K)
        fs.write("distortion_coefficients", c.dist.reshape(1, -1) if c.dist.size else np.zeros((1, 5)))
        fs.write("rotation", c.world_to_cam[:3, :3].copy())
        fs.write("translation", c.world_to_cam[:3, 3].reshape(3, 1).copy())
        fs.endWriteStruct()
    return fs.releaseAndGetString()


def rig_from_opencv_yaml(text: str, path: Path) -> Rig:
    import cv2

    try:
        fs = cv2.FileStorage(text, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY | cv2.FILE_STORAGE_FORMAT_YAML)
    except (cv2.error, SystemError) as e:
        # OpenCV raises cv2.error for a parse error, wrapped in SystemError by the bindings
        cause = e.__cause__ or e
        raise InputError(f"not OpenCV YAML ({str(cause).strip().splitlines()[-1]})", path) from None
    try:
        n = int(fs.getNode("nb_cameras").real())
        if n <= 0:
            raise ValueError("no 'nb_cameras'")
        cams = []
        for i in range(n):
            node = fs.getNode(f"cam_{i}")
            if node.empty():
                raise ValueError(f"no 'cam_{i}'")
            K = node.getNode("camera_matrix").mat()
            dist = node.getNode("distortion_coefficients").mat()
            R = node.getNode("rotation").mat()
            t = node.getNode("translation").mat()
            if K is None or R is None or t is None:
                raise ValueError(f"cam_{i} lacks camera_matrix, rotation or translation")
            M = np.eye(4)
            M[:3, :3] = R
            M[:3, 3] = np.asarray(t, dtype=np.float64).ravel()
            name = node.getNode("name").string() or f"cam{i}"
            cams.append(
                Camera(
                    name,
                    int(node.getNode("image_width").real()),
                    int(node.getNode("image_height").real()),
                    K,
                    np.zeros(0) if dist is None else np.asarray(dist).ravel(),
                    M,
                )
            )
        return Rig(cameras=tuple(cams), name=path.stem)
    except (ValueError, TypeError) as e:
        raise InputError(f"not an mvrecon OpenCV rig: {e}", path) from None
    finally:
        fs.release()


# --------------------------------------------------------------------------------------------
# entry points


def export_rig(rig: Rig, fmt: ExportFormat, out: str | Path) -> Path:
    """Write ``rig`` as ``fmt``: a folder for ``colmap``/``colmap-bin``, a file otherwise
    (atomically; a half-written export never appears under ``out``)."""
    out = Path(out)
    if fmt in ("colmap", "colmap-bin"):
        model = rig_to_colmap(rig)
        with atomic_dir(out) as tmp:
            (write_colmap_text if fmt == "colmap" else write_colmap_binary)(model, tmp)
        return out
    if fmt == "opencv":
        return write_text(out, rig_to_opencv_yaml(rig))
    if fmt == "nerfstudio":
        return write_json(out, to_nerfstudio(rig))
    if fmt == "metashape":
        from .metashape import rig_to_metashape

        return write_text(out, rig_to_metashape(rig))
    if fmt == "realitycapture":
        from .realitycapture import write_xmp_folder

        with atomic_dir(out) as tmp:
            write_xmp_folder(rig, tmp)
        return out
    if fmt == "mvrecon":
        return write_json(out, rig.to_dict())
    raise ValueError(f"unknown export format {fmt!r}")


def import_rig(path: str | Path, image_size: tuple[int, int] | None = None) -> Rig:
    """Read a rig from a COLMAP model folder, an OpenCV YAML file, a nerfstudio
    ``transforms.json``, a Metashape camera XML, a folder of RealityCapture XMP sidecars (their
    image size from the images beside them, or ``image_size`` (W, H)) or an mvrecon ``rig.json``
    (told apart by content)."""
    p = Path(path)
    if not p.exists():
        raise InputError("not found", p)
    if p.is_dir():
        if (p / "rig.json").is_file() and not (p / "cameras.txt").is_file():
            return load_rig(p)
        if any(p.glob("*.xmp")) and not any((p / f"cameras{e}").is_file() for e in (".txt", ".bin")):
            from .realitycapture import rig_from_xmp_folder

            return rig_from_xmp_folder(p, image_size)
        model = read_colmap(p)
        try:
            return colmap_to_rig(model, name=p.name)
        except ValueError as e:
            raise InputError(f"COLMAP model: {e}", p) from None
    if p.suffix.lower() in (".yaml", ".yml", ".xml"):
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read ({e})", p) from None
        if p.suffix.lower() == ".xml" and "<document" in text[:4096] and "<opencv_storage" not in text[:4096]:
            from .metashape import parse_xml, rig_from_metashape

            try:
                return rig_from_metashape(parse_xml(p, "Metashape camera file"), name=p.stem)
            except ValueError as e:
                raise InputError(f"Metashape camera file: {e}", p) from None
        return rig_from_opencv_yaml(text, p)
    data = read_json(p)
    if isinstance(data, dict) and "frames" in data and "cameras" not in data:
        try:
            return from_nerfstudio(data).replace(name=p.parent.name or "rig")
        except (ValueError, TypeError) as e:
            raise InputError(f"malformed transforms.json: {e}", p) from None
    return load_rig(p)
