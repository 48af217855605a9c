"""Metric rig calibration from ChArUco board shots.

Shots folder layout (``mvrecon rig calibrate RIG --charuco DIR``)::

    DIR/<shot>/<camera>.png      one folder per moment the board was held still; inside, the
                                 photo of each camera that took part (.png, .jpg, .jpeg, .tif, .bmp),
                                 named after the camera in rig.json; a camera may miss a shot.

Pipeline: detect corners in every photo; per-camera intrinsics and distortion
(``cv2.calibrateCamera`` on that camera's shots); relative poses between cameras from shots they
share, robustly averaged, chained along a maximum spanning tree (edge weight = shared shots);
board pose per shot; then one joint bundle adjustment of all intrinsics, distortion,
camera poses and board poses; finally the world frame (see :class:`CharucoConfig.world_frame`).

Why our own bundle adjustment rather than pycolmap's: pycolmap 4.2's ``BundleAdjuster``
optimises free 3D points (or holds them constant) and has no rigid object with known geometry
and a free 6-DoF pose; fixing the board corners as constant points would pin the board, and
leaving them free loses the metric board prior. Our problem is small (a few thousand corners, a
few hundred unknowns), so a Levenberg-Marquardt on scipy's sparse finite-difference Jacobian
with a Huber loss (see :func:`bundle_adjust`) solves it in about a second.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..cameras import Board, Camera, Rig, invert_rigid
from ..errors import InputError
from ..geometry import axis_angle_to_matrix
from .board import Detection, board_corners, detect_corners, read_gray, validate_board
from .geometry import pose_to_vec, project_points, robust_mean_pose, vec_to_pose

log = logging.getLogger("mvrecon.calibrate")

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DistModel = Literal["k1k2p1p2k3", "k1k2p1p2", "k1k2", "none"]
_N_DIST = {"k1k2p1p2k3": 5, "k1k2p1p2": 4, "k1k2": 2, "none": 0}


@dataclass(frozen=True)
class CharucoConfig:
    """Settings of the ChArUco calibration."""

    dist_model: DistModel = "k1k2p1p2k3"
    """Distortion coefficients estimated (the rest held at zero)."""
    min_corners: int = 8
    """Fewest corners for a detection to be used."""
    min_shots: int = 3
    """Fewest usable shots per camera for its intrinsics."""
    min_shared_shots: int = 2
    """Fewest shots two cameras must share to link their poses."""
    huber_px: float = 1.0
    """Huber loss scale of the bundle adjustment, pixels."""
    world_frame: Literal["rig", "board"] = "rig"
    """``rig``: origin where the optical axes converge (the head position), +Y the cameras' mean
    up, +Z towards the cameras' mean position; ``board``: the first shot's board (origin at its
    top-left corner, +X along it, +Y up the print, +Z out of the printed face)."""
    border_warn: float = 0.1
    """Warn when a camera's corners never came closer to an image border than this fraction."""
    max_rms_px: float = 3.0
    """A per-camera calibration worse than this means the board definition does not fit."""


@dataclass(frozen=True)
class CameraReport:
    """Calibration quality of one camera."""

    name: str
    rms_px: float
    max_px: float
    n_corners: int
    n_shots: int
    coverage: float
    """Fraction of a 8x6 grid of image cells that hold at least one corner."""
    border_gap: dict[str, float]
    """Closest approach of any corner to each border (left, right, top, bottom), fraction of the size."""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class CalibrationResult:
    rig: Rig
    cameras: tuple[CameraReport, ...]
    rms_px: float
    n_shots: int
    board_to_world: dict[str, np.ndarray] = field(default_factory=dict)
    """(4, 4) pose of the board in each shot used."""

    def report(self) -> dict:
        return {
            "format": "mvrecon-calibration/1",
            "method": "charuco",
            "rms_px": self.rms_px,
            "n_shots": self.n_shots,
            "cameras": [asdict(c) | {"warnings": list(c.warnings)} for c in self.cameras],
        }


# --------------------------------------------------------------------------------------------
# shots and detections


