"""Writers for an :class:`~mvrecon.evaluate.EvalResult`: ``metrics.json``, ``metrics.md`` (short
Markdown tables) and ``heatmap.png`` (the per-vertex error of the headline protocol painted on the
scan, seen from the front, with a colour bar). Each file is written atomically."""

from __future__ import annotations

import io as _io
from pathlib import Path

import numpy as np

from ..io import write_bytes, write_json, write_text
from ..regions import REGION_NAMES, face_frame
from .evaluate import REALY_NOT_COMPUTED, EvalConfig, EvalResult, evaluate_files


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    return f"{v:.{digits}f}"


#: How each protocol is called in the reports.
PROTOCOL_TITLES = {"robust": "robust", "realy": "REALY", "unaligned": "unaligned (rig frame)"}


def markdown_table(result: EvalResult) -> str:
    """A short Markdown report: the headline protocol's regions, every protocol side by side, the
    landmark agreement, NoW, Chamfer, F-scores, normal consistency."""
    head = PROTOCOL_TITLES[result.headline]
    lines = [
        f"# Evaluation: {Path(result.pred.name).name} vs {Path(result.scan.name).name}",
        "",
        f"Units: prediction {result.pred.units}{' (detected)' if result.pred.units_detected else ''}, "
        f"scan {result.scan.units}{' (detected)' if result.scan.units_detected else ''}; "
        f"alignment scale {result.alignment.scale:.4f}; headline protocol: {head}.",
        "",
        f"| region ({head}) | mean error (mm) | scan vertices | coverage | status |",
        "|---|---:|---:|---:|---|",
    ]
    for name in REGION_NAMES:
        r = result.regions[name]
        status = r.status if not r.note else f"{r.status}: {r.note}"
        lines.append(f"| {name} | {_fmt(r.mean_mm)} | {r.n_vertices} | {100 * r.coverage:.0f}% | {status} |")
    lines.append(f"| **all** | **{_fmt(result.all_mm)}** | | | |")
    lines += [
        "",
        "| protocol (mm) | " + " | ".join(REGION_NAMES) + " | all |",
        "|---|" + "---:|" * (len(REGION_NAMES) + 1),
    ]
    for name, p in result.protocols.items():
        cells = " | ".join(_fmt(p.regions[n].mean_mm) for n in REGION_NAMES)
        lines.append(
            f"| {PROTOCOL_TITLES[name]}{' (headline)' if name == result.headline else ''} | {cells} | {_fmt(p.all_mm)} |"
        )
    if "realy" not in result.protocols:
        lines.append(f"| {PROTOCOL_TITLES['realy']} | {REALY_NOT_COMPUTED} |" + " |" * len(REGION_NAMES))
    lm = result.landmarks
    lines += [
        "",
        "| landmark gap after the 7-point alignment (mm) | " + " | ".join(lm.groups) + " |",
        "|---|" + "---:|" * len(lm.groups),
    ]
    lines.append("| median | " + " | ".join(_fmt(m, 2) for m, _ in lm.groups.values()) + " |")
    lines.append("| max | " + " | ".join(_fmt(x, 2) for _, x in lm.groups.values()) + " |")
    if lm.warning:
        lines += ["", f"**Warning:** {lm.warning}."]
    lines += ["", "| metric | value |", "|---|---:|"]
    lines.append(
        f"| NoW median / mean / std (mm) | {_fmt(result.now.median_mm)} / {_fmt(result.now.mean_mm)} / {_fmt(result.now.std_mm)} |"
    )
    s = result.surface
    lines.append(f"| Chamfer, symmetric (mm) | {_fmt(s.chamfer_mm)} |")
    for tau, (fs, prec, rc) in s.fscore.items():
        lines.append(f"| F-score @ {tau:g} mm (precision, recall) | {_fmt(fs)} ({_fmt(prec)}, {_fmt(rc)}) |")
    lines.append(f"| normal consistency | {_fmt(s.normal_consistency, 4)} |")
    if result.missing_regions:
        lines += ["", f"**Regions without a number:** {', '.join(result.missing_regions)}; 'all' is undefined."]
    return "\n".join(lines) + "\n"


