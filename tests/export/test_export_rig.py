"""Game-ready head: ARKit's 52 blendshapes, the skeleton and its skin weights, LODs that keep
morph targets and do not fold, centimetres for Unreal."""

from __future__ import annotations

import numpy as np
import pytest

from mvrecon.export import build_asset, decimate_asset
from mvrecon.export.arkit import ARKIT_NAMES, gaze_rotation
from mvrecon.export.asset import scale_asset
from mvrecon.export.lod import face_flip_share


@pytest.fixture(scope="module")
def asset(scene):
    return build_asset(scene.head)


def _model_deltas(asset, name):
    """(N_model, 3) the position delta of a target per model vertex (from the primitives)."""
    k = asset.target_names.index(name)
    n = max(int(p.source_vertex.max()) for p in asset.primitives) + 1
    out = np.zeros((n, 3))
    for p in asset.primitives:
        out[p.source_vertex] = p.targets[k]
    return out


def test_arkit_names_and_merged_shapes(scene, asset):
    model = scene.head.model
    assert tuple(asset.target_names) == ARKIT_NAMES
    basis = np.asarray(model.exp_basis, np.float64)
    names = list(model.exp_names)
    # the left eye is the subject's left (+X): eyeBlinkLeft closes the lid at +X only
    blink = np.linalg.norm(_model_deltas(asset, "eyeBlinkLeft"), axis=1)
    assert (blink > 1e-3).sum() > 50
    assert blink[model.mean[:, 0] > 0.01].sum() > 0.99 * blink.sum()
    # merged halves: browInnerUp is the sum of ICT's left and right shapes
    want = basis[names.index("browInnerUp_L")] + basis[names.index("browInnerUp_R")]
    assert np.abs(_model_deltas(asset, "browInnerUp") - want).max() < 1e-6
    # tongueOut: the tongue comes forward out of the mouth, past the lower teeth
    d = _model_deltas(asset, "tongueOut")
    a, b = model.submeshes["gums_tongue"]
    assert d[a:b, 2].max() > 0.012
    ta, tb = model.submeshes["teeth"]
    assert (model.mean[a:b] + d[a:b])[:, 2].max() > model.mean[ta:tb, 2].max()
    # normals follow the shape: jawOpen's normal deltas are non-zero where the chin moves
    k = asset.target_names.index("jawOpen")
    skin = asset.primitives[0]
    nd = np.linalg.norm(skin.normal_targets[k], axis=1)
    pd = np.linalg.norm(skin.targets[k], axis=1)
    assert nd[pd > 0.005].mean() > 0.02 and np.median(nd[pd == 0]) < 1e-5


def test_eye_look_turns_the_eyeball(scene, asset):
    model = scene.head.model
    a, b = model.submeshes["eyeball_left"]
    d = _model_deltas(asset, "eyeLookOutLeft")[a:b]
    front = a + int(np.argmax(model.mean[a:b, 2]))
    # the pupil (front of the eyeball) moves outwards, towards the subject's left (+X)
    assert d[front - a, 0] > 0.003
    # a rigid turn: the eyeball's vertices keep their distance from its centre (to first order)
    c = asset.skeleton.positions[asset.skeleton.names.index("eye_left")]
    p = scene.head.neutral_model_space()[a:b]
    r0 = np.linalg.norm(p - c, axis=1)
    R = gaze_rotation("Left", "Out")
    assert np.abs(np.linalg.norm((p - c) @ R.T, axis=1) - r0).max() < 1e-9
    # the right eye does not move with the left eye's target
    ra, rb = model.submeshes["eyeball_right"]
    assert np.abs(_model_deltas(asset, "eyeLookOutLeft")[ra:rb]).max() == 0


