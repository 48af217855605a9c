"""What a session report shows: plain dataclasses filled in as far as a run got
(:func:`report_content`, from the stages' current outputs, found through their output contracts).

Every field is optional, so a run that stopped after the fit still gets a report of what exists.
Paths point at files the stages wrote; the builder embeds them, it never links to them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from ..session import Session
    from .build import ReportConfig

log = logging.getLogger("mvrecon.pipeline")

StageStatus = Literal["done", "skipped", "failed", "not run", "stale"]


@dataclass(frozen=True)
class StageRow:
    """One row of the summary table: a pipeline stage and its key numbers."""

    stage: str
    """Stage name, e.g. ``"fit"``."""
    status: StageStatus = "done"
    """What happened to the stage in this run."""
    seconds: float | None = None
    """Wall-clock time of the stage in seconds (None when not run)."""
    numbers: Mapping[str, float | int | str] = field(default_factory=dict)
    """Key figures by label, e.g. ``{"reprojection RMS (px)": 0.31}``; shown in insertion order."""
    note: str = ""
    """One line shown beside the numbers (e.g. the error of a failed stage)."""


@dataclass(frozen=True)
class Overlay:
    """One photo with the fitted mesh and part outlines drawn over it."""

    path: Path
    """JPEG or PNG file (usually ``SESSION/fit/overlays/<view>.jpg``)."""
    caption: str = ""
    """Short label under the image (view or camera name); the file stem when empty."""


@dataclass(frozen=True)
class ViewerMesh:
    """The mesh for the interactive 3D view.

    UVs are either per corner (``uvs`` (T, 2) indexed by ``uv_triangles`` (F, 3)) or per vertex
    (``uvs`` (N, 2), ``uv_triangles`` None). UVs follow the OBJ convention: v up, (0, 0) is the
    bottom-left corner of the texture image.
    """

    vertices: np.ndarray
    """(N, 3) float, metres, model space (+Y up, +Z out of the face)."""
    triangles: np.ndarray
    """(F, 3) int vertex indices, counter-clockwise seen from outside."""
    uvs: np.ndarray | None = None
    """(T, 2) or (N, 2) float texture coordinates in [0, 1]; None for an untextured mesh."""
    uv_triangles: np.ndarray | None = None
    """(F, 3) int indices into ``uvs`` per triangle corner; None when ``uvs`` is per vertex."""
    texture: Path | bytes | None = None
    """PNG/JPEG albedo image the UVs refer to: a file, or its encoded bytes (from a GLB)."""
    color: tuple[float, float, float] = (0.78, 0.72, 0.68)
    """sRGB colour in [0, 1] drawn where there is no texture."""
    name: str = ""
    """Part name shown in the viewer caption (e.g. ``eyes``)."""
    keep: np.ndarray | None = None
    """(F,) bool triangles kept at full resolution when the mesh is decimated for the viewer
    (e.g. the face region); None: the whole mesh is decimated evenly."""


@dataclass(frozen=True)
class ReportContent:
    """Everything a session report can show; all optional."""

    subject: str = ""
    """Subject or session name shown in the header."""
    provenance: Mapping[str, str] = field(default_factory=dict)
    """Header facts without dates (rig, cameras, mvrecon version, settings preset ...)."""
    stages: Sequence[StageRow] = ()
    """Summary table rows in pipeline order."""
    overlays: Sequence[Overlay | Path | str] = ()
    """Photos with the fitted mesh and part outlines."""
    texture: Path | None = None
    """Baked albedo texture (PNG)."""
    heatmap: Path | None = None
    """Scan error heatmap (PNG), when a scan was evaluated."""
    loss_curve: Path | None = None
    """Fit loss curve (PNG)."""
    metrics: Mapping[str, object] = field(default_factory=dict)
    """Metric name -> value; nested dicts become sections of the table."""
    mesh: ViewerMesh | Sequence[ViewerMesh] | None = None
    """Mesh (or parts: head, eyes, mouth, each with its own texture) for the 3D view; takes
    precedence over ``glb``."""
    glb: Path | None = None
    """Exported binary glTF; shown in the 3D view when ``mesh`` is None."""


def overlays_in(folder: str | Path) -> list[Overlay]:
    """The overlay images (``*.jpg``, ``*.jpeg``, ``*.png``) of a folder such as
    ``SESSION/fit/overlays``, sorted by name and captioned with the view key; [] when the folder
    does not exist (a run that stopped before the fit)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = [
        p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png") and not p.name.startswith(".")
    ]
    return [Overlay(p, p.stem) for p in sorted(files)]


