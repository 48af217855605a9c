"""Many sessions at once: each session one task on Ray (local by default, a cluster with an
address), or one after another in this process (``serial``).

A session's task runs :func:`mvrecon.pipeline.run_pipeline` with its share of threads
(:mod:`mvrecon.threads`); stages already up to date are skipped by their provenance, so a batch
that was stopped resumes where each session stood. A session that fails is one failed row (its
error line), never the end of the others. The outcome is a table, ``batch.json`` and
``batch.html`` (links to every session's report) in the output folder.

Sessions on a shared filesystem work as they are: every path is the session's own folder, and the
session lock (:func:`mvrecon.session.session_lock`) refuses a second run of one session, also from
another machine (see its docstring for what that relies on).
"""

from __future__ import annotations

import html
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import InputError, MvreconError
from .io import write_json, write_text
from .threads import waiting as threads_waiting

if TYPE_CHECKING:
    from .config import PresetName

log = logging.getLogger(__name__)

Status = Literal["done", "up to date", "failed"]
BATCH_JSON = "batch.json"
BATCH_HTML = "batch.html"
#: Ray settings (environment) a local batch turns off; a cluster keeps its own.
QUIET_RAY = (
    "RAY_USAGE_STATS_ENABLED",
    "RAY_enable_metrics_collection",
    "RAY_event_stats",
    "RAY_enable_timeline",
    "RAY_task_events_report_interval_ms",
)


@dataclass
class BatchRow:
    """One session's outcome: ``status``; ``seconds`` of its task; ``numbers`` per stage (the
    pipeline's key numbers); ``error`` the one line of a failed session."""

    session: str
    status: Status
    seconds: float
    error: str = ""
    stages_run: int = 0
    numbers: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: str | None = None
    log: str | None = None
    worker: str = ""


@dataclass
class BatchResult:
    """All rows (in the order the sessions were given), the engine and the wall time."""

    rows: list[BatchRow]
    engine: str
    workers: int
    threads: int
    preset: str
    seconds: float
    out: Path | None = None

    @property
    def failed(self) -> list[BatchRow]:
        return [r for r in self.rows if r.status == "failed"]

    @property
    def sessions_per_hour(self) -> float:
        return 3600.0 * len(self.rows) / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "workers": self.workers,
            "threads": self.threads,
            "preset": self.preset,
            "seconds": round(self.seconds, 2),
            "sessions_per_hour": round(self.sessions_per_hour, 2),
            "ok": not self.failed,
            "failed": [r.session for r in self.failed],
            "rows": [asdict(r) for r in self.rows],
        }


def run_session(
    root: str, preset: PresetName, threads: int | None, settings: dict[str, Any] | None = None, stop: str | None = None
) -> BatchRow:
    """One session through the pipeline with ``threads`` (the body of a batch task). Never
    raises for a session's own problem: a failure is a row."""
    from . import threads as _threads
    from .config import pipeline_config
    from .pipeline import run_pipeline

    t0 = time.perf_counter()
    worker = f"{os.uname().nodename}:{os.getpid()}"
    try:
        _threads.configure(threads, register=False)  # in the ledger while the pipeline runs, not while idle
        res = run_pipeline(root, pipeline_config(preset, **(settings or {})), stop=stop)
    except MvreconError as e:
        partial = getattr(e, "run_result", None)
        row = BatchRow(root, "failed", time.perf_counter() - t0, error=str(e), worker=worker)
        if partial is not None:
            row.numbers = {o.stage: dict(o.numbers) for o in partial.stages if o.numbers}
            row.log = None if partial.log_file is None else str(partial.log_file)
            row.report = None if partial.report is None else str(partial.report)
        return row
    except Exception as e:  # a bug must not end the other sessions either; its row says what it was
        log.exception("%s: internal error", root)
        return BatchRow(
            root, "failed", time.perf_counter() - t0, error=f"internal error: {type(e).__name__}: {e}", worker=worker
        )
    ran = sum(o.status == "done" for o in res.stages)
    return BatchRow(
        root,
        "done" if ran else "up to date",
        time.perf_counter() - t0,
        stages_run=ran,
        numbers={o.stage: dict(o.numbers) for o in res.stages if o.numbers},
        report=None if res.report is None else str(res.report),
        log=None if res.log_file is None else str(res.log_file),
        worker=worker,
    )


