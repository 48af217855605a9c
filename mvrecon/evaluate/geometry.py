"""Geometry for the evaluation: closest points on a mesh (Open3D ray casting) and area-uniform
surface sampling. All arrays are float64 metres unless stated. The similarity and rigid fits are
:mod:`mvrecon.geometry`'s."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import threads

# re-exported: mvrecon/pipeline.py imports them from here
from ..geometry import IDENTITY, umeyama

__all__ = ["IDENTITY", "ClosestPoints", "MeshQuery", "sample_surface", "umeyama"]


@dataclass(frozen=True)
class ClosestPoints:
    """Closest points on a mesh for a set of queries.

    ``points`` ``(Q, 3)`` metres; ``distances`` ``(Q,)`` metres; ``triangles`` ``(Q,)`` triangle
    ids; ``barycentric`` ``(Q, 3)`` weights of the triangle's three vertices; ``normals`` ``(Q, 3)``
    unit triangle normals.
    """

    points: np.ndarray
    distances: np.ndarray
    triangles: np.ndarray
    barycentric: np.ndarray
    normals: np.ndarray


class MeshQuery:
    """Closest-point queries on one triangle mesh, via Open3D's ``RaycastingScene``.

    Coordinates are shifted to the mesh's centroid before they go to Open3D's float32, so a mesh
    far from the origin (a scan in a scanner's frame) loses no precision.
    """

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray):
        import open3d as o3d

        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.triangles = np.asarray(triangles, dtype=np.int64)
        self._origin = self.vertices.mean(0)
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(
            o3d.core.Tensor((self.vertices - self._origin).astype(np.float32)),
            o3d.core.Tensor(self.triangles.astype(np.uint32)),
        )
        self._boundary_edge: np.ndarray | None = None
        self._boundary_vertex: np.ndarray | None = None

    def closest(self, queries: np.ndarray) -> ClosestPoints:
        """Closest points on the mesh for ``queries`` ``(Q, 3)``."""
        import open3d as o3d

        q = np.asarray(queries, dtype=np.float64) - self._origin
        ans = self._scene.compute_closest_points(o3d.core.Tensor(q.astype(np.float32)), nthreads=threads.count())
        tri = ans["primitive_ids"].numpy().astype(np.int64)
        uv = ans["primitive_uvs"].numpy().astype(np.float64)
        bary = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], 1)
        # recompute the point in float64 from the barycentrics: the float32 one is ~1e-8 m off
        pts = np.einsum("qk,qkd->qd", bary, self.vertices[self.triangles[tri]])
        d = np.linalg.norm(pts - np.asarray(queries, dtype=np.float64), axis=1)
        return ClosestPoints(pts, d, tri, bary, ans["primitive_normals"].numpy().astype(np.float64))

    def _boundary(self) -> tuple[np.ndarray, np.ndarray]:
        if self._boundary_edge is None:
            f = self.triangles
            # edge k of a triangle is the one opposite its vertex k
            opp = np.stack([f[:, [1, 2]], f[:, [2, 0]], f[:, [0, 1]]], 1)  # (F, 3, 2)
            e = np.sort(opp.reshape(-1, 2), 1)
            key = e[:, 0] * len(self.vertices) + e[:, 1]
            _, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
            boundary = (counts[inv] == 1).reshape(-1, 3)
            bv = np.zeros(len(self.vertices), bool)
            bv[opp[boundary].reshape(-1)] = True
            self._boundary_edge, self._boundary_vertex = boundary, bv
        return self._boundary_edge, self._boundary_vertex

    def on_boundary(self, cp: ClosestPoints, tol: float = 1e-4) -> np.ndarray:
        """``(Q,)`` True where the closest point lies on the mesh's open border (a hole or the
        mesh's outline): the query is then probably outside what the mesh covers."""
        edge, vert = self._boundary()
        near_edge = (edge[cp.triangles] & (cp.barycentric < tol)).any(1)
        k = np.argmax(cp.barycentric, 1)
        at_vertex = cp.barycentric[np.arange(len(k)), k] > 1.0 - tol
        corner = vert[self.triangles[cp.triangles, k]] & at_vertex
        return near_edge | corner


def sample_surface(
    vertices: np.ndarray, triangles: np.ndarray, n: int, seed: int = 0, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points ``(n, 3)`` uniform by area on the triangles (``mask`` ``(F,)`` selects some),
    with their triangle normals ``(n, 3)``; deterministic for a given ``seed``."""
    v = np.asarray(vertices)
    f = np.asarray(triangles)
    if mask is not None:
        f = f[mask]
    if len(f) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3))
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    area = 0.5 * np.linalg.norm(cross, axis=1)
    rng = np.random.default_rng(seed)
    tri = rng.choice(len(f), size=n, p=area / area.sum())
    r1 = np.sqrt(rng.random(n))
    r2 = rng.random(n)
    pts = (1 - r1)[:, None] * a[tri] + (r1 * (1 - r2))[:, None] * b[tri] + (r1 * r2)[:, None] * c[tri]
    nrm = cross[tri] / np.maximum(2 * area[tri], 1e-300)[:, None]
    return pts, nrm
