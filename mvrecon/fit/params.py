"""The fit's unknowns and the geometry they make.

Shared by all views: identity ``alpha`` (K_id), the canonical UV deformation map ``D``, a global
scale, the UV albedo. Per expression group (a view in MV-HRN mode, a frame for a synchronized rig):
expression ``beta`` and the head's rigid pose. Per view: SH lighting (9 x 3), a colour bias (3,)
and a UV displacement map ``d`` (1 x Rd x Rd, metres along the normal).

The deformation map is either ``normal`` (1 x R x R: an offset along the normal of the neutral
identity surface, bounded per region by ``b_i tanh(D / b_i)``) or ``free`` (3 x R x R, metres in
model space, MV-HRN's). A free 3D offset per texel can slide skin along the surface (on real photos
it tore the upper lip onto the chin); along the normal it cannot, and the bounds keep the lips, the
eyelids and the nose from swelling into what the photos do not explain.

World vertices of group g: ``X = s R_g (mean + B_id alpha + B_exp beta_g + D(uv) + d(uv) n) + t_g``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry import axis_angle_to_matrix, matrix_to_axis_angle, vertex_normals


def vertex_uvs(model) -> np.ndarray:
    """One UV (N, 2) per vertex (the first corner that uses it; seams pick one side)."""
    uv = np.zeros((model.n_vertices, 2), np.float32)
    if model.uvs.shape[0] == 0:
        return uv
    tri = model.triangles.reshape(-1)
    uvt = model.uv_triangles.reshape(-1)
    first = np.full(model.n_vertices, -1, np.int64)
    order = np.arange(len(tri))[::-1]
    first[tri[order]] = uvt[order]
    ok = first >= 0
    uv[ok] = model.uvs[first[ok]]
    return uv


def sample_uv_map(maps: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Sample UV maps (B, C, H, W) at per-vertex UVs (N, 2) (v up) -> (B, N, C)."""
    grid = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2], -1)[None, None].expand(maps.shape[0], -1, -1, -1)
    out = F.grid_sample(maps, grid.to(maps.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, :, 0].transpose(1, 2)


def uv_coverage(model, uv_vert: np.ndarray, res: int, vert_mask: np.ndarray) -> np.ndarray:
    """(res, res) bool: texels of the UV layout covered by the masked vertices' triangles (for
    masked TV priors)."""
    import cv2

    m = np.zeros((res, res), np.uint8)
    tri = model.triangles[vert_mask[model.triangles].all(1)]
    if len(tri) == 0:
        return m.astype(bool)
    pts = uv_vert[tri] * [res, res]
    pts[..., 1] = res - pts[..., 1]
    cv2.fillPoly(m, np.round(pts * 16).astype(np.int32), 1, shift=4)
    return cv2.dilate(m, np.ones((3, 3), np.uint8)).astype(bool)


@dataclass
class Layout:
    """How views map to expression groups."""

    group_of_view: np.ndarray
    """(V,) group index of each view."""
    n_groups: int
    mode: str


class FitParams(torch.nn.Module):
    """All unknowns as parameters; which are optimised is decided by the schedule."""

    def __init__(
        self,
        model,
        n_views: int,
        layout: Layout,
        deform_res: int = 64,
        disp_res: int = 256,
        albedo_res: int = 256,
        dtype: torch.dtype = torch.float32,
        deform_channels: int = 3,
        n_cameras: int | None = None,
    ):
        super().__init__()
        G = layout.n_groups
        P = torch.nn.Parameter
        self.alpha = P(torch.zeros(model.n_id, dtype=dtype))
        self.log_scale = P(torch.zeros((), dtype=dtype))
        self.deform = P(torch.zeros(1, deform_channels, deform_res, deform_res, dtype=dtype))
        self.beta = P(torch.zeros(G, model.n_exp, dtype=dtype))
        self.rot = P(torch.zeros(G, 3, dtype=dtype))
        self.trans = P(torch.zeros(G, 3, dtype=dtype))
        sh = torch.zeros(n_views, 9, 3, dtype=dtype)
        sh[:, 0] = 1.0 / 0.886227  # ambient 1: the albedo starts as the observed colour
        self.sh = P(sh)
        self.disp = P(torch.zeros(n_views, 1, disp_res, disp_res, dtype=dtype))
        self.albedo = P(torch.full((1, 3, albedo_res, albedo_res), 0.5, dtype=dtype))
        self.bias = P(torch.zeros(n_views, 3, dtype=dtype))
        # per camera: a small correction of its pose (axis-angle about the head, translation), for a
        # rig that drifted since its calibration; zero-mean over the cameras (the gauge)
        self.cam_pose = P(torch.zeros(n_cameras or n_views, 6, dtype=dtype))
        # a key light beside the SH ambient (FitConfig.key_light): its world direction (set from the
        # photos when the photometric term starts), per view the colour its cast shadows take away
        # and the colour of its specular lobe; zero strengths leave the Lambertian SH model
        self.key_dir = P(torch.tensor([0.0, 0.0, 1.0], dtype=dtype))
        self.key = P(torch.zeros(n_views, 3, dtype=dtype))
        self.spec = P(torch.zeros(n_views, 3, dtype=dtype))
        self.blendshape = model.exp_kind == "blendshape"

    def snapshot(self) -> dict[str, torch.Tensor]:
        """Copies of every parameter (to revert a stage)."""
        return {k: v.detach().clone() for k, v in self.named_parameters()}

    def restore(self, snap: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in self.named_parameters():
                v.copy_(snap[k])

    def set_init(self, init, group_ids: np.ndarray | None = None) -> None:
        with torch.no_grad():
            self.alpha.copy_(torch.as_tensor(init.id_coeffs, dtype=self.alpha.dtype))
            self.log_scale.fill_(float(np.log(init.scale)))
            self.beta.copy_(torch.as_tensor(init.exp_coeffs, dtype=self.beta.dtype).expand_as(self.beta))
            self.rot.copy_(torch.as_tensor(matrix_to_axis_angle(init.R), dtype=self.rot.dtype).expand_as(self.rot))
            self.trans.copy_(torch.as_tensor(init.t, dtype=self.trans.dtype).expand_as(self.trans))

    def clamp_(self) -> None:
        """Keep blendshape weights in their valid range after a step."""
        if self.blendshape:
            with torch.no_grad():
                self.beta.clamp_(0.0, 1.0)


#: Largest deformation along the normal per region (metres): the lips, the eyelids and the nose
#: are where a free map swelled or slid on real photos; elsewhere the linear model's misses
#: (cheek and jaw shape, contours) are a few mm.
DEFORM_BOUNDS = {
    "upper_lip": 1.5e-3,
    "lower_lip": 1.5e-3,
    "right_eye": 1.0e-3,
    "left_eye": 1.0e-3,
    "nose": 3.0e-3,
    "right_brow": 3.0e-3,
    "left_brow": 3.0e-3,
}
DEFORM_BOUND_DEFAULT = 5.0e-3


def deform_bounds(model, rim_mm: tuple[float, float] = (1.0, 5.0)) -> np.ndarray:
    """(N,) the largest deformation along the normal of each vertex (metres): by part label, and
    tapering to 0 towards the open borders of the face and head meshes (the lips' and eyelids'
    inner rims, where the mesh wraps round within a fraction of a millimetre and any offset would
    turn its tiny triangles inside out; the neck's cut)."""
    from scipy.spatial import cKDTree

    from ..parts import PART_CODES

    b = np.full(model.n_vertices, DEFORM_BOUND_DEFAULT)
    for name, bound in DEFORM_BOUNDS.items():
        b[model.part_labels == PART_CODES[name]] = bound
    rims = []
    for name in ("face", "head_neck"):
        if name in model.submesh_triangles:
            tri = model.triangles[np.arange(*model.submesh_triangles[name])].astype(np.int64)
            e = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), 1)
            uniq, cnt = np.unique(e, axis=0, return_counts=True)
            rims.append(np.unique(uniq[cnt == 1]))
    if rims:
        rim = np.concatenate(rims)
        # the seam between the face and head meshes is a border of each but not of the surface
        pos = model.mean[rim].astype(np.float64)
        key = np.round(pos / 1e-6).astype(np.int64)
        _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
        rim = rim[cnt[inv.reshape(-1)] == 1]
        if len(rim):
            d, _ = cKDTree(model.mean[rim]).query(model.mean)
            t = np.clip((d * 1000 - rim_mm[0]) / (rim_mm[1] - rim_mm[0]), 0, 1)
            b = b * (t * t * (3 - 2 * t))
    return np.maximum(b, 1e-6)


