"""USDZ for Apple's AR Quick Look (``usd-core``): the head's LOD 0 as UsdSkel.

Layout of ``head.usdz`` (a usdc root layer plus its textures, packaged by
``UsdUtils.CreateNewUsdzPackage``)::

    /Head                       SkelRoot (default prim; upAxis Y, metersPerUnit 1 or 0.01)
      /Skeleton                 joints root, neck, head, jaw, eyes (when the asset has them)
        /Animation              SkelAnimation: the 52 ARKit blendshape names and their weights
      /Geometry/<material>      one Mesh per material: points, uvs (``primvars:st``), normals,
                                skin weights; BlendShape children with Apple's names (sparse
                                offsets and normal offsets of the vertices a shape moves)
      /Materials/<material>     UsdPreviewSurface: diffuse from the baked albedo (alpha-tested
                                lashes, a clear film for the eye wetness), the skin's
                                tangent-space normal map

Mesh vertices are the asset primitive's vertices in the same order as in ``head.glb`` (one vertex
per position/UV pair, v up as USD's ``st``), so a BlendShape's ``pointIndices`` index the glTF
morph target's rows. Only LOD 0 goes in (AR Quick Look has no LOD switch). The rest pose is
neutral: the animation's default weights are the asset's default weights; the captured expression
stays in ``asset.json`` and the glb's "captured" clip (time samples would make AR Quick Look load
the head with the expression applied).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import MvreconError
from .asset import HeadAsset

#: blendshape offsets (metres) below this are left out of a shape's sparse point list
USD_ZERO = 1e-5

_TEXTURES = {"skin": "albedo.png", "eyes": "eyes.png", "mouth": "mouth.png", "eyelashes": "eyelashes.png"}


class UsdUnavailable(MvreconError):
    """usd-core (``pxr``) is not installed."""


def _pxr():
    try:
        from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, UsdSkel, UsdUtils, Vt
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise UsdUnavailable(f"USD export needs usd-core (pip install usd-core): {e}") from None
    return Gf, Sdf, Usd, UsdGeom, UsdShade, UsdSkel, UsdUtils, Vt


def _joint_paths(names, parents) -> list[str]:
    """UsdSkel joint tokens: each joint's path from the root ("root/neck/head")."""
    out = []
    for j, n in enumerate(names):
        parts, k = [n], parents[j]
        while k >= 0:
            parts.append(names[k])
            k = parents[k]
        out.append("/".join(reversed(parts)))
    return out


def _material(stage, path: str, prim, has_texture: bool, normal_map: bool):
    """A UsdPreviewSurface material for one primitive's material."""
    _, Sdf, _, _, UsdShade, _, _, _ = _pxr()
    from pxr import Gf

    m = prim.material
    mat = UsdShade.Material.Define(stage, path)
    surf = UsdShade.Shader.Define(stage, f"{path}/Surface")
    surf.CreateIdAttr("UsdPreviewSurface")
    surf.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(float(m.roughness))
    surf.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(0.0)
    mat.CreateSurfaceOutput().ConnectToSource(surf.ConnectableAPI(), "surface")
    st = None
    if has_texture or normal_map:
        reader = UsdShade.Shader.Define(stage, f"{path}/StReader")
        reader.CreateIdAttr("UsdPrimvarReader_float2")
        reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
        st = reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
    if has_texture:
        tex = UsdShade.Shader.Define(stage, f"{path}/Albedo")
        tex.CreateIdAttr("UsdUVTexture")
        tex.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(
            f"./{_TEXTURES[m.name]}"
        )  # anchored: "x.png" is a search path
        tex.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
        tex.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(st)
        tex.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("clamp")
        tex.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("clamp")
        rgb = tex.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        surf.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(rgb)
        if m.name == "eyelashes":  # strands: alpha-tested as in the glb
            a = tex.CreateOutput("a", Sdf.ValueTypeNames.Float)
            surf.CreateInput("opacity", Sdf.ValueTypeNames.Float).ConnectToSource(a)
            surf.CreateInput("opacityThreshold", Sdf.ValueTypeNames.Float).Set(0.4)
    else:
        surf.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).Set(Gf.Vec3f(*[float(c) for c in m.color[:3]]))
        if m.blend:
            surf.CreateInput("opacity", Sdf.ValueTypeNames.Float).Set(float(m.color[3]))
    if normal_map:
        nt = UsdShade.Shader.Define(stage, f"{path}/Normal")
        nt.CreateIdAttr("UsdUVTexture")
        nt.CreateInput("file", Sdf.ValueTypeNames.Asset).Set("./normal.png")
        nt.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("raw")
        nt.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(st)
        # [0, 1] texel values to a [-1, 1] tangent-space vector (glTF / OpenGL convention, +Y = +v)
        nt.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(2, 2, 2, 1))
        nt.CreateInput("bias", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(-1, -1, -1, 0))
        out = nt.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        surf.CreateInput("normal", Sdf.ValueTypeNames.Normal3f).ConnectToSource(out)
    return mat


