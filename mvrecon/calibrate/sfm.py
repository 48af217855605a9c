"""Board-free rig calibration by structure from motion (pycolmap 4.2: SIFT extraction,
exhaustive matching, incremental mapping).

Input layout (``mvrecon rig calibrate RIG --sfm DIR``)::

    DIR/<camera>.png     one photo per rig camera of a static, textured scene (same moment or not)

The rig's intrinsics are used as known and held fixed (``fix_intrinsics``) unless told otherwise.
SfM poses have no scale: it comes from a known distance between two camera centres
(``scale_distance``) or from a ChArUco board visible in at least two of the photos (its corners
are triangulated with the SfM poses and matched to the board's metric geometry). The world
frame is then the ``rig`` frame of :mod:`mvrecon.calibrate.charuco`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cameras import Board, Rig, from_colmap_camera, invert_rigid, to_colmap_camera
from ..errors import InputError, MvreconError
from ..geometry import triangulate, umeyama
from ..io import image_size
from .charuco import IMAGE_EXTS, rig_world_frame

log = logging.getLogger("mvrecon.calibrate")


@dataclass(frozen=True)
class SfmConfig:
    """Settings of the SfM calibration."""

    fix_intrinsics: bool = True
    """Hold the rig's K and distortion fixed (else COLMAP refines focal, centre and distortion)."""
    scale_distance: tuple[str, str, float] | None = None
    """(camera A, camera B, metres between their centres) for the metric scale."""
    max_features: int = 8192
    """SIFT features per image."""
    min_num_matches: int = 15
    """Fewest verified matches for COLMAP to link two images."""
    seed: int = 0
    """Random seed of the mapper (repeatable results)."""


@dataclass(frozen=True)
class SfmResult:
    rig: Rig
    scale: float
    """Metres per SfM unit."""
    scale_source: str
    n_points: int
    rms_px: float


def find_sfm_images(directory: str | Path, rig: Rig) -> dict[str, Path]:
    d = Path(directory)
    if not d.is_dir():
        raise InputError("SfM image folder not found", d)
    found = {}
    for f in sorted(d.iterdir()):
        if f.suffix.lower() in IMAGE_EXTS and f.stem in rig.names:
            found[f.stem] = f
    missing = [n for n in rig.names if n not in found]
    if missing:
        raise InputError(f"no image for camera(s) {', '.join(missing)} (expected DIR/<camera>.png)", d)
    for n, f in found.items():
        w, h = image_size(f)
        cam = rig[n]
        if (w, h) != (cam.width, cam.height):
            raise InputError(f"image is {w}x{h} but camera {n!r} is {cam.width}x{cam.height}", f)
    return found


def _board_scale(board: Board, rig: Rig, images: dict[str, Path], w2c_sfm: dict[str, np.ndarray]) -> float | None:
    """Metres per SfM unit from a ChArUco board seen in >= 2 photos, or None."""
    from .board import board_corners, detect_corners, read_gray

    dets = {}
    for name, p in images.items():
        d = detect_corners(board, read_gray(p, rig[name]))
        if len(d) >= 6:
            dets[name] = d
    if len(dets) < 2:
        return None
    names = list(dets)
    ids = sorted(set().union(*[set(d.ids.tolist()) for d in dets.values()]))
    xn = np.zeros((len(ids), len(names), 2))
    valid = np.zeros((len(ids), len(names)), bool)
    for j, n in enumerate(names):
        pos = {int(i): k for k, i in enumerate(dets[n].ids)}
        un = rig[n].undistort_points(dets[n].corners)
        for r, i in enumerate(ids):
            if i in pos:
                xn[r, j] = un[pos[i]]
                valid[r, j] = True
    X = triangulate(np.stack([w2c_sfm[n][:3] for n in names]), xn, valid)
    ok = np.isfinite(X).all(1)
    if ok.sum() < 6:
        return None
    return umeyama(X[ok], board_corners(board)[np.array(ids)[ok]]).scale


