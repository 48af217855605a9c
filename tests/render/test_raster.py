"""Rasteriser vs an independent numpy z-buffer; gradients vs finite differences; batching, windows,
pixel lists and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvrecon.errors import InputError
from mvrecon.render import (BackendUnavailable, RenderInputError, fragments_from_ids, interpolate, rasterize,
                            rasterize_pixels)
from render_reference import icosphere, intrinsics, look_at_w2c, random_rotation, zbuffer


def _t(x, dtype=torch.float64):
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def _overlapping_triangles():
    """Three triangles at different depths that overlap in the image, plus one with opposite winding."""
    verts = np.array([
        [-0.10, -0.08, 0.00], [0.12, -0.07, 0.01], [0.00, 0.11, -0.01],      # back
        [-0.05, -0.12, 0.05], [0.09, 0.02, 0.06], [-0.09, 0.08, 0.04],       # middle, tilted
        [0.02, -0.03, 0.10], [0.13, 0.09, 0.12], [-0.02, 0.10, 0.09],        # front, small
        [-0.14, -0.13, 0.02], [-0.07, 0.12, 0.03], [-0.16, 0.05, 0.02],      # clockwise
    ])
    faces = np.arange(12).reshape(4, 3)
    faces[3] = faces[3][::-1]
    return verts, faces


def _cameras(n, H, W, rng, radius=0.5):
    Ks, Ms = [], []
    for i in range(n):
        ang = -0.4 + 0.8 * i / max(n - 1, 1)
        centre = radius * np.array([np.sin(ang), 0.1 * i, np.cos(ang)])
        Ks.append(intrinsics(1.9 * W + 7 * i, 1.85 * W + 3 * i, (W - 1) / 2 + 1.3 * i, (H - 1) / 2 - 0.7 * i, 0.4 * i))
        Ms.append(look_at_w2c(centre, target=rng.normal(scale=0.005, size=3)))
    return np.stack(Ks), np.stack(Ms)


def _compare_to_reference(verts, faces, K, M, H, W, frags):
    checked = 0
    for v in range(K.shape[0]):
        tri, depth, bary, amb = zbuffer(verts, faces, K[v], M[v], H, W)
        ok = ~amb
        got_tri = frags.tri_id[v].numpy()
        assert (got_tri[ok] == tri[ok]).all(), f"view {v}: {(got_tri[ok] != tri[ok]).sum()} pixels differ"
        assert (frags.mask[v].numpy()[ok] == (tri[ok] >= 0)).all()
        np.testing.assert_allclose(frags.depth[v].detach().numpy()[ok], depth[ok], rtol=0, atol=1e-9)
        np.testing.assert_allclose(frags.bary[v].detach().numpy()[ok], bary[ok], rtol=0, atol=1e-9)
        assert amb.mean() < 0.01          # the tolerance band must not hide the comparison
        checked += int((ok & (tri >= 0)).sum())
    return checked


def test_overlapping_triangles_match_zbuffer(rng):
    verts, faces = _overlapping_triangles()
    H, W = 48, 64
    K, M = _cameras(2, H, W, rng)
    frags = rasterize(_t(verts), torch.as_tensor(faces), _t(K), _t(M), H, W)
    assert frags.tri_id.shape == (2, H, W) and frags.bary.shape == (2, H, W, 3)
    covered = _compare_to_reference(verts, faces, K, M, H, W, frags)
    assert covered > 500
    # every triangle wins somewhere, so the depth ordering is really exercised
    assert set(np.unique(frags.tri_id.numpy())) == {-1, 0, 1, 2, 3}


def test_icosphere_matches_zbuffer(rng):
    verts, faces = icosphere(2, radius=0.1)
    verts = verts @ random_rotation(rng).T + [0.01, -0.005, 0.0]
    H, W = 40, 56
    K, M = _cameras(3, H, W, rng)
    frags = rasterize(_t(verts), torch.as_tensor(faces), _t(K), _t(M), H, W)
    assert _compare_to_reference(verts, faces, K, M, H, W, frags) > 1500
    b = frags.bary[frags.mask]
    assert torch.allclose(b.sum(-1), torch.ones(len(b), dtype=b.dtype)) and (b > -1e-9).all()


def test_interpolated_position_lies_on_pixel_ray(rng):
    """Perspective correctness: interpolating world positions gives the ray's point at ``depth``."""
    verts, faces = icosphere(1, radius=0.1)
    H, W = 30, 40
    K, M = _cameras(2, H, W, rng)
    frags = rasterize(_t(verts), torch.as_tensor(faces), _t(K), _t(M), H, W)
    X = interpolate(frags, torch.as_tensor(faces), _t(verts)).detach().numpy()
    for v in range(2):
        ys, xs = np.nonzero(frags.mask[v].numpy())
        d = frags.depth[v].detach().numpy()[ys, xs]
        cam = (np.linalg.inv(K[v]) @ np.stack([xs, ys, np.ones_like(xs)]).astype(float)).T * d[:, None]
        world = (cam - M[v][:3, 3]) @ M[v][:3, :3]
        np.testing.assert_allclose(X[v, ys, xs], world, atol=1e-12)
        assert len(ys) > 200


