"""The ground-truth head: identity and expression of the linear model, plus the geometry it cannot
express: smooth mid-frequency bumps (a few mm) and fine wrinkle-like detail (sub-mm), both along
the normal and both kept as UV maps over the face's UV tile (u in [0, 1]).

The detailed surface is the skin (ICT face + head/neck) Loop-subdivided ``levels`` times: mid
bumps move the model's vertices before subdivision, fine detail moves the subdivided vertices.
The first vertices of the subdivided skin are the model's own vertices, so the model-topology
ground truth (``verts_detail``) lies exactly on the detailed surface (and on the scan).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..facemodel import FaceModel
from ..geometry import vertex_normals
from . import meshops as mo

MM = 1e-3

#: Sub-meshes of the skin (the surface that gets detail, texture and becomes the scan).
SKIN_SUBMESHES = ("face", "head_neck")
#: Rendered with vertex colours when present: eyeballs always, the mouth interior when open.
EYE_SUBMESHES = ("eyeball_left", "eyeball_right")
MOUTH_SUBMESHES = ("mouth_socket", "gums_tongue", "teeth")


# ------------------------------------------------------------------------------ coefficients


def _exp_index(model: FaceModel) -> dict[str, int]:
    return {n: i for i, n in enumerate(model.exp_names)}


def sample_identity(model: FaceModel, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Identity coefficients (K_id,) ~ N(0, scale^2) (the basis is scaled for N(0, 1))."""
    return (rng.standard_normal(model.n_id) * scale).astype(np.float32)


def sample_expression(model: FaceModel, rng: np.random.Generator, scale: float, frame: int) -> np.ndarray:
    """ARKit weights (K_exp,): a slight smile, the jaw a little open, brows raised or lowered.

    Frame 0 is the calmest (the scan is taken of it); later frames are livelier. Shapes the model
    does not have are skipped (a non-ICT model gets whatever of these names it carries).
    """
    w = np.zeros(model.n_exp, np.float32)
    idx = _exp_index(model)
    live = 1.0 if frame == 0 else 1.8

    def put(name: str, value: float) -> None:
        if name in idx:
            w[idx[name]] = np.clip(value * scale, 0.0, 1.0)

    smile = rng.uniform(0.10, 0.30) * live
    put("mouthSmile_L", smile * rng.uniform(0.85, 1.15))
    put("mouthSmile_R", smile * rng.uniform(0.85, 1.15))
    put("cheekSquint_L", 0.3 * smile)
    put("cheekSquint_R", 0.3 * smile)
    put("jawOpen", rng.uniform(0.03, 0.12) * live)
    if rng.uniform() < 0.6:
        up = rng.uniform(0.1, 0.35) * live
        put("browInnerUp_L", up)
        put("browInnerUp_R", up)
        put("browOuterUp_L", 0.6 * up)
        put("browOuterUp_R", 0.6 * up)
    else:
        down = rng.uniform(0.05, 0.25) * live
        put("browDown_L", down)
        put("browDown_R", down)
    return w


def random_pose(
    rng: np.random.Generator, centre: np.ndarray, max_angles_deg=(8.0, 5.0, 3.0), jitter_m: float = 0.01
) -> np.ndarray:
    """``head_to_world`` (4, 4): a small yaw/pitch/roll and the face centre (model space) placed
    within ``jitter_m`` of the world origin."""
    from ..geometry import axis_angle_to_matrix

    yaw, pitch, roll = (np.radians(rng.uniform(-a, a)) for a in max_angles_deg)
    R = axis_angle_to_matrix([0, yaw, 0]) @ axis_angle_to_matrix([pitch, 0, 0]) @ axis_angle_to_matrix([0, 0, roll])
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = -R @ np.asarray(centre, np.float64) + rng.uniform(-jitter_m, jitter_m, 3)
    return M


