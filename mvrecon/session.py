"""Session layout, validation and the per-session lock.

A session folder::

    session.json        subject, rig, frames (per-frame image per camera), options, scan, calib
    images/             the photos (any layout; session.json names each file)
    calib/              optional ChArUco shots for this session
    scan/               optional ground-truth or reference scan with its 68 landmarks
    <stage>/            outputs of each stage (ingest, calibrate, cues, fit, texture, export, evaluate)
    logs/

``session.json``::

    {"format": "mvrecon-session/1", "subject": "s01", "rig": "../../rigs/studio8",
     "frames": [{"name": "f000", "images": {"cam0": "images/f000/cam0.png", ...}}],
     "options": {}, "scan": {"mesh": "scan/scan.ply", "landmarks": "scan/landmarks.txt", "units": "m"}}

``rig`` is a path (relative to the session folder) to a rig folder holding ``rig.json`` or to the
file itself. Every path in session.json is relative to the session folder.

The rig in force: stages after calibration use the newest rig, ``refine/rig.json`` over
``calibrate/rig.json`` over the session's own (:func:`current_rig`, the one place that decides).

``scan`` may also say ``"frame": "rig"``: the scan was taken in the rig's calibrated volume and is
in the rig's frame, so the evaluation measures it without any alignment (pose and scale errors
count); the default ``"own"`` is a scanner's frame, aligned by landmarks and ICP.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import socket
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .cameras import Camera, Rig, load_rig, rig_json_path
from .errors import InputError, MvreconError, SessionBusy, StageMissing
from .io import check_name, image_size, read_json, refuse_symlink, regular_file, write_json

SESSION_FILE = "session.json"
LOCK_FILE = ".mvrecon.lock"
#: Seconds a run's lease on its session lasts without renewal (see :func:`session_lock`).
LEASE_SECONDS = 60
_HOST = socket.gethostname()


@dataclass(frozen=True)
class Frame:
    """One capture instant: the image of each camera (absolute paths)."""

    name: str
    images: dict[str, Path]


@dataclass(frozen=True)
class View:
    """One image: a camera in a frame."""

    frame: str
    camera: str
    image: Path

    @property
    def key(self) -> str:
        """A name unique within the session, usable as a file stem: ``<frame>_<camera>``."""
        return f"{self.frame}_{self.camera}"


#: ``scan.frame`` values: ``own`` the scanner's frame (aligned by the evaluation), ``rig`` the rig's
#: calibrated frame (the scan was taken in the same volume as the photos).
SCAN_FRAMES = ("own", "rig")


@dataclass(frozen=True)
class ScanRef:
    """The session's scan: ``mesh``, its 68 ``landmarks`` file, ``units`` (m, cm, mm or None for
    auto) and ``frame`` (:data:`SCAN_FRAMES`)."""

    mesh: Path
    landmarks: Path | None
    units: str | None
    frame: str = "own"


#: Stages that write a rig of their own (``<stage>/rig.json``), the newest first: the first of them
#: in force decides the rig the later stages use.
RIG_STAGES = ("refine", "calibrate")


@dataclass(frozen=True)
class RigInForce:
    """The rig the stages use and where it came from."""

    rig: Rig
    source: str
    """``"session"`` (the rig session.json names) or the stage that wrote it (:data:`RIG_STAGES`)."""
    path: Path
    """The rig.json it was read from."""


@dataclass(frozen=True)
class Session:
    """A validated session (see the module docstring for the layout).

    ``rig`` is the rig the stages use: the session's own (``rig_path``) as loaded, the rig in force
    after :meth:`in_force` (``rig_source`` says which)."""

    root: Path
    subject: str
    rig: Rig
    rig_path: Path
    frames: tuple[Frame, ...]
    options: dict[str, Any] = field(default_factory=dict)
    scan: ScanRef | None = None
    calib_dir: Path | None = None
    rig_source: str = "session"
    """Where ``rig`` came from: ``"session"`` or a stage of :data:`RIG_STAGES`."""

    @property
    def session_file(self) -> Path:
        return self.root / SESSION_FILE

    def views(self) -> list[View]:
        """All views, frame-major, cameras in rig order."""
        out = []
        for fr in self.frames:
            for cam in self.rig.cameras:
                if cam.name in fr.images:
                    out.append(View(fr.name, cam.name, fr.images[cam.name]))
        return out

    def camera(self, name: str) -> Camera:
        return self.rig[name]

    def stage_dir(self, stage: str) -> Path:
        """The folder of a stage's outputs (not created); a symbolic link there is refused (a
        :class:`~mvrecon.errors.MvreconError`): stages never write through a link."""
        return refuse_symlink(self.root / check_name(stage, "stage name"), "stage folder")

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the session's exclusive lock; a second holder gets :class:`SessionBusy` at once."""
        with session_lock(self.root):
            yield

    def current_rig(self, stages: Sequence[str] | None = None) -> RigInForce:
        """The rig in force (see :func:`current_rig`)."""
        return current_rig(self, stages)

    def in_force(self, stages: Sequence[str] | None = None) -> Session:
        """This session with ``rig`` the rig in force (see :func:`current_rig`); a new object."""
        r = current_rig(self, stages)
        return replace(self, rig=r.rig, rig_source=r.source)

    @classmethod
    def load(cls, root: str | Path, check_images: bool = True) -> Session:
        return load_session(root, check_images=check_images)


