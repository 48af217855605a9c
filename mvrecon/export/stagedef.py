"""The export stage as data (:class:`~mvrecon.stagedef.StageDef`)."""

from __future__ import annotations

from typing import Any

from ..stagedef import Context, StageDef, StageOutputs, stage_config
from .config import ExportConfig


def _run(ctx: Context) -> dict[str, Any]:
    from .stage import export

    r = export(ctx.session, stage_config(ctx.cfg.export, "export"))
    return {
        "triangles": r.lod_triangles[0],
        "GLB (MB)": round(r.glb_bytes / 1e6, 2),
        "morph targets": len(r.target_names),
    }


# it reads the fit's head and the texture stage's images, never bakes them itself
STAGE = StageDef(
    name="export",
    config=ExportConfig,
    run=_run,
    upstream=("fit", "texture"),
    outputs=StageOutputs(files={"glb": "head.glb", "asset": "asset.json"}),
)
