"""The ``export`` stage: the game-ready head of a fitted session in ``SESSION/export/``.

Outputs (one atomic folder replacement; nothing is half-written on error)::

    head.glb            every LOD in one file sharing its textures (scene 0 = LOD 0: the full ICT
                        topology), PBR materials, ARKit's 52 morph targets (position and normal
                        deltas) in every LOD, a skeleton (root, neck, head, jaw, eyes) with skin
                        weights, the neutral rest pose, the captured expression as animation "captured"
    head_lod1.glb ...   one LOD each (meshoptimizer, morph targets and skin kept), referencing the
                        shared image files beside them
    head.obj/.mtl ...   the same as OBJ (format obj), one file per LOD, sharing the textures
    head.usdz           LOD 0 for Apple's AR Quick Look (format usdz, :mod:`.usd`): UsdSkel with
                        the 52 ARKit blendshapes, joints, UsdPreviewSurface materials
    albedo.png eyes.png mouth.png normal.png displacement.png displacement.json
    asset.json          vertex/triangle counts per LOD, morph-target names, default weights, units
    config.json         the resolved ExportConfig

The textures are the texture stage's outputs (``SESSION/texture/``, read through its outputs
contract); the export never bakes: textures missing or baked at another size than the export's
``texture_size`` are a :class:`~mvrecon.errors.StageMissing` naming the texture stage.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import StageMissing
from ..fit.result import load_fit
from ..io import atomic_dir, read_json, write_bytes, write_json, write_text
from ..texture.stagedef import STAGE as TEXTURE
from .asset import HeadAsset, build_asset, scale_asset
from .compress import compress_glb
from .config import ExportConfig
from .gltf import glb_bytes, parse_glb
from .lod import decimate_asset
from .objfile import mtl_text, obj_text

log = logging.getLogger(__name__)

#: The texture stage's images the asset carries (material slot -> output role of the texture stage).
IMAGE_ROLES = {"skin": "albedo", "eyes": "eyes", "mouth": "mouth", "eyelashes": "eyelashes", "normal": "normal"}


@dataclass(frozen=True)
class ExportResult:
    """What the export stage wrote."""

    out_dir: Path
    files: list[str]
    lod_triangles: list[int]
    lod_vertices: list[int]
    glb_bytes: int
    target_names: list[str]
    seconds: float


def _texture_images(session, cfg: ExportConfig) -> dict[str, bytes]:
    """The texture stage's images as encoded bytes (material slot -> PNG), checked to be baked at
    the export's texture size."""
    tdir = session.stage_dir(TEXTURE.name)
    missing = [
        role
        for role in (*IMAGE_ROLES.values(), "displacement", "displacement scale")
        if not TEXTURE.outputs.path(tdir, role).is_file()
    ]
    if missing:
        raise StageMissing(f"no textures yet ({', '.join(missing)} missing): run the texture stage first", tdir)
    summary = TEXTURE.outputs.path(tdir, "summary")
    size = (read_json(summary).get("size") or [None])[0] if summary.is_file() else None
    if size != cfg.texture_size:
        raise StageMissing(
            f"the texture stage baked {size} px textures, the export asks for {cfg.texture_size} "
            f"(its texture_size): run the texture stage at size {cfg.texture_size} first",
            tdir,
        )
    return {k: TEXTURE.outputs.path(tdir, role).read_bytes() for k, role in IMAGE_ROLES.items()}


def with_displacement(asset: HeadAsset, meta: dict) -> HeadAsset:
    """The asset with the skin's displacement map described in its ``meta`` (the glb's extras,
    the MTL's ``disp -mm``): file, scale in metres and in the asset's units, mid level."""
    from dataclasses import replace

    unit = 100.0 if asset.meta.get("units") == "cm" else 1.0
    scale = float(meta["scale_m"])
    d = {
        "uri": "displacement.png",
        "scale_m": scale,
        "scale": scale * unit,
        "midlevel": float(meta.get("midlevel", 0.5)),
        "encoding": "displacement = (png / 65535 - midlevel) * 2 * scale (asset units), along the normal",
        "material": "skin",
        "uv_layout": meta.get("uv_layout", ""),
    }
    return replace(asset, meta={**asset.meta, "displacement": d})


def _lod_assets(asset: HeadAsset, lods: tuple[float, ...]) -> list[HeadAsset]:
    out = []
    for f in lods:
        out.append(asset if f >= 1.0 else decimate_asset(asset, f))
    return out


