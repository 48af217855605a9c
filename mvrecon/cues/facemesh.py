"""Face detection and dense 2D landmarks in one image, with MediaPipe (models from the wheel).

Pipeline for one RGB image:

1. The face detector (BlazeFace full range, then short range) runs on a copy downscaled to
   ``detect_max_side``; when it finds nothing there, on overlapping tiles of the full image (a
   face small in a large frame is only a few pixels in the 192 px detector input otherwise).
2. The largest central face is chosen (area times a centrality weight, see :func:`pick_face`).
3. A square crop around it, ``crop_scale`` times the box, is resampled to ``mesh_size`` and the
   face mesh (478 points with irises) runs on the crop; the points are mapped back to the full
   image. A face the detector misses (strongly turned heads) is retried with the mesh's own
   detector on the downscaled image, then refined the same way on a crop.

Coordinates are pixels of the input image, pixel centres at integer coordinates (OpenCV).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .mapping import mediapipe_to_ibug68
from .visibility import landmark_confidence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectConfig:
    """How faces are found and meshed."""

    detect_max_side: int = 384
    """Longest side (px) of the downscaled copy the face detector sees (its network input is 192)."""
    min_detection_score: float = 0.5
    """Face detector score below which a box is ignored."""
    tile_grids: tuple[int, ...] = (2, 4, 8)
    """n x n grids of overlapping tiles tried in turn when the whole frame shows no face (() = off);
    the finer grids find smaller faces and cost the most on a frame with no face."""
    offcentre_recheck: float = 0.5
    """When the best whole-frame face is farther than this from the centre (fraction of half the
    diagonal), the tiles are searched too, for a central face too small for the whole-frame pass."""
    crop_scale: float = 2.0
    """Side of the square crop the mesh runs on, in multiples of the face box's longer side."""
    mesh_size: int = 384
    """Side (px) the crop is resampled to before the mesh runs."""
    min_mesh_score: float = 0.5
    """The mesh's own face detection threshold inside the crop."""
    occlusion_tol: float = 0.05
    """Depth margin (fraction of face size) before a nearer mesh part counts as hiding a point."""


