"""Baking the fitted head's UV albedo from all views, plus procedural eyes and mouth and the
detail maps (displacement, tangent-space normals).

Per texel of the skin atlas the 3D point on the fitted world mesh of each expression group is
found through a UV-space rasterisation (:mod:`.uvraster`). Each view that sees the point (in
front, inside the image, facing the camera, not occluded: Open3D ray casting) contributes its
photo colour minus the view's fitted colour bias, divided by the view's fitted SH irradiance at
the point's normal (the fit's image model, ``photo = albedo * irradiance + bias`` in linear light) (the fit shades with
world-space normals, :func:`mvrecon.render.render_mesh`), weighted by

    cos(viewing angle)^p  x  feather(distance to the view's silhouette)  x  (f / z)^2

(the last factor is the sampling density: a closer or longer-lens view resolves more skin). Views
are blended in two bands (Baumberg 2002): the low frequencies are the weighted mean of all views
(seams vanish), the high frequencies come from the single best view (no ghosting of detail).
Texels no view sees are filled by push-pull from their neighbours, with the mean skin colour
where nothing is known at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..cameras import Camera
from ..errors import InputError
from ..facemodel.model import RENDER_SUBMESHES, vertex_normals
from ..fit.result import FittedHead
from ..render import raycast, sh_basis
from .config import TextureConfig
from .layout import corner_uvs, material, material_triangles
from .uvraster import UVRaster, push_pull_fill, rasterize_uv

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BakeView:
    """One photo for the bake: undistorted image and camera, the expression group and lighting."""

    key: str
    image: np.ndarray
    """(H, W, 3) float32 RGB in [0, 1], undistorted (pinhole ``camera``)."""
    camera: Camera
    """Undistorted camera (``K``, ``world_to_cam``, size = image size)."""
    group: int
    """Index of the fitted expression group the view belongs to."""
    sh: np.ndarray
    """(9, 3) the view's fitted SH lighting."""
    person: np.ndarray | None = None
    """(H, W) float person probability (None: not known, every pixel may be the head)."""
    bias: np.ndarray | None = None
    """(3,) the view's fitted colour bias in linear light (the fit's image model is
    ``albedo * irradiance + bias``); None: zero."""


@dataclass(frozen=True)
class TextureResult:
    """The baked textures (float, RGB in [0, 1]; rows from the top, v up as in OBJ)."""

    skin: np.ndarray
    """(S, 2S, 3) skin albedo atlas (tiles 0-1 of the model UVs side by side)."""
    skin_weight: np.ndarray
    """(S, 2S) summed view weight per texel (0 = filled, not seen)."""
    skin_mask: np.ndarray
    """(S, 2S) bool: texels covered by a skin triangle."""
    eyes: np.ndarray
    """(E, E, 3) procedural eyeball texture (sclera, iris coloured from the photos, pupil)."""
    mouth: np.ndarray
    """(E, 2E, 3) procedural gums/tongue (left half) and teeth (right half)."""
    normal: np.ndarray
    """(S, 2S, 3) tangent-space normal map in [0, 1] (glTF / OpenGL convention, +Y = +v)."""
    displacement: np.ndarray
    """(S, 2S) float32 metres along the normal."""
    mean_skin: np.ndarray
    """(3,) the weighted mean skin albedo."""
    iris_color: np.ndarray
    """(3,) iris albedo (sampled from the photos, or a default brown when no view sees an iris)."""
    view_coverage: dict[str, float] = field(default_factory=dict)
    """Fraction of skin texels each view contributed to."""
    lashes: np.ndarray | None = None
    """(E, E, 4) RGBA eyelash strands (alpha-tested)."""


DEFAULT_IRIS = np.array([0.33, 0.21, 0.12])
SCLERA = np.array([0.86, 0.83, 0.79])
GUMS = np.array([0.72, 0.36, 0.38])
TEETH = np.array([0.90, 0.87, 0.79])
MOUTH_INTERIOR = np.array([0.30, 0.09, 0.09])
OPAQUE_INNER = ("mouth_socket", "gums_tongue", "teeth", "eye_socket_left", "eye_socket_right")


