"""Export stage: the fitted neutral head with the full model topology, baked textures and the
model's expression shapes as morph targets, as glTF 2.0 binary and OBJ + MTL, with UV-keeping LODs."""

from .asset import HeadAsset, Primitive, build_asset
from .gltf import Glb, glb_bytes, read_glb
from .lod import decimate_asset, decimate_primitive
from .objfile import mtl_text, obj_text
from .stage import ExportConfig, ExportResult, export, run

__all__ = ["ExportConfig", "ExportResult", "Glb", "HeadAsset", "Primitive", "build_asset", "decimate_asset",
           "decimate_primitive", "export", "glb_bytes", "mtl_text", "obj_text", "read_glb", "run"]
