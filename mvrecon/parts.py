"""Face parts shared by the cues (2D masks) and the face model (per-vertex labels).

One definition serves both sides of PRDL: the 2D target masks and the 3D vertex labels are built
from the same iBUG-68 polygons, so a perfect fit makes them coincide.

Label codes (uint8), used in label PNGs and in a model's per-vertex ``part_labels``:

====  ============  =====================================================
code  name          what
====  ============  =====================================================
0     background    not a face part (hair, neck, ears, mouth interior...)
1     skin          face skin inside the jaw line, cut above the brows
2     right_eye     the subject's right eye opening (image left, frontal)
3     left_eye      the subject's left eye opening
4     right_brow
5     left_brow
6     nose          nose including the alae
7     upper_lip
8     lower_lip
====  ============  =====================================================

iBUG-68 indices are 0-based: jaw 0-16, right brow 17-21, left brow 22-26, nose bridge 27-30,
nostrils 31-35, right eye 36-41, left eye 42-47, outer lips 48-59, inner lips 60-67.
"""

from __future__ import annotations

import numpy as np

PART_NAMES: tuple[str, ...] = (
    "background",
    "skin",
    "right_eye",
    "left_eye",
    "right_brow",
    "left_brow",
    "nose",
    "upper_lip",
    "lower_lip",
)
PART_CODES: dict[str, int] = {n: i for i, n in enumerate(PART_NAMES)}
#: The parts PRDL uses (all but background).
PRDL_PARTS: tuple[str, ...] = PART_NAMES[1:]
#: RGB colours for overlays, indexed by code.
PART_COLORS = np.array(
    [
        [0, 0, 0],
        [230, 190, 150],
        [40, 120, 255],
        [0, 200, 255],
        [120, 60, 20],
        [170, 100, 40],
        [60, 220, 60],
        [230, 40, 60],
        [150, 0, 120],
    ],
    dtype=np.uint8,
)

#: The 7 REALY alignment keypoints as iBUG-68 indices (eye corners, nose tip, mouth corners).
REALY_KEYPOINTS = (36, 39, 42, 45, 33, 48, 54)


