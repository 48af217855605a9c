"""Registering the views' observations in UV space before they are combined.

A texel's point on the fitted surface is where every view is sampled; where the fit is off the
true surface by a depth error e along the normal, view v sees the true surface at a point shifted
by about e x tan(viewing angle) along its viewing direction, so the views' shading images of the
same wrinkle lie apart by up to a millimetre (the fine detail's own width). Under the studio's
fixed lighting a Lambertian face's shading is the same in every view, so each view is aligned to
the reference view (the one that sees the face best) by a smooth optical flow (OpenCV DIS) of
their high-passed log images; the parallax field of a smooth depth error is smooth, so the flow is
smoothed over a few millimetres and its magnitude bounded.
"""

from __future__ import annotations

import cv2
import numpy as np


def _to_u8(img: np.ndarray, seen: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.round(128 + np.where(seen, img, 0.0) / scale * 127), 0, 255).astype(np.uint8)


def _masked_blur(x: np.ndarray, w: np.ndarray, sigma: float) -> np.ndarray:
    num = cv2.GaussianBlur((x * w[..., None]).astype(np.float32), (0, 0), sigma)
    den = cv2.GaussianBlur(w.astype(np.float32), (0, 0), sigma)
    return num / np.maximum(den, 1e-6)[..., None]


def view_flows(
    images: list[np.ndarray], weights: list[np.ndarray], texel_mm: float, smooth_mm: float = 2.0, max_mm: float = 2.5
) -> tuple[int, list[np.ndarray]]:
    """(reference view index, per view (R, R, 2) flow in texels, x then y): view v's image at
    ``x + flow(x)`` matches the reference at ``x``. ``images`` (R, R) high-passed log images,
    ``weights`` (R, R) their view weights (0: not seen)."""
    ref = int(np.argmax([float(w.sum()) for w in weights]))
    R = images[ref].shape[0]
    seen_ref = weights[ref] > 0
    scale = 3.0 * float(np.std(images[ref][seen_ref])) if seen_ref.any() else 1.0
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    a = _to_u8(images[ref], seen_ref, scale)
    flows = []
    sig = smooth_mm / texel_mm
    lim = max_mm / texel_mm
    for v, (img, w) in enumerate(zip(images, weights)):
        if v == ref:
            flows.append(np.zeros((R, R, 2), np.float32))
            continue
        both = seen_ref & (w > 0)
        f = dis.calc(a, _to_u8(img, w > 0, scale), None)
        # the parallax of a smooth depth error is smooth: keep the flow's low band where both see
        conf = (both * np.minimum(w, weights[ref])).astype(np.float32)
        f = _masked_blur(f, conf, sig) * (cv2.GaussianBlur(both.astype(np.float32), (0, 0), sig) > 0.2)[..., None]
        mag = np.linalg.norm(f, axis=-1, keepdims=True)
        flows.append((f * np.minimum(1.0, lim / np.maximum(mag, 1e-6))).astype(np.float32))
    return ref, flows


def warp(img: np.ndarray, flow: np.ndarray, nearest: bool = False) -> np.ndarray:
    """``img`` (R, R[, C]) sampled at x + flow(x) (zeros outside)."""
    R = img.shape[0]
    gx, gy = np.meshgrid(np.arange(R, dtype=np.float32), np.arange(R, dtype=np.float32))
    return cv2.remap(
        np.ascontiguousarray(img, np.float32),
        gx + flow[..., 0],
        gy + flow[..., 1],
        cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def parallax_depth(
    ref: int,
    flows: list[np.ndarray],
    parallax: list[np.ndarray],
    weights: list[np.ndarray],
    texel_mm: float,
    smooth_mm: float = 2.0,
) -> np.ndarray:
    """(R, R) depth (mm, along the fitted normal) of the true surface that explains the views'
    registration flows: view v shows the true surface at x + e a_v(x) (``parallax`` (R, R, 2) in
    texels (column, row) per mm), so its flow to the reference is f_v = e (a_ref - a_v); e is their
    per-texel least-squares solution, weighted by both views' weights, then smoothed."""
    num = np.zeros(flows[0].shape[:2], np.float64)
    den = np.zeros_like(num)
    for v, (f, a, w) in enumerate(zip(flows, parallax, weights)):
        if v == ref:
            continue
        d = parallax[ref] - a
        c = np.minimum(w, weights[ref]) * (w > 0) * (weights[ref] > 0)
        num += c * np.einsum("ijc,ijc->ij", d, f)
        den += c * np.einsum("ijc,ijc->ij", d, d)
    sig = smooth_mm / texel_mm
    num = cv2.GaussianBlur(num.astype(np.float32), (0, 0), sig)
    den = cv2.GaussianBlur(den.astype(np.float32), (0, 0), sig)
    # where the views hardly disagree on where the surface is (no baseline), no estimate
    floor = 0.05 * float(np.percentile(den[den > 0], 90)) if (den > 0).any() else 1.0
    return (num / np.maximum(den, floor)).astype(np.float32)
