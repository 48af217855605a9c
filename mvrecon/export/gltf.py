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

import numpy as np

from ..errors import InputError
from .asset import HeadAsset

GLB_MAGIC = 0x46546C67
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
FLOAT, UINT32, UINT16, UINT8 = 5126, 5125, 5123, 5121
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
_NP = {FLOAT: np.float32, UINT32: np.uint32, UINT16: np.uint16, 5121: np.uint8}
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
        acc = {"bufferView": self.view(a.tobytes(), target), "componentType": ctype, "count": int(a.shape[0]),
               "type": atype}
        if minmax:
            flat = a.reshape(a.shape[0], -1)
            acc["min"] = [float(x) for x in flat.min(0)]
            acc["max"] = [float(x) for x in flat.max(0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1


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
        acc = {"componentType": FLOAT, "count": n, "type": "VEC3", "min": [float(x) for x in lo],
               "max": [float(x) for x in hi]}
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
        out["alphaMode"] = "MASK"          # strands: alpha-tested, no sorting trouble
        out["alphaCutoff"] = 0.4
    if m.name in ("eyelashes", "eye_wet"):
        out["doubleSided"] = True        # open, thin shells seen from both sides
    return out


#: normal-target deltas below this (unit-vector components) are stored as exact zeros
SPARSE_ZERO_NORMAL = 2e-3
#: the same thresholds for ``--compress`` (50 micrometres; 0.01)
COMPACT_ZERO, COMPACT_ZERO_NORMAL = 5e-5, 1e-2
#: seconds between the captured frames in the expression animation
CLIP_FRAME_S = 1.0 / 30


def _primitive_json(b: _Builder, p, material: int, use_targets: bool, zero: float = None, zero_n: float = None,
                    normal_targets: bool = True) -> dict:
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
    prim = {"attributes": attrs, "indices": b.accessor(p.indices.reshape(-1), ctype, "SCALAR", ELEMENT_ARRAY_BUFFER),
            "material": material, "mode": 4}
    if use_targets:
        prim["targets"] = []
        for k, t in enumerate(p.targets):
            tgt = {"POSITION": b.sparse_vec3(t, SPARSE_ZERO if zero is None else zero)}
            if p.normal_targets is not None and normal_targets:
                tgt["NORMAL"] = b.sparse_vec3(p.normal_targets[k], SPARSE_ZERO_NORMAL if zero_n is None else zero_n)
            prim["targets"].append(tgt)
    return prim


def _skin_json(b: _Builder, skel, first_node: int) -> tuple[list[dict], dict]:
    """Joint nodes (rest translations relative to their parents) and the skin over them."""
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
    # glTF matrices are column-major
    acc = b.accessor(np.ascontiguousarray(ibm.transpose(0, 2, 1)).reshape(len(skel.names), 16), FLOAT, "MAT4", None)
    skin = {"name": "head_rig", "inverseBindMatrices": acc, "skeleton": first_node,
            "joints": [first_node + j for j in range(len(skel.names))]}
    return nodes, skin


def glb_bytes(asset: HeadAsset | list[HeadAsset], images: dict[str, bytes], name: str = "head",
              morph_targets: bool = True, image_uris: dict[str, str] | None = None, compact: bool = False) -> bytes:
    """Encode an asset (or its LODs, LOD 0 first) as GLB. ``images``: PNG bytes per material
    name ("skin", "eyes", "mouth", "eyelashes", "eye_wet") plus "normal" for the skin's
    tangent-space normal map; materials without an image get their constant colour.
    ``image_uris`` instead references image files beside the .glb (shared between files).

    Every LOD is a mesh of its own in one file, sharing materials, textures and the skeleton:
    scene 0 shows LOD 0, scene k LOD k (``scenes[k].extras.lod``). The captured expression is the
    animation "captured" (the meshes' default weights are the rest pose unless asked otherwise).
    ``compact`` (for ``--compress``): morph deltas under 50 micrometres and normal deltas under
    0.01 stored as zeros, normal deltas in LOD 0 only."""
    lods = asset if isinstance(asset, list) else [asset]
    base = lods[0]
    b = _Builder()
    src = image_uris if image_uris is not None else images
    tex_names = [k for k in ("skin", "eyes", "mouth", "normal", "eyelashes", "eye_wet") if k in src]
    if image_uris is not None:
        gl_images = [{"uri": image_uris[k], "mimeType": "image/png", "name": k} for k in tex_names]
    else:
        gl_images = [{"bufferView": b.view(images[k]), "mimeType": "image/png", "name": k} for k in tex_names]
    tex_index = {k: i for i, k in enumerate(tex_names)}
    textures = [{"sampler": 0, "source": i, "name": k} for i, k in enumerate(tex_names)]
    materials, mat_of = [], {}
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
        prims = [_primitive_json(b, p, mat_of[p.material.name], use_targets,
                                 zero=COMPACT_ZERO if compact else None, zero_n=COMPACT_ZERO_NORMAL if compact else None,
                                 normal_targets=not compact or li == 0) for p in a.primitives]
        mesh = {"name": name if li == 0 else f"{name}_lod{li}", "primitives": prims}
        if use_targets:
            mesh["weights"] = [float(w) for w in a.default_weights]
            mesh["extras"] = {"targetNames": list(a.target_names)}
        meshes.append(mesh)
        node = {"name": mesh["name"], "mesh": li}
        if skel is not None and all(p.joints is not None for p in a.primitives):
            node["skin"] = 0
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
        jnodes, skin = _skin_json(b, skel, len(nodes))
        nodes += jnodes
        doc["skins"] = [skin]
        roots = [skin["skeleton"]]
    doc["nodes"] = nodes
    doc["scenes"] = [{"name": name if li == 0 else f"{name}_lod{li}", "nodes": [li] + roots, "extras": {"lod": li}}
                     for li in range(n_lod)]
    clip = base.clip_weights
    if morph_targets and clip is not None and len(base.target_names) and "targets" in meshes[0]["primitives"][0]:
        G, K = clip.shape
        times = b.accessor(np.arange(G, dtype=np.float32) * CLIP_FRAME_S, FLOAT, "SCALAR", None, minmax=True)
        vals = b.accessor(np.asarray(clip, np.float32).reshape(-1), FLOAT, "SCALAR", None)
        doc["animations"] = [{
            "name": "captured",
            "samplers": [{"input": times, "output": vals, "interpolation": "STEP" if G == 1 else "LINEAR"}],
            "channels": [{"sampler": 0, "target": {"node": li, "path": "weights"}}
                         for li in range(n_lod) if "targets" in meshes[li]["primitives"][0]],
            "extras": {"frames": list(base.clip_keys)},
        }]
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
    return (struct.pack("<III", GLB_MAGIC, 2, total) + struct.pack("<II", len(js), CHUNK_JSON) + js
            + struct.pack("<II", len(blob), CHUNK_BIN) + blob)


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
            arr = self._view(a["bufferView"], dt, a["count"] * n, a.get("byteOffset", 0)).reshape(a["count"], n).copy()
        else:
            arr = np.zeros((a["count"], n), dt)
        sp = a.get("sparse")
        if sp:
            idx = self._view(sp["indices"]["bufferView"], _NP[sp["indices"]["componentType"]], sp["count"],
                             sp["indices"].get("byteOffset", 0)).astype(np.int64)
            arr[idx] = self._view(sp["values"]["bufferView"], dt, sp["count"] * n,
                                  sp["values"].get("byteOffset", 0)).reshape(-1, n)
        return arr if n > 1 else arr[:, 0].copy()

    def image(self, name: str) -> bytes:
        for im in self.doc.get("images", []):
            if im.get("name") == name:
                v = self.doc["bufferViews"][im["bufferView"]]
                o = v.get("byteOffset", 0)
                return self.bin[o:o + v["byteLength"]]
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
    doc = json.loads(data[20:20 + jlen])
    off = 20 + jlen
    binary = b""
    if off + 8 <= len(data):
        blen, btype = struct.unpack_from("<II", data, off)
        if btype == CHUNK_BIN:
            binary = data[off + 8: off + 8 + blen]
    return Glb(doc, binary)
