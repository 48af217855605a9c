"""A small skeleton for the exported head: root, neck, head, jaw and the two eyes, with skin weights.

Joints (model space at the fitted scale, metres; rest rotations identity, so a joint's inverse
bind matrix is a translation by minus its rest position)::

    root (bottom of the neck) -> neck -> head -> jaw
                                             -> eye_left, eye_right

- eyes: the eyeballs' sphere centres; the eyeball vertices are rigid to their eye joint, so an
  engine turning an eye joint turns the eyeball (iris and cornea) about its centre;
- head: behind the midpoint of the jawline ends (iBUG-68 points 0 and 16, near the ears), where
  the skull turns on the spine;
- jaw: the jaw hinge, the centre of the rotation that best explains the model's ``jawOpen``
  on the chin and lower teeth; its weights are the model's own jaw region:
  each vertex's ``jawOpen`` displacement over the largest one (chin, lower lip, lower teeth,
  tongue 1, the upper face 0, a smooth falloff on the cheeks);
- neck: a third of the way from the bottom of the neck to the head joint; the skin between the
  neck joint and the chin blends smoothly (smoothstep) from the neck to the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arkit import eye_centres

JOINT_NAMES = ("root", "neck", "head", "jaw", "eye_left", "eye_right")
JOINT_PARENTS = (-1, 0, 1, 2, 2, 2)


@dataclass(frozen=True)
class Skeleton:
    """Joints and per model vertex skin weights."""

    names: tuple[str, ...]
    parents: tuple[int, ...]
    """Parent joint index of each joint (-1: the root)."""
    positions: np.ndarray
    """(J, 3) rest positions, model space at the fitted scale (metres)."""
    joints: np.ndarray
    """(N, 4) uint8 joint indices per model vertex (distinct within a vertex)."""
    weights: np.ndarray
    """(N, 4) float32 weights, summing to 1 per vertex."""

    def local_translations(self) -> np.ndarray:
        """(J, 3) each joint's rest position relative to its parent."""
        out = self.positions.copy()
        for j, p in enumerate(self.parents):
            if p >= 0:
                out[j] = self.positions[j] - self.positions[p]
        return out


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def _jaw_hinge(v: np.ndarray, jaw_delta: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """The jaw joint: the centre of the rotation about the X axis that best explains ``jawOpen``
    on the vertices it moves most (chin, lower teeth), i.e. the model's own hinge. Small-angle
    rotation by w about X through c: dy = -w (z - cz), dz = w (y - cy), linear in (w, w cz, w cy)."""
    m = np.linalg.norm(jaw_delta, axis=1)
    sel = m > 0.7 * m.max() if m.max() > 0 else np.zeros(len(m), bool)
    if sel.sum() < 10:
        return np.array([0.0, fallback[1], fallback[2]])
    y, z = v[sel, 1], v[sel, 2]
    ones, zeros = np.ones(sel.sum()), np.zeros(sel.sum())
    A = np.concatenate([np.stack([-z, ones, zeros], 1), np.stack([y, zeros, -ones], 1)])
    rhs = np.concatenate([jaw_delta[sel, 1], jaw_delta[sel, 2]])
    w, wcz, wcy = np.linalg.lstsq(A, rhs, rcond=None)[0]
    if abs(w) < 1e-6:
        return np.array([0.0, fallback[1], fallback[2]])
    return np.array([0.0, wcy / w, wcz / w])


def build_skeleton(model, verts: np.ndarray, jaw_delta: np.ndarray | None) -> Skeleton:
    """Skeleton of the head ``verts`` (N, 3) metres (module docstring). ``jaw_delta`` (N, 3) is
    the ``jawOpen`` shape (None: no jaw weights)."""
    v = np.asarray(verts, np.float64)
    lm = model.landmarks68
    ends = v[lm[[0, 16]]].mean(0) if len(lm) >= 17 else v.mean(0)
    chin_y = float(v[lm[8], 1]) if len(lm) > 8 else float(v[:, 1].min())
    bottom = float(v[:, 1].min())
    depth = float(v[:, 2].max() - v[:, 2].min())
    head = np.array([0.0, ends[1] - 0.1 * depth, ends[2] - 0.15 * depth])
    jaw = np.array([0.0, ends[1], ends[2]]) if jaw_delta is None else _jaw_hinge(v, np.asarray(jaw_delta), ends)
    root = np.array([0.0, bottom, head[2]])
    neck = root + (head - root) / 3
    centres = eye_centres(model, v)
    eye_l = centres.get("eyeball_left", head + [0.03, 0.05, 0.08])
    eye_r = centres.get("eyeball_right", head + [-0.03, 0.05, 0.08])
    pos = np.stack([root, neck, head, jaw, eye_l, eye_r])

    N = len(v)
    # the neck takes the skin below the chin, fading in from the chin down to the neck joint
    w_neck = _smoothstep((chin_y - v[:, 1]) / max(chin_y - neck[1], 1e-6))
    if jaw_delta is not None:
        m = np.linalg.norm(np.asarray(jaw_delta, np.float64), axis=1)
        w_jaw = np.clip(m / max(m.max(), 1e-12), 0, 1)
    else:
        w_jaw = np.zeros(N)
    w_jaw = w_jaw * (1 - w_neck)
    w_head = 1 - w_neck - w_jaw
    joints = np.tile(np.array([2, 1, 3, 0], np.uint8), (N, 1))  # head, neck, jaw, root
    weights = np.stack([w_head, w_neck, w_jaw, np.zeros(N)], 1)
    for sub, j in (("eyeball_left", 4), ("eyeball_right", 5)):
        if sub in model.submeshes:
            a, b = model.submeshes[sub]
            joints[a:b] = [j, 2, 1, 3]
            weights[a:b] = [1.0, 0.0, 0.0, 0.0]
    weights = np.clip(weights, 0, 1)
    weights /= weights.sum(1, keepdims=True)
    weights = weights.astype(np.float32)
    # glTF: a slot with weight zero must name joint 0 (the validator warns otherwise)
    joints[weights == 0] = 0
    return Skeleton(JOINT_NAMES, JOINT_PARENTS, pos, joints, weights)
