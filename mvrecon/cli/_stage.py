"""One stage of a session from its own command (``mvrecon cues``, ``fit``, ``texture``, ``export``).

Each runs through the pipeline (``run_pipeline(start=STAGE, stop=STAGE)``), exactly as
``mvrecon session run SESSION --from STAGE --to STAGE`` does: the same rig in force (refined over
calibrated over the session's own), the same provenance, the session lock, a run log and the
report. Earlier stages are used as they are; one that never ran and that the stage reads is named
in the error. A session whose photos were never read is ingested first.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def run_stage(session: Path, stage: str, cfg, *, start: str | None = None, force: bool = False):
    """Run ``stage`` (from ``start``, default the stage itself) of ``session`` with the pipeline
    settings ``cfg``; print one line per stage run and return the :class:`~mvrecon.pipeline.RunResult`.
    A plain kill (SIGTERM) unwinds like Ctrl-C, so the atomic writers remove their temporaries."""
    from ..errors import InputError
    from ..pipeline import format_outcome, run_pipeline
    from ..stages import STAGE_NAMES

    if not Path(session).is_dir():
        raise InputError("session folder not found", session)
    start = start or stage
    selected = STAGE_NAMES[STAGE_NAMES.index(start) : STAGE_NAMES.index(stage) + 1]
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if not (Path(session) / "ingest" / "provenance.json").is_file():
            # a session no command has read yet: its photos are read first (cheap), as session run would
            run_pipeline(session, cfg, stop="ingest", report=False)
        res = run_pipeline(session, cfg, start=start, stop=stage, force=force)
    except KeyboardInterrupt:
        click.echo("interrupted: nothing of the interrupted stage is kept; run the command again", err=True)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    for o in res.stages:
        if o.stage in selected:
            click.echo(format_outcome(o))
    return res