def find_shots(directory: str | Path, rig: Rig) -> dict[str, dict[str, Path]]:
    """``{shot: {camera: image path}}`` from ``DIR/<shot>/<camera>.<ext>`` (sorted by shot)."""
    d = Path(directory)
    if not d.is_dir():
        raise InputError("ChArUco shots folder not found", d)
    shots: dict[str, dict[str, Path]] = {}
    names = set(rig.names)
    for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
        imgs = {}
        for f in sorted(sub.iterdir()):
            if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith("."):
                if f.stem not in names:
                    raise InputError(
                        f"image for camera {f.stem!r}, which the rig does not have (cameras: {', '.join(rig.names)})", f
                    )
                imgs[f.stem] = f
        if imgs:
            shots[sub.name] = imgs
    if not shots:
        raise InputError("no shots found: expected DIR/<shot>/<camera>.png", d)
    return shots


def detect_all(board: Board, rig: Rig, shots: dict[str, dict[str, Path]]) -> dict[tuple[str, str], Detection]:
    """Detect corners in every shot; ``{(shot, camera): Detection}`` (all images, even empty).

    Raises :class:`InputError` for an image of the wrong size, or markers the board lacks
    (the board definition does not match the shots)."""
    import sys

    from rich.progress import track

    out = {}
    jobs = [(shot, cam_name, path) for shot, imgs in shots.items() for cam_name, path in imgs.items()]
    for shot, cam_name, path in track(
        jobs, description="detecting ChArUco corners", transient=True, disable=not sys.stderr.isatty()
    ):
        img = read_gray(path, rig[cam_name])
        det = detect_corners(board, img)
        # a few stray ids could be other markers in the room; several mean another board
        if det.foreign_markers >= 3:
            raise InputError(
                f"{det.foreign_markers} ArUco markers with ids the board definition lacks "
                f"({board.squares_x}x{board.squares_y} squares, {board.dictionary}): the board "
                "definition does not match the shots",
                path,
            )
        out[(shot, cam_name)] = det
    return out


# --------------------------------------------------------------------------------------------
# per-camera intrinsics


def _calib_flags(model: DistModel) -> int:
    import cv2

    return {
        "k1k2p1p2k3": 0,
        "k1k2p1p2": cv2.CALIB_FIX_K3,
        "k1k2": cv2.CALIB_FIX_K3 | cv2.CALIB_ZERO_TANGENT_DIST,
        "none": cv2.CALIB_FIX_K1 | cv2.CALIB_FIX_K2 | cv2.CALIB_FIX_K3 | cv2.CALIB_ZERO_TANGENT_DIST,
    }[model]


def calibrate_camera(
    cam: Camera, obj: list[np.ndarray], img: list[np.ndarray], model: DistModel
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], float]:
    """Intrinsics of one camera from its board views; returns K, dist (5,), board_to_cam (4, 4)
    per view and the RMS (px)."""
    import cv2

    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-12)
    rms, K, dist, rvecs, tvecs = cv2.calibrateCamera(
        [o.astype(np.float32) for o in obj],
        [i.astype(np.float32).reshape(-1, 1, 2) for i in img],
        (cam.width, cam.height),
        None,
        None,
        flags=_calib_flags(model),
        criteria=crit,
    )
    poses = []
    for r, t in zip(rvecs, tvecs):
        M = np.eye(4)
        M[:3, :3] = axis_angle_to_matrix(np.asarray(r, np.float64).ravel())
        M[:3, 3] = np.asarray(t).ravel()
        poses.append(M)
    return K, np.asarray(dist, dtype=np.float64).ravel()[:5], poses, float(rms)


# --------------------------------------------------------------------------------------------
# linking cameras


def link_cameras(
    names: list[str], board_to_cam: dict[tuple[str, str], np.ndarray], min_shared: int, shots_dir: Path
) -> dict[str, np.ndarray]:
    """``cam_from_ref`` (4, 4) of every camera, ``ref`` = ``names[0]``, chained along a maximum
    spanning tree of robustly averaged pairwise relative poses."""
    by_cam: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}
    for (shot, cam), M in board_to_cam.items():
        by_cam[cam][shot] = M
    edges = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = sorted(set(by_cam[a]) & set(by_cam[b]))
            if len(shared) < min_shared:
                continue
            rel = np.stack([by_cam[b][s] @ invert_rigid(by_cam[a][s]) for s in shared])
            mean, inl = robust_mean_pose(rel)
            edges[(a, b)] = (int(inl.sum()), mean)
            edges[(b, a)] = (int(inl.sum()), invert_rigid(mean))
    # Prim's algorithm on the heaviest edges: most shared shots give the best relative poses.
    placed = {names[0]: np.eye(4)}
    while len(placed) < len(names):
        best = None
        for (a, b), (w, M) in edges.items():
            if a in placed and b not in placed and (best is None or w > best[0]):
                best = (w, a, b, M)
        if best is None:
            missing = [n for n in names if n not in placed]
            raise InputError(
                f"camera {missing[0]!r} shares fewer than {min_shared} board shots with the cameras linked "
                f"so far ({', '.join(placed)}): too few shared views to link it to the rest",
                shots_dir,
            )
        _, a, b, M = best
        placed[b] = M @ placed[a]
    return placed


