"""``make_session``: a complete synthetic rig session with ground truth.

Layout written (everything into a temporary folder that replaces ``out`` at the end)::

    session.json                 rig -> "rig", frames, scan, calib
    rig/rig.json                 the ground-truth ("calibrated") rig, with the board definition
    images/<frame>/<cam>.png     the photos
    calib/<shot>/<cam>.png       ChArUco shots (unless board=False), by the cameras the board faces
    scan/scan.ply                detailed GT surface, denser re-triangulation, noise, holes (metres, world)
    scan/landmarks.txt           its 68 landmarks (metres, world)
    gt/gt.npz                    coefficients, poses, GT vertices, detail maps, SH, camera response...
    gt/albedo.png                the GT skin albedo texture (model UV layout, u tiles side by side)
    gt/parts/<frame>_<cam>.png   true per-pixel part labels (mvrecon.parts codes)
    gt/landmarks2d.json          true projected 68 landmarks per view, with visibility
    gt/config.json               the resolved SynthConfig
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cameras import save_rig
from ..errors import MvreconError
from ..facemodel import FaceModel, load_model
from ..geometry import vertex_normals
from ..io import atomic_dir, write_bytes, write_image, write_json, write_npz, write_text
from ..session import write_session_file
from . import albedo as albedo_mod
from . import head as H
from . import meshops as mo
from . import realism as RL
from . import render as R
from . import rig as rig_mod
from . import scan as scan_mod
from .config import SynthConfig, SynthResult
from .dress import MATERIAL_CODES, make_dress

log = logging.getLogger(__name__)

# Independent random streams, so that changing one part (e.g. the number of calibration shots)
# leaves every other part of the session unchanged.
# New streams go at the end: spawned children are identified by their index.
_STREAMS = (
    "identity",
    "maps",
    "albedo",
    "rig",
    "light",
    "board",
    "scan",
    "frames",
    "views",
    "backdrop",
    "deform",
    "dress",
    "key",
    "response",
    "calib_error",
    "clutter",
    "annotator",
)


def _streams(seed: int) -> dict[str, np.random.SeedSequence]:
    return dict(zip(_STREAMS, np.random.SeedSequence(int(seed)).spawn(len(_STREAMS))))


def _check_model(model: FaceModel) -> None:
    missing = [s for s in H.SKIN_SUBMESHES + H.EYE_SUBMESHES if s not in model.submesh_triangles]
    if missing or len(model.uvs) == 0:
        what = f"sub-meshes {', '.join(missing)}" if missing else "UVs"
        raise MvreconError(
            f"synth: face model '{model.name}' lacks {what}; synthetic heads need a model "
            "with skin and eyeball sub-meshes and UVs (ICT-FaceKit)"
        )


def _pupil_vertices(model: FaceModel) -> np.ndarray:
    """(2,) vertex ids of the pupil centres (right eye, left eye): the eyeball vertex farthest
    along the eye's forward axis (from the sphere centre through the labelled iris)."""
    out = []
    for name in ("eyeball_right", "eyeball_left"):
        a, b = model.submeshes[name]
        p = model.mean[a:b].astype(np.float64)
        c = albedo_mod._sphere_fit(p)
        front = model.part_labels[a:b] > 0
        axis = (p[front].mean(0) if front.any() else p[np.argmax(p[:, 2])]) - c
        out.append(a + int(np.argmax((p - c) @ (axis / np.linalg.norm(axis)))))
    return np.array(out, np.int64)


def _submesh_tris(model: FaceModel, names) -> np.ndarray:
    ids = [np.arange(*model.submesh_triangles[s]) for s in names if s in model.submesh_triangles]
    return np.concatenate(ids) if ids else np.zeros(0, np.int64)


