"""Priors: coefficient magnitudes and total variation of UV maps."""

from __future__ import annotations

import torch


def coeff_prior(coeffs: torch.Tensor) -> torch.Tensor:
    """Mean squared coefficient (coefficients scaled so that the model prior is N(0, 1))."""
    return (coeffs**2).sum(-1).mean()


def tv_loss(maps: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared finite differences of UV maps (B, C, H, W), optionally only where ``mask``
    (H, W) is set on both neighbours (the used part of the UV layout)."""
    dx = maps[..., :, 1:] - maps[..., :, :-1]
    dy = maps[..., 1:, :] - maps[..., :-1, :]
    if mask is None:
        return (dx**2).mean() + (dy**2).mean()
    mx = (mask[:, 1:] & mask[:, :-1]).to(maps.dtype)
    my = (mask[1:, :] & mask[:-1, :]).to(maps.dtype)
    return (dx**2 * mx).sum() / (mx.sum() * maps.shape[0] * maps.shape[1]).clamp_min(1) + (dy**2 * my).sum() / (
        my.sum() * maps.shape[0] * maps.shape[1]
    ).clamp_min(1)


def tv_std_loss(maps: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Variance of the map values over the used UV area (MV-HRN's ``TVstd``: keeps offsets from
    drifting as a whole, which pose and identity should explain)."""
    if mask is None:
        return maps.flatten(2).var(-1).mean()
    vals = maps[..., mask]
    return vals.var(-1).mean()
