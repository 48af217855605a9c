"""Export stage: the fitted neutral head with the full model topology, baked textures and the
model's expression shapes as morph targets, as glTF 2.0 binary and OBJ + MTL, with UV-keeping LODs.

The names below load on first use (PEP 562), so the light modules of this package
(:mod:`.config`, :mod:`.stagedef`) import without torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .asset import HeadAsset, Primitive, build_asset
    from .config import ExportConfig
    from .gltf import Glb, glb_bytes, read_glb
    from .lod import decimate_asset, decimate_primitive
    from .objfile import mtl_text, obj_text
    from .stage import ExportResult, export

_WHERE = {
    "HeadAsset": "asset",
    "Primitive": "asset",
    "build_asset": "asset",
    "ExportConfig": "config",
    "Glb": "gltf",
    "glb_bytes": "gltf",
    "read_glb": "gltf",
    "decimate_asset": "lod",
    "decimate_primitive": "lod",
    "mtl_text": "objfile",
    "obj_text": "objfile",
    "ExportResult": "stage",
    "export": "stage",
}
__all__ = [
    "ExportConfig",
    "ExportResult",
    "Glb",
    "HeadAsset",
    "Primitive",
    "build_asset",
    "decimate_asset",
    "decimate_primitive",
    "export",
    "glb_bytes",
    "mtl_text",
    "obj_text",
    "read_glb",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
