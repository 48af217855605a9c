"""``mvrecon synth``: synthetic rig sessions with ground truth."""

from __future__ import annotations

from pathlib import Path

import click


def _size(value: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WxH (e.g. 1024x768), got {value!r}") from None
    return w, h


@click.group("synth")
def synth() -> None:
    """Synthetic sessions with known ground truth (for tests and benchmarks)."""


@synth.command("session")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--cameras", default=4, show_default=True, help="Cameras on the arc in front of the face.")
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same files).")
@click.option("--size", default="1024x768", show_default=True, help="Image size WxH in pixels.")
@click.option("--frames", default=1, show_default=True, help="Capture instants (one expression each).")
@click.option("--no-board", is_flag=True, help="Skip the ChArUco calibration shots.")
@click.option("--calib-shots", default=12, show_default=True, help="Board poses (each shot by every camera).")
@click.option("--expression-scale", default=1.0, show_default=True, help="Multiplier of the expression weights.")
@click.option("--no-distortion", is_flag=True, help="Cameras without lens distortion.")
@click.option("--model", default="ict", show_default=True, help="Face model name or .npz path.")
@click.option(
    "--realism",
    default="clean",
    show_default=True,
    help="clean, full, full-FACTOR (all but one) or a comma list of factors: head, skin, hair, camera, "
    "calib, backdrop, annotator (see mvrecon.synth.realism).",
)
@click.option(
    "--head-mesh",
    type=click.Path(dir_okay=False),
    default=None,
    help="A head mesh (.glb/.ply/.obj) to register the model to and render instead of a random head.",
)
@click.option("--deform-mm", default=5.0, show_default=True, help="Peak of the head factor's random deformation (mm).")
@click.option(
    "--calib-error",
    default="1.0,0.1",
    show_default=True,
    help="The calib factor's error of the shipped rig per camera: MM,DEG.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing session folder.")
def session(
    out: str,
    cameras: int,
    seed: int,
    size: str,
    frames: int,
    no_board: bool,
    calib_shots: int,
    expression_scale: float,
    no_distortion: bool,
    model: str,
    realism: str,
    head_mesh: str | None,
    deform_mm: float,
    calib_error: str,
    overwrite: bool,
) -> None:
    """Render a synthetic session with ground truth into OUT."""
    from ..synth import SynthConfig, make_session
    from ..synth.realism import Realism

    w, h = _size(size)
    try:
        mm, deg = (float(x) for x in calib_error.split(","))
    except ValueError:
        raise click.BadParameter(f"expected MM,DEG (e.g. 1.0,0.1), got {calib_error!r}") from None
    real = Realism.parse(realism).replace(deform_mm=deform_mm, calib_mm=mm, calib_deg=deg)
    cfg = SynthConfig(
        seed=seed,
        cameras=cameras,
        width=w,
        height=h,
        frames=frames,
        board=not no_board,
        calib_shots=calib_shots,
        expression_scale=expression_scale,
        distortion=not no_distortion,
        model=model,
        realism=real,
        head_mesh=head_mesh,
    )
    res = make_session(out, cfg, overwrite=overwrite)
    total = sum(res.timings.values())
    click.echo(
        f"{res.root}: {res.n_views} images ({len(res.rig)} cameras x {len(res.frames)} frames), "
        f"{res.n_calib_images} board shots, scan {res.scan_vertices} vertices, realism {real.name}, {total:.1f} s"
    )


@synth.command("example-rig")
@click.argument("rig_dir", metavar="RIG", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--photos",
    "photos_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the photos: <frame>/<camera>.jpg.",
)
@click.option("--cameras", default=4, show_default=True, help="Cameras on the arc in front of the face.")
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same files).")
@click.option("--size", default="640x480", show_default=True, help="Image size WxH in pixels.")
@click.option("--frames", default=1, show_default=True, help="Capture instants.")
@click.option("--calib-shots", default=12, show_default=True, help="Board poses (each shot by every camera).")
@click.option("--overwrite", is_flag=True, help="Replace RIG and the photo folder when they exist.")
def example_rig(
    rig_dir: Path, photos_dir: Path, cameras: int, seed: int, size: str, frames: int, calib_shots: int, overwrite: bool
) -> None:
    """An example studio rig folder RIG (rig.json with the lenses only, board shots in calib/) and
    a capture with it as JPEGs in --photos, as a studio has them (see mvrecon.synth.example)."""
    from ..synth import SynthConfig
    from ..synth.example import make_example_rig

    w, h = _size(size)
    res = make_example_rig(
        rig_dir,
        photos_dir,
        SynthConfig(seed=seed, cameras=cameras, width=w, height=h, frames=frames, calib_shots=calib_shots),
        overwrite,
    )
    click.echo(
        f"{res.rig_dir}: {len(res.rig)} cameras, {res.n_board_shots} board shots in calib/; "
        f"{res.n_photos} photos in {res.photos_dir}"
    )


COMMANDS = [synth]