# --------------------------------------------------------------------------------------------
# a session's report, from what its stages recorded


class _Outcome(Protocol):
    """What a report needs of a stage's outcome in a run (:class:`mvrecon.pipeline.StageOutcome`)."""

    @property
    def stage(self) -> str: ...
    @property
    def status(self) -> StageStatus: ...
    @property
    def seconds(self) -> float | None: ...
    @property
    def numbers(self) -> Mapping[str, Any]: ...
    @property
    def note(self) -> str: ...


class _Run(Protocol):
    """What a report needs of a run (:class:`mvrecon.pipeline.RunResult`)."""

    preset: str

    @property
    def stages(self) -> Sequence[_Outcome]: ...


def report_content(session: Session, res: _Run | None = None) -> ReportContent:
    """A :class:`ReportContent` from what the session's stages wrote, showing only current
    outputs (:func:`mvrecon.provenance.current_stages`; given ``res``, the run just made, not the
    stages that failed in it); a stage whose folder holds anything else is "stale". The files come
    from each stage's outputs contract."""
    from .. import __version__
    from ..errors import InputError
    from ..io import read_json
    from ..provenance import current_stages
    from ..stages import STAGE_NAMES, stage

    root = session.root
    failed = [o.stage for o in res.stages if o.status == "failed"] if res is not None else []
    current = current_stages(root, STAGE_NAMES, failed)

    def stale(name: str) -> bool:
        return name not in current and (root / name).is_dir()

    def output(name: str, role: str) -> Path | None:
        """The current file of ``role`` of stage ``name``, None when missing or not current."""
        if name not in current:
            return None
        p = stage(name).outputs.find(stage(name).folder(session), role)
        return p if p is not None and p.is_file() else None

    rows = []
    if res is not None:
        for o in res.stages:
            status, note = o.status, o.note
            if status in ("done", "skipped", "not run") and stale(o.stage):
                status, note = "stale", "outputs made from inputs that are no longer current; not shown"
            rows.append(
                StageRow(o.stage, status, o.seconds, {k: v for k, v in o.numbers.items() if v is not None}, note)
            )
    else:  # a report outside a run: what the recorded provenance says
        for name in STAGE_NAMES:
            if name in current:
                prov = current[name]
                rows.append(StageRow(name, "done", prov.seconds, dict(prov.numbers), "recorded in provenance.json"))
            elif stale(name):
                rows.append(StageRow(name, "stale", None, {}, "outputs not current (run the session again); not shown"))
    metrics: dict[str, Any] = {}
    for name in ("calibrate", "refine", "fit", "detail", "texture", "export"):
        recorded = current.get(name)
        if recorded is not None and recorded.numbers:
            metrics[name] = dict(recorded.numbers)
    ev = output("evaluate", "metrics")
    if ev is not None:
        with contextlib.suppress(InputError):
            metrics["evaluate"] = eval_metrics(read_json(ev))
    fit_summary = output("fit", "summary")
    if fit_summary is not None:
        with contextlib.suppress(InputError):
            summary = read_json(fit_summary)
            losses = summary.get("final_losses", {}) if isinstance(summary, dict) else {}
            if losses:
                metrics["fit losses (final)"] = losses
    fit = stage("fit")
    return ReportContent(
        subject=session.subject,
        provenance={
            "session": root.name,
            "rig": f"{session.rig.name} ({len(session.rig)} cameras)",
            "views": str(len(session.views())),
            "mvrecon": __version__,
            **({"preset": res.preset} if res is not None else {}),
        },
        stages=rows,
        overlays=overlays_in(fit.outputs.path(fit.folder(session), "overlays")) if "fit" in current else [],
        texture=output("texture", "albedo"),
        heatmap=output("evaluate", "heatmap"),
        loss_curve=output("fit", "losses"),
        metrics=metrics,
        glb=output("export", "glb"),
    )


