"""``mvrecon detail SESSION``: the fine layer (wrinkles, pores) from the photos at full resolution."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import PRESET_NAMES


@click.command("detail")
@click.argument("session", type=click.Path(path_type=Path))
@click.option(
    "--preset",
    "preset_name",
    type=click.Choice(PRESET_NAMES),
    default="default",
    show_default=True,
    help="Texel grid bounds over the face (512 / 1024-2048 / 1024-4096).",
)
def detail_cmd(session: Path, preset_name: str) -> None:
    """Recover the fine layer of SESSION's fitted face from its photos (needs the fit); writes
    SESSION/detail/.

    Runs the detail stage of the pipeline ('mvrecon session run SESSION --from detail --to
    detail'); the texture stage then adds it to the normal and displacement maps."""
    from ..config import pipeline_config
    from ._stage import run_stage

    run_stage(session, "detail", pipeline_config(preset_name))


COMMANDS = [detail_cmd]
