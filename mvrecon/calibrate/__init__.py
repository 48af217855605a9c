"""Rig calibration: ChArUco boards (metric), structure from motion (pycolmap), per-session
extrinsics refinement, and camera-format import/export.

Public entry points::

    calibrate_charuco(rig, shots_dir, CharucoConfig(), board=None) -> CalibrationResult
    calibrate_sfm(rig, images_dir, SfmConfig(), board=None) -> SfmResult
    refine_extrinsics(session, RefineConfig()) -> RefineResult
    import_rig(path) -> Rig;  export_rig(rig, "colmap"|"colmap-bin"|"opencv"|"nerfstudio", out)
    render_board_shot(board, camera, board_to_world, rng) -> (H, W) uint8
"""

from .board import board_corners, detect_corners, render_board_shot
from .charuco import CalibrationResult, CharucoConfig, calibrate_charuco
from .formats import export_rig, import_rig
from .refine import RefineConfig, RefineResult, refine_extrinsics
from .sfm import SfmConfig, SfmResult, calibrate_sfm

__all__ = [
    "board_corners",
    "detect_corners",
    "render_board_shot",
    "CalibrationResult",
    "CharucoConfig",
    "calibrate_charuco",
    "export_rig",
    "import_rig",
    "RefineConfig",
    "RefineResult",
    "refine_extrinsics",
    "SfmConfig",
    "SfmResult",
    "calibrate_sfm",
]
