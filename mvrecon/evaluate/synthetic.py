"""A procedural face with analytic iBUG-68 landmarks, for tests and benchmarks of the evaluation.

The face is a height field ``z = face_height(x, y)`` in model space (metres, +Y up, +Z out of the
face): an ellipsoid cap with a nose ridge and alae, eye sockets with eyeballs, brow ridges, lips
and a chin. Meshes are built from jittered points triangulated in the (x, y) plane, so two meshes
of the same face with different ``seed`` or resolution have different topology (like a scan and a
model fit). Nothing here depends on a face model or on downloaded data.
"""

from __future__ import annotations

import numpy as np

#: Half-width and half-height (metres) of the elliptic domain a prediction covers.
PRED_EXTENT = (0.085, 0.125)
#: A scan covers slightly less than the prediction (scanners lose the face's border).
SCAN_EXTENT = (0.080, 0.120)


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-((x - cx) ** 2) / (2 * sx**2) - (y - cy) ** 2 / (2 * sy**2))


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def face_height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Depth ``z`` (metres) of the procedural face at model-space ``x, y`` (metres), any shape."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    # the cap is clamped far outside the domain so that z stays finite everywhere
    base = 0.095 * np.sqrt(np.maximum(1.0 - (x / 0.1) ** 2 - (y / 0.145) ** 2, 0.02))
    ramp = _smoothstep((0.035 - y) / 0.06)
    amp = 0.022 * (0.2 + 0.8 * ramp) * np.exp(-(np.maximum(0.0, -0.026 - y) ** 2) / (2 * 0.005**2))
    amp = amp * _smoothstep((0.05 - y) / 0.02)
    sigma = 0.0065 + 0.005 * ramp
    nose = amp * np.exp(-(x**2) / (2 * sigma**2))
    alae = 0.006 * (_gauss(x, y, -0.015, -0.022, 0.006, 0.006) + _gauss(x, y, 0.015, -0.022, 0.006, 0.006))
    sockets = -0.008 * (_gauss(x, y, -0.032, 0.036, 0.013, 0.011) + _gauss(x, y, 0.032, 0.036, 0.013, 0.011))
    balls = 0.005 * (_gauss(x, y, -0.032, 0.035, 0.008, 0.006) + _gauss(x, y, 0.032, 0.035, 0.008, 0.006))
    brows = 0.004 * (_gauss(np.abs(x), y, 0.033, 0.055, 0.02, 0.006))
    lips = 0.005 * _gauss(x, y, 0.0, -0.049, 0.02, 0.004) + 0.005 * _gauss(x, y, 0.0, -0.063, 0.018, 0.005)
    chin = 0.006 * _gauss(x, y, 0.0, -0.088, 0.02, 0.01)
    return base + nose + alae + sockets + balls + brows + lips + chin


