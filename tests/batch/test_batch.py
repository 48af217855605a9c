"""``mvrecon batch run`` on a local Ray with 2 workers: a broken session is one failed row, the
others finish, and a second run skips what is done."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

MVRECON = str(Path(sys.executable).with_name("mvrecon"))


def mvrecon(*args, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([MVRECON, *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory, ict_model) -> list[Path]:
    base = tmp_path_factory.mktemp("batch")
    first = base / "a"
    proc = mvrecon("synth", "session", first, "--cameras", 2, "--seed", 3, "--size", "320x240", "--no-board")
    assert proc.returncode == 0, proc.stderr[-3000:]
    shutil.copytree(first, base / "b")
    broken = shutil.copytree(first, base / "broken")
    photo = sorted((broken / "images").rglob("*.png"))[0]
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # a truncated PNG
    return [first, base / "b", broken]


def test_batch_on_ray_isolates_a_broken_session_and_resumes(sessions):
    out = sessions[0].parent / "_batch"
    proc = mvrecon("batch", "run", *sessions, "--workers", 2, "--threads", 1, "--preset", "fast", "--to", "cues",
                   "--out", out, "--json")
    assert proc.returncode == 1, proc.stderr[-3000:]
    first = json.loads((out / "batch.json").read_text())
    assert json.loads(proc.stdout) == first
    status = {Path(r["session"]).name: r["status"] for r in first["rows"]}
    assert status == {"a": "done", "b": "done", "broken": "failed"}, first
    assert first["ok"] is False and [Path(s).name for s in first["failed"]] == ["broken"]
    bad = next(r for r in first["rows"] if r["status"] == "failed")
    assert "\n" not in bad["error"] and "images" in bad["error"], bad["error"]  # names the file
    for r in first["rows"][:2]:
        assert r["numbers"]["cues"]["views with a face"] == "2/2"
        assert (Path(r["session"]) / "cues" / "provenance.json").is_file()
    index = (out / "batch.html").read_text()
    for name in ("a", "b"):  # every finished session's report is one click away
        assert f'href="../{name}/report.html"' in index, index

    again = mvrecon("batch", "run", *sessions, "--workers", 2, "--threads", 1, "--preset", "fast", "--to", "cues",
                    "--out", out, "--json")
    assert again.returncode == 1
    second = json.loads(again.stdout)
    status = {Path(r["session"]).name: (r["status"], r["stages_run"]) for r in second["rows"]}
    assert status == {"a": ("up to date", 0), "b": ("up to date", 0), "broken": ("failed", 0)}, second