def make_session(
    out: str | Path, config: SynthConfig = SynthConfig(), model: FaceModel | None = None, overwrite: bool = False
) -> SynthResult:
    """Render a synthetic session with ground truth into ``out`` (see the module docstring).

    ``model`` defaults to ``load_model(config.model)``. An existing session at ``out`` is an
    error unless ``overwrite``; a failure leaves ``out`` untouched.
    """
    out = Path(out)
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise MvreconError("output exists and is not empty (use overwrite / --overwrite)", out)
    cfg = config
    model = load_model(cfg.model) if model is None else model
    _check_model(model)
    seq = _streams(cfg.seed)
    rng = {k: np.random.default_rng(s) for k, s in seq.items()}
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t0
        t = time.perf_counter()
        timings[name] = timings.get(name, 0.0) + (t - t0)
        t0 = t

    # ---- the subject: identity, detail layers, albedo
    log.info("synth: subject (seed %d): detail maps and albedo", cfg.seed)
    topo = H.SkinTopology.of(model)
    real = cfg.realism
    id_coeffs = H.sample_identity(model, rng["identity"], cfg.identity_scale)
    offset, attribution = _head_offset(model, topo, cfg, id_coeffs, rng["deform"])
    if cfg.head_mesh:
        id_coeffs = np.zeros_like(id_coeffs)  # the registered scan is the identity
    lap("head")
    maps = H.make_detail_maps(
        model,
        rng["maps"],
        mid_size=cfg.mid_map_size,
        fine_size=cfg.fine_map_size,
        mid_amplitude_mm=cfg.mid_amplitude_mm,
        fine_amplitude_mm=cfg.fine_amplitude_mm,
    )
    lap("detail maps")
    alb = albedo_mod.make_albedo(model, topo, rng["albedo"], size=cfg.texture_size)
    lap("albedo")

    # ---- the rig, the light and the camera response
    rig = rig_mod.make_rig(cfg.cameras, cfg.width, cfg.height, rng["rig"], distortion=cfg.distortion)
    board = rig_mod.DEFAULT_BOARD if cfg.board else None
    rig = rig.replace(board=board, meta={"synthetic": True, "seed": int(cfg.seed)})
    sh = rig_mod.studio_sh(rng["light"])
    gains = rng["light"].uniform(0.92, 1.08, (cfg.cameras, 3))
    gammas = rng["light"].uniform(1.0, 1.12, cfg.cameras)
    key = None
    if real.skin:
        sh, key = _key_and_ambient(rng["key"])
    responses = (
        [RL.CameraResponse.sample(rng["response"], cfg.width) for _ in range(cfg.cameras)] if real.camera else None
    )
    # the rig the session ships: the one that took the photos, or one that drifted after calibration
    shipped = RL.perturb_rig(rig, rng["calib_error"], real.calib_mm, real.calib_deg) if real.calib else rig
    neutral = model.vertices(id_coeffs, np.zeros(model.n_exp)).astype(np.float64) + (0 if offset is None else offset)
    dress = make_dress(model, topo, neutral, rng["dress"], cfg.texture_size, alb.u_tiles) if real.hair else None
    texture, u_tiles = alb.texture, alb.u_tiles
    if dress is not None:
        a = dress.skin_tint[..., 3:4]
        texture = (np.round((texture * (1 - a) + dress.skin_tint[..., :3] * a) * 255) / 255).astype(np.float32)
        skin_texture = texture
        texture = np.concatenate([texture, dress.texture], 1)
        u_tiles = dress.total_tiles
    else:
        skin_texture = texture
    eye_tris = _submesh_tris(model, H.EYE_SUBMESHES)
    mouth_tris = _submesh_tris(model, H.MOUTH_SUBMESHES)
    pupil_ids = _pupil_vertices(model)

    frames = [f"f{i:03d}" for i in range(cfg.frames)]
    # spawn once: every spawn() call on a SeedSequence hands out new children
    frame_seqs = seq["frames"].spawn(cfg.frames)
    view_seqs = seq["views"].spawn(cfg.frames * cfg.cameras)
    # the wall behind the subject stays put between frames: one backdrop per camera
    backdrops = [
        R.backdrop(c, np.random.default_rng(s)) for c, s in zip(rig.cameras, seq["backdrop"].spawn(cfg.cameras))
    ]
    if real.backdrop:
        backdrops = [
            RL.clutter_backdrop(c, np.random.default_rng(s))
            for c, s in zip(rig.cameras, seq["clutter"].spawn(cfg.cameras))
        ]
    face_tris = _submesh_tris(model, ["face"])
    ext = ".jpg" if responses is not None else ".png"
    spec_v = _specular(model, neutral, real.specular) if real.skin else None
    face_material = _face_material(model) if dress is not None else None
    with atomic_dir(out) as tmp:
        save_rig(shipped, tmp / "rig" / "rig.json")
        if attribution:
            write_text(tmp / "ATTRIBUTION.txt", attribution)
            write_text(tmp / "scan" / "ATTRIBUTION.txt", attribution)
        per_frame: dict[str, list] = {
            k: [] for k in ("exp", "pose", "verts", "mid", "detail", "lm3d", "pupils", "mouth_open")
        }
        lm2d: dict[str, dict] = {}
        scan_info = (0, 0)
        for fi, fname in enumerate(frames):
            log.info("synth: frame %s: geometry and %d views at %dx%d", fname, len(rig), cfg.width, cfg.height)
            frng = np.random.default_rng(frame_seqs[fi])
            exp = H.sample_expression(model, frng, cfg.expression_scale, fi)
            geo = H.build_geometry(model, topo, maps, id_coeffs, exp, cfg.subdivision, offset=offset)
            pose = H.random_pose(frng, H.face_centre(model, geo.verts_base))
            lap("geometry")
            mouth_open = H.mouth_gap(model, geo.verts_base) > 1e-3
            extra = np.concatenate([eye_tris, mouth_tris]) if mouth_open else eye_tris
            scene = R.build_scene(model, geo.skin, geo.verts_detail, extra, pose, texture, u_tiles, alb.vertex_colors)
            scene = _realistic_scene(
                scene,
                model,
                topo,
                geo,
                pose,
                extra,
                real,
                dress,
                spec_v,
                face_material,
                key,
                linear=responses is not None,
            )
            caster = scene.raycaster()
            lap("scene")
            lm_world = H.transform(geo.verts_detail[model.landmarks68], pose)
            for ci, cam in enumerate(rig.cameras):
                vrng = np.random.default_rng(view_seqs[fi * cfg.cameras + ci])
                view = R.render_view(
                    scene,
                    caster,
                    cam,
                    sh,
                    vrng,
                    ss=cfg.supersample,
                    gain=gains[ci],
                    gamma=float(gammas[ci]),
                    noise_sigma=cfg.noise_sigma / 255.0,
                    background=backdrops[ci],
                    key=key,
                    response=None if responses is None else responses[ci],
                )
                img_path = tmp / "images" / fname / f"{cam.name}{ext}"
                if responses is not None:
                    write_bytes(img_path, responses[ci].jpeg(view.image))
                else:
                    write_image(img_path, view.image)
                write_image(tmp / "gt" / "parts" / f"{fname}_{cam.name}.png", view.labels)
                if view.material is not None:
                    write_image(tmp / "gt" / "material" / f"{fname}_{cam.name}.png", view.material)
                uv, vis = R.landmarks_2d(caster, cam, lm_world)
                lm2d[f"{fname}_{cam.name}"] = {
                    "frame": fname,
                    "camera": cam.name,
                    "points": np.round(uv, 4).tolist(),
                    "visible": vis.tolist(),
                }
            lap("render")
            if fi == 0:
                skin_world = H.transform(geo.skin.verts, pose)
                # holes where a scanner loses the surface of a face, not on the back of the head
                face_v = np.unique(geo.skin.faces[np.isin(geo.skin.parent, face_tris)])
                sv, sf, _ = scan_mod.make_scan(
                    skin_world,
                    geo.skin.faces,
                    rng["scan"],
                    noise_m=cfg.scan_noise_mm * 1e-3,
                    n_holes=cfg.scan_holes,
                    hole_candidates=face_v,
                )
                write_bytes(tmp / "scan" / "scan.ply", scan_mod.ply_bytes(sv, sf))
                scan_lm = lm_world
                if real.annotator:
                    scan_lm = RL.annotator_landmarks(skin_world, geo.skin.faces, lm_world, pose, rng=rng["annotator"])
                write_text(tmp / "scan" / "landmarks.txt", scan_mod.landmarks_text(scan_lm))
                scan_info = (len(sv), len(sf))
                lap("scan")
            per_frame["exp"].append(exp)
            per_frame["pose"].append(pose)
            per_frame["verts"].append(H.transform(geo.verts_base, pose))
            per_frame["mid"].append(H.transform(geo.verts_mid, pose))
            per_frame["detail"].append(H.transform(geo.verts_detail, pose))
            per_frame["lm3d"].append(lm_world)
            per_frame["pupils"].append(H.transform(geo.verts_detail[pupil_ids], pose))
            per_frame["mouth_open"].append(mouth_open)

        n_calib = 0
        board_poses = np.zeros((0, 4, 4))
        if board is not None:
            from ..calibrate.board import render_board_shot
            from ..calibrate.synthetic import visible

            board_poses = np.stack(rig_mod.board_poses(board, cfg.calib_shots, rng["board"]))
            log.info("synth: %d ChArUco board shots", len(board_poses))
            for si, bp in enumerate(board_poses):
                # a camera the board is edge-on or back-facing to has nothing to calibrate with;
                # the boards were shot with the rig the session ships (with ``calib``, before it drifted)
                for cam in [c for c in shipped.cameras if visible(board, c, bp)]:
                    img = render_board_shot(board, cam, bp, rng["board"])
                    write_image(tmp / "calib" / f"s{si:02d}" / f"{cam.name}.png", img)
                    n_calib += 1
            lap("board shots")

        write_image(tmp / "gt" / "albedo.png", np.round(skin_texture * 255).astype(np.uint8))
        f32 = np.float32
        gt = {
            "model": np.array(model.name),
            "frames": np.array(frames),
            "cameras": np.array(rig.names),
            "id_coeffs": id_coeffs.astype(f32),
            "exp_coeffs": np.stack(per_frame["exp"]).astype(f32),
            "exp_names": np.array(model.exp_names),
            "head_to_world": np.stack(per_frame["pose"]),
            "verts": np.stack(per_frame["verts"]).astype(f32),
            "verts_mid": np.stack(per_frame["mid"]).astype(f32),
            "verts_detail": np.stack(per_frame["detail"]).astype(f32),
            "landmarks3d": np.stack(per_frame["lm3d"]),
            "pupils3d": np.stack(per_frame["pupils"]),
            "pupil_vertices": pupil_ids,
            "mouth_open": np.array(per_frame["mouth_open"]),
            "mid_map": maps.mid,
            "fine_map": maps.fine,
            "face_weight": H.face_weight(model).astype(f32),
            "albedo_u_tiles": np.array(alb.u_tiles),
            "vertex_colors": alb.vertex_colors,
            "sh": sh,
            "camera_gain": gains,
            "camera_gamma": gammas,
            "noise_sigma": np.array(cfg.noise_sigma / 255.0),
            "board_to_world": board_poses,
            "subdivision": np.array(cfg.subdivision),
        }
        if real.factors or cfg.head_mesh:
            gt.update(_realism_truth(real, rig, shipped, responses, key, offset, scan_lm, dress))
        # np.savez stamps zip members with the fixed date 1980-01-01: the bytes are deterministic
        write_npz(tmp / "gt" / "gt.npz", **gt)
        write_json(tmp / "gt" / "landmarks2d.json", {"format": "mvrecon-landmarks2d/1", "views": lm2d})
        write_json(tmp / "gt" / "config.json", cfg.to_dict())
        write_session_file(
            tmp,
            rig="rig",
            frames=[{"name": f, "images": {c.name: f"images/{f}/{c.name}{ext}" for c in rig.cameras}} for f in frames],
            subject=cfg.subject,
            # the clean renders skip the sRGB encoding (a gamma of 1.0-1.12); the camera factor's JPEGs are sRGB
            options={
                "camera_response": "srgb" if responses is not None else "linear",
                "synthetic": {
                    "seed": int(cfg.seed),
                    "ground_truth": "gt",
                    **({"realism": list(real.factors)} if real.factors else {}),
                    **({"attribution": attribution} if attribution else {}),
                },
            },
            scan={"mesh": "scan/scan.ply", "landmarks": "scan/landmarks.txt", "units": "m", "frame": "rig"},
            calib="calib" if board is not None else None,
        )
        lap("write")
    return SynthResult(
        root=out,
        rig=rig,
        frames=tuple(frames),
        n_views=len(frames) * len(rig),
        n_calib_images=n_calib,
        scan_vertices=scan_info[0],
        scan_triangles=scan_info[1],
        timings=timings,
    )