@dataclass(frozen=True)
class _Samples:
    """Texel points on the fitted mesh of every expression group."""

    points: list[np.ndarray]
    """per group (M, 3) world metres."""
    normals: list[np.ndarray]
    """per group (M, 3) unit world normals."""


def _surface_samples(head: FittedHead, raster: UVRaster, tri_ids: np.ndarray, detail: bool) -> _Samples:
    model = head.model
    corners = model.triangles[tri_ids]
    pts, nrm = [], []
    for g in range(len(head.groups)):
        v = head.world(g, detail=detail)
        n = vertex_normals(v, model.triangles)
        p = raster.interpolate(v, corners)
        q = raster.interpolate(n, corners)
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        pts.append(p)
        nrm.append(q)
    return _Samples(pts, nrm)


def _bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Sample image (H, W, C) at pixel positions xy (M, 2) (centres at integers), edges clamped."""
    H, W = image.shape[:2]
    x = np.clip(xy[:, 0], 0, W - 1)
    y = np.clip(xy[:, 1], 0, H - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), W - 2 if W > 1 else 0)
    y0 = np.minimum(np.floor(y).astype(np.int64), H - 2 if H > 1 else 0)
    fx, fy = (x - x0).astype(image.dtype)[:, None], (y - y0).astype(image.dtype)[:, None]
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    return (image[y0, x0] * (1 - fx) + image[y0, x1] * fx) * (1 - fy) + (
        image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    ) * fy


def _silhouette_feather(verts: np.ndarray, faces: np.ndarray, cam: Camera, feather_px: float) -> np.ndarray:
    """(H, W) float32 in [0, 1]: distance to the mesh's silhouette in the view over ``feather_px``."""
    ids = raycast.grid_ids(verts, faces, cam.K[None], cam.world_to_cam[None], cam.height, cam.width, np.zeros((1, 2)))[
        0
    ]
    inside = (ids >= 0).astype(np.uint8)
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    return np.clip(dist / max(feather_px, 1e-6), 0, 1).astype(np.float32)


