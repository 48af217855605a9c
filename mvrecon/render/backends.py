"""Optional GPU rasteriser backends. They only decide which triangle covers each pixel; the
differentiable barycentrics and depth are recomputed by :func:`mvrecon.render.raster.fragments_from_ids`,
so every backend follows the same OpenCV pixel convention (centres at integer coordinates).

Both are imported lazily; neither is installable on the CPU machines mvrecon is tested on, so
this code follows the libraries' documented APIs and is exercised only where they exist.
"""

from __future__ import annotations

import functools

import torch

from .raster import BackendUnavailable, to_camera

#: Device nvdiffrast rasterises on (its CUDA context), whatever device the caller's tensors use.
NVDIFFRAST_DEVICE = "cuda"


def _import_pytorch3d():
    try:
        from pytorch3d.renderer import MeshRasterizer, RasterizationSettings
        from pytorch3d.structures import Meshes
        from pytorch3d.utils import cameras_from_opencv_projection
    except ImportError as e:
        raise BackendUnavailable(
            f"render backend 'pytorch3d' requested but pytorch3d is not importable ({e}); use backend='raycast'"
        ) from None
    return MeshRasterizer, RasterizationSettings, Meshes, cameras_from_opencv_projection


def _import_nvdiffrast():
    try:
        import nvdiffrast.torch as dr
    except ImportError as e:
        raise BackendUnavailable(
            f"render backend 'nvdiffrast' requested but nvdiffrast is not importable ({e}); use backend='raycast'"
        ) from None
    if not torch.cuda.is_available():
        raise BackendUnavailable("render backend 'nvdiffrast' needs CUDA, and torch sees no GPU; use backend='raycast'")
    return dr


def nvdiffrast_available() -> bool:
    """True when nvdiffrast imports and torch has a CUDA device (what backend='auto' prefers)."""
    try:
        _import_nvdiffrast()
    except BackendUnavailable:
        return False
    return True


def pytorch3d_ids(
    verts: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    height: int,
    width: int,
    origin: torch.Tensor,
) -> torch.Tensor:
    """(V, H, W) triangle ids (-1 = none) from pytorch3d's MeshRasterizer.

    ``origin`` (V, 2) is the window's top-left pixel. pytorch3d puts pixel centres at half-integers
    and ``cameras_from_opencv_projection`` does not add the half pixel (pytorch3d issue #1543), so it
    is added to the principal point here.
    """
    MeshRasterizer, RasterizationSettings, Meshes, cameras_from_opencv_projection = _import_pytorch3d()
    V, F = K.shape[0], faces.shape[0]
    with torch.no_grad():
        Kp = K.detach().float().clone()
        Kp[:, 0, 2] += 0.5 - origin[:, 0].float()
        Kp[:, 1, 2] += 0.5 - origin[:, 1].float()
        w2c = world_to_cam.detach().float()
        cams = cameras_from_opencv_projection(
            R=w2c[:, :3, :3],
            tvec=w2c[:, :3, 3],
            camera_matrix=Kp,
            image_size=torch.tensor([[height, width]] * V, dtype=torch.float32, device=K.device),
        )
        vv = verts.detach().float()
        vv = vv.expand(V, -1, -1) if vv.ndim == 2 else vv
        meshes = Meshes(verts=list(vv), faces=[faces] * V)
        settings = RasterizationSettings(
            image_size=(height, width),
            blur_radius=0.0,
            faces_per_pixel=1,
            perspective_correct=False,
            cull_backfaces=False,
        )
        frags = MeshRasterizer(cameras=cams, raster_settings=settings)(meshes)
        p2f = frags.pix_to_face[..., 0].long()
        # packed face index -> per-mesh index (mesh v's faces start at v * F)
        offset = torch.arange(V, device=p2f.device)[:, None, None] * F
        return torch.where(p2f >= 0, p2f - offset, torch.full_like(p2f, -1))


@functools.lru_cache(maxsize=1)
def _cuda_context():
    return _import_nvdiffrast().RasterizeCudaContext()


def nvdiffrast_ids(
    verts: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    height: int,
    width: int,
    origin: torch.Tensor,
) -> torch.Tensor:
    """(V, H, W) triangle ids (-1 = none) from nvdiffrast's CUDA rasteriser.

    The OpenCV camera becomes an OpenGL clip-space projection whose NDC [-1, 1] spans the pixel
    edges -0.5 .. size-0.5 (as :func:`mvrecon.cameras.opengl_projection`); nvdiffrast's row 0 is
    NDC y = -1, the image bottom, so rows are flipped to OpenCV's top-first order.
    """
    dr = _import_nvdiffrast()
    with torch.no_grad():
        pc = to_camera(verts.detach(), world_to_cam.detach()).float()  # (V, N, 3) OpenCV camera
        z = pc[..., 2]
        front = z[z > 0]
        near = float(front.min()) * 0.5 if front.numel() else 0.01
        far = float(z.max()) * 2.0 + near
        Kf = K.detach().float()
        fx, fy, s = Kf[:, 0, 0], Kf[:, 1, 1], Kf[:, 0, 1]
        cx = Kf[:, 0, 2] - origin[:, 0].float()
        cy = Kf[:, 1, 2] - origin[:, 1].float()
        P = torch.zeros(K.shape[0], 4, 4, device=pc.device)
        P[:, 0, 0] = 2 * fx / width
        P[:, 0, 1] = -2 * s / width
        P[:, 0, 2] = 1 - 2 * (cx + 0.5) / width
        P[:, 1, 1] = 2 * fy / height
        P[:, 1, 2] = 2 * (cy + 0.5) / height - 1
        P[:, 2, 2] = -(far + near) / (far - near)
        P[:, 2, 3] = -2 * far * near / (far - near)
        P[:, 3, 2] = -1
        gl = pc * torch.tensor([1.0, -1.0, -1.0], device=pc.device)  # OpenCV -> OpenGL camera axes
        clip = torch.cat([gl, torch.ones_like(gl[..., :1])], dim=-1) @ P.transpose(1, 2)
        # nvdiffrast runs on the GPU whatever device the caller's tensors are on
        rast, _ = dr.rasterize(
            _cuda_context(),
            clip.to(NVDIFFRAST_DEVICE).contiguous(),
            faces.to(device=NVDIFFRAST_DEVICE, dtype=torch.int32).contiguous(),
            resolution=[height, width],
        )
        tri = rast[..., 3].round().long().to(pc.device) - 1  # 0 = empty in nvdiffrast
        return tri.flip(1)