def _frame(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit 'right' (subject's right eye to left eye) and 'down' vectors, and inter-ocular distance."""
    eye_r = lm[36:42].mean(0)
    eye_l = lm[42:48].mean(0)
    right = eye_l - eye_r
    iod = float(np.linalg.norm(right))
    right = right / max(iod, 1e-9)
    down = np.array([-right[1], right[0]])
    # image y grows downwards: 'down' must point from the eyes to the mouth
    if np.dot(down, lm[57] - (eye_r + eye_l) / 2) < 0:
        down = -down
    return right, down, iod


def part_polygons(lm68: np.ndarray) -> dict[str, np.ndarray]:
    """Closed polygons ``(M, 2)`` for each part, from 2D iBUG-68 landmarks ``(68, 2)``.

    Also returns ``"face"`` (jaw line closed over the brows: the skin's outer outline) and
    ``"mouth"`` (the inner-lip opening, removed from the skin).
    Eye, lip and nostril outlines are the landmarks themselves; brows are thickened below their
    landmark line (iBUG brow points trace the brow's upper edge), the nose is widened at the
    bridge and the alae, both in proportion to the inter-ocular distance so that the same
    definition holds at any scale.
    """
    lm = np.asarray(lm68, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {lm.shape}")
    right, down, iod = _frame(lm)
    brow_h = 0.13 * iod

    def brow(idx: list[int]) -> np.ndarray:
        top = lm[idx]
        return np.concatenate([top, top[::-1] + down * brow_h], 0)

    bridge_w = 0.09 * iod
    ala_out = 0.10 * iod
    ala_up = 0.12 * iod
    nose = np.stack(
        [
            lm[27] - right * bridge_w,
            lm[29] - right * bridge_w * 1.5,
            lm[31] - right * ala_out - down * ala_up,
            lm[31] - right * ala_out * 0.5,
            lm[32],
            lm[33],
            lm[34],
            lm[35] + right * ala_out * 0.5,
            lm[35] + right * ala_out - down * ala_up,
            lm[29] + right * bridge_w * 1.5,
            lm[27] + right * bridge_w,
        ]
    )
    return {
        "face": np.concatenate([lm[0:17], lm[26:21:-1], lm[21:16:-1]], 0),
        "right_eye": lm[36:42].copy(),
        "left_eye": lm[42:48].copy(),
        "right_brow": brow(list(range(17, 22))),
        "left_brow": brow(list(range(22, 27))),
        "nose": nose,
        "upper_lip": lm[[48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60]].copy(),
        "lower_lip": lm[[54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64]].copy(),
        "mouth": lm[60:68].copy(),
    }


#: Paint order: later parts overwrite earlier ones where polygons overlap.
_PAINT_ORDER = ("nose", "right_brow", "left_brow", "upper_lip", "lower_lip", "right_eye", "left_eye")


def part_label_image(lm68: np.ndarray, height: int, width: int, subpixel_bits: int = 4) -> np.ndarray:
    """Rasterise :func:`part_polygons` into a uint8 label image ``(H, W)`` with :data:`PART_CODES`.

    Pixel centres are at integer coordinates (OpenCV convention).
    """
    import cv2

    polys = part_polygons(lm68)
    shift = 1 << subpixel_bits
    out = np.zeros((height, width), np.uint8)

    def fill(poly: np.ndarray, code: int) -> None:
        pts = np.round(poly * shift).astype(np.int32)[None]
        cv2.fillPoly(out, pts, int(code), lineType=cv2.LINE_8, shift=subpixel_bits)

    fill(polys["face"], PART_CODES["skin"])
    for name in _PAINT_ORDER:
        fill(polys[name], PART_CODES[name])
    fill(polys["mouth"], PART_CODES["background"])
    return out


def points_in_parts(points2d: np.ndarray, lm68: np.ndarray) -> np.ndarray:
    """Part code ``(N,)`` for each 2D point, with the same polygons and paint order as
    :func:`part_label_image` (used to label model vertices from their projected positions)."""
    from matplotlib.path import Path as MplPath

    pts = np.asarray(points2d, dtype=np.float64)
    polys = part_polygons(lm68)
    codes = np.zeros(len(pts), np.uint8)
    codes[MplPath(polys["face"]).contains_points(pts)] = PART_CODES["skin"]
    for name in _PAINT_ORDER:
        codes[MplPath(polys[name]).contains_points(pts)] = PART_CODES[name]
    codes[MplPath(polys["mouth"]).contains_points(pts)] = PART_CODES["background"]
    return codes


def colorize(labels: np.ndarray) -> np.ndarray:
    """RGB ``(H, W, 3)`` picture of a label image."""
    return PART_COLORS[np.clip(labels, 0, len(PART_COLORS) - 1)]


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend the coloured labels over an RGB image, with part outlines drawn opaque."""
    import cv2

    img = image.astype(np.float32)
    col = colorize(labels).astype(np.float32)
    m = (labels > 0)[..., None]
    out = np.where(m, (1 - alpha) * img + alpha * col, img)
    for code in range(1, len(PART_NAMES)):
        mask = (labels == code).astype(np.uint8)
        if mask.any():
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, contours, -1, tuple(float(c) for c in PART_COLORS[code]), 1)
    return np.clip(out, 0, 255).astype(np.uint8)


def triangle_labels(model) -> np.ndarray:
    """(F,) uint8: each triangle's part code of a face model, the majority of its vertices' labels
    (the first vertex's when all three differ). The synthetic renderer labels its truth this way,
    and the ``model`` face parser its masks."""
    lab = model.part_labels[model.triangles]
    a, b, c = lab[:, 0], lab[:, 1], lab[:, 2]
    return np.where((a == b) | (a == c), a, np.where(b == c, b, a)).astype(np.uint8)
