"""``mvrecon model``: import, list, inspect and fetch face models."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from ..errors import MvreconError
from ..io import check_name

KINDS = ("ict", "bfm", "bfm-front", "faceverse", "flame")


@click.group()
def model() -> None:
    """Face models: import upstream files once, then use them by name."""


def _import(kind: str, path: Path, name: str, landmarks: Path | None):
    from ..errors import InputError
    from ..io import MAX_MODEL_BYTES, regular_file

    for p in (path, landmarks):
        if p is not None and not Path(p).is_dir():  # a device or FIFO would be read forever
            regular_file(p, "model file", MAX_MODEL_BYTES)
    try:
        return _import_kind(kind, path, name, landmarks)
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        OverflowError,
        MemoryError,
        RecursionError,
    ) as e:
        # the importers check what they expect; anything else a malformed file trips is still one line
        raise InputError(f"not a readable {kind} model file ({e.__class__.__name__}: {str(e)[:200]})", path) from None


def _import_kind(kind: str, path: Path, name: str, landmarks: Path | None):
    from ..facemodel import ict, importers

    if kind == "ict":
        return ict.import_ict(path, name=name)
    if kind == "bfm":
        return importers.import_bfm2009(path, name=name, landmarks=landmarks)
    if kind == "bfm-front":
        return importers.import_bfm_front(path, name=name)
    if kind == "faceverse":
        return importers.import_faceverse(path, name=name)
    return importers.import_flame(path, name=name, landmarks=landmarks)


def _save(m, force: bool) -> Path:
    from ..facemodel.registry import models_dir

    out = models_dir() / f"{m.name}.npz"
    if out.exists() and not force:
        raise MvreconError(f"model '{m.name}' already exists (use --force to replace it)", out)
    return m.save(out)


@model.command("import")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Model name (default: the kind).")
@click.option("--force", is_flag=True, help="Replace an existing model of that name.")
@click.option(
    "--landmarks",
    type=click.Path(path_type=Path),
    default=None,
    help="68 iBUG vertex indices (0-based, .txt or .npy) for models without their own (BFM 2009, FLAME).",
)
def import_cmd(kind: str, path: Path, name: str | None, force: bool, landmarks: Path | None) -> None:
    """Convert upstream model files at PATH into mvrecon's .npz (in $MVRECON_MODELS or the cache)."""
    from ..facemodel.registry import models_dir

    name = check_name(name or kind, "model name")
    target = models_dir() / f"{name}.npz"
    if target.exists() and not force:
        raise MvreconError(f"model '{name}' already exists (use --force to replace it)", target)
    t0 = time.perf_counter()
    m = _import(kind, path, name, landmarks)
    out = _save(m, force)
    click.echo(
        f"imported {kind} as '{name}': {m.n_vertices} vertices, {len(m.triangles)} triangles, "
        f"{m.n_id} identity / {m.n_exp} expression modes -> {out} ({time.perf_counter() - t0:.1f} s)"
    )


@model.command("list")
def list_cmd() -> None:
    """List the models found, by name."""
    from ..facemodel import list_models
    from ..facemodel.registry import search_dirs

    found = list_models()
    if not found:
        click.echo("no face models (looked in " + ", ".join(str(d) for d in search_dirs()) + ")")
    for n, p in found.items():
        click.echo(f"{n}\t{p}")


@model.command("info")
@click.argument("name")
def info_cmd(name: str) -> None:
    """Counts, modes, parts, regions, sub-meshes, source and license of a model."""
    from ..facemodel import load_model
    from ..parts import PART_NAMES

    m = load_model(name)
    lines = [
        f"name: {m.name}",
        f"vertices: {m.n_vertices}",
        f"triangles: {len(m.triangles)}",
        f"uvs: {len(m.uvs)}",
        f"identity modes: {m.n_id}",
        f"expression modes: {m.n_exp} ({m.exp_kind}), expression names: {len(m.exp_names)}",
        "parts: " + ", ".join(f"{p} {int((m.part_labels == c).sum())}" for c, p in enumerate(PART_NAMES) if c),
        f"forehead: {int(m.forehead.sum())} vertices",
        "regions: " + ", ".join(f"{k} {len(v)}" for k, v in m.regions.items()),
        "submeshes: " + ", ".join(f"{k} [{a}:{b})" for k, (a, b) in m.submeshes.items()),
        f"source: {m.source}",
        "license: " + (m.license.strip().splitlines() or [""])[0],
    ]
    if m.extras:
        lines.append("extras: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in m.extras.items()))
    click.echo("\n".join(lines))


@model.command("embed")
@click.argument("name", default="ict")
@click.option("--seeds", default=8, show_default=True, help="Synthetic sessions to render (seeds 1000, 1001, ...).")
@click.option("--cameras", default=6, show_default=True, help="Cameras per session (frontal to ~60 degrees).")
@click.option("--force", is_flag=True, help="Replace an existing embedding.")
def embed_cmd(name: str, seeds: int, cameras: int, force: bool) -> None:
    """Measure where MediaPipe's 478 points lie on model NAME (see mvrecon.cues.embedding).

    Renders synthetic sessions of the model, runs MediaPipe on every view and writes
    NAME.mediapipe.npz beside the model. The 'model' face parser and the fit's dense landmarks
    use it. About 25 s for the defaults."""
    import numpy as np

    from ..cues.embedding import embedding_path
    from ..facemodel import load_model
    from ..synth.embed import build_embedding

    out = embedding_path(name)
    if out.exists() and not force:
        raise MvreconError("embedding exists (use --force to replace it)", out)
    m = load_model(name)
    t0 = time.perf_counter()
    emb = build_embedding(m, seeds=range(1000, 1000 + seeds), cameras=cameras)
    emb.save(out)
    s = emb.spread_mm
    click.echo(
        f"wrote {out} in {time.perf_counter() - t0:.1f} s: 478 points from {int(emb.n_obs.max())} views at most; "
        f"spread on the mean shape median {np.median(s):.2f} mm, 90th percentile {np.percentile(s, 90):.2f} mm"
    )


@model.command("fetch")
@click.argument("kind", type=click.Choice(["ict"]))
@click.option("--url", default=None, help="Archive URL (default: ICT-FaceKit's GitHub master.zip).")
@click.option("--name", default="ict", help="Model name.")
@click.option("--force", is_flag=True, help="Replace an existing model of that name.")
def fetch_cmd(kind: str, url: str | None, name: str, force: bool) -> None:
    """Download ICT-FaceKit (needs internet; ~400 MB) and import it."""
    import shutil
    import urllib.error
    import urllib.request

    from ..facemodel.ict import UPSTREAM_URL, import_ict
    from ..facemodel.registry import models_dir

    url = url or UPSTREAM_URL
    target = models_dir() / f"{check_name(name, 'model name')}.npz"
    if target.exists() and not force:
        raise MvreconError(f"model '{name}' already exists (use --force to replace it)", target)
    with tempfile.TemporaryDirectory(prefix="mvrecon-fetch-") as tmp:
        archive = Path(tmp) / "ict-facekit.zip"
        click.echo(f"downloading {url} ...")
        try:
            with urllib.request.urlopen(url, timeout=60) as r, archive.open("wb") as f:
                shutil.copyfileobj(r, f, length=1 << 20)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise MvreconError(
                f"cannot download {url} ({reason}); offline? import a local copy with 'mvrecon model import ict PATH'"
            ) from None
        m = import_ict(archive, name=name)
        out = _save(m, force)
    click.echo(f"fetched and imported ICT-FaceKit as '{name}' -> {out}")


COMMANDS = [model]
