"""``mvrecon batch run SESSION...``: many sessions at once, on Ray (local or a cluster)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..config import PRESET_NAMES

if TYPE_CHECKING:
    from ..config import PresetName
from ..stages import STAGE_NAMES


@click.group("batch")
def batch() -> None:
    """Many sessions at once (Ray)."""


@batch.command("run")
@click.argument("sessions", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Sessions at once (local default: the cores divided by --threads).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Threads (and Ray CPUs) per session (default: 1 on Ray, all cores with --serial).",
)
@click.option(
    "--address",
    default=None,
    metavar="auto|HOST:PORT",
    help="Join a running Ray cluster (ray start --head) instead of starting a local one.",
)
@click.option(
    "--gpus",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="GPUs per session on Ray (the fit then renders with nvdiffrast); 0.5 shares one between two.",
)
@click.option("--serial", is_flag=True, help="No Ray: one session after another in this process.")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default="default", show_default=True)
@click.option("--to", "stop", type=click.Choice(STAGE_NAMES), default=None, help="Stop each session after this stage.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Where batch.json and batch.html go (default: the sessions' common parent folder).",
)
@click.option("--json", "as_json", is_flag=True, help="Print batch.json on stdout (progress goes to stderr).")
@click.option(
    "--realy",
    "realy",
    is_flag=True,
    help="Evaluate stages also run the REALY-parity protocol (as 'session run --realy').",
)
def run_cmd(
    sessions: tuple[Path, ...],
    workers: int | None,
    threads: int | None,
    address: str | None,
    gpus: float,
    serial: bool,
    preset: PresetName,
    stop: str | None,
    out: Path | None,
    as_json: bool,
    realy: bool,
) -> None:
    """Run every SESSION through the pipeline (like 'mvrecon session run'), each as one task;
    finished stages are skipped, so a stopped batch resumes. A failing session is one row with its
    error: the others finish, and the exit status is 1."""
    from rich.console import Console
    from rich.progress import Progress

    from ..batch import default_out, format_table, run_batch, write_outputs
    from ..evaluate import EvalConfig

    if serial and (address or workers or gpus):
        raise click.UsageError("--serial runs one session at a time in this process: no --workers, --address or --gpus")
    err = Console(stderr=True)  # stdout is the table, or the JSON
    with Progress(transient=True, console=err, disable=not err.is_terminal) as progress:
        bar = progress.add_task("sessions", total=len(sessions))

        def on_done(row, n, total):
            progress.update(bar, completed=n)
            err.print(
                f"{Path(row.session).name}: {row.status} {row.seconds:.1f} s{': ' + row.error if row.error else ''}",
                highlight=False,
            )

        settings = {"evaluate": EvalConfig(compute_realy=True)} if realy else None
        res = run_batch(
            sessions,
            preset,
            workers,
            threads,
            address,
            serial,
            settings=settings,
            stop=stop,
            gpus=gpus,
            on_done=on_done,
        )
    jpath, hpath = write_outputs(res, out or default_out(sessions))
    if as_json:
        click.echo(json.dumps(res.to_dict(), indent=2))
    else:
        click.echo(format_table(res))
        click.echo(f"wrote {jpath} and {hpath}")
    if res.failed:
        sys.exit(1)


COMMANDS = [batch]
