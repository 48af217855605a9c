"""Attribute interpolation, UV texture sampling, vertex normals and spherical-harmonics shading."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from .raster import Fragments, RenderInputError


def _scatter_hits(frags: Fragments, hit_index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Dense (V, *S, C) tensor holding ``values`` (P, C) at the covered pixels and 0 elsewhere."""
    total = frags.tri_id.numel()
    out = values.new_zeros((total, values.shape[-1])).index_copy(0, hit_index, values)
    return out.reshape(*frags.tri_id.shape, values.shape[-1])


def _interpolate_hits(
    frags: Fragments, faces: torch.Tensor, attrs: torch.Tensor, what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(hit_index (P,), values (P, C)): barycentric blend of per-vertex ``attrs`` at covered pixels."""
    idx, view, tri, bary = frags.hits()
    faces = faces.to(device=tri.device, dtype=torch.long)
    V = frags.num_views
    if attrs.ndim == 2:
        table, offset = attrs, None
    elif attrs.ndim == 3 and attrs.shape[0] == 1:
        table, offset = attrs[0], None
    elif attrs.ndim == 3 and attrs.shape[0] == V:
        table, offset = attrs.reshape(-1, attrs.shape[-1]), view * attrs.shape[1]
    else:
        raise RenderInputError(f"render: {what} must be (N, C) or (V, N, C) with V={V}, got {tuple(attrs.shape)}")
    corner = faces.index_select(0, tri)  # (P, 3)
    if offset is not None:
        corner = corner + offset[:, None]
    vals = table.index_select(0, corner.reshape(-1)).reshape(-1, 3, table.shape[-1])
    return idx, (bary.to(vals.dtype)[..., None] * vals).sum(1)


def interpolate(frags: Fragments, faces: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
    """Per-vertex attributes attrs (N, C) or (V, N, C) at every pixel: (V, *S, C), 0 on background.

    ``faces`` (F, 3) indexes ``attrs``' vertices (the mesh's triangles). Differentiable w.r.t.
    ``attrs`` and, through the barycentrics, vertex positions and cameras.
    """
    if attrs.ndim not in (2, 3):
        raise RenderInputError(f"render: attrs must be (N, C) or (V, N, C), got {tuple(attrs.shape)}")
    idx, vals = _interpolate_hits(frags, faces, attrs, "attrs")
    return _scatter_hits(frags, idx, vals)


def interpolate_uv(frags: Fragments, uv_faces: torch.Tensor, uvs: torch.Tensor) -> torch.Tensor:
    """Texture coordinates (V, *S, 2) at every pixel, 0 on background.

    uv_faces (F, 3) index ``uvs`` (T, 2) (triangle i of the mesh is uv triangle i; seams make T >= N);
    uvs in [0, 1], OBJ convention (v up: v = 0 is the bottom row of the texture image). glTF stores
    v down; convert with ``v_gltf = 1 - v`` on export.
    """
    if uvs.ndim not in (2, 3) or uvs.shape[-1] != 2:
        raise RenderInputError(f"render: uvs must be (T, 2) or (V, T, 2), got {tuple(uvs.shape)}")
    if uv_faces.shape[0] != 0 and frags.tri_id.numel() and int(frags.tri_id.max()) >= uv_faces.shape[0]:
        raise RenderInputError(f"render: uv_faces has {uv_faces.shape[0]} triangles, fewer than the mesh")
    idx, vals = _interpolate_hits(frags, uv_faces, uvs, "uvs")
    return _scatter_hits(frags, idx, vals)


def sample_texture(
    texture: torch.Tensor, uv: torch.Tensor, mode: Literal["bilinear", "nearest"] = "bilinear"
) -> torch.Tensor:
    """Sample texture (C, Ht, Wt) or (V, C, Ht, Wt) at uv (V, *S, 2): returns (V, *S, C).

    uv in [0, 1] with v up (OBJ): (0, 0) is the bottom-left corner of the texture image and
    (1, 1) its top-right corner; texel (i, j) (row i from the top) has its centre at
    u = (j + 0.5) / Wt, v = 1 - (i + 0.5) / Ht. Outside [0, 1] the border texel repeats.
    Differentiable w.r.t. the texture and uv.
    """
    if mode not in ("bilinear", "nearest"):
        raise RenderInputError(f"render: sample_texture mode must be 'bilinear' or 'nearest', got {mode!r}")
    if texture.ndim not in (3, 4) or uv.shape[-1] != 2 or uv.ndim < 2:
        raise RenderInputError(
            f"render: texture must be (C, Ht, Wt) or (V, C, Ht, Wt) and uv (V, ..., 2), got "
            f"{tuple(texture.shape)} and {tuple(uv.shape)}"
        )
    V = uv.shape[0]
    spatial = uv.shape[1:-1]
    grid = uv.reshape(V, 1, -1, 2).to(texture.dtype)
    # grid_sample: x = -1 is the left edge of the first texel (align_corners=False), y = -1 the top edge
    grid = torch.stack([grid[..., 0] * 2 - 1, 1 - grid[..., 1] * 2], dim=-1)
    tex = texture[None] if texture.ndim == 3 else texture
    if tex.shape[0] not in (1, V):
        raise RenderInputError(f"render: texture has {tex.shape[0]} views, uv has {V}")
    if tex.shape[0] == 1 and V > 1:
        # one shared texture: sample all views' points in one batch instead of expanding the texture
        out = F.grid_sample(tex, grid.reshape(1, 1, -1, 2), mode=mode, padding_mode="border", align_corners=False)
        out = out.reshape(tex.shape[1], V, -1).permute(1, 2, 0)
    else:
        out = F.grid_sample(tex, grid, mode=mode, padding_mode="border", align_corners=False)
        out = out.reshape(V, tex.shape[1], -1).transpose(1, 2)
    return out.reshape(V, *spatial, tex.shape[1])


# Deep3DFaceRecon (Deng et al. 2019) constants: a_l (Lambertian kernel factors) times the real SH
# normalisation c_l, bands 0..2.
SH_A = (math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0))
SH_C = (
    1 / math.sqrt(4 * math.pi),
    math.sqrt(3.0) / math.sqrt(4 * math.pi),
    3 * math.sqrt(5.0) / math.sqrt(12 * math.pi),
)


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """Second-order real SH basis (..., 9) at unit normals (..., 3), scaled as in Deep3DFaceRecon's
    ``compute_color``: ``Y_k = a_l * y_k`` where ``y_k`` is the orthonormal real SH of band l, order
    [1, -y, z, -x, xy, -yz, (3z^2 - 1)/(2 sqrt 3) c, -xz, (x^2 - y^2)/2] (model space, +Y up,
    +Z out of the face). Deep3DFaceRecon initialises the band-0 coefficient of each colour at 0.8."""
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    a0c0 = SH_A[0] * SH_C[0]
    a1c1 = SH_A[1] * SH_C[1]
    a2c2 = SH_A[2] * SH_C[2]
    return torch.stack(
        [
            torch.full_like(x, a0c0),
            -a1c1 * y,
            a1c1 * z,
            -a1c1 * x,
            a2c2 * x * y,
            -a2c2 * y * z,
            0.5 * a2c2 / math.sqrt(3.0) * (3 * z * z - 1),
            -a2c2 * x * z,
            0.5 * a2c2 * (x * x - y * y),
        ],
        dim=-1,
    )


def _sh_quadratic(sh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Irradiance ``sh_basis(n) @ sh`` as ``n^T A n + b . n`` (constant folded into A: |n| = 1).

    sh (..., 9, 3) -> A (..., 3, 3 * 3) laid out so that ``(n @ A).view(3, 3)`` rows pair with
    n's components, and b (..., 3, 3) (component x channel). Second-order SH irradiance is exactly
    a quadratic polynomial of the normal; evaluating it this way costs two small matmuls per pixel
    instead of nine basis columns.
    """
    k0, k1, k2 = SH_A[0] * SH_C[0], SH_A[1] * SH_C[1], SH_A[2] * SH_C[2]
    k3, k4 = 0.5 * k2 / math.sqrt(3.0), 0.5 * k2
    s = sh.unbind(-2)  # nine (..., 3) coefficient rows
    const = k0 * s[0] - k3 * s[6]  # the constant term, spread over x^2+y^2+z^2 = 1
    xx = const + k4 * s[8]
    yy = const - k4 * s[8]
    zz = const + 3 * k3 * s[6]
    xy, yz, xz = 0.5 * k2 * s[4], -0.5 * k2 * s[5], -0.5 * k2 * s[7]
    A = torch.stack(
        [torch.stack([xx, xy, xz], -2), torch.stack([xy, yy, yz], -2), torch.stack([xz, yz, zz], -2)], -3
    )  # (..., 3 n_i, 3 n_j, 3 channels)
    b = torch.stack([-k1 * s[3], -k1 * s[1], k1 * s[2]], -2)  # (..., 3, 3)
    return A.flatten(-2), b


def shade_sh(albedo: torch.Tensor, normals: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
    """Lambertian SH shading ``albedo * (sh_basis(normals) @ sh)``.

    albedo (V, ..., 3) (or any shape broadcastable with the irradiance), normals (V, ..., 3) unit
    (the constant term assumes |n| = 1), sh (9, 3) shared or (V, 9, 3) per view (coefficients per
    colour channel).
    """
    if sh.shape[-2:] != (9, 3) or sh.ndim not in (2, 3):
        raise RenderInputError(f"render: sh must be (9, 3) or (V, 9, 3), got {tuple(sh.shape)}")
    sh = sh.to(normals.dtype)
    if sh.ndim == 3 and sh.shape[0] != normals.shape[0]:
        raise RenderInputError(f"render: sh has {sh.shape[0]} views, normals have {normals.shape[0]}")
    A, b = _sh_quadratic(sh)
    n = normals.reshape(sh.shape[0], -1, 3) if sh.ndim == 3 else normals.reshape(-1, 3)
    quad = (n @ A).unflatten(-1, (3, 3))  # (..., P, 3 n_j, 3 channels)
    irradiance = (quad * n[..., None]).sum(-2) + n @ b
    return albedo * irradiance.reshape(*normals.shape[:-1], 3)