def test_skeleton_joints_and_weights(scene, asset):
    sk = asset.skeleton
    model = scene.head.model
    assert sk.names == ("root", "neck", "head", "jaw", "eye_left", "eye_right")
    for p in asset.primitives:
        assert np.allclose(p.weights.sum(1), 1, atol=1e-6) and p.weights.min() >= 0
        # a zero-weight slot names joint 0 (glTF)
        assert (p.joints[p.weights == 0] == 0).all()
    eyes = next(p for p in asset.primitives if p.material.name == "eyes")
    left = eyes.source_vertex < model.submeshes["eyeball_left"][1]
    assert (eyes.joints[left, 0] == 4).all() and (eyes.joints[~left, 0] == 5).all() and (eyes.weights[:, 0] == 1).all()
    # the chin follows the jaw, the forehead the head, the bottom of the neck the neck
    skin = asset.primitives[0]
    pos = skin.positions

    def w_of(mask, joint):
        return float(np.where(skin.joints[mask] == joint, skin.weights[mask], 0).sum(1).mean())

    chin = np.linalg.norm(pos - scene.head.neutral_model_space()[model.landmarks68[8]], axis=1) < 0.008
    forehead = (pos[:, 1] > pos[:, 1].max() - 0.04) & (pos[:, 2] > 0.05)
    neck = pos[:, 1] < pos[:, 1].min() + 0.02
    assert chin.sum() and forehead.sum() and neck.sum()
    assert w_of(chin, 3) > 0.7 and w_of(forehead, 2) > 0.99 and w_of(neck, 1) > 0.99
    # joints: eyes at the eyeballs' centres, left eye at +X; the jaw hinge well behind the eyes,
    # about their height (ICT's jawOpen turns about a point near the ears), above the chin
    P = sk.positions
    chin_y = scene.head.neutral_model_space()[model.landmarks68[8], 1]
    assert P[4, 0] > 0.02 and P[5, 0] < -0.02 and P[3, 2] < P[4, 2] - 0.04
    assert chin_y + 0.05 < P[3, 1] < P[4, 1] + 0.02


def test_lods_keep_morph_targets_and_do_not_fold(scene, asset):
    full_skin = asset.primitives[0]
    assert face_flip_share(full_skin) < 0.005
    for f in (0.25, 0.05):
        lod = decimate_asset(asset, f)
        skin = lod.primitives[0]
        share = face_flip_share(skin)
        print(f"LOD {f}: {len(skin.indices)} skin triangles, {100 * share:.2f} % flipped")
        assert share < 0.005
        assert lod.target_names == asset.target_names
        for p in lod.primitives:
            full = next(q for q in asset.primitives if q.material.name == p.material.name)
            assert p.targets.shape == (52, len(p.positions), 3) and p.joints.shape == (len(p.positions), 4)
            # each LOD vertex carries its LOD 0 vertex's deltas exactly (found by model vertex + UV)
            row = {(int(s), tuple(np.round(u, 6))): i for i, (s, u) in enumerate(zip(full.source_vertex, full.uvs))}
            idx = np.array([row[(int(s), tuple(np.round(u, 6)))] for s, u in zip(p.source_vertex, p.uvs)])
            assert np.array_equal(p.targets, full.targets[:, idx]) and np.array_equal(p.weights, full.weights[idx])


def test_units_cm_scale_lengths_only(asset):
    cm = scale_asset(asset, 100.0)
    assert cm.meta["units"] == "cm"
    a, b = asset.primitives[0], cm.primitives[0]
    assert np.allclose(b.positions, a.positions * 100) and np.allclose(b.targets, a.targets * 100, atol=1e-6)
    assert np.array_equal(b.normals, a.normals) and np.array_equal(b.normal_targets, a.normal_targets)
    assert np.allclose(cm.skeleton.positions, asset.skeleton.positions * 100)
    assert np.allclose(a.positions, asset.primitives[0].positions)        # the input is unchanged


def test_ict_names_on_request(scene):
    a = build_asset(scene.head, morph_names="ict", expression="default", skeleton=False)
    assert a.target_names == list(scene.head.model.exp_names) and a.skeleton is None
    assert a.default_weights[a.target_names.index("jawOpen")] == pytest.approx(0.15)


