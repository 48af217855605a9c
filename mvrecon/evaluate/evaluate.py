"""``evaluate(pred, scan, cfg) -> EvalResult``: a predicted face mesh against a scan.

Everything a run needs is in :class:`EvalConfig`; the result is a plain dataclass and the writers
(:mod:`.report`) are separate, so a session stage, the CLI and the benchmark runner share one path:
``load_face_mesh`` x2 -> :func:`evaluate` -> :func:`mvrecon.evaluate.report.write_outputs`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .geometry import MeshQuery, Similarity
from .meshes import FaceMesh, Units, check_same_scale, load_face_mesh
from .metrics import NowResult, SurfaceMetrics, crop_mask, now_distance, surface_metrics
from .realy import RealyConfig, RegionResult, evaluate_region, global_alignment, realy_all
from .regions import REGION_NAMES, cut_regions

log = logging.getLogger("mvrecon.evaluate")


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation (defaults follow REALY and NoW)."""

    pred_units: Units = "auto"
    """Units of the prediction file: m, cm, mm, or auto (told from the face's width)."""
    scan_units: Units = "auto"
    """Units of the scan file: m, cm, mm, or auto."""
    realy: RealyConfig = field(default_factory=RealyConfig)
    """REALY region protocol settings."""
    crop_radius_mm: float = 100.0
    """Sphere around the scan's nose tip (landmark 30) for NoW, Chamfer, F-score and normals."""
    now_icp_iterations: int = 30
    """Iterations cap of the NoW rigid refinement."""
    fscore_thresholds_mm: tuple[float, ...] = (1.0, 2.5)
    """Distance thresholds of the F-scores."""
    n_samples: int = 20000
    """Surface samples per mesh for Chamfer, F-score and normal consistency."""
    seed: int = 0
    """Seed of the surface sampling (results are deterministic)."""


@dataclass(frozen=True)
class EvalResult:
    """Everything one evaluation measured; distances in millimetres.

    ``regions`` the REALY result of each region; ``realy_all_mm`` the mean of the four (None when a
    region is missing); ``alignment`` the similarity taking the prediction onto the scan (7
    keypoints); ``now`` the NoW-style distances; ``surface`` Chamfer, F-score and normal
    consistency; ``scan`` the scan (metres) for the heatmap; ``timings_s`` seconds per step.
    """

    pred: FaceMesh
    scan: FaceMesh
    alignment: Similarity
    regions: dict[str, RegionResult]
    realy_all_mm: float | None
    now: NowResult
    surface: SurfaceMetrics
    config: EvalConfig
    timings_s: dict[str, float]

    @property
    def missing_regions(self) -> list[str]:
        return [r for r in REGION_NAMES if self.regions[r].status != "ok"]

    def vertex_errors_mm(self) -> np.ndarray:
        """Per scan vertex REALY error ``(N,)`` mm; NaN outside the four regions."""
        err = np.full(len(self.scan.vertices), np.nan)
        for r in self.regions.values():
            if r.status == "ok":
                err[r.vertex_ids] = r.errors_mm
        return err

    def to_dict(self) -> dict:
        """The content of ``metrics.json``: every metric named with its unit."""

        def src(m: FaceMesh) -> dict:
            return {
                "mesh": m.name,
                "landmarks": None if m.landmarks_path is None else str(m.landmarks_path),
                "units": m.units,
                "units_detected": m.units_detected,
                "n_vertices": int(len(m.vertices)),
                "n_triangles": int(len(m.triangles)),
            }

        regions = {}
        for name in REGION_NAMES:
            r = self.regions[name]
            regions[name] = {
                "status": r.status,
                "mean_mm": r.mean_mm,
                "n_scan_vertices": r.n_vertices,
                "coverage": round(r.coverage, 4),
                "rigid_icp_iterations": r.rigid_iterations,
                "note": r.note,
            }
        realy = {f"{n}_mm": self.regions[n].mean_mm for n in REGION_NAMES}
        realy["all_mm"] = self.realy_all_mm
        fs = {
            f"fscore_{t:g}mm": {"f": f, "precision": p, "recall": rc}
            for t, (f, p, rc) in self.surface.fscore.items()
        }
        return {
            "prediction": src(self.pred),
            "scan": src(self.scan),
            "realy": {
                **realy,
                "missing_regions": self.missing_regions,
                "regions": regions,
                "protocol": "REALY: 7-keypoint similarity, per-region rigid ICP + optimal-step NICP of the "
                "scan region, mean scan-vertex to prediction distance (mm); all = mean of 4 regions",
            },
            "now": {
                "median_mm": self.now.median_mm,
                "mean_mm": self.now.mean_mm,
                "std_mm": self.now.std_mm,
                "n_scan_points": self.now.n_points,
                "rigid_icp_iterations": self.now.icp_iterations,
                "protocol": "NoW-style: 7-landmark scaled Procrustes + rigid ICP; scan-to-mesh distance "
                f"of scan vertices within {self.config.crop_radius_mm:g} mm of the nose tip",
            },
            "chamfer": {
                "symmetric_mm": self.surface.chamfer_mm,
                "pred_to_scan_mm": self.surface.pred_to_scan_mm,
                "scan_to_pred_mm": self.surface.scan_to_pred_mm,
            },
            **fs,
            "normal_consistency": self.surface.normal_consistency,
            "alignment": {
                "scale": self.alignment.scale,
                "pred_to_scan_matrix": self.alignment.matrix(),
            },
            "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()},
            "config": dataclasses.asdict(self.config),
        }


