"""The ``cues`` stage: per view, face landmarks and part labels, written to the session folder.

Per view, ``<session>/cues/<frame>_<camera>/`` holds::

    landmarks.json   status, image hash, settings; when a face was found: 478 + 68 landmarks with
                     confidences, image size, detector score, face box (pixels of the image as
                     stored, i.e. distorted; pixel centres at integer coordinates)
    labels.png       uint8 part codes (mvrecon.parts.PART_CODES), same size as the image
    overlay.png      the labels blended over the image, for people to look at

A view's folder is replaced as a whole (never half-written), and a re-run skips a view whose
``landmarks.json`` records the same image content hash and settings (the settings include a hash
of the cue code, so an upgraded mvrecon redoes the views). With a parser that can
(``parse_frame``: the model parser) the views of one synchronized frame are labelled together
after their landmarks are found (:func:`label_frame`); their records then name the frame fit
and the key of its images, cameras and settings, so a changed view redoes its frame's labels.
``cues/config.json`` holds the resolved config and ``cues/summary.json`` the per-view status of
the last run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from ..errors import InputError
from ..io import atomic_dir, read_image, read_json, sha256_file, write_image, write_json
from ..parts import overlay as part_overlay
from .facemesh import DetectConfig, FaceCues, detect, downscale
from .parsing import FaceParser, FrameParser, get_parser

log = logging.getLogger(__name__)

FORMAT = "mvrecon-cues/1"
LANDMARKS_FILE = "landmarks.json"
LABELS_FILE = "labels.png"
OVERLAY_FILE = "overlay.png"


@dataclass(frozen=True)
class CuesConfig:
    """Settings of the cues stage."""

    detect: DetectConfig = field(default_factory=DetectConfig)
    """Face detection and mesh settings."""
    parser: str = "auto"
    """Registered face parser for the part labels: auto (model when the face model has a landmark
    embedding, else surface), model, surface, landmarks, polygons, or one added with
    mvrecon.cues.register_parser (see mvrecon.cues.parsing)."""
    frames: bool = True
    """In a session, label each synchronized frame's views together when the parser can
    (``parse_frame``: the model parser fits one head to all the frame's views and renders it in
    each). Off: every view on its own."""
    overlay: bool = True
    """Write overlay.png (labels and landmarks over the image) per view."""
    overlay_max_side: int = 1600
    """Longer side (px) of overlay.png: it is for looking at, and full-size overlays of 12 MP
    views cost seconds to blend and encode."""
    overwrite: bool = False
    """Redo views whose cached outputs match the image and settings."""
    max_image_pixels: int | None = None
    """Images above this many pixels are refused from their header, before decoding (None:
    ``$MVRECON_MAX_IMAGE_PIXELS``, else :data:`mvrecon.io.MAX_IMAGE_PIXELS`)."""

    def settings(self) -> dict[str, Any]:
        """What the outputs depend on (not ``overwrite``): recorded per view, compared on re-runs."""
        return {
            "format": FORMAT,
            "detect": dataclasses.asdict(self.detect),
            "parser": self.parser,
            "frames": self.frames,
            "overlay_max_side": self.overlay_max_side,
            "code": code_revision(),
        }


@functools.lru_cache(maxsize=1)
def code_revision() -> str:
    """A short hash of the code the cues depend on (this package and the part definitions): part
    of every view's settings, so cached cues of an older mvrecon are redone, not trusted."""
    from .. import __version__

    root = Path(__file__).resolve().parent
    files = sorted(root.glob("*.py")) + [root.parent / "parts.py"]
    h = hashlib.sha256(__version__.encode())
    for f in files:
        try:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        except OSError:  # sources not on disk (a frozen install): the version alone
            pass
    return h.hexdigest()[:12]


PRESETS: dict[str, CuesConfig] = {
    "fast": CuesConfig(detect=DetectConfig(mesh_size=256, tile_grids=(2,))),
    "default": CuesConfig(),
    "best": CuesConfig(detect=DetectConfig(mesh_size=512, tile_grids=(2, 4, 8, 12))),
}


