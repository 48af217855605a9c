"""``mvrecon texture SESSION`` and ``mvrecon export SESSION``: baked textures and the game-ready head."""

from __future__ import annotations

from pathlib import Path

import click


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
@click.option("--size", type=click.IntRange(16, 16384), default=2048, show_default=True,
              help="Skin atlas height in texels (its width is twice that).")
def texture_cmd(session: Path, size: int) -> None:
    """Bake SESSION's textures from the fit and the photos; writes SESSION/texture/."""
    from ..session import load_session
    from ..texture.bake import TextureConfig
    from ..texture.stage import run

    s = load_session(session)
    with s.lock():
        r = run(TextureConfig(size=size), s)
    seen = (r.textures.skin_weight > 0)[r.textures.skin_mask].mean() if r.textures.skin_mask.any() else 0.0
    click.echo(f"texture: {len(r.textures.view_coverage)} views, {100 * seen:.0f}% of skin texels seen; "
               f"{r.seconds:.1f} s -> {r.out_dir}")


@click.command("export")
@click.argument("session", type=click.Path(path_type=Path))
@click.option("--format", "formats", type=click.Choice(["glb", "obj", "usdz"]), multiple=True, default=("glb",),
              show_default=True, help="Output format (repeat for several); usdz: LOD 0 for Apple AR Quick Look.")
@click.option("--lod", "lods", default="1,0.25,0.05", show_default=True, callback=_lods,
              help="Triangle fractions of the levels of detail.")
@click.option("--texture-size", type=click.IntRange(16, 16384), default=2048, show_default=True,
              help="Skin atlas height in texels (re-bakes when the texture stage used another size).")
@click.option("--no-morphs", is_flag=True, help="Leave out the expression morph targets.")
@click.option("--morph-names", type=click.Choice(["arkit", "ict"]), default="arkit", show_default=True,
              help="Morph targets as Apple ARKit's 52 blendshapes or the model's own.")
@click.option("--expression", type=click.Choice(["clip", "default"]), default="clip", show_default=True,
              help="Captured expression as an animation only (neutral rest pose) or also as default weights.")
@click.option("--no-skeleton", is_flag=True, help="Leave out the joints and skin weights.")
@click.option("--compress", is_flag=True, help="EXT_meshopt_compression (quantised geometry, JPEG albedo).")
@click.option("--units", type=click.Choice(["m", "cm"]), default="m", show_default=True,
              help="Length unit of the files (cm for Unreal).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder (default SESSION/export).")
def export_cmd(session: Path, formats: tuple[str, ...], lods: tuple[float, ...], texture_size: int,
               no_morphs: bool, morph_names: str, expression: str, no_skeleton: bool, compress: bool, units: str,
               out_dir: Path | None) -> None:
    """Export SESSION's fitted head as a textured asset with blendshapes; writes SESSION/export/."""
    from ..export.stage import ExportConfig, export
    from ..session import load_session

    cfg = ExportConfig(formats=tuple(formats), lods=lods, texture_size=texture_size, morph_targets=not no_morphs,
                       morph_names=morph_names, expression=expression, skeleton=not no_skeleton, units=units,
                       compress=compress,
                       out_dir=None if out_dir is None else str(out_dir))
    s = load_session(session)
    with s.lock():
        r = export(s, cfg)
    tris = " / ".join(f"{t:,}" for t in r.lod_triangles)
    click.echo(f"export: {', '.join(formats)}; LOD triangles {tris}; {len(r.target_names)} morph targets; "
               f"{r.seconds:.1f} s -> {r.out_dir}")


COMMANDS = [texture_cmd, export_cmd]
