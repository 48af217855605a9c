"""Cameras and rigs, and every camera-convention change as a named function.

mvrecon's own convention is OpenCV's: pinhole ``K`` (3, 3) with pixel centres at integer
coordinates, OpenCV distortion ``(k1, k2, p1, p2[, k3[, k4, k5, k6]])``, and ``world_to_cam``
(4, 4) taking world points (metres) to camera coordinates with x right, y down, z forward.

Conversions (each returns new arrays and never modifies its input):

- COLMAP: :func:`to_colmap_camera` / :func:`from_colmap_camera` (OPENCV / FULL_OPENCV / PINHOLE
  models; COLMAP puts the centre of the top-left pixel at (0.5, 0.5)), :func:`to_colmap_pose` /
  :func:`from_colmap_pose` (``qvec`` (w, x, y, z) and ``tvec`` of world-to-camera).
- OpenGL / glTF: :func:`to_opengl_cam_to_world` / :func:`from_opengl_cam_to_world` (camera looks
  down -Z, +Y up) and :func:`opengl_projection` (clip-space matrix for given near/far).
- pytorch3d: :func:`to_pytorch3d` / :func:`from_pytorch3d` (row-vector ``X_cam = X_world R + T``,
  +X left, +Y up, NDC focal length and principal point), as ``cameras_from_opencv_projection``.
- nerfstudio: :func:`to_nerfstudio` / :func:`from_nerfstudio` (``transforms.json`` dicts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .geometry import matrix_to_quaternion, quaternion_to_matrix
from .io import check_name, read_json, write_json

_GL_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])
_P3D_FLIP = np.diag([-1.0, -1.0, 1.0])


# --------------------------------------------------------------------------------------------
# rotations


def rotation_angle_deg(R1: np.ndarray, R2: np.ndarray) -> float:
    """Angle (degrees) of the relative rotation ``R1 R2^T``."""
    c = (np.trace(np.asarray(R1) @ np.asarray(R2).T) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def look_at(center: Sequence[float], target: Sequence[float], up: Sequence[float] = (0, 1, 0)) -> np.ndarray:
    """``world_to_cam`` (4, 4), OpenCV axes, for a camera at ``center`` looking at ``target``;
    ``up`` is the world direction that appears upwards in the image."""
    c = np.asarray(center, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - c
    z /= np.linalg.norm(z)
    x = np.cross(z, -np.asarray(up, dtype=np.float64))
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to 'up'")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = -R @ c
    return M


def invert_rigid(M: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (exact for rotations, unlike a general inverse)."""
    M = np.asarray(M, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = M[:3, :3].T
    out[:3, 3] = -M[:3, :3].T @ M[:3, 3]
    return out


# --------------------------------------------------------------------------------------------
# the camera


def _as_array(x: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.array(x, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{what} has shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} has non-finite values")
    return arr


@dataclass(frozen=True, eq=False)
class Camera:
    """A calibrated camera (OpenCV convention).

    Attributes:
        name: unique within its rig.
        width, height: image size in pixels.
        K: (3, 3) intrinsics, pixel centres at integer coordinates.
        dist: OpenCV distortion coefficients, length 0, 4, 5 or 8 (k1, k2, p1, p2, k3, k4, k5, k6).
        world_to_cam: (4, 4) rigid transform, world metres to camera coordinates (x right, y down, z forward).
    """

    name: str
    width: int
    height: int
    K: np.ndarray
    dist: np.ndarray = field(default_factory=lambda: np.zeros(0))
    world_to_cam: np.ndarray = field(default_factory=lambda: np.eye(4))

    def __post_init__(self) -> None:
        object.__setattr__(self, "K", _as_array(self.K, (3, 3), f"camera {self.name!r} K"))
        d = np.array(self.dist, dtype=np.float64).reshape(-1)
        if d.size not in (0, 4, 5, 8, 12, 14):
            raise ValueError(f"camera {self.name!r} dist has {d.size} coefficients, expected 0, 4, 5 or 8")
        if not np.all(np.isfinite(d)):
            raise ValueError(f"camera {self.name!r} dist has non-finite values")
        object.__setattr__(self, "dist", d)
        M = _as_array(self.world_to_cam, (4, 4), f"camera {self.name!r} world_to_cam")
        R = M[:3, :3]
        if (
            not np.allclose(R @ R.T, np.eye(3), atol=1e-6)
            or np.linalg.det(R) < 0
            or not np.allclose(M[3], [0, 0, 0, 1])
        ):
            raise ValueError(f"camera {self.name!r} world_to_cam is not a rigid transform")
        object.__setattr__(self, "world_to_cam", M)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera {self.name!r} has image size {self.width}x{self.height}")

    # -- derived -----------------------------------------------------------------------------
    @property
    def R(self) -> np.ndarray:
        """World-to-camera rotation (3, 3)."""
        return self.world_to_cam[:3, :3].copy()

    @property
    def t(self) -> np.ndarray:
        """World-to-camera translation (3,), metres."""
        return self.world_to_cam[:3, 3].copy()

    @property
    def cam_to_world(self) -> np.ndarray:
        return invert_rigid(self.world_to_cam)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates (3,), metres."""
        return -self.world_to_cam[:3, :3].T @ self.world_to_cam[:3, 3]

    @property
    def has_distortion(self) -> bool:
        return bool(np.any(self.dist != 0))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.width, self.height

    def replace(self, **changes: Any) -> Camera:
        return dataclasses.replace(self, **changes)

    # -- geometry ----------------------------------------------------------------------------
    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (N, 3) to camera coordinates (N, 3)."""
        p = np.asarray(points, dtype=np.float64)
        return p @ self.world_to_cam[:3, :3].T + self.world_to_cam[:3, 3]

    def project(self, points: np.ndarray, distort: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Project world points (N, 3) to pixels (N, 2); also returns camera depth z (N,)."""
        pc = self.to_camera(points)
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xn = pc[:, :2] / z[:, None]
        if distort and self.has_distortion:
            xn = distort_normalized(xn, self.dist)
        uv = xn @ self.K[:2, :2].T + self.K[:2, 2]
        return uv, z

    def unproject(self, pixels: np.ndarray, depth: np.ndarray | None = None) -> np.ndarray:
        """Pixels (N, 2) (distorted, as observed) to world rays (N, 3) unit directions, or to world
        points when ``depth`` (N,) camera z is given."""
        xn = self.undistort_points(pixels)
        rays_c = np.concatenate([xn, np.ones((len(xn), 1))], 1)
        R = self.world_to_cam[:3, :3]
        if depth is None:
            d = rays_c @ R  # R^T applied to each row
            return d / np.linalg.norm(d, axis=1, keepdims=True)
        return (rays_c * np.asarray(depth, dtype=np.float64)[:, None] - self.t) @ R

    def undistort_points(self, pixels: np.ndarray) -> np.ndarray:
        """Observed pixels (N, 2) to normalized undistorted image coordinates (N, 2)."""
        px = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        xd = (px - self.K[:2, 2]) @ np.linalg.inv(self.K[:2, :2]).T
        if not self.has_distortion:
            return xd
        return undistort_normalized(xd, self.dist)

    def undistorted(self, alpha: float = 0.0) -> tuple[Camera, np.ndarray, np.ndarray]:
        """A distortion-free camera of the same size and the remap tables (map_x, map_y) that
        produce its image from this camera's image (``cv2.remap(img, map_x, map_y, ...)``).

        ``alpha=0`` keeps the original K (pixels near the border may come from outside the
        original image, which is what a fit wants: the same focal length and centre)."""
        import cv2

        if not self.has_distortion:
            xs, ys = np.meshgrid(np.arange(self.width, dtype=np.float32), np.arange(self.height, dtype=np.float32))
            return self, xs, ys
        if alpha > 0:
            newK, _ = cv2.getOptimalNewCameraMatrix(self.K, self.dist, self.size, alpha, self.size)
        else:
            newK = self.K.copy()
        map_x, map_y = cv2.initUndistortRectifyMap(self.K, self.dist, None, newK, self.size, cv2.CV_32FC1)
        return self.replace(K=newK, dist=np.zeros(0)), map_x, map_y

    def undistort_image(self, image: np.ndarray, interpolation: int | None = None) -> tuple[np.ndarray, Camera]:
        """Undistort an image taken by this camera; returns the image and its distortion-free camera."""
        import cv2

        cam, mx, my = self.undistorted()
        if cam is self:
            return image.copy(), self
        interp = cv2.INTER_LINEAR if interpolation is None else interpolation
        return cv2.remap(image, mx, my, interp, borderMode=cv2.BORDER_REPLICATE), cam

    def scaled(self, factor: float) -> Camera:
        """The same camera for an image resized by ``factor`` (pixel centres kept consistent)."""
        K = self.K.copy()
        K[:2, :2] *= factor
        K[:2, 2] = (K[:2, 2] + 0.5) * factor - 0.5
        return self.replace(K=K, width=round(self.width * factor), height=round(self.height * factor))

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "K": self.K.tolist(),
            "dist": self.dist.tolist(),
            "world_to_cam": self.world_to_cam.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Camera:
        missing = [k for k in ("name", "width", "height", "K") if k not in d]
        if missing:
            raise ValueError(f"camera entry {d.get('name', '?')!r} lacks {', '.join(missing)}")
        return cls(
            name=str(d["name"]),
            width=d["width"],
            height=d["height"],
            K=d["K"],
            dist=d.get("dist", []),
            world_to_cam=d.get("world_to_cam", np.eye(4)),
        )


def distort_normalized(xn: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Apply OpenCV's distortion model to normalized coordinates (N, 2)."""
    d = np.zeros(8)
    d[: min(8, len(dist))] = dist[:8]
    k1, k2, p1, p2, k3, k4, k5, k6 = d
    x, y = xn[:, 0], xn[:, 1]
    r2 = x * x + y * y
    radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], 1)


def undistort_normalized(xd: np.ndarray, dist: np.ndarray, iters: int = 50) -> np.ndarray:
    """Invert :func:`distort_normalized` by Gauss-Newton with a numeric Jacobian (to ~1e-12)."""
    x = xd.copy()
    h = 1e-7
    for _ in range(iters):
        f = distort_normalized(x, dist) - xd
        if np.max(np.abs(f)) < 1e-13:
            break
        fx = (distort_normalized(x + [h, 0], dist) - xd - f) / h
        fy = (distort_normalized(x + [0, h], dist) - xd - f) / h
        det = fx[:, 0] * fy[:, 1] - fy[:, 0] * fx[:, 1]
        dx = (fy[:, 1] * f[:, 0] - fy[:, 0] * f[:, 1]) / det
        dy = (-fx[:, 1] * f[:, 0] + fx[:, 0] * f[:, 1]) / det
        x = x - np.stack([dx, dy], 1)
    return x


# --------------------------------------------------------------------------------------------
# the rig


@dataclass(frozen=True, eq=False)
class Board:
    """A ChArUco board definition (metres)."""

    squares_x: int
    squares_y: int
    square_length: float
    marker_length: float
    dictionary: str = "DICT_5X5_100"
    legacy_pattern: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Board:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


@dataclass(frozen=True, eq=False)
class Rig:
    """A set of cameras in one world frame; ``synchronized`` when they fire together."""

    cameras: tuple[Camera, ...]
    synchronized: bool = True
    name: str = "rig"
    board: Board | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        names = [c.name for c in self.cameras]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate camera names: {', '.join(dup)}")

    def __len__(self) -> int:
        return len(self.cameras)

    def __iter__(self):
        return iter(self.cameras)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def __getitem__(self, key: str | int) -> Camera:
        if isinstance(key, int):
            return self.cameras[key]
        for c in self.cameras:
            if c.name == key:
                return c
        raise KeyError(key)

    def replace(self, **changes: Any) -> Rig:
        return dataclasses.replace(self, **changes)

    def with_cameras(self, cameras: Iterable[Camera]) -> Rig:
        return dataclasses.replace(self, cameras=tuple(cameras))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": "mvrecon-rig/1",
            "name": self.name,
            "synchronized": self.synchronized,
            "cameras": [c.to_dict() for c in self.cameras],
        }
        if self.board is not None:
            d["board"] = self.board.to_dict()
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rig:
        if not isinstance(d, dict) or not isinstance(d.get("cameras"), list) or not d["cameras"]:
            raise ValueError("expected an object with a non-empty 'cameras' list")
        cams = []
        for i, c in enumerate(d["cameras"]):
            if not isinstance(c, dict):
                raise ValueError(f"cameras[{i}] is not an object")
            try:
                cams.append(Camera.from_dict(c))
            except (TypeError, ValueError) as e:
                raise ValueError(f"cameras[{i}]: {e}") from None
        board = Board.from_dict(d["board"]) if d.get("board") else None
        return cls(
            cameras=tuple(cams),
            synchronized=bool(d.get("synchronized", True)),
            name=str(d.get("name", "rig")),
            board=board,
            meta=dict(d.get("meta", {})),
        )