def face_normals(x: np.ndarray, y: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Unit surface normals ``(..., 3)`` of the height field (pointing out of the face, +Z)."""
    dzdx = (face_height(x + h, y) - face_height(x - h, y)) / (2 * h)
    dzdy = (face_height(x, y + h) - face_height(x, y - h)) / (2 * h)
    n = np.stack([-dzdx, -dzdy, np.ones_like(dzdx)], -1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def landmarks_xy() -> np.ndarray:
    """iBUG-68 landmark positions ``(68, 2)`` in the (x, y) plane, metres (0-based indices)."""
    lm = np.zeros((68, 2))
    theta = np.deg2rad(np.linspace(165.0, 375.0, 17))
    lm[0:17] = np.stack([0.066 * np.cos(theta), 0.095 * np.sin(theta)], 1)
    t = np.linspace(0.0, 1.0, 5)
    lm[17:22] = np.stack([-0.055 + 0.043 * t, 0.052 + 0.006 * np.sin(np.pi * t)], 1)
    lm[22:27] = np.stack([-lm[21:16:-1, 0], lm[21:16:-1, 1]], 1)
    lm[27:31] = [[0.0, 0.035], [0.0, 0.02], [0.0, 0.004], [0.0, -0.022]]
    lm[31:36] = [[-0.014, -0.03], [-0.007, -0.031], [0.0, -0.032], [0.007, -0.031], [0.014, -0.03]]
    lm[36:42] = [[-0.045, 0.035], [-0.036, 0.040], [-0.027, 0.040], [-0.019, 0.035], [-0.027, 0.031], [-0.036, 0.031]]
    lm[42:48] = [[0.019, 0.035], [0.027, 0.040], [0.036, 0.040], [0.045, 0.035], [0.036, 0.031], [0.027, 0.031]]
    lm[48:60] = [
        [-0.025, -0.055], [-0.016, -0.050], [-0.006, -0.047], [0.0, -0.048], [0.006, -0.047], [0.016, -0.050],
        [0.025, -0.055], [0.016, -0.064], [0.007, -0.068], [0.0, -0.069], [-0.007, -0.068], [-0.016, -0.064],
    ]  # fmt: skip
    lm[60:68] = [
        [-0.021, -0.055], [-0.008, -0.053], [0.0, -0.053], [0.008, -0.053],
        [0.021, -0.055], [0.008, -0.057], [0.0, -0.057], [-0.008, -0.057],
    ]  # fmt: skip
    return lm


def face_landmarks() -> np.ndarray:
    """iBUG-68 landmarks ``(68, 3)`` on the procedural face, metres."""
    xy = landmarks_xy()
    return np.concatenate([xy, face_height(xy[:, 0], xy[:, 1])[:, None]], 1)


def face_mesh(
    n_vertices: int = 20000,
    extent: tuple[float, float] = PRED_EXTENT,
    jitter: float = 0.3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A triangulated patch of the procedural face: vertices ``(N, 3)`` metres, triangles ``(F, 3)``.

    About ``n_vertices`` points on a grid jittered by ``jitter`` grid steps inside the ellipse
    ``extent`` (half-axes, metres), Delaunay-triangulated in (x, y); different seeds give
    different topologies of the same surface.
    """
    from scipy.spatial import Delaunay

    rx, ry = extent
    area = np.pi * rx * ry
    step = np.sqrt(area / max(n_vertices, 16))
    gx = np.arange(-rx, rx + step, step)
    gy = np.arange(-ry, ry + step, step)
    xx, yy = np.meshgrid(gx, gy)
    pts = np.stack([xx.ravel(), yy.ravel()], 1)
    rng = np.random.default_rng(seed)
    pts = pts + rng.uniform(-jitter, jitter, pts.shape) * step
    inside = (pts[:, 0] / rx) ** 2 + (pts[:, 1] / ry) ** 2 <= 1.0
    pts = pts[inside]
    # the border as an exact ellipse keeps the outline smooth and avoids sliver triangles
    n_border = int(2 * np.pi * np.sqrt((rx**2 + ry**2) / 2) / step)
    phi = np.linspace(0, 2 * np.pi, n_border, endpoint=False) + rng.uniform(0, 2 * np.pi)
    border = np.stack([rx * np.cos(phi), ry * np.sin(phi)], 1)
    inner = (pts[:, 0] / rx) ** 2 + (pts[:, 1] / ry) ** 2 <= (1.0 - 0.6 * step / min(rx, ry)) ** 2
    pts = np.concatenate([pts[inner], border], 0)
    tri = Delaunay(pts).simplices.astype(np.int64)
    a, b, c = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    # counter-clockwise in (x, y) seen from +Z: normals point out of the face
    tri[cross < 0] = tri[cross < 0][:, [0, 2, 1]]
    tri = tri[np.abs(cross) > 1e-4 * step**2]
    verts = np.concatenate([pts, face_height(pts[:, 0], pts[:, 1])[:, None]], 1)
    return verts, tri


def similarity(vertices: np.ndarray, scale: float, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """``scale * R @ v + t`` for points ``(N, 3)``; returns a new array."""
    return scale * np.asarray(vertices) @ np.asarray(rotation).T + np.asarray(translation)


def rotation_xyz(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation matrix ``Rz @ Ry @ Rx`` from angles in radians."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x