def _transformed(mesh: FaceMesh, t: Similarity) -> FaceMesh:
    return dataclasses.replace(mesh, vertices=t.apply(mesh.vertices), landmarks=t.apply(mesh.landmarks))


def evaluate(pred: FaceMesh, scan: FaceMesh, cfg: EvalConfig = EvalConfig()) -> EvalResult:
    """Score a predicted face mesh against a scan (both :class:`FaceMesh`, metres).

    The inputs are not modified; the prediction is moved onto the scan by the 7-keypoint
    similarity, then each metric runs as its module docstring says.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    check_same_scale(pred, scan)
    align = global_alignment(pred.landmarks, scan.landmarks)
    pa = _transformed(pred, align)
    query = MeshQuery(pa.vertices, pa.triangles)
    regions = cut_regions(scan.vertices, scan.triangles, scan.landmarks)
    timings["align_and_cut"] = time.perf_counter() - t0

    results: dict[str, RegionResult] = {}
    for name in REGION_NAMES:
        t = time.perf_counter()
        results[name] = evaluate_region(query, regions[name], pa.landmarks, scan.landmarks, cfg.realy)
        timings[f"realy_{name}"] = time.perf_counter() - t
        if results[name].status != "ok":
            log.warning("%s: REALY region %s %s (%s)", scan.name, name, results[name].status, results[name].note)

    t = time.perf_counter()
    radius = cfg.crop_radius_mm * 1e-3
    centre = scan.landmarks[30]
    crop = crop_mask(scan.vertices, centre, radius)
    # the crop's own triangles: every vertex inside, so the NoW points and the sampled surface agree
    crop_tris = scan.triangles[crop[scan.triangles].all(1)]
    now = now_distance(query, scan.vertices[crop], cfg.now_icp_iterations, seed=cfg.seed)
    timings["now"] = time.perf_counter() - t

    t = time.perf_counter()
    moved_scan = now.transform.apply(scan.vertices)
    surface = surface_metrics(
        pa.vertices, pa.triangles, query, moved_scan, crop_tris, now.transform.apply(centre), radius,
        cfg.fscore_thresholds_mm, cfg.n_samples, cfg.seed,
    )  # fmt: skip
    timings["surface"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return EvalResult(pred, scan, align, results, realy_all(results), now, surface, cfg, timings)


def evaluate_files(
    pred_mesh: str | Path,
    pred_landmarks: str | Path,
    scan_mesh: str | Path,
    scan_landmarks: str | Path,
    cfg: EvalConfig = EvalConfig(),
) -> EvalResult:
    """Read the four files (units per ``cfg``) and :func:`evaluate` them."""
    pred = load_face_mesh(pred_mesh, pred_landmarks, cfg.pred_units)
    scan = load_face_mesh(scan_mesh, scan_landmarks, cfg.scan_units)
    return evaluate(pred, scan, cfg)
