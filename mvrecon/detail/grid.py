"""The face tile as a texel grid on the fitted surface: per texel its 3D point, normal and UV
tangent frame, the geometry a height field ``h(u, v)`` along the normal is defined on.

The grid covers the model's face sub-mesh in its UV tile 0 (u, v in [0, 1], v up); texel (i, j)
(row i from the top) has its centre at u = (j + 0.5) / R, v = 1 - (i + 0.5) / R, as everywhere in
:mod:`mvrecon.texture`. It is also the left half of the skin atlas (atlas u' = u / 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fit.result import FittedHead
from ..geometry import vertex_normals
from ..texture.uvraster import UVRaster, rasterize_uv


@dataclass(frozen=True)
class FaceGrid:
    """Texel grid of the face tile at ``size`` x ``size`` (only the layout, no geometry)."""

    size: int
    raster: UVRaster
    """Per texel its face triangle (index into ``tri_ids``) and barycentrics."""
    tri_ids: np.ndarray
    """(F,) model triangle ids of the face sub-mesh."""
    uv_corners: np.ndarray
    """(F, 3, 2) corner UVs of those triangles (face tile, v up)."""

    @property
    def mask(self) -> np.ndarray:
        """(R, R) bool: texels on the face."""
        return self.raster.mask


@dataclass(frozen=True)
class SurfaceTexels:
    """The fitted surface of one expression group at the covered texels (M = mask.sum(), row-major)."""

    points: np.ndarray
    """(M, 3) world metres."""
    normals: np.ndarray
    """(M, 3) unit world normals (vertex normals interpolated, as the renderers shade)."""
    dp_du: np.ndarray
    """(M, 3) metres per UV unit along u (the triangle's tangent, unnormalised)."""
    dp_dv: np.ndarray
    """(M, 3) metres per UV unit along v (up)."""

    def metric_inverse(self) -> np.ndarray:
        """(M, 2, 2) inverse of the first fundamental form [[Tu.Tu, Tu.Tv], [Tv.Tu, Tv.Tv]]."""
        a = np.einsum("mc,mc->m", self.dp_du, self.dp_du)
        b = np.einsum("mc,mc->m", self.dp_du, self.dp_dv)
        c = np.einsum("mc,mc->m", self.dp_dv, self.dp_dv)
        det = np.maximum(a * c - b * b, 1e-30)
        return np.stack([np.stack([c, -b], -1), np.stack([-b, a], -1)], -2) / det[:, None, None]

    def texel_mm(self, size: int) -> float:
        """Median texel edge (mm) on the surface."""
        return float(np.median(np.linalg.norm(self.dp_du, axis=1))) / size * 1e3


def face_grid(head: FittedHead, size: int) -> FaceGrid:
    """The face tile's texel grid of the fitted head's model at ``size`` x ``size``."""
    model = head.model
    if "face" in model.submesh_triangles:
        tri_ids = np.arange(*model.submesh_triangles["face"])
    else:
        tri_ids = np.arange(len(model.triangles))
    uv = model.uvs[model.uv_triangles[tri_ids]].astype(np.float64)
    # only triangles in tile 0 (the face tile); others would fold onto it
    keep = (uv[..., 0].max(1) <= 1.0 + 1e-6) & (uv[..., 0].min(1) >= -1e-6)
    tri_ids, uv = tri_ids[keep], uv[keep]
    raster = rasterize_uv(uv.reshape(-1, 2), np.arange(3 * len(tri_ids)).reshape(-1, 3), size, size)
    return FaceGrid(size, raster, tri_ids, uv)


def surface_texels(head: FittedHead, grid: FaceGrid, group: int, detail: bool = True) -> SurfaceTexels:
    """The fitted world surface of ``group`` at the grid's texels (``detail``: with the fit's own
    fused displacement, the surface the texture bake samples)."""
    return surface_of(head.model, grid, head.world(group, detail=detail))


def surface_of(model, grid: FaceGrid, verts: np.ndarray) -> SurfaceTexels:
    """The surface of ``verts`` (N, 3) (any frame: world, model space) at the grid's texels."""
    corners = model.triangles[grid.tri_ids]
    n = vertex_normals(verts, model.render_triangles()).astype(np.float32)
    P = grid.raster.interpolate(verts, corners)
    N = grid.raster.interpolate(n, corners)
    N /= np.maximum(np.linalg.norm(N, axis=1, keepdims=True), 1e-12)
    p = verts[corners]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    uv = grid.uv_corners
    d1, d2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    r = np.where(np.abs(det) > 1e-20, 1.0 / np.where(np.abs(det) > 1e-20, det, 1.0), 0.0)[:, None]
    Tu = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r
    Tv = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r
    t = grid.raster.tri[grid.mask]
    return SurfaceTexels(P, N, Tu[t], Tv[t])


def scatter(mask: np.ndarray, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Values (M, ...) at the mask's texels (row-major) as a (R, R, ...) float32 image."""
    out = np.full(mask.shape + values.shape[1:], fill, np.float32)
    out[mask] = values
    return out


def uv_gradient(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of a (R, R) map per UV unit: (dh/du, dh/dv), v up (rows run down)."""
    R = h.shape[0]
    p = np.pad(h, 1, mode="edge")
    du = (p[1:-1, 2:] - p[1:-1, :-2]) * (R / 2.0)
    dv = (p[:-2, 1:-1] - p[2:, 1:-1]) * (R / 2.0)
    return du, dv


def perturbed_normals(surf: SurfaceTexels, mask: np.ndarray, h: np.ndarray) -> np.ndarray:
    """(M, 3) unit normals of the surface displaced by ``h`` (R, R) metres along its normal:
    n' = normalize(N - grad_S h) (the surface gradient from the UV derivatives and the metric)."""
    du, dv = uv_gradient(h)
    g = np.stack([du[mask], dv[mask]], -1)
    ab = np.einsum("mij,mj->mi", surf.metric_inverse(), g)
    grad = ab[:, :1] * surf.dp_du + ab[:, 1:] * surf.dp_dv
    n = surf.normals - grad
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
