"""Interpolation, UV textures, vertex normals, visibility, SH lighting and render_mesh."""

from __future__ import annotations

import math

import numpy as np
import torch

from mvrecon.render import (interpolate, interpolate_uv, rasterize, render_mesh, sample_texture, sh_basis, shade_sh,
                            vertex_normals, vertex_visibility)
from render_reference import icosphere, intrinsics, look_at_w2c, random_rotation


def _t(x, dtype=torch.float64):
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def _quad(half=0.1, z=0.0):
    """A square facing +Z (towards a camera on the +Z axis), uv (0,0) bottom-left, (1,1) top-right."""
    verts = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uvs = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    return verts, faces, uvs


def _front_camera(H, W, dist=0.5, f=None):
    f = f or 1.2 * W
    return _t(intrinsics(f, f, (W - 1) / 2, (H - 1) / 2))[None], _t(look_at_w2c([0, 0, dist]))[None]


def test_uv_and_texture_sampling_on_a_known_texture():
    """A fronto-parallel quad: uv is affine in the pixel position, and bilinear sampling of a texture
    that is linear in its texel centres reproduces that linear function exactly."""
    H, W = 40, 40
    verts, faces, uvs = _quad()
    K, M = _front_camera(H, W)
    ft = torch.as_tensor(faces)
    frags = rasterize(_t(verts), ft, K, M, H, W)
    uv = interpolate_uv(frags, ft, _t(uvs))
    ys, xs = np.nonzero(frags.mask[0].numpy())
    # analytic uv of the pixel ray's hit on the plane z = 0 (camera at z = 0.5, image y down)
    f, c = K[0, 0, 0].item(), K[0, 0, 2].item()
    X, Y = (xs - c) / f * 0.5, -(ys - c) / f * 0.5
    np.testing.assert_allclose(uv[0, ys, xs, 0].numpy(), (X + 0.1) / 0.2, atol=1e-12)
    np.testing.assert_allclose(uv[0, ys, xs, 1].numpy(), (Y + 0.1) / 0.2, atol=1e-12)
    assert len(ys) > 300

    Ht, Wt = 16, 24
    i, j = np.mgrid[0:Ht, 0:Wt].astype(float)
    u_c, v_c = (j + 0.5) / Wt, 1 - (i + 0.5) / Ht              # texel centres, v up
    tex = _t(np.stack([2 * u_c - 0.5, 3 * v_c + 1, u_c + v_c]))
    colour = sample_texture(tex, uv)
    inner = (uv[0, ys, xs] > 0.05).all(-1) & (uv[0, ys, xs] < 0.95).all(-1)   # away from the border clamp
    u, v = uv[0, ys, xs, 0][inner], uv[0, ys, xs, 1][inner]
    expect = torch.stack([2 * u - 0.5, 3 * v + 1, u + v], -1)
    assert torch.allclose(colour[0, ys, xs][inner], expect, atol=1e-12)
    assert inner.sum() > 200


def test_sample_texture_orientation_nearest_and_batching(rng):
    Ht, Wt = 8, 6
    tex = torch.from_numpy(rng.uniform(size=(3, Ht, Wt)))
    rows, cols = np.array([0, 7, 3, 5]), np.array([0, 5, 2, 1])
    uv = torch.from_numpy(np.stack([(cols + 0.5) / Wt, 1 - (rows + 0.5) / Ht], -1))[None]   # (1, 4, 2)
    for mode in ("bilinear", "nearest"):
        got = sample_texture(tex, uv, mode=mode)
        assert got.shape == (1, 4, 3)
        assert torch.allclose(got[0], tex[:, rows, cols].T, atol=1e-12)
    # v up: the bottom-left texel is at small u and small v
    corner = sample_texture(tex, torch.tensor([[[0.01, 0.01]]], dtype=torch.float64), mode="nearest")
    assert torch.allclose(corner[0, 0], tex[:, Ht - 1, 0])
    # a shared texture sampled for two views equals per-view textures
    uv2 = torch.from_numpy(rng.uniform(size=(2, 5, 7, 2)))
    shared = sample_texture(tex, uv2)
    per_view = sample_texture(tex[None].repeat(2, 1, 1, 1), uv2)
    assert shared.shape == (2, 5, 7, 3) and torch.allclose(shared, per_view, atol=1e-12)


