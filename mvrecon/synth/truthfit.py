"""A fit made of a synthetic session's truth: the true identity, expression, pose, mid layer
(as the deformation map) and light, and no fine layer. Later stages run on it as on a real fit
(``fit/params.npz`` in the format :func:`mvrecon.fit.result.load_fit` reads), which isolates them
from the fit's own errors (the detail stage's tests and benchmark)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geometry import matrix_to_axis_angle
from ..io import write_json
from .generate import load_ground_truth


def write_truth_fit(root: str | Path, model, frames: int = 1) -> Path:
    """Write ``root/fit/params.npz`` (and a minimal ``summary.json``) for the session's first
    ``frames`` frames (0: all) from its ground truth, one expression group per frame; per view the
    SH is the true light times the camera's gain. The mid layer is taken from the first frame
    (the fit's deformation map is one for all frames)."""
    root = Path(root)
    gt = load_ground_truth(root)
    with np.load(root / "gt" / "gt.npz") as z:
        gain = z["camera_gain"]
    G = len(gt.frames) if frames <= 0 else min(int(frames), len(gt.frames))
    Ms = [gt.head_to_world[f] for f in range(G)]
    R, t = Ms[0][:3, :3], Ms[0][:3, 3]
    base = model.vertices(gt.id_coeffs, gt.exp_coeffs[0]).astype(np.float64)
    # the mid layer (and any head offset) in model space: the fit's deformation map does that job
    off = (gt.verts_mid[0].astype(np.float64) - t) @ R - base
    C = len(gt.cameras)
    keys = [f"{gt.frames[f]}_{c}" for f in range(G) for c in gt.cameras]
    sh = np.stack([gt.sh * gain[c][None] for _ in range(G) for c in range(C)]).astype(np.float32)
    out = root / "fit"
    out.mkdir(exist_ok=True)
    np.savez(
        out / "params.npz",
        alpha=gt.id_coeffs.astype(np.float32),
        beta=gt.exp_coeffs[:G].astype(np.float32),
        rot=np.stack([matrix_to_axis_angle(M[:3, :3]).reshape(3) for M in Ms]).astype(np.float32),
        trans=np.stack([M[:3, 3] for M in Ms]).astype(np.float32),
        log_scale=np.array(0.0, np.float32),
        deform_offsets=off.astype(np.float32),
        fused_disp_vertex=np.zeros(model.n_vertices, np.float32),
        disp=np.zeros((G * C, 1, 16, 16), np.float32),
        sh=sh,
        albedo=np.full((1, 3, 8, 8), 0.5, np.float32),
        bias=np.zeros((G * C, 3), np.float32),
        views=np.array(keys),
        group_of_view=np.repeat(np.arange(G), C).astype(np.int64),
        groups=np.array(list(gt.frames[:G])),
        mode=np.array("per_frame"),
        model=np.array(model.name),
    )
    write_json(out / "summary.json", {"views": keys, "truth": True})
    return out / "params.npz"
