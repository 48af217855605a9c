"""An example studio rig and a capture made with it, laid out as a studio has them (for the
README's "Your own photos" walk-through and its test)::

    RIG/rig.json            camera names, image sizes, lenses (K) and the ChArUco board; no
                            extrinsics and no distortion: ``mvrecon rig calibrate RIG`` finds them
    RIG/calib/<shot>/<camera>.png   the board shots
    PHOTOS/<frame>/<camera>.jpg     the photos of a head, JPEG (quality 95), nothing else

It is a synthetic session (:func:`mvrecon.synth.make_session`) taken apart: the truth, the scan
and the session file are left out, as a real capture has none of them.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cameras import Rig, save_rig
from ..errors import InputError
from ..io import atomic_dir, read_image, write_image
from .config import SynthConfig


@dataclass(frozen=True)
class ExampleRig:
    """What :func:`make_example_rig` wrote."""

    rig_dir: Path
    photos_dir: Path
    rig: Rig
    """The rig as written: the lenses only (nominal, uncalibrated)."""
    truth: Rig
    """The rig that took the photos and the board shots."""
    n_photos: int
    n_board_shots: int


def make_example_rig(
    rig_dir: str | Path, photos_dir: str | Path, config: SynthConfig = SynthConfig(), overwrite: bool = False
) -> ExampleRig:
    """Write the example rig folder ``rig_dir`` and its photos ``photos_dir`` (each replaced as a
    whole with ``overwrite``; otherwise an existing one is an :class:`InputError`)."""
    from ..session import load_session
    from .generate import make_session

    rig_dir, photos_dir = Path(rig_dir), Path(photos_dir)
    if not config.board:
        raise InputError("the example rig needs its board shots (SynthConfig.board)")
    for d in (rig_dir, photos_dir):
        if d.exists() and not overwrite:
            raise InputError("exists already (overwrite to replace it)", d)
    with tempfile.TemporaryDirectory(prefix="mvrecon-example-") as tmp:
        res = make_session(Path(tmp) / "session", config)
        truth = res.rig
        # what a studio knows before calibrating: names, sizes, the lenses' focal lengths
        nominal = truth.replace(
            cameras=tuple(c.replace(dist=np.zeros(0), world_to_cam=np.eye(4)) for c in truth.cameras),
            meta={"example": True, "seed": int(config.seed)},
        )
        n_shots = 0
        with atomic_dir(rig_dir) as out:
            save_rig(nominal, out / "rig.json")
            shutil.copytree(res.root / "calib", out / "calib")
            n_shots = sum(1 for _ in (out / "calib").glob("*/*.png"))
        n_photos = 0
        with atomic_dir(photos_dir) as out:
            for fr in load_session(res.root).frames:
                for cam, p in fr.images.items():
                    write_image(out / fr.name / f"{cam}.jpg", read_image(p))
                    n_photos += 1
    return ExampleRig(rig_dir, photos_dir, nominal, truth, n_photos, n_shots)
