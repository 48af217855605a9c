"""Settings of the texture stage (a light module: the pipeline's stage list imports it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextureConfig:
    """Settings of the texture bake."""

    size: int = 2048
    """Skin atlas height in texels (its width is twice that: two UV tiles)."""
    min_cos: float = 0.2
    """Views seeing a texel at a grazing angle beyond acos(min_cos) do not contribute."""
    angle_power: float = 2.0
    """Exponent p of the cos(viewing angle) weight."""
    feather_px: float = 8.0
    """Distance (image pixels) from a view's silhouette over which its weight ramps from 0 to 1."""
    blend_sigma: float = 1.0 / 128
    """Low/high band split of the blend: Gaussian sigma as a fraction of the atlas height."""
    min_irradiance: float = 0.05
    """Texels whose SH irradiance is below this (deep shadow) are not de-lit from that view."""
    max_albedo: float = 1.0
    """A view whose de-lit colour exceeds this in any channel (lighting the SH cannot explain)
    does not contribute to that texel."""
    use_detail: bool = True
    """Place texels on the detailed mesh (with the fit's fused displacement) instead of the base mesh."""
    fine_detail: bool = True
    """Add the detail stage's fine band (wrinkles, pores; when it ran) to the displacement and
    normal maps on the face."""
    eye_size_ratio: float = 0.25
    """Eye and mouth textures are this fraction of ``size``."""
    iris_deg: float = 30.0
    """Angular radius of the iris seen from the eyeball centre (degrees; 6 mm iris on a 12 mm eyeball)."""
    pupil_deg: float = 11.0
    """Angular radius of the pupil (degrees)."""
    person_mask: bool = True
    """Weight every photo by a person mask (MediaPipe selfie segmentation refined by colour) so
    the backdrop never reaches the atlas (:mod:`.person`)."""
    seam_feather: float = 0.05
    """Texels whose summed view weight is below this share of the median seen texel's fade from
    the blended colour to its smooth (low band) version: no hard edge where coverage ends."""
    region_blend: float = 1.0 / 32
    """Unseen texels this far (fraction of the atlas height) from any seen texel take their
    region's robust seen-skin colour; nearer ones fade from the smooth continuation to it."""

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)
