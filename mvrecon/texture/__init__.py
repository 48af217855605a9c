"""Texture stage: the fitted head's UV albedo baked from all views (de-lit with the fitted SH
lighting), procedural eyes and mouth, and detail maps (displacement, tangent-space normals)."""

from .bake import BakeView, TextureConfig, TextureResult, bake_texture, normal_map_from_displacement
from .layout import MATERIALS, Material, atlas_uv, corner_uvs, material, material_triangles
from .uvraster import UVRaster, push_pull_fill, rasterize_uv

__all__ = [
    "BakeView", "MATERIALS", "Material", "TextureConfig", "TextureResult", "UVRaster", "atlas_uv", "bake_texture",
    "corner_uvs", "material", "material_triangles", "normal_map_from_displacement", "push_pull_fill", "rasterize_uv",
]