def usd_stage(asset: HeadAsset, images: dict[str, bytes], folder: Path, units: str = "m") -> Path:
    """Write ``head.usdc`` and its textures into ``folder`` (see the module docstring); returns
    the layer's path."""
    Gf, Sdf, Usd, UsdGeom, UsdShade, UsdSkel, _, Vt = _pxr()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layer = folder / "head.usdc"
    stage = Usd.Stage.CreateNew(str(layer))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    unit = {"m": 1.0, "cm": 0.01}[units]
    UsdGeom.SetStageMetersPerUnit(stage, unit)
    root = UsdSkel.Root.Define(stage, "/Head")
    stage.SetDefaultPrim(root.GetPrim())
    Usd.ModelAPI(root.GetPrim()).SetKind("component")
    names = list(asset.target_names)
    skel_path = "/Head/Skeleton"
    skel = UsdSkel.Skeleton.Define(stage, skel_path)
    if asset.skeleton is not None:
        sk = asset.skeleton
        skel.CreateJointsAttr(_joint_paths(list(sk.names), list(sk.parents)))
        bind = [Gf.Matrix4d(1.0).SetTranslate(Gf.Vec3d(*map(float, p))) for p in sk.positions]
        rest = [Gf.Matrix4d(1.0).SetTranslate(Gf.Vec3d(*map(float, p))) for p in sk.local_translations()]
        skel.CreateBindTransformsAttr(bind)
        skel.CreateRestTransformsAttr(rest)
    else:
        skel.CreateJointsAttr([])
    anim = UsdSkel.Animation.Define(stage, f"{skel_path}/Animation")
    if names:
        anim.CreateBlendShapesAttr(names)
        anim.CreateBlendShapeWeightsAttr(Vt.FloatArray([float(w) for w in asset.default_weights]))
    UsdSkel.BindingAPI.Apply(skel.GetPrim()).CreateAnimationSourceRel().SetTargets([anim.GetPath()])
    UsdGeom.Scope.Define(stage, "/Head/Geometry")
    UsdGeom.Scope.Define(stage, "/Head/Materials")
    zero = USD_ZERO / unit
    for p in asset.primitives:
        name = p.material.name
        has_tex = name in _TEXTURES and name in images and p.material.textured
        normal_map = name == "skin" and "normal" in images
        mat = _material(stage, f"/Head/Materials/{name}", p, has_tex, normal_map)
        mesh = UsdGeom.Mesh.Define(stage, f"/Head/Geometry/{name}")
        mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
        mesh.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)
        mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(p.positions, np.float32)))
        mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(p.indices), 3, np.int32)))
        mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(np.ascontiguousarray(p.indices.reshape(-1), np.int32)))
        mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(p.normals, np.float32)))
        mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
        lo, hi = p.positions.min(0), p.positions.max(0)
        mesh.CreateExtentAttr([Gf.Vec3f(*map(float, lo)), Gf.Vec3f(*map(float, hi))])
        st = UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex)
        st.Set(Vt.Vec2fArray.FromNumpy(np.ascontiguousarray(p.uvs, np.float32)))
        UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(mat)
        binding = UsdSkel.BindingAPI.Apply(mesh.GetPrim())
        binding.CreateSkeletonRel().SetTargets([skel.GetPath()])
        if asset.skeleton is not None and p.joints is not None and p.weights is not None:
            binding.CreateJointIndicesPrimvar(False, 4).Set(
                Vt.IntArray.FromNumpy(p.joints.astype(np.int32).reshape(-1))
            )
            binding.CreateJointWeightsPrimvar(False, 4).Set(
                Vt.FloatArray.FromNumpy(p.weights.astype(np.float32).reshape(-1))
            )
            binding.CreateGeomBindTransformAttr(Gf.Matrix4d(1.0))
        if p.targets is None or not names:
            continue
        shapes, targets = [], []
        for k, sname in enumerate(names):
            moved = np.flatnonzero(np.abs(p.targets[k]).max(1) >= zero)
            if not len(moved):
                continue
            bs = UsdSkel.BlendShape.Define(stage, f"/Head/Geometry/{name}/{sname}")
            bs.CreateOffsetsAttr(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(p.targets[k][moved], np.float32)))
            if p.normal_targets is not None:
                bs.CreateNormalOffsetsAttr(
                    Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(p.normal_targets[k][moved], np.float32))
                )
            bs.CreatePointIndicesAttr(Vt.IntArray.FromNumpy(moved.astype(np.int32)))
            shapes.append(sname)
            targets.append(bs.GetPath())
        if shapes:
            binding.CreateBlendShapesAttr(shapes)
            binding.CreateBlendShapeTargetsRel().SetTargets(targets)
    stage.GetRootLayer().Save()
    for key, fname in {**_TEXTURES, "normal": "normal.png"}.items():
        if key in images:
            (folder / fname).write_bytes(images[key])
    return layer


def usdz_bytes(asset: HeadAsset, images: dict[str, bytes], units: str = "m") -> bytes:
    """The head as a .usdz package (bytes): :func:`usd_stage` packaged with its textures."""
    _, _, _, _, _, _, UsdUtils, _ = _pxr()
    tmp = Path(tempfile.mkdtemp(prefix="mvrecon-usd-"))
    try:
        layer = usd_stage(asset, images, tmp, units)
        out = tmp / "head.usdz"
        if not UsdUtils.CreateNewUsdzPackage(str(layer), str(out)):
            raise MvreconError("usd-core could not package head.usdz", out)
        return out.read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