@dataclass(frozen=True)
class ViewResult:
    """Outcome for one view."""

    key: str
    """``<frame>_<camera>`` (or the photo's stem for a single image)."""
    image: Path
    status: Literal["ok", "no_face"]
    cached: bool
    """True when the outputs were already there for this image and these settings."""
    out_dir: Path
    score: float | None = None
    """Face detector score, None without a face."""


@dataclass(frozen=True)
class CuesResult:
    """Outcome of the stage over a session."""

    out_dir: Path
    views: tuple[ViewResult, ...]

    @property
    def no_face(self) -> list[str]:
        """Keys of the views where no face was found."""
        return [v.key for v in self.views if v.status == "no_face"]

    @property
    def n_cached(self) -> int:
        return sum(v.cached for v in self.views)

    def summary(self) -> str:
        n_ok = sum(v.status == "ok" for v in self.views)
        text = f"cues: {n_ok}/{len(self.views)} views with a face ({self.n_cached} unchanged, skipped)"
        if self.no_face:
            text += f"; no face in: {', '.join(self.no_face)}"
        return text


def _settings(cfg: CuesConfig, camera) -> dict[str, Any]:
    """The settings recorded with a view: the config's, and the camera when the parser got one."""
    out = cfg.settings()
    if camera is not None:
        out["camera"] = camera.to_dict()
    return out


def _has_label_files(view_dir: Path, cfg: CuesConfig) -> bool:
    """``labels.png`` (and ``overlay.png`` when the config writes it) are in ``view_dir``."""
    needed = [LABELS_FILE] + ([OVERLAY_FILE] if cfg.overlay else [])
    return all((view_dir / n).is_file() for n in needed)


def _cached(view_dir: Path, sha: str, cfg: CuesConfig, camera=None, labels: bool = True) -> dict[str, Any] | None:
    """The cached record when it matches the image hash and settings and its files exist
    (``labels`` False: the label and overlay files are not needed)."""
    path = view_dir / LANDMARKS_FILE
    if cfg.overwrite or not path.is_file():
        return None
    try:
        rec = read_json(path)
    except InputError:
        return None  # unreadable cache: just redo the view
    if not isinstance(rec, dict) or rec.get("image_sha256") != sha:
        return None
    if json.loads(json.dumps(_settings(cfg, camera))) != rec.get("settings"):
        return None
    if rec.get("status") == "ok" and labels and not _has_label_files(view_dir, cfg):
        return None
    return rec


def draw_overlay(image: np.ndarray, labels: np.ndarray, cues: FaceCues, max_side: int | None = None) -> np.ndarray:
    """RGB picture: part colours over the image, the 68 landmarks as dots (green where their
    confidence is at least 0.5, red below) and the face box; scaled down so that its longer side
    is at most ``max_side`` (None: full size). Inputs are not modified."""
    import cv2

    h, w = labels.shape[:2]
    s = 1.0 if max_side is None else min(1.0, max_side / max(h, w))
    if s < 1.0:
        size = (max(1, round(w * s)), max(1, round(h * s)))
        image = downscale(image, size)
        labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        k = np.array([size[0] / w, size[1] / h])
    else:
        k = np.ones(2)
    out = np.array(image[..., :3], dtype=np.uint8, copy=True)
    ys, xs = np.nonzero(labels)
    if len(ys):
        # blend only around the labelled pixels: outside them the overlay is the image itself, and
        # a full-frame float blend of a large view costs far more than the face does
        r0, r1 = max(0, ys.min() - 2), min(labels.shape[0], ys.max() + 3)
        c0, c1 = max(0, xs.min() - 2), min(labels.shape[1], xs.max() + 3)
        out[r0:r1, c0:c1] = part_overlay(out[r0:r1, c0:c1], labels[r0:r1, c0:c1])
    scale = max(1, round(max(out.shape[:2]) / 800))
    pts = (cues.points68 + 0.5) * k - 0.5
    for (x, y), c in zip(pts, cues.conf68):
        colour = (0, 255, 0) if c >= 0.5 else (255, 0, 0)
        cv2.circle(out, (int(round(x)), int(round(y))), scale + 1, colour, -1, cv2.LINE_AA)
    x0, y0, x1, y1 = (int(round(v)) for v in ((cues.box.reshape(2, 2) + 0.5) * k - 0.5).ravel())
    cv2.rectangle(out, (x0, y0), (x1, y1), (255, 255, 0), scale)
    return out


