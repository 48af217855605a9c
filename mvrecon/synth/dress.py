"""What a real subject wears over the skin: a hair cap with a hairline, stubble or a short beard,
and a shirt collar (the ``hair`` realism factor).

Everything is laid out on the subject's neutral head in model space and carried by the skin's
UVs, so it follows the expression and the pose like the skin does. The textures are extra tiles
of the skin atlas (u beyond the skin's own tiles), so the renderer samples them like skin; a
material map over the same atlas says, per texel, what is not bare skin:

====  ===========
code  material
====  ===========
0     background
1     skin
2     hair (scalp hair, the fringe at the hairline)
3     beard (stubble or beard over the skin)
4     cloth (the collar)
5     eye (eyeballs)
6     mouth (teeth, tongue, mouth interior)
====  ===========

The scan (the ground-truth surface) stays the bare skin: the hair and the collar are surfaces
that are not the scan's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..facemodel import FaceModel
from ..parts import PART_CODES
from . import meshops as mo
from .head import SkinTopology

MATERIALS: tuple[str, ...] = ("background", "skin", "hair", "beard", "cloth", "eye", "mouth")
MATERIAL_CODES: dict[str, int] = {n: i for i, n in enumerate(MATERIALS)}

_HAIR_COLOURS = np.array(
    [[0.03, 0.025, 0.02], [0.08, 0.05, 0.03], [0.18, 0.11, 0.06], [0.45, 0.33, 0.18], [0.35, 0.34, 0.33]]
)
_CLOTH_COLOURS = np.array(
    [[0.92, 0.92, 0.9], [0.55, 0.68, 0.85], [0.08, 0.1, 0.2], [0.5, 0.08, 0.1], [0.25, 0.3, 0.22]]
)


@dataclass(frozen=True)
class Dress:
    """A subject's hair, beard and collar.

    ``texture`` (H, W_extra, 3): the hair tile(s) then the collar tile, appended to the skin atlas
    (whose width is ``skin_tiles`` tiles of H); ``skin_tint`` (H, W_skin, 4): RGB and alpha painted
    over the skin albedo (fringe at the hairline, stubble/beard); ``material`` (H, W_skin + W_extra)
    uint8 material codes over the whole atlas; ``thickness`` (H, W_skin) metres: how far the hair
    shell stands off the skin (0 where there is no shell); ``collar_verts`` (Vc, 3) model space,
    ``collar_faces`` (Fc, 3), ``collar_uvs`` (Vc, 2) in atlas u units (tiles).
    """

    texture: np.ndarray
    skin_tint: np.ndarray
    material: np.ndarray
    thickness: np.ndarray
    skin_tiles: int
    collar_verts: np.ndarray
    collar_faces: np.ndarray
    collar_uvs: np.ndarray
    beard_style: str

    @property
    def hair_u_offset(self) -> float:
        """Added to a skin UV's u to address the hair tile under it."""
        return float(self.skin_tiles)

    @property
    def total_tiles(self) -> int:
        return 2 * self.skin_tiles + 1


