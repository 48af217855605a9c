"""The fixed mapping from MediaPipe's 478 face-mesh points to the iBUG-68 layout.

Each iBUG point is one MediaPipe point or the mean of two neighbours on the same MediaPipe
contour. How the table was chosen (checked on ``skimage.data.astronaut()``, overlay written by
``bench/cues.py --overlay`` / ``mvrecon cues image``):

- Jaw 0-16: MediaPipe's face oval from 127 (right temple, at eye-corner height, where iBUG 0 sits)
  down to the chin 152 and up to 356. iBUG jaw points are evenly spaced along the contour, the oval
  points are not, so the table picks the oval point (or mean of two) nearest each 1/8 of the arc
  length of each half (arc fractions measured on the astronaut's mesh: 234 0.09, 93 0.17,
  132 0.27, 58 0.37, 172 0.48, 136 0.57, 150 0.67, 149 0.75, 176 0.83, 148 0.91).
- Brows 17-26: MediaPipe's *upper* brow contour (70 63 105 66 107 / 336 296 334 293 300),
  because the iBUG brow points trace the brow's upper edge (``mvrecon.parts`` thickens the brow
  polygon downwards from them).
- Nose bridge 27-30: nasion 168 down to the tip; MediaPipe's 4 and 1 sit on the upper and lower
  part of the tip's bulb, and their mean lands on the tip as seen (astronaut: the highlight);
  28 and 29 at a third and two thirds of the line from 168 to 1 (197, 5). Nostril base 31-35: alar base 98 / 327, 97 / 326 halfway to the subnasale 2.
- Eyes 36-47: corners 33, 133, 362, 263; the lid points at a third and two thirds along
  MediaPipe's 9-point lid contours (160 158 / 153 144, 385 387 / 373 380).
- Lips 48-67: outer corners 61 / 291, centres 0 / 17, the others at thirds of the outer contour
  (means where a third falls between two points); inner corners 78 / 308, centres 13 / 14 and
  the points halfway between (81 311 / 402 178).

MediaPipe indexes the subject's right side (image left in a frontal photo) with the lower
numbers, as iBUG does, so no left/right swap is needed.
"""

from __future__ import annotations

import numpy as np

#: ``IBUG68_FROM_MP[i]`` lists the MediaPipe indices averaged for iBUG point ``i``.
IBUG68_FROM_MP: tuple[tuple[int, ...], ...] = (
    # jaw 0-16
    (127,), (234, 93), (132,), (58,), (172,), (136, 150), (149,), (176, 148), (152,),
    (377, 400), (378,), (379, 365), (397,), (288,), (361,), (323, 454), (356,),
    # right brow 17-21 (outer to inner), left brow 22-26 (inner to outer)
    (70,), (63,), (105,), (66,), (107,),
    (336,), (296,), (334,), (293,), (300,),
    # nose bridge 27-30, nostril base 31-35
    (168,), (197,), (5,), (4, 1),
    (98,), (97,), (2,), (326,), (327,),
    # right eye 36-41, left eye 42-47
    (33,), (160,), (158,), (133,), (153,), (144,),
    (362,), (385,), (387,), (263,), (373,), (380,),
    # outer lips 48-59
    (61,), (40, 39), (37,), (0,), (267,), (269, 270), (291,),
    (321, 405), (314,), (17,), (84,), (181, 91),
    # inner lips 60-67
    (78,), (81,), (13,), (311,), (308,), (402,), (14,), (178,),
)

N_MEDIAPIPE = 478


def _weights() -> np.ndarray:
    w = np.zeros((68, N_MEDIAPIPE), np.float64)
    for i, idx in enumerate(IBUG68_FROM_MP):
        w[i, list(idx)] = 1.0 / len(idx)
    return w


#: ``(68, 478)`` averaging matrix: ``lm68 = MP_TO_IBUG68 @ lm478``.
MP_TO_IBUG68: np.ndarray = _weights()
MP_TO_IBUG68.setflags(write=False)


def mediapipe_to_ibug68(points: np.ndarray, confidence: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """iBUG-68 points ``(68, D)`` from MediaPipe points ``(478, D)`` (any D: 2D pixels or 3D).

    The confidence of an averaged point is the smaller of its two sources' (a point is only as
    visible as its least visible part). Returns new arrays; the inputs are not modified.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] != N_MEDIAPIPE:
        raise ValueError(f"expected ({N_MEDIAPIPE}, D) MediaPipe points, got {pts.shape}")
    out = MP_TO_IBUG68 @ pts
    if confidence is None:
        return out, None
    c = np.asarray(confidence, dtype=np.float64)
    masked = np.where(MP_TO_IBUG68 > 0, c[None, :], np.inf)
    return out, masked.min(axis=1)
