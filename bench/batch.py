"""Many sessions at once: throughput of the serial loop and of Ray, and what a run beside another
costs the cue stage.

    python bench/batch.py [--sessions 4] [--size 640x480] [--preset fast] [--parts contention,throughput]
                          [--work DIR]

contention: the cue stage of one session (4 cameras) run again and again in a probe process,
median time per view: alone; beside a fit of another session (the default preset, started
first, so it holds every core when the probe starts); and the same beside the fit with the
thread ledger off for both (each its own ``MVRECON_RUNTIME_DIR``: each process takes every
core, as mvrecon did before it had the ledger).

throughput: ``--sessions`` synthetic sessions (4 cameras, ``--size``, seeds 1.., no board
shots) through every stage with ``--preset``, from the same pristine copies each time:
``mvrecon batch run --serial --threads 2`` (one after another in one process), on a local Ray
with 1 worker x 2 threads, and with 2 workers x 1 thread. Wall time of the whole command (Ray's
start and stop included); sessions per hour; Ray's overhead is the 1x2 run's time over the
serial loop's. The last line sums it up.

Run it on an otherwise idle machine: anything else running skews both parts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MVRECON = str(Path(sys.executable).with_name("mvrecon"))


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def make_sessions(work: Path, n: int, size: str) -> list[Path]:
    roots = []
    for seed in range(1, n + 1):
        root = work / "pristine" / f"s{seed}"
        if not (root / "session.json").is_file():
            subprocess.run([MVRECON, "synth", "session", str(root), "--cameras", "4", "--seed", str(seed),
                            "--size", size, "--no-board", "--overwrite"], check=True, capture_output=True)
        roots.append(root)
    return roots


def fresh_copies(pristine: list[Path], dest: Path) -> list[Path]:
    if dest.exists():
        shutil.rmtree(dest)
    return [Path(shutil.copytree(p, dest / p.name)) for p in pristine]


# ------------------------------------------------------------------------------------------
# contention


def probe(session: str, repeats: int) -> None:
    """(Run in its own process.) The cue stage of ``session`` ``repeats`` times after a warm-up;
    prints the median seconds per view as JSON."""
    import dataclasses

    from mvrecon import threads
    from mvrecon.cues import PRESETS, run as run_cues
    from mvrecon.session import load_session

    threads.configure()
    s = load_session(session)
    cfg = dataclasses.replace(PRESETS["default"], overwrite=True)
    run_cues(cfg, s)  # MediaPipe graphs, model and embedding loaded once, as in a real run
    per_view = []
    for _ in range(repeats):
        threads.rebalance(force=True)
        t0 = time.perf_counter()
        run_cues(cfg, s)
        per_view.append((time.perf_counter() - t0) / len(s.views()))
    print(json.dumps({"per_view_s": statistics.median(per_view), "threads": threads.count()}))


def _probe(session: Path, repeats: int, env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "_probe", str(session), str(repeats)], capture_output=True,
                         text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _start_fit(session: Path, env: dict) -> subprocess.Popen:
    """A default-preset fit of ``session`` in the background, returned once it is fitting."""
    subprocess.run([MVRECON, "session", "run", str(session), "--preset", "default", "--to", "cues"], check=True,
                   capture_output=True, env=env)
    proc = subprocess.Popen([MVRECON, "session", "run", str(session), "--preset", "default", "--from", "fit",
                             "--to", "fit"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    time.sleep(12)  # past the model load: the fit's steps are running
    if proc.poll() is not None:
        raise RuntimeError("the background fit ended before the probe started")
    return proc


def contention(pristine: list[Path], work: Path, repeats: int) -> list[list[str]]:
    cues_s, fit_s = fresh_copies(pristine[:2], work / "contention")
    base = dict(os.environ)
    shared = {**base, "MVRECON_RUNTIME_DIR": str(work / "runtime")}
    rows = []
    idle = _probe(cues_s, repeats, shared)
    rows.append(["alone", f"{1000 * idle['per_view_s']:.0f}", str(idle["threads"]), "1.0"])
    for name, fit_env, probe_env in (
        ("beside a fit (ledger on)", shared, shared),
        ("beside a fit (ledger off)", {**base, "MVRECON_RUNTIME_DIR": str(work / "rt-fit")},
         {**base, "MVRECON_RUNTIME_DIR": str(work / "rt-probe")}),
    ):
        fit = _start_fit(fit_s, fit_env)
        try:
            r = _probe(cues_s, repeats, probe_env)
        finally:
            fit.kill()
            fit.wait()
        rows.append([name, f"{1000 * r['per_view_s']:.0f}", str(r["threads"]),
                     f"{r['per_view_s'] / idle['per_view_s']:.1f}"])
    return rows


# ------------------------------------------------------------------------------------------
# throughput


def throughput(pristine: list[Path], work: Path, preset: str) -> dict[str, float]:
    runs = {"serial 2 threads": ["--serial", "--threads", "2"],
            "ray 1x2": ["--workers", "1", "--threads", "2"],
            "ray 2x1": ["--workers", "2", "--threads", "1"]}
    out = {}
    for name, args in runs.items():
        roots = fresh_copies(pristine, work / "throughput")
        t0 = time.perf_counter()
        proc = subprocess.run([MVRECON, "batch", "run", *map(str, roots), "--preset", preset, *args, "--out",
                               str(work / "throughput"), "--json"], capture_output=True, text=True)
        secs = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: {proc.stderr[-2000:]}")
        res = json.loads(proc.stdout)
        out[name] = secs
        per = ", ".join(f"{Path(r['session']).name} {r['seconds']:.0f} s" for r in res["rows"])
        print(f"  {name}: {secs:.1f} s ({per})", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--parts", default="contention,throughput")
    ap.add_argument("--repeats", type=int, default=5, help="cue stage runs per probe")
    ap.add_argument("--work", type=Path, default=None, help="keep the sessions here (default: a temporary folder)")
    a = ap.parse_args()
    parts = a.parts.split(",")
    work = a.work or Path(tempfile.mkdtemp(prefix="mvrecon-batch-"))
    load = os.getloadavg()[0]
    print(f"bench/batch.py: {os.cpu_count()} cores, load average {load:.2f} at start, work {work}", flush=True)
    pristine = make_sessions(work, max(a.sessions, 2), a.size)
    if "contention" in parts:
        rows = contention(pristine, work, a.repeats)
        print(f"\ncue stage per view ({a.size}, 4 views, median of {a.repeats} runs)")
        print(table(["cue stage", "ms per view", "threads", "x alone"], rows))
        print(f"beside a fit: {rows[1][3]} x alone (goal <= 2)\n", flush=True)
    if "throughput" in parts:
        t = throughput(pristine[: a.sessions], work, a.preset)
        rate = {k: 3600 * a.sessions / v for k, v in t.items()}
        overhead = 100 * (t["ray 1x2"] - t["serial 2 threads"]) / t["serial 2 threads"]
        print(f"\n{a.sessions} sessions, {a.size}, 4 cameras, preset {a.preset}")
        print(table(["run", "seconds", "sessions/h"], [[k, f"{t[k]:.1f}", f"{rate[k]:.1f}"] for k in t]))
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
        print(f"batch: serial {rate['serial 2 threads']:.1f} sessions/h, ray 1x2 {rate['ray 1x2']:.1f}, "
              f"ray 2x1 {rate['ray 2x1']:.1f}; ray overhead {overhead:.0f} %")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_probe":
        probe(sys.argv[2], int(sys.argv[3]))
    else:
        main()
