"""The cues stage as data (:class:`~mvrecon.stagedef.StageDef`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import MvreconError
from ..stagedef import Context, StageDef, StageOutputs, stage_config
from .stage import CuesConfig


def _settings(ctx: Context) -> Any:
    cfg = stage_config(ctx.cfg.cues, "cues")
    return cfg.settings() | {"overlay": cfg.overlay}


def _run(ctx: Context) -> dict[str, Any]:
    from .stage import run

    # a forced run redoes every view; otherwise views whose image, camera and settings match are kept
    res = run(dataclasses.replace(stage_config(ctx.cfg.cues, "cues"), overwrite=ctx.force), ctx.session)
    if res.views and len(res.no_face) == len(res.views):
        raise MvreconError("no face found in any view", ctx.session.stage_dir("cues"))
    n_ok = len(res.views) - len(res.no_face)
    out: dict[str, Any] = {"views with a face": f"{n_ok}/{len(res.views)}"}
    if res.no_face:
        out["no face in"] = ", ".join(res.no_face)
    return out


# the cues read the rig: the model parser fits one head to a frame's views with its cameras
STAGE = StageDef(
    name="cues",
    config=CuesConfig,
    run=_run,
    settings=_settings,
    upstream=("ingest", "calibrate", "refine"),
    reads_rig=True,
    keeps_cache=True,
    outputs=StageOutputs(files={"config": "config.json", "summary": "summary.json"}),
)
