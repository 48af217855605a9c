"""The model's expression shapes as Apple ARKit's 52 blendshapes (names, order and semantics).

ICT-FaceKit's 53 expressions follow ARKit but with their own spelling (``eyeBlink_L``), with
``browInnerUp`` and ``cheekPuff`` split into left and right halves and without ``tongueOut``.
Mapping (model space: +X is the subject's left, so ICT's ``_L`` is ARKit's ``Left``):

- ``xxx_L`` / ``xxx_R`` -> ``xxxLeft`` / ``xxxRight``;
- ``browInnerUp`` = ``browInnerUp_L`` + ``browInnerUp_R`` and ``cheekPuff`` = ``cheekPuff_L`` +
  ``cheekPuff_R`` (the halves touch disjoint skin, so the sum is the symmetric shape); a captured
  weight pair maps to their mean;
- ``tongueOut`` is built from the tongue and the jaw: a third of ``jawOpen`` plus the tongue
  (the gums/tongue vertices that move with the jaw and lie away from the teeth) pushed forward
  by up to 22 mm, most at its tip, blended smoothly into the floor of the mouth;
- ``eyeLook*`` in ICT move the lids only; the eyeballs are rotated about their centres
  (linearised: the morph delta of a rotation by the full gaze angle) so the eyes turn too.

``--morph-names ict`` keeps the model's own names and shapes (with the eye rotations added).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..geometry import axis_angle_to_matrix

#: Apple's ARKit blendshape locations, in ARFaceAnchor.BlendShapeLocation's documented order
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft",
    "eyeLookDownLeft",
    "eyeLookInLeft",
    "eyeLookOutLeft",
    "eyeLookUpLeft",
    "eyeSquintLeft",
    "eyeWideLeft",
    "eyeBlinkRight",
    "eyeLookDownRight",
    "eyeLookInRight",
    "eyeLookOutRight",
    "eyeLookUpRight",
    "eyeSquintRight",
    "eyeWideRight",
    "jawForward",
    "jawLeft",
    "jawRight",
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthLeft",
    "mouthRight",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "noseSneerLeft",
    "noseSneerRight",
    "tongueOut",
)
assert len(ARKIT_NAMES) == 52 and len(set(ARKIT_NAMES)) == 52

#: gaze angles of a full eyeLook* weight (degrees): ARKit's eye range, roughly
GAZE_DEG = {"Out": 30.0, "In": 30.0, "Up": 25.0, "Down": 25.0}
TONGUE_OUT_MM = 22.0
TONGUE_JAW = 1.0 / 3.0


@dataclass(frozen=True)
class MorphSet:
    """Expression shapes as the asset carries them."""

    names: list[str]
    deltas: np.ndarray
    """(K, N, 3) per model vertex position deltas (model units, before the fitted scale)."""
    from_model: np.ndarray
    """(K, K_model) maps the model's expression weights to these shapes' weights."""
    sources: dict[str, str]
    """How each shape was made (for asset.json)."""


def ict_to_arkit_name(name: str) -> str:
    if name.endswith("_L"):
        return name[:-2] + "Left"
    if name.endswith("_R"):
        return name[:-2] + "Right"
    return name


def _eye_centre(points: np.ndarray) -> np.ndarray:
    """Least-squares sphere centre of the eyeball's vertices (the rotation centre; the mean lies
    forward of it because of the cornea)."""
    A = np.c_[2 * points, np.ones(len(points))]
    b = (points**2).sum(1)
    sol = np.linalg.lstsq(A, b, rcond=None)[0]
    return sol[:3]


def eye_centres(model, neutral: np.ndarray) -> dict[str, np.ndarray]:
    """Rotation centre (3,) of each eyeball sub-mesh ('eyeball_left', 'eyeball_right') on ``neutral``."""
    out = {}
    for side in ("eyeball_left", "eyeball_right"):
        if side in model.submeshes:
            a, b = model.submeshes[side]
            out[side] = _eye_centre(np.asarray(neutral[a:b], np.float64))
    return out


def gaze_rotation(side: str, direction: str, deg: float | None = None) -> np.ndarray:
    """(3, 3) rotation of an eye (``side`` 'Left'/'Right', the subject's) looking ``direction``
    ('Out', 'In', 'Up', 'Down') by its full angle. Model space: +Z is the gaze at rest, +X the
    subject's left, +Y up."""
    deg = GAZE_DEG[direction] if deg is None else deg
    if direction in ("Up", "Down"):
        # a rotation about +X by a negative angle turns +Z towards +Y
        return axis_angle_to_matrix(np.radians(-deg if direction == "Up" else deg) * np.array([1.0, 0.0, 0.0]))
    towards_plus_x = (direction == "Out") == (side == "Left")
    # about +Y a positive angle turns +Z towards +X
    return axis_angle_to_matrix(np.radians(deg if towards_plus_x else -deg) * np.array([0.0, 1.0, 0.0]))


def _eye_look_deltas(model, neutral: np.ndarray) -> dict[str, np.ndarray]:
    """ARKit name -> (N, 3) eyeball rotation delta (zero off the eyeball)."""
    out = {}
    centres = eye_centres(model, neutral)
    for sub, side in (("eyeball_left", "Left"), ("eyeball_right", "Right")):
        if sub not in centres:
            continue
        a, b = model.submeshes[sub]
        p = np.asarray(neutral[a:b], np.float64) - centres[sub]
        for d in GAZE_DEG:
            R = gaze_rotation(side, d)
            delta = np.zeros((model.n_vertices, 3))
            delta[a:b] = p @ R.T - p
            out[f"eyeLook{d}{side}"] = delta
    return out


def tongue_weights(model, neutral: np.ndarray, basis: np.ndarray, names: list[str]) -> np.ndarray:
    """(N,) in [0, 1]: how much of the tongue-out push each vertex takes (0 off the tongue)."""
    w = np.zeros(model.n_vertices)
    if "gums_tongue" not in model.submeshes or "teeth" not in model.submeshes or "jawOpen" not in names:
        return w
    a, b = model.submeshes["gums_tongue"]
    ta, tb = model.submeshes["teeth"]
    p = np.asarray(neutral[a:b], np.float64)
    dist, _ = cKDTree(np.asarray(neutral[ta:tb], np.float64)).query(p)
    jaw = np.linalg.norm(basis[names.index("jawOpen")][a:b], axis=1)
    moves = np.clip((jaw / max(jaw.max(), 1e-12) - 0.3) / 0.2, 0, 1)  # lower half of the mouth
    away = np.clip((dist - 0.002) / 0.003, 0, 1)  # off the gums around the teeth
    z = p[:, 2]
    sel = (moves > 0) & (away > 0)
    if not sel.any():
        return w
    front, back = z[sel].max(), z[sel].max() - 0.045
    along = np.clip((z - back) / (front - back), 0, 1)
    t = moves * away * along**1.5
    w[a:b] = t / max(t.max(), 1e-12)  # the tip moves the full distance
    return w


def morph_set(model, neutral: np.ndarray, naming: str = "arkit") -> MorphSet:
    """The expression shapes of ``model`` as ``naming`` ('arkit' or 'ict') asks (module docstring).
    ``neutral`` (N, 3) is the exported rest shape in model units (for eye centres and the tongue)."""
    basis = np.asarray(model.exp_basis, np.float64)
    names = list(model.exp_names)
    K0 = len(names)
    eye = _eye_look_deltas(model, neutral) if model.exp_kind == "blendshape" else {}
    if naming == "ict" or model.exp_kind != "blendshape":
        deltas = basis.copy()
        sources = {}
        for i, n in enumerate(names):
            arkit = ict_to_arkit_name(n)
            if arkit in eye:
                deltas[i] += eye[arkit]
                sources[n] = (
                    f"{n} + eyeball rotation {GAZE_DEG[arkit[7:].replace('Left', '').replace('Right', '')]:g} deg"
                )
        return MorphSet(names, deltas, np.eye(K0), sources)
    index = {ict_to_arkit_name(n): i for i, n in enumerate(names)}
    out, rows, sources = [], [], {}
    for name in ARKIT_NAMES:
        row = np.zeros(K0)
        if name in index:
            i = index[name]
            d = basis[i].copy()
            row[i] = 1.0
            sources[name] = names[i]
        elif f"{name}Left" in index and f"{name}Right" in index:
            il, ir = index[f"{name}Left"], index[f"{name}Right"]
            d = basis[il] + basis[ir]
            row[[il, ir]] = 0.5
            sources[name] = f"{names[il]} + {names[ir]}"
        elif name == "tongueOut" and "jawOpen" in names:
            tw = tongue_weights(model, neutral, basis, names)
            if not tw.any():
                continue
            d = TONGUE_JAW * basis[names.index("jawOpen")]
            d[:, 2] += tw * TONGUE_OUT_MM / 1000
            sources[name] = f"{TONGUE_JAW:.2f} x jawOpen + tongue pushed forward up to {TONGUE_OUT_MM:g} mm"
        else:
            continue
        if name in eye:
            d = d + eye[name]
            sources[name] += f" + eyeball rotation {GAZE_DEG[name[7:].replace('Left', '').replace('Right', '')]:g} deg"
        out.append(d)
        rows.append(row)
    return MorphSet([n for n in ARKIT_NAMES if n in sources], np.stack(out), np.stack(rows), sources)
