"""Detail stage: the fine layer (wrinkles, pores) of the fitted face recovered from the photos at
their full resolution by multi-view shape from shading in UV space.

The names below load on first use (PEP 562), so the light modules of this package
(:mod:`.config`, :mod:`.stagedef`) import without torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import PRESETS, DetailConfig, SolveSettings
    from .grid import (
        FaceGrid,
        SurfaceTexels,
        face_grid,
        perturbed_normals,
        surface_texels,
    )
    from .observe import ViewShading, observe_views
    from .solve import DetailSolution, albedo_trust, solve_height
    from .stage import DetailMaps, load_detail, run

_WHERE = {
    "PRESETS": "config",
    "DetailConfig": "config",
    "SolveSettings": "config",
    "FaceGrid": "grid",
    "SurfaceTexels": "grid",
    "face_grid": "grid",
    "perturbed_normals": "grid",
    "surface_texels": "grid",
    "ViewShading": "observe",
    "observe_views": "observe",
    "DetailSolution": "solve",
    "albedo_trust": "solve",
    "solve_height": "solve",
    "DetailMaps": "stage",
    "load_detail": "stage",
    "run": "stage",
}
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


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
