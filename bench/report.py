"""What the session report costs: build time and report.html size for the ICT head at several
viewer triangle budgets, with realistic inputs (8 Full-HD overlays, a 2048 px texture, a heatmap).

    python bench/report.py [--views 8] [--texture 2048]

Prints a table; never passes or fails on time. Needs the imported ICT model (tools/setup.sh).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", type=int, default=8, help="overlay photos (1920x1080 JPEG)")
    ap.add_argument("--texture", type=int, default=2048, help="texture side in pixels")
    args = ap.parse_args()

    import cv2

    from mvrecon.facemodel import load_model
    from mvrecon.io import write_image
    from mvrecon.report import Overlay, ReportConfig, ReportContent, StageRow, ViewerMesh, build_report, prepare

    m = load_model("ict")
    rng = np.random.default_rng(0)
    face = (m.part_labels[m.triangles] > 0).any(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Smooth noise compresses like a real skin texture and photo, unlike flat colour.
        def smooth(h: int, w: int) -> np.ndarray:
            small = rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8)
            big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
            return np.clip(big.astype(int) + rng.integers(-6, 7, big.shape), 0, 255).astype(np.uint8)

        overlays = [Overlay(write_image(root / f"cam{i}.jpg", smooth(1080, 1920)), f"cam{i}") for i in range(args.views)]
        tex = write_image(root / "albedo.png", smooth(args.texture, args.texture))
        heat = write_image(root / "heat.png", smooth(800, 800))
        rows = []
        for budget in (150_000, 40_000, 20_000):
            mesh = ViewerMesh(m.mean, m.triangles, m.uvs, m.uv_triangles, texture=tex, keep=face)
            content = ReportContent(
                subject="bench", stages=[StageRow("fit", "done", 1.0, {"loss": 0.1})], overlays=overlays,
                texture=tex, heatmap=heat, metrics={"mean (mm)": 1.0}, mesh=mesh,
            )
            t0 = time.perf_counter()
            data = prepare(mesh, budget)
            t1 = time.perf_counter()
            out = build_report(root, content, ReportConfig(max_triangles=budget))
            t2 = time.perf_counter()
            rows.append((budget, len(data.indices), t1 - t0, t2 - t1, out.stat().st_size / 2**20))

    print(f"ICT head: {len(m.triangles):,} triangles ({int(face.sum()):,} in the face region kept at full resolution); "
          f"{args.views} overlays 1920x1080, texture {args.texture} px")
    print(f"{'budget':>9} {'viewer tris':>12} {'prepare s':>10} {'build s':>8} {'report MiB':>11}")
    for budget, tris, tp, tb, mib in rows:
        print(f"{budget:>9,} {tris:>12,} {tp:>10.2f} {tb:>8.2f} {mib:>11.2f}")


if __name__ == "__main__":
    main()
