"""A plain soft mask-IoU loss on the face parts: the baseline PRDL is compared against.

The rendered part probability of pixel x for part p is the barycentric interpolation of the
vertices' one-hot part labels; ``L = mean_p (1 - sum min(P_p, M_p) / sum max(P_p, M_p))`` over
the parts whose target mask is non-empty. Its gradient lives only where the rendering and the mask
overlap near part borders: a part that misses its mask entirely gets none (the failure mode that
PRDL's anchor statistics avoid).
"""

from __future__ import annotations

import torch


def mask_iou_loss(
    part_prob: torch.Tensor, target_labels: torch.Tensor, codes: torch.Tensor, reduce: bool = True
) -> torch.Tensor:
    """Soft IoU loss per part.

    Args:
        part_prob: (V, H, W, P) rendered probability of each part (0 on background).
        target_labels: (V, H, W) integer part codes of the target masks.
        codes: (P,) the part code of each channel of ``part_prob``.
    Returns:
        scalar (or (V,) with ``reduce=False``): mean over present parts of ``1 - IoU``.
    """
    target = (target_labels[..., None] == codes.to(target_labels.device)).to(part_prob.dtype)  # (V, H, W, P)
    inter = torch.minimum(part_prob, target).flatten(1, 2).sum(1)  # (V, P)
    union = torch.maximum(part_prob, target).flatten(1, 2).sum(1)
    present = target.flatten(1, 2).sum(1) > 0
    loss = torch.where(present, 1.0 - inter / union.clamp_min(1e-6), torch.zeros_like(inter))
    per_view = loss.sum(1) / present.sum(1).clamp_min(1)
    return per_view.sum() if reduce else per_view
