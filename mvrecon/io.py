"""Atomic file output and guarded input: every writer goes through a temporary name and a rename,
so an interrupted run never leaves a half-written file behind under the real name."""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import io as _io
import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, MvreconError

#: Images larger than this are refused from their header, before any pixel is decoded
#: (``$MVRECON_MAX_IMAGE_PIXELS`` raises or lowers it).
MAX_IMAGE_PIXELS = 100_000_000
MAX_PIXELS_ENV = "MVRECON_MAX_IMAGE_PIXELS"
#: JSON files (sessions, rigs, provenance) larger than this are refused unread.
MAX_JSON_BYTES = 64 << 20
#: Deepest nesting of arrays and objects a JSON file may have (ours use 4).
MAX_JSON_DEPTH = 64
#: Longest integer literal a JSON file may hold (Python's own limit, 4300 digits, is a ValueError
#: deep inside the parser).
MAX_JSON_INT_DIGITS = 64

#: Model files (pickles, .npy, .npz, unpacked) larger than this are refused unread.
MAX_MODEL_BYTES = 2 << 30

#: A name that becomes a file or folder name (frames, cameras, subjects, models): letters, digits,
#: ``-``, ``_`` and ``.``, not starting with ``.`` (no hidden files, no ``..``), at most 64 long.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")

# The folder the writers of this context may write in (see :func:`writes_confined_to`).
_CONFINED: contextvars.ContextVar[Path | None] = contextvars.ContextVar("mvrecon_write_folder", default=None)


def _short(value: object, n: int = 40) -> str:
    r = repr(value)
    return r if len(r) <= n else r[: n - 3] + "..."


def check_name(value: object, what: str, path: str | Path | None = None) -> str:
    """``value`` when it is a safe file-name component (:data:`NAME_PATTERN`), else an
    :class:`InputError` naming ``what`` (e.g. "frame name") and the file it came from."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InputError(
            f"{what} {_short(value)} is not allowed: use at most 64 letters, digits, '-', '_' or '.', "
            "not starting with '.'",
            path,
        )
    return value


@contextlib.contextmanager
def writes_confined_to(folder: str | Path) -> Iterator[Path]:
    """Within this context every writer of this module refuses a path that does not resolve (symlinks
    followed) inside ``folder``: the second wall behind name checks, so no name from the input and no
    symlink planted in a session can make a stage replace or remove anything outside its folder.
    ``folder`` itself is taken as given (its parents resolved, not its own link): callers refuse a
    symlinked stage folder first (:func:`refuse_symlink`)."""
    folder = Path(folder)
    folder = Path(os.path.realpath(folder.parent)) / folder.name
    token = _CONFINED.set(folder)
    try:
        yield folder
    finally:
        _CONFINED.reset(token)


def _check_confined(path: Path) -> None:
    folder = _CONFINED.get()
    if folder is None:
        return
    real = Path(os.path.realpath(path))
    try:
        first = real.relative_to(folder.parent).parts[0]
    except (ValueError, IndexError):
        first = ""
    # inside the folder, or in the temporary beside it that atomic_dir renames onto it
    if first != folder.name and not first.startswith(f".{folder.name}.tmp-"):
        raise MvreconError(f"refused to write outside {folder} (the path resolves to {real})", path)


def refuse_symlink(path: str | Path, what: str = "folder") -> Path:
    """``path`` unless it is a symbolic link (checked with ``lstat``, never followed)."""
    path = Path(path)
    if path.is_symlink():
        raise MvreconError(f"{what} is a symbolic link; refused (mvrecon does not write through links)", path)
    return path


def regular_file(path: str | Path, what: str = "file", max_bytes: int | None = None) -> int:
    """The size of ``path`` when it is a regular file (links to one are fine) of at most
    ``max_bytes``; an :class:`InputError` naming it otherwise (missing, a folder, a device, a FIFO,
    too big): nothing reads a special file, which could block or never end."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{what} not found", path) from None
    except OSError as e:
        raise InputError(f"cannot read {what} ({e.strerror})", path) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} is a folder, expected a file", path)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what} is not a regular file (a device, FIFO or socket); refused", path)
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputError(f"{what} is {st.st_size} bytes, above the limit of {max_bytes}; refused", path)
    return st.st_size