def facing_points(
    P: np.ndarray, N: np.ndarray, cam, min_cos: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where a camera sees world points ``P`` (M, 3) with unit normals ``N`` (M, 3): pixels ``xy``
    (M, 2), depths ``z`` (M,), the cosine of each point's viewing angle (M,), the vectors from the
    points to the camera centre (M, 3), and the indices of the points in front of the camera,
    inside its image and facing it by more than ``min_cos`` (occlusion is not tested)."""
    pc = P @ cam.R.T + cam.t
    z = pc[:, 2]
    front = z > 1e-6
    xy = (pc @ cam.K.T)[:, :2] / np.where(front, z, 1.0)[:, None]
    inside = front & (xy[:, 0] >= 0) & (xy[:, 0] <= cam.width - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= cam.height - 1)
    to_cam = cam.center[None] - P
    cos = np.einsum("mc,mc->m", N, to_cam) / np.maximum(np.linalg.norm(to_cam, axis=1), 1e-12)
    return xy, z, cos, to_cam, np.flatnonzero(inside & (cos > min_cos))


def sample_views(
    head: FittedHead, samples: _Samples, views: list[BakeView], cfg: TextureConfig, occluders: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per view, the de-lit colour (M, 3) and weight (M,) (0 = not seen) of every sample point."""
    colours, weights = [], []
    world: dict[int, np.ndarray] = {}
    for view in views:
        g = view.group
        P, N = samples.points[g], samples.normals[g]
        cam = view.camera
        M = len(P)
        w = np.zeros(M)
        col = np.zeros((M, 3))
        if M == 0:
            colours.append(col)
            weights.append(w)
            continue
        xy, z, cos, _, cand = facing_points(P, N, cam, cfg.min_cos)
        if len(cand):
            if g not in world:
                world[g] = head.world(g, detail=cfg.use_detail)
            occ = raycast.occluded(world[g], occluders, cam.center[None], P[cand][None], 1e-4)[0]
            cand = cand[~occ]
        if len(cand):
            feather = _silhouette_feather(world[g], occluders, cam, cfg.feather_px)
            fea = _bilinear(feather[..., None], xy[cand])[:, 0]
            # float32 is plenty for a colour ratio and halves the memory traffic on big atlases
            Y = sh_basis(torch.as_tensor(N[cand], dtype=torch.float32)).numpy()
            irr = Y @ np.asarray(view.sh, np.float32)  # (m, 3)
            lit = irr.min(1) > cfg.min_irradiance
            rgb = _bilinear(np.asarray(view.image, np.float32), xy[cand].astype(np.float32))
            if view.bias is not None:
                # the fit's image model: photo = albedo * irradiance + bias (linear light)
                rgb = rgb - np.asarray(view.bias, np.float32)
            delit = rgb / np.maximum(irr, cfg.min_irradiance)
            # SH lighting has no self-shadowing: in creases (inner lips, nostrils) it over-predicts
            # nothing but can under-predict the light, and the division then blows up; an albedo
            # above max_albedo is not a reflectance, so that view does not vouch for the texel
            lit &= delit.max(1) <= cfg.max_albedo
            col[cand] = delit
            density = (cam.K[0, 0] / z[cand]) ** 2
            w[cand] = np.clip(cos[cand], 0, 1) ** cfg.angle_power * fea * density * lit
            if view.person is not None:
                # the backdrop or a mixed boundary pixel does not vouch for skin
                pm = _bilinear(np.asarray(view.person, np.float32)[..., None], xy[cand].astype(np.float32))[:, 0]
                w[cand] *= np.clip((pm - 0.5) / 0.4, 0, 1)
        colours.append(col)
        weights.append(w)
    return colours, weights


def _scatter(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.zeros(mask.shape + values.shape[1:], np.float64)
    out[mask] = values
    return out


def _smooth(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (float32); wide kernels run on a down-sampled copy (the result is smooth
    anyway), which keeps a 2048 x 4096 atlas blur cheap."""
    img = np.ascontiguousarray(img, np.float32)
    f = int(sigma // 2)
    if f < 2:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    H, W = img.shape[:2]
    small = cv2.resize(img, (max(1, W // f), max(1, H // f)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)


def _blend_two_band(
    mask: np.ndarray, colours: list[np.ndarray], weights: list[np.ndarray], sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Blend per-view texel colours: weighted-mean low band + best-view high band."""
    H, W = mask.shape
    low_sum = np.zeros((H, W, 3), np.float32)
    wsum = np.zeros((H, W), np.float32)
    best_w = np.zeros((H, W), np.float32)
    high = np.zeros((H, W, 3), np.float32)
    # weights relative to the largest one: float32 keeps its precision whatever the (f/z)^2 scale
    wmax = max((float(w.max()) for w in weights if len(w)), default=1.0) or 1.0
    for col, w in zip(colours, weights):
        if not (w > 0).any():
            continue
        seen = _scatter(mask, (w > 0).astype(np.float32)).astype(np.float32)
        a = (_scatter(mask, col) * seen[..., None]).astype(np.float32)
        wf = _scatter(mask, w / wmax).astype(np.float32)
        # normalised convolution: the view's low band only from texels that view sees
        num = _smooth(a, sigma)
        den = _smooth(seen, sigma)
        low = num / np.maximum(den, 1e-6)[..., None]
        low_sum += wf[..., None] * low
        wsum += wf
        better = wf > best_w
        high[better] = (a - low)[better]
        best_w[better] = wf[better]
    out = low_sum / np.maximum(wsum, 1e-30)[..., None] + high
    return np.clip(out, 0, 1), wsum


def _eyes_texture(
    head: FittedHead, views: list[BakeView], cfg: TextureConfig, size: int, occluders: np.ndarray, encode: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Procedural eyeball texture and the iris colour seen in the photos."""
    model = head.model
    mat = material("eyes")
    tex = np.broadcast_to(SCLERA, (size, size, 3)).copy()
    if "eyeball_left" not in model.submeshes:
        return tex, DEFAULT_IRIS.copy()
    from ..fit.params import vertex_uvs
    from .uvraster import texel_uv

    neutral = head.neutral_model_space()
    vuv = vertex_uvs(model)
    tuv = texel_uv(size, size)
    angles_all, samples_pts, samples_n = [], [], []
    iris_colour = DEFAULT_IRIS.copy()
    raster = None
    for side in ("eyeball_left", "eyeball_right"):
        tri_ids = np.arange(*model.submesh_triangles[side])
        r = rasterize_uv(
            corner_uvs(model, tri_ids, mat).reshape(-1, 2), np.arange(3 * len(tri_ids)).reshape(-1, 3), size, size
        )
        a, b = model.submeshes[side]
        v = neutral[a:b]
        front = int(np.argmax(v[:, 2]))
        # ICT's eyeball holds an outer (cornea) and an inner (iris) layer that share UVs, so a
        # texel's 3D point is ambiguous; the iris is therefore placed in UV space: a disc around
        # the front vertex's UV whose radius is the UV distance of the vertices seen ~iris_deg
        # off the optical axis (median over both layers).
        centre = v.mean(0)
        axis = (v[front] - centre) / np.linalg.norm(v[front] - centre)
        d = v - centre
        ang_v = np.degrees(np.arccos(np.clip(d @ axis / np.maximum(np.linalg.norm(d, axis=1), 1e-12), -1, 1)))
        du_v = np.linalg.norm(vuv[a:b] - vuv[a + front], axis=1)
        band = np.abs(ang_v - cfg.iris_deg) < 5
        r_iris = float(np.median(du_v[band])) if band.any() else 0.12
        du = np.linalg.norm(tuv[r.mask] - vuv[a + front], axis=1)
        ang = du / max(r_iris, 1e-6) * cfg.iris_deg  # UV distance as a pseudo viewing angle
        angles_all.append(ang)
        sel = (ang > cfg.pupil_deg * 1.2) & (ang < cfg.iris_deg * 0.85)
        s = _surface_samples(head, r, tri_ids, detail=False)
        samples_pts.append([q[sel] for q in s.points])
        samples_n.append([q[sel] for q in s.normals])
        if raster is None:
            raster = r
    # iris colour: de-lit, weighted median over the views that see the iris of either eye
    pts = [np.concatenate([samples_pts[0][g], samples_pts[1][g]]) for g in range(len(head.groups))]
    nrm = [np.concatenate([samples_n[0][g], samples_n[1][g]]) for g in range(len(head.groups))]
    cols, ws = sample_views(head, _Samples(pts, nrm), views, cfg, occluders)
    c = np.concatenate([c[w > 0] for c, w in zip(cols, ws)]) if cols else np.zeros((0, 3))
    if len(c) >= 8:
        iris_colour = np.median(c, axis=0)
        iris_colour = np.clip(srgb_encode(iris_colour) if encode else iris_colour, 0.02, 0.9)
    ang = angles_all[0]
    assert raster is not None  # both eyeballs were rasterised
    m = raster.mask
    # radial iris pattern: darker limbal ring, lighter collarette, fibres from a fixed pattern
    t = np.clip((ang - cfg.pupil_deg) / (cfg.iris_deg - cfg.pupil_deg), 0, 1)
    yy, xx = np.nonzero(m)
    cy, cx = yy[np.argmin(ang)], xx[np.argmin(ang)]
    fibres = 0.92 + 0.08 * np.sin(np.arctan2(yy - cy, xx - cx) * 37.0)
    shade = (1.15 - 0.45 * t**3)[:, None] * fibres[:, None]
    colour = np.where((ang < cfg.iris_deg)[:, None], iris_colour * shade, SCLERA)
    colour = np.where((ang < cfg.pupil_deg)[:, None], 0.02, colour)
    # soft limbus: blend sclera and iris over a degree
    edge = np.clip((ang - cfg.iris_deg) / 1.5, 0, 1)[:, None]
    colour = np.where(
        ((ang >= cfg.iris_deg) & (edge[:, 0] < 1))[:, None], (1 - edge) * iris_colour * 0.6 + edge * SCLERA, colour
    )
    vals = np.zeros((size, size, 3))
    vals[m] = colour
    tex = push_pull_fill(vals, m.astype(np.float64), SCLERA)
    return np.clip(tex, 0, 1), iris_colour


LASH_COLOUR = np.array([0.045, 0.035, 0.03])


def lash_texture(size: int, seed: int = 0) -> np.ndarray:
    """(size, size, 4) RGBA eyelash texture: dark strands with alpha, for ICT's lash cards (u runs
    along the lid, v along the lashes): ~160 strands of varying width and length, tapering to their
    tips, alpha 0 between them, so the lashes are alpha-tested strands rather than a ribbon."""
    rng = np.random.default_rng(seed)
    u = (np.arange(size) + 0.5) / size
    v = (np.arange(size) + 0.5) / size
    n = 160
    centres = (np.arange(n) + rng.uniform(0.2, 0.8, n)) / n
    width = rng.uniform(0.15, 0.3, n) / n
    length = rng.uniform(0.6, 1.0, n)
    alpha = np.zeros((size, size))
    for c, w, tip in zip(centres, width, length):
        # each strand spans the card from one side, thinning towards its tip (both card ends
        # carry lashes: upper and lower lids lie mirrored in v)
        across = np.exp(-0.5 * ((u - c) / (0.5 * w)) ** 2)[None, :]
        along = np.clip(1 - np.abs(2 * v - 1) / tip, 0, 1)[:, None] ** 0.35 if tip < 1 else np.ones((size, 1))
        alpha = np.maximum(alpha, across * np.clip(1 - (1 - along) * 1.2, 0, 1))
    rgb = np.broadcast_to(LASH_COLOUR, (size, size, 3))
    return np.concatenate([rgb, alpha[..., None]], -1).astype(np.float32)


def _mouth_texture(size: int) -> np.ndarray:
    """Gums and tongue (left half: model UV tile 2) pink, teeth (right half: tile 3) off-white,
    both slightly darker towards the bottom of their tile (the back of the mouth in ICT's layout)."""
    tex = np.zeros((size, 2 * size, 3))
    ramp = np.linspace(1.0, 0.8, size)[:, None, None]
    tex[:, :size] = GUMS * ramp
    tex[:, size:] = TEETH * ramp
    return tex


def _tangent_frames(verts: np.ndarray, corners: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-triangle dP/du and dP/dv (F, 3) (metres per atlas UV unit) of triangles ``corners``
    (F, 3) with corner UVs ``uv`` (F, 3, 2): the MikkTSpace tangent/bitangent before normalisation."""
    p = verts[corners]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    r = np.where(np.abs(det) > 1e-20, 1.0 / np.where(np.abs(det) > 1e-20, det, 1.0), 0.0)[:, None]
    T = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r
    B = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r
    return T, B


def normal_map_from_displacement(
    disp: np.ndarray, raster: UVRaster, verts: np.ndarray, corners: np.ndarray, uv: np.ndarray
) -> np.ndarray:
    """Tangent-space normal map (H, W, 3) in [0, 1] of a displacement map ``disp`` (H, W) metres
    over the base mesh: n = normalize(-dD/ds, -dD/dt, 1) where s, t are arc lengths along the UV
    tangent and bitangent (``corners`` (F, 3), ``uv`` (F, 3, 2) atlas UVs of the raster's triangles)."""
    H, W = disp.shape
    T, B = _tangent_frames(verts, corners, uv)
    m = raster.mask
    lt = np.zeros((H, W))
    lb = np.zeros((H, W))
    lt[m] = np.linalg.norm(T, axis=1)[raster.tri[m]]
    lb[m] = np.linalg.norm(B, axis=1)[raster.tri[m]]
    # central differences per UV unit; rows run down the image, v up
    dDdu = (np.roll(disp, -1, 1) - np.roll(disp, 1, 1)) * (W / 2.0)
    dDdv = -(np.roll(disp, -1, 0) - np.roll(disp, 1, 0)) * (H / 2.0)
    gx = np.divide(dDdu, lt, out=np.zeros_like(dDdu), where=lt > 0)
    gy = np.divide(dDdv, lb, out=np.zeros_like(dDdv), where=lb > 0)
    n = np.stack([-gx, -gy, np.ones_like(gx)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return (n * 0.5 + 0.5).astype(np.float32)


def _displacement(head: FittedHead, raster: UVRaster, tri_ids: np.ndarray, model_uv_corners: np.ndarray) -> np.ndarray:
    """Displacement (H, W) metres: the fit's mean displacement map on the face (model UV tile 0,
    where the fit defines it), the fused per-vertex displacement elsewhere."""
    model = head.model
    m = raster.mask
    d = raster.interpolate(head.fused_disp[:, None], model.triangles[tri_ids])[:, 0]
    if head.disp_maps.size and "face" in model.submesh_triangles:
        t = raster.tri[m]
        uvm = np.einsum("mk,mkc->mc", raster.bary[m].astype(np.float64), model_uv_corners[t])
        a, b = model.submesh_triangles["face"]
        on_face = (tri_ids[t] >= a) & (tri_ids[t] < b)
        mean_map = np.asarray(head.disp_maps, np.float64).mean(0)
        Rd = mean_map.shape[0]
        xy = np.stack([uvm[:, 0] * Rd - 0.5, (1 - uvm[:, 1]) * Rd - 0.5], -1)
        d = np.where(on_face, _bilinear(mean_map[..., None], xy)[:, 0], d)
    out = np.zeros(m.shape)
    out[m] = d
    return push_pull_fill(out[..., None], m.astype(np.float64), np.zeros(1))[..., 0].astype(np.float32)


def _with_person_masks(head: FittedHead, views: list[BakeView], response: str) -> list[BakeView]:
    """The views with their person masks (:func:`.person.person_mask`), checked against the fitted
    head's silhouette in each view."""
    from dataclasses import replace

    from .person import person_mask

    model = head.model
    faces = model.render_triangles()
    out = []
    for v in views:
        if v.person is not None:
            out.append(v)
            continue
        cam = v.camera
        ids = raycast.grid_ids(
            head.world(v.group), faces, cam.K[None], cam.world_to_cam[None], cam.height, cam.width, np.zeros((1, 2))
        )[0]
        display = srgb_encode(v.image) if response == "srgb" else v.image
        out.append(replace(v, person=person_mask(display, ids >= 0)))
    return out


def srgb_encode(x: np.ndarray) -> np.ndarray:
    """Linear [0, 1] -> sRGB-encoded [0, 1] (IEC 61966-2-1)."""
    x = np.clip(np.asarray(x), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def srgb_decode(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] -> linear [0, 1]."""
    x = np.clip(np.asarray(x), 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


def _region_fill(
    albedo: np.ndarray,
    known: np.ndarray,
    raster_mask: np.ndarray,
    region: np.ndarray,
    fallback: np.ndarray,
    reach_px: float,
) -> np.ndarray:
    """Fill unseen texels: the smooth continuation of the seen ones (push-pull), fading with the
    distance from the seen area into the robust (median) seen colour of the texel's region
    (``region`` (H, W) int, -1 outside the skin)."""
    filled = push_pull_fill(albedo, known.astype(np.float64), fallback)
    unseen = raster_mask & ~known
    if not unseen.any() or not known.any():
        return filled
    dist = cv2.distanceTransform((~known).astype(np.uint8), cv2.DIST_L2, 5)
    t = np.clip(dist / max(reach_px, 1.0), 0, 1)[..., None]
    target = np.broadcast_to(np.asarray(fallback, np.float64), albedo.shape).copy()
    for r in np.unique(region[unseen]):
        seen_r = known & (region == r)
        if seen_r.sum() >= 16:
            target[region == r] = np.median(albedo[seen_r], axis=0)
    out = filled.copy()
    out[unseen] = ((1 - t) * filled + t * target)[unseen]
    return out


def add_fine_band(disp: np.ndarray, raster: UVRaster, tri_ids: np.ndarray, model, fine: np.ndarray) -> np.ndarray:
    """The skin atlas's displacement (S, 2S) plus a fine band over the face UV tile (R, R) metres
    (:mod:`mvrecon.detail`; the tile is the atlas's left half, u' = u / 2), on the face's texels
    only. Returns a new array."""
    S = disp.shape[0]
    f = np.asarray(fine, np.float32)
    if f.shape != (S, S):
        # cv2.resize aligns texel centres, as both grids put them at (j + 0.5) / size
        f = cv2.resize(f, (S, S), interpolation=cv2.INTER_AREA if f.shape[0] > S else cv2.INTER_CUBIC)
    out = np.array(disp, np.float32, copy=True)
    if "face" in model.submesh_triangles:
        a, b = model.submesh_triangles["face"]
        t = raster.tri[:, :S]
        on_face = (t >= 0) & (tri_ids[np.clip(t, 0, None)] >= a) & (tri_ids[np.clip(t, 0, None)] < b)
    else:
        on_face = raster.mask[:, :S]
    out[:, :S] += np.where(on_face, f, 0.0)
    return out


def bake_texture(
    head: FittedHead,
    views: list[BakeView],
    cfg: TextureConfig = TextureConfig(),
    response: str = "linear",
    fine: np.ndarray | None = None,
) -> TextureResult:
    """Bake the skin albedo atlas from ``views``, the procedural eye and mouth textures and the
    detail maps of a fitted head (see the module docstring). ``response`` 'srgb': the views'
    images are linear light decoded from sRGB photos (de-lighting is a division in linear light)
    and the colour textures are written sRGB-encoded, as glTF's base colour expects. ``fine``
    (R, R) metres over the face UV tile: the detail stage's fine band, added to the displacement
    and normal maps when ``cfg.fine_detail``."""
    model = head.model
    if model.uvs.shape[0] == 0:
        raise InputError(f"face model '{model.name}' has no UV layout to bake a texture into")
    if cfg.size < 16:
        raise InputError(f"texture size {cfg.size} is too small (at least 16)")
    for v in views:
        if v.image.shape[:2] != (v.camera.height, v.camera.width):
            raise InputError(
                f"view {v.key}: image is {v.image.shape[1]}x{v.image.shape[0]} but its camera is "
                f"{v.camera.width}x{v.camera.height}"
            )
        if not 0 <= v.group < len(head.groups):
            raise InputError(f"view {v.key}: expression group {v.group} does not exist in the fit")
    S = cfg.size
    skin = material("skin")
    tri_ids = material_triangles(model, skin)
    uv_c = corner_uvs(model, tri_ids, skin)  # (F, 3, 2) atlas
    raster = rasterize_uv(uv_c.reshape(-1, 2), np.arange(3 * len(tri_ids)).reshape(-1, 3), S, 2 * S)
    # everything opaque hides skin: the mouth interior and teeth too (an open mouth shows teeth
    # right behind the inner lips); eyelashes and the transparent eye layers do not count
    occluders = model.render_triangles(tuple(RENDER_SUBMESHES) + OPAQUE_INNER)
    if cfg.person_mask:
        views = _with_person_masks(head, views, response)
    samples = _surface_samples(head, raster, tri_ids, cfg.use_detail)
    cols, ws = sample_views(head, samples, views, cfg, occluders)
    sigma = max(cfg.blend_sigma * S, 0.5)
    albedo, wsum = _blend_two_band(raster.mask, cols, ws, sigma)
    known = wsum > 0
    if known.any() and cfg.seam_feather > 0:
        # where coverage thins out (silhouettes, the last view's edge) fade the detail band out,
        # so the seen area meets the fill without a hard edge
        ref = float(np.median(wsum[known])) * cfg.seam_feather
        k = known.astype(np.float32)
        low = _smooth(albedo * k[..., None], 4 * sigma) / np.maximum(_smooth(k, 4 * sigma), 1e-6)[..., None]
        a = np.clip(wsum / max(ref, 1e-30), 0, 1)[..., None]
        albedo = np.where(known[..., None], a * albedo + (1 - a) * low, albedo)
    if known.any():
        mean_skin = (albedo[known] * wsum[known][:, None]).sum(0) / wsum[known].sum()
    else:
        # nothing seen: the fit's own low-resolution albedo is the best guess of the skin colour
        mean_skin = np.clip(np.asarray(head.albedo, np.float64).reshape(3, -1).mean(1), 0, 1)
    fill_from = known.copy()
    if "mouth_socket" in model.submesh_triangles:
        # the inside of the mouth is rarely seen; unseen, it is dark red rather than skin
        t0, t1 = model.submesh_triangles["mouth_socket"]
        t = np.where(raster.mask, tri_ids[np.clip(raster.tri, 0, None)], -1)
        inside = (t >= t0) & (t < t1) & ~known
        albedo[inside] = srgb_decode(MOUTH_INTERIOR) if response == "srgb" else MOUTH_INTERIOR
        fill_from |= inside
    # regions: the skin material's sub-meshes (face, scalp and neck, sockets) each have their own colour
    region = np.full(raster.mask.shape, -1, np.int64)
    tri_of = np.where(raster.mask, tri_ids[np.clip(raster.tri, 0, None)], -1)
    for ri, sub in enumerate(skin.submeshes):
        if sub in model.submesh_triangles:
            t0, t1 = model.submesh_triangles[sub]
            region[(tri_of >= t0) & (tri_of < t1)] = ri
    skin_tex = _region_fill(albedo, fill_from, raster.mask, region, mean_skin, cfg.region_blend * S)
    # detail maps on the neutral asset mesh (what the exported normal map is applied to)
    neutral = head.neutral_model_space() * head.scale
    disp = _displacement(head, raster, tri_ids, model.uvs[model.uv_triangles[tri_ids]])
    if fine is not None and cfg.fine_detail:
        disp = add_fine_band(disp, raster, tri_ids, model, fine)
    normal = normal_map_from_displacement(disp, raster, neutral, model.triangles[tri_ids], uv_c)
    E = max(16, int(round(S * cfg.eye_size_ratio)))
    eyes, iris = _eyes_texture(head, views, cfg, E, occluders, encode=response == "srgb")
    if response == "srgb":
        skin_tex = srgb_encode(skin_tex)
        mean_skin = srgb_encode(mean_skin)
    n_mask = max(int(raster.mask.sum()), 1)
    coverage = {v.key: float((w > 0).sum() / n_mask) for v, w in zip(views, ws)}
    log.info("texture: %d views, %.0f%% of skin texels seen", len(views), 100 * known[raster.mask].mean())
    return TextureResult(
        skin=skin_tex.astype(np.float32),
        skin_weight=wsum.astype(np.float32),
        skin_mask=raster.mask,
        eyes=eyes.astype(np.float32),
        mouth=_mouth_texture(E).astype(np.float32),
        normal=normal,
        displacement=disp,
        mean_skin=mean_skin,
        iris_color=iris,
        view_coverage=coverage,
        lashes=lash_texture(E),
    )