def process_image(
    image_path: str | Path,
    out_dir: str | Path,
    cfg: CuesConfig = CuesConfig(),
    key: str | None = None,
    parser: FaceParser | None = None,
    camera=None,
    labels: bool = True,
) -> ViewResult:
    """Cues of one image file into ``out_dir`` (replaced as a whole; skipped when cached).

    ``camera``: the view's calibrated camera, handed to the parser (the ``model`` parser fits
    the face model in it); part of the cache key. ``labels`` False: landmarks only (the stage
    labels a synchronized frame's views together afterwards, :func:`label_frame`).

    Raises :class:`InputError` for a missing, unreadable, truncated or too large image.
    """
    image_path, out_dir = Path(image_path), Path(out_dir)
    key = key or image_path.stem
    parser = parser or _parser(cfg.parser)
    if parser.name != cfg.parser:  # the record (and the cache key) names the parser actually used
        cfg = dataclasses.replace(cfg, parser=parser.name)
    sha = sha256_file(image_path, "image")
    rec = _cached(out_dir, sha, cfg, camera, labels)
    if rec is not None:
        return ViewResult(key, image_path, rec["status"], True, out_dir, rec.get("score"))

    image = read_image(image_path, max_pixels=cfg.max_image_pixels)
    cues = detect(image, cfg.detect)
    record: dict[str, Any] = {
        "format": FORMAT,
        "image": str(image_path),
        "image_sha256": sha,
        "settings": _settings(cfg, camera),
        "status": "ok" if cues is not None else "no_face",
        "image_size": [int(image.shape[1]), int(image.shape[0])],
        "coordinates": "pixels of the stored (distorted) image, pixel centres at integer coordinates",
    }
    with atomic_dir(out_dir) as tmp:
        if cues is not None:
            record.update(cues.to_dict())
            if labels:
                lab = parser.parse(image, cues, camera=camera)
                write_image(tmp / LABELS_FILE, lab)
                if cfg.overlay:
                    write_image(tmp / OVERLAY_FILE, draw_overlay(image, lab, cues, cfg.overlay_max_side))
        write_json(tmp / LANDMARKS_FILE, record)
    if cues is None:
        log.warning("%s: no face found", image_path)
    return ViewResult(key, image_path, record["status"], False, out_dir, None if cues is None else cues.score)


def _parser(name: str) -> FaceParser:
    try:
        return get_parser(name)
    except KeyError as e:
        raise InputError(str(e.args[0])) from None


def run(cfg: CuesConfig, session) -> CuesResult:
    """The cues of every view of a :class:`mvrecon.session.Session`.

    A view without a face does not stop the stage: it is named in the result (and in
    ``cues/summary.json``). An unreadable, truncated or too large image does: it is an
    :class:`InputError` naming the file, and views done before it stay cached.
    """
    from rich.progress import track

    out = session.stage_dir("cues")
    parser = _parser(cfg.parser)
    cfg = dataclasses.replace(cfg, parser=parser.name)  # "auto" is recorded as what it chose
    write_json(
        out / "config.json", {**cfg.settings(), "overlay": cfg.overlay, "max_image_pixels": cfg.max_image_pixels}
    )
    views = session.views()
    by_frame = cfg.frames and callable(getattr(parser, "parse_frame", None))
    results = []
    for v in track(views, description="cues", disable=not sys.stderr.isatty() or len(views) < 2, transient=True):
        results.append(
            process_image(
                v.image, out / v.key, cfg, key=v.key, parser=parser, camera=session.rig[v.camera], labels=not by_frame
            )
        )
    if by_frame:
        frames: dict[str, list[int]] = {}
        for i, v in enumerate(views):
            frames.setdefault(v.frame, []).append(i)
        for idx in frames.values():
            ok = [i for i in idx if results[i].status == "ok"]
            if ok and label_frame([results[i] for i in ok], [session.rig[views[i].camera] for i in ok], cfg, parser):
                for i in ok:
                    results[i] = dataclasses.replace(results[i], cached=False)
    res = CuesResult(out, tuple(results))
    write_json(
        out / "summary.json",
        {
            "format": FORMAT,
            "views": [
                {"key": r.key, "image": str(r.image), "status": r.status, "cached": r.cached, "score": r.score}
                for r in results
            ],
            "no_face": res.no_face,
        },
    )
    return res


