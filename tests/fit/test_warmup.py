"""Every stage's learning rates ramp up over its first steps (FitConfig.lr_warmup)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mvrecon.fit.config import Stage, legacy, preset
from mvrecon.fit.stage import fit_session

from test_fit import write_scene_session


@pytest.fixture(scope="module")
def session(ict_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("warmup")
    return write_scene_session(root, ict_model, 2)[0]


def _translation_after(session, ict_model, warmup: int, steps: int, lr: float) -> torch.Tensor:
    stage = Stage("rigid", steps, ("trans",), {"landmark": 1.0}, lr={"trans": lr})
    cfg = dataclasses.replace(preset("fast"), schedule=(stage,), lr_warmup=warmup)
    res = fit_session(session, cfg, progress=False, model=ict_model, write=False)
    return res.state.params.trans.detach().clone()


def test_the_first_step_is_a_fraction_of_the_learning_rate(session, ict_model):
    """Adam's first step moves every coordinate by its full learning rate (whatever the gradient's
    size): with a ramp over W steps it moves by 1/W of it, then the ramp climbs."""
    start = _translation_after(session, ict_model, 0, 1, 1e-12)
    full = (_translation_after(session, ict_model, 0, 1, 1e-3) - start).abs()
    ramped = (_translation_after(session, ict_model, 10, 1, 1e-3) - start).abs()
    moved = full > 5e-4  # coordinates whose gradient is not ~0
    assert bool(moved.any())
    assert full[moved].mean().item() == pytest.approx(1e-3, rel=0.05)
    assert (ramped[moved] / full[moved]).mean().item() == pytest.approx(0.1, rel=0.05)
    # two ramped steps go 1/10 + 2/10 of the rate when the gradient keeps its sign
    two = (_translation_after(session, ict_model, 10, 2, 1e-3) - start).abs()
    assert two[moved].max().item() <= 3e-4 * 1.05


def test_presets_ramp_and_the_legacy_fit_does_not():
    assert all(preset(n).lr_warmup == 20 for n in ("fast", "default", "best"))
    assert legacy("default").lr_warmup == 0
