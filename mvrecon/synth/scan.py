"""The ground-truth surface as a scanner would deliver it, and its byte-deterministic encoders.

The scan is the detailed skin (a different, denser triangulation than the model: Loop-subdivided)
with a little noise along the normals and a few small holes, in world coordinates (metres).
"""

from __future__ import annotations

import numpy as np

from ..geometry import vertex_normals
from . import meshops as mo


def make_scan(
    verts: np.ndarray,
    faces: np.ndarray,
    rng: np.random.Generator,
    noise_m: float = 1e-4,
    n_holes: int = 5,
    hole_radius_m: tuple[float, float] = (0.003, 0.006),
    hole_candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy, holed copy of a mesh: verts (N, 3), faces (F, 3) -> (verts', faces', centres (H, 3)).

    Noise is Gaussian along the vertex normals (std ``noise_m``). Each hole removes the triangles
    whose centroid lies within a random radius of a centre picked among ``hole_candidates``
    (vertex ids; default all). Unused vertices are dropped.
    """
    v = np.asarray(verts, np.float64)
    f = np.asarray(faces, np.int64)
    n = vertex_normals(v, f)
    noisy = v + rng.normal(0.0, noise_m, len(v))[:, None] * n
    cand = np.arange(len(v)) if hole_candidates is None else np.asarray(hole_candidates)
    centres = v[rng.choice(cand, size=n_holes, replace=False)]
    radii = rng.uniform(*hole_radius_m, n_holes)
    cent = v[f].mean(1)
    keep = np.ones(len(f), bool)
    for c, r in zip(centres, radii):  # a handful of holes: a loop over holes, not triangles
        keep &= np.sum((cent - c) ** 2, 1) > r * r
    out_v, out_f, _ = mo.compact(noisy, f[keep])
    return out_v, out_f, centres


def ply_bytes(verts: np.ndarray, faces: np.ndarray) -> bytes:
    """Binary little-endian PLY (float32 x y z, uchar-count int32 faces), no comments, so the same
    mesh always gives the same bytes."""
    v = np.ascontiguousarray(verts, dtype="<f4")
    f = np.asarray(faces, dtype="<i4")
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode("ascii")
    rec = np.empty(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    rec["n"] = 3
    rec["i"] = f
    return header + v.tobytes() + rec.tobytes()


def landmarks_text(points: np.ndarray) -> str:
    """68 lines ``x y z`` (metres, 9 significant digits)."""
    return "".join(f"{p[0]:.9g} {p[1]:.9g} {p[2]:.9g}\n" for p in np.asarray(points, np.float64))