def _frame_key(records: list[dict[str, Any]], cameras: list) -> str:
    """What a frame's labels depend on: each view's image, camera and settings."""
    items = [[r["image_sha256"], r["settings"], cam.to_dict()] for r, cam in zip(records, cameras)]
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


def label_frame(views: list[ViewResult], cameras: list, cfg: CuesConfig, parser: FaceParser) -> bool:
    """Part labels of one synchronized frame's views with a face (their landmarks already in
    their folders), fitted together by ``parser.parse_frame`` (one view: ``parser.parse``).
    Each folder is rewritten as a whole with ``labels.png``, ``overlay.png`` and its record, which
    notes the frame fit (``frame_fit``: the key of the frame's images, cameras and settings, the
    views fitted together, whether this one joined). Skipped, returning False, when every view's
    record holds the current key and its files exist (and ``cfg.overwrite`` is off)."""
    records = [read_json(v.out_dir / LANDMARKS_FILE) for v in views]
    key = _frame_key(records, cameras)
    if not cfg.overwrite and all(
        isinstance(r.get("frame_fit"), dict) and r["frame_fit"].get("key") == key and _has_label_files(v.out_dir, cfg)
        for r, v in zip(records, views)
    ):
        return False
    images = [read_image(v.image, max_pixels=cfg.max_image_pixels) for v in views]
    cues: list[FaceCues] = []
    for v in views:
        cu = load_view_cues(v.out_dir)
        if cu is None:  # run() hands over the views whose status is "ok": their records hold a face
            raise InputError("no face in the landmarks of a view labelled with its frame", v.out_dir / LANDMARKS_FILE)
        cues.append(cu)
    if len(views) >= 2:
        # run() labels by frame only with a parser that has parse_frame (the model parser)
        labels = cast(FrameParser, parser).parse_frame(images, cues, cameras)
        joined = list(getattr(parser, "last_frame_views", [True] * len(views)))
    else:
        labels = [parser.parse(images[0], cues[0], camera=cameras[0])]
        joined = [False]
    for v, rec, image, cu, lab, j in zip(views, records, images, cues, labels, joined):
        rec["frame_fit"] = {"key": key, "views": [u.key for u in views], "joined": bool(j)}
        with atomic_dir(v.out_dir) as tmp:
            write_image(tmp / LABELS_FILE, lab)
            if cfg.overlay:
                write_image(tmp / OVERLAY_FILE, draw_overlay(image, lab, cu, cfg.overlay_max_side))
            write_json(tmp / LANDMARKS_FILE, rec)
    left = [v.key for v, j in zip(views, joined) if not j]
    if len(views) >= 2 and left:
        log.warning(
            "cues: %s left out of the frame fit (points disagree with the other views); labelled alone", ", ".join(left)
        )
    return True


def load_view_cues(view_dir: str | Path) -> FaceCues | None:
    """The :class:`FaceCues` stored in a view folder, or None when no face was found there."""
    path = Path(view_dir) / LANDMARKS_FILE
    rec = read_json(path)
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise InputError(f"not a {FORMAT} landmarks file", path)
    if rec.get("status") != "ok":
        return None
    try:
        return FaceCues.from_dict(rec)
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise InputError(f"malformed landmarks ({e})", path) from None


def load_view_labels(view_dir: str | Path) -> np.ndarray:
    """uint8 part labels ``(H, W)`` of a view folder."""
    return read_image(Path(view_dir) / LABELS_FILE, gray=True)
