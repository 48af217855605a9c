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
from .errors import MvreconError
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


def stage_index(name: str | None, default: int) -> int:
    """The run-order index of stage ``name`` (``default`` for None); an unknown name is the user's
    error (:class:`~mvrecon.errors.MvreconError`)."""
    if name is None:
        return default
    if name not in STAGE_NAMES:
        raise MvreconError(f"unknown stage {name!r} (stages: {', '.join(STAGE_NAMES)})")
    return STAGE_NAMES.index(name)


def stale_after_failure(name: str) -> list[str]:
    """The stages whose outputs are no longer true when stage ``name`` failed: it and every stage
    made from it, in run order; the failed stage itself not when it keeps a per-item cache."""
    return [n for n in dependents(name) if not (n == name and stage(name).keeps_cache)]
