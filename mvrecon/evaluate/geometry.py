"""Area-uniform surface sampling for the evaluation (float64 metres). The similarity and rigid fits
are :mod:`mvrecon.geometry`'s, the closest-point queries :mod:`mvrecon.render.raycast`'s."""

from __future__ import annotations

import numpy as np


def sample_surface(
    vertices: np.ndarray, triangles: np.ndarray, n: int, seed: int = 0, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points ``(n, 3)`` uniform by area on the triangles (``mask`` ``(F,)`` selects some),
    with their triangle normals ``(n, 3)``; deterministic for a given ``seed``."""
    v = np.asarray(vertices)
    f = np.asarray(triangles)
    if mask is not None:
        f = f[mask]
    if len(f) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3))
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    area = 0.5 * np.linalg.norm(cross, axis=1)
    rng = np.random.default_rng(seed)
    tri = rng.choice(len(f), size=n, p=area / area.sum())
    r1 = np.sqrt(rng.random(n))
    r2 = rng.random(n)
    pts = (1 - r1)[:, None] * a[tri] + (r1 * (1 - r2))[:, None] * b[tri] + (r1 * r2)[:, None] * c[tri]
    nrm = cross[tri] / np.maximum(2 * area[tri], 1e-300)[:, None]
    return pts, nrm
