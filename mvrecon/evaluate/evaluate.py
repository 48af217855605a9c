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
from typing import Literal

import numpy as np

from ..errors import InputError
from ..geometry import Similarity
from ..regions import REGION_NAMES, cut_regions
from ..render.raycast import MeshQuery
from .keypoints import KeypointSetName
from .landmarks import LandmarkAgreement, landmark_agreement
from .meshes import FaceMesh, Units, check_same_scale, load_face_mesh
from .metrics import NowResult, SurfaceMetrics, crop_mask, now_distance, surface_metrics
from .realy import ProtocolResult, RealyConfig, RegionResult, global_alignment, realy_protocol
from .robust import RobustConfig, robust_protocol, unaligned_protocol

log = logging.getLogger("mvrecon.evaluate")


Headline = Literal["auto", "robust", "realy", "unaligned"]


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation (defaults follow REALY and NoW)."""

    pred_units: Units = "auto"
    """Units of the prediction file: m, cm, mm, or auto (told from the face's width)."""
    scan_units: Units = "auto"
    """Units of the scan file: m, cm, mm, or auto."""
    headline: Headline = "auto"
    """Protocol of the headline figures: robust, realy, unaligned; auto: unaligned for a
    scan in the rig's frame, else robust."""
    scan_in_rig_frame: bool = False
    """The scan is in the prediction's frame (scanned in the rig's calibrated volume): also measure
    it unaligned, so pose and scale errors count."""
    compute_realy: bool = False
    """Also run the ``realy`` protocol (parity with the official REALY code; several times the CPU
    of the rest of an evaluation, bench/eval.py): only on request (``--realy``), and always when it
    is the headline."""
    realy: RealyConfig = field(default_factory=RealyConfig)
    """Settings of the REALY protocol (parity with the official code); the robust protocol starts from them."""
    robust: RobustConfig = field(default_factory=RobustConfig)
    """Settings of the convention-robust protocol."""
    pred_keypoints: KeypointSetName = "model"
    """The session evaluate stage's landmarks of the fitted mesh: the model's landmark vertices, or
    its ``ibug`` set (:mod:`.keypoints`); :func:`evaluate` takes the landmarks it is given."""
    landmark_gap_warn_mm: float = 2.5
    """Warn that the landmark conventions differ when a group's median gap exceeds this."""
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

    def headline_protocol(self) -> str:
        """The protocol the headline figures come from."""
        if self.headline == "auto":
            return "unaligned" if self.scan_in_rig_frame else "robust"
        if self.headline == "unaligned" and not self.scan_in_rig_frame:
            raise InputError(
                'the unaligned headline needs a scan in the rig\'s frame (session.json scan "frame": "rig")'
            )
        return self.headline

    def runs_realy(self) -> bool:
        """Whether the ``realy`` protocol runs: on request, or as the headline."""
        return self.compute_realy or self.headline_protocol() == "realy"


#: What the reports say where a ``realy`` figure would be when the protocol did not run.
REALY_NOT_COMPUTED = "not computed (--realy)"

#: What each protocol computes, for metrics.json and the reports.
PROTOCOL_NOTES: dict[str, str] = {
    "robust": "7-keypoint similarity + trimmed rigid ICP of the scan's face; per region a rigid ICP where the "
    "keypoints weigh a few vertices, and a non-rigid ICP anchored only on the 7 stable keypoints; mean "
    "scan-vertex to prediction distance (mm); all = mean of 4 regions",
    "realy": "REALY's official code (czh-98/REALY) reimplemented to parity: its 7-keypoint similarity, "
    "per-region rigid ICP with the landmarks weighing as much as the region, per-vertex non-rigid ICP anchored "
    "on the landmarks; mean scan-vertex to prediction distance (mm); all = mean of 4 regions. Sensitive to the "
    "landmark convention: scan landmarks placed 4-6 mm higher on the brows add about 1 mm to 'all' for a "
    "perfect prediction (bench/eval.py --conventions)",
    "unaligned": "no alignment (the scan is in the rig's frame): mean distance from each scan-region vertex to "
    "the prediction's surface (mm), pose and scale errors included; all = mean of 4 regions",
}


@dataclass(frozen=True)
class EvalResult:
    """Everything one evaluation measured; distances in millimetres.

    ``protocols`` the region results of each protocol run (``robust``; ``realy`` when
    :meth:`EvalConfig.runs_realy`; ``unaligned`` for a scan in the rig's frame); ``headline`` the name of the one reported first;
    ``alignment`` the 7-keypoint similarity taking the prediction onto the scan; ``landmarks`` the
    landmark agreement after it; ``now`` the NoW-style distances; ``surface`` Chamfer, F-score and
    normal consistency; ``scan`` the scan (metres) for the heatmap; ``timings_s`` seconds per step.
    """

    pred: FaceMesh
    scan: FaceMesh
    alignment: Similarity
    protocols: dict[str, ProtocolResult]
    headline: str
    landmarks: LandmarkAgreement
    now: NowResult
    surface: SurfaceMetrics
    config: EvalConfig
    timings_s: dict[str, float]

    @property
    def regions(self) -> dict[str, RegionResult]:
        """The headline protocol's regions."""
        return self.protocols[self.headline].regions

    @property
    def all_mm(self) -> float | None:
        """The headline protocol's "all" (mean of the four regions; None when one is missing)."""
        return self.protocols[self.headline].all_mm

    @property
    def missing_regions(self) -> list[str]:
        return self.protocols[self.headline].missing_regions

    def vertex_errors_mm(self, protocol: str | None = None) -> np.ndarray:
        """Per scan vertex error ``(N,)`` mm of a protocol (the headline's by default); NaN
        outside the four regions."""
        err = np.full(len(self.scan.vertices), np.nan)
        for r in self.protocols[protocol or self.headline].regions.values():
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

        def protocol(p: ProtocolResult) -> dict:
            regions = {}
            for name in REGION_NAMES:
                r = p.regions[name]
                regions[name] = {
                    "status": r.status,
                    "mean_mm": r.mean_mm,
                    "n_scan_vertices": r.n_vertices,
                    "coverage": round(r.coverage, 4),
                    "rigid_icp_iterations": r.rigid_iterations,
                    "note": r.note,
                }
            return {
                **{f"{n}_mm": p.regions[n].mean_mm for n in REGION_NAMES},
                "all_mm": p.all_mm,
                "missing_regions": p.missing_regions,
                "regions": regions,
                "protocol": PROTOCOL_NOTES[p.name],
            }

        head = self.protocols[self.headline]
        fs = {
            f"fscore_{t:g}mm": {"f": f, "precision": p, "recall": rc} for t, (f, p, rc) in self.surface.fscore.items()
        }
        return {
            "prediction": src(self.pred),
            "scan": {**src(self.scan), "frame": "rig" if self.config.scan_in_rig_frame else "own"},
            "headline": {
                "protocol": self.headline,
                **{f"{n}_mm": head.regions[n].mean_mm for n in REGION_NAMES},
                "all_mm": head.all_mm,
                "missing_regions": head.missing_regions,
            },
            **{name: protocol(p) for name, p in self.protocols.items()},
            # readers tell "not run" from the key's absence; this says why and how to get it
            **({} if "realy" in self.protocols else {"not_computed": {"realy": REALY_NOT_COMPUTED}}),
            "landmarks": self.landmarks.to_dict(),
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
                "robust_pred_to_scan_matrix": self.protocols["robust"].alignment.matrix(),
            },
            "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()},
            "config": dataclasses.asdict(self.config),
        }