def rig_json_path(path: str | Path) -> Path:
    """``rig.json`` for a rig folder or the file itself."""
    p = Path(path)
    return p / "rig.json" if p.is_dir() else p


def load_rig(path: str | Path) -> Rig:
    """Read a rig from ``rig.json`` (or a folder holding one); errors name the file."""
    p = rig_json_path(path)
    data = read_json(p)
    try:
        rig = Rig.from_dict(data)
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise InputError(f"malformed rig: {e}", p) from None
    for cam in rig.cameras:  # camera names become file names (views' cue folders, overlays)
        check_name(cam.name, "camera name", p)
    return rig


def save_rig(rig: Rig, path: str | Path) -> Path:
    """Write ``rig.json`` atomically (``path`` may be a folder)."""
    p = Path(path)
    if p.suffix != ".json":
        p = p / "rig.json"
    return write_json(p, rig.to_dict())


# --------------------------------------------------------------------------------------------
# COLMAP


def to_colmap_camera(cam: Camera) -> tuple[str, np.ndarray]:
    """(model name, params) for COLMAP; principal point shifted by +0.5 px (COLMAP's pixel centres)."""
    fx, fy, cx, cy = cam.K[0, 0], cam.K[1, 1], cam.K[0, 2] + 0.5, cam.K[1, 2] + 0.5
    if abs(cam.K[0, 1]) > 1e-12:
        raise ValueError(f"camera {cam.name!r}: COLMAP models have no skew")
    d = np.zeros(8)
    d[: min(8, cam.dist.size)] = cam.dist[:8]
    if not np.any(d):
        return "PINHOLE", np.array([fx, fy, cx, cy])
    if not np.any(d[4:]):
        return "OPENCV", np.array([fx, fy, cx, cy, *d[:4]])
    return "FULL_OPENCV", np.array([fx, fy, cx, cy, *d])


