"""Benchmark runner: every subject folder of a directory, one table and one CSV.

Layout of a benchmark directory (one folder per subject; names are free)::

    DIR/
      subject01/
        pred.obj | pred.ply | pred.glb          the reconstruction
        pred_landmarks.txt | .npy | .json       its 68 landmarks (points or vertex indices)
        scan.obj | scan.ply                     the ground-truth scan
        scan_landmarks.txt | .npy | .json       the scan's 68 landmarks
      subject02/ ...

A subject folder may instead be an mvrecon session (it holds ``session.json`` with a ``scan``):
it is run through the pipeline up to its evaluate stage first (stages already up to date are
skipped), and its ``evaluate/metrics.json`` gives the row.

A folder missing one of the four files is listed as skipped with the reason; a subject whose
files are bad (non-manifold scan, units off by 1000x, ...) is listed with its error; neither stops
the run. Outputs go to ``OUT`` (default ``DIR/_results``): per subject ``OUT/<subject>/`` with
``metrics.json``, ``metrics.md`` and ``heatmap.png``, and ``OUT/results.csv`` and
``OUT/results.md`` with one row per subject (the headline protocol's regions, and the
REALY "all" beside them when ``EvalConfig.compute_realy``, ``--realy``; empty otherwise) and a final row of means over the scored subjects (REALY style: each
region averaged over subjects, "all" the mean of the four region averages).
"""

from __future__ import annotations

import csv
import dataclasses
import io as _io
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MvreconError
from ..io import read_json, write_bytes, write_text
from ..regions import REGION_NAMES
from .evaluate import REALY_NOT_COMPUTED, EvalConfig
from .meshes import LANDMARK_SUFFIXES
from .report import evaluate_to_dir

log = logging.getLogger("mvrecon.evaluate")

PRED_MESH_SUFFIXES = (".obj", ".ply", ".glb")
SCAN_MESH_SUFFIXES = (".obj", ".ply")
COLUMNS = (
    "subject", "status", "protocol", *[f"{r}_mm" for r in REGION_NAMES], "all_mm", "strict_all_mm", "now_median_mm", "now_mean_mm",
    "now_std_mm", "chamfer_mm", "fscore_1mm", "fscore_2.5mm", "normal_consistency", "seconds", "note",
)  # fmt: skip


@dataclass(frozen=True)
class Subject:
    """One subject folder: ``files`` maps pred/pred_landmarks/scan/scan_landmarks to paths;
    ``missing`` names the files not found."""

    name: str
    folder: Path
    files: dict[str, Path] = field(default_factory=dict)
    missing: tuple[str, ...] = ()


