"""Reading a finished fit back (``fit/params.npz``) for later stages (texture, export, evaluate)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, StageMissing
from ..facemodel import FaceModel, load_model
from ..geometry import axis_angle_to_matrix
from .params import sample_uv_map, vertex_uvs


@dataclass(frozen=True)
class FittedHead:
    """A fitted head: everything needed to rebuild its geometry, per expression group and view.

    World vertices of group g: ``scale * (model_vertices(g)) @ R[g].T + t[g]``.
    """

    model: FaceModel
    alpha: np.ndarray
    """(K_id,) identity coefficients."""
    beta: np.ndarray
    """(G, K_exp) expression per group."""
    R: np.ndarray
    """(G, 3, 3) model-to-world rotation per group."""
    t: np.ndarray
    """(G, 3) metres."""
    scale: float
    deform_offsets: np.ndarray
    """(N, 3) metres, model space: the deformation map sampled at each vertex (0 off the face/head)."""
    fused_disp: np.ndarray
    """(N,) metres along the normal: the views' displacement maps fused by visibility."""
    disp_maps: np.ndarray
    """(V, Rd, Rd) per-view displacement maps (metres); ``displacement_map`` is their fusion in UV."""
    sh: np.ndarray
    """(V, 9, 3) per-view SH lighting."""
    albedo: np.ndarray
    """(3, Ra, Ra) the fit's low-resolution UV albedo in [0, 1]."""
    views: list[str]
    group_of_view: np.ndarray
    groups: list[str]
    mode: str
    bias: np.ndarray | None = None
    """(V, 3) per-view colour bias the fit adds to the rendered linear colour (photo ~ albedo x
    SH irradiance + bias); None for a fit written before it had one (zero)."""

    camera_correction: np.ndarray | None = None
    """(V, 4, 4) per view, when the fit corrected the rig's cameras: ``M`` such that the view's
    camera as the fit saw it is ``world_to_cam @ M``; None: the calibrated cameras."""

    def view_camera(self, view: int, cam):
        """``cam`` (the calibrated camera of view index ``view``) as the fit corrected it."""
        if self.camera_correction is None:
            return cam
        import dataclasses

        return dataclasses.replace(
            cam, world_to_cam=np.asarray(cam.world_to_cam, np.float64) @ self.camera_correction[view]
        )

    def view_bias(self, view: int) -> np.ndarray:
        """(3,) the colour bias of view index ``view`` (zero when the fit has none)."""
        return np.zeros(3) if self.bias is None else np.asarray(self.bias[view], np.float64)

    def neutral_model_space(self) -> np.ndarray:
        """(N, 3) identity + deformation, expression zero, model space (metres, +Y up)."""
        return self.model.vertices(self.alpha) + self.deform_offsets

    def model_space(self, group: int, detail: bool = False) -> np.ndarray:
        """(N, 3) identity + expression of ``group`` + deformation (+ the fused displacement)."""
        v = self.model.vertices(self.alpha, self.beta[group]) + self.deform_offsets
        if detail:
            n = self.model.vertex_normals(v.astype(np.float64), self.model.render_triangles())
            v = v + n * self.fused_disp[:, None]
        return v

    def to_world(self, v: np.ndarray, group: int = 0) -> np.ndarray:
        return self.scale * np.asarray(v, np.float64) @ self.R[group].T + self.t[group]

    def world(self, group: int = 0, detail: bool = False) -> np.ndarray:
        """(N, 3) world metres of a group's head."""
        return self.to_world(self.model_space(group, detail), group)

    def group_of(self, view_key: str) -> int:
        return int(self.group_of_view[self.views.index(view_key)])


def load_fit(fit_dir: str | Path, model: FaceModel | None = None) -> FittedHead:
    """Read ``fit/params.npz`` (a session's ``fit`` folder or the npz itself)."""
    p = Path(fit_dir)
    path = p / "params.npz" if p.is_dir() or p.suffix != ".npz" else p
    if not path.is_file():
        raise StageMissing("no fit yet: run 'mvrecon fit SESSION' (or 'mvrecon session run') first", path)
    try:
        z = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read fit parameters ({e})", path) from None
    model = model or load_model(str(z["model"]))
    from .params import HeadGeometry

    if "deform_offsets" in z:
        off = z["deform_offsets"].astype(np.float64)
    else:  # a fit written before the offsets were stored: a 3D map
        uv = torch.as_tensor(vertex_uvs(model))
        deform = torch.as_tensor(z["deform"])
        geom_mask = HeadGeometry.deformable_mask(model)
        with torch.no_grad():
            off = sample_uv_map(deform, uv)[0].numpy() * geom_mask[:, None]
    R = axis_angle_to_matrix(torch.as_tensor(z["rot"], dtype=torch.float64)).numpy()
    return FittedHead(
        model=model,
        alpha=z["alpha"].astype(np.float64),
        beta=z["beta"].astype(np.float64),
        R=R,
        t=z["trans"].astype(np.float64),
        scale=float(np.exp(z["log_scale"])),
        deform_offsets=off.astype(np.float64),
        fused_disp=z["fused_disp_vertex"].astype(np.float64),
        disp_maps=z["disp"][:, 0],
        sh=z["sh"],
        albedo=z["albedo"][0],
        views=[str(v) for v in z["views"]],
        group_of_view=z["group_of_view"],
        groups=[str(g) for g in z["groups"]],
        mode=str(z["mode"]),
        bias=z["bias"].astype(np.float64) if "bias" in z else None,
        camera_correction=z["camera_correction"].astype(np.float64) if "camera_correction" in z else None,
    )
