"""Masked robust photometric loss (MV-HRN: ``sqrt(eps + |rendered - image|^2)`` over face pixels)."""

from __future__ import annotations

import torch


def photometric_loss(rendered: torch.Tensor, image: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6,
                     reduce: bool = True) -> torch.Tensor:
    """Mean robust colour distance over masked pixels.

    Args:
        rendered, image: (V, H, W, 3) in [0, 1].
        mask: (V, H, W) float or bool weights (face pixels seen by both).
    Returns:
        scalar (or (V,) with ``reduce=False``).
    """
    m = mask.to(rendered.dtype)
    d = torch.sqrt(eps + ((rendered - image) ** 2).sum(-1))
    per_view = (d * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)
    return per_view.sum() if reduce else per_view
