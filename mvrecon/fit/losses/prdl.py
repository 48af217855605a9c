"""Part Re-projection Distance Loss (PRDL) of 3DDFA-V3 (Wang et al., "3D Face Reconstruction with the
Geometric Guidance of Facial Part Segmentation", CVPR 2024), as the paper defines it.

For each part p, the projected visible model vertices labelled p (``V_p``) and the pixels of the
part's mask (``C_p``) are summarised by their distance statistics to a fixed anchor grid ``A``:
``Gamma(B, A)[a] = (min_j |a - b_j|, max_j |a - b_j|, mean_j |a - b_j|)``, and
``L = sum_p w_p |Gamma(V_p, A) - Gamma(C_p, A)|^2 / |A|`` (``w_p = 0`` when ``C_p`` or ``V_p`` is
empty). Coordinates are divided by the face-crop size first, so the loss does not depend on the
image resolution (3DDFA-V3 works on 224 px crops, where this is the same up to a constant).
"""

from __future__ import annotations

import numpy as np
import torch


def anchor_grid(box: torch.Tensor, n: int = 24, margin: float = 0.15) -> torch.Tensor:
    """A regular ``n x n`` grid of anchors over each face box, inside and outside the face.

    Args:
        box: (V, 4) face boxes ``x0, y0, x1, y1`` in pixels.
    Returns:
        (V, n*n, 2) anchor pixel positions.
    """
    t = torch.linspace(-margin, 1 + margin, n, dtype=box.dtype, device=box.device)
    gy, gx = torch.meshgrid(t, t, indexing="ij")
    g = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)  # (n*n, 2) in box units
    size = (box[:, 2:] - box[:, :2])[:, None]
    return box[:, None, :2] + g[None] * size


