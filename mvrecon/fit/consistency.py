"""Cross-view photo-consistency: evidence about the surface that does not go through the fit's
own appearance model.

A matte surface point looks the same from every camera of a frame, whatever its albedo and
lighting (up to each camera's gain and bias): a small patch on the fitted surface, projected into
two views, must show the same pattern there. That is multi-view stereo's test, and it judges the
geometry alone. The photometric term cannot fake it: albedo, per-view SH and colour bias can
explain a pixel of one view whatever the surface, but not make two views agree about a wrong
surface. The stage check (:mod:`.optimize`) uses it to decide whether a stage that moved the
surface helped.

The score: for each sampled face vertex and each pair of views of the same frame that both see it
frontally enough, the zero-mean normalised cross-correlation (ZNCC, invariant to gain and bias)
of a ``(2 k + 1)^2`` grid of points on the vertex's tangent plane, spaced about a crop pixel,
sampled bilinearly from the two views' (linear, grey) crops. Patches are weighted by their
texture (the geometric mean of their two standard deviations: flat skin says little), and the
score is ``1 - weighted mean ZNCC`` (0 = perfect agreement).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..geometry import camera_centres, vertex_normals


@dataclass(frozen=True)
class ConsistencySample:
    """Which vertices and view pairs the score uses, fixed once so that states compare fairly."""

    vertices: torch.Tensor
    """(M,) vertex indices."""
    pairs: torch.Tensor
    """(Q, 2) view index pairs of the same frame (expression group)."""


def choose_sample(
    sel_vertices: torch.Tensor, group_of_view: torch.Tensor, max_vertices: int = 4000, seed: int = 0
) -> ConsistencySample | None:
    """Up to ``max_vertices`` of the selected vertices (random, seeded) and every pair of views
    that share an expression group (None when no two views do: per-view expressions have no
    common surface)."""
    V = len(group_of_view)
    pairs = [(i, j) for i in range(V) for j in range(i + 1, V) if int(group_of_view[i]) == int(group_of_view[j])]
    idx = torch.nonzero(sel_vertices, as_tuple=True)[0]
    if not pairs or len(idx) == 0:
        return None
    if len(idx) > max_vertices:
        g = torch.Generator().manual_seed(seed)
        idx = idx[torch.randperm(len(idx), generator=g)[:max_vertices]].sort().values
    return ConsistencySample(idx, torch.as_tensor(pairs, dtype=torch.long))


def _tangents(n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.zeros_like(n)
    a[..., 0] = 1.0
    alt = torch.zeros_like(n)
    alt[..., 1] = 1.0
    a = torch.where((n[..., :1].abs() > 0.9), alt, a)
    t1 = torch.linalg.cross(n, a)
    t1 = t1 / t1.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return t1, torch.linalg.cross(n, t1)


def consistency_sums(
    world: torch.Tensor,
    faces: torch.Tensor,
    sample: ConsistencySample,
    gray: torch.Tensor,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    visible: torch.Tensor,
    half: int = 2,
    min_cos: float = 0.3,
    spacing: float = 1.0,
    size: int | None = None,
    fixed: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The texture-weighted sum of ZNCC over the sample's patches and view pairs, the sum of the
    weights (detached) and, per pair, which sampled vertices took part; differentiable in ``world``.

    ``gray``: (V, 1, s, s) the views' crops as linear grey, possibly downsampled from the crop size
    ``size`` (default s) that ``K`` is for; ``spacing``: the patch step in crop pixels (2 with a
    half-size image: a wider basin). ``fixed``: use exactly these patches (a previous call's third
    output), so that two surfaces are compared on the same evidence. The rest as
    :func:`photo_consistency`."""
    S = size or gray.shape[-1]
    idx = sample.vertices
    R, t = world_to_cam[:, :3, :3], world_to_cam[:, :3, 3]
    views = sorted({int(v) for v in sample.pairs.flatten()})
    k = torch.arange(-half, half + 1, dtype=world.dtype)
    gu, gv = torch.meshgrid(k, k, indexing="ij")
    grid = torch.stack([gu.flatten(), gv.flatten()], 1)  # (P, 2)
    with torch.no_grad():
        # one tangent patch per sampled vertex, shared by every view (the views of a frame see one
        # surface), about one crop pixel of the nearest view per step
        ref = world[views[0], idx].detach()
        n = vertex_normals(world[views[0]].detach(), faces)[idx]
        z = torch.stack([(ref @ R[v].T + t[v])[:, 2] / K[v, 0, 0] for v in views]).min(0).values
        t1, t2 = _tangents(n)
        offs = (z * spacing)[:, None, None] * (grid[None, :, :1] * t1[:, None] + grid[None, :, 1:] * t2[:, None])
        centre = camera_centres(world_to_cam)  # (V, 3)
        facing = {}
        for v in views:
            d = centre[v] - ref
            facing[v] = visible[v, idx] & ((d * n).sum(-1) / d.norm(dim=-1) > min_cos)
    vals = {}
    for v in views:
        # each view's own vertices: they differ from another view's only by its camera's pose
        # correction (the fit's ``cam_pose``)
        pc = (world[v, idx][:, None] + offs) @ R[v].T + t[v]
        px = pc[..., :2] / pc[..., 2:].clamp_min(1e-6) @ K[v, :2, :2].T + K[v, :2, 2]
        g = (px + 0.5) / S * 2 - 1  # pixel centres at integers
        s_ = F.grid_sample(
            gray[v : v + 1], g[None].to(gray.dtype), mode="bilinear", padding_mode="border", align_corners=False
        )[0, 0]  # (M, P)
        a = s_ - s_.mean(1, keepdim=True)
        sd = (a.pow(2).mean(1) + 1e-12).sqrt()
        vals[v] = (a, sd)
    total = world.new_zeros(())
    total_w = world.new_zeros(())
    used: list[torch.Tensor] = []
    for q, (i, j) in enumerate(sample.pairs.tolist()):
        ok = fixed[q] if fixed is not None else facing[i] & facing[j]
        used.append(ok)
        if not bool(ok.any()):
            continue
        (a, sa), (b, sb) = vals[i], vals[j]
        a, sa, b, sb = a[ok], sa[ok], b[ok], sb[ok]
        zncc = (a * b).mean(1) / (sa * sb).clamp_min(1e-9)
        w = (sa * sb).sqrt().detach()
        total = total + (w * zncc).sum()
        total_w = total_w + w.sum()
    return total, total_w, used