def _head_offset(
    model: FaceModel, topo: H.SkinTopology, cfg: SynthConfig, id_coeffs: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray | None, str]:
    """(N, 3) offset of the subject's head from the linear model (or None) and the attribution
    text of a head mesh: a registered scan replaces the identity; the ``head`` factor adds a smooth
    deformation outside the model's span to a random identity."""
    if cfg.head_mesh:
        from .headmesh import registered_head

        reg = registered_head(model, cfg.head_mesh)
        return reg.verts - model.mean.astype(np.float64), reg.attribution
    if not cfg.realism.head:
        return None, ""
    neutral = model.vertices(id_coeffs, np.zeros(model.n_exp)).astype(np.float64)
    skin = neutral[topo.vids]
    normals = vertex_normals(skin, topo.faces)
    face = np.isin(topo.vids, np.arange(*model.submeshes.get("face", (0, model.n_vertices))))
    field = RL.smooth_deformation(neutral, skin[face], normals[face], rng, cfg.realism.deform_mm)
    return field, ""


def _key_and_ambient(rng: np.random.Generator) -> tuple[np.ndarray, R.KeyLight]:
    """The ``skin`` factor's light: SH ambient (a cool fill, brighter from above) and a warm key
    light from above-front, to one side, with soft shadows."""
    import torch

    from ..render import sh_basis
    from ..render.shading import SH_A

    d = np.array([rng.uniform(-0.6, 0.6), rng.uniform(0.3, 0.6), 1.0])
    d /= np.linalg.norm(d)
    key_rgb = np.array([1.0, 0.96, 0.9]) * rng.uniform(0.55, 0.7)
    amb = np.array([0.92, 0.95, 1.0]) * rng.uniform(0.25, 0.33)
    sh = np.zeros((9, 3))
    sh[0] = amb / (SH_A[0] / np.sqrt(4 * np.pi))
    # a sky-like gradient: a little more light from above than from below
    up = sh_basis(torch.as_tensor([0.0, 1.0, 0.0], dtype=torch.float64)).numpy()
    sh[2] = 0.25 * amb / max(abs(up[2]), 1e-9) * np.sign(up[2])
    return sh, R.KeyLight(direction=d, rgb=key_rgb, radius_deg=float(rng.uniform(3.0, 6.0)))


