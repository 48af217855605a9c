"""mvrecon's differentiable renderer: Open3D ray casting finds each pixel's triangle for all views
at once, torch recomputes perspective-correct barycentrics and depth so gradients reach vertex
positions, cameras (``K``, ``world_to_cam``) and per-vertex or texture attributes.

Conventions: OpenCV cameras (K (V, 3, 3), world_to_cam (V, 4, 4), x right, y down, z forward),
pixel centres at integer coordinates, metres, UVs with v up (OBJ).
"""

from ..geometry import vertex_normals
from .mesh import RenderResult, render_mesh
from .raster import (
    BackendUnavailable,
    Fragments,
    PixelGrid,
    RayMeshes,
    RenderInputError,
    fragments_from_ids,
    rasterize,
    rasterize_pixels,
    to_camera,
    vertex_visibility,
)
from .shading import interpolate, interpolate_uv, sample_texture, sh_basis, shade_sh

__all__ = [
    "BackendUnavailable",
    "Fragments",
    "PixelGrid",
    "RayMeshes",
    "RenderInputError",
    "RenderResult",
    "fragments_from_ids",
    "interpolate",
    "interpolate_uv",
    "rasterize",
    "rasterize_pixels",
    "render_mesh",
    "sample_texture",
    "sh_basis",
    "shade_sh",
    "to_camera",
    "vertex_normals",
    "vertex_visibility",
]
