"""The evaluate stage as data (:class:`~mvrecon.stagedef.StageDef`)."""

from __future__ import annotations

from ..stagedef import StageDef, StageOutputs
from .evaluate import EvalConfig
from .stage import applies, inputs, run, settings

# a scan in the rig's frame is compared through the motion from the rig in force to the session's
STAGE = StageDef(
    name="evaluate",
    config=EvalConfig,
    run=run,
    applies=applies,
    not_applicable="no scan with landmarks",
    settings=settings,
    inputs=inputs,
    upstream=("fit",),
    reads_rig=True,
    outputs=StageOutputs(
        files={
            "metrics": "metrics.json",
            "table": "metrics.md",
            "heatmap": "heatmap.png",
            "landmarks": "pred_landmarks.json",
        }
    ),
)
