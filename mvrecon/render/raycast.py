"""Open3D ray casting: which triangle each camera ray hits first, which vertices a camera sees, and
closest points on a mesh. Every Open3D ``RaycastingScene`` of mvrecon is built here
(:class:`MeshScene`) and queried on the run's share of the cores (:func:`mvrecon.threads.count`).

Nothing here is differentiable; :mod:`mvrecon.render.raster` recomputes barycentrics and depth
from the triangle ids with torch so that gradients flow. Rays are float32 (Embree's precision):
the triangle chosen for a pixel whose centre lies within ~1e-6 px of an edge may differ from a
float64 reference, which is harmless because the recomputed barycentrics are continuous there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
import torch

from .. import threads
from ..geometry import camera_centres

INVALID_ID = np.uint32(o3d.t.geometry.RaycastingScene.INVALID_ID)
"""Open3D's triangle id of a ray that hits nothing."""


@dataclass(frozen=True)
class RayHits:
    """First hits of rays (any leading shape ``S``).

    ``triangles`` ``S`` int64 (-1: miss); ``t_hit`` ``S`` float32 (inf: miss; in lengths of the
    ray's direction); ``uv`` ``S + (2,)`` float32, Open3D's ``primitive_uvs``: the weights of
    corners 1 and 2 (``p = (1-u-v) p0 + u p1 + v p2``).
    """

    triangles: np.ndarray
    t_hit: np.ndarray
    uv: np.ndarray

    def barycentric(self) -> np.ndarray:
        """``S + (3,)`` float64 weights of the hit triangle's corners (meaningless for misses)."""
        uv = self.uv.astype(np.float64)
        return np.stack([1 - uv[..., 0] - uv[..., 1], uv[..., 0], uv[..., 1]], -1)


