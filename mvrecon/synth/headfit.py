"""The numerical steps of registering the face model to a head mesh (:mod:`mvrecon.synth.headmesh`).

1. Landmarks on the mesh: a grey Lambertian render of the mesh (Open3D ray casting), MediaPipe's
   face mesh on it (:func:`mvrecon.cues.facemesh.detect`), each 2D point lifted onto the mesh by
   casting its pixel ray. The model's side of each point is found the same way on the model's
   mean shape, seen through the same frontal camera (:func:`model_landmarks`).
2. A similarity (Umeyama, :func:`mvrecon.geometry.umeyama`, re-weighted against
   outliers) from those landmarks; its scale is kept. Then Gauss-Newton on the identity
   coefficients and the rigid pose together, point-to-plane against closest points of the mesh,
   the landmarks only lightly (:func:`fit_identity`).
3. Non-rigid: the skin's vertices solve a sparse linear system per step: closest-point data
   (rejected by distance, normal and the mesh's open border; down-weighted in cavities), a
   bending term on the displacement from the identity fit (uniform Laplacian), stiffness
   decreasing stage by stage. The eye and mouth openings and the ears are :class:`Zones` that
   move rigidly with the skin around them instead of following the mesh (:func:`nonrigid`).
4. The interior parts (eyeballs, teeth, mouth and eye sockets, eyelashes) follow the skin: each
   eyeball (with its lacrimal, blend and occlusion shells) by its eye zone's rigid motion, the
   rest by the skin's displacement interpolated from the nearest skin vertices.

All positions are float64; the model side is in model space (metres, +Y up, +Z out of the face).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..cameras import Camera
from ..errors import MvreconError
from ..facemodel import FaceModel
from ..geometry import Similarity, skew, umeyama, vertex_normals
from ..render.raycast import MeshQuery, MeshScene
from . import meshops as mo
from .head import SKIN_SUBMESHES

log = logging.getLogger(__name__)

MM = 1e-3

# MediaPipe points that sit elsewhere on a head with closed eyes or a closed mouth (most head
# scans are taken so) than on the model's open eyes and parted lips: the lid contours without
# the eye corners, the inner lip contour and the irises (MediaPipe's face_mesh_connections).
MP_LIDS = (
    7,
    144,
    145,
    153,
    154,
    155,
    157,
    158,
    159,
    160,
    161,
    163,
    173,
    246,
    249,
    373,
    374,
    380,
    381,
    382,
    384,
    385,
    386,
    387,
    388,
    390,
    398,
    466,
)
MP_INNER_LIPS = (13, 14, 78, 80, 81, 82, 87, 88, 95, 178, 191, 308, 310, 311, 312, 317, 318, 324, 402, 415)
MP_IRISES = tuple(range(468, 478))

#: Interior groups moved rigidly with each eye.
EYE_GROUPS = {
    "right": ("eyeball_right", "lacrimal_fluid_right", "eye_blend_right", "eye_occlusion_right"),
    "left": ("eyeball_left", "lacrimal_fluid_left", "eye_blend_left", "eye_occlusion_left"),
}


# ------------------------------------------------------------------------------ model landmarks


@dataclass(frozen=True)
class LandmarkRows:
    """MediaPipe points on the model as surface points: point ``i`` is
    ``sum_k w[i, k] verts[vids[i, k]]``; ``ids`` (L,) their MediaPipe indices, ``reliability``
    (L,) relative weights (MediaPipe's visibility confidence on the model)."""

    ids: np.ndarray
    vids: np.ndarray
    w: np.ndarray
    reliability: np.ndarray

    def points(self, verts: np.ndarray) -> np.ndarray:
        """(L, 3) landmark positions on ``verts`` (N, 3)."""
        return np.einsum("lk,lkd->ld", self.w, np.asarray(verts, np.float64)[self.vids])


# ------------------------------------------------------------------------------ render and lift


class Caster:
    """Ray casting against one mesh (Open3D), coordinates shifted to the mesh's centre first so
    a mesh far from the origin keeps float32 precision."""

    def __init__(self, verts: np.ndarray, faces: np.ndarray):

        self.verts = np.asarray(verts, np.float64)
        self.faces = np.asarray(faces, np.int64)
        self.origin = self.verts.mean(0)
        self.normals = vertex_normals(self.verts, self.faces)
        self._scene = MeshScene(self.verts - self.origin, self.faces)

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """First hits of rays (P, 3) + (P, 3): triangle (P,) (-1: miss), point (P, 3), smooth normal (P, 3)."""

        rays = np.concatenate([np.asarray(origins, np.float64) - self.origin, dirs], 1).astype(np.float32)
        hits = self._scene.cast(rays)
        tri = hits.triangles
        bary = hits.barycentric()
        hit = tri >= 0
        pts = np.full((len(tri), 3), np.nan)
        nrm = np.full((len(tri), 3), np.nan)
        corners = self.faces[tri[hit]]
        pts[hit] = np.einsum("pk,pkd->pd", bary[hit], self.verts[corners])
        n = np.einsum("pk,pkd->pd", bary[hit], self.normals[corners])
        nrm[hit] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
        return tri, pts, nrm


def view_camera(
    centre: np.ndarray, back: np.ndarray, up: np.ndarray, distance: float, fov_extent: float, size: int
) -> Camera:
    """A square pinhole camera ``distance`` from ``centre`` along ``back`` (the direction from the
    subject towards the camera), ``up`` up in the image, seeing ``fov_extent`` across at ``centre``."""
    z = -np.asarray(back, np.float64)
    z /= np.linalg.norm(z)
    y = -(np.asarray(up, np.float64) - (np.asarray(up, np.float64) @ z) * z)  # image y points down
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    R = np.stack([x, y, z])
    c = np.asarray(centre, np.float64) - z * distance
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = -R @ c
    f = size * distance / fov_extent
    K = np.array([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1]])
    return Camera("headmesh", size, size, K=K, world_to_cam=M)


