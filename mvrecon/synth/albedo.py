"""A plausible procedural albedo: a skin texture in the model's UV layout (skin tone with
low-frequency variation and pore-like speckle, darker brows, red lips, a darker lash line and
nostrils) and vertex colours for what shares UV space with the face or has no texture of its own
(eyeballs: white sclera, coloured iris, dark pupil; the mouth interior).

Colours are in [0, 1] display units; the renderer multiplies them by the SH irradiance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..facemodel import FaceModel
from ..geometry import vertex_normals
from ..parts import PART_CODES
from . import meshops as mo
from .head import EYE_SUBMESHES, MOUTH_SUBMESHES, SkinTopology

#: (light, dark) skin tones; a subject's tone is a random blend.
_SKIN_LIGHT = np.array([0.80, 0.60, 0.50])
_SKIN_DARK = np.array([0.33, 0.20, 0.14])
_IRIS = np.array([[0.30, 0.17, 0.08], [0.22, 0.35, 0.55], [0.30, 0.38, 0.20], [0.40, 0.28, 0.14]])


@dataclass(frozen=True)
class Albedo:
    """The ground-truth albedo.

    texture: (H, W, 3) float32 over u in [0, u_tiles), v in [0, 1] (texel convention of
    :mod:`mvrecon.synth.meshops`), multiples of 1/255; sample it at (u / u_tiles, v) for a [0, 1]
    texture lookup.
    vertex_colors: (N, 3) float32 per model vertex (used for the non-skin sub-meshes).
    """

    texture: np.ndarray
    u_tiles: int
    vertex_colors: np.ndarray


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered noise (computed at reduced size for large sigma)."""
    import cv2

    h, w = shape
    f = max(1, int(sigma // 4))
    small = rng.standard_normal((max(2, h // f), max(2, w // f))).astype(np.float32)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return (out - out.mean()) / max(float(out.std()), 1e-12)


def make_albedo(model: FaceModel, topo: SkinTopology, rng: np.random.Generator, size: int = 1024) -> Albedo:
    """Random skin texture (size x u_tiles*size) and vertex colours for ``model``."""
    import cv2

    u_tiles = int(max(1, np.ceil(topo.uvs[np.unique(topo.uv_faces)][:, 0].max() - 1e-9)))
    H, W = size, size * u_tiles
    tri, bary = mo.rasterize_uv(topo.uvs, topo.uv_faces, H, W, u_range=(0.0, float(u_tiles)))
    faces = topo.faces
    mean = model.mean[topo.vids].astype(np.float64)
    P = mo.interpolate_texels(tri, bary, faces, mean)
    normals = mo.interpolate_texels(tri, bary, faces, vertex_normals(mean, faces))
    labels = model.part_labels[topo.vids]
    groups = [("right_brow", "left_brow"), ("upper_lip", "lower_lip"), ("right_eye", "left_eye")]
    onehot = np.stack([np.isin(labels, [PART_CODES[a], PART_CODES[b]]) for a, b in groups], 1)
    brow, lip, eye = np.moveaxis(mo.interpolate_texels(tri, bary, faces, onehot), -1, 0)  # soft labels
    covered = tri >= 0
    lm = model.mean[model.landmarks68].astype(np.float64)
    iod = float(np.linalg.norm(lm[45] - lm[36]))

    tone = rng.uniform(0.0, 1.0)
    skin = ((1 - tone) * _SKIN_LIGHT + tone * _SKIN_DARK).astype(np.float32)
    tex = np.broadcast_to(skin, (H, W, 3)).copy()
    # low-frequency variation of brightness and hue (blotches a few cm wide)
    lf = _smooth_noise(rng, (H, W), size / 24)
    lf2 = _smooth_noise(rng, (H, W), size / 40)
    tex *= (1 + 0.045 * lf)[..., None]
    tex += 0.008 * lf2[..., None] * np.array([1.0, -0.5, -0.5])

    def blob(centre: np.ndarray, radius: float) -> np.ndarray:
        d2 = np.sum((P - centre.astype(np.float32)) ** 2, -1)
        return np.exp(-d2 / np.float32(2 * radius**2)) * covered

    # flushed cheeks and nose tip, darker under the eyes
    red = (
        blob(lm[[2, 31]].mean(0), 0.35 * iod) + blob(lm[[14, 35]].mean(0), 0.35 * iod) + 0.6 * blob(lm[30], 0.15 * iod)
    )
    tex += 0.07 * red[..., None] * np.array([1.0, -0.4, -0.3]) * skin / skin.max()
    under = blob(lm[[40, 41]].mean(0) - [0, 0.12 * iod, 0], 0.12 * iod) + blob(
        lm[[46, 47]].mean(0) - [0, 0.12 * iod, 0], 0.12 * iod
    )
    tex *= (1 - 0.08 * under)[..., None]
    # pores and speckle: small dark dots
    speckle = cv2.GaussianBlur(rng.standard_normal((H, W), dtype=np.float32), (0, 0), 0.7)
    speckle /= max(float(speckle.std()), 1e-12)
    tex *= (1 - 0.035 * np.clip(speckle, 0, None))[..., None]

    # brows: dark hair strands (noise stretched along the brow direction)
    brow = cv2.GaussianBlur(brow, (0, 0), size / 400)
    strands = cv2.GaussianBlur(rng.standard_normal((H, W), dtype=np.float32), (0, 0), sigmaX=size / 300, sigmaY=0.6)
    strands = 0.5 + 0.5 * np.tanh(2 * strands / max(float(strands.std()), 1e-12))
    hair = np.array([0.10, 0.07, 0.05]) * (0.6 + 0.8 * (1 - tone))
    a = np.clip(1.8 * brow, 0, 1) * (0.55 + 0.45 * strands)
    tex = tex * (1 - a[..., None]) + hair * a[..., None]

    # lips: redder and a little darker, soft edges
    lip = np.clip(cv2.GaussianBlur(lip, (0, 0), size / 500) * 1.3, 0, 1)
    lip_col = skin * np.array([0.88, 0.55, 0.58]) + np.array([0.05, 0.0, 0.01])
    tex = tex * (1 - lip[..., None]) + lip_col * lip[..., None]

    # lash line: the eye-opening rim of the face mesh
    eye = np.clip(cv2.GaussianBlur(eye, (0, 0), size / 800) * 1.5, 0, 1)
    tex *= (1 - 0.6 * eye)[..., None]

    # nostrils: downward-facing surface around the nostril landmarks
    nostril = (blob(lm[32], 0.09 * iod) + blob(lm[34], 0.09 * iod)) * np.clip(-normals[..., 1] * 1.5 - 0.2, 0, 1)
    tex *= (1 - 0.75 * np.clip(nostril * 1.5, 0, 1))[..., None]

    # texels outside every triangle: the skin tone (so bilinear lookups at UV borders stay skin)
    tex[~covered] = skin
    # quantised to 8 bits so that gt/albedo.png is exactly the albedo the images were rendered with
    texture = (np.round(np.clip(tex, 0.0, 1.0) * 255) / 255).astype(np.float32)
    return Albedo(texture=texture, u_tiles=u_tiles, vertex_colors=_vertex_colors(model, rng, skin))


def _sphere_fit(p: np.ndarray) -> np.ndarray:
    """Least-squares sphere centre (3,) of points (M, 3)."""
    A = np.concatenate([2 * p, np.ones((len(p), 1))], 1)
    b = np.sum(p * p, 1)
    sol, *_ = np.linalg.lstsq(A, b, rcond=None)
    return sol[:3]


def _vertex_colors(model: FaceModel, rng: np.random.Generator, skin: np.ndarray) -> np.ndarray:
    """Per-vertex colours (N, 3): skin tone by default, eyeballs and mouth interior painted."""
    col = np.broadcast_to(skin, (model.n_vertices, 3)).astype(np.float64).copy()
    iris = _IRIS[rng.integers(len(_IRIS))] * rng.uniform(0.8, 1.2)
    for name in EYE_SUBMESHES:
        if name not in model.submeshes:
            continue
        a, b = model.submeshes[name]
        p = model.mean[a:b].astype(np.float64)
        c = _sphere_fit(p)
        front = model.part_labels[a:b] > 0
        axis = (p[front].mean(0) if front.any() else p[np.argmax(p[:, 2])]) - c
        axis /= np.linalg.norm(axis)
        d = p - c
        theta = np.arccos(np.clip((d @ axis) / np.linalg.norm(d, axis=1), -1, 1))
        sclera = np.array([0.86, 0.83, 0.78])
        ring = np.clip((theta - 0.40) / 0.1, 0, 1)  # darker limbal ring
        c_iris = iris * (1 - 0.4 * np.clip((theta - 0.35) / 0.12, 0, 1))[:, None]
        eye = np.where(
            (theta < 0.18)[:, None],
            np.array([0.03, 0.03, 0.03]),
            np.where((theta < 0.50)[:, None], c_iris, sclera * (0.9 + 0.1 * ring[:, None])),
        )
        col[a:b] = eye
    paint = {"mouth_socket": [0.30, 0.07, 0.08], "gums_tongue": [0.62, 0.27, 0.28], "teeth": [0.85, 0.82, 0.72]}
    for name in MOUTH_SUBMESHES:
        if name in model.submeshes:
            a, b = model.submeshes[name]
            col[a:b] = paint[name]
    return col.astype(np.float32)