def test_compressed_glb_decodes_to_the_same_head(scene, tmp_path):
    """--compress: KHR_mesh_quantization storage under EXT_meshopt_compression decodes
    (meshoptimizer's own decoder; the dequantisation folded into the inverse bind matrices) to
    the asset's positions, morph deltas, normals and skin weights within the quantisation."""
    from mvrecon.export import glb_bytes
    from mvrecon.export.compress import compress_glb, decompress_glb
    from mvrecon.export.gltf import COMPACT_ZERO, parse_glb

    asset = build_asset(scene.head)
    raw = glb_bytes(asset, {})
    data = compress_glb(parse_glb(glb_bytes(asset, {}, compact=True)))
    g = parse_glb(data)
    assert len(data) < 0.35 * len(raw)
    assert {"EXT_meshopt_compression", "KHR_mesh_quantization"} <= set(g.doc["extensionsRequired"])
    prim = g.doc["meshes"][0]["primitives"][0]
    acc = g.doc["accessors"]
    assert acc[prim["attributes"]["POSITION"]]["componentType"] == 5123             # unsigned short
    assert acc[prim["targets"][0]["POSITION"]]["componentType"] in (5120, 5122)      # (signed) byte / short
    assert acc[prim["targets"][0]["NORMAL"]]["normalized"] is True
    d = decompress_glb(g)
    # grid units -> metres: the skin's inverse bind matrix of the root times its rest translation
    ibm = d.accessor(d.doc["skins"][0]["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
    rest = np.eye(4)
    rest[:3, 3] = asset.skeleton.positions[0]
    deq = rest @ ibm[0]
    step = deq[0, 0]
    assert np.allclose(np.diag(deq)[:3], step) and 0 < step < 1e-4
    skin = asset.primitives[0]
    pos = d.values(prim["attributes"]["POSITION"]) * step + deq[:3, 3]
    assert np.abs(pos - skin.positions).max() <= 0.51 * step + 1e-7
    k = asset.target_names.index("jawOpen")
    delta = d.values(prim["targets"][k]["POSITION"]) * step
    tk = skin.targets[k].astype(np.float64)
    want = np.where(np.abs(tk).max(1, keepdims=True) >= COMPACT_ZERO, tk, 0)
    assert np.abs(want).max() > 100 * step                       # the chin moves: the check can fail
    assert np.abs(delta - want).max() <= 0.51 * step + 1e-7
    nrm = d.values(prim["attributes"]["NORMAL"])
    assert np.abs(nrm - skin.normals).max() < 0.005
    w = d.values(prim["attributes"]["WEIGHTS_0"])
    assert np.allclose(w.sum(1), 1, atol=1e-6) and np.abs(w - skin.weights).max() < 0.005
    print(f"compressed {len(data) / 1e6:.2f} MB from {len(raw) / 1e6:.2f} MB; grid step {1e6 * step:.1f} um, "
          f"position error {1e6 * np.abs(pos - skin.positions).max():.1f} um")


def test_normal_deltas_fit_normalized_storage_and_keep_the_direction():
    """A normal delta that turns the normal by more than 90 degrees cannot be a normalized byte
    as it is; the stored delta keeps the direction of the morphed normal at full weight."""
    from mvrecon.export.gltf import normal_deltas_in_unit_range

    rest = np.array([[0.0, 0.0, 1.0], [0.6, 0.0, 0.8], [0.0, 1.0, 0.0]])
    shape = np.array([[0.8, 0.0, -0.6], [-0.6, 0.0, 0.8], [0.0, 0.995, 0.0998]])
    shape /= np.linalg.norm(shape, axis=1, keepdims=True)
    d = (shape - rest)[None]
    assert np.abs(d).max() > 1                                    # as computed it does not fit
    out = normal_deltas_in_unit_range(rest, d)[0]
    assert np.abs(out).max() <= 1
    got = rest + out
    got /= np.linalg.norm(got, axis=1, keepdims=True)
    assert np.allclose(got[1], shape[1], atol=1e-9)              # a 74 degree turn: exact direction
    assert np.allclose(out[2], d[0, 2])                           # small deltas stay as they are
    # a 127 degree turn away from +z cannot be reached from z = 1 with |d| <= 1: clipped, the
    # normal still turns most of the way instead of vanishing
    assert np.degrees(np.arccos(got[0] @ shape[0])) < 40
