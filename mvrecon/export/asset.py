"""The exported head: the neutral fitted head with the model's full topology, split per material,
with the model's expression shapes as morph targets (ARKit's 52 by default, :mod:`.arkit`), the
captured expression as animation weights (the rest pose stays neutral) and a skeleton (:mod:`.rig`).

Geometry: identity + the fit's deformation, expression zero, in model space (+Y up, +Z out of the
face) times the fitted scale, so the asset is metric. Vertices are split where the UV layout has a
seam (one glTF vertex per (model vertex, UV) pair), so every vertex carries one UV.

Morph targets: ICT's blendshapes are per-vertex deltas added to the neutral (``exp_basis``), built
on the mean identity. A linear model has no identity-specific version of them, so the deltas are
carried onto this identity unchanged (times the fitted scale), which is also what the fit itself
does: ``verts = mean + id + sum_j w_j * delta_j``. Applying the captured clip's weights in an
engine reproduces the fit's head for that expression (exactly for unmerged shapes, minus the
per-view displacement detail). Each target also carries normal deltas so shading follows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..fit.result import FittedHead
from ..geometry import vertex_normals
from ..texture.layout import MATERIALS, Material, corner_uvs, material_triangles
from .rig import Skeleton, build_skeleton


@dataclass(frozen=True)
class Primitive:
    """One material's part of the head (glTF primitive / OBJ group)."""

    material: Material
    positions: np.ndarray
    """(n, 3) float32 metres, model space (+Y up)."""
    normals: np.ndarray
    """(n, 3) float32 unit normals."""
    uvs: np.ndarray
    """(n, 2) float32 atlas UVs, v up (OBJ convention; glTF writers flip v)."""
    indices: np.ndarray
    """(m, 3) uint32 counter-clockwise triangles."""
    source_vertex: np.ndarray
    """(n,) int64 model vertex each asset vertex came from."""
    targets: np.ndarray | None = None
    """(K, n, 3) float32 morph-target position deltas (metres), or None."""
    normal_targets: np.ndarray | None = None
    """(K, n, 3) float32 morph-target normal deltas (unit normal of the shape minus the rest
    normal), so that shading follows the shape."""
    tangents: np.ndarray | None = None
    """(n, 4) float32 unit tangent (along +u) and handedness w = +-1 (glTF TANGENT), for
    materials with a normal map."""
    joints: np.ndarray | None = None
    """(n, 4) uint8 skeleton joint indices (glTF JOINTS_0), or None without a skeleton."""
    weights: np.ndarray | None = None
    """(n, 4) float32 skin weights (glTF WEIGHTS_0)."""

    def subset(self, used: np.ndarray, indices: np.ndarray) -> Primitive:
        """The primitive restricted to vertices ``used`` (k,) with triangles ``indices`` (m, 3)
        into them: every per-vertex array (morph targets and skin included) follows."""

        def take(a, axis=0):
            return None if a is None else np.ascontiguousarray(np.take(a, used, axis=axis))

        pos, nrm, uvs = self.positions[used], self.normals[used], self.uvs[used]
        ind = np.asarray(indices, np.uint32)
        return Primitive(
            material=self.material,
            positions=pos,
            normals=nrm,
            uvs=uvs,
            indices=ind,
            source_vertex=self.source_vertex[used],
            targets=take(self.targets, 1),
            normal_targets=take(self.normal_targets, 1),
            tangents=None if self.tangents is None else vertex_tangents(pos, nrm, uvs, ind),
            joints=take(self.joints),
            weights=take(self.weights),
        )


@dataclass(frozen=True)
class HeadAsset:
    """The exported head: primitives, morph-target names and default weights."""

    primitives: list[Primitive]
    target_names: list[str]
    default_weights: np.ndarray
    """(K,) weights the mesh loads with: zero (the neutral rest pose) unless asked otherwise."""
    clip_weights: np.ndarray | None = None
    """(G, K) the captured expression of every fitted group (frame), played as an animation."""
    clip_keys: list[str] = field(default_factory=list)
    """(G,) the group names of ``clip_weights``."""
    skeleton: Skeleton | None = None
    """Joints (root, neck, head, jaw, eyes); the primitives carry the skin weights."""
    meta: dict = field(default_factory=dict)

    @property
    def n_vertices(self) -> int:
        return int(sum(len(p.positions) for p in self.primitives))

    @property
    def n_triangles(self) -> int:
        return int(sum(len(p.indices) for p in self.primitives))


