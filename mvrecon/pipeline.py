"""The end-to-end pipeline behind ``mvrecon session run``: the stages as an ordered list of data.

Each :class:`StageDef` names its stage, says when it applies to a session, which settings and
files it reads (upstream stages count by the digest of their outputs), how to run it and which
key numbers go into the summary. A stage is skipped when ``<stage>/provenance.json`` records the
same settings, library versions and input hashes as now, and its outputs are still the ones it
recorded. Provenance is written only after a stage finished (atomically), so a run killed
half-way leaves no provenance for the stage it was in, and the next run redoes that stage and
skips the ones before it; every stage writes its own files atomically, so the result is the
same as that of an uninterrupted run.

    ingest     validate the session against its rig, decode every photo once
    calibrate  ChArUco calibration from the session's board shots (or SfM from the first frame
               when there are none and the rig has no extrinsics): ``calibrate/rig.json``
    refine     per-session extrinsics refinement (``mvrecon session calibrate`` turns it on):
               ``refine/rig.json``
    cues       landmarks and part labels per view
    fit        the multi-view fit
    detail     the fine layer (wrinkles, pores) from the photos at full resolution
    texture    baked albedo, normal and displacement maps (with the fine layer)
    export     the game-ready asset ``export/head.glb``
    evaluate   against the session's scan, when it has one

Later stages use the rig in force, the newest rig: ``refine/`` over ``calibrate/`` over the
session's own rig (:func:`mvrecon.session.current_rig`, counting the rig stages that apply). Every
stage says whether it reads the rig (``reads_rig``); the content of the rig in force is then one of
its inputs, so a new calibration runs the cues, the fit and all after them again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from . import threads
from .errors import InputError, MvreconError, StageMissing
from .io import read_image, read_json, refuse_symlink, sha256_file, write_json, writes_confined_to

log = logging.getLogger("mvrecon.pipeline")

PROVENANCE_FILE = "provenance.json"
PROVENANCE_FORMAT = "mvrecon-provenance/1"
PresetName = Literal["fast", "default", "best"]
Status = Literal["done", "skipped", "failed", "not run"]

# --------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of every stage of a run (a named preset, see :func:`pipeline_config`)."""

    preset: PresetName = "default"
    """Preset these settings came from."""
    charuco: Any = None
    """:class:`mvrecon.calibrate.charuco.CharucoConfig` of the calibrate stage."""
    refine: Any = None
    """:class:`mvrecon.calibrate.refine.RefineConfig` of the refine stage."""
    cues: Any = None
    """:class:`mvrecon.cues.CuesConfig`."""
    fit: Any = None
    """:class:`mvrecon.fit.config.FitConfig`."""
    detail: Any = None
    """:class:`mvrecon.detail.DetailConfig`."""
    texture: Any = None
    """:class:`mvrecon.texture.bake.TextureConfig` (its size is also the export's texture size)."""
    export: Any = None
    """:class:`mvrecon.export.stage.ExportConfig`."""
    evaluate: Any = None
    """:class:`mvrecon.evaluate.EvalConfig`."""
    refine_extrinsics: bool = False
    """Run the refine stage even when the session has not asked for it."""


#: Skin atlas height per preset: 'fast' is for looking at the result quickly.
TEXTURE_SIZE = {"fast": 1024, "default": 2048, "best": 4096}


def pipeline_config(preset: PresetName = "default", **overrides: Any) -> PipelineConfig:
    """The settings of every stage for a named preset; ``overrides`` replace whole stage configs."""
    from .calibrate.charuco import CharucoConfig
    from .calibrate.refine import RefineConfig
    from .cues import PRESETS as CUES_PRESETS
    from .detail import PRESETS as DETAIL_PRESETS
    from .evaluate import EvalConfig
    from .export.stage import ExportConfig
    from .fit.config import preset as fit_preset
    from .texture.bake import TextureConfig

    if preset not in TEXTURE_SIZE:
        raise MvreconError(f"unknown preset {preset!r} (choose from {', '.join(TEXTURE_SIZE)})")
    size = TEXTURE_SIZE[preset]
    tex = TextureConfig(size=size)
    cfg = PipelineConfig(
        preset=preset,
        charuco=CharucoConfig(),
        refine=RefineConfig(out_dir="refine"),
        cues=CUES_PRESETS[preset],
        fit=fit_preset(preset),
        detail=DETAIL_PRESETS[preset],
        texture=tex,
        export=ExportConfig(texture_size=size, texture=tex),
        evaluate=EvalConfig(),
    )
    return dataclasses.replace(cfg, **overrides)


# --------------------------------------------------------------------------------------------
# hashing and provenance


def _canonical(obj: Any) -> str:
    def default(o: Any) -> Any:
        if dataclasses.is_dataclass(o):
            return dataclasses.asdict(o)
        if isinstance(o, Path):
            return str(o)
        if hasattr(o, "tolist"):
            return o.tolist()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    return json.dumps(obj, sort_keys=True, default=default, separators=(",", ":"))


def _jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (dataclasses, tuples, paths, numpy converted), order kept."""
    return json.loads(json.dumps(obj, default=lambda o: json.loads(_canonical(o))))


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(_canonical(obj).encode()).hexdigest()


def _is_tmp(name: str) -> bool:
    return name.startswith(".") and ".tmp-" in name


def output_hashes(stage_dir: Path) -> dict[str, str]:
    """sha256 of every file under a stage folder (relative POSIX paths), without the provenance
    file and temporaries."""
    out: dict[str, str] = {}
    if stage_dir.is_symlink() or not stage_dir.is_dir():
        return out
    for p in sorted(stage_dir.rglob("*")):
        rel = p.relative_to(stage_dir)
        if any(_is_tmp(part) for part in rel.parts):
            continue
        # the stages write no links: one found here was planted, and is neither followed nor trusted
        refuse_symlink(p, "a file in a stage folder")
        if p.is_file() and rel.as_posix() != PROVENANCE_FILE:
            out[rel.as_posix()] = sha256_file(p)
    return out


def versions() -> dict[str, str]:
    """The library versions a stage's outputs depend on."""
    import numpy
    import torch

    from . import __version__

    return {"mvrecon": __version__, "torch": torch.__version__, "numpy": numpy.__version__}