def consistency_loss(
    world: torch.Tensor,
    faces: torch.Tensor,
    sample: ConsistencySample,
    gray: torch.Tensor,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    visible: torch.Tensor,
    half: int = 2,
    coarse: torch.Tensor | None = None,
) -> torch.Tensor:
    """``1 - weighted mean ZNCC`` as a differentiable loss (multi-view stereo's data term); with
    ``coarse`` (the views at half size) the mean of that and the full-size score, whose patches,
    twice as wide, pull from further away."""
    out = []
    for img, spacing in ((gray, 1.0),) + (((coarse, 2.0),) if coarse is not None else ()):
        total, total_w, _ = consistency_sums(
            world, faces, sample, img, K, world_to_cam, visible, half, spacing=spacing, size=gray.shape[-1]
        )
        if float(total_w) > 0:
            out.append(1.0 - total / total_w)
    return torch.stack(out).sum() / len(out) if out else world.new_zeros(())


def photo_consistency(
    world: torch.Tensor,
    faces: torch.Tensor,
    sample: ConsistencySample,
    image: torch.Tensor,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    visible: torch.Tensor,
    half: int = 2,
    min_cos: float = 0.3,
    fixed: list[torch.Tensor] | None = None,
) -> dict:
    """Cross-view ZNCC score of a surface (see the module docstring).

    Args:
        world: (V, N, 3) each view's world vertices (views of one group share the surface).
        faces: (F, 3).
        image: (V, S, S, 3) the views' crops, linear light.
        K, world_to_cam: (V, 3, 3), (V, 4, 4) crop cameras.
        visible: (V, N) bool vertex visibility.
        half: the patch is ``(2 half + 1)^2`` points.
        min_cos: a view counts for a vertex only when it sees it at most ``acos(min_cos)`` off its normal.
        fixed: compare on exactly these patches (``"used"`` of an earlier call): a surface that turns
            away from the views must not improve its score by dropping its hardest patches.
    Returns:
        ``{"score": 1 - weighted mean ZNCC, "pairs": patches compared, "used": per pair, the sampled
        vertices compared}``.
    """
    with torch.no_grad():
        gray = image.mean(-1)[:, None]
        total, total_w, used = consistency_sums(
            world, faces, sample, gray, K, world_to_cam, visible, half, min_cos, fixed=fixed
        )
        count = int(sum(int(u.sum()) for u in used))
        if float(total_w) <= 0:
            return {"score": float("nan"), "pairs": 0, "used": used}
        return {"score": 1.0 - float(total) / float(total_w), "pairs": count, "used": used}


__all__ = ["ConsistencySample", "choose_sample", "consistency_loss", "consistency_sums", "photo_consistency"]
