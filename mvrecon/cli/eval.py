"""``mvrecon eval``: score a predicted face mesh against a scan (REALY regions, NoW, Chamfer).

    mvrecon eval --pred MESH --pred-landmarks FILE --scan SCAN --scan-landmarks FILE --out DIR
"""

from __future__ import annotations

from pathlib import Path

import click

UNITS = ("auto", "m", "cm", "mm")


@click.command("eval")
@click.option("--pred", "pred", required=True, type=click.Path(path_type=Path), help="Predicted mesh (OBJ/PLY/GLB).")
@click.option("--pred-landmarks", required=True, type=click.Path(path_type=Path),
              help="Its 68 landmarks: .txt/.npy/.json points (68x3) or 68 vertex indices.")  # fmt: skip
@click.option("--scan", "scan", required=True, type=click.Path(path_type=Path), help="Ground-truth scan (OBJ/PLY).")
@click.option("--scan-landmarks", required=True, type=click.Path(path_type=Path), help="The scan's 68 landmarks.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Output folder: metrics.json, metrics.md, heatmap.png.")  # fmt: skip
@click.option("--pred-units", type=click.Choice(UNITS), default="auto", show_default=True,
              help="Units of the prediction; auto tells them from the face's width.")  # fmt: skip
@click.option("--scan-units", type=click.Choice(UNITS), default="auto", show_default=True, help="Units of the scan.")
@click.option("--heatmap-max-mm", type=float, default=None, help="Top of the heatmap's colour scale (default: 98th percentile).")
def eval_cmd(pred, pred_landmarks, scan, scan_landmarks, out, pred_units, scan_units, heatmap_max_mm) -> None:
    """REALY-style region errors (nose, mouth, forehead, cheek, all), NoW scan-to-mesh distance,
    Chamfer, F-score and normal consistency of a prediction against a scan."""
    from ..evaluate import EvalConfig, evaluate_to_dir

    cfg = EvalConfig(pred_units=pred_units, scan_units=scan_units)
    result, paths = evaluate_to_dir(pred, pred_landmarks, scan, scan_landmarks, out, cfg, heatmap_max_mm)

    def mm(v):
        return "n/a" if v is None else f"{v:.3f}"

    regions = " ".join(f"{n}={mm(r.mean_mm)}" for n, r in result.regions.items())
    missing = f" (missing: {', '.join(result.missing_regions)})" if result.missing_regions else ""
    click.echo(
        f"REALY mm: {regions} all={mm(result.realy_all_mm)}{missing}; NoW median {result.now.median_mm:.3f} mm; "
        f"units pred={result.pred.units} scan={result.scan.units}; wrote {paths['metrics'].parent}"
    )


COMMANDS = [eval_cmd]
