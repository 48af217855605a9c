"""The fit stage: ``fit_session(session, config) -> FitResult`` (the pipeline runs it through
:data:`mvrecon.fit.stagedef.STAGE`).

Reads the session's cues (``cues/<view>/landmarks.json`` and ``labels.png``), initialises from
triangulated landmarks, runs the schedule and writes ``fit/``::

    params.npz          every fitted parameter + the layout (views, groups) + init figures
    neutral.obj         identity + deformation map, expression zero, posed like group 0 (world, metres)
    mesh_<group>.obj    identity + expression + deformation of each group (world, metres)
    detailed_<group>.obj  the same with the fused displacement map
    displacement.npy    the fused UV displacement map (metres along the normal; zero unless the
                        schedule has a displacement stage, :func:`.config.with_displacement`)
    overlays/<view>.jpg mesh edges and part outlines over each photo
    losses.png, losses.json   loss curves
    config.json, summary.json
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cameras import Camera
from ..errors import InputError, StageMissing
from ..facemodel import FaceModel, load_model
from ..io import read_image
from .config import FitConfig, preset
from .data import ViewBatch, ViewCues, prepare_views
from .init import InitResult, fit_landmarks_3d, judge_views, triangulate_landmarks
from .optimize import FitState, Fitter, project
from .params import FitParams, HeadGeometry, Layout, sample_uv_map

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What a fit produced (arrays in world metres unless stated)."""

    out_dir: Path | None
    views: list[str]
    skipped: dict[str, str]
    layout: Layout
    init: InitResult
    state: FitState
    geometry: HeadGeometry
    batch: ViewBatch
    meshes: dict[str, np.ndarray]
    """group name -> (N, 3) world vertices with identity, expression and deformation."""
    detailed: dict[str, np.ndarray]
    """group name -> (N, 3) world vertices plus the fused displacement."""
    neutral: np.ndarray
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


def make_layout(views_frames: list[str], mode: str, synchronized: bool) -> tuple[Layout, list[str]]:
    """Expression groups: one per frame (synchronized rig, ``per_frame``) or one per view."""
    if mode == "auto":
        mode = "per_frame" if synchronized else "per_view"
    if mode == "per_frame":
        names = list(dict.fromkeys(views_frames))
        gov = np.array([names.index(f) for f in views_frames])
    else:
        names = [f"v{i}" for i in range(len(views_frames))]
        gov = np.arange(len(views_frames))
    return Layout(group_of_view=gov, n_groups=len(names), mode=mode), names


#: A view displaced as a whole by less than this (face sizes, the inter-ocular distance: about
#: 3 mm at the head) is left to a fit that corrects the cameras (:func:`initialise`).
CAMERA_DRIFT_TOLERANCE = 0.05


