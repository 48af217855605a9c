"""Contour loss (MV-HRN): projected face vertices must stay inside the face mask's horizontal span
on their image row."""

from __future__ import annotations

import torch


def row_spans(mask: torch.Tensor) -> torch.Tensor:
    """Left and right x of the mask on each row, (V, H, 2); rows without mask get (+inf, -inf)."""
    V, H, W = mask.shape
    x = torch.arange(W, dtype=torch.float32, device=mask.device).expand(V, H, W)
    inf = torch.tensor(float("inf"), device=mask.device)
    left = torch.where(mask, x, inf).min(-1).values
    right = torch.where(mask, x, -inf).max(-1).values
    return torch.stack([left, right], -1)


def contour_loss(
    vert_px: torch.Tensor, visible: torch.Tensor, spans: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Squared horizontal distance (in face-size units) of visible vertices outside their row's span.

    Args:
        vert_px: (V, N, 2) projected face-boundary vertices, pixels.
        visible: (V, N) bool.
        spans: (V, H, 2) from :func:`row_spans` of each view's face mask.
        scale: (V,) face size in pixels.
    """
    V, H, _ = spans.shape
    row = vert_px[..., 1].detach().round().long().clamp(0, H - 1)
    sp = torch.gather(spans, 1, row[..., None].expand(-1, -1, 2))  # (V, N, 2)
    has = torch.isfinite(sp).all(-1) & visible
    x = vert_px[..., 0]
    out = torch.relu(sp[..., 0] - x) + torch.relu(x - sp[..., 1])
    out = torch.where(has, out, torch.zeros_like(out)) / scale[:, None]
    return (out**2).sum() / has.sum().clamp_min(1)
