"""Rasterising a mesh in UV space: which triangle covers each texel, and where inside it.

The UV triangles are laid flat (z = 0) into an Open3D ray-casting scene (:class:`mvrecon.render.raycast.MeshScene`) and every texel centre
casts one ray along -z, so the whole atlas is rasterised in one vectorised call.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..render.raycast import MeshScene


@dataclass(frozen=True)
class UVRaster:
    """Per-texel triangle and barycentrics of a UV layout rasterised at ``height`` x ``width``.

    Texel (i, j) (row i from the top) has its centre at u = (j + 0.5) / W, v = 1 - (i + 0.5) / H
    (OBJ convention, v up), matching :func:`mvrecon.render.sample_texture`.
    """

    tri: np.ndarray
    """(H, W) int64 index into the triangles given to :func:`rasterize_uv` (-1 = no triangle)."""
    bary: np.ndarray
    """(H, W, 3) float32 barycentric weights of the triangle's corners (0 where ``tri`` is -1)."""

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: texels covered by a triangle."""
        return self.tri >= 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.tri.shape  # type: ignore[return-value]

    def interpolate(self, values: np.ndarray, corners: np.ndarray) -> np.ndarray:
        """Interpolate per-vertex ``values`` (N, C) through triangle ``corners`` (F, 3) vertex
        indices at the covered texels: returns (M, C) in row-major order of :attr:`mask`."""
        t = self.tri[self.mask]
        b = self.bary[self.mask]
        idx = corners[t]  # (M, 3)
        return np.einsum("mk,mkc->mc", b.astype(np.float64), np.asarray(values, np.float64)[idx])


def texel_uv(height: int, width: int) -> np.ndarray:
    """(H, W, 2) UV (v up) of every texel centre."""
    u = (np.arange(width) + 0.5) / width
    v = 1.0 - (np.arange(height) + 0.5) / height
    uu, vv = np.meshgrid(u, v)
    return np.stack([uu, vv], -1)


def rasterize_uv(uvs: np.ndarray, uv_triangles: np.ndarray, height: int, width: int) -> UVRaster:
    """Rasterise UV triangles: ``uvs`` (T, 2) in [0, 1] (v up), ``uv_triangles`` (F, 3) indices.

    Where triangles overlap in UV (mirrored charts) the first hit wins; degenerate triangles are
    never hit.
    """
    uvs = np.asarray(uvs, np.float64)
    tris = np.asarray(uv_triangles, np.int64)
    out_tri = np.full((height, width), -1, np.int64)
    out_bary = np.zeros((height, width, 3), np.float32)
    if len(tris) == 0:
        return UVRaster(out_tri, out_bary)
    pts = np.zeros((len(uvs), 3), np.float32)
    # scale to texel units so float32 keeps sub-texel precision at any atlas size
    pts[:, 0] = uvs[:, 0] * width
    pts[:, 1] = uvs[:, 1] * height
    scene = MeshScene(pts, tris)
    tuv = texel_uv(height, width).reshape(-1, 2)
    rays = np.zeros((len(tuv), 6), np.float32)
    rays[:, 0] = tuv[:, 0] * width
    rays[:, 1] = tuv[:, 1] * height
    rays[:, 2] = 1.0
    rays[:, 5] = -1.0
    hit = scene.cast(rays)
    tri = hit.triangles
    ok = tri >= 0
    # Open3D's primitive_uvs (a, b) are the weights of corners 1 and 2: p = (1-a-b) p0 + a p1 + b p2
    ab = hit.uv
    bary = np.stack([1.0 - ab[:, 0] - ab[:, 1], ab[:, 0], ab[:, 1]], -1).astype(np.float32)
    bary[~ok] = 0
    return UVRaster(tri.reshape(height, width), bary.reshape(height, width, 3))


def push_pull_fill(image: np.ndarray, weight: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    """Fill texels of zero ``weight`` from their neighbours (push-pull, Gortler et al. 1996).

    image (H, W, C), weight (H, W) >= 0. Known texels keep their value; unknown ones get a smooth
    interpolation of the nearest known ones at every scale. Where nothing at all is known the
    ``fallback`` (C,) colour is used. Returns a new array.
    """
    img = np.asarray(image, np.float64)
    w = np.clip(np.asarray(weight, np.float64), 0, None)
    if not (w > 0).any():
        fb = np.zeros(img.shape[-1]) if fallback is None else np.asarray(fallback, np.float64)
        return np.broadcast_to(fb, img.shape).astype(image.dtype).copy()
    filled = _push_pull(img * w[..., None], w)
    out = np.where((w > 0)[..., None], img, filled)
    return out.astype(image.dtype)


def _push_pull(wimg: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Recursive push-pull on premultiplied colour ``wimg`` (H, W, C) and weight ``w`` (H, W)."""
    H, W = w.shape
    val = np.divide(wimg, w[..., None], out=np.zeros_like(wimg), where=w[..., None] > 0)
    if (w > 0).all() or min(H, W) <= 1:
        if not (w > 0).all():
            mean = wimg.reshape(-1, wimg.shape[-1]).sum(0) / max(w.sum(), 1e-12)
            val[w <= 0] = mean
        return val
    # pull: 2x2 box down-sampling of premultiplied colour and weight (pad odd sizes by edge copies)
    ph, pw = H % 2, W % 2
    wp = np.pad(w, ((0, ph), (0, pw)), mode="edge")
    ip = np.pad(wimg, ((0, ph), (0, pw), (0, 0)), mode="edge")
    h2, w2 = wp.shape[0] // 2, wp.shape[1] // 2
    wd = wp.reshape(h2, 2, w2, 2).sum((1, 3))
    idn = ip.reshape(h2, 2, w2, 2, -1).sum((1, 3))
    # clamp the coarse weight so strongly covered texels do not dominate far-away holes
    scale = np.minimum(wd, 1.0) / np.maximum(wd, 1e-12)
    coarse = _push_pull(idn * scale[..., None], wd * scale)
    # push: up-sample the coarse solution and blend it in where this level is weakly covered
    up = cv2.resize(coarse, (2 * w2, 2 * h2), interpolation=cv2.INTER_LINEAR)[:H, :W]
    up = up.reshape(H, W, -1)
    a = np.minimum(w, 1.0)[..., None]
    return a * val + (1 - a) * up
