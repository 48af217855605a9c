"""Texture stage: the fitted head's UV albedo baked from all views (de-lit with the fitted SH
lighting), procedural eyes and mouth, and detail maps (displacement, tangent-space normals).

The names below load on first use (PEP 562), so the light modules of this package
(:mod:`.config`, :mod:`.stagedef`) import without torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bake import (
        BakeView,
        TextureResult,
        bake_texture,
        normal_map_from_displacement,
    )
    from .config import TextureConfig
    from .layout import (
        MATERIALS,
        Material,
        atlas_uv,
        corner_uvs,
        material,
        material_triangles,
    )
    from .uvraster import UVRaster, push_pull_fill, rasterize_uv

_WHERE = {
    "BakeView": "bake",
    "TextureResult": "bake",
    "bake_texture": "bake",
    "normal_map_from_displacement": "bake",
    "TextureConfig": "config",
    "MATERIALS": "layout",
    "Material": "layout",
    "atlas_uv": "layout",
    "corner_uvs": "layout",
    "material": "layout",
    "material_triangles": "layout",
    "UVRaster": "uvraster",
    "push_pull_fill": "uvraster",
    "rasterize_uv": "uvraster",
}
__all__ = [
    "MATERIALS",
    "BakeView",
    "Material",
    "TextureConfig",
    "TextureResult",
    "UVRaster",
    "atlas_uv",
    "bake_texture",
    "corner_uvs",
    "material",
    "material_triangles",
    "normal_map_from_displacement",
    "push_pull_fill",
    "rasterize_uv",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
