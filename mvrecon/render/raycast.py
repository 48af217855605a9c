"""Open3D ray casting: which triangle each camera ray hits first, and which vertices a camera sees.

Nothing here is differentiable; :mod:`mvrecon.render.raster` recomputes barycentrics and depth
from the triangle ids with torch so that gradients flow. Rays are float32 (Embree's precision):
the triangle chosen for a pixel whose centre lies within ~1e-6 px of an edge may differ from a
float64 reference, which is harmless because the recomputed barycentrics are continuous there.
"""

from __future__ import annotations

import numpy as np
import open3d as o3d
import torch

from .. import threads

_INVALID = np.uint32(o3d.t.geometry.RaycastingScene.INVALID_ID)


def _scene(verts: np.ndarray, faces: np.ndarray) -> o3d.t.geometry.RaycastingScene:
    """A ray-casting scene for one mesh state: verts (N, 3) float, faces (F, 3) int."""
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor.from_numpy(np.ascontiguousarray(verts, dtype=np.float32)),
        o3d.core.Tensor.from_numpy(np.ascontiguousarray(faces, dtype=np.uint32)),
    )
    return scene


def camera_rays(K: torch.Tensor, world_to_cam: torch.Tensor, pixels: torch.Tensor) -> np.ndarray:
    """World-space rays (V, P, 6) float32 ``[origin, direction]`` through pixel positions.

    K (V, 3, 3), world_to_cam (V, 4, 4), pixels (V, P, 2) in OpenCV pixel coordinates (centres at
    integers). The direction is ``R^T K^-1 [x, y, 1]``, so its camera-space z is 1 and the hit
    distance ``t_hit`` equals the camera-space depth in metres.
    """
    K = K.detach().to(torch.float64).cpu()
    w2c = world_to_cam.detach().to(torch.float64).cpu()
    pix = pixels.detach().to(torch.float64).cpu()
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    centre = -(R.transpose(1, 2) @ t[..., None])[..., 0]                     # (V, 3)
    # world dir = R^T K^-1 [x y 1]^T, as a row-vector product for all pixels at once
    M = (R.transpose(1, 2) @ torch.linalg.inv(K)).transpose(1, 2)             # (V, 3, 3)
    d = pix @ M[:, :2] + M[:, 2:3]                                            # (V, P, 3)
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


def grid_ids(verts: np.ndarray, faces: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray, height: int,
             width: int, origin: np.ndarray) -> np.ndarray:
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
        M = R.T @ np.linalg.inv(K[v])                       # columns: d/dx, d/dy, offset of the world direction
        xs = (np.arange(c0, c1) + origin[v, 0])[None, :, None]
        ys = (np.arange(r0, r1) + origin[v, 1])[:, None, None]
        block = np.empty((r1 - r0, c1 - c0, 6), np.float32)
        block[..., :3] = -R.T @ t
        block[..., 3:] = xs * M[:, 0] + ys * M[:, 1] + M[:, 2]
        rays.append(block.reshape(-1, 6))
    if verts.ndim == 2:
        scene = _scene(verts, faces)
        prim = scene.cast_rays(o3d.core.Tensor.from_numpy(np.concatenate(rays)), nthreads=threads.count())["primitive_ids"].numpy()
        prims = np.split(prim, np.cumsum([len(r) for r in rays])[:-1])
    else:
        prims = [_scene(verts[v], faces).cast_rays(o3d.core.Tensor.from_numpy(rays[v]), nthreads=threads.count())["primitive_ids"].numpy()
                 for v in range(V)]
    out = np.full((V, height, width), -1, np.int64)
    for v, ((r0, r1, c0, c1), prim) in enumerate(zip(boxes, prims)):
        ids = prim.astype(np.int64)
        ids[prim == _INVALID] = -1
        out[v, r0:r1, c0:c1] = ids.reshape(r1 - r0, c1 - c0)
    return out


def cast(verts: np.ndarray, faces: np.ndarray, rays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First hits of rays (V, P, 6) against one mesh (verts (N, 3) shared) or one mesh per view
    (verts (V, N, 3)). Returns triangle ids (V, P) int64 (-1 = miss) and t_hit (V, P) float32."""
    faces = np.asarray(faces)
    if verts.ndim == 2:
        out = _scene(verts, faces).cast_rays(o3d.core.Tensor.from_numpy(np.ascontiguousarray(rays)), nthreads=threads.count())
        prim, t = out["primitive_ids"].numpy(), out["t_hit"].numpy()
    else:
        prims, ts = [], []
        for v in range(verts.shape[0]):     # a scene per view: each view sees its own mesh state
            out = _scene(verts[v], faces).cast_rays(o3d.core.Tensor.from_numpy(np.ascontiguousarray(rays[v])), nthreads=threads.count())
            prims.append(out["primitive_ids"].numpy())
            ts.append(out["t_hit"].numpy())
        prim, t = np.stack(prims), np.stack(ts)
    tri = prim.astype(np.int64)
    tri[prim == _INVALID] = -1
    return tri, t


def occluded(verts: np.ndarray, faces: np.ndarray, origins: np.ndarray, targets: np.ndarray,
             eps: float) -> np.ndarray:
    """(V, P) bool: does the segment from ``origins`` (V, 3) to ``targets`` (V, P, 3) hit the mesh
    before ``1 - eps`` of its length? ``verts`` is (N, 3) or (V, N, 3)."""
    V = targets.shape[0]
    d = targets - origins[:, None]
    rays = np.concatenate([np.broadcast_to(origins[:, None], d.shape), d], axis=-1).astype(np.float32)
    tfar = 1.0 - eps
    if verts.ndim == 2:
        scene = _scene(verts, faces)
        return scene.test_occlusions(o3d.core.Tensor.from_numpy(np.ascontiguousarray(rays)), tfar=tfar).numpy()
    return np.stack([
        _scene(verts[v], faces).test_occlusions(o3d.core.Tensor.from_numpy(np.ascontiguousarray(rays[v])), tfar=tfar).numpy()
        for v in range(V)
    ])
