"""A small synthetic session with a known fine layer and a fit made from its ground truth (the
true identity, expression, pose, mid layer and light, no fine layer): what the detail stage must
add is exactly the truth's fine map."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvrecon.synth.truthfit import write_truth_fit


@pytest.fixture(scope="session")
def detail_session(tmp_path_factory, ict_model) -> Path:
    """3 cameras at 1024x768, deeper grooves (0.5 mm) so a small, fast grid still resolves them."""
    from mvrecon.synth import SynthConfig, make_session

    root = tmp_path_factory.mktemp("detail") / "session"
    make_session(
        root,
        SynthConfig(
            seed=3, cameras=3, width=1024, height=768, board=False, supersample=1, fine_amplitude_mm=0.5, scan_holes=0
        ),
        model=ict_model,
    )
    write_truth_fit(root, ict_model)
    return root


@pytest.fixture(scope="session")
def detail_session_2f(tmp_path_factory, ict_model) -> Path:
    """The same head in two frames (two expressions and poses), 3 cameras each, with a fit made of
    the truth of both frames (one expression group per frame)."""
    from mvrecon.synth import SynthConfig, make_session

    root = tmp_path_factory.mktemp("detail2f") / "session"
    make_session(
        root,
        SynthConfig(
            seed=3,
            cameras=3,
            frames=2,
            width=1024,
            height=768,
            board=False,
            supersample=1,
            fine_amplitude_mm=0.5,
            scan_holes=0,
        ),
        model=ict_model,
    )
    write_truth_fit(root, ict_model, frames=0)
    return root
