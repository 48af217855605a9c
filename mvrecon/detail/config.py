"""Settings of the detail stage and its presets (a light module: the pipeline's stage list imports it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SolveSettings:
    """Weights of the solve (lengths in mm on the surface)."""

    highpass_mm: float = 3.0
    """Gaussian sigma of the data's low band (removed: albedo's low frequencies, mid-band errors)."""
    fine_mm: float = 3.0
    """Gaussian sigma of the mid/fine split of h: the fine band is h minus its blur at this sigma."""
    curvature: float = 3e-2
    """Weight of the squared curvature of h (1/mm) against the data (log units)."""
    height: float = 0.1
    """Weight of h^2 (h in mm): keeps the unseen and the low band near zero."""
    albedo_prior: float = 3.0
    """mu on plain skin, relative to the texel's summed view weight."""
    dark_log: tuple[float, float] = (0.15, 0.35)
    """Albedo darker than the surrounding skin by this much (log units, 1 mm blur) ramps the
    texel's trust from 1 to 0 (brows, stubble, hairline)."""
    bright_log: tuple[float, float] = (0.25, 0.45)
    """... and brighter by this much (specular highlights the SH cannot make)."""
    chroma_log: tuple[float, float] = (0.06, 0.14)
    """Chromaticity (log r/g, log b/g) off the surrounding skin's by this much (lips, freckles)."""
    distrust_grow_mm: float = 1.0
    """Untrusted areas grow by this much (their edges are where an albedo step lies)."""
    register: bool = True
    """Align the views' observations in UV space (:mod:`.register`) before combining them."""
    parallax_depth: bool = False
    """Estimate the fit's depth error from the registration flows (the views' parallax) and sample
    the views where the true surface is (the fitted point moved along its normal by it), so each
    wrinkle lands where the fitted point's normal meets the true surface. Off by default: on the
    synthetic heads it lowered the p95 surface error (bench/detail.py) but improved neither the
    wrinkles' placement nor the normals, and it costs a second look at every view."""
    parallax_smooth_mm: float = 4.0
    """Gaussian sigma (mm) of that depth estimate: the fit's errors are smooth, the flows' noise is not."""
    debias: bool = False
    """Rescale the fine band by the one gain that fits the data best (undo the priors' shrinkage;
    off: on fitted heads the gain brought the fit's own errors in and raised the normal error)."""
    max_gain: float = 3.0
    """Largest such gain."""
    split_half: bool = True
    """With four views or more, solve the fine band again from each half of the views (alternate
    views, so each half sees both sides) and scale the band by its split-half reliability
    (Spearman-Brown, 2r / (1 + r), r the halves' correlation over the face): where the photos'
    noise, compression and blur leave the views no shared detail to agree on, the band is noise
    and goes towards zero instead of adding it to the surface. bench/detail.py at 2048x1536, face
    normal error: seed 7 clean 2.91 -> 2.82 deg (r 0.69), full 4.46 -> 4.29 (r 0.38); held out,
    seed 8 clean 3.16 -> 3.11, full 6.87 -> 6.73 (``--no-split-half`` for the former). Two more
    solves: 2-4 s."""
    mid_mm: float | None = None
    """Gaussian sigma (mm) of the mid band's upper cut: a second solve, on a grid ``mid_factor``
    times coarser with the data high-passed at this sigma, gives the correction of the fitted
    surface between ``fine_mm`` and ``mid_mm`` (``mid`` in fine.npz; None: no mid band)."""
    mid_factor: int = 4
    """The mid solve's grid is this many times coarser than the fine one."""
    mid_curvature: float = 3e-2
    """Weight of the squared curvature of the mid band (1/mm)."""
    mid_height: float = 1e-3
    """Weight of its h^2 (mm): far weaker than ``height``, or it would hold the band at zero."""
    iterations: int = 150
    """Most conjugate-gradient iterations."""
    tolerance: float = 1e-3
    """Stop when the residual is this fraction of the right-hand side."""


@dataclass(frozen=True)
class DetailConfig:
    """Settings of the detail stage."""

    min_size: int = 1024
    """Smallest texel grid over the face tile (texels across)."""
    max_size: int = 1024
    """Largest grid: the grid is the power of two whose texels match the photos' finest pixel
    footprint on the face, clipped to [min_size, max_size]."""
    min_cos: float = 0.3
    """A view seeing a texel at a grazing angle beyond acos(min_cos) does not contribute."""
    angle_power: float = 2.0
    """Exponent p of the cos(viewing angle)^p view weight."""
    feather_px: float = 8.0
    """Distance (image pixels) from a view's silhouette over which its weight ramps up."""
    solve: SolveSettings = field(default_factory=SolveSettings)
    """Weights of the height solve."""
    expression_stretch: tuple[float, float] = (0.02, 0.06)
    """Multi-frame sessions: a frame's surface stretched or compressed by this much against the
    fit's neutral (largest |log principal stretch|) ramps its texel from identity detail (the
    frames' shared fine band) to its own (:mod:`.frames`)."""
    expression_blur_mm: float = 3.0
    """... its expression region grown and blurred by this much."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: Grid sizes per pipeline preset.
PRESETS = {
    "fast": DetailConfig(min_size=512, max_size=512),
    "default": DetailConfig(),
    "best": DetailConfig(min_size=1024, max_size=4096),
}
# (a 2048 grid on 2048x1536 photos took far longer and correlated worse with the truth than the
# 1024 one, bench/detail.py; 'best' goes there for photos whose pixels are finer still)
