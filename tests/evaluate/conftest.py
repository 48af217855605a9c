"""Fixtures of the evaluation tests: procedural faces (mvrecon.evaluate.synthetic), meshed twice
with different resolution and jitter so that prediction and scan never share a topology."""

from __future__ import annotations

from pathlib import Path

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


def save_mesh(path: Path, vertices: np.ndarray, triangles: np.ndarray) -> Path:
    """Write OBJ/PLY/GLB with Open3D (the format follows the suffix)."""
    import open3d as o3d

    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.asarray(vertices, np.float64)),
        o3d.utility.Vector3iVector(np.asarray(triangles, np.int32)),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    assert o3d.io.write_triangle_mesh(str(path), mesh)
    return path


@pytest.fixture(scope="session")
def face_arrays():
    """(pred vertices, pred triangles, scan vertices, scan triangles, landmarks), metres."""
    pv, pf = syn.face_mesh(6000, syn.PRED_EXTENT, jitter=0.3, seed=21)
    sv, sf = syn.face_mesh(8000, syn.SCAN_EXTENT, jitter=0.35, seed=22)
    return pv, pf, sv, sf, syn.face_landmarks()


@pytest.fixture(scope="session")
def face_pair(face_arrays):
    """(pred FaceMesh, scan FaceMesh): one procedural face, two topologies."""
    pv, pf, sv, sf, lm = face_arrays
    return make_face_mesh(pv, pf, lm), make_face_mesh(sv, sf, lm)


@pytest.fixture
def subject_dir(tmp_path, face_arrays):
    """A benchmark subject folder: pred.obj (metres) + landmarks, scan.ply in millimetres."""
    pv, pf, sv, sf, lm = face_arrays
    d = tmp_path / "bench" / "subject01"
    save_mesh(d / "pred.obj", pv, pf)
    np.savetxt(d / "pred_landmarks.txt", lm)
    save_mesh(d / "scan.ply", sv * 1000.0, sf)
    np.savetxt(d / "scan_landmarks.txt", lm * 1000.0)
    return d
