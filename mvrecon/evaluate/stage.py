"""The ``evaluate`` stage of a session: the fitted head against the session's scan, when it has one
with landmarks. Writes ``evaluate/`` (:func:`mvrecon.evaluate.write_outputs`: ``metrics.json``,
``metrics.md``, ``heatmap.png``) and ``pred_landmarks.json`` (the prediction's landmarks)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..errors import InputError, StageMissing
from ..stagedef import Context, stage_config

if TYPE_CHECKING:
    from ..session import ScanRef
    from .meshes import Units


def applies(ctx: Context) -> bool:
    return ctx.session.scan is not None and ctx.session.scan.landmarks is not None


def _scan(ctx: Context) -> tuple[ScanRef, Path]:
    """The session's scan and its landmarks file: the stage's run, inputs and settings are asked
    for only when it :func:`applies`, so both are there."""
    scan = ctx.session.scan
    assert scan is not None and scan.landmarks is not None  # applies(ctx) holds
    return scan, scan.landmarks


def fitted_mesh(ctx: Context) -> Path:
    """The fit's head mesh (its first expression group with the fused displacement)."""
    from ..fit.stagedef import STAGE as FIT

    fit = FIT.folder(ctx.session)
    mesh = FIT.outputs.find(fit, "head mesh")
    if mesh is None:
        raise StageMissing("no fitted mesh (detailed_<group>.obj or neutral.obj): run the fit stage", fit)
    return mesh


def rig_frame_motion(ctx: Context):
    """The rigid motion taking the world of the rig in force (the fit's frame) to the world of the
    session's own rig (the frame of a scan taken in the rig's volume), and the camera misfit (mm).

    Identity when no stage replaced the rig. A calibrate stage defines its own world frame (where
    the optical axes converge), so the fitted head is moved back by the rigid fit of the cameras'
    centres and axes (each camera: its centre and points 0.1 m along its z and y axes)."""
    import numpy as np

    from ..cameras import load_rig
    from ..geometry import IDENTITY, umeyama

    shipped = load_rig(ctx.session.rig_path)
    centres = np.stack([c.center for c in shipped.cameras])
    if len(shipped) > 1 and np.all(np.abs(centres - centres[0]) < 1e-9):
        raise InputError(
            'the scan is in the rig\'s frame (session.json scan "frame": "rig") but the rig has '
            "no extrinsics to define that frame",
            ctx.session.rig_path,
        )
    used = ctx.session.rig
    if all(np.allclose(used[c.name].world_to_cam, c.world_to_cam, atol=1e-9) for c in shipped.cameras):
        return IDENTITY, 0.0

    def marks(rig):
        pts = []
        for c in shipped.cameras:
            cam_to_world = np.linalg.inv(rig[c.name].world_to_cam)
            pts.append((cam_to_world @ np.array([[0, 0, 0, 1], [0, 0, 0.1, 1], [0, 0.1, 0, 1.0]]).T).T[:, :3])
        return np.concatenate(pts)

    src, dst = marks(used), marks(shipped)
    motion = umeyama(src, dst, with_scale=False)
    return motion, float(np.sqrt(((motion.apply(src) - dst) ** 2).sum(1).mean()) * 1e3)


def run(ctx: Context) -> dict[str, Any]:
    import numpy as np

    from ..io import atomic_dir, write_json
    from . import REALY_NOT_COMPUTED, evaluate, load_face_mesh, write_outputs
    from .keypoints import model_landmarks
    from .meshes import read_mesh
    from .report import PROTOCOL_TITLES

    s = ctx.session
    pred_path = fitted_mesh(ctx)
    scan_ref, scan_landmarks = _scan(ctx)
    cfg = stage_config(ctx.cfg.evaluate, "evaluate")
    if scan_ref.units in ("m", "cm", "mm") and cfg.scan_units == "auto":
        cfg = dataclasses.replace(cfg, scan_units=cast("Units", scan_ref.units))  # one of the units just checked
    # the fit writes metres, in the frame of the rig in force
    cfg = dataclasses.replace(cfg, pred_units="m", scan_in_rig_frame=scan_ref.frame == "rig")
    out: dict[str, Any] = {}
    lm_points, used = model_landmarks(ctx.model(), read_mesh(pred_path)[0], cfg.pred_keypoints)
    with atomic_dir(s.stage_dir("evaluate")) as tmp:
        lm = write_json(
            tmp / "pred_landmarks.json",
            {"mesh": ctx.rel(pred_path), "keypoints": used, "landmarks": np.round(lm_points, 7).tolist()},
        )
        pred = load_face_mesh(pred_path, lm, "m")
        if cfg.scan_in_rig_frame:
            motion, misfit = rig_frame_motion(ctx)
            if misfit or not np.allclose(motion.matrix(), np.eye(4)):
                pred = dataclasses.replace(
                    pred, vertices=motion.apply(pred.vertices), landmarks=motion.apply(pred.landmarks)
                )
                out["recalibrated rig to the session rig (camera misfit, mm)"] = round(misfit, 3)
        scan = load_face_mesh(scan_ref.mesh, scan_landmarks, cfg.scan_units)
        result = evaluate(pred, scan, cfg)
        write_outputs(result, tmp)
    if result.all_mm is not None:
        out[f"scan error {PROTOCOL_TITLES[result.headline]} (mm)"] = round(float(result.all_mm), 3)
    if "realy" not in result.protocols:
        out["scan error REALY (mm)"] = REALY_NOT_COMPUTED
    elif result.headline != "realy" and result.protocols["realy"].all_mm is not None:
        out["scan error REALY (mm)"] = round(float(result.protocols["realy"].all_mm), 3)
    out["scan error NoW median (mm)"] = round(float(result.now.median_mm), 3)
    part, (gap, _) = max(result.landmarks.groups.items(), key=lambda kv: kv[1][0])
    out["landmark gap, worst part (mm)"] = f"{part} {gap:.1f}"
    if used != cfg.pred_keypoints:
        out["prediction landmarks"] = f"{used} (no {cfg.pred_keypoints} set: run mvrecon model embed)"
    if result.missing_regions:
        out["missing regions"] = ", ".join(result.missing_regions)
    if result.landmarks.warning:
        out["warning"] = result.landmarks.warning
    return out


def inputs(ctx: Context) -> list[Path]:
    """The scan and its landmarks, the face model, and (for ``ibug`` keypoints) the model's
    MediaPipe embedding, which places the prediction's landmarks."""
    from ..facemodel.registry import search_dirs

    scan, scan_landmarks = _scan(ctx)
    files = [scan.mesh, scan_landmarks, *ctx.model_files()]
    if stage_config(ctx.cfg.evaluate, "evaluate").pred_keypoints != "ibug":
        return files
    name = Path(str(ctx.session.options.get("model", "ict"))).stem
    return files + [p for d in search_dirs() if (p := Path(d) / f"{name}.mediapipe.npz").is_file()][:1]


def settings(ctx: Context) -> Any:
    return {"evaluate": ctx.cfg.evaluate, "scan_frame": _scan(ctx)[0].frame}
