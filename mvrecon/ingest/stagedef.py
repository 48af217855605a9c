"""The ingest stage as data (:class:`~mvrecon.stagedef.StageDef`)."""

from __future__ import annotations

from pathlib import Path

from ..stagedef import Context, StageDef, StageOutputs
from .stage import FORMAT, run


def _inputs(ctx: Context) -> list[Path]:
    s = ctx.session
    return [s.session_file, s.rig_path, *(v.image for v in s.views())]


STAGE = StageDef(
    name="ingest",
    run=run,
    settings=lambda ctx: {"format": FORMAT},
    inputs=_inputs,
    outputs=StageOutputs(files={"manifest": "manifest.json"}),
)
