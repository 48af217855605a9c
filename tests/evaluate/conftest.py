"""Fixtures of the evaluation tests: procedural faces (mvrecon.evaluate.synthetic), meshed twice
with different resolution and jitter so that prediction and scan never share a topology."""

from __future__ import annotations

import numpy as np
import pytest

from mvrecon.evaluate import make_face_mesh
from mvrecon.evaluate import synthetic as syn


def wave_field(points: np.ndarray, amplitude: float = 0.002, wavelength: float = 0.05) -> np.ndarray:
    """A smooth signed displacement (metres) over the face: ``A cos(2 pi x / L) cos(2 pi y / L)``."""
    k = 2 * np.pi / wavelength
    return amplitude * np.cos(k * points[:, 0]) * np.cos(k * points[:, 1])


def displaced(vertices: np.ndarray, field) -> np.ndarray:
    """Vertices moved along the analytic surface normal by ``field(vertices)`` (metres)."""
    n = syn.face_normals(vertices[:, 0], vertices[:, 1])
    return vertices + field(vertices)[:, None] * n


@pytest.fixture(scope="session")
def face_pair():
    """(pred FaceMesh, scan FaceMesh, raw arrays) of one procedural face, different topologies."""
    pv, pf = syn.face_mesh(12000, syn.PRED_EXTENT, jitter=0.3, seed=11)
    sv, sf = syn.face_mesh(16000, syn.SCAN_EXTENT, jitter=0.35, seed=12)
    lm = syn.face_landmarks()
    pred = make_face_mesh(pv, pf, lm)
    scan = make_face_mesh(sv, sf, lm)
    return pred, scan, (pv, pf, sv, sf, lm)
