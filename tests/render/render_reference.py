"""Helpers for the renderer tests: small meshes, cameras and an independent numpy z-buffer
(imported by the test modules beside it)."""

from __future__ import annotations

import numpy as np


def icosphere(subdivisions: int = 2, radius: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere (outward, counter-clockwise faces) built here so the tests depend on no mesh library."""
    t = (1 + 5 ** 0.5) / 2
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
                  [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], dtype=np.float64)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
                  [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
                  [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]])
    verts = list(v / np.linalg.norm(v, axis=1, keepdims=True))
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in f:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        f = np.array(new)
    return np.array(verts) * radius, f


def look_at_w2c(centre, target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """OpenCV world_to_cam (4, 4) of a camera at ``centre`` looking at ``target`` (image y down = -up)."""
    c, tgt = np.asarray(centre, float), np.asarray(target, float)
    z = tgt - c
    z /= np.linalg.norm(z)
    x = np.cross(-np.asarray(up, float), z)       # x = y x z with y ~ -up (image y down)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = -R @ c
    return M


def intrinsics(fx, fy, cx, cy, skew=0.0) -> np.ndarray:
    return np.array([[fx, skew, cx], [0, fy, cy], [0, 0, 1.0]])


def zbuffer(verts, faces, K, w2c, H, W, edge_tol=1e-4):
    """Plain numpy z-buffer in float64 (two-sided, no clipping; all vertices must be in front).

    Returns tri (H, W) int, depth (H, W), bary (H, W, 3), ambiguous (H, W) bool: the pixel centre
    lies within ``edge_tol`` pixels of an edge of a triangle covering it, where float32 ray
    casting may legitimately pick the neighbour.
    """
    pc = verts @ w2c[:3, :3].T + w2c[:3, 3]
    assert (pc[:, 2] > 0).all()
    uv = (pc @ K.T)[:, :2] / pc[:, 2:3]
    tri = -np.ones((H, W), int)
    depth = np.full((H, W), np.inf)
    bary = np.zeros((H, W, 3))
    ambiguous = np.zeros((H, W), bool)

    def cross2(a, b):
        return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]

    for fi, (i, j, k) in enumerate(faces):
        a, b, c = uv[i], uv[j], uv[k]
        area = cross2(b - a, c - a)
        if abs(area) < 1e-12:
            continue
        lo = np.maximum(np.floor(np.minimum(np.minimum(a, b), c)) - 1, 0).astype(int)
        hi = np.minimum(np.ceil(np.maximum(np.maximum(a, b), c)) + 1, [W - 1, H - 1]).astype(int)
        if (hi < lo).any():
            continue
        ys, xs = np.mgrid[lo[1]:hi[1] + 1, lo[0]:hi[0] + 1]
        P = np.stack([xs, ys], -1).astype(float)
        e = np.stack([cross2(c - b, P - b), cross2(a - c, P - c), cross2(b - a, P - a)], -1)
        lam = e / area
        lengths = np.array([np.linalg.norm(c - b), np.linalg.norm(a - c), np.linalg.norm(b - a)])
        dist = np.abs(e) / lengths
        inside = (lam >= 0).all(-1)
        near = (lam >= -1e-3).all(-1) & (dist.min(-1) < edge_tol)
        q = lam / pc[[i, j, k], 2]
        zz = 1.0 / q.sum(-1)
        pb = q * zz[..., None]
        ambiguous[ys[near], xs[near]] = True
        win = inside & (zz < depth[ys, xs])
        yy, xx = ys[win], xs[win]
        depth[yy, xx] = zz[win]
        tri[yy, xx] = fi
        bary[yy, xx] = pb[win]
    depth[tri < 0] = 0
    return tri, depth, bary, ambiguous


def random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
