"""The optimisation loop: runs the schedule's stages over a :class:`ViewBatch`.

Each step evaluates only the losses its stage weights; renderer calls happen only for the
photometric term, visibility is refreshed every few steps (it is a discrete quantity, no gradient).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from .. import threads
from ..errors import FitDiverged
from ..geometry import axis_angle_to_matrix, camera_centres, skew
from ..render import RayMeshes, interpolate, rasterize, rasterize_pixels, render_mesh, vertex_visibility
from .accuracy import face_vertices
from .config import DEFAULT_LR, FitConfig, Stage
from .consistency import choose_sample, consistency_loss, photo_consistency
from .data import ViewBatch
from .init import outlier_views
from .losses import (
    coeff_prior,
    contour_loss,
    landmark_loss,
    mask_iou_loss,
    photometric_loss,
    prdl_loss,
    silhouette_loss,
    tv_loss,
    tv_std_loss,
)
from .losses.contour import row_spans
from .losses.silhouette import outline_vertices, profile_candidates
from .params import FitParams, HeadGeometry

log = logging.getLogger(__name__)

#: Jaw-line landmarks follow the silhouette, which fixed model vertices do not: they count less.
JAW_WEIGHT = 0.3
PART_WEIGHTS = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # skin, eyes, brows, nose, lips


def project(world: torch.Tensor, K: torch.Tensor, w2c: torch.Tensor) -> torch.Tensor:
    """Pixels (V, N, 2) of world points (V, N, 3)."""
    pc = world @ w2c[:, :3, :3].transpose(1, 2) + w2c[:, None, :3, 3]
    z = pc[..., 2:].clamp_min(1e-6)
    xy = pc[..., :2] / z
    return xy @ K[:, :2, :2].transpose(1, 2) + K[:, None, :2, 2]


@dataclass
class FitState:
    """Everything the loop produced."""

    params: FitParams
    history: list[dict[str, Any]] = field(default_factory=list)
    stage_times: dict[str, float] = field(default_factory=dict)
    visibility: torch.Tensor | None = None
    landmark_outliers: list[str] = field(default_factory=list)
    """Views whose landmarks were left out as outliers."""
    checks: list[dict] = field(default_factory=list)
    """Per judged stage: the held-out evidence before and after, kept or reverted and why."""
    camera_changes: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Per camera: the fitted pose correction (degrees, mm), when the schedule fits one."""
    camera_corrections: np.ndarray | None = None
    """(V, 4, 4) per view, when the schedule fits a camera correction: ``M`` such that the view's
    corrected camera is ``world_to_cam @ M`` (:func:`correction_matrices`)."""
    key_light: dict = field(default_factory=dict)
    """With :attr:`FitConfig.key_light`: the fitted key light's world direction and, per view, the
    colour its shadows take away and its specular colour."""
    silhouette: dict = field(default_factory=dict)
    """With the silhouette term: per view, whether the photo has a person's outline and how many
    of the face's profile vertices lie on the final head's outline against the backdrop (a view
    with fewer than 20 takes no part)."""


