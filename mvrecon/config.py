"""The settings of a pipeline run, from one place: :class:`PipelineConfig` (one typed field per
stage with settings), the preset registry (:data:`PRESETS`, whose names every ``--preset``
option offers) and ``--set STAGE.FIELD=VALUE`` overrides parsed by the field's type.

The overridden settings are the stage's settings, which its provenance records: a changed
setting runs that stage again, and the stages after it when its outputs change.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

# the stages' config types live in light modules: importing them costs no torch
from .calibrate.charuco import CharucoConfig
from .calibrate.refine import RefineConfig
from .cues.stage import PRESETS as CUES_PRESETS
from .cues.stage import CuesConfig
from .detail.config import PRESETS as DETAIL_PRESETS
from .detail.config import DetailConfig
from .errors import MvreconError
from .evaluate.evaluate import EvalConfig
from .export.config import ExportConfig
from .fit.config import FitConfig
from .fit.config import preset as fit_preset
from .texture.config import TextureConfig

PresetName = Literal["fast", "default", "best"]

#: The named presets of every stage's settings, with what each is for (the CLI's ``--preset`` choices).
PRESETS: dict[str, str] = {
    "fast": "a quick look",
    "default": "the default settings",
    "best": "the finest settings, several times slower",
}
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)
assert PRESET_NAMES == get_args(PresetName)

#: Skin atlas height per preset: 'fast' is for looking at the result quickly.
TEXTURE_SIZE: dict[str, int] = {"fast": 1024, "default": 2048, "best": 4096}


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of every stage of a run (a named preset, see :func:`pipeline_config`); the field
    of a stage's settings has the stage's name."""

    preset: PresetName = "default"
    """Preset these settings came from."""
    calibrate: CharucoConfig | None = None
    """Settings of the calibrate stage (ChArUco board shots)."""
    refine: RefineConfig | None = None
    """Settings of the refine stage."""
    cues: CuesConfig | None = None
    """Settings of the cues stage."""
    fit: FitConfig | None = None
    """Settings of the fit stage."""
    detail: DetailConfig | None = None
    """Settings of the detail stage."""
    texture: TextureConfig | None = None
    """Settings of the texture stage (its size is also the export's texture size)."""
    export: ExportConfig | None = None
    """Settings of the export stage."""
    evaluate: EvalConfig | None = None
    """Settings of the evaluate stage."""
    refine_extrinsics: bool = False
    """Run the refine stage even when the session has not asked for it."""


def check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise MvreconError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")


def pipeline_config(preset: str = "default", **overrides: Any) -> PipelineConfig:
    """The settings of every stage for a named preset; ``overrides`` replace whole stage configs."""
    check_preset(preset)
    size = TEXTURE_SIZE[preset]
    tex = TextureConfig(size=size)
    cfg = PipelineConfig(
        preset=typing.cast(PresetName, preset),
        calibrate=CharucoConfig(),
        refine=RefineConfig(out_dir="refine"),
        cues=CUES_PRESETS[preset],
        fit=fit_preset(preset),
        detail=DETAIL_PRESETS[preset],
        texture=tex,
        export=ExportConfig(texture_size=size, texture=tex),
        evaluate=EvalConfig(),
    )
    return dataclasses.replace(cfg, **overrides)


# --------------------------------------------------------------------------------------------
# --set STAGE.FIELD=VALUE


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _describe(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else _describe(a) for a in get_args(tp))
    if get_origin(tp) is tuple:
        return "comma-separated values (" + ", ".join(_describe(a) for a in get_args(tp) if a is not Ellipsis) + ")"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def parse_value(text: str, tp: Any) -> Any:
    """``text`` as a value of the type ``tp`` (bool, int, float, str, Literal, Optional, tuple);
    ValueError when it is not one."""
    origin = get_origin(tp)
    if origin is Literal:
        for a in get_args(tp):
            if str(a) == text:
                return a
        raise ValueError
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return parse_value(text, a)
            except ValueError:
                pass
        raise ValueError
    if origin is tuple:
        args = get_args(tp)
        parts = [p.strip() for p in text.split(",")] if text.strip() else []
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_value(p, args[0]) for p in parts)
        if len(parts) != len(args):
            raise ValueError
        return tuple(parse_value(p, a) for p, a in zip(parts, args))
    if tp is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    if tp is str:
        return text
    raise TypeError(_describe(tp))


def _with_field(obj: Any, path: Sequence[str], text: str, where: str) -> Any:
    """``obj`` (a dataclass) with the field at ``path`` set from ``text``."""
    fields = {f.name: f for f in dataclasses.fields(obj) if f.init}
    name = path[0]
    if name not in fields:
        raise MvreconError(
            f"--set {where}: {type(obj).__name__} has no setting {name!r} (its settings: {', '.join(fields)})"
        )
    value = getattr(obj, name)
    if len(path) > 1:
        if not dataclasses.is_dataclass(value):
            raise MvreconError(f"--set {where}: {name!r} has no settings of its own")
        return dataclasses.replace(obj, **{name: _with_field(value, path[1:], text, where)})
    tp = typing.get_type_hints(type(obj))[name]
    try:
        parsed = parse_value(text, tp)
    except ValueError:
        raise MvreconError(f"--set {where}: {name} takes {_describe(tp)}, got {text!r}") from None
    except TypeError as e:
        raise MvreconError(f"--set {where}: {name} cannot be set from the command line (it holds {e})") from None
    try:
        return dataclasses.replace(obj, **{name: parsed})
    except MvreconError as e:  # the config's own check of its values
        raise MvreconError(f"--set {where}: {e}") from None


def with_settings(cfg: PipelineConfig, assignments: Sequence[str]) -> PipelineConfig:
    """``cfg`` with each ``STAGE.FIELD=VALUE`` (``FIELD`` may be a dotted path into a nested
    setting, e.g. ``detail.solve.curvature``) applied in order, the value parsed by the field's
    type. An unknown stage or field, or a value of the wrong type, is a :class:`MvreconError`.
    The export carries the texture stage's maps: a changed texture setting is the export's too
    (``export.texture``, ``export.texture_size``), unless an assignment sets those itself."""
    stages = {f.name for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))}
    texture = cfg.texture
    for a in assignments:
        key, eq, text = a.partition("=")
        stage, _, path = key.strip().partition(".")
        if not eq or not path:
            raise MvreconError(f"--set {a}: expected STAGE.FIELD=VALUE, e.g. fit.crop_size=192")
        if stage not in stages:
            raise MvreconError(
                f"--set {a}: unknown stage {stage!r} (stages with settings: "
                f"{', '.join(sorted(stages, key=[f.name for f in dataclasses.fields(cfg)].index))})"
            )
        cfg = dataclasses.replace(cfg, **{stage: _with_field(getattr(cfg, stage), path.split("."), text.strip(), a)})
    own = any(a.strip().startswith("export.texture") for a in assignments)
    if cfg.texture != texture and cfg.export is not None and cfg.texture is not None and not own:
        cfg = dataclasses.replace(
            cfg, export=dataclasses.replace(cfg.export, texture=cfg.texture, texture_size=cfg.texture.size)
        )
    return cfg
