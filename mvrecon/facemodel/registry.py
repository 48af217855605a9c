"""Finding models: a path to an ``.npz``, or a name looked up in ``$MVRECON_MODELS`` (an
``os.pathsep``-separated list of folders), then the user cache ``~/.cache/mvrecon/models``
(``$XDG_CACHE_HOME`` respected). Importers write to :func:`models_dir`: the first
``$MVRECON_MODELS`` folder when set, else the user cache."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import MvreconError
from ..io import check_name
from .model import FaceModel, load_model_file

ENV = "MVRECON_MODELS"


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mvrecon" / "models"


def search_dirs() -> list[Path]:
    """Folders searched for models by name, in order."""
    dirs = [Path(p).expanduser() for p in os.environ.get(ENV, "").split(os.pathsep) if p.strip()]
    return dirs + [_user_cache()]


def models_dir() -> Path:
    """The folder importers write to (not created here)."""
    return search_dirs()[0]


def model_path(name: str) -> Path | None:
    """Where the model ``name`` is found, or None (a name that is not a plain name is an error)."""
    check_name(name, "model name")
    for d in search_dirs():
        p = d / f"{name}.npz"
        if p.is_file():
            return p
    return None


def list_models() -> dict[str, Path]:
    """Every model name found (first match wins, as :func:`load_model` resolves it) -> its file."""
    out: dict[str, Path] = {}
    for d in search_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.npz")):
                out.setdefault(p.stem, p)
    return out


def load_model(name_or_path: str | os.PathLike) -> FaceModel:
    """Load a model by path (anything ending in ``.npz`` or an existing file) or by name."""
    s = str(name_or_path)
    p = Path(s).expanduser()
    if s.endswith(".npz") or p.is_file() or os.sep in s:
        return load_model_file(p)
    found = model_path(s)
    if found is None:
        where = ", ".join(str(d) for d in search_dirs())
        raise MvreconError(f"face model '{s}' not found (looked in {where}); import it with 'mvrecon model import'")
    return load_model_file(found)
