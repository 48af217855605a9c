"""``mvrecon eval``: score a predicted face mesh against a scan (region protocols, NoW, Chamfer).

mvrecon eval --pred MESH --pred-landmarks FILE --scan SCAN --scan-landmarks FILE --out DIR [--realy]
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
@click.option(
    "--heatmap-max-mm", type=float, default=None, help="Top of the heatmap's colour scale (default: 98th percentile)."
)
@click.option(
    "--scan-in-rig-frame",
    is_flag=True,
    help="The scan and the prediction share one frame (scanned in the rig's volume): also measure unaligned.",
)
@click.option(
    "--headline",
    type=click.Choice(("auto", "robust", "realy", "unaligned")),
    default="auto",
    show_default=True,
    help="Protocol of the headline figures (auto: unaligned for a rig-frame scan, else robust).",
)
@click.option(
    "--realy",
    "realy",
    is_flag=True,
    help="Also run the REALY-parity protocol (figures for the REALY leaderboard; several times the rest's CPU).",
)
def eval_cmd(
    pred,
    pred_landmarks,
    scan,
    scan_landmarks,
    out,
    pred_units,
    scan_units,
    heatmap_max_mm,
    scan_in_rig_frame,
    headline,
    realy,
) -> None:
    """Region errors (nose, mouth, forehead, cheek, all) by the convention-robust protocol (and by
    REALY's with --realy), NoW scan-to-mesh distance, Chamfer, F-score and normal consistency of a
    prediction against a scan, and how far the two sets of landmarks agree."""
    from ..evaluate import REALY_NOT_COMPUTED, EvalConfig, evaluate_to_dir
    from ..evaluate.report import PROTOCOL_TITLES

    cfg = EvalConfig(
        pred_units=pred_units,
        scan_units=scan_units,
        scan_in_rig_frame=scan_in_rig_frame,
        headline=headline,
        compute_realy=realy,
    )
    result, paths = evaluate_to_dir(pred, pred_landmarks, scan, scan_landmarks, out, cfg, heatmap_max_mm)

    def mm(v):
        return "n/a" if v is None else f"{v:.3f}"

    regions = " ".join(f"{n}={mm(r.mean_mm)}" for n, r in result.regions.items())
    missing = f" (missing: {', '.join(result.missing_regions)})" if result.missing_regions else ""
    others = [f"{PROTOCOL_TITLES[k]} {mm(p.all_mm)}" for k, p in result.protocols.items() if k != result.headline]
    if "realy" not in result.protocols:
        others.append(f"{PROTOCOL_TITLES['realy']} {REALY_NOT_COMPUTED}")
    click.echo(
        f"{PROTOCOL_TITLES[result.headline]} mm: {regions} all={mm(result.all_mm)}{missing} ({', '.join(others)}); "
        f"NoW median {result.now.median_mm:.3f} mm; units pred={result.pred.units} scan={result.scan.units}; "
        f"wrote {paths['metrics'].parent}"
    )
    if result.landmarks.warning:
        click.echo(f"warning: {result.landmarks.warning}")


COMMANDS = [eval_cmd]
