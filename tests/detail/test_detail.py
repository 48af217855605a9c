"""The detail stage on a synthetic session with a known fine layer, fitted perfectly but for it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from mvrecon.detail import PRESETS, face_grid, load_detail, run
from mvrecon.fit.result import load_fit
from mvrecon.session import load_session
from mvrecon.synth import load_ground_truth

CFG = dataclasses.replace(PRESETS["default"], min_size=512, max_size=512)


def _truth_on_grid(root, model, size):
    """The true fine map at the grid's texels (the fit is the truth: same UV layout) and the
    forehead/crow's-feet envelope (2 mm blur of |fine| above 40 um) and the face (weight > 0.5)."""
    import cv2

    gt = load_ground_truth(root)
    head = load_fit(root / "fit", model)
    grid = face_grid(head, size)
    fine = cv2.resize(gt.fine_map, (size, size), interpolation=cv2.INTER_AREA)
    env = gaussian_filter(np.abs(gt.fine_map), 10.0 * gt.fine_map.shape[0] / 1024)
    env = cv2.resize(env, (size, size), interpolation=cv2.INTER_AREA)
    w = np.zeros((size, size))
    w[grid.mask] = grid.raster.interpolate(gt.face_weight[:, None].astype(np.float64), model.triangles[grid.tri_ids])[
        :, 0
    ]
    face = grid.mask & (w > 0.5)
    return fine, face & (env > 40e-6), face


def _corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-30))


@pytest.fixture(scope="module")
def recovered(detail_session, tmp_path_factory):
    res = run(CFG, load_session(detail_session))
    return res


def test_recovers_the_known_wrinkles(detail_session, recovered, ict_model):
    size = recovered.maps.size
    fine_true, wrinkles, _ = _truth_on_grid(detail_session, ict_model, size)
    got = recovered.maps.fine[0]
    c = _corr(got[wrinkles], fine_true[wrinkles])
    # a no-op stage (zeros) has no correlation at all; this one has the grooves where they are
    print("wrinkle correlation", c)
    assert c > 0.5, c
    # and at about their depth: not a faint trace (the grooves' high band RMS within a factor 4)
    hp_true = fine_true - gaussian_filter(fine_true, 3.0 / (recovered.summary["face_tile_mm"] / size))
    ratio = np.sqrt((got[wrinkles] ** 2).mean() / (hp_true[wrinkles] ** 2).mean())
    print("depth ratio", ratio)
    assert 0.25 < ratio < 2.5, ratio
    assert (load_detail(detail_session / "detail").fine == recovered.maps.fine).all()


def _brows_on_grid(root, model, size):
    from mvrecon.parts import PART_CODES

    head = load_fit(root / "fit", model)
    grid = face_grid(head, size)
    lab = np.isin(model.part_labels, [PART_CODES["right_brow"], PART_CODES["left_brow"]]).astype(np.float64)
    out = np.zeros((size, size), bool)
    out[grid.mask] = grid.raster.interpolate(lab[:, None], model.triangles[grid.tri_ids])[:, 0] > 0.5
    return out


def test_albedo_edges_do_not_become_geometry(detail_session, recovered, ict_model):
    """The brows are dark albedo on a smooth surface: the views agree they are dark, and the
    stage leaves them flat; the same solve that takes every shade as shading puts ridges there."""
    from mvrecon.detail.stage import refine_group
    from mvrecon.texture.stage import bake_views

    size = recovered.maps.size
    brows = _brows_on_grid(detail_session, ict_model, size)
    assert brows.sum() > 200
    session = load_session(detail_session)
    head = load_fit(detail_session / "fit", ict_model)
    naive = dataclasses.replace(
        CFG, solve=dataclasses.replace(CFG.solve, dark_log=(9.0, 10.0), bright_log=(9.0, 10.0), chroma_log=(9.0, 10.0))
    )
    sol, _ = refine_group(head, 0, bake_views(session, head), naive, size)

    def rms_um(f):
        return float(np.sqrt((f[brows] ** 2).mean())) * 1e6

    ours, shading_only = rms_um(recovered.maps.fine[0]), rms_um(sol.fine)
    print("brows RMS um", ours, shading_only)
    assert shading_only > 40.0, shading_only  # the brows would turn into relief
    assert ours < 0.25 * shading_only and ours < 15.0, (ours, shading_only)


