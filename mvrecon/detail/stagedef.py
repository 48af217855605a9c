"""The detail stage as data (:class:`~mvrecon.stagedef.StageDef`); its outputs are read back
with :func:`mvrecon.detail.stage.load_detail`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..stagedef import Context, StageDef, StageOutputs, stage_config
from .config import DetailConfig


def _run(ctx: Context) -> dict[str, Any]:
    import numpy as np

    from .stage import run

    r = run(stage_config(ctx.cfg.detail, "detail"), ctx.session)
    groups = [g for g in r.summary["groups"].values() if g.get("views")]
    out: dict[str, Any] = {"grid": f"{r.maps.size}x{r.maps.size}"}
    if groups:
        out["fine RMS (um)"] = round(float(np.mean([g["fine_rms_um"] for g in groups])), 1)
        out["shading as geometry (%)"] = round(100 * float(np.mean([g["trusted_fraction"] for g in groups])), 1)
    return out


def _load(detail_dir: Path) -> Any:
    from .stage import load_detail

    return load_detail(detail_dir)


STAGE = StageDef(
    name="detail",
    config=DetailConfig,
    run=_run,
    upstream=("ingest", "calibrate", "refine", "fit"),
    reads_rig=True,
    outputs=StageOutputs(
        files={"fine": "fine.npz", "summary": "summary.json", "trust": "trust.png", "preview": "preview.png"},
        load=_load,
    ),
)
