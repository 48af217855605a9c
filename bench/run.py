"""End-to-end ``mvrecon session run``: time and peak memory per stage for 2, 4 and 8 cameras.

Usage: python bench/run.py [--cameras 2,4,8] [--size 640x480] [--preset fast] [--keep DIR]

Each case renders a synthetic session (not timed), then runs the whole pipeline in this process
(the model is loaded once per case by the fit, as a user's run does). Stage columns are wall
seconds; 'cpu s' is the process CPU time of the run (all threads), the steadier figure on a
shared machine. Peak RSS is sampled every 20 ms from /proc/self/status while each stage runs (it
includes what earlier stages still hold). Goal: under 90 s end to end for 4 cameras. Prints
tables; never pass/fail on time.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
from pathlib import Path

from mvrecon.config import pipeline_config
from mvrecon.facemodel import load_model
from mvrecon.pipeline import run_pipeline
from mvrecon.stages import STAGE_NAMES
from mvrecon.synth import SynthConfig, make_session


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakSampler:
    """Peak resident memory per stage, sampled by a background thread."""

    def __init__(self, every_s: float = 0.02):
        self.every_s = every_s
        self.current: str | None = None
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            if self.current is not None:
                self.peaks[self.current] = max(self.peaks.get(self.current, 0.0), rss_mb())

    def on_stage(self, name: str, event: str) -> None:
        if event == "start":
            self.current = name
            self.peaks[name] = rss_mb()
        else:
            self.peaks[name] = max(self.peaks.get(name, 0.0), rss_mb())
            self.current = None

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", default="2,4,8", help="comma-separated camera counts")
    ap.add_argument("--size", default="640x480", help="image size WxH")
    ap.add_argument("--preset", default="fast", choices=["fast", "default", "best"])
    ap.add_argument("--keep", type=Path, default=None, help="keep the sessions under this folder")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.lower().split("x"))
    counts = [int(c) for c in args.cameras.split(",") if c.strip()]
    model = load_model("ict")
    cols = [s for s in STAGE_NAMES if s != "refine"]
    rows = []
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            base = args.keep or Path(tmp)
            root = base / f"bench_{n}cams"
            t0 = time.perf_counter()
            make_session(root, SynthConfig(cameras=n, width=w, height=h), model=model, overwrite=True)
            synth_s = time.perf_counter() - t0
            with PeakSampler() as sampler:
                c0 = time.process_time()
                res = run_pipeline(root, pipeline_config(args.preset), on_stage=sampler.on_stage)
                cpu = time.process_time() - c0
            secs = {o.stage: o.seconds for o in res.stages if o.status == "done"}
            nums = {o.stage: o.numbers for o in res.stages}
            rows.append((n, secs, sampler.peaks, res.seconds, cpu, synth_s, nums))
            print(f"{n} cameras: {res.seconds:.1f} s end to end ({cpu:.1f} s CPU), synth {synth_s:.1f} s", flush=True)

    print(f"\nwall seconds per stage ({args.size}, preset {args.preset}, report build included in total)")
    head = f"{'cameras':>7s} " + " ".join(f"{c[:9]:>9s}" for c in cols) + f" {'total s':>8s} {'cpu s':>7s}"
    print(head)
    print("-" * len(head))
    for n, secs, _, total, cpu, _, _ in rows:
        cells = " ".join(f"{secs[c]:9.1f}" if c in secs else f"{'-':>9s}" for c in cols)
        print(f"{n:7d} {cells} {total:8.1f} {cpu:7.1f}")
    print("\npeak RSS per stage, MB")
    print(head.replace(f" {'total s':>8s} {'cpu s':>7s}", f" {'max':>8s}"))
    print("-" * len(head))
    for n, _, peaks, *_ in rows:
        cells = " ".join(f"{peaks[c]:9.0f}" if c in peaks else f"{'-':>9s}" for c in cols)
        print(f"{n:7d} {cells} {max(peaks.values(), default=0):8.0f}")
    print(f"\nprocess peak RSS (ru_maxrss): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print("\nkey numbers")
    def mm(v) -> str:  # "not computed (--realy)" when the evaluate stage did not run realy
        return f"{v} mm" if isinstance(v, (int, float)) else str(v)

    for n, *_, nums in rows:
        fit, ev = nums.get("fit", {}), nums.get("evaluate", {})
        print(f"{n:7d} cameras: calibration RMS {nums.get('calibrate', {}).get('reprojection RMS (px)')} px, "
              f"landmark error {fit.get('landmark error (px)')} px, robust {mm(ev.get('scan error robust (mm)'))}, "
              f"REALY {mm(ev.get('scan error REALY (mm)'))}, NoW median {ev.get('scan error NoW median (mm)')} mm")


if __name__ == "__main__":
    main()
