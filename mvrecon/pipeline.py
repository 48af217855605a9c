"""The end-to-end pipeline behind ``mvrecon session run``: runs the stages of
:data:`mvrecon.stages.STAGES` in order, logs the run and sums it up.

Each stage is a :class:`~mvrecon.stagedef.StageDef` its package exports. A stage is skipped when
``<stage>/provenance.json`` records the same settings, library versions and input hashes as now,
and its outputs are still the ones it recorded (:mod:`mvrecon.provenance`). Provenance is written
only after a stage finished (atomically), so a run killed half-way leaves no provenance for the
stage it was in, and the next run redoes that stage and skips the ones before it; every stage
writes its own files atomically, so the result is the same as that of an uninterrupted run.

Later stages use the rig in force, the newest rig: ``refine/`` over ``calibrate/`` over the
session's own rig (:func:`mvrecon.session.current_rig`, counting the rig stages that apply). Every
stage says whether it reads the rig (``reads_rig``); the content of the rig in force is then one of
its inputs, so a new calibration runs the cues, the fit and all after them again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import threads
from .config import PipelineConfig, pipeline_config
from .errors import InputError, MvreconError, StageMissing
from .io import writes_confined_to
from .provenance import (
    PROVENANCE_FILE,
    StageKey,
    clean_temporaries,
    move_aside,
    outputs_digest,
    read_provenance,
    up_to_date,
)
from .report.content import report_after_run
from .stagedef import Context, StageDef
from .stages import STAGE_NAMES, STAGES, stage_index, stale_after_failure

log = logging.getLogger("mvrecon.pipeline")

Status = Literal["done", "skipped", "failed", "not run"]


@dataclass
class StageOutcome:
    """What happened to one stage in a run."""

    stage: str
    status: Status
    seconds: float | None = None
    numbers: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunResult:
    """The outcome of :func:`run_pipeline`."""

    root: Path
    preset: str
    stages: list[StageOutcome]
    seconds: float
    log_file: Path | None = None
    report: Path | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": str(self.root),
            "preset": self.preset,
            "ok": self.ok,
            "error": self.error,
            "seconds": round(self.seconds, 2),
            "stages": [s.to_dict() for s in self.stages],
            "report": None if self.report is None else str(self.report),
            "log": None if self.log_file is None else str(self.log_file),
        }


def _fmt_number(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_outcome(o: StageOutcome) -> str:
    """One progress line: stage, status, time, key numbers."""
    secs = "" if o.seconds is None else f"{o.seconds:7.1f} s"
    nums = ", ".join(f"{k} {_fmt_number(v)}" for k, v in o.numbers.items())
    tail = "; ".join(x for x in (nums, o.note) if x)
    return f"{o.stage:<10} {o.status:<8} {secs:>9}  {tail}".rstrip()


def format_summary(res: RunResult) -> str:
    """The summary table printed at the end of a run."""
    lines = [f"{'stage':<10} {'status':<8} {'time':>9}  key numbers", "-" * 72]
    lines += [format_outcome(o) for o in res.stages]
    lines.append("-" * 72)
    lines.append(f"{'total':<10} {'ok' if res.ok else 'failed':<8} {res.seconds:7.1f} s")
    return "\n".join(lines)


@contextlib.contextmanager
def _log_to(path: Path, verbose: bool):
    """Send the package's log records (and Python warnings, e.g. torch's) to ``path``; on the
    console only with ``verbose``."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    pkg = logging.getLogger("mvrecon")
    warn = logging.getLogger("py.warnings")
    old = (pkg.level, pkg.propagate, warn.propagate)
    pkg.addHandler(handler)
    warn.addHandler(handler)
    pkg.setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    console = None
    if not verbose:
        pkg.propagate = False
        warn.propagate = False
        # the stages' warnings (a view without a face ...) still reach the console; the run's own
        # error record does not (the CLI prints it as one line)
        console = logging.StreamHandler()
        console.setLevel(logging.WARNING)
        console.addFilter(lambda r: not getattr(r, "file_only", False))
        pkg.addHandler(console)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        if console is not None:
            pkg.removeHandler(console)
        pkg.removeHandler(handler)
        warn.removeHandler(handler)
        pkg.setLevel(old[0])
        pkg.propagate, warn.propagate = old[1], old[2]
        handler.close()


