"""The settings of a run from one place: the preset registry and ``--set STAGE.FIELD=VALUE``."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from mvrecon.config import PRESET_NAMES, PipelineConfig, pipeline_config, with_settings
from mvrecon.errors import MvreconError
from mvrecon.stages import STAGES


def test_every_stage_with_settings_has_its_typed_field_and_every_preset_fills_it():
    hints = typing.get_type_hints(PipelineConfig)
    for name in PRESET_NAMES:
        cfg = pipeline_config(name)
        for st in STAGES:
            if st.config is None:
                assert st.name not in hints
                continue
            assert hints[st.name] == st.config | None, st.name
            assert type(getattr(cfg, st.name)) is st.config, st.name
        assert cfg.fit.preset == name and cfg.texture.size == cfg.export.texture_size
    with pytest.raises(MvreconError, match="unknown preset 'quick' \\(choose from fast, default, best\\)"):
        pipeline_config("quick")


def test_set_parses_each_value_by_its_fields_type():
    cfg = pipeline_config("fast")
    new = with_settings(cfg, ["fit.crop_size=160", "fit.mode=per_view", "cues.overlay=false",
                              "cues.max_image_pixels=none", "texture.min_cos=0.25", "export.formats=glb,obj",
                              "detail.solve.dark_log=0.1,0.3", "cues.detect.tile_grids=2,4", "evaluate.compute_realy=yes",
                              "calibrate.world_frame=board", "refine.ratio=0.7"])
    assert new.fit.crop_size == 160 and new.fit.mode == "per_view" and new.cues.overlay is False
    assert new.cues.max_image_pixels is None and new.texture.min_cos == 0.25 and new.export.formats == ("glb", "obj")
    assert new.detail.solve.dark_log == (0.1, 0.3) and new.cues.detect.tile_grids == (2, 4)
    assert new.evaluate.compute_realy is True and new.calibrate.world_frame == "board" and new.refine.ratio == 0.7
    # nothing else changed, and the input is left as it was
    assert new.fit == dataclasses.replace(cfg.fit, crop_size=160, mode="per_view") and cfg.fit.crop_size == 192
    assert new.export.lods == cfg.export.lods and with_settings(cfg, []) == cfg
    # later assignments win
    assert with_settings(cfg, ["fit.seed=1", "fit.seed=2"]).fit.seed == 2
    # the export carries the texture stage's maps: its texture settings follow, unless set themselves
    small = with_settings(cfg, ["texture.size=512"])
    assert small.texture.size == 512 and small.export.texture_size == 512 and small.export.texture == small.texture
    mixed = with_settings(cfg, ["texture.size=512", "export.texture_size=256"])
    assert mixed.export.texture_size == 256 and mixed.export.texture == cfg.export.texture
    assert with_settings(cfg, ["export.lods=1"]).export.texture == cfg.texture


@pytest.mark.parametrize(("assignment", "message"), [
    ("fitt.crop_size=192", ("--set fitt.crop_size=192: unknown stage 'fitt' (stages with settings: calibrate, "
                            "refine, cues, fit, detail, texture, export, evaluate)")),
    ("ingest.format=x", "--set ingest.format=x: unknown stage 'ingest'"),
    ("fit.crop=192", "--set fit.crop=192: FitConfig has no setting 'crop' (its settings: preset, mode, crop_size"),
    ("fit.crop_size=19.2", "--set fit.crop_size=19.2: crop_size takes an integer, got '19.2'"),
    ("fit.mode=sideways", "--set fit.mode=sideways: mode takes one of 'auto', 'per_view', 'per_frame', got 'sideways'"),
    ("cues.overlay=maybe", "--set cues.overlay=maybe: overlay takes true or false, got 'maybe'"),
    ("detail.solve.dark_log=0.1", "--set detail.solve.dark_log=0.1: dark_log takes comma-separated values"),
    ("fit.crop_size.x=1", "--set fit.crop_size.x=1: 'crop_size' has no settings of its own"),
    ("fit.schedule=x", "--set fit.schedule=x: schedule cannot be set from the command line"),
    ("export.lods=2", "--set export.lods=2: LOD fractions must lie in (0, 1], got 2.0"),
    ("fit.crop_size", "--set fit.crop_size: expected STAGE.FIELD=VALUE, e.g. fit.crop_size=192"),
])
def test_set_refuses_an_unknown_stage_or_field_and_a_wrong_value_in_one_line(assignment, message):
    with pytest.raises(MvreconError) as e:
        with_settings(pipeline_config("fast"), [assignment])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_preset_choices_of_every_command_come_from_the_registry():
    import click

    from mvrecon.cli import main

    seen = 0
    for path in [("session", "run"), ("fit",), ("detail",), ("batch", "run"), ("bench", "run"), ("cues", "session")]:
        cmd = main
        for name in path:
            cmd = cmd.commands[name]
        opt = next(p for p in cmd.params if p.name in ("preset", "preset_name"))
        assert isinstance(opt.type, click.Choice) and tuple(opt.type.choices) == PRESET_NAMES, path
        seen += 1
    assert seen == 6
