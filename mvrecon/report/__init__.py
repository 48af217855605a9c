"""The session report: one self-contained ``report.html`` with the overlays, maps, metrics and an
inline WebGL view of the asset."""

from .build import REPORT_NAME, ReportConfig, build_report, render_html
from .content import Overlay, ReportContent, StageRow, ViewerMesh, overlays_in
from .viewer import ViewerData, ViewerPart, decimate, mesh_from_glb, prepare

__all__ = [
    "REPORT_NAME",
    "Overlay",
    "ReportConfig",
    "ReportContent",
    "StageRow",
    "ViewerData",
    "ViewerMesh",
    "ViewerPart",
    "build_report",
    "decimate",
    "mesh_from_glb",
    "overlays_in",
    "prepare",
    "render_html",
]