def initialise(model: FaceModel, batch: ViewBatch, layout: Layout, cameras_corrected: bool = False) -> InitResult:
    """Triangulate the landmarks of all views (per frame when there are several) and fit the model.
    With ``cameras_corrected`` (the fit corrects the rig's cameras), a view whose landmarks are
    displaced as a whole by less than :data:`CAMERA_DRIFT_TOLERANCE` face sizes keeps them: a
    camera that moved since its calibration by a millimetre or two shifts its view so, and the
    correction, not the landmarks, should take it."""
    P = (batch.K @ batch.world_to_cam[:, :3, :]).double().numpy()
    lm = batch.lm68.double().numpy()
    conf = batch.lm_conf.double().numpy()
    frames = np.array(batch.frames)
    first = frames[0]
    sel = frames == first
    # A view whose landmarks are wrong as a whole (a mis-detection, a detector's crop shifted by
    # 30 px) can pass a per-landmark RANSAC (a shift along the epipolar lines only changes depth,
    # and a pixel threshold loose enough for side views admits it), so views are judged as a
    # whole first: one displaced as a whole is moved back onto the others' points, one that
    # disagrees otherwise leaves the landmarks (its masks and photo stay).
    idx = np.flatnonzero(sel)
    moved = {}
    for vd in judge_views(
        P[sel],
        lm[sel],
        conf[sel],
        batch.face_size.double().numpy()[sel],
        threshold_px=0.06 * batch.size,
        tolerate=CAMERA_DRIFT_TOLERANCE if cameras_corrected else 0.0,
    ):
        k = idx[vd.view]
        if vd.action == "shift":
            d = torch.as_tensor(vd.shift_px, dtype=batch.lm68.dtype)
            batch.lm68[k] += d
            if batch.lm_dense is not None:
                batch.lm_dense[k] += d
            scale = batch.cameras_full[k].K[0, 0] / float(batch.K[k, 0, 0])
            moved[batch.keys[k]] = dx, dy = [round(float(-x * scale), 2) for x in vd.shift_px]
            log.warning(
                "fit: the landmarks of view %s are displaced as a whole from the other views' by "
                "(%.1f, %.1f) px; moved back (view consistency %.3f -> %.3f face widths)",
                batch.keys[k],
                dx,
                dy,
                vd.score_before,
                vd.score_after,
            )
        else:
            batch.lm_conf[k] = 0
            log.warning(
                "fit: the landmarks of view %s disagree with the other views (consistency %.3f, "
                "%.3f without it); left out of the triangulation and the landmark term",
                batch.keys[k],
                vd.score_before,
                vd.score_after,
            )
    lm = batch.lm68.double().numpy()
    conf = batch.lm_conf.double().numpy()
    tri = triangulate_landmarks(P[sel], lm[sel], conf[sel], threshold_px=0.06 * batch.size)
    valid = np.isfinite(tri.points).all(1)
    if valid.sum() < 6:
        raise InputError(
            f"only {int(valid.sum())} landmarks could be triangulated from frame {first!r}: "
            "the views do not agree on the face (check the cues and the rig calibration)"
        )
    init = fit_landmarks_3d(model, np.nan_to_num(tri.points), valid)
    init.landmarks_moved = moved
    log.info(
        "init: %d landmarks triangulated (median reprojection %.2f px), model fit RMS %.2f mm, scale %.3f",
        int(valid.sum()),
        float(np.nanmedian(tri.error_px)),
        init.rms_m * 1000,
        init.scale,
    )
    return init


def fit_views(
    model: FaceModel,
    cues: list[ViewCues],
    cams: list[Camera],
    cfg: FitConfig,
    synchronized: bool = True,
    progress: bool | None = None,
    response: str = "srgb",
) -> tuple[FitState, HeadGeometry, ViewBatch, Layout, list[str], InitResult]:
    """The fit itself on in-memory views (the Python API below the session stage). ``response``:
    the photos' encoding (:func:`camera_response`)."""
    torch.manual_seed(cfg.seed)
    batch = prepare_views(
        cues,
        cams,
        size=cfg.crop_size,
        anchor_n=cfg.anchor_grid,
        mask_points=cfg.mask_points,
        response=response,
        part_cuts=cfg.part_cuts,
        silhouette=cfg.uses("silhouette"),
    )
    layout, group_names = make_layout(batch.frames, cfg.mode, synchronized)
    init = initialise(model, batch, layout, cameras_corrected=cfg.corrects_cameras)
    emb = None
    if cfg.dense_landmarks and batch.lm_dense is not None:
        from ..cues.embedding import find_embedding

        emb = find_embedding(model)
        if emb is None:
            log.info("fit: model '%s' has no landmark embedding; landmarks on the 68 iBUG points", model.name)
    geom = HeadGeometry(model, cfg.deform_res, cfg.disp_res, embedding=emb, deform_kind=cfg.deform_kind)
    params = FitParams(
        model,
        batch.n_views,
        layout,
        cfg.deform_res,
        cfg.disp_res,
        cfg.albedo_res,
        deform_channels=1 if cfg.deform_kind == "normal" else 3,
        n_cameras=len(set(batch.cameras or batch.keys)),
    )
    params.set_init(init)
    with torch.no_grad():
        img = batch.image[batch.labels == 1]
        if len(img):
            params.albedo[:] = img.mean(0)[None, :, None, None]
    state = Fitter(geom, batch, params, layout.group_of_view, cfg, progress=progress).run()
    return state, geom, batch, layout, group_names, init


