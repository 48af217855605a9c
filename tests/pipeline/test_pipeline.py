"""``mvrecon session run`` end to end on a tiny synthetic session (2 cameras, 320x240, fast preset).

The session is rendered once per module; every test works on its own copy. The CLI runs as a
subprocess, as a user runs it (the resume test has to kill it anyway). Few and small tests: each
fit of this session costs about a minute of CPU.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from browser import viewer_status

from mvrecon.session import session_lock

pytestmark = pytest.mark.slow

MVRECON = [str(Path(sys.executable).with_name("mvrecon"))]
APPLICABLE = ["ingest", "calibrate", "cues", "fit", "detail", "texture", "export", "evaluate"]
# A ledger of their own: a run's share of the cores follows the other mvrecon runs on the machine
# (mvrecon.threads), and a fit with another thread count gives other floats; the tests that
# compare the bytes of two runs need the same count in both, whatever else runs beside CI.
ENV = {**os.environ, "MVRECON_RUNTIME_DIR": tempfile.mkdtemp(prefix="mvrecon-test-ledger-")}


def mvrecon(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*MVRECON, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)


def _json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _status(out: dict) -> dict[str, str]:
    return {s["stage"]: s["status"] for s in out["stages"]}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, ict_model) -> Path:
    root = tmp_path_factory.mktemp("synth") / "session"
    proc = mvrecon("synth", "session", root, "--cameras", 2, "--seed", 7, "--size", "320x240", "--calib-shots", 6)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def _copy(pristine: Path, dest: Path) -> Path:
    shutil.copytree(pristine, dest)
    return dest


@pytest.fixture(scope="module")
def finished(pristine, tmp_path_factory) -> tuple[Path, dict]:
    """One uninterrupted run: the reference the other tests compare with."""
    root = _copy(pristine, tmp_path_factory.mktemp("run") / "session")
    return root, _json(mvrecon("session", "run", root, "--preset", "fast", "--json"))


def test_run_makes_asset_metrics_report_then_skips_everything(finished):
    root, out = finished
    st = _status(out)
    assert st == {**{s: "done" for s in APPLICABLE}, "refine": "skipped"}, st
    for f in ("export/head.glb", "evaluate/metrics.json", "evaluate/heatmap.png", "texture/albedo.png",
              "fit/losses.png", "report.html"):
        assert (root / f).is_file(), f
    nums = {s["stage"]: s["numbers"] for s in out["stages"]}
    # numbers that could fail: the ground-truth rig and head are known
    assert nums["calibrate"]["reprojection RMS (px)"] < 0.5
    assert nums["fit"]["landmark error (px)"] < 3.0
    assert nums["evaluate"]["scan error NoW median (mm)"] < 3.0
    prov = json.loads((root / "fit" / "provenance.json").read_text())
    assert set(prov["versions"]) == {"mvrecon", "torch", "numpy"}
    assert {"stage:cues", "stage:calibrate", "rig"} <= set(prov["inputs"]) and prov["settings"]["preset"] == "fast"
    assert len(list((root / "logs").glob("run-*.log"))) == 1

    again = _json(mvrecon("session", "run", root, "--preset", "fast", "--json"))
    assert set(_status(again).values()) == {"skipped"}, _status(again)
    assert len(list((root / "logs").glob("run-*.log"))) == 2
    # changed settings rerun the stages they reach, and only those
    redo = _json(mvrecon("session", "run", root, "--preset", "fast", "--from", "export", "--to", "export", "--json"))
    assert _status(redo)["export"] == "done" and _status(redo)["fit"] == "skipped"


def test_set_overrides_one_setting_and_runs_its_stage_and_those_after_it(finished, tmp_path):
    """``--set STAGE.FIELD=VALUE`` changes one setting of one stage: it enters that stage's
    provenance, so that stage runs again, and the stages made from its outputs; a bad one is one
    line and a non-zero exit, before anything runs."""
    root = _copy(finished[0], tmp_path / "session")
    out = _json(mvrecon("session", "run", root, "--preset", "fast", "--set", "export.lods=1,0.5",
                        "--set", "export.morph_names=ict", "--json"))
    st = _status(out)
    assert st["export"] == "done" and all(st[s] == "skipped" for s in APPLICABLE if s != "export"), st
    prov = json.loads((root / "export" / "provenance.json").read_text())
    assert prov["settings"]["lods"] == [1.0, 0.5] and prov["settings"]["morph_names"] == "ict"
    asset = json.loads((root / "export" / "asset.json").read_text())
    assert [lod["fraction"] for lod in asset["lods"]] == [1.0, 0.5] and asset["morph_names"] == "ict"
    same = _json(mvrecon("session", "run", root, "--preset", "fast", "--set", "export.lods=1,0.5",
                         "--set", "export.morph_names=ict", "--json"))
    assert set(_status(same).values()) == {"skipped"}, _status(same)
    # a setting of an earlier stage: that stage and those made from it, not the ones before it
    tex = _json(mvrecon("session", "run", root, "--preset", "fast", "--set", "texture.min_cos=0.25", "--json"))
    st = _status(tex)
    assert st["texture"] == "done" and st["export"] == "done", st
    assert all(st[s] == "skipped" for s in ("ingest", "calibrate", "cues", "fit", "detail", "evaluate")), st
    assert json.loads((root / "texture" / "provenance.json").read_text())["settings"]["min_cos"] == 0.25
    logs = len(list((root / "logs").glob("run-*.log")))
    for bad, why in [("fitt.crop_size=192", "unknown stage 'fitt' (stages with settings: calibrate, refine, cues, "),
                     ("fit.crop=192", "FitConfig has no setting 'crop' (its settings: preset, mode, crop_size, "),
                     ("fit.crop_size=big", "crop_size takes an integer, got 'big'"),
                     ("export.units=km", "units takes one of 'm', 'cm', got 'km'")]:
        proc = mvrecon("session", "run", root, "--preset", "fast", "--set", bad)
        assert proc.returncode == 2 and proc.stdout == "", (bad, proc.stdout, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith(f"error: --set {bad}: {why}"), \
            proc.stderr
    assert len(list((root / "logs").glob("run-*.log"))) == logs  # nothing ran


def test_bench_run_scores_a_session_subject(finished, tmp_path):
    """``mvrecon bench run`` takes a session as a subject: its stages are up to date (nothing is
    fitted again) and its evaluate metrics make the row, beside a plain prediction/scan subject."""
    root, out = finished
    bench = tmp_path / "bench"
    sess = _copy(root, bench / "s01")
    plain = bench / "s02"
    plain.mkdir()
    shutil.copy(sorted((root / "fit").glob("detailed_*.obj"))[0], plain / "pred.obj")
    shutil.copy(root / "evaluate" / "pred_landmarks.json", plain / "pred_landmarks.json")
    shutil.copy(root / "scan" / "scan.ply", plain / "scan.ply")
    shutil.copy(root / "scan" / "landmarks.txt", plain / "scan_landmarks.txt")
    fitted_at = (sess / "fit" / "params.npz").stat().st_mtime_ns
    proc = mvrecon("bench", "run", bench, "--preset", "fast")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r.split(",")[0]: r.split(",") for r in (bench / "_results" / "results.csv").read_text().splitlines()}
    head = rows["subject"]
    headline = {name: float(rows[name][head.index("all_mm")]) for name in ("s01", "s02")}
    metrics = json.loads((root / "evaluate" / "metrics.json").read_text())
    assert headline["s01"] == pytest.approx(metrics["headline"]["all_mm"], abs=1e-4)
    # a plain prediction/scan pair has no rig frame: its headline is the robust protocol
    assert headline["s02"] == pytest.approx(metrics["robust"]["all_mm"], rel=0.02)
    # realy runs on request (bench run --realy): without it the column is empty, not stale
    assert [rows[n][head.index("strict_all_mm")] for n in ("s01", "s02")] == ["", ""]
    assert "realy" not in metrics and "REALY all: not computed (--realy) where empty." in proc.stdout
    assert (bench / "_results" / "s01" / "heatmap.png").is_file()
    assert (sess / "fit" / "params.npz").stat().st_mtime_ns == fitted_at  # not fitted again


def test_report_3d_view_renders(finished, chromium, tmp_path):
    root, _ = finished
    status = viewer_status(chromium, tmp_path, root / "report.html")
    assert status.get("status") == "ok", status
    # the exported head: every part drawn, the skin (and eyes, mouth) with the baked textures
    assert int(status["triangles"]) > 10000 and int(status["parts"]) >= 3 and int(status["textured"]) >= 1, status
    # the head fills a good part of the canvas, as a solid surface
    assert int(status["nonblank"]) > 0.05 * int(status["pixels"]) and float(status["fill"]) > 0.45, status
    html = (root / "report.html").read_text()
    assert "landmark error (px)" in html and "all (mm), headline" in html and "reprojection RMS (px)" in html


def _move_camera_in_board_shots(root: Path, name: str, shift: tuple[float, float, float]) -> None:
    """New board shots of camera ``name`` taken after it moved by ``shift`` (metres, world frame);
    the photos of the face are left as they are (the camera moved between the two)."""
    import numpy as np

    from mvrecon.calibrate.board import render_board_shot
    from mvrecon.cameras import load_rig
    from mvrecon.io import write_image
    from mvrecon.synth import load_ground_truth

    rig = load_rig(root / "rig" / "rig.json")
    cam = rig[name]
    M = cam.world_to_cam.copy()
    M[:3, 3] = -M[:3, :3] @ (cam.center + np.asarray(shift))
    moved = cam.replace(world_to_cam=M)
    rng = np.random.default_rng(3)
    shots = sorted((root / "calib").iterdir())
    assert len(shots) == len(load_ground_truth(root).board_to_world)
    n = 0
    for shot, board_to_world in zip(shots, load_ground_truth(root).board_to_world):
        if (shot / f"{name}.png").is_file():
            write_image(shot / f"{name}.png", render_board_shot(rig.board, moved, board_to_world, rng))
            n += 1
    assert n >= 4


def test_new_board_shots_run_the_cues_the_fit_and_everything_after_again(finished, tmp_path):
    """Board shots taken after cam1 moved 8 mm: the calibrated rig moves it, and every stage that
    reads the rig (the cues' model parser fits with the cameras) runs again with it."""
    import numpy as np

    from mvrecon.cameras import load_rig

    ref_root, _ = finished
    root = _copy(ref_root, tmp_path / "session")
    before = load_rig(root / "calibrate" / "rig.json")
    _move_camera_in_board_shots(root, "cam1", (0.008, 0.0, 0.0))
    out = _json(mvrecon("session", "run", root, "--preset", "fast", "--json"))
    st = _status(out)
    assert st["ingest"] == "skipped" and st["refine"] == "skipped", st
    assert [st[s] for s in ("calibrate", "cues", "fit", "detail", "texture", "export", "evaluate")] == ["done"] * 7, st
    after = load_rig(root / "calibrate" / "rig.json")

    def cam1_seen_from_cam0(rig):  # mm; the calibration picks its own world frame
        return 1000 * (rig["cam0"].world_to_cam @ np.append(rig["cam1"].center, 1.0))[:3]

    # the camera moved in the calibration (at 320x240 a calibration is good to a few mm)
    assert np.linalg.norm(cam1_seen_from_cam0(after) - cam1_seen_from_cam0(before)) > 4.0
    # the cues were made with the new rig's cameras, and their provenance holds its hash
    rec = json.loads((root / "cues" / "f000_cam1" / "landmarks.json").read_text())
    assert rec["settings"]["camera"] == json.loads(json.dumps(after["cam1"].to_dict()))
    old = json.loads((ref_root / "cues" / "provenance.json").read_text())
    new = json.loads((root / "cues" / "provenance.json").read_text())
    assert "rig" in new["inputs"] and new["inputs"]["rig"] != old["inputs"]["rig"]


def test_per_stage_commands_match_session_run(pristine, finished, tmp_path):
    """'mvrecon cues', 'fit', 'detail', 'texture' and 'export' run their stage of the pipeline with the rig in
    force (here the calibrated one, which differs from the session's own): the same provenance and
    the same asset as 'session run' on the same session (in the same place: outputs such as the
    cue records name the session's absolute paths)."""
    ref_root, _ = finished
    stages = ("calibrate", "cues", "fit", "detail", "texture", "export")
    ref = {s: json.loads((ref_root / s / "provenance.json").read_text()) for s in stages}
    glb = (ref_root / "export" / "head.glb").read_bytes()
    aside = tmp_path / "reference"
    shutil.move(ref_root, aside)
    try:
        root = _copy(pristine, ref_root)
        early = mvrecon("fit", root, "--preset", "fast")
        assert early.returncode == 2 and early.stderr.count("\n") == 1, early.stderr
        # its photos are read first (ingest), then the stage it needs is named
        assert "no cues yet" in early.stderr and (root / "ingest" / "provenance.json").is_file(), early.stderr
        assert mvrecon("session", "run", root, "--preset", "fast", "--to", "calibrate").returncode == 0
        for args in (("cues", root, "--preset", "fast"), ("fit", root, "--preset", "fast"),
                     ("detail", root, "--preset", "fast"), ("texture", root, "--size", 1024),
                     ("export", root, "--texture-size", 1024)):
            proc = mvrecon(*args)
            assert proc.returncode == 0, (args, proc.stderr[-3000:])
            assert proc.stdout.startswith(f"{args[0]:<10} done"), proc.stdout
        ours = {s: json.loads((root / s / "provenance.json").read_text()) for s in stages}
        # same settings, versions, input files and rig: the same key (up to the fit) ...
        assert [ours[s]["key"] for s in stages[:3]] == [ref[s]["key"] for s in stages[:3]]
        timed = {"fit": "summary.json", "detail": "summary.json", "texture": "summary.json"}  # they record their seconds, so the
        for s in stages:  # digests of the fit and the texture (inputs to the next stages) differ
            assert ours[s]["settings"] == ref[s]["settings"], s
            assert ({k: v for k, v in ours[s]["inputs"].items() if not k.startswith("stage:")}
                    == {k: v for k, v in ref[s]["inputs"].items() if not k.startswith("stage:")}), s
            assert ({f: h for f, h in ours[s]["outputs"].items() if f != timed.get(s)}
                    == {f: h for f, h in ref[s]["outputs"].items() if f != timed.get(s)}), s
        assert (root / "export" / "head.glb").read_bytes() == glb
        # and a session run after them has nothing left to do up to the export
        out = _json(mvrecon("session", "run", root, "--preset", "fast", "--to", "export", "--json"))
        assert {s for s, v in _status(out).items() if v == "done"} == set(), _status(out)
    finally:
        if ref_root.exists():
            shutil.move(ref_root, tmp_path / "per-stage")
        shutil.move(aside, ref_root)


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if path.is_file() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended (code {proc.returncode}) before {text!r} appeared in {path}")
        time.sleep(0.2)
    pytest.fail(f"{text!r} did not appear in {path} within {timeout} s")


def test_killed_in_the_fit_resumes_to_the_same_asset(pristine, finished, tmp_path):
    root = _copy(pristine, tmp_path / "session")
    proc = subprocess.Popen([*MVRECON, "session", "run", str(root), "--preset", "fast"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(root / "logs" / "run-001.log", "fit: running", proc)
        time.sleep(3.0)  # into the optimisation (the fit of this session takes 10 s or more)
        os.kill(proc.pid, signal.SIGSTOP)  # frozen mid-fit, still holding the session lock
        assert (root / "cues" / "provenance.json").is_file() and not (root / "fit" / "provenance.json").exists()
        busy = mvrecon("session", "run", root, "--preset", "fast")
        assert busy.returncode == 3 and "busy" in busy.stderr, busy.stderr
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (root / "fit" / "provenance.json").exists() and not (root / "export").exists()

    out = _json(mvrecon("session", "run", root, "--preset", "fast", "--json"))
    st = _status(out)
    assert [st[s] for s in ("ingest", "calibrate", "cues")] == ["skipped"] * 3, st
    assert [st[s] for s in ("fit", "detail", "texture", "export", "evaluate")] == ["done"] * 5, st
    assert not [p for p in root.rglob(".*.tmp-*")], "temporaries of the killed run were left behind"
    ref_root, _ = finished
    # the same bytes as the uninterrupted run: the fit is seeded and runs with the same threads
    assert (root / "export" / "head.glb").read_bytes() == (ref_root / "export" / "head.glb").read_bytes()


def _corrupt_image(root: Path) -> str:
    p = root / "images" / "f000" / "cam1.png"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return "cam1.png: image is truncated or corrupt"


def _missing_image(root: Path) -> str:
    (root / "images" / "f000" / "cam1.png").unlink()
    return "image of camera 'cam1' in frame 'f000' not found"


def _camera_not_in_rig(root: Path) -> str:
    rig = json.loads((root / "rig" / "rig.json").read_text())
    rig["cameras"] = [c for c in rig["cameras"] if c["name"] != "cam1"]
    (root / "rig" / "rig.json").write_text(json.dumps(rig))
    return "image for camera 'cam1', which rig"


def _unknown_rig(root: Path) -> str:
    s = json.loads((root / "session.json").read_text())
    s["rig"] = "../no-such-rig"
    (root / "session.json").write_text(json.dumps(s))
    return "rig '../no-such-rig' not found"


@pytest.mark.parametrize("damage", [_corrupt_image, _missing_image, _camera_not_in_rig, _unknown_rig],
                         ids=["corrupt-image", "missing-image", "camera-not-in-rig", "unknown-rig"])
def test_bad_input_is_one_line_and_writes_nothing(pristine, tmp_path, damage):
    root = tmp_path / "session"
    shutil.copytree(pristine, root, ignore=shutil.ignore_patterns("scan", "gt", "calib"))
    expected = damage(root)
    before = sorted(p.name for p in root.iterdir())
    proc = mvrecon("session", "run", root, "--preset", "fast")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    after = sorted(p.name for p in root.iterdir() if p.name not in ("logs", ".mvrecon.lock"))
    assert after == before  # no stage folder, no report


def test_second_run_on_a_busy_session_says_so(pristine, tmp_path):
    root = tmp_path / "session"
    shutil.copytree(pristine, root, ignore=shutil.ignore_patterns("scan", "gt", "calib"))
    with session_lock(root):
        proc = mvrecon("session", "run", root, "--preset", "fast")
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [f"error: {root.resolve()}: session is busy: another mvrecon run "
                                                f"holds its lock (pid {os.getpid()})"]


def test_session_calibrate_prints_how_far_each_camera_moved(tmp_path):
    """A textured scene (a face alone has too little texture for SIFT) through a rig whose cam2
    was knocked by 5 mm: 'session calibrate' finds it and later runs use refine/rig.json."""
    import numpy as np

    from mvrecon.calibrate.synthetic import arc_rig, render_scene, textured_scene
    from mvrecon.cameras import load_rig, save_rig
    from mvrecon.geometry import axis_angle_to_matrix
    from mvrecon.io import write_image
    from mvrecon.session import write_session_file

    rng = np.random.default_rng(5)
    truth = arc_rig(4, 640, 480, rng=rng, span_deg=50)
    planes = textured_scene(rng)
    imgs = {}
    for c in truth.cameras:
        write_image(tmp_path / "images" / f"{c.name}.png", render_scene(c, planes, rng))
        imgs[c.name] = f"images/{c.name}.png"
    cam = truth["cam2"]
    axis = np.array([0.3, 1.0, 0.2]) / np.linalg.norm([0.3, 1.0, 0.2])
    M = np.eye(4)
    M[:3, :3] = axis_angle_to_matrix(np.radians(0.3) * axis) @ cam.R
    M[:3, 3] = -M[:3, :3] @ (cam.center + np.array([0.005, 0.0, 0.0]))
    save_rig(truth.with_cameras([cam.replace(world_to_cam=M) if c.name == "cam2" else c for c in truth.cameras]),
             tmp_path / "rig" / "rig.json")
    write_session_file(tmp_path, "rig", [{"name": "f0", "images": imgs}])

    proc = mvrecon("session", "calibrate", tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [ln.split() for ln in proc.stdout.splitlines() if re.match(r"cam\d+ ", ln)]
    moved = {r[0]: float(r[1]) for r in rows}
    assert set(moved) == {"cam0", "cam1", "cam2", "cam3"}
    assert moved["cam2"] == pytest.approx(5.0, abs=1.0) and max(moved[c] for c in ("cam0", "cam1", "cam3")) < 0.5
    refined = load_rig(tmp_path / "refine" / "rig.json")
    assert np.linalg.norm(refined["cam2"].center - cam.center) < 1e-3
    out = _json(mvrecon("session", "run", tmp_path, "--to", "refine", "--json"))
    assert _status(out)["refine"] == "skipped"  # up to date, and from now on part of every run
