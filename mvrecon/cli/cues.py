"""``mvrecon cues``: face landmarks and part labels, for a session or a single photo.

mvrecon cues SESSION                 (same as ``mvrecon cues session SESSION``)
mvrecon cues image PHOTO [--out DIR]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ..config import PRESET_NAMES
from ..errors import MvreconError


class _SessionByDefault(click.Group):
    """A group whose first argument, when it is not one of its commands, is a SESSION folder:
    ``mvrecon cues path/to/session`` runs ``mvrecon cues session path/to/session``. (A session
    folder literally named ``image`` or ``session`` needs the explicit form.)"""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["session", *args]
        return super().parse_args(ctx, args)


def _options(f):
    f = click.option(
        "--preset",
        type=click.Choice(PRESET_NAMES),
        default="default",
        show_default=True,
        help="fast: coarser crop and fewer tiles; best: finer crop, more tiles for tiny faces.",
    )(f)
    f = click.option(
        "--parser",
        "parser",
        default=None,
        help="Face parser for the part labels (default: auto = model when the face model has a landmark embedding, else surface).",
    )(f)
    f = click.option("--no-overlay", is_flag=True, help="Do not write overlay.png.")(f)
    f = click.option("--overwrite", is_flag=True, help="Redo views even when their cached outputs match.")(f)
    return f


def _config(preset: str, parser: str | None, no_overlay: bool, overwrite: bool):
    from ..cues import PRESETS

    cfg = PRESETS[preset]
    changes: dict = {"overlay": not no_overlay, "overwrite": overwrite}
    if parser:
        changes["parser"] = parser
    return dataclasses.replace(cfg, **changes)


@click.group(cls=_SessionByDefault)
def cues() -> None:
    """Per-view face landmarks (MediaPipe 478 + iBUG-68) and part label images.

    \b
    mvrecon cues SESSION                 every view of a session, into SESSION/cues/
    mvrecon cues image PHOTO [--out DIR] one photo: landmarks.json, labels.png, overlay.png
    """


@cues.command("session")
@click.argument("session_dir", metavar="SESSION", type=click.Path(path_type=Path))
@_options
@click.option(
    "--per-view",
    is_flag=True,
    help="Label every view on its own (default: a frame's views together, when the parser can).",
)
def session_cmd(
    session_dir: Path, preset: str, parser: str | None, no_overlay: bool, overwrite: bool, per_view: bool
) -> None:
    """Cues of every view of SESSION (views whose image, camera and settings did not change are
    skipped). Runs the cues stage of the pipeline ('mvrecon session run SESSION --from cues --to
    cues'), with the rig in force (refined over calibrated over the session's own)."""
    from ..config import pipeline_config
    from ._stage import run_stage

    cfg = dataclasses.replace(_config(preset, parser, no_overlay, False), frames=not per_view)
    run_stage(session_dir, "cues", pipeline_config(preset, cues=cfg), force=overwrite)


@cues.command("image")
@click.argument("photo", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Output folder (default: <PHOTO without extension>_cues next to the photo).",
)
@_options
def image_cmd(
    photo: Path, out_dir: Path | None, preset: str, parser: str | None, no_overlay: bool, overwrite: bool
) -> None:
    """Cues of one PHOTO: landmarks.json, labels.png and overlay.png in --out."""
    from ..cues import process_image

    cfg = _config(preset, parser, no_overlay, overwrite)
    out_dir = out_dir or photo.with_name(f"{photo.stem}_cues")
    res = process_image(photo, out_dir, cfg)
    if res.status == "no_face":
        raise MvreconError("no face found", photo)
    note = " (unchanged, kept)" if res.cached else ""
    click.echo(f"cues: face found (score {res.score:.2f}) -> {out_dir}{note}")


COMMANDS = [cues]
