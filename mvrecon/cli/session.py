"""``mvrecon session run SESSION`` (the whole pipeline, resumable) and ``mvrecon session calibrate
SESSION`` (per-session refinement of the rig's extrinsics)."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
from pathlib import Path

import click

from ..config import PRESET_NAMES, PRESETS
from ..errors import MvreconError
from ..stagedef import stage_config
from ..stages import STAGE_NAMES


@click.group("session")
def session_group() -> None:
    """Make a session for a rig's photos, run it end to end, refine its rig, report it."""


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def _echo_err(line: str) -> None:
    click.echo(line, err=True)


@session_group.command("run")
@click.argument("session", type=click.Path(path_type=Path))
@click.option(
    "--preset",
    type=click.Choice(PRESET_NAMES),
    default="default",
    show_default=True,
    help="Settings of every stage: " + ", ".join(f"{k} ({v})" for k, v in PRESETS.items()) + ".",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="STAGE.FIELD=VALUE",
    help="Override one setting of a stage's config (repeatable), e.g. fit.crop_size=192; a changed "
    "setting runs that stage and those after it again.",
)
@click.option(
    "--from",
    "start",
    type=click.Choice(STAGE_NAMES),
    default=None,
    help="Run this stage and the later ones again; earlier ones are used as they are.",
)
@click.option("--to", "stop", type=click.Choice(STAGE_NAMES), default=None, help="Stop after this stage.")
@click.option("--force", is_flag=True, help="Run every selected stage even when its outputs are up to date.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON on stdout (progress goes to stderr).")
@click.option("--verbose", is_flag=True, help="Log details on the console too (they always go to SESSION/logs/).")
@click.option(
    "--realy",
    "realy",
    is_flag=True,
    help="The evaluate stage also runs the REALY-parity protocol (several times the rest's CPU; a run without "
    "--realy evaluates again without it).",
)
@click.pass_context
def run_cmd(
    ctx: click.Context,
    session: Path,
    preset: str,
    assignments: tuple[str, ...],
    start: str | None,
    stop: str | None,
    force: bool,
    as_json: bool,
    verbose: bool,
    realy: bool,
) -> None:
    """Run SESSION's stages in order (ingest, calibrate, refine, cues, fit, detail, texture,
    export, evaluate), skipping those whose outputs are up to date; writes SESSION/report.html.

    An interrupted run continues from the last finished stage when started again."""
    from ..config import pipeline_config, with_settings
    from ..pipeline import format_summary, run_pipeline

    verbose = verbose or bool(ctx.find_root().meta.get("mvrecon.verbose"))
    if verbose:
        ctx.find_root().meta["mvrecon.verbose"] = True
    echo = _echo_err if as_json else click.echo
    # a plain kill (SIGTERM) unwinds like Ctrl-C, so the atomic writers remove their temporaries
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        cfg = pipeline_config(preset)
        if realy:
            evaluate = stage_config(cfg.evaluate, "evaluate")
            cfg = dataclasses.replace(cfg, evaluate=dataclasses.replace(evaluate, compute_realy=True))
        cfg = with_settings(cfg, assignments)
        res = run_pipeline(session, cfg, start=start, stop=stop, force=force, verbose=verbose, echo=echo)
    except KeyboardInterrupt:
        click.echo("interrupted: run the same command again to continue after the last finished stage", err=True)
        sys.exit(130)
    except MvreconError as e:
        run_result = getattr(e, "run_result", None)  # set by run_pipeline for --json on failure
        if as_json and run_result is not None:
            click.echo(json.dumps(run_result.to_dict(), indent=2))
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if as_json:
        click.echo(json.dumps(res.to_dict(), indent=2))
        return
    click.echo("")
    click.echo(format_summary(res))
    if res.report is not None:
        click.echo(f"report: {res.report}")
    click.echo(f"log: {res.log_file}")


@session_group.command("calibrate")
@click.argument("session", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the refinement as JSON.")
def calibrate_cmd(session: Path, as_json: bool) -> None:
    """Refine the rig's extrinsics from SESSION's own photos (a camera knocked since the rig was
    calibrated) and print how much each camera moved; writes SESSION/refine/, which later
    'mvrecon session run's use (and keep up to date)."""
    from ..calibrate.refine import CameraMove, format_move_table
    from ..calibrate.stagedef import REFINE
    from ..config import pipeline_config
    from ..io import read_json
    from ..pipeline import run_pipeline

    cfg = pipeline_config("default", refine_extrinsics=True)
    res = run_pipeline(session, cfg, stop="refine", echo=_echo_err, report=False)
    rep = read_json(REFINE.outputs.path(res.root / REFINE.name, "report"))
    if as_json:
        click.echo(json.dumps(rep, indent=2))
        return
    moves = tuple(CameraMove(**c) for c in rep["cameras"])
    click.echo(format_move_table(moves, rep["n_points"], rep["rms_before_px"], rep["rms_after_px"]))
    click.echo(f"wrote {REFINE.outputs.path(res.root / REFINE.name, 'rig')}")


@session_group.command("init")
@click.argument("session", type=click.Path(path_type=Path))
@click.option(
    "--rig",
    "rig",
    required=True,
    type=click.Path(path_type=Path),
    help="The rig folder (holding rig.json), e.g. rigs/studio8; session.json names it relative to SESSION.",
)
@click.option("--images", required=True, type=click.Path(path_type=Path), help="The folder of photos.")
@click.option(
    "--pattern",
    default="{frame}/{camera}.jpg",
    show_default=True,
    help="Where each photo is in --images: {camera} (a camera of the rig) and optionally {frame}.",
)
@click.option("--subject", default=None, help="Subject name (default: the session folder's name).")
def init_cmd(session: Path, rig: Path, images: Path, pattern: str, subject: str | None) -> None:
    """Make the session folder SESSION for photos taken with a rig: session.json and the photos,
    copied into SESSION/images/<frame>/<camera>.<ext>. Every camera of the rig needs a photo in
    every frame; otherwise nothing is written."""
    from ..session import init_session

    s = init_session(session, rig, images, pattern, subject)
    click.echo(
        f"{s.root}: {len(s.frames)} frame(s) x {len(s.rig)} cameras, photos copied into images/, "
        f"rig {s.rig_path.parent.resolve()}"
    )
    click.echo(f"next: mvrecon session run {session}")


@session_group.command("report")
@click.argument("session", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the report (default SESSION/report.html); a session on a read-only mount "
    "is reported elsewhere.",
)
def report_cmd(session: Path, out: Path | None) -> None:
    """Write the report of SESSION from what its stages recorded, without running anything and
    without writing into SESSION (unless --out points there): outputs whose provenance is not
    current are marked stale and not shown."""
    from ..io import write_text
    from ..report import REPORT_NAME, render_html
    from ..report.content import report_content
    from ..session import load_session

    s = load_session(session)
    path = write_text(out or s.root / REPORT_NAME, render_html(report_content(s)))
    click.echo(f"report: {path}")


COMMANDS = [session_group]
