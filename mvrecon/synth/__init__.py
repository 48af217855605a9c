"""Synthetic rig sessions with ground truth: a known head (linear model + detail the model cannot
express), a procedural albedo, SH lighting and a studio rig with distorted cameras, rendered to a
complete session folder with a scan, ChArUco shots and per-view truth (see :mod:`.generate`)."""

from .config import SynthConfig, SynthResult
from .generate import GroundTruth, load_ground_truth, make_session

__all__ = ["GroundTruth", "SynthConfig", "SynthResult", "load_ground_truth", "make_session"]