def pixel_rays(camera: Camera, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World ray origins and unit directions (P, 3) through ``pixels`` (P, 2)."""
    d = camera.unproject(np.asarray(pixels, np.float64))
    return np.repeat(camera.center[None], len(d), 0), d


def shade(caster: Caster, camera: Camera, colors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A grey-backdrop Lambertian image (H, W, 3) uint8 of the mesh (a key light from the upper
    left of the camera, some ambient), and the hit triangle per pixel (H, W) (-1: backdrop).
    ``colors`` (F, 3) in [0, 1] per triangle (default: one skin tone)."""
    H, W = camera.height, camera.width
    yy, xx = np.mgrid[0:H, 0:W]
    o, d = pixel_rays(camera, np.stack([xx.ravel(), yy.ravel()], 1))
    tri, _, nrm = caster.cast(o, d)
    hit = tri >= 0
    R = camera.world_to_cam[:3, :3]
    light = R.T @ np.array([-0.35, -0.45, -0.82])  # camera frame: up-left, towards the subject
    light /= np.linalg.norm(light)
    lam = np.clip(nrm[hit] @ light, 0, 1)
    lam2 = np.clip(nrm[hit] @ (-R[2]), 0, 1)  # a fill light from the camera
    albedo = np.array([0.86, 0.68, 0.58]) if colors is None else colors[tri[hit]]
    img = np.empty((H * W, 3))
    img[:] = (0.42, 0.44, 0.47)
    img[hit] = (0.18 + 0.62 * lam + 0.25 * lam2)[:, None] * albedo
    img = (np.clip(img, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)
    return img.reshape(H, W, 3), tri.reshape(H, W)


@dataclass(frozen=True)
class LiftedLandmarks:
    """MediaPipe's points found on a mesh: ``points`` (478, 3) mesh units (NaN where the pixel
    ray missed), ``triangles`` (478,) the mesh triangle hit (-1: missed), ``barycentric``
    (478, 3), ``conf`` (478,) MediaPipe's visibility confidence, ``image`` the render."""

    points: np.ndarray
    triangles: np.ndarray
    barycentric: np.ndarray
    conf: np.ndarray
    image: np.ndarray


def detect_on_mesh(caster: Caster, camera: Camera) -> LiftedLandmarks | None:
    """Render the mesh through ``camera``, run MediaPipe, lift its points onto the mesh."""
    from ..cues.facemesh import detect

    img, _ = shade(caster, camera)
    cues = detect(img)
    if cues is None:
        return None
    o, d = pixel_rays(camera, cues.points478[:, :2])
    tri, pts, _ = caster.cast(o, d)
    P = caster.verts[caster.faces[np.maximum(tri, 0)]]
    # barycentrics of the hit (the caster recomputes the point from them; solve them back here)
    bary = np.zeros((len(tri), 3))
    ok = tri >= 0
    e1, e2, r = P[ok, 1] - P[ok, 0], P[ok, 2] - P[ok, 0], pts[ok] - P[ok, 0]
    g = np.stack([np.einsum("pd,pd->p", e1, e1), np.einsum("pd,pd->p", e1, e2), np.einsum("pd,pd->p", e2, e2)], 1)
    b1, b2 = np.einsum("pd,pd->p", r, e1), np.einsum("pd,pd->p", r, e2)
    det = g[:, 0] * g[:, 2] - g[:, 1] ** 2
    u = (g[:, 2] * b1 - g[:, 1] * b2) / det
    v = (g[:, 0] * b2 - g[:, 1] * b1) / det
    bary[ok] = np.stack([1 - u - v, u, v], 1)
    return LiftedLandmarks(pts, tri, bary, cues.conf478.copy(), img)


#: The frontal view both the model and the mesh are seen in for the landmarks: distance (m) and
#: width (m) of the field at the face.
FRONT_DISTANCE_M = 0.6
FRONT_EXTENT_M = 0.30


def front_camera(model: FaceModel, size: int) -> Camera:
    """The frontal camera (model space) on the model's face centre."""
    from .head import face_centre

    centre = face_centre(model, model.mean.astype(np.float64))
    return view_camera(centre, np.array([0, 0, 1.0]), np.array([0, 1.0, 0]), FRONT_DISTANCE_M, FRONT_EXTENT_M, size)


def model_landmarks(model: FaceModel, size: int) -> LandmarkRows:
    """MediaPipe's points on the model's mean shape, rendered as the mesh will be (same shading,
    :func:`front_camera`), lifted onto the model's skin.

    Not the model's landmark embedding: that one holds where MediaPipe puts its points on
    textured renders, and on these grey renders it puts them millimetres elsewhere (the
    model's own mean shape, registered to itself through the embedding, came out a few per cent
    small). Seen the same way on both sides, such offsets cancel. Points on the lids, the inner lips and
    the irises are left out (:data:`MP_LIDS`...): a scan's closed eyes and mouth put them elsewhere."""
    key = ("headmesh-landmarks", int(size))
    if key in model._cache:
        return model._cache[key]
    tri_ids = model.render_triangle_ids()
    caster = Caster(model.mean.astype(np.float64), model.triangles[tri_ids].astype(np.int64))
    got = detect_on_mesh(caster, front_camera(model, size))
    if got is None:
        raise MvreconError(f"MediaPipe finds no face on model '{model.name}' rendered from the front")
    skin = model.render_triangle_ids(SKIN_SUBMESHES)
    on_skin = np.isin(tri_ids[np.maximum(got.triangles, 0)], skin) & (got.triangles >= 0)
    drop = np.zeros(len(got.conf), bool)
    drop[list(MP_LIDS + MP_INNER_LIPS + MP_IRISES)] = True
    ids = np.flatnonzero(on_skin & ~drop)
    vids = model.triangles[tri_ids[got.triangles[ids]]].astype(np.int64)
    rows = LandmarkRows(ids, vids, got.barycentric[ids], np.clip(got.conf[ids], 0.1, 1.0))
    model._cache[key] = rows
    return rows


#: Fewest landmarks found on the mesh a similarity is fitted to.
MIN_LANDMARKS = 30

#: Where to look for a face on a mesh of unknown orientation: (direction from the head to the
#: camera, up), the glTF convention first (+Y up, face towards +Z), then Z-up (Blender: face
#: towards -Y), then the rest.
ORIENTATIONS = (
    ((0, 0, 1), (0, 1, 0)),
    ((0, -1, 0), (0, 0, 1)),
    ((0, 1, 0), (0, 0, 1)),
    ((0, 0, -1), (0, 1, 0)),
    ((1, 0, 0), (0, 1, 0)),
    ((-1, 0, 0), (0, 1, 0)),
)


def scan_points(lifted: LiftedLandmarks, rows: LandmarkRows) -> tuple[np.ndarray, np.ndarray]:
    """The mesh-side points (L, 3) of ``rows`` and their weights (L,) (0 where not found)."""
    pts, conf = lifted.points[rows.ids], lifted.conf[rows.ids]
    ok = np.isfinite(pts).all(1)
    w = np.where(ok, rows.reliability * np.clip(conf, 0.1, 1.0), 0.0)
    return np.where(ok[:, None], pts, 0.0), w


def robust_similarity(src: np.ndarray, dst: np.ndarray, w: np.ndarray, scale_hint: float, iters: int = 6) -> Similarity:
    """Umeyama ``src -> dst`` re-weighted (Cauchy, width 2.5x the median residual, at least
    ``scale_hint``) so that a few misplaced points do not tilt it."""
    w = np.asarray(w, np.float64)
    S = umeyama(src, dst, w)
    for _ in range(iters):
        r = np.linalg.norm(S.apply(src) - dst, axis=1)
        c = max(2.5 * float(np.median(r[w > 0])), scale_hint)
        S = umeyama(src, dst, w / (1 + (r / c) ** 2))
    return S


def find_landmarks(
    caster: Caster, rows: LandmarkRows, model: FaceModel, size: int, refinements: int = 2
) -> tuple[LiftedLandmarks, Similarity]:
    """Landmarks of the mesh and the similarity model -> mesh they give.

    A first pass frames the whole mesh from each of :data:`ORIENTATIONS` until MediaPipe finds a
    face. Its similarity carries :func:`front_camera` (the view the model's landmarks were taken
    in) into the mesh's frame, and the landmarks are taken again there, ``refinements`` times."""
    model_points = rows.points(model.mean.astype(np.float64))
    lo, hi = caster.verts.min(0), caster.verts.max(0)
    centre, diag = (lo + hi) / 2, float(np.linalg.norm(hi - lo))
    lifted = None
    for back, up in ORIENTATIONS:
        cam = view_camera(centre, np.array(back, float), np.array(up, float), 3 * diag, 1.1 * diag, size)
        lifted = detect_on_mesh(caster, cam)
        if lifted is not None:
            break
    if lifted is None:
        raise MvreconError(
            "no face found on the head mesh from the front, back, sides, top or bottom "
            "(MediaPipe on a shaded render); is it a head?"
        )
    pts, w = scan_points(lifted, rows)
    if (w > 0).sum() < MIN_LANDMARKS:
        raise MvreconError(
            f"MediaPipe's face on the head mesh has only {(w > 0).sum()} points on its surface "
            f"(need {MIN_LANDMARKS}); is the face's surface part of the mesh?"
        )
    S = robust_similarity(model_points, pts, w, 0.003 * diag)
    cam_m = front_camera(model, size)
    for _ in range(refinements):
        M = np.eye(4)
        M[:3, :3] = cam_m.world_to_cam[:3, :3] @ S.rotation.T
        M[:3, 3] = -M[:3, :3] @ S.apply(cam_m.center[None])[0]
        again = detect_on_mesh(caster, Camera("headmesh", size, size, K=cam_m.K, world_to_cam=M))
        if again is None:
            log.warning("headmesh: no face on the frontal re-render; keeping the previous landmarks")
            break
        pts, w = scan_points(again, rows)
        if (w > 0).sum() < MIN_LANDMARKS:
            break
        lifted = again
        S = robust_similarity(model_points, pts, w, 0.003 * S.scale)
    return lifted, S


# ------------------------------------------------------------------------------ correspondences


@dataclass(frozen=True)
class Matches:
    """Closest points on the mesh of some query vertices: ``points`` (Q, 3), ``normals`` (Q, 3)
    the mesh's (smooth) normals there, ``weights`` (Q,) 0 where rejected."""

    points: np.ndarray
    normals: np.ndarray
    weights: np.ndarray


def match(
    query: MeshQuery,
    scan_normals: np.ndarray,
    verts: np.ndarray,
    normals: np.ndarray,
    base_w: np.ndarray,
    max_dist: float,
    min_cos: float,
) -> Matches:
    """Closest points of ``verts`` (Q, 3) on the mesh, rejected when farther than ``max_dist``,
    when the normals disagree (cosine below ``min_cos``) or on the mesh's open border (the model
    reaches where the scan does not)."""
    cp = query.closest(verts)
    corners = query.triangles[cp.triangles]
    n = np.einsum("qk,qkd->qd", cp.barycentric, scan_normals[corners])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
    ok = (cp.distances < max_dist) & (np.einsum("qd,qd->q", n, normals) > min_cos) & ~query.on_boundary(cp)
    return Matches(cp.points, n, np.where(ok, base_w, 0.0))


# ------------------------------------------------------------------------------ identity fit


def fit_identity(
    model: FaceModel,
    rows: LandmarkRows,
    scan_lm: np.ndarray,
    lm_w: np.ndarray,
    query: MeshQuery,
    scan_normals: np.ndarray,
    skin_vids: np.ndarray,
    skin_faces: np.ndarray,
    data_w: np.ndarray,
    S: Similarity,
    steps: int,
    prior_mm: float,
    max_dist: float,
    min_cos: float,
    n_eff: float = 300.0,
    n_landmarks: float = 3.0,
) -> tuple[np.ndarray, Similarity]:
    """Identity coefficients (K_id,) and the similarity model -> mesh, by ``steps`` Gauss-Newton
    steps on both together; the similarity's scale stays that of ``S``.

    ``scan_lm`` (L, 3) and ``query`` are in mesh units. Each step expresses the landmarks and
    the closest points of the skin in model space by ``S``'s inverse and minimises, over the
    identity and a small rigid motion G of the model,
    ``sum_l w_l |G P_l(c) - q_l|^2 / s^2 + n_eff sum_i w_i (n_i . (G X_i(c) - p_i))^2 / (s^2 sum w) + |c|^2``
    with ``s = prior_mm``: point-to-plane, so the model can slide along the surface (a pose fitted
    to point pairs alone stays where the landmarks put it); the dense term counts as ``n_eff``
    independent points (neighbouring vertices are not independent observations), the landmarks
    as ``n_landmarks``: MediaPipe places its points on two different heads a little differently
    (about a millimetre), the surface is exact.

    The scale is not fitted: the model's identity modes change the head's size too, so the
    size would be split between the two by the prior alone. It stays the one that maps the
    model's mean landmarks onto the mesh's (:func:`find_landmarks`): a mesh in arbitrary units
    becomes a head whose face has the mean's proportions' size, and the identity takes the rest."""
    from ..geometry import axis_angle_to_matrix

    K = model.n_id
    Bv = model.id_basis[:, skin_vids].astype(np.float64)  # (K, M, 3)
    Bl = np.einsum("lk,mlkd->mld", rows.w, model.id_basis[:, rows.vids].astype(np.float64))
    c = np.zeros(K)
    s2 = (prior_mm * MM) ** 2
    lm_w = lm_w * n_landmarks / max(lm_w.sum(), 1e-9)
    for _ in range(steps):
        Sinv = S.inverse()
        verts = model.vertices(c).astype(np.float64)
        X = verts[skin_vids]
        nX = vertex_normals(X, skin_faces)
        m = match(query, scan_normals, S.apply(X), nX @ S.rotation.T, data_w, max_dist * S.scale, min_cos)
        p, n = Sinv.apply(m.points), m.normals @ S.rotation  # model space
        # dense point-to-plane rows: d/d[c, rotation, translation] of n . (G X(c) - p)
        Jd = np.concatenate([np.einsum("kmd,md->mk", Bv, n), np.cross(X, n), n], 1)
        rd = np.einsum("md,md->m", X - p, n)
        dw = m.weights * n_eff / max(m.weights.sum(), 1e-9) / s2
        # landmark rows (L, 3, K + 6)
        P = rows.points(verts)
        Jl = np.concatenate([Bl.transpose(1, 2, 0), -skew(P), np.broadcast_to(np.eye(3), P.shape + (3,))], 2)
        rl = P - Sinv.apply(scan_lm)
        A = Jd.T @ (dw[:, None] * Jd) + np.einsum("l,lai,laj->ij", lm_w / s2, Jl, Jl)
        b = -(Jd.T @ (dw * rd) + np.einsum("l,lai,la->i", lm_w / s2, Jl, rl))
        A[:K, :K] += np.eye(K)
        b[:K] -= c
        delta = np.linalg.solve(A, b)
        c = c + delta[:K]
        G = Similarity(1.0, axis_angle_to_matrix(delta[K : K + 3]), delta[K + 3 : K + 6])
        S = G.then(S)
    return c, S


# ------------------------------------------------------------------------------ non-rigid


def uniform_laplacian(faces: np.ndarray, n: int):
    """Sparse (n, n) ``I - D^-1 A`` of the mesh's edge graph."""
    import scipy.sparse as sp

    edges, _ = mo._edges(np.asarray(faces, np.int64))
    i, j = edges[:, 0], edges[:, 1]
    A = sp.csr_matrix((np.ones(2 * len(edges)), (np.r_[i, j], np.r_[j, i])), shape=(n, n))
    deg = np.asarray(A.sum(1)).ravel()
    return (sp.eye(n) - sp.diags(1.0 / np.maximum(deg, 1)) @ A).tocsr()


def solve_spd(A, rhs: np.ndarray) -> np.ndarray:
    """``A^-1 rhs`` for a sparse symmetric positive definite ``A`` (n, n): SuperLU in symmetric
    mode (no pivoting, minimum degree on A + A^T), much faster than its default on these systems."""
    import scipy.sparse.linalg as spla

    lu = spla.splu(A.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return lu.solve(np.asarray(rhs, np.float64))


def nonrigid(
    x0: np.ndarray,
    faces: np.ndarray,
    query: MeshQuery,
    scan_normals: np.ndarray,
    zones: Zones,
    data_w: np.ndarray,
    stiffness: tuple[float, ...],
    steps: int,
    max_dist: float,
    min_cos: float,
    zone_weight: float = 30.0,
) -> tuple[np.ndarray, dict[str, Similarity]]:
    """Skin vertices (M, 3) pulled onto the mesh (all in model space), and the rigid motion of
    each of the ``zones``.

    Each step minimises
    ``sum_i w_i |x_i - p_i|^2 + sum_i z_i |x_i - T_k(x0_i)|^2 + alpha |L (x - x0)|^2``:
    p_i the closest points of the current x, w_i their weights (``data_w`` (M,), at most
    :attr:`Zones.weight`, times the rejections), z_i = ``zone_weight`` (1 - w_i) inside a
    zone, T_k the rigid
    motion (Kabsch) of that zone's outer band from x0 to the current x, L the uniform Laplacian.
    So the lids by an eye the mesh shows closed move as a whole with the skin around them (the
    eyeball goes with the same motion) instead of being squeezed onto the mesh, and so do the
    lips' inner rims and the ears. alpha runs through ``stiffness``, ``steps`` steps each. At the
    end the zones' cores are set onto their motions.

    No landmark term: MediaPipe places its points on two heads a little differently, and held
    to them the skin slid along the surface (on synthetic heads the p95 correspondence error
    grew); the identity fit has already placed the skin."""
    import scipy.sparse as sp

    M = len(x0)
    L = uniform_laplacian(faces, M)
    LtL = (L.T @ L).tocsc()
    bend0 = LtL @ x0
    z = np.where(zones.zone >= 0, zone_weight * (1.0 - zones.weight), 0.0)
    x = x0.copy()
    for alpha in stiffness:
        for _ in range(steps):
            m = match(query, scan_normals, x, vertex_normals(x, faces), data_w, max_dist, min_cos)
            held = x0.copy()
            for i, T in enumerate(zones.motions(x0, x).values()):
                sel = zones.zone == i
                held[sel] = T.apply(x0[sel])
            A = sp.diags(m.weights + z) + alpha * LtL
            rhs = m.weights[:, None] * m.points + z[:, None] * held + alpha * bend0
            x = solve_spd(A, rhs)
    # the zones' cores follow their motion exactly (bending pulls them a hair off it, and the
    # lid margins touch the eyeballs by design: a hundredth of a mm pushes one through), blended
    # into the solution below weight 0.3, where the outer bands that define the motions begin
    motions = zones.motions(x0, x)
    s = np.where(zones.zone >= 0, np.clip(1 - zones.weight / 0.3, 0, 1) ** 2, 0.0)
    for i, T in enumerate(motions.values()):
        sel = zones.zone == i
        x[sel] = (1 - s[sel, None]) * x[sel] + s[sel, None] * T.apply(x0[sel])
    return x, motions


@dataclass(frozen=True)
class Zones:
    """Parts of the skin the mesh is not trusted on (the eye and mouth openings, which a scan may
    show closed; the ears, too intricate for closest points): ``weight`` (M,) the data weight
    (0 in a zone's core rising to 1 away from it), ``zone`` (M,) the index into ``names`` of the
    zone (weight < 1) a vertex lies in, -1 elsewhere."""

    names: tuple[str, ...]
    weight: np.ndarray
    zone: np.ndarray

    def motions(self, x0: np.ndarray, x: np.ndarray) -> dict[str, Similarity]:
        """Per zone, the rigid motion x0 -> x of its outer band (weight above 0.3,
        where the mesh holds the skin), weighted by the data weight."""
        out = {}
        for i, name in enumerate(self.names):
            band = (self.zone == i) & (self.weight > 0.3)
            if band.sum() < 6:
                out[name] = Similarity(1.0, np.eye(3), np.zeros(3))
                continue
            out[name] = umeyama(x0[band], x[band], self.weight[band], with_scale=False)
        return out


def border_loops(faces: np.ndarray, n: int) -> list[np.ndarray]:
    """Vertex ids of each connected piece of the mesh's open border (holes and outline)."""
    import scipy.sparse as sp
    import scipy.sparse.csgraph as cg

    edges, eid = mo._edges(faces)
    count = np.bincount(eid.ravel(), minlength=len(edges))
    be = edges[count == 1]
    A = sp.coo_matrix((np.ones(len(be)), (be[:, 0], be[:, 1])), shape=(n, n))
    _, comp = cg.connected_components(A, directed=False)
    on_border = np.zeros(n, bool)
    on_border[be.ravel()] = True
    return [np.flatnonzero(on_border & (comp == c)) for c in np.unique(comp[on_border])]


def opening_rim(verts: np.ndarray, loops: list[np.ndarray], near: np.ndarray) -> np.ndarray:
    """Vertex ids of the border loops passing within their own size of the points ``near``
    (an eye's or the mouth's corners pick that opening's rim, not the neck's cut)."""
    from scipy.spatial import cKDTree

    ids = [lp for lp in loops if cKDTree(verts[lp]).query(near)[0].min() < max(np.ptp(verts[lp], axis=0).max(), 0.01)]
    return np.concatenate(ids) if ids else np.zeros(0, np.int64)


def ear_vertices(
    verts: np.ndarray, faces: np.ndarray, temple: np.ndarray, side: float, thickness: float = 0.012
) -> np.ndarray:
    """Vertex ids of one ear: skin thinner than ``thickness`` (a ray inwards along the normal
    meets the surface again that soon) lateral to 85 % of the temple landmark ``temple`` (3,) and
    behind it, on the ``side`` (+1: +x) of the head."""
    n = vertex_normals(verts, faces)
    tri, p, _ = Caster(verts, faces).cast(verts - n * 1e-4, -n)
    depth = np.where(tri >= 0, np.linalg.norm(p - verts, axis=1), np.inf)
    lateral = side * verts[:, 0] > 0.85 * side * temple[0]
    return np.flatnonzero((depth < thickness) & lateral & (verts[:, 2] < temple[2]))


def cavity_weights(
    verts: np.ndarray, faces: np.ndarray, n_rays: int = 32, lo: float = 0.25, hi: float = 0.5
) -> np.ndarray:
    """(M,) data weights against cavities: the share of ``n_rays`` rays (cosine-spread over the
    normal's hemisphere) from each vertex that leave the skin without meeting it again, mapped
    smoothly from 0 at ``lo`` to 1 at ``hi``. Nostrils, the ear canal and deep creases get
    little weight: a scanner does not see into them, so the mesh there is guesswork."""
    k = np.arange(n_rays) + 0.5
    r, azim = np.sqrt(k / n_rays), np.pi * (1 + 5**0.5) * k
    local = np.stack([r * np.cos(azim), r * np.sin(azim), np.sqrt(1 - r * r)], 1)  # (R, 3), z up
    n = vertex_normals(verts, faces)
    a = np.where(np.abs(n[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    t1 = np.cross(n, a)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(n, t1)
    dirs = local[None, :, :1] * t1[:, None] + local[None, :, 1:2] * t2[:, None] + local[None, :, 2:] * n[:, None]
    origins = np.repeat(verts + 1e-4 * n, n_rays, 0)
    tri, _, _ = Caster(verts, faces).cast(origins, dirs.reshape(-1, 3))
    free = (tri < 0).reshape(len(verts), n_rays).mean(1)
    t = np.clip((free - lo) / (hi - lo), 0, 1)
    return t * t * (3 - 2 * t)


def soft_zones(verts: np.ndarray, seeds: dict[str, tuple[np.ndarray, float, float]]) -> Zones:
    """:class:`Zones` from seed vertex sets ``name: (ids, gap, taper)``: data weight 0 within
    ``gap`` of the seeds, rising smoothly to 1 ``taper`` further on."""
    from scipy.spatial import cKDTree

    w = np.ones(len(verts))
    zone = np.full(len(verts), -1)
    names: list[str] = []
    for name, (ids, gap, taper) in seeds.items():
        if len(ids) == 0:
            continue
        d, _ = cKDTree(verts[ids]).query(verts)
        t = np.clip((d - gap) / max(taper, 1e-9), 0, 1)
        wk = t * t * (3 - 2 * t)
        zone[(wk < 1) & (wk < w)] = len(names)
        names.append(name)
        w = np.minimum(w, wk)
    return Zones(tuple(names), w, zone)


# ------------------------------------------------------------------------------ interior parts


def carry_interior(
    model: FaceModel,
    base: np.ndarray,
    skin_vids: np.ndarray,
    skin_new: np.ndarray,
    eye_motions: dict[str, Similarity],
    k: int = 8,
) -> np.ndarray:
    """All N vertices (N, 3): the skin at ``skin_new`` (M, 3), every other vertex of ``base``
    (N, 3) moved with the skin. Eye groups (:data:`EYE_GROUPS`) move by their eye's rigid
    motion (``eye_motions['right' | 'left']``, the one the lids around them made); the rest by
    the skin's displacement interpolated from their ``k`` nearest skin vertices (inverse squared
    distance, so a vertex on a seam with the skin follows that skin vertex exactly)."""
    from scipy.spatial import cKDTree

    out = np.asarray(base, np.float64).copy()
    disp = skin_new - out[skin_vids]
    out[skin_vids] = skin_new
    is_skin = np.zeros(model.n_vertices, bool)
    is_skin[skin_vids] = True
    rest = np.flatnonzero(~is_skin)
    d, idx = cKDTree(base[skin_vids]).query(base[rest], k=k)
    w = 1.0 / (d * d + (0.2 * MM) ** 2)
    out[rest] = base[rest] + np.einsum("pk,pkd->pd", w, disp[idx]) / w.sum(1, keepdims=True)
    for side, groups in EYE_GROUPS.items():
        if side not in eye_motions:
            continue
        for g in groups:
            if g in model.submeshes:
                a, b = model.submeshes[g]
                out[a:b] = eye_motions[side].apply(base[a:b])
    return out