def from_colmap_camera(
    model: str, width: int, height: int, params: Sequence[float] | np.ndarray, name: str = "cam"
) -> Camera:
    """A :class:`Camera` (identity pose) from a COLMAP camera model and its parameters."""
    p = np.asarray(params, dtype=np.float64)
    model = model.upper()
    dist = np.zeros(0)
    if model == "SIMPLE_PINHOLE":
        fx = fy = p[0]
        cx, cy = p[1], p[2]
    elif model == "PINHOLE":
        fx, fy, cx, cy = p[:4]
    elif model == "SIMPLE_RADIAL":
        fx = fy = p[0]
        cx, cy = p[1], p[2]
        dist = np.array([p[3], 0, 0, 0])
    elif model == "RADIAL":
        fx = fy = p[0]
        cx, cy = p[1], p[2]
        dist = np.array([p[3], p[4], 0, 0])
    elif model == "OPENCV":
        fx, fy, cx, cy = p[:4]
        dist = p[4:8].copy()
    elif model == "FULL_OPENCV":
        fx, fy, cx, cy = p[:4]
        dist = p[4:12].copy()
    else:
        raise ValueError(f"unsupported COLMAP camera model {model}")
    K = np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1.0]])
    return Camera(name=name, width=width, height=height, K=K, dist=dist)


