"""``mvrecon rig ...``: calibrate a rig (ChArUco or SfM), import/export camera formats, show it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ..errors import InputError, MvreconError


@click.group("rig")
def rig_group() -> None:
    """Rig calibration, import/export and inspection."""


def _board_from_options(rig, squares, square_mm, marker_mm, dictionary, path):
    from ..cameras import Board

    if squares is None and square_mm is None and marker_mm is None and dictionary is None:
        return rig.board
    base = rig.board
    if base is None and (squares is None or square_mm is None or marker_mm is None):
        raise InputError("the rig has no 'board': give --board-squares, --square-mm and --marker-mm", path)
    sx, sy = squares if squares is not None else (base.squares_x, base.squares_y)
    return Board(
        squares_x=int(sx),
        squares_y=int(sy),
        square_length=square_mm / 1000.0 if square_mm is not None else base.square_length,
        marker_length=marker_mm / 1000.0 if marker_mm is not None else base.marker_length,
        dictionary=dictionary or (base.dictionary if base else "DICT_5X5_100"),
        legacy_pattern=base.legacy_pattern if base else False,
    )


@rig_group.command("calibrate")
@click.argument("rig_path", metavar="RIG", type=click.Path(path_type=Path))
@click.option(
    "--charuco",
    "charuco_dir",
    type=click.Path(path_type=Path),
    help="ChArUco shots: DIR/<shot>/<camera>.png (one folder per board position).",
)
@click.option(
    "--sfm", "sfm_dir", type=click.Path(path_type=Path), help="Textured-scene photos for SfM: DIR/<camera>.png."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the calibrated rig.json (default: over RIG).",
)
@click.option(
    "--dist-model",
    type=click.Choice(["k1k2p1p2k3", "k1k2p1p2", "k1k2", "none"]),
    default="k1k2p1p2k3",
    show_default=True,
    help="Distortion coefficients to estimate (ChArUco).",
)
@click.option(
    "--world-frame",
    type=click.Choice(["rig", "board"]),
    default="rig",
    show_default=True,
    help="rig: origin where the cameras converge, +Y up; board: the first shot's board.",
)
@click.option("--board-squares", nargs=2, type=int, default=None, help="Board squares X Y (overrides the rig's board).")
@click.option("--square-mm", type=float, default=None, help="Board square side, mm.")
@click.option("--marker-mm", type=float, default=None, help="Board marker side, mm.")
@click.option("--dictionary", default=None, help="ArUco dictionary, e.g. DICT_5X5_100.")
@click.option(
    "--scale-distance",
    nargs=3,
    type=(str, str, float),
    default=None,
    help="SfM: CAM_A CAM_B METRES between their centres, for the metric scale.",
)
@click.option("--free-intrinsics", is_flag=True, help="SfM: refine the rig's intrinsics instead of holding them.")
def calibrate_cmd(
    rig_path,
    charuco_dir,
    sfm_dir,
    out,
    dist_model,
    world_frame,
    board_squares,
    square_mm,
    marker_mm,
    dictionary,
    scale_distance,
    free_intrinsics,
) -> None:
    """Calibrate RIG (its camera names and image sizes) from ChArUco shots or an SfM capture;
    a rig folder's own calib/ (RIG/calib/<shot>/<camera>.png) when neither is given.

    Writes the calibrated rig.json and calibration.json (report) beside it; nothing is written
    when calibration fails."""
    from ..cameras import load_rig, rig_json_path, save_rig
    from ..io import write_json

    if charuco_dir is None and sfm_dir is None and Path(rig_path).is_dir():
        if not (Path(rig_path) / "calib").is_dir():
            raise InputError("the rig folder has no calib/ with board shots: give --charuco DIR or --sfm DIR", rig_path)
        charuco_dir = Path(rig_path) / "calib"
    if (charuco_dir is None) == (sfm_dir is None):
        raise click.UsageError("give exactly one of --charuco DIR or --sfm DIR")
    rig = load_rig(rig_path)
    out_path = rig_json_path(out) if out is not None else rig_json_path(rig_path)
    if out_path.suffix != ".json":
        out_path = out_path / "rig.json"
    board = _board_from_options(rig, board_squares, square_mm, marker_mm, dictionary, rig_json_path(rig_path))
    if charuco_dir is not None:
        from ..calibrate.charuco import CharucoConfig, calibrate_charuco, format_report

        charuco_cfg = CharucoConfig(dist_model=dist_model, world_frame=world_frame)
        charuco_result = calibrate_charuco(rig, charuco_dir, charuco_cfg, board=board)
        report = charuco_result.report() | {"config": dataclasses.asdict(charuco_cfg), "shots": str(charuco_dir)}
        click.echo(format_report(charuco_result))
        new_rig = charuco_result.rig
    else:
        from ..calibrate.sfm import SfmConfig, calibrate_sfm

        sfm_cfg = SfmConfig(
            fix_intrinsics=not free_intrinsics, scale_distance=tuple(scale_distance) if scale_distance else None
        )
        sfm_result = calibrate_sfm(rig, sfm_dir, sfm_cfg, board=board)
        report = {
            "format": "mvrecon-calibration/1",
            "method": "sfm",
            "rms_px": sfm_result.rms_px,
            "n_points": sfm_result.n_points,
            "scale": sfm_result.scale,
            "scale_source": sfm_result.scale_source,
            "config": dataclasses.asdict(sfm_cfg),
            "images": str(sfm_dir),
        }
        click.echo(
            f"SfM: {len(new_rig := sfm_result.rig)} cameras, {sfm_result.n_points} points, RMS {sfm_result.rms_px:.3f} px, "
            f"scale from {sfm_result.scale_source}"
        )
    write_json(out_path.parent / "calibration.json", report)
    save_rig(new_rig, out_path)
    click.echo(f"wrote {out_path}")


@rig_group.command("import")
@click.argument("source", metavar="FILE_OR_DIR", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Rig folder or rig.json to write.")
@click.option("--name", default=None, help="Rig name (default: from the source).")
@click.option(
    "--image-size",
    default=None,
    metavar="WxH",
    help="RealityCapture XMP: the image size, when the images are not beside the .xmp files.",
)
def import_cmd(source, out, name, image_size) -> None:
    """Import a COLMAP model (text/binary), OpenCV YAML, nerfstudio transforms.json, Agisoft
    Metashape camera XML or a folder of RealityCapture XMP sidecars as a rig."""
    from ..calibrate.formats import import_rig
    from ..cameras import save_rig

    size = None
    if image_size is not None:
        try:
            w, h = (int(x) for x in image_size.lower().split("x"))
        except ValueError:
            raise click.BadParameter(f"expected WxH (e.g. 6000x4000), got {image_size!r}") from None
        size = (w, h)
    rig = import_rig(source, size)
    if name:
        rig = rig.replace(name=name)
    p = save_rig(rig, out)
    click.echo(f"imported {len(rig)} cameras into {p}")


@rig_group.command("export")
@click.argument("rig_path", metavar="RIG", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(["colmap", "colmap-bin", "opencv", "nerfstudio", "metashape", "realitycapture"]),
    help="colmap / colmap-bin: a model folder; opencv: a .yaml file; nerfstudio: transforms.json; "
    "metashape: a camera .xml; realitycapture: a folder of <camera>.xmp.",
)
def export_cmd(rig_path, out, fmt) -> None:
    """Export RIG's cameras to OUT in another format."""
    from ..calibrate.formats import export_rig
    from ..cameras import load_rig

    rig = load_rig(rig_path)
    try:
        p = export_rig(rig, fmt, out)
    except ValueError as e:
        raise MvreconError(f"cannot export as {fmt}: {e}", rig_path) from None
    click.echo(f"wrote {p}")


@rig_group.command("show")
@click.argument("rig_path", metavar="RIG", type=click.Path(path_type=Path))
@click.option("--png", type=click.Path(path_type=Path), default=None, help="Write a picture of the layout.")
def show_cmd(rig_path, png) -> None:
    """Print cameras, baselines (mm) and the last calibration errors of RIG."""
    from ..calibrate.show import describe_rig, plot_rig
    from ..cameras import load_rig

    rig = load_rig(rig_path)
    click.echo(describe_rig(rig))
    if png is not None:
        click.echo(f"wrote {plot_rig(rig, png)}")


COMMANDS = [rig_group]
