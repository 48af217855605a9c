"""The one interface of a pipeline stage: :class:`StageDef`, the :class:`Context` its ``run`` gets,
and the :class:`StageOutputs` contract through which other code finds what it wrote.

Each stage package exports its ``StageDef`` (``mvrecon/<package>/stagedef.py``, a light module:
the command line lists the stages without loading torch); :mod:`mvrecon.pipeline` runs them in
order, and :mod:`mvrecon.provenance` decides which are up to date. A stage never imports the
pipeline, and a consumer of a stage's files asks that stage's ``outputs`` for them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .config import PipelineConfig
    from .facemodel import FaceModel
    from .session import Session


log = logging.getLogger("mvrecon.pipeline")

_C = TypeVar("_C")


def stage_config(cfg: _C | None, stage: str) -> _C:
    """The settings of ``stage`` from the run's :class:`~mvrecon.config.PipelineConfig` (``cfg``,
    its field of that name), which :func:`~mvrecon.config.pipeline_config` fills for every stage;
    a ValueError (a programming error, not the user's) when a hand-built one holds none."""
    if cfg is None:
        raise ValueError(
            f"the run's PipelineConfig has no settings for the {stage} stage (make it with pipeline_config)"
        )
    return cfg


@dataclass
class Context:
    """What the stages of one run share: the session (with the rig currently in force), settings
    and the digests of the stages' outputs computed so far."""

    session: Session
    cfg: PipelineConfig
    force: bool = False
    digests: dict[str, str] = field(default_factory=dict)
    rig_stages: list[str] = field(default_factory=list)
    """The stages that wrote a rig and apply to this session, so far in the run."""
    _model: FaceModel | None = None

    @property
    def root(self) -> Path:
        return self.session.root

    def model(self) -> FaceModel:
        """The session's face model (``options.model``, default ``ict``), loaded once per run."""
        if self._model is None:
            from .facemodel import load_model

            self._model = load_model(self.session.options.get("model", "ict"))
        return self._model

    def model_file(self) -> Path | None:
        """The file of the session's face model (None when the registry has none)."""
        from .facemodel.registry import model_path

        name = str(self.session.options.get("model", "ict"))
        p = Path(name).expanduser()
        # a path (read, and hashed as a regular file) or a plain name looked up in the models folders
        return p if name.endswith(".npz") or os.sep in name or p.is_file() else model_path(name)

    def model_files(self) -> list[Path]:
        p = self.model_file()
        return [p] if p is not None else []

    def outputs_ready(self, st: StageDef, digest: str) -> None:
        """Stage ``st`` ran, was up to date or is used as it is: the digest of its outputs for the
        stages that read them, and its rig, when it writes one, in force for the later stages."""
        self.digests[st.name] = digest
        if st.writes_rig:
            self.rig_stages.append(st.name)
            self.session = self.session.in_force(self.rig_stages)
            log.info("rig in force: %s/rig.json", self.session.rig_source)

    def rel(self, p: Path) -> str:
        """``p`` relative to the session folder (POSIX), or as it is when outside it."""
        try:
            return Path(p).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(p)


@dataclass(frozen=True)
class StageOutputs:
    """What a stage promises to write in its folder, by role, and how to read it back.

    ``files`` maps a role (``"albedo"``, ``"summary"``) to a path relative to the stage folder,
    or to candidates tried in order, where a candidate may be a glob (``"detailed_*.obj"``)."""

    files: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    load: Callable[[Path], Any] | None = None
    """Reads the stage folder into the stage's typed result (:func:`mvrecon.fit.result.load_fit` ...)."""

    def path(self, stage_dir: Path, role: str) -> Path:
        """Where the file of ``role`` is (or would be) in ``stage_dir``; for candidates, the first
        that exists (the first candidate's path when none does)."""
        spec = self.files[role]
        if isinstance(spec, str):
            return Path(stage_dir) / spec
        return self.find(stage_dir, role) or Path(stage_dir) / spec[0]

    def find(self, stage_dir: Path, role: str) -> Path | None:
        """The existing file of ``role`` in ``stage_dir``, or None."""
        spec = self.files[role]
        for cand in (spec,) if isinstance(spec, str) else spec:
            if any(c in cand for c in "*?["):
                hits = sorted(p for p in Path(stage_dir).glob(cand) if p.is_file())
                if hits:
                    return hits[0]
            elif (Path(stage_dir) / cand).exists():
                return Path(stage_dir) / cand
        return None


def _always(ctx: Context) -> bool:
    return True


def _no_files(ctx: Context) -> list[Path]:
    return []


@dataclass(frozen=True, kw_only=True)
class StageDef:
    """One pipeline stage as data."""

    name: str
    """The stage's name, which is also its folder in the session."""
    run: Callable[[Context], Mapping[str, Any]]
    """Runs the stage (writing its folder) and returns its key numbers for the summary."""
    config: type | None = None
    """The type of its settings, which ``PipelineConfig.<name>`` holds (None: a stage without settings)."""
    settings: Callable[[Context], Any] | None = None
    """What the outputs depend on besides the inputs (a JSON-able value or dataclass); default:
    the stage's config."""
    inputs: Callable[[Context], Sequence[Path]] = _no_files
    """Files it reads (hashed), besides the upstream stages' outputs."""
    upstream: tuple[str, ...] = ()
    """Earlier stages whose outputs it reads (counted when they apply)."""
    reads_rig: bool = False
    """It reads the rig in force (``ctx.session.rig``), whose content is then one of its inputs."""
    writes_rig: bool = False
    """It writes ``<stage>/rig.json``, which is in force for the later stages (one of
    :data:`mvrecon.session.RIG_STAGES`)."""
    keeps_cache: bool = False
    """A failed run leaves the folder in place (without provenance, so nothing in it counts as a
    result): it holds a per-item cache the next run checks item by item (the cues of each view)."""
    applies: Callable[[Context], bool] = _always
    """Whether the stage has anything to do for this session."""
    not_applicable: str = ""
    """Why it does not, in a few words (shown in the summary)."""
    outputs: StageOutputs = field(default_factory=StageOutputs)
    """The files it writes, by role, and its loader."""

    def stage_config(self, ctx: Context) -> Any:
        """Its settings in this run (None for a stage without)."""
        return None if self.config is None else getattr(ctx.cfg, self.name)

    def settings_of(self, ctx: Context) -> Any:
        """What its outputs depend on besides the inputs (recorded in its provenance)."""
        return self.settings(ctx) if self.settings is not None else self.stage_config(ctx)

    def folder(self, session: Session) -> Path:
        return session.stage_dir(self.name)

    def load(self, session: Session) -> Any:
        """Its outputs in ``session`` read back by its loader."""
        if self.outputs.load is None:
            raise TypeError(f"stage {self.name} has no output loader")
        return self.outputs.load(self.folder(session))
