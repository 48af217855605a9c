"""The ``calibrate`` and ``refine`` stages of a session.

calibrate  ChArUco calibration from the session's board shots, or SfM from the first frame when
           there are none and the rig has no extrinsics: ``calibrate/calibration.json`` and
           ``calibrate/rig.json``
refine     per-session extrinsics refinement (``mvrecon session calibrate`` turns it on):
           ``refine/rig.json`` and ``refine/refine.json``
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import atomic_dir, write_json
from ..provenance import PROVENANCE_FILE
from ..stagedef import Context, stage_config

#: A calibration folder (``DIR/<shot>/<camera>.<ext>``) with more files than this is refused: a
#: session whose ``calib`` names ``/`` must not walk the whole disk.
MAX_CALIB_FILES = 10_000


def calib_files(ctx: Context) -> list[Path]:
    """The board shots' files: two levels deep, links to folders not followed, hidden names left out."""
    d = ctx.session.calib_dir
    if d is None or not d.is_dir():
        return []
    out: list[Path] = []
    level = [d]
    for _ in range(2):
        subdirs = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as e:
                raise InputError(f"cannot list the calibration folder ({e.strerror})", folder) from None
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(Path(entry.path))
                elif entry.is_file():
                    out.append(Path(entry.path))
                if len(out) + len(subdirs) > MAX_CALIB_FILES:
                    raise InputError(
                        f"the calibration folder holds more than {MAX_CALIB_FILES} entries; refused "
                        "(expected CALIB/<shot>/<camera>.<ext>)",
                        d,
                    )
        level = subdirs
    return sorted(out)


def has_board_shots(ctx: Context) -> bool:
    return bool(calib_files(ctx))


def rig_uncalibrated(ctx: Context) -> bool:
    """A rig without extrinsics: ``world_to_cam`` left out of rig.json (identity), so every camera
    sits at the same place, which no real rig does."""
    import numpy as np

    rig = ctx.session.rig
    centres = np.stack([c.center for c in rig.cameras])
    return len(rig) > 1 and bool(np.all(np.abs(centres - centres[0]) < 1e-9))


def calibrate_applies(ctx: Context) -> bool:
    return has_board_shots(ctx) or rig_uncalibrated(ctx)


def run_calibrate(ctx: Context) -> dict[str, Any]:
    from ..cameras import save_rig

    s = ctx.session
    if has_board_shots(ctx):
        from .charuco import calibrate_charuco

        cfg = stage_config(ctx.cfg.calibrate, "calibrate")
        calib_dir = s.calib_dir
        assert calib_dir is not None  # has_board_shots: the session names a calibration folder
        res = calibrate_charuco(s.rig, calib_dir, cfg)
        report = res.report() | {"config": dataclasses.asdict(cfg), "shots": ctx.rel(calib_dir)}
        numbers = {"reprojection RMS (px)": round(res.rms_px, 4), "board shots": res.n_shots}
        new_rig = res.rig
    else:
        import tempfile

        from .sfm import SfmConfig, calibrate_sfm

        # SfM wants DIR/<camera>.<ext>: link the first frame's photos under their camera names
        with tempfile.TemporaryDirectory(prefix="mvrecon-sfm-") as d:
            for cam, p in s.frames[0].images.items():
                os.symlink(p, Path(d) / f"{cam}{p.suffix.lower()}")
            sfm = calibrate_sfm(s.rig, d, SfmConfig())
        new_rig = sfm.rig
        report = {
            "format": "mvrecon-calibration/1",
            "method": "sfm",
            "rms_px": sfm.rms_px,
            "n_points": sfm.n_points,
            "scale": sfm.scale,
            "scale_source": sfm.scale_source,
            "frame": s.frames[0].name,
        }
        numbers = {"reprojection RMS (px)": round(sfm.rms_px, 4), "SfM points": sfm.n_points}
    with atomic_dir(s.stage_dir("calibrate")) as tmp:
        write_json(tmp / "calibration.json", report)
        save_rig(new_rig, tmp / "rig.json")
    return numbers


def refine_requested(ctx: Context) -> bool:
    return bool(
        ctx.cfg.refine_extrinsics
        or ctx.session.options.get("refine_extrinsics")
        or (ctx.session.stage_dir("refine") / PROVENANCE_FILE).is_file()
    )


def run_refine(ctx: Context) -> dict[str, Any]:
    from .refine import refine_extrinsics

    res = refine_extrinsics(ctx.session, stage_config(ctx.cfg.refine, "refine"), write=True)
    worst = max(res.moves, key=lambda m: m.shift_mm)
    return {
        "largest move (mm)": round(worst.shift_mm, 3),
        "moved camera": worst.name,
        "RMS before (px)": round(res.rms_before_px, 3),
        "RMS after (px)": round(res.rms_after_px, 3),
    }
