"""Shared fixtures. Tests build their data in tmp_path and never download anything."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def ict_model():
    """The imported ICT-FaceKit model (``tools/setup.sh`` imports it). Missing on a developer's
    machine: skipped; missing in CI: an error, so a broken import can never pass silently."""
    from mvrecon.errors import MvreconError
    from mvrecon.facemodel import load_model

    try:
        return load_model("ict")
    except MvreconError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"ICT face model not imported ({e})")


@pytest.fixture(scope="session")
def ict_embedding(ict_model):
    """The MediaPipe landmark embedding of the ICT model (``tools/setup.sh`` makes it with
    ``mvrecon model embed``): skipped when missing on a developer's machine, an error in CI."""
    from mvrecon.cues.embedding import find_embedding

    emb = find_embedding(ict_model)
    if emb is None:
        if os.environ.get("CI"):
            raise RuntimeError("the ICT landmark embedding is missing: tools/setup.sh should have made it")
        pytest.skip("ICT landmark embedding not made (mvrecon model embed ict)")
    return emb


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of a headless-capable Chromium (see tests/browser.py): skipped when missing, an error in CI."""
    from browser import find_chromium

    return find_chromium()