def test_batched_views_equal_single_views(rng):
    verts, faces = icosphere(2, radius=0.1)
    H, W = 32, 32
    K, M = _cameras(3, H, W, rng)
    vt, ft = _t(verts), torch.as_tensor(faces)
    batched = rasterize(vt, ft, _t(K), _t(M), H, W)
    per_view_verts = rasterize(vt[None].repeat(3, 1, 1), ft, _t(K), _t(M), H, W)
    for v in range(3):
        single = rasterize(vt, ft, _t(K[v:v + 1]), _t(M[v:v + 1]), H, W)
        for got in (batched, per_view_verts):
            assert torch.equal(got.tri_id[v], single.tri_id[0])
            assert torch.allclose(got.bary[v], single.bary[0], atol=1e-12)
            assert torch.allclose(got.depth[v], single.depth[0], atol=1e-12)
    assert batched.mask.sum() > 500


def test_per_view_meshes_are_rendered_separately(rng):
    verts, faces = icosphere(1, radius=0.1)
    H, W = 24, 24
    K, M = _cameras(2, H, W, rng)
    moved = np.stack([verts, verts + [0.03, 0.0, 0.0]])
    frags = rasterize(_t(moved), torch.as_tensor(faces), _t(K), _t(M), H, W)
    for v in range(2):
        tri, *_ = zbuffer(moved[v], faces, K[v], M[v], H, W)
        assert (frags.mask[v].numpy() != (tri >= 0)).mean() < 0.01
    assert not torch.equal(frags.mask[0], frags.mask[1])


def test_window_and_pixel_list_match_full_image(rng):
    verts, faces = icosphere(2, radius=0.1)
    H, W = 40, 48
    K, M = _cameras(2, H, W, rng)
    vt, ft, Kt, Mt = _t(verts), torch.as_tensor(faces), _t(K), _t(M)
    full = rasterize(vt, ft, Kt, Mt, H, W)
    origin = torch.tensor([[5, 7], [11, 3]])
    win = rasterize(vt, ft, Kt, Mt, 20, 25, window_origin=origin)
    for v in range(2):
        x0, y0 = origin[v].tolist()
        assert torch.equal(win.tri_id[v], full.tri_id[v, y0:y0 + 20, x0:x0 + 25])
        assert torch.allclose(win.bary[v], full.bary[v, y0:y0 + 20, x0:x0 + 25], atol=1e-12)
    pix = torch.tensor([[[10.0, 12.0], [30.0, 20.0], [0.0, 0.0]], [[24.0, 20.0], [47.0, 39.0], [20.0, 17.0]]])
    pts = rasterize_pixels(vt, ft, Kt, Mt, pix)
    assert pts.tri_id.shape == (2, 3)
    for v in range(2):
        for p in range(3):
            x, y = int(pix[v, p, 0]), int(pix[v, p, 1])
            assert pts.tri_id[v, p] == full.tri_id[v, y, x]
            assert torch.allclose(pts.depth[v, p], full.depth[v, y, x], atol=1e-12)
    # sub-pixel positions: the recomputed depth is that of the ray through the fractional position
    frac = torch.tensor([[[23.37, 19.81]]]).expand(2, 1, 2)
    f = rasterize_pixels(vt, ft, Kt, Mt, frac)
    X = interpolate(f, ft, vt).detach().numpy()
    for v in range(2):
        cam = np.linalg.inv(K[v]) @ np.array([23.37, 19.81, 1.0]) * f.depth[v, 0].item()
        np.testing.assert_allclose(X[v, 0], (cam - M[v][:3, 3]) @ M[v][:3, :3], atol=1e-6)


def test_mesh_behind_camera_is_not_drawn(rng):
    verts, faces = icosphere(1, radius=0.1)
    M = look_at_w2c([0, 0, 0.5])
    K = intrinsics(60, 60, 15.5, 15.5)
    front = rasterize(_t(verts), torch.as_tensor(faces), _t(K[None]), _t(M[None]), 32, 32)
    assert front.mask.sum() > 100
    behind = _t(verts) + torch.tensor([0.0, 0.0, 1.0])        # now behind the camera at z = 0.5
    frags = rasterize(behind, torch.as_tensor(faces), _t(K[None]), _t(M[None]), 32, 32)
    assert not frags.mask.any() and (frags.tri_id == -1).all() and (frags.depth == 0).all()