def test_exported_normal_map_carries_the_wrinkles(detail_session, recovered, ict_model):
    """The texture stage adds the fine band: the normal map's forehead and crow's feet vary at
    least 5 times as much as without it (today's maps: the fit's 256-texel displacement)."""
    import cv2

    from mvrecon.texture.bake import TextureConfig
    from mvrecon.texture.stage import run as texture_run

    S = 512
    _, wrinkles, _ = _truth_on_grid(detail_session, ict_model, recovered.maps.size)
    region = cv2.resize(wrinkles.astype(np.uint8), (S, S), interpolation=cv2.INTER_NEAREST).astype(bool)
    session = load_session(detail_session)
    var = {}
    for on in (False, True):
        tex = texture_run(TextureConfig(size=S, person_mask=False, fine_detail=on), session).textures
        n = tex.normal[:, :S][region] * 2 - 1
        var[on] = float(n[:, :2].var(0).sum())
        if on:
            disp = tex.displacement
    print("normal variance", var)
    assert var[True] >= 5 * var[False], var
    meta = __import__("json").loads((detail_session / "texture" / "displacement.json").read_text())
    assert meta["scale_m"] >= float(np.abs(disp).max()) * 0.99 and meta["scale_m"] > 1e-4


def test_mtl_and_glb_extras_carry_the_displacement_scale():
    from mvrecon.export.asset import HeadAsset, Primitive
    from mvrecon.export.objfile import mtl_text
    from mvrecon.export.stage import with_displacement
    from mvrecon.texture.layout import material

    z = np.zeros((0, 3), np.float32)
    prim = Primitive(
        material("skin"), z, z, np.zeros((0, 2), np.float32), np.zeros((0, 3), np.uint32), np.zeros(0, np.int64)
    )
    asset = with_displacement(
        HeadAsset([prim], [], np.zeros(0), meta={"units": "cm"}), {"scale_m": 4e-4, "midlevel": 0.5}
    )
    d = asset.meta["displacement"]
    assert d["scale_m"] == 4e-4 and abs(d["scale"] - 0.04) < 1e-12 and d["uri"] == "displacement.png"
    assert "disp -mm -0.04 0.08 displacement.png" in mtl_text(asset)


def test_stage_reruns_when_the_fit_changes_and_is_skipped_otherwise(detail_session, tmp_path):
    """Provenance: the detail stage's key holds the fit's outputs; same fit, skipped."""
    import shutil

    from mvrecon.config import pipeline_config
    from mvrecon.pipeline import _do_stage
    from mvrecon.stagedef import Context
    from mvrecon.stages import STAGES

    root = tmp_path / "session"
    shutil.copytree(detail_session, root, ignore=shutil.ignore_patterns("detail", "texture"))
    cfg = pipeline_config("fast")
    cfg = dataclasses.replace(cfg, detail=dataclasses.replace(cfg.detail, min_size=128, max_size=128))
    i = [s.name for s in STAGES].index("detail")
    st = STAGES[i]
    ctx = Context(session=load_session(root), cfg=cfg)

    def once(fit_digest):
        ctx.digests["fit"] = fit_digest
        return _do_stage(ctx, st, i, 0, len(STAGES) - 1, False, None).status

    assert once("a" * 64) == "done"
    assert (root / "detail" / "provenance.json").is_file()
    assert once("a" * 64) == "skipped"
    assert once("b" * 64) == "done"
    assert "detail" in [s.name for s in STAGES if "detail" in s.upstream or s.name == "detail"]
    assert "detail" in next(s for s in STAGES if s.name == "texture").upstream
