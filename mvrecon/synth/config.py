"""Settings and result of a synthetic session."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cameras import Rig
from ..errors import MvreconError
from .realism import Realism


@dataclass(frozen=True)
class SynthConfig:
    """How to make a synthetic rig session with ground truth."""

    seed: int = 7
    """Random seed: the same seed (and settings) gives the same files, byte for byte."""
    cameras: int = 4
    """Number of cameras on the arc in front of the face."""
    width: int = 1024
    """Image width in pixels."""
    height: int = 768
    """Image height in pixels."""
    frames: int = 1
    """Capture instants (synchronized rig): one expression and head pose each."""
    board: bool = True
    """Write ChArUco calibration shots (``calib/<shot>/<cam>.png``) and the board definition."""
    calib_shots: int = 12
    """Number of board poses (each shot is taken by every camera)."""
    expression_scale: float = 1.0
    """Multiplier of the expression weights (0 = neutral face)."""
    identity_scale: float = 0.8
    """Standard deviation of the identity coefficients (the basis is scaled for N(0, 1))."""
    distortion: bool = True
    """Give the cameras radial and tangential lens distortion."""
    subdivision: int = 2
    """Loop subdivision levels of the detailed skin (render mesh and scan); 2 = ~0.8 mm edges."""
    mid_amplitude_mm: float = 3.0
    """Peak height (mm) of the mid-frequency bumps along the normal."""
    fine_amplitude_mm: float = 0.35
    """Depth (mm) of the wrinkle grooves."""
    mid_map_size: int = 256
    """Resolution of the mid-bump UV map (square, face tile)."""
    fine_map_size: int = 1024
    """Resolution of the fine-detail UV map (square, face tile)."""
    texture_size: int = 1024
    """Albedo texture height in texels (width = height x the number of UV tiles of the skin)."""
    supersample: int = 2
    """Rays per pixel along each axis (anti-aliasing)."""
    noise_sigma: float = 1.5
    """Sensor noise standard deviation in grey levels (of 255)."""
    scan_noise_mm: float = 0.1
    """Noise (mm, along the normal) on the ground-truth scan."""
    scan_holes: int = 5
    """Number of small holes cut into the scan."""
    model: str = "ict"
    """Face model name or ``.npz`` path (needs eyeball and skin sub-meshes to look like a head)."""
    subject: str = "synthetic"
    """Subject name written to session.json."""
    realism: Realism = field(default_factory=Realism)
    """Realism factors (:mod:`mvrecon.synth.realism`); ``Realism()`` is a clean render of the model."""
    head_mesh: str | None = None
    """A head mesh (.glb/.ply/.obj) the model is registered to and that replaces the random identity."""

    def __post_init__(self) -> None:
        checks = [
            (self.cameras >= 1, f"cameras must be at least 1, got {self.cameras}"),
            (self.width >= 32 and self.height >= 32, f"image size {self.width}x{self.height} is below 32x32"),
            (self.frames >= 1, f"frames must be at least 1, got {self.frames}"),
            (self.calib_shots >= 1, f"calib_shots must be at least 1, got {self.calib_shots}"),
            (self.expression_scale >= 0, f"expression_scale must be >= 0, got {self.expression_scale}"),
            (self.identity_scale >= 0, f"identity_scale must be >= 0, got {self.identity_scale}"),
            (0 <= self.subdivision <= 3, f"subdivision must be 0..3, got {self.subdivision}"),
            (1 <= self.supersample <= 4, f"supersample must be 1..4, got {self.supersample}"),
            (
                min(self.mid_map_size, self.fine_map_size, self.texture_size) >= 16,
                "map and texture sizes must be >= 16",
            ),
            (self.noise_sigma >= 0 and self.scan_noise_mm >= 0, "noise levels must be >= 0"),
            (self.scan_holes >= 0, f"scan_holes must be >= 0, got {self.scan_holes}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise MvreconError(f"synth: {msg}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> SynthConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SynthResult:
    """What :func:`mvrecon.synth.make_session` wrote."""

    root: Path
    """The session folder."""
    rig: Rig
    """The ground-truth rig (also ``root/rig/rig.json``)."""
    frames: tuple[str, ...]
    """Frame names."""
    n_views: int
    """Images written (frames x cameras)."""
    n_calib_images: int
    """Board shot images written (shots x cameras; 0 without a board)."""
    scan_vertices: int
    """Vertices of ``scan/scan.ply``."""
    scan_triangles: int
    """Triangles of ``scan/scan.ply``."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per step (not written to any file: files stay deterministic)."""
