"""A studio-like rig around the origin (where the face is), ChArUco board poses for calibration
shots, and the lighting.

World frame: +Y up, +Z towards the cameras (the face looks down +Z), metres. Cameras sit on an
arc in front of the face (azimuth about -60..60 degrees for 4+ cameras, varied elevation),
0.9-1.2 m away, with 55-80 mm lenses on a full-frame-equivalent (36 mm wide) sensor and a little
radial and tangential distortion.
"""

from __future__ import annotations

import numpy as np

from ..cameras import Board, Camera, Rig
from ..geometry import axis_angle_to_matrix

SENSOR_WIDTH_MM = 36.0

#: The calibration board: 7 x 5 squares of 4 cm (28 x 20 cm), markers 3 cm, DICT_5X5_100.
DEFAULT_BOARD = Board(squares_x=7, squares_y=5, square_length=0.04, marker_length=0.03, dictionary="DICT_5X5_100")


def look_at_opencv(centre: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """``world_to_cam`` (4, 4) of a camera at ``centre`` looking at ``target`` with world ``up``
    pointing up in the image (OpenCV axes: x right, y down, z forward).

    Local on purpose: ``mvrecon.cameras.look_at`` (at the time of writing) returns a camera rolled
    by 180 degrees (``up`` appears downwards), and the synthetic ground truth must not depend on it.
    """
    c = np.asarray(centre, np.float64)
    z = np.asarray(target, np.float64) - c
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, np.float64))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    M = np.eye(4)
    M[:3, :3] = np.stack([x, y, z])
    M[:3, 3] = -M[:3, :3] @ c
    return M


def camera_azimuths(n: int) -> np.ndarray:
    """Nominal azimuths (degrees, 0 = straight in front, positive towards +X) of ``n`` cameras."""
    if n == 1:
        return np.zeros(1)
    spread = 60.0 if n >= 4 else (45.0 if n == 3 else 25.0)
    return np.linspace(-spread, spread, n)


def make_rig(
    n_cameras: int, width: int, height: int, rng: np.random.Generator, distortion: bool = True, name: str = "synthetic"
) -> Rig:
    """A rig of ``n_cameras`` cameras looking at the origin (see the module docstring)."""
    cams = []
    elev_pattern = np.array([5.0, 15.0, -5.0, 10.0, 0.0, 20.0])
    for i, az in enumerate(camera_azimuths(n_cameras)):
        az = np.radians(az + rng.uniform(-3, 3))
        el = np.radians(elev_pattern[i % len(elev_pattern)] + rng.uniform(-3, 3))
        dist = rng.uniform(0.9, 1.2)
        centre = dist * np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
        target = rng.uniform(-0.01, 0.01, 3)
        w2c = look_at_opencv(centre, target)
        # a slight roll: real cameras are never perfectly level
        roll = np.eye(4)
        roll[:3, :3] = axis_angle_to_matrix([0, 0, np.radians(rng.uniform(-2, 2))])
        w2c = roll @ w2c
        f_mm = rng.uniform(55.0, 80.0)
        fx = f_mm / SENSOR_WIDTH_MM * width
        K = np.array(
            [
                [fx, 0.0, (width - 1) / 2 + rng.normal(0, 0.01 * width)],
                [0.0, fx * rng.uniform(0.999, 1.001), (height - 1) / 2 + rng.normal(0, 0.01 * height)],
                [0.0, 0.0, 1.0],
            ]
        )
        if distortion:
            dist_c = np.array(
                [rng.uniform(-0.12, 0.08), rng.uniform(-0.2, 0.2), rng.normal(0, 4e-4), rng.normal(0, 4e-4), 0.0]
            )
        else:
            dist_c = np.zeros(0)
        cams.append(Camera(name=f"cam{i}", width=width, height=height, K=K, dist=dist_c, world_to_cam=w2c))
    return Rig(cameras=tuple(cams), synchronized=True, name=name)


def board_poses(board: Board, n_shots: int, rng: np.random.Generator, volume_m: float = 0.09) -> list[np.ndarray]:
    """``board_to_world`` (4, 4) of ``n_shots`` calibration shots: the board's centre wanders
    through the head volume (a cube of half-size ``volume_m`` around the origin) facing the rig
    (board +Z points away from the cameras), tilted up to ~35 degrees about both axes."""
    wm = board.squares_x * board.square_length
    hm = board.squares_y * board.square_length
    # board x -> world +X, board y (down the print) -> world -Y, board z -> world -Z
    base = np.diag([1.0, -1.0, -1.0])
    poses = []
    for _ in range(n_shots):
        yaw = np.radians(rng.uniform(-35, 35))
        pitch = np.radians(rng.uniform(-25, 25))
        roll = np.radians(rng.uniform(-15, 15))
        R = (
            axis_angle_to_matrix([0, yaw, 0])
            @ axis_angle_to_matrix([pitch, 0, 0])
            @ axis_angle_to_matrix([0, 0, roll])
            @ base
        )
        centre = rng.uniform(-volume_m, volume_m, 3)
        M = np.eye(4)
        M[:3, :3] = R
        M[:3, 3] = centre - R @ np.array([wm / 2, hm / 2, 0.0])
        poses.append(M)
    return poses


def studio_sh(rng: np.random.Generator) -> np.ndarray:
    """SH lighting (9, 3) in :func:`mvrecon.render.sh_basis` convention (world-space normals): a
    warm key light from above-front, a little to one side, plus a cooler ambient fill.

    A directional light of intensity I from unit direction d gives coefficients I * Y_k(d) / a_l
    (the Lambertian factor a_l is inside ``sh_basis``), so the irradiance is ``sh_basis(n) @ sh``.
    """
    import torch

    from ..render import sh_basis
    from ..render.shading import SH_A

    d = np.array([rng.uniform(-0.35, 0.35), rng.uniform(0.35, 0.6), 1.0])
    d /= np.linalg.norm(d)
    Y = sh_basis(torch.as_tensor(d, dtype=torch.float64)).numpy()
    a = np.array([SH_A[0]] + [SH_A[1]] * 3 + [SH_A[2]] * 5)
    key_rgb = np.array([1.0, 0.96, 0.9]) * rng.uniform(0.5, 0.6)
    amb_rgb = np.array([0.92, 0.95, 1.0]) * rng.uniform(0.28, 0.36)
    sh = (Y / a)[:, None] * key_rgb[None]
    # ambient: band 0 only; Y_0 = a0 c0, so a coefficient x gives irradiance a0 c0 x
    sh[0] += amb_rgb / (SH_A[0] / np.sqrt(4 * np.pi))
    return sh.astype(np.float64)
