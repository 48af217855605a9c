"""What a session report shows: plain dataclasses the pipeline fills in as far as it got.

Every field is optional, so a run that stopped after the fit still gets a report of what exists.
Paths point at files the stages wrote; the builder embeds them, it never links to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np

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
    files = [p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png") and not p.name.startswith(".")]
    return [Overlay(p, p.stem) for p in sorted(files)]
