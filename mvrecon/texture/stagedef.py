"""The texture stage as data (:class:`~mvrecon.stagedef.StageDef`); its outputs are read back
with :func:`mvrecon.texture.stage.load_textures`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..stagedef import Context, StageDef, StageOutputs, stage_config
from .config import TextureConfig


def _run(ctx: Context) -> dict[str, Any]:
    from .stage import run

    t = run(stage_config(ctx.cfg.texture, "texture"), ctx.session).textures
    seen = float((t.skin_weight > 0)[t.skin_mask].mean()) if t.skin_mask.any() else 0.0
    return {"skin texels seen (%)": round(100 * seen, 1), "size": f"{t.skin.shape[1]}x{t.skin.shape[0]}"}


def _load(texture_dir: Path) -> Any:
    from .stage import load_textures

    return load_textures(texture_dir)


STAGE = StageDef(
    name="texture",
    config=TextureConfig,
    run=_run,
    upstream=("ingest", "calibrate", "refine", "fit", "detail"),
    reads_rig=True,
    outputs=StageOutputs(
        files={
            "albedo": "albedo.png",
            "eyes": "eyes.png",
            "mouth": "mouth.png",
            "eyelashes": "eyelashes.png",
            "normal": "normal.png",
            "displacement": "displacement.png",
            "displacement scale": "displacement.json",
            "weight": "weight.png",
            "summary": "summary.json",
        },
        load=_load,
    ),
)