def open_regular(path: str | Path, what: str = "file", max_bytes: int | None = None):
    """Open ``path`` for binary reading after :func:`regular_file`; opened non-blocking and checked
    again on the open descriptor, so a file swapped for a FIFO in between cannot hang the read."""
    regular_file(path, what, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise InputError(f"cannot read {what} ({e.strerror})", path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{what} is not a regular file; refused", path)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_file_bytes(path: str | Path, what: str = "file", max_bytes: int | None = None) -> bytes:
    """The content of a regular file (see :func:`open_regular`)."""
    try:
        with open_regular(path, what, max_bytes) as f:
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    except OSError as e:
        raise InputError(f"cannot read {what} ({e.strerror})", path) from None
    if max_bytes is not None and len(data) > max_bytes:  # it grew since it was checked
        raise InputError(f"{what} is above the limit of {max_bytes} bytes; refused", path)
    return data


def _write_error(e: OSError, path: Path) -> MvreconError:
    """A machine fault while writing, in one line (disk full, read-only, permission)."""
    reasons = {
        errno.ENOSPC: "no space left on the disk",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EFBIG: "file too large",
    }
    return MvreconError(f"cannot write ({reasons.get(e.errno or 0, e.strerror or str(e))}); nothing was changed", path)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    _check_confined(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MvreconError(f"cannot create output folder ({e.strerror})", path.parent) from None
    if not os.access(path.parent, os.W_OK):
        raise MvreconError("output folder is not writable", path.parent)
    _check_confined(path)  # again: the folders now exist, a link among them now resolves
    tmp = _tmp_name(path)
    try:
        try:
            yield tmp
            os.replace(tmp, path)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
                raise _write_error(e, path) from None
            raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces the folder ``path`` as a whole."""
    path = refuse_symlink(path, "output folder")
    with atomic_path(path) as tmp:
        tmp.mkdir()
        yield tmp
        if os.path.lexists(path):
            old = _tmp_name(path)
            os.replace(path, old)
            shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: str | Path, what: str = "file") -> str:
    """Hex sha256 of a file's content, read in 1 MiB chunks; a missing or unreadable file is an
    :class:`~mvrecon.errors.InputError` naming it (``what`` words the message: "file", "image")."""
    h = hashlib.sha256()
    try:
        with open_regular(path, what) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
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


def _json_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text (strings left out), without recursion."""
    data = np.frombuffer(re.sub(r'"(?:[^"\\]|\\.)*"', '""', text).encode("utf-8", "replace"), dtype=np.uint8)
    step = np.isin(data, (ord("["), ord("{"))).astype(np.int32) - np.isin(data, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits (at most {MAX_JSON_INT_DIGITS} are read)")
    return int(digits)


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a missing, malformed or oversized file is an :class:`InputError` naming it.

    Bounded: at most :data:`MAX_JSON_BYTES`, :data:`MAX_JSON_DEPTH` levels of nesting, integers of
    at most :data:`MAX_JSON_INT_DIGITS` digits. ``NaN`` and ``Infinity`` are read (Python writes
    them, into our own outputs too): whoever uses a number checks it is finite where it must be.
    """
    path = Path(path)
    data = read_file_bytes(path, "file", MAX_JSON_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"cannot read (not UTF-8 text at byte {e.start})", path) from None
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise InputError(f"JSON nested {depth} levels deep (at most {MAX_JSON_DEPTH} are read)", path)
    try:
        return json.loads(text, parse_int=_bounded_int)
    except json.JSONDecodeError as e:
        raise InputError(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", path) from None
    except (ValueError, RecursionError) as e:
        raise InputError(f"malformed JSON: {e}", path) from None


def write_npz(path: str | Path, **arrays: Any) -> Path:
    buf = _io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return write_bytes(path, buf.getvalue())


#: EXIF orientations that swap width and height (5-8: a quarter turn, with or without a mirror).
_TRANSPOSED = (5, 6, 7, 8)


def max_image_pixels() -> int:
    """The pixel limit in force: ``$MVRECON_MAX_IMAGE_PIXELS`` or :data:`MAX_IMAGE_PIXELS`."""
    v = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not v:
        return MAX_IMAGE_PIXELS
    try:
        n = int(float(v))
    except ValueError:
        raise MvreconError(f"${MAX_PIXELS_ENV} must be a number of pixels, not {_short(v)}") from None
    if n <= 0:
        raise MvreconError(f"${MAX_PIXELS_ENV} must be positive, not {v}")
    return n


def _header(path: Path) -> tuple[int, int, int]:
    """(stored width, stored height, EXIF orientation 1-8) from the header, no pixels decoded."""
    from PIL import Image, UnidentifiedImageError

    regular_file(path, "image")
    try:
        with Image.open(path) as im:
            # our own limit (below) decides, with a message naming it; PIL's bomb check would
            # raise its own exception type from open()
            w, h = int(im.size[0]), int(im.size[1])
            try:
                orientation = int(im.getexif().get(0x0112, 1) or 1)
            except Exception:  # a broken EXIF block: the pixels are still what they are
                orientation = 1
            return w, h, orientation if 1 <= orientation <= 8 else 1
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"not a readable image ({e.__class__.__name__})", path) from None


def _unbounded_pil():
    """PIL's own decompression-bomb check off: :func:`_check_pixels` applies mvrecon's limit."""
    from PIL import Image

    @contextlib.contextmanager
    def ctx():
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = old

    return ctx()


def _check_pixels(path: Path, w: int, h: int, max_pixels: int | None) -> None:
    limit = max_image_pixels() if max_pixels is None else max_pixels
    if w * h > limit:
        raise InputError(
            f"image is {w}x{h}, above the limit of {limit} pixels; refused (set ${MAX_PIXELS_ENV} to raise it)", path
        )


def image_size(path: str | Path, oriented: bool = True) -> tuple[int, int]:
    """(width, height) from the image header, without decoding pixels, as :func:`read_image` returns
    the pixels: an EXIF orientation that turns the photo a quarter swaps the two (unless not
    ``oriented``: the stored size). Above the pixel limit (:func:`max_image_pixels`) it is an
    :class:`InputError` already."""
    path = Path(path)
    with _unbounded_pil():
        w, h, orientation = _header(path)
    _check_pixels(path, w, h, None)
    return (h, w) if oriented and orientation in _TRANSPOSED else (w, h)


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (as PIL's ``ImageOps.exif_transpose``) to ``(H, W[, C])`` pixels."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, -1)[::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops[orientation](img)) if orientation in ops else img


def read_image(path: str | Path, max_pixels: int | None = None, gray: bool = False) -> np.ndarray:
    """Decode an image to uint8 RGB ``(H, W, 3)`` (or ``(H, W)`` when ``gray``).

    Refuses images above ``max_pixels`` (default :func:`max_image_pixels`) from the header alone,
    and truncated or corrupt files. An EXIF orientation is applied (one rule with
    :func:`image_size`). 16-bit images are scaled to 8 bit.
    """
    import cv2
    from PIL import Image

    path = Path(path)
    with _unbounded_pil():
        w, h, orientation = _header(path)
        _check_pixels(path, w, h, max_pixels)
        # OpenCV decodes truncated JPEG/PNG data with a warning and grey fill (and libpng prints to
        # stderr); PIL's full load catches it first, so a corrupt photo is one clean error.
        try:
            with Image.open(path) as im:
                im.load()
        except (OSError, SyntaxError, ValueError) as e:
            raise InputError(f"image is truncated or corrupt ({e})", path) from None
    data = np.frombuffer(read_file_bytes(path, "image"), dtype=np.uint8)
    # the stored pixels, then the orientation applied here: OpenCV applies EXIF only to some formats
    flags = (cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(data, flags)
    if img is None or img.shape[0] != h or img.shape[1] != w:
        raise InputError("image is truncated or corrupt", path)
    if img.dtype != np.uint8:
        img = (img / 257).astype(np.uint8)
    img = _orient(img if gray else img[..., ::-1], orientation)
    return np.ascontiguousarray(img)


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
