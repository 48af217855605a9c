"""The optional GPU backends only supply triangle ids; their camera conversion is checked here
against the ray-cast backend with a stand-in for nvdiffrast that follows its documented
conventions (clip-space input, NDC y = -1 on row 0, rast[..., 3] = triangle id + 1)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from mvrecon.render import backends, rasterize
from render_reference import icosphere, intrinsics, look_at_w2c, random_rotation


def _fake_rasterize(glctx, pos, tri, resolution):
    """Nearest-depth triangle per pixel centre from clip-space positions, numpy, nvdiffrast layout."""
    H, W = resolution
    pos, tri = pos.detach().double().numpy(), tri.numpy()
    out = np.zeros((pos.shape[0], H, W, 4), np.float32)
    ys, xs = np.mgrid[0:H, 0:W].astype(float)
    for b in range(pos.shape[0]):
        ndc = pos[b, :, :3] / pos[b, :, 3:4]
        col = (ndc[:, 0] + 1) * W / 2 - 0.5          # pixel j spans NDC [2j/W - 1, 2(j+1)/W - 1]
        row = (ndc[:, 1] + 1) * H / 2 - 0.5          # row 0 at NDC y = -1
        zbuf = np.full((H, W), np.inf)
        for fi, (i, j, k) in enumerate(tri):
            a, bb, c = np.array([col[i], row[i]]), np.array([col[j], row[j]]), np.array([col[k], row[k]])
            area = (bb[0] - a[0]) * (c[1] - a[1]) - (bb[1] - a[1]) * (c[0] - a[0])
            if abs(area) < 1e-12:
                continue
            l0 = ((c[0] - bb[0]) * (ys - bb[1]) - (c[1] - bb[1]) * (xs - bb[0])) / area
            l1 = ((a[0] - c[0]) * (ys - c[1]) - (a[1] - c[1]) * (xs - c[0])) / area
            l2 = 1 - l0 - l1
            inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
            # NDC depth is affine in screen space for a planar triangle
            z = l0 * ndc[i, 2] + l1 * ndc[j, 2] + l2 * ndc[k, 2]
            win = inside & (z < zbuf)
            zbuf[win] = z[win]
            out[b, win, 3] = fi + 1
    return torch.from_numpy(out), None


@pytest.fixture
def fake_nvdiffrast(monkeypatch):
    dr = types.ModuleType("nvdiffrast.torch")
    dr.RasterizeCudaContext = lambda: object()
    dr.rasterize = _fake_rasterize
    pkg = types.ModuleType("nvdiffrast")
    pkg.torch = dr
    monkeypatch.setitem(sys.modules, "nvdiffrast", pkg)
    monkeypatch.setitem(sys.modules, "nvdiffrast.torch", dr)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(backends, "NVDIFFRAST_DEVICE", "cpu")
    backends._cuda_context.cache_clear()
    yield
    backends._cuda_context.cache_clear()


def test_nvdiffrast_adapter_matches_raycast(fake_nvdiffrast, rng):
    verts, faces = icosphere(2, radius=0.1)
    verts = verts @ random_rotation(rng).T
    H, W = 30, 40
    K = torch.tensor(np.stack([intrinsics(70, 66, 19.2, 14.6, 0.5), intrinsics(80, 80, 21.0, 13.0)]))
    M = torch.tensor(np.stack([look_at_w2c([0.1, 0.05, 0.5]), look_at_w2c([-0.2, 0.0, 0.45])]))
    vt, ft = torch.tensor(verts), torch.as_tensor(faces)
    assert backends.nvdiffrast_available()
    ray = rasterize(vt, ft, K, M, H, W, backend="raycast")
    nv = rasterize(vt, ft, K, M, H, W, backend="nvdiffrast")
    same = (nv.tri_id == ray.tri_id).float().mean()
    assert same > 0.995 and ray.mask.sum() > 500        # only pixel centres on an edge may differ
    both = nv.mask & ray.mask & (nv.tri_id == ray.tri_id)
    assert torch.allclose(nv.bary[both], ray.bary[both])
    # a window is a shifted principal point for nvdiffrast
    win = rasterize(vt, ft, K, M, 12, 16, backend="nvdiffrast", window_origin=(9, 7))
    assert (win.tri_id == ray.tri_id[:, 7:19, 9:25]).float().mean() > 0.99


def test_auto_prefers_nvdiffrast_when_usable(fake_nvdiffrast):
    from mvrecon.render.raster import _resolve_backend

    assert _resolve_backend("auto") == "nvdiffrast"
    assert _resolve_backend("raycast") == "raycast"


def test_auto_without_gpu_is_raycast(monkeypatch):
    from mvrecon.render.raster import _resolve_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _resolve_backend("auto") == "raycast"
