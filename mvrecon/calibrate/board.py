"""ChArUco boards: the OpenCV object for a :class:`~mvrecon.cameras.Board`, the 3D corner
positions, corner detection, and a renderer of synthetic board shots with exact lens distortion.

Board frame (OpenCV 4.11 ``CharucoBoard``): origin at the outer top-left corner of the printed
chessboard area, +X along the rows of squares, +Y down the printed image, +Z into the board
(so a camera in front of the board sees it with +Z pointing away), metres.
Chessboard corner ``i`` sits at ``board_corners(board)[i]``; OpenCV's charuco ids index it.

OpenCV 4.11 vs 5.x: 4.7+ replaced the old ``cv2.aruco.CharucoBoard_create`` /
``detectMarkers`` + ``interpolateCornersCharuco`` pair with ``cv2.aruco.CharucoBoard((sx, sy),
square, marker, dictionary)`` and ``cv2.aruco.CharucoDetector(board).detectBoard(img)``, which is
what is used here; boards printed by OpenCV < 4.6 need ``legacy_pattern=True``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cameras import Board, Camera
from ..errors import InputError

#: Supersampling of the renderer per axis (``SS**2`` rays per output pixel).
SS = 2


# --------------------------------------------------------------------------------------------
# the board


def _dictionary(name: str):
    import cv2

    key = name if name.startswith("DICT_") else f"DICT_{name}"
    if not hasattr(cv2.aruco, key):
        raise ValueError(f"unknown ArUco dictionary {name!r}")
    return cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, key))


@functools.lru_cache(maxsize=16)
def _cv_board_cached(sx: int, sy: int, square: float, marker: float, dictionary: str, legacy: bool):
    import cv2

    b = cv2.aruco.CharucoBoard((sx, sy), square, marker, _dictionary(dictionary))
    b.setLegacyPattern(bool(legacy))
    return b


def _board_key(board: Board) -> tuple:
    return (
        int(board.squares_x),
        int(board.squares_y),
        float(board.square_length),
        float(board.marker_length),
        str(board.dictionary),
        bool(board.legacy_pattern),
    )


def validate_board(board: Board) -> None:
    """Raise ``ValueError`` for a board OpenCV cannot build (sizes, dictionary too small)."""
    if board.squares_x < 2 or board.squares_y < 2:
        raise ValueError(f"board has {board.squares_x}x{board.squares_y} squares, needs at least 2x2")
    if not 0 < board.marker_length < board.square_length:
        raise ValueError(
            f"marker length {board.marker_length} m must be positive and below the square "
            f"length {board.square_length} m"
        )
    n_markers = (board.squares_x * board.squares_y) // 2
    d = _dictionary(board.dictionary)
    if n_markers > d.bytesList.shape[0]:
        raise ValueError(f"board needs {n_markers} markers but {board.dictionary} has {d.bytesList.shape[0]}")


def cv_board(board: Board):
    """The ``cv2.aruco.CharucoBoard`` for ``board`` (cached; do not modify it)."""
    validate_board(board)
    return _cv_board_cached(*_board_key(board))


def board_corners(board: Board) -> np.ndarray:
    """Chessboard inner corners (N, 3) in the board frame, metres; row ``i`` is charuco id ``i``."""
    return np.asarray(cv_board(board).getChessboardCorners(), dtype=np.float64).reshape(-1, 3).copy()


def board_size_m(board: Board) -> tuple[float, float]:
    """(width, height) of the chessboard area, metres."""
    return board.squares_x * board.square_length, board.squares_y * board.square_length


@functools.lru_cache(maxsize=8)
def _texture_cached(key: tuple, px_per_square: int) -> np.ndarray:
    b = _cv_board_cached(*key)
    sx, sy = key[0], key[1]
    img = b.generateImage((sx * px_per_square, sy * px_per_square), marginSize=0, borderBits=1)
    img.setflags(write=False)
    return img


def board_texture(board: Board, px_per_square: int) -> np.ndarray:
    """The printed chessboard area as a uint8 image (H, W), ``px_per_square`` pixels per square;
    texture pixel (i, j) covers board X in [j, j+1) / px_per_m (its centre at (j + 0.5) / px_per_m)."""
    cv_board(board)
    return _texture_cached(_board_key(board), int(px_per_square))


# --------------------------------------------------------------------------------------------
# detection


@dataclass(frozen=True)
class Detection:
    """ChArUco corners found in one image.

    Attributes:
        ids: (N,) int charuco corner ids (rows of :func:`board_corners`).
        corners: (N, 2) pixel positions (OpenCV convention, pixel centres at integers).
        n_markers: ArUco markers of the board found.
        foreign_markers: markers of the same dictionary whose ids the board does not have.
    """

    ids: np.ndarray
    corners: np.ndarray
    n_markers: int
    foreign_markers: int = 0

    def __len__(self) -> int:
        return len(self.ids)


def detect_corners(board: Board, image: np.ndarray) -> Detection:
    """Detect ChArUco corners (sub-pixel) in a gray or RGB uint8 image (H, W[, 3])."""
    import cv2

    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    b = cv_board(board)
    cp = cv2.aruco.CharucoParameters()
    cp.tryRefineMarkers = True
    dp = cv2.aruco.DetectorParameters()
    # Sub-pixel marker corners make the homography that seeds the chessboard corners tighter.
    dp.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    det = cv2.aruco.CharucoDetector(b, cp, dp)
    ch_corners, ch_ids, _m_corners, m_ids = det.detectBoard(gray)
    board_ids = set(np.asarray(b.getIds()).ravel().tolist())
    n_markers = 0 if m_ids is None else len(m_ids)
    # Markers outside the board's id range mean a different board (or a wrong definition).
    ad = cv2.aruco.ArucoDetector(b.getDictionary(), dp)
    _c, all_ids, _r = ad.detectMarkers(gray)
    foreign = 0 if all_ids is None else int(sum(1 for i in np.asarray(all_ids).ravel() if int(i) not in board_ids))
    if ch_ids is None or len(ch_ids) == 0:
        return Detection(np.zeros(0, int), np.zeros((0, 2)), n_markers, foreign)
    ids = np.asarray(ch_ids, dtype=int).ravel()
    corners = _refine(gray, board, np.asarray(ch_corners, dtype=np.float64).reshape(-1, 2))
    order = np.argsort(ids)
    return Detection(ids[order], corners[order], n_markers, foreign)


def _refine(gray: np.ndarray, board: Board, corners: np.ndarray) -> np.ndarray:
    """Re-run ``cornerSubPix`` on the detector's corners (N, 2).

    OpenCV 4.11's ``CharucoDetector`` returns corners shifted by +0.5 px (measured on an exactly
    rendered board: a corner at 95.5 comes back at 96.0), while plain ``cornerSubPix`` is unbiased.
    The window stays inside the white gap between a corner and the nearest marker.
    """
    import cv2

    if len(corners) < 2:
        return corners
    d = np.linalg.norm(corners[:, None] - corners[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    sq_px = float(np.median(d.min(1)))
    gap = sq_px * (1 - board.marker_length / board.square_length) / 2
    half = int(np.clip(np.floor(0.8 * gap), 2, 10))
    c = corners.astype(np.float32).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-4)
    out = cv2.cornerSubPix(gray, c, (half, half), (-1, -1), crit).reshape(-1, 2).astype(np.float64)
    # keep the detector's corner where the refinement wandered off (occlusion, blur)
    bad = np.linalg.norm(out - corners, axis=1) > max(1.5, 0.25 * half)
    out[bad] = corners[bad]
    return out


# --------------------------------------------------------------------------------------------
# rendering


def _cam_key(camera: Camera, ss: int) -> tuple:
    return (camera.width, camera.height, tuple(camera.K.ravel().tolist()), tuple(camera.dist.tolist()), ss)


@functools.lru_cache(maxsize=8)
def _normalized_rays(key: tuple) -> np.ndarray:
    """Undistorted normalized coordinates (SS*SS, H*W, 2) float64 of each supersample of each
    pixel; cached per camera because undistorting millions of points is the costly part."""
    import cv2

    w, h, kflat, dist, ss = key
    K = np.array(kflat).reshape(3, 3)
    offs = (np.arange(ss) + 0.5) / ss - 0.5
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    out = np.empty((ss * ss, h * w, 2), dtype=np.float64)
    for k, (oy, ox) in enumerate((oy, ox) for oy in offs for ox in offs):
        px = np.stack([u.ravel() + ox, v.ravel() + oy], 1)
        if any(dist):
            crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 1e-14)
            out[k] = cv2.undistortPointsIter(px.reshape(-1, 1, 2), K, np.array(dist), None, None, crit).reshape(-1, 2)
        else:
            out[k] = (px - K[:2, 2]) @ np.linalg.inv(K[:2, :2]).T
    out.setflags(write=False)
    return out


def camera_rays(camera: Camera, ss: int = SS) -> np.ndarray:
    """(ss*ss, H*W, 2) undistorted normalized coordinates of the supersamples of every pixel."""
    return _normalized_rays(_cam_key(camera, ss))


def plane_to_image_coords(
    camera: Camera, plane_to_world: np.ndarray, ss: int = SS, window: tuple[int, int, int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Where each supersample ray of ``camera`` hits the plane z=0 of ``plane_to_world`` (4, 4).

    ``window`` (y0, y1, x0, x1) limits the work to those pixel rows and columns.
    Returns plane (X, Y) (ss*ss, P, 2) metres (P pixels of the window, row-major, or H*W) and a mask (ss*ss, P) of rays that hit the
    plane in front of the camera. Exact: a plane maps to normalized image coordinates by the
    homography ``[r1 r2 t]``, inverted here per ray.
    """
    T = camera.world_to_cam @ np.asarray(plane_to_world, dtype=np.float64)
    H = np.column_stack([T[:3, 0], T[:3, 1], T[:3, 3]])
    Hinv = np.linalg.inv(H)
    xn = camera_rays(camera, ss)
    if window is not None:
        y0, y1, x0, x1 = window
        xn = xn.reshape(ss * ss, camera.height, camera.width, 2)[:, y0:y1, x0:x1].reshape(ss * ss, -1, 2)
    q = xn @ Hinv[:, :2].T + Hinv[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        XY = q[..., :2] / q[..., 2:3]
        # a ray (x, y, 1) meets the plane at camera depth z; behind the camera means z <= 0
        z_cam = T[2, 0] * XY[..., 0] + T[2, 1] * XY[..., 1] + T[2, 3]
    hit = np.isfinite(XY).all(-1) & (z_cam > 0)
    return XY, hit


def render_plane(
    camera: Camera,
    plane_to_world: np.ndarray,
    texture: np.ndarray,
    px_per_m: float,
    origin_px: tuple[float, float] = (0.0, 0.0),
    ss: int = SS,
) -> tuple[np.ndarray, np.ndarray]:
    """Render a textured plane (exact per-ray intersection, with lens distortion, supersampled).

    Args:
        texture: (h, w) float or uint8; texture pixel (i, j) covers plane
            X in [(j - origin_px[0]) / px_per_m, ...) and likewise Y with i.
        plane_to_world: (4, 4) pose of the plane (its z = 0), metres.
    Returns:
        image (H, W) float32 (the mean texture value over the supersamples that hit it, 0 where
        none did) and the coverage (H, W) in [0, 1] (fraction of supersamples on the texture),
        so a caller composites ``image * coverage + background * (1 - coverage)``.
    """
    import cv2

    tex = np.asarray(texture, dtype=np.float32)
    th, tw = tex.shape[:2]
    H, W = camera.height, camera.width
    y0, y1, x0, x1 = _plane_window(
        camera, plane_to_world, (tw / px_per_m, th / px_per_m), (origin_px[0] / px_per_m, origin_px[1] / px_per_m)
    )
    img_full = np.zeros((H, W), np.float32)
    cov_full = np.zeros((H, W), np.float32)
    if y1 <= y0 or x1 <= x0:
        return img_full, cov_full
    h, w = y1 - y0, x1 - x0
    XY, hit = plane_to_image_coords(camera, plane_to_world, ss, (y0, y1, x0, x1))
    tu = (XY[..., 0] * px_per_m + origin_px[0] - 0.5).astype(np.float32)
    tv = (XY[..., 1] * px_per_m + origin_px[1] - 0.5).astype(np.float32)
    tu[~hit] = -1e6
    tv[~hit] = -1e6
    acc = np.zeros(h * w, np.float64)
    cov = np.zeros(h * w, np.float64)
    for k in range(XY.shape[0]):
        s = cv2.remap(
            tex,
            tu[k].reshape(h, w),
            tv[k].reshape(h, w),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        ).ravel()
        inside = (tu[k] >= -0.5) & (tu[k] <= tw - 0.5) & (tv[k] >= -0.5) & (tv[k] <= th - 0.5)
        acc += np.where(inside, s, 0.0)
        cov += inside
    cov /= XY.shape[0]
    img = np.where(cov > 0, acc / np.maximum(cov * XY.shape[0], 1e-9), 0.0)
    img_full[y0:y1, x0:x1] = img.reshape(h, w)
    cov_full[y0:y1, x0:x1] = cov.reshape(h, w)
    return img_full, cov_full


def _plane_window(
    camera: Camera, plane_to_world: np.ndarray, size_m: tuple[float, float], origin_m: tuple[float, float]
) -> tuple[int, int, int, int]:
    """Pixel window (y0, y1, x0, x1) holding the projection of the textured rectangle, or the
    whole image when part of it lies behind the camera or outside the field of view (where a
    distortion polynomial may fold points back into the image)."""
    full = (0, camera.height, 0, camera.width)
    n = 32
    t = np.linspace(0.0, 1.0, n)
    u = np.concatenate([t, np.ones(n), t[::-1], np.zeros(n)]) * size_m[0] - origin_m[0]
    v = np.concatenate([np.zeros(n), t, np.ones(n), t[::-1]]) * size_m[1] - origin_m[1]
    P = np.stack([u, v, np.zeros_like(u)], 1) @ plane_to_world[:3, :3].T + plane_to_world[:3, 3]
    pc = camera.to_camera(P)
    if np.any(pc[:, 2] <= 1e-6):
        return full
    xn = pc[:, :2] / pc[:, 2:3]
    # field of view of the image corners (undistorted), with a margin
    corners = np.array(
        [[0, 0], [camera.width - 1, 0], [0, camera.height - 1], [camera.width - 1, camera.height - 1]], float
    )
    lim = np.abs(camera.undistort_points(corners)).max(0) * 1.3
    if np.any(np.abs(xn) > lim):
        return full
    uv, _ = camera.project(P)
    x0 = int(np.clip(np.floor(uv[:, 0].min()) - 3, 0, camera.width))
    x1 = int(np.clip(np.ceil(uv[:, 0].max()) + 4, 0, camera.width))
    y0 = int(np.clip(np.floor(uv[:, 1].min()) - 3, 0, camera.height))
    y1 = int(np.clip(np.ceil(uv[:, 1].max()) + 4, 0, camera.height))
    return y0, y1, x0, x1


def _projected_square_px(board: Board, camera: Camera, board_to_world: np.ndarray) -> float:
    """Largest on-image size (pixels) of one board square, to pick the texture resolution."""
    wm, hm = board_size_m(board)
    pts = np.array([[x, y, 0.0] for x in np.linspace(0, wm, 5) for y in np.linspace(0, hm, 5)])
    pw = pts @ board_to_world[:3, :3].T + board_to_world[:3, 3]
    uv, z = camera.project(pw)
    if np.any(z <= 0):
        return 200.0
    grid = uv.reshape(5, 5, 2)
    dx = np.linalg.norm(np.diff(grid, axis=0), axis=-1).max() / (board.squares_x / 4)
    dy = np.linalg.norm(np.diff(grid, axis=1), axis=-1).max() / (board.squares_y / 4)
    return float(max(dx, dy))


def render_board_shot(board: Board, camera: Camera, board_to_world: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A realistic 8-bit gray photo (H, W) uint8 of ``board`` posed by ``board_to_world`` (4, 4)
    (board frame as in the module docstring, metres) seen by ``camera`` (with its distortion).

    Every output pixel is ``SS x SS`` rays, each undistorted exactly, intersected with the board
    plane and sampled from a board print whose resolution follows the on-image square size
    (so the texture is never coarser than the rays); the board sits on white paper (half a
    square margin) in front of a dim textured background; then a lighting gradient, a mild
    blur (sigma 0.5-0.8 px) and sensor noise (sigma ~1.5 grey levels) from ``rng``.
    """
    import cv2

    validate_board(board)
    sq_px = _projected_square_px(board, camera, np.asarray(board_to_world, dtype=np.float64))
    # 2x the supersample density, rounded to a multiple of 8 so textures get reused across shots
    pps = int(np.clip(np.ceil(sq_px * SS * 2 / 8) * 8, 32, 512))
    tex = board_texture(board, pps).astype(np.float32)
    margin = pps // 2
    paper = np.pad(tex, margin, constant_values=255.0)
    # print contrast: black ink is not black, white paper not saturated
    paper = 25.0 + paper * (215.0 / 255.0)
    px_per_m = pps / board.square_length
    img, cov = render_plane(camera, board_to_world, paper, px_per_m, origin_px=(margin, margin))

    h, w = camera.height, camera.width
    # background: low-frequency clutter so the detector sees something other than flat grey
    lowres = rng.uniform(30, 110, size=(max(2, h // 64), max(2, w // 64))).astype(np.float32)
    bg = cv2.resize(lowres, (w, h), interpolation=cv2.INTER_CUBIC)
    out = img * cov + bg * (1.0 - cov)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy = rng.uniform(-0.25, 0.25, 2)
    light = 1.0 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)
    out = out * light * rng.uniform(0.85, 1.05)
    sigma = float(rng.uniform(0.5, 0.8))
    out = cv2.GaussianBlur(out, (0, 0), sigma)
    out = out + rng.normal(0.0, 1.5, size=out.shape).astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def read_gray(path: str | Path, camera: Camera | None = None) -> np.ndarray:
    """Read a calibration shot as gray uint8 (H, W); the size must match ``camera`` when given."""
    from ..io import read_image

    img = read_image(path, gray=True)
    if camera is not None and (img.shape[1], img.shape[0]) != (camera.width, camera.height):
        raise InputError(
            f"image is {img.shape[1]}x{img.shape[0]} but camera {camera.name!r} is {camera.width}x{camera.height}", path
        )
    return img
