"""Per-session refinement of the rig's extrinsics from the session's own photos.

When a rig has moved a little since its calibration (a knocked camera), the session's views
still agree with each other: SIFT matches between the cameras of each frame (ratio test, mutual,
RANSAC on the epipolar geometry) are chained into tracks, triangulated with the rig's poses, and a
bounded bundle adjustment moves the cameras (intrinsics fixed) and the points.

The gauge (a similarity: 7 degrees of freedom the images cannot see) is fixed by the other
cameras, in two steps: the adjustment ties every camera to its calibrated pose by a weak Gaussian
prior (it only makes the problem well posed and keeps directions the images do not constrain
where they were), then a robust similarity fit of the refined camera centres onto the calibrated
ones, over the cameras that agree with each other (the ones that did not move), puts the refined
rig back into the calibrated frame and scale; a moved camera is left out of that fit and keeps
its movement. Each camera may move at most ``max_shift_m`` / ``max_rot_deg`` (the bounds).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..cameras import Rig, rotation_angle_deg, save_rig
from ..errors import MvreconError
from ..geometry import axis_angle_to_matrix, triangulate
from ..io import read_image, write_json
from ..session import Session
from .geometry import sparse_lm

log = logging.getLogger("mvrecon.calibrate")


@dataclass(frozen=True)
class RefineConfig:
    """Settings of the per-session extrinsics refinement."""

    max_features: int = 4000
    """SIFT features per image."""
    ratio: float = 0.8
    """Lowe's ratio test threshold."""
    ransac_px: float = 1.5
    """Epipolar RANSAC threshold, pixels."""
    min_matches: int = 30
    """Fewest verified matches for a camera pair to contribute."""
    max_shift_m: float = 0.02
    """Bound on each camera's centre movement per axis, metres."""
    max_rot_deg: float = 2.0
    """Bound on each camera's rotation change per axis, degrees."""
    prior_mm: float = 10.0
    """Sigma of the weak prior that ties each camera to its calibrated centre, millimetres."""
    prior_deg: float = 0.5
    """Sigma of the weak prior on each camera's rotation, degrees."""
    still_mm: float = 0.3
    """A camera whose centre fits the others' similarity within this is taken as not moved."""
    still_deg: float = 0.03
    """... and whose rotation fits within this, degrees."""
    huber_px: float = 1.0
    """Huber scale of the reprojection residuals, pixels."""
    out_dir: str = "calibrate"
    """Stage folder (in the session) for ``rig.json``, ``refine.json`` and the COLMAP model ``colmap/``."""


@dataclass(frozen=True)
class CameraMove:
    name: str
    shift_mm: float
    rotation_deg: float
    n_observations: int


@dataclass(frozen=True)
class RefineResult:
    rig: Rig
    moves: tuple[CameraMove, ...]
    n_points: int
    rms_before_px: float
    rms_after_px: float
    rig_path: Path | None = None

    def report(self) -> dict:
        return {
            "format": "mvrecon-refine/1",
            "n_points": self.n_points,
            "rms_before_px": self.rms_before_px,
            "rms_after_px": self.rms_after_px,
            "cameras": [asdict(m) for m in self.moves],
        }


# --------------------------------------------------------------------------------------------
# matching and tracks


def _features(img: np.ndarray, n: int):
    import cv2

    sift = cv2.SIFT_create(nfeatures=n)
    kp, desc = sift.detectAndCompute(img, None)
    pts = np.array([k.pt for k in kp], dtype=np.float64).reshape(-1, 2)
    return pts, desc


def _match(da, db, ratio: float) -> np.ndarray:
    """Mutual nearest neighbours passing the ratio test, (M, 2) index pairs."""
    import cv2

    if da is None or db is None or len(da) < 2 or len(db) < 2:
        return np.zeros((0, 2), int)
    bf = cv2.BFMatcher(cv2.NORM_L2)
    ab = bf.knnMatch(da, db, k=2)
    ba = bf.knnMatch(db, da, k=1)
    back = np.array([m[0].trainIdx for m in ba])
    out = [
        (m[0].queryIdx, m[0].trainIdx)
        for m in ab
        if len(m) == 2 and m[0].distance < ratio * m[1].distance and back[m[0].trainIdx] == m[0].queryIdx
    ]
    return np.array(out, dtype=int).reshape(-1, 2)


class _UnionFind:
    def __init__(self, n: int):
        self.p = np.arange(n)

    def find(self, a: int) -> int:
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.p[max(ra, rb)] = min(ra, rb)


