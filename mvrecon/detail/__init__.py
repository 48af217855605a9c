"""Detail stage: the fine layer (wrinkles, pores) of the fitted face recovered from the photos at
their full resolution by multi-view shape from shading in UV space."""

from .grid import FaceGrid, SurfaceTexels, face_grid, perturbed_normals, surface_texels
from .observe import ViewShading, observe_views
from .solve import DetailSolution, SolveSettings, albedo_trust, solve_height
from .stage import PRESETS, DetailConfig, DetailMaps, load_detail, run

__all__ = [
           "PRESETS",
           "DetailConfig",
           "DetailMaps",
           "DetailSolution",
           "FaceGrid",
           "SolveSettings",
           "SurfaceTexels",
           "ViewShading",
           "albedo_trust",
           "face_grid",
           "load_detail",
           "observe_views",
           "perturbed_normals",
           "run",
           "solve_height",
           "surface_texels",
]