def _transformed(mesh: FaceMesh, t: Similarity) -> FaceMesh:
    return dataclasses.replace(mesh, vertices=t.apply(mesh.vertices), landmarks=t.apply(mesh.landmarks))


def evaluate(pred: FaceMesh, scan: FaceMesh, cfg: EvalConfig = EvalConfig()) -> EvalResult:
    """Score a predicted face mesh against a scan (both :class:`FaceMesh`, metres).

    The inputs are not modified; the prediction is moved onto the scan by the 7-keypoint
    similarity, then each protocol and metric runs as its module docstring says: the robust region
    protocol always, REALY's when :meth:`EvalConfig.runs_realy`, the unaligned one for a scan in
    the rig's frame.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    headline = cfg.headline_protocol()
    check_same_scale(pred, scan)
    align = global_alignment(pred.landmarks, scan.landmarks)
    pa = _transformed(pred, align)
    query = MeshQuery(pa.vertices, pa.triangles)
    regions = cut_regions(scan.vertices, scan.triangles, scan.landmarks)
    landmarks = landmark_agreement(pa.landmarks, scan.landmarks, cfg.landmark_gap_warn_mm)
    if landmarks.warning:
        log.warning("%s: %s", scan.name, landmarks.warning)
    timings["align_and_cut"] = time.perf_counter() - t0

    protocols: dict[str, ProtocolResult] = {}
    t = time.perf_counter()
    protocols["robust"] = robust_protocol(
        query, align, pa.landmarks, regions, scan.landmarks, cfg.realy, cfg.robust, cfg.seed
    )
    timings["robust"] = time.perf_counter() - t
    if cfg.runs_realy():
        # REALY aligns with its own similarity (not align's), from the prediction as given
        t = time.perf_counter()
        protocols["realy"] = realy_protocol(
            pred.vertices, pred.triangles, pred.landmarks, regions, scan.landmarks, cfg.realy, timings
        )
        timings["realy"] = time.perf_counter() - t
    if cfg.scan_in_rig_frame:
        t = time.perf_counter()
        protocols["unaligned"] = unaligned_protocol(MeshQuery(pred.vertices, pred.triangles), regions, cfg.realy)
        timings["unaligned"] = time.perf_counter() - t
    for name, r in protocols[headline].regions.items():
        if r.status != "ok":
            log.warning("%s: %s region %s %s (%s)", scan.name, headline, name, r.status, r.note)

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
    return EvalResult(pred, scan, align, protocols, headline, landmarks, now, surface, cfg, timings)


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
