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
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import threads
from .config import TEXTURE_SIZE, PipelineConfig, PresetName, pipeline_config
from .errors import InputError, MvreconError, StageMissing
from .io import refuse_symlink, write_json, writes_confined_to
from .provenance import (
    PROVENANCE_FILE,
    Provenance,
    clean_temporaries,
    input_hashes,
    jsonable,
    move_aside,
    output_hashes,
    read_provenance,
    sha256_json,
    stage_key,
    up_to_date,
    versions,
)
from .report.content import write_session_report
from .stagedef import Context, StageDef
from .stages import STAGE_NAMES, STAGES, dependents, stage

# what callers have imported from here, besides the running itself
__all__ = [
    "STAGES",
    "STAGE_NAMES",
    "TEXTURE_SIZE",
    "Context",
    "PipelineConfig",
    "PresetName",
    "RunResult",
    "StageDef",
    "StageOutcome",
    "format_outcome",
    "format_summary",
    "pipeline_config",
    "run_pipeline",
]

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


def _stage_index(name: str | None, default: int) -> int:
    if name is None:
        return default
    if name not in STAGE_NAMES:
        raise MvreconError(f"unknown stage {name!r} (stages: {', '.join(STAGE_NAMES)})")
    return STAGE_NAMES.index(name)


def _next_log(logs: Path) -> Path:
    try:
        logs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MvreconError(f"cannot create the logs folder ({e.strerror})", logs) from None
    nums = [int(m.group(1)) for p in logs.glob("run-*.log") if (m := re.fullmatch(r"run-(\d+)\.log", p.name))]
    path = logs / f"run-{max(nums, default=0) + 1:03d}.log"
    try:  # made here, new, never through a link; the log handler then appends to it
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
    except OSError as e:
        raise MvreconError(f"cannot create the run log ({e.strerror})", path) from None
    return path


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
    from .session import load_session, session_lock

    cfg = cfg or pipeline_config()
    echo = echo or (lambda s: None)
    i0 = _stage_index(start, 0)
    i1 = _stage_index(stop, len(STAGES) - 1)
    if i0 > i1:
        raise MvreconError(f"--from {start} comes after --to {stop}")
    root = Path(root).resolve()
    if not (root / "session.json").is_file():
        raise InputError("not a session folder (no session.json)", root)
    t_run = time.perf_counter()
    with threads.running(), session_lock(root), writes_confined_to(root):
        log_file = _next_log(refuse_symlink(root / "logs", "logs folder"))
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
                    o = _do_stage(ctx, st, i, i0, i1, forced, echo, on_stage)
                    outcomes.append(o)
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
                    stale = [n for n in dependents(failed) if not (n == failed and stage(failed).keeps_cache)]
                    try:
                        for p in move_aside(root, stale):
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
            ingested = any(o.stage == STAGE_NAMES[0] and o.status in ("done", "skipped") for o in outcomes)
            old_report = root / "report.html"
            # bad input on a first run: nothing at all is written; on a re-run the earlier report
            # would show results of inputs that are gone: rewritten (all stale) when the session
            # loads, else moved aside
            if report and ctx is not None and (ingested or old_report.is_file()):
                try:
                    res.report = write_session_report(ctx.session, res)
                except MvreconError as e:  # a report problem must not hide the run's outcome
                    log.warning("report not written: %s", e)
                res.seconds = time.perf_counter() - t_run
            elif report and error is not None and old_report.is_file() and not old_report.is_symlink():
                with contextlib.suppress(OSError):
                    os.replace(old_report, root / "report.stale.html")
                    log.info("moved the previous report aside (report.stale.html): the session no longer loads")
            log.info("run finished in %.1f s%s", res.seconds, "" if error is None else f": {error}")
            if error is not None:
                error.run_result = res  # type: ignore[attr-defined]  # for --json on failure
                raise error
            return res


def _do_stage(
    ctx: Context,
    st: StageDef,
    i: int,
    i0: int,
    i1: int,
    force: bool,
    echo: Callable[[str], None],
    on_stage: Callable[[str, str], None] | None,
) -> StageOutcome:
    """Run, skip or use as it is stage ``st`` (index ``i``; ``i0``..``i1`` selected); one line to ``echo``."""
    o = _stage_outcome(ctx, st, i, i0, i1, force, on_stage)
    echo(format_outcome(o))
    return o


def _stage_outcome(
    ctx: Context, st: StageDef, i: int, i0: int, i1: int, force: bool, on_stage: Callable[[str, str], None] | None
) -> StageOutcome:
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
        ctx.digests[st.name] = prov.outputs_digest if prov else sha256_json(output_hashes(sdir))
        _put_rig_in_force(ctx, st)
        return StageOutcome(st.name, "skipped", numbers=dict(prov.numbers) if prov else {}, note="before --from")
    settings = st.settings_of(ctx)
    vers = versions()
    inputs = input_hashes(ctx, st)
    key = stage_key(st.name, settings, vers, inputs)
    prov = None if force else up_to_date(sdir, key)
    if prov is not None:
        ctx.digests[st.name] = prov.outputs_digest
        _put_rig_in_force(ctx, st)
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
        outputs = output_hashes(sdir)
        prov = Provenance(st.name, key, jsonable(settings), vers, inputs, outputs, jsonable(numbers), round(secs, 3))
        write_json(sdir / PROVENANCE_FILE, prov.to_dict())  # last: its presence means the stage finished
    ctx.digests[st.name] = prov.outputs_digest
    _put_rig_in_force(ctx, st)
    log.info("%s: done in %.1f s: %s", st.name, secs, numbers)
    return StageOutcome(st.name, "done", secs, numbers)


def _put_rig_in_force(ctx: Context, st: StageDef) -> None:
    """After a stage that writes a rig ran, was up to date or was used as it is: its rig is in
    force for the later stages."""
    if st.writes_rig:
        ctx.rig_stages.append(st.name)
        ctx.session = ctx.session.in_force(ctx.rig_stages)
        log.info("rig in force: %s/rig.json", ctx.session.rig_source)
