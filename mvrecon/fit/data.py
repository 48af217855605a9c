"""Fit inputs per view: the undistorted, face-cropped image, its camera, landmarks and part masks,
and the targets derived from them once (PRDL statistics, contour spans, photometric mask).

The fit works on square face crops of ``crop_size`` pixels: a crop is just another pinhole camera
(``K_crop = A K``), so projection, rendering and every loss run at a fixed small resolution
whatever the photo size, and the cost of a view does not grow with the sensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..cameras import Camera
from ..parts import PART_CODES, PRDL_PARTS
from .losses.prdl import anchor_grid, gamma_stats, sample_mask_points

#: iBUG-68 landmarks of each PRDL part (skin: none): a part's mask is trusted in a view as much
#: as the cues trust these landmarks there (see :func:`part_trust`).
PART_LANDMARKS: dict[str, tuple[int, ...]] = {
    "right_eye": tuple(range(36, 42)),
    "left_eye": tuple(range(42, 48)),
    "right_brow": tuple(range(17, 22)),
    "left_brow": tuple(range(22, 27)),
    "nose": tuple(range(27, 36)),
    "upper_lip": tuple(range(48, 55)) + tuple(range(60, 65)),
    "lower_lip": tuple(range(54, 60)) + (48, 60, 64, 65, 66, 67),
}


def part_trust(lm_conf: np.ndarray, low: float = 0.1, high: float = 0.3) -> np.ndarray:
    """(P,) weight in [0, 1] of each PRDL part's mask in one view: the mean confidence of the
    part's landmarks, ramped from 0 at ``low`` to 1 at ``high`` (skin: 1).

    On a head turned ~60 degrees the far eye and brow are nearly hidden: MediaPipe's confidence
    there drops to near zero, and a parser's masks of them are guesses (they hardly overlap the
    true parts on synthetic sessions). PRDL's min/max statistics would pull the model's visible eye vertices onto such a
    guess; this weight leaves them out (bench/fit.py)."""
    c = np.asarray(lm_conf, np.float64)
    out = np.ones(len(PRDL_PARTS))
    for i, name in enumerate(PRDL_PARTS):
        idx = PART_LANDMARKS.get(name)
        if idx:
            out[i] = np.clip((c[list(idx)].mean() - low) / (high - low), 0.0, 1.0)
    return out


@dataclass(frozen=True)
class ViewCues:
    """What the cues stage found in one view, in the coordinates of the original (distorted) photo.

    Attributes:
        key: view name (``<frame>_<camera>``).
        frame, camera: the frame and camera names.
        image: (H, W, 3) uint8 RGB photo.
        lm68: (68, 2) iBUG-68 landmarks, pixels.
        lm_conf: (68,) confidence in [0, 1].
        labels: (H, W) uint8 part labels (codes of :mod:`mvrecon.parts`).
        lm478: (478, 2) MediaPipe points, pixels, or None; with the model's landmark embedding
            the landmark term uses them instead of the 68 (see :mod:`mvrecon.cues.embedding`).
        conf478: (478,) their confidence, or None.
        detected: the landmarks and labels are the detector's and the parser's; False for a view
            where no face was found, whose points and labels are the other views' head seen by its
            camera (:func:`mvrecon.fit.stage.landmark_free_cues`): they place the crop and the face
            area only (no confidence; no PRDL).
    """

    key: str
    frame: str
    camera: str
    image: np.ndarray
    lm68: np.ndarray
    lm_conf: np.ndarray
    labels: np.ndarray
    lm478: np.ndarray | None = None
    conf478: np.ndarray | None = None
    detected: bool = True


@dataclass
class ViewBatch:
    """All views of a fit, stacked (V views, crop size S). Pixel units are crop pixels."""

    keys: list[str]
    frames: list[str]
    cameras_full: list[Camera]
    """The undistorted full-size cameras (for outputs drawn on the photos)."""
    crop_affine: np.ndarray
    """(V, 3, 3): full undistorted pixels -> crop pixels."""
    K: torch.Tensor
    """(V, 3, 3) crop intrinsics."""
    world_to_cam: torch.Tensor
    """(V, 4, 4)."""
    image: torch.Tensor
    """(V, S, S, 3) float in [0, 1]."""
    labels: torch.Tensor
    """(V, S, S) uint8."""
    lm68: torch.Tensor
    """(V, 68, 2) crop pixels."""
    lm_conf: torch.Tensor
    """(V, 68)."""
    face_size: torch.Tensor
    """(V,) inter-ocular distance in crop pixels."""
    anchors: torch.Tensor
    """(V, A, 2) PRDL anchors, crop pixels."""
    prdl_target: torch.Tensor
    """(V, P, A, 3) Gamma(C_p, A) in crop-size units."""
    prdl_has: torch.Tensor
    """(V, P) float: 0 where the part's mask is empty, else :func:`part_trust`."""
    size: int
    lm_dense: torch.Tensor | None = None
    """(V, 478, 2) MediaPipe points, crop pixels (None unless every view has them)."""
    lm_dense_conf: torch.Tensor | None = None
    """(V, 478)."""
    skin_weight: torch.Tensor | None = None
    """(V, S, S) how much each pixel looks like the subject's skin (:mod:`.evidence`), or None."""
    linear: bool = False
    """``image`` was decoded from sRGB to linear light."""
    cameras: list[str] | None = None
    """The rig camera of each view."""
    person_sdf: torch.Tensor | None = None
    """(V, S, S) signed distance to the person's outline in the photo (crop pixels, positive
    outside; :func:`.evidence.person_distance`), or None. Where a view has none, or outside the
    photo, NaN."""
    landmark_free: list[str] = field(default_factory=list)
    """Views with no face found, which join on their pixels alone (:attr:`ViewCues.detected`)."""

    @property
    def n_views(self) -> int:
        return len(self.keys)


