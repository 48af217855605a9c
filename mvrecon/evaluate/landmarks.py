"""The 68 landmarks themselves: whether a file is in iBUG-68 order, and how far the prediction's
and the scan's landmarks agree.

Order. A landmark file in another order (grouped by part, say jaw, eyes, brows, nose, mouth) reads
as 68 valid points and scores centimetres. The points' geometry says which is which: after a
similarity fit of an iBUG-68 layout (:func:`mvrecon.evaluate.synthetic.face_landmarks`, a
procedural face) onto the points, every part lies within a fraction of an eye distance of where
iBUG puts it, whatever the annotator's convention (conventions move points by millimetres along
the surface; the jaw is judged in the face's plane, since the ICT model's own jaw points sit 2 cm
deeper than MediaPipe's), while a part under another part's numbers lies centimetres off.

Agreement. After the 7-keypoint alignment, the distance between each prediction landmark and the
scan's, summarised per part (:data:`LANDMARK_GROUPS`). For a prediction close to the scan, a part
whose landmarks sit millimetres apart means the two follow different conventions (where brows and
jaw points go is a convention, not a feature), and the REALY protocol (``realy``), which anchors on
those landmarks, then measures the convention more than the surface. A prediction off in that
part gives a gap too (a fast 4-view fit's jaw: 5 mm), hence the warning's wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import umeyama

#: Landmark parts (iBUG-68, 0-based index ranges).
LANDMARK_GROUPS: dict[str, tuple[int, int]] = {
    "jaw": (0, 17),
    "brows": (17, 27),
    "nose": (27, 36),
    "eyes": (36, 48),
    "lips": (48, 68),
}
#: A part whose points lie farther than this (median, in eye distances) from the fitted iBUG
#: layout is not where iBUG numbers it. It lies above what ICT heads of random identity and
#: expression reach in the model's convention and in MediaPipe's, and well below what a file
#: grouped jaw, eyes, brows, nose, mouth or with left and right swapped gives
#: (tests/evaluate/test_eval_conventions.py).
ORDER_TOLERANCE = 0.35


def _group_slices() -> list[tuple[str, slice]]:
    return [(name, slice(a, b)) for name, (a, b) in LANDMARK_GROUPS.items()]


def check_ibug_order(points: np.ndarray, source: str | Path) -> None:
    """Raise :class:`InputError` naming ``source`` when landmarks ``(68, 3)`` (any units) are not
    in iBUG-68 order (see the module docstring)."""
    from .synthetic import face_landmarks

    tpl = face_landmarks()
    pts = np.asarray(points, dtype=np.float64)
    fit = umeyama(tpl, pts, with_scale=True)
    eye = fit.scale * float(np.linalg.norm(tpl[42:48].mean(0) - tpl[36:42].mean(0)))
    if not np.isfinite(eye) or eye <= 0:
        raise InputError("landmarks are degenerate (all 68 points coincide)", source)
    # the jaw in the face's plane only: how deep a jaw point sits is a convention (the ICT model's
    # lie 2 cm deeper than MediaPipe's), where it sits in the front view is not; the other parts
    # in 3D, so that a face numbered left for right (a mirror image) cannot pass as a turned one
    d = fit.apply(tpl) - pts
    z = fit.rotation[:, 2]
    d[:17] -= np.outer(d[:17] @ z, z)
    res = np.linalg.norm(d, axis=1) / eye
    off = {name: float(np.median(res[sl])) for name, sl in _group_slices()}
    bad = [(name, sl) for name, sl in _group_slices() if off[name] > ORDER_TOLERANCE]
    if bad:
        where = ", ".join(f"{sl.start}-{sl.stop - 1} ({name})" for name, sl in bad)
        lo, hi = min(off[n] for n, _ in bad), max(off[n] for n, _ in bad)
        raise InputError(
            f"landmarks are not in iBUG-68 order: fitted to the iBUG-68 layout, points {where} lie "
            f"{lo:.1f}-{hi:.1f} eye distances from their places (expected jaw 0-16, brows 17-26, nose 27-35, "
            "eyes 36-47, mouth 48-67, subject's right first)",
            source,
        )


@dataclass(frozen=True)
class LandmarkAgreement:
    """Prediction-to-scan landmark distances after the 7-keypoint alignment.

    ``per_landmark_mm`` ``(68,)``; ``groups`` part -> (median, max) mm; ``warning`` one line when a
    part's median exceeds ``warn_mm`` (else empty).
    """

    per_landmark_mm: np.ndarray
    groups: dict[str, tuple[float, float]]
    warn_mm: float
    warning: str = ""

    @property
    def median_mm(self) -> float:
        return float(np.median(self.per_landmark_mm))

    def to_dict(self) -> dict:
        return {
            "gap_median_mm": {g: round(m, 3) for g, (m, _) in self.groups.items()},
            "gap_max_mm": {g: round(x, 3) for g, (_, x) in self.groups.items()},
            "gap_all_median_mm": round(self.median_mm, 3),
            "per_landmark_mm": [round(float(x), 3) for x in self.per_landmark_mm],
            "warn_mm": self.warn_mm,
            "conventions_differ": bool(self.warning),
            "warning": self.warning,
            "protocol": "distance between each prediction landmark and the scan's after the 7-keypoint "
            "similarity (eye corners, subnasale, mouth corners); median and max per part",
        }


def landmark_agreement(
    pred_landmarks: np.ndarray, scan_landmarks: np.ndarray, warn_mm: float = 2.5
) -> LandmarkAgreement:
    """:class:`LandmarkAgreement` of aligned prediction and scan landmarks ``(68, 3)`` (metres)."""
    gap = np.linalg.norm(np.asarray(pred_landmarks) - np.asarray(scan_landmarks), axis=1) * 1e3
    groups = {name: (float(np.median(gap[sl])), float(gap[sl].max())) for name, sl in _group_slices()}
    off = [f"{g} {m:.1f} mm" for g, (m, _) in groups.items() if m > warn_mm]
    warning = ""
    if off:
        warning = (
            f"landmark conventions differ (or the prediction is off there): {', '.join(off)} apart (median, "
            f"after the 7-point alignment; > {warn_mm:g} mm); the REALY (realy) figures measure that more than "
            "the surface"
        )
    return LandmarkAgreement(gap, groups, warn_mm, warning)
