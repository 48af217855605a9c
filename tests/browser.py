"""Headless Chromium helpers for the report tests (tests/report, tests/pipeline).

Needs the Debian package ``chromium`` (``tools/setup.sh`` installs it); the ``chromium`` fixture
(in tests/conftest.py) skips with the reason when it is missing on a developer's machine and is an
error in CI, so a missing browser never passes silently.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mvrecon.io import read_image

# SwiftShader through ANGLE is what gives headless Chromium WebGL without a GPU.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--virtual-time-budget=10000",
]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium); the WebGL view was not checked")


def run_chromium(chromium: str, tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def viewer_status(chromium: str, tmp_path: Path, report: Path, *extra: str) -> dict[str, str]:
    """The ``data-*`` attributes of the report's ``#viewer-status`` element after the page ran."""
    proc = run_chromium(chromium, tmp_path, report.as_uri(), "--dump-dom", *extra)
    m = re.search(r"<div[^>]*id=\"viewer-status\"[^>]*>", proc.stdout)
    assert m, f"no status element in the DOM; chromium said: {proc.stderr[-2000:]}"
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', m.group(0)))


def screenshot(chromium: str, tmp_path: Path, url: str, size: str = "1000,900", *extra: str) -> np.ndarray:
    shot = tmp_path / "shot.png"
    shot.unlink(missing_ok=True)
    run_chromium(chromium, tmp_path, url, f"--screenshot={shot}", f"--window-size={size}", *extra)
    assert shot.is_file(), "chromium wrote no screenshot"
    return read_image(shot)
