"""The REALY parity pair: one prediction/scan pair with what the official REALY code gives on it
(``shared/realy-parity``: ``pair-example.npz`` and its README), and the ``realy`` protocol run on
it. Used by ``bench/eval.py --parity`` and tests/evaluate/test_eval_parity.py."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..regions import REGION_NAMES, Region
from .realy import ProtocolResult, RealyConfig, realy_protocol

#: What czh-98/REALY ``main.REALY_eval_all``, run verbatim in REALY's units (1 unit = 8.9 mm),
#: gives on ``pair-example.npz`` (mm; shared/realy-parity/README.md).
OFFICIAL_MM: dict[str, float] = {"nose": 0.934, "mouth": 1.533, "forehead": 1.989, "cheek": 0.377, "all": 1.209}


@dataclass(frozen=True)
class ParityPair:
    """The pair, metres: prediction ``pred_vertices`` ``(n, 3)``, ``pred_triangles`` ``(m, 3)``,
    ``pred_landmarks`` ``(68, 3)``; the scan's ``scan_landmarks`` ``(68, 3)`` and its four cut
    ``regions``."""

    pred_vertices: np.ndarray
    pred_triangles: np.ndarray
    pred_landmarks: np.ndarray
    scan_landmarks: np.ndarray
    regions: dict[str, Region]


def load_parity_pair(path: str | Path) -> ParityPair:
    """Read ``pair-example.npz`` (or a folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "pair-example.npz"
    if not p.is_file():
        raise InputError(f"REALY parity pair not found: {p}")
    d = np.load(p)
    regions = {
        n: Region(n, d[f"{n}_ids"].astype(np.int64), d[f"{n}_v"].astype(np.float64), d[f"{n}_f"].astype(np.int64))
        for n in REGION_NAMES
    }
    return ParityPair(
        d["pred_v"].astype(np.float64),
        d["pred_f"].astype(np.int64),
        d["pred_lm"].astype(np.float64),
        d["scan_lm"].astype(np.float64),
        regions,
    )


@dataclass(frozen=True)
class ParityResult:
    """``result`` the ``realy`` protocol on the pair; ``difference_pct`` per region and "all",
    ours against the official figure; ``wall_s`` and ``cpu_s`` the protocol's time."""

    result: ProtocolResult
    difference_pct: dict[str, float]
    wall_s: float
    cpu_s: float

    @property
    def max_region_pct(self) -> float:
        """Largest absolute region difference (%)."""
        return max(abs(self.difference_pct[n]) for n in REGION_NAMES)


def run_parity(pair: ParityPair, cfg: RealyConfig = RealyConfig()) -> ParityResult:
    """Run the ``realy`` protocol on the pair and compare it with :data:`OFFICIAL_MM`."""
    w0, c0 = time.perf_counter(), time.process_time()
    r = realy_protocol(
        pair.pred_vertices, pair.pred_triangles, pair.pred_landmarks, pair.regions, pair.scan_landmarks, cfg
    )
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    ours = {n: r.regions[n].mean_mm for n in REGION_NAMES}
    ours["all"] = r.all_mm
    diff = {k: float("nan") if v is None else 100.0 * (v / OFFICIAL_MM[k] - 1.0) for k, v in ours.items()}
    return ParityResult(r, diff, wall, cpu)
