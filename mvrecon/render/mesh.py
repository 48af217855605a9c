"""One call that renders a shaded mesh: rasterise, interpolate colours or sample a texture, shade
with SH lighting, composite over a background."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..geometry import vertex_normals
from .raster import Backend, Fragments, RenderInputError, rasterize
from .shading import _interpolate_hits, _scatter_hits, sample_texture, shade_sh


@dataclass
class RenderResult:
    """Output of :func:`render_mesh` for V views of H x W pixels."""

    image: torch.Tensor
    """(V, H, W, 3) shaded colour composited over the background."""
    mask: torch.Tensor
    """(V, H, W) bool: the mesh covers the pixel."""
    depth: torch.Tensor
    """(V, H, W) camera-space z in metres, 0 on background."""
    normals: torch.Tensor
    """(V, H, W, 3) unit world-space normals (interpolated vertex normals), 0 on background."""
    frags: Fragments
    """The rasterisation, for further interpolation."""
    albedo: torch.Tensor
    """(V, H, W, 3) unshaded colour, 0 on background."""


def render_mesh(
    verts: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    H: int,
    W: int,
    *,
    vertex_colors: torch.Tensor | None = None,
    uv_faces: torch.Tensor | None = None,
    uvs: torch.Tensor | None = None,
    texture: torch.Tensor | None = None,
    sh: torch.Tensor | None = None,
    background: float | torch.Tensor = 0.0,
    backend: Backend = "auto",
    window_origin=None,
    frags: Fragments | None = None,
) -> RenderResult:
    """Render V views of a mesh.

    verts (N, 3) or (V, N, 3) world metres, faces (F, 3), K (V, 3, 3), world_to_cam (V, 4, 4).
    Colour from ``vertex_colors`` (N, 3) / (V, N, 3), or ``texture`` (3, Ht, Wt) / (V, 3, Ht, Wt)
    sampled at ``uvs`` (T, 2) through ``uv_faces`` (F, 3) (defaults to ``faces``), or white.
    ``sh`` (9, 3) or (V, 9, 3) shades it (see :func:`shade_sh`); without it the colour is unlit.
    ``background`` is a scalar, (3,) colour or (V, H, W, 3) image.
    ``frags``: fragments already rasterised (e.g. :func:`mvrecon.render.raster.rasterize_pixels`
    for a chosen set of pixels, shape (V, P)); then ``H``, ``W`` are not used and the outputs have
    the fragments' shape.
    """
    if frags is None:
        frags = rasterize(verts, faces, K, world_to_cam, H, W, backend=backend, window_origin=window_origin)
    faces = faces.to(device=verts.device, dtype=torch.long)
    idx, view, _, _ = frags.hits()
    normals = vertex_normals(verts, faces)
    if texture is None and vertex_colors is not None:
        # normals and colours share the triangles: one gather and one blend for both
        if vertex_colors.ndim not in (2, 3) or vertex_colors.shape[-2:] != normals.shape[-2:]:
            raise RenderInputError(
                f"render: vertex_colors must be (N, 3) or (V, N, 3) like verts, got {tuple(vertex_colors.shape)}"
            )
        if vertex_colors.shape[:-1] != normals.shape[:-1]:
            V = frags.num_views
            normals, vertex_colors = (
                x.expand(V, -1, -1) if x.ndim == 2 or x.shape[0] == 1 else x for x in (normals, vertex_colors)
            )
        both = torch.cat([normals, vertex_colors.to(normals.dtype)], dim=-1)
        _, both_hit = _interpolate_hits(frags, faces, both, "vertex_colors")
        n_hit, albedo_hit = both_hit[:, :3], both_hit[:, 3:]
    else:
        _, n_hit = _interpolate_hits(frags, faces, normals, "normals")
        if texture is not None:
            if uvs is None:
                raise RenderInputError("render: a texture needs uvs (T, 2)")
            _, uv_hit = _interpolate_hits(frags, faces if uv_faces is None else uv_faces, uvs, "uvs")
            albedo_hit = _sample_hits(texture, uv_hit, view, frags.num_views)
        else:
            albedo_hit = n_hit.new_ones(n_hit.shape[0], 3)
    n_hit = F.normalize(n_hit, dim=-1, eps=1e-20)
    if sh is not None:
        if sh.ndim == 3:
            if sh.shape[0] != frags.num_views:
                raise RenderInputError(f"render: sh has {sh.shape[0]} views, expected {frags.num_views}")
            # per-view lighting: hits are sorted by view, so each view's block gets one matmul
            counts = torch.bincount(view, minlength=frags.num_views).tolist()
            color_hit = torch.cat(
                [
                    shade_sh(a, n, sh[v])
                    for v, (a, n) in enumerate(zip(torch.split(albedo_hit, counts), torch.split(n_hit, counts)))
                ],
                dim=0,
            )
        else:
            color_hit = shade_sh(albedo_hit, n_hit, sh)
    else:
        color_hit = albedo_hit
    # start from the background and write the covered pixels: no separate compositing pass
    shape = (*frags.tri_id.shape, 3)
    bg = torch.as_tensor(background, dtype=color_hit.dtype, device=color_hit.device)
    if bg.ndim not in (0, 1, 4) or (bg.ndim and bg.shape[-1] != 3):
        raise RenderInputError(f"render: background must be a scalar, (3,) or (V, H, W, 3), got {tuple(bg.shape)}")
    image = bg.expand(shape).reshape(-1, 3).index_copy(0, idx, color_hit).reshape(shape)  # out of place
    return RenderResult(
        image=image,
        mask=frags.mask,
        depth=frags.depth,
        normals=_scatter_hits(frags, idx, n_hit),
        frags=frags,
        albedo=_scatter_hits(frags, idx, albedo_hit),
    )


def _sample_hits(texture: torch.Tensor, uv_hit: torch.Tensor, view: torch.Tensor, V: int) -> torch.Tensor:
    """Bilinear texture colours (P, C) at the covered pixels' uv (P, 2) (only covered pixels are sampled)."""
    if texture.ndim == 3 or texture.shape[0] == 1:
        tex = texture if texture.ndim == 3 else texture[0]
        return sample_texture(tex, uv_hit[None])[0]
    if texture.shape[0] != V:
        raise RenderInputError(f"render: texture has {texture.shape[0]} views, expected {V}")
    out = uv_hit.new_zeros(uv_hit.shape[0], texture.shape[1]).to(texture.dtype)
    counts = torch.bincount(view, minlength=V).tolist()
    parts = [sample_texture(texture[v], chunk[None])[0] for v, chunk in enumerate(torch.split(uv_hit, counts))]
    return torch.cat(parts, 0) if parts else out
