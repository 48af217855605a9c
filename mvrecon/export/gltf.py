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
FLOAT, UINT32, UINT16 = 5126, 5125, 5123
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
_NP = {FLOAT: np.float32, UINT32: np.uint32, UINT16: np.uint16, 5121: np.uint8}
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


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


#: morph-target deltas below this (metres) are stored as exact zeros (0.1 micrometre)
SPARSE_ZERO = 1e-7


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
    if m.name in ("eyelashes", "eye_wet"):
        out["doubleSided"] = True        # open, thin shells seen from both sides
    return out


def glb_bytes(asset: HeadAsset, images: dict[str, bytes], name: str = "head", morph_targets: bool = True) -> bytes:
    """Encode an asset as GLB. ``images``: PNG bytes per material name ("skin", "eyes", "mouth")
    plus "normal" for the skin's tangent-space normal map; materials without an image get their
    constant colour."""
    b = _Builder()
    tex_names = [k for k in ("skin", "eyes", "mouth", "normal") if k in images]
    gl_images = [{"bufferView": b.view(images[k]), "mimeType": "image/png", "name": k} for k in tex_names]
    tex_index = {k: i for i, k in enumerate(tex_names)}
    textures = [{"sampler": 0, "source": i, "name": k} for i, k in enumerate(tex_names)]
    use_targets = morph_targets and bool(asset.target_names) and all(p.targets is not None for p in asset.primitives)
    prims, materials = [], []
    for p in asset.primitives:
        attrs = {
            "POSITION": b.accessor(p.positions, FLOAT, "VEC3", ARRAY_BUFFER, minmax=True),
            "NORMAL": b.accessor(p.normals, FLOAT, "VEC3", ARRAY_BUFFER),
            "TEXCOORD_0": b.accessor(np.stack([p.uvs[:, 0], 1.0 - p.uvs[:, 1]], -1), FLOAT, "VEC2", ARRAY_BUFFER),
        }
        if p.tangents is not None:
            attrs["TANGENT"] = b.accessor(p.tangents, FLOAT, "VEC4", ARRAY_BUFFER)
        ctype = UINT16 if len(p.positions) < 65535 else UINT32
        prim = {"attributes": attrs, "indices": b.accessor(p.indices.reshape(-1), ctype, "SCALAR", ELEMENT_ARRAY_BUFFER),
                "material": len(materials), "mode": 4}
        if use_targets:
            prim["targets"] = [{"POSITION": b.sparse_vec3(t, SPARSE_ZERO)} for t in p.targets]
        prims.append(prim)
        materials.append(_material_json(p, tex_index, tex_index.get("normal")))
    mesh = {"name": name, "primitives": prims}
    if use_targets:
        mesh["weights"] = [float(w) for w in asset.default_weights]
        mesh["extras"] = {"targetNames": list(asset.target_names)}
    doc = {
        "asset": {"version": "2.0", "generator": "mvrecon export"},
        "scene": 0,
        "scenes": [{"name": name, "nodes": [0]}],
        "nodes": [{"name": name, "mesh": 0}],
        "meshes": [mesh],
        "materials": materials,
        "accessors": b.accessors,
        "bufferViews": b.views,
        "buffers": [{"byteLength": len(b.blob)}],
        "extras": {k: v for k, v in asset.meta.items()},
    }
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
    data = path.read_bytes()
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