def _specular(model: FaceModel, neutral: np.ndarray, strength: float) -> np.ndarray:
    """(N, 2) per model vertex Blinn-Phong strength and exponent: oily T-zone (nose, forehead
    centre, chin), drier cheeks, wet eyes."""
    lm = neutral[model.landmarks68]
    iod = np.linalg.norm(lm[45] - lm[36])

    def blob(c, r):
        return np.exp(-np.sum((neutral - c) ** 2, 1) / (2 * r * r))

    oil = (
        0.5 * blob(lm[30], 0.35 * iod)
        + 0.4 * blob(lm[27] + [0, 0.45 * iod, 0], 0.45 * iod)
        + 0.3 * blob(lm[8], 0.3 * iod)
    )
    ks = (0.035 + 0.09 * np.clip(oil, 0, 1)) * strength
    ex = 25.0 + 35.0 * np.clip(oil, 0, 1)
    out = np.stack([ks, ex], 1)
    for name in ("eyeball_left", "eyeball_right"):
        if name in model.submeshes:
            a, b = model.submeshes[name]
            out[a:b] = [0.6 * strength, 400.0]
    return out


def _face_material(model: FaceModel) -> np.ndarray:
    """(T,) material code per model triangle for the untextured parts (eyes, mouth interior)."""
    mat = np.zeros(len(model.triangles), np.uint8)
    for names, code in ((H.EYE_SUBMESHES, MATERIAL_CODES["eye"]), (H.MOUTH_SUBMESHES, MATERIAL_CODES["mouth"])):
        mat[_submesh_tris(model, names)] = code
    return mat


