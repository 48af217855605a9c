"""Shared data for the cues tests: the real photo in scikit-image, detected once per session."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # (512, 512, 3) uint8, ships with scikit-image (no download)


@pytest.fixture(scope="session")
def astronaut_cues(astronaut):
    from mvrecon.cues import detect

    cues = detect(astronaut)
    assert cues is not None, "no face found on skimage.data.astronaut()"
    return cues