# ---------------------------------------------------------------------------------------------
# gradients


def _fd_check(loss_fn, x: torch.Tensor, coords, eps=1e-7, rtol=2e-5):
    x = x.detach().clone().requires_grad_(True)
    loss_fn(x).backward()
    analytic = x.grad.reshape(-1)[list(coords)]
    numeric = []
    for c in coords:
        xp, xm = x.detach().clone(), x.detach().clone()
        xp.view(-1)[c] += eps
        xm.view(-1)[c] -= eps
        numeric.append((loss_fn(xp) - loss_fn(xm)).item() / (2 * eps))
    numeric = torch.tensor(numeric, dtype=torch.float64)
    scale = numeric.abs().max()
    assert scale > 1e-3, "the loss must depend on the checked parameters"
    assert torch.allclose(analytic, numeric, rtol=rtol, atol=rtol * scale), (analytic, numeric)


@pytest.fixture
def grad_case(rng):
    verts, faces = icosphere(2, radius=0.1)
    verts = verts @ random_rotation(rng).T
    H, W = 28, 32
    K, M = _cameras(2, H, W, rng)
    vt, ft, Kt, Mt = _t(verts), torch.as_tensor(faces), _t(K), _t(M)
    base = rasterize(vt, ft, Kt, Mt, H, W)
    # interior pixels only: far from every edge, so small perturbations never change the triangle
    interior = base.mask & (base.bary.min(-1).values > 0.05)
    wpix = torch.from_numpy(rng.normal(size=(2, H, W))) * interior
    colours = torch.from_numpy(rng.uniform(size=(len(verts), 3)))
    cw = torch.from_numpy(rng.normal(size=3))

    def loss(v, k, m):
        fr = rasterize(v, ft, k, m, H, W)
        img = interpolate(fr, ft, colours) @ cw
        return (wpix * (img + 30.0 * fr.depth)).sum() + (wpix * fr.bary[..., 0]).sum()

    assert interior.sum() > 300
    return vt, Kt, Mt, loss, faces


def test_gradient_wrt_vertices_matches_finite_differences(grad_case, rng):
    vt, Kt, Mt, loss, faces = grad_case
    seen = np.unique(faces[:40])
    coords = [3 * int(i) + int(a) for i, a in zip(rng.choice(seen, 10), rng.integers(0, 3, 10))]
    _fd_check(lambda v: loss(v, Kt, Mt), vt, coords)


def test_gradient_wrt_intrinsics_matches_finite_differences(grad_case):
    vt, Kt, Mt, loss, _ = grad_case
    coords = [v * 9 + i for v in range(2) for i in (0, 1, 2, 4, 5)]   # fx, skew, cx, fy, cy per view
    _fd_check(lambda k: loss(vt, k, Mt), Kt, coords, eps=1e-5)


def test_gradient_wrt_extrinsics_matches_finite_differences(grad_case):
    vt, Kt, Mt, loss, _ = grad_case
    coords = [v * 16 + i for v in range(2) for i in (0, 1, 2, 3, 4, 6, 7, 9, 10, 11)]
    _fd_check(lambda m: loss(vt, Kt, m), Mt, coords)


def test_fragments_from_ids_gradient_with_float32(rng):
    """The float32 path (what the fit uses) keeps gradients finite and close to float64's."""
    verts, faces = icosphere(2, radius=0.1)
    K, M = _cameras(1, 32, 32, rng)
    grads = []
    for dtype in (torch.float32, torch.float64):
        v = _t(verts, dtype).requires_grad_(True)
        fr = rasterize(v, torch.as_tensor(faces), _t(K, dtype), _t(M, dtype), 32, 32)
        fr.depth.sum().backward()
        grads.append(v.grad.double())
    assert torch.isfinite(grads[0]).all() and grads[1].abs().max() > 1
    assert torch.allclose(grads[0], grads[1], atol=1e-3 * grads[1].abs().max())


