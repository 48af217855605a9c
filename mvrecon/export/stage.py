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

The textures come from the texture stage (``SESSION/texture/``); when they are missing or baked at
another size, the texture stage runs first (and writes its folder).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import MvreconError
from ..fit.result import load_fit
from ..io import atomic_dir, read_json, write_bytes, write_json, write_text
from ..texture import stage as texture_stage
from ..texture.bake import TextureConfig
from .asset import HeadAsset, build_asset, scale_asset
from .compress import compress_glb
from .gltf import glb_bytes, parse_glb
from .lod import decimate_asset
from .objfile import mtl_text, obj_text

log = logging.getLogger(__name__)

Format = Literal["glb", "obj", "usdz"]
MorphNames = Literal["arkit", "ict"]
Expression = Literal["clip", "default"]
Units = Literal["m", "cm"]
IMAGE_FILES = {"skin": "albedo.png", "eyes": "eyes.png", "mouth": "mouth.png", "eyelashes": "eyelashes.png",
               "normal": "normal.png"}


@dataclass(frozen=True)
class ExportConfig:
    """Settings of the export stage."""

    formats: tuple[Format, ...] = ("glb",)
    """Files to write: 'glb' (glTF 2.0 binary), 'obj' (+ mtl), 'usdz' (LOD 0 as UsdSkel for
    Apple's AR Quick Look; needs usd-core)."""
    lods: tuple[float, ...] = (1.0, 0.25, 0.05)
    """Triangle fraction of each level of detail, the first one is the full mesh (1.0)."""
    texture_size: int = 2048
    """Skin atlas height in texels (re-bakes the textures when the texture stage used another size)."""
    morph_targets: bool = True
    """Carry the model's expression shapes as morph targets (in every LOD)."""
    morph_names: MorphNames = "arkit"
    """Morph-target set: 'arkit' (Apple's 52 names and shapes) or 'ict' (the model's own 53)."""
    expression: Expression = "clip"
    """The captured expression: 'clip' (an animation; the mesh loads neutral) or 'default' (also
    the meshes' default weights)."""
    skeleton: bool = True
    """Add the joints (root, neck, head, jaw, eyes) and skin weights."""
    compress: bool = False
    """Write the .glb files with EXT_meshopt_compression (quantised, meshopt-coded geometry,
    JPEG albedo); loaders need the meshopt decoder."""
    units: Units = "m"
    """Length unit of the files: 'm' (glTF's own) or 'cm' (Unreal's)."""
    out_dir: str | None = None
    """Output folder (default ``SESSION/export``)."""
    texture: TextureConfig = field(default_factory=TextureConfig)
    """Bake settings when the texture stage has to run (its size is ``texture_size``)."""

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in ("glb", "obj", "usdz")]
        if bad or not self.formats:
            raise MvreconError("export formats must be among 'glb', 'obj' and 'usdz', got "
                               f"{', '.join(map(str, self.formats)) or 'none'}")
        if not self.lods or any(not (0 < f <= 1) for f in self.lods):
            raise MvreconError(f"LOD fractions must lie in (0, 1], got {', '.join(map(str, self.lods))}")
        if self.morph_names not in ("arkit", "ict"):
            raise MvreconError(f"morph names must be 'arkit' or 'ict', got {self.morph_names!r}")
        if self.expression not in ("clip", "default"):
            raise MvreconError(f"expression must be 'clip' or 'default', got {self.expression!r}")
        if self.units not in ("m", "cm"):
            raise MvreconError(f"units must be 'm' or 'cm', got {self.units!r}")
        if self.texture_size < 16:
            raise MvreconError(f"texture size {self.texture_size} is too small (at least 16)")

    def to_dict(self) -> dict:
        return asdict(self)


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
    """PNG bytes of the textures, baking them first when missing or of another size."""
    tdir = session.stage_dir("texture")
    ok = all((tdir / f).is_file() for f in texture_stage.FILES)
    if ok:
        summ = read_json(tdir / "summary.json") if (tdir / "summary.json").is_file() else {}
        ok = summ.get("size", [None])[0] == cfg.texture_size
    if not ok:
        from dataclasses import replace

        log.info("export: baking textures at %d px first", cfg.texture_size)
        texture_stage.run(replace(cfg.texture, size=cfg.texture_size), session)
    return {k: (tdir / f).read_bytes() for k, f in IMAGE_FILES.items()}


