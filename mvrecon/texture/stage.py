"""The ``texture`` stage: bake the fitted head's textures from the session's photos into
``SESSION/texture/`` (one atomic folder replacement).

Outputs::

    albedo.png          skin albedo atlas (S x 2S, 8-bit RGB; model UV tiles 0-1 side by side)
    eyes.png            procedural eyeball texture (E x E)
    mouth.png           procedural gums/tongue + teeth (E x 2E; model UV tiles 2-3)
    eyelashes.png       RGBA eyelash strands (alpha-tested; model UV tile 6)
    normal.png          tangent-space normal map of the skin atlas (8-bit, glTF/OpenGL +Y)
    displacement.png    16-bit displacement of the skin atlas; displacement.json gives its scale
    weight.png          8-bit view-weight coverage (0 = never seen, filled)
    summary.json        per-view coverage, mean skin and iris colours, timings
    config.json         the resolved TextureConfig
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, StageMissing
from ..fit.result import FittedHead, load_fit
from ..io import atomic_dir, read_image, read_json, write_image, write_json
from .bake import BakeView, TextureResult, bake_texture
from .config import TextureConfig

log = logging.getLogger(__name__)

FILES = ("albedo.png", "eyes.png", "mouth.png", "eyelashes.png", "normal.png", "displacement.png", "displacement.json")


@dataclass(frozen=True)
class TextureStageResult:
    """What the texture stage wrote."""

    out_dir: Path
    textures: TextureResult
    seconds: float


def to_u8(img: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 (rounded, clipped)."""
    return np.clip(np.round(np.asarray(img) * 255.0), 0, 255).astype(np.uint8)


def encode_displacement(disp: np.ndarray) -> tuple[np.ndarray, dict]:
    """Displacement (H, W) metres -> uint16 image and its decoding metadata (mid-grey = 0)."""
    scale = float(max(np.abs(disp).max(), 1e-6))
    png = np.clip(np.round((np.asarray(disp, np.float64) / scale * 0.5 + 0.5) * 65535), 0, 65535).astype(np.uint16)
    meta = {
        "scale_m": scale,
        "midlevel": 0.5,
        "encoding": "displacement_m = (png / 65535 - 0.5) * 2 * scale_m, along the vertex normal",
        "strength_m": 2 * scale,
        "uv_layout": "skin atlas: model UV tiles 0-1 side by side (u' = u / 2)",
    }
    return png, meta


def decode_displacement(png: np.ndarray, meta: dict) -> np.ndarray:
    """Inverse of :func:`encode_displacement`: (H, W) metres."""
    return (np.asarray(png, np.float64) / 65535 - meta.get("midlevel", 0.5)) * 2 * float(meta["scale_m"])


def photo_response(session) -> str:
    """How the session's photos encode light (``options.camera_response``: 'srgb' or 'linear')."""
    from ..fit.stage import camera_response

    return camera_response(session)


def bake_views(session, head: FittedHead) -> list[BakeView]:
    """The session's photos of the fitted views, undistorted, in linear light (decoded from sRGB
    when the session's camera response says so, as the fit reads them), with their fitted group,
    SH and colour bias; each view's camera as the fit corrected it (when it did)."""
    from .bake import srgb_decode

    linearise = photo_response(session) == "srgb"
    by_key = {v.key: v for v in session.views()}
    out = []
    for i, key in enumerate(head.views):
        if key not in by_key:
            raise InputError(
                f"the fit has view {key!r}, which the session no longer lists (re-run 'mvrecon fit SESSION')",
                session.session_file,
            )
        v = by_key[key]
        img = read_image(v.image)
        und, cam0 = session.rig[v.camera].undistort_image(img)
        cam0 = head.view_camera(i, cam0)
        img01 = und.astype(np.float32) / 255.0
        if linearise:
            img01 = srgb_decode(img01).astype(np.float32)
        out.append(
            BakeView(
                key, img01, cam0, int(head.group_of_view[i]), np.asarray(head.sh[i], np.float64), bias=head.view_bias(i)
            )
        )
    return out


