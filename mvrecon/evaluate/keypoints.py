"""A face model's iBUG-68 points in the annotators' convention (the ``ibug`` keypoint set).

A model's ``landmarks68`` are vertices someone picked; where brows, jaw and nose points go is a
convention, and people annotating a scan (and MediaPipe, whose 478 points :mod:`mvrecon.cues.mapping`
maps to iBUG-68) place several of them elsewhere. The ``ibug`` set puts each iBUG point where
MediaPipe's mapped points fall on the model's surface, from the model's MediaPipe embedding
(:mod:`mvrecon.cues.embedding`: per MediaPipe point, the robust centre of where it landed on
rendered synthetic heads of the model, on the mean shape): iBUG point ``i`` is the mean of its
MediaPipe points' embedded positions on the mean shape, snapped to the mean surface, and kept as a
triangle with barycentric weights, so that it follows any identity and expression.

On the ICT model the two sets differ by millimetres (``bench/eval.py --conventions`` prints it per
part), least on the eyes and lips, most on the jaw, whose cheek-side points lie centimetres deeper
(on the face's outline seen from the side, not on its front).

It is not the default (:attr:`EvalConfig.pred_keypoints` is ``"model"``), because it does not
bring the model's landmarks nearer to how people annotate a scan: the placement of the mapping's
contour points (jaw, brows, nose bridge) was itself tuned to the model's landmark vertices
(:mod:`mvrecon.cues.mapping`), so for exactly the parts where conventions differ MediaPipe is not
an independent annotator. Measured on a synthetic session whose scan landmarks follow the
annotator convention of :mod:`mvrecon.synth.realism` (brows on the upper edge, jaw on the frontal
silhouette), with the true surface as the prediction: the ``ibug`` set lies farther from the
annotated brows than the model's vertices and about as far from the annotated jaw, and it made
the REALY figure (then a transcription, before ``realy`` reached parity) worse, the robust figure
staying small with either. The convention gap is therefore met by the robust protocol, which
does not depend on it, not by a keypoint set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

KeypointSetName = Literal["ibug", "model"]


@dataclass(frozen=True)
class KeypointSet:
    """68 surface points of a model topology: point ``i`` is ``sum_k bary[i, k] * verts[triangles[triangle[i], k]]``.

    ``name`` ``"ibug"``; ``triangle`` ``(68,)`` int64 model triangle ids; ``bary`` ``(68, 3)``.
    """

    name: str
    triangle: np.ndarray
    bary: np.ndarray

    def points(self, vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
        """``(68, 3)`` points on a mesh ``vertices`` ``(N, 3)`` of the model's topology."""
        idx = np.asarray(triangles, dtype=np.int64)[self.triangle]
        return np.einsum("pk,pkd->pd", self.bary, np.asarray(vertices, dtype=np.float64)[idx])


def ibug_from_embedding(model, embedding) -> KeypointSet:
    """The ``ibug`` :class:`KeypointSet` of ``model`` from its MediaPipe ``embedding`` (module docstring)."""
    from ..cues.embedding import EMBED_SUBMESHES
    from ..cues.mapping import MP_TO_IBUG68
    from ..render.raycast import MeshScene

    mean = np.asarray(model.mean, dtype=np.float64)
    tris = np.asarray(model.triangles, dtype=np.int64)
    centres = MP_TO_IBUG68 @ embedding.points(mean, tris)
    # a point averaged from two MediaPipe points lies on their chord, a little off the surface
    tri_ids = model.render_triangle_ids(EMBED_SUBMESHES)
    origin = mean.mean(0)
    tri, uv32, _ = MeshScene(mean - origin, tris[tri_ids]).closest(centres - origin)
    uv = uv32.astype(np.float64)
    bary = np.clip(np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], 1), 0.0, 1.0)
    bary /= bary.sum(1, keepdims=True)
    return KeypointSet("ibug", tri_ids[tri], bary)


def ibug_keypoints(model) -> KeypointSet | None:
    """The model's ``ibug`` set, or None when the model has no MediaPipe embedding
    (``mvrecon model embed``)."""
    from ..cues.embedding import find_embedding

    emb = find_embedding(model)
    return None if emb is None else ibug_from_embedding(model, emb)


def model_landmarks(model, vertices: np.ndarray, name: KeypointSetName) -> tuple[np.ndarray, str]:
    """The 68 landmarks ``(68, 3)`` of a mesh ``vertices`` ``(N, 3)`` in the model's topology, in the
    convention ``name``, and the set actually used (``"model"`` when ``ibug`` is asked for but the
    model has no embedding)."""
    v = np.asarray(vertices, dtype=np.float64)
    if name == "ibug":
        ks = ibug_keypoints(model)
        if ks is not None:
            return ks.points(v, model.triangles), "ibug"
    return v[np.asarray(model.landmarks68)].copy(), "model"
