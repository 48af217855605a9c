"""A small synthetic head (front-facing surface with iBUG-68 landmark vertices) that the importer
tests write in each upstream layout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

#: The read-only upstream ICT-FaceKit archive (as tools/setup.sh finds it).
ICT_ARCHIVE = Path(
    os.environ.get("MVRECON_ICT", Path(__file__).resolve().parents[3] / "shared/models/ict-facekit/FaceXModel.tar.xz")
)


def _ellipse(cx, cy, rx, ry, n, a0=0.0, a1=2 * np.pi, endpoint=False):
    a = np.linspace(a0, a1, n, endpoint=endpoint)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)


def landmark_template() -> np.ndarray:
    """(68, 2) iBUG-68 positions in metres, model space (x right = subject's left, y up)."""
    jaw = _ellipse(0.0, 0.02, 0.07, 0.10, 17, np.pi, 2 * np.pi, endpoint=True)  # from subject's right
    brow_r = np.stack([np.linspace(-0.058, -0.012, 5), 0.042 + 0.006 * np.sin(np.linspace(0, np.pi, 5))], 1)
    brow_l = brow_r[::-1] * [-1, 1]
    bridge = np.stack([np.zeros(4), np.linspace(0.028, -0.012, 4)], 1)
    nostrils = np.stack([np.linspace(-0.016, 0.016, 5), [-0.020, -0.023, -0.025, -0.023, -0.020]], 1)

    def eye(cx):
        # corners, two upper, corner, two lower (iBUG order, clockwise in the image)
        return np.array(
            [[cx - 0.016, 0.025], [cx - 0.008, 0.031], [cx + 0.008, 0.031], [cx + 0.016, 0.025],
             [cx + 0.008, 0.020], [cx - 0.008, 0.020]]
        )

    t = np.linspace(0, 1, 7)
    upper = np.stack([-0.026 + 0.052 * t, -0.045 + 0.010 * np.sin(np.pi * t)], 1)  # 48..54
    lower = np.stack([0.026 - 0.052 * t[1:6], -0.045 - 0.012 * np.sin(np.pi * t[1:6])], 1)  # 55..59
    outer = np.concatenate([upper, lower])
    ti = np.linspace(0, 1, 5)
    inner_up = np.stack([-0.018 + 0.036 * ti, -0.045 + 0.003 * np.sin(np.pi * ti)], 1)  # 60..64
    inner_lo = np.stack([0.018 - 0.036 * ti[1:4], -0.045 - 0.003 * np.sin(np.pi * ti[1:4])], 1)  # 65..67
    inner = np.concatenate([inner_up, inner_lo])
    lm = np.concatenate([jaw, brow_r, brow_l, bridge, nostrils, eye(-0.032), eye(0.032), outer, inner])
    return lm


@dataclass
class Head:
    verts: np.ndarray  # (N, 3) metres
    tris: np.ndarray  # (F, 3) int, 0-based, counter-clockwise from +Z
    lm68: np.ndarray  # (68,) vertex indices


def make_head(n: int = 60) -> Head:
    """A face-like surface: a grid plus the template landmarks as vertices, Delaunay-triangulated."""
    from scipy.spatial import Delaunay

    x, y = np.meshgrid(np.linspace(-0.09, 0.09, n), np.linspace(-0.13, 0.11, n))
    grid = np.stack([x.ravel(), y.ravel()], 1)
    tpl = landmark_template()
    far = np.min(((grid[:, None] - tpl[None]) ** 2).sum(-1), 1) > 0.0012**2
    pts = np.concatenate([tpl, grid[far]])
    lm = np.arange(68)
    r2 = (pts[:, 0] / 0.1) ** 2 + (pts[:, 1] / 0.15) ** 2
    z = 0.06 * np.sqrt(np.clip(1 - r2, 0, None))
    # a nose bump so the nose tip is in front of the eyes
    z += 0.025 * np.exp(-((pts[:, 0] / 0.012) ** 2 + ((pts[:, 1] + 0.005) / 0.02) ** 2))
    verts = np.concatenate([pts, z[:, None]], 1)
    tris = Delaunay(pts).simplices
    e1, e2 = pts[tris[:, 1]] - pts[tris[:, 0]], pts[tris[:, 2]] - pts[tris[:, 0]]
    cw = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0] < 0
    tris[cw] = tris[cw][:, ::-1]
    return Head(verts, tris.astype(np.int64), lm)


@pytest.fixture(scope="session")
def head() -> Head:
    return make_head()


@pytest.fixture(scope="session")
def ict_archive() -> Path:
    if not ICT_ARCHIVE.is_file():
        pytest.skip(f"ICT-FaceKit archive not found at {ICT_ARCHIVE}")
    return ICT_ARCHIVE
