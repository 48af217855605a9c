"""Fast Wavefront OBJ reading for model import (numpy, no mesh library).

Only what morphable-model files use: ``v`` (positions), ``vt`` (UVs) and ``f`` (polygons with
``v``, ``v/vt``, ``v//vn`` or ``v/vt/vn`` corners). Polygons are fan-split into triangles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ObjError(ValueError):
    """A malformed OBJ (the caller adds the file name)."""


def _floats(lines: list[bytes], width: int, what: str) -> np.ndarray:
    # One join + split + array conversion is much faster than per-line float parsing.
    flat = b" ".join(lines).split()
    try:
        arr = np.array(flat, dtype=np.float64)
    except ValueError:
        raise ObjError(f"non-numeric {what} data") from None
    if arr.size != width * len(lines):
        raise ObjError(f"{what} lines do not all have {width} numbers")
    return arr.reshape(-1, width)


def read_obj_vertices(data: bytes) -> np.ndarray:
    """Vertex positions (N, 3) float64 of an OBJ given as bytes (extra per-vertex colours refused)."""
    lines = [ln[2:] for ln in data.split(b"\n") if ln[:2] == b"v "]
    if not lines:
        raise ObjError("no vertices")
    return _floats(lines, 3, "vertex")


@dataclass(frozen=True)
class ObjMesh:
    vertices: np.ndarray
    """(N, 3) float64 positions, file units."""
    uvs: np.ndarray
    """(T, 2) float64 UVs ((0, 2) when none)."""
    triangles: np.ndarray
    """(F, 3) int32 0-based vertex indices (polygons fan-split, in file order)."""
    uv_triangles: np.ndarray
    """(F, 3) int32 0-based UV indices ((0, 3) when the faces carry none)."""
    polygon_of_triangle: np.ndarray
    """(F,) int32 index of the source polygon of each triangle."""


def read_obj(data: bytes) -> ObjMesh:
    """Positions, UVs and triangles of an OBJ given as bytes."""
    v_lines: list[bytes] = []
    vt_lines: list[bytes] = []
    f_lines: list[bytes] = []
    for ln in data.split(b"\n"):
        head = ln[:3]
        if head[:2] == b"v ":
            v_lines.append(ln[2:])
        elif head == b"vt ":
            vt_lines.append(ln[3:])
        elif head[:2] == b"f ":
            f_lines.append(ln[2:])
    if not v_lines:
        raise ObjError("no vertices")
    if not f_lines:
        raise ObjError("no faces")
    verts = _floats(v_lines, 3, "vertex")
    uvs = np.zeros((0, 2))
    if vt_lines:
        # vt may carry an optional third (w) coordinate
        tok = vt_lines[0].split()
        uvs = _floats(vt_lines, len(tok), "vt")[:, :2]

    corners = [ln.split() for ln in f_lines]
    counts = np.fromiter((len(c) for c in corners), dtype=np.int64, count=len(corners))
    if counts.min() < 3:
        raise ObjError("a face has fewer than 3 corners")
    flat = [tok for c in corners for tok in c]
    parts = [tok.split(b"/") for tok in flat]
    try:
        vi = np.array([int(p[0]) for p in parts], dtype=np.int64)
        has_vt = all(len(p) > 1 and p[1] for p in parts)
        ti = np.array([int(p[1]) for p in parts], dtype=np.int64) if has_vt else None
    except ValueError:
        raise ObjError("non-integer face index") from None

    def to0(idx: np.ndarray, n: int, what: str) -> np.ndarray:
        # OBJ indices are 1-based; negative ones count from the end
        out = np.where(idx < 0, n + idx, idx - 1)
        if out.min() < 0 or out.max() >= n:
            raise ObjError(f"face {what} index outside 1..{n}")
        return out

    vi = to0(vi, len(verts), "vertex")
    ti = to0(ti, len(uvs), "uv") if ti is not None else None
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # fan split: polygon (c0, c1, ..., ck) -> (c0, c_i, c_i+1) for i in 1..k-1
    ntri = counts - 2
    poly = np.repeat(np.arange(len(counts)), ntri)
    local = np.arange(ntri.sum()) - np.repeat(np.cumsum(ntri) - ntri, ntri)
    base = starts[poly]
    idx = np.stack([base, base + local + 1, base + local + 2], axis=1)
    tris = vi[idx].astype(np.int32)
    uv_tris = ti[idx].astype(np.int32) if ti is not None else np.zeros((0, 3), np.int32)
    return ObjMesh(verts, uvs, tris, uv_tris, poly.astype(np.int32))
