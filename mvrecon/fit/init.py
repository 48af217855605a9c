"""Initialisation without networks: robust landmark triangulation, then a similarity and a first
identity/expression fitted to the model's landmark vertices.

A calibrated rig makes this metric: each landmark seen in two or more views is a 3D point. A view
whose landmarks are wrong (a mis-detection, a 30 px shift) must not spoil it. Views are judged as
a whole first (:func:`judge_views`: does leaving one out make the rest agree?): one displaced as a
whole is moved back onto the others' points, one wrong otherwise is left out. Then each point is
triangulated by RANSAC over view pairs with a pixel threshold, and refined on its inliers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Literal

import numpy as np

from ..geometry import triangulate, umeyama


def reproject(P: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (M, 2) and depths (M,) of point X (3,) in views P (M, 3, 4)."""
    h = P @ np.append(X, 1.0)
    return h[:, :2] / h[:, 2:3], h[:, 2]


def outlier_views(err: np.ndarray, factor: float, floor: float) -> list[int]:
    """Views whose error ``err`` (V,) (NaN: not judged) exceeds ``factor`` times the median over
    the judged views plus ``floor``; none unless at least 3 are judged and 2 would remain."""
    judged = np.isfinite(err)
    if judged.sum() < 3:
        return []
    ref = float(np.median(err[judged]))
    bad = [int(v) for v in np.flatnonzero(judged & (np.nan_to_num(err, nan=-np.inf) > factor * ref + floor))]
    return bad if judged.sum() - len(bad) >= 2 else []


@dataclass
class Triangulation:
    points: np.ndarray
    """(L, 3) world points (NaN where fewer than 2 consistent views)."""
    inliers: np.ndarray
    """(L, M) bool: which views agree with each point."""
    error_px: np.ndarray
    """(L,) RMS reprojection error over inliers."""


def triangulate_landmarks(
    P: np.ndarray, lm: np.ndarray, conf: np.ndarray, threshold_px: float = 8.0, min_conf: float = 0.3
) -> Triangulation:
    """Robustly triangulate L landmarks seen in M views.

    Args:
        P: (M, 3, 4) projection matrices ``K [R | t]`` (undistorted pixels).
        lm: (M, L, 2) landmark pixels.
        conf: (M, L) confidences; below ``min_conf`` a view is not used for that landmark.
        threshold_px: a view is an inlier when it reprojects within this many pixels.
    """
    M, L, _ = lm.shape
    pts = np.full((L, 3), np.nan)
    inl = np.zeros((L, M), bool)
    err = np.full(L, np.nan)
    for j in range(L):
        cand = np.flatnonzero(conf[:, j] >= min_conf)
        if len(cand) < 2:
            continue
        best: np.ndarray | None = None
        best_in = np.zeros(0, np.int64)
        best_score = -1.0
        for a, b in combinations(cand, 2):
            X = triangulate(P[[a, b]], lm[[a, b], j][None], normalize_rows=True)[0]
            px, z = reproject(P[cand], X)
            if np.any(z[[list(cand).index(a), list(cand).index(b)]] <= 0):
                continue
            e = np.linalg.norm(px - lm[cand, j], axis=1)
            ok = (e < threshold_px) & (z > 0)
            score = ok.sum() - 1e-3 * np.minimum(e, threshold_px).sum() / threshold_px
            if score > best_score:
                best, best_in, best_score = X, cand[ok], score
        if best is None or len(best_in) < 2:
            continue
        X = triangulate(P[best_in], lm[best_in, j][None], conf[best_in, j][None], normalize_rows=True)[0]
        px, _ = reproject(P[best_in], X)
        pts[j] = X
        inl[j, best_in] = True
        err[j] = float(np.sqrt(np.mean(np.sum((px - lm[best_in, j]) ** 2, 1))))
    return Triangulation(pts, inl, err)


@dataclass
class InitResult:
    scale: float
    R: np.ndarray
    t: np.ndarray
    id_coeffs: np.ndarray
    exp_coeffs: np.ndarray
    rms_m: float
    """RMS distance (metres) of the fitted landmark vertices to the triangulated points."""
    n_points: int
    landmarks_moved: dict[str, list[float]] = field(default_factory=dict)
    """View -> the (x, y) pixels by which its landmarks were displaced as a whole and moved back."""


