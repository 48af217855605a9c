"""Measuring a landmark embedding (:mod:`mvrecon.cues.embedding`, ``mvrecon model embed``):
synthetic sessions of the model are rendered, MediaPipe runs on every view, and each detected
point's pixel ray is cast onto the true head (see that module's docstring)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from ..cues.embedding import EMBED_SUBMESHES, LandmarkEmbedding, embed_observations
from ..cues.facemesh import DetectConfig, detect
from ..render.raycast import MeshScene

log = logging.getLogger(__name__)


def observe_session(root: str | Path, model) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per view of a synthetic session: the model triangle ids (478,) (-1: the ray missed the
    head) and barycentrics (478, 3) where MediaPipe's points land on the true head, and the cues'
    confidences (478,) (:attr:`FaceCues.conf478`)."""
    from ..io import read_image
    from ..session import load_session
    from .generate import load_ground_truth

    session = load_session(root)
    gt = load_ground_truth(root)
    tri_ids = model.render_triangle_ids(EMBED_SUBMESHES)
    tris = model.triangles[tri_ids]
    out = []
    for v in session.views():
        verts_w = gt.verts_detail[gt.frames.index(v.frame)]  # world frame already
        cam = session.rig[v.camera]
        cues = detect(read_image(v.image), DetectConfig())
        if cues is None:
            continue
        d = cam.unproject(cues.points478[:, :2])
        rays = np.concatenate([np.repeat(cam.center[None], len(d), 0), d], 1).astype(np.float32)
        hit = MeshScene(verts_w, tris).cast(rays)
        prim = hit.triangles
        bad = prim < 0
        bary = hit.barycentric()
        tid = np.where(bad, -1, tri_ids[np.where(bad, 0, prim)])
        out.append((tid, bary, cues.conf478.copy()))
    return out


def build_embedding(
    model,
    seeds=range(1000, 1008),
    cameras: int = 6,
    width: int = 800,
    height: int = 600,
    work: str | Path | None = None,
) -> LandmarkEmbedding:
    """Render synthetic sessions of ``model`` (one per seed), observe MediaPipe on every view and
    embed (see the module docstring). ``work``: keep the sessions there (default: a temp dir)."""
    from .config import SynthConfig
    from .generate import make_session

    obs = []
    with tempfile.TemporaryDirectory(prefix="mvrecon-embed-") as tmp:
        base = Path(work) if work is not None else Path(tmp)
        for seed in seeds:
            root = base / f"seed{seed}"
            if not (root / "gt" / "gt.npz").is_file():
                cfg = SynthConfig(
                    seed=int(seed),
                    cameras=cameras,
                    width=width,
                    height=height,
                    board=False,
                    subdivision=1,
                    supersample=1,
                    fine_map_size=256,
                    texture_size=512,
                    scan_holes=0,
                )
                make_session(root, cfg, model=model, overwrite=True)
            got = observe_session(root, model)
            log.info("embed: seed %d: %d views with a face", seed, len(got))
            obs.extend(got)
    return embed_observations(model, obs)
