"""A tiny session built by hand (two cameras, 64x48 photos, a rig shared from outside the session)
and the checks every hostile case makes: one clear line, a non-zero exit, nothing touched outside
the session, nothing half-written inside it. Cheap: the cases fail before any heavy stage."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from mvrecon import cameras as C
from mvrecon.cli import main
from mvrecon.io import write_image
from mvrecon.session import write_session_file

W, H = 64, 48


@dataclass
class Case:
    """A session under ``tmp/s`` with its rig in ``tmp/rigs/r`` and a victim folder ``tmp/victim``
    (with ``keep.txt``) that no run may touch."""

    tmp: Path
    root: Path
    rig_file: Path
    victim: Path

    def edit_session(self, fn) -> None:
        sf = self.root / "session.json"
        d = json.loads(sf.read_text())
        fn(d)
        sf.write_text(json.dumps(d))

    def edit_rig(self, fn) -> None:
        d = json.loads(self.rig_file.read_text())
        fn(d)
        self.rig_file.write_text(json.dumps(d))


def make_case(tmp: Path) -> Case:
    rig = C.Rig(cameras=tuple(
        C.Camera(name=n, width=W, height=H, K=[[50, 0, W / 2], [0, 50, H / 2], [0, 0, 1]],
                 world_to_cam=C.look_at([x, 0, 1], [0, 0, 0])) for n, x in (("a", -0.3), ("b", 0.3))))
    rig_file = C.save_rig(rig, tmp / "rigs" / "r")
    root = tmp / "s"
    rng = np.random.default_rng(0)
    for cam in rig:
        write_image(root / "images" / f"{cam.name}.png", rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    write_session_file(root, rig="../rigs/r", subject="s01",
                       frames=[{"name": "f0", "images": {"a": "images/a.png", "b": "images/b.png"}}])
    victim = tmp / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("must survive\n")
    return Case(tmp, root, rig_file, victim)


def snapshot(folder: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every entry under ``folder`` (links not followed, ``skip`` left out): kind and content hash."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        if p.is_symlink():
            out[str(p)] = ("link", str(p.readlink()))
        elif p.is_file():
            out[str(p)] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
        else:
            out[str(p)] = ("other", p.stat().st_mode)
    return out


@dataclass
class Outcome:
    code: int
    stderr: str
    stdout: str

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]


def cli(*args: object, env: dict | None = None) -> Outcome:
    """Run the ``mvrecon`` command in this process (as a user's shell would, minus the start-up
    cost); an exception escaping the command (a traceback) fails the test at once."""
    res = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=True)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback

        raise AssertionError("a traceback escaped:\n" + "".join(traceback.format_exception(res.exception)))
    return Outcome(res.exit_code, res.stderr, res.stdout)


def assert_refused(out: Outcome, *fragments: str) -> str:
    """One line on stderr, starting 'error:', containing every fragment; a non-zero exit."""
    assert out.code != 0, (out.stdout, out.stderr)
    lines = out.error_lines
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def assert_untouched(case: Case, before: dict) -> None:
    """Nothing outside the session changed; nothing half-written (a temporary) is left inside."""
    assert snapshot(case.tmp, skip=case.root) == before
    assert (case.victim / "keep.txt").read_text() == "must survive\n"
    if case.root.exists():
        left = [p for p in case.root.rglob("*") if ".tmp-" in p.name]
        assert not left, left
