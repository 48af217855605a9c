"""A run owns its threads: one place sets how many threads torch, OpenMP, BLAS, OpenCV and
Open3D's ray casts may start, from the run's share of the cores.

Why: on a small machine two mvrecon processes that each start a thread per core make both
several times slower (busy-waiting OpenMP and BLAS pools fight over the cores), far worse than
the halving a fair split costs. So every run

- asks for ``--threads N`` (default: the cores this process may use, ``os.sched_getaffinity``);
- registers itself in a small per-user ledger of running mvrecon processes on this machine
  (``$MVRECON_RUNTIME_DIR``, default ``<tmp>/mvrecon-<uid>/runs``; one file per process, removed
  at exit, ignored once its process is gone);
- uses ``min(N, max(1, cores // live runs))`` threads, and looks again at each stage and every
  half second inside the long loops (:func:`rebalance`), so a fit that started alone gives a
  core back when a second run starts beside it, and takes it again when that run ends.

The ledger is local to one machine on purpose: cores are per machine. Ray workers (``mvrecon
batch run``) register like any other run, each with the threads its task reserved.

Small solves (the cue fit's normal equations) run single-threaded inside :func:`single_threaded`:
with 2 threads OpenBLAS is several times slower on them than with 1.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: Environment variables read by OpenMP, OpenBLAS, MKL, Accelerate and numexpr when they load:
#: set so that libraries loaded after :func:`configure` and child processes follow the same count.
ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
RECHECK_SECONDS = 0.5

_state: dict = {"requested": None, "current": None, "entry": None, "checked": 0.0}
_task = threading.local()  # a pool task's cap on count(), per thread (see limited())


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; what a container or ``taskset`` allows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def runtime_dir() -> Path:
    """Where the ledger of running mvrecon processes lives (one machine, one user)."""
    env = os.environ.get("MVRECON_RUNTIME_DIR")
    base = Path(env) if env else Path(tempfile.gettempdir()) / f"mvrecon-{os.getuid()}"
    return base / "runs"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def live_runs() -> int:
    """How many mvrecon runs (this one included, once registered) are alive on this machine."""
    d = runtime_dir()
    n = 0
    try:
        names = os.listdir(d)
    except OSError:
        return 1
    for name in names:
        if not name.isdigit():
            continue
        if _alive(int(name)):
            n += 1
        else:  # a run that died without cleaning up
            with contextlib.suppress(OSError):
                os.unlink(d / name)
    return max(1, n)


def share(requested: int | None = None) -> int:
    """Threads a run asking for ``requested`` (default: all its cores) may use now."""
    cores = available_cores()
    want = cores if requested is None else max(1, int(requested))
    return max(1, min(want, cores // live_runs()))


def _register() -> None:
    if _state["entry"] is not None:
        return
    d = runtime_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        entry = d / str(os.getpid())
        entry.write_text(str(_state["requested"] or ""))
    except OSError as e:  # a read-only /tmp: run without the ledger (alone, as far as it knows)
        log.debug("thread ledger unavailable (%s)", e)
        return
    _state["entry"] = entry
    atexit.register(unregister)


def unregister() -> None:
    """Leave the ledger (at exit; a killed process is dropped by the next run that looks)."""
    entry = _state.pop("entry", None)
    _state["entry"] = None
    if entry is not None:
        with contextlib.suppress(OSError):
            entry.unlink()


def _apply(n: int) -> None:
    """Set ``n`` in the environment (libraries loaded later, child processes) and in the
    libraries already loaded; importing them here would cost every short command a second."""
    import sys

    for var in ENV_VARS:
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(n)
    if "numpy" in sys.modules or "torch" in sys.modules:
        from threadpoolctl import threadpool_limits

        # the OpenMP and BLAS pools already loaded (numpy's OpenBLAS, torch's libgomp, scipy's)
        threadpool_limits(limits=n)
    _state["current"] = n


def configure(threads: int | None = None, register: bool = True) -> int:
    """Set this process's thread counts from ``threads`` (None: the cores it may use) and its
    share of the cores; returns the count in force. ``register`` False: do not enter the ledger
    (a driver process that only waits on others)."""
    if threads is not None and int(threads) < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    _state["requested"] = None if threads is None else int(threads)
    if register:
        _register()
    n = share(_state["requested"])
    _apply(n)
    _state["checked"] = time.monotonic()
    log.debug("threads: %d (requested %s, %d cores, %d runs)", n, threads, available_cores(), live_runs())
    return n


@contextlib.contextmanager
def running() -> Iterator[int]:
    """A run in the ledger for the block (an API caller that runs the pipeline without the command
    line, which registers the whole process): configured with the defaults on first use, entered
    if it was not, and left again at the end if it entered here, so an idle Python process (a
    notebook, a test runner) does not keep a share of the cores."""
    entered = _state["entry"] is None
    if _state["current"] is None:
        configure()
    elif entered:
        _register()
    try:
        yield int(_state["current"])
    finally:
        if entered:
            unregister()


def count() -> int:
    """Threads in force for this process (configures it on first use). Pass it to libraries that
    take a thread count per call (Open3D's ``cast_rays(..., nthreads=)``)."""
    n = configure(register=False) if _state["current"] is None else int(_state["current"])
    cap = getattr(_task, "cap", None)
    return n if cap is None else max(1, min(n, cap))


@contextlib.contextmanager
def limited(n: int) -> Iterator[int]:
    """In this thread, :func:`count` gives at most ``n`` inside the block: a task of a thread pool
    over which a run splits its threads (regions evaluated side by side) passes its part of the
    share to the libraries it calls, instead of each task taking the whole run's."""
    before = getattr(_task, "cap", None)
    _task.cap = max(1, int(n))
    try:
        yield count()
    finally:
        _task.cap = before


def rebalance(force: bool = False) -> int:
    """Look at the ledger again (at most every :data:`RECHECK_SECONDS` unless ``force``) and
    adjust this process's threads to its current share; cheap enough for a loop. ``force`` also
    sets the count again in libraries loaded since (a stage start)."""
    now = time.monotonic()
    if _state["current"] is None:
        return configure(register=False)
    if not force and now - _state["checked"] < RECHECK_SECONDS:
        return int(_state["current"])
    _state["checked"] = now
    n = share(_state["requested"])
    if force or n != _state["current"]:
        log.debug("threads: %d -> %d (%d runs on %d cores)", _state["current"], n, live_runs(), available_cores())
        _apply(n)
    return n


@contextlib.contextmanager
def waiting() -> Iterator[None]:
    """Out of the ledger for the block: this process only waits on others (a batch driver whose
    sessions run in Ray workers), so its share goes to them."""
    was = _state["entry"] is not None
    unregister()
    try:
        yield
    finally:
        if was:
            _register()


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """BLAS, OpenMP and torch on one thread inside the block (small solves, where the pools'
    wake-ups cost more than the work)."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    with threadpool_limits(limits=1):
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)
