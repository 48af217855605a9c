"""Masked robust photometric loss (MV-HRN: ``sqrt(eps + |rendered - image|^2)`` over face pixels)."""

from __future__ import annotations

import torch


def photometric_loss(
    rendered: torch.Tensor,
    image: torch.Tensor,
    mask: torch.Tensor,
    eps: float = 1e-6,
    reduce: bool = True,
    truncate: float = 0.0,
) -> torch.Tensor:
    """Mean robust colour distance over masked pixels.

    Args:
        rendered, image: (V, H, W, 3) in [0, 1].
        mask: (V, H, W) float or bool weights (face pixels seen by both).
        truncate: when > 0, a pixel's distance counts up to this much (truncated L1): a pixel the
            model cannot explain (a highlight, a hair, a collar) pulls no harder than a small misfit.
    Returns:
        scalar (or (V,) with ``reduce=False``).
    """
    m = mask.to(rendered.dtype)
    d = torch.sqrt(eps + ((rendered - image) ** 2).sum(-1))
    if truncate > 0:
        d = d.clamp(max=truncate)
    per_view = (d * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)
    return per_view.sum() if reduce else per_view
