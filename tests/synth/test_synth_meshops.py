"""Mesh operations and file encoders of mvrecon.synth (no face model needed)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from mvrecon.geometry import vertex_normals
from mvrecon.synth import meshops as mo
from mvrecon.synth import scan as scan_mod


def _icosphere(level: int = 1):
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=level, radius=1.0)
    return np.asarray(s.vertices, np.float64), np.asarray(s.faces, np.int64)


def _grid(n: int = 6):
    """A flat n x n vertex grid in [0, 1]^2 (z = 0), UVs equal to (x, y), CCW triangles."""
    xs, ys = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], 1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return v, f


def test_loop_subdivision_counts_and_sphere_convergence():
    v, f = _icosphere(1)
    mesh = mo.UVMesh(v, f, v[:, :2].copy(), f.copy(), np.arange(len(f)))
    edges, _ = mo._edges(f)
    one = mo.loop_subdivide(mesh, 1)
    assert len(one.verts) == len(v) + len(edges)
    assert len(one.faces) == 4 * len(f)
    assert np.array_equal(one.parent, np.repeat(np.arange(len(f)), 4))
    # Loop shrinks a coarse sphere towards its limit surface: radii become more uniform
    two = mo.loop_subdivide(mesh, 2)
    spread = lambda x: np.ptp(np.linalg.norm(x, axis=1))  # noqa: E731
    assert spread(two.verts) < 0.5 * spread(np.concatenate([v, 0.5 * (v[edges[:, 0]] + v[edges[:, 1]])]))
    # the child faces keep the orientation (outward normals on a sphere)
    n = vertex_normals(two.verts, two.faces)
    assert np.mean(np.sum(n * two.verts, 1) > 0) == 1.0


def test_loop_keeps_shared_boundaries_and_interpolates_uvs():
    # two caps of a sphere share a closed zig-zag boundary; subdivided apart, they must still meet
    v, f = _icosphere(2)
    upper = v[f].mean(1)[:, 2] >= 0
    outs = []
    for part in (f[upper], f[~upper]):
        m = mo.UVMesh(v, part, v[:, :2].copy(), part.copy(), np.arange(len(part)))
        outs.append(mo.loop_subdivide(m, 2))
    seam = [o.verts[mo.boundary_vertices(o.faces, len(o.verts))] for o in outs]
    a = seam[0][np.lexsort(seam[0].T)]
    b = seam[1][np.lexsort(seam[1].T)]
    assert len(a) == len(b) > 40
    np.testing.assert_allclose(a, b, atol=1e-12)
    # UVs of new vertices are the midpoints of the UV edges (linear subdivision): the centre child's
    # corners average to the parent's corner average
    o = outs[0]
    tri_uv = o.uvs[o.uv_faces]
    np.testing.assert_allclose(tri_uv[3::4].mean(1), tri_uv.reshape(-1, 4, 3, 2).mean((1, 2)), atol=1e-12)
    parent_uv = mo.loop_subdivide(mo.UVMesh(v, f[upper], v[:, :2].copy(), f[upper].copy(), np.arange(upper.sum())), 1)
    corners = parent_uv.uvs[parent_uv.uv_faces].reshape(-1, 4, 3, 2)
    orig = v[f[upper]][:, :, :2]
    np.testing.assert_allclose(corners[:, 3, 0], 0.5 * (orig[:, 0] + orig[:, 1]), atol=1e-12)


def test_weld_merges_duplicates_and_keeps_order():
    v, f = _grid(4)
    dup = np.concatenate([v, v[[5, 6]]])
    f2 = f.copy()
    f2[f2 == 5] = 16
    wv, wf, o2n = mo.weld(dup, f2)
    assert len(wv) == 16
    assert np.array_equal(o2n[:16], np.arange(16)) and o2n[16] == 5 and o2n[17] == 6
    assert np.array_equal(wf, f)


def test_uv_rasterizer_and_sampling_are_exact_at_texel_centres():
    v, f = _grid(5)
    uvs = v[:, :2]
    H, W = 24, 40
    tri, bary = mo.rasterize_uv(uvs, f, H, W)
    assert (tri >= 0).all()
    got = mo.interpolate_texels(tri, bary, f, uvs)
    jj, ii = np.meshgrid(np.arange(W), np.arange(H))
    np.testing.assert_allclose(got[..., 0], (jj + 0.5) / W, atol=1e-5)
    np.testing.assert_allclose(got[..., 1], 1 - (ii + 0.5) / H, atol=1e-5)
    img = np.random.default_rng(0).normal(size=(H, W, 2))
    samp = mo.sample_map(img, got.reshape(-1, 2).astype(np.float64))
    np.testing.assert_allclose(samp.reshape(H, W, 2), img, atol=1e-4)
    # a second UV tile: the same texels with u shifted by one
    tri2, _ = mo.rasterize_uv(uvs + [1.0, 0.0], f, H, W, u_range=(1.0, 2.0))
    assert np.array_equal(tri2, tri)
    # half outside: texels of the empty tile stay uncovered
    tri3, _ = mo.rasterize_uv(uvs * [0.5, 1.0], f, H, W)
    assert (tri3[:, : W // 2] >= 0).all() and (tri3[:, W // 2 + 1 :] < 0).all()


def test_boundary_vertices_and_compact():
    v, f = _grid(5)
    b = mo.boundary_vertices(f, len(v))
    assert b.sum() == 16
    keep = f[:-4]
    cv, cf, o2n = mo.compact(v, keep)
    assert len(cv) == int((o2n >= 0).sum()) and np.array_equal(cv[cf], v[keep])


def test_scan_noise_and_holes():
    v, f = _icosphere(3)
    v = v * 0.1
    rng = np.random.default_rng(3)
    sv, sf, centres = scan_mod.make_scan(v, f, rng, noise_m=1e-4, n_holes=4, hole_radius_m=(0.01, 0.012))
    assert len(sf) < len(f) - 4 * 3
    r = np.linalg.norm(sv, axis=1)
    assert 5e-5 < np.std(r - np.linalg.norm(v, axis=1).mean()) < 3e-4
    assert mo.boundary_vertices(sf, len(sv)).sum() >= 4 * 5      # four holes, each with a rim
    # no kept triangle centroid lies inside a hole
    cent = sv[sf].mean(1)
    assert np.min(np.linalg.norm(cent[:, None] - centres[None], axis=-1)) > 0.009


def test_ply_bytes_are_deterministic_and_readable(tmp_path):
    import trimesh

    v, f = _icosphere(1)
    data = scan_mod.ply_bytes(v, f)
    assert data == scan_mod.ply_bytes(v.copy(), f.copy())
    p = tmp_path / "m.ply"
    p.write_bytes(data)
    m = trimesh.load(p, process=False)
    np.testing.assert_allclose(m.vertices, v, atol=1e-6)
    assert np.array_equal(m.faces, f)


def test_landmarks_text_round_trip():
    pts = np.random.default_rng(1).normal(size=(68, 3)) * 0.1
    back = np.loadtxt(io.StringIO(scan_mod.landmarks_text(pts)))
    assert back.shape == (68, 3)
    np.testing.assert_allclose(back, pts, atol=1e-8)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_rig_arc_and_board_poses(n):
    from mvrecon.synth import rig as rig_mod

    rng = np.random.default_rng(n)
    rig = rig_mod.make_rig(n, 640, 480, rng)
    assert len(rig) == n
    for cam in rig.cameras:
        d = np.linalg.norm(cam.center)
        assert 0.85 < d < 1.25
        # the origin (the face) projects near the image centre, upright: +Y world is up in the image
        uv, z = cam.project(np.array([[0, 0, 0], [0, 0.05, 0]]))
        assert z[0] > 0
        assert abs(uv[0, 0] - 320) < 0.15 * 640 and abs(uv[0, 1] - 240) < 0.15 * 480
        assert uv[1, 1] < uv[0, 1] - 20
    az = np.degrees(np.arctan2([c.center[0] for c in rig.cameras], [c.center[2] for c in rig.cameras]))
    if n >= 4:
        assert az.min() < -50 and az.max() > 50
    poses = rig_mod.board_poses(rig_mod.DEFAULT_BOARD, 6, rng)
    for M in poses:
        # board +Z faces away from the rig (towards -Z world) and its centre is in the head volume
        assert M[2, 2] < -0.6
        centre = M[:3, :3] @ [0.14, 0.1, 0] + M[:3, 3]
        assert np.all(np.abs(centre) < 0.1)


def test_studio_sh_lights_from_above_front():
    import torch

    from mvrecon.render import sh_basis
    from mvrecon.synth import render as R
    from mvrecon.synth import rig as rig_mod

    sh = rig_mod.studio_sh(np.random.default_rng(0))
    E = lambda n: sh_basis(torch.tensor(n, dtype=torch.float64)).numpy() @ sh  # noqa: E731
    front, up, down, back = E([0, 0, 1.0]), E([0, 1.0, 0]), E([0, -1.0, 0]), E([0, 0, -1.0])
    assert np.all(front > back + 0.3) and np.all(up > down + 0.3)
    assert 0.7 < front.mean() < 1.3
    # the fast polynomial evaluation equals sh_basis exactly
    n = np.random.default_rng(1).normal(size=(100, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    np.testing.assert_allclose(R._monomials(n) @ R.irradiance_polynomial(sh),
                               sh_basis(torch.from_numpy(n)).numpy() @ sh, atol=1e-12)
