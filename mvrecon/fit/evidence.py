"""Which face pixels are bare skin: evidence from the subject's own skin colour.

The photometric term explains a pixel by albedo times shading of the model's surface. Hair, a
beard, the collar, the backdrop at the face's border and specular highlights are not that, and on
real photos they pulled the surface towards them. No face-parsing network ships here, so the
evidence comes from colour statistics of the subject's own skin, seeded by the cue masks:

- the seed: pixels labelled skin by the cues (eroded away from the part borders);
- a robust colour model of the seed (median and MAD) in chromaticity (r, g of r + g + b), which
  shading changes little, and in log brightness, which it changes a lot (so that test is loose);
- on skin-labelled pixels and the face's border, a pixel's weight falls smoothly with its
  chromaticity distance beyond 2.5 robust sigmas, and pixels much darker than skin ever gets (hair,
  stubble) get weight 0; the parts (brows, eyes, nose, lips) keep weight 1 (the albedo map paints
  them);
- pixels much brighter and paler than skin (highlights) get weight 0 everywhere.

A beard that covers most of the seed moves the median: the model is only as good as its seed, so
the weights are reported (``fit/summary.json``: the share of face pixels kept per view).
"""

from __future__ import annotations

import numpy as np

from ..parts import PART_CODES


def skin_weights(image: np.ndarray, labels: np.ndarray, min_seed: int = 200) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how much each pixel looks like the subject's skin.

    ``image`` (H, W, 3) float in [0, 1] (linear light or encoded, as the fit compares), ``labels``
    (H, W) part codes. Pixels outside the labelled face get 0; without enough seed pixels every face
    pixel gets 1 (no evidence either way)."""
    import cv2

    face = labels > 0
    out = np.zeros(labels.shape, np.float32)
    seed = cv2.erode((labels == PART_CODES["skin"]).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if seed.sum() < min_seed:
        out[face] = 1.0
        return out
    img = np.asarray(image, np.float64)
    s = img.sum(-1) + 1e-6
    chrom = img[..., :2] / s[..., None]
    lum = np.log(s / 3 + 1e-4)
    c_med = np.median(chrom[seed], 0)
    c_mad = np.median(np.abs(chrom[seed] - c_med), 0) * 1.4826 + 0.004
    l_med = np.median(lum[seed])
    l_mad = np.median(np.abs(lum[seed] - l_med)) * 1.4826 + 0.05
    dc = np.sqrt((((chrom - c_med) / c_mad) ** 2).sum(-1))
    w = np.exp(-0.5 * np.clip(dc - 2.5, 0, None) ** 2)
    dark = lum < l_med - max(4 * l_mad, 0.9)  # hair, stubble: far darker than any shaded skin
    w[dark] = 0.0
    # the parts (brows, eyes, nose, lips) are not skin-coloured but the albedo map paints them, and
    # their edges are the photometric term's sharpest multi-view cue: colour judges only the skin
    # and the face's border; a highlight (brighter and paler than skin) leaves wherever it is
    parts = labels > PART_CODES["skin"]
    w[parts] = 1.0
    sat = 1 - img.min(-1) / (img.max(-1) + 1e-6)
    s_med = np.median(sat[seed])
    bright = (lum > l_med + max(3 * l_mad, 0.35)) & (sat < 0.7 * s_med)
    w[bright] = 0.0
    out[face] = w[face]
    return out


def part_cuts(
    image: np.ndarray, labels: np.ndarray, parts: tuple[str, ...], radius: float = 0.06, iters: int = 5
) -> tuple[np.ndarray, dict[str, float]]:
    """The part masks ``labels`` (H, W) with each part of ``parts`` redrawn from the photo's colour:
    evidence of its own for PRDL, whose errors do not follow the landmarks'.

    The given mask seeds a two-class colour model (GrabCut: Gaussian mixtures of the part's and
    its surround's colours, with a contrast-sensitive boundary term): inside the seed is probably
    the part, a band of ``radius`` times the face's size around it probably not, beyond that
    certainly not. The cut keeps the pieces that touch the seed; a cut whose area is off the
    seed's by more than a factor of two (the colours did not separate) keeps the seed. ``image``
    (H, W, 3) uint8. Returns the new labels and, per part, the cut's area over the seed's (0 when
    the seed was kept)."""
    import cv2

    out = labels.copy()
    face = float(np.sqrt((labels > 0).sum()))
    r = max(2, int(round(radius * face)))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    ratios: dict[str, float] = {}
    img = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    for name in parts:
        code = PART_CODES[name]
        seed = labels == code
        ratios[name] = 0.0
        if seed.sum() < 12:
            continue
        near = cv2.dilate(seed.astype(np.uint8), disk) > 0
        ys, xs = np.nonzero(near)
        y0, y1 = max(0, ys.min() - r), min(labels.shape[0], ys.max() + r + 1)
        x0, x1 = max(0, xs.min() - r), min(labels.shape[1], xs.max() + r + 1)
        gc = np.full((y1 - y0, x1 - x0), cv2.GC_BGD, np.uint8)
        gc[near[y0:y1, x0:x1]] = cv2.GC_PR_BGD
        gc[seed[y0:y1, x0:x1]] = cv2.GC_PR_FGD
        try:
            cv2.grabCut(
                img[y0:y1, x0:x1].copy(), gc, None, np.zeros((1, 65)), np.zeros((1, 65)), iters, cv2.GC_INIT_WITH_MASK
            )
        except cv2.error:
            continue  # one colour only (a flat or saturated patch): no evidence either way
        cut = np.zeros_like(seed)
        cut[y0:y1, x0:x1] = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
        n, comp = cv2.connectedComponents(cut.astype(np.uint8))
        touch = np.unique(comp[cut & seed])
        cut = np.isin(comp, touch[touch > 0])
        ratio = float(cut.sum()) / float(seed.sum())
        if not 0.5 <= ratio <= 2.0:
            continue
        ratios[name] = ratio
        out[seed] = PART_CODES["skin"]
        out[cut & ((labels == code) | (labels == PART_CODES["skin"]))] = code
    return out, ratios


__all__ = ["part_cuts", "person_distance", "skin_weights"]


def person_distance(image: np.ndarray) -> np.ndarray | None:
    """(H, W) float32 signed distance (pixels, positive outside) to the boundary of the person in
    a photo (H, W, 3) uint8 RGB: MediaPipe's bundled selfie segmentation refined by colour
    (:func:`mvrecon.texture.person.person_mask`), cut at 0.5. None when the segmentation found no
    person or nothing but the person (no outline to use)."""
    from ..texture.person import person_mask
    from .losses.silhouette import signed_distance

    m = person_mask(np.asarray(image, np.float32) / 255.0)
    if m is None:
        return None
    fg = m > 0.5
    if fg.all() or not fg.any():
        return None
    return signed_distance(fg)
