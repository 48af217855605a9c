"""``--compress``: a smaller .glb through EXT_meshopt_compression (meshoptimizer's codecs).

Every geometry bufferView (vertex attributes, morph-target deltas, indices, skin and animation
data) is encoded with meshoptimizer's vertex or index codec and marked with the extension; the
file then carries a fallback buffer without data, so it needs a loader with the meshopt decoder
(three.js ``GLTFLoader.setMeshoptDecoder``, Babylon.js, gltfpack, Blender 3.x+ importers).
The writer (``glb_bytes(compact=True)``) has already quantised the geometry with
KHR_mesh_quantization (integers: positions and morph position deltas on one grid, normals,
tangents and normal deltas as normalized bytes), which the codec packs byte-wise; what is still
float (texture coordinates outside [0, 1], other files' attributes) goes through meshoptimizer's
exponential filter with one exponent per component (:func:`exp_filter`): positions keep 16 bits,
texture coordinates 14, normals, tangents and morph deltas ``mantissa_bits``; joint matrices and
animation keys stay exact. The skin albedo is re-encoded as JPEG (quality ``jpeg_quality``); the
alpha-carrying images stay PNG.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from .gltf import _NCOMP, _NP, CHUNK_BIN, CHUNK_JSON, GLB_MAGIC, Glb

EXT = "EXT_meshopt_compression"


def exp_filter(raw: bytes, ncomp: int, bits: int) -> bytes:
    """meshoptimizer's exponential filter (EXT_meshopt_compression filter EXPONENTIAL) with one
    exponent per component over all elements: each float becomes ``m * 2^e`` stored as
    ``e << 24 | (m & 0xffffff)`` with ``|m| < 2^bits``; small integers that the codec packs well."""
    v = np.frombuffer(raw, np.float32).reshape(-1, ncomp).astype(np.float64)
    mx = np.abs(v).max(0)
    e = np.where(mx > 0, np.ceil(np.log2(np.maximum(mx, 1e-38))), 0).astype(np.int64) - bits
    e = np.clip(e, -100, 100)
    m = np.round(v / np.exp2(e)).astype(np.int64)
    m = np.clip(m, -(1 << 23), (1 << 23) - 1)
    out = ((e[None, :] & 0xFF) << 24) | (m & 0xFFFFFF)
    return out.astype(np.uint32).tobytes()


def _view_uses(doc: dict) -> dict[int, dict]:
    """bufferView -> how it is read: mode, element stride, element count, float role."""
    uses: dict[int, dict] = {}
    attr_role: dict[int, str] = {}
    for mesh in doc.get("meshes", []):
        for p in mesh["primitives"]:
            for name, acc in p["attributes"].items():
                attr_role[acc] = name
            for t in p.get("targets", []):
                for acc in t.values():
                    attr_role[acc] = "TARGET"
            if "indices" in p:
                attr_role[p["indices"]] = "INDICES"
    for i, a in enumerate(doc["accessors"]):
        size = np.dtype(_NP[a["componentType"]]).itemsize * _NCOMP[a["type"]]
        role = attr_role.get(i, "OTHER")
        if "bufferView" in a:
            view = doc["bufferViews"][a["bufferView"]]
            if role == "INDICES":
                uses[a["bufferView"]] = {"mode": "TRIANGLES", "stride": size, "count": a["count"], "role": role}
            else:
                # a view may hold several accessors (a primitive's morph targets, one after another)
                stride = view.get("byteStride", size)
                uses[a["bufferView"]] = {
                    "mode": "ATTRIBUTES",
                    "stride": stride,
                    "count": view["byteLength"] // stride,
                    "role": role,
                    "float": a["componentType"] == 5126,
                }
        sp = a.get("sparse")
        if sp:
            isz = np.dtype(_NP[sp["indices"]["componentType"]]).itemsize
            uses[sp["indices"]["bufferView"]] = {
                "mode": "INDICES",
                "stride": isz,
                "count": sp["count"],
                "role": "SPARSE",
            }
            uses[sp["values"]["bufferView"]] = {
                "mode": "ATTRIBUTES",
                "stride": size,
                "count": sp["count"],
                "role": "TARGET",
                "float": a["componentType"] == 5126,
            }
    return uses


def compress_glb(glb: Glb, mantissa_bits: int = 12, jpeg_quality: int = 90) -> bytes:
    """The GLB re-encoded with EXT_meshopt_compression (module docstring)."""
    import cv2
    import meshoptimizer as mo

    doc = json.loads(json.dumps(glb.doc))
    uses = _view_uses(doc)
    out = bytearray()
    fallback_len = 0

    def put(data: bytes) -> int:
        out.extend(b"\0" * (-len(out) % 4))
        off = len(out)
        out.extend(data)
        return off

    images = {im["bufferView"]: im for im in doc.get("images", []) if "bufferView" in im}
    new_views = []
    for vi, v in enumerate(doc["bufferViews"]):
        o = v.get("byteOffset", 0)
        raw = glb.bin[o : o + v["byteLength"]]
        if vi in images and images[vi].get("name") == "skin":
            img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
            ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            raw = jpg.tobytes()
            images[vi]["mimeType"] = "image/jpeg"
        use = uses.get(vi)
        if use is None or use["stride"] % 4 and use["mode"] == "ATTRIBUTES":
            nv = {k: x for k, x in v.items() if k not in ("byteOffset", "byteLength")}
            nv.update(buffer=0, byteOffset=put(raw), byteLength=len(raw))
            new_views.append(nv)
            continue
        filt = None
        if use["mode"] == "ATTRIBUTES":
            if use.get("float") and use["role"] not in ("WEIGHTS_0", "OTHER"):
                bits = {"POSITION": 16, "TEXCOORD_0": 14}.get(use["role"], mantissa_bits)
                raw_enc = exp_filter(raw, use["stride"] // 4, bits)
                filt = "EXPONENTIAL"
            else:
                raw_enc = raw
            arr = np.frombuffer(raw_enc, np.uint8).reshape(use["count"], use["stride"])
            enc = mo.encode_vertex_buffer(arr, use["count"], use["stride"])
        else:
            idx = np.frombuffer(raw, np.uint16 if use["stride"] == 2 else np.uint32).astype(np.uint32)
            n_vert = int(idx.max()) + 1 if len(idx) else 0
            enc = (
                mo.encode_index_buffer(idx, len(idx), n_vert)
                if use["mode"] == "TRIANGLES"
                else mo.encode_index_sequence(idx, len(idx), n_vert)
            )
        fallback_len += -fallback_len % 4
        nv = {k: x for k, x in v.items() if k not in ("byteOffset", "byteLength", "buffer")}
        nv.update(buffer=1, byteOffset=fallback_len, byteLength=len(raw))
        if use["mode"] == "ATTRIBUTES":
            nv["byteStride"] = use["stride"] if "target" in v else nv.get("byteStride", use["stride"])
            if "target" not in v:
                nv.pop("byteStride", None)
        ext = {
            "buffer": 0,
            "byteOffset": put(enc),
            "byteLength": len(enc),
            "byteStride": use["stride"],
            "mode": use["mode"],
            "count": use["count"],
        }
        if filt:
            ext["filter"] = filt
        nv["extensions"] = {EXT: ext}
        fallback_len += len(raw)
        new_views.append(nv)
    doc["bufferViews"] = new_views
    doc["buffers"] = [
        {"byteLength": len(out)},
        {"byteLength": max(fallback_len, 4), "extensions": {EXT: {"fallback": True}}},
    ]
    doc["extensionsUsed"] = sorted(set(doc.get("extensionsUsed", [])) | {EXT})
    doc["extensionsRequired"] = sorted(set(doc.get("extensionsRequired", [])) | {EXT})
    js = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    blob = bytes(out) + b"\0" * (-len(out) % 4)
    total = 12 + 8 + len(js) + 8 + len(blob)
    return (
        struct.pack("<III", GLB_MAGIC, 2, total)
        + struct.pack("<II", len(js), CHUNK_JSON)
        + js
        + struct.pack("<II", len(blob), CHUNK_BIN)
        + blob
    )


def decompress_glb(glb: Glb) -> Glb:
    """The GLB with its EXT_meshopt_compression bufferViews decoded (meshoptimizer's decoders and
    filters) into a plain binary chunk, so that :meth:`Glb.accessor` reads it; for tests and
    benchmarks. Quantised accessors stay quantised."""
    import meshoptimizer as mo

    doc = json.loads(json.dumps(glb.doc))
    out = bytearray()
    for v in doc["bufferViews"]:
        ext = v.pop("extensions", {}).get(EXT)
        if ext is None:
            o = v.get("byteOffset", 0)
            raw = glb.bin[o : o + v["byteLength"]]
        else:
            enc = glb.bin[ext.get("byteOffset", 0) : ext.get("byteOffset", 0) + ext["byteLength"]]
            n, stride = ext["count"], ext["byteStride"]
            if ext["mode"] == "ATTRIBUTES":
                # the binding's default mode decodes n * stride bytes (its dtype mode allocates n items)
                dec = np.ascontiguousarray(mo.decode_vertex_buffer(n, stride, enc)).view(np.uint8).reshape(-1)
                if ext.get("filter") == "EXPONENTIAL":
                    dec = np.asarray(mo.decode_filter_exp(dec.view(np.uint32).copy(), n, stride)).view(np.uint8)
                elif ext.get("filter", "NONE") != "NONE":
                    raise ValueError(f"meshopt filter {ext['filter']} is not decoded here")
            else:
                # decoded as 32-bit (the binding's buffer is uint32), narrowed to the view's size
                fn = mo.decode_index_buffer if ext["mode"] == "TRIANGLES" else mo.decode_index_sequence
                dec = np.asarray(fn(n, 4, enc), np.uint32).astype(np.uint16 if stride == 2 else np.uint32)
            raw = np.ascontiguousarray(dec).tobytes()[: n * stride]
        out.extend(b"\0" * (-len(out) % 4))
        v.update(buffer=0, byteOffset=len(out), byteLength=len(raw))
        out.extend(raw)
    doc["buffers"] = [{"byteLength": len(out)}]
    for k in ("extensionsUsed", "extensionsRequired"):
        if k in doc:
            doc[k] = [e for e in doc[k] if e != EXT]
    return Glb(doc, bytes(out))