def fine_band(session) -> np.ndarray | None:
    """The detail stage's fine and mid bands shared by the session's frames (R, R) metres over the
    face UV tile, or None when the detail stage has not run."""
    from ..detail.stagedef import STAGE as DETAIL

    if not DETAIL.outputs.path(DETAIL.folder(session), "fine").is_file():
        return None
    return DETAIL.load(session).displacement


def write_textures(out_dir: Path, tex: TextureResult, cfg: TextureConfig, summary: dict) -> Path:
    with atomic_dir(out_dir) as tmp:
        write_image(tmp / "albedo.png", to_u8(tex.skin))
        write_image(tmp / "eyes.png", to_u8(tex.eyes))
        write_image(tmp / "mouth.png", to_u8(tex.mouth))
        if tex.lashes is not None:
            write_image(tmp / "eyelashes.png", to_u8(tex.lashes))
        write_image(tmp / "normal.png", to_u8(tex.normal))
        png, meta = encode_displacement(tex.displacement)
        write_image(tmp / "displacement.png", png)
        write_json(tmp / "displacement.json", meta)
        w = tex.skin_weight
        wn = w / w.max() if w.max() > 0 else w
        write_image(tmp / "weight.png", to_u8(wn))
        write_json(tmp / "summary.json", summary)
        write_json(tmp / "config.json", cfg.to_dict())
    return out_dir


def run(cfg: TextureConfig, session) -> TextureStageResult:
    """Bake from the fit (``fit/params.npz``) and the photos into ``texture/`` (the pipeline runs
    it through :data:`mvrecon.texture.stagedef.STAGE`)."""
    out = session.stage_dir("texture")
    head = load_fit(session.stage_dir("fit"))
    t0 = time.perf_counter()
    views = bake_views(session, head)
    tex = bake_texture(head, views, cfg, response=photo_response(session), fine=fine_band(session))
    secs = time.perf_counter() - t0
    summary = {
        "views": len(views),
        "size": [int(tex.skin.shape[0]), int(tex.skin.shape[1])],
        "seen_fraction": float((tex.skin_weight > 0)[tex.skin_mask].mean()) if tex.skin_mask.any() else 0.0,
        "view_coverage": tex.view_coverage,
        "mean_skin": tex.mean_skin.tolist(),
        "iris_color": tex.iris_color.tolist(),
        "seconds": secs,
    }
    write_textures(out, tex, cfg, summary)
    return TextureStageResult(out, tex, secs)


def load_textures(tex_dir: str | Path) -> TextureResult:
    """Read a texture stage's outputs back (float images; the weight is the normalised coverage)."""
    d = Path(tex_dir)
    missing = [f for f in FILES if not (d / f).is_file()]
    if missing:
        raise StageMissing(f"no textures yet ({', '.join(missing)} missing): run the texture stage first", d)
    import cv2

    def img(name):
        return read_image(d / name).astype(np.float32) / 255.0

    disp_png = cv2.imread(str(d / "displacement.png"), cv2.IMREAD_UNCHANGED)
    if disp_png is None or disp_png.dtype != np.uint16:
        raise InputError("displacement map is not a 16-bit PNG", d / "displacement.png")
    meta = read_json(d / "displacement.json")
    skin = img("albedo.png")
    weight = img("weight.png")[..., 0] if (d / "weight.png").is_file() else np.ones(skin.shape[:2], np.float32)
    summ = read_json(d / "summary.json") if (d / "summary.json").is_file() else {}
    return TextureResult(
        skin=skin,
        skin_weight=weight,
        skin_mask=np.ones(skin.shape[:2], bool),
        eyes=img("eyes.png"),
        mouth=img("mouth.png"),
        normal=img("normal.png"),
        displacement=decode_displacement(disp_png, meta).astype(np.float32),
        mean_skin=np.asarray(summ.get("mean_skin", skin.reshape(-1, 3).mean(0))),
        iris_color=np.asarray(summ.get("iris_color", [0.33, 0.21, 0.12])),
        view_coverage=summ.get("view_coverage", {}),
    )


__all__ = ["TextureStageResult", "bake_views", "decode_displacement", "encode_displacement", "load_textures", "run"]
