"""The fit stage as data (:class:`~mvrecon.stagedef.StageDef`); its outputs are read back with
:func:`mvrecon.fit.result.load_fit`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..stagedef import Context, StageDef, StageOutputs
from .config import FitConfig


def numbers(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The fit's key numbers from its ``summary.json``."""
    out: dict[str, Any] = {"landmark error (px)": summary.get("landmark_error_px_median")}
    total = summary.get("final_losses", {}).get("total")
    if total is not None:
        out["fit loss"] = float(f"{total:.4g}")
    out["views"] = len(summary.get("views", ()))
    return out


def _run(ctx: Context) -> dict[str, Any]:
    from .stage import fit_session

    return numbers(fit_session(ctx.session, ctx.cfg.fit, model=ctx.model()).summary)


def _load(fit_dir: Path) -> Any:
    from .result import load_fit

    return load_fit(fit_dir)


STAGE = StageDef(
    name="fit",
    config=FitConfig,
    run=_run,
    inputs=Context.model_files,
    upstream=("ingest", "calibrate", "refine", "cues"),
    reads_rig=True,
    outputs=StageOutputs(
        files={
            "params": "params.npz",
            "summary": "summary.json",
            "losses": "losses.png",
            "overlays": "overlays",
            "neutral": "neutral.obj",
            # the head of the first expression group with its fused displacement, else the neutral one
            "head mesh": ("detailed_*.obj", "neutral.obj"),
        },
        load=_load,
    ),
)
