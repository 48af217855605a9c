"""Atomic file output and guarded input: every writer goes through a temporary name and a rename,
so an interrupted run never leaves a half-written file behind under the real name."""

from __future__ import annotations

import contextlib
import hashlib
import io as _io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import InputError, MvreconError

#: Images larger than this are refused from their header, before any pixel is decoded.
MAX_IMAGE_PIXELS = 100_000_000


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{next(tempfile._get_candidate_names())}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MvreconError(f"cannot create output folder ({e.strerror})", path.parent) from None
    if not os.access(path.parent, os.W_OK):
        raise MvreconError("output folder is not writable", path.parent)
    tmp = _tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            if tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces the folder ``path`` as a whole."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.mkdir()
        yield tmp
        if path.exists():
            old = _tmp_name(path)
            os.replace(path, old)
            shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: str | Path, what: str = "file") -> str:
    """Hex sha256 of a file's content, read in 1 MiB chunks; a missing or unreadable file is an
    :class:`~mvrecon.errors.InputError` naming it (``what`` words the message: "file", "image")."""
    from .errors import InputError

    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except FileNotFoundError:
        raise InputError(f"{what} not found", path) from None
    except OSError as e:
        raise InputError(f"cannot read {what} ({e.strerror})", path) from None
    return h.hexdigest()


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a missing or malformed file is an :class:`InputError` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read ({e})", path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", path) from None


def write_npz(path: str | Path, **arrays: Any) -> Path:
    buf = _io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return write_bytes(path, buf.getvalue())


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the image header, without decoding pixels."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError("image not found", path)
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InputError(f"not a readable image ({e.__class__.__name__})", path) from None


def read_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS, gray: bool = False) -> np.ndarray:
    """Decode an image to uint8 RGB ``(H, W, 3)`` (or ``(H, W)`` when ``gray``).

    Refuses images above ``max_pixels`` from the header alone, and truncated or corrupt files.
    16-bit images are scaled to 8 bit.
    """
    import cv2

    w, h = image_size(path)
    if w * h > max_pixels:
        raise InputError(f"image is {w}x{h}, above the limit of {max_pixels} pixels; refused", path)
    # OpenCV decodes truncated JPEG/PNG data with a warning and grey fill (and libpng prints to
    # stderr); PIL's full load catches it first, so a corrupt photo is one clean error.
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
    except (OSError, SyntaxError) as e:
        raise InputError(f"image is truncated or corrupt ({e})", path) from None
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if img is None or img.shape[0] != h or img.shape[1] != w:
        raise InputError("image is truncated or corrupt", path)
    if img.dtype != np.uint8:
        img = (img / 257).astype(np.uint8)
    return img if gray else img[..., ::-1].copy()


def encode_image(img: np.ndarray, ext: str = ".png") -> bytes:
    """Encode an RGB(A) uint8/uint16 or gray image to bytes (``.png``, ``.jpg``)."""
    import cv2

    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(arr))
    if not ok:
        raise MvreconError(f"could not encode image as {ext}")
    return buf.tobytes()


def write_image(path: str | Path, img: np.ndarray) -> Path:
    """Write an RGB(A) or gray image atomically; the format follows the file extension."""
    path = Path(path)
    return write_bytes(path, encode_image(img, path.suffix.lower() or ".png"))
