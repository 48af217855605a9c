"""``mvrecon fit SESSION``: the multi-view hierarchical fit."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("fit")
@click.argument("session", type=click.Path(path_type=Path))
@click.option("--preset", "preset_name", type=click.Choice(["fast", "default", "best"]), default="default",
              show_default=True, help="Schedule length, crop size and anchor density.")
@click.option("--mode", type=click.Choice(["auto", "per_view", "per_frame"]), default="auto", show_default=True,
              help="Expression and pose per view (MV-HRN) or per frame (synchronized rig).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def fit(session: Path, preset_name: str, mode: str, as_json: bool) -> None:
    """Fit the face model to every view of SESSION (needs the cues stage); writes SESSION/fit/."""
    from ..fit.config import preset
    from ..fit.stage import fit_session
    from ..session import load_session

    s = load_session(session)
    with s.lock():
        res = fit_session(s, preset(preset_name, mode=mode))
    if as_json:
        click.echo(json.dumps(res.summary, indent=2))
        return
    sm = res.summary
    skipped = f", skipped {', '.join(res.skipped)}" if res.skipped else ""
    click.echo(f"fit: {len(res.views)} views ({sm['mode']}, {sm['groups']} groups){skipped}; landmark error "
               f"{sm['landmark_error_px_median']:.2f} px median; {sm['seconds']:.1f} s -> {res.out_dir}")


COMMANDS = [fit]
