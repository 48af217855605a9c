"""Fit losses, one small module each; every function is batched over views and returns a scalar
(or per-view vector with ``reduce=False``)."""

from .contour import contour_loss
from .landmark import landmark_loss
from .maskiou import mask_iou_loss
from .photometric import photometric_loss
from .prdl import anchor_grid, gamma_stats, prdl_loss, sample_mask_points
from .priors import coeff_prior, tv_loss, tv_std_loss
from .silhouette import silhouette_loss

__all__ = [
    "anchor_grid",
    "contour_loss",
    "coeff_prior",
    "gamma_stats",
    "landmark_loss",
    "mask_iou_loss",
    "photometric_loss",
    "prdl_loss",
    "sample_mask_points",
    "silhouette_loss",
    "tv_loss",
    "tv_std_loss",
]