def _check_sessions(sessions: Sequence[str | Path]) -> list[str]:
    """Absolute session paths, each once. A path that is not a session is kept: it becomes one
    failed row like any other broken session."""
    roots: list[str] = []
    for s in sessions:
        p = str(Path(s).resolve())
        if p in roots:
            log.warning("%s: given twice, run once", s)
            continue
        roots.append(p)
    if not roots:
        raise InputError("no sessions given")
    return roots


def _ray():
    try:
        import ray
    except ImportError:
        raise MvreconError("Ray is not installed (pip install ray), or run with --serial") from None
    return ray


def run_batch(
    sessions: Sequence[str | Path],
    preset: PresetName = "default",
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    serial: bool = False,
    settings: dict[str, Any] | None = None,
    stop: str | None = None,
    gpus: float = 0.0,
    on_done: Callable[[BatchRow, int, int], None] | None = None,
) -> BatchResult:
    """Run every session through the pipeline; rows in the order given.

    ``serial``: one after another in this process with ``threads`` (default: all cores).
    Otherwise on Ray: ``address`` None starts a local Ray with ``workers x threads`` CPUs
    (defaults: :func:`plan`); an address ("auto" or HOST:PORT) joins a running cluster, where
    each task reserves ``threads`` CPUs and at most ``workers`` run at once when given. ``stop``:
    the last stage to run (as ``session run --to``). ``gpus``: GPUs each Ray task reserves (a
    fraction shares one); Ray points the task at them (``CUDA_VISIBLE_DEVICES``) and the fit's
    ``auto`` render backend then takes nvdiffrast. ``on_done(row, finished, total)`` after each session."""
    roots = _check_sessions(sessions)
    workers, threads = plan(workers, threads, serial, address)
    t0 = time.perf_counter()
    rows: dict[str, BatchRow] = {}

    def done(row: BatchRow) -> None:
        rows[row.session] = row
        if on_done:
            on_done(row, len(rows), len(roots))

    if serial:
        for r in roots:
            done(run_session(r, preset, threads, settings, stop))
        engine = "serial"
    else:
        with threads_waiting():  # this process only waits: its share of the cores goes to the workers
            _run_on_ray(roots, preset, workers, threads, address, settings, stop, gpus, done)
        engine = "ray" if not address else f"ray ({address})"
    return BatchResult([rows[r] for r in roots], engine, workers, threads, preset, time.perf_counter() - t0)


def _run_on_ray(
    roots: list[str],
    preset: PresetName,
    workers: int,
    threads: int,
    address: str | None,
    settings: dict[str, Any] | None,
    stop: str | None,
    gpus: float,
    done: Callable[[BatchRow], None],
) -> None:
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        kw: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False, "configure_logging": False}
        if address:
            ray.init(address=address, **kw)
        else:
            # Ray runs its workers at niceness 15 by default: a batch is the machine's main work, not
            # background to whatever else runs (a serial run is not niced either)
            os.environ.setdefault("RAY_worker_niceness", "0")
            # a local run needs none of Ray's reporting (usage stats, metrics, task events, event
            # stats): on a small machine those daemons' cycles come out of the sessions' share
            for var in QUIET_RAY:
                os.environ.setdefault(var, "0")
            ray.init(num_cpus=workers * threads, **kw)
    try:
        task = ray.remote(run_session).options(num_cpus=threads, num_gpus=gpus, max_retries=0)
        pending: dict[Any, str] = {}
        queue = list(roots)
        while queue or pending:
            while queue and len(pending) < workers:
                r = queue.pop(0)
                pending[task.remote(r, preset, threads, settings, stop)] = r
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                r = pending.pop(ref)
                try:
                    done(ray.get(ref))
                except Exception as e:  # the worker process died (killed, out of memory)
                    first = str(e).splitlines()[0] if str(e) else ""
                    done(BatchRow(r, "failed", float("nan"), error=f"worker lost: {type(e).__name__}: {first}"))
    finally:
        if started:
            ray.shutdown()


