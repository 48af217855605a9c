"""The asset's materials and their texture atlases, derived from the model's UDIM-style UV tiles.

ICT-FaceKit spreads its sub-meshes over UV tiles side by side (face u in [0, 1), head/neck and the
mouth/eye sockets [1, 2), gums and tongue [2, 3), teeth [3, 4), lacrimal fluid [4, 6), eyelashes
[6, 7); the eyeballs and eye helpers reuse tile 0). A game engine wants one texture per material,
so each material maps its tiles into [0, 1] with an affine ``u' = (u - u0) / n_tiles``; the
texture of a material spanning n tiles is n times as wide as it is high, so texel density is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..facemodel import FaceModel


@dataclass(frozen=True)
class Material:
    """One material of the exported head and the sub-meshes it covers."""

    name: str
    submeshes: tuple[str, ...]
    """Model sub-meshes drawn with this material (missing ones are skipped)."""
    u0: float
    """First UV tile of the atlas (``None``-like negative: fold every tile onto [0, 1))."""
    n_tiles: int
    """Tiles the atlas spans side by side (its texture is n_tiles times as wide as high)."""
    textured: bool
    """Has a baked or procedural base-colour texture (else a constant colour)."""
    color: tuple[float, float, float, float]
    """Linear RGBA base-colour factor (the texture is multiplied by it)."""
    roughness: float
    """PBR roughness in [0, 1]."""
    blend: bool = False
    """Alpha-blended (the transparent eye helpers)."""


MATERIALS: tuple[Material, ...] = (
    Material(
        "skin",
        ("face", "head_neck", "mouth_socket", "eye_socket_left", "eye_socket_right"),
        0,
        2,
        True,
        (1, 1, 1, 1),
        0.55,
    ),
    Material("eyes", ("eyeball_left", "eyeball_right"), 0, 1, True, (1, 1, 1, 1), 0.1),
    Material("mouth", ("gums_tongue", "teeth"), 2, 2, True, (1, 1, 1, 1), 0.35),
    # alpha-tested strands (texture from :func:`mvrecon.texture.bake.lash_texture`), not a black ribbon
    Material("eyelashes", ("eyelashes_left", "eyelashes_right"), 6, 1, True, (1, 1, 1, 1), 0.8),
    # lacrimal film, eye blend and occlusion shells: a thin clear film over the eyes that shows
    # as a specular glint (nearly no colour of its own: at more it reads as a grey band)
    Material(
        "eye_wet",
        (
            "lacrimal_fluid_left",
            "lacrimal_fluid_right",
            "eye_blend_left",
            "eye_blend_right",
            "eye_occlusion_left",
            "eye_occlusion_right",
        ),
        -1,
        1,
        False,
        (1.0, 1.0, 1.0, 0.02),
        0.05,
        blend=True,
    ),
)


def material(name: str) -> Material:
    for m in MATERIALS:
        if m.name == name:
            return m
    raise KeyError(name)


def material_triangles(model: FaceModel, mat: Material) -> np.ndarray:
    """Indices (M,) into ``model.triangles`` drawn with ``mat`` (all triangles for a model without
    sub-meshes when ``mat`` is skin, none otherwise)."""
    if not model.submesh_triangles:
        return np.arange(len(model.triangles)) if mat.name == "skin" else np.zeros(0, np.int64)
    parts = [np.arange(*model.submesh_triangles[s]) for s in mat.submeshes if s in model.submesh_triangles]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def atlas_uv(uv: np.ndarray, mat: Material) -> np.ndarray:
    """Model UVs (..., 2) (v up) -> the material atlas's UVs in [0, 1] (v up). Returns a new array."""
    out = np.array(uv, np.float64, copy=True)
    if mat.u0 < 0:
        out[..., 0] = out[..., 0] - np.floor(out[..., 0])
    else:
        out[..., 0] = (out[..., 0] - mat.u0) / mat.n_tiles
    return out


def corner_uvs(model: FaceModel, tri_ids: np.ndarray, mat: Material) -> np.ndarray:
    """(M, 3, 2) atlas UVs of the corners of triangles ``tri_ids``."""
    if model.uvs.shape[0] == 0:
        return np.zeros((len(tri_ids), 3, 2))
    return atlas_uv(model.uvs[model.uv_triangles[tri_ids]], mat)
