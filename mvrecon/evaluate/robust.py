"""The convention-robust region protocol (mvrecon's headline), and the unaligned one.

REALY's protocol (:mod:`.realy`) uses the 68 landmarks twice: as heavy weights in the regional
rigid ICP (the keypoints together weigh as much as the region) and as anchors of the non-rigid
step. It works when prediction and scan landmarks follow one convention; REALY gets that by having
each method supply keypoints chosen to match its template. A scan annotated by another person or
scanner does not: brows placed 5 mm higher drag the forehead region 5 mm along the surface, and
the error of a prediction that *is* the scan's surface becomes the size of the convention gap.

The robust protocol keeps REALY's steps and their measure, but lets the surface, not the
landmarks, decide where things are:

1. Global alignment: the 7-keypoint similarity (eye corners, subnasale, mouth corners, as REALY),
   then a rigid ICP of the scan's face (the union of its four regions) onto the prediction,
   trimmed: correspondences on the prediction's open border, or farther than
   ``max(trim_factor * median, trim_min_mm)``, do not pull.
2. Regions cut from the scan by its own landmarks (:mod:`.regions`, as in REALY).
3. Regional rigid ICP from the step-1 pose; the region's keypoints together weigh as much as
   ``keypoint_vertices`` vertices (REALY: as much as the whole region), so they only break the
   ties of a region that could slide along itself. It fits at most ``rigid_points`` of the
   region's vertices, for at most ``rigid_max_iterations`` iterations (and the non-rigid step's
   deformation graph at most ``nicp_data_points``: a 100k-vertex scan costs what a 25k one does).
4. Non-rigid ICP anchored only on the 7 stable keypoints that lie on the region (the eye corners
   on the forehead, the mouth corners on the mouth, the subnasale on the nose; none on the cheek).
   An anchor asks for its landmark's displacement (the snap of a landmark to its nearest region
   vertex adds none), and there is no keypoint-only first step: a few anchors such as the four eye
   corners, nearly on one line, leave an affine map free to turn about that line, and the
   keypoint-only step then swings the forehead by centimetres.
5. Error as REALY: mean distance from each scan-region vertex to its correspondence, in mm.

The price: the rigid steps follow the surface, so a region that is wrong as a whole is partly
forgiven. A smooth +-2 mm field along the normals (tests/evaluate/conftest.py ``wave_field``)
reads a little below the true gap, a little more so than with REALY's steps, most on nose and
mouth at longer wavelengths. In exchange the true surface under another landmark convention reads
a small fraction of what REALY's protocol reads (``bench/eval.py --conventions``).

The unaligned protocol (a scan in the rig's frame, :attr:`EvalConfig.scan_in_rig_frame`): the
prediction and the scan share one calibrated frame, so nothing is aligned; each region's error is
the mean distance from its scan vertices to the prediction's surface, and measures pose and scale
errors too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..geometry import IDENTITY, Similarity, umeyama
from ..parts import REALY_KEYPOINTS
from ..regions import NICP_KEYPOINTS, REGION_NAMES, Region
from ..render.raycast import MeshQuery
from .realy import ProtocolResult, RealyConfig, RegionResult, evaluate_region

#: Landmarks (iBUG-68) that every annotation convention places alike: eye corners, subnasale,
#: mouth corners (REALY's 7 keypoints).
STABLE_KEYPOINTS: tuple[int, ...] = tuple(REALY_KEYPOINTS)
#: Anchors of the robust non-rigid step: REALY's anchors of each region that are stable.
ROBUST_NICP_KEYPOINTS: dict[str, tuple[int, ...]] = {
    name: tuple(k for k in kps if k in STABLE_KEYPOINTS) for name, kps in NICP_KEYPOINTS.items()
}


@dataclass(frozen=True)
class RobustConfig:
    """Settings of the convention-robust protocol (REALY's region steps otherwise, :class:`RealyConfig`)."""

    face_icp_iterations: int = 50
    """Iterations cap of the rigid ICP of the scan's face onto the prediction (step 1)."""
    face_icp_points: int = 5000
    """The face ICP fits a fixed random subset of at most this many scan vertices."""
    face_icp_tolerance_mm: float = 1e-4
    """Stop the face ICP when its mean distance changes by less than this."""
    trim_factor: float = 3.0
    """Face ICP correspondences farther than this many times the median distance do not pull ..."""
    trim_min_mm: float = 1.0
    """... unless they are within this distance."""
    keypoint_vertices: float = 3.0
    """The region's keypoints together weigh as much as this many vertices in the regional rigid ICP."""
    rigid_points: int = 2000
    """The regional rigid ICP fits a fixed random subset of at most this many region vertices."""
    rigid_max_iterations: int = 10
    """Iterations cap of the regional rigid ICP (light keypoints let a smooth region creep along
    itself for many small steps; 10 take it as far as more would, to well under the figures'
    precision, bench/eval.py)."""
    nicp_data_points: int | None = 2000
    """The non-rigid ICP fits its deformation graph to at most this many of a region's vertices."""
    nicp_max_nodes: int = 150
    """Nodes of the non-rigid ICP's deformation graph for large regions (REALY steps: 400): 150
    read a smooth +-2 mm field nearly as 400 do, at a fraction of the cost (bench/eval.py)."""
    nicp_origin: Literal["head", "scan", "region"] = "head"
    """Origin of the non-rigid ICP's coordinates (the translation's stiffness depends on it): a
    head centre from the scan's landmarks, so that a scan's file frame does not matter."""
    keypoint_snap_mm: float | None = 3.0
    """Anchors farther than this from every region vertex (an eye corner over a cut-out eye) do
    not anchor the non-rigid ICP."""
    nicp_keypoint_step: bool = False
    """Start the non-rigid ICP with REALY's keypoint-only step (the stable anchors of a region,
    such as the 4 eye corners on one line, cannot pin an affine map: off by default)."""


def face_icp(query: MeshQuery, points: np.ndarray, cfg: RobustConfig, seed: int = 0) -> tuple[Similarity, int]:
    """Trimmed rigid ICP of scan ``points`` ``(N, 3)`` onto the prediction behind ``query``:
    the motion of the points and the iterations run (see the module docstring, step 1)."""
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) > cfg.face_icp_points:
        pts = pts[np.random.default_rng(seed).choice(len(pts), cfg.face_icp_points, replace=False)]
    motion = IDENTITY
    cur = pts
    prev = np.inf
    it = 0
    while it < cfg.face_icp_iterations:
        cp = query.closest(cur)
        d = cp.distances
        keep = ~query.on_boundary(cp) & (d <= max(cfg.trim_factor * float(np.median(d)), cfg.trim_min_mm * 1e-3))
        if keep.sum() < 10:
            break
        step = umeyama(cur[keep], cp.points[keep], with_scale=False)
        cur = step.apply(cur)
        motion = motion.then(step)
        it += 1
        mean = float(d[keep].mean())
        if abs(prev - mean) < cfg.face_icp_tolerance_mm * 1e-3:
            break
        prev = mean
    return motion, it