def heatmap_png(result: EvalResult, max_mm: float | None = None, dpi: int = 110) -> bytes:
    """PNG bytes: the scan seen from the front (its landmarks' face frame), faces of the four
    regions coloured by the headline protocol's error (mm, colour bar), the rest grey, missing regions hatched."""
    # an explicit Agg canvas: no pyplot global state, no display needed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.tri import Triangulation

    scan = result.scan
    frame = face_frame(scan.landmarks)
    p = frame.to_frame(scan.vertices)
    f = scan.triangles
    a, b, c = p[f[:, 0]], p[f[:, 1]], p[f[:, 2]]
    facing = np.cross(b - a, c - a)[:, 2] > 0
    front = facing & (p[f, 2].mean(1) > -1.0)
    f = f[front]
    # painter's order: far faces first, so the nose is drawn over the cheeks behind it
    f = f[np.argsort(p[f, 2].mean(1))]
    err = result.vertex_errors_mm()
    face_err = err[f].mean(1)
    vals = face_err[np.isfinite(face_err)]
    vmax = max_mm if max_mm is not None else (max(float(np.percentile(vals, 98)), 0.5) if len(vals) else 1.0)

    fig = Figure(figsize=(5.6, 6.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    tri = Triangulation(p[:, 0], p[:, 1], f)
    ax.tripcolor(tri, facecolors=np.zeros(len(f)), cmap=ListedColormap(["#d8d8d8"]), edgecolors="none")
    shown = np.isfinite(face_err)
    if shown.any():
        tri2 = Triangulation(p[:, 0], p[:, 1], f[shown])
        pc = ax.tripcolor(tri2, facecolors=face_err[shown], cmap="inferno_r", vmin=0.0, vmax=vmax, edgecolors="none")
        cb = fig.colorbar(pc, ax=ax, shrink=0.8)
        cb.set_label(f"{PROTOCOL_TITLES[result.headline]} error (mm)")
    for name in result.missing_regions:
        ids = result.regions[name].vertex_ids
        if len(ids):
            ax.scatter(p[ids, 0], p[ids, 1], s=0.3, c="#3060ff", alpha=0.3, rasterized=True)
    lm = frame.to_frame(scan.landmarks)
    ax.plot(lm[:, 0], lm[:, 1], "+", color="#00a0a0", ms=4, mew=0.8)
    ax.set_aspect("equal")
    ax.set_axis_off()
    parts = [f"{n} {_fmt(result.regions[n].mean_mm, 2)}" for n in REGION_NAMES]
    title = f"{PROTOCOL_TITLES[result.headline]} (mm): " + ", ".join(parts) + f"\nall {_fmt(result.all_mm, 3)}"
    if result.missing_regions:
        title += f"   missing: {', '.join(result.missing_regions)} (blue)"
    ax.set_title(title, fontsize=8)
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def write_outputs(result: EvalResult, out_dir: str | Path, heatmap_max_mm: float | None = None) -> dict[str, Path]:
    """Write ``metrics.json``, ``metrics.md`` and ``heatmap.png`` into ``out_dir``; their paths."""
    out = Path(out_dir)
    paths = {
        "metrics": write_json(out / "metrics.json", result.to_dict()),
        "markdown": write_text(out / "metrics.md", markdown_table(result)),
        "heatmap": write_bytes(out / "heatmap.png", heatmap_png(result, heatmap_max_mm)),
    }
    return paths


def evaluate_to_dir(
    pred_mesh: str | Path,
    pred_landmarks: str | Path,
    scan_mesh: str | Path,
    scan_landmarks: str | Path,
    out_dir: str | Path,
    cfg: EvalConfig = EvalConfig(),
    heatmap_max_mm: float | None = None,
) -> tuple[EvalResult, dict[str, Path]]:
    """Read, evaluate and write the outputs into ``out_dir`` (what ``mvrecon eval``, the benchmark
    runner and a session's evaluate stage all do); the result and the written paths."""
    result = evaluate_files(pred_mesh, pred_landmarks, scan_mesh, scan_landmarks, cfg)
    return result, write_outputs(result, out_dir, heatmap_max_mm)