#: Landmarks used for the similarity: stable inner-face points (brows, nose, eyes, mouth), not the
#: jaw line, whose fixed vertices do not follow the silhouette.
INNER = np.arange(17, 68)


def fit_landmarks_3d(
    model,
    points: np.ndarray,
    valid: np.ndarray,
    id_reg: float = 3.0,
    exp_reg: float = 3.0,
    n_id: int = 40,
    iters: int = 6,
    with_scale: bool = False,
) -> InitResult:
    """Alternate a similarity and a regularised linear identity/expression solve on the 3D
    landmarks (``points`` (68, 3), ``valid`` (68,) bool).

    ``id_reg``/``exp_reg`` weight the N(0, 1) priors against the squared landmark residual in
    millimetres: with 68 points and ~150 modes the data cannot decide every mode, so only the
    ``n_id`` leading identity modes move here and the fit sharpens them later.
    """
    lmv = model.landmarks68
    use = valid.copy()
    use[:17] = False
    if use.sum() < 6:
        use = valid.copy()
    if use.sum() < 4:
        raise ValueError(f"only {int(use.sum())} landmarks could be triangulated; need at least 4")
    B_id = model.id_basis[:n_id][:, lmv].reshape(n_id, -1).T.astype(np.float64)  # (68*3, K)
    B_ex = model.exp_basis[:, lmv].reshape(model.n_exp, -1).T.astype(np.float64)
    mean = model.mean[lmv].astype(np.float64)
    alpha = np.zeros(n_id)
    beta = np.zeros(model.n_exp)
    lo = np.zeros(model.n_exp) if model.exp_kind == "blendshape" else -np.inf * np.ones(model.n_exp)
    hi = np.ones(model.n_exp) if model.exp_kind == "blendshape" else np.inf * np.ones(model.n_exp)
    sel = np.repeat(use, 3)
    for _ in range(iters):
        shape = mean + (B_id @ alpha + B_ex @ beta).reshape(-1, 3)
        S = umeyama(shape[use], points[use], with_scale=with_scale)
        s, R, t = S.scale, S.rotation, S.translation
        # targets in model space (undo the similarity), residual in millimetres
        tgt = ((points - t) @ R / s).reshape(-1)
        A = np.concatenate([B_id, B_ex], 1)[sel] * 1000.0
        r = (tgt - mean.reshape(-1))[sel] * 1000.0
        reg = np.concatenate([np.full(n_id, id_reg), np.full(model.n_exp, exp_reg)])
        x = np.linalg.solve(A.T @ A + np.diag(reg), A.T @ r)
        alpha, beta = x[:n_id], np.clip(x[n_id:], lo, hi)
    shape = mean + (B_id @ alpha + B_ex @ beta).reshape(-1, 3)
    S = umeyama(shape[use], points[use], with_scale=with_scale)
    s, R, t = S.scale, S.rotation, S.translation
    fitted = s * shape @ R.T + t
    rms = float(np.sqrt(np.mean(np.sum((fitted[use] - points[use]) ** 2, 1))))
    full_alpha = np.zeros(model.n_id)
    full_alpha[:n_id] = alpha
    return InitResult(s, R, t, full_alpha, beta, rms, int(use.sum()))


def reprojection_from_others(
    P: np.ndarray, lm: np.ndarray, conf: np.ndarray, v: int, threshold_px: float
) -> np.ndarray | None:
    """(L, 2) the points the views other than ``v`` triangulate, reprojected into view ``v`` (NaN
    rows where a point is missing or behind it), so that view ``v`` cannot pull the points it
    is compared with; None with fewer than two other views."""
    others = [u for u in range(len(P)) if u != v and conf[u].max() > 0]
    if len(others) < 2:
        return None
    tri = triangulate_landmarks(P[others], lm[others], conf[others], threshold_px=threshold_px)
    px = np.full((lm.shape[1], 2), np.nan)
    for j in np.flatnonzero(np.isfinite(tri.points).all(1)):
        x, z = reproject(P[v : v + 1], tri.points[j])
        if z[0] > 0:
            px[j] = x[0]
    return px


