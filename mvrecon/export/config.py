"""Settings of the export stage (a light module: the pipeline's stage list imports it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from ..errors import MvreconError
from ..texture.config import TextureConfig

Format = Literal["glb", "obj", "usdz"]
MorphNames = Literal["arkit", "ict"]
Expression = Literal["clip", "default"]
Units = Literal["m", "cm"]


@dataclass(frozen=True)
class ExportConfig:
    """Settings of the export stage."""

    formats: tuple[Format, ...] = ("glb",)
    """Files to write: 'glb' (glTF 2.0 binary), 'obj' (+ mtl), 'usdz' (LOD 0 as UsdSkel for
    Apple's AR Quick Look; needs usd-core)."""
    lods: tuple[float, ...] = (1.0, 0.25, 0.05)
    """Triangle fraction of each level of detail, the first one is the full mesh (1.0)."""
    texture_size: int = 2048
    """Skin atlas height in texels: the texture stage's maps must be of this size (the export reads
    them, it never bakes)."""
    morph_targets: bool = True
    """Carry the model's expression shapes as morph targets (in every LOD)."""
    morph_names: MorphNames = "arkit"
    """Morph-target set: 'arkit' (Apple's 52 names and shapes) or 'ict' (the model's own 53)."""
    expression: Expression = "clip"
    """The captured expression: 'clip' (an animation; the mesh loads neutral) or 'default' (also
    the meshes' default weights)."""
    skeleton: bool = True
    """Add the joints (root, neck, head, jaw, eyes) and skin weights."""
    compress: bool = False
    """Write the .glb files with EXT_meshopt_compression (quantised, meshopt-coded geometry,
    JPEG albedo); loaders need the meshopt decoder."""
    units: Units = "m"
    """Length unit of the files: 'm' (glTF's own) or 'cm' (Unreal's)."""
    out_dir: str | None = None
    """Output folder (default ``SESSION/export``)."""
    texture: TextureConfig = field(default_factory=TextureConfig)
    """The texture stage's settings the textures are expected from (its size is ``texture_size``);
    part of the export's recorded settings."""

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in ("glb", "obj", "usdz")]
        if bad or not self.formats:
            raise MvreconError(
                "export formats must be among 'glb', 'obj' and 'usdz', got "
                f"{', '.join(map(str, self.formats)) or 'none'}"
            )
        if not self.lods or any(not (0 < f <= 1) for f in self.lods):
            raise MvreconError(f"LOD fractions must lie in (0, 1], got {', '.join(map(str, self.lods))}")
        if self.morph_names not in ("arkit", "ict"):
            raise MvreconError(f"morph names must be 'arkit' or 'ict', got {self.morph_names!r}")
        if self.expression not in ("clip", "default"):
            raise MvreconError(f"expression must be 'clip' or 'default', got {self.expression!r}")
        if self.units not in ("m", "cm"):
            raise MvreconError(f"units must be 'm' or 'cm', got {self.units!r}")
        if self.texture_size < 16:
            raise MvreconError(f"texture size {self.texture_size} is too small (at least 16)")

    def to_dict(self) -> dict:
        return asdict(self)
