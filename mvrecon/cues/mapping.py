"""The fixed mapping from MediaPipe's 478 face-mesh points to the iBUG-68 layout.

Each iBUG point is one MediaPipe point or the mean of two neighbours on the same MediaPipe contour
(jaw on the face oval, brows on the upper brow contour, eyes on the lid contours, lips on the
outer and inner lip contours). Two sources fixed the table:

1. Semantics, checked by eye on ``skimage.data.astronaut()`` (``python bench/cues.py overlay``
   writes the overlay with every iBUG number; the tests hold eye corners, nose tip, subnasale and
   mouth corners to hand-measured pixels): eye corners 33 / 133 / 362 / 263, lid points at a third
   and two thirds of the 9-point lid contours (160 158 / 153 144, 385 387 / 373 380), nasion 168,
   subnasale 2, alar bases 98 / 327, outer lip corners 61 / 291 and centres 0 / 17, inner corners
   78 / 308 and centres 13 / 14. MediaPipe numbers the subject's right side (image left in a
   frontal photo) low, as iBUG does, so no left/right swap is needed.
2. Placement along a contour, where iBUG is a convention rather than a feature (jaw, brows, nose
   bridge, lower lip thirds): matched to the iBUG landmarks of mvrecon's face model, because the
   landmark loss and PRDL compare these 2D points and masks with that model's landmark vertices.
   Measured on ``mvrecon.synth`` sessions (ICT-FaceKit heads, true projected landmarks; chosen on
   seeds 1-2, checked on seed 3): each point took the contour point, or mean of two neighbours,
   with the lowest median error over frontal views, kept only where both sessions agreed. On
   seed 3 this cut the median error (relative to the inter-ocular distance) of the jaw, the brows
   and the nose on frontal views, and of the jaw on views turned up to ~60 degrees, the jaw's
   most. The jaw then starts at the temple
   (0 = mean of 162 and 127) and reaches mouth height at 4; the brow points sit half-way between
   MediaPipe's upper-brow points (the brow spans from 70/63 to 107); the tip 30 is 4, the bridge
   29 the mean of 5 and 195.
"""

from __future__ import annotations

import numpy as np

#: ``IBUG68_FROM_MP[i]`` lists the MediaPipe indices averaged for iBUG point ``i``.
IBUG68_FROM_MP: tuple[tuple[int, ...], ...] = (
    # jaw 0-16
    (162, 127),
    (234,),
    (93,),
    (132,),
    (58, 172),
    (136, 150),
    (149,),
    (176, 148),
    (152,),
    (377, 400),
    (378,),
    (379, 365),
    (397, 288),
    (361,),
    (323,),
    (454,),
    (356, 389),
    # right brow 17-21 (outer to inner), left brow 22-26 (inner to outer)
    (70, 63),
    (63, 105),
    (105, 66),
    (66, 107),
    (107,),
    (336,),
    (336, 296),
    (296, 334),
    (334, 293),
    (293, 300),
    # nose bridge 27-30, nostril base 31-35
    (168,),
    (197,),
    (5, 195),
    (4,),
    (98,),
    (97,),
    (2,),
    (326,),
    (327,),
    # right eye 36-41, left eye 42-47
    (33,),
    (160,),
    (158,),
    (133,),
    (153,),
    (144,),
    (362,),
    (385,),
    (387,),
    (263,),
    (373,),
    (380,),
    # outer lips 48-59
    (61,),
    (40, 39),
    (37,),
    (0,),
    (267,),
    (269, 270),
    (291,),
    (321, 405),
    (314, 405),
    (17,),
    (84, 181),
    (181, 91),
    # inner lips 60-67
    (78,),
    (81,),
    (13,),
    (311,),
    (308,),
    (402,),
    (14,),
    (178,),
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


def mediapipe_to_ibug68(
    points: np.ndarray, confidence: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
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