class MeshScene:
    """One triangle mesh in an Open3D ``RaycastingScene`` (Embree, float32).

    ``verts`` (N, 3) and ``faces`` (F, 3) go to Embree as float32 and uint32: shift the coordinates
    first where float32 is too coarse (a scan in a scanner's frame, far from the origin).
    """

    def __init__(self, verts: np.ndarray, faces: np.ndarray):
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(_tensor(verts, np.float32), _tensor(faces, np.uint32))

    def cast(self, rays: np.ndarray) -> RayHits:
        """First hits of ``rays`` (..., 6) ``[origin, direction]``."""
        ans = self._scene.cast_rays(_tensor(rays, np.float32), nthreads=threads.count())
        prim = ans["primitive_ids"].numpy()
        tri = prim.astype(np.int64)
        tri[prim == INVALID_ID] = -1
        return RayHits(tri, ans["t_hit"].numpy(), ans["primitive_uvs"].numpy())

    def occluded(self, rays: np.ndarray, tfar: float = np.inf) -> np.ndarray:
        """(...,) bool: does a ray (..., 6) hit the mesh before ``tfar`` lengths of its direction?"""
        return self._scene.test_occlusions(_tensor(rays, np.float32), tfar=tfar, nthreads=threads.count()).numpy()

    def closest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Closest points on the mesh of ``points`` (Q, 3): the triangle (Q,) int64 each lies on,
        its Open3D ``primitive_uvs`` (Q, 2) float32 (as :attr:`RayHits.uv`) and the triangle's unit
        normal (Q, 3) float32."""
        ans = self._scene.compute_closest_points(_tensor(points, np.float32), nthreads=threads.count())
        return (
            ans["primitive_ids"].numpy().astype(np.int64),
            ans["primitive_uvs"].numpy(),
            ans["primitive_normals"].numpy(),
        )


def _tensor(a: np.ndarray, dtype: type) -> o3d.core.Tensor:
    return o3d.core.Tensor.from_numpy(np.ascontiguousarray(a, dtype=dtype))


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
    """Closest-point queries on one triangle mesh, float64 in and out.

    Coordinates are shifted to the mesh's centroid before they go to Embree's float32, so a mesh
    far from the origin (a scan in a scanner's frame) loses no precision.
    """

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray):
        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.triangles = np.asarray(triangles, dtype=np.int64)
        self._origin = self.vertices.mean(0)
        self._scene = MeshScene(self.vertices - self._origin, self.triangles)
        self._boundary_edge: np.ndarray | None = None
        self._boundary_vertex: np.ndarray | None = None

    def closest(self, queries: np.ndarray) -> ClosestPoints:
        """Closest points on the mesh for ``queries`` ``(Q, 3)``."""
        tri, uv32, normals = self._scene.closest(np.asarray(queries, dtype=np.float64) - self._origin)
        uv = uv32.astype(np.float64)
        bary = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], 1)
        # recompute the point in float64 from the barycentrics: the float32 one is ~1e-8 m off
        pts = np.einsum("qk,qkd->qd", bary, self.vertices[self.triangles[tri]])
        d = np.linalg.norm(pts - np.asarray(queries, dtype=np.float64), axis=1)
        return ClosestPoints(pts, d, tri, bary, normals.astype(np.float64))

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
        assert self._boundary_vertex is not None
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


def camera_rays(K: torch.Tensor, world_to_cam: torch.Tensor, pixels: torch.Tensor) -> np.ndarray:
    """World-space rays (V, P, 6) float32 ``[origin, direction]`` through pixel positions.

    K (V, 3, 3), world_to_cam (V, 4, 4), pixels (V, P, 2) in OpenCV pixel coordinates (centres at
    integers). The direction is ``R^T K^-1 [x, y, 1]``, so its camera-space z is 1 and the hit
    distance ``t_hit`` equals the camera-space depth in metres.
    """
    K = K.detach().to(torch.float64).cpu()
    w2c = world_to_cam.detach().to(torch.float64).cpu()
    pix = pixels.detach().to(torch.float64).cpu()
    R = w2c[:, :3, :3]
    centre = camera_centres(w2c)  # (V, 3)
    # world dir = R^T K^-1 [x y 1]^T, as a row-vector product for all pixels at once
    M = (R.transpose(1, 2) @ torch.linalg.inv(K)).transpose(1, 2)  # (V, 3, 3)
    d = pix @ M[:, :2] + M[:, 2:3]  # (V, P, 3)
    o = centre[:, None].expand_as(d)
    return torch.cat([o, d], dim=-1).to(torch.float32).numpy()


def _bbox(verts: np.ndarray, K: np.ndarray, w2c: np.ndarray, origin: np.ndarray, height: int, width: int):
    """Pixel index range (r0, r1, c0, c1) of the window that can contain the mesh's projection
    (the whole window if any vertex is not in front of the camera)."""
    pc = verts @ w2c[:3, :3].T + w2c[:3, 3]
    if not (pc[:, 2] > 0).all():
        return 0, height, 0, width
    uv = (pc @ K[:2].T) / pc[:, 2:3] - origin
    c0 = int(np.clip(np.floor(uv[:, 0].min()) - 1, 0, width))
    c1 = int(np.clip(np.ceil(uv[:, 0].max()) + 2, 0, width))
    r0 = int(np.clip(np.floor(uv[:, 1].min()) - 1, 0, height))
    r1 = int(np.clip(np.ceil(uv[:, 1].max()) + 2, 0, height))
    return r0, max(r0, r1), c0, max(c0, c1)


def grid_ids(
    verts: np.ndarray,
    faces: np.ndarray,
    K: np.ndarray,
    world_to_cam: np.ndarray,
    height: int,
    width: int,
    origin: np.ndarray,
) -> np.ndarray:
    """(V, height, width) int64 triangle ids (-1 = none) of the pixel block with top-left pixel
    ``origin`` (V, 2) in each view. verts (N, 3) shared or (V, N, 3); K (V, 3, 3); world_to_cam (V, 4, 4).

    Only pixels inside the mesh's projected bounding box get a ray (a head fills a third of a
    portrait frame); all views' rays go to Embree in one call when the mesh is shared.
    """
    V = K.shape[0]
    boxes, rays = [], []
    for v in range(V):
        mesh = verts if verts.ndim == 2 else verts[v]
        r0, r1, c0, c1 = _bbox(mesh, K[v], world_to_cam[v], origin[v], height, width)
        boxes.append((r0, r1, c0, c1))
        R, t = world_to_cam[v, :3, :3], world_to_cam[v, :3, 3]
        M = R.T @ np.linalg.inv(K[v])  # columns: d/dx, d/dy, offset of the world direction
        xs = (np.arange(c0, c1) + origin[v, 0])[None, :, None]
        ys = (np.arange(r0, r1) + origin[v, 1])[:, None, None]
        block = np.empty((r1 - r0, c1 - c0, 6), np.float32)
        block[..., :3] = -R.T @ t
        block[..., 3:] = xs * M[:, 0] + ys * M[:, 1] + M[:, 2]
        rays.append(block.reshape(-1, 6))
    if verts.ndim == 2:
        prim = MeshScene(verts, faces).cast(np.concatenate(rays)).triangles
        prims = np.split(prim, np.cumsum([len(r) for r in rays])[:-1])
    else:
        prims = [MeshScene(verts[v], faces).cast(rays[v]).triangles for v in range(V)]
    out = np.full((V, height, width), -1, np.int64)
    for v, ((r0, r1, c0, c1), ids) in enumerate(zip(boxes, prims)):
        out[v, r0:r1, c0:c1] = ids.reshape(r1 - r0, c1 - c0)
    return out


def cast(
    verts: np.ndarray, faces: np.ndarray, rays: np.ndarray, mesh_of_view: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """First hits of rays (V, P, 6) against one mesh (verts (N, 3) shared), one mesh per view
    (verts (V, N, 3)) or, with ``mesh_of_view`` (V,), view v's rays against mesh
    ``verts[mesh_of_view[v]]`` of verts (M, N, 3). Returns triangle ids (V, P) int64 (-1 = miss)
    and t_hit (V, P) float32.

    Embree builds its BVH on the first cast (most of a cast's time for a face model's mesh), so
    views that see the same surface should share a mesh: one scene is built per mesh and all of
    its views' rays go in one call."""
    faces = np.asarray(faces)
    if verts.ndim == 2:
        hits = MeshScene(verts, faces).cast(rays)
        return hits.triangles, hits.t_hit
    V, P = rays.shape[:2]
    owner = np.arange(V) if mesh_of_view is None else np.asarray(mesh_of_view)
    tri = np.empty((V, P), np.int64)
    t_hit = np.empty((V, P), np.float32)
    for m in np.unique(owner):
        views = np.flatnonzero(owner == m)
        hits = MeshScene(verts[m], faces).cast(rays[views])
        tri[views], t_hit[views] = hits.triangles, hits.t_hit
    return tri, t_hit


def occluded(verts: np.ndarray, faces: np.ndarray, origins: np.ndarray, targets: np.ndarray, eps: float) -> np.ndarray:
    """(V, P) bool: does the segment from ``origins`` (V, 3) to ``targets`` (V, P, 3) hit the mesh
    before ``1 - eps`` of its length? ``verts`` is (N, 3) or (V, N, 3)."""
    V = targets.shape[0]
    d = targets - origins[:, None]
    rays = np.concatenate([np.broadcast_to(origins[:, None], d.shape), d], axis=-1).astype(np.float32)
    tfar = 1.0 - eps
    if verts.ndim == 2:
        return MeshScene(verts, faces).occluded(rays, tfar=tfar)
    return np.stack([MeshScene(verts[v], faces).occluded(rays[v], tfar=tfar) for v in range(V)])