def _realistic_scene(
    scene: R.Scene,
    model: FaceModel,
    topo: H.SkinTopology,
    geo: H.HeadGeometry,
    pose: np.ndarray,
    extra: np.ndarray,
    real: RL.Realism,
    dress,
    spec_model: np.ndarray | None,
    face_material: np.ndarray | None,
    key: R.KeyLight | None,
    linear: bool,
) -> R.Scene:
    """The clean scene plus what the realism factors add: specular strengths, the hair shell and
    the collar (with their material map), the key light's soft shadows, linear albedo."""
    import dataclasses as dc

    if spec_model is not None:
        # skin vertices: the model value of the nearest original vertex (subdivision keeps them first)
        n_skin = len(geo.skin.verts)
        spec = np.zeros((len(scene.verts), 2))
        vids = topo.vids
        spec[: len(vids)] = spec_model[vids]
        tri_first = model.triangles[geo.skin.parent]  # parent's corners for the new vertices
        rest = np.arange(len(vids), n_skin)
        if len(rest):
            owner = np.zeros(n_skin, np.int64)
            owner[geo.skin.faces.reshape(-1)] = np.repeat(np.arange(len(geo.skin.faces)), 3)
            spec[rest] = spec_model[tri_first[owner[rest]]].mean(1)
        used = np.unique(model.triangles[extra])
        spec[n_skin:] = spec_model[used]
        scene = dc.replace(scene, specular=spec)
    if dress is not None:
        assert face_material is not None  # made with the dress
        fm = np.concatenate([np.full(len(geo.skin.faces), 0, np.uint8), face_material[extra]])
        scene = dc.replace(scene, material_tex=dress.material, face_material=fm)
        sk = geo.skin
        suv = mo.vertex_uvs(len(sk.verts), sk.faces, sk.uvs, sk.uv_faces)
        th = np.zeros(len(sk.verts))
        ok = np.isfinite(suv[:, 0])
        th[ok] = mo.sample_map(dress.thickness, suv[ok], u_range=(0.0, float(dress.skin_tiles)))[:, 0]
        keep = (th[sk.faces] > 5e-4).all(1)
        n = vertex_normals(sk.verts, sk.faces)
        shell = H.transform(sk.verts + th[:, None] * n, pose)
        used = np.unique(sk.faces[keep])
        remap = np.full(len(sk.verts), -1, np.int64)
        remap[used] = np.arange(len(used))
        uv_used = np.unique(sk.uv_faces[keep])
        uremap = np.full(len(sk.uvs), -1, np.int64)
        uremap[uv_used] = np.arange(len(uv_used))
        scene = R.append_mesh(
            scene,
            shell[used],
            remap[sk.faces[keep]],
            sk.uvs[uv_used] + [dress.hair_u_offset, 0.0],
            uremap[sk.uv_faces[keep]],
        )
        scene = R.append_mesh(
            scene, H.transform(dress.collar_verts, pose), dress.collar_faces, dress.collar_uvs, dress.collar_faces
        )
    if key is not None:
        scene = dc.replace(scene, key_visibility=R.key_visibility(scene, key))
    if linear:
        scene = dc.replace(scene, linear_albedo=True)
    return scene


