"""Writers of the fit stage's outputs: parameters, meshes, overlays and loss curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..io import atomic_dir, write_image, write_json, write_npz
from ..meshio import write_obj
from ..parts import PART_COLORS
from .config import FitConfig


def loss_plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for r in history for k in r if k not in ("stage", "step")})
    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    steps = np.array([r["step"] for r in history])
    for k in keys:
        y = np.array([r.get(k, np.nan) for r in history], float)
        if np.all(~np.isfinite(y)) or np.nanmax(np.abs(y)) == 0:
            continue
        ax.plot(steps, np.abs(y), label=k, lw=2 if k == "total" else 1)
    last = None
    for r in history:
        if r["stage"] != last:
            ax.axvline(r["step"], color="0.7", ls="--", lw=0.8)
            ax.text(r["step"], 1.0, f" {r['stage']}", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
            last = r["stage"]
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (unweighted)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def render_part_labels(world: torch.Tensor, geom, K: torch.Tensor, w2c: torch.Tensor, size: int) -> np.ndarray:
    """(V, S, S) uint8 part labels of the fitted mesh as seen in each crop (forehead cut)."""
    from ..render import rasterize

    fr = rasterize(world, geom.faces, K, w2c, size, size)
    labels = torch.as_tensor(geom.model.part_labels.astype(np.int64))
    labels = torch.where(torch.as_tensor(geom.model.forehead), torch.zeros_like(labels), labels)
    tri_lab = labels[geom.faces]  # (F, 3)
    bary = fr.bary
    tid = fr.tri_id.clamp_min(0)
    corner = bary.argmax(-1)
    lab = torch.gather(tri_lab[tid], -1, corner[..., None])[..., 0]
    return torch.where(fr.mask, lab, torch.zeros_like(lab)).numpy().astype(np.uint8)


def draw_overlay(
    image: np.ndarray, px_edges: np.ndarray, fitted_labels: np.ndarray, cue_labels: np.ndarray, A_inv: np.ndarray
) -> np.ndarray:
    """Photo with the mesh wireframe (thin grey), the cue part outlines (white) and the fitted
    model's part outlines (part colours)."""
    import cv2

    out = image.copy()
    h, w = out.shape[:2]
    if len(px_edges):
        lines = np.round(px_edges * 4).astype(np.int32)
        wire = out.copy()
        cv2.polylines(wire, list(lines), False, (200, 200, 200), 1, cv2.LINE_AA, shift=2)
        out = cv2.addWeighted(wire, 0.35, out, 0.65, 0)
    # fitted labels live in the crop: bring them back to the photo with the inverse crop affine
    fl = cv2.warpAffine(fitted_labels, A_inv[:2], (w, h), flags=cv2.INTER_NEAREST)
    for code in range(1, len(PART_COLORS)):
        for lab, color, thick in ((cue_labels, (255, 255, 255), 1), (fl, tuple(int(c) for c in PART_COLORS[code]), 2)):
            m = (lab == code).astype(np.uint8)
            if m.any():
                cs, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                cv2.drawContours(out, cs, -1, color, thick, cv2.LINE_AA)
    return out


def write_fit(res, session, cfg: FitConfig, model, fused_disp: np.ndarray, cues) -> Path:
    """Write everything into ``fit/`` as one atomic folder replacement."""
    import cv2

    from .data import undistort_cues

    out = session.stage_dir("fit")
    p = res.state.params
    geom = res.geometry
    with atomic_dir(out) as tmp:
        write_json(tmp / "config.json", cfg.to_dict())
        arrays = {k: v.detach().numpy() for k, v in p.named_parameters()}
        write_npz(
            tmp / "params.npz",
            **arrays,
            views=np.array(res.views),
            group_of_view=res.layout.group_of_view,
            groups=np.array(list(res.meshes)),
            mode=np.array(res.layout.mode),
            fused_disp_vertex=fused_disp.astype(np.float32),
            deform_offsets=geom.deform_offsets(p).detach().numpy().astype(np.float32),
            init_scale=res.init.scale,
            init_R=res.init.R,
            init_t=res.init.t,
            model=np.array(model.name),
            **(
                {}
                if res.state.camera_corrections is None
                else {"camera_correction": res.state.camera_corrections.astype(np.float64)}
            ),
        )
        tri = model.triangles
        write_obj(tmp / "neutral.obj", res.neutral, tri, uvs=model.uvs, uv_faces=model.uv_triangles)
        for name, v in res.meshes.items():
            write_obj(tmp / f"mesh_{name}.obj", v, tri, uvs=model.uvs, uv_faces=model.uv_triangles)
        for name, v in res.detailed.items():
            write_obj(tmp / f"detailed_{name}.obj", v, tri, uvs=model.uvs, uv_faces=model.uv_triangles)
        with torch.no_grad():
            disp_uv = p.disp.mean(0)[0].numpy()
        np.save(tmp / "displacement.npy", disp_uv.astype(np.float32))
        write_json(tmp / "losses.json", res.state.history)
        loss_plot(res.state.history, tmp / "losses.png")
        # overlays
        b = res.batch
        with torch.no_grad():
            gidx = torch.as_tensor(res.layout.group_of_view)
            world = geom.to_world(p, geom.model_vertices(p, gidx, torch.arange(b.n_views)), gidx)
            fitted = render_part_labels(world, geom, b.K, b.world_to_cam, b.size)
        face_tri = geom.faces_np[np.isin(geom.faces_np, np.flatnonzero(model.part_labels > 0)).all(1)]
        edges = np.concatenate([face_tri[:, [0, 1]], face_tri[:, [1, 2]], face_tri[:, [2, 0]]])
        edges = np.unique(np.sort(edges, 1), axis=0)
        for v, cv in enumerate(cues):
            und, cam0 = undistort_cues(cv, session.rig[cv.camera])
            vis = res.state.visibility[v].numpy()
            e = edges[vis[edges].all(1)]
            px, _ = cam0.project(world[v].numpy().astype(np.float64))
            img = draw_overlay(und.image, px[e], fitted[v], und.labels, np.linalg.inv(b.crop_affine[v]))
            scale = min(1.0, 1600 / max(img.shape[:2]))
            if scale < 1:
                img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            write_image(tmp / "overlays" / f"{cv.key}.jpg", img)
        write_json(tmp / "summary.json", res.summary)
    return out
