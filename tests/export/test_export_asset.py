"""Export: GLB validity (Khronos validator), trimesh round trip, re-rendered asset vs the photos,
morph targets, LODs that keep UVs, OBJ, missing fit and unwritable output."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mvrecon.errors import MvreconError, StageMissing
from mvrecon.export import ExportConfig, build_asset, decimate_asset, export, read_glb
from mvrecon.export.validator import ValidatorUnavailable, validate


@pytest.fixture(scope="module")
def exported(scene, export_helpers, tmp_path_factory):
    root = tmp_path_factory.mktemp("session")
    session = export_helpers.write_session(root, scene, textures=True)
    res = export(session, ExportConfig(formats=("glb", "obj"), lods=(1.0, 0.25, 0.05),
                                       texture_size=export_helpers.ATLAS))
    return session, res


def _skin_from_glb(path):
    g = read_glb(path)
    mesh = g.doc["meshes"][0]
    prim = next(p for p in mesh["primitives"] if g.doc["materials"][p["material"]]["name"] == "skin")
    pos = g.accessor(prim["attributes"]["POSITION"]).astype(np.float64)
    uv = g.accessor(prim["attributes"]["TEXCOORD_0"]).astype(np.float64)
    idx = g.accessor(prim["indices"]).astype(np.int64).reshape(-1, 3)
    tex_i = g.doc["materials"][prim["material"]]["pbrMetallicRoughness"]["baseColorTexture"]["index"]
    img_i = g.doc["textures"][tex_i]["source"]
    png = g.image(g.doc["images"][img_i]["name"])
    tex = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255
    return g, prim, pos, np.stack([uv[:, 0], 1 - uv[:, 1]], -1), idx, tex


def _render(head, cams, pos, uv, idx, tex, sh):
    from mvrecon.render import render_mesh

    world = pos @ head.R[0].T + head.t[0]          # the asset is model space at the fitted scale
    K = torch.as_tensor(np.stack([c.K for c in cams]))
    w2c = torch.as_tensor(np.stack([c.world_to_cam for c in cams]))
    with torch.no_grad():
        r = render_mesh(torch.as_tensor(world), torch.as_tensor(idx), K, w2c, cams[0].height, cams[0].width,
                        uvs=torch.as_tensor(uv), texture=torch.as_tensor(tex).permute(2, 0, 1).double(),
                        sh=torch.as_tensor(np.asarray(sh), dtype=torch.float64), background=0.1)
    return r.image.numpy(), r.mask.numpy()


def test_glb_passes_khronos_validator(exported):
    _, res = exported
    try:
        reports = {f: validate(res.out_dir / f) for f in res.files if f.endswith(".glb")}
    except ValidatorUnavailable as e:
        pytest.skip(f"glTF validator unavailable: {e}")
    assert len(reports) == 3
    for f, rep in reports.items():
        issues = rep["issues"]
        errors = [m for m in issues["messages"] if m["severity"] == 0]
        print(f, {k: issues[k] for k in ("numErrors", "numWarnings", "numInfos")})
        assert issues["numErrors"] == 0, (f, errors[:5])
        assert issues["numWarnings"] == 0, (f, [m for m in issues["messages"] if m["severity"] == 1][:5])


@pytest.mark.parametrize("skeleton", [True, False])
def test_quantized_glb_passes_khronos_validator(scene, exported, tmp_path, skeleton):
    """--compress's KHR_mesh_quantization storage, checked before the meshopt step (the validator
    cannot look inside meshopt-coded buffers): integer accessors, their min/max, normalized
    weights summing to one, every LOD, dequantised by the skin or (without one) the mesh node."""
    from mvrecon.export import glb_bytes

    _, res = exported
    asset = build_asset(scene.head, skeleton=skeleton)
    lods = [asset, decimate_asset(asset, 0.25)]
    images = {k: (res.out_dir / f).read_bytes() for k, f in
              {"skin": "albedo.png", "eyes": "eyes.png", "mouth": "mouth.png", "normal": "normal.png"}.items()}
    path = tmp_path / "quantized.glb"
    path.write_bytes(glb_bytes(lods, images, compact=True))
    g = read_glb(path)
    assert g.doc["extensionsRequired"] == ["KHR_mesh_quantization"]
    assert ("skins" in g.doc) == skeleton and ("scale" in g.doc["nodes"][0]) != skeleton
    try:
        issues = validate(path)["issues"]
    except ValidatorUnavailable as e:
        pytest.skip(f"glTF validator unavailable: {e}")
    print({k: issues[k] for k in ("numErrors", "numWarnings", "numInfos")})
    assert issues["numErrors"] == 0, [m for m in issues["messages"] if m["severity"] == 0][:5]
    assert issues["numWarnings"] == 0, [m for m in issues["messages"] if m["severity"] == 1][:5]


def test_validator_flags_a_broken_glb(exported, tmp_path):
    """The validator check can fail: an index out of range is an error."""
    _, res = exported
    g = read_glb(res.out_dir / "head_lod2.glb")
    from mvrecon.export.gltf import CHUNK_BIN, CHUNK_JSON, GLB_MAGIC
    import json
    import struct

    doc = g.doc
    acc = doc["accessors"][doc["meshes"][0]["primitives"][0]["indices"]]
    view = doc["bufferViews"][acc["bufferView"]]
    blob = bytearray(g.bin)
    dt = np.uint16 if acc["componentType"] == 5123 else np.uint32
    n_vert = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]["count"]
    # the first index now points past the last vertex
    blob[view["byteOffset"]:view["byteOffset"] + np.dtype(dt).itemsize] = np.array([n_vert + 7], dt).tobytes()
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    data = struct.pack("<III", GLB_MAGIC, 2, 28 + len(js) + len(blob)) + struct.pack("<II", len(js), CHUNK_JSON) + js \
        + struct.pack("<II", len(blob), CHUNK_BIN) + bytes(blob)
    bad = tmp_path / "bad.glb"
    bad.write_bytes(data)
    try:
        rep = validate(bad)
    except ValidatorUnavailable as e:
        pytest.skip(f"glTF validator unavailable: {e}")
    assert rep["issues"]["numErrors"] > 0


def test_glb_loads_in_trimesh_with_counts_and_target_names(scene, exported):
    import trimesh

    from mvrecon.export.arkit import ARKIT_NAMES

    _, res = exported
    trimesh.load(res.out_dir / "head.glb")               # loads at all
    g = read_glb(res.out_dir / "head.glb")
    mesh = g.doc["meshes"][0]
    n = sum(g.doc["accessors"][p["attributes"]["POSITION"]]["count"] for p in mesh["primitives"])
    # every ICT UV coordinate is one LOD 0 vertex: the whole topology with its seams is there
    assert n == scene.head.model.uvs.shape[0]
    assert sum(g.doc["accessors"][p["indices"]]["count"] for p in mesh["primitives"]) == 3 * len(scene.head.model.triangles)
    names = mesh["extras"]["targetNames"]
    assert tuple(names) == ARKIT_NAMES
    # neutral by default: the captured expression (jawOpen 0.15) is the animation, not the rest pose
    assert mesh["weights"] == [0.0] * 52
    anim = g.doc["animations"][0]
    assert anim["name"] == "captured"
    out = g.accessor(anim["samplers"][0]["output"]).reshape(-1, 52)
    assert out[0, names.index("jawOpen")] == pytest.approx(0.15) and out[0].sum() == pytest.approx(0.15)
    # every LOD is in the file, with the same morph targets, animated by the same clip
    assert len(g.doc["meshes"]) == 3 and len(g.doc["scenes"]) == 3
    assert {c["target"]["node"] for c in anim["channels"]} == {0, 1, 2}
    assert all(m["extras"]["targetNames"] == names for m in g.doc["meshes"])
    mats = {m["name"] for m in g.doc["materials"]}
    assert {"skin", "eyes", "mouth", "eyelashes", "eye_wet"} <= mats


def test_rerendered_asset_matches_the_photos(scene, exported, export_helpers):
    _, res = exported
    g, prim, pos, uv, idx, tex = _skin_from_glb(res.out_dir / "head.glb")
    # what an engine shows playing the captured clip: its first keyframe as morph weights
    anim = g.doc["animations"][0]
    for w, t in zip(g.accessor(anim["samplers"][0]["output"]), prim["targets"]):
        if w:
            pos = pos + w * g.accessor(t["POSITION"])
    img, _ = _render(scene.head, scene.cameras, pos, uv, idx, tex, scene.head.sh)
    scores = [export_helpers.psnr(img[v], scene.photos[v], scene.face_px[v]) for v in range(len(scene.cameras))]
    print("PSNR per view over the face (dB):", " ".join(f"{s:.1f}" for s in scores))
    assert min(scores) > 30
    # a wrong texture (mirrored left-right) or a flat mean colour must fail the same bound
    wrong, _ = _render(scene.head, scene.cameras, pos, uv, idx, np.ascontiguousarray(tex[:, ::-1]), scene.head.sh)
    flat = np.broadcast_to(tex.reshape(-1, 3).mean(0), tex.shape).astype(np.float32)
    meanc, _ = _render(scene.head, scene.cameras, pos, uv, idx, flat, scene.head.sh)
    bad = [export_helpers.psnr(x[2], scene.photos[2], scene.face_px[2]) for x in (wrong, meanc)]
    print(f"mirrored texture {bad[0]:.1f} dB, mean colour {bad[1]:.1f} dB")
    assert max(bad) < 30


def test_jaw_open_moves_the_chin_not_the_forehead(scene, exported):
    _, res = exported
    g, prim, pos, *_ = _skin_from_glb(res.out_dir / "head.glb")
    names = g.doc["meshes"][0]["extras"]["targetNames"]
    d = g.accessor(prim["targets"][names.index("jawOpen")]["POSITION"]).astype(np.float64)
    model = scene.head.model
    neutral = model.vertices(scene.head.alpha)
    chin = neutral[model.landmarks68[8]]
    brow_y = neutral[model.landmarks68[[19, 24]], 1].mean()
    face_front = pos[:, 2] > np.percentile(pos[:, 2], 60)
    near_chin = np.linalg.norm(pos - chin, axis=1) < 0.01
    forehead = face_front & (pos[:, 1] > brow_y + 0.02)
    assert near_chin.sum() > 5 and forehead.sum() > 20
    chin_move = np.linalg.norm(d[near_chin], axis=1).max()
    forehead_move = np.linalg.norm(d[forehead], axis=1).max()
    print(f"jawOpen: chin {1000 * chin_move:.1f} mm, forehead {1000 * forehead_move:.3f} mm")
    assert chin_move > 0.005                 # the chin drops by centimetres at full weight
    assert forehead_move < 0.0005
    assert d[near_chin, 1].mean() < 0        # downwards (+Y up)


def test_lods_reduce_triangles_and_keep_uvs(scene):
    asset = build_asset(scene.head, morph_targets=False)
    full = {p.material.name: p for p in asset.primitives}
    for f in (0.25, 0.05):
        lod = decimate_asset(asset, f)
        ratio = lod.n_triangles / asset.n_triangles
        print(f"LOD {f}: {lod.n_triangles} triangles ({100 * ratio:.1f} %)")
        assert ratio < (0.3 if f == 0.25 else 0.15)
        assert lod.primitives[0].material.name == "skin"
        skin = lod.primitives[0]
        assert abs(len(skin.indices) / len(full["skin"].indices) - f) < 0.05
        for p in lod.primitives:
            src = full[p.material.name]
            # every LOD vertex is an input vertex with its own UV: find it by (model vertex, uv)
            key_full = {(int(s), tuple(np.round(u, 6))) for s, u in zip(src.source_vertex, src.uvs)}
            assert all((int(s), tuple(np.round(u, 6))) in key_full for s, u in zip(p.source_vertex, p.uvs))
            assert p.indices.max() < len(p.positions)
        # seams stay closed: copies of a model vertex (both sides of a UV seam) share one position
        s = lod.primitives[0]
        order = np.argsort(s.source_vertex, kind="stable")
        sv = s.source_vertex[order]
        same = sv[1:] == sv[:-1]
        assert same.any()
        assert np.abs(s.positions[order][1:][same] - s.positions[order][:-1][same]).max() == 0


def test_obj_and_mtl_reference_existing_textures(scene, exported):
    import trimesh

    _, res = exported
    out = res.out_dir
    text = (out / "head.obj").read_text()
    assert text.count("\nv ") == scene.head.model.uvs.shape[0]
    assert text.count("\nf ") == len(scene.head.model.triangles)
    mtl = (out / "head.mtl").read_text()
    for line in mtl.splitlines():
        if line.startswith(("map_Kd", "norm", "map_Bump", "disp")):
            assert (out / line.split()[-1]).is_file(), line
    assert (out / "head_lod2.obj").is_file()
    m = trimesh.load(out / "head_lod1.obj", force="mesh", process=False)
    assert 0.2 < len(m.faces) / len(scene.head.model.triangles) < 0.3


def test_export_before_fit_names_the_missing_stage(scene, export_helpers, tmp_path):
    from mvrecon.cli import main

    session = export_helpers.write_session(tmp_path / "s", scene, with_fit=False)
    with pytest.raises(StageMissing, match="fit"):
        export(session, ExportConfig(texture_size=32))
    assert not (tmp_path / "s" / "export").exists() and not (tmp_path / "s" / "texture").exists()
    r = CliRunner().invoke(main, ["export", str(tmp_path / "s")])
    assert r.exit_code == 2 and "no fit yet" in r.output and "Traceback" not in r.output


def test_unwritable_output_is_a_clear_error(scene, exported, tmp_path):
    session, _ = exported
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(MvreconError, match="cannot create output folder"):
        export(session, ExportConfig(texture_size=scene.gt_skin.shape[0], out_dir=str(blocker / "export")))
    assert blocker.read_text() == "x"
    if os.geteuid() != 0:                     # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            with pytest.raises(MvreconError, match="not writable"):
                export(session, ExportConfig(texture_size=scene.gt_skin.shape[0], out_dir=str(ro / "export")))
            assert list(ro.iterdir()) == []
        finally:
            ro.chmod(0o755)


def test_cli_export_with_lods(scene, exported):
    from mvrecon.cli import main

    session, _ = exported
    out = session.root / "cli_out"
    r = CliRunner().invoke(main, ["export", str(session.root), "--format", "obj", "--lod", "1,0.5",
                                  "--texture-size", str(scene.gt_skin.shape[0]), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "triangles 52220" in r.output  # the export stage's line of the pipeline
    assert (out / "head.obj").is_file() and (out / "head_lod1.obj").is_file() and not (out / "head.glb").exists()
    bad = CliRunner().invoke(main, ["export", str(session.root), "--lod", "1,2"])
    assert bad.exit_code != 0 and "fractions" in bad.output


def test_sparse_morph_targets_round_trip(scene, tmp_path):
    from mvrecon.export import glb_bytes
    from mvrecon.export.gltf import SPARSE_ZERO

    assert SPARSE_ZERO <= 1e-5                 # 10 micrometres: below what anyone can see
    asset = build_asset(scene.head)
    path = tmp_path / "h.glb"
    path.write_bytes(glb_bytes(asset, {}))
    g = read_glb(path)
    prims = g.doc["meshes"][0]["primitives"]
    n_sparse = 0
    for p, gp in zip(asset.primitives, prims):
        assert np.array_equal(g.accessor(gp["attributes"]["POSITION"]), p.positions)
        for k, t in enumerate(gp["targets"]):
            acc = g.doc["accessors"][t["POSITION"]]
            n_sparse += "sparse" in acc
            want = np.where(np.abs(p.targets[k]).max(1, keepdims=True) >= SPARSE_ZERO, p.targets[k], 0)
            assert np.array_equal(g.accessor(t["POSITION"]), want)
    assert n_sparse > 100


def test_cli_texture_writes_the_maps(scene, export_helpers, tmp_path):
    from mvrecon.cli import main
    from mvrecon.texture.stage import load_textures

    export_helpers.write_session(tmp_path / "s", scene)
    r = CliRunner().invoke(main, ["texture", str(tmp_path / "s"), "--size", "48"])
    assert r.exit_code == 0, r.output
    assert "texture    done" in r.output and "skin texels seen (%)" in r.output
    t = load_textures(tmp_path / "s" / "texture")
    assert t.skin.shape == (48, 96, 3) and t.normal.shape == (48, 96, 3) and t.displacement.shape == (48, 96)
    assert t.eyes.shape[0] == t.eyes.shape[1] >= 16
    with pytest.raises(StageMissing, match="texture"):
        load_textures(tmp_path / "nothing")


def test_export_reads_the_texture_stage_and_never_bakes(scene, exported, export_helpers, tmp_path):
    """The export takes the texture stage's maps as they are: none, or baked at another size, is
    an error naming the texture stage, and nothing is baked or written behind its provenance."""
    bare = export_helpers.write_session(tmp_path / "s", scene)         # a fit, no textures
    with pytest.raises(StageMissing, match="no textures yet.*run the texture stage first"):
        export(bare, ExportConfig(texture_size=export_helpers.ATLAS))
    assert not (tmp_path / "s" / "texture").exists() and not (tmp_path / "s" / "export").exists()
    session, _ = exported
    tdir = session.stage_dir("texture")
    before = {p.name: p.read_bytes() for p in tdir.iterdir()}
    with pytest.raises(StageMissing, match=f"baked {export_helpers.ATLAS} px textures, the export asks for 64"):
        export(session, ExportConfig(texture_size=64, out_dir=str(tmp_path / "x")))
    assert {p.name: p.read_bytes() for p in tdir.iterdir()} == before and not (tmp_path / "x").exists()