def gamma_stats(points: torch.Tensor, anchors: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Distance statistics of a point set to each anchor.

    Args:
        points: (V, P, 2) point sets (padded).
        anchors: (V, A, 2).
        valid: (V, P) bool, which points are real (None: all).
    Returns:
        (V, A, 3): min, max and mean distance from each anchor to the valid points (0 where a view
        has no valid point).
    """
    d = torch.cdist(anchors, points)  # (V, A, P)
    if valid is None:
        return torch.stack([d.min(-1).values, d.max(-1).values, d.mean(-1)], -1)
    v = valid[:, None, :]
    big = torch.finfo(d.dtype).max / 4
    dmin = torch.where(v, d, torch.full_like(d, big)).min(-1).values
    dmax = torch.where(v, d, torch.zeros_like(d)).max(-1).values
    cnt = v.sum(-1).clamp_min(1)
    dmean = torch.where(v, d, torch.zeros_like(d)).sum(-1) / cnt
    has = valid.any(-1)[:, None]
    dmin = torch.where(has, dmin, torch.zeros_like(dmin))
    return torch.stack([dmin, dmax, dmean], -1)


class _PartStats(torch.autograd.Function):
    """``(min, max, weighted mean)`` distance of each anchor to a point set, with a hand-written
    backward: autograd through ``cdist`` and its reductions keeps and walks several (A, n)
    graphs per part and view, while the gradient needs only the arg-min/arg-max points and two
    products with ``1 / d`` (for anchor a and point j, d|a - x_j| / dx_j = (x_j - a) / |a - x_j|)."""

    @staticmethod
    def forward(ctx, anchors: torch.Tensor, points: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(anchors, points)  # (A, n)
        dmin, imin = d.min(-1)
        dmax, imax = d.max(-1)
        mean = d @ weights
        ctx.save_for_backward(anchors, points, weights, d, imin, imax)
        return torch.stack([dmin, dmax, mean], -1)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        a, x, w, d, imin, imax = ctx.saved_tensors
        eps = torch.finfo(d.dtype).eps
        grad = torch.zeros_like(x)
        for col, idx in ((0, imin), (1, imax)):
            dd = d.gather(1, idx[:, None]).clamp_min(eps)  # the forward's distances, (A, 1)
            grad.index_add_(0, idx, g[:, col : col + 1] * (x.index_select(0, idx) - a) / dd)
        r = g[:, 2:3] / d.clamp_min(eps)  # (A, n)
        s = r.sum(0)  # (n,)
        t = r.T @ a  # (n, 2)
        grad += w[:, None] * (x * s[:, None] - t)
        return None, grad, None


def part_stats(anchors: torch.Tensor, points: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(A, 3) min, max and mean (weighted by ``weights`` (n,), normalised here) distance from each
    anchor (A, 2) to ``points`` (n, 2); differentiable in ``points``."""
    if weights is None:
        weights = torch.full((points.shape[0],), 1.0 / points.shape[0], dtype=points.dtype, device=points.device)
    else:
        weights = weights.detach() / weights.detach().sum().clamp_min(1e-12)
    return _PartStats.apply(anchors.detach(), points, weights)


def prdl_loss(
    vert_px: torch.Tensor,
    vert_part: torch.Tensor,
    vert_visible: torch.Tensor,
    target_gamma: torch.Tensor,
    target_has: torch.Tensor,
    anchors: torch.Tensor,
    scale: torch.Tensor,
    part_weights: torch.Tensor,
    reduce: bool = True,
    vert_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """PRDL over all views and parts.

    Args:
        vert_px: (V, N, 2) projected positions of the candidate vertices (pixels).
        vert_part: (N,) part code of each candidate vertex (1..P).
        vert_visible: (V, N) bool visibility.
        target_gamma: (V, P, A, 3) ``Gamma(C_p, A)`` of the target masks, in ``scale`` units
            (precomputed once: the masks do not change).
        target_has: (V, P) bool, whether the mask of part p is non-empty in view v, or float
            weights (0: left out), e.g. how much the cues trust the part in that view.
        anchors: (V, A, 2) pixels.
        scale: (V,) face-crop size in pixels.
        part_weights: (P,) weight of each part (index p-1 for code p).
        vert_weight: (V, N) optional weights of the vertices in the mean statistic: the image
            area each vertex stands for. Mask pixels sample the image uniformly, mesh vertices do
            not (a model is denser around eyes and lips), so an unweighted vertex mean is biased
            even at the true shape; weighting by projected area removes that bias.
    Returns:
        scalar (or (V,) with ``reduce=False``).
    """
    V, P = target_has.shape
    a = anchors / scale[:, None, None]
    x = vert_px / scale[:, None, None]
    terms = []
    for p in range(P):
        if part_weights[p] == 0:
            continue
        in_part = vert_part == p + 1
        for v in range(V):
            wvp = float(target_has[v, p])
            if wvp == 0:
                continue
            # only the visible vertices of this part: a plain cdist, no masking of padded sets
            sel = (in_part & vert_visible[v]).nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            w = None if vert_weight is None else vert_weight[v].index_select(0, sel)
            g = part_stats(a[v], x[v].index_select(0, sel), w)
            err = ((g - target_gamma[v, p]) ** 2).sum(-1).mean()
            terms.append((v, part_weights[p] * wvp * err))
    per_view = torch.zeros(V, dtype=vert_px.dtype, device=vert_px.device)
    for v, t in terms:
        per_view = per_view.index_add(0, torch.tensor([v]), t[None])
    return per_view.sum() if reduce else per_view


def farthest_point_sample(points: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Indices of ``k`` farthest-point-sampled rows of ``points`` (M, D) (all when M <= k)."""
    m = len(points)
    if m <= k:
        return np.arange(m)
    rng = np.random.default_rng(seed)
    idx = np.empty(k, np.int64)
    idx[0] = rng.integers(m)
    d = np.linalg.norm(points - points[idx[0]], axis=1)
    for i in range(1, k):
        idx[i] = int(np.argmax(d))
        d = np.minimum(d, np.linalg.norm(points - points[idx[i]], axis=1))
    return idx


def sample_mask_points(labels: np.ndarray, code: int, max_points: int = 3000, stride_first: int = 2) -> np.ndarray:
    """Pixel coordinates (M, 2) ``(x, y)`` of a part's mask, farthest-point sampled to at most
    ``max_points`` (after a regular pre-thinning by ``stride_first`` for large masks, which keeps FPS fast)."""
    ys, xs = np.nonzero(labels == code)
    pts = np.stack([xs, ys], 1).astype(np.float64)
    if len(pts) > 8 * max_points and stride_first > 1:
        keep = (ys % stride_first == 0) & (xs % stride_first == 0)
        pts = pts[keep]
    return pts[farthest_point_sample(pts, max_points)]
