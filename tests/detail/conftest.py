"""A small synthetic session with a known fine layer and a fit made from its ground truth (the
true identity, expression, pose, mid layer and light, no fine layer): what the detail stage must
add is exactly the truth's fine map."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mvrecon.io import write_json


def write_truth_fit(root: Path, model) -> None:
    """``root/fit/params.npz`` of a perfect fit without the fine layer (what load_fit reads)."""
    from mvrecon.synth import load_ground_truth

    gt = load_ground_truth(root)
    z = np.load(root / "gt" / "gt.npz")
    M = gt.head_to_world[0]
    R, t = M[:3, :3], M[:3, 3]
    base = model.vertices(gt.id_coeffs, gt.exp_coeffs[0]).astype(np.float64)
    # the mid layer (and a head offset) in model space: the fit's deformation map does that job
    mid_model = (gt.verts_mid[0].astype(np.float64) - t) @ R
    off = mid_model - base
    n_views = len(gt.cameras)
    gain = z["camera_gain"]
    sh = np.stack([gt.sh * gain[c][None] for c in range(n_views)]).astype(np.float32)
    (root / "fit").mkdir(exist_ok=True)
    np.savez(root / "fit" / "params.npz", alpha=gt.id_coeffs.astype(np.float32), beta=gt.exp_coeffs[:1].astype(np.float32),
             rot=cv2.Rodrigues(R)[0].reshape(1, 3).astype(np.float32), trans=t.reshape(1, 3).astype(np.float32),
             log_scale=np.array(0.0, np.float32), deform_offsets=off.astype(np.float32),
             fused_disp_vertex=np.zeros(model.n_vertices, np.float32),
             disp=np.zeros((n_views, 1, 16, 16), np.float32), sh=sh, albedo=np.full((1, 3, 8, 8), 0.5, np.float32),
             bias=np.zeros((n_views, 3), np.float32), views=np.array([f"f000_{c}" for c in gt.cameras]),
             group_of_view=np.zeros(n_views, np.int64), groups=np.array(["f000"]), mode=np.array("per_frame"),
             model=np.array(model.name))
    write_json(root / "fit" / "summary.json", {"views": [f"f000_{c}" for c in gt.cameras]})


@pytest.fixture(scope="session")
def detail_session(tmp_path_factory, ict_model) -> Path:
    """3 cameras at 1024x768, deeper grooves (0.5 mm) so a small, fast grid still resolves them."""
    from mvrecon.synth import SynthConfig, make_session

    root = tmp_path_factory.mktemp("detail") / "session"
    make_session(root, SynthConfig(seed=3, cameras=3, width=1024, height=768, board=False, supersample=1,
                                   fine_amplitude_mm=0.5, scan_holes=0), model=ict_model)
    write_truth_fit(root, ict_model)
    return root