def with_displacement(asset: HeadAsset, meta: dict) -> HeadAsset:
    """The asset with the skin's displacement map described in its ``meta`` (the glb's extras,
    the MTL's ``disp -mm``): file, scale in metres and in the asset's units, mid level."""
    from dataclasses import replace

    unit = 100.0 if asset.meta.get("units") == "cm" else 1.0
    scale = float(meta["scale_m"])
    d = {"uri": "displacement.png", "scale_m": scale, "scale": scale * unit, "midlevel": float(meta.get("midlevel", 0.5)),
         "encoding": "displacement = (png / 65535 - midlevel) * 2 * scale (asset units), along the normal",
         "material": "skin", "uv_layout": meta.get("uv_layout", "")}
    return replace(asset, meta={**asset.meta, "displacement": d})


def _lod_assets(asset: HeadAsset, lods: tuple[float, ...]) -> list[HeadAsset]:
    out = []
    for f in lods:
        out.append(asset if f >= 1.0 else decimate_asset(asset, f))
    return out


def export(session, cfg: ExportConfig = ExportConfig()) -> ExportResult:
    """Write the head asset of a fitted session (see the module docstring)."""
    t0 = time.perf_counter()
    head = load_fit(session.stage_dir("fit"))          # StageMissing names the fit stage
    out = Path(cfg.out_dir) if cfg.out_dir else session.stage_dir("export")
    images = _texture_images(session, cfg)
    full = build_asset(head, morph_targets=cfg.morph_targets, morph_names=cfg.morph_names,
                       expression=cfg.expression, skeleton=cfg.skeleton)
    lods = _lod_assets(full, cfg.lods)
    if cfg.units == "cm":
        lods = [scale_asset(a, 100.0) for a in lods]
        full = lods[0]
    tdir = session.stage_dir("texture")
    # the displacement map is no glTF texture: its decoding travels in the extras (and the MTL)
    disp_meta = read_json(tdir / "displacement.json")
    lods = [with_displacement(a, disp_meta) for a in lods]
    full = lods[0]
    files: list[str] = []
    glb_size = 0
    with atomic_dir(out) as tmp:
        for k, f in IMAGE_FILES.items():
            write_bytes(tmp / f, images[k])
        for f in ("displacement.png", "displacement.json"):
            write_bytes(tmp / f, (tdir / f).read_bytes())
        files += list(IMAGE_FILES.values()) + ["displacement.png", "displacement.json"]
        uris = {k: IMAGE_FILES[k] for k in images}
        for i, a in enumerate(lods):
            stem = "head" if i == 0 else f"head_lod{i}"
            if "glb" in cfg.formats:
                if i == 0:
                    data = glb_bytes(lods, images, name=stem, morph_targets=cfg.morph_targets, compact=cfg.compress)
                else:
                    data = glb_bytes(a, images, name=stem, morph_targets=cfg.morph_targets, image_uris=uris,
                                     compact=cfg.compress)
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
            "units": cfg.units, "up": "+Y", "forward": "+Z (out of the face)", "model": head.model.name,
            "scale": float(head.scale),
            "lods": [{"fraction": f, "vertices": a.n_vertices, "triangles": a.n_triangles,
                      "per_material": {p.material.name: int(len(p.indices)) for p in a.primitives}}
                     for f, a in zip(cfg.lods, lods)],
            "morph_targets": full.target_names,
            "morph_names": cfg.morph_names,
            "morph_sources": full.meta.get("morph_sources", {}),
            "default_weights": {n: float(w) for n, w in zip(full.target_names, full.default_weights)},
            "captured_expression": {"animation": "captured", "frames": full.clip_keys,
                                    "weights": {} if full.clip_weights is None else
                                    {n: [float(x) for x in full.clip_weights[:, k]]
                                     for k, n in enumerate(full.target_names)}},
            "skeleton": None if full.skeleton is None else
            {"joints": list(full.skeleton.names), "parents": list(full.skeleton.parents),
             "positions": full.skeleton.positions.tolist()},
            "morph_target_note": "ICT blendshape deltas applied to this identity as is (a linear model has no "
                                 "identity-specific expressions), times the fitted scale; mapped to ARKit's "
                                 "names and shapes as morph_sources says",
        }
        write_json(tmp / "asset.json", summary)
        write_json(tmp / "config.json", cfg.to_dict())
        files += ["asset.json", "config.json"]
    secs = time.perf_counter() - t0
    return ExportResult(out_dir=out, files=files, lod_triangles=[a.n_triangles for a in lods],
                        lod_vertices=[a.n_vertices for a in lods], glb_bytes=glb_size,
                        target_names=full.target_names, seconds=secs)


def run(cfg: ExportConfig, session) -> ExportResult:
    """Stage entry point (pipeline)."""
    return export(session, cfg)
