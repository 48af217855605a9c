"""Provenance: what made a stage's outputs, and whether they are still up to date.

A stage's ``<stage>/provenance.json`` records its settings, the library versions, the hashes of
its inputs (files, the upstream stages' output digests, the rig in force when it reads it) and of
its outputs. Equal keys mean equal outputs: a stage whose key and outputs are unchanged is
skipped. The record is written last (atomically), so its presence means the stage finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, MvreconError
from .io import read_json, refuse_symlink, sha256_file, write_json

if TYPE_CHECKING:
    from .stagedef import Context, StageDef

log = logging.getLogger("mvrecon.pipeline")

PROVENANCE_FILE = "provenance.json"
PROVENANCE_FORMAT = "mvrecon-provenance/1"


def _canonical(obj: Any) -> str:
    def default(o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        if isinstance(o, Path):
            return str(o)
        if hasattr(o, "tolist"):
            return o.tolist()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    return json.dumps(obj, sort_keys=True, default=default, separators=(",", ":"))


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (dataclasses, tuples, paths, numpy converted), order kept."""
    return json.loads(json.dumps(obj, default=lambda o: json.loads(_canonical(o))))


def sha256_json(obj: Any) -> str:
    """sha256 of ``obj``'s canonical JSON (keys sorted, dataclasses as dicts)."""
    return hashlib.sha256(_canonical(obj).encode()).hexdigest()


def is_tmp(name: str) -> bool:
    """A temporary an atomic writer makes (``.<name>.tmp-*``)."""
    return name.startswith(".") and ".tmp-" in name


def output_hashes(stage_dir: Path) -> dict[str, str]:
    """sha256 of every file under a stage folder (relative POSIX paths), without the provenance
    file and temporaries."""
    out: dict[str, str] = {}
    if stage_dir.is_symlink() or not stage_dir.is_dir():
        return out
    for p in sorted(stage_dir.rglob("*")):
        rel = p.relative_to(stage_dir)
        if any(is_tmp(part) for part in rel.parts):
            continue
        # the stages write no links: one found here was planted, and is neither followed nor trusted
        refuse_symlink(p, "a file in a stage folder")
        if p.is_file() and rel.as_posix() != PROVENANCE_FILE:
            out[rel.as_posix()] = sha256_file(p)
    return out


def versions() -> dict[str, str]:
    """The library versions a stage's outputs depend on."""
    import numpy
    import torch

    from . import __version__

    return {"mvrecon": __version__, "torch": torch.__version__, "numpy": numpy.__version__}


@dataclass(frozen=True)
class Provenance:
    """What made a stage's outputs (``<stage>/provenance.json``)."""

    stage: str
    key: str
    """sha256 over settings, versions and input hashes: equal keys, equal outputs."""
    settings: Mapping[str, Any]
    versions: Mapping[str, str]
    inputs: Mapping[str, str]
    """Input name (a file relative to the session, or ``stage:<name>``) -> sha256."""
    outputs: Mapping[str, str]
    """Output file (relative to the stage folder) -> sha256."""
    numbers: Mapping[str, Any]
    """The stage's key numbers for the summary."""
    seconds: float

    @property
    def outputs_digest(self) -> str:
        return sha256_json(dict(self.outputs))

    def to_dict(self) -> dict[str, Any]:
        return {"format": PROVENANCE_FORMAT, **dataclasses.asdict(self)}


def read_provenance(stage_dir: Path) -> Provenance | None:
    """The recorded provenance, or None when missing or unreadable (the stage then runs again)."""
    path = stage_dir / PROVENANCE_FILE
    if stage_dir.is_symlink() or path.is_symlink() or not path.is_file():
        return None
    try:
        d = read_json(path)
        if d.get("format") != PROVENANCE_FORMAT:
            return None
        return Provenance(
            d["stage"],
            d["key"],
            d["settings"],
            d["versions"],
            d["inputs"],
            d["outputs"],
            d.get("numbers", {}),
            float(d.get("seconds", 0.0)),
        )
    except (InputError, KeyError, TypeError, AttributeError, ValueError):
        return None


def input_hashes(ctx: Context, st: StageDef) -> dict[str, str]:
    """The hashes of what ``st`` reads: its files, the upstream stages' outputs so far in the run,
    and the content of the rig in force when it reads the rig."""
    hashes: dict[str, str] = {}
    for p in st.inputs(ctx):
        hashes[ctx.rel(p)] = ctx.digests.get(f"file:{p}") or sha256_file(p)
        ctx.digests[f"file:{p}"] = hashes[ctx.rel(p)]
    for up in st.upstream:
        if up in ctx.digests:
            hashes[f"stage:{up}"] = ctx.digests[up]
    if st.reads_rig:
        # the rig in force (the session's, or a calibrated / refined one): its content counts
        hashes["rig"] = sha256_json(ctx.session.rig.to_dict())
    return hashes