def consistency_scores(
    P: np.ndarray, lm: np.ndarray, conf: np.ndarray, face_size: np.ndarray, min_conf: float = 0.3
) -> np.ndarray:
    """(V + 1,) how well views agree on the landmarks: the median reprojection error (face
    widths) of the points triangulated (plain DLT) from all views [0], or from all views but
    view ``v`` [v + 1]. A view displaced as a whole raises every score but the one leaving it out."""
    V, L, _ = lm.shape
    out = np.full(V + 1, np.nan)
    for h in range(-1, V):
        keep = [u for u in range(V) if u != h and conf[u].max() > 0]
        if len(keep) < 2:
            continue
        errs = []
        for j in range(17, L):
            use = [u for u in keep if conf[u, j] >= min_conf]
            if len(use) < 2:
                continue
            X = triangulate(P[use], lm[use, j][None], normalize_rows=True)[0]
            px, z = reproject(P[use], X)
            if (z <= 0).any():
                continue
            errs.append(np.linalg.norm(px - lm[use, j], axis=1) / face_size[use])
        if errs:
            out[h + 1] = float(np.median(np.concatenate(errs)))
    return out


@dataclass
class ViewVerdict:
    """What the initialisation decided about one view's landmarks."""

    view: int
    action: Literal["shift", "drop"]
    shift_px: np.ndarray
    """(2,) the translation applied to its landmarks (``shift``), pixels of the landmarks given."""
    score_before: float
    score_after: float
    """Consistency of all views (face widths) before and after the verdict."""


def judge_views(
    P: np.ndarray,
    lm: np.ndarray,
    conf: np.ndarray,
    face_size: np.ndarray,
    factor: float = 1.5,
    floor: float = 0.02,
    threshold_px: float = 15.0,
    tolerate: float = 0.0,
) -> list[ViewVerdict]:
    """Find views whose landmarks disagree with the others', one at a time (never leaving fewer
    than three views to judge by).

    The views are inconsistent when the consistency score of all of them exceeds ``factor``
    times the best score with one view left out, plus ``floor`` (face widths); that view is the
    suspect (:func:`consistency_scores`). A detection displaced as a whole (a detector's wrong
    crop; the case of a 30 px shift) keeps its shape: its landmarks are moved by the median
    offset to the points the other views triangulate, and kept when that makes the views
    consistent. Otherwise the view's landmarks are dropped. A view displaced as a whole by less
    than ``tolerate`` face sizes is left as it is (and the judging stops): for a fit that corrects
    the cameras, that is what a camera moved since its calibration looks like.
    """
    lm = lm.copy()
    conf = conf.copy()
    out: list[ViewVerdict] = []
    for _ in range(len(P)):
        active = [v for v in range(len(P)) if conf[v].max() > 0]
        if len(active) < 4:
            break
        s = consistency_scores(P, lm, conf, face_size)
        without = s[1:].copy()
        without[[v for v in range(len(P)) if v not in active]] = np.nan
        if not np.isfinite(s[0]) or not np.isfinite(without).any():
            break
        v = int(np.nanargmin(without))
        best = float(without[v])
        if s[0] <= factor * best + floor:
            break
        reproj = reprojection_from_others(P, lm, conf, v, threshold_px)
        verdict = ViewVerdict(v, "drop", np.zeros(2), float(s[0]), best)
        if reproj is not None:
            use = np.isfinite(reproj).all(1) & (conf[v] > 0)
            use[:17] = False
            if use.sum() >= 6:
                d = np.median(reproj[use] - lm[v, use], axis=0)
                moved = lm.copy()
                moved[v] += d
                after = float(consistency_scores(P, moved, conf, face_size)[0])
                if after <= factor * best + floor:
                    verdict = ViewVerdict(v, "shift", d, float(s[0]), after)
                    if float(np.linalg.norm(d)) < tolerate * float(face_size[v]):
                        break
        if verdict.action == "shift":
            lm[v] += verdict.shift_px
        else:
            conf[v] = 0
        out.append(verdict)
    return out
