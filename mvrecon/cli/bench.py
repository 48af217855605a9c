"""``mvrecon bench``: benchmarks over many subjects.

mvrecon bench run DIR [--out OUT] [--preset fast|default|best] [--workers N] [--threads T]
                      [--address auto|HOST:PORT] [--serial] [--realy]
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..config import PRESET_NAMES

if TYPE_CHECKING:
    from ..config import PresetName
    from ..evaluate import EvalConfig
    from ..evaluate.meshes import Units

log = logging.getLogger("mvrecon.evaluate.bench")

UNITS = ("auto", "m", "cm", "mm")


@click.group("bench")
def bench() -> None:
    """Benchmarks over many subjects (one table, one CSV)."""


@bench.command("run")
@click.argument("root", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Output folder (default DIR/_results): results.csv, results.md, one folder per subject.")  # fmt: skip
@click.option(
    "--pred-units", type=click.Choice(UNITS), default="auto", show_default=True, help="Units of every prediction."
)
@click.option("--scan-units", type=click.Choice(UNITS), default="auto", show_default=True, help="Units of every scan.")
@click.option(
    "--preset",
    type=click.Choice(PRESET_NAMES),
    default="default",
    show_default=True,
    help="Pipeline preset for subjects that are sessions (fitted first).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Session subjects run at once on Ray (as 'mvrecon batch run').",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Threads per session subject.")
@click.option("--address", default=None, metavar="auto|HOST:PORT", help="Run the session subjects on a Ray cluster.")
@click.option("--serial", is_flag=True, help="Session subjects one after another in this process (no Ray).")
@click.option(
    "--realy",
    "realy",
    is_flag=True,
    help="Also run the REALY-parity protocol on every subject (the 'REALY all' column; several times the rest's CPU).",
)
def run(
    root: Path,
    out: Path | None,
    pred_units: Units,
    scan_units: Units,
    preset: PresetName,
    workers: int | None,
    threads: int | None,
    address: str | None,
    serial: bool,
    realy: bool,
) -> None:
    """Score every subject folder of DIR (pred.obj|ply|glb, pred_landmarks.txt|npy|json,
    scan.obj|ply, scan_landmarks.txt|npy|json; or an mvrecon session with a scan, run through
    its evaluate stage first, several at once on Ray like 'mvrecon batch run') and print one
    table of region errors (the REALY-parity figures beside them with --realy)."""
    from ..evaluate import EvalConfig
    from ..evaluate.bench import format_table, run_bench

    engine = {"workers": workers, "threads": threads, "address": address, "serial": serial}
    cfg = EvalConfig(pred_units=pred_units, scan_units=scan_units, compute_realy=realy)
    result = run_bench(root, out, cfg, lambda folders, evaluate: _run_sessions(folders, preset, engine, evaluate))
    click.echo(format_table(result.rows, result.mean), nl=False)
    click.echo(f"wrote {result.csv_path} and {result.table_path}")


COMMANDS = [bench]


def _run_sessions(
    folders: list[Path], preset: PresetName, engine: dict[str, Any], evaluate: EvalConfig
) -> dict[str, Any]:
    """Every session subject through its evaluate stage (settings ``evaluate``) at once, on
    :func:`mvrecon.batch.run_batch` with the ``engine`` keywords (workers, threads, address,
    serial; a single session runs in this process); rows by resolved path."""
    from ..batch import run_batch

    if len(folders) == 1:  # nothing to run side by side: no engine to start
        engine = {**engine, "serial": True, "workers": None, "address": None}
    res = run_batch(folders, preset, stop="evaluate", settings={"evaluate": evaluate}, **engine)
    for r in res.rows:
        if r.status == "failed":
            log.warning("%s: %s", r.session, r.error)
    return {r.session: r for r in res.rows}
