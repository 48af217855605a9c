"""Where MediaPipe's 478 face-mesh points lie on a face model's surface: a landmark embedding.

The fixed 478 -> iBUG-68 table (:mod:`mvrecon.cues.mapping`) keeps 68 points and places them by
MediaPipe's index, not by the model's anatomy: on synthetic sessions the mapped points sit
pixels away from the model's own landmark vertices, and part masks drawn from them miss the
model's part outlines. An embedding instead gives every MediaPipe point a fixed surface point of
the model (a triangle and barycentric weights), the way FLAME ships a MediaPipe embedding. With it
the model can be fitted to all 478 points of a view (:mod:`mvrecon.cues.modelfit`), and the part
masks become the model's own part labels, seen through that fit.

How it is measured (:func:`mvrecon.synth.embed.build_embedding`, ``mvrecon model embed``): synthetic sessions of the
model (:mod:`mvrecon.synth`: random identities, expressions, head poses and cameras from frontal
to about 60 degrees) are rendered, MediaPipe runs on every view, and each detected point's pixel
ray is cast onto the true head. A hit is a triangle and barycentrics, i.e. a point of the
topology; it is carried to the model's mean shape, and per MediaPipe point the robust centre of
its hits over all views where MediaPipe calls it visible becomes the embedded point (snapped back
to the mean surface). The spread of the hits around it (mm, on the mean shape) is kept: points
MediaPipe places inconsistently (the face oval on turned heads) get less weight in the fits.

The seeds used here (1000 and up) are disjoint from the benchmark's (1-10), so the benchmark's
cue and fit figures are measured on heads the embedding never saw, though from the same renderer.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, MvreconError
from ..io import write_npz

log = logging.getLogger(__name__)

FORMAT = "mvrecon-mediapipe-embedding/1"
N_POINTS = 478
#: Sub-meshes the points may land on: the outer head and the eyeballs (the irises).
EMBED_SUBMESHES = ("face", "head_neck", "eyeball_left", "eyeball_right")


def topology_hash(triangles: np.ndarray) -> str:
    """Short hash of a model's triangle list: an embedding is only valid for that topology."""
    return hashlib.sha256(np.ascontiguousarray(triangles, np.int64).tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class LandmarkEmbedding:
    """MediaPipe point ``i`` is ``sum_k bary[i, k] * verts[model.triangles[triangle[i], k]]``."""

    model: str
    topology: str
    """:func:`topology_hash` of the model's triangles."""
    triangle: np.ndarray
    """(478,) int64 model triangle index."""
    bary: np.ndarray
    """(478, 3) barycentric weights."""
    spread_mm: np.ndarray
    """(478,) median distance of the observed hits from the embedded point on the mean shape."""
    n_obs: np.ndarray
    """(478,) how many views the point was measured in."""

    def vertex_weights(self, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(478, 3) vertex indices and (478, 3) weights into the model's vertices."""
        return np.asarray(triangles)[self.triangle].astype(np.int64), self.bary

    def points(self, verts: np.ndarray, triangles: np.ndarray) -> np.ndarray:
        """(478, 3) embedded points of a mesh ``verts`` (N, 3) in the model topology."""
        idx, w = self.vertex_weights(triangles)
        return np.einsum("pk,pkd->pd", w, np.asarray(verts)[idx])

    def weights(self, floor_mm: float = 1.0) -> np.ndarray:
        """(478,) relative reliability: ``(floor / max(spread, floor))^2``, 1 for consistent points."""
        s = np.maximum(self.spread_mm, floor_mm)
        w = (floor_mm / s) ** 2
        w[self.n_obs == 0] = 0.0
        return w

    def save(self, path: str | Path) -> Path:
        return write_npz(
            path,
            format=np.array(FORMAT),
            model=np.array(self.model),
            topology=np.array(self.topology),
            triangle=self.triangle.astype(np.int64),
            bary=self.bary.astype(np.float64),
            spread_mm=self.spread_mm.astype(np.float64),
            n_obs=self.n_obs.astype(np.int64),
        )

    @classmethod
    def load(cls, path: str | Path) -> LandmarkEmbedding:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != FORMAT:
                    raise InputError(f"not a {FORMAT} file (format {str(z['format'])!r})", path)
                emb = cls(
                    model=str(z["model"]),
                    topology=str(z["topology"]),
                    triangle=z["triangle"].astype(np.int64),
                    bary=z["bary"].astype(np.float64),
                    spread_mm=z["spread_mm"].astype(np.float64),
                    n_obs=z["n_obs"].astype(np.int64),
                )
        except InputError:
            raise
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"unreadable landmark embedding ({e})", path) from None
        if emb.triangle.shape != (N_POINTS,) or emb.bary.shape != (N_POINTS, 3):
            raise InputError(
                f"landmark embedding has shapes {emb.triangle.shape} / {emb.bary.shape}, "
                f"expected ({N_POINTS},) / ({N_POINTS}, 3)",
                path,
            )
        return emb

    def check(self, model, path: str | Path | None = None) -> LandmarkEmbedding:
        """This embedding, after checking it belongs to ``model``'s topology."""
        if self.topology != topology_hash(model.triangles) or self.triangle.max() >= len(model.triangles):
            raise InputError(
                f"landmark embedding was made for another topology than model '{model.name}' "
                f"(run: mvrecon model embed {model.name})",
                path,
            )
        return self


def embedding_path(model_name: str) -> Path:
    """Where ``mvrecon model embed`` writes the embedding of a registered model."""
    from ..facemodel.registry import models_dir
    from ..io import check_name

    return models_dir() / f"{check_name(model_name, 'model name')}.mediapipe.npz"


def find_embedding(model) -> LandmarkEmbedding | None:
    """The embedding of ``model`` from the models folders, or None when it has none."""
    from ..facemodel.registry import search_dirs

    for d in search_dirs():
        p = Path(d) / f"{model.name}.mediapipe.npz"
        if p.is_file():
            emb = LandmarkEmbedding.load(p)
            if emb.topology == topology_hash(model.triangles):
                return emb
            log.warning("%s: made for another topology of '%s'; ignored", p, model.name)
    return None


# ------------------------------------------------------------------------------------------ build
def embed_observations(model, observations, min_views: int = 3, min_conf: float = 0.2) -> LandmarkEmbedding:
    """The embedding from per-view hits (:func:`mvrecon.synth.embed.observe_session`): per point, the geometric
    median (Weiszfeld) of its hits carried to the mean shape, snapped to the mean surface.

    Hits from views where MediaPipe's confidence is below ``min_conf`` (the point likely hidden:
    the ray then meets whatever is in front) are used only for points with fewer than
    ``min_views`` confident hits (inner lips, under the nose); their spread says so."""
    from ..render.raycast import MeshScene

    tri_ids = model.render_triangle_ids(EMBED_SUBMESHES)
    mean = np.asarray(model.mean, np.float64)
    T = model.triangles
    sure: list[list[np.ndarray]] = [[] for _ in range(N_POINTS)]
    weak: list[list[np.ndarray]] = [[] for _ in range(N_POINTS)]
    for tid, bary, conf in observations:
        ok = np.flatnonzero(tid >= 0)
        pos = np.einsum("pk,pkd->pd", bary[ok], mean[T[tid[ok]]])
        for i, p in zip(ok, pos):
            (sure if conf[i] >= min_conf else weak)[i].append(p)
    hits = [s if len(s) >= min_views else s + w for s, w in zip(sure, weak)]
    centre = np.zeros((N_POINTS, 3))
    spread = np.full(N_POINTS, np.inf)
    n_obs = np.array([len(h) for h in hits])
    for i, h in enumerate(hits):
        if len(h) < min_views:
            continue
        P = np.asarray(h)
        c = np.median(P, 0)
        for _ in range(50):  # Weiszfeld
            dd = np.maximum(np.linalg.norm(P - c, axis=1), 1e-9)
            c_new = (P / dd[:, None]).sum(0) / (1 / dd).sum()
            if np.linalg.norm(c_new - c) < 1e-8:
                break
            c = c_new
        centre[i] = c
        spread[i] = float(np.median(np.linalg.norm(P - c, axis=1))) * 1000.0
    missing = np.flatnonzero(~np.isfinite(spread))
    if len(missing):
        raise MvreconError(
            f"landmark embedding: {len(missing)} MediaPipe points were seen in fewer than "
            f"{min_views} views (e.g. {missing[:5].tolist()}); render more views"
        )
    prim, uv32, _ = MeshScene(mean, T[tri_ids]).closest(centre)
    uv = uv32.astype(np.float64)
    bary = np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], 1)
    return LandmarkEmbedding(
        model=model.name,
        topology=topology_hash(T),
        triangle=tri_ids[prim],
        bary=np.clip(bary, 0, 1) / np.clip(bary, 0, 1).sum(1, keepdims=True),
        spread_mm=spread,
        n_obs=n_obs,
    )
