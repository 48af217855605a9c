"""mvrecon.render.raycast.MeshScene / MeshQuery: every Open3D ray cast and closest-point query."""

import numpy as np
import pytest

from mvrecon.render.raycast import MeshQuery, MeshScene


def _square(z: float = 0.0):
    v = np.array([[-1, -1, z], [1, -1, z], [1, 1, z], [-1, 1, z]], float)
    return v, np.array([[0, 1, 2], [0, 2, 3]])


def test_cast_hits_misses_and_barycentrics():
    v, f = _square(z=2.0)
    rays = np.array([[0.5, -0.5, 0, 0, 0, 1], [3.0, 0, 0, 0, 0, 1], [0.2, 0.1, 0, 0, 0, 2]], np.float32)
    hits = MeshScene(v, f).cast(rays)
    assert hits.triangles.dtype == np.int64 and hits.triangles[1] == -1
    np.testing.assert_allclose(hits.t_hit[[0, 2]], [2.0, 1.0], rtol=1e-6)
    assert np.isinf(hits.t_hit[1])
    # the hit point rebuilt from the barycentrics
    b = hits.barycentric()
    p = np.einsum("k,kd->d", b[0], v[f[hits.triangles[0]]])
    np.testing.assert_allclose(p, [0.5, -0.5, 2.0], atol=1e-6)
    # any leading shape
    assert MeshScene(v, f).cast(rays.reshape(3, 1, 6)).triangles.shape == (3, 1)


def test_occluded_stops_at_tfar():
    v, f = _square(z=2.0)
    rays = np.array([[0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1]], np.float32)
    scene = MeshScene(v, f)
    assert scene.occluded(rays).all()
    assert not scene.occluded(rays, tfar=1.9).any()


def test_mesh_query_far_from_the_origin():
    v, f = _square()
    far = v + [1000.0, -2000.0, 500.0]
    q = np.array([[0.25, 0.5, 0.3], [2.0, 0.0, -0.1]]) + [1000.0, -2000.0, 500.0]
    cp = MeshQuery(far, f).closest(q)
    np.testing.assert_allclose(cp.distances, [0.3, np.hypot(1.0, 0.1)], atol=1e-6)
    np.testing.assert_allclose(cp.points[0], [1000.25, -1999.5, 500.0], atol=1e-6)
    np.testing.assert_allclose(np.abs(cp.normals[:, 2]), 1.0, atol=1e-6)
    assert MeshQuery(far, f).on_boundary(cp).tolist() == [False, True]


@pytest.mark.parametrize("n", [0, 5])
def test_cast_of_no_or_some_rays(n):
    v, f = _square(z=1.0)
    rays = np.tile(np.array([[0, 0, 0, 0, 0, 1]], np.float32), (n, 1))
    assert MeshScene(v, f).cast(rays).triangles.shape == (n,)
