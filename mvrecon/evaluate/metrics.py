"""Whole-face metrics besides REALY: the NoW-style scan-to-mesh distance, symmetric Chamfer
distance, F-score and normal consistency.

NoW (Sanyal et al., CVPR 2019): the prediction is aligned to the scan by a scaled Procrustes fit
on 7 landmarks (here REALY's 7: eye corners, nose bottom, mouth corners), refined by a rigid ICP
that minimises the scan-to-mesh distance; the metric is the median, mean and standard deviation
of the distances from every scan vertex to the predicted surface. NoW's scans come cropped to the
face; here the crop is a sphere of ``crop_radius_mm`` around the scan's nose tip (landmark 30).

Chamfer, F-score and normal consistency compare area-uniform samples of both surfaces inside that
crop, after the NoW alignment. Prediction samples whose closest scan point lies on the scan's open
border (more than 1 mm away) are outside what was scanned and are left out. ``chamfer_mm`` is the mean of the two one-sided mean
point-to-surface distances; the F-score at ``tau`` is the harmonic mean of precision (prediction
samples within ``tau`` of the scan) and recall (scan samples within ``tau`` of the prediction);
normal consistency is the mean ``|n_a . n_b|`` between each sample's normal and the normal of its
closest triangle on the other surface, both directions averaged (1 = identical orientation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import IDENTITY, Similarity, umeyama
from ..render.raycast import MeshQuery
from .geometry import sample_surface


@dataclass(frozen=True)
class NowResult:
    """NoW-style scan-to-mesh distance: median, mean, std in mm over ``n_points`` scan vertices;
    ``transform`` moves the scan crop onto the (landmark-aligned) prediction."""

    median_mm: float
    mean_mm: float
    std_mm: float
    n_points: int
    icp_iterations: int
    transform: Similarity


@dataclass(frozen=True)
class SurfaceMetrics:
    """Chamfer distance (mm), F-scores ``{tau_mm: (f, precision, recall)}`` and normal consistency."""

    chamfer_mm: float
    pred_to_scan_mm: float
    scan_to_pred_mm: float
    fscore: dict[float, tuple[float, float, float]]
    normal_consistency: float


def crop_mask(vertices: np.ndarray, centre: np.ndarray, radius_m: float) -> np.ndarray:
    """``(N,)`` True for vertices within ``radius_m`` of ``centre``."""
    return np.linalg.norm(np.asarray(vertices) - centre, axis=1) <= radius_m


def now_distance(
    query: MeshQuery,
    scan_points: np.ndarray,
    max_iterations: int = 30,
    tol_m: float = 1e-7,
    icp_points: int = 20000,
    seed: int = 0,
) -> NowResult:
    """Rigid ICP of ``scan_points`` ``(N, 3)`` onto the prediction behind ``query``, then the
    scan-to-mesh distances of all points. Points should already be landmark-aligned. The ICP
    fits a fixed random subset of ``icp_points`` points (a rigid motion has 6 unknowns; 20k
    points pin it as well as 100k do, at a fifth of the cost)."""
    motion = IDENTITY
    pts = np.asarray(scan_points)
    if len(pts) > icp_points:
        pts = pts[np.random.default_rng(seed).choice(len(pts), icp_points, replace=False)]
    cur = pts
    prev = np.inf
    it = 0
    cp = query.closest(cur)
    while it < max_iterations:
        step = umeyama(cur, cp.points, with_scale=False)
        cur = step.apply(cur)
        motion = motion.then(step)
        it += 1
        cp = query.closest(cur)
        mean = float(cp.distances.mean())
        if abs(prev - mean) < tol_m:
            break
        prev = mean
    d = query.closest(motion.apply(scan_points)).distances * 1e3
    return NowResult(float(np.median(d)), float(d.mean()), float(d.std()), len(d), it, motion)


def surface_metrics(
    pred_vertices: np.ndarray,
    pred_triangles: np.ndarray,
    pred_query: MeshQuery,
    scan_vertices: np.ndarray,
    scan_triangles: np.ndarray,
    centre: np.ndarray,
    radius_m: float,
    thresholds_mm: tuple[float, ...] = (1.0, 2.5),
    n_samples: int = 20000,
    seed: int = 0,
) -> SurfaceMetrics:
    """Chamfer, F-score and normal consistency of two aligned surfaces inside a sphere."""
    pv = np.asarray(pred_vertices)
    sv = np.asarray(scan_vertices)
    pmask = crop_mask(pv[pred_triangles].mean(1), centre, radius_m)
    smask = crop_mask(sv[scan_triangles].mean(1), centre, radius_m)
    if not pmask.any() or not smask.any():
        nan = float("nan")
        return SurfaceMetrics(nan, nan, nan, {t: (nan, nan, nan) for t in thresholds_mm}, nan)
    ps, pn = sample_surface(pv, pred_triangles, n_samples, seed, pmask)
    ss, sn = sample_surface(sv, scan_triangles, n_samples, seed + 1, smask)
    scan_query = MeshQuery(sv, np.asarray(scan_triangles)[smask])
    to_scan = scan_query.closest(ps)
    to_pred = pred_query.closest(ss)
    # prediction samples beyond what was scanned (their closest scan point is on the scan's
    # border) say nothing about accuracy: a full-head prediction would otherwise be penalised
    # for the scanner's limited field of view
    beyond = scan_query.on_boundary(to_scan) & (to_scan.distances > 1e-3)
    if beyond.all():
        beyond[:] = False
    d_ps = to_scan.distances[~beyond] * 1e3
    pn = pn[~beyond]
    to_scan_normals = to_scan.normals[~beyond]
    d_sp = to_pred.distances * 1e3
    fs = {}
    for tau in thresholds_mm:
        precision = float((d_ps < tau).mean())
        recall = float((d_sp < tau).mean())
        f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        fs[float(tau)] = (f, precision, recall)
    nc = 0.5 * (np.abs((pn * to_scan_normals).sum(1)).mean() + np.abs((sn * to_pred.normals).sum(1)).mean())
    return SurfaceMetrics(
        float(0.5 * (d_ps.mean() + d_sp.mean())), float(d_ps.mean()), float(d_sp.mean()), fs, float(nc)
    )