def fuse_displacement(geom: HeadGeometry, state: FitState, batch: ViewBatch, world: torch.Tensor) -> torch.Tensor:
    """Per-vertex displacement (N,) fused over views, weighted by visibility and viewing angle."""
    from ..render import vertex_normals

    p = state.params
    assert state.visibility is not None  # set by the fitter before it returns the state
    with torch.no_grad():
        d = sample_uv_map(p.disp, geom.uv)[..., 0]  # (V, N)
        n = vertex_normals(world, geom.faces)
        cam_c = -torch.einsum("vji,vj->vi", batch.world_to_cam[:, :3, :3], batch.world_to_cam[:, :3, 3])
        to_cam = cam_c[:, None] - world
        to_cam = to_cam / to_cam.norm(dim=-1, keepdim=True)
        cos = (n * to_cam).sum(-1).clamp_min(0)
        w = cos * state.visibility.to(cos.dtype) + 1e-6
        return (w * d).sum(0) / w.sum(0)


def finish(
    model: FaceModel, state: FitState, geom: HeadGeometry, batch: ViewBatch, layout: Layout, group_names: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """World meshes per group: without and with the fused displacement; the neutral head."""
    from ..render import vertex_normals

    p = state.params
    with torch.no_grad():
        gidx = torch.as_tensor(layout.group_of_view)
        vidx = torch.arange(batch.n_views)
        world_views = geom.to_world(p, geom.model_vertices(p, gidx, vidx, use_disp=False), gidx)
        fused = fuse_displacement(geom, state, batch, world_views)
        groups = torch.arange(layout.n_groups)
        base = geom.model_vertices(p, groups, None, use_disp=False)
        n = vertex_normals(base, geom.faces)
        detailed = base + fused[None, :, None] * n * geom.deformable
        meshes = geom.to_world(p, base, groups).numpy()
        det = geom.to_world(p, detailed, groups).numpy()
        zero = torch.zeros_like(p.beta[:1])
        neutral_model = model.vertices_torch(p.alpha[None], zero) + geom.deform_offsets(p)[None]
        neutral = geom.to_world(p, neutral_model, groups[:1]).numpy()[0]
    names = list(group_names)
    return (
        {names[g]: meshes[g] for g in range(layout.n_groups)},
        {names[g]: det[g] for g in range(layout.n_groups)},
        neutral,
        fused.numpy(),
    )


# ------------------------------------------------------------------------------------------ session


def load_fit_views(session, model: FaceModel | None = None) -> tuple[list[ViewCues], list[Camera], dict[str, str]]:
    """Every view with a face, from the cues stage; views without one are skipped (named).

    With ``model``, a view where the detector found no face still joins when two or more views of
    its frame have one (a synchronized rig): the landmark detector fails on strong profiles first,
    and those views carry the face's profile against the backdrop (the silhouette term) and its
    side (the photometric term). Its landmarks and part masks are the other views' shared head
    (:func:`frame_head`, fitted once per frame) seen by its camera, with no confidence
    (:func:`landmark_free_cues`): they frame the crop and the face area, and the landmark term and
    PRDL leave the view out. Such views come after the views with a face.

    On the realism ladder's seed 8 (the detector misses its -57 degree view) the 4-view fit went
    from 0.682 to 0.566 mm with it (bench/fit.py --realism full)."""
    from ..cues.stage import LANDMARKS_FILE, load_view_cues, load_view_labels

    cues_dir = session.stage_dir("cues")
    if not cues_dir.is_dir():
        raise StageMissing("no cues yet: run 'mvrecon cues SESSION' (or 'mvrecon session run') first", session.root)
    out, cams, skipped, faceless = [], [], {}, []
    found: dict[str, list[tuple[Any, Camera]]] = {}  # frame -> its views' (FaceCues, camera)
    for v in session.views():
        vd = cues_dir / v.key
        if not (vd / LANDMARKS_FILE).is_file():
            raise StageMissing(f"cues of view {v.key} are missing: run the cues stage", vd)
        fc = load_view_cues(vd)
        if fc is None:
            faceless.append(v)
            continue
        found.setdefault(v.frame, []).append((fc, session.rig[v.camera]))
        img = read_image(v.image)
        out.append(
            ViewCues(
                v.key,
                v.frame,
                v.camera,
                img,
                fc.points68,
                fc.conf68,
                load_view_labels(vd),
                fc.points478[:, :2],
                fc.conf478,
            )
        )
        cams.append(session.rig[v.camera])
    heads: dict[str, tuple[Any, Any] | None] = {}  # frame -> its views' shared head, fitted once
    for v in faceless:
        seen = found.get(v.frame, [])
        extra = None
        if model is not None and session.rig.synchronized and len(seen) >= 2:
            if v.frame not in heads:
                heads[v.frame] = frame_head(model, seen)
            shared = heads[v.frame]
            if shared is not None:
                extra = landmark_free_cues(model, *shared, v, read_image(v.image), session.rig[v.camera])
        if extra is None:
            skipped[v.key] = "no face found"
            log.warning("fit: view %s has no face; left out", v.key)
            continue
        log.info("fit: view %s has no face; it joins on its pixels (the other views place the head)", v.key)
        out.append(extra)
        cams.append(session.rig[v.camera])
    n_faces = sum(c.detected for c in out)
    if n_faces < 2:
        raise InputError(f"only {n_faces} view(s) with a face; a multi-view fit needs at least 2", session.root)
    return out, cams, skipped


def frame_head(model: FaceModel, seen: list) -> tuple[Any, Any] | None:
    """The head a frame's views with a face agree on (``seen``: their ``(FaceCues, Camera)``;
    :func:`mvrecon.cues.modelfit.fit_views`, in the world) with the model's landmark embedding, as
    ``(embedding, head)``; None without the embedding."""
    from ..cues.embedding import find_embedding
    from ..cues.modelfit import fit_views as fit_frame

    emb = find_embedding(model)
    if emb is None:
        return None
    return emb, fit_frame(model, emb, [(fc.points478, fc.conf478, cam) for fc, cam in seen])


def landmark_free_cues(model: FaceModel, emb, head, view, image: np.ndarray, camera: Camera) -> ViewCues | None:
    """Cues for a view whose photo the detector found no face in: the frame's shared head
    (:func:`frame_head`: the landmark embedding ``emb`` and the world-frame fit ``head``) projected
    into ``camera``: its 68 and 478 points (confidence 0) and its rendered part labels. None when
    that head is not in front of the camera and inside its photo."""
    from ..cues.modelfit import in_camera, render_labels

    verts = model.vertices(head.id_coeffs, head.exp_coeffs).astype(np.float64) @ head.R.T + head.t
    px68, z68 = camera.project(model.landmarks3d(verts))
    px478, z478 = camera.project(emb.points(verts, model.triangles))
    inside = (px68 >= 0).all(1) & (px68[:, 0] < camera.width) & (px68[:, 1] < camera.height)
    if (z68 <= 0).any() or (z478 <= 0).any() or inside.mean() < 0.9:
        return None
    labels = render_labels(model, in_camera(head, camera), camera)
    if not (labels > 0).any():
        return None
    return ViewCues(
        view.key,
        view.frame,
        view.camera,
        image,
        px68,
        np.zeros(68),
        labels,
        px478,
        np.zeros(len(px478)),
        detected=False,
    )


def camera_response(session) -> str:
    """How the session's photos encode light: ``options.camera_response`` in session.json
    (``"srgb"``, what cameras write, by default; ``"linear"`` for renders that skip the encoding)."""
    r = str(session.options.get("camera_response", "srgb"))
    if r not in ("srgb", "linear"):
        raise InputError(
            f"options.camera_response must be 'srgb' or 'linear', got {r!r}", session.root / "session.json"
        )
    return r


def fit_session(
    session,
    config: FitConfig | None = None,
    progress: bool | None = None,
    write: bool = True,
    model: FaceModel | None = None,
) -> FitResult:
    """Fit the session's views and (by default) write ``fit/``."""
    cfg = config or preset("default")
    t0 = time.perf_counter()
    model = model or load_model(session.options.get("model", "ict"))
    cues, cams, skipped = load_fit_views(session, model)
    state, geom, batch, layout, names, init = fit_views(
        model, cues, cams, cfg, session.rig.synchronized, progress, response=camera_response(session)
    )
    meshes, detailed, neutral, fused = finish(model, state, geom, batch, layout, names)
    res = FitResult(
        session.stage_dir("fit") if write else None,
        batch.keys,
        skipped,
        layout,
        init,
        state,
        geom,
        batch,
        meshes,
        detailed,
        neutral,
        time.perf_counter() - t0,
    )
    res.summary = summarise(res)
    if write:
        from .outputs import write_fit

        write_fit(res, session, cfg, model, fused, cues)
    return res


def summarise(res: FitResult) -> dict[str, Any]:
    last = {}
    for rec in res.state.history:
        last.update({k: v for k, v in rec.items() if k not in ("step",)})
    with torch.no_grad():
        p = res.state.params
        gidx = torch.as_tensor(res.layout.group_of_view)
        world = res.geometry.to_world(p, res.geometry.model_vertices(p, gidx, torch.arange(res.batch.n_views)), gidx)
        if res.state.camera_corrections is not None:  # each view as its corrected camera sees it
            M = torch.as_tensor(res.state.camera_corrections, dtype=world.dtype)
            world = world @ M[:, :3, :3].transpose(1, 2) + M[:, None, :3, 3]
        px = project(world[:, res.geometry.landmarks], res.batch.K, res.batch.world_to_cam)
        err = (px - res.batch.lm68).norm(dim=-1)
        scale = np.array([c.K[0, 0] for c in res.batch.cameras_full]) / res.batch.K[:, 0, 0].numpy()
        err_full = err.numpy() * scale[:, None]
    free = set(res.batch.landmark_free)
    with_points = [i for i, k in enumerate(res.batch.keys) if k not in free]
    return {
        "views": res.views,
        "skipped": res.skipped,
        "mode": res.layout.mode,
        "groups": int(res.layout.n_groups),
        "seconds": round(res.seconds, 2),
        "stage_seconds": {k: round(v, 2) for k, v in res.state.stage_times.items()},
        "init_landmark_rms_mm": round(res.init.rms_m * 1000, 3),
        # left out at the initialisation (no landmark confidence left) or after a stage
        "landmark_views_moved_px": res.init.landmarks_moved,
        "landmark_outlier_views": sorted(
            {k for k, c in zip(res.batch.keys, res.batch.lm_conf) if float(c.sum()) == 0 and k not in free}
            | set(res.state.landmark_outliers)
        ),
        # views with no face found, fitted on their pixels (the other views placed the head)
        "landmark_free_views": res.batch.landmark_free,
        "landmark_error_px_median": round(float(np.median(err_full[with_points, 17:])), 3),
        # every stage after the landmark ones is judged on held-out pixels and landmarks
        "stage_checks": res.state.checks,
        "reverted_stages": {c["stage"]: c["why"] for c in res.state.checks if not c["kept"]},
        "deformation_worst_fold": round(res.geometry.fold_ratio(p), 4),
        # the rig's drift since its calibration as the fit sees it: per camera (degrees, mm)
        "camera_corrections": res.state.camera_changes,
        # the key light the image model fitted: world direction, per view shadow and specular colour
        "key_light": res.state.key_light,
        # the silhouette term per view: a person's outline found, the profile vertices on the head's outline
        "silhouette": res.state.silhouette,
        "skin_pixels_kept": {
            k: round(float(w[m].mean()), 3)
            for k, w, m in zip(res.batch.keys, res.batch.skin_weight, res.batch.labels > 0)
        }
        if res.batch.skin_weight is not None
        else {},
        "final_losses": {k: v for k, v in last.items() if k != "stage"},
    }