def _unit(n: np.ndarray) -> np.ndarray:
    """Unit float32 normals; a zero normal (isolated or degenerate geometry) becomes +Z."""
    n = np.asarray(n, np.float64)
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    out = np.where(ln > 1e-12, n / np.maximum(ln, 1e-12), [0.0, 0.0, 1.0]).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def vertex_tangents(positions: np.ndarray, normals: np.ndarray, uvs: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """(n, 4) float32 per-vertex tangents from UVs, MikkTSpace-like: per-triangle dP/du and dP/dv
    accumulated (area-weighted through the unnormalised UV-space solve) at the corners,
    Gram-Schmidt orthogonalised against the vertex normal; w is the handedness so that
    ``bitangent = w * cross(normal, tangent)`` points along +v (v up, OBJ)."""
    p = np.asarray(positions, np.float64)
    n = np.asarray(normals, np.float64)
    t = np.asarray(indices, np.int64)
    uv = np.asarray(uvs, np.float64)
    e1, e2 = p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]]
    d1, d2 = uv[t[:, 1]] - uv[t[:, 0]], uv[t[:, 2]] - uv[t[:, 0]]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    sgn = np.where(det < 0, -1.0, 1.0)[:, None]
    # scale by |det| (the UV area) instead of dividing by it: robust to tiny UV triangles
    T = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * sgn
    B = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * sgn
    acc_t = np.zeros_like(p)
    acc_b = np.zeros_like(p)
    for k in range(3):
        np.add.at(acc_t, t[:, k], T)
        np.add.at(acc_b, t[:, k], B)
    tang = acc_t - n * (acc_t * n).sum(1, keepdims=True)
    ln = np.linalg.norm(tang, axis=1, keepdims=True)
    # no usable UV direction: any unit vector perpendicular to the normal
    alt = np.cross(n, np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]]))
    tang = np.where(
        ln > 1e-12, tang / np.maximum(ln, 1e-300), alt / np.maximum(np.linalg.norm(alt, axis=1, keepdims=True), 1e-12)
    )
    w = np.where((np.cross(n, tang) * acc_b).sum(1) < 0, -1.0, 1.0)
    out = np.concatenate([tang, w[:, None]], 1).astype(np.float32)
    out[:, :3] /= np.linalg.norm(out[:, :3], axis=1, keepdims=True)
    return out


def split_primitive(
    model,
    verts: np.ndarray,
    normals: np.ndarray,
    mat: Material,
    deltas: np.ndarray | None,
    normal_deltas: np.ndarray | None = None,
    skeleton: Skeleton | None = None,
) -> Primitive | None:
    """The triangles of ``mat`` as a primitive with one vertex per (model vertex, UV) pair."""
    tri_ids = material_triangles(model, mat)
    if len(tri_ids) == 0:
        return None
    corners = model.triangles[tri_ids].astype(np.int64)  # (F, 3)
    uv_c = corner_uvs(model, tri_ids, mat)  # (F, 3, 2)
    uv_idx = model.uv_triangles[tri_ids].astype(np.int64) if model.uvs.shape[0] else np.zeros_like(corners)
    key = corners.reshape(-1) * (int(uv_idx.max()) + 1) + uv_idx.reshape(-1)
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    src = corners.reshape(-1)[first]
    pos = np.asarray(verts[src], np.float32)
    nrm = _unit(normals[src])
    uvs = uv_c.reshape(-1, 2)[first].astype(np.float32)
    ind = inverse.reshape(-1, 3).astype(np.uint32)
    return Primitive(
        material=mat,
        positions=pos,
        normals=nrm,
        uvs=uvs,
        indices=ind,
        source_vertex=src,
        targets=None if deltas is None else np.ascontiguousarray(deltas[:, src], dtype=np.float32),
        normal_targets=None if normal_deltas is None else np.ascontiguousarray(normal_deltas[:, src], dtype=np.float32),
        tangents=vertex_tangents(pos, nrm, uvs, ind) if mat.name == "skin" else None,
        joints=None if skeleton is None else skeleton.joints[src],
        weights=None if skeleton is None else skeleton.weights[src],
    )


