"""Identity detail shared by the frames of a session, expression wrinkles per frame.

Each frame's fine band is solved alone (:mod:`.solve`). A pore or a scar is there in every frame;
a forehead line that only shows with raised brows is there only in the frames whose surface is
compressed across it. So, per texel:

- the expression region of frame g, ``E_g`` in [0, 1]: where the fitted surface of that frame is
  stretched or compressed against the fit's neutral (the largest principal log-stretch of the UV
  metric, blurred a few millimetres; :func:`expression_regions`);
- the identity ``I``: the frames' fine bands averaged with weights 1 - E_g (the frames that are
  relaxed there); where every frame is in expression, their median;
- frame g's fine band: ``I + E_g (F_g - I)``: the identity outside its expression region, its own
  solve inside.

The session's exported displacement is the identity (the asset is the neutral head); the
per-frame bands stay in ``fine.npz``.
"""

from __future__ import annotations

import cv2
import numpy as np

from .grid import SurfaceTexels


def principal_log_stretch(neutral: SurfaceTexels, posed: SurfaceTexels) -> np.ndarray:
    """(M,) the largest |log principal stretch| of ``posed`` against ``neutral`` at the same
    texels (their UV tangents: G = T'T per texel; the stretches are the square roots of the
    eigenvalues of G_neutral^-1 G_posed; invariant to the frames' rotation and translation)."""

    def metric(s: SurfaceTexels) -> np.ndarray:
        a = np.einsum("mc,mc->m", s.dp_du, s.dp_du)
        b = np.einsum("mc,mc->m", s.dp_du, s.dp_dv)
        c = np.einsum("mc,mc->m", s.dp_dv, s.dp_dv)
        return np.stack([np.stack([a, b], -1), np.stack([b, c], -1)], -2)

    G0, G1 = metric(neutral), metric(posed)
    # symmetric form L^-1 G1 L^-T with G0 = L L'
    L = np.linalg.cholesky(G0 + 1e-30 * np.eye(2))
    Li = np.linalg.inv(L)
    S = Li @ G1 @ np.swapaxes(Li, -1, -2)
    ev = np.linalg.eigvalsh(0.5 * (S + np.swapaxes(S, -1, -2)))
    return np.abs(0.5 * np.log(np.maximum(ev, 1e-12))).max(-1)


def expression_regions(
    stretch: np.ndarray, mask: np.ndarray, texel_mm: float, ramp: tuple[float, float], blur_mm: float
) -> np.ndarray:
    """(R, R) in [0, 1]: 0 below ``ramp[0]`` log-stretch, 1 above ``ramp[1]``, from ``stretch``
    (M,) at the ``mask``'s texels, dilated and blurred by ``blur_mm`` (a wrinkle lies beside the
    strain that makes it, not only on it)."""
    img = np.zeros(mask.shape, np.float32)
    img[mask] = stretch
    sig = max(blur_mm / texel_mm, 0.5)
    k = 2 * int(round(sig)) + 1
    img = cv2.dilate(img, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    img = cv2.GaussianBlur(img, (0, 0), sig)
    lo, hi = ramp
    return (np.clip((img - lo) / max(hi - lo, 1e-9), 0.0, 1.0) * mask).astype(np.float32)


def split_frames(fine: np.ndarray, expression: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(identity (R, R), per-frame bands (G, R, R)) from the frames' own fine bands ``fine``
    (G, R, R) and their expression regions ``expression`` (G, R, R) in [0, 1] (see the module
    docstring)."""
    fine = np.asarray(fine, np.float32)
    E = np.clip(np.asarray(expression, np.float32), 0.0, 1.0)
    if len(fine) == 1:
        return fine[0].copy(), fine.copy()
    w = 1.0 - E
    ws = w.sum(0)
    relaxed = (w * fine).sum(0) / np.maximum(ws, 1e-6)
    # where every frame is in expression, no frame shows the relaxed skin: the median is the
    # least expression-bound guess
    everywhere = np.clip(1.0 - ws, 0.0, 1.0)
    identity = (1.0 - everywhere) * relaxed + everywhere * np.median(fine, 0)
    frames = identity[None] + E * (fine - identity[None])
    return identity.astype(np.float32), frames.astype(np.float32)
