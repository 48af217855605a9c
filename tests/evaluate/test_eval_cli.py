"""``mvrecon eval`` and ``mvrecon bench run``: files written, one-line errors, subjects skipped."""

from __future__ import annotations

import csv
import json

import numpy as np
from click.testing import CliRunner
from conftest import save_mesh

from mvrecon.cli import main


def _eval_args(subject_dir, out) -> list[str]:
    return [
        "eval", "--pred", str(subject_dir / "pred.obj"), "--pred-landmarks", str(subject_dir / "pred_landmarks.txt"),
        "--scan", str(subject_dir / "scan.ply"), "--scan-landmarks", str(subject_dir / "scan_landmarks.txt"),
        "--out", str(out),
    ]  # fmt: skip


def test_eval_writes_metrics_heatmap_and_table(subject_dir, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, _eval_args(subject_dir, out))
    assert res.exit_code == 0, res.output
    assert "units pred=m scan=mm" in res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["headline"]["protocol"] == "robust" and m["scan"]["frame"] == "own"
    for key in ("nose_mm", "mouth_mm", "forehead_mm", "cheek_mm", "all_mm"):
        assert 0 <= m["headline"][key] < 0.1, key
        assert m["headline"][key] == m["robust"][key]
    # the realy protocol runs on request only: no number, and every report says how to get one
    assert "realy" not in m and m["not_computed"] == {"realy": "not computed (--realy)"}
    assert "REALY not computed (--realy)" in res.output
    assert "unaligned" not in m
    assert set(m["landmarks"]["gap_median_mm"]) == {"jaw", "brows", "nose", "eyes", "lips"}
    assert max(m["landmarks"]["gap_median_mm"].values()) < 0.01 and m["landmarks"]["warning"] == ""
    assert m["now"]["median_mm"] < 0.05
    assert m["chamfer"]["symmetric_mm"] < 0.1
    assert m["fscore_1mm"]["f"] > 0.99 and "fscore_2.5mm" in m
    assert m["scan"]["units"] == "mm" and m["scan"]["units_detected"] is True
    md = (out / "metrics.md").read_text()
    assert "| **all** |" in md and "| REALY | not computed (--realy) |" in md and "| robust (headline) |" in md
    assert "landmark gap after the 7-point alignment" in md and "Warning" not in md
    from mvrecon.io import read_image

    img = read_image(out / "heatmap.png")
    assert img.shape[0] > 300 and img.shape[1] > 300
    # coloured (not only the grey of the scan and the white page)
    sat = img.max(2).astype(int) - img.min(2).astype(int)
    assert (sat > 60).mean() > 0.05
    assert not list(out.glob(".*tmp*"))


