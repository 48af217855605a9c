"""The cues stage on files: outputs, caching by content hash, bad input, sessions, the CLI."""

from __future__ import annotations

import json
import zlib
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvrecon.cameras import Camera, Rig, save_rig
from mvrecon.cues import (
    CuesConfig,
    DetectConfig,
    FaceParser,
    LandmarkParser,
    get_parser,
    load_view_cues,
    load_view_labels,
    process_image,
    register_parser,
    run,
)
from mvrecon.errors import InputError
from mvrecon.io import read_image, write_image
from mvrecon.parts import PART_CODES
from mvrecon.session import Session, write_session_file


@pytest.fixture
def photo(tmp_path, astronaut) -> Path:
    return write_image(tmp_path / "astro.png", astronaut)


def _files(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def test_process_image_writes_outputs(photo, tmp_path, astronaut, astronaut_cues):
    out = tmp_path / "out"
    res = process_image(photo, out)
    assert res.status == "ok" and not res.cached and res.score > 0.8
    assert _files(out) == {"landmarks.json", "labels.png", "overlay.png"}  # nothing half-written left
    rec = json.loads((out / "landmarks.json").read_text())
    assert rec["status"] == "ok" and rec["image_size"] == [512, 512]
    assert len(rec["landmarks478"]) == 478 and len(rec["landmarks68"]) == 68
    assert len(rec["confidence478"]) == 478 and len(rec["confidence68"]) == 68
    assert len(rec["box"]) == 4 and 0 < rec["score"] <= 1
    cues = load_view_cues(out)
    np.testing.assert_allclose(cues.points68, astronaut_cues.points68, atol=0.01)
    labels = load_view_labels(out)
    assert labels.shape == (512, 512) and labels.dtype == np.uint8
    # the stored landmarks are rounded to 1/1000 px: the model parser's fit on them may move a
    # pixel or two of an outline, nothing more
    again = get_parser(CuesConfig().parser).parse(astronaut, cues)
    assert (labels != again).mean() < 1e-4
    ov = read_image(out / "overlay.png")
    assert ov.shape == (512, 512, 3)
    # the overlay differs from the photo on the face and only near it
    diff = np.abs(ov.astype(int) - astronaut).sum(2) > 0
    ys, xs = np.nonzero(diff)
    assert diff.sum() > 3000 and xs.min() > 100 and xs.max() < 350 and ys.max() < 300


def test_cache_skips_unchanged_and_redoes_changed(photo, tmp_path, astronaut):
    out = tmp_path / "out"
    process_image(photo, out)
    mtime = (out / "labels.png").stat().st_mtime_ns
    again = process_image(photo, out)
    assert again.cached and (out / "labels.png").stat().st_mtime_ns == mtime
    # other settings: redone
    other = process_image(photo, out, CuesConfig(detect=DetectConfig(mesh_size=256)))
    assert not other.cached
    # same settings but asked to overwrite: redone
    assert not process_image(photo, out, CuesConfig(detect=DetectConfig(mesh_size=256), overwrite=True)).cached
    # changed content under the same name: redone, and the new face is found
    write_image(photo, np.ascontiguousarray(astronaut[:, ::-1]))
    changed = process_image(photo, out, CuesConfig(detect=DetectConfig(mesh_size=256)))
    assert not changed.cached
    c = load_view_cues(out)
    assert c.points68[30, 0] > 256  # mirrored: the face is now right of centre
    # a deleted output file is redone
    (out / "overlay.png").unlink()
    assert not process_image(photo, out, CuesConfig(detect=DetectConfig(mesh_size=256))).cached


def test_cache_redoes_views_of_other_cue_code(photo, tmp_path, monkeypatch):
    from mvrecon.cues import stage

    out = tmp_path / "out"
    assert not process_image(photo, out).cached
    assert process_image(photo, out).cached
    rec = json.loads((out / "landmarks.json").read_text())
    assert rec["settings"]["code"] == stage.code_revision() and len(rec["settings"]["code"]) == 12
    # an upgraded mvrecon (other cue code): the cached view is not trusted
    monkeypatch.setattr(stage, "code_revision", lambda: "0123456789ab")
    assert not process_image(photo, out).cached
    assert process_image(photo, out).cached


def test_the_camera_reaches_the_parser_and_the_cache_key(photo, tmp_path):
    """A session view's camera is handed to the parser (the model parser fits in it) and recorded:
    a recalibrated camera redoes the view, the same camera does not."""
    seen = []

    class Recorder:
        name = "recorder"

        def parse(self, image, cues, camera=None):
            seen.append(camera)
            return np.zeros(image.shape[:2], np.uint8)

    K = np.array([[700.0, 0, 255.5], [0, 700.0, 255.5], [0, 0, 1]])
    cam = Camera(name="c0", width=512, height=512, K=K, dist=np.zeros(0), world_to_cam=np.eye(4))
    out = tmp_path / "out"
    cfg = CuesConfig(parser="recorder")
    assert not process_image(photo, out, cfg, parser=Recorder(), camera=cam).cached
    assert seen == [cam]
    rec = json.loads((out / "landmarks.json").read_text())
    assert rec["settings"]["camera"]["K"][0][0] == 700.0
    assert process_image(photo, out, cfg, parser=Recorder(), camera=cam).cached
    moved = cam.replace(K=K * np.array([[1.01], [1.01], [1]]))
    assert not process_image(photo, out, cfg, parser=Recorder(), camera=moved).cached
    assert len(seen) == 2 and seen[1] is moved


def test_no_face_is_reported_not_raised(tmp_path):
    img = write_image(tmp_path / "wall.png", np.full((300, 400, 3), 90, np.uint8))
    res = process_image(img, tmp_path / "wall")
    assert res.status == "no_face" and res.score is None
    assert _files(tmp_path / "wall") == {"landmarks.json"}
    assert load_view_cues(tmp_path / "wall") is None
    assert process_image(img, tmp_path / "wall").cached


def test_truncated_image_is_an_input_error(photo, tmp_path):
    data = photo.read_bytes()
    bad = tmp_path / "trunc.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="trunc.png.*truncated or corrupt"):
        process_image(bad, tmp_path / "o")
    assert not (tmp_path / "o").exists()
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image")
    with pytest.raises(InputError, match="junk.jpg.*not a readable image"):
        process_image(junk, tmp_path / "o")
    with pytest.raises(InputError, match="missing.png.*not found"):
        process_image(tmp_path / "missing.png", tmp_path / "o")


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` but which has no pixel data at all: decoding
    would fail as 'truncated', so an error about its size proves it was refused from the header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_huge_image_refused_before_decoding(tmp_path):
    huge = _png_header_only(tmp_path / "huge.png", 12000, 9000)  # 108 MP, above the 100 MP limit
    with pytest.raises(InputError, match="huge.png.*12000x9000.*refused"):
        process_image(huge, tmp_path / "o")
    assert not (tmp_path / "o").exists()
    # far beyond PIL's own decompression-bomb guard: still mvrecon's limit, named, in one line
    bomb = _png_header_only(tmp_path / "bomb.png", 60000, 40000)
    with pytest.raises(InputError, match="bomb.png.*60000x40000.*above the limit of 100000000 pixels.*refused"):
        process_image(bomb, tmp_path / "o")
    # a lower limit in the config applies to ordinary images too
    small = _png_header_only(tmp_path / "small.png", 2000, 1000)
    with pytest.raises(InputError, match="small.png.*2000x1000.*refused"):
        process_image(small, tmp_path / "o", CuesConfig(max_image_pixels=1_000_000))


def test_custom_parser_plugs_in(photo, tmp_path):
    class NoseOnly:
        name = "nose-only"

        def parse(self, image, cues, camera=None):
            lab = np.zeros(image.shape[:2], np.uint8)
            x, y = np.round(cues.points68[30]).astype(int)
            lab[y - 3 : y + 4, x - 3 : x + 4] = PART_CODES["nose"]
            return lab

    assert isinstance(NoseOnly(), FaceParser) and isinstance(LandmarkParser(), FaceParser)
    register_parser("nose-only", NoseOnly)
    res = process_image(photo, tmp_path / "o", CuesConfig(parser="nose-only"))
    labels = load_view_labels(res.out_dir)
    assert (labels == PART_CODES["nose"]).sum() == 49 and set(np.unique(labels)) == {0, 6}
    # an instance passed directly is what the record names (and what the cache is keyed on)
    res = process_image(photo, tmp_path / "p", parser=NoseOnly())
    assert json.loads((tmp_path / "p" / "landmarks.json").read_text())["settings"]["parser"] == "nose-only"
    assert process_image(photo, tmp_path / "p", CuesConfig(parser="nose-only")).cached
    assert not process_image(photo, tmp_path / "p").cached  # default parser: redone
    with pytest.raises(InputError, match="unknown face parser 'bisenet'"):
        process_image(photo, tmp_path / "o2", CuesConfig(parser="bisenet"))


def _session(tmp_path: Path, astronaut: np.ndarray) -> Path:
    root = tmp_path / "sess"
    K = np.array([[600.0, 0, 255.5], [0, 600.0, 255.5], [0, 0, 1]])
    rig = Rig(cameras=tuple(Camera(f"cam{i}", 512, 512, K) for i in range(3)))
    save_rig(rig, root / "rig")
    write_image(root / "images/cam0.png", astronaut)
    write_image(root / "images/cam1.png", np.ascontiguousarray(astronaut[:, ::-1]))
    write_image(root / "images/cam2.png", np.full((512, 512, 3), 60, np.uint8))  # lens cap on
    write_session_file(
        root,
        rig="rig",
        frames=[{"name": "f000", "images": {f"cam{i}": f"images/cam{i}.png" for i in range(3)}}],
    )
    return root


def test_run_over_a_session_names_the_view_without_face(tmp_path, astronaut):
    root = _session(tmp_path, astronaut)
    session = Session.load(root)
    res = run(CuesConfig(), session)
    assert [v.key for v in res.views] == ["f000_cam0", "f000_cam1", "f000_cam2"]
    assert res.no_face == ["f000_cam2"] and "f000_cam2" in res.summary()
    assert [v.status for v in res.views] == ["ok", "ok", "no_face"]
    out = root / "cues"
    assert (out / "f000_cam0" / "labels.png").is_file() and (out / "f000_cam1" / "overlay.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["no_face"] == ["f000_cam2"]
    config = json.loads((out / "config.json").read_text())
    assert config["parser"] == get_parser("auto").name and config["detect"]["mesh_size"] == 384
    # mirrored view: its landmarks mirror the first view's (x -> 511 - x), right/left swapped
    c0, c1 = load_view_cues(out / "f000_cam0"), load_view_cues(out / "f000_cam1")
    assert abs((511 - c1.points68[45, 0]) - c0.points68[36, 0]) < 4
    # re-run: nothing redone
    again = run(CuesConfig(), session)
    assert again.n_cached == 3 and again.no_face == ["f000_cam2"]


def test_cli_session_and_image_forms(tmp_path, astronaut):
    from mvrecon.cli import main

    root = _session(tmp_path, astronaut)
    runner = CliRunner()
    r = runner.invoke(main, ["cues", str(root)])
    assert r.exit_code == 0, r.output
    assert "views with a face 2/3" in r.output and "no face in f000_cam2" in r.output
    def cached() -> list[bool]:
        return [v["cached"] for v in json.loads((root / "cues" / "summary.json").read_text())["views"]]

    r = runner.invoke(main, ["cues", "session", str(root), "--preset", "default"])
    assert r.exit_code == 0 and cached() == [True, True, True], r.output
    r = runner.invoke(main, ["cues", str(root), "--per-view"])  # another setting: redone
    assert r.exit_code == 0 and cached() == [False, False, False], r.output
    assert json.loads((root / "cues" / "config.json").read_text())["frames"] is False

    photo = root / "images" / "cam0.png"
    r = runner.invoke(main, ["cues", "image", str(photo), "--out", str(tmp_path / "one")])
    assert r.exit_code == 0, r.output
    assert _files(tmp_path / "one") == {"landmarks.json", "labels.png", "overlay.png"}
    r = runner.invoke(main, ["cues", "image", str(photo), "--no-overlay", "--out", str(tmp_path / "two")])
    assert r.exit_code == 0 and _files(tmp_path / "two") == {"landmarks.json", "labels.png"}
    # default output folder next to the photo
    r = runner.invoke(main, ["cues", "image", str(photo)])
    assert r.exit_code == 0 and (root / "images" / "cam0_cues" / "overlay.png").is_file()


def test_cli_errors_are_one_line(tmp_path, astronaut):
    from mvrecon.cli import main

    runner = CliRunner()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    r = runner.invoke(main, ["cues", "image", str(bad)])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "bad.png" in r.output and "error:" in r.output
    wall = write_image(tmp_path / "wall.png", np.full((200, 200, 3), 30, np.uint8))
    r = runner.invoke(main, ["cues", "image", str(wall)])
    assert r.exit_code == 2 and "wall.png: no face found" in r.output
    r = runner.invoke(main, ["cues", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "session folder not found" in r.output
    r = runner.invoke(main, ["cues", "image", str(wall), "--parser", "bisenet"])
    assert r.exit_code == 2 and "unknown face parser 'bisenet'" in r.output


def test_cli_session_without_any_face_fails(tmp_path):
    from mvrecon.cli import main

    root = tmp_path / "empty"
    K = np.array([[300.0, 0, 99.5], [0, 300.0, 99.5], [0, 0, 1]])
    save_rig(Rig(cameras=(Camera("a", 200, 200, K), Camera("b", 200, 200, K))), root / "rig")
    for n in "ab":
        write_image(root / f"{n}.png", np.full((200, 200, 3), 40 if n == "a" else 200, np.uint8))
    write_session_file(root, rig="rig", frames=[{"name": "f0", "images": {"a": "a.png", "b": "b.png"}}])
    r = CliRunner().invoke(main, ["cues", str(root)])
    assert r.exit_code == 2
    assert "a.png: no face found" in r.output and "b.png: no face found" in r.output
    assert r.output.strip().splitlines()[-1].endswith("no face found in any view")


def test_a_frame_is_labelled_together_and_redone_as_a_whole(tmp_path, astronaut):
    """The model parser labels a frame's views with a face together; each record names the
    frame fit. A changed image redoes its frame's views (the shared fit changed), and only them."""
    root = _session(tmp_path, astronaut)
    session = Session.load(root)
    run(CuesConfig(), session)
    out = root / "cues"
    recs = {k: json.loads((out / k / "landmarks.json").read_text()) for k in ("f000_cam0", "f000_cam1", "f000_cam2")}
    if get_parser("auto").name != "model":
        pytest.skip("no landmark embedding: the default parser labels views one by one")
    for k in ("f000_cam0", "f000_cam1"):
        assert recs[k]["frame_fit"]["views"] == ["f000_cam0", "f000_cam1"], recs[k]
    assert recs["f000_cam0"]["frame_fit"]["key"] == recs["f000_cam1"]["frame_fit"]["key"]
    assert "frame_fit" not in recs["f000_cam2"]  # no face
    assert run(CuesConfig(), session).n_cached == 3
    # cam1 changes: cam0's image did not, but its frame's fit did
    brighter = np.clip(np.ascontiguousarray(astronaut[:, ::-1]).astype(int) + 12, 0, 255).astype(np.uint8)
    write_image(root / "images/cam1.png", brighter)
    res = run(CuesConfig(), session)
    assert [v.cached for v in res.views] == [False, False, True]
    new_key = json.loads((out / "f000_cam0" / "landmarks.json").read_text())["frame_fit"]["key"]
    assert new_key != recs["f000_cam0"]["frame_fit"]["key"]
    # one by one: another setting, so every view is redone, and no frame fit is recorded
    res = run(CuesConfig(frames=False), session)
    assert res.n_cached == 0
    assert "frame_fit" not in json.loads((out / "f000_cam0" / "landmarks.json").read_text())
