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


def dom_status(chromium: str, tmp_path: Path, url: str, element_id: str, *extra: str) -> dict[str, str]:
    """The ``data-*`` attributes of the element ``element_id`` after the page at ``url`` ran. A page
    still loading when Chromium dumped it (``data-status="pending"``: on a loaded machine the
    virtual-time budget can run out before a worker or WebAssembly compile has finished, which
    virtual time does not wait for) is loaded again with a budget three times as long, twice at
    most; whatever the last load said is returned, so a page that never finishes still fails."""
    budget = 10000
    for _ in range(3):
        proc = run_chromium(chromium, tmp_path, url, "--dump-dom", f"--virtual-time-budget={budget}", *extra)
        m = re.search(rf"<div[^>]*id=\"{element_id}\"[^>]*>", proc.stdout)
        assert m, f"no #{element_id} element in the DOM; chromium said: {proc.stderr[-2000:]}"
        st = dict(re.findall(r'data-([\w-]+)="([^"]*)"', m.group(0)))
        if st.get("status") != "pending":
            break
        budget *= 3
    return st


def viewer_status(chromium: str, tmp_path: Path, report: Path, *extra: str) -> dict[str, str]:
    """The ``data-*`` attributes of the report's ``#viewer-status`` element after the page ran."""
    return dom_status(chromium, tmp_path, report.as_uri(), "viewer-status", *extra)


def screenshot(chromium: str, tmp_path: Path, url: str, size: str = "1000,900", *extra: str) -> np.ndarray:
    shot = tmp_path / "shot.png"
    shot.unlink(missing_ok=True)
    run_chromium(chromium, tmp_path, url, f"--screenshot={shot}", f"--window-size={size}", *extra)
    assert shot.is_file(), "chromium wrote no screenshot"
    return read_image(shot)
