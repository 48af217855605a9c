"""Robust landmark reprojection loss."""

from __future__ import annotations

import torch


def landmark_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, robust: float = 0.05
) -> torch.Tensor:
    """Geman-McClure-like robust distance between projected and detected 2D landmarks.

    Args:
        pred: (V, L, 2) projected model landmarks, pixels.
        target: (V, L, 2) detected landmarks, pixels.
        weight: (V, L) confidence times per-landmark weight (0 drops a landmark).
        scale: (V,) a face size per view in pixels (inter-ocular distance); errors are measured in
            units of it so that views at any resolution weigh the same.
        robust: the error (in face-size units) where the penalty starts to flatten: an outlier
            view's landmarks cannot pull harder than about ``robust**2`` each.
    Returns:
        scalar: weighted mean of ``r^2 / (r^2 + robust^2) * robust^2`` -> ~r^2 for small r.
    """
    r2 = ((pred - target) ** 2).sum(-1) / scale[:, None] ** 2
    rho = r2 * robust**2 / (r2 + robust**2)
    return (rho * weight).sum() / weight.sum().clamp_min(1e-8)