@dataclass(frozen=True)
class FaceCues:
    """One face in one image.

    Attributes:
        image_size: (width, height) of the image, pixels.
        points478: (478, 3) MediaPipe points: x, y pixels; z relative depth in pixels (smaller is
            nearer the camera; only differences between points mean anything).
        conf478: (478,) confidence in [0, 1]: cosine of the angle between the surface normal and
            the direction to the camera, 0 where the face itself hides the point. Silhouette
            points (the jaw line) score low although visible; as a visible/hidden call,
            ``conf >= 0.2`` agreed with the truth for most landmarks on synthetic sessions
            (``bench/cues.py session``).
        points68: (68, 2) iBUG-68 landmarks, pixels (see :mod:`mvrecon.cues.mapping`).
        conf68: (68,) their confidence.
        box: (4,) face box x0, y0, x1, y1, pixels (the detector's, else the landmarks' bounds).
        score: face detector score in [0, 1] (the mesh threshold when the mesh's own detector found it).
        method: which path found the face: ``detector``, ``detector-tiles`` or ``mesh``.
        n_faces: how many faces were seen (the chosen one is the largest central one).
    """

    image_size: tuple[int, int]
    points478: np.ndarray
    conf478: np.ndarray
    points68: np.ndarray
    conf68: np.ndarray
    box: np.ndarray
    score: float
    method: str
    n_faces: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists of floats rounded to 1/1000 px)."""
        return {
            "image_size": list(self.image_size),
            "score": round(float(self.score), 4),
            "method": self.method,
            "n_faces": int(self.n_faces),
            "box": np.round(self.box, 2).tolist(),
            "landmarks68": np.round(self.points68, 3).tolist(),
            "confidence68": np.round(self.conf68, 3).tolist(),
            "landmarks478": np.round(self.points478, 3).tolist(),
            "confidence478": np.round(self.conf478, 3).tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaceCues:
        """Inverse of :meth:`to_dict`; raises ``ValueError``/``KeyError`` on malformed data."""
        p478 = np.asarray(d["landmarks478"], np.float64).reshape(478, 3)
        p68 = np.asarray(d["landmarks68"], np.float64).reshape(68, 2)
        return cls(
            image_size=(int(d["image_size"][0]), int(d["image_size"][1])),
            points478=p478,
            conf478=np.asarray(d["confidence478"], np.float64).reshape(478),
            points68=p68,
            conf68=np.asarray(d["confidence68"], np.float64).reshape(68),
            box=np.asarray(d["box"], np.float64).reshape(4),
            score=float(d["score"]),
            method=str(d["method"]),
            n_faces=int(d.get("n_faces", 1)),
        )


# ------------------------------------------------------------------------------------------
# MediaPipe graphs, built once per process (building one costs more than running it)

_GRAPHS: dict[tuple, Any] = {}


def _quiet_mediapipe() -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send the C++ side's stderr (absl/TFLite warnings MediaPipe prints on each graph's first
    runs, which no environment variable turns off) to /dev/null for the duration of a call."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # captured or replaced stderr: nothing to guard
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def _process(graph, img: np.ndarray):
    with _native_stderr_silenced():
        return graph.process(img)


def _face_detector(model: int, score: float):
    key = ("det", model, score)
    if key not in _GRAPHS:
        _quiet_mediapipe()
        from mediapipe.python.solutions.face_detection import FaceDetection

        with _native_stderr_silenced():
            _GRAPHS[key] = FaceDetection(model_selection=model, min_detection_confidence=score)
    return _GRAPHS[key]


def _face_mesh(score: float):
    key = ("mesh", score)
    if key not in _GRAPHS:
        _quiet_mediapipe()
        from mediapipe.python.solutions.face_mesh import FaceMesh

        with _native_stderr_silenced():
            _GRAPHS[key] = FaceMesh(
                static_image_mode=True, max_num_faces=3, refine_landmarks=True, min_detection_confidence=score
            )
    return _GRAPHS[key]


# ------------------------------------------------------------------------------------------


def as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` view or copy of a gray, RGB or RGBA image (input not modified)."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] in (3, 4):
        return np.ascontiguousarray(img[..., :3])
    raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got {img.shape}")


def downscale(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample to ``size`` (width, height), anti-aliased: halvings by 2x2 area averaging (OpenCV's
    fast path; its general area filter costs far more), then one bilinear step of less than 2x."""
    import cv2

    w, h = size
    while img.shape[1] >= 2 * w and img.shape[0] >= 2 * h:
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if (img.shape[1], img.shape[0]) == (w, h):
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def _resize_max(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``img`` scaled so that its longer side is at most ``max_side``, and the scale used."""
    h, w = img.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s >= 1.0:
        return img, 1.0
    size = (max(1, round(w * s)), max(1, round(h * s)))
    # report the scale actually applied on each axis (rounding) as their mean
    return downscale(img, size), 0.5 * (size[0] / w + size[1] / h)


def _detect_boxes(
    img: np.ndarray, cfg: DetectConfig, models: tuple[int, ...] = (1, 0)
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(N, 4)`` x0 y0 x1 y1 in ``img`` pixels and scores ``(N,)``, from the first
    detector model that finds anything on ``img`` downscaled to ``detect_max_side``."""
    small, _ = _resize_max(img, cfg.detect_max_side)
    h, w = img.shape[:2]
    for model in models:
        res = _process(_face_detector(model, cfg.min_detection_score), small)
        if res.detections:
            boxes, scores = [], []
            for d in res.detections:
                rb = d.location_data.relative_bounding_box
                boxes.append([rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w, (rb.ymin + rb.height) * h])
                scores.append(d.score[0])
            return np.asarray(boxes, np.float64) - 0.5, np.asarray(scores, np.float64)
    return np.zeros((0, 4)), np.zeros(0)


def _detect_tiles(img: np.ndarray, cfg: DetectConfig) -> tuple[np.ndarray, np.ndarray]:
    """Detector on n x n tiles overlapping by half a tile, n from ``cfg.tile_grids``; stops at the
    first grid that finds a face. Boxes in full-image pixels."""
    h, w = img.shape[:2]
    for n in cfg.tile_grids:
        th, tw = int(np.ceil(2 * h / (n + 1))), int(np.ceil(2 * w / (n + 1)))
        boxes, scores = [], []
        for y0 in np.linspace(0, h - th, n).round().astype(int):
            for x0 in np.linspace(0, w - tw, n).round().astype(int):
                b, s = _detect_boxes(img[y0 : y0 + th, x0 : x0 + tw], cfg, models=(1,))
                # a box cut by the tile edge is a partial face; the overlapping tile has it whole
                interior = (b[:, 0] > 1) & (b[:, 1] > 1) & (b[:, 2] < tw - 2) & (b[:, 3] < th - 2)
                boxes.append(b[interior] + [x0, y0, x0, y0])
                scores.append(s[interior])
        if sum(len(b) for b in boxes):
            return _nms(np.concatenate(boxes), np.concatenate(scores))
    return np.zeros((0, 4)), np.zeros(0)


def _nms_keep(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.3) -> list[int]:
    """Indices of the boxes kept by greedy non-maximum suppression (a handful of boxes)."""
    keep: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(_iou(boxes[i], boxes[k]) < iou for k in keep):
            keep.append(int(i))
    return keep


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    keep = _nms_keep(boxes, scores, iou)
    return boxes[keep], scores[keep]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _offcentre(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(N,)`` distance of each box centre from the image centre over half the diagonal."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    return np.linalg.norm(centre - [(width - 1) / 2, (height - 1) / 2], axis=1) / (0.5 * np.hypot(width, height))


def pick_face(boxes: np.ndarray, width: int, height: int) -> int:
    """Index of the largest central box: area times ``(1 - d)^2``, with ``d`` the distance of
    the box centre from the image centre over half the diagonal (a face twice the area but
    halfway to a corner loses to a centred one)."""
    b = np.asarray(boxes, np.float64)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    d = _offcentre(b, width, height)
    return int(np.argmax(area * (1 - np.clip(d, 0, 1)) ** 2))


def _square_crop(img: np.ndarray, centre: np.ndarray, side: float, out_size: int) -> tuple[np.ndarray, int, int, int]:
    """Square crop of ``side`` px around ``centre`` (zero-padded outside the image), resampled to
    ``out_size``. Returns the crop and its integer origin and side in image pixels."""
    import cv2

    h, w = img.shape[:2]
    L = max(8, int(round(side)))
    x0, y0 = int(round(centre[0] - L / 2)), int(round(centre[1] - L / 2))
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + L, w), min(y0 + L, h)
    if sx1 <= sx0 or sy1 <= sy0:
        raise ValueError("crop lies outside the image")
    patch = img[sy0:sy1, sx0:sx1]
    if (sx0, sy0, sx1, sy1) != (x0, y0, x0 + L, y0 + L):
        patch = cv2.copyMakeBorder(
            patch, sy0 - y0, y0 + L - sy1, sx0 - x0, x0 + L - sx1, cv2.BORDER_CONSTANT, value=(0, 0, 0)
        )
    if L > out_size:
        return downscale(patch, (out_size, out_size)), x0, y0, L
    return cv2.resize(patch, (out_size, out_size), interpolation=cv2.INTER_LINEAR), x0, y0, L


def _run_mesh(img: np.ndarray, cfg: DetectConfig) -> tuple[np.ndarray, int] | None:
    """MediaPipe points ``(478, 3)`` in ``img`` pixels of the face nearest the image centre, and
    the number of faces the mesh saw; None when it sees none."""
    h, w = img.shape[:2]
    res = _process(_face_mesh(cfg.min_mesh_score), img)
    if not res.multi_face_landmarks:
        return None
    # MediaPipe hands back protobuf messages with no array accessor: this boundary copy is the one
    # per-point loop (478 attribute reads); everything after works on arrays.
    faces = [
        np.array([(p.x, p.y, p.z) for p in f.landmark], np.float64) * [w, h, w] - [0.5, 0.5, 0.0]
        for f in res.multi_face_landmarks
    ]
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    best = min(faces, key=lambda f: float(np.linalg.norm(f[:, :2].mean(0) - centre)))
    return best, len(faces)


def _mesh_on_crop(img: np.ndarray, box: np.ndarray, cfg: DetectConfig) -> tuple[np.ndarray, int] | None:
    centre = (box[:2] + box[2:]) / 2
    side = cfg.crop_scale * float(max(box[2] - box[0], box[3] - box[1]))
    crop, x0, y0, L = _square_crop(img, centre, side, cfg.mesh_size)
    got = _run_mesh(crop, cfg)
    if got is None:
        return None
    pts, n = got
    # crop pixel u <-> image pixel x0 + (u + 0.5) * L / S - 0.5 (centres at integers in both)
    k = L / cfg.mesh_size
    out = np.empty_like(pts)
    out[:, 0] = x0 + (pts[:, 0] + 0.5) * k - 0.5
    out[:, 1] = y0 + (pts[:, 1] + 0.5) * k - 0.5
    out[:, 2] = pts[:, 2] * k
    return out, n


def _bounds(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points[:, :2].min(0), points[:, :2].max(0)])


