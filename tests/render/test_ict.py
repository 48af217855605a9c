"""The renderer on the real head mesh (ICT-FaceKit, ~26k vertices, inner eyes and mouth)."""

from __future__ import annotations

import numpy as np
import torch

from mvrecon.render import interpolate, interpolate_uv, rasterize, render_mesh, vertex_visibility


def _front_camera(model, size):
    v = np.asarray(model.mean, np.float64)
    centre = (v.min(0) + v.max(0)) / 2
    f = 0.7 * size * 0.6 / float((v.max(0) - v.min(0)).max())
    K = np.array([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1.0]])
    M = np.diag([1.0, -1.0, -1.0, 1.0])               # looking along -Z of the model, image y down
    M[:3, 3] = -M[:3, :3] @ (centre + [0, 0, 0.6])
    return K, M


def test_ict_head_render_is_consistent(ict_model):
    size = 96
    K, M = _front_camera(ict_model, size)
    verts = torch.tensor(ict_model.mean, dtype=torch.float32)
    faces = torch.as_tensor(np.asarray(ict_model.triangles, np.int64))
    Kt, Mt = torch.tensor(K, dtype=torch.float32)[None], torch.tensor(M, dtype=torch.float32)[None]
    frags = rasterize(verts, faces, Kt, Mt, size, size)
    assert 0.15 < frags.mask.float().mean() < 0.8
    d = frags.depth[frags.mask]
    assert d.min() > 0.4 and d.max() < 0.8
    # the interpolated surface point lies on each pixel's ray, at the reported depth (float32)
    X = interpolate(frags, faces, verts)[0].double().numpy()
    ys, xs = np.nonzero(frags.mask[0].numpy())
    cam = (np.linalg.inv(K) @ np.stack([xs, ys, np.ones_like(xs)])).T * frags.depth[0].double().numpy()[ys, xs, None]
    np.testing.assert_allclose(X[ys, xs], (cam - M[:3, 3]) @ M[:3, :3], atol=2e-5)
    # the skin (the "face" submesh) maps into UV tile 0; the other parts sit in UDIM tiles u > 1
    f0, f1 = ict_model.submesh_triangles["face"]
    uv = interpolate_uv(frags, torch.as_tensor(np.asarray(ict_model.uv_triangles, np.int64)),
                        torch.tensor(ict_model.uvs, dtype=torch.float32))
    skin = frags.mask & (frags.tri_id >= f0) & (frags.tri_id < f1)
    assert skin.sum() > 0.5 * frags.mask.sum()
    assert (uv[skin] >= -1e-5).all() and (uv[skin] <= 1 + 1e-5).all()
    # the nose tip (largest z) is seen, the back of the head (smallest z) is not
    vis = vertex_visibility(verts, faces, Kt, Mt, size, size)[0]
    z = verts[:, 2]
    assert vis[torch.argmax(z)] and not vis[torch.argmin(z)]
    assert 0.1 < vis.float().mean() < 0.7
    res = render_mesh(verts, faces, Kt, Mt, size, size, background=1.0)
    assert (res.image[~res.mask] == 1).all() and ((res.normals[res.mask] ** 2).sum(-1) - 1).abs().max() < 1e-4
