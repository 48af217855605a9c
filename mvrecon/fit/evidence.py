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


__all__ = ["skin_weights"]