def current_rig(session: Session, stages: Sequence[str] | None = None) -> RigInForce:
    """The rig the session's stages use: ``refine/rig.json`` over ``calibrate/rig.json`` over the
    session's own rig (``session.rig_path``). Every path that needs the rig decides it here.

    ``stages``: the rig stages in effect (the pipeline passes those that apply to the session, in
    the order of :data:`RIG_STAGES` or any other); each must hold its ``rig.json``
    (:class:`StageMissing` otherwise). None: every rig stage whose folder holds a ``rig.json``.
    """
    for name in RIG_STAGES:
        if stages is not None and name not in stages:
            continue
        p = session.stage_dir(name) / "rig.json"
        if p.is_file():
            return RigInForce(load_rig(p), name, p)
        if stages is not None:
            raise StageMissing(
                f"the {name} stage has no rig.json: run it ('mvrecon session run SESSION --to {name}')", p.parent
            )
    if session.rig_source == "session":
        return RigInForce(session.rig, "session", session.rig_path)
    return RigInForce(load_rig(session.rig_path), "session", session.rig_path)


def _rel(root: Path, value: Any, what: str, sf: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise InputError(f"{what} must be a non-empty path string", sf)
    # what the OS refuses with an exception of its own (ENAMETOOLONG, an embedded NUL)
    if "\x00" in value or len(value) > 4096 or any(len(part.encode()) > 255 for part in value.split("/")):
        raise InputError(f"{what} {value[:40]!r}... is not a usable path (too long, or a NUL character)", sf)
    p = Path(value)
    return p if p.is_absolute() else (root / p)


def load_session(root: str | Path, check_images: bool = True) -> Session:
    """Read and validate a session folder.

    Raises :class:`InputError` (one line naming the file and the problem) for a missing or
    malformed ``session.json``, an unknown rig, a camera the rig does not have, a missing
    image, or an image whose size disagrees with its camera.
    """
    root = Path(root).resolve()
    sf = root / SESSION_FILE
    if not root.is_dir():
        raise InputError("session folder not found", root)
    data = read_json(sf)
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", sf)
    if "rig" not in data:
        raise InputError("no 'rig' given", sf)
    rig_path = rig_json_path(_rel(root, data["rig"], "'rig'", sf))
    if not rig_path.is_file():
        raise InputError(f"rig {data['rig']!r} not found (no {rig_path})", sf)
    rig = load_rig(rig_path)

    frames_raw = data.get("frames")
    if not isinstance(frames_raw, list) or not frames_raw:
        raise InputError("'frames' must be a non-empty list", sf)
    frames = []
    seen = set()
    for i, fr in enumerate(frames_raw):
        if not isinstance(fr, dict) or not isinstance(fr.get("images"), dict) or not fr["images"]:
            raise InputError(f"frames[{i}] needs a non-empty 'images' object (camera -> file)", sf)
        name = fr.get("name", f"{i:03d}")
        name = check_name(
            str(name) if isinstance(name, int) and not isinstance(name, bool) else name, f"frames[{i}] name", sf
        )
        if name in seen:
            raise InputError(f"frame name {name!r} appears twice", sf)
        seen.add(name)
        images = {}
        for cam_name, rel in fr["images"].items():
            if cam_name not in rig.names:
                raise InputError(
                    f"frame {name!r} has an image for camera {cam_name[:40]!r}, which rig {rig_path} does not have "
                    f"(cameras: {', '.join(rig.names)})",
                    sf,
                )
            path = _rel(root, rel, f"frame {name!r} camera {cam_name!r} image", sf)
            if check_images:
                if not os.path.lexists(path):
                    raise InputError(f"image of camera {cam_name!r} in frame {name!r} not found", path)
                w, h = image_size(path)  # a regular file (not a folder, device or FIFO), a known format
                cam = rig[cam_name]
                if (w, h) != (cam.width, cam.height):
                    turned = (h, w) == (cam.width, cam.height) and image_size(path, oriented=False) != (w, h)
                    raise InputError(
                        f"image is {w}x{h} but camera {cam_name!r} of the rig is {cam.width}x{cam.height}"
                        + (
                            " (its EXIF orientation turns it a quarter, and mvrecon applies EXIF orientation: "
                            "save the photo without it)"
                            if turned
                            else ""
                        ),
                        path,
                    )
            images[cam_name] = path
        frames.append(Frame(name=name, images=images))
    keys: dict[str, tuple[str, str]] = {}
    for fr in frames:  # a view's key names its folders: two views must not share one
        for cam_name in fr.images:
            key = View(fr.name, cam_name, Path()).key
            if key in keys:
                raise InputError(
                    f"frame {fr.name!r} camera {cam_name!r} and frame {keys[key][0]!r} camera "
                    f"{keys[key][1]!r} give the same view name {key!r}; rename a frame",
                    sf,
                )
            keys[key] = (fr.name, cam_name)

    scan = None
    if data.get("scan"):
        s = data["scan"]
        if not isinstance(s, dict) or "mesh" not in s:
            raise InputError("'scan' must be an object with a 'mesh' path", sf)
        lm = s.get("landmarks")
        frame = s.get("frame", "own")
        if frame not in SCAN_FRAMES:
            raise InputError(f"'scan.frame' must be one of {', '.join(SCAN_FRAMES)}, got {frame!r}", sf)
        scan = ScanRef(
            mesh=_rel(root, s["mesh"], "'scan.mesh'", sf),
            landmarks=_rel(root, lm, "'scan.landmarks'", sf) if lm else None,
            units=s.get("units"),
            frame=frame,
        )
        if check_images:  # regular files before anything reads (or hashes) them; a missing one is
            for what, p in (("scan mesh", scan.mesh), ("scan landmarks", scan.landmarks)):  # evaluate's to say
                if p is not None and os.path.lexists(p):
                    regular_file(p, what)
    calib_dir = _rel(root, data["calib"], "'calib'", sf) if data.get("calib") else None
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise InputError("'options' must be an object", sf)
    # the folder's own name is taken as it is; a subject given in the file is a name like the others
    subject = check_name(data["subject"], "subject", sf) if "subject" in data else root.name
    return Session(
        root=root,
        subject=subject,
        rig=rig,
        rig_path=rig_path,
        frames=tuple(frames),
        options=options,
        scan=scan,
        calib_dir=calib_dir,
    )


def write_session_file(
    root: str | Path,
    rig: str,
    frames: list[dict[str, Any]],
    subject: str | None = None,
    options: dict[str, Any] | None = None,
    scan: dict[str, Any] | None = None,
    calib: str | None = None,
) -> Path:
    """Write ``session.json`` (paths relative to ``root``) atomically."""
    root = Path(root)
    data: dict[str, Any] = {
        "format": "mvrecon-session/1",
        "subject": subject or root.name,
        "rig": rig,
        "frames": frames,
        "options": options or {},
    }
    if scan:
        data["scan"] = scan
    if calib:
        data["calib"] = calib
    return write_json(root / SESSION_FILE, data)


#: How ``mvrecon session init`` finds the photos in a folder by default: one subfolder per frame.
DEFAULT_PATTERN = "{frame}/{camera}.jpg"
#: A photo folder with more entries than this is refused (``--images /`` must not walk the disk).
MAX_PHOTO_FILES = 100_000
_FIELD = re.compile(r"\{(\w*)\}")


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """The regex of a photo pattern: ``{camera}`` (needed) and ``{frame}`` (optional, at most once
    each) match one path component's worth of characters; the rest is literal."""
    fields = _FIELD.findall(pattern)
    bad = [f for f in fields if f not in ("frame", "camera")]
    if bad or fields.count("camera") != 1 or fields.count("frame") > 1:
        raise InputError(
            f"photo pattern {pattern!r} must hold {{camera}} once and may hold {{frame}} once (nothing else in braces)"
        )
    if pattern.startswith("/") or ".." in pattern.split("/") or "\\" in pattern:
        raise InputError(f"photo pattern {pattern!r} must be a relative path inside the photo folder")
    out, pos = "", 0
    for m in _FIELD.finditer(pattern):
        out += re.escape(pattern[pos : m.start()]) + f"(?P<{m.group(1)}>[^/]+?)"
        pos = m.end()
    return re.compile(out + re.escape(pattern[pos:]))


def _photo_files(folder: Path, depth: int) -> list[str]:
    """Relative POSIX paths of the regular files ``depth`` levels deep or less, hidden names and
    links to folders left out."""
    out: list[str] = []
    level = [(folder, "")]
    for _ in range(depth):
        nxt = []
        for d, rel in level:
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError as e:
                raise InputError(f"cannot list the photo folder ({e.strerror})", d) from None
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    nxt.append((Path(entry.path), f"{rel}{entry.name}/"))
                elif entry.is_file():
                    out.append(f"{rel}{entry.name}")
                if len(out) + len(nxt) > MAX_PHOTO_FILES:
                    raise InputError(f"the photo folder holds more than {MAX_PHOTO_FILES} entries; refused", folder)
        level = nxt
    return out


def rig_folder(path: str | Path) -> Path:
    """``path`` when it is a rig folder (a folder holding ``rig.json``), else one :class:`InputError`."""
    p = Path(path)
    if not p.is_dir():
        raise InputError(
            "not a rig folder (expected a folder holding rig.json)" if p.exists() else "rig folder not found", p
        )
    if not (p / "rig.json").is_file():
        raise InputError("not a rig folder: it holds no rig.json", p)
    return p


def init_session(
    root: str | Path, rig: str | Path, images: str | Path, pattern: str = DEFAULT_PATTERN, subject: str | None = None
) -> Session:
    """Make the session folder ``root`` for photos of a rig: ``session.json`` naming the rig folder
    (relative to ``root``, e.g. ``../../rigs/studio8``) and every photo, which is copied into
    ``root/images/<frame>/<camera><ext>`` (the session then holds its own record of the capture,
    whatever happens to the folder it came from).

    ``pattern`` places each photo in ``images`` (:data:`DEFAULT_PATTERN`; without ``{frame}`` the
    photos are one frame, ``f000``). Every camera of the rig needs a photo in every frame, of its
    image size. Anything wrong is one :class:`InputError` naming the file, before anything is
    written; ``root`` must not exist yet (or be an empty folder), and is written as a whole.
    """
    from .io import atomic_dir, image_size

    root, images = Path(root), Path(images)
    if root.is_symlink() or (root.exists() and (not root.is_dir() or any(root.iterdir()))):
        raise InputError("exists already and is not an empty folder; choose a new session folder", root)
    subject = check_name(subject or root.resolve().name, "subject")
    rig_dir = rig_folder(rig)
    the_rig = load_rig(rig_dir)
    centres = [c.center for c in the_rig.cameras]
    if (
        len(centres) > 1
        and all(abs(x - y).max() < 1e-9 for x, y in zip(centres, centres[1:]))
        and (rig_dir / "calib").is_dir()
    ):
        raise InputError(
            f"the rig has no extrinsics yet but board shots in calib/: run 'mvrecon rig calibrate {rig}' first",
            rig_dir / "rig.json",
        )
    if not images.is_dir():
        raise InputError("photo folder not found" if not images.exists() else "not a folder", images)
    rx = _pattern_regex(pattern)
    found: dict[str, dict[str, Path]] = {}
    for rel in _photo_files(images, pattern.count("/") + 1):
        m = rx.fullmatch(rel)
        if m is None:
            continue
        cam = m.group("camera")
        frame = m.group("frame") if "frame" in rx.groupindex else "f000"
        if cam not in the_rig.names:
            raise InputError(
                f"camera {cam[:40]!r} (from the pattern {pattern!r}) is not in rig {rig_dir} "
                f"(cameras: {', '.join(the_rig.names)})",
                images / rel,
            )
        check_name(frame, "frame name", images / rel)
        found.setdefault(frame, {})[cam] = images / rel
    if not found:
        raise InputError(
            f"no photo matches the pattern {pattern!r} (e.g. {_example(pattern, the_rig.names[0])})", images
        )
    for frame in sorted(found):
        for cam in the_rig.cameras:
            p = found[frame].get(cam.name)
            if p is None:
                expected = _fill(pattern, frame, cam.name)
                raise InputError(f"missing: frame {frame!r} has no photo of camera {cam.name!r}", images / expected)
            w, h = image_size(p)  # a regular file in a known format, its header within the pixel limit
            if (w, h) != (cam.width, cam.height):
                raise InputError(f"photo is {w}x{h} but camera {cam.name!r} of the rig is {cam.width}x{cam.height}", p)
    frames = []
    with atomic_dir(root) as tmp:
        for frame in sorted(found):
            imgs = {}
            for cam in the_rig.names:
                src = found[frame][cam]
                rel = f"images/{frame}/{cam}{src.suffix.lower()}"
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copyfile(src, tmp / rel)
                except OSError as e:
                    raise InputError(f"cannot copy the photo ({e.strerror})", src) from None
                imgs[cam] = rel
            frames.append({"name": frame, "images": imgs})
        # the temporary folder is root's sibling: the same relative path from both
        rig_ref = Path(os.path.relpath(rig_dir.resolve(), root.resolve())).as_posix()
        write_session_file(tmp, rig_ref, frames, subject=subject)
        load_session(tmp)  # the same checks every run makes, before the folder is in place
    return load_session(root)


def _fill(pattern: str, frame: str, camera: str) -> str:
    """``pattern`` with its ``{frame}`` and ``{camera}`` fields replaced."""
    return _FIELD.sub(lambda m: {"frame": frame, "camera": camera}[m.group(1)], pattern)


def _example(pattern: str, camera: str) -> str:
    return _fill(pattern, "f000", camera)


def _lock_error(e: OSError, path: Path) -> MvreconError:
    if e.errno == errno.ELOOP:
        return InputError("the lock file is a symbolic link; refused (remove it)", path)
    if e.errno == errno.EISDIR:
        return InputError("the lock file is a folder; remove it", path)
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        why = "the session is on a read-only file system" if e.errno == errno.EROFS else "permission denied"
        return MvreconError(
            f"cannot lock the session ({why}); 'mvrecon session report SESSION --out FILE' reports "
            "an up-to-date session without writing to it",
            path.parent,
        )
    if e.errno == errno.ENOENT:
        return InputError("session folder not found", path.parent)
    return MvreconError(f"cannot lock the session ({e.strerror})", path)


def _holder(fd: int) -> tuple[str, str]:
    """(pid, host) written by the lock's holder ("" when empty or unreadable)."""
    try:
        text = os.pread(fd, 256, 0).decode(errors="replace").split()
    except OSError:
        return "", ""
    return (text[0] if text else ""), (text[1] if len(text) > 1 else "")


def new_run_log(root: str | Path) -> Path:
    """A new, empty ``root/logs/run-NNN.log`` (the number after the highest there), made here and
    never through a link; the run's log handler then appends to it."""
    logs = refuse_symlink(Path(root) / "logs", "logs folder")
    try:
        logs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MvreconError(f"cannot create the logs folder ({e.strerror})", logs) from None
    nums = [int(m.group(1)) for p in logs.glob("run-*.log") if (m := re.fullmatch(r"run-(\d+)\.log", p.name))]
    path = logs / f"run-{max(nums, default=0) + 1:03d}.log"
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
    except OSError as e:
        raise MvreconError(f"cannot create the run log ({e.strerror})", path) from None
    return path


@contextlib.contextmanager
def session_lock(root: str | Path) -> Iterator[None]:
    """An exclusive lock on ``root/.mvrecon.lock``, held for the block.

    Two layers. ``flock`` refuses a second run on this machine, and on network file systems that
    carry it across machines (Linux NFS v3/v4 clients map it to NFS byte-range locks; CephFS,
    GlusterFS and Lustre mounted with ``flock``); the OS releases it when the process dies, so a
    killed run never leaves a stale lock. Where ``flock`` stays local to each machine (NFS mounted
    ``local_lock=flock`` or ``all``, some FUSE and SMB mounts) the holder's ``pid host`` in the
    file is a lease, renewed every :data:`LEASE_SECONDS` / 4 while the run lasts and cleared at
    its end: a run from another machine that finds a fresh lease refuses. A crashed run's lease
    lapses after :data:`LEASE_SECONDS`. Two machines starting the same session within the same
    instant on such a mount can both get in; nothing short of a lock server closes that gap."""
    root = Path(root)
    path = root / LOCK_FILE
    try:
        # never through a link: a planted .mvrecon.lock -> elsewhere would be truncated and written
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise _lock_error(e, path) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:  # a hard link would be another file's content
        os.close(fd)
        raise InputError("the lock file is not a plain file of its own; remove it", path)
    stop = threading.Event()
    renew = None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                pid, host = _holder(fd)
                where = f" on {host}" if host and host != _HOST else ""
                raise SessionBusy(
                    f"session is busy: another mvrecon run holds its lock{f' (pid {pid}{where})' if pid else ''}", root
                ) from None
            raise _lock_error(e, path) from None
        pid, host = _holder(fd)
        age = time.time() - os.fstat(fd).st_mtime
        if pid and host and host != _HOST and age < LEASE_SECONDS:
            raise SessionBusy(
                f"session is busy: a run on {host} (pid {pid}) renewed its lease {age:.0f} s ago (this "
                f"file system does not carry locks between machines; a lease lapses after "
                f"{LEASE_SECONDS} s)",
                root,
            )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {_HOST}".encode(), 0)
        except OSError as e:  # a full disk: the PID is only a courtesy to the next holder
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise _lock_error(e, path) from None
        renew = threading.Thread(target=_renew_lease, args=(fd, stop), name="mvrecon-lease", daemon=True)
        renew.start()
        yield
    finally:
        stop.set()
        if renew is not None:
            renew.join()
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # the lease ends with the run
        os.close(fd)


def _renew_lease(fd: int, stop: threading.Event) -> None:
    while not stop.wait(LEASE_SECONDS / 4):
        with contextlib.suppress(OSError):
            os.utime(fd)