def _moved(region: Region, motion: Similarity) -> Region:
    return dataclasses.replace(region, vertices=motion.apply(region.vertices))


def robust_protocol(
    query: MeshQuery,
    align: Similarity,
    pred_landmarks: np.ndarray,
    regions: dict[str, Region],
    scan_landmarks: np.ndarray,
    realy_cfg: RealyConfig,
    cfg: RobustConfig,
    seed: int = 0,
) -> ProtocolResult:
    """Steps 1-5 (module docstring). ``query`` is the prediction already moved by ``align`` (the
    7-keypoint similarity), ``pred_landmarks`` ``(68, 3)`` likewise; ``regions`` and
    ``scan_landmarks`` ``(68, 3)`` in the scan's frame."""
    face = np.concatenate([regions[n].vertices for n in REGION_NAMES], 0)
    motion, _ = face_icp(query, face, cfg, seed) if len(face) else (IDENTITY, 0)
    # the scan moves onto the prediction (its scene is built once); per-vertex errors are the same
    scan_lm = motion.apply(scan_landmarks)
    nicp_cfg = dataclasses.replace(
        realy_cfg.nicp,
        keypoint_step=cfg.nicp_keypoint_step,
        max_data_points=cfg.nicp_data_points,
        max_nodes=cfg.nicp_max_nodes,
        cap_keypoint_free=True,
    )
    realy_cfg = dataclasses.replace(realy_cfg, nicp_origin=cfg.nicp_origin, keypoint_snap_mm=cfg.keypoint_snap_mm)
    results = {}
    for name in REGION_NAMES:
        r = evaluate_region(
            query,
            _moved(regions[name], motion),
            pred_landmarks,
            scan_lm,
            realy_cfg,
            keypoint_total=cfg.keypoint_vertices,
            nicp_keypoints=ROBUST_NICP_KEYPOINTS,
            anchor_offset=True,
            nicp_cfg=nicp_cfg,
            rigid_points=cfg.rigid_points,
            rigid_iterations=cfg.rigid_max_iterations,
        )
        # the transform reported is the region's motion from the scan's own frame
        results[name] = dataclasses.replace(r, transform=None if r.transform is None else motion.then(r.transform))
    return ProtocolResult("robust", results, align.then(motion.inverse()))


def unaligned_protocol(query: MeshQuery, regions: dict[str, Region], realy_cfg: RealyConfig) -> ProtocolResult:
    """Per region, the mean distance (mm) from the scan's vertices to the prediction's surface,
    both as given (one frame); regions the prediction does not cover are reported missing."""
    results = {}
    for name in REGION_NAMES:
        region = regions[name]
        n = len(region.vertex_ids)
        if n < realy_cfg.min_region_vertices or len(region.triangles) == 0:
            results[name] = RegionResult(
                name, "empty", None, n, 0.0, region.vertex_ids, np.zeros(0), note=f"scan region has {n} vertices"
            )
            continue
        cp = query.closest(region.vertices)
        uncovered = query.on_boundary(cp) & (cp.distances > realy_cfg.boundary_tol_mm * 1e-3)
        coverage = 1.0 - float(uncovered.mean())
        err = cp.distances * 1e3
        if coverage < realy_cfg.min_coverage:
            results[name] = RegionResult(
                name,
                "missing",
                None,
                n,
                coverage,
                region.vertex_ids,
                err,
                transform=IDENTITY,
                note=f"prediction covers {100 * coverage:.0f}% of the scan's {name} (< {100 * realy_cfg.min_coverage:.0f}%)",
            )
            continue
        results[name] = RegionResult(
            name, "ok", float(err.mean()), n, coverage, region.vertex_ids, err, transform=IDENTITY
        )
    return ProtocolResult("unaligned", results, IDENTITY)