def _section(d: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``d[key]`` when it is a mapping, else an empty one."""
    v = d.get(key)
    return v if isinstance(v, Mapping) else {}


def eval_metrics(d: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of the evaluate stage's ``metrics.json`` a person reads first."""
    from ..evaluate import REALY_NOT_COMPUTED
    from ..evaluate.report import PROTOCOL_TITLES

    out: dict[str, Any] = {}
    if not isinstance(d, Mapping):
        return out

    def regions(p: Mapping[str, Any]) -> dict[str, Any]:
        return {k[:-3]: v for k, v in p.items() if k.endswith("_mm") and k != "all_mm"}

    # metrics.json before the robust protocol had one "realy" protocol
    head = d.get("headline") if isinstance(d.get("headline"), Mapping) else d.get("realy")
    name = PROTOCOL_TITLES.get(head.get("protocol", ""), "REALY") if isinstance(head, Mapping) else ""
    if isinstance(head, Mapping):
        if head.get("all_mm") is not None:
            out[f"{name} all (mm), headline"] = head["all_mm"]
        if regions(head):
            out[f"{name} regions (mm)"] = regions(head)
    for key, title in PROTOCOL_TITLES.items():
        p = d.get(key)
        if isinstance(p, Mapping) and isinstance(head, Mapping) and key != head.get("protocol"):
            out[f"{title} (mm)"] = {**regions(p), "all": p.get("all_mm")}
    # the realy protocol runs on request; metrics.json then lacks its key (older ones always have it)
    if "realy" not in d and isinstance(head, Mapping) and head.get("protocol") != "realy":
        out[f"{PROTOCOL_TITLES['realy']} (mm)"] = REALY_NOT_COMPUTED
    lm = _section(d, "landmarks")
    if isinstance(lm.get("gap_median_mm"), Mapping):
        out["landmark gap after the 7-point alignment, median (mm)"] = dict(lm["gap_median_mm"])
    if lm.get("warning"):
        out["warning"] = lm["warning"]
    now = _section(d, "now")
    if now:
        out["NoW (mm)"] = {k[:-3]: v for k, v in now.items() if k.endswith("_mm")}
    chamfer = _section(d, "chamfer")
    if chamfer.get("symmetric_mm") is not None:
        out["Chamfer, symmetric (mm)"] = chamfer["symmetric_mm"]
    for k, v in d.items():
        if k.startswith("fscore_") and isinstance(v, Mapping) and "f" in v:
            out[f"F-score @ {k[len('fscore_') :]}"] = v["f"]
    if d.get("normal_consistency") is not None:
        out["normal consistency"] = d["normal_consistency"]
    return out


def write_session_report(session: Session, res: _Run | None = None, cfg: ReportConfig | None = None) -> Path:
    """Build ``SESSION/report.html`` from what exists (see :func:`report_content`)."""
    from .build import ReportConfig, build_report

    return build_report(session.root, report_content(session, res), cfg or ReportConfig())


def report_after_run(root: Path, session: Session | None, res: _Run) -> Path | None:
    """The report at the end of a run on the session at ``root`` (``session`` None: it did not
    load): ``SESSION/report.html`` rewritten from what exists, or None. Bad input on a first run:
    nothing at all is written; on a re-run the earlier report would show results of inputs that are
    gone: rewritten (all stale) when the session loads, else moved aside (``report.stale.html``).
    A report problem is logged, never raised: it must not hide the run's outcome."""
    from ..errors import MvreconError
    from ..stages import STAGE_NAMES
    from .build import REPORT_NAME

    ingested = any(o.stage == STAGE_NAMES[0] and o.status in ("done", "skipped") for o in res.stages)
    old = root / REPORT_NAME
    if session is not None and (ingested or old.is_file()):
        try:
            return write_session_report(session, res)
        except MvreconError as e:
            log.warning("report not written: %s", e)
    elif session is None and old.is_file() and not old.is_symlink():
        with contextlib.suppress(OSError):
            os.replace(old, root / "report.stale.html")
            log.info("moved the previous report aside (report.stale.html): the session no longer loads")
    return None