def to_colmap_pose(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(qvec (w, x, y, z), tvec) of the world-to-camera transform, as COLMAP stores images."""
    return matrix_to_quaternion(cam.world_to_cam[:3, :3]), cam.world_to_cam[:3, 3].copy()


def from_colmap_pose(qvec: Sequence[float] | np.ndarray, tvec: Sequence[float] | np.ndarray) -> np.ndarray:
    """``world_to_cam`` (4, 4) from COLMAP's qvec (w, x, y, z) and tvec."""
    M = np.eye(4)
    M[:3, :3] = quaternion_to_matrix(qvec)
    M[:3, 3] = np.asarray(tvec, dtype=np.float64)
    return M


# --------------------------------------------------------------------------------------------
# OpenGL / glTF


def to_opengl_cam_to_world(world_to_cam: np.ndarray) -> np.ndarray:
    """OpenGL/glTF camera-to-world (4, 4) (camera looks down -Z, +Y up) from an OpenCV world_to_cam."""
    return invert_rigid(world_to_cam) @ _GL_FLIP


def from_opengl_cam_to_world(cam_to_world_gl: np.ndarray) -> np.ndarray:
    """OpenCV world_to_cam (4, 4) from an OpenGL/glTF camera-to-world."""
    return invert_rigid(np.asarray(cam_to_world_gl, dtype=np.float64) @ _GL_FLIP)


def opengl_projection(K: np.ndarray, width: int, height: int, near: float = 0.01, far: float = 100.0) -> np.ndarray:
    """OpenGL clip-space projection (4, 4) matching ``K`` for a framebuffer whose row 0 is the image
    bottom (OpenGL's). A camera-space point (OpenGL axes) maps to NDC x in [-1, 1] over the pixel
    *edges* -0.5 .. width-0.5 of the OpenCV image."""
    K = np.asarray(K, dtype=np.float64)
    fx, fy, cx, cy, s = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    P = np.zeros((4, 4))
    P[0, 0] = 2 * fx / width
    P[0, 1] = -2 * s / width
    P[0, 2] = 1 - 2 * (cx + 0.5) / width
    P[1, 1] = 2 * fy / height
    P[1, 2] = 2 * (cy + 0.5) / height - 1
    P[2, 2] = -(far + near) / (far - near)
    P[2, 3] = -2 * far * near / (far - near)
    P[3, 2] = -1
    return P


# --------------------------------------------------------------------------------------------
# pytorch3d


def to_pytorch3d(cam: Camera) -> dict[str, np.ndarray]:
    """pytorch3d ``PerspectiveCameras`` arguments (NDC, ``in_ndc=True``) for an undistorted camera.

    Returns ``R`` (3, 3) and ``T`` (3,) with ``X_cam = X_world @ R + T``, ``focal_length`` (2,),
    ``principal_point`` (2,) in NDC units where s = min(W, H) / 2 pixels is one unit, and
    ``image_size`` (H, W). Pixel u = W/2 - x_ndc * s, v = H/2 - y_ndc * s.
    """
    R = cam.world_to_cam[:3, :3]
    t = cam.world_to_cam[:3, 3]
    s = min(cam.width, cam.height) / 2.0
    c0 = np.array([cam.width, cam.height]) / 2.0
    return {
        "R": (_P3D_FLIP @ R).T.copy(),
        "T": _P3D_FLIP @ t,
        "focal_length": np.array([cam.K[0, 0], cam.K[1, 1]]) / s,
        "principal_point": -(cam.K[:2, 2] - c0) / s,
        "image_size": np.array([cam.height, cam.width]),
    }


def from_pytorch3d(
    R: np.ndarray,
    T: np.ndarray,
    focal_length: Sequence[float],
    principal_point: Sequence[float],
    image_size: Sequence[int],
    name: str = "cam",
) -> Camera:
    """Inverse of :func:`to_pytorch3d`."""
    h, w = int(image_size[0]), int(image_size[1])
    s = min(w, h) / 2.0
    f = np.asarray(focal_length, dtype=np.float64) * s
    c = -np.asarray(principal_point, dtype=np.float64) * s + np.array([w, h]) / 2.0
    M = np.eye(4)
    M[:3, :3] = _P3D_FLIP @ np.asarray(R, dtype=np.float64).T
    M[:3, 3] = _P3D_FLIP @ np.asarray(T, dtype=np.float64)
    K = np.array([[f[0], 0, c[0]], [0, f[1], c[1]], [0, 0, 1.0]])
    return Camera(name=name, width=w, height=h, K=K, world_to_cam=M)


# --------------------------------------------------------------------------------------------
# nerfstudio transforms.json


_NS_DIST = ("k1", "k2", "p1", "p2", "k3")


def to_nerfstudio(rig: Rig, image_paths: dict[str, str] | None = None) -> dict[str, Any]:
    """A nerfstudio ``transforms.json`` dict with per-frame intrinsics (``camera_model`` OPENCV:
    k1, k2, p1, p2, k3; OpenCV's rational k4..k6 have no place there and are refused).

    nerfstudio's pixel convention is COLMAP's (centre of the first pixel at 0.5)."""
    frames = []
    for cam in rig.cameras:
        if cam.dist.size > 5 and np.any(cam.dist[5:]):
            raise ValueError(f"camera {cam.name!r}: rational distortion k4..k6 does not fit nerfstudio's OPENCV model")
        d = np.zeros(5)
        d[: min(5, cam.dist.size)] = cam.dist[:5]
        fr = {
            "file_path": (image_paths or {}).get(cam.name, f"images/{cam.name}.png"),
            "camera_name": cam.name,
            "fl_x": cam.K[0, 0],
            "fl_y": cam.K[1, 1],
            "cx": cam.K[0, 2] + 0.5,
            "cy": cam.K[1, 2] + 0.5,
            "w": cam.width,
            "h": cam.height,
            "transform_matrix": to_opengl_cam_to_world(cam.world_to_cam).tolist(),
        }
        fr.update({k: float(v) for k, v in zip(_NS_DIST, d)})
        frames.append(fr)
    return {"camera_model": "OPENCV", "frames": frames}


def from_nerfstudio(data: dict[str, Any]) -> Rig:
    """A :class:`Rig` from a ``transforms.json`` dict (per-frame or shared intrinsics)."""
    cams = []
    for i, fr in enumerate(data.get("frames", [])):
        g = {**data, **fr}
        try:
            K = np.array([[g["fl_x"], 0, g["cx"] - 0.5], [0, g["fl_y"], g["cy"] - 0.5], [0, 0, 1.0]])
            dist = np.array([g.get(k, 0.0) for k in _NS_DIST])
            name = fr.get("camera_name") or Path(fr["file_path"]).stem
            cams.append(
                Camera(
                    name=name,
                    width=g["w"],
                    height=g["h"],
                    K=K,
                    dist=dist,
                    world_to_cam=from_opengl_cam_to_world(np.array(fr["transform_matrix"])),
                )
            )
        except KeyError as e:
            raise ValueError(f"frames[{i}] lacks {e.args[0]}") from None
    if not cams:
        raise ValueError("no frames")
    return Rig(cameras=tuple(cams))