def build_tracks(session: Session, cfg: RefineConfig) -> tuple[np.ndarray, np.ndarray]:
    """Tracks across the cameras of each frame.

    Returns ``xn`` (T, C, 2) undistorted normalized observations and ``valid`` (T, C) bool,
    cameras in rig order."""
    import cv2

    rig = session.rig
    C = len(rig)
    all_xn, all_valid = [], []
    for fr in session.frames:
        cams = [c for c in rig.cameras if c.name in fr.images]
        feats = {c.name: _features(read_image(fr.images[c.name], gray=True), cfg.max_features) for c in cams}
        norm = {
            c.name: c.undistort_points(feats[c.name][0]) if len(feats[c.name][0]) else np.zeros((0, 2)) for c in cams
        }
        offs = {}
        total = 0
        for c in cams:
            offs[c.name] = total
            total += len(feats[c.name][0])
        uf = _UnionFind(total)
        for i, a in enumerate(cams):
            for b in cams[i + 1 :]:
                m = _match(feats[a.name][1], feats[b.name][1], cfg.ratio)
                if len(m) < cfg.min_matches:
                    continue
                xa, xb = norm[a.name][m[:, 0]], norm[b.name][m[:, 1]]
                f = 0.5 * (a.K[0, 0] + b.K[0, 0])
                # RANSAC on the epipolar geometry of the images, not of the (possibly moved) rig
                _, inl = cv2.findFundamentalMat(xa, xb, cv2.FM_RANSAC, cfg.ransac_px / f, 0.999)
                if inl is None:
                    continue
                m = m[inl.ravel().astype(bool)]
                if len(m) < cfg.min_matches:
                    continue
                for p, q in m:
                    uf.union(offs[a.name] + p, offs[b.name] + q)
        if total == 0:
            continue
        roots = np.array([uf.find(i) for i in range(total)])
        cam_of = np.concatenate([np.full(len(feats[c.name][0]), rig.names.index(c.name)) for c in cams])
        local = np.concatenate([np.arange(len(feats[c.name][0])) for c in cams])
        uniq, inv, counts = np.unique(roots, return_inverse=True, return_counts=True)
        keep = counts >= 2
        T = int(keep.sum())
        tid = np.full(len(uniq), -1)
        tid[keep] = np.arange(T)
        xn = np.zeros((T, C, 2))
        valid = np.zeros((T, C), bool)
        hits = np.zeros((T, C), int)
        sel = tid[inv] >= 0
        for t, c, li in zip(tid[inv][sel], cam_of[sel], local[sel]):
            hits[t, c] += 1
            xn[t, c] = norm[rig.names[c]][li]
            valid[t, c] = True
        # a track that holds two features of one image is a chaining mistake
        good = (hits <= 1).all(1) & (valid.sum(1) >= 2)
        all_xn.append(xn[good])
        all_valid.append(valid[good])
    if not all_xn:
        return np.zeros((0, C, 2)), np.zeros((0, C), bool)
    return np.concatenate(all_xn), np.concatenate(all_valid)


# --------------------------------------------------------------------------------------------
# bounded bundle adjustment


def _robust(r: np.ndarray, s: float, kind: str) -> np.ndarray:
    """Residuals whose squares are the Huber / Cauchy cost of ``r`` (so plain least squares
    minimises the robust cost, while other residuals stay quadratic); equal to ``r`` near zero."""
    a = np.abs(r)
    if kind == "huber":
        cost = np.where(a <= s, a * a, 2 * s * a - s * s)
    else:
        cost = s * s * np.log1p((r / s) ** 2)
    return np.sign(r) * np.sqrt(cost)


