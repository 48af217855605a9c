"""Wavefront OBJ + MTL for the exported head (one group and material per primitive)."""

from __future__ import annotations

import numpy as np

from .asset import HeadAsset

#: texture file of each textured material (written beside the OBJ by the export stage)
TEXTURE_FILES = {"skin": "albedo.png", "eyes": "eyes.png", "mouth": "mouth.png", "eyelashes": "eyelashes.png"}
NORMAL_FILE = "normal.png"
DISPLACEMENT_FILE = "displacement.png"


def _rows(fmt: str, arr: np.ndarray) -> str:
    if len(arr) == 0:
        return ""
    return (fmt * len(arr)) % tuple(np.asarray(arr).reshape(-1).tolist())


def obj_text(asset: HeadAsset, mtl_name: str) -> str:
    """OBJ text: positions (metres, +Y up), UVs (v up), normals, faces ``v/vt/vn`` per group."""
    out = [f"# mvrecon head asset: metres, +Y up, +Z out of the face\nmtllib {mtl_name}\n"]
    base = 1
    for p in asset.primitives:
        out.append(f"o {p.material.name}\n")
        out.append(_rows("v %.6f %.6f %.6f\n", p.positions))
        out.append(_rows("vt %.6f %.6f\n", p.uvs))
        out.append(_rows("vn %.5f %.5f %.5f\n", p.normals))
        out.append(f"usemtl {p.material.name}\ns 1\n")
        f = p.indices.astype(np.int64) + base
        out.append(_rows("f %d/%d/%d %d/%d/%d %d/%d/%d\n", np.repeat(f, 3, axis=1)))
        base += len(p.positions)
    return "".join(out)


def mtl_text(asset: HeadAsset) -> str:
    """MTL text: base colours, texture maps, the skin's normal map (``norm``, and ``map_Bump``
    which Blender's importer reads as a normal map) and displacement (``disp``)."""
    out = ["# mvrecon head materials\n"]
    for p in asset.primitives:
        m = p.material
        r, g, b, a = m.color
        out.append(
            f"\nnewmtl {m.name}\nKa 0 0 0\nKd {r:.4f} {g:.4f} {b:.4f}\nKs 0.04 0.04 0.04\n"
            f"Ns {max(1.0, (1 - m.roughness) * 200):.1f}\nd {a:.3f}\nillum 2\n"
        )
        if m.textured and m.name in TEXTURE_FILES:
            out.append(f"map_Kd {TEXTURE_FILES[m.name]}\n")
            if m.name == "eyelashes":
                out.append(f"map_d -imfchan m {TEXTURE_FILES[m.name]}\n")
        if m.name == "skin":
            disp = asset.meta.get("displacement")
            # -mm base gain: value = base + gain * texel, which decodes the mid-grey encoding
            mm = f"-mm {-disp['scale']:.9g} {2 * disp['scale']:.9g} " if disp else ""
            out.append(f"norm {NORMAL_FILE}\nmap_Bump {NORMAL_FILE}\ndisp {mm}{DISPLACEMENT_FILE}\n")
    return "".join(out)