@dataclass(frozen=True)
class Provenance:
    """What made a stage's outputs (``<stage>/provenance.json``)."""

    stage: str
    key: str
    """sha256 over settings, versions and input hashes: equal keys, equal outputs."""
    settings: Mapping[str, Any]
    versions: Mapping[str, str]
    inputs: Mapping[str, str]
    """Input name (a file relative to the session, or ``stage:<name>``) -> sha256."""
    outputs: Mapping[str, str]
    """Output file (relative to the stage folder) -> sha256."""
    numbers: Mapping[str, Any]
    """The stage's key numbers for the summary."""
    seconds: float

    @property
    def outputs_digest(self) -> str:
        return sha256_json(dict(self.outputs))

    def to_dict(self) -> dict[str, Any]:
        return {"format": PROVENANCE_FORMAT, **dataclasses.asdict(self)}


def read_provenance(stage_dir: Path) -> Provenance | None:
    """The recorded provenance, or None when missing or unreadable (the stage then runs again)."""
    path = stage_dir / PROVENANCE_FILE
    if stage_dir.is_symlink() or path.is_symlink() or not path.is_file():
        return None
    try:
        d = read_json(path)
        if d.get("format") != PROVENANCE_FORMAT:
            return None
        return Provenance(d["stage"], d["key"], d["settings"], d["versions"], d["inputs"], d["outputs"],
                          d.get("numbers", {}), float(d.get("seconds", 0.0)))
    except (InputError, KeyError, TypeError, AttributeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# the stages


@dataclass
class Context:
    """What the stages of one run share: the session (with the rig currently in force), settings
    and the digests of the stages' outputs computed so far."""

    session: Any
    cfg: PipelineConfig
    force: bool = False
    digests: dict[str, str] = field(default_factory=dict)
    rig_stages: list[str] = field(default_factory=list)
    """The stages that wrote a rig and apply to this session, so far in the run."""
    _model: Any = None

    @property
    def root(self) -> Path:
        return self.session.root

    def model(self):
        if self._model is None:
            from .facemodel import load_model

            self._model = load_model(self.session.options.get("model", "ict"))
        return self._model

    def model_file(self) -> Path | None:
        from .facemodel.registry import model_path

        name = str(self.session.options.get("model", "ict"))
        p = Path(name).expanduser()
        # a path (read, and hashed as a regular file) or a plain name looked up in the models folders
        return p if name.endswith(".npz") or os.sep in name or p.is_file() else model_path(name)

    def rel(self, p: Path) -> str:
        try:
            return Path(p).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(p)


@dataclass(frozen=True)
class StageDef:
    """One pipeline stage as data."""

    name: str
    applies: Callable[[Context], bool]
    """Whether the stage has anything to do for this session."""
    not_applicable: str
    """Why it does not, in a few words (shown in the summary)."""
    settings: Callable[[Context], Any]
    """What the outputs depend on besides the inputs (a JSON-able value or dataclass)."""
    inputs: Callable[[Context], Sequence[Path]]
    """Files it reads (hashed), besides the upstream stages' outputs."""
    upstream: tuple[str, ...]
    """Earlier stages whose outputs it reads (counted when they apply)."""
    run: Callable[[Context], Mapping[str, Any]]
    """Runs the stage (writing its folder) and returns its key numbers."""
    reads_rig: bool = False
    """It reads the rig in force (``ctx.session.rig``), whose content is then one of its inputs."""
    writes_rig: bool = False
    """It writes ``<stage>/rig.json``, which is in force for the later stages (one of
    :data:`mvrecon.session.RIG_STAGES`)."""
    keeps_cache: bool = False
    """A failed run leaves the folder in place (without provenance, so nothing in it counts as a
    result): it holds a per-item cache the next run checks item by item (the cues of each view)."""


def _image_files(ctx: Context) -> list[Path]:
    return [v.image for v in ctx.session.views()]


#: A calibration folder (``DIR/<shot>/<camera>.<ext>``) with more files than this is refused: a
#: session whose ``calib`` names ``/`` must not walk the whole disk.
MAX_CALIB_FILES = 10_000


def _calib_files(ctx: Context) -> list[Path]:
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
            for e in entries:
                if e.name.startswith("."):
                    continue
                if e.is_dir(follow_symlinks=False):
                    subdirs.append(Path(e.path))
                elif e.is_file():
                    out.append(Path(e.path))
                if len(out) + len(subdirs) > MAX_CALIB_FILES:
                    raise InputError(f"the calibration folder holds more than {MAX_CALIB_FILES} entries; refused "
                                     "(expected CALIB/<shot>/<camera>.<ext>)", d)
        level = subdirs
    return sorted(out)


def _has_board_shots(ctx: Context) -> bool:
    return bool(_calib_files(ctx))


def _rig_uncalibrated(ctx: Context) -> bool:
    """A rig without extrinsics: ``world_to_cam`` left out of rig.json (identity), so every camera
    sits at the same place, which no real rig does."""
    import numpy as np

    rig = ctx.session.rig
    centres = np.stack([c.center for c in rig.cameras])
    return len(rig) > 1 and bool(np.all(np.abs(centres - centres[0]) < 1e-9))


# ingest


def _run_ingest(ctx: Context) -> dict[str, Any]:
    s = ctx.session
    views = []
    for v in s.views():
        img = read_image(v.image)  # a full decode: a truncated or corrupt photo stops here, named
        views.append({"key": v.key, "frame": v.frame, "camera": v.camera, "image": ctx.rel(v.image),
                      "size": [int(img.shape[1]), int(img.shape[0])],
                      "sha256": ctx.digests.get(f"file:{v.image}") or sha256_file(v.image)})
    from .io import atomic_dir

    with atomic_dir(s.stage_dir("ingest")) as tmp:
        write_json(tmp / "manifest.json", {"format": "mvrecon-ingest/1", "subject": s.subject, "rig": str(s.rig_path),
                                           "rig_sha256": sha256_file(s.rig_path),
                                           "session_sha256": sha256_file(s.session_file),
                                           "cameras": s.rig.names, "frames": [f.name for f in s.frames],
                                           "views": views, "scan": bool(s.scan), "board_shots": len(_calib_files(ctx))})
    return _ingest_numbers(ctx)


def _ingest_numbers(ctx: Context) -> dict[str, Any]:
    s = ctx.session
    return {"views": len(s.views()), "cameras": len(s.rig), "frames": len(s.frames)}


# calibrate


def _run_calibrate(ctx: Context) -> dict[str, Any]:
    from .cameras import save_rig
    from .io import atomic_dir

    s = ctx.session
    if _has_board_shots(ctx):
        from .calibrate.charuco import calibrate_charuco

        res = calibrate_charuco(s.rig, s.calib_dir, ctx.cfg.charuco)
        report = res.report() | {"config": dataclasses.asdict(ctx.cfg.charuco), "shots": ctx.rel(s.calib_dir)}
        numbers = {"reprojection RMS (px)": round(res.rms_px, 4), "board shots": res.n_shots}
    else:
        import tempfile

        from .calibrate.sfm import SfmConfig, calibrate_sfm

        # SfM wants DIR/<camera>.<ext>: link the first frame's photos under their camera names
        with tempfile.TemporaryDirectory(prefix="mvrecon-sfm-") as d:
            for cam, p in s.frames[0].images.items():
                os.symlink(p, Path(d) / f"{cam}{p.suffix.lower()}")
            res = calibrate_sfm(s.rig, d, SfmConfig())
        report = {"format": "mvrecon-calibration/1", "method": "sfm", "rms_px": res.rms_px, "n_points": res.n_points,
                  "scale": res.scale, "scale_source": res.scale_source, "frame": s.frames[0].name}
        numbers = {"reprojection RMS (px)": round(res.rms_px, 4), "SfM points": res.n_points}
    with atomic_dir(s.stage_dir("calibrate")) as tmp:
        write_json(tmp / "calibration.json", report)
        save_rig(res.rig, tmp / "rig.json")
    return numbers


def _put_rig_in_force(ctx: Context, st: StageDef) -> None:
    """After a stage that writes a rig ran, was up to date or was used as it is: its rig is in
    force for the later stages."""
    if st.writes_rig:
        ctx.rig_stages.append(st.name)
        ctx.session = ctx.session.in_force(ctx.rig_stages)
        log.info("rig in force: %s/rig.json", ctx.session.rig_source)


# refine


def _refine_requested(ctx: Context) -> bool:
    return bool(ctx.cfg.refine_extrinsics or ctx.session.options.get("refine_extrinsics")
                or (ctx.session.stage_dir("refine") / PROVENANCE_FILE).is_file())


def _run_refine(ctx: Context) -> dict[str, Any]:
    from .calibrate.refine import refine_extrinsics

    res = refine_extrinsics(ctx.session, ctx.cfg.refine, write=True)
    worst = max(res.moves, key=lambda m: m.shift_mm)
    return {"largest move (mm)": round(worst.shift_mm, 3), "moved camera": worst.name,
            "RMS before (px)": round(res.rms_before_px, 3), "RMS after (px)": round(res.rms_after_px, 3)}


# cues


def _run_cues(ctx: Context) -> dict[str, Any]:
    from .cues import run as cues_run

    cfg = dataclasses.replace(ctx.cfg.cues, overwrite=ctx.force)
    res = cues_run(cfg, ctx.session)
    if res.views and len(res.no_face) == len(res.views):
        raise MvreconError("no face found in any view", ctx.session.stage_dir("cues"))
    n_ok = len(res.views) - len(res.no_face)
    out: dict[str, Any] = {"views with a face": f"{n_ok}/{len(res.views)}"}
    if res.no_face:
        out["no face in"] = ", ".join(res.no_face)
    return out


# fit


def _run_fit(ctx: Context) -> dict[str, Any]:
    from .fit.stage import fit_session

    res = fit_session(ctx.session, ctx.cfg.fit, model=ctx.model())
    return _fit_numbers(res.summary)


def _fit_numbers(sm: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"landmark error (px)": sm.get("landmark_error_px_median")}
    total = sm.get("final_losses", {}).get("total")
    if total is not None:
        out["fit loss"] = float(f"{total:.4g}")
    out["views"] = len(sm.get("views", ()))
    return out


# detail / texture / export


def _run_detail(ctx: Context) -> dict[str, Any]:
    import numpy as np

    from .detail import run as detail_run

    r = detail_run(ctx.cfg.detail, ctx.session)
    groups = [g for g in r.summary["groups"].values() if g.get("views")]
    out: dict[str, Any] = {"grid": f"{r.maps.size}x{r.maps.size}"}
    if groups:
        out["fine RMS (um)"] = round(float(np.mean([g["fine_rms_um"] for g in groups])), 1)
        out["shading as geometry (%)"] = round(100 * float(np.mean([g["trusted_fraction"] for g in groups])), 1)
    return out


def _run_texture(ctx: Context) -> dict[str, Any]:
    from .texture.stage import run as texture_run

    r = texture_run(ctx.cfg.texture, ctx.session)
    t = r.textures
    seen = float((t.skin_weight > 0)[t.skin_mask].mean()) if t.skin_mask.any() else 0.0
    return {"skin texels seen (%)": round(100 * seen, 1), "size": f"{t.skin.shape[1]}x{t.skin.shape[0]}"}


def _run_export(ctx: Context) -> dict[str, Any]:
    from .export.stage import export

    r = export(ctx.session, ctx.cfg.export)
    return {"triangles": r.lod_triangles[0], "GLB (MB)": round(r.glb_bytes / 1e6, 2), "morph targets": len(r.target_names)}


# evaluate


def _fit_group_mesh(ctx: Context) -> Path:
    fit = ctx.session.stage_dir("fit")
    meshes = sorted(fit.glob("detailed_*.obj"))
    if meshes:
        return meshes[0]
    if (fit / "neutral.obj").is_file():
        return fit / "neutral.obj"
    raise StageMissing("no fitted mesh (detailed_<group>.obj or neutral.obj): run the fit stage", fit)


def _rig_frame_motion(ctx: Context):
    """The rigid motion taking the world of the rig in force (the fit's frame) to the world of the
    session's own rig (the frame of a scan taken in the rig's volume), and the camera misfit (mm).

    Identity when no stage replaced the rig. A calibrate stage defines its own world frame (where
    the optical axes converge), so the fitted head is moved back by the rigid fit of the cameras'
    centres and axes (each camera: its centre and points 0.1 m along its z and y axes)."""
    import numpy as np

    from .cameras import load_rig
    from .evaluate.geometry import IDENTITY, umeyama

    shipped = load_rig(ctx.session.rig_path)
    centres = np.stack([c.center for c in shipped.cameras])
    if len(shipped) > 1 and np.all(np.abs(centres - centres[0]) < 1e-9):
        raise InputError("the scan is in the rig's frame (session.json scan \"frame\": \"rig\") but the rig has "
                         "no extrinsics to define that frame", ctx.session.rig_path)
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


def _run_evaluate(ctx: Context) -> dict[str, Any]:
    import numpy as np

    from .evaluate import REALY_NOT_COMPUTED, evaluate, load_face_mesh, write_outputs
    from .evaluate.keypoints import model_landmarks
    from .evaluate.meshes import read_mesh
    from .evaluate.report import PROTOCOL_TITLES
    from .io import atomic_dir

    s = ctx.session
    pred_path = _fit_group_mesh(ctx)
    cfg = ctx.cfg.evaluate
    if s.scan.units in ("m", "cm", "mm") and cfg.scan_units == "auto":
        cfg = dataclasses.replace(cfg, scan_units=s.scan.units)
    # the fit writes metres, in the frame of the rig in force
    cfg = dataclasses.replace(cfg, pred_units="m", scan_in_rig_frame=s.scan.frame == "rig")
    out: dict[str, Any] = {}
    lm_points, used = model_landmarks(ctx.model(), read_mesh(pred_path)[0], cfg.pred_keypoints)
    with atomic_dir(s.stage_dir("evaluate")) as tmp:
        lm = write_json(tmp / "pred_landmarks.json", {"mesh": ctx.rel(pred_path), "keypoints": used,
                                                      "landmarks": np.round(lm_points, 7).tolist()})
        pred = load_face_mesh(pred_path, lm, "m")
        if cfg.scan_in_rig_frame:
            motion, misfit = _rig_frame_motion(ctx)
            if misfit or not np.allclose(motion.matrix(), np.eye(4)):
                pred = dataclasses.replace(pred, vertices=motion.apply(pred.vertices), landmarks=motion.apply(pred.landmarks))
                out["recalibrated rig to the session rig (camera misfit, mm)"] = round(misfit, 3)
        scan = load_face_mesh(s.scan.mesh, s.scan.landmarks, cfg.scan_units)
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


def _scan_files(ctx: Context) -> list[Path]:
    s = ctx.session.scan
    return [s.mesh, s.landmarks]


def _embedding_files(ctx: Context) -> list[Path]:
    """The model's MediaPipe embedding, which places the prediction's ``ibug`` landmarks."""
    from .facemodel.registry import search_dirs

    if ctx.session.scan is None or ctx.cfg.evaluate.pred_keypoints != "ibug":
        return []
    name = Path(str(ctx.session.options.get("model", "ict"))).stem
    return [p for d in search_dirs() if (p := Path(d) / f"{name}.mediapipe.npz").is_file()][:1]


def _evaluate_settings(ctx: Context) -> Any:
    return {"evaluate": ctx.cfg.evaluate, "scan_frame": ctx.session.scan.frame}


def _settings(attr: str) -> Callable[[Context], Any]:
    return lambda ctx: getattr(ctx.cfg, attr)


def _cues_settings(ctx: Context) -> Any:
    return ctx.cfg.cues.settings() | {"overlay": ctx.cfg.cues.overlay}


def _model_files(ctx: Context) -> list[Path]:
    p = ctx.model_file()
    return [p] if p is not None else []


def _always(ctx: Context) -> bool:
    return True


STAGES: tuple[StageDef, ...] = (
    StageDef("ingest", _always, "", lambda ctx: {"format": "mvrecon-ingest/1"},
             lambda ctx: [ctx.session.session_file, ctx.session.rig_path, *_image_files(ctx)], (), _run_ingest),
    StageDef("calibrate", lambda ctx: _has_board_shots(ctx) or _rig_uncalibrated(ctx),
             "no board shots, the rig has extrinsics", _settings("charuco"), _calib_files, ("ingest",),
             _run_calibrate, reads_rig=True, writes_rig=True),
    StageDef("refine", _refine_requested, "not asked for (mvrecon session calibrate)", _settings("refine"),
             lambda ctx: [], ("ingest", "calibrate"), _run_refine, reads_rig=True, writes_rig=True),
    # the cues read the rig: the model parser fits one head to a frame's views with its cameras
    StageDef("cues", _always, "", _cues_settings, lambda ctx: [], ("ingest", "calibrate", "refine"), _run_cues,
             reads_rig=True, keeps_cache=True),
    StageDef("fit", _always, "", _settings("fit"), _model_files, ("ingest", "calibrate", "refine", "cues"), _run_fit,
             reads_rig=True),
    StageDef("detail", _always, "", _settings("detail"), lambda ctx: [], ("ingest", "calibrate", "refine", "fit"),
             _run_detail, reads_rig=True),
    StageDef("texture", _always, "", _settings("texture"), lambda ctx: [],
             ("ingest", "calibrate", "refine", "fit", "detail"), _run_texture, reads_rig=True),
    StageDef("export", _always, "", _settings("export"), lambda ctx: [], ("fit", "texture"), _run_export),
    # a scan in the rig's frame is compared through the motion from the rig in force to the session's
    StageDef("evaluate", lambda ctx: ctx.session.scan is not None and ctx.session.scan.landmarks is not None,
             "no scan with landmarks", _evaluate_settings,
             lambda ctx: [*_scan_files(ctx), *_model_files(ctx), *_embedding_files(ctx)],
             ("fit",), _run_evaluate, reads_rig=True),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


# --------------------------------------------------------------------------------------------
# running


@dataclass
class StageOutcome:
    """What happened to one stage in a run."""

    stage: str
    status: Status
    seconds: float | None = None
    numbers: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunResult:
    """The outcome of :func:`run_pipeline`."""

    root: Path
    preset: str
    stages: list[StageOutcome]
    seconds: float
    log_file: Path | None = None
    report: Path | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {"session": str(self.root), "preset": self.preset, "ok": self.ok, "error": self.error,
                "seconds": round(self.seconds, 2), "stages": [s.to_dict() for s in self.stages],
                "report": None if self.report is None else str(self.report),
                "log": None if self.log_file is None else str(self.log_file)}


def _fmt_number(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_outcome(o: StageOutcome) -> str:
    """One progress line: stage, status, time, key numbers."""
    secs = "" if o.seconds is None else f"{o.seconds:7.1f} s"
    nums = ", ".join(f"{k} {_fmt_number(v)}" for k, v in o.numbers.items())
    tail = "; ".join(x for x in (nums, o.note) if x)
    return f"{o.stage:<10} {o.status:<8} {secs:>9}  {tail}".rstrip()


def format_summary(res: RunResult) -> str:
    """The summary table printed at the end of a run."""
    lines = [f"{'stage':<10} {'status':<8} {'time':>9}  key numbers", "-" * 72]
    lines += [format_outcome(o) for o in res.stages]
    lines.append("-" * 72)
    lines.append(f"{'total':<10} {'ok' if res.ok else 'failed':<8} {res.seconds:7.1f} s")
    return "\n".join(lines)


def _input_hashes(ctx: Context, st: StageDef) -> dict[str, str]:
    hashes: dict[str, str] = {}
    for p in st.inputs(ctx):
        hashes[ctx.rel(p)] = ctx.digests.get(f"file:{p}") or sha256_file(p)
        ctx.digests[f"file:{p}"] = hashes[ctx.rel(p)]
    for up in st.upstream:
        if up in ctx.digests:
            hashes[f"stage:{up}"] = ctx.digests[up]
    if st.reads_rig:
        # the rig in force (the session's, or a calibrated / refined one): its content counts
        hashes["rig"] = sha256_json(ctx.session.rig.to_dict())
    return hashes


def _up_to_date(ctx: Context, st: StageDef, key: str) -> Provenance | None:
    prov = read_provenance(ctx.session.stage_dir(st.name))
    if prov is None or prov.key != key:
        return None
    if output_hashes(ctx.session.stage_dir(st.name)) != dict(prov.outputs):
        log.info("%s: outputs changed since they were made; running again", st.name)
        return None
    return prov


def dependents(name: str) -> list[str]:
    """``name`` and every stage whose inputs include its outputs, directly or not, in run order."""
    out = [name]
    for st in STAGES:
        if st.name not in out and any(u in out for u in st.upstream):
            out.append(st.name)
    return out


STALE_SUFFIX = ".stale"


def move_aside(root: Path, names: Sequence[str]) -> list[Path]:
    """Move the folders of stages whose outputs are no longer true (a stage that failed, and the
    stages made from it) to ``<stage>.stale/`` (replacing an older one), so no stale head, texture
    or score is left where a current one would be. Links are never followed or moved."""
    moved = []
    for name in names:
        sdir = root / name
        if sdir.is_symlink() or not sdir.is_dir():
            continue
        dest = root / f"{name}{STALE_SUFFIX}"
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.is_dir():
            shutil.rmtree(dest)
        os.replace(sdir, dest)
        moved.append(dest)
    return moved


def current_stages(root: Path, res: "RunResult | None" = None) -> dict[str, Provenance]:
    """The stages whose outputs are current, with their provenance: recorded as finished, outputs
    unchanged since, made from the current outputs of every upstream stage they read, and (given
    ``res``, the run just made) not failed in it. Everything else a stage folder holds is stale."""
    failed = {o.stage for o in res.stages if o.status == "failed"} if res is not None else set()
    out: dict[str, Provenance] = {}
    for name in STAGE_NAMES:
        sdir = root / name
        prov = read_provenance(sdir)
        if prov is None or name in failed:
            continue
        try:
            if output_hashes(sdir) != dict(prov.outputs):
                continue
        except MvreconError:  # a link or special file planted among the outputs
            continue
        ups = {k[len("stage:"):]: v for k, v in prov.inputs.items() if k.startswith("stage:")}
        if all(u in out and out[u].outputs_digest == d for u, d in ups.items()):
            out[name] = prov
    return out


def clean_temporaries(root: Path) -> list[Path]:
    """Remove the temporary files and folders an interrupted writer left (``.<name>.tmp-*``) in the
    session folder and the stage folders; call it only while holding the session lock."""
    removed = []
    dirs = [root] + [root / n for n in STAGE_NAMES] + [root / n / "overlays" for n in STAGE_NAMES]
    for d in dirs:
        if d.is_symlink() or not d.is_dir():  # never reach through a link
            continue
        for p in d.iterdir():
            if _is_tmp(p.name):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def _stage_index(name: str | None, default: int) -> int:
    if name is None:
        return default
    if name not in STAGE_NAMES:
        raise MvreconError(f"unknown stage {name!r} (stages: {', '.join(STAGE_NAMES)})")
    return STAGE_NAMES.index(name)


def _next_log(logs: Path) -> Path:
    try:
        logs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MvreconError(f"cannot create the logs folder ({e.strerror})", logs) from None
    nums = [int(m.group(1)) for p in logs.glob("run-*.log") if (m := re.fullmatch(r"run-(\d+)\.log", p.name))]
    path = logs / f"run-{max(nums, default=0) + 1:03d}.log"
    try:  # made here, new, never through a link; the log handler then appends to it
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
    except OSError as e:
        raise MvreconError(f"cannot create the run log ({e.strerror})", path) from None
    return path


@contextlib.contextmanager
def _log_to(path: Path, verbose: bool):
    """Send the package's log records (and Python warnings, e.g. torch's) to ``path``; on the
    console only with ``verbose``."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    pkg = logging.getLogger("mvrecon")
    warn = logging.getLogger("py.warnings")
    old = (pkg.level, pkg.propagate, warn.propagate)
    pkg.addHandler(handler)
    warn.addHandler(handler)
    pkg.setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    console = None
    if not verbose:
        pkg.propagate = False
        warn.propagate = False
        # the stages' warnings (a view without a face ...) still reach the console; the run's own
        # error record does not (the CLI prints it as one line)
        console = logging.StreamHandler()
        console.setLevel(logging.WARNING)
        console.addFilter(lambda r: not getattr(r, "file_only", False))
        pkg.addHandler(console)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        if console is not None:
            pkg.removeHandler(console)
        pkg.removeHandler(handler)
        warn.removeHandler(handler)
        pkg.setLevel(old[0])
        pkg.propagate, warn.propagate = old[1], old[2]
        handler.close()


def run_pipeline(
    root: str | Path,
    cfg: PipelineConfig | None = None,
    start: str | None = None,
    stop: str | None = None,
    force: bool = False,
    verbose: bool = False,
    echo: Callable[[str], None] | None = None,
    on_stage: Callable[[str, str], None] | None = None,
    report: bool = True,
) -> RunResult:
    """Run the stages of the session at ``root`` in order, from ``start`` to ``stop`` (names of
    :data:`STAGE_NAMES`), skipping up-to-date ones unless ``force``. With ``start`` that stage and
    the later ones run again, the stages before it are used as they are (even when out of date).
    ``echo`` gets one line per stage; ``on_stage(name, "start"|"end")`` is for benchmarks. Holds the session lock throughout (:class:`~mvrecon.errors.SessionBusy` when
    another run has it); writes ``SESSION/logs/run-NNN.log`` and, at the end, ``SESSION/report.html``.
    User-fixable errors are raised (after the report of what exists) as :class:`MvreconError`."""
    from .session import load_session, session_lock

    cfg = cfg or pipeline_config()
    echo = echo or (lambda s: None)
    i0 = _stage_index(start, 0)
    i1 = _stage_index(stop, len(STAGES) - 1)
    if i0 > i1:
        raise MvreconError(f"--from {start} comes after --to {stop}")
    root = Path(root).resolve()
    if not (root / "session.json").is_file():
        raise InputError("not a session folder (no session.json)", root)
    t_run = time.perf_counter()
    with threads.running(), session_lock(root), writes_confined_to(root):
        log_file = _next_log(refuse_symlink(root / "logs", "logs folder"))
        with _log_to(log_file, verbose):
            log.info("run: %s, preset %s, stages %s..%s%s", root, cfg.preset, STAGE_NAMES[i0], STAGE_NAMES[i1],
                     ", forced" if force else "")
            for p in clean_temporaries(root):
                log.info("removed %s (left by an interrupted run)", p)
            outcomes: list[StageOutcome] = []
            ctx: Context | None = None
            error: BaseException | None = None
            try:
                session = load_session(root)
                ctx = Context(session=session, cfg=cfg, force=force)
                for i, st in enumerate(STAGES):
                    forced = force or (start is not None and i >= i0)
                    o = _do_stage(ctx, st, i, i0, i1, forced, echo, on_stage)
                    outcomes.append(o)
            except MvreconError as e:
                error = e
                log.error("%s", e, exc_info=True, extra={"file_only": True})
                done = {o.stage for o in outcomes}
                failed = next((s.name for s in STAGES if s.name not in done), None)
                if failed is not None and ctx is not None:
                    o = StageOutcome(failed, "failed", note=str(e))
                    outcomes.append(o)
                    echo(format_outcome(o))
                    # what the failed stage made before, and what was made from it, is no longer
                    # true: moved aside, never shown as the result of this run
                    st_failed = next(s for s in STAGES if s.name == failed)
                    stale = [n for n in dependents(failed) if not (n == failed and st_failed.keeps_cache)]
                    try:
                        for p in move_aside(root, stale):
                            log.info("moved %s aside: made from outputs that are no longer current", p)
                    except OSError as e2:
                        log.warning("could not move stale outputs aside (%s)", e2)
                outcomes += [StageOutcome(s.name, "not run") for s in STAGES if s.name not in {x.stage for x in outcomes}]
            except KeyboardInterrupt:
                log.error("interrupted; the next run continues after the last finished stage", extra={"file_only": True})
                raise
            except Exception:
                log.exception("internal error", extra={"file_only": True})
                raise
            res = RunResult(root, cfg.preset, outcomes, time.perf_counter() - t_run, log_file,
                            error=None if error is None else str(error))
            ingested = any(o.stage == "ingest" and o.status in ("done", "skipped") for o in outcomes)
            old_report = root / "report.html"
            # bad input on a first run: nothing at all is written; on a re-run the earlier report
            # would show results of inputs that are gone: rewritten (all stale) when the session
            # loads, else moved aside
            if report and ctx is not None and (ingested or old_report.is_file()):
                try:
                    res.report = write_session_report(ctx.session, res)
                except MvreconError as e:  # a report problem must not hide the run's outcome
                    log.warning("report not written: %s", e)
                res.seconds = time.perf_counter() - t_run
            elif report and error is not None and old_report.is_file() and not old_report.is_symlink():
                with contextlib.suppress(OSError):
                    os.replace(old_report, root / "report.stale.html")
                    log.info("moved the previous report aside (report.stale.html): the session no longer loads")
            log.info("run finished in %.1f s%s", res.seconds, "" if error is None else f": {error}")
            if error is not None:
                error.run_result = res  # type: ignore[attr-defined]  # for --json on failure
                raise error
            return res


def _do_stage(ctx: Context, st: StageDef, i: int, i0: int, i1: int, force: bool,
              echo: Callable[[str], None], on_stage) -> StageOutcome:
    sdir = ctx.session.stage_dir(st.name)
    if not st.applies(ctx):
        o = StageOutcome(st.name, "skipped", note=f"not needed: {st.not_applicable}")
        echo(format_outcome(o))
        return o
    if i > i1:
        prov = read_provenance(sdir)
        o = StageOutcome(st.name, "not run", numbers=dict(prov.numbers) if prov else {},
                         note="after --to" + (" (numbers of an earlier run)" if prov else ""))
        echo(format_outcome(o))
        return o
    if i < i0:
        # before --from: used as it is
        prov = read_provenance(sdir)
        if not sdir.is_dir():
            if st.writes_rig or not any(st.name in s.upstream for s in STAGES[i0:i1 + 1]):
                # the selected stages do not read it (texture from a fit, without the cues folder), or
                # it is a rig stage that never ran: the rig in force is the next older one
                o = StageOutcome(st.name, "not run", note="before --from, no outputs; "
                                 + ("the older rig is in force" if st.writes_rig else "not read by the selected stages"))
                echo(format_outcome(o))
                return o
            raise StageMissing(f"no {st.name} yet: stage {st.name} has no outputs; run it first ('mvrecon session "
                               f"run SESSION --to {st.name}')", sdir)
        ctx.digests[st.name] = prov.outputs_digest if prov else sha256_json(output_hashes(sdir))
        _put_rig_in_force(ctx, st)
        o = StageOutcome(st.name, "skipped", numbers=dict(prov.numbers) if prov else {}, note="before --from")
        echo(format_outcome(o))
        return o
    settings = st.settings(ctx)
    vers = versions()
    inputs = _input_hashes(ctx, st)
    key = sha256_json({"stage": st.name, "settings": settings, "versions": vers, "inputs": inputs})
    prov = None if force else _up_to_date(ctx, st, key)
    if prov is not None:
        ctx.digests[st.name] = prov.outputs_digest
        _put_rig_in_force(ctx, st)
        o = StageOutcome(st.name, "skipped", 0.0, dict(prov.numbers), note="up to date")
        log.info("%s: up to date, skipped", st.name)
        echo(format_outcome(o))
        return o
    log.info("%s: running", st.name)
    threads.rebalance(force=True)  # its share of the cores now, in every library loaded so far
    if on_stage:
        on_stage(st.name, "start")
    (sdir / PROVENANCE_FILE).unlink(missing_ok=True)
    t0 = time.perf_counter()
    with writes_confined_to(sdir):  # a stage writes in its own folder, nowhere else
        numbers = dict(st.run(ctx))
        secs = time.perf_counter() - t0
        if on_stage:
            on_stage(st.name, "end")
        outputs = output_hashes(sdir)
        prov = Provenance(st.name, key, _jsonable(settings), vers, inputs, outputs, _jsonable(numbers), round(secs, 3))
        write_json(sdir / PROVENANCE_FILE, prov.to_dict())  # last: its presence means the stage finished
    ctx.digests[st.name] = prov.outputs_digest
    _put_rig_in_force(ctx, st)
    log.info("%s: done in %.1f s: %s", st.name, secs, numbers)
    o = StageOutcome(st.name, "done", secs, numbers)
    echo(format_outcome(o))
    return o


# --------------------------------------------------------------------------------------------
# the session report


def report_content(session, res: RunResult | None = None):
    """A :class:`~mvrecon.report.ReportContent` from what the session's stages wrote, showing only
    current outputs (:func:`current_stages`); a stage whose folder holds anything else is "stale"."""
    from . import __version__
    from .report import ReportContent, StageRow, overlays_in

    root = session.root
    current = current_stages(root, res)

    def stale(name: str) -> bool:
        return name not in current and (root / name).is_dir()

    rows = []
    if res is not None:
        for o in res.stages:
            status, note = o.status, o.note
            if status in ("done", "skipped", "not run") and stale(o.stage):
                status, note = "stale", "outputs made from inputs that are no longer current; not shown"
            rows.append(StageRow(o.stage, status, o.seconds, {k: v for k, v in o.numbers.items() if v is not None},
                                 note))
    else:  # a report outside a run: what the recorded provenance says
        for name in STAGE_NAMES:
            if name in current:
                prov = current[name]
                rows.append(StageRow(name, "done", prov.seconds, dict(prov.numbers), "recorded in provenance.json"))
            elif stale(name):
                rows.append(StageRow(name, "stale", None, {}, "outputs not current (run the session again); not shown"))
    metrics: dict[str, Any] = {}
    for name in ("calibrate", "refine", "fit", "detail", "texture", "export"):
        prov = current.get(name)
        if prov is not None and prov.numbers:
            metrics[name] = dict(prov.numbers)
    ev = root / "evaluate" / "metrics.json"
    if "evaluate" in current and ev.is_file():
        with contextlib.suppress(InputError):
            metrics["evaluate"] = _eval_metrics(read_json(ev))
    fit_summary = root / "fit" / "summary.json"
    if "fit" in current and fit_summary.is_file():
        with contextlib.suppress(InputError):
            summary = read_json(fit_summary)
            losses = summary.get("final_losses", {}) if isinstance(summary, dict) else {}
            if losses:
                metrics["fit losses (final)"] = losses

    def existing(stage: str, name: str) -> Path | None:
        p = root / stage / name
        return p if stage in current and p.is_file() else None

    return ReportContent(
        subject=session.subject,
        provenance={"session": root.name, "rig": f"{session.rig.name} ({len(session.rig)} cameras)",
                    "views": str(len(session.views())), "mvrecon": __version__,
                    **({"preset": res.preset} if res is not None else {})},
        stages=rows,
        overlays=overlays_in(root / "fit" / "overlays") if "fit" in current else [],
        texture=existing("texture", "albedo.png"),
        heatmap=existing("evaluate", "heatmap.png"),
        loss_curve=existing("fit", "losses.png"),
        metrics=metrics,
        glb=existing("export", "head.glb"),
    )


def _eval_metrics(d: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of ``evaluate/metrics.json`` a person reads first."""
    from .evaluate import REALY_NOT_COMPUTED
    from .evaluate.report import PROTOCOL_TITLES

    out: dict[str, Any] = {}
    if not isinstance(d, Mapping):
        return out

    def regions(p: Mapping[str, Any]) -> dict[str, Any]:
        return {k[:-3]: v for k, v in p.items() if k.endswith("_mm") and k != "all_mm"}

    # metrics.json before the robust protocol had one "realy" protocol
    head = d.get("headline") if isinstance(d.get("headline"), Mapping) else d.get("realy")
    name = PROTOCOL_TITLES.get(head.get("protocol", ""), "REALY") if isinstance(head, Mapping) else ""
    if isinstance(head, Mapping):
        if head.get("all_mm") is not None:
            out[f"{name} all (mm), headline"] = head["all_mm"]
        if regions(head):
            out[f"{name} regions (mm)"] = regions(head)
    for key, title in PROTOCOL_TITLES.items():
        p = d.get(key)
        if isinstance(p, Mapping) and isinstance(head, Mapping) and key != head.get("protocol"):
            out[f"{title} (mm)"] = {**regions(p), "all": p.get("all_mm")}
    # the realy protocol runs on request; metrics.json then lacks its key (older ones always have it)
    if "realy" not in d and isinstance(head, Mapping) and head.get("protocol") != "realy":
        out[f"{PROTOCOL_TITLES['realy']} (mm)"] = REALY_NOT_COMPUTED
    lm = d.get("landmarks") if isinstance(d.get("landmarks"), Mapping) else {}
    if isinstance(lm.get("gap_median_mm"), Mapping):
        out["landmark gap after the 7-point alignment, median (mm)"] = dict(lm["gap_median_mm"])
    if lm.get("warning"):
        out["warning"] = lm["warning"]
    now = d.get("now") if isinstance(d.get("now"), Mapping) else {}
    if now:
        out["NoW (mm)"] = {k[:-3]: v for k, v in now.items() if k.endswith("_mm")}
    chamfer = d.get("chamfer") if isinstance(d.get("chamfer"), Mapping) else {}
    if chamfer.get("symmetric_mm") is not None:
        out["Chamfer, symmetric (mm)"] = chamfer["symmetric_mm"]
    for k, v in d.items():
        if k.startswith("fscore_") and isinstance(v, Mapping) and "f" in v:
            out[f"F-score @ {k[len('fscore_'):]}"] = v["f"]
    if d.get("normal_consistency") is not None:
        out["normal consistency"] = d["normal_consistency"]
    return out


def write_session_report(session, res: RunResult | None = None, cfg=None) -> Path:
    """Build ``SESSION/report.html`` from what exists (see :func:`report_content`)."""
    from .report import ReportConfig, build_report

    return build_report(session.root, report_content(session, res), cfg or ReportConfig())
