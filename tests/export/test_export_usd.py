"""USDZ export (usd-core): opened with pxr, the head has its mesh with UVs and normals, a
UsdPreviewSurface bound to it with the baked albedo and normal map, ARKit's 52 blendshapes whose
offsets are the glb's morph deltas, joints, metres and +Y up; and USD's own validators pass."""

from __future__ import annotations

import numpy as np
import pytest

from mvrecon.export import ExportConfig, export, read_glb
from mvrecon.export.arkit import ARKIT_NAMES

pxr = pytest.importorskip("pxr", reason="usd-core is not installed")


@pytest.fixture(scope="module")
def exported(scene, export_helpers, tmp_path_factory):
    root = tmp_path_factory.mktemp("usd")
    session = export_helpers.write_session(root / "s", scene, textures=True)
    res = export(session, ExportConfig(formats=("glb", "usdz"), lods=(1.0,), texture_size=export_helpers.ATLAS))
    return res


def _open(path):
    from pxr import Usd

    stage = Usd.Stage.Open(str(path))
    assert stage is not None
    return stage


def test_usdz_has_the_skin_mesh_material_and_units(exported):
    from pxr import UsdGeom, UsdShade, UsdSkel

    assert "head.usdz" in exported.files
    stage = _open(exported.out_dir / "head.usdz")
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    assert UsdGeom.GetStageMetersPerUnit(stage) == pytest.approx(1.0)
    root = stage.GetDefaultPrim()
    assert root.IsA(UsdSkel.Root)
    mesh = UsdGeom.Mesh(stage.GetPrimAtPath(f"{root.GetPath()}/Geometry/skin"))
    g = read_glb(exported.out_dir / "head.glb")
    prim = next(p for p in g.doc["meshes"][0]["primitives"] if g.doc["materials"][p["material"]]["name"] == "skin")
    pos = g.accessor(prim["attributes"]["POSITION"])
    pts = np.array(mesh.GetPointsAttr().Get())
    assert pts.shape == pos.shape and np.abs(pts - pos).max() < 1e-6        # same vertices, same order, metres
    idx = np.array(mesh.GetFaceVertexIndicesAttr().Get())
    assert np.array_equal(idx, g.accessor(prim["indices"]).astype(np.int64))
    st = UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st")
    uv = np.array(st.Get())
    gl_uv = g.accessor(prim["attributes"]["TEXCOORD_0"])
    assert np.abs(uv[:, 0] - gl_uv[:, 0]).max() < 1e-6 and np.abs(uv[:, 1] - (1 - gl_uv[:, 1])).max() < 1e-6
    nrm = np.array(mesh.GetNormalsAttr().Get())
    assert nrm.shape == pts.shape and np.allclose(np.linalg.norm(nrm, axis=1), 1, atol=1e-4)
    # the bound material is a UsdPreviewSurface whose diffuse colour and normal come from the textures
    mat, _ = UsdShade.MaterialBindingAPI(mesh.GetPrim()).ComputeBoundMaterial()
    assert mat and mat.GetPath().name == "skin"
    surf = mat.ComputeSurfaceSource()[0]
    assert surf.GetIdAttr().Get() == "UsdPreviewSurface"

    def texture_file(input_name):
        src = surf.GetInput(input_name).GetConnectedSources()[0][0].source
        return UsdShade.Shader(src.GetPrim()).GetInput("file").Get()

    albedo = texture_file("diffuseColor")
    assert albedo.path.endswith("albedo.png") and "head.usdz[" in albedo.resolvedPath
    assert texture_file("normal").path.endswith("normal.png")
    # every material gets a mesh and a bound material
    meshes = [p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert len(meshes) == len(g.doc["meshes"][0]["primitives"])
    assert all(UsdShade.MaterialBindingAPI(m).ComputeBoundMaterial()[0] for m in meshes)


def test_usdz_blendshapes_are_arkits_and_match_the_glb(exported):
    from pxr import UsdSkel

    stage = _open(exported.out_dir / "head.usdz")
    root = stage.GetDefaultPrim().GetPath()
    anim = UsdSkel.Animation(stage.GetPrimAtPath(f"{root}/Skeleton/Animation"))
    names = list(anim.GetBlendShapesAttr().Get())
    assert names == list(ARKIT_NAMES) and len(names) == 52
    assert np.allclose(np.array(anim.GetBlendShapeWeightsAttr().Get()), 0)          # neutral rest pose
    skel = UsdSkel.Skeleton(stage.GetPrimAtPath(f"{root}/Skeleton"))
    joints = [j.split("/")[-1] for j in skel.GetJointsAttr().Get()]
    assert {"root", "neck", "head", "jaw"} <= set(joints) and len(joints) == 6
    mesh = stage.GetPrimAtPath(f"{root}/Geometry/skin")
    binding = UsdSkel.BindingAPI(mesh)
    shapes = list(binding.GetBlendShapesAttr().Get())
    assert set(shapes) <= set(ARKIT_NAMES) and len(shapes) >= 45          # the skin moves with almost all
    g = read_glb(exported.out_dir / "head.glb")
    prim = next(p for p in g.doc["meshes"][0]["primitives"] if g.doc["materials"][p["material"]]["name"] == "skin")
    target_names = g.doc["meshes"][0]["extras"]["targetNames"]
    targets = {p.GetPath().name: UsdSkel.BlendShape(p) for p in mesh.GetChildren()}
    for name in ("jawOpen", "eyeBlinkLeft", "mouthSmileRight"):
        bs = targets[name]
        want = g.accessor(prim["targets"][target_names.index(name)]["POSITION"])      # (n, 3) dense
        pi = np.array(bs.GetPointIndicesAttr().Get())
        off = np.array(bs.GetOffsetsAttr().Get())
        assert len(pi) > 50 and np.abs(off).max() > 2e-3          # a shape that moves: the check can fail
        assert np.abs(off - want[pi]).max() < 1e-6
        rest = np.ones(len(want), bool)
        rest[pi] = False
        assert np.abs(want[rest]).max(initial=0) < 2e-5            # what is left out does not move
    # the skin weights: four per vertex, summing to one
    w = np.array(binding.GetJointWeightsPrimvar().Get()).reshape(-1, 4)
    assert binding.GetJointWeightsPrimvar().GetElementSize() == 4 and np.allclose(w.sum(1), 1, atol=1e-5)


def test_usd_validators_report_nothing(exported):
    """USD's validators (UsdValidation: usdz packaging, file types, stage metadata, material and
    skel bindings, normal-map texture settings); the ARKit ComplianceChecker when usd-core still
    has it (it was retired in favour of UsdValidation)."""
    from pxr import UsdUtils, UsdValidation

    path = exported.out_dir / "head.usdz"
    stage = _open(path)
    ctx = UsdValidation.ValidationContext(UsdValidation.ValidationRegistry().GetOrLoadAllValidators())
    issues = [(e.GetName(), e.GetMessage()) for e in ctx.Validate(stage)]
    assert not issues, issues[:5]
    if hasattr(UsdUtils, "ComplianceChecker"):
        checker = UsdUtils.ComplianceChecker(arkit=True)
        checker.CheckCompliance(str(path))
        assert not checker.GetErrors() and not checker.GetFailedChecks(), checker.GetFailedChecks()[:5]


def test_usdz_in_centimetres(scene, export_helpers, tmp_path):
    from pxr import UsdGeom

    session = export_helpers.write_session(tmp_path / "s", scene, textures=True)
    res = export(session, ExportConfig(formats=("usdz",), lods=(1.0,), texture_size=export_helpers.ATLAS,
                                       units="cm", skeleton=False))
    stage = _open(res.out_dir / "head.usdz")
    assert UsdGeom.GetStageMetersPerUnit(stage) == pytest.approx(0.01)
    pts = np.array(UsdGeom.Mesh(stage.GetPrimAtPath("/Head/Geometry/skin")).GetPointsAttr().Get())
    assert 15 < np.ptp(pts[:, 1]) < 60                               # a head is some 25 cm tall
