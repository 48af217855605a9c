"""Accuracy of a fit against known geometry (synthetic sessions): surface distances in mm.

The fit and the truth share the model topology, but vertex-to-vertex distances would punish a
surface that is right but slid along itself; the distance is therefore from each fitted face
vertex to the closest point of the true surface (Open3D closest points), restricted to the face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import umeyama
from ..render.raycast import MeshQuery


@dataclass(frozen=True)
class SurfaceError:
    """Distances (mm) from the fitted face vertices to the true surface."""

    mean_mm: float
    median_mm: float
    p95_mm: float
    n_points: int

    @classmethod
    def of(cls, distances_mm: np.ndarray) -> SurfaceError:
        d = distances_mm
        return cls(float(d.mean()), float(np.median(d)), float(np.percentile(d, 95)), int(len(d)))

    def as_dict(self) -> dict[str, float]:
        return {"mean_mm": self.mean_mm, "median_mm": self.median_mm, "p95_mm": self.p95_mm, "n": self.n_points}


def face_vertices(model) -> np.ndarray:
    """(N,) bool: the face region of the model (every PRDL part, forehead included; no eyeballs,
    mouth interior or back of the head)."""
    a, b = model.submeshes.get("face", (0, model.n_vertices))
    m = np.zeros(model.n_vertices, bool)
    m[a:b] = True
    return m & (model.part_labels > 0)


def surface_error(
    fitted: np.ndarray, truth: np.ndarray, model, mask: np.ndarray | None = None, subset: np.ndarray | None = None
) -> SurfaceError:
    """Distances from ``fitted`` (N, 3) face vertices to the surface of ``truth`` (N, 3), metres in,
    mm out; both in the model topology and the same (world) frame. ``mask`` (N,) bool: the region
    (default :func:`face_vertices`); ``subset`` (N,) bool: report only these of its vertices (e.g.
    those a camera sees), still measured to the whole region's surface."""
    mask = face_vertices(model) if mask is None else mask
    tri = model.triangles
    keep = mask[tri].any(1)
    q = MeshQuery(np.asarray(truth, np.float64), tri[keep])
    pick = mask if subset is None else mask & subset
    return SurfaceError.of(q.closest(np.asarray(fitted, np.float64)[pick]).distances * 1e3)


def rigid_surface_error(fitted: np.ndarray, truth: np.ndarray, model, iters: int = 30) -> tuple[SurfaceError, float]:
    """:func:`surface_error` after the fitted face is moved rigidly (rotation and translation, no
    scale) onto the true surface by point-to-point ICP: the error of the shape alone, without
    where the rig put it. Also returns how far the alignment moved the face (mean, mm).

    A rig whose cameras moved since their calibration places the head a millimetre or two off
    (the cameras' common drift cannot be seen in the photos); this measure does not count that,
    as a scan comparison (REALY, NoW) does not."""
    mask = face_vertices(model)
    tri = model.triangles
    q = MeshQuery(np.asarray(truth, np.float64), tri[mask[tri].any(1)])
    start = np.asarray(fitted, np.float64)[mask]
    pts = start
    for _ in range(iters):
        pts = umeyama(pts, q.closest(pts).points, with_scale=False).apply(pts)
    moved = float(np.linalg.norm(pts - start, axis=1).mean() * 1e3)
    return SurfaceError.of(q.closest(pts).distances * 1e3), moved
