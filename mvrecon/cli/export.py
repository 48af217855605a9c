"""``mvrecon texture SESSION`` and ``mvrecon export SESSION``: baked textures and the game-ready head."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..export.config import Expression, Format, MorphNames, Units


def _lods(ctx, param, value: str) -> tuple[float, ...]:
    try:
        out = tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated fractions such as 1,0.25,0.05, got {value!r}") from None
    if not out or any(not (0 < f <= 1) for f in out):
        raise click.BadParameter(f"fractions must lie in (0, 1], got {value!r}")
    return out


@click.command("texture")
@click.argument("session", type=click.Path(path_type=Path))
@click.option(
    "--size",
    type=click.IntRange(16, 16384),
    default=2048,
    show_default=True,
    help="Skin atlas height in texels (its width is twice that).",
)
def texture_cmd(session: Path, size: int) -> None:
    """Bake SESSION's textures from the fit and the photos; writes SESSION/texture/.

    Runs the texture stage of the pipeline ('mvrecon session run SESSION --from texture --to
    texture'), with the rig in force (refined over calibrated over the session's own); after the
    detail stage when it never ran on this session."""
    from ..config import pipeline_config
    from ..provenance import read_provenance
    from ..texture.config import TextureConfig
    from ._stage import run_stage

    start = "texture" if read_provenance(session.resolve() / "detail") is not None else "detail"
    run_stage(session, "texture", pipeline_config("default", texture=TextureConfig(size=size)), start=start)


@click.command("export")
@click.argument("session", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "formats",
    type=click.Choice(["glb", "obj", "usdz"]),
    multiple=True,
    default=("glb",),
    show_default=True,
    help="Output format (repeat for several); usdz: LOD 0 for Apple AR Quick Look.",
)
@click.option(
    "--lod",
    "lods",
    default="1,0.25,0.05",
    show_default=True,
    callback=_lods,
    help="Triangle fractions of the levels of detail.",
)
@click.option(
    "--texture-size",
    type=click.IntRange(16, 16384),
    default=2048,
    show_default=True,
    help="Skin atlas height in texels (re-bakes when the texture stage used another size).",
)
@click.option("--no-morphs", is_flag=True, help="Leave out the expression morph targets.")
@click.option(
    "--morph-names",
    type=click.Choice(["arkit", "ict"]),
    default="arkit",
    show_default=True,
    help="Morph targets as Apple ARKit's 52 blendshapes or the model's own.",
)
@click.option(
    "--expression",
    type=click.Choice(["clip", "default"]),
    default="clip",
    show_default=True,
    help="Captured expression as an animation only (neutral rest pose) or also as default weights.",
)
@click.option("--no-skeleton", is_flag=True, help="Leave out the joints and skin weights.")
@click.option("--compress", is_flag=True, help="EXT_meshopt_compression (quantised geometry, JPEG albedo).")
@click.option(
    "--units",
    type=click.Choice(["m", "cm"]),
    default="m",
    show_default=True,
    help="Length unit of the files (cm for Unreal).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Also copy the exported files to this folder (replaced as a whole).",
)
def export_cmd(
    session: Path,
    formats: tuple[Format, ...],
    lods: tuple[float, ...],
    texture_size: int,
    no_morphs: bool,
    morph_names: MorphNames,
    expression: Expression,
    no_skeleton: bool,
    compress: bool,
    units: Units,
    out_dir: Path | None,
) -> None:
    """Export SESSION's fitted head as a textured asset with blendshapes; writes SESSION/export/.

    Runs the export stage of the pipeline ('mvrecon session run SESSION --from export --to
    export'), after the texture stage when its textures are of another size (and the detail stage
    when it never ran); --out copies the
    result there as well."""
    from ..config import pipeline_config
    from ..export.config import ExportConfig
    from ..io import atomic_dir, write_bytes
    from ..provenance import PROVENANCE_FILE, read_provenance
    from ..texture.config import TextureConfig
    from ._stage import run_stage

    tex = TextureConfig(size=texture_size)
    cfg = ExportConfig(
        formats=tuple(formats),
        lods=lods,
        texture_size=texture_size,
        morph_targets=not no_morphs,
        morph_names=morph_names,
        expression=expression,
        skeleton=not no_skeleton,
        units=units,
        compress=compress,
        texture=tex,
    )
    baked = read_provenance(session.resolve() / "texture")
    start = "export" if baked is not None and baked.settings.get("size") == texture_size else "texture"
    if start == "texture" and read_provenance(session.resolve() / "detail") is None:
        start = "detail"  # a session fitted before the detail stage existed
    res = run_stage(session, "export", pipeline_config("default", texture=tex, export=cfg), start=start)
    if out_dir is not None:
        made = res.root / "export"
        with atomic_dir(out_dir) as tmp:
            for f in sorted(made.iterdir()):
                if f.is_file() and f.name != PROVENANCE_FILE:
                    write_bytes(tmp / f.name, f.read_bytes())
        click.echo(f"copied to {out_dir}")


COMMANDS = [texture_cmd, export_cmd]