def test_interpolate_per_view_attributes_and_gradient(rng):
    verts, faces = icosphere(1, radius=0.1)
    H, W = 24, 24
    K, M = _front_camera(H, W)
    K, M = K.expand(2, 3, 3), M.expand(2, 4, 4)
    ft = torch.as_tensor(faces)
    frags = rasterize(_t(verts), ft, K, M, H, W)
    a = torch.from_numpy(rng.normal(size=(2, len(verts), 4))).requires_grad_(True)
    out = interpolate(frags, ft, a)
    assert out.shape == (2, H, W, 4)
    single = interpolate(frags, ft, a[1].detach())
    assert torch.allclose(out[1], single[1]) and not torch.allclose(out[0], single[0])
    assert (out[~frags.mask] == 0).all()
    out[0].sum().backward()
    # gradient of a sum over pixels = total barycentric weight per vertex, only from view 0
    expect = torch.zeros(len(verts), dtype=torch.float64)
    tri, bary = frags.tri_id[0][frags.mask[0]], frags.bary[0][frags.mask[0]].detach()
    expect.index_add_(0, ft[tri].reshape(-1), bary.reshape(-1))
    assert torch.allclose(a.grad[0], expect[:, None].expand(-1, 4)) and (a.grad[1] == 0).all()


def test_vertex_normals_sphere_and_area_weighting(rng):
    verts, faces = icosphere(2)
    n = vertex_normals(_t(verts), torch.as_tensor(faces))
    assert ((n * _t(verts)).sum(-1) > 0.999).all()
    # two triangles sharing vertex 0 with different areas and directions: area-weighted average
    v = _t([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 3], [0, -2, 0]])
    f = torch.tensor([[0, 1, 2], [0, 3, 4]])
    n = vertex_normals(v, f)
    expect = torch.tensor([6.0, 0.0, 1.0])      # sum of cross products (2 * area * normal): (0,0,1)*1 + (1,0,0)*6
    assert torch.allclose(n[0], expect.double() / expect.norm())
    batched = vertex_normals(_t(verts)[None].repeat(2, 1, 1), torch.as_tensor(faces))
    assert batched.shape == (2, len(verts), 3)
    vv = _t(verts).requires_grad_(True)
    vertex_normals(vv, torch.as_tensor(faces))[:, 0].sum().backward()
    assert torch.isfinite(vv.grad).all() and vv.grad.abs().max() > 0


def test_vertex_visibility_sphere_halves_occluder_and_image_bounds(rng):
    verts, faces = icosphere(3, radius=0.1)
    verts = verts @ random_rotation(rng).T
    H, W = 64, 64
    centre = np.array([0.0, 0.0, 0.5])
    K, M = _front_camera(H, W, dist=0.5, f=100)
    vis = vertex_visibility(_t(verts), torch.as_tensor(faces), K, M, H, W)[0].numpy()
    to_cam = centre - verts
    facing = (verts / 0.1 * to_cam / np.linalg.norm(to_cam, axis=1, keepdims=True)).sum(1)
    # a sight line to a vertex just past the silhouette can pass between the inscribed facets, so
    # the back half is checked from facing < -0.2 (the line then dips 2 mm into the sphere)
    assert vis[facing > 0.05].all() and not vis[facing < -0.2].any()
    assert (facing > 0.05).sum() > 200 and (facing < -0.2).sum() > 200

    # an occluding square between camera and sphere hides the vertices whose sight line crosses it
    qv, qf, _ = _quad(half=0.03, z=0.3)
    allv = np.concatenate([verts, qv])
    allf = np.concatenate([faces, qf + len(verts)])
    vis2 = vertex_visibility(_t(allv), torch.as_tensor(allf), K, M, H, W)[0].numpy()[: len(verts)]
    s = (0.3 - centre[2]) / (verts[:, 2] - centre[2])                # where the sight line meets z = 0.3
    hit = centre[:2] + s[:, None] * (verts[:, :2] - centre[:2])
    behind_quad = (np.abs(hit) < 0.03 - 1e-3).all(1)
    clear = (np.abs(hit) > 0.03 + 1e-3).any(1)
    assert behind_quad.sum() > 20 and not vis2[behind_quad].any()
    assert (vis2[clear & (facing > 0.05)]).all()

    # a narrow image: vertices projecting outside it are not visible
    narrow = vertex_visibility(_t(verts), torch.as_tensor(faces), K, M, H, 20)[0].numpy()
    u = (K[0, 0, 0].item() * verts[:, 0] / (0.5 - verts[:, 2]) + K[0, 0, 2].item())
    assert not narrow[u > 19.5 + 1e-6].any() and narrow[(u < 19) & (facing > 0.05)].all()
    # vertices behind the camera are not visible, even with no occluder
    back = vertex_visibility(_t(verts) + _t([0, 0, 0.8]), torch.as_tensor(faces), K, M, H, W)
    assert not back.any()


