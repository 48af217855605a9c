"""Rasterisation: which triangle covers each pixel (non-differentiable, from a backend), then
perspective-correct barycentrics and depth recomputed in torch (differentiable w.r.t. vertex
positions, ``K`` and ``world_to_cam``).

The recompute is exact perspective-correct interpolation: from the corners' projected pixel
positions and depths, 2D edge functions divided by depth give the barycentrics of the pixel
centre's ray/triangle intersection (see :func:`fragments_from_ids`), using only per-vertex
projections and per-pixel gathers, so forward and backward cost O(N + covered pixels).

Only visibility (the triangle id) comes from the backend, so all backends share the same
differentiable path and agree wherever they pick the same triangle. The silhouette itself is a
hard mask (no gradient moves an edge); landmark and contour losses constrain the outline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..errors import InputError, MvreconError
from ..geometry import camera_centres
from . import raycast

Backend = Literal["auto", "raycast", "pytorch3d", "nvdiffrast"]


class RenderInputError(InputError, ValueError):
    """Tensors handed to the renderer have the wrong shape or type (a caller's bug or bad data)."""


class BackendUnavailable(MvreconError):
    """A rasteriser backend was asked for but cannot be imported or used on this machine."""


@dataclass
class Fragments:
    """Per-pixel rasterisation result for V views; ``S`` is the pixel layout, (H, W) for an image
    from :func:`rasterize`, (P,) for a pixel list from :func:`rasterize_pixels`."""

    tri_id: torch.Tensor
    """(V, *S) long: index of the triangle seen at each pixel, -1 where no triangle."""
    bary: torch.Tensor
    """(V, *S, 3) perspective-correct barycentrics of the pixel centre in ``tri_id``; 0 on background."""
    depth: torch.Tensor
    """(V, *S) camera-space z in metres; 0 on background."""
    mask: torch.Tensor
    """(V, *S) bool: a triangle covers the pixel centre."""
    # Compact per-hit copies (same autograd graph as the dense tensors) so that interpolation costs
    # O(covered pixels), not O(all pixels); rebuilt from the dense tensors when absent.
    hit_index: torch.Tensor | None = field(default=None, repr=False)
    """(P,) long: flat index of each covered pixel into ``V * prod(S)``, ascending."""
    hit_bary: torch.Tensor | None = field(default=None, repr=False)
    """(P, 3) barycentrics of the covered pixels."""

    @property
    def num_views(self) -> int:
        return int(self.tri_id.shape[0])

    def hits(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(hit_index (P,), view (P,), triangle (P,), bary (P, 3)) of the covered pixels."""
        tri = self.tri_id.reshape(-1)
        if self.hit_index is None or self.hit_bary is None:
            idx = torch.nonzero(tri >= 0).reshape(-1)
            bary = self.bary.reshape(-1, 3).index_select(0, idx)
        else:
            idx, bary = self.hit_index, self.hit_bary
        per_view = tri.numel() // max(self.num_views, 1)
        return idx, torch.div(idx, per_view, rounding_mode="floor"), tri.index_select(0, idx), bary


# --------------------------------------------------------------------------------------------
# input checks


def _check_inputs(verts: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, world_to_cam: torch.Tensor):
    """Validate and normalise shapes: returns verts (N, 3) or (V, N, 3), faces (F, 3) long on the
    verts' device, K (V, 3, 3) and world_to_cam (V, 4, 4) in the verts' dtype."""
    for name, x in (("verts", verts), ("faces", faces), ("K", K), ("world_to_cam", world_to_cam)):
        if not isinstance(x, torch.Tensor):
            raise RenderInputError(f"render: {name} must be a torch tensor, got {type(x).__name__}")
    if not verts.is_floating_point() or verts.ndim not in (2, 3) or verts.shape[-1] != 3:
        raise RenderInputError(
            f"render: verts must be float (N, 3) or (V, N, 3), got {tuple(verts.shape)} {verts.dtype}"
        )
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.is_floating_point():
        raise RenderInputError(f"render: faces must be integer (F, 3), got {tuple(faces.shape)} {faces.dtype}")
    if K.ndim == 2:
        K = K[None]
    if world_to_cam.ndim == 2:
        world_to_cam = world_to_cam[None]
    if K.shape[1:] != (3, 3) or world_to_cam.shape[1:] != (4, 4):
        raise RenderInputError(
            f"render: K must be (V, 3, 3) and world_to_cam (V, 4, 4), got "
            f"{tuple(K.shape)} and {tuple(world_to_cam.shape)}"
        )
    V = max(K.shape[0], world_to_cam.shape[0], verts.shape[0] if verts.ndim == 3 else 1)
    for name, n in (
        ("K", K.shape[0]),
        ("world_to_cam", world_to_cam.shape[0]),
        ("verts", verts.shape[0] if verts.ndim == 3 else V),
    ):
        if n not in (1, V):
            raise RenderInputError(f"render: {name} has {n} views, expected {V} (or 1)")
    K = K.to(verts.dtype).expand(V, 3, 3)
    world_to_cam = world_to_cam.to(verts.dtype).expand(V, 4, 4)
    if verts.ndim == 3 and verts.shape[0] != V:
        verts = verts.expand(V, -1, -1)
    faces = faces.to(device=verts.device, dtype=torch.long)
    n = verts.shape[-2]
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= n):
        raise RenderInputError(f"render: faces index vertices outside 0..{n - 1}")
    if not torch.isfinite(verts).all():
        raise RenderInputError("render: verts contain NaN or inf")
    return verts, faces, K, world_to_cam


def to_camera(verts: torch.Tensor, world_to_cam: torch.Tensor) -> torch.Tensor:
    """Camera-space positions (V, N, 3) of verts (N, 3) or (V, N, 3) for world_to_cam (V, 4, 4)."""
    R, t = world_to_cam[:, :3, :3], world_to_cam[:, :3, 3]
    return verts @ R.transpose(1, 2) + t[:, None]


# --------------------------------------------------------------------------------------------
# differentiable recompute


@dataclass(frozen=True)
class PixelGrid:
    """A row-major ``height x width`` block of pixel centres per view, top-left at ``origin``."""

    height: int
    """Rows of the block."""
    width: int
    """Columns of the block."""
    origin: torch.Tensor
    """(V, 2) float: (x0, y0) pixel coordinates of the block's top-left pixel in the full image."""


def _hit_pixels(pixels: torch.Tensor | PixelGrid, hit: torch.Tensor, M: int, dtype: torch.dtype) -> torch.Tensor:
    """(P, 2) pixel coordinates (x, y) of the covered pixels, flat indices ``hit`` into V * M."""
    if isinstance(pixels, PixelGrid):
        view = torch.div(hit, M, rounding_mode="floor")
        local = hit - view * M
        row = torch.div(local, pixels.width, rounding_mode="floor")
        xy = torch.stack([local - row * pixels.width, row], dim=-1).to(dtype)
        return xy + pixels.origin.to(device=hit.device, dtype=dtype).index_select(0, view)
    V = pixels.shape[0]
    return pixels.reshape(V * M, 2).index_select(0, hit).to(dtype)


def _projected_vertices(verts: torch.Tensor, K: torch.Tensor, world_to_cam: torch.Tensor) -> torch.Tensor:
    """(V*N, 3) per view and vertex: pixel x, pixel y and 1/z (z = camera-space depth)."""
    pc = to_camera(verts, world_to_cam)  # (V, N, 3)
    z = pc[..., 2]
    # vertices exactly on the camera plane are singular; the formulas below hold for any other z,
    # including z < 0 (a large triangle crossing the camera plane)
    tiny = torch.finfo(z.dtype).tiny ** 0.5
    z = torch.where(z.abs() < tiny, torch.full_like(z, tiny), z)
    inv_z = 1.0 / z
    proj = pc @ K[:, :2].transpose(1, 2)  # (V, N, 2): K rows x and y
    uv = proj * inv_z[..., None]
    return torch.cat([uv, inv_z[..., None]], dim=-1).reshape(-1, 3)


def fragments_from_ids(
    tri_id: torch.Tensor,
    verts: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    pixels: torch.Tensor | PixelGrid,
    shape: Sequence[int],
) -> Fragments:
    """Differentiable :class:`Fragments` from per-pixel triangle ids.

    tri_id (V, M) long (-1 = none) at ``pixels``: (V, M, 2) pixel coordinates (centres at integers)
    or a :class:`PixelGrid`; verts (N, 3) or (V, N, 3) world metres; faces (F, 3) long; K (V, 3, 3);
    world_to_cam (V, 4, 4); ``shape`` is the layout S with prod(S) = M.

    With the corners' pixel positions ``a_i`` and depths ``z_i``, the 2D edge functions
    ``e_i = cross(a_j - x, a_k - x)`` (cyclic) give ``bary_i = (e_i / z_i) / sum_j (e_j / z_j)`` and
    ``depth = sum_j e_j / sum_j (e_j / z_j)``: exactly the camera-space ray/triangle intersection
    (``e_i / z_i`` is ``r . (p_j x p_k)`` up to a factor common to the three corners).
    """
    V, M = tri_id.shape
    N = verts.shape[-2]
    tri_flat = tri_id.reshape(-1)
    hit = torch.nonzero(tri_flat >= 0).reshape(-1)
    view = torch.div(hit, M, rounding_mode="floor")
    pix = _hit_pixels(pixels, hit, M, verts.dtype)
    table = _projected_vertices(verts, K, world_to_cam)
    corner = faces.index_select(0, tri_flat.index_select(0, hit)) + (view * N)[:, None]
    g = table.index_select(0, corner.reshape(-1)).reshape(-1, 3, 3)  # (P, corner, [x, y, 1/z])
    du0, du1, du2 = (g[..., 0] - pix[:, 0:1]).unbind(1)
    dv0, dv1, dv2 = (g[..., 1] - pix[:, 1:2]).unbind(1)
    # plain column arithmetic: advanced indexing of the corner axis costs more than the math
    e = torch.stack([du1 * dv2 - du2 * dv1, du2 * dv0 - du0 * dv2, du0 * dv1 - du1 * dv0], dim=-1)
    q = e * g[..., 2]
    s = q.sum(-1)
    # a pixel the backend says is covered is never on an edge-on triangle; guard the exact zero only
    s = torch.where(s == 0, torch.full_like(s, torch.finfo(s.dtype).tiny), s)
    bary_hit = q / s[:, None]
    depth_hit = e.sum(-1) / s
    dtype = verts.dtype
    bary = torch.zeros(V * M, 3, dtype=dtype, device=verts.device).index_copy(0, hit, bary_hit)
    depth = torch.zeros(V * M, dtype=dtype, device=verts.device).index_copy(0, hit, depth_hit)
    shape = tuple(int(s_) for s_ in shape)
    return Fragments(
        tri_id=tri_id.reshape(V, *shape),
        bary=bary.reshape(V, *shape, 3),
        depth=depth.reshape(V, *shape),
        mask=(tri_id >= 0).reshape(V, *shape),
        hit_index=hit,
        hit_bary=bary_hit,
    )


# --------------------------------------------------------------------------------------------
# public entry points


def _resolve_backend(backend: str) -> str:
    if backend not in ("auto", "raycast", "pytorch3d", "nvdiffrast"):
        raise RenderInputError(f"render: unknown backend {backend!r} (auto, raycast, pytorch3d, nvdiffrast)")
    if backend != "auto":
        return backend
    from .backends import nvdiffrast_available

    return "nvdiffrast" if nvdiffrast_available() else "raycast"


def rasterize(
    verts: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    height: int,
    width: int,
    backend: Backend = "auto",
    window_origin: Sequence[float] | torch.Tensor | None = None,
) -> Fragments:
    """Rasterise a triangle mesh into V views (two-sided: back faces are drawn too).

    verts (N, 3) or (V, N, 3) world metres; faces (F, 3) long; K (V, 3, 3); world_to_cam (V, 4, 4)
    (OpenCV: x right, y down, z forward). Pixel (x, y) is the ray ``K^-1 [x, y, 1]`` (centres at
    integers). ``window_origin`` (2,) or (V, 2) renders the ``height x width`` window whose top-left
    pixel is (x0, y0) of the full image (a crop for the fit; K stays the full image's).
    Returns :class:`Fragments` of shape (V, height, width).
    """
    verts, faces, K, world_to_cam = _check_inputs(verts, faces, K, world_to_cam)
    height, width = int(height), int(width)
    if height <= 0 or width <= 0:
        raise RenderInputError(f"render: image size must be positive, got {width}x{height}")
    V = K.shape[0]
    origin = torch.zeros(V, 2, dtype=torch.float64)
    if window_origin is not None:
        origin = torch.as_tensor(window_origin, dtype=torch.float64).detach().cpu().reshape(-1, 2)
        if origin.shape[0] not in (1, V):
            raise RenderInputError(f"render: window_origin must be (2,) or (V, 2), got {tuple(origin.shape)}")
        origin = origin.expand(V, 2)
    grid = PixelGrid(height, width, origin)
    name = _resolve_backend(backend)
    if name == "raycast":
        v_np = verts.detach().cpu().numpy()
        if v_np.ndim == 3 and verts.stride(0) == 0:
            v_np = v_np[0]  # expanded single mesh: one scene serves all views
        tri = torch.from_numpy(
            raycast.grid_ids(
                v_np,
                faces.cpu().numpy(),
                K.detach().cpu().double().numpy(),
                world_to_cam.detach().cpu().double().numpy(),
                height,
                width,
                origin.numpy(),
            )
        )
    else:
        from . import backends

        fn = backends.pytorch3d_ids if name == "pytorch3d" else backends.nvdiffrast_ids
        tri = fn(verts, faces, K, world_to_cam, height, width, origin.to(K.device))
    return fragments_from_ids(tri.reshape(V, -1).to(verts.device), verts, faces, K, world_to_cam, grid, (height, width))


@dataclass(frozen=True)
class RayMeshes:
    """Where :func:`rasterize_pixels` casts its rays when several views see one surface moved
    rigidly (a synchronized frame seen through per-camera corrections): view ``v``'s rays leave
    camera ``world_to_cam[v]`` (V, 4, 4) towards mesh ``verts[mesh_of_view[v]]`` (M, N, 3).
    One ray-casting scene is built per mesh instead of per view. Only the triangle each ray hits
    first is taken from them; barycentrics and depth still come from the views' own vertices."""

    verts: torch.Tensor
    world_to_cam: torch.Tensor
    mesh_of_view: torch.Tensor


def rasterize_pixels(
    verts: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    pixels: torch.Tensor,
    rays: RayMeshes | None = None,
) -> Fragments:
    """Rasterise only the given pixel positions (V, P, 2) (x, y; any real values, e.g. sampled
    pixels or landmark positions). Ray-cast backend (into ``rays``'s meshes when given). Returns
    :class:`Fragments` of shape (V, P)."""
    verts, faces, K, world_to_cam = _check_inputs(verts, faces, K, world_to_cam)
    pixels = torch.as_tensor(pixels)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim != 3 or pixels.shape[-1] != 2 or pixels.shape[0] not in (1, K.shape[0]):
        raise RenderInputError(f"render: pixels must be (V, P, 2), got {tuple(pixels.shape)}")
    pixels = pixels.detach().expand(K.shape[0], -1, -1)
    if rays is None:
        tri = _raycast_ids(verts, faces, K, world_to_cam, pixels)
    else:
        if rays.world_to_cam.shape != world_to_cam.shape or len(rays.mesh_of_view) != K.shape[0]:
            raise RenderInputError("render: RayMeshes must give every view a camera and a mesh")
        tri = _raycast_ids(rays.verts, faces, K, rays.world_to_cam, pixels, rays.mesh_of_view)
    return fragments_from_ids(
        tri.to(verts.device), verts, faces, K, world_to_cam, pixels.to(verts.device), (pixels.shape[1],)
    )


def _raycast_ids(verts, faces, K, world_to_cam, pixels, mesh_of_view=None) -> torch.Tensor:
    rays = raycast.camera_rays(K, world_to_cam, pixels)
    v_np = verts.detach().cpu().numpy()
    if mesh_of_view is not None:
        tri, _ = raycast.cast(v_np, faces.cpu().numpy(), rays, mesh_of_view.cpu().numpy())
        return torch.from_numpy(tri)
    if v_np.ndim == 3 and verts.stride(0) == 0:
        v_np = v_np[0]  # expanded single mesh: one scene serves all views
    tri, _ = raycast.cast(v_np, faces.cpu().numpy(), rays)
    return torch.from_numpy(tri)


def vertex_visibility(
    verts: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    height: int,
    width: int,
    eps: float = 1e-4,
) -> torch.Tensor:
    """(V, N) bool: the vertex is in front of the camera, projects inside the image (pixel edges
    -0.5 .. size-0.5) and no triangle lies on the segment from the camera centre to it.

    ``eps`` is the relative slack along that segment (1e-4 = 0.05 mm at 0.5 m): surfaces closer
    to the vertex than that do not count as occluders, so the triangles around the vertex itself
    never do. Not differentiable (a visibility decision).
    """
    verts, faces, K, world_to_cam = _check_inputs(verts, faces, K, world_to_cam)
    with torch.no_grad():
        v64 = verts.detach().to(torch.float64).cpu()
        K64, w2c = K.detach().to(torch.float64).cpu(), world_to_cam.detach().to(torch.float64).cpu()
        pc = to_camera(v64, w2c)  # (V, N, 3)
        z = pc[..., 2]
        front = z > 0
        uvw = pc @ K64.transpose(1, 2)
        uv = uvw[..., :2] / torch.where(front, z, torch.ones_like(z))[..., None]
        inside = (
            (uv[..., 0] >= -0.5) & (uv[..., 0] <= width - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] <= height - 0.5)
        )
        centre = camera_centres(w2c)
        targets = v64.expand(K.shape[0], -1, -1) if v64.ndim == 2 else v64
        mesh = v64.numpy()
        if mesh.ndim == 3 and verts.stride(0) == 0:
            mesh = mesh[0]
        occ = raycast.occluded(mesh, faces.cpu().numpy(), centre.numpy(), targets.numpy(), eps)
        vis = front & inside & ~torch.from_numpy(occ)
    return vis.to(verts.device)