def test_eval_realy_on_request(subject_dir, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, [*_eval_args(subject_dir, out), "--realy"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["headline"]["protocol"] == "robust" and "not_computed" not in m
    for key in ("nose_mm", "mouth_mm", "forehead_mm", "cheek_mm", "all_mm"):
        assert 0 <= m["realy"][key] < 0.1, key
    assert m["timings_s"]["realy"] > 0
    assert f"REALY {m['realy']['all_mm']:.3f}" in res.output and "not computed" not in res.output
    md = (out / "metrics.md").read_text()
    assert f"| REALY | {m['realy']['nose_mm']:.3f} |" in md and "not computed" not in md


def test_eval_bad_input_is_one_line(subject_dir, tmp_path):
    (subject_dir / "bad.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 -1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 2 5\n")
    res = CliRunner().invoke(main, [
        "eval", "--pred", str(subject_dir / "bad.obj"), "--pred-landmarks", str(subject_dir / "pred_landmarks.txt"),
        "--scan", str(subject_dir / "scan.ply"), "--scan-landmarks", str(subject_dir / "scan_landmarks.txt"),
        "--out", str(tmp_path / "out"),
    ])  # fmt: skip
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "bad.obj: mesh is non-manifold" in lines[0]
    assert not (tmp_path / "out").exists()


def test_eval_declared_units_off_by_1000(subject_dir, tmp_path):
    res = CliRunner().invoke(main, [
        "eval", "--pred", str(subject_dir / "pred.obj"), "--pred-landmarks", str(subject_dir / "pred_landmarks.txt"),
        "--scan", str(subject_dir / "scan.ply"), "--scan-landmarks", str(subject_dir / "scan_landmarks.txt"),
        "--scan-units", "m", "--out", str(tmp_path / "out"),
    ])  # fmt: skip
    assert res.exit_code == 2
    assert "scan_landmarks.txt: face is" in res.output and "look like mm" in res.output


def test_bench_run_table_and_csv(subject_dir, tmp_path, face_arrays):
    root = subject_dir.parent
    pv, pf, *_ = face_arrays
    lonely = root / "subject02"
    save_mesh(lonely / "pred.obj", pv, pf)  # no landmarks, no scan
    broken = root / "subject03"
    for name in ("pred.obj", "pred_landmarks.txt", "scan.ply", "scan_landmarks.txt"):
        (broken / name).parent.mkdir(parents=True, exist_ok=True)
        (broken / name).write_bytes((subject_dir / name).read_bytes())
    bad = np.loadtxt(broken / "scan_landmarks.txt")
    bad[30] = np.nan
    np.savetxt(broken / "scan_landmarks.txt", bad)
    res = CliRunner().invoke(main, ["bench", "run", str(root), "--out", str(tmp_path / "res")])
    assert res.exit_code == 0, res.output
    assert "| subject01 | ok |" in res.output
    assert "| subject02 | skipped |" in res.output and "missing pred_landmarks, scan, scan_landmarks" in res.output
    assert "| subject03 | error |" in res.output and "landmarks [30] are missing" in res.output
    rows = list(csv.DictReader((tmp_path / "res" / "results.csv").open()))
    assert [r["subject"] for r in rows] == ["subject01", "subject02", "subject03", "mean"]
    assert float(rows[0]["all_mm"]) < 0.1 and rows[3]["status"] == "1 scored of 3"
    assert float(rows[3]["nose_mm"]) == float(rows[0]["nose_mm"])
    assert (tmp_path / "res" / "subject01" / "heatmap.png").is_file()
    # no realy by default: its column empty, and the table says why
    assert rows[0]["strict_all_mm"] == "" and rows[3]["strict_all_mm"] == ""
    assert "REALY all: not computed (--realy) where empty." in res.output

    res = CliRunner().invoke(main, ["bench", "run", str(root), "--out", str(tmp_path / "res2"), "--realy"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((tmp_path / "res2" / "results.csv").open()))
    assert 0 <= float(rows[0]["strict_all_mm"]) < 0.1 and rows[3]["strict_all_mm"] == rows[0]["strict_all_mm"]
    assert "not computed" not in res.output


def test_eval_landmarks_in_another_order_stop_with_one_line(subject_dir, tmp_path):
    lm = np.loadtxt(subject_dir / "scan_landmarks.txt")
    # grouped by part: jaw, eyes, brows, nose, mouth
    np.savetxt(subject_dir / "scan_landmarks.txt", np.concatenate([lm[0:17], lm[36:48], lm[17:27], lm[27:36], lm[48:68]]))
    res = CliRunner().invoke(main, [
        "eval", "--pred", str(subject_dir / "pred.obj"), "--pred-landmarks", str(subject_dir / "pred_landmarks.txt"),
        "--scan", str(subject_dir / "scan.ply"), "--scan-landmarks", str(subject_dir / "scan_landmarks.txt"),
        "--out", str(tmp_path / "out"),
    ])  # fmt: skip
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "scan_landmarks.txt: landmarks are not in iBUG-68 order" in lines[0]
    assert not (tmp_path / "out").exists()