def _noise(rng: np.random.Generator, shape, sx: float, sy: float) -> np.ndarray:
    import cv2

    n = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigmaX=sx, sigmaY=sy)
    return (n - n.mean()) / max(float(n.std()), 1e-12)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def make_dress(
    model: FaceModel, topo: SkinTopology, neutral: np.ndarray, rng: np.random.Generator, size: int, skin_tiles: int
) -> Dress:
    """Hair, beard and collar for the neutral head ``neutral`` (N, 3) model space; textures at
    ``size`` texels a tile."""
    H, Ws = size, size * skin_tiles
    tri, bary = mo.rasterize_uv(topo.uvs, topo.uv_faces, H, Ws, u_range=(0.0, float(skin_tiles)))
    covered = tri >= 0
    faces = topo.faces
    P = mo.interpolate_texels(tri, bary, faces, neutral[topo.vids].astype(np.float64))  # (H, Ws, 3)
    labels = model.part_labels[topo.vids]
    lipmask = mo.interpolate_texels(
        tri, bary, faces, np.isin(labels, [PART_CODES["upper_lip"], PART_CODES["lower_lip"]]).astype(np.float64)
    )[..., 0]
    lm = neutral[model.landmarks68].astype(np.float64)
    x, y, z = P[..., 0], P[..., 1], P[..., 2]
    brow_y = lm[17:27, 1].max()
    chin_y = lm[8, 1]
    eye_y = lm[[36, 45], 1].mean()
    # the head's vertical axis: behind the face, between the ears
    cz = lm[[0, 16], 2].mean() - 0.03
    theta = np.arctan2(x, z - cz)  # 0 in front, +-pi at the back

    # ---- hairline: height above which the scalp is hair, per azimuth (front, temples, back)
    front = brow_y + rng.uniform(0.045, 0.065)
    side = eye_y + rng.uniform(0.025, 0.04)
    back = chin_y + rng.uniform(-0.01, 0.02)
    # h(theta) = a + b cos(theta) + c cos(2 theta) through front (0), side (pi/2) and back (pi)
    a = ((front + back) / 2 + side) / 2
    c = ((front + back) / 2 - side) / 2
    b = (front - back) / 2
    wav = 0.004 * np.sin(5 * theta + rng.uniform(0, 2 * np.pi)) + 0.003 * _noise(rng, (H, Ws), size / 60, size / 60)
    hairline = a + b * np.cos(theta) + c * np.cos(2 * theta) + wav
    above = (y - hairline) / 0.01  # 1 cm soft fringe
    alpha_hair = _smoothstep(above + 0.3) * covered
    thick_max = rng.uniform(0.006, 0.014)
    thickness = thick_max * _smoothstep((y - hairline) / 0.025) * covered
    hair_col = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.8, 1.2)
    strands = 0.5 + 0.5 * np.tanh(1.5 * _noise(rng, (H, Ws), 0.6, size / 150))

    # ---- beard: below the nose base, up the cheeks to the sideburns, down to the neck line
    style = ("none", "stubble", "beard")[int(rng.choice(3, p=[0.15, 0.5, 0.35]))]
    ax = np.abs(x)
    x_ear = abs(lm[0, 0] - lm[16, 0]) / 2
    # the cheek line: from under the nose, low across the cheek, up to the sideburns at the ears
    top = (
        lm[33, 1]
        - 0.004
        + (lm[0, 1] + 0.005 - (lm[33, 1] - 0.004)) * np.clip((ax - 0.015) / (x_ear - 0.015), 0, 1) ** 3
    )
    region = _smoothstep((top - y) / 0.006) * _smoothstep((y - (chin_y - 0.035)) / 0.01)
    region *= _smoothstep((z - (cz + 0.005)) / 0.01)  # in front of the ears
    region *= 1 - np.clip(lipmask * 1.6, 0, 1)
    dots = np.clip(_noise(rng, (H, Ws), 0.7, 0.7) * 0.6 + 0.2, 0, 1)
    if style == "none":
        alpha_beard = np.zeros((H, Ws))
    elif style == "stubble":
        alpha_beard = region * (0.18 + 0.45 * dots)
    else:
        alpha_beard = region * np.clip(0.75 + 0.25 * _noise(rng, (H, Ws), 0.6, size / 200), 0, 1)
    alpha_beard = alpha_beard * covered

    tint = np.zeros((H, Ws, 4), np.float32)
    alpha_fringe = alpha_hair * (0.6 + 0.4 * strands)
    alpha = 1 - (1 - alpha_fringe) * (1 - alpha_beard)
    col = hair_col[None, None] * (0.6 + 0.6 * strands)[..., None]
    tint[..., :3] = np.clip(col, 0, 1)
    tint[..., 3] = np.clip(alpha, 0, 1)

    # ---- the hair tile: the shell's colour (same UV layout as the skin)
    hair_tex = np.clip(hair_col[None, None] * (0.5 + 0.8 * strands)[..., None], 0, 1)

    # ---- the collar
    cv, cf, cuv, ctex = _collar(model, neutral, rng, size, skin_tiles)

    material = np.zeros((H, Ws * 2 + size), np.uint8)
    m_skin = np.where(covered, MATERIAL_CODES["skin"], 0).astype(np.uint8)
    m_skin[(alpha_beard > 0.35) & covered] = MATERIAL_CODES["beard"]
    m_skin[(alpha_hair > 0.5) & covered] = MATERIAL_CODES["hair"]
    material[:, :Ws] = m_skin
    material[:, Ws : 2 * Ws] = MATERIAL_CODES["hair"]
    material[:, 2 * Ws :] = MATERIAL_CODES["cloth"]
    texture = np.concatenate([hair_tex, ctex], 1).astype(np.float32)
    return Dress(
        texture=np.round(texture * 255).astype(np.float32) / 255,
        skin_tint=tint,
        material=material,
        thickness=thickness.astype(np.float32),
        skin_tiles=skin_tiles,
        collar_verts=cv,
        collar_faces=cf,
        collar_uvs=cuv,
        beard_style=style,
    )