def face_centre(model: FaceModel, verts: np.ndarray) -> np.ndarray:
    """A point between the eyes and the nose (model space): what the rig's cameras aim at."""
    lm = np.asarray(verts)[model.landmarks68]
    return lm[[27, 28, 29, 30, 36, 39, 42, 45]].mean(0)


# ------------------------------------------------------------------------------ skin topology


@dataclass(frozen=True)
class SkinTopology:
    """The skin sub-meshes as one surface: vertex ids (M,) into the model (skin vertex i is model
    vertex ``vids[i]``), triangles (F, 3) into the skin, their model triangle ids (F,), UVs."""

    vids: np.ndarray
    faces: np.ndarray
    tri_ids: np.ndarray
    uvs: np.ndarray
    uv_faces: np.ndarray

    @staticmethod
    def of(model: FaceModel) -> SkinTopology:
        tri_ids = (
            np.concatenate(
                [np.arange(*model.submesh_triangles[s]) for s in SKIN_SUBMESHES if s in model.submesh_triangles]
            )
            if model.submesh_triangles
            else np.arange(len(model.triangles))
        )
        tris = model.triangles[tri_ids].astype(np.int64)
        vids = np.unique(tris)
        remap = np.full(model.n_vertices, -1, np.int64)
        remap[vids] = np.arange(len(vids))
        return SkinTopology(
            vids=vids,
            faces=remap[tris],
            tri_ids=tri_ids,
            uvs=model.uvs.astype(np.float64),
            uv_faces=model.uv_triangles[tri_ids].astype(np.int64),
        )

    def vertex_uvs(self) -> np.ndarray:
        return mo.vertex_uvs(len(self.vids), self.faces, self.uvs, self.uv_faces)


def face_weight(model: FaceModel, taper_mm: float = 15.0) -> np.ndarray:
    """(N,) weight in [0, 1] of the detail layers: 1 inside the face, falling smoothly to 0 at the
    face sub-mesh's borders (the seam to head/neck, eye and mouth openings), 0 elsewhere, so the
    detail never tears seams or pushes eyelids into the eyeballs."""
    from scipy.spatial import cKDTree

    w = np.zeros(model.n_vertices)
    if "face" not in model.submesh_triangles:
        return w + 1.0
    ftri = model.triangles[np.arange(*model.submesh_triangles["face"])].astype(np.int64)
    border = mo.boundary_vertices(ftri, model.n_vertices)
    face_v = np.unique(ftri)
    d, _ = cKDTree(model.mean[border]).query(model.mean[face_v])
    t = np.clip((d - 2 * MM) / (taper_mm * MM), 0.0, 1.0)
    w[face_v] = t * t * (3 - 2 * t)
    return w


# ------------------------------------------------------------------------------ detail maps


@dataclass(frozen=True)
class DetailMaps:
    """Both detail layers as UV maps over the face tile (u, v in [0, 1], v up), metres along the
    outward normal; the face weight is baked in (what is sampled is what is applied)."""

    mid: np.ndarray
    """(Hm, Wm) float32: smooth bumps, a few mm."""
    fine: np.ndarray
    """(Hf, Wf) float32: wrinkle lines and pore-scale roughness, sub-mm."""


def _face_tris(model: FaceModel) -> tuple[np.ndarray, np.ndarray]:
    """The face sub-mesh's vertex triangles (F, 3) and UV triangles (F, 3)."""
    ids = (
        np.arange(*model.submesh_triangles["face"])
        if "face" in model.submesh_triangles
        else np.arange(len(model.triangles))
    )
    return model.triangles[ids].astype(np.int64), model.uv_triangles[ids].astype(np.int64)