def _mask_edges(model, mask: np.ndarray) -> np.ndarray:
    """Unique undirected edges (E, 2), sorted, of the triangles whose corners are all in ``mask``."""
    tri = model.triangles[mask[model.triangles].all(1)].astype(np.int64)
    return np.unique(np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), 1), axis=0)


def _bending_operator(model, mask: np.ndarray, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The uniform Laplacian (sparse (N, N)) over the edges between ``mask`` vertices, and the
    squared mean edge length per vertex (N,), mm^2 (the mean face's)."""
    e = _mask_edges(model, mask)
    n = model.n_vertices
    deg = np.bincount(e.ravel(), minlength=n).astype(np.float64)
    length = np.linalg.norm(model.mean[e[:, 0]] - model.mean[e[:, 1]], axis=1) * 1000.0
    h = np.bincount(e.ravel(), weights=np.repeat(length, 2), minlength=n) / np.maximum(deg, 1)
    rows = np.concatenate([e[:, 0], e[:, 1], np.arange(n)])
    cols = np.concatenate([e[:, 1], e[:, 0], np.arange(n)])
    w = np.concatenate(
        [-1.0 / np.maximum(deg[e[:, 0]], 1), -1.0 / np.maximum(deg[e[:, 1]], 1), (deg > 0).astype(np.float64)]
    )
    L = torch.sparse_coo_tensor(
        torch.as_tensor(np.stack([rows, cols])), torch.as_tensor(w, dtype=dtype), (n, n), check_invariants=False
    ).coalesce()
    h2 = torch.as_tensor(np.where(deg > 0, h * h, 1.0), dtype=dtype)
    return L, h2


class HeadGeometry:
    """Precomputed model-side data and the differentiable vertex evaluation."""

    def __init__(
        self,
        model,
        deform_res: int = 64,
        disp_res: int = 256,
        dtype: torch.dtype = torch.float32,
        embedding=None,
        deform_kind: str = "free",
    ):
        self.model = model
        self.dtype = dtype
        self.deform_kind = deform_kind
        # MediaPipe's 478 points on the model surface (mvrecon.cues.embedding), or None
        self.dense_idx: torch.Tensor | None = None
        self.dense_w: torch.Tensor | None = None
        self.dense_reliability: torch.Tensor | None = None
        if embedding is not None:
            idx, w = embedding.check(model).vertex_weights(model.triangles)
            self.dense_idx = torch.as_tensor(idx)
            self.dense_w = torch.as_tensor(w, dtype=dtype)
            self.dense_reliability = torch.as_tensor(embedding.weights(), dtype=dtype)
        self.faces_np = model.render_triangles().astype(np.int64)
        self.faces = torch.as_tensor(self.faces_np)
        used = model.render_vertex_mask()
        deformable = self.deformable_mask(model)
        self.deformable = torch.as_tensor(deformable[:, None], dtype=dtype)
        self.uv_np = vertex_uvs(model)
        self.uv = torch.as_tensor(self.uv_np, dtype=dtype)
        self.deform_mask = torch.as_tensor(uv_coverage(model, self.uv_np, deform_res, deformable))
        self.disp_mask = torch.as_tensor(uv_coverage(model, self.uv_np, disp_res, deformable))
        # PRDL candidates: labelled vertices, forehead cut; skin thinned to a fixed subset
        labels = model.part_labels.copy()
        labels[model.forehead] = 0
        labels[~used] = 0
        cand = np.flatnonzero(labels > 0)
        skin = cand[labels[cand] == 1]
        if len(skin) > 2500:
            keep = np.random.default_rng(0).choice(skin, 2500, replace=False)
            cand = np.sort(np.concatenate([cand[labels[cand] != 1], keep]))
        # one-hot part labels (N, P) for the mask-IoU baseline; forehead and unused vertices 0
        self.part_codes = torch.arange(1, int(model.part_labels.max()) + 1)
        self.part_onehot = (torch.as_tensor(labels.astype(np.int64))[:, None] == self.part_codes).to(dtype)
        self.prdl_vertices = torch.as_tensor(cand)
        self.prdl_labels = torch.as_tensor(labels[cand].astype(np.int64))
        self.landmarks = torch.as_tensor(model.landmarks68.astype(np.int64))
        # vertex <- triangle adjacency (N, F) for per-vertex projected areas
        F_ = len(self.faces_np)
        rows = torch.as_tensor(self.faces_np.reshape(-1))
        cols = torch.arange(F_).repeat_interleave(3)
        self._vt = torch.sparse_coo_tensor(
            torch.stack([rows, cols]),
            torch.full((3 * F_,), 1 / 3, dtype=dtype),
            (model.n_vertices, F_),
            check_invariants=False,
        ).coalesce()
        # face-boundary candidates for the contour loss: skin vertices of the face sub-mesh
        self.contour_vertices = torch.as_tensor(np.flatnonzero((model.part_labels == 1) & ~model.forehead & used))
        self._lap, self._lap_h2 = _bending_operator(model, deformable, dtype)
        self._lap_rows = torch.as_tensor(np.flatnonzero(deformable))
        self._normals_key: torch.Tensor | None = None
        self._normals: torch.Tensor | None = None
        bound = deform_bounds(model)
        # offsets along the normals fold the surface where they exceed its radius of curvature
        # (the normals' focal distance): 0.3 of it, estimated on the mean face, caps the bound
        probe = FitParams(model, 1, Layout(np.zeros(1, np.int64), 1, "per_frame"), 2, 2, 2, dtype=dtype)
        n = self.neutral_normals(probe).double().numpy()
        e = _mask_edges(model, deformable)
        length = np.linalg.norm(model.mean[e[:, 0]] - model.mean[e[:, 1]], axis=1)
        angle = np.arccos(np.clip((n[e[:, 0]] * n[e[:, 1]]).sum(1), -1, 1))
        radius = length / np.maximum(angle, 1e-4)
        r = np.full(model.n_vertices, np.inf)
        np.minimum.at(r, e[:, 0], radius)
        np.minimum.at(r, e[:, 1], radius)
        self.deform_bound = torch.as_tensor(np.maximum(np.minimum(bound, 0.3 * r), 1e-6), dtype=dtype)
        self._normals_key = None

    def neutral_normals(self, p: FitParams, smooth_iters: int = 10) -> torch.Tensor:
        """(N, 3) unit directions of the deformation: the neutral identity surface's normals,
        smoothed over the mesh (no gradient; cached per identity).

        Where the face mesh wraps round a sharp rim (the lips' and eyelids' inner edges) the
        vertex normals of neighbours point apart, and equal offsets along them would turn small
        triangles inside out; smoothed, neighbours move alike."""
        a = p.alpha.detach()
        if self._normals_key is None or not torch.equal(self._normals_key, a):
            with torch.no_grad():
                zero = torch.zeros(1, self.model.n_exp, dtype=self.dtype)
                v = self.model.vertices_torch(a[None], zero)[0]
                n = vertex_normals(v, self.faces)
                for _ in range(smooth_iters):
                    n = torch.nn.functional.normalize(n - 0.5 * torch.sparse.mm(self._lap, n), dim=-1, eps=1e-20)
                self._normals = n
            self._normals_key = a.clone()
        assert self._normals is not None
        return self._normals

    def deform_values(self, p: FitParams) -> torch.Tensor:
        """(N, C) the deformation per vertex: metres along the normal (bounded; C = 1) or a 3D offset
        (C = 3); 0 where the map does not apply."""
        raw = sample_uv_map(p.deform, self.uv)[0]
        if raw.shape[1] == 3:
            return raw * self.deformable
        b = self.deform_bound[:, None]
        return b * torch.tanh(raw / b) * self.deformable

    def deform_offsets(self, p: FitParams) -> torch.Tensor:
        """(N, 3) model-space offsets the deformation map adds to every expression."""
        if not p.deform.requires_grad and not bool(p.deform.detach().any()):
            return torch.zeros(self.model.n_vertices, 3, dtype=self.dtype)  # before the deform stage
        d = self.deform_values(p)
        if d.shape[1] == 3:
            return d
        return d * self.neutral_normals(p)

    def bending(self, p: FitParams) -> torch.Tensor:
        """Mean squared discrete curvature (1/m) of the deformation over the deformable surface:
        ``|L d|^2 / h^2`` per vertex with the uniform mesh Laplacian ``L`` and the local edge length
        ``h``, a smoothness energy of the surface, not of the map's texels (so it does not change
        with the map's resolution)."""
        d = self.deform_values(p) * 1000.0  # mm
        Ld = torch.sparse.mm(self._lap, d)
        return ((Ld**2).sum(1) / self._lap_h2)[self._lap_rows].mean()

    def fold_ratio(self, p: FitParams) -> float:
        """Smallest signed area ratio of the deformable triangles (all but slivers under 5 % of the
        median area), deformed against undeformed (neutral identity): 1 unchanged, <= 0 a triangle
        flipped or collapsed (a fold)."""
        with torch.no_grad():
            zero = torch.zeros(1, self.model.n_exp, dtype=self.dtype)
            v0 = self.model.vertices_torch(p.alpha[None], zero)[0]
            v1 = v0 + self.deform_offsets(p)
            f = self.faces[self.deformable[self.faces, 0].bool().all(1)]
            c0 = torch.cross(v0[f[:, 1]] - v0[f[:, 0]], v0[f[:, 2]] - v0[f[:, 0]], dim=-1)
            c1 = torch.cross(v1[f[:, 1]] - v1[f[:, 0]], v1[f[:, 2]] - v1[f[:, 0]], dim=-1)
            a0 = c0.norm(dim=-1)
            # slivers (ICT's mouth corners: a few hundredths of a mm^2) flip under the model's own
            # identities; a fold that shows is one of a triangle of some size
            ok = a0 > 0.05 * a0.median()
            ratio = (c1[ok] * c0[ok]).sum(-1) / (a0[ok] ** 2)
            return float(ratio.min()) if len(ratio) else 1.0

    def dense_points(self, verts: torch.Tensor) -> torch.Tensor:
        """(B, 478, 3) embedded MediaPipe points of vertices (B, N, 3)."""
        assert self.dense_idx is not None and self.dense_w is not None, "the model has no MediaPipe embedding"
        return (verts[:, self.dense_idx] * self.dense_w[None, :, :, None]).sum(-2)

    def projected_vertex_area(self, px: torch.Tensor) -> torch.Tensor:
        """(V, N) image area (pixels^2) each vertex stands for: a third of its projected triangles."""
        a, b, c = (px[:, self.faces[:, i]] for i in range(3))
        e1, e2 = b - a, c - a
        area = 0.5 * (e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]).abs()  # (V, F)
        return torch.sparse.mm(self._vt, area.T.to(self._vt.dtype)).T

    @staticmethod
    def deformable_mask(model) -> np.ndarray:
        """(N,) bool: vertices the deformation and displacement maps move (face and head/neck;
        the eyeballs, teeth and eye helpers stay rigid with the head)."""
        sub = model.submeshes
        m = np.zeros(model.n_vertices, bool)
        for name in ("face", "head_neck"):
            if name in sub:
                m[sub[name][0] : sub[name][1]] = True
        return m if m.any() else model.render_vertex_mask()

    def model_vertices(
        self,
        p: FitParams,
        group_idx: torch.Tensor,
        view_idx: torch.Tensor | None,
        use_deform: bool = True,
        use_disp: bool = True,
    ) -> torch.Tensor:
        """Model-space vertices (B, N, 3) for the given groups (and views, for displacement)."""
        # once per group (a frame's views share it), then a row per view
        groups, row_of = torch.unique(group_idx, return_inverse=True)
        v = self.model.vertices_torch(p.alpha[None].expand(len(groups), -1), p.beta[groups])
        v = v.expand(len(group_idx), -1, -1) if len(groups) == 1 else v.index_select(0, row_of)
        if use_deform:
            v = v + self.deform_offsets(p)[None]
        if use_disp and view_idx is not None:
            n = vertex_normals(v, self.faces)
            d = sample_uv_map(p.disp[view_idx], self.uv)  # (B, N, 1)
            v = v + d * n * self.deformable
        return v

    def to_world(self, p: FitParams, v: torch.Tensor, group_idx: torch.Tensor) -> torch.Tensor:
        R = axis_angle_to_matrix(p.rot[group_idx])
        return torch.exp(p.log_scale) * v @ R.transpose(1, 2) + p.trans[group_idx][:, None]