def test_sh_basis_orthogonality_and_closed_form():
    # Fibonacci-sphere quadrature: integrates polynomials of degree 4 on the sphere to ~1e-6
    n = 40000
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    phi = math.pi * (1 + 5 ** 0.5) * k
    r = np.sqrt(1 - z * z)
    N = _t(np.stack([r * np.cos(phi), r * np.sin(phi), z], -1))
    Y = sh_basis(N)
    gram = Y.T @ Y * (4 * math.pi / n)
    a = torch.tensor([math.pi] + [2 * math.pi / math.sqrt(3)] * 3 + [2 * math.pi / math.sqrt(8)] * 5, dtype=torch.float64)
    assert torch.allclose(gram, torch.diag(a ** 2), atol=1e-4)
    # closed form at the +Z pole and along +X
    zc = sh_basis(_t([0.0, 0.0, 1.0]))
    c0 = math.sqrt(1 / (4 * math.pi)) * math.pi
    c1 = math.sqrt(3 / (4 * math.pi)) * 2 * math.pi / math.sqrt(3)
    c2 = math.sqrt(5 / (16 * math.pi)) * 2 * math.pi / math.sqrt(8) * 2
    assert torch.allclose(zc, _t([c0, 0, c1, 0, 0, 0, c2, 0, 0]), atol=1e-12)
    xc = sh_basis(_t([1.0, 0.0, 0.0]))
    c22 = 0.5 * math.sqrt(15 / (4 * math.pi)) * 2 * math.pi / math.sqrt(8)
    assert torch.allclose(xc, _t([c0, 0, 0, -c1, 0, 0, -c2 / 2, 0, c22]), atol=1e-12)


def test_shade_sh_shared_and_per_view(rng):
    normals = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(2, 5, 6, 3))), dim=-1)
    albedo = torch.from_numpy(rng.uniform(size=(2, 5, 6, 3)))
    sh = torch.from_numpy(rng.normal(size=(2, 9, 3)))
    per_view = shade_sh(albedo, normals, sh)
    reference = albedo * torch.einsum("vhwk,vkc->vhwc", sh_basis(normals), sh)
    assert torch.allclose(per_view, reference, atol=1e-12) and reference.abs().max() > 1
    for v in range(2):
        assert torch.allclose(per_view[v], shade_sh(albedo[v], normals[v], sh[v]), atol=1e-12)
    ambient = torch.zeros(9, 3, dtype=torch.float64)
    ambient[0] = torch.tensor([2.0, 4.0, 6.0])            # band 0 only: irradiance = sqrt(pi) / 2 * c
    expect = albedo * torch.tensor([2.0, 4.0, 6.0]).double() * math.sqrt(math.pi) / 2
    assert torch.allclose(shade_sh(albedo, normals, ambient), expect)