class Fitter:
    """Holds the per-fit tensors; :meth:`run` executes the schedule."""

    def __init__(
        self,
        geom: HeadGeometry,
        views: ViewBatch,
        params: FitParams,
        group_of_view: np.ndarray,
        cfg: FitConfig,
        progress: bool | None = None,
    ):
        self.g = geom
        self.views = views
        self.p = params
        self.cfg = cfg
        self.gidx = torch.as_tensor(group_of_view, dtype=torch.long)
        self.vidx = torch.arange(views.n_views)
        # the views' groups as ray-casting meshes: mesh m is view first_view[m]'s, seen by mesh_of_view
        _, first_view, mesh_of_view = np.unique(np.asarray(group_of_view), return_index=True, return_inverse=True)
        self.first_view = torch.as_tensor(first_view, dtype=torch.long)
        self.mesh_of_view = torch.as_tensor(mesh_of_view.reshape(-1), dtype=torch.long)
        names = views.cameras or views.keys
        self.camera_names = list(dict.fromkeys(names))
        frames = list(dict.fromkeys(views.frames))
        self.n_frames = len(frames)
        self.fidx = torch.as_tensor([frames.index(f) for f in views.frames], dtype=torch.long)
        self.cam_of_view = torch.as_tensor([self.camera_names.index(c) for c in names], dtype=torch.long)
        if cfg.camera_gauge not in ("mean", "drift"):
            raise ValueError(f"FitConfig.camera_gauge must be 'mean' or 'drift', got {cfg.camera_gauge!r}")
        self._camera_offsets: torch.Tensor | None = None
        self.progress = sys.stderr.isatty() if progress is None else progress
        lw = torch.ones(68)
        lw[:17] = JAW_WEIGHT
        self.lm_weight = views.lm_conf * lw[None]
        # the 478 MediaPipe points through the model's embedding replace the 68 in the landmark
        # term when both are there (views left out of the 68 are left out of these too)
        # (the data reads the dense points and their confidences together, the geometry the
        # embedding's indices and reliabilities)
        self.dense = (
            geom.dense_idx is not None
            and views.lm_dense is not None
            and cfg.dense_landmarks
            and views.lm_dense_conf is not None
            and bool(views.lm_dense_conf.sum() > 0)
        )
        if self.dense:
            assert views.lm_dense_conf is not None and geom.dense_reliability is not None
            on = (views.lm_conf.sum(1) > 0).to(views.lm_dense_conf.dtype)
            self.dense_weight = views.lm_dense_conf.clamp(0.1, 1.0) * geom.dense_reliability[None] * on[:, None]
        face = views.labels > 0
        self.face_mask = face
        self.spans = row_spans(face)
        # the photometric term counts face pixels only, so rays are cast for those alone (about
        # half the crop); views with fewer face pixels are padded with a pixel far outside the
        # image, which no ray from it can hit
        # A fixed share of them is held out of the term: the stages after the landmark ones are
        # judged on those (evidence they did not fit).
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        held = (torch.rand(face.shape, generator=gen) < cfg.heldout_fraction) & face
        self.face_pixels, self.face_valid, self.face_target, self.face_weight = self._pixels(face & ~held)
        self.held_pixels, self.held_valid, self.held_target, self.held_weight = self._pixels(held)
        self.visible: torch.Tensor | None = None
        self._shadow: dict[int, torch.Tensor] = {}  # per pixel list: key-light visibility (V, P)
        self._key_ready = False
        self.checks: list[dict] = []
        # the silhouette term: its candidate vertices (the face's profile) and, refreshed with the
        # visibility, which of them lie on each view's outline against the backdrop
        self.sil_idx: torch.Tensor | None = None
        self.sil_on: torch.Tensor | None = None
        self.sil_offset: torch.Tensor | None = None
        if views.person_sdf is not None and cfg.uses("silhouette"):
            self.sil_idx = torch.as_tensor(profile_candidates(geom.model))
            self.sil_sdf = torch.nan_to_num(views.person_sdf, nan=1e4)  # no outline: beyond any limit
        # cross-view photo-consistency (views of the same frame agree about the surface): a loss
        # and the stage check's geometric evidence, on a fixed sample of face vertices; set up only
        # when the schedule or the stage check uses it
        self.cons_sample = None
        if cfg.consistency_slack is not None or cfg.uses("consistency"):
            self.gray = views.image.mean(-1)[:, None]
            self.gray_coarse = torch.nn.functional.avg_pool2d(self.gray, 2)
            self.cons_sample = choose_sample(torch.as_tensor(face_vertices(geom.model)), self.gidx, seed=cfg.seed)

    def _pixels(self, sel: torch.Tensor):
        """Padded (V, P) pixel lists of a (V, S, S) selection: coordinates, validity, colours and
        skin weights (1 without skin evidence)."""
        views = self.views
        V = views.n_views
        counts = sel.flatten(1).sum(1)
        P = max(int(counts.max()), 1)
        pix = torch.full((V, P, 2), -1e5, dtype=views.image.dtype)
        valid = torch.zeros(V, P, dtype=torch.bool)
        target = torch.zeros(V, P, 3, dtype=views.image.dtype)
        weight = torch.zeros(V, P, dtype=views.image.dtype)
        skin = views.skin_weight if (views.skin_weight is not None and self.cfg.skin_evidence) else None
        for v in range(V):
            ys, xs = torch.nonzero(sel[v], as_tuple=True)
            n = len(ys)
            pix[v, :n] = torch.stack([xs, ys], 1).to(views.image.dtype)
            valid[v, :n] = True
            target[v, :n] = views.image[v, ys, xs]
            weight[v, :n] = 1.0 if skin is None else skin[v, ys, xs]
        return pix, valid, target, weight

    # ------------------------------------------------------------------ pieces
    def world_vertices(self, use_disp: bool, corrected: bool = True) -> torch.Tensor:
        """(V, N, 3) each view's vertices in the world, as its camera (corrected, unless not
        ``corrected``) sees them."""
        v = self.g.model_vertices(self.p, self.gidx, self.vidx, use_deform=True, use_disp=use_disp)
        world = self.g.to_world(self.p, v, self.gidx)
        return self.camera_correction(world) if corrected else world

    def camera_correction(self, world: torch.Tensor) -> torch.Tensor:
        """Each view's vertices as its camera, corrected by ``cam_pose``, sees them (:func:`correct_views`)."""
        if not self.cameras_corrected():
            return world
        return correct_views(world, self.p.cam_pose, self.cam_of_view, self.drift_offsets(world))

    def cameras_corrected(self) -> bool:
        """The pose correction is being fitted or has moved a camera (else the views are as shipped)."""
        cp = self.p.cam_pose
        return cp.requires_grad or bool(cp.detach().abs().max() > 0)

    def ray_meshes(self, plain: torch.Tensor, use_disp: bool) -> RayMeshes | None:
        """The photometric term's rays cast into one mesh per group (frame), the views' uncorrected
        vertices ``plain`` (V, N, 3), through the corrected cameras: the same triangles as each view's
        corrected mesh through its shipped camera, with one ray-casting scene per frame instead of
        per view. None when a per-view displacement gives every view a surface of its own."""
        if use_disp and bool(self.p.disp.detach().abs().max() > 0):
            return None
        plain = plain.detach()
        cams = self.views.world_to_cam
        if self.cameras_corrected():
            cp = self.p.cam_pose.detach()
            cams = cams @ correction_matrices(plain, cp, self.cam_of_view, self.drift_offsets(plain)).to(cams.dtype)
        return RayMeshes(plain[self.first_view], cams, self.mesh_of_view)

    def share_light_(self) -> None:
        """One light per frame: every view of a frame keeps its own per-channel gain (the SH's
        constant term: exposure, white balance) and takes the frame's mean of the directional
        terms relative to it. The light of a studio is fixed in the world; per-view SH would let
        each view explain its shading alone, and the surface stops having to agree with all of them."""
        with torch.no_grad():
            sh = self.p.sh
            dc = sh[:, :1]
            rel = sh[:, 1:] / dc.abs().clamp_min(1e-3)
            mean = torch.zeros((self.n_frames,) + rel.shape[1:], dtype=rel.dtype).index_add_(0, self.fidx, rel)
            mean = mean / torch.bincount(self.fidx, minlength=self.n_frames).to(rel.dtype)[:, None, None]
            sh[:, 1:] = dc.abs().clamp_min(1e-3) * mean[self.fidx]

    def camera_offsets(self, world: torch.Tensor) -> torch.Tensor:
        """(C, 3) each camera's centre less the head's centre (``world`` (V, N, 3), the views'
        vertices): the lever of a camera's rotation in its drift (:func:`drift_matrices`); taken
        the first time it is asked for and kept (the head moves by millimetres, the cameras stand
        a metre away)."""
        if self._camera_offsets is None:
            with torch.no_grad():
                d = camera_centres(self.views.world_to_cam.to(world.dtype)) - world.detach().mean(1)
                C = len(self.camera_names)
                n = torch.bincount(self.cam_of_view, minlength=C).to(d.dtype)
                self._camera_offsets = torch.zeros(C, 3, dtype=d.dtype).index_add_(0, self.cam_of_view, d) / n[:, None]
        return self._camera_offsets

    def drift_offsets(self, world: torch.Tensor) -> torch.Tensor | None:
        """:meth:`camera_offsets` with :attr:`FitConfig.camera_gauge` ``"drift"``, else None (the
        mean gauge, :func:`fix_gauge`)."""
        return self.camera_offsets(world) if self.cfg.camera_gauge == "drift" else None

    def camera_changes(self, plain: torch.Tensor) -> dict[str, tuple[float, float]]:
        """Per camera: the fitted drift, its rotation about its own centre (degrees) and its
        centre's shift (mm) (:func:`drift_matrices`); ``plain`` (V, N, 3) the views' uncorrected
        vertices."""
        with torch.no_grad():
            cp = fix_gauge(self.p.cam_pose.detach(), self.drift_offsets(plain))
            dr = (drift_matrices(self.camera_offsets(plain).to(cp.dtype)) @ cp[..., None])[..., 0]
        return {
            n: (
                round(float(dr[i, :3].norm()) * DRIFT_RAD * 180 / math.pi, 4),
                round(float(dr[i, 3:].norm()) * DRIFT_M * 1000, 3),
            )
            for i, n in enumerate(self.camera_names)
        }

    def refresh_visibility(self, world: torch.Tensor) -> None:
        S = self.views.size
        self.visible = vertex_visibility(world.detach(), self.g.faces, self.views.K, self.views.world_to_cam, S, S)
        self._shadow.clear()  # the cast shadows follow the surface too
        self.sil_on = None  # the outline follows it too (found again when a stage needs it)

    def outline_vertices(self, world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`.losses.silhouette.outline_vertices` of the silhouette candidates in every view."""
        assert self.sil_idx is not None and self.visible is not None
        vb = self.views
        return outline_vertices(world, self.g.faces, vb.K, vb.world_to_cam, vb.size, self.visible, self.sil_idx)

    def losses(self, st: Stage, step: int) -> dict[str, torch.Tensor]:
        w = st.weights
        vb = self.views
        use_disp = "disp" in st.params or bool(self.p.disp.detach().abs().max() > 0)
        plain = self.world_vertices(use_disp, corrected=False)
        world = self.camera_correction(plain)
        if self.visible is None or step % self.cfg.visibility_every == 0:
            self.refresh_visibility(world)
        assert self.visible is not None
        out: dict[str, torch.Tensor] = {}
        if w.get("landmark") and self.dense:
            assert vb.lm_dense is not None
            px = project(self.g.dense_points(world), vb.K, vb.world_to_cam)
            out["landmark"] = landmark_loss(px, vb.lm_dense, self.dense_weight, vb.face_size)
        elif w.get("landmark"):
            px = project(world[:, self.g.landmarks], vb.K, vb.world_to_cam)
            out["landmark"] = landmark_loss(px, vb.lm68, self.lm_weight, vb.face_size)
        if w.get("prdl"):
            px_all = project(world, vb.K, vb.world_to_cam)
            area = self.g.projected_vertex_area(px_all.detach())[:, self.g.prdl_vertices]
            px = px_all[:, self.g.prdl_vertices]
            vis = self.visible[:, self.g.prdl_vertices]
            scale = torch.full((vb.n_views,), float(vb.size), dtype=px.dtype)
            out["prdl"] = prdl_loss(
                px,
                self.g.prdl_labels,
                vis,
                vb.prdl_target,
                vb.prdl_has,
                vb.anchors,
                scale,
                PART_WEIGHTS.to(px.dtype),
                vert_weight=area,
            )
        if w.get("contour"):
            px = project(world[:, self.g.contour_vertices], vb.K, vb.world_to_cam)
            vis = self.visible[:, self.g.contour_vertices]
            out["contour"] = contour_loss(px, vis, self.spans, vb.face_size)
        if w.get("silhouette") and self.sil_idx is not None:
            if self.sil_on is None:
                self.sil_on, self.sil_offset = self.outline_vertices(world.detach())
            px = project(world[:, self.sil_idx], vb.K, vb.world_to_cam)
            out["silhouette"] = silhouette_loss(px, self.sil_on, self.sil_sdf, vb.face_size, offset=self.sil_offset)
        if w.get("mask_iou"):
            S = vb.size
            fr = rasterize(world, self.g.faces, vb.K, vb.world_to_cam, S, S)
            prob = interpolate(fr, self.g.faces, self.g.part_onehot)
            out["mask_iou"] = mask_iou_loss(prob, vb.labels, self.g.part_codes) / vb.n_views
        if w.get("photo"):
            out["photo"] = self.photo_term(
                world,
                self.face_pixels,
                self.face_valid,
                self.face_target,
                self.face_weight,
                self.ray_meshes(plain, use_disp),
            )
        if w.get("consistency") and self.cons_sample is not None:
            out["consistency"] = consistency_loss(
                world,
                self.g.faces,
                self.cons_sample,
                self.gray,
                vb.K,
                vb.world_to_cam,
                self.visible,
                coarse=self.gray_coarse,
            )
        if w.get("cam_prior"):
            # in units of a typical drift (0.1 degree, 1 mm)
            offsets = self.drift_offsets(plain)
            if offsets is None:  # the mean gauge: the correction's own rotation and translation
                cp = zero_mean(self.p.cam_pose)
                rot, trans = ((cp[:, :3] / DRIFT_RAD) ** 2).sum(1), ((cp[:, 3:] / DRIFT_M) ** 2).sum(1)
                out["cam_prior"] = rot.mean() + trans.mean()
            else:
                out["cam_prior"] = (camera_drift(self.p.cam_pose, offsets) ** 2).sum(1).mean()
        if w.get("id_prior"):
            out["id_prior"] = coeff_prior(self.p.alpha[None])
        if w.get("exp_prior"):
            out["exp_prior"] = coeff_prior(self.p.beta)
        if w.get("deform_tv") or w.get("deform_tvstd"):
            D = self.p.deform * 1000.0  # millimetres
            m = self.g.deform_mask
            out["deform_tv"] = tv_loss(D, m)
            out["deform_tvstd"] = tv_std_loss(D, m)
        if w.get("deform_mag"):
            if self.p.deform.shape[1] == 3:
                out["deform_mag"] = ((self.p.deform * 1000.0)[..., self.g.deform_mask] ** 2).mean()
            else:
                d = self.g.deform_values(self.p)[self.g._lap_rows] * 1000.0
                out["deform_mag"] = (d**2).mean()
        if w.get("deform_bend"):
            out["deform_bend"] = self.g.bending(self.p)
        if w.get("disp_tv") or w.get("disp_mag") or w.get("disp_consistency"):
            d = self.p.disp * 1000.0
            m = self.g.disp_mask
            out["disp_tv"] = tv_loss(d, m)
            out["disp_mag"] = d[..., m].abs().mean()
            out["disp_consistency"] = ((d - d.mean(0, keepdim=True))[..., m] ** 2).mean()
        return out

    def photo_term(self, world: torch.Tensor, pixels, valid, target, weight, rays: RayMeshes | None) -> torch.Tensor:
        """The photometric term over the given pixels: rendered colour plus the view's bias against
        the photo, truncated L1 (``cfg.photo_truncate``), weighted by skin evidence; ``rays``: see
        :meth:`ray_meshes`."""
        vb = self.views
        frags = rasterize_pixels(world, self.g.faces, vb.K, vb.world_to_cam, pixels, rays)
        r = render_mesh(
            world,
            self.g.faces,
            vb.K,
            vb.world_to_cam,
            0,
            0,
            uv_faces=self.g.faces,
            uvs=self.g.uv,
            texture=self.p.albedo[0].clamp(0, 1),
            sh=self.p.sh,
            frags=frags,
        )
        img = r.image
        m = (r.mask & valid).to(img.dtype) * weight
        if self.cfg.key_light:
            img = img + self.key_light(world, frags, r, pixels, target, m)
        img = img + self.p.bias[:, None, :]
        return photometric_loss(img, target, m, truncate=self.cfg.photo_truncate) / vb.n_views

    def key_light(
        self, world: torch.Tensor, frags, r, pixels: torch.Tensor, target: torch.Tensor, m: torch.Tensor
    ) -> torch.Tensor:
        """(V, P, 3) what a key light adds to the Lambertian SH image at the pixels: minus the
        light its cast shadows take away (``albedo key (n.l)(1 - visibility)``: the SH carries the
        unshadowed light) plus its Blinn-Phong specular lobe ``spec (n.h)^e (n.l)``, white light in
        the view's colour. Without this, a studio key light's shadows and highlights read as shape:
        the surface bends to darken the shadowed cheek and to brighten the oily nose."""
        if not self._key_ready:
            with torch.no_grad():
                d = key_direction(r.normals, target, m)
                if d is not None:
                    self.p.key_dir.copy_(d.to(self.p.key_dir.dtype))
            self._key_ready = True
        vb = self.views
        light = torch.nn.functional.normalize(self.p.key_dir, dim=0)
        n = r.normals
        pts = interpolate(frags, self.g.faces, world)
        to_cam = torch.nn.functional.normalize(camera_centres(vb.world_to_cam)[:, None] - pts, dim=-1)
        ndl = (n * light).sum(-1).clamp_min(0)
        half = torch.nn.functional.normalize(to_cam + light, dim=-1)
        ndh = (n * half).sum(-1).clamp_min(0)
        out = (ndh**self.cfg.spec_exponent * ndl)[..., None] * self.p.spec.clamp_min(0)[:, None]
        if self.cfg.key_shadows:
            key = id(pixels)
            if key not in self._shadow:
                self._shadow[key] = key_visibility(
                    world.detach(), self.g.faces, pts.detach(), n.detach(), light.detach()
                )
            out = out - r.albedo * ((1 - self._shadow[key]) * ndl)[..., None] * self.p.key.clamp_min(0)[:, None]
        return out * r.mask[..., None].to(n.dtype)

    def evidence(self, fixed: dict | None = None) -> dict:
        """What the stages after the landmark ones are judged on: the photometric term on the held
        out pixels, the cross-view photo-consistency (on the patches of ``fixed``, an earlier
        call's result, when given) and the median landmark error (face widths) over the views
        that count."""
        with torch.no_grad():
            plain = self.world_vertices(use_disp=True, corrected=False)
            world = self.camera_correction(plain)
            out = {}
            if bool(self.held_valid.any()):
                out["heldout_photo"] = float(
                    self.photo_term(
                        world,
                        self.held_pixels,
                        self.held_valid,
                        self.held_target,
                        self.held_weight,
                        self.ray_meshes(plain, use_disp=True),
                    )
                )
            if self.cons_sample is not None:
                vis = vertex_visibility(
                    world, self.g.faces, self.views.K, self.views.world_to_cam, self.views.size, self.views.size
                )
                pc = photo_consistency(
                    world,
                    self.g.faces,
                    self.cons_sample,
                    self.views.image,
                    self.views.K,
                    self.views.world_to_cam,
                    vis,
                    fixed=None if fixed is None else fixed["_patches"],
                )
                out["consistency"] = pc["score"]
                out["_patches"] = pc["used"]
            px = project(world[:, self.g.landmarks], self.views.K, self.views.world_to_cam)
            err = (px - self.views.lm68).norm(dim=-1) / self.views.face_size[:, None]
            use = self.lm_weight > 0
            out["landmark"] = float(err[use].median()) if bool(use.any()) else 0.0
        return out

    def judge(self, st: Stage, before: dict[str, float], after: dict[str, float]) -> str:
        """Why stage ``st`` should be reverted ('' to keep it)."""
        why = []
        hb, ha = before.get("heldout_photo"), after.get("heldout_photo")
        if hb is not None and ha is not None and ha > hb * 1.002:
            why.append(f"held-out photometric error {hb:.5f} -> {ha:.5f}")
        cb, ca = before.get("consistency"), after.get("consistency")
        slack = self.cfg.consistency_slack
        if (
            slack is not None
            and cb is not None
            and ca is not None
            and math.isfinite(cb)
            and math.isfinite(ca)
            and ca > cb + slack
        ):
            why.append(f"cross-view photo-consistency {cb:.4f} -> {ca:.4f}")
        if after["landmark"] > before["landmark"] * 1.5 + 0.01:
            why.append(f"landmark error {before['landmark']:.4f} -> {after['landmark']:.4f} face widths")
        if "deform" in st.params:
            fold = self.g.fold_ratio(self.p)
            if fold <= 0:
                why.append(f"the deformation folds the surface (area ratio {fold:.3f})")
        return "; ".join(why)

    # ------------------------------------------------------------------ loop
    def run_stage(self, st: Stage, state: FitState) -> None:
        params = dict(self.p.named_parameters())
        for name, prm in params.items():
            prm.requires_grad_(name in st.params)
        groups = [{"params": [params[n]], "lr": st.lr.get(n, DEFAULT_LR[n])} for n in st.params]
        opt = torch.optim.Adam(groups)
        base_lr = [g["lr"] for g in opt.param_groups]
        warmup = max(0, int(self.cfg.lr_warmup))
        start_total = None
        t0 = time.perf_counter()
        bar = _Progress(st.name, st.iters, self.progress)
        for it in range(st.iters):
            threads.rebalance()  # a run started beside this one gets its share of the cores
            opt.zero_grad(set_to_none=True)
            terms = self.losses(st, it)
            total = cast(torch.Tensor, sum(st.weights.get(k, 0.0) * v for k, v in terms.items()))
            tv = float(total.detach())
            if not math.isfinite(tv):
                bad = [k for k, v in terms.items() if not torch.isfinite(v)]
                raise FitDiverged(f"fit stage '{st.name}' step {it}: loss became NaN/inf ({', '.join(bad) or 'total'})")
            if start_total is None:
                start_total = max(tv, 1e-12)
            elif tv > start_total * self.cfg.divergence_factor:
                raise FitDiverged(f"fit stage '{st.name}' step {it}: loss diverged ({tv:.3g} from {start_total:.3g})")
            total.backward()
            for prm in self.p.parameters():
                if prm.grad is not None and not torch.isfinite(prm.grad).all():
                    raise FitDiverged(f"fit stage '{st.name}' step {it}: non-finite gradient")
            if warmup:
                ramp = min(1.0, (it + 1) / warmup)
                for g, lr in zip(opt.param_groups, base_lr):
                    g["lr"] = lr * ramp
            opt.step()
            self.p.clamp_()
            if self.cfg.shared_light and "sh" in st.params:
                self.share_light_()
            rec: dict[str, Any] = {"stage": st.name, "step": len(state.history), "total": tv}
            rec.update({k: float(v.detach()) for k, v in terms.items()})
            state.history.append(rec)
            bar.update(rec)
        bar.close()
        state.stage_times[st.name] = time.perf_counter() - t0
        for prm in self.p.parameters():
            prm.requires_grad_(False)

    def reject_landmark_outliers(self) -> list[int]:
        """Drop the landmarks of views that disagree with the others (a wrong detection, a view
        whose 2D landmarks are shifted): after a stage, a view whose median landmark error (in
        face-size units) exceeds ``landmark_view_outlier`` times the median over views, plus a
        small floor, loses its landmark weight for the rest of the fit. The robust per-landmark
        kernel bounds each landmark's pull, but 68 consistently shifted landmarks still drag a
        shared pose; the view's masks and photo still count."""
        with torch.no_grad():
            world = self.world_vertices(use_disp=False)
            px = project(world[:, self.g.landmarks], self.views.K, self.views.world_to_cam)
            err = (px - self.views.lm68).norm(dim=-1) / self.views.face_size[:, None]
            active = self.lm_weight.sum(1) > 0
            e = np.array(
                [float(err[v][self.lm_weight[v] > 0].median()) if active[v] else np.nan for v in range(len(err))]
            )
            bad = outlier_views(e, self.cfg.landmark_view_outlier, floor=0.02)
            for v in bad:
                log.warning(
                    "fit: the landmarks of view %s disagree with the other views (median error %.2f vs "
                    "%.2f face widths); left out of the landmark term",
                    self.views.keys[v],
                    e[v],
                    float(np.nanmedian(e)),
                )
                self.lm_weight[v] = 0
                if self.dense:
                    self.dense_weight[v] = 0
            return bad

    def run(self) -> FitState:
        state = FitState(params=self.p)
        reverted: set[str] = set()
        for st in self.cfg.schedule:
            undone = [r for r in st.requires if r in reverted]
            if undone:
                why = f"skipped: it refines stage '{undone[0]}', which was reverted"
                state.checks.append({"stage": st.name, "kept": False, "why": why})
                reverted.add(st.name)
                log.warning("fit: stage '%s' %s", st.name, why)
                continue
            # stages driven by the landmarks alone are not judged (the held-out pixels are no
            # evidence for them); every later one is kept only if it helps
            judged = self.cfg.stage_check and bool(set(st.weights) - {"landmark", "id_prior", "exp_prior"})
            if judged:
                snap = self.p.snapshot()
                before = self.evidence()
            self.run_stage(st, state)
            if judged:
                after = self.evidence(fixed=before)
                why = self.judge(st, before, after)
                rec = {"stage": st.name, "before": _public(before), "after": _public(after), "kept": not why}
                if why:
                    reverted.add(st.name)
                    self.p.restore(snap)
                    rec["why"] = why
                    log.warning("fit: stage '%s' reverted: %s", st.name, why)
                state.checks.append(rec)
            if st.weights.get("landmark") and self.cfg.landmark_view_outlier > 0:
                state.landmark_outliers += [self.views.keys[v] for v in self.reject_landmark_outliers()]
        world = self.world_vertices(use_disp=True)
        self.refresh_visibility(world)
        state.visibility = self.visible
        if self.sil_idx is not None:
            on, _ = self.outline_vertices(world.detach())
            has = self.sil_sdf.lt(1e4).flatten(1).any(1)  # the views whose photo has an outline
            state.silhouette = {
                k: {"person_outline": bool(has[v]), "profile_vertices": int(on[v].sum())}
                for v, k in enumerate(self.views.keys)
            }
        if self.cfg.corrects_cameras:
            with torch.no_grad():
                plain = self.world_vertices(use_disp=True, corrected=False)
                state.camera_changes = self.camera_changes(plain)
                state.camera_corrections = correction_matrices(
                    plain, self.p.cam_pose.detach(), self.cam_of_view, self.drift_offsets(plain)
                ).numpy()
        if self.cfg.key_light:
            p = self.p
            state.key_light = {
                "direction": [round(float(x), 4) for x in torch.nn.functional.normalize(p.key_dir.detach(), dim=0)],
                "shadow_rgb": {
                    k: [round(float(x), 4) for x in c] for k, c in zip(self.views.keys, p.key.detach().clamp_min(0))
                },
                "specular_rgb": {
                    k: [round(float(x), 4) for x in c] for k, c in zip(self.views.keys, p.spec.detach().clamp_min(0))
                },
            }
        return state


def zero_mean(cam_pose: torch.Tensor) -> torch.Tensor:
    """The cameras' pose corrections (C, 6) less their mean: the gauge (the rig as a whole stays put)."""
    return cam_pose - cam_pose.mean(0, keepdim=True)


DRIFT_RAD = 1.75e-3
"""A camera's typical rotation since its calibration (0.1 degree): the prior's unit."""
DRIFT_M = 1e-3
"""... and its centre's typical shift (1 mm)."""


def drift_matrices(offsets: torch.Tensor) -> torch.Tensor:
    """(C, 6, 6) per camera the linear map from its correction ``(omega, t)`` (a rotation about the
    head's centre and a translation of the head, as :func:`correct_views` applies it) to the
    camera's own drift in units of a typical one: its rotation ``omega`` / 0.1 degree and its
    centre's shift ``d x omega - t`` / 1 mm (first order; ``offsets`` (C, 3): each camera's
    centre less the head's, ``d``). A camera that turns about its own centre by 0.1 degree moves
    the head 1.7 mm across its view at a metre: one unit of drift, which a prior on ``(omega, t)``
    in the same units charges about four times as much."""
    C = offsets.shape[0]
    A = torch.zeros(C, 6, 6, dtype=offsets.dtype)
    eye = torch.eye(3, dtype=offsets.dtype)
    A[:, :3, :3] = eye / DRIFT_RAD
    A[:, 3:, :3] = torch.as_tensor(skew(offsets.detach().cpu().numpy()), dtype=offsets.dtype) / DRIFT_M
    A[:, 3:, 3:] = -eye / DRIFT_M
    return A


def fix_gauge(cam_pose: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
    """The cameras' corrections (C, 6) with the motion they share taken away: a correction every
    camera has is the head's pose, not a correction. Which share is taken away is the gauge. Without
    ``offsets`` it is the mean (:func:`zero_mean`). With them (each camera's centre less the head's,
    (C, 3)) it is the rigid motion whose removal leaves the cameras the smallest drift of their own
    (:func:`drift_matrices`: each camera's rotation about its own centre and its centre's shift, in
    units of a typical drift): the most likely split when every camera drifts on its own, which is
    how a rig drifts. On random drifts of rigs of 2, 4 and 8 cameras it puts the head 0.79, 0.60
    and 0.42 mm from the truth, against 1.20, 0.84 and 0.55 mm for the mean
    (tests/fit/test_camera_correction.py); :attr:`FitConfig.camera_gauge` says which a fit uses."""
    if offsets is None:
        return zero_mean(cam_pose)
    A = drift_matrices(offsets.to(cam_pose.dtype))
    W = A.transpose(1, 2) @ A
    shared = torch.linalg.solve(W.sum(0), (W @ cam_pose[..., None]).sum(0))[:, 0]
    return cam_pose - shared


def camera_drift(cam_pose: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(C, 6) each camera's drift, gauge fixed (:func:`fix_gauge`), in units of a typical drift:
    its own rotation and its centre's shift (:func:`drift_matrices`)."""
    cp = fix_gauge(cam_pose, offsets)
    return (drift_matrices(offsets.to(cp.dtype)) @ cp[..., None])[..., 0]


def correct_views(
    world: torch.Tensor, cam_pose: torch.Tensor, cam_of_view: torch.Tensor, offsets: torch.Tensor | None = None
) -> torch.Tensor:
    """Move each view's vertices (V, N, 3) by the inverse of its camera's pose correction (the same
    as moving the camera): ``cam_pose`` (C, 6) per camera an axis-angle rotation about the head's
    centre and a translation (m), gauge fixed (:func:`fix_gauge` with ``offsets``) so that the rig
    as a whole stays where its calibration put it (a correction shared by every camera is no
    correction)."""
    cp = fix_gauge(cam_pose, offsets)
    r, t = cp[cam_of_view, :3], cp[cam_of_view, 3:]
    R = axis_angle_to_matrix(r)
    c = world.detach().mean(1, keepdim=True)
    return (world - c) @ R.transpose(1, 2) + c + t[:, None]


def correction_matrices(
    world: torch.Tensor, cam_pose: torch.Tensor, cam_of_view: torch.Tensor, offsets: torch.Tensor | None = None
) -> torch.Tensor:
    """(V, 4, 4) the rigid motion :func:`correct_views` applies to each view's vertices ``world``
    (V, N, 3) as a matrix ``M`` (``x' = M x``): the view's camera, corrected, is ``world_to_cam @ M``."""
    cp = fix_gauge(cam_pose, offsets)
    R = axis_angle_to_matrix(cp[cam_of_view, :3])
    c = world.mean(1)
    M = torch.eye(4, dtype=world.dtype).repeat(len(R), 1, 1)
    M[:, :3, :3] = R
    M[:, :3, 3] = c - (R @ c[..., None])[..., 0] + cp[cam_of_view, 3:]
    return M


def key_direction(normals: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor | None:
    """The dominant light's direction (3,) from photos: per view, the pixels' brightness regressed
    on their normals ``(V, P, 3)`` (``a + b.n``, first-order lighting) points ``b`` at it; the
    views' unit directions are averaged. ``target`` (V, P, 3) colours, ``weight`` (V, P) (pixels
    above 0.5 count). None without enough pixels."""
    dirs = []
    for v in range(normals.shape[0]):
        w = weight[v] > 0.5
        if int(w.sum()) < 100:
            continue
        a = torch.cat([torch.ones_like(normals[v, w, :1]), normals[v, w]], 1).double()
        y = target[v, w].mean(-1, keepdim=True).double()
        b = torch.linalg.lstsq(a, y).solution[1:, 0]
        if float(b.norm()) > 0:
            dirs.append(b / b.norm())
    if not dirs:
        return None
    d = torch.stack(dirs).mean(0)
    return d / d.norm().clamp_min(1e-9)


def key_visibility(
    world: torch.Tensor,
    faces: torch.Tensor,
    pts: torch.Tensor,
    normals: torch.Tensor,
    light: torch.Tensor,
    cone_deg: float = 4.0,
    lift_m: float = 5e-4,
) -> torch.Tensor:
    """(V, P) share of a small cone of rays toward the light (unit ``light`` (3,), world) that leave
    each view's mesh ``world`` (V, N, 3) unblocked from the surface points ``pts`` (V, P, 3),
    lifted ``lift_m`` along their ``normals``: soft cast shadows (1 lit, 0 in shadow)."""
    from ..render import raycast

    up = torch.tensor([0.0, 1.0, 0.0], dtype=light.dtype)
    if float(torch.cross(light, up, dim=0).norm()) < 1e-3:
        up = torch.tensor([1.0, 0.0, 0.0], dtype=light.dtype)
    a = torch.nn.functional.normalize(torch.cross(light, up, dim=0), dim=0)
    b = torch.cross(light, a, dim=0)
    tan = math.tan(math.radians(cone_deg))
    dirs = [light] + [
        torch.nn.functional.normalize(light + tan * (math.cos(k) * a + math.sin(k) * b), dim=0)
        for k in (0.0, math.pi / 2, math.pi, 1.5 * math.pi)
    ]
    origin = pts + lift_m * normals
    V, P = pts.shape[:2]
    rays = torch.cat([torch.cat([origin, d.expand_as(origin)], -1) for d in dirs], 1)  # (V, 5P, 6)
    tri, _ = raycast.cast(world.numpy().astype(np.float32), faces.numpy(), rays.numpy().astype(np.float32))
    free = torch.from_numpy(tri < 0).reshape(V, len(dirs), P).to(pts.dtype)
    return free.mean(1)


def _public(evidence: dict) -> dict[str, float]:
    return {k: v for k, v in evidence.items() if not k.startswith("_")}


class _Progress:
    """A rich progress bar with the current losses on a terminal; a log line per stage otherwise."""

    def __init__(self, name: str, total: int, enabled: bool):
        self.name = name
        self.bar = None
        self.last: dict = {}
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn(f"fit {name:<7}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(name, total=total, info="")

    def update(self, rec: dict) -> None:
        self.last = rec
        if self.bar is not None:
            info = " ".join(f"{k}={v:.3g}" for k, v in rec.items() if k not in ("stage", "step"))
            self.bar.update(self.task, advance=1, info=info[:80])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        info = " ".join(f"{k}={v:.4g}" for k, v in self.last.items() if k not in ("stage", "step"))
        log.info("fit %s: %s", self.name, info)