def gauge_fit(
    R_old: np.ndarray, C_old: np.ndarray, R_new: np.ndarray, C_new: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, Rg (3, 3), tg (3,)) taking the refined frame to the calibrated one, from
    camera rotations (C, 3, 3) world-to-camera and centres (C, 3): the rotation from the
    orientations (well conditioned even for cameras on a shallow arc), scale and translation
    from the centres."""
    from .geometry import mean_rotation

    # world' = Rg world  =>  R_new = R_old Rg  =>  Rg ~ R_old^T R_new
    Rg = mean_rotation(np.einsum("cji,cjk->cik", R_old, R_new))
    a = C_new @ Rg.T
    am, om = a.mean(0), C_old.mean(0)
    den = ((a - am) ** 2).sum()
    s = float(((a - am) * (C_old - om)).sum() / den) if den > 1e-12 else 1.0
    return s, Rg, om - s * am


def still_cameras(
    R_old: np.ndarray, C_old: np.ndarray, R_new: np.ndarray, C_new: np.ndarray, tol_m: float, tol_deg: float
) -> np.ndarray:
    """Which cameras did not move: the largest set that one similarity maps onto the calibrated
    poses within ``tol_m`` / ``tol_deg`` (dropping the worst-explained camera one at a time; at
    least two are kept)."""
    keep = np.ones(len(C_old), bool)

    def errors(k):
        s, Rg, tg = gauge_fit(R_old[k], C_old[k], R_new[k], C_new[k])
        e_c = np.linalg.norm(C_new @ Rg.T * s + tg - C_old, axis=1)
        Rn = R_new @ Rg.T
        cos = (np.einsum("cij,cij->c", Rn, R_old) - 1) / 2
        return e_c, np.degrees(np.arccos(np.clip(cos, -1, 1)))

    while True:
        e_c, e_r = errors(keep)
        bad = keep & ((e_c > tol_m) | (e_r > tol_deg))
        if keep.sum() <= 2 or not bad.any():
            return keep
        # drop the camera that, left out, lets the others fit best
        best, best_err = None, np.inf
        for i in np.nonzero(keep)[0]:
            k = keep.copy()
            k[i] = False
            c, r = errors(k)
            e = max(c[k].max() / tol_m, r[k].max() / tol_deg)
            if e < best_err:
                best, best_err = i, e
        keep[best] = False


def _poses(delta: np.ndarray, R0: np.ndarray, C0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera R (C, 3, 3), t (C, 3) from per-camera deltas (C, 6): a rotation applied
    in the camera frame and a centre shift in metres."""
    R = axis_angle_to_matrix(delta[:, :3]) @ R0
    C = C0 + delta[:, 3:]
    t = -np.einsum("cij,cj->ci", R, C)
    return R, t


