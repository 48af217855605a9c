"""The README's "Your own photos" flow on the example rig: a rig folder calibrated once from its
own board shots, ``session init`` from a folder of JPEGs, then the run (up to the cues here; the
whole run on a session is tests/pipeline/test_pipeline.py's). Small: 2 cameras, 320x240."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvrecon.cli import main

pytestmark = pytest.mark.slow


def cli(*args: object):
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback

        raise AssertionError("a traceback escaped:\n" + "".join(traceback.format_exception(res.exception)))
    return res


def refused(res, *fragments: str) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def studio(tmp_path_factory, ict_model):
    """``rigs/example`` (calibrated with 'mvrecon rig calibrate rigs/example') and ``photos/``."""
    from mvrecon.synth import SynthConfig
    from mvrecon.synth.example import make_example_rig

    base = tmp_path_factory.mktemp("studio")
    ex = make_example_rig(base / "rigs" / "example", base / "photos",
                          SynthConfig(cameras=2, seed=7, width=320, height=240, calib_shots=6))
    assert sorted(p.relative_to(base / "photos").as_posix() for p in (base / "photos").rglob("*.jpg")) == \
        ["f000/cam0.jpg", "f000/cam1.jpg"]
    uncalibrated = base / "uncalibrated"
    shutil.copytree(base / "rigs" / "example", uncalibrated)
    res = cli("rig", "calibrate", base / "rigs" / "example")
    assert res.exit_code == 0, res.output
    return base, ex


def test_calibrated_rig_init_from_jpegs_and_run_to_the_cues(studio):
    from mvrecon.cameras import load_rig
    from mvrecon.provenance import sha256_json

    base, ex = studio
    rig = load_rig(base / "rigs" / "example")

    def cam1_seen_from_cam0(r):  # mm
        return 1000 * (r["cam0"].world_to_cam @ np.append(r["cam1"].center, 1.0))[:3]

    # the calibration found the extrinsics the rig.json left out (a few mm at 320x240)
    assert np.linalg.norm(cam1_seen_from_cam0(rig) - cam1_seen_from_cam0(ex.truth)) < 10.0
    assert (base / "rigs" / "example" / "calibration.json").is_file()

    session = base / "sessions" / "mine"
    res = cli("session", "init", session, "--rig", base / "rigs" / "example", "--images", base / "photos")
    assert res.exit_code == 0, res.output
    sj = json.loads((session / "session.json").read_text())
    assert sj["rig"] == "../../rigs/example" and sj["subject"] == "mine"
    assert sj["frames"] == [{"name": "f000", "images": {"cam0": "images/f000/cam0.jpg",
                                                         "cam1": "images/f000/cam1.jpg"}}]
    for cam in ("cam0", "cam1"):  # copied, not linked: the session keeps its own record
        p = session / "images" / "f000" / f"{cam}.jpg"
        assert not p.is_symlink() and p.read_bytes() == (base / "photos" / "f000" / f"{cam}.jpg").read_bytes()
        assert p.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG

    res = cli("session", "run", session, "--preset", "fast", "--to", "cues", "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    st = {s["stage"]: s["status"] for s in out["stages"]}
    assert st["ingest"] == "done" and st["cues"] == "done" and st["calibrate"] == "skipped", st
    cues = next(s for s in out["stages"] if s["stage"] == "cues")
    assert cues["numbers"]["views with a face"] == "2/2"
    # the cues were made with the rig folder's calibrated cameras
    prov = json.loads((session / "cues" / "provenance.json").read_text())
    assert prov["inputs"]["rig"] == sha256_json(rig.to_dict())
    rec = json.loads((session / "cues" / "f000_cam1" / "landmarks.json").read_text())
    assert rec["settings"]["camera"] == json.loads(json.dumps(rig["cam1"].to_dict()))


def _photos(base: Path, tmp: Path) -> Path:
    return Path(shutil.copytree(base / "photos", tmp / "photos"))


def _missing(base, tmp):
    p = _photos(base, tmp)
    (p / "f000" / "cam1.jpg").unlink()
    return ["--images", p], [f"{p}/f000/cam1.jpg: missing: frame 'f000' has no photo of camera 'cam1'"]


def _second_frame_short(base, tmp):
    p = _photos(base, tmp)
    (p / "f001").mkdir()
    shutil.copy(p / "f000" / "cam0.jpg", p / "f001" / "cam0.jpg")
    return ["--images", p], [f"{p}/f001/cam1.jpg", "frame 'f001' has no photo of camera 'cam1'"]


def _unknown_camera(base, tmp):
    p = _photos(base, tmp)
    shutil.copy(p / "f000" / "cam0.jpg", p / "f000" / "cam9.jpg")
    return ["--images", p], [f"{p}/f000/cam9.jpg", "camera 'cam9'", "is not in rig", "cameras: cam0, cam1"]


def _wrong_size(base, tmp):
    from mvrecon.io import write_image

    p = _photos(base, tmp)
    write_image(p / "f000" / "cam1.jpg", np.zeros((80, 100, 3), np.uint8))
    return ["--images", p], [f"{p}/f000/cam1.jpg", "photo is 100x80 but camera 'cam1' of the rig is 320x240"]


def _not_a_rig(base, tmp):
    return ["--images", base / "photos", "--rig", base / "photos"], [f"{base / 'photos'}: not a rig folder"]


def _uncalibrated(base, tmp):
    return (["--images", base / "photos", "--rig", base / "uncalibrated"],
            ["rig.json", "no extrinsics yet", "mvrecon rig calibrate"])


def _bad_pattern(base, tmp):
    return ["--images", base / "photos", "--pattern", "{frame}/{cam}.jpg"], ["must hold {camera} once"]


def _no_match(base, tmp):
    return ["--images", base / "photos", "--pattern", "{frame}/{camera}.png"], ["no photo matches", "f000/cam0.png"]


@pytest.mark.parametrize("case", [_missing, _second_frame_short, _unknown_camera, _wrong_size, _not_a_rig,
                                  _uncalibrated, _bad_pattern, _no_match])
def test_init_refuses_with_one_line_and_writes_nothing(studio, tmp_path, case):
    base, _ = studio
    args, fragments = case(base, tmp_path)
    if "--rig" not in args:
        args += ["--rig", base / "rigs" / "example"]
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    refused(cli("session", "init", sessions / "s1", *args), *fragments)
    assert list(sessions.iterdir()) == []  # no session folder, no temporary


def test_init_refuses_an_existing_session(studio, tmp_path):
    base, _ = studio
    s = tmp_path / "s1"
    s.mkdir()
    (s / "session.json").write_text("{}")
    refused(cli("session", "init", s, "--rig", base / "rigs" / "example", "--images", base / "photos"),
            "exists already and is not an empty folder")
    assert (s / "session.json").read_text() == "{}"
