"""The calibrate and refine stages as data (:class:`~mvrecon.stagedef.StageDef`)."""

from __future__ import annotations

from ..stagedef import StageDef, StageOutputs
from .charuco import CharucoConfig
from .refine import RefineConfig
from .stage import (
    calib_files,
    calibrate_applies,
    refine_requested,
    run_calibrate,
    run_refine,
)

CALIBRATE = StageDef(
    name="calibrate",
    config=CharucoConfig,
    run=run_calibrate,
    applies=calibrate_applies,
    not_applicable="no board shots, the rig has extrinsics",
    inputs=calib_files,
    upstream=("ingest",),
    reads_rig=True,
    writes_rig=True,
    outputs=StageOutputs(files={"rig": "rig.json", "report": "calibration.json"}),
)

REFINE = StageDef(
    name="refine",
    config=RefineConfig,
    run=run_refine,
    applies=refine_requested,
    not_applicable="not asked for (mvrecon session calibrate)",
    upstream=("ingest", "calibrate"),
    reads_rig=True,
    writes_rig=True,
    outputs=StageOutputs(files={"rig": "rig.json", "report": "refine.json"}),
)