def export(session, cfg: ExportConfig = ExportConfig()) -> ExportResult:
    """Write the head asset of a fitted session (see the module docstring)."""
    t0 = time.perf_counter()
    head = load_fit(session.stage_dir("fit"))  # StageMissing names the fit stage
    out = Path(cfg.out_dir) if cfg.out_dir else session.stage_dir("export")
    images = _texture_images(session, cfg)
    full = build_asset(
        head,
        morph_targets=cfg.morph_targets,
        morph_names=cfg.morph_names,
        expression=cfg.expression,
        skeleton=cfg.skeleton,
    )
    lods = _lod_assets(full, cfg.lods)
    if cfg.units == "cm":
        lods = [scale_asset(a, 100.0) for a in lods]
        full = lods[0]
    tdir = session.stage_dir(TEXTURE.name)
    # the displacement map is no glTF texture: its decoding travels in the extras (and the MTL)
    disp_png, disp_json = TEXTURE.outputs.path(tdir, "displacement"), TEXTURE.outputs.path(tdir, "displacement scale")
    disp_meta = read_json(disp_json)
    lods = [with_displacement(a, disp_meta) for a in lods]
    full = lods[0]
    files: list[str] = []
    glb_size = 0
    with atomic_dir(out) as tmp:
        # the asset's folder holds the texture stage's files under their own names (the asset refers to them)
        uris = {k: TEXTURE.outputs.path(tdir, role).name for k, role in IMAGE_ROLES.items()}
        for k, name in uris.items():
            write_bytes(tmp / name, images[k])
        for src in (disp_png, disp_json):
            write_bytes(tmp / src.name, src.read_bytes())
        files += list(uris.values()) + [disp_png.name, disp_json.name]
        for i, a in enumerate(lods):
            stem = "head" if i == 0 else f"head_lod{i}"
            if "glb" in cfg.formats:
                if i == 0:
                    data = glb_bytes(lods, images, name=stem, morph_targets=cfg.morph_targets, compact=cfg.compress)
                else:
                    data = glb_bytes(
                        a, images, name=stem, morph_targets=cfg.morph_targets, image_uris=uris, compact=cfg.compress
                    )
                if cfg.compress:
                    data = compress_glb(parse_glb(data))
                if i == 0:
                    glb_size = len(data)
                write_bytes(tmp / f"{stem}.glb", data)
                files.append(f"{stem}.glb")
            if "obj" in cfg.formats:
                write_text(tmp / f"{stem}.obj", obj_text(a, f"{stem}.mtl"))
                write_text(tmp / f"{stem}.mtl", mtl_text(a))
                files += [f"{stem}.obj", f"{stem}.mtl"]
        if "usdz" in cfg.formats:
            from .usd import usdz_bytes

            write_bytes(tmp / "head.usdz", usdz_bytes(full, images, units=cfg.units))
            files.append("head.usdz")
        summary = {
            "units": cfg.units,
            "up": "+Y",
            "forward": "+Z (out of the face)",
            "model": head.model.name,
            "scale": float(head.scale),
            "lods": [
                {
                    "fraction": f,
                    "vertices": a.n_vertices,
                    "triangles": a.n_triangles,
                    "per_material": {p.material.name: int(len(p.indices)) for p in a.primitives},
                }
                for f, a in zip(cfg.lods, lods)
            ],
            "morph_targets": full.target_names,
            "morph_names": cfg.morph_names,
            "morph_sources": full.meta.get("morph_sources", {}),
            "default_weights": {n: float(w) for n, w in zip(full.target_names, full.default_weights)},
            "captured_expression": {
                "animation": "captured",
                "frames": full.clip_keys,
                "weights": {}
                if full.clip_weights is None
                else {n: [float(x) for x in full.clip_weights[:, k]] for k, n in enumerate(full.target_names)},
            },
            "skeleton": None
            if full.skeleton is None
            else {
                "joints": list(full.skeleton.names),
                "parents": list(full.skeleton.parents),
                "positions": full.skeleton.positions.tolist(),
            },
            "morph_target_note": "ICT blendshape deltas applied to this identity as is (a linear model has no "
            "identity-specific expressions), times the fitted scale; mapped to ARKit's "
            "names and shapes as morph_sources says",
        }
        write_json(tmp / "asset.json", summary)
        write_json(tmp / "config.json", cfg.to_dict())
        files += ["asset.json", "config.json"]
    secs = time.perf_counter() - t0
    return ExportResult(
        out_dir=out,
        files=files,
        lod_triangles=[a.n_triangles for a in lods],
        lod_vertices=[a.n_vertices for a in lods],
        glb_bytes=glb_size,
        target_names=full.target_names,
        seconds=secs,
    )
