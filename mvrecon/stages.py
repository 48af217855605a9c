"""The pipeline's stages in run order, each the ``StageDef`` its package exports.

    ingest     validate the session against its rig, decode every photo once
    calibrate  ChArUco calibration from the session's board shots (or SfM from the first frame
               when there are none and the rig has no extrinsics): ``calibrate/rig.json``
    refine     per-session extrinsics refinement (``mvrecon session calibrate`` turns it on):
               ``refine/rig.json``
    cues       landmarks and part labels per view
    fit        the multi-view fit
    detail     the fine layer (wrinkles, pores) from the photos at full resolution
    texture    baked albedo, normal and displacement maps (with the fine layer)
    export     the game-ready asset ``export/head.glb``
    evaluate   against the session's scan, when it has one

A light module (the stage definitions import their implementations only when they run), so the
command line lists the stages without loading torch.
"""

from __future__ import annotations

from .calibrate.stagedef import CALIBRATE, REFINE
from .cues.stagedef import STAGE as CUES
from .detail.stagedef import STAGE as DETAIL
from .evaluate.stagedef import STAGE as EVALUATE
from .export.stagedef import STAGE as EXPORT
from .fit.stagedef import STAGE as FIT
from .ingest.stagedef import STAGE as INGEST
from .stagedef import StageDef
from .texture.stagedef import STAGE as TEXTURE

STAGES: tuple[StageDef, ...] = (INGEST, CALIBRATE, REFINE, CUES, FIT, DETAIL, TEXTURE, EXPORT, EVALUATE)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def stage(name: str) -> StageDef:
    """The stage called ``name`` (KeyError for another name)."""
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(name)


def dependents(name: str) -> list[str]:
    """``name`` and every stage whose inputs include its outputs, directly or not, in run order."""
    out = [name]
    for st in STAGES:
        if st.name not in out and any(u in out for u in st.upstream):
            out.append(st.name)
    return out