def captured_weights(head: FittedHead) -> np.ndarray:
    """(G, K_model) the fitted expression of every group (blendshape weights clipped to [0, 1])."""
    w = np.asarray(head.beta, np.float64)
    return np.clip(w, 0, 1) if head.model.exp_kind == "blendshape" else w


def normal_deltas(verts: np.ndarray, triangles: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """(K, N, 3) float32: unit vertex normal of ``verts + deltas[k]`` minus that of ``verts``."""
    n0 = vertex_normals(verts, triangles).astype(np.float32)
    out = np.zeros(deltas.shape, np.float32)
    for k, d in enumerate(deltas):
        moved = np.abs(d).max(1) > 0
        if moved.any():
            out[k] = vertex_normals(verts + d, triangles).astype(np.float32) - n0
    return out


def build_asset(
    head: FittedHead,
    morph_targets: bool = True,
    morph_names: str = "arkit",
    expression: str = "clip",
    skeleton: bool = True,
) -> HeadAsset:
    """The neutral head of a fit as an asset (see the module docstring). ``morph_names``:
    'arkit' (Apple's 52) or 'ict' (the model's own); ``expression``: 'clip' (the captured
    expression as an animation, rest pose neutral) or 'default' (also the mesh's default weights)."""
    from .arkit import morph_set

    model = head.model
    if model.uvs.shape[0] == 0:
        raise InputError(f"face model '{model.name}' has no UV layout: cannot export a textured asset")
    neutral = head.neutral_model_space()
    verts = neutral * head.scale
    normals = vertex_normals(verts, model.triangles).astype(np.float32)
    ms = morph_set(model, neutral, morph_names) if morph_targets and model.n_exp else None
    deltas = ms.deltas * head.scale if ms is not None else None
    ndeltas = normal_deltas(verts, model.triangles, deltas) if deltas is not None else None
    skel = None
    if skeleton:
        jaw = (
            np.asarray(model.exp_basis[list(model.exp_names).index("jawOpen")], np.float64)
            if "jawOpen" in model.exp_names
            else None
        )
        skel = build_skeleton(model, verts, jaw)
    prims = [
        p for m in MATERIALS if (p := split_primitive(model, verts, normals, m, deltas, ndeltas, skel)) is not None
    ]
    if ms is None:
        return HeadAsset(
            primitives=prims, target_names=[], default_weights=np.zeros(0), skeleton=skel, meta=_meta(head, None)
        )
    clip = captured_weights(head) @ ms.from_model.T
    dflt = (
        clip[int(head.group_of_view[0]) if len(head.group_of_view) else 0]
        if expression == "default"
        else np.zeros(len(ms.names))
    )
    return HeadAsset(
        primitives=prims,
        target_names=list(ms.names),
        default_weights=dflt,
        clip_weights=clip,
        clip_keys=list(head.groups),
        skeleton=skel,
        meta=_meta(head, ms),
    )


def _meta(head: FittedHead, ms) -> dict:
    out = {
        "model": head.model.name,
        "units": "m",
        "up": "+Y",
        "forward": "+Z (out of the face)",
        "scale": float(head.scale),
    }
    if ms is not None:
        out["morph_sources"] = ms.sources
    return out


def scale_asset(asset: HeadAsset, factor: float) -> HeadAsset:
    """The asset with every length times ``factor`` (100: metres to Unreal's centimetres);
    normals and their deltas are unit-free and stay. Returns a new asset."""
    from dataclasses import replace

    def sc(a):
        return None if a is None else np.asarray(a * factor, np.float32)

    prims = [replace(p, positions=sc(p.positions), targets=sc(p.targets)) for p in asset.primitives]
    skel = None if asset.skeleton is None else replace(asset.skeleton, positions=asset.skeleton.positions * factor)
    units = {1.0: asset.meta.get("units", "m"), 100.0: "cm"}.get(float(factor), f"{factor:g} x m")
    return replace(asset, primitives=prims, skeleton=skel, meta={**asset.meta, "units": units})