def stage_key(name: str, settings: Any, vers: Mapping[str, str], inputs: Mapping[str, str]) -> str:
    """The key of a stage's outputs: equal keys, equal outputs."""
    return sha256_json({"stage": name, "settings": settings, "versions": vers, "inputs": inputs})


@dataclass(frozen=True)
class StageKey:
    """What a stage's outputs are made from in this run (settings, library versions, input hashes)
    and their key (:func:`stage_key`)."""

    stage: str
    settings: Any
    versions: Mapping[str, str]
    inputs: Mapping[str, str]
    key: str

    @classmethod
    def of(cls, ctx: Context, st: StageDef) -> StageKey:
        settings, vers, inputs = st.settings_of(ctx), versions(), input_hashes(ctx, st)
        return cls(st.name, settings, vers, inputs, stage_key(st.name, settings, vers, inputs))

    def record(self, stage_dir: Path, numbers: Mapping[str, Any], seconds: float) -> Provenance:
        """Write ``<stage>/provenance.json`` for the outputs the stage just made in ``stage_dir``
        (call it last: its presence means the stage finished)."""
        prov = Provenance(
            self.stage,
            self.key,
            jsonable(self.settings),
            self.versions,
            self.inputs,
            output_hashes(stage_dir),
            jsonable(numbers),
            round(seconds, 3),
        )
        write_json(stage_dir / PROVENANCE_FILE, prov.to_dict())
        return prov


def outputs_digest(stage_dir: Path, prov: Provenance | None) -> str:
    """The digest of a stage's outputs: the recorded one (``prov``), else that of what its folder holds."""
    return prov.outputs_digest if prov is not None else sha256_json(output_hashes(stage_dir))


def up_to_date(stage_dir: Path, key: str) -> Provenance | None:
    """The recorded provenance when it has ``key`` and the outputs are still the recorded ones."""
    prov = read_provenance(stage_dir)
    if prov is None or prov.key != key:
        return None
    if output_hashes(stage_dir) != dict(prov.outputs):
        log.info("%s: outputs changed since they were made; running again", prov.stage)
        return None
    return prov


def current_stages(root: Path, names: Iterable[str], failed: Iterable[str] = ()) -> dict[str, Provenance]:
    """The stages (of ``names``, in run order) whose outputs are current, with their provenance:
    recorded as finished, outputs unchanged since, made from the current outputs of every upstream
    stage they read, and not in ``failed``. Everything else a stage folder holds is stale."""
    failed = set(failed)
    out: dict[str, Provenance] = {}
    for name in names:
        sdir = root / name
        prov = read_provenance(sdir)
        if prov is None or name in failed:
            continue
        try:
            if output_hashes(sdir) != dict(prov.outputs):
                continue
        except MvreconError:  # a link or special file planted among the outputs
            continue
        ups = {k[len("stage:") :]: v for k, v in prov.inputs.items() if k.startswith("stage:")}
        if all(u in out and out[u].outputs_digest == d for u, d in ups.items()):
            out[name] = prov
    return out


STALE_SUFFIX = ".stale"


def move_aside(root: Path, names: Sequence[str]) -> list[Path]:
    """Move the folders of stages whose outputs are no longer true (a stage that failed, and the
    stages made from it) to ``<stage>.stale/`` (replacing an older one), so no stale head, texture
    or score is left where a current one would be. Links are never followed or moved."""
    moved = []
    for name in names:
        sdir = root / name
        if sdir.is_symlink() or not sdir.is_dir():
            continue
        dest = root / f"{name}{STALE_SUFFIX}"
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.is_dir():
            shutil.rmtree(dest)
        os.replace(sdir, dest)
        moved.append(dest)
    return moved


def clean_temporaries(root: Path, names: Sequence[str]) -> list[Path]:
    """Remove the temporary files and folders an interrupted writer left (``.<name>.tmp-*``) in the
    session folder and the folders of the stages ``names``; call it only while holding the session lock."""
    removed = []
    dirs = [root] + [root / n for n in names] + [root / n / "overlays" for n in names]
    for d in dirs:
        if d.is_symlink() or not d.is_dir():  # never reach through a link
            continue
        for p in d.iterdir():
            if is_tmp(p.name):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
                removed.append(p)
    return removed
