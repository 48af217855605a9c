"""Small, fast mesh writers and readers shared by the stages (OBJ, PLY), atomic on disk."""

from __future__ import annotations

import io as _io
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import open_regular, write_bytes


def obj_text(
    verts: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray | None = None,
    uv_faces: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    mtllib: str | None = None,
    material: str | None = None,
) -> str:
    """OBJ text for vertices (N, 3), triangles (F, 3) (0-based), optional UVs (T, 2) with
    per-corner indices (F, 3), optional per-vertex normals (N, 3)."""
    buf = _io.StringIO()
    if mtllib:
        buf.write(f"mtllib {mtllib}\n")
    np.savetxt(buf, np.asarray(verts, np.float64), fmt="v %.7f %.7f %.7f")
    if uvs is not None and len(uvs):
        np.savetxt(buf, np.asarray(uvs, np.float64), fmt="vt %.6f %.6f")
    if normals is not None:
        np.savetxt(buf, np.asarray(normals, np.float64), fmt="vn %.5f %.5f %.5f")
    if material:
        buf.write(f"usemtl {material}\n")
    f = np.asarray(faces, np.int64) + 1
    if uvs is not None and len(uvs) and uv_faces is not None:
        t = np.asarray(uv_faces, np.int64) + 1
        if normals is not None:
            arr = np.stack([f[:, 0], t[:, 0], f[:, 0], f[:, 1], t[:, 1], f[:, 1], f[:, 2], t[:, 2], f[:, 2]], 1)
            np.savetxt(buf, arr, fmt="f %d/%d/%d %d/%d/%d %d/%d/%d")
        else:
            arr = np.stack([f[:, 0], t[:, 0], f[:, 1], t[:, 1], f[:, 2], t[:, 2]], 1)
            np.savetxt(buf, arr, fmt="f %d/%d %d/%d %d/%d")
    elif normals is not None:
        arr = np.stack([f[:, 0], f[:, 0], f[:, 1], f[:, 1], f[:, 2], f[:, 2]], 1)
        np.savetxt(buf, arr, fmt="f %d//%d %d//%d %d//%d")
    else:
        np.savetxt(buf, f, fmt="f %d %d %d")
    return buf.getvalue()


def write_obj(path: str | Path, verts: np.ndarray, faces: np.ndarray, **kw) -> Path:
    """Write an OBJ atomically (see :func:`obj_text`)."""
    return write_bytes(path, obj_text(verts, faces, **kw).encode())


def write_ply(
    path: str | Path, verts: np.ndarray, faces: np.ndarray | None = None, colors: np.ndarray | None = None
) -> Path:
    """Binary little-endian PLY: float32 xyz, optional uint8 rgb, int32 triangles."""
    v = np.asarray(verts, np.float32)
    head = [
        "ply",
        "format binary_little_endian 1.0",
        f"element vertex {len(v)}",
        "property float x",
        "property float y",
        "property float z",
    ]
    dt = [("p", "<f4", 3)]
    if colors is not None:
        head += ["property uchar red", "property uchar green", "property uchar blue"]
        dt.append(("c", "u1", 3))
    if faces is not None:
        head += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    head.append("end_header")
    rec = np.empty(len(v), dtype=dt)
    rec["p"] = v
    if colors is not None:
        rec["c"] = np.asarray(colors, np.uint8)
    parts = [("\n".join(head) + "\n").encode(), rec.tobytes()]
    if faces is not None:
        f = np.empty(len(faces), dtype=[("n", "u1"), ("i", "<i4", 3)])
        f["n"] = 3
        f["i"] = np.asarray(faces, np.int32)
        parts.append(f.tobytes())
    return write_bytes(path, b"".join(parts))


def _off_counts(head: bytes, path: str | Path) -> dict[str, int]:
    lines = [ln.split(b"#")[0].strip() for ln in head.splitlines()]
    lines = [ln for ln in lines if ln]
    first = lines[0][3:].split() if lines else []  # "OFF" alone, or "OFF V F E" on one line
    counts = first if first else (lines[1].split() if len(lines) > 1 else [])
    try:
        return {"vertex": int(counts[0]), "face": int(counts[1])}
    except (IndexError, ValueError):
        raise InputError("malformed OFF header (expected the vertex and face counts)", path) from None


def ply_header_counts(path: str | Path) -> dict[str, int] | None:
    """The element counts a PLY (or OFF) header declares (``{"vertex": N, "face": M}``), or None
    when the file is neither. A malformed header is an :class:`InputError`."""
    with open_regular(path, "mesh file") as f:
        head = f.read(1 << 16)
    if head.startswith(b"OFF"):
        return _off_counts(head, path)
    if not head.startswith(b"ply"):
        return None
    end = head.find(b"end_header")
    if end < 0:
        raise InputError("malformed PLY: no 'end_header' in its first 64 KiB", path)
    counts = {}
    for line in head[:end].decode("ascii", "replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "element":
            try:
                counts[parts[1]] = int(parts[2])
            except ValueError:
                raise InputError(f"malformed PLY header line {line[:60]!r}", path) from None
    return counts


def check_read_whole(path: str | Path, n_vertices: int, n_faces: int) -> None:
    """An :class:`InputError` when a PLY's header promises more (or fewer) vertices or faces than
    were read: a reader that stops at a cut-off file returns the part it read, silently."""
    counts = ply_header_counts(path)
    if counts is None:
        return
    want_v, want_f = counts.get("vertex", 0), counts.get("face", 0)
    # more triangles than faces is a polygon fanned into triangles, not a short read
    if n_vertices != want_v or n_faces < want_f:
        raise InputError(
            f"mesh file is cut short or malformed: its header declares {want_v} vertices and {want_f} "
            f"faces, {n_vertices} and {n_faces} were read",
            path,
        )


def read_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (N, 3) float64 and triangles (F, 3) of an OBJ/PLY/GLB/STL (via Open3D, then trimesh);
    a PLY must be read whole (:func:`check_read_whole`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("mesh not found", path)
    if path.suffix.lower() in (".obj", ".ply", ".stl", ".off"):
        import open3d as o3d

        m = o3d.io.read_triangle_mesh(str(path))
        v, f = np.asarray(m.vertices, np.float64), np.asarray(m.triangles, np.int64)
        if path.suffix.lower() in (".ply", ".off"):
            check_read_whole(path, len(v), len(f))
        if len(v):
            return v, f
    try:
        import trimesh

        tm = trimesh.load(str(path), force="mesh", process=False)
    except Exception as e:  # trimesh raises many types for unreadable files
        raise InputError(f"cannot read mesh ({e.__class__.__name__}: {e})", path) from None
    if not isinstance(tm, trimesh.Trimesh):  # force="mesh" makes one; the type says it may not
        raise InputError("cannot read mesh (no triangle mesh)", path)
    return np.asarray(tm.vertices, np.float64), np.asarray(tm.faces, np.int64)