def test_fragments_from_ids_matches_rasterize(rng):
    verts, faces = icosphere(1, radius=0.1)
    K, M = _cameras(2, 20, 20, rng)
    vt, ft = _t(verts), torch.as_tensor(faces)
    fr = rasterize(vt, ft, _t(K), _t(M), 20, 20)
    ys, xs = torch.meshgrid(torch.arange(20.0), torch.arange(20.0), indexing="ij")
    pix = torch.stack([xs, ys], -1).reshape(1, -1, 2).expand(2, -1, -1).double()
    again = fragments_from_ids(fr.tri_id.reshape(2, -1), vt, ft, _t(K), _t(M), pix, (20, 20))
    assert torch.equal(again.tri_id, fr.tri_id) and torch.allclose(again.bary, fr.bary)


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("case", ["verts_shape", "faces_float", "faces_range", "K_shape", "views", "nan", "size"])
def test_bad_input_raises_one_clear_error(case):
    verts, faces = icosphere(0, radius=0.1)
    v, f = _t(verts), torch.as_tensor(faces)
    K, M = _t(intrinsics(20, 20, 10, 10))[None], _t(look_at_w2c([0, 0, 0.5]))[None]
    args = dict(verts=v, faces=f, K=K, world_to_cam=M, height=16, width=16)
    bad = {
        "verts_shape": dict(verts=v[:, :2]),
        "faces_float": dict(faces=f.double()),
        "faces_range": dict(faces=f + 100),
        "K_shape": dict(K=K[:, :2]),
        "views": dict(K=K.expand(2, 3, 3), world_to_cam=M.expand(3, 4, 4)),
        "nan": dict(verts=v * float("nan")),
        "size": dict(height=0),
    }[case]
    args.update(bad)
    with pytest.raises(InputError) as info:
        rasterize(**args)
    assert isinstance(info.value, RenderInputError) and "\n" not in str(info.value)


def test_missing_backend_is_a_clear_error():
    verts, faces = icosphere(0, radius=0.1)
    K, M = _t(intrinsics(20, 20, 10, 10))[None], _t(look_at_w2c([0, 0, 0.5]))[None]
    with pytest.raises(RenderInputError, match="unknown backend"):
        rasterize(_t(verts), torch.as_tensor(faces), K, M, 8, 8, backend="opengl")
    for name, module in (("pytorch3d", "pytorch3d"), ("nvdiffrast", "nvdiffrast")):
        try:
            __import__(module)
            continue      # installed here: nothing to check
        except ImportError:
            pass
        with pytest.raises(BackendUnavailable, match=f"'{name}' requested but {name} is not importable"):
            rasterize(_t(verts), torch.as_tensor(faces), K, M, 8, 8, backend=name)
    # auto falls back to ray casting on a CPU machine
    assert rasterize(_t(verts), torch.as_tensor(faces), K, M, 16, 16, backend="auto").mask.any()


def test_ray_meshes_give_each_view_its_moved_mesh(rng):
    """Three views of one mesh, two of them moved rigidly (a per-camera correction): casting into
    the one shared mesh through the moved cameras (RayMeshes) gives every pixel the triangle and
    the depth of casting into each view's own moved mesh; a wrong camera would not."""
    from mvrecon.geometry import axis_angle_to_matrix
    from mvrecon.render import RayMeshes

    verts, faces = icosphere(3, radius=0.1)
    H, W = 40, 48
    K, M = _cameras(3, H, W, rng)
    motions = np.tile(np.eye(4), (3, 1, 1))
    for v, (aa, t) in enumerate([([0.0, 0.03, 0.01], [0.004, -0.002, 0.001]), ([-0.02, 0.0, 0.04], [0.0, 0.003, -0.002])], 1):
        motions[v, :3, :3] = axis_angle_to_matrix(torch.tensor(aa, dtype=torch.float64)).numpy()
        motions[v, :3, 3] = t
    moved = np.einsum("vij,nj->vni", motions[:, :3, :3], verts) + motions[:, None, :3, 3]
    ys, xs = np.mgrid[0:H, 0:W]
    pix = torch.as_tensor(np.stack([xs, ys], -1).reshape(1, -1, 2), dtype=torch.float64).expand(3, -1, -1)
    vt, ft, Kt, Mt = _t(moved), torch.as_tensor(faces), _t(K), _t(M)
    own = rasterize_pixels(vt, ft, Kt, Mt, pix)
    shared = RayMeshes(_t(verts)[None], _t(M @ motions), torch.zeros(3, dtype=torch.long))
    got = rasterize_pixels(vt, ft, Kt, Mt, pix, shared)
    assert int(own.mask[1:].sum()) > 500 and not torch.equal(own.tri_id[1], rasterize_pixels(_t(verts), ft, Kt, Mt, pix).tri_id[1])
    assert (got.tri_id != own.tri_id).float().mean() < 1e-3
    same = got.tri_id == own.tri_id
    assert torch.allclose(got.depth[same], own.depth[same], atol=1e-12)
    wrong = RayMeshes(_t(verts)[None], Mt, torch.zeros(3, dtype=torch.long))
    assert (rasterize_pixels(vt, ft, Kt, Mt, pix, wrong).tri_id != own.tri_id).float().mean() > 0.01
    with pytest.raises(RenderInputError, match="RayMeshes"):
        rasterize_pixels(vt, ft, Kt, Mt, pix, RayMeshes(_t(verts)[None], Mt[:2], torch.zeros(2, dtype=torch.long)))
