"""``mvrecon fit SESSION``: the multi-view hierarchical fit."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import PRESET_NAMES


@click.command("fit")
@click.argument("session", type=click.Path(path_type=Path))
@click.option(
    "--preset",
    "preset_name",
    type=click.Choice(PRESET_NAMES),
    default="default",
    show_default=True,
    help="fast: 192 px face crops, half the steps; default: 384 px crops; "
    "best: as default (no slower fit measured better on every subject).",
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "per_view", "per_frame"]),
    default="auto",
    show_default=True,
    help="Expression and pose per view (MV-HRN) or per frame (synchronized rig).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def fit(session: Path, preset_name: str, mode: str, as_json: bool) -> None:
    """Fit the face model to every view of SESSION (needs the cues stage); writes SESSION/fit/.

    Runs the fit stage of the pipeline ('mvrecon session run SESSION --from fit --to fit'), with
    the rig in force (refined over calibrated over the session's own)."""
    from ..config import pipeline_config
    from ..fit.config import preset
    from ..fit.stagedef import STAGE as FIT
    from ..io import read_json
    from ._stage import run_stage

    cfg = pipeline_config(preset_name, fit=preset(preset_name, mode=mode))
    res = run_stage(session, "fit", cfg)
    if as_json:
        click.echo(json.dumps(read_json(FIT.outputs.path(res.root / FIT.name, "summary")), indent=2))


COMMANDS = [fit]