def _find(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    for suf in suffixes:
        p = folder / f"{stem}{suf}"
        if p.is_file():
            return p
    return None


def find_subjects(root: str | Path) -> list[Subject]:
    """The subject folders of a benchmark directory, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("benchmark directory not found", root)
    subjects = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        if (folder / "session.json").is_file():
            subjects.append(Subject(folder.name, folder, {"session": folder / "session.json"}))
            continue
        want = {
            "pred": _find(folder, "pred", PRED_MESH_SUFFIXES),
            "pred_landmarks": _find(folder, "pred_landmarks", LANDMARK_SUFFIXES),
            "scan": _find(folder, "scan", SCAN_MESH_SUFFIXES),
            "scan_landmarks": _find(folder, "scan_landmarks", LANDMARK_SUFFIXES),
        }
        files = {k: v for k, v in want.items() if v is not None}
        missing = tuple(k for k, v in want.items() if v is None)
        subjects.append(Subject(folder.name, folder, files, missing))
    return subjects


@dataclass(frozen=True)
class BenchResult:
    """Rows (one dict per subject, keys :data:`COLUMNS`), the mean row, and output paths."""

    rows: list[dict]
    mean: dict
    csv_path: Path
    table_path: Path


def _row(name: str, status: str, note: str = "", seconds: float = float("nan")) -> dict:
    row: dict[str, Any] = {c: float("nan") for c in COLUMNS}
    row.update(subject=name, status=status, protocol="", note=note, seconds=seconds)
    return row


#: Runs session subjects through their evaluate stage (settings given), all at once: rows with
#: ``status`` and ``error`` by resolved session path (:func:`mvrecon.batch.run_batch`'s rows; the
#: command line passes one, so the evaluation never imports the pipeline).
SessionRunner = Callable[[list[Path], EvalConfig], Mapping[str, Any]]


def run_bench(
    root: str | Path,
    out_dir: str | Path | None = None,
    cfg: EvalConfig = EvalConfig(),
    run_sessions: SessionRunner | None = None,
) -> BenchResult:
    """Evaluate every subject of ``root`` (session subjects are run through their evaluate stage
    first by ``run_sessions``, whose evaluate stage follows ``cfg.compute_realy``; units and the
    rest of ``cfg`` are for the file subjects: a session knows its own; without ``run_sessions``
    a session subject is an error row); write per-subject outputs, ``results.csv`` and
    ``results.md``."""
    root = Path(root)
    out = Path(out_dir) if out_dir is not None else root / "_results"
    subjects = find_subjects(root)
    if not subjects:
        raise InputError(
            "no subject folders (expected DIR/<subject>/pred.obj, pred_landmarks.txt, scan.ply, scan_landmarks.txt)",
            root,
        )
    session_eval = dataclasses.replace(EvalConfig(), compute_realy=cfg.compute_realy)
    sessions = [s.folder for s in subjects if "session" in s.files]
    ran = run_sessions(sessions, session_eval) if sessions and run_sessions is not None else {}
    rows = []
    for s in subjects:
        if s.missing:
            rows.append(_row(s.name, "skipped", f"missing {', '.join(s.missing)}"))
            log.warning("%s: skipped, missing %s", s.folder, ", ".join(s.missing))
            continue
        t = time.perf_counter()
        try:
            if "session" in s.files:
                if str(s.folder.resolve()) not in ran:
                    raise MvreconError(
                        "a session subject: run the benchmark with 'mvrecon bench run' (which runs its pipeline first)"
                    )
                if ran[str(s.folder.resolve())].status == "failed":
                    raise MvreconError(ran[str(s.folder.resolve())].error)
                metrics = _session_metrics(s.folder, out / s.name)
                if metrics is None:
                    rows.append(_row(s.name, "skipped", "session has no scan", time.perf_counter() - t))
                    continue
            else:
                res, _ = evaluate_to_dir(
                    s.files["pred"],
                    s.files["pred_landmarks"],
                    s.files["scan"],
                    s.files["scan_landmarks"],
                    out / s.name,
                    cfg,
                )
                metrics = res.to_dict()
        except MvreconError as e:
            rows.append(_row(s.name, "error", str(e), time.perf_counter() - t))
            log.warning("%s: %s", s.name, e)
            continue
        rows.append(_metrics_row(s.name, metrics, time.perf_counter() - t))

    mean = _mean_row(rows)
    csv_path = write_text(out / "results.csv", _csv(rows + [mean]))
    table_path = write_text(out / "results.md", format_table(rows, mean))
    return BenchResult(rows, mean, csv_path, table_path)


def _session_metrics(folder: Path, out: Path) -> dict | None:
    """A session's evaluate metrics (its evaluate stage's outputs, copied to ``out``), None without a scan."""
    from .stagedef import STAGE as EVALUATE

    ev = folder / EVALUATE.name
    metrics = EVALUATE.outputs.path(ev, "metrics")
    if not metrics.is_file():
        return None
    for role in ("metrics", "table", "heatmap"):
        f = EVALUATE.outputs.path(ev, role)
        if f.is_file():
            write_bytes(out / f.name, f.read_bytes())
    return read_json(metrics)


def _metrics_row(name: str, m: dict, seconds: float) -> dict:
    """A table row from the content of a ``metrics.json``."""

    def num(v) -> float:
        return float("nan") if v is None else float(v)

    # the headline protocol's figures (metrics.json before the robust protocol: "realy")
    head = m.get("headline") or m["realy"]
    detail = m.get(head.get("protocol", "realy"), head)
    missing = head.get("missing_regions") or []
    row = _row(name, "ok" if not missing else "partial", seconds=seconds)
    for r in REGION_NAMES:
        row[f"{r}_mm"] = num(head.get(f"{r}_mm"))
    row["all_mm"] = num(head.get("all_mm"))
    row["protocol"] = head.get("protocol", "realy")
    strict = m.get("realy") or m.get("realy_strict")
    row["strict_all_mm"] = num((strict or {}).get("all_mm"))
    row["_realy_computed"] = strict is not None  # for the table's note; not a CSV column
    row.update(
        now_median_mm=num(m["now"]["median_mm"]),
        now_mean_mm=num(m["now"]["mean_mm"]),
        now_std_mm=num(m["now"]["std_mm"]),
        chamfer_mm=num(m["chamfer"]["symmetric_mm"]),
        normal_consistency=num(m["normal_consistency"]),
    )
    row["fscore_1mm"] = num(m.get("fscore_1mm", {}).get("f"))
    row["fscore_2.5mm"] = num(m.get("fscore_2.5mm", {}).get("f"))
    if missing:
        row["note"] = "; ".join(f"{r}: {detail['regions'][r]['note']}" for r in missing)
    warning = (m.get("landmarks") or {}).get("warning")
    if warning:
        row["note"] = "; ".join(x for x in (row["note"], warning) if x)
    return row


def _mean_row(rows: list[dict]) -> dict:
    scored = [r for r in rows if r["status"] in ("ok", "partial")]
    mean = _row("mean", f"{len(scored)} scored of {len(rows)}")
    for c in COLUMNS[3:-1]:
        vals = np.array([r[c] for r in scored], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        mean[c] = float(vals.mean()) if len(vals) else float("nan")
    regions = [mean[f"{r}_mm"] for r in REGION_NAMES]
    mean["all_mm"] = float(np.mean(regions)) if all(np.isfinite(regions)) else float("nan")
    mean["protocol"] = "/".join(sorted({r["protocol"] for r in scored}))
    if scored and not any(r.get("_realy_computed") for r in scored):
        mean["_realy_computed"] = False
    return mean


def _csv(rows: list[dict]) -> str:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(
            {
                k: (f"{v:.4f}" if isinstance(v, float) and np.isfinite(v) else ("" if isinstance(v, float) else v))
                for k, v in r.items()
            }
        )
    return buf.getvalue()


def format_table(rows: list[dict], mean: dict) -> str:
    """Markdown table: per subject the headline's regions, all, REALY all (empty when not
    computed), NoW median, Chamfer, F@2.5mm, time."""

    def f(v: float, d: int = 3) -> str:
        return f"{v:.{d}f}" if isinstance(v, float) and np.isfinite(v) else "-"

    def strict(r: dict) -> str:
        return "" if r.get("_realy_computed") is False else f(r["strict_all_mm"])

    head = (
        "| subject | status | protocol | nose | mouth | forehead | cheek | all | REALY all | NoW median | "
        "Chamfer | F@2.5mm | s | note |"
    )
    lines = [head, "|" + "---|" * 14]
    for r in rows + [mean]:
        lines.append(
            f"| {r['subject']} | {r['status']} | {r['protocol']} | {f(r['nose_mm'])} | {f(r['mouth_mm'])} | "
            f"{f(r['forehead_mm'])} | {f(r['cheek_mm'])} | {f(r['all_mm'])} | {strict(r)} | "
            f"{f(r['now_median_mm'])} | {f(r['chamfer_mm'])} | {f(r['fscore_2.5mm'])} | {f(r['seconds'], 1)} | {r['note']} |"
        )
    text = (
        "Region errors in mm (mean distance, scan to prediction) by each subject's headline protocol\n\n"
        + "\n".join(lines)
        + "\n"
    )
    if any(r.get("_realy_computed") is False for r in rows):
        text += f"\nREALY all: {REALY_NOT_COMPUTED} where empty.\n"
    return text