def refine_poses(
    rig: Rig, xn: np.ndarray, valid: np.ndarray, cfg: RefineConfig
) -> tuple[np.ndarray, np.ndarray, float, float, int]:
    """Bounded BA of all camera poses and the track points.

    Returns deltas (C, 6) (rotation vector, centre shift m), the per-camera observation count,
    RMS before and after (px) and the number of points used."""
    from scipy.sparse import lil_matrix

    cams = rig.cameras
    n_c = len(cams)
    R0 = np.stack([c.R for c in cams])
    C0 = np.stack([c.center for c in cams])
    f = np.array([c.K[0, 0] for c in cams])
    P0 = np.concatenate([R0, np.stack([c.t for c in cams])[:, :, None]], 2)
    X0 = triangulate(P0, xn, valid)
    # keep points in front of every observing camera, reprojecting within a generous gate (the
    # rig may be off by several pixels, that is why we are here)
    ok = np.isfinite(X0).all(1)
    Xc = np.einsum("cij,tj->tci", R0, np.nan_to_num(X0)) + P0[None, :, :, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        proj = Xc[..., :2] / Xc[..., 2:3]
        err = np.linalg.norm(proj - xn, axis=-1) * f[None]
    ok &= np.all((Xc[..., 2] > 0) | ~valid, 1) & np.all((err < 40) | ~valid, 1)
    xn, valid, X0 = xn[ok], valid[ok], X0[ok]
    if len(X0) < 20:
        raise MvreconError(
            f"only {len(X0)} points triangulated from the session's matches: too little texture "
            "or overlap between the views to refine the rig"
        )
    ti, ci = np.nonzero(valid)
    obs = xn[ti, ci]
    n_t = len(X0)
    s_c = cfg.prior_mm / 1000.0
    s_r = np.radians(cfg.prior_deg)

    def residuals(x):
        d = x[: 6 * n_c].reshape(n_c, 6)
        X = x[6 * n_c :].reshape(n_t, 3)
        R, t = _poses(d, R0, C0)
        pc = np.einsum("nij,nj->ni", R[ci], X[ti]) + t[ci]
        r = (pc[:, :2] / pc[:, 2:3] - obs) * f[ci, None]
        # prior residuals in units of their sigma (one sigma costs as much as one pixel)
        pri = np.concatenate([d[:, :3].ravel() / s_r, d[:, 3:].ravel() / s_c])
        return np.concatenate([_robust(r.ravel(), cfg.huber_px, "huber"), pri])

    n_obs = len(ti)
    A = lil_matrix((2 * n_obs + 6 * n_c, 6 * n_c + 3 * n_t), dtype=np.int8)
    rows = np.arange(n_obs)
    for k in range(6):
        A[2 * rows, 6 * ci + k] = 1
        A[2 * rows + 1, 6 * ci + k] = 1
    for k in range(3):
        A[2 * rows, 6 * n_c + 3 * ti + k] = 1
        A[2 * rows + 1, 6 * n_c + 3 * ti + k] = 1
    for c in range(n_c):
        for k in range(3):
            A[2 * n_obs + 3 * c + k, 6 * c + k] = 1
            A[2 * n_obs + 3 * n_c + 3 * c + k, 6 * c + 3 + k] = 1
    lim = np.tile(np.concatenate([np.full(3, np.radians(cfg.max_rot_deg)), np.full(3, cfg.max_shift_m)]), n_c)
    x0 = np.concatenate([np.zeros(6 * n_c), X0.ravel()])
    lb = np.concatenate([-lim, np.full(3 * n_t, -np.inf)])
    ub = np.concatenate([lim, np.full(3 * n_t, np.inf)])

    def rms(x):
        r = residuals(x)[: 2 * n_obs]
        return float(np.sqrt(np.mean(r.reshape(-1, 2) ** 2) * 2))

    before = rms(x0)
    x = sparse_lm(residuals, x0, A, lower=lb, upper=ub)
    counts = np.bincount(ci, minlength=n_c)
    return x[: 6 * n_c].reshape(n_c, 6), counts, before, rms(x), n_t


def refine_extrinsics(session: Session, cfg: RefineConfig = RefineConfig(), write: bool = True) -> RefineResult:
    """Refine the session rig's extrinsics from the session's images; writes
    ``<session>/<cfg.out_dir>/rig.json``, ``refine.json`` (per-camera movement in mm and degrees,
    RMS before and after, the config) and ``colmap/`` (text model) when ``write``."""
    rig = session.rig
    if len(rig) < 3:
        raise MvreconError(
            f"rig {session.rig_path} has {len(rig)} cameras: refining extrinsics needs 3 or more "
            "(with two, a moved camera cannot be told from the other)"
        )
    xn, valid = build_tracks(session, cfg)
    log.info("refine: %d tracks over %d frames", len(xn), len(session.frames))
    deltas, counts, before, after, n_pts = refine_poses(rig, xn, valid, cfg)
    R, t = _poses(deltas, np.stack([c.R for c in rig.cameras]), np.stack([c.center for c in rig.cameras]))
    old_c = np.stack([c.center for c in rig.cameras])
    new_c = -np.einsum("cji,cj->ci", R, t)
    old_R = np.stack([c.R for c in rig.cameras])
    keep = still_cameras(old_R, old_c, R, new_c, cfg.still_mm / 1000.0, cfg.still_deg)
    # the gauge: the similarity that puts the cameras that did not move back where they were
    s, Rs, ts = gauge_fit(old_R[keep], old_c[keep], R[keep], new_c[keep])
    log.info("refine: gauge from %s (scale change %.2e)", ", ".join(np.array(rig.names)[keep]), s - 1)
    cams, moves = [], []
    for i, c in enumerate(rig.cameras):
        M = np.eye(4)
        M[:3, :3] = R[i] @ Rs.T
        M[:3, 3] = -M[:3, :3] @ (s * Rs @ new_c[i] + ts)
        new = c.replace(world_to_cam=M)
        cams.append(new)
        moves.append(
            CameraMove(
                c.name,
                float(1000 * np.linalg.norm(new.center - c.center)),
                rotation_angle_deg(new.R, c.R),
                int(counts[i]),
            )
        )
    meta = dict(rig.meta)
    meta["refined_from"] = str(session.rig_path)
    new_rig = rig.replace(cameras=tuple(cams), meta=meta)
    result = RefineResult(new_rig, tuple(moves), n_pts, before, after)
    if write:
        out = session.root / cfg.out_dir
        from .formats import export_rig

        export_rig(new_rig, "colmap", out / "colmap")
        write_json(out / "refine.json", result.report() | {"config": asdict(cfg)})
        # rig.json last: its presence means the stage finished
        p = save_rig(new_rig, out / "rig.json")
        result = RefineResult(new_rig, tuple(moves), n_pts, before, after, p)
    return result


def format_moves(result: RefineResult) -> str:
    return format_move_table(result.moves, result.n_points, result.rms_before_px, result.rms_after_px)


def format_move_table(moves: Sequence[CameraMove], n_points: int, rms_before_px: float, rms_after_px: float) -> str:
    """The table :func:`format_moves` prints, from a refinement's figures (as ``refine.json`` holds them)."""
    lines = [f"{'camera':<10} {'moved mm':>9} {'rot deg':>8} {'obs':>6}"]
    for m in moves:
        lines.append(f"{m.name:<10} {m.shift_mm:9.2f} {m.rotation_deg:8.3f} {m.n_observations:6d}")
    lines.append(f"{n_points} points, RMS {rms_before_px:.2f} -> {rms_after_px:.2f} px")
    return "\n".join(lines)