def run_pipeline(
    root: str | Path,
    cfg: PipelineConfig | None = None,
    start: str | None = None,
    stop: str | None = None,
    force: bool = False,
    verbose: bool = False,
    echo: Callable[[str], None] | None = None,
    on_stage: Callable[[str, str], None] | None = None,
    report: bool = True,
) -> RunResult:
    """Run the stages of the session at ``root`` in order, from ``start`` to ``stop`` (names of
    :data:`STAGE_NAMES`), skipping up-to-date ones unless ``force``. With ``start`` that stage and
    the later ones run again, the stages before it are used as they are (even when out of date).
    ``echo`` gets one line per stage; ``on_stage(name, "start"|"end")`` is for benchmarks. Holds
    the session lock throughout (:class:`~mvrecon.errors.SessionBusy` when another run has it);
    writes ``SESSION/logs/run-NNN.log`` and, at the end, ``SESSION/report.html``.
    User-fixable errors are raised (after the report of what exists) as :class:`MvreconError`."""
    from .session import load_session, new_run_log, session_lock

    cfg = cfg or pipeline_config()
    echo = echo or (lambda s: None)
    i0 = stage_index(start, 0)
    i1 = stage_index(stop, len(STAGES) - 1)
    if i0 > i1:
        raise MvreconError(f"--from {start} comes after --to {stop}")
    root = Path(root).resolve()
    if not (root / "session.json").is_file():
        raise InputError("not a session folder (no session.json)", root)
    t_run = time.perf_counter()
    with threads.running(), session_lock(root), writes_confined_to(root):
        log_file = new_run_log(root)
        with _log_to(log_file, verbose):
            log.info(
                "run: %s, preset %s, stages %s..%s%s",
                root,
                cfg.preset,
                STAGE_NAMES[i0],
                STAGE_NAMES[i1],
                ", forced" if force else "",
            )
            for p in clean_temporaries(root, STAGE_NAMES):
                log.info("removed %s (left by an interrupted run)", p)
            outcomes: list[StageOutcome] = []
            ctx: Context | None = None
            error: BaseException | None = None
            try:
                session = load_session(root)
                ctx = Context(session=session, cfg=cfg, force=force)
                for i, st in enumerate(STAGES):
                    forced = force or (start is not None and i >= i0)
                    outcomes.append(_do_stage(ctx, st, i, i0, i1, forced, on_stage))
                    echo(format_outcome(outcomes[-1]))
            except MvreconError as e:
                error = e
                log.error("%s", e, exc_info=True, extra={"file_only": True})
                done = {o.stage for o in outcomes}
                failed = next((s.name for s in STAGES if s.name not in done), None)
                if failed is not None and ctx is not None:
                    o = StageOutcome(failed, "failed", note=str(e))
                    outcomes.append(o)
                    echo(format_outcome(o))
                    # what the failed stage made before, and what was made from it, is no longer
                    # true: moved aside, never shown as the result of this run
                    try:
                        for p in move_aside(root, stale_after_failure(failed)):
                            log.info("moved %s aside: made from outputs that are no longer current", p)
                    except OSError as e2:
                        log.warning("could not move stale outputs aside (%s)", e2)
                outcomes += [
                    StageOutcome(s.name, "not run") for s in STAGES if s.name not in {x.stage for x in outcomes}
                ]
            except KeyboardInterrupt:
                log.error(
                    "interrupted; the next run continues after the last finished stage", extra={"file_only": True}
                )
                raise
            except Exception:
                log.exception("internal error", extra={"file_only": True})
                raise
            res = RunResult(
                root,
                cfg.preset,
                outcomes,
                time.perf_counter() - t_run,
                log_file,
                error=None if error is None else str(error),
            )
            if report:  # what exists (none on bad input in a first run), never hiding the outcome
                res.report = report_after_run(root, None if ctx is None else ctx.session, res)
                res.seconds = time.perf_counter() - t_run
            log.info("run finished in %.1f s%s", res.seconds, "" if error is None else f": {error}")
            if error is not None:
                error.run_result = res  # type: ignore[attr-defined]  # for --json on failure
                raise error
            return res


def _do_stage(
    ctx: Context, st: StageDef, i: int, i0: int, i1: int, force: bool, on_stage: Callable[[str, str], None] | None
) -> StageOutcome:
    """Run, skip or use as it is stage ``st`` (index ``i``; ``i0``..``i1`` selected)."""
    sdir = ctx.session.stage_dir(st.name)
    if not st.applies(ctx):
        return StageOutcome(st.name, "skipped", note=f"not needed: {st.not_applicable}")
    if i > i1:
        prov = read_provenance(sdir)
        return StageOutcome(
            st.name,
            "not run",
            numbers=dict(prov.numbers) if prov else {},
            note="after --to" + (" (numbers of an earlier run)" if prov else ""),
        )
    if i < i0:
        # before --from: used as it is
        prov = read_provenance(sdir)
        if not sdir.is_dir():
            if st.writes_rig or not any(st.name in s.upstream for s in STAGES[i0 : i1 + 1]):
                # the selected stages do not read it (texture from a fit, without the cues folder), or
                # it is a rig stage that never ran: the rig in force is the next older one
                return StageOutcome(
                    st.name,
                    "not run",
                    note="before --from, no outputs; "
                    + ("the older rig is in force" if st.writes_rig else "not read by the selected stages"),
                )
            raise StageMissing(
                f"no {st.name} yet: stage {st.name} has no outputs; run it first ('mvrecon session "
                f"run SESSION --to {st.name}')",
                sdir,
            )
        ctx.outputs_ready(st, outputs_digest(sdir, prov))
        return StageOutcome(st.name, "skipped", numbers=dict(prov.numbers) if prov else {}, note="before --from")
    key = StageKey.of(ctx, st)
    prov = None if force else up_to_date(sdir, key.key)
    if prov is not None:
        ctx.outputs_ready(st, prov.outputs_digest)
        log.info("%s: up to date, skipped", st.name)
        return StageOutcome(st.name, "skipped", 0.0, dict(prov.numbers), note="up to date")
    log.info("%s: running", st.name)
    threads.rebalance(force=True)  # its share of the cores now, in every library loaded so far
    if on_stage:
        on_stage(st.name, "start")
    (sdir / PROVENANCE_FILE).unlink(missing_ok=True)
    t0 = time.perf_counter()
    with writes_confined_to(sdir):  # a stage writes in its own folder, nowhere else
        numbers = dict(st.run(ctx))
        secs = time.perf_counter() - t0
        if on_stage:
            on_stage(st.name, "end")
        prov = key.record(sdir, numbers, secs)  # last: its presence means the stage finished
    ctx.outputs_ready(st, prov.outputs_digest)
    log.info("%s: done in %.1f s: %s", st.name, secs, numbers)
    return StageOutcome(st.name, "done", secs, numbers)
