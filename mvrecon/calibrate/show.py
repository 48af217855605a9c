"""Text and picture summaries of a rig: cameras, baselines (mm), last calibration errors, and a
PNG of the layout (top and side views with camera frustums and names)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cameras import Rig
from ..io import write_bytes


def baselines_mm(rig: Rig) -> np.ndarray:
    """(C, C) distances between camera centres, millimetres."""
    c = np.array([cam.center for cam in rig.cameras])
    return 1000.0 * np.linalg.norm(c[:, None] - c[None], axis=-1)


def describe_rig(rig: Rig) -> str:
    """Cameras, baselines and the last calibration's errors as text tables."""
    lines = [
        f"rig {rig.name!r}: {len(rig)} cameras"
        + (
            f", board {rig.board.squares_x}x{rig.board.squares_y} "
            f"{rig.board.square_length * 1000:g} mm {rig.board.dictionary}"
            if rig.board
            else ""
        )
    ]
    lines.append(
        f"{'camera':<10} {'size':>10} {'fx':>9} {'fy':>9} {'cx':>8} {'cy':>8} {'k1':>8} {'k2':>8} "
        f"{'centre x,y,z (mm)':>26}"
    )
    for c in rig.cameras:
        d = np.zeros(2)
        d[: min(2, c.dist.size)] = c.dist[:2]
        x, y, z = 1000 * c.center
        lines.append(
            f"{c.name:<10} {c.width:>4}x{c.height:<5} {c.K[0, 0]:9.2f} {c.K[1, 1]:9.2f} {c.K[0, 2]:8.2f} "
            f"{c.K[1, 2]:8.2f} {d[0]:8.4f} {d[1]:8.4f} {x:8.1f},{y:8.1f},{z:8.1f}"
        )
    if len(rig) > 1:
        B = baselines_mm(rig)
        w = max(8, max(len(n) for n in rig.names) + 1)
        lines.append("baselines (mm)")
        lines.append(" " * w + "".join(f"{n:>{w}}" for n in rig.names))
        for n, row in zip(rig.names, B):
            lines.append(f"{n:<{w}}" + "".join(f"{v:>{w}.1f}" for v in row))
    cal = rig.meta.get("calibration") if isinstance(rig.meta, dict) else None
    if isinstance(cal, dict):
        lines.append(f"last calibration: {cal.get('method', '?')}, RMS {cal.get('rms_px', float('nan')):.3f} px")
        for name, e in (cal.get("cameras") or {}).items():
            if isinstance(e, dict) and "rms_px" in e:
                lines.append(
                    f"  {name:<10} rms {e['rms_px']:.3f} px  max {e.get('max_px', float('nan')):.3f} px  "
                    f"corners {e.get('n_corners', '-')}"
                )
    else:
        lines.append("last calibration: none recorded")
    return "\n".join(lines)


def _frustum(cam, depth: float) -> np.ndarray:
    """(5, 3) world points: centre and the four image corners at ``depth`` metres."""
    px = np.array([[0, 0], [cam.width - 1, 0], [cam.width - 1, cam.height - 1], [0, cam.height - 1]], float)
    xn = (px - cam.K[:2, 2]) / np.diag(cam.K)[:2]
    pc = np.concatenate([xn * depth, np.full((4, 1), depth)], 1)
    R, t = cam.R, cam.t
    return np.concatenate([cam.center[None], (pc - t) @ R])


def plot_rig(rig: Rig, path: str | Path) -> Path:
    """Write a PNG with a top view (X-Z) and a side view (Z-Y) of the cameras."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centers = np.array([c.center for c in rig.cameras])
    span = float(np.ptp(centers, axis=0).max()) if len(rig) > 1 else 1.0
    depth = max(0.05, 0.15 * span)
    fig, axes = plt.subplots(1, 2, figsize=(12, 6))
    for ax, (i, j), title in (
        (axes[0], (0, 2), "top view (X right, Z out of the face)"),
        (axes[1], (2, 1), "side view (Z, Y up)"),
    ):
        for cam in rig.cameras:
            f = _frustum(cam, depth)
            for k in range(1, 5):
                ax.plot([f[0, i], f[k, i]], [f[0, j], f[k, j]], "-", color="tab:blue", lw=0.8)
            ring = f[[1, 2, 3, 4, 1]]
            ax.plot(ring[:, i], ring[:, j], "-", color="tab:blue", lw=0.8)
            ax.annotate(cam.name, (f[0, i], f[0, j]), fontsize=8, xytext=(3, 3), textcoords="offset points")
        ax.plot(centers[:, i], centers[:, j], "o", color="tab:red", ms=3)
        ax.plot([0], [0], "+", color="k", ms=10)
        ax.set_xlabel("XYZ"[i] + " (m)")
        ax.set_ylabel("XYZ"[j] + " (m)")
        ax.set_title(title)
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
    fig.suptitle(f"rig {rig.name} ({len(rig)} cameras)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return write_bytes(path, buf.getvalue())
