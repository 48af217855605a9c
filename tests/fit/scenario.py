"""A small synthetic multi-view scene with perfect cues, for fit tests (independent of the cues
stage and the synth package): a known head, known cameras, rendered photos, true part masks."""

from __future__ import annotations

import numpy as np
import torch

from mvrecon.cameras import Camera, look_at
from mvrecon.fit.data import ViewCues
from mvrecon.fit.outputs import render_part_labels
from mvrecon.fit.params import HeadGeometry
from mvrecon.render import render_mesh


def rig(n_views: int, size: tuple[int, int] = (480, 480), focal: float = 1400.0) -> list[Camera]:
    az = np.linspace(-50, 50, n_views) if n_views > 1 else np.array([0.0])
    cams = []
    for i, a in enumerate(np.radians(az)):
        el = np.radians(8.0 if i % 2 else -4.0)
        c = 1.0 * np.array([np.sin(a) * np.cos(el), np.sin(el), np.cos(a) * np.cos(el)])
        K = np.array([[focal, 0, size[0] / 2 - 0.5], [0, focal, size[1] / 2 - 0.5], [0, 0, 1]])
        cams.append(Camera(f"cam{i}", size[0], size[1], K, world_to_cam=look_at(c, [0, 0.02, 0])))
    return cams


def head(model, seed: int = 3, bumps_mm: float = 0.0):
    rng = np.random.default_rng(seed)
    alpha = rng.normal(size=model.n_id) * 0.8
    beta = np.zeros(model.n_exp)
    v = model.vertices(alpha, beta).astype(np.float64)
    if bumps_mm:
        # smooth bumps along the normals on the face: geometry the linear model cannot express
        n = model.vertex_normals(v)
        centres = v[rng.choice(np.flatnonzero(model.part_labels > 0), 6)]
        d = np.zeros(len(v))
        for c in centres:
            d += np.exp(-np.sum((v - c) ** 2, 1) / (2 * 0.012**2)) * rng.uniform(-1, 1)
        d[model.part_labels == 0] = 0
        v = v + n * d[:, None] * bumps_mm / 1000.0
    # the subject stands a little off the origin, slightly turned
    R = look_at([0.15, 0.05, 1.0], [0, 0, 0])[:3, :3].T @ look_at([0, 0, 1], [0, 0, 0])[:3, :3]
    return v @ R.T + np.array([0.01, -0.02, 0.03]), alpha


def photos(model, world: np.ndarray, cams: list[Camera]) -> list[ViewCues]:
    geom = HeadGeometry(model)
    W, H = cams[0].width, cams[0].height
    K = torch.tensor(np.stack([c.K for c in cams]), dtype=torch.float32)
    w2c = torch.tensor(np.stack([c.world_to_cam for c in cams]), dtype=torch.float32)
    wv = torch.tensor(world, dtype=torch.float32)[None].expand(len(cams), -1, -1)
    # per-vertex albedo: skin with texture-like variation, darker brows, red lips, light eyes
    rng = np.random.default_rng(0)
    col = np.array([0.78, 0.6, 0.5]) + rng.normal(scale=0.04, size=(model.n_vertices, 3))
    lab = model.part_labels
    col[(lab == 4) | (lab == 5)] = [0.25, 0.18, 0.12]
    col[(lab == 7) | (lab == 8)] = [0.75, 0.3, 0.3]
    col[(lab == 2) | (lab == 3)] = [0.85, 0.85, 0.85]
    sh = torch.zeros(9, 3)
    sh[0] = 0.9 / 0.886227
    sh[2] = 0.25
    sh[1] = 0.15
    r = render_mesh(wv, geom.faces, K, w2c, H, W, vertex_colors=torch.tensor(col, dtype=torch.float32), sh=sh,
                    background=0.35)
    labels = render_part_labels(wv, geom, K, w2c, H) if H == W else None
    # MediaPipe's 478 points where the model's landmark embedding puts them (when it is made)
    from mvrecon.cues.embedding import find_embedding

    emb = find_embedding(model)
    dense = None if emb is None else emb.points(world, model.triangles)
    out = []
    for i, c in enumerate(cams):
        uv, _ = c.project(world[model.landmarks68])
        img = (r.image[i].clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        uv478 = None if dense is None else c.project(dense)[0]
        out.append(ViewCues(f"f0_{c.name}", "f0", c.name, img, uv, np.ones(68), labels[i], uv478,
                            None if dense is None else np.ones(len(dense))))
    return out
