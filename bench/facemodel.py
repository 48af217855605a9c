"""Face model benchmark: ICT-FaceKit import phases, model load, and vertex evaluation.

    .venv/bin/python bench/facemodel.py [PATH_TO_FaceXModel.tar.xz]

Prints a table (wall-clock seconds on this machine; never a pass/fail)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from mvrecon.facemodel import ict
    from mvrecon.facemodel.labels import check_labels
    from mvrecon.facemodel.model import load_model_file

    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/models/ict-facekit/FaceXModel.tar.xz"
    torch.set_num_threads(2)
    rows = []

    t = time.perf_counter()
    n = sum(1 for _ in ict._iter_tar(src))
    rows.append(("stream + decompress archive", f"{n} files", time.perf_counter() - t))
    t = time.perf_counter()
    m = ict.import_ict(src)
    rows.append(("full import (stream, parse OBJs, labels)", f"{m.n_vertices} verts", time.perf_counter() - t))
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "ict.npz"
        t = time.perf_counter()
        m.save(p)
        rows.append(("save .npz (compressed)", f"{p.stat().st_size / 1e6:.1f} MB", time.perf_counter() - t))
        t = time.perf_counter()
        m = load_model_file(p)
        rows.append(("load .npz", "", time.perf_counter() - t))
    for b in (1, 8, 32):
        idc = torch.randn(b, m.n_id)
        exc = torch.rand(b, m.n_exp)
        m.vertices_torch(idc, exc)  # warm the cached matrices
        t = time.perf_counter()
        for _ in range(5):
            m.vertices_torch(idc, exc)
        rows.append((f"vertices_torch B={b}", "per call", (time.perf_counter() - t) / 5))
    t = time.perf_counter()
    m.vertices(np.random.randn(m.n_id), np.random.rand(m.n_exp))
    rows.append(("vertices (numpy)", "per call", time.perf_counter() - t))
    for yaw in (0, 30):
        t = time.perf_counter()
        iou, _, _ = check_labels(m, yaw)
        rows.append((f"label check yaw {yaw} (1024 px)", "min IoU %.3f" % min(iou.values()), time.perf_counter() - t))

    w = max(len(r[0]) for r in rows)
    print(f"{'step'.ljust(w)}  {'note':>16}  {'seconds':>9}")
    for name, note, sec in rows:
        print(f"{name.ljust(w)}  {note:>16}  {sec:9.3f}")


if __name__ == "__main__":
    main()