def undistort_cues(cues: ViewCues, cam: Camera) -> tuple[ViewCues, Camera]:
    """Remove lens distortion from the photo, the labels and the landmarks (one pinhole camera)."""
    import cv2

    if not cam.has_distortion:
        return cues, cam
    cam0, mx, my = cam.undistorted()
    img = cv2.remap(cues.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    lab = cv2.remap(cues.labels, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def fix(px):
        return cam.undistort_points(px) @ cam0.K[:2, :2].T + cam0.K[:2, 2]

    dense = None if cues.lm478 is None else fix(cues.lm478[:, :2])
    return replace(cues, image=img, lm68=fix(cues.lm68), labels=lab, lm478=dense), cam0


def crop_box(lm68: np.ndarray, width: int, height: int, margin: float = 1.9) -> tuple[float, float, float]:
    """Square crop (x0, y0, side) in pixel-edge coordinates around the landmarks: ``margin`` times
    their extent, centred a little above the landmark centre (the forehead and skull are above)."""
    lo, hi = lm68.min(0), lm68.max(0)
    c = (lo + hi) / 2
    side = float(max(hi - lo) * margin)
    c = c + np.array([0.0, -0.08 * side])
    return float(c[0] + 0.5 - side / 2), float(c[1] + 0.5 - side / 2), side


def crop_affine(x0: float, y0: float, side: float, size: int) -> np.ndarray:
    """(3, 3) map from full-image pixels (centres at integers) to crop pixels."""
    s = size / side
    return np.array([[s, 0, (0.5 - x0) * s - 0.5], [0, s, (0.5 - y0) * s - 0.5], [0, 0, 1.0]])


def _warp(img: np.ndarray, A: np.ndarray, size: int, nearest: bool) -> np.ndarray:
    import cv2

    src = img
    s = A[0, 0]
    if not nearest and s < 1:
        sigma = 0.5 / s
        src = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma)
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(src, A[:2], (size, size), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def prepare_views(
    cues: list[ViewCues],
    cams: list[Camera],
    world_to_cam: list[np.ndarray] | None = None,
    size: int = 256,
    anchor_n: int = 24,
    mask_points: int = 3000,
    dtype: torch.dtype = torch.float32,
    response: str = "linear",
    part_cuts: tuple[str, ...] = (),
    silhouette: bool = False,
) -> ViewBatch:
    """Undistort, crop and stack the views, and precompute the loss targets.

    ``response``: how the photos encode light, ``"srgb"`` (cameras' JPEGs: decoded to linear light,
    where shading is a product) or ``"linear"``. ``part_cuts``: parts whose masks are redrawn from
    the photo's colour at full resolution before cropping (:func:`.evidence.part_cuts`), so that
    PRDL has evidence of its own for them. ``silhouette``: also the person's outline in each photo
    (:attr:`ViewBatch.person_sdf`), for the silhouette term."""
    keys, frames, full_cams, affines, Ks, w2c, imgs, labs, lms, confs = [], [], [], [], [], [], [], [], [], []
    dense, dense_conf, sdfs = [], [], []
    for cv, cam in zip(cues, cams):
        u, cam0 = undistort_cues(cv, cam)
        if part_cuts:
            from .evidence import part_cuts as cut_parts

            u = replace(u, labels=cut_parts(u.image, u.labels, part_cuts)[0])
        x0, y0, side = crop_box(u.lm68, cam0.width, cam0.height)
        A = crop_affine(x0, y0, side, size)
        keys.append(cv.key)
        frames.append(cv.frame)
        full_cams.append(cam0)
        affines.append(A)
        Ks.append(A @ cam0.K)
        w2c.append(cam0.world_to_cam)
        imgs.append(_warp(u.image, A, size, nearest=False))
        labs.append(_warp(u.labels, A, size, nearest=True))
        lms.append(u.lm68 @ A[:2, :2].T + A[:2, 2])
        confs.append(u.lm_conf)
        if silhouette:
            sdfs.append(_crop_distance(u.image, A, size))
        if u.lm478 is not None:
            dense.append(u.lm478[:, :2] @ A[:2, :2].T + A[:2, 2])
            dense_conf.append(u.conf478 if u.conf478 is not None else np.ones(len(u.lm478)))
    lm = np.stack(lms)
    has_dense = len(dense) == len(keys)
    iod = np.linalg.norm(lm[:, 36:42].mean(1) - lm[:, 42:48].mean(1), axis=1)
    V = len(keys)
    trust = [part_trust(c) for c in confs]
    box = torch.tensor([[0.0, 0.0, size - 1.0, size - 1.0]] * V, dtype=dtype)
    anchors = anchor_grid(box, n=anchor_n, margin=0.0)
    P = len(PRDL_PARTS)
    target = torch.zeros(V, P, anchor_n * anchor_n, 3, dtype=dtype)
    has = torch.zeros(V, P, dtype=dtype)
    for v in range(V):
        if not cues[v].detected:
            continue  # its labels are the other views' head: no evidence of its own
        for p, name in enumerate(PRDL_PARTS):
            pts = sample_mask_points(labs[v], PART_CODES[name], max_points=mask_points)
            if len(pts) < 3:
                continue
            pts_t = torch.as_tensor(pts, dtype=dtype)[None] / size
            target[v, p] = gamma_stats(pts_t, anchors[v : v + 1] / size)[0]
            has[v, p] = float(trust[v][p])
    if world_to_cam is not None:
        w2c = list(world_to_cam)
    image = np.stack(imgs).astype(np.float64) / 255.0
    if response == "srgb":
        image = np.where(image <= 0.04045, image / 12.92, ((image + 0.055) / 1.055) ** 2.4)
    from .evidence import skin_weights

    skin = np.stack([skin_weights(image[v], labs[v]) for v in range(V)])
    return ViewBatch(
        keys=keys,
        frames=frames,
        cameras_full=full_cams,
        crop_affine=np.stack(affines),
        K=torch.as_tensor(np.stack(Ks), dtype=dtype),
        world_to_cam=torch.as_tensor(np.stack(w2c), dtype=dtype),
        image=torch.as_tensor(image, dtype=dtype),
        labels=torch.as_tensor(np.stack(labs)),
        lm68=torch.as_tensor(lm, dtype=dtype),
        lm_conf=torch.as_tensor(np.stack(confs), dtype=dtype),
        face_size=torch.as_tensor(iod, dtype=dtype),
        anchors=anchors,
        prdl_target=target,
        prdl_has=has,
        size=size,
        lm_dense=torch.as_tensor(np.stack(dense), dtype=dtype) if has_dense else None,
        lm_dense_conf=torch.as_tensor(np.stack(dense_conf), dtype=dtype) if has_dense else None,
        skin_weight=torch.as_tensor(skin, dtype=dtype),
        linear=response == "srgb",
        cameras=[cv.camera for cv in cues],
        person_sdf=torch.as_tensor(np.stack(sdfs), dtype=dtype) if silhouette else None,
        landmark_free=[cv.key for cv in cues if not cv.detected],
    )


def _crop_distance(image: np.ndarray, A: np.ndarray, size: int) -> np.ndarray:
    """(size, size) the photo's signed distance to the person's outline in crop pixels (NaN where
    there is none or the crop leaves the photo)."""
    from .evidence import person_distance

    d = person_distance(image)
    if d is None:
        return np.full((size, size), np.nan, np.float32)
    import cv2

    inside = cv2.erode(_warp(np.ones(image.shape[:2], np.uint8), A, size, nearest=True), np.ones((5, 5), np.uint8)) > 0
    out = _warp(d, A, size, nearest=False) * float(A[0, 0])
    return np.where(inside, out, np.nan).astype(np.float32)
