"""A small glTF 2.0 binary (.glb) writer and reader (numpy + json, no third-party exporter).

Conventions: glTF is +Y up, right-handed, metres, which is the model space as is. glTF's texture
coordinate v points down the image (origin top-left) while the model's UVs have v up (OBJ), so
``TEXCOORD_0 = (u, 1 - v)``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .asset import HeadAsset

GLB_MAGIC = 0x46546C67
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
FLOAT, UINT32, UINT16, UINT8 = 5126, 5125, 5123, 5121
INT8, INT16 = 5120, 5122
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
_NP = {FLOAT: np.float32, UINT32: np.uint32, UINT16: np.uint16, UINT8: np.uint8, INT8: np.int8, INT16: np.int16}
KHR_QUANT = "KHR_mesh_quantization"
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


@dataclass
class _Builder:
    """Accumulates bufferViews and accessors over one binary buffer."""

    blob: bytearray = field(default_factory=bytearray)
    views: list = field(default_factory=list)
    accessors: list = field(default_factory=list)

    def view(self, data: bytes, target: int | None = None) -> int:
        # every bufferView starts 4-byte aligned (the largest component size used here)
        self.blob.extend(b"\0" * (-len(self.blob) % 4))
        v = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            v["target"] = target
        self.blob.extend(data)
        self.views.append(v)
        return len(self.views) - 1

    def accessor(self, arr: np.ndarray, ctype: int, atype: str, target: int | None, minmax: bool = False) -> int:
        a = np.ascontiguousarray(arr, dtype=_NP[ctype])
        acc = {
            "bufferView": self.view(a.tobytes(), target),
            "componentType": ctype,
            "count": int(a.shape[0]),
            "type": atype,
        }
        if minmax:
            flat = a.reshape(a.shape[0], -1)
            acc["min"] = [float(x) for x in flat.min(0)]
            acc["max"] = [float(x) for x in flat.max(0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def strided(
        self, arr: np.ndarray, ctype: int, atype: str, normalized: bool = False, minmax: bool = False, blocks: int = 1
    ) -> list[int]:
        """Integer accessors (KHR_mesh_quantization) with every element padded to a multiple of 4
        bytes (``byteStride``), as vertex attributes must be aligned. ``arr`` (blocks * n, c):
        ``blocks`` accessors of n rows each over one bufferView (a primitive's morph targets share
        one, which keeps the JSON and the per-view codec overhead small)."""
        a = np.ascontiguousarray(arr, dtype=_NP[ctype])
        n_all, c = a.shape
        item = a.dtype.itemsize
        stride = -(-item * c // 4) * 4
        pad = np.zeros((n_all, stride // item), a.dtype)
        pad[:, :c] = a
        vi = self.view(pad.tobytes(), ARRAY_BUFFER)
        if stride != item * c:
            self.views[vi]["byteStride"] = stride
        n = n_all // blocks
        out = []
        for k in range(blocks):
            acc = {"bufferView": vi, "componentType": ctype, "count": n, "type": atype}
            if k:
                acc["byteOffset"] = k * n * stride
            if normalized:
                acc["normalized"] = True
            if minmax:
                blk = a[k * n : (k + 1) * n]
                acc["min"] = [int(x) for x in blk.min(0)]
                acc["max"] = [int(x) for x in blk.max(0)]
            self.accessors.append(acc)
            out.append(len(self.accessors) - 1)
        return out

    def sparse_vec3(self, arr: np.ndarray, zero_below: float) -> int:
        """A float VEC3 accessor stored sparsely (only rows with a component of magnitude at
        least ``zero_below``; the others are exactly zero), or without any buffer when all rows
        are zero. Morph targets touch a part of the head each, so this shrinks the file a lot."""
        a = np.ascontiguousarray(arr, dtype=np.float32)
        keep = np.flatnonzero(np.abs(a).max(1) >= zero_below)
        n = int(a.shape[0])
        vals = a[keep]
        lo = np.minimum(vals.min(0), 0) if len(keep) else np.zeros(3)
        hi = np.maximum(vals.max(0), 0) if len(keep) else np.zeros(3)
        if len(keep) == n:
            lo, hi = vals.min(0), vals.max(0)
        acc = {
            "componentType": FLOAT,
            "count": n,
            "type": "VEC3",
            "min": [float(x) for x in lo],
            "max": [float(x) for x in hi],
        }
        if len(keep):
            itype = UINT16 if n <= 65535 else UINT32
            acc["sparse"] = {
                "count": int(len(keep)),
                "indices": {"bufferView": self.view(keep.astype(_NP[itype]).tobytes()), "componentType": itype},
                "values": {"bufferView": self.view(vals.tobytes())},
            }
        self.accessors.append(acc)
        return len(self.accessors) - 1


#: morph-target deltas below this (metres) are stored as exact zeros (10 micrometres: invisible)
SPARSE_ZERO = 1e-5


def _material_json(prim, tex_index: dict[str, int], normal_tex: int | None) -> dict:
    m = prim.material
    pbr = {"baseColorFactor": [float(c) for c in m.color], "metallicFactor": 0.0, "roughnessFactor": float(m.roughness)}
    if m.textured and m.name in tex_index:
        pbr["baseColorTexture"] = {"index": tex_index[m.name]}
    out = {"name": m.name, "pbrMetallicRoughness": pbr}
    if m.name == "skin" and normal_tex is not None:
        out["normalTexture"] = {"index": normal_tex}
    if m.blend:
        out["alphaMode"] = "BLEND"
    if m.name == "eyelashes" and "baseColorTexture" in pbr:
        out["alphaMode"] = "MASK"  # strands: alpha-tested, no sorting trouble
        out["alphaCutoff"] = 0.4
    if m.name in ("eyelashes", "eye_wet"):
        out["doubleSided"] = True  # open, thin shells seen from both sides
    return out


#: normal-target deltas below this (unit-vector components) are stored as exact zeros
SPARSE_ZERO_NORMAL = 2e-3
#: the same thresholds for ``--compress`` (50 micrometres; 0.01)
COMPACT_ZERO, COMPACT_ZERO_NORMAL = 5e-5, 1e-2
#: seconds between the captured frames in the expression animation
CLIP_FRAME_S = 1.0 / 30


#: ``--compress`` position grid (KHR_mesh_quantization): 14 bits over the head's largest extent
#: (gltfpack's default; 18 micrometres over 30 cm), morph position deltas on the same grid
QUANT_POSITION_BITS = 14


@dataclass(frozen=True)
class PositionGrid:
    """Quantised positions: ``p = offset + step * q`` with integer q (KHR_mesh_quantization);
    morph position deltas are integers on the same grid, ``d = step * q``."""

    offset: np.ndarray
    """(3,) the grid's origin (file units)."""
    step: float
    """Grid spacing (file units)."""

    def matrix(self) -> np.ndarray:
        """(4, 4) the dequantisation transform, grid units to file units."""
        m = np.eye(4)
        m[:3, :3] *= self.step
        m[:3, 3] = self.offset
        return m