def _collar(
    model: FaceModel, neutral: np.ndarray, rng: np.random.Generator, size: int, skin_tiles: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A shirt collar around the neck: (verts (V, 3), faces (F, 3), atlas uvs (V, 2), tile (size, size, 3)).

    A band 6-10 mm off the neck from the neck's lower end up to a top edge that is lowest in front
    (the collar's opening), with soft folds."""
    a, b = model.submeshes.get("head_neck", (0, model.n_vertices))
    neck = neutral[a:b].astype(np.float64)
    lm = neutral[model.landmarks68]
    chin_y = lm[8, 1]
    y_min = neck[:, 1].min() + 0.002
    y_top_back = min(chin_y - 0.045, y_min + 0.075)
    y_top_front = y_min + 0.02
    n_t, n_y = 96, 10
    thetas = np.linspace(-np.pi, np.pi, n_t, endpoint=False)
    gap = rng.uniform(0.006, 0.01)
    folds = 0.0015 * np.sin(3 * thetas + rng.uniform(0, 6.3)) + 0.001 * np.sin(7 * thetas + rng.uniform(0, 6.3))
    rows = []
    ks = np.linspace(0, 1, n_y)
    dip = np.clip(np.cos(thetas), 0, 1) ** 3
    y_top = y_top_back - (y_top_back - y_top_front) * dip  # the top edge dips towards the front
    for k in ks:
        yk = y_min + k * (y_top - y_min)
        ring = np.zeros((n_t, 3))
        radius = np.zeros(n_t)
        centres = np.zeros((n_t, 2))
        for j, (th, yy) in enumerate(zip(thetas, yk)):
            band = neck[np.abs(neck[:, 1] - yy) < 0.006]
            if len(band) < 8:
                band = neck[np.argsort(np.abs(neck[:, 1] - yy))[:64]]
            c = band[:, [0, 2]].mean(0)
            d = band[:, [0, 2]] - c
            phi = np.arctan2(d[:, 0], d[:, 1])
            near = np.abs(np.angle(np.exp(1j * (phi - th)))) < np.radians(15)
            rr = np.linalg.norm(d[near] if near.any() else d, axis=1)
            radius[j] = np.percentile(rr, 90)
            centres[j] = c
        # smooth around the neck (a cloth band does not follow every dent)
        kern = np.exp(-0.5 * (np.arange(-6, 7) / 3.0) ** 2)
        kern /= kern.sum()
        radius = np.convolve(np.concatenate([radius[-6:], radius, radius[:6]]), kern, "valid")
        c = centres.mean(0)
        r = radius + gap + folds + 0.002 * k
        ring = np.stack([c[0] + r * np.sin(thetas), yk, c[1] + r * np.cos(thetas)], 1)
        rows.append(ring)
    V = np.concatenate(rows, 0)
    idx = np.arange(n_y * n_t).reshape(n_y, n_t)
    nxt = np.roll(idx, -1, axis=1)
    q0, q1, q2, q3 = idx[:-1], nxt[:-1], nxt[1:], idx[1:]
    F = np.concatenate([np.stack([q0, q1, q2], -1).reshape(-1, 3), np.stack([q0, q2, q3], -1).reshape(-1, 3)], 0)
    # UVs: the collar tile sits after the skin and hair tiles; u along the azimuth, v up the band
    tile0 = 2 * skin_tiles
    u = (np.tile(np.arange(n_t), n_y) + 0.5) / n_t
    v = np.repeat(ks, n_t) * 0.98 + 0.01
    uvs = np.stack([tile0 + u, v], 1)
    col = _CLOTH_COLOURS[rng.integers(len(_CLOTH_COLOURS))] * rng.uniform(0.85, 1.1)
    weave = _noise(rng, (size, size), 0.6, 0.6)
    stripes = (
        0.5 + 0.5 * np.sin(np.arange(size) * 2 * np.pi / rng.uniform(12, 40))[None, :] if rng.uniform() < 0.4 else 1.0
    )
    tex = (
        col[None, None]
        * (1 + 0.05 * weave)[..., None]
        * (0.85 + 0.15 * np.broadcast_to(stripes, (size, size)))[..., None]
    )
    return V, F.astype(np.int64), uvs, np.clip(tex, 0, 1)


__all__ = ["Dress", "MATERIALS", "MATERIAL_CODES", "make_dress"]
