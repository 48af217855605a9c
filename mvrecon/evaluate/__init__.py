"""Evaluation of a reconstructed face against a scan: region errors by the convention-robust
protocol (the headline), by REALY's on request (``realy``, parity with its official code;
``EvalConfig(compute_realy=True)``, ``--realy``), unaligned for a scan in the rig's frame, the
landmark agreement, NoW, Chamfer, F-score.

Public API::

    from mvrecon.evaluate import EvalConfig, evaluate, evaluate_files, load_face_mesh, write_outputs
    pred = load_face_mesh("pred.obj", "pred_landmarks.txt")        # units told from the face width
    scan = load_face_mesh("scan.ply", "scan_landmarks.txt", units="mm")
    result = evaluate(pred, scan, EvalConfig(compute_realy=True))    # -> EvalResult
    result.all_mm, result.protocols["realy"].all_mm, result.landmarks.warning
    write_outputs(result, "out/")                                    # metrics.json, heatmap.png, metrics.md
    evaluate_to_dir(pred_mesh, pred_lm, scan_mesh, scan_lm, "out/")  # the three steps at once

``mvrecon.evaluate.bench.run_bench(DIR)`` scores every subject folder of a benchmark.
"""

from ..regions import REGION_NAMES, cut_regions, region_labels
from .evaluate import REALY_NOT_COMPUTED, EvalConfig, EvalResult, evaluate, evaluate_files
from .landmarks import LandmarkAgreement, check_ibug_order
from .meshes import FaceMesh, load_face_mesh, make_face_mesh, read_landmarks, read_mesh
from .realy import ProtocolResult, RealyConfig, RegionResult
from .report import evaluate_to_dir, write_outputs
from .robust import RobustConfig

__all__ = [
    "EvalConfig",
    "EvalResult",
    "FaceMesh",
    "LandmarkAgreement",
    "REALY_NOT_COMPUTED",
    "ProtocolResult",
    "REGION_NAMES",
    "RealyConfig",
    "RegionResult",
    "RobustConfig",
    "check_ibug_order",
    "cut_regions",
    "evaluate",
    "evaluate_files",
    "evaluate_to_dir",
    "load_face_mesh",
    "make_face_mesh",
    "read_landmarks",
    "read_mesh",
    "region_labels",
    "write_outputs",
]