def _face_texels(model: FaceModel, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tri (S, S), bary (S, S, 3), face triangles (F, 3)) of the face tile at ``size``^2."""
    ftris, fuv = _face_tris(model)
    tri, bary = mo.rasterize_uv(model.uvs, fuv, size, size)
    return tri, bary, ftris


def _groove(s: np.ndarray, width: float) -> np.ndarray:
    """A wrinkle profile: 1 on integer values of ``s``, a Gaussian of ``width`` (in line periods)."""
    d = s - np.round(s)
    return np.exp(-0.5 * (d / width) ** 2)


def make_detail_maps(
    model: FaceModel,
    rng: np.random.Generator,
    mid_size: int = 256,
    fine_size: int = 1024,
    mid_amplitude_mm: float = 3.0,
    fine_amplitude_mm: float = 0.35,
    n_bumps: int = 12,
) -> DetailMaps:
    """Random mid bumps and fine wrinkles for ``model`` (laid out from its own landmarks)."""
    from scipy.ndimage import gaussian_filter

    weight = face_weight(model)
    lm = model.mean[model.landmarks68].astype(np.float64)

    # mid: Gaussian bumps in UV space centred on well-inside face vertices
    tri, bary, ftris = _face_texels(model, mid_size)
    w_tex = mo.interpolate_texels(tri, bary, ftris, weight)[..., 0]
    ftris_v, ftris_uv = _face_tris(model)
    vuv = mo.vertex_uvs(model.n_vertices, ftris_v, model.uvs, ftris_uv)
    inner = np.flatnonzero((weight > 0.7) & np.isfinite(vuv[:, 0]))
    centres = vuv[rng.choice(inner, size=n_bumps, replace=False)]
    sig = rng.uniform(0.03, 0.07, n_bumps)
    amp = rng.uniform(0.4, 1.0, n_bumps) * rng.choice([-1.0, 1.0], n_bumps)
    jj, ii = np.meshgrid((np.arange(mid_size) + 0.5) / mid_size, 1.0 - (np.arange(mid_size) + 0.5) / mid_size)
    field = np.zeros((mid_size, mid_size))
    for c, s, a in zip(centres, sig, amp):  # a dozen bumps: a loop over bumps, not texels
        field += a * np.exp(-((jj - c[0]) ** 2 + (ii - c[1]) ** 2) / (2 * s * s))
    field *= w_tex
    mid = field / max(np.abs(field).max(), 1e-12) * mid_amplitude_mm * MM

    # fine: wrinkles defined on the mean face's 3D surface, evaluated per texel
    tri, bary, ftris = _face_texels(model, fine_size)
    P = mo.interpolate_texels(tri, bary, ftris, model.mean)  # (S, S, 3) model space
    w_tex = mo.interpolate_texels(tri, bary, ftris, weight)[..., 0]
    x, y = P[..., 0], P[..., 1]
    iod = np.linalg.norm(lm[45] - lm[36])
    brow_top = lm[17:27, 1].max()
    cx = lm[27, 0]
    # forehead: near-horizontal grooves above the brows, gently wavy, random strength per line
    lam = 0.09 * iod
    strength = rng.uniform(0.35, 1.0, 64)
    s = (y - brow_top - 0.1 * iod) / lam + 0.25 * np.sin(2 * np.pi * (x - cx) / (0.9 * iod) + rng.uniform(0, 2 * np.pi))
    line = strength[np.mod(np.round(s).astype(np.int64), 64)]
    env_y = np.clip(s, 0, None) * np.clip(5.5 - s, 0, None)
    env_y = np.clip(env_y / 4.0, 0, 1)
    env_x = np.clip(1 - ((x - cx) / (0.75 * iod)) ** 2, 0, 1)
    forehead = line * _groove(s, 0.12) * env_y * env_x
    # crow's feet: lines fanning out from the outer eye corners
    crow = np.zeros_like(x)
    for corner, side in ((lm[36], -1.0), (lm[45], 1.0)):
        dx = (x - corner[0]) * side
        dy = y - corner[1]
        r = np.hypot(dx, dy)
        theta = np.arctan2(dy, np.maximum(dx, 1e-9))
        s2 = theta / np.radians(13.0) + rng.uniform(0, 1)
        env_r = np.clip((r - 0.05 * iod) / (0.08 * iod), 0, 1) * np.clip((0.42 * iod - r) / (0.12 * iod), 0, 1)
        env_t = np.clip(1 - (theta / np.radians(55.0)) ** 2, 0, 1) * (dx > 0)
        crow += _groove(s2, 0.1) * env_r * env_t
    pores = gaussian_filter(rng.standard_normal(x.shape), 0.8)
    pores /= max(pores.std(), 1e-12)
    fine = -fine_amplitude_mm * MM * (forehead + 0.8 * crow) + 0.02 * MM * pores
    fine *= w_tex
    return DetailMaps(mid=mid.astype(np.float32), fine=fine.astype(np.float32))


# ------------------------------------------------------------------------------ geometry


@dataclass(frozen=True)
class HeadGeometry:
    """One frame of the ground-truth head, model space (metres)."""

    verts_base: np.ndarray
    """(N, 3) identity + expression of the linear model."""
    verts_mid: np.ndarray
    """(N, 3) plus the mid bumps (skin vertices only)."""
    verts_detail: np.ndarray
    """(N, 3) model-topology vertices on the final detailed surface (skin vertices moved by
    subdivision and fine detail, the rest as ``verts_base``)."""
    skin: mo.UVMesh
    """The detailed, subdivided skin; ``skin.parent`` are model triangle ids."""


def build_geometry(
    model: FaceModel,
    topo: SkinTopology,
    maps: DetailMaps,
    id_coeffs: np.ndarray,
    exp_coeffs: np.ndarray,
    levels: int,
    offset: np.ndarray | None = None,
) -> HeadGeometry:
    """Apply identity, expression, mid bumps, ``levels`` Loop subdivisions and fine detail.

    ``offset`` (N, 3), metres, model space: added to the linear model's vertices before the detail
    (a registered scan head's difference from the mean, or a deformation outside the model's span)."""
    base = model.vertices(id_coeffs, exp_coeffs).astype(np.float64)
    if offset is not None:
        base = base + offset
    skin_v = base[topo.vids]
    n_skin = vertex_normals(skin_v, topo.faces)
    vuv = topo.vertex_uvs()
    on_face = np.isfinite(vuv[:, 0]) & (vuv[:, 0] < 1.0)  # the face tile holds the maps
    mid = np.zeros(len(skin_v))
    mid[on_face] = mo.sample_map(maps.mid, vuv[on_face])[:, 0]
    skin_mid = skin_v + mid[:, None] * n_skin
    verts_mid = base.copy()
    verts_mid[topo.vids] = skin_mid

    sub = mo.loop_subdivide(mo.UVMesh(skin_mid, topo.faces, topo.uvs, topo.uv_faces, topo.tri_ids), levels)
    suv = mo.vertex_uvs(len(sub.verts), sub.faces, sub.uvs, sub.uv_faces)
    sn = vertex_normals(sub.verts, sub.faces)
    on_face = np.isfinite(suv[:, 0]) & (suv[:, 0] < 1.0)
    fine = np.zeros(len(sub.verts))
    fine[on_face] = mo.sample_map(maps.fine, suv[on_face])[:, 0]
    detailed = sub.verts + fine[:, None] * sn
    skin = mo.UVMesh(detailed, sub.faces, sub.uvs, sub.uv_faces, sub.parent)
    verts_detail = base.copy()
    verts_detail[topo.vids] = detailed[: len(topo.vids)]
    return HeadGeometry(verts_base=base, verts_mid=verts_mid, verts_detail=verts_detail, skin=skin)


def transform(points: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Points (..., 3) through a 4x4 transform (new array)."""
    p = np.asarray(points, np.float64)
    return p @ M[:3, :3].T + M[:3, 3]


def mouth_gap(model: FaceModel, verts: np.ndarray) -> float:
    """Distance (metres) between the inner-lip landmarks 62 and 66: > ~1 mm means the mouth is open."""
    lm = np.asarray(verts)[model.landmarks68]
    return float(np.linalg.norm(lm[62] - lm[66]))