def _realism_truth(real: RL.Realism, rig, shipped, responses, key, offset, scan_lm, dress) -> dict:
    """The ground truth the realism factors add to ``gt.npz``."""
    out: dict = {"realism": np.array(real.name)}
    out["render_world_to_cam"] = np.stack([c.world_to_cam for c in rig.cameras])
    out["shipped_world_to_cam"] = np.stack([c.world_to_cam for c in shipped.cameras])
    if responses is not None:
        out["camera_response"] = np.stack([r.as_array() for r in responses])
    if key is not None:
        out["key_direction"] = key.direction
        out["key_rgb"] = key.rgb
    if offset is not None:
        out["head_offset"] = offset.astype(np.float32)
    out["scan_landmarks"] = scan_lm
    if dress is not None:
        out["beard_style"] = np.array(dress.beard_style)
    return out


@dataclass(frozen=True)
class GroundTruth:
    """The truth of a synthetic session (``gt/``). F frames, C cameras, N model vertices; world
    frame and metres unless noted."""

    model: str
    """Face model name the head was built with."""
    frames: tuple[str, ...]
    """Frame names (F)."""
    cameras: tuple[str, ...]
    """Camera names (C), rig order."""
    id_coeffs: np.ndarray
    """(K_id,) identity coefficients."""
    exp_coeffs: np.ndarray
    """(F, K_exp) expression weights (ARKit for ICT)."""
    exp_names: tuple[str, ...]
    """K_exp expression names."""
    head_to_world: np.ndarray
    """(F, 4, 4) model space to world."""
    verts: np.ndarray
    """(F, N, 3) the linear model's vertices (identity + expression), no detail."""
    verts_mid: np.ndarray
    """(F, N, 3) plus the mid-frequency bumps."""
    verts_detail: np.ndarray
    """(F, N, 3) model-topology vertices on the final detailed surface (the scan's surface)."""
    landmarks3d: np.ndarray
    """(F, 68, 3) iBUG-68 landmarks on the detailed surface."""
    pupils3d: np.ndarray
    """(F, 2, 3) pupil centres (right eye, left eye)."""
    mouth_open: np.ndarray
    """(F,) bool: the mouth interior was rendered."""
    mid_map: np.ndarray
    """(Hm, Wm) mid bumps along the normal over the face UV tile (v up), metres."""
    fine_map: np.ndarray
    """(Hf, Wf) fine detail along the normal over the face UV tile, metres."""
    face_weight: np.ndarray
    """(N,) where detail may go (baked into both maps)."""
    albedo_u_tiles: int
    """UV tiles side by side in ``gt/albedo.png`` (look up at (u / tiles, v))."""
    vertex_colors: np.ndarray
    """(N, 3) colours of the non-skin parts (eyeballs, mouth interior), [0, 1]."""
    sh: np.ndarray
    """(9, 3) lighting, :func:`mvrecon.render.sh_basis` on world-space normals."""
    camera_gain: np.ndarray
    """(C, 3) colour gain per camera."""
    camera_gamma: np.ndarray
    """(C,) image = clip(gain * albedo * irradiance) ** (1 / gamma) + noise."""
    noise_sigma: float
    """Sensor noise std in [0, 1] units."""
    board_to_world: np.ndarray
    """(S, 4, 4) board poses of the calibration shots (S = 0 without a board)."""
    subdivision: int
    """Loop levels of the detailed surface."""


def load_ground_truth(root: str | Path) -> GroundTruth:
    """Read ``root/gt/gt.npz``; a missing or malformed file is one :class:`InputError`."""
    import zipfile

    from ..errors import InputError

    p = Path(root) / "gt" / "gt.npz"
    if not p.is_file():
        raise InputError("no ground truth here (not a synthetic session?)", p)
    try:
        with np.load(p, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"not a readable ground-truth .npz ({e.__class__.__name__})", p) from None
    names = {f.name for f in dataclasses.fields(GroundTruth)}
    missing = sorted(names - set(d))
    if missing:
        raise InputError(f"missing array(s) {', '.join(missing)}", p)
    conv: dict[str, Callable[[Any], Any]] = {
        "model": str,
        "albedo_u_tiles": int,
        "subdivision": int,
        "noise_sigma": float,
        "frames": lambda a: tuple(str(x) for x in a),
        "cameras": lambda a: tuple(str(x) for x in a),
        "exp_names": lambda a: tuple(str(x) for x in a),
    }
    return GroundTruth(**{k: conv[k](d[k]) if k in conv else d[k] for k in names})


__all__ = ["GroundTruth", "make_session", "load_ground_truth", "SynthConfig", "SynthResult"]