def test_render_mesh_vertex_colours_texture_lighting_background(rng):
    H, W = 32, 32
    verts, faces, uvs = _quad()
    K, M = _front_camera(H, W)
    vt, ft = _t(verts), torch.as_tensor(faces)
    colours = _t([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
    res = render_mesh(vt, ft, K, M, H, W, vertex_colors=colours, background=torch.tensor([0.2, 0.3, 0.4]))
    assert res.image.shape == (1, H, W, 3) and res.mask.sum() > 100 and (~res.mask).sum() > 100
    assert torch.allclose(res.image[~res.mask], torch.tensor([0.2, 0.3, 0.4]).double())
    assert torch.allclose(res.image[res.mask], interpolate(res.frags, ft, colours)[res.mask])
    assert torch.allclose(res.normals[res.mask], torch.tensor([0, 0, 1.0]).double())
    bg_img = torch.from_numpy(rng.uniform(size=(1, H, W, 3)))
    over = render_mesh(vt, ft, K, M, H, W, vertex_colors=colours, background=bg_img)
    assert torch.equal(over.image[~over.mask], bg_img[~over.mask]) and torch.equal(over.image[over.mask], res.image[res.mask])
    # SH lighting with a +Z directional term brightens a surface facing +Z by exactly sh_basis . sh
    sh = torch.zeros(9, 3, dtype=torch.float64)
    sh[0], sh[2] = 0.8, 0.3
    lit = render_mesh(vt, ft, K, M, H, W, vertex_colors=colours, sh=sh)
    gain = (sh_basis(_t([0, 0, 1.0])) @ sh)[0]
    assert torch.allclose(lit.image[lit.mask], res.image[res.mask] * gain)
    # texture path: a constant texture gives that colour; gradients reach texture and vertices
    tex = torch.full((3, 4, 4), 0.5, dtype=torch.float64).requires_grad_(True)
    vv = vt.clone().requires_grad_(True)
    textured = render_mesh(vv, ft, K, M, H, W, uvs=_t(uvs), texture=tex, sh=sh)
    assert torch.allclose(textured.image[textured.mask], torch.full_like(textured.image[textured.mask], 0.5 * gain.item()))
    (textured.image * torch.from_numpy(rng.normal(size=(1, H, W, 3)))).sum().backward()
    assert tex.grad.abs().sum() > 0 and torch.isfinite(vv.grad).all()


def _two_view_sphere(rng, H=24, W=24):
    """A coloured sphere seen by two cameras with their own SH lighting."""
    verts, faces = icosphere(2, radius=0.1)
    Ms = torch.stack([_t(look_at_w2c([0.3 * s, 0.0, 0.5])) for s in (-1, 1)])
    K = _front_camera(H, W)[0].expand(2, 3, 3)
    sh = torch.from_numpy(rng.normal(scale=0.3, size=(2, 9, 3)))
    colours = torch.from_numpy(rng.uniform(size=(len(verts), 3)))
    return verts, faces, Ms, K, sh, colours


def test_render_mesh_per_view_lighting_matches_single_views(rng):
    H, W = 24, 24
    verts, faces, Ms, K, sh, colours = _two_view_sphere(rng, H, W)
    both = render_mesh(_t(verts), torch.as_tensor(faces), K, Ms, H, W, vertex_colors=colours, sh=sh)
    for v in range(2):
        one = render_mesh(_t(verts), torch.as_tensor(faces), K[v:v + 1], Ms[v:v + 1], H, W, vertex_colors=colours, sh=sh[v])
        assert torch.allclose(both.image[v], one.image[0], atol=1e-12)


def test_render_mesh_on_chosen_pixels_matches_the_full_image(rng):
    """Fragments of a pixel subset (rasterize_pixels) give the same colours and gradients as the
    full render at those pixels; a pixel far outside the image is simply not covered."""
    from mvrecon.render import rasterize_pixels

    H, W = 24, 24
    verts, faces, Ms, K, sh, colours = _two_view_sphere(rng, H, W)
    v_full = _t(verts).requires_grad_(True)
    full = render_mesh(v_full, torch.as_tensor(faces), K, Ms, H, W, vertex_colors=colours, sh=sh)
    ys, xs = torch.meshgrid(torch.arange(4, 20), torch.arange(2, 22), indexing="ij")
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).to(torch.float64)
    pix = torch.cat([pix, torch.tensor([[-1e5, -1e5]], dtype=torch.float64)])[None].expand(2, -1, -1)
    v_sub = _t(verts).requires_grad_(True)
    frags = rasterize_pixels(v_sub, torch.as_tensor(faces), K, Ms, pix)
    sub = render_mesh(v_sub, torch.as_tensor(faces), K, Ms, 0, 0, vertex_colors=colours, sh=sh, frags=frags)
    assert sub.image.shape == (2, pix.shape[1], 3)
    want = full.image[:, ys.reshape(-1), xs.reshape(-1)]
    assert torch.allclose(sub.image[:, :-1], want, atol=1e-10)
    assert torch.equal(sub.mask[:, :-1], full.mask[:, ys.reshape(-1), xs.reshape(-1)])
    assert not sub.mask[:, -1].any() and sub.mask.sum() > 100
    want.sum().backward()
    sub.image[:, :-1].sum().backward()
    assert torch.allclose(v_sub.grad, v_full.grad, atol=1e-9) and v_full.grad.abs().sum() > 0