# --------------------------------------------------------------------------------------------
# joint bundle adjustment


@dataclass
class _Problem:
    cam_idx: np.ndarray  # (N,) camera of each observed corner
    shot_idx: np.ndarray  # (N,) shot of each observed corner
    obj: np.ndarray  # (N, 3) board-frame corner
    uv: np.ndarray  # (N, 2) observed pixel
    n_cams: int
    n_shots: int
    n_dist: int

    @property
    def n_intr(self) -> int:
        return 4 + self.n_dist


def _unpack(x: np.ndarray, p: _Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ni = p.n_intr
    intr = x[: p.n_cams * ni].reshape(p.n_cams, ni)
    o = p.n_cams * ni
    cam_pose = np.concatenate([np.zeros((1, 6)), x[o : o + (p.n_cams - 1) * 6].reshape(-1, 6)])
    o += (p.n_cams - 1) * 6
    shot_pose = x[o:].reshape(p.n_shots, 6)
    return intr, cam_pose, shot_pose


def _residuals(x: np.ndarray, p: _Problem) -> np.ndarray:
    intr, cam_pose, shot_pose = _unpack(x, p)
    Rc = axis_angle_to_matrix(cam_pose[:, :3])
    Rs = axis_angle_to_matrix(shot_pose[:, :3])
    Xr = np.einsum("nij,nj->ni", Rs[p.shot_idx], p.obj) + shot_pose[p.shot_idx, 3:]
    Xc = np.einsum("nij,nj->ni", Rc[p.cam_idx], Xr) + cam_pose[p.cam_idx, 3:]
    dist = np.zeros((len(p.cam_idx), 5))
    dist[:, : p.n_dist] = intr[p.cam_idx, 4:]
    uv = project_points(Xc, intr[p.cam_idx, :4], dist)
    return (uv - p.uv).ravel()


def _sparsity(p: _Problem):
    from scipy.sparse import lil_matrix

    n = len(p.cam_idx)
    ni = p.n_intr
    n_par = p.n_cams * ni + (p.n_cams - 1) * 6 + p.n_shots * 6
    A = lil_matrix((2 * n, n_par), dtype=np.int8)
    rows = np.arange(n)
    for k in range(ni):
        A[2 * rows, p.cam_idx * ni + k] = 1
        A[2 * rows + 1, p.cam_idx * ni + k] = 1
    off = p.n_cams * ni
    moving = p.cam_idx > 0
    for k in range(6):
        c = off + (p.cam_idx[moving] - 1) * 6 + k
        A[2 * rows[moving], c] = 1
        A[2 * rows[moving] + 1, c] = 1
        s = off + (p.n_cams - 1) * 6 + p.shot_idx * 6 + k
        A[2 * rows, s] = 1
        A[2 * rows + 1, s] = 1
    return A


def _huber_weights(r: np.ndarray, delta: float) -> np.ndarray:
    """IRLS weights (N,) of residual pairs (N, 2) under a Huber loss on their length."""
    n = np.linalg.norm(r, axis=1)
    return np.where(n <= delta, 1.0, delta / np.maximum(n, 1e-300))


def _huber_cost(r: np.ndarray, delta: float) -> float:
    n = np.linalg.norm(r, axis=1)
    return float(np.sum(np.where(n <= delta, n * n, 2 * delta * n - delta * delta)))


def bundle_adjust(p: _Problem, x0: np.ndarray, huber_px: float, max_iter: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Minimise the Huber reprojection cost over all parameters; returns x and the residuals (N, 2).

    Levenberg-Marquardt with iteratively reweighted normal equations. The Jacobian comes from
    finite differences over the sparsity pattern (scipy's ``approx_derivative`` with the
    ``jac_sparsity`` grouping: columns sharing no residual are perturbed together, ~30 residual
    evaluations per Jacobian whatever the rig size); the normal matrix has only a few hundred
    unknowns, so it is solved densely. (``least_squares`` with ``jac_sparsity`` was tried here: its
    ``lsmr`` inner solver needed many iterations, and the ``exact`` solver's SVD of the tall
    Jacobian dominated the run time.)
    """
    from scipy.optimize._numdiff import approx_derivative, group_columns

    A = _sparsity(p).tocsc()
    groups = group_columns(A)
    x = x0.copy()
    r = _residuals(x, p).reshape(-1, 2)
    cost = _huber_cost(r, huber_px)
    lam = 1e-4
    for _ in range(max_iter):
        J = approx_derivative(_residuals, x, method="2-point", sparsity=(A, groups), args=(p,)).tocsr()
        w = np.repeat(_huber_weights(r, huber_px), 2)
        JtW = J.T.multiply(w[None]).tocsr()
        H = (JtW @ J).toarray()
        g = JtW @ r.ravel()
        d = np.maximum(np.diag(H), 1e-12)
        improved = False
        for _ in range(10):
            dx = np.linalg.solve(H + lam * np.diag(d), -g)
            xn = x + dx
            rn = _residuals(xn, p).reshape(-1, 2)
            cn = _huber_cost(rn, huber_px)
            if cn < cost:
                improved = True
                break
            lam *= 10
        if not improved:
            break
        rel = (cost - cn) / max(cost, 1e-300)
        x, r, cost = xn, rn, cn
        lam = max(lam / 10, 1e-9)
        if rel < 1e-10 or np.max(np.abs(dx) / (np.abs(x) + 1e-3)) < 1e-10:
            break
    return x, r


# --------------------------------------------------------------------------------------------
# world frame


def convergence_point(centers: np.ndarray, axes: np.ndarray) -> np.ndarray | None:
    """Least-squares point (3,) closest to all optical axes (lines ``c + s a``), None if they
    are (nearly) parallel."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c, a in zip(centers, axes):
        P = np.eye(3) - np.outer(a, a)
        A += P
        b += P @ c
    if np.linalg.cond(A) > 1e6:
        return None
    return np.linalg.solve(A, b)


def rig_world_frame(cam_from_ref: list[np.ndarray], fallback_origin: np.ndarray) -> np.ndarray:
    """``ref_to_world`` (4, 4) of the ``rig`` world frame (see :class:`CharucoConfig`)."""
    c2r = [invert_rigid(M) for M in cam_from_ref]
    centers = np.array([M[:3, 3] for M in c2r])
    axes = np.array([M[:3, 2] for M in c2r])
    ups = -np.array([M[:3, 1] for M in c2r])
    origin = convergence_point(centers, axes)
    if origin is None:
        origin = fallback_origin
    y = ups.sum(0)
    y /= np.linalg.norm(y)
    z = centers.mean(0) - origin
    z -= y * (z @ y)
    if np.linalg.norm(z) < 1e-6:
        # cameras all around the subject: camera 0 defines the front
        z = centers[0] - origin
        z -= y * (z @ y)
    z /= np.linalg.norm(z)
    x = np.cross(y, z)
    R = np.stack([x, y, z])
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = -R @ origin
    return M


def board_world_frame(board_to_ref: np.ndarray) -> np.ndarray:
    """``ref_to_world`` putting the board's print frame at the origin with +Y up the print and
    +Z out of the printed face."""
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    return invert_rigid(board_to_ref @ flip)


# --------------------------------------------------------------------------------------------
# the whole calibration


def coverage_stats(uv: np.ndarray, width: int, height: int) -> tuple[float, dict[str, float]]:
    """(fraction of 8x6 cells holding a corner, closest approach to each border as a fraction)."""
    if len(uv) == 0:
        return 0.0, {"left": 1.0, "right": 1.0, "top": 1.0, "bottom": 1.0}
    gx = np.clip((uv[:, 0] / width * 8).astype(int), 0, 7)
    gy = np.clip((uv[:, 1] / height * 6).astype(int), 0, 5)
    cov = len(set(zip(gx.tolist(), gy.tolist()))) / 48.0
    gap = {
        "left": float(max(0.0, uv[:, 0].min()) / width),
        "right": float(max(0.0, width - 1 - uv[:, 0].max()) / width),
        "top": float(max(0.0, uv[:, 1].min()) / height),
        "bottom": float(max(0.0, height - 1 - uv[:, 1].max()) / height),
    }
    return cov, gap


def calibrate_from_detections(
    rig: Rig,
    board: Board,
    detections: dict[tuple[str, str], Detection],
    cfg: CharucoConfig,
    shots_dir: Path = Path("."),
) -> CalibrationResult:
    """The calibration from already detected corners (see the module docstring)."""
    import cv2

    validate_board(board)
    corners3d = board_corners(board)
    names = rig.names
    usable = {k: d for k, d in detections.items() if len(d) >= cfg.min_corners}
    # per-camera intrinsics
    K_all, dist_all, board_to_cam = {}, {}, {}
    for cam in rig.cameras:
        keys = sorted(k for k in usable if k[1] == cam.name)
        if not any(k[1] == cam.name for k in detections):
            raise InputError(f"camera {cam.name!r} has no image in any shot", shots_dir)
        if not keys:
            markers = max(
                (d.n_markers + d.foreign_markers for k, d in detections.items() if k[1] == cam.name), default=0
            )
            if markers >= 4:
                raise InputError(
                    f"camera {cam.name!r} sees up to {markers} ArUco markers of {board.dictionary} but no ChArUco "
                    f"corners fit a {board.squares_x}x{board.squares_y} board: the board definition does not match "
                    "the shots",
                    shots_dir,
                )
            raise InputError(
                f"no board found in any shot of camera {cam.name!r} (at least {cfg.min_corners} "
                "ChArUco corners needed)",
                shots_dir,
            )
        if len(keys) < cfg.min_shots:
            raise InputError(
                f"camera {cam.name!r} sees the board in only {len(keys)} shots, needs "
                f"{cfg.min_shots} for its intrinsics",
                shots_dir,
            )
        obj = [corners3d[usable[k].ids] for k in keys]
        img = [usable[k].corners for k in keys]
        try:
            K, dist, poses, rms = calibrate_camera(cam, obj, img, cfg.dist_model)
        except cv2.error as e:
            raise InputError(
                f"camera {cam.name!r}: OpenCV could not calibrate from its {len(keys)} board views "
                f"({str(e).strip().splitlines()[-1]}); add shots with the board tilted",
                shots_dir,
            ) from None
        log.info("camera %s: %d shots, intrinsics RMS %.3f px", cam.name, len(keys), rms)
        if rms > cfg.max_rms_px:
            raise InputError(
                f"camera {cam.name!r}: reprojection RMS {rms:.1f} px from the board views; the "
                "board definition does not match the shots",
                shots_dir,
            )
        K_all[cam.name], dist_all[cam.name] = K, dist
        for k, M in zip(keys, poses):
            board_to_cam[k] = M

    cam_from_ref = link_cameras(names, board_to_cam, cfg.min_shared_shots, shots_dir)

    # board pose of every shot in the reference frame, averaged over the cameras that saw it
    shots = sorted({k[0] for k in board_to_cam})
    shot_pose = {}
    for s in shots:
        cand = np.stack([invert_rigid(cam_from_ref[c]) @ M for (ss, c), M in board_to_cam.items() if ss == s])
        shot_pose[s], _ = robust_mean_pose(cand)

    nd = _N_DIST[cfg.dist_model]
    ci = {n: i for i, n in enumerate(names)}
    si = {s: i for i, s in enumerate(shots)}
    keys = sorted(board_to_cam)
    cam_idx = np.concatenate([np.full(len(usable[k]), ci[k[1]]) for k in keys])
    shot_idx = np.concatenate([np.full(len(usable[k]), si[k[0]]) for k in keys])
    obj = np.concatenate([corners3d[usable[k].ids] for k in keys])
    uv = np.concatenate([usable[k].corners for k in keys])
    prob = _Problem(cam_idx, shot_idx, obj, uv, len(names), len(shots), nd)
    x0 = np.concatenate(
        [
            np.concatenate([[K_all[n][0, 0], K_all[n][1, 1], K_all[n][0, 2], K_all[n][1, 2]], dist_all[n][:nd]])
            for n in names
        ]
        + [pose_to_vec(cam_from_ref[n]) for n in names[1:]]
        + [pose_to_vec(shot_pose[s]) for s in shots]
    )
    r0 = _residuals(x0, prob).reshape(-1, 2)
    x, res = bundle_adjust(prob, x0, cfg.huber_px)
    log.info(
        "bundle adjustment: RMS %.3f -> %.3f px over %d corners",
        np.sqrt((r0**2).sum(1).mean()),
        np.sqrt((res**2).sum(1).mean()),
        len(res),
    )
    intr, cposes, sposes = _unpack(x, prob)
    cam_from_ref_ba = [vec_to_pose(v) for v in cposes]
    board_ref = [vec_to_pose(v) for v in sposes]

    if cfg.world_frame == "board":
        ref_to_world = board_world_frame(board_ref[0])
    else:
        ref_to_world = rig_world_frame(cam_from_ref_ba, np.mean([b[:3, 3] for b in board_ref], 0))
    world_to_ref = invert_rigid(ref_to_world)

    cams, reports = [], []
    err = np.linalg.norm(res, axis=1)
    for i, cam in enumerate(rig.cameras):
        K = np.array([[intr[i, 0], 0, intr[i, 2]], [0, intr[i, 1], intr[i, 3]], [0, 0, 1.0]])
        dist = np.zeros(5)
        dist[:nd] = intr[i, 4:]
        cams.append(cam.replace(K=K, dist=dist, world_to_cam=cam_from_ref_ba[i] @ world_to_ref))
        m = cam_idx == i
        cov, gap = coverage_stats(uv[m], cam.width, cam.height)
        warns = tuple(
            f"corners never came within {cfg.border_warn:.0%} of the {side} border "
            f"(closest {g:.0%}): distortion there is extrapolated"
            for side, g in gap.items()
            if g > cfg.border_warn
        )
        reports.append(
            CameraReport(
                cam.name,
                float(np.sqrt((err[m] ** 2).mean())),
                float(err[m].max()),
                int(m.sum()),
                int(len({s for s in shot_idx[m].tolist()})),
                cov,
                gap,
                warns,
            )
        )
    rms = float(np.sqrt((err**2).mean()))
    meta = dict(rig.meta)
    meta["calibration"] = {
        "method": "charuco",
        "rms_px": rms,
        "world_frame": cfg.world_frame,
        "dist_model": cfg.dist_model,
        "cameras": {r.name: {"rms_px": r.rms_px, "max_px": r.max_px, "n_corners": r.n_corners} for r in reports},
    }
    new_rig = rig.replace(cameras=tuple(cams), board=board, meta=meta)
    return CalibrationResult(
        new_rig, tuple(reports), rms, len(shots), {s: ref_to_world @ board_ref[i] for s, i in si.items()}
    )


def calibrate_charuco(
    rig: Rig, shots_dir: str | Path, cfg: CharucoConfig = CharucoConfig(), board: Board | None = None
) -> CalibrationResult:
    """Calibrate ``rig`` (its camera names and image sizes; poses and intrinsics are estimated)
    from ChArUco shots in ``shots_dir`` (layout in the module docstring); ``board`` defaults to
    ``rig.board``. Nothing is written."""
    shots_dir = Path(shots_dir)
    board = board or rig.board
    if board is None:
        raise InputError("no board definition: the rig has no 'board' and none was given", shots_dir)
    try:
        validate_board(board)
    except ValueError as e:
        raise InputError(f"bad board definition: {e}", shots_dir) from None
    shots = find_shots(shots_dir, rig)
    dets = detect_all(board, rig, shots)
    return calibrate_from_detections(rig, board, dets, cfg, shots_dir)


def format_report(result: CalibrationResult) -> str:
    """The calibration report as a text table."""
    lines = [f"{'camera':<12} {'rms px':>7} {'max px':>7} {'corners':>8} {'shots':>6} {'cover':>6}"]
    for c in result.cameras:
        lines.append(f"{c.name:<12} {c.rms_px:7.3f} {c.max_px:7.3f} {c.n_corners:8d} {c.n_shots:6d} {c.coverage:6.0%}")
    lines.append(f"{'all':<12} {result.rms_px:7.3f}")
    for c in result.cameras:
        for w in c.warnings:
            lines.append(f"warning: camera {c.name}: {w}")
    return "\n".join(lines)


__all__ = [
    "CharucoConfig",
    "CameraReport",
    "CalibrationResult",
    "find_shots",
    "detect_all",
    "calibrate_camera",
    "link_cameras",
    "bundle_adjust",
    "calibrate_from_detections",
    "calibrate_charuco",
    "format_report",
    "rig_world_frame",
    "board_world_frame",
    "coverage_stats",
]
