"""Per-view face cues: MediaPipe landmarks (478, mapped to iBUG-68) and face-part label images.

Public API::

    detect(image, cfg=DetectConfig()) -> FaceCues | None      one RGB image in memory
    process_image(path, out_dir, cfg=CuesConfig()) -> ViewResult   one file, cached outputs
    run(cfg, session) -> CuesResult                            the stage over a session
    load_view_cues(view_dir) -> FaceCues | None; load_view_labels(view_dir) -> (H, W) uint8
    FaceParser / LandmarkParser / register_parser / get_parser  part segmentation interface
    mediapipe_to_ibug68(points478, conf478) ; IBUG68_FROM_MP   the fixed 478 -> 68 table
"""

from .facemesh import DetectConfig, FaceCues, detect, pick_face
from .mapping import IBUG68_FROM_MP, MP_TO_IBUG68, mediapipe_to_ibug68
from .parsing import FaceParser, LandmarkParser, get_parser, parser_names, register_parser
from .stage import (
    PRESETS,
    CuesConfig,
    CuesResult,
    ViewResult,
    draw_overlay,
    load_view_cues,
    load_view_labels,
    process_image,
    run,
)

__all__ = [
    "DetectConfig",
    "FaceCues",
    "detect",
    "pick_face",
    "IBUG68_FROM_MP",
    "MP_TO_IBUG68",
    "mediapipe_to_ibug68",
    "FaceParser",
    "LandmarkParser",
    "get_parser",
    "parser_names",
    "register_parser",
    "PRESETS",
    "CuesConfig",
    "CuesResult",
    "ViewResult",
    "draw_overlay",
    "load_view_cues",
    "load_view_labels",
    "process_image",
    "run",
]
