"""Stages after the landmark ones are kept only when they help on held-out evidence; the
deformation along the normal cannot fold where the free one can."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mvrecon.fit.accuracy import surface_error
from mvrecon.fit.config import Stage, preset
from mvrecon.fit.params import FitParams, HeadGeometry, Layout
from mvrecon.fit.stage import fit_session

from test_fit import write_scene_session

#: pushes the landmarks away (a negative weight): a stage that can only make the head worse
SABOTAGE = Stage("sabotage", 15, ("rot", "trans"), {"landmark": -1.0, "photo": 1e-9}, lr={"trans": 0.002})
#: refines what the sabotage did: skipped once the sabotage is reverted
FOLLOWER = Stage("follower", 5, ("sh", "albedo"), {"photo": 1.0}, requires=("sabotage",))


@pytest.fixture(scope="module")
def scene(ict_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("stage_check")
    session, world, _, _ = write_scene_session(root, ict_model, 3)
    return session, world


def test_a_stage_that_worsens_held_out_evidence_is_reverted_and_named(scene, ict_model):
    session, world = scene
    base = preset("fast")
    cfg = dataclasses.replace(base, schedule=base.schedule + (SABOTAGE, FOLLOWER))
    res = fit_session(session, cfg, progress=False, model=ict_model, write=False)
    assert "sabotage" in res.summary["reverted_stages"]
    assert "landmark error" in res.summary["reverted_stages"]["sabotage"]
    assert res.summary["reverted_stages"]["follower"].startswith("skipped: it refines stage 'sabotage'")
    kept = surface_error(res.detailed["f0"], world, ict_model).mean_mm
    # the same schedule without the check ends where the sabotage left it: the check could fail
    res_off = fit_session(session, dataclasses.replace(cfg, stage_check=False), progress=False, model=ict_model,
                          write=False)
    assert res_off.summary["reverted_stages"] == {}
    off = surface_error(res_off.detailed["f0"], world, ict_model).mean_mm
    assert off > 2 * kept
    assert res.summary["deformation_worst_fold"] > 0


def test_fold_ratio_sees_a_folded_deformation(ict_model):
    """The worst signed area ratio is 1 without deformation, stays near 1 for a smooth bounded map
    along the normal, and turns negative when the map alternates at its bounds texel to texel
    (the ears' and nostrils' tight curvature turns inside out): what stops a deformation stage."""
    layout = Layout(np.zeros(1, np.int64), 1, "per_frame")
    g = HeadGeometry(ict_model, 64, 64, deform_kind="normal")
    p = FitParams(ict_model, 1, layout, 64, 64, 64, deform_channels=1)
    assert g.fold_ratio(p) == pytest.approx(1.0, abs=1e-4)
    u = (torch.arange(64) + 0.5) / 64
    yy, xx = torch.meshgrid(1 - u, u, indexing="ij")
    with torch.no_grad():
        p.deform.copy_(1e-3 * torch.sin(xx * 12)[None, None] * torch.cos(yy * 9)[None, None])
    assert g.fold_ratio(p) > 0.2
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        p.deform.copy_((torch.randint(0, 2, (1, 1, 64, 64), generator=gen) * 2 - 1).float() * 0.05)
    assert g.deform_values(p).abs().max() <= 5.0e-3 + 1e-9           # the bounds hold
    assert g.fold_ratio(p) < 0


def test_bending_does_not_depend_on_the_map_resolution(ict_model):
    """The same smooth bump (along the normal) drawn into a 32 and a 128 map: the bending energy
    (on the mesh) agrees; the texel TV of the old map does not."""
    from mvrecon.fit.losses import tv_loss

    layout = Layout(np.zeros(1, np.int64), 1, "per_frame")
    vals = []
    tvs = []
    for res in (32, 128):
        g = HeadGeometry(ict_model, res, 64, deform_kind="normal")
        p = FitParams(ict_model, 1, layout, res, 64, 64, deform_channels=1)
        u = (torch.arange(res) + 0.5) / res
        yy, xx = torch.meshgrid(1 - u, u, indexing="ij")
        bump = 1e-3 * torch.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / (2 * 0.08 ** 2))
        with torch.no_grad():
            p.deform.copy_(bump[None, None])
        vals.append(float(g.bending(p)))
        tvs.append(float(tv_loss(p.deform * 1000.0)))
    assert vals[0] > 0
    assert abs(vals[0] - vals[1]) / vals[1] < 0.1
    assert tvs[0] / tvs[1] > 5


@pytest.mark.parametrize("groups", [[0, 0, 0, 0], [0, 1, 0, 1], [1, 0, 0]])
def test_model_vertices_once_per_group(ict_model, groups):
    """The model's vertices are computed once per group and copied to its views: the same values
    and gradients as one evaluation per view, and in the fit's float32 bit-identical from run to
    run (plain indexing's backward accumulates in a varying order there)."""
    gidx = torch.tensor(groups)
    G = max(groups) + 1
    layout = Layout(np.asarray(groups), G, "per_frame")
    g = HeadGeometry(ict_model, 16, 16)
    p = FitParams(ict_model, len(groups), layout, 16, 16, 16)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        p.alpha.copy_(torch.randn(p.alpha.shape, generator=gen))
        p.beta.copy_(torch.rand(p.beta.shape, generator=gen))
    w = torch.randn(len(groups), ict_model.n_vertices, 3, generator=gen)

    def grads(v):
        p.zero_grad()
        (v * w).sum().backward()
        return p.alpha.grad.clone(), p.beta.grad.clone()

    got = g.model_vertices(p, gidx, None, use_deform=False)
    ref = torch.cat([ict_model.vertices_torch(p.alpha[None], p.beta[gidx[i : i + 1]]) for i in range(len(groups))])
    assert torch.allclose(got, ref, atol=1e-6)
    assert float((ref[gidx == 0][0] - ref[gidx == G - 1][0]).abs().max()) > 1e-4 or G == 1  # the groups differ
    ga, gb = grads(got)
    ra, rb = grads(ref)
    assert torch.allclose(ga, ra, rtol=1e-4, atol=1e-3) and torch.allclose(gb, rb, rtol=1e-4, atol=1e-3)
    for _ in range(5):
        again = grads(g.model_vertices(p, gidx, None, use_deform=False))
        assert torch.equal(again[0], ga) and torch.equal(again[1], gb)


def test_presets_fit_no_displacement_and_with_displacement_puts_the_stage_back():
    """The fit's own displacement stage left the presets (the stage check reverted it in every fit
    of the realism table); ``with_displacement`` appends it as it was, key light and all, once."""
    from mvrecon.fit.config import KEY_LIGHT_PARAMS, PRESETS, legacy, with_displacement

    iters = {"fast": 15, "default": 30, "best": 60}
    for name in PRESETS:
        cfg = preset(name)
        assert not any("disp" in st.params or st.name == "detail" for st in cfg.schedule), name
        full = with_displacement(cfg)
        assert full.schedule[:-1] == cfg.schedule and with_displacement(full) == full
        st = full.schedule[-1]
        assert (st.name, st.iters, st.requires) == ("detail", iters[name], ("photo",))
        assert set(("disp", "sh", "albedo", *KEY_LIGHT_PARAMS)) <= set(st.params)
        assert not {"alpha", "rot", "trans", "deform"} & set(st.params)
    # the legacy settings keep the face crops of then
    assert [legacy(n).crop_size for n in ("fast", "default", "best")] == [192, 256, 384]


def test_best_fits_as_default_does():
    """The fit of ``best`` is ``default``'s (no slower fit measured better on every subject)."""
    assert dataclasses.replace(preset("best"), preset="default") == preset("default")


def test_a_refinement_the_evidence_must_accept(scene, ict_model):
    """:func:`with_refinement` adds a ``refine`` stage; the refined fit starts from the shorter
    fit's result bit for bit and ends there again when the held-out evidence rejects the stage
    (its error up by more than the check's 0.2 %)."""
    from mvrecon.fit.config import with_refinement

    default = preset("default")
    refined = with_refinement(default)
    assert [st.name for st in refined.schedule] == [st.name for st in default.schedule] + ["refine"]
    refine = refined.schedule[-1]
    assert not {"rot", "trans", "cam_pose"} & set(refine.params) and {"alpha", "deform"} <= set(refine.params)

    session, _ = scene
    short = preset("fast")
    a = fit_session(session, short, progress=False, model=ict_model, write=False)
    b = fit_session(session, with_refinement(short, iters=20), progress=False, model=ict_model, write=False)
    last = {c["stage"]: c for c in a.summary["stage_checks"]}["deform"]
    check = {c["stage"]: c for c in b.summary["stage_checks"]}["refine"]
    # the same fit up to the refinement (where the deformation stage was reverted, its start; the
    # held-out pixels are shaded with visibility and shadows refreshed in between)
    start = last["after"] if last["kept"] else last["before"]
    assert check["before"] == pytest.approx(start, rel=1e-3)
    if check["kept"]:
        assert check["after"]["heldout_photo"] <= check["before"]["heldout_photo"] * 1.002
    else:
        assert np.array_equal(a.detailed["f0"], b.detailed["f0"])
