"""mvrecon.geometry: the one implementation of rotations, similarity fits, triangulation and
vertex normals."""

import cv2
import numpy as np
import pytest
import torch

from mvrecon import geometry as G


def test_quaternion_round_trip(rng):
    for _ in range(50):
        R = G.axis_angle_to_matrix(rng.normal(size=3) * 2)
        q = G.matrix_to_quaternion(R)
        assert q[0] >= 0
        np.testing.assert_allclose(G.quaternion_to_matrix(q), R, atol=1e-12)


def test_axis_angle_matches_opencv_numpy_and_torch(rng):
    r = rng.normal(size=(20, 3)) * 1.5
    r[0] = 0.0
    r[1] = [1e-14, -2e-14, 0.0]  # below the threshold: the first-order form
    ref = np.stack([cv2.Rodrigues(v)[0] for v in r])
    batch = G.axis_angle_to_matrix(r)
    np.testing.assert_allclose(batch, ref, atol=1e-12)
    np.testing.assert_allclose(G.axis_angle_to_matrix(r[5]), ref[5], atol=1e-12)
    np.testing.assert_allclose(G.axis_angle_to_matrix(list(r[6])), ref[6], atol=1e-12)
    tr = G.axis_angle_to_matrix(torch.as_tensor(r, dtype=torch.float64))
    assert isinstance(tr, torch.Tensor) and tr.dtype == torch.float64
    np.testing.assert_allclose(tr.numpy(), ref, atol=1e-7)
    back = G.matrix_to_axis_angle(ref[2:])
    np.testing.assert_allclose(G.axis_angle_to_matrix(back), ref[2:], atol=1e-12)
    assert G.matrix_to_axis_angle(ref[3]).shape == (3,)


def test_umeyama_scale_reflection_and_weights(rng):
    src = rng.normal(size=(40, 3))
    R = G.axis_angle_to_matrix(rng.normal(size=3))
    dst = 1.7 * src @ R.T + [0.1, -0.2, 0.3]
    fit = G.umeyama(src, dst)
    assert fit.scale == pytest.approx(1.7, rel=1e-12)
    np.testing.assert_allclose(fit.apply(src), dst, atol=1e-12)
    rigid = G.umeyama(src, dst, with_scale=False)
    assert rigid.scale == 1.0 and np.linalg.det(rigid.rotation) == pytest.approx(1.0)
    # a mirrored target: the best proper rotation, never a reflection
    assert np.linalg.det(G.umeyama(src, src * [1, 1, -1]).rotation) == pytest.approx(1.0)
    # zero weights leave points out
    bad = dst.copy()
    bad[:5] += 1.0
    w = np.r_[np.zeros(5), np.ones(35)]
    np.testing.assert_allclose(G.umeyama(src, bad, w).apply(src[5:]), dst[5:], atol=1e-12)
    assert fit.then(fit.inverse()).apply(src) == pytest.approx(src, abs=1e-12)


def test_triangulate_views_and_weights(rng):
    X = rng.normal(scale=0.1, size=(30, 3))
    P = []
    for k in range(4):
        R = G.axis_angle_to_matrix([0.0, 0.3 * (k - 1.5), 0.0])
        P.append(np.c_[R, [0.0, 0.0, 1.0]])
    P = np.stack(P)
    h = np.einsum("cij,mj->mci", P, np.c_[X, np.ones(len(X))])
    x = h[..., :2] / h[..., 2:]
    np.testing.assert_allclose(G.triangulate(P, x), X, atol=1e-10)
    np.testing.assert_allclose(G.triangulate(P, x, normalize_rows=True), X, atol=1e-10)
    valid = np.ones((30, 4), bool)
    valid[0, 1:] = False  # one view only: no point
    x[0, 1:] += 5.0       # garbage where not valid
    out = G.triangulate(P, x, valid)
    assert np.isnan(out[0]).all()
    np.testing.assert_allclose(out[1:], X[1:], atol=1e-10)
    # per-point projections give the same
    np.testing.assert_allclose(G.triangulate(np.broadcast_to(P, (30, 4, 3, 4)), x, valid)[1:], X[1:], atol=1e-10)


def test_vertex_normals_numpy_and_torch_agree(rng):
    # a closed octahedron: normals point out along the vertex directions
    v = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
    f = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    n = G.vertex_normals(v, f)
    assert n.dtype == np.float64
    np.testing.assert_allclose(n, v, atol=1e-12)
    vv = v * rng.uniform(0.8, 1.2, (6, 1))
    nt = G.vertex_normals(torch.as_tensor(vv)[None].repeat(2, 1, 1), torch.as_tensor(f))
    assert nt.shape == (2, 6, 3)
    np.testing.assert_allclose(nt[1].numpy(), G.vertex_normals(vv, f), atol=1e-12)
    with pytest.raises(ValueError):
        G.vertex_normals(torch.zeros(2, 3, 4, 3), f)