def detect(image: np.ndarray, cfg: DetectConfig = DetectConfig()) -> FaceCues | None:
    """The largest central face in an RGB (or gray/RGBA) uint8 image, or None when there is none.

    The image is not modified.
    """
    img = as_rgb(image)
    h, w = img.shape[:2]
    boxes, scores = _detect_boxes(img, cfg)
    from_tiles = np.zeros(len(boxes), bool)
    if cfg.tile_grids and (
        not len(boxes) or _offcentre(boxes[[pick_face(boxes, w, h)]], w, h)[0] > cfg.offcentre_recheck
    ):
        tb, ts = _detect_tiles(img, cfg)
        if len(tb):
            # whole-frame boxes first, so that they win ties in the suppression
            keep = _nms_keep(np.concatenate([boxes, tb]), np.concatenate([scores + 1.0, ts]))
            boxes = np.concatenate([boxes, tb])[keep]
            scores = np.concatenate([scores, ts])[keep]
            from_tiles = np.asarray(keep) >= len(from_tiles)

    pts = None
    n_faces = len(boxes)
    if len(boxes):
        i = pick_face(boxes, w, h)
        box, score = boxes[i], float(scores[i])
        method = "detector-tiles" if from_tiles[i] else "detector"
        got = _mesh_on_crop(img, box, cfg)
        if got is None:  # a tight crop can defeat the mesh's own detector: give it more context
            got = _mesh_on_crop(img, box, dataclasses.replace(cfg, crop_scale=cfg.crop_scale * 1.6))
        if got is not None:
            pts = got[0]
    if pts is None:
        small, _ = _resize_max(img, cfg.detect_max_side)
        got = _run_mesh(small, cfg)
        if got is None:
            return None
        coarse, n_faces = got
        k = np.array([w / small.shape[1], h / small.shape[0]])
        coarse = np.concatenate([(coarse[:, :2] + 0.5) * k - 0.5, coarse[:, 2:] * k[0]], axis=1)
        box, score, method = _bounds(coarse), cfg.min_mesh_score, "mesh"
        # the landmark bounds are tighter than a detector box: widen the crop accordingly
        refined = _mesh_on_crop(img, box, dataclasses.replace(cfg, crop_scale=cfg.crop_scale * 1.2))
        pts = refined[0] if refined is not None else coarse
        box = _bounds(pts)
    conf = landmark_confidence(pts, cfg.occlusion_tol)
    p68, c68 = mediapipe_to_ibug68(pts[:, :2], conf)
    assert c68 is not None  # given confidences, the mapping returns theirs
    return FaceCues(
        image_size=(w, h),
        points478=pts,
        conf478=conf,
        points68=p68,
        conf68=c68,
        box=np.asarray(box, np.float64),
        score=score,
        method=method,
        n_faces=max(1, n_faces),
    )