def plan(workers: int | None, threads: int | None, serial: bool, address: str | None = None) -> tuple[int, int]:
    """Workers and threads per session: what was asked, else the cores split into 1-thread
    workers (on this machine's measurements the better split for the fast preset; see
    ``bench/batch.py``). Serial runs have one worker."""
    from .threads import available_cores

    cores = available_cores()
    if workers is not None and workers < 1:
        raise MvreconError(f"--workers must be at least 1, got {workers}")
    if threads is not None and threads < 1:
        raise MvreconError(f"--threads must be at least 1, got {threads}")
    if serial:
        return 1, threads or cores
    if address:  # a cluster: its size is Ray's to know; without --workers every task may start
        return workers or 10**6, threads or 1
    if workers is None:
        workers = max(1, cores // (threads or 1))
    return workers, threads or max(1, cores // workers)


# ------------------------------------------------------------------------------------------
# output


def _key_numbers(row: BatchRow) -> tuple[str, str]:
    fit = row.numbers.get("fit", {}).get("landmark error (px)")
    ev = row.numbers.get("evaluate", {})
    scan = next(
        (
            f"{v} ({k.removeprefix('scan error ').removesuffix(' (mm)')})"
            for k, v in ev.items()
            if k.startswith("scan error")
        ),
        "",
    )
    return ("" if fit is None else f"{fit:.3g}" if isinstance(fit, float) else str(fit)), scan


def format_table(res: BatchResult) -> str:
    """The summary table: one row a session (status, time, key numbers or the error)."""
    names = [Path(r.session).name for r in res.rows]
    w = max([7, *map(len, names)])
    lines = [
        f"{'session':<{w}}  {'status':<10} {'time':>8}  {'landmarks px':>12}  {'scan error mm':<24} note",
        "-" * (w + 72),
    ]
    for name, r in zip(names, res.rows):
        lm, scan = _key_numbers(r)
        secs = "" if r.seconds != r.seconds else f"{r.seconds:6.1f} s"
        lines.append(f"{name:<{w}}  {r.status:<10} {secs:>8}  {lm:>12}  {scan:<24} {r.error}".rstrip())
    lines.append("-" * (w + 72))
    n_ok = len(res.rows) - len(res.failed)
    lines.append(
        f"{n_ok}/{len(res.rows)} sessions ok, {res.engine}, {res.workers if res.workers < 10**6 else 'any'} "
        f"worker(s) x {res.threads} thread(s), {res.seconds:.1f} s, {res.sessions_per_hour:.1f} sessions/h"
    )
    return "\n".join(lines)


def _html(res: BatchResult, out: Path) -> str:
    def rel(p: str | None) -> str:
        if not p:
            return ""
        return os.path.relpath(p, out)

    rows = []
    for r in res.rows:
        lm, scan = _key_numbers(r)
        link = rel(r.report)
        name = html.escape(Path(r.session).name)
        cell = f'<a href="{html.escape(link)}">{name}</a>' if link else name
        secs = "" if r.seconds != r.seconds else f"{r.seconds:.1f} s"
        rows.append(
            f'<tr class="{r.status.replace(" ", "-")}"><td>{cell}</td><td>{html.escape(r.status)}</td>'
            f"<td>{secs}</td><td>{html.escape(lm)}</td><td>{html.escape(scan)}</td>"
            f"<td>{html.escape(r.error)}</td></tr>"
        )
    return (
        "<!doctype html><meta charset='utf-8'><title>mvrecon batch</title>"
        "<style>body{font:14px sans-serif;margin:2em}td,th{padding:4px 10px;text-align:left}"
        "tr.failed{background:#fdd}tr.up-to-date{color:#666}</style>"
        f"<h1>mvrecon batch: {len(res.rows) - len(res.failed)}/{len(res.rows)} sessions ok</h1>"
        f"<p>{html.escape(res.engine)}, preset {html.escape(res.preset)}, {res.seconds:.1f} s</p>"
        "<table><tr><th>session</th><th>status</th><th>time</th><th>landmarks px</th><th>scan error mm</th>"
        "<th>error</th></tr>" + "".join(rows) + "</table>\n"
    )


def write_outputs(res: BatchResult, out: str | Path) -> tuple[Path, Path]:
    """``batch.json`` and ``batch.html`` in ``out``."""
    out = Path(out).resolve()
    res.out = out
    j = write_json(out / BATCH_JSON, res.to_dict())
    h = write_text(out / BATCH_HTML, _html(res, out))
    return j, h


def default_out(sessions: Sequence[str | Path]) -> Path:
    """The folder the sessions share (their common parent)."""
    return Path(os.path.commonpath([str(Path(s).resolve().parent) for s in sessions]))
