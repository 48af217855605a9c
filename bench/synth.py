"""Synthetic session generation: time per step, output size, scan size.

Usage: python bench/synth.py [--quick]     (prints a table; never pass/fail on time)

Wall times depend on the machine's load (the CI box is shared); 'cpu s' (process CPU time, all
threads) is the steadier figure. Step columns are wall seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mvrecon.facemodel import load_model
from mvrecon.synth import SynthConfig, make_session

STEPS = ("detail maps", "albedo", "geometry", "render", "scan", "board shots", "write")


def folder_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small cases only")
    args = ap.parse_args()
    cases = [("2 cams 320x240", SynthConfig(cameras=2, width=320, height=240, calib_shots=4)),
             ("4 cams 640x480", SynthConfig(cameras=4, width=640, height=480))]
    if not args.quick:
        cases += [("4 cams 1024x768", SynthConfig()),
                  ("8 cams 1024x768, 2 frames", SynthConfig(cameras=8, frames=2))]
    model = load_model("ict")
    head = f"{'case':28s} {'total s':>8s} {'cpu s':>7s} " + " ".join(f"{s[:9]:>9s}" for s in STEPS) + f" {'views':>6s} {'shots':>6s} {'MB':>7s} {'scan verts':>11s}"
    print(head)
    print("-" * len(head))
    for name, cfg in cases:
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            res = make_session(Path(tmp) / "s", cfg, model=model)
            total, cpu = time.perf_counter() - t0, time.process_time() - c0
            cells = " ".join(f"{res.timings.get(s, 0.0):9.2f}" for s in STEPS)
            print(f"{name:28s} {total:8.1f} {cpu:7.1f} {cells} {res.n_views:6d} {res.n_calib_images:6d} "
                  f"{folder_mb(res.root):7.1f} {res.scan_vertices:11d}")


if __name__ == "__main__":
    main()
