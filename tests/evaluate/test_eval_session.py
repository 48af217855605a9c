"""The session evaluate stage with a scan in the rig's frame (``session.json`` scan ``"frame": "rig"``),
on a small synthetic session whose scan landmarks follow an annotator's convention; the fit's
output is stood in for by the true head (posed in the world frame, as the fit writes it)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from mvrecon.config import pipeline_config
from mvrecon.meshio import write_obj
from mvrecon.report import StageRow
from mvrecon.session import load_session
from mvrecon.stagedef import Context
from mvrecon.stages import STAGES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rig_session(tmp_path_factory, ict_model):
    from mvrecon.synth.config import SynthConfig
    from mvrecon.synth.generate import make_session
    from mvrecon.synth.realism import Realism

    root = tmp_path_factory.mktemp("rigscan") / "session"
    cfg = SynthConfig(seed=3, cameras=2, width=160, height=120, board=False, subdivision=1, supersample=1,
                      mid_map_size=128, fine_map_size=256, texture_size=256, realism=Realism(annotator=True))
    make_session(root, cfg, model=ict_model, overwrite=True)
    sj = json.loads((root / "session.json").read_text())
    sj["scan"]["frame"] = "rig"
    (root / "session.json").write_text(json.dumps(sj))
    return root


def _evaluate_with(root, ict_model, shift_m: np.ndarray, recalibrated: np.ndarray | None = None,
                   realy: bool = False) -> dict:
    """Run the evaluate stage with the true head moved by ``shift_m`` as the fitted mesh;
    ``recalibrated`` (4, 4): a calibrate stage's rig in force whose world is that motion of the
    session rig's world (the fit is then in that world); ``realy``: the evaluate settings ask for
    the realy protocol (``session run --realy``)."""
    truth = np.load(root / "gt" / "gt.npz")["verts_detail"][0].astype(np.float64) + shift_m
    session = load_session(root)
    if recalibrated is not None:
        truth = truth @ recalibrated[:3, :3].T + recalibrated[:3, 3]
        inv = np.linalg.inv(recalibrated)
        cams = [dataclasses.replace(c, world_to_cam=c.world_to_cam @ inv) for c in session.rig.cameras]
        session = dataclasses.replace(session, rig=dataclasses.replace(session.rig, cameras=tuple(cams)))
    write_obj(root / "fit" / "detailed_f000.obj", truth, ict_model.triangles)
    cfg = pipeline_config("fast")
    ctx = Context(session, dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, compute_realy=realy)))
    numbers = next(s for s in STAGES if s.name == "evaluate").run(ctx)
    return {"numbers": dict(numbers), "metrics": json.loads((root / "evaluate" / "metrics.json").read_text())}


def test_rig_frame_scan_headline_is_unaligned_and_shown_in_the_report(rig_session, ict_model):
    root = rig_session
    assert load_session(root).scan.frame == "rig"
    same = _evaluate_with(root, ict_model, np.zeros(3), realy=True)
    m = same["metrics"]
    assert m["scan"]["frame"] == "rig" and m["headline"]["protocol"] == "unaligned"
    # the true surface against its scan (0.1 mm noise, Loop-subdivided): the floor
    assert m["unaligned"]["all_mm"] < 0.15 and m["robust"]["all_mm"] < 0.15
    # the annotator put the brows and the jaw elsewhere than the model's vertices
    assert m["landmarks"]["conventions_differ"] and m["landmarks"]["gap_median_mm"]["brows"] > 3.0
    assert m["realy"]["all_mm"] > 3 * m["robust"]["all_mm"]
    assert same["numbers"]["scan error REALY (mm)"] == pytest.approx(m["realy"]["all_mm"], abs=1e-3)
    assert same["numbers"]["scan error unaligned (rig frame) (mm)"] == pytest.approx(m["unaligned"]["all_mm"], abs=1e-3)
    assert "warning" in same["numbers"]

    # 1.5 mm off in the rig's frame: only the unaligned headline sees it
    moved = _evaluate_with(root, ict_model, np.array([0.0015, 0.0, 0.0]))["metrics"]
    assert moved["headline"]["all_mm"] > 0.6
    # realy runs on request only, and the metrics say so instead of carrying a stale number
    assert "realy" not in moved and moved["not_computed"]["realy"] == "not computed (--realy)"
    assert moved["robust"]["all_mm"] == pytest.approx(m["robust"]["all_mm"], abs=0.03)

    # a calibrate stage that put its own world frame in force: the fit is moved back by the cameras
    turn = np.eye(4)
    turn[:3, :3] = np.array([[np.cos(0.2), 0, np.sin(0.2)], [0, 1, 0], [-np.sin(0.2), 0, np.cos(0.2)]])
    turn[:3, 3] = [0.01, -0.02, 0.03]
    recal = _evaluate_with(root, ict_model, np.zeros(3), recalibrated=turn)
    assert recal["metrics"]["headline"]["all_mm"] == pytest.approx(m["unaligned"]["all_mm"], abs=0.005)
    assert recal["numbers"]["recalibrated rig to the session rig (camera misfit, mm)"] < 1e-3
    last = _evaluate_with(root, ict_model, np.zeros(3))
    assert last["numbers"]["scan error REALY (mm)"] == "not computed (--realy)"

    # the report shows only current outputs (a stage run here writes no provenance): the evaluate
    # metrics as the session report puts them, rendered by the report's own builder
    from mvrecon.report import ReportContent
    from mvrecon.report.build import render_html
    from mvrecon.report.content import eval_metrics

    metrics = {"evaluate": eval_metrics(json.loads((root / "evaluate" / "metrics.json").read_text()))}
    rows = [StageRow("evaluate", "done", 1.0, {k: v for k, v in last["numbers"].items() if v is not None}, "")]
    html = render_html(ReportContent(subject="rigscan", stages=rows, metrics=metrics))
    assert "unaligned (rig frame) all (mm), headline" in html
    assert "landmark gap after the 7-point alignment, median (mm)" in html
    assert "landmark conventions differ" in html
    assert "scan error REALY (mm)" in html and "robust (mm)" in html
    assert "REALY (mm)" in metrics["evaluate"] and "not computed (--realy)" in html
