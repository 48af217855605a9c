"""``mvrecon bench``: benchmarks over many subjects.

    mvrecon bench run DIR [--out OUT]
"""

from __future__ import annotations

from pathlib import Path

import click

UNITS = ("auto", "m", "cm", "mm")


@click.group("bench")
def bench() -> None:
    """Benchmarks over many subjects (one table, one CSV)."""


@bench.command("run")
@click.argument("root", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Output folder (default DIR/_results): results.csv, results.md, one folder per subject.")  # fmt: skip
@click.option("--pred-units", type=click.Choice(UNITS), default="auto", show_default=True, help="Units of every prediction.")
@click.option("--scan-units", type=click.Choice(UNITS), default="auto", show_default=True, help="Units of every scan.")
def run(root: Path, out: Path | None, pred_units: str, scan_units: str) -> None:
    """Score every subject folder of DIR (pred.obj|ply|glb, pred_landmarks.txt|npy|json,
    scan.obj|ply, scan_landmarks.txt|npy|json) and print one table of REALY-style errors."""
    from ..evaluate import EvalConfig
    from ..evaluate.bench import format_table, run_bench

    result = run_bench(root, out, EvalConfig(pred_units=pred_units, scan_units=scan_units))
    click.echo(format_table(result.rows, result.mean), nl=False)
    click.echo(f"wrote {result.csv_path} and {result.table_path}")


COMMANDS = [bench]
