"""Where the person is in a photo: MediaPipe's bundled selfie segmentation, refined by colour.

The texture bake projects the fitted mesh into every photo; wherever the mesh is a little larger
than the head in the photo (hair volume the model does not have, a fit a millimetre off at the
silhouette) the projected texels land on the studio backdrop, and the fill then smears that
colour over every unseen texel. A per-pixel person probability from image evidence stops that:

1. MediaPipe's selfie segmentation (general model, shipped inside the ``mediapipe`` wheel, no
   download) gives a soft person mask at 256 x 256;
2. its boundary band is refined by colour: one Gaussian colour model for the sure backdrop and one
   for the sure person (both from the photo itself); inside the band a pixel's probability is
   the person model's share of the two likelihoods where the colours tell them apart clearly,
   the network's mask where they do not.

A mask that disagrees with the fitted head's own silhouette (the network missed the person, as
it can on a close crop with no shoulders) is not used: the function returns None and the bake
falls back to the geometry alone.
"""

from __future__ import annotations

import logging
import threading

import cv2
import numpy as np

log = logging.getLogger(__name__)
_LOCK = threading.RLock()
_SEGMENTER = None


def _segmenter():
    global _SEGMENTER
    with _LOCK:
        if _SEGMENTER is None:
            import mediapipe as mp

            _SEGMENTER = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
        return _SEGMENTER


def selfie_mask(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 person probability of an RGB image (H, W, 3) float in [0, 1] (any encoding)."""
    u8 = np.clip(np.round(np.asarray(image) * 255), 0, 255).astype(np.uint8)
    with _LOCK:
        res = _segmenter().process(np.ascontiguousarray(u8))
    m = res.segmentation_mask
    if m is None:
        return np.zeros(image.shape[:2], np.float32)
    return np.clip(np.asarray(m, np.float32), 0, 1)


def _gauss_loglik(x: np.ndarray, samples: np.ndarray) -> np.ndarray:
    mu = samples.mean(0)
    cov = np.cov(samples.T) + np.eye(3) * 1e-4
    inv = np.linalg.inv(cov)
    d = x - mu
    return -0.5 * np.einsum("nc,cd,nd->n", d, inv, d) - 0.5 * np.log(np.linalg.det(cov))


def refine_by_colour(
    image: np.ndarray, mask: np.ndarray, band_px: int = 12, max_samples: int = 20000, seed: int = 0
) -> np.ndarray:
    """(H, W) float32: ``mask`` with its boundary band (``band_px`` either side of the 0.5 level)
    re-estimated from colour models of the sure backdrop and the sure person."""
    img = np.asarray(image, np.float64)
    fg = mask > 0.5
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band_px + 1, 2 * band_px + 1))
    sure_fg = cv2.erode(fg.astype(np.uint8), k) > 0
    sure_bg = cv2.erode((~fg).astype(np.uint8), k) > 0
    band = ~sure_fg & ~sure_bg
    if sure_fg.sum() < 50 or sure_bg.sum() < 50 or not band.any():
        return mask.astype(np.float32)
    rng = np.random.default_rng(seed)

    def pick(m):
        pts = img[m]
        return pts[rng.choice(len(pts), min(len(pts), max_samples), replace=False)]

    x = img[band]
    lf, lb = _gauss_loglik(x, pick(sure_fg)), _gauss_loglik(x, pick(sure_bg))
    p = 1.0 / (1.0 + np.exp(np.clip(lb - lf, -50, 50)))
    # the colour decides where it is clear (log-likelihoods far apart), the network elsewhere
    conf = np.clip(np.abs(lf - lb) / 10.0, 0, 1)
    out = mask.astype(np.float32).copy()
    out[band] = conf * p + (1 - conf) * out[band]
    return out


def person_mask(
    image: np.ndarray, silhouette: np.ndarray | None = None, min_agreement: float = 0.6
) -> np.ndarray | None:
    """(H, W) float32 person probability of a photo (H, W, 3) in [0, 1], or None when the
    segmentation disagrees with ``silhouette`` (H, W) bool, the fitted head's projection: fewer
    than ``min_agreement`` of its pixels are on the person."""
    m = refine_by_colour(image, selfie_mask(image))
    if silhouette is not None and silhouette.any():
        agree = float((m[silhouette] > 0.5).mean())
        if agree < min_agreement:
            log.info("person mask: only %.0f%% of the fitted head lies on the segmented person; not used", 100 * agree)
            return None
    return m
