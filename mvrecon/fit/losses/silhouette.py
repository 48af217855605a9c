"""The silhouette term: where the head's outline meets the backdrop, the mesh's occluding contour
lies on the photo's person-mask boundary."""

from __future__ import annotations

import numpy as np
import torch

#: The silhouette term's candidates are the face's profile: within this many metres of the
#: model's midline (None: the whole face below the forehead). With the whole face, the cheeks of
#: the two near-frontal views of a 2-view session were pulled out to the ears (2 views, scan:
#: 1.072 -> 1.319 mm in the sweep that chose the profile; README, the eleventh session).
SILHOUETTE_HALF_WIDTH: float | None = 0.02


def profile_candidates(model, half_width: float | None = SILHOUETTE_HALF_WIDTH) -> np.ndarray:
    """(M,) the model's vertices the silhouette term may use: the face's skin, nose and lips below
    the forehead (the scalp, ears and neck have hair, a beard or a collar in front of them in a
    photo), within ``half_width`` of the midline."""
    from ...parts import PART_CODES
    from ..accuracy import face_vertices

    keep = (
        face_vertices(model)
        & ~model.forehead
        & np.isin(model.part_labels, [PART_CODES[n] for n in ("skin", "nose", "upper_lip", "lower_lip")])
    )
    if half_width is not None:
        keep &= np.abs(model.mean[:, 0]) < half_width
    return np.flatnonzero(keep)


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """(H, W) float32 signed distance (pixels, positive outside) to the boundary of a (H, W) mask:
    the boundary lies between the last pixel in and the first out, half a pixel either way."""
    import cv2

    m = (np.asarray(mask) > 0).astype(np.uint8)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, 5)
    return np.where(m > 0, 0.5 - inside, outside - 0.5).astype(np.float32)


def sample_map(maps: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Bilinear samples (V, M) of per-view maps (V, S, S) at crop pixels ``px`` (V, M, 2)
    (centres at integers; outside the map: the border value)."""
    V, H, W = maps.shape
    g = torch.stack([px[..., 0] / max(W - 1, 1) * 2 - 1, px[..., 1] / max(H - 1, 1) * 2 - 1], -1)
    out = torch.nn.functional.grid_sample(
        maps[:, None].to(px.dtype), g[:, None], mode="bilinear", padding_mode="border", align_corners=True
    )
    return out[:, 0, 0]


def silhouette_loss(
    vert_px: torch.Tensor,
    on: torch.Tensor,
    sdf: torch.Tensor,
    scale: torch.Tensor,
    limit: float = 0.1,
    per_view: float = 200.0,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """Squared signed distance (in face-size units) of the mesh's contour vertices to the person
    mask's boundary.

    Args:
        vert_px: (V, M) projected candidate vertices, crop pixels (V, M, 2).
        on: (V, M) bool: the vertex is on the mesh's outline against the backdrop in that view.
        sdf: (V, S, S) signed distance to the person mask's boundary, crop pixels, positive outside
            the person.
        scale: (V,) face size in crop pixels.
        limit: vertices further than ``limit`` face sizes from the boundary are left out (the
            outline there is hair, a beard, an ear or a collar, not this surface).
        offset: (V, M) where on the mesh's own outline each vertex is (its signed distance to the
            rendered outline, crop pixels): the target of its distance to the person's, or 0.
        per_view: the sum is divided by this many vertices per view (about a profile's outline at
            a 384 px crop), not by the vertices in use: a view whose outline has a handful of
            vertices on it (a near-frontal view's chin) gives that handful the weight of a handful.
    """
    d = sample_map(sdf, vert_px)
    if offset is not None:
        d = d - offset
    d = d / scale[:, None]
    use = on & (d.detach().abs() <= limit)
    return (torch.where(use, d, torch.zeros_like(d)) ** 2).sum() / (per_view * d.shape[0])


def outline_vertices(
    world: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    size: int,
    visible: torch.Tensor,
    idx: torch.Tensor,
    grazing: float = 0.35,
    near_px: int = 2,
    min_count: int = 20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which of the vertices ``idx`` (M,) lie on each view's outline against the backdrop, (V, M)
    bool: seen (``visible`` (V, N)), their surface nearly edge-on to the ray (|cos| < ``grazing``),
    within ``near_px`` pixels of a pixel of the ``size`` x ``size`` view where the rendered mesh
    ``world`` (V, N, 3) has no surface, in a view with at least ``min_count`` of them (a profile:
    a near-frontal view touches the backdrop with a vertex or two of the chin, where the neck, a
    beard or a collar is behind it in the photo); and (V, M) each one's signed distance to the
    rendered mesh's outline (pixels, negative inside), which the photo's outline should match: a
    vertex half an edge inside the mesh's outline is half an edge inside the person's, not on it."""
    from ...geometry import camera_centres, vertex_normals
    from ...render import rasterize
    from ..optimize import project

    S = int(size)
    with torch.no_grad():
        fr = rasterize(world, faces, K, world_to_cam, S, S)
        bg = (~fr.mask).to(world.dtype)[:, None]
        near = torch.nn.functional.max_pool2d(bg, 2 * near_px + 1, stride=1, padding=near_px)[:, 0] > 0
        px = project(world[:, idx], K, world_to_cam)
        ij = px.round().long()
        inb = (ij >= near_px + 1).all(-1) & (ij <= S - near_px - 2).all(-1)
        ij = ij.clamp(0, S - 1)
        at = near[torch.arange(len(K))[:, None], ij[..., 1], ij[..., 0]]
        n = vertex_normals(world, faces)[:, idx]
        ray = world[:, idx] - camera_centres(world_to_cam)[:, None].to(world.dtype)
        cos = (n * ray).sum(-1) / ray.norm(dim=-1).clamp_min(1e-9)
        own = np.stack([signed_distance(m) for m in fr.mask.numpy()])
        offset = sample_map(torch.as_tensor(own, dtype=world.dtype), px)
        on = visible[:, idx] & inb & at & (cos.abs() < grazing)
        return on & (on.sum(1, keepdim=True) >= min_count), offset