def calibrate_sfm(
    rig: Rig,
    directory: str | Path,
    cfg: SfmConfig = SfmConfig(),
    board: Board | None = None,
    work_dir: Path | None = None,
) -> SfmResult:
    """Poses (and intrinsics unless fixed) of ``rig``'s cameras from photos of a textured scene."""
    import pycolmap

    directory = Path(directory)
    images = find_sfm_images(directory, rig)
    if cfg.scale_distance is not None:
        a, b, m = cfg.scale_distance
        for n in (a, b):
            if n not in rig.names:
                raise InputError(f"--scale-distance names camera {n!r}, which the rig does not have", directory)
        if not m > 0:
            raise InputError(f"--scale-distance must be positive, got {m}", directory)
    elif (board or rig.board) is None:
        raise InputError(
            "no metric scale: give --scale-distance CAM_A CAM_B METRES, or a board definition (the "
            "rig's 'board') and show that board in at least two photos",
            directory,
        )
    tmp = Path(tempfile.mkdtemp(prefix="mvrecon-sfm-", dir=work_dir))
    # COLMAP's glog chatter only when debugging
    old_level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if log.isEnabledFor(logging.DEBUG) else 2
    try:
        db = tmp / "database.db"
        img_dir = tmp / "images"
        img_dir.mkdir()
        for n, p in images.items():
            shutil.copy(p, img_dir / f"{n}{p.suffix.lower()}")
        ext_opts = pycolmap.FeatureExtractionOptions()
        ext_opts.sift.max_num_features = cfg.max_features
        ext_opts.num_threads = 2
        for n, p in images.items():
            model, params = to_colmap_camera(rig[n])
            ro = pycolmap.ImageReaderOptions()
            ro.camera_model = model
            ro.camera_params = ",".join(repr(float(v)) for v in params)
            pycolmap.extract_features(
                db,
                img_dir,
                image_names=[f"{n}{p.suffix.lower()}"],
                camera_mode=pycolmap.CameraMode.PER_IMAGE,
                reader_options=ro,
                extraction_options=ext_opts,
                device=pycolmap.Device.cpu,
            )
        pycolmap.match_exhaustive(db, device=pycolmap.Device.cpu)
        opts = pycolmap.IncrementalPipelineOptions()
        opts.min_num_matches = cfg.min_num_matches
        opts.random_seed = cfg.seed
        opts.num_threads = 2
        opts.multiple_models = False
        if cfg.fix_intrinsics:
            opts.ba_refine_focal_length = False
            opts.ba_refine_principal_point = False
            opts.ba_refine_extra_params = False
        # the mapper's defaults want 10+ images before it trusts a model; a rig has a handful
        opts.min_model_size = 2
        out = tmp / "sparse"
        out.mkdir()
        recs = pycolmap.incremental_mapping(db, img_dir, out, opts)
        if not recs:
            raise MvreconError(f"SfM found no reconstruction in {directory}: too little texture or overlap")
        rec = max(recs.values(), key=lambda r: r.num_reg_images())
        w2c, intr = {}, {}
        for im in rec.images.values():
            if not im.has_pose:
                continue
            n = Path(im.name).stem
            w2c[n] = np.asarray(im.cam_from_world().matrix(), dtype=np.float64)
            cam = rec.cameras[im.camera_id]
            intr[n] = from_colmap_camera(cam.model.name, cam.width, cam.height, np.asarray(cam.params), name=n)
        missing = [n for n in rig.names if n not in w2c]
        if missing:
            raise InputError(
                f"SfM could not register camera(s) {', '.join(missing)}: too few matches with the other photos",
                directory,
            )
        w2c = {n: np.vstack([M, [0, 0, 0, 1]]) if M.shape == (3, 4) else M for n, M in w2c.items()}
        n_points = rec.num_points3D()
        rms = float(rec.compute_mean_reprojection_error())
    finally:
        pycolmap.logging.minloglevel = old_level
        shutil.rmtree(tmp, ignore_errors=True)

    if cfg.scale_distance is not None:
        a, b, m = cfg.scale_distance
        d = np.linalg.norm(invert_rigid(w2c[a])[:3, 3] - invert_rigid(w2c[b])[:3, 3])
        scale = float(m / d)
        source = f"distance {a}-{b} = {m} m"
    else:
        board = board or rig.board
        board_scale = _board_scale(board, rig, images, w2c) if board is not None else None
        if board_scale is None:
            raise InputError(
                "no metric scale: give --scale-distance CAM_A CAM_B METRES or show a ChArUco board "
                "(the rig's 'board') in at least two photos",
                directory,
            )
        scale, source = board_scale, "ChArUco board"
    cams = []
    scaled = {}
    for n in rig.names:
        M = w2c[n].copy()
        M[:3, 3] *= scale
        scaled[n] = M
    # express in camera 0's frame, then the rig world frame
    ref = scaled[rig.names[0]]
    cam_from_ref = [scaled[n] @ invert_rigid(ref) for n in rig.names]
    ref_to_world = rig_world_frame(cam_from_ref, np.zeros(3))
    for n, M in zip(rig.names, cam_from_ref):
        c = rig[n]
        if not cfg.fix_intrinsics:
            c = c.replace(K=intr[n].K, dist=intr[n].dist)
        cams.append(c.replace(world_to_cam=M @ invert_rigid(ref_to_world)))
    meta = dict(rig.meta)
    meta["calibration"] = {"method": "sfm", "rms_px": rms, "scale_source": source, "n_points": n_points}
    log.info("SfM: %d cameras, %d points, RMS %.3f px, scale from %s", len(cams), n_points, rms, source)
    return SfmResult(rig.replace(cameras=tuple(cams), meta=meta), float(scale), source, int(n_points), rms)