def position_grid(lods: list[HeadAsset], bits: int = QUANT_POSITION_BITS) -> PositionGrid:
    """One grid for every LOD (they share the skin and its inverse bind matrices): the bounding
    box of the positions padded by the largest morph delta (as gltfpack does)."""
    pos = np.concatenate([p.positions for a in lods for p in a.primitives]).astype(np.float64)
    pad = max(
        (
            float(np.abs(p.targets).max())
            for a in lods
            for p in a.primitives
            if p.targets is not None and p.targets.size
        ),
        default=0.0,
    )
    lo, hi = pos.min(0) - pad, pos.max(0) + pad
    return PositionGrid(offset=lo, step=float((hi - lo).max()) / ((1 << bits) - 1))


def _unit_weights_u8(w: np.ndarray) -> np.ndarray:
    """(n, 4) uint8 skin weights summing to exactly 255 (the largest absorbs the rounding)."""
    w = np.asarray(w, np.float64)
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
    q = np.round(w * 255).astype(np.int64)
    top = q.argmax(1)
    q[np.arange(len(q)), top] += 255 - q.sum(1)
    return q.astype(np.uint8)


def normal_deltas_in_unit_range(rest: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """(K, n, 3) normal deltas whose components lie in [-1, 1] (what normalized storage holds)
    and that give the same shaded direction at full weight: where ``rest + d`` (the shape's
    normal) needs a component beyond 1 (the normal turns by more than ~90 degrees, in folds of
    the lips and lids), ``d`` becomes ``lam * (rest + d) - rest`` with the largest lam in [0, 1]
    that fits; loaders normalise the morphed normal, so its direction is kept. When no lam fits
    (lam ~ 0: a rest component of +-1 would have to change sign), the delta is clipped instead,
    which keeps the turn's direction roughly (a morphed normal of length zero would not)."""
    n0 = np.asarray(rest, np.float64)[None]
    d = np.asarray(deltas, np.float64)
    shape = n0 + d
    with np.errstate(divide="ignore", invalid="ignore"):
        lim = np.where(shape > 0, (1 + n0) / shape, np.where(shape < 0, (1 - n0) / -shape, np.inf))
    lam = np.clip(np.nan_to_num(lim, nan=np.inf).min(-1, keepdims=True), 0, 1)
    fits = lam >= 0.05
    out = np.where(np.abs(d).max(-1, keepdims=True) > 1, np.where(fits, lam * shape - n0, d), d)
    return np.clip(out, -1, 1)


def _snorm(x: np.ndarray, bits: int) -> np.ndarray:
    m = (1 << (bits - 1)) - 1
    return np.clip(np.round(np.asarray(x, np.float64) * m), -m, m)


def _quantized_primitive_json(
    b: _Builder,
    p,
    material: int,
    use_targets: bool,
    grid: PositionGrid,
    zero: float,
    zero_n: float,
    normal_targets: bool,
) -> dict:
    """A primitive with KHR_mesh_quantization storage (as gltfpack writes it): positions as
    unsigned shorts on ``grid``, normals and tangents as normalized bytes, texture coordinates as
    normalized unsigned shorts, skin weights as normalized bytes; morph position deltas as
    (short or byte) integers on the grid and normal deltas as normalized bytes, dense (meshopt's
    codec packs the zeros of the vertices a target does not move into almost nothing)."""
    q = np.round((np.asarray(p.positions, np.float64) - grid.offset) / grid.step)
    attrs = {
        "POSITION": b.strided(q, UINT16, "VEC3", minmax=True)[0],
        "NORMAL": b.strided(_snorm(p.normals, 8), INT8, "VEC3", normalized=True)[0],
    }
    uv = np.stack([p.uvs[:, 0], 1.0 - p.uvs[:, 1]], -1).astype(np.float64)
    if uv.min() >= 0 and uv.max() <= 1:
        attrs["TEXCOORD_0"] = b.strided(np.round(uv * 65535), UINT16, "VEC2", normalized=True)[0]
    else:  # outside [0, 1] a normalized type cannot hold it
        attrs["TEXCOORD_0"] = b.accessor(uv, FLOAT, "VEC2", ARRAY_BUFFER)
    if p.tangents is not None:
        attrs["TANGENT"] = b.strided(_snorm(p.tangents, 8), INT8, "VEC4", normalized=True)[0]
    if p.joints is not None:
        wq = _unit_weights_u8(p.weights)
        # a weight that rounds to zero drops its joint (glTF: unused joint slots are 0)
        attrs["JOINTS_0"] = b.accessor(np.where(wq > 0, p.joints, 0), UINT8, "VEC4", ARRAY_BUFFER)
        attrs["WEIGHTS_0"] = b.strided(wq, UINT8, "VEC4", normalized=True)[0]
    ctype = UINT16 if len(p.positions) < 65535 else UINT32
    prim: dict[str, Any] = {
        "attributes": attrs,
        "indices": b.accessor(p.indices.reshape(-1), ctype, "SCALAR", ELEMENT_ARRAY_BUFFER),
        "material": material,
        "mode": 4,
    }
    if use_targets:
        d = np.asarray(p.targets, np.float64)
        d = np.where(np.abs(d).max(-1, keepdims=True) >= zero, d, 0.0)
        dq = np.round(d / grid.step)
        if np.abs(dq).max(initial=0) > 32767:
            raise ValueError("a morph delta does not fit the position grid")
        small = np.abs(dq).max(initial=0) <= 127
        K, n = dq.shape[:2]
        pos_acc = b.strided(dq.reshape(K * n, 3), INT8 if small else INT16, "VEC3", minmax=True, blocks=K)
        prim["targets"] = [{"POSITION": a} for a in pos_acc]
        if p.normal_targets is not None and normal_targets:
            nd = normal_deltas_in_unit_range(p.normals, p.normal_targets)
            nd = np.where(np.abs(nd).max(-1, keepdims=True) >= zero_n, nd, 0.0)
            nrm_acc = b.strided(_snorm(nd, 8).reshape(K * n, 3), INT8, "VEC3", normalized=True, blocks=K)
            for t, a in zip(prim["targets"], nrm_acc):
                t["NORMAL"] = a
    return prim


def _primitive_json(
    b: _Builder,
    p,
    material: int,
    use_targets: bool,
    zero: float | None = None,
    zero_n: float | None = None,
    normal_targets: bool = True,
) -> dict:
    attrs = {
        "POSITION": b.accessor(p.positions, FLOAT, "VEC3", ARRAY_BUFFER, minmax=True),
        "NORMAL": b.accessor(p.normals, FLOAT, "VEC3", ARRAY_BUFFER),
        "TEXCOORD_0": b.accessor(np.stack([p.uvs[:, 0], 1.0 - p.uvs[:, 1]], -1), FLOAT, "VEC2", ARRAY_BUFFER),
    }
    if p.tangents is not None:
        attrs["TANGENT"] = b.accessor(p.tangents, FLOAT, "VEC4", ARRAY_BUFFER)
    if p.joints is not None:
        attrs["JOINTS_0"] = b.accessor(p.joints, UINT8, "VEC4", ARRAY_BUFFER)
        attrs["WEIGHTS_0"] = b.accessor(p.weights, FLOAT, "VEC4", ARRAY_BUFFER)
    ctype = UINT16 if len(p.positions) < 65535 else UINT32
    prim: dict[str, Any] = {
        "attributes": attrs,
        "indices": b.accessor(p.indices.reshape(-1), ctype, "SCALAR", ELEMENT_ARRAY_BUFFER),
        "material": material,
        "mode": 4,
    }
    if use_targets:
        prim["targets"] = []
        for k, t in enumerate(p.targets):
            tgt = {"POSITION": b.sparse_vec3(t, SPARSE_ZERO if zero is None else zero)}
            if p.normal_targets is not None and normal_targets:
                tgt["NORMAL"] = b.sparse_vec3(p.normal_targets[k], SPARSE_ZERO_NORMAL if zero_n is None else zero_n)
            prim["targets"].append(tgt)
    return prim


def _skin_json(b: _Builder, skel, first_node: int, dequantize: np.ndarray | None = None) -> tuple[list[dict], dict]:
    """Joint nodes (rest translations relative to their parents) and the skin over them.
    ``dequantize`` (4, 4): quantised positions' grid-to-file transform, folded into the inverse
    bind matrices (KHR_mesh_quantization's way for skinned meshes)."""
    local = skel.local_translations()
    nodes = []
    for j, name in enumerate(skel.names):
        kids = [first_node + c for c, p in enumerate(skel.parents) if p == j]
        node = {"name": name, "translation": [float(x) for x in local[j]]}
        if kids:
            node["children"] = kids
        nodes.append(node)
    ibm = np.tile(np.eye(4, dtype=np.float32), (len(skel.names), 1, 1))
    ibm[:, :3, 3] = -skel.positions
    if dequantize is not None:
        ibm = (ibm.astype(np.float64) @ dequantize).astype(np.float32)
    # glTF matrices are column-major
    acc = b.accessor(np.ascontiguousarray(ibm.transpose(0, 2, 1)).reshape(len(skel.names), 16), FLOAT, "MAT4", None)
    skin = {
        "name": "head_rig",
        "inverseBindMatrices": acc,
        "skeleton": first_node,
        "joints": [first_node + j for j in range(len(skel.names))],
    }
    return nodes, skin


def glb_bytes(
    asset: HeadAsset | list[HeadAsset],
    images: dict[str, bytes],
    name: str = "head",
    morph_targets: bool = True,
    image_uris: dict[str, str] | None = None,
    compact: bool = False,
) -> bytes:
    """Encode an asset (or its LODs, LOD 0 first) as GLB. ``images``: PNG bytes per material
    name ("skin", "eyes", "mouth", "eyelashes", "eye_wet") plus "normal" for the skin's
    tangent-space normal map; materials without an image get their constant colour.
    ``image_uris`` instead references image files beside the .glb (shared between files).

    Every LOD is a mesh of its own in one file, sharing materials, textures and the skeleton:
    scene 0 shows LOD 0, scene k LOD k (``scenes[k].extras.lod``). The captured expression is the
    animation "captured" (the meshes' default weights are the rest pose unless asked otherwise).
    ``compact`` (for ``--compress``): KHR_mesh_quantization storage (:func:`_quantized_primitive_json`,
    dequantised by the inverse bind matrices or the mesh nodes), morph deltas under 50
    micrometres and normal deltas under 0.01 stored as zeros, normal deltas in LOD 0 only."""
    lods = asset if isinstance(asset, list) else [asset]
    base = lods[0]
    b = _Builder()
    grid = position_grid(lods) if compact else None
    unit = 100.0 if base.meta.get("units") == "cm" else 1.0  # COMPACT_ZERO is in metres
    src = image_uris if image_uris is not None else images
    tex_names = [k for k in ("skin", "eyes", "mouth", "normal", "eyelashes", "eye_wet") if k in src]
    if image_uris is not None:
        gl_images: list[dict[str, Any]] = [
            {"uri": image_uris[k], "mimeType": "image/png", "name": k} for k in tex_names
        ]
    else:
        gl_images = [{"bufferView": b.view(images[k]), "mimeType": "image/png", "name": k} for k in tex_names]
    tex_index = {k: i for i, k in enumerate(tex_names)}
    textures = [{"sampler": 0, "source": i, "name": k} for i, k in enumerate(tex_names)]
    materials: list[dict[str, Any]] = []
    mat_of: dict[str, int] = {}
    for p in base.primitives:
        mat_of[p.material.name] = len(materials)
        materials.append(_material_json(p, tex_index, tex_index.get("normal")))
    meshes, nodes = [], []
    skel = base.skeleton
    n_lod = len(lods)
    for li, a in enumerate(lods):
        use_targets = morph_targets and bool(a.target_names) and all(p.targets is not None for p in a.primitives)
        for p in a.primitives:
            if p.material.name not in mat_of:
                mat_of[p.material.name] = len(materials)
                materials.append(_material_json(p, tex_index, tex_index.get("normal")))
        if grid is not None:
            prims = [
                _quantized_primitive_json(
                    b,
                    p,
                    mat_of[p.material.name],
                    use_targets,
                    grid,
                    zero=COMPACT_ZERO * unit,
                    zero_n=COMPACT_ZERO_NORMAL,
                    normal_targets=li == 0,
                )
                for p in a.primitives
            ]
        else:
            prims = [
                _primitive_json(b, p, mat_of[p.material.name], use_targets, normal_targets=True) for p in a.primitives
            ]
        mesh: dict[str, Any] = {"name": name if li == 0 else f"{name}_lod{li}", "primitives": prims}
        if use_targets:
            mesh["weights"] = [float(w) for w in a.default_weights]
            mesh["extras"] = {"targetNames": list(a.target_names)}
        meshes.append(mesh)
        node = {"name": mesh["name"], "mesh": li}
        if skel is not None and all(p.joints is not None for p in a.primitives):
            node["skin"] = 0
        elif grid is not None:
            # an unskinned quantised mesh is dequantised by its node (a skinned one by the skin)
            node.update(translation=[float(x) for x in grid.offset], scale=[grid.step] * 3)
        nodes.append(node)
    doc = {
        "asset": {"version": "2.0", "generator": "mvrecon export"},
        "scene": 0,
        "meshes": meshes,
        "materials": materials,
        "extras": {k: v for k, v in base.meta.items()},
    }
    roots = []
    if skel is not None:
        jnodes, skin = _skin_json(b, skel, len(nodes), None if grid is None else grid.matrix())
        nodes += jnodes
        doc["skins"] = [skin]
        roots = [skin["skeleton"]]
    doc["nodes"] = nodes
    doc["scenes"] = [
        {"name": name if li == 0 else f"{name}_lod{li}", "nodes": [li] + roots, "extras": {"lod": li}}
        for li in range(n_lod)
    ]
    clip = base.clip_weights
    if morph_targets and clip is not None and len(base.target_names) and "targets" in meshes[0]["primitives"][0]:
        G, K = clip.shape
        times = b.accessor(np.arange(G, dtype=np.float32) * CLIP_FRAME_S, FLOAT, "SCALAR", None, minmax=True)
        vals = b.accessor(np.asarray(clip, np.float32).reshape(-1), FLOAT, "SCALAR", None)
        doc["animations"] = [
            {
                "name": "captured",
                "samplers": [{"input": times, "output": vals, "interpolation": "STEP" if G == 1 else "LINEAR"}],
                "channels": [
                    {"sampler": 0, "target": {"node": li, "path": "weights"}}
                    for li in range(n_lod)
                    if "targets" in meshes[li]["primitives"][0]
                ],
                "extras": {"frames": list(base.clip_keys)},
            }
        ]
    if grid is not None:
        doc["extensionsUsed"] = [KHR_QUANT]
        doc["extensionsRequired"] = [KHR_QUANT]
    doc["accessors"] = b.accessors
    doc["bufferViews"] = b.views
    doc["buffers"] = [{"byteLength": len(b.blob)}]
    if gl_images:
        # linear filtering with mipmaps; clamp so atlas borders never wrap around
        doc["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}]
        doc["images"] = gl_images
        doc["textures"] = textures
    js = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    blob = bytes(b.blob) + b"\0" * (-len(b.blob) % 4)
    total = 12 + 8 + len(js) + 8 + len(blob)
    return (
        struct.pack("<III", GLB_MAGIC, 2, total)
        + struct.pack("<II", len(js), CHUNK_JSON)
        + js
        + struct.pack("<II", len(blob), CHUNK_BIN)
        + blob
    )


@dataclass(frozen=True)
class Glb:
    """A parsed GLB: its JSON document and binary chunk."""

    doc: dict
    bin: bytes

    def _view(self, view: int, dtype, count: int, offset: int = 0) -> np.ndarray:
        v = self.doc["bufferViews"][view]
        return np.frombuffer(self.bin, dtype=dtype, count=count, offset=v.get("byteOffset", 0) + offset)

    def accessor(self, index: int) -> np.ndarray:
        """The data of an accessor (dense, bufferless or sparse) as an array (count,) or (count, n)."""
        a = self.doc["accessors"][index]
        n = _NCOMP[a["type"]]
        dt = np.dtype(_NP[a["componentType"]])
        if "bufferView" in a:
            stride = self.doc["bufferViews"][a["bufferView"]].get("byteStride", dt.itemsize * n)
            rows = self._view(a["bufferView"], np.uint8, a["count"] * stride, a.get("byteOffset", 0))
            arr = rows.reshape(a["count"], stride)[:, : dt.itemsize * n].copy().view(dt).reshape(a["count"], n)
        else:
            arr = np.zeros((a["count"], n), dt)
        sp = a.get("sparse")
        if sp:
            idx = self._view(
                sp["indices"]["bufferView"],
                _NP[sp["indices"]["componentType"]],
                sp["count"],
                sp["indices"].get("byteOffset", 0),
            ).astype(np.int64)
            arr[idx] = self._view(
                sp["values"]["bufferView"], dt, sp["count"] * n, sp["values"].get("byteOffset", 0)
            ).reshape(-1, n)
        return arr if n > 1 else arr[:, 0].copy()

    def values(self, index: int) -> np.ndarray:
        """An accessor's values as float64, normalized integers mapped to [-1, 1] or [0, 1]
        (glTF's rules; KHR_mesh_quantization)."""
        a = self.doc["accessors"][index]
        arr = self.accessor(index).astype(np.float64)
        if a.get("normalized"):
            bits = 8 * np.dtype(_NP[a["componentType"]]).itemsize
            signed = a["componentType"] in (INT8, INT16)
            arr = np.maximum(arr / ((1 << (bits - 1)) - 1), -1.0) if signed else arr / ((1 << bits) - 1)
        return arr

    def image(self, name: str) -> bytes:
        for im in self.doc.get("images", []):
            if im.get("name") == name:
                v = self.doc["bufferViews"][im["bufferView"]]
                o = v.get("byteOffset", 0)
                return self.bin[o : o + v["byteLength"]]
        raise KeyError(name)


def read_glb(path: str | Path) -> Glb:
    """Parse a GLB file (header, JSON chunk, optional BIN chunk)."""
    path = Path(path)
    return parse_glb(path.read_bytes(), path)


def parse_glb(data: bytes, path: str | Path = "<bytes>") -> Glb:
    """Parse GLB bytes (``path`` only names them in errors)."""
    if len(data) < 20:
        raise InputError("not a GLB file (too short)", path)
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != 2 or length != len(data):
        raise InputError("not a glTF 2.0 binary file (bad header)", path)
    jlen, jtype = struct.unpack_from("<II", data, 12)
    if jtype != CHUNK_JSON:
        raise InputError("GLB's first chunk is not JSON", path)
    doc = json.loads(data[20 : 20 + jlen])
    off = 20 + jlen
    binary = b""
    if off + 8 <= len(data):
        blen, btype = struct.unpack_from("<II", data, off)
        if btype == CHUNK_BIN:
            binary = data[off + 8 : off + 8 + blen]
    return Glb(doc, binary)
