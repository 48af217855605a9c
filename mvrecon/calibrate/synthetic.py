"""Synthetic calibration data with known answers: rigs of cameras on an arc around the head
position, board poses through the working volume, rendered ChArUco shots, and textured scenes
for the SfM and refinement paths (exact per-ray plane intersection, like the board renderer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cameras import Board, Camera, Rig
from ..io import write_image
from .board import board_size_m, render_board_shot, render_plane


def look_at_upright(
    center: np.ndarray, target: np.ndarray, up: tuple[float, float, float] = (0.0, 1.0, 0.0)
) -> np.ndarray:
    """``world_to_cam`` (4, 4) of a camera at ``center`` looking at ``target`` with world ``up``
    appearing upwards in the image (image y down, so camera +y is the world's down)."""
    # mvrecon.cameras.look_at (as of 68659fe) builds x = z x (-up), which turns the image upside
    # down (world +Y projects below the centre); this is the upright version.
    z = np.asarray(target, dtype=np.float64) - np.asarray(center, dtype=np.float64)
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    M = np.eye(4)
    M[:3, :3] = np.stack([x, y, z])
    M[:3, 3] = -M[:3, :3] @ np.asarray(center, dtype=np.float64)
    return M


def arc_rig(
    n: int,
    width: int = 1600,
    height: int = 1200,
    focal_mm: float = 50.0,
    sensor_mm: float = 36.0,
    radius: float = 1.0,
    span_deg: float | None = None,
    dist: tuple[float, ...] = (-0.08, 0.12, 4e-4, -3e-4, 0.0),
    rng: np.random.Generator | None = None,
    board: Board | None = None,
) -> Rig:
    """``n`` cameras on a horizontal arc of ``radius`` metres around the origin (the head), all
    looking at it, +Y up, the arc centred on +Z (the face direction). Focal length from a lens
    ``focal_mm`` on a sensor ``sensor_mm`` wide. Small random perturbations of height, aim,
    focal length and principal point when ``rng`` is given, so cameras differ."""
    span = span_deg if span_deg is not None else min(140.0, 40.0 * (n - 1) ** 0.8 if n > 1 else 0.0)
    angles = np.radians(np.linspace(-span / 2, span / 2, n)) if n > 1 else np.zeros(1)
    f = focal_mm / sensor_mm * width
    cams = []
    for i, a in enumerate(angles):
        j = rng.normal(size=6) if rng is not None else np.zeros(6)
        c = np.array([radius * np.sin(a), 0.05 * j[0], radius * np.cos(a)])
        target = np.array([0.01 * j[1], 0.01 * j[2], 0.0])
        K = np.array(
            [
                [f * (1 + 0.01 * j[3]), 0, (width - 1) / 2 + 4 * j[4]],
                [0, f * (1 + 0.01 * j[3]), (height - 1) / 2 + 4 * j[5]],
                [0, 0, 1.0],
            ]
        )
        cams.append(Camera(f"cam{i}", width, height, K, np.array(dist, dtype=np.float64), look_at_upright(c, target)))
    return Rig(cameras=tuple(cams), name=f"arc{n}", board=board)


def board_pose(board: Board, center: np.ndarray, yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """``board_to_world`` (4, 4): the board's centre at ``center``, its printed face turned to
    the direction given by yaw (about +Y, 0 = facing +Z) and pitch (about X), rolled in-plane."""
    yaw, pitch, roll = np.radians([yaw_deg, pitch_deg, roll_deg])
    n = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    z_b = -n
    x0 = np.cross([0.0, 1.0, 0.0], z_b)
    x0 /= np.linalg.norm(x0)
    y0 = np.cross(z_b, x0)
    x_b = np.cos(roll) * x0 + np.sin(roll) * y0
    y_b = np.cross(z_b, x_b)
    M = np.eye(4)
    M[:3, :3] = np.stack([x_b, y_b, z_b], 1)
    wm, hm = board_size_m(board)
    M[:3, 3] = np.asarray(center, dtype=np.float64) - M[:3, :3] @ np.array([wm / 2, hm / 2, 0.0])
    return M


def board_poses(
    board: Board, rig: Rig, n_shots: int, rng: np.random.Generator, spread: float = 0.2, tilt_deg: float = 40.0
) -> list[np.ndarray]:
    """Board poses through the working volume: centres within ``spread`` metres of the origin
    (less in depth), facing a random point of the camera arc, tilted up to ``tilt_deg``."""
    yaws = [np.degrees(np.arctan2(c.center[0], c.center[2])) for c in rig.cameras]
    lo, hi = min(yaws) - 10, max(yaws) + 10
    out = []
    for _ in range(n_shots):
        c = rng.uniform([-spread, -0.7 * spread, -spread], [spread, 0.7 * spread, 0.5 * spread])
        out.append(
            board_pose(
                board,
                c,
                rng.uniform(lo, hi) + rng.uniform(-tilt_deg, tilt_deg) / 2,
                rng.uniform(-tilt_deg, tilt_deg),
                rng.uniform(-25, 25),
            )
        )
    return out


def visible(board: Board, cam: Camera, board_to_world: np.ndarray, min_cos: float = 0.35) -> bool:
    """The printed face is turned to ``cam`` and the whole board lies in front of it."""
    wm, hm = board_size_m(board)
    mid = board_to_world[:3, :3] @ np.array([wm / 2, hm / 2, 0]) + board_to_world[:3, 3]
    v = cam.center - mid
    facing = float(-board_to_world[:3, 2] @ v / np.linalg.norm(v))
    corners = (
        np.array([[0, 0, 0], [wm, 0, 0], [0, hm, 0], [wm, hm, 0.0]]) @ board_to_world[:3, :3].T + board_to_world[:3, 3]
    )
    uv, z = cam.project(corners)
    inside = np.sum((uv[:, 0] > 0) & (uv[:, 0] < cam.width - 1) & (uv[:, 1] > 0) & (uv[:, 1] < cam.height - 1))
    return bool(facing > min_cos and np.all(z > 0) and inside >= 2)


def write_charuco_shots(
    directory: str | Path, board: Board, rig: Rig, poses: list[np.ndarray], rng: np.random.Generator
) -> dict[str, list[str]]:
    """Render every pose in every camera that sees it into ``DIR/shotNNN/<camera>.png``; returns
    ``{shot: [cameras]}``."""
    d = Path(directory)
    out = {}
    for i, M in enumerate(poses):
        shot = f"shot{i:03d}"
        cams = [c for c in rig.cameras if visible(board, c, M)]
        for c in cams:
            write_image(d / shot / f"{c.name}.png", render_board_shot(board, c, M, rng))
        if cams:
            out[shot] = [c.name for c in cams]
    return out


# --------------------------------------------------------------------------------------------
# textured scenes (for SfM and per-session refinement)


@dataclass(frozen=True)
class TexturedPlane:
    """A textured rectangle: ``plane_to_world`` (4, 4), ``size`` (w, h) metres, ``texture`` (H, W) float."""

    plane_to_world: np.ndarray
    size: tuple[float, float]
    texture: np.ndarray


def random_texture(rng: np.random.Generator, px: int = 512) -> np.ndarray:
    """Multi-scale blob noise (px, px) float in [20, 235]: corners at many scales for SIFT."""
    import cv2

    acc = np.zeros((px, px), np.float32)
    for cells, amp in ((4, 1.0), (12, 0.8), (40, 0.6), (128, 0.4)):
        small = rng.uniform(-1, 1, size=(cells, cells)).astype(np.float32)
        acc += amp * cv2.resize(small, (px, px), interpolation=cv2.INTER_CUBIC)
    acc = (acc - acc.min()) / (acc.max() - acc.min())
    return 20 + 215 * acc


def textured_scene(rng: np.random.Generator, n_planes: int = 6, extent: float = 0.25) -> list[TexturedPlane]:
    """Textured planes around the origin facing +Z (the camera arc): a back wall behind the
    head position and tilted panels in front of it, so the scene has real depth."""
    from ..geometry import axis_angle_to_matrix

    planes = []
    for i in range(n_planes):
        if i == 0:
            R = np.eye(3)
            R[:, 1] *= -1
            R[:, 2] *= -1  # face +Z
            size = (4 * extent, 3 * extent)
            center = np.array([0.0, 0.0, -0.35])
        else:
            R0 = np.diag([1.0, -1.0, -1.0])
            rv = rng.uniform(-0.6, 0.6, 3) * [1.0, 1.0, 0.3]
            R = axis_angle_to_matrix(rv) @ R0
            size = tuple(rng.uniform(0.12, 0.25, 2))
            center = rng.uniform([-extent, -0.6 * extent, -0.2], [extent, 0.6 * extent, 0.15])
        M = np.eye(4)
        M[:3, :3] = R
        M[:3, 3] = center - R @ np.array([size[0] / 2, size[1] / 2, 0.0])
        planes.append(TexturedPlane(M, (float(size[0]), float(size[1])), random_texture(rng)))
    return planes


def render_scene(
    cam: Camera, planes: list[TexturedPlane], rng: np.random.Generator | None = None, noise: float = 1.0
) -> np.ndarray:
    """Gray uint8 image (H, W) of the planes (nearest plane wins per pixel), with lens distortion."""
    import cv2

    from .board import _plane_window, plane_to_image_coords

    h, w = cam.height, cam.width
    img = np.full((h, w), 60.0, np.float32)
    depth = np.full((h, w), np.inf)
    for pl in planes:
        px_per_m = pl.texture.shape[1] / pl.size[0]
        # stretch the texture to the plane's aspect
        tex = cv2.resize(
            pl.texture, (pl.texture.shape[1], max(2, int(round(pl.size[1] * px_per_m)))), interpolation=cv2.INTER_LINEAR
        )
        val, cov = render_plane(cam, pl.plane_to_world, tex, px_per_m)
        # depth of the plane along each pixel's centre ray decides occlusion between planes
        y0, y1, x0, x1 = _plane_window(cam, pl.plane_to_world, pl.size, (0.0, 0.0))
        if y1 <= y0 or x1 <= x0:
            continue
        XY, hit = plane_to_image_coords(cam, pl.plane_to_world, 1, (y0, y1, x0, x1))
        P = XY[0] @ pl.plane_to_world[:3, :2].T + pl.plane_to_world[:3, 3]
        z = np.full((h, w), np.inf)
        z[y0:y1, x0:x1] = np.where(hit[0], cam.to_camera(P)[:, 2], np.inf).reshape(y1 - y0, x1 - x0)
        z = np.where(cov > 0, z, np.inf)
        front = z < depth
        img = np.where(front, val * cov + img * (1 - cov), img)
        depth = np.where(front, z, depth)
    if rng is not None and noise > 0:
        img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)
