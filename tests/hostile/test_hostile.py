"""Hostile and careless input, class by class: every case gives one clear line and a non-zero exit,
touches nothing outside the session (``victim/keep.txt`` and every other file beside the session
survive byte for byte) and leaves nothing half-written."""

from __future__ import annotations

import errno
import json
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hostile_case import H, W, assert_refused, assert_untouched, cli, snapshot

from mvrecon.errors import InputError


def run_ingest(case):
    return cli("session", "run", case.root, "--to", "ingest")


def refused_run(case, *fragments):
    before = snapshot(case.tmp, skip=case.root)
    line = assert_refused(run_ingest(case), *fragments)
    assert_untouched(case, before)
    assert not (case.root / "ingest").exists()  # bad input: no stage output at all
    return line


# ---------------------------------------------------------------------------------------------
# names from the input never become paths


def _frame_name(name):
    return lambda d: d["frames"][0].update(name=name)


@pytest.mark.parametrize("name", ["/some/where/victim", "../../victim", "../victim", "..", ".hidden", "a/b",
                                  "a\\b", "x" * 65, "", "f 0", "f\n0", "é", ["f0"], None, 3.5, True])
def test_bad_frame_names(case, name):
    if isinstance(name, str) and "victim" in name:  # aim at the real victim folder
        name = str(case.victim) if name.startswith("/") else name
    case.edit_session(_frame_name(name))
    refused_run(case, "session.json", "frames[0] name", "is not allowed")
    assert (case.victim / "keep.txt").is_file()


def test_camera_name_from_a_shared_rig(case):
    def rename(d):
        d["cameras"][0]["name"] = "../../../../victim"

    case.edit_rig(rename)
    case.edit_session(lambda d: d["frames"][0].update(images={"../../../../victim": "images/a.png"}))
    refused_run(case, "rig.json", "camera name '../../../../victim' is not allowed")


@pytest.mark.parametrize("subject", ["../x", "/etc", "a b", ""])
def test_bad_subject(case, subject):
    case.edit_session(lambda d: d.update(subject=subject))
    refused_run(case, "subject")


def test_model_names_are_names(case, tmp_path, monkeypatch):
    monkeypatch.setenv("MVRECON_MODELS", str(tmp_path / "models"))
    bomb = tmp_path / "flame.pkl"
    bomb.write_bytes(pickle.dumps({"v_template": np.zeros((3, 3))}))
    before = snapshot(case.tmp, skip=case.root)
    assert_refused(cli("model", "import", "flame", bomb, "--name", "../victim/x"), "model name '../victim/x'")
    assert_refused(cli("model", "embed", "../victim/x"), "model name")
    assert not (tmp_path / "models").exists()
    assert_untouched(case, before)


def test_write_outside_the_stage_folder_is_refused(tmp_path):
    """The second wall: even a name that got through cannot make a writer leave its folder."""
    from mvrecon.errors import MvreconError
    from mvrecon.io import atomic_dir, write_json, writes_confined_to

    stage = tmp_path / "s" / "cues"
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep.txt").write_text("x")
    with writes_confined_to(stage):
        write_json(stage / "ok" / "a.json", {})
        with pytest.raises(MvreconError, match="refused to write outside"):
            write_json(stage / ".." / ".." / "victim" / "a.json", {})
        with pytest.raises(MvreconError, match="refused to write outside"):
            with atomic_dir(stage / ".." / ".." / "victim"):
                pass
        (stage / "link").symlink_to(tmp_path / "victim")
        with pytest.raises(MvreconError, match="refused to write outside"):
            write_json(stage / "link" / "a.json", {})
    assert sorted(p.name for p in (tmp_path / "victim").iterdir()) == ["keep.txt"]
    assert (stage / "ok" / "a.json").is_file()


# ---------------------------------------------------------------------------------------------
# links are not followed


def test_lock_symlink_is_refused(case):
    target = case.victim / "keep.txt"
    (case.root / ".mvrecon.lock").symlink_to(target)
    refused_run(case, ".mvrecon.lock", "symbolic link")
    assert target.read_text() == "must survive\n"


def test_lock_hard_link_is_refused(case):
    target = case.victim / "keep.txt"
    os.link(target, case.root / ".mvrecon.lock")
    refused_run(case, ".mvrecon.lock", "not a plain file")
    assert target.read_text() == "must survive\n"


def test_lock_directory_is_one_line(case):
    (case.root / ".mvrecon.lock").mkdir()
    refused_run(case, ".mvrecon.lock", "folder")


@pytest.mark.parametrize("stage", ["ingest", "logs"])
def test_symlinked_stage_or_logs_folder_is_refused(case, stage):
    (case.root / stage).symlink_to(case.victim, target_is_directory=True)
    before = snapshot(case.tmp, skip=case.root)
    line = assert_refused(run_ingest(case), "symbolic link")
    assert stage in line
    assert_untouched(case, before)
    assert sorted(p.name for p in case.victim.iterdir()) == ["keep.txt"]


def test_symlink_planted_among_outputs_is_not_followed(case):
    assert run_ingest(case).code == 0
    manifest = case.root / "ingest" / "manifest.json"
    manifest.unlink()
    manifest.symlink_to(case.victim / "keep.txt")
    before = snapshot(case.tmp, skip=case.root)
    assert_refused(run_ingest(case), "manifest.json", "symbolic link")
    assert_untouched(case, before)


# ---------------------------------------------------------------------------------------------
# inputs are regular files


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder"])
def test_special_file_as_image(case, kind):
    img = case.root / "images" / "a.png"
    img.unlink()
    if kind == "fifo":
        os.mkfifo(img)
    elif kind == "dev-zero":
        img.symlink_to("/dev/zero")
    else:
        img.mkdir()
    line = refused_run(case, "a.png")
    assert "regular file" in line or "folder" in line


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_special_file_as_scan(case, kind):
    scan = case.root / "scan" / "scan.ply"
    scan.parent.mkdir()
    if kind == "fifo":
        os.mkfifo(scan)
    else:
        scan.symlink_to("/dev/zero")
    (case.root / "scan" / "landmarks.txt").write_text("0 0 0\n" * 68)
    case.edit_session(lambda d: d.update(scan={"mesh": "scan/scan.ply", "landmarks": "scan/landmarks.txt"}))
    refused_run(case, "scan.ply", "not a regular file")


def test_special_file_as_session_or_rig(case):
    rig = case.rig_file
    rig.unlink()
    os.mkfifo(rig)
    refused_run(case, "rig")


# ---------------------------------------------------------------------------------------------
# bounded decoders


def _png_header_only(path: Path, w: int, h: int) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_pixel_bomb_is_refused_from_the_header(case):
    _png_header_only(case.root / "images" / "a.png", 20000, 20000)
    refused_run(case, "a.png", "20000x20000", "above the limit of 100000000 pixels", "MVRECON_MAX_IMAGE_PIXELS")


def test_pixel_limit_setting(case, monkeypatch):
    monkeypatch.setenv("MVRECON_MAX_IMAGE_PIXELS", str(W * H - 1))
    refused_run(case, f"{W}x{H}", f"above the limit of {W * H - 1} pixels")
    monkeypatch.setenv("MVRECON_MAX_IMAGE_PIXELS", str(W * H))
    assert run_ingest(case).code == 0


def _bomb_pickle(levels: int = 60) -> bytes:
    a: list = []
    for _ in range(levels):
        a = [a, a]
    return pickle.dumps({"v_template": a, "f": a, "shapedirs": a}, protocol=2)


def test_pickle_of_shared_references_is_refused(case, tmp_path, monkeypatch):
    monkeypatch.setenv("MVRECON_MODELS", str(tmp_path / "models"))
    bomb = tmp_path / "bomb.pkl"
    bomb.write_bytes(_bomb_pickle())
    assert len(bomb.read_bytes()) < 600
    assert_refused(cli("model", "import", "flame", bomb), "bomb.pkl", "expand to more than")


def test_pickle_nesting_and_npy_bombs(tmp_path):
    from mvrecon.facemodel.safepickle import load_npy, load_pickle

    p = tmp_path / "deep.pkl"  # 5000 nested lists, written as opcodes (pickle.dumps would recurse)
    p.write_bytes(b"\x80\x02" + b"]" * 5000 + b"a" * 4999 + b".")
    with pytest.raises(InputError, match="nested more than"):
        load_pickle(p)
    arr = np.empty((), dtype=object)
    arr[()] = pickle.loads(_bomb_pickle())
    q = tmp_path / "bomb.npy"
    np.save(q, arr, allow_pickle=True)
    with pytest.raises(InputError, match="expand to more than"):
        load_npy(q)


def test_shared_references_are_kept_shared(tmp_path):
    """Memoised: a model pickle that shares one array in two places reads as one array."""
    from mvrecon.facemodel.safepickle import load_pickle

    x = np.arange(6.0)
    p = tmp_path / "m.pkl"
    p.write_bytes(pickle.dumps({"a": x, "b": [x, x]}))
    d = load_pickle(p)
    assert d["a"] is d["b"][0] is d["b"][1]
    np.testing.assert_array_equal(d["a"], x)


def test_zip_bomb_model_is_refused(tmp_path, monkeypatch):
    import mvrecon.io

    m = tmp_path / "m.npz"
    np.savez_compressed(m, mean=np.zeros(4_000_000))  # 32 MB unpacked, a few kB packed
    monkeypatch.setattr(mvrecon.io, "MAX_MODEL_BYTES", 1 << 20)
    assert_refused(cli("model", "info", m), "m.npz", "unpacks to")


@pytest.mark.parametrize("target, text, fragment", [
    ("session", '{"rig": "../rigs/r", "frames": [], "x": ' + "9" * 5000 + "}", "digits"),
    ("session", "[" * 100000 + "]" * 100000, "nested 100000 levels"),
    ("rig", '{"cameras": ' + "[" * 3000 + "]" * 3000 + "}", "nested"),
    ("session", '{"rig": NaN}', "'rig' must be a non-empty path string"),
    ("session", '{"rig": 1e999}', "'rig' must be a non-empty path string"),
    ("session", "\xff\xfe{", "not UTF-8"),
    ("session", "", "malformed JSON"),
    ("rig", '{"cameras": [{"name": "a", "width": 64, "height": 48, "K": [[1,0,0],[0,1,0],[0,0,1]], '
            '"dist": [1e308, 1e308, 1e308, 1e308, "x"]}]}', "malformed rig"),
])
def test_hostile_json(case, target, text, fragment):
    path = case.root / "session.json" if target == "session" else case.rig_file
    path.write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
    refused_run(case, path.name, fragment)


def test_json_size_limit(case, monkeypatch):
    import mvrecon.io

    monkeypatch.setattr(mvrecon.io, "MAX_JSON_BYTES", 100)
    refused_run(case, "session.json", "above the limit of 100")


@pytest.mark.parametrize("dist", [[float("nan"), 0, 0, 0, 0], [0, float("inf"), 0, 0, 0]])
def test_non_finite_distortion(case, dist):
    text = case.rig_file.read_text()
    d = json.loads(text)
    d["cameras"][0]["dist"] = dist
    case.rig_file.write_text(json.dumps(d))  # Python writes NaN / Infinity; the camera refuses them
    refused_run(case, "rig.json", "dist has non-finite values")
    from mvrecon.cameras import Camera

    with pytest.raises(ValueError, match="non-finite"):
        Camera("a", W, H, np.eye(3), dist=np.array(dist, float))


def test_truncated_binary_ply_is_not_evaluated(tmp_path):
    from mvrecon.evaluate.meshes import read_mesh
    from mvrecon.meshio import write_ply

    rng = np.random.default_rng(0)
    p = write_ply(tmp_path / "scan.ply", rng.random((500, 3)), rng.integers(0, 500, (900, 3)))
    v, f = read_mesh(p)
    assert (len(v), len(f)) == (500, 900)
    p.write_bytes(p.read_bytes()[:-4000])
    with pytest.raises(InputError, match="declares 500 vertices and 900 faces"):
        read_mesh(p)


# ---------------------------------------------------------------------------------------------
# faults of the machine


def test_read_only_session_is_one_line(case, monkeypatch):
    """A read-only mount (EROFS; root ignores chmod, so the file system's answer is simulated)."""
    assert run_ingest(case).code == 0
    real_open = os.open

    def ro_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and str(path).startswith(str(case.root)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", ro_open)
    before = snapshot(case.root)
    assert_refused(run_ingest(case), "read-only", "mvrecon session report")
    # and it can still be reported, elsewhere
    out = cli("session", "report", case.root, "--out", case.tmp / "elsewhere" / "report.html")
    assert out.code == 0, out.stderr
    html = (case.tmp / "elsewhere" / "report.html").read_text()
    assert 'ingest</td><td><span class="badge done">' in html and 'badge stale"' not in html
    assert snapshot(case.root) == before


def test_full_disk_is_one_line_and_writes_nothing(case, monkeypatch):
    import pathlib

    real = pathlib.Path.write_bytes

    def full(self, data):
        if str(self).startswith(str(case.root)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    before = snapshot(case.tmp, skip=case.root)
    assert_refused(run_ingest(case), "no space left on the disk", "nothing was changed")
    assert_untouched(case, before)
    assert not (case.root / "ingest").exists()


def test_busy_session_is_one_line(case):
    from mvrecon.session import session_lock

    with session_lock(case.root):
        assert_refused(run_ingest(case), "session is busy")


# ---------------------------------------------------------------------------------------------
# one orientation rule


def test_exif_rotated_jpeg_reads_with_one_rule(tmp_path):
    from PIL import Image, ImageOps

    from mvrecon.io import image_size, read_image

    rng = np.random.default_rng(1)
    px = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    px = np.kron(px, np.ones((4, 4, 1), np.uint8))  # smooth blocks survive JPEG
    for orientation in range(1, 9):
        im = Image.fromarray(px)
        exif = im.getexif()
        exif[0x0112] = orientation
        p = tmp_path / f"o{orientation}.jpg"
        im.save(p, quality=95, exif=exif)
        img = read_image(p)
        assert image_size(p) == (img.shape[1], img.shape[0])
        assert (img.shape[:2] == (160, 120)) == (orientation >= 5)
        ref = np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))
        assert ref.shape == img.shape
        assert np.abs(ref.astype(int) - img).mean() < 3.0, orientation


@pytest.mark.parametrize("kind, content, fragment", [
    ("flame", pickle.dumps({"v_template": "abc", "f": [1, 2]}), "not a readable flame model file"),
    ("flame", pickle.dumps([1, 2, 3]), "expected a pickled dict"),
    ("flame", b"cos\nsystem\n(S'touch /tmp/x'\ntR.", "refused to load 'os.system'"),
    ("bfm", b"MATLAB 5.0 MAT-file garbage" + b"\0" * 200, "m.bin"),
    ("faceverse", pickle.dumps({"a": 1}), "not a .npy file"),
    ("flame", None, "not a regular file"),
])
def test_malformed_model_files(tmp_path, monkeypatch, kind, content, fragment):
    monkeypatch.setenv("MVRECON_MODELS", str(tmp_path / "models"))
    p = tmp_path / "m.bin"
    if content is None:
        os.mkfifo(p)
    else:
        p.write_bytes(content)
    assert_refused(cli("model", "import", kind, p), fragment)
    assert not (tmp_path / "models").exists()


def test_view_names_must_not_collide(case):
    """Frame 'f0' with camera 'a_b' and frame 'f0_a' with camera 'b' would share the folder f0_a_b."""
    def rename(d):
        d["cameras"][0]["name"] = "a_b"

    case.edit_rig(rename)
    case.edit_session(lambda d: d.update(frames=[{"name": "f0", "images": {"a_b": "images/a.png"}},
                                                 {"name": "f0_a", "images": {"b": "images/b.png"}}]))
    refused_run(case, "same view name 'f0_a_b'")


@pytest.mark.parametrize("where", ["rig", "image", "scan"])
@pytest.mark.parametrize("value", ["a" * 300, "a/" * 3000, "images/a\x00.png"])
def test_paths_the_os_refuses(case, where, value):
    """ENAMETOOLONG or an embedded NUL would be an exception from the OS itself."""
    if where == "rig":
        case.edit_session(lambda d: d.update(rig=value))
    elif where == "image":
        case.edit_session(lambda d: d["frames"][0]["images"].update(a=value))
    else:
        case.edit_session(lambda d: d.update(scan={"mesh": value}))
    refused_run(case, "session.json", "not a usable path")


def test_exif_turned_photo_says_why_it_does_not_fit_its_camera(case):
    from PIL import Image

    p = case.root / "images" / "a.jpg"
    im = Image.fromarray(np.full((H, W, 3), 90, np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # stored 64x48, shown (and read) 48x64
    im.save(p, exif=exif)
    case.edit_session(lambda d: d["frames"][0]["images"].update(a="images/a.jpg"))
    refused_run(case, "a.jpg", f"image is {H}x{W}", "EXIF orientation")


def test_calibration_folder_walk_is_bounded(case, monkeypatch):
    import mvrecon.calibrate.stage

    monkeypatch.setattr(mvrecon.calibrate.stage, "MAX_CALIB_FILES", 5)
    for i in range(8):
        (case.root / "calib" / f"shot{i}").mkdir(parents=True)
    case.edit_session(lambda d: d.update(calib="calib"))
    before = snapshot(case.tmp, skip=case.root)
    assert_refused(run_ingest(case), "calib", "more than 5 entries")
    assert_untouched(case, before)


def test_truncated_off_is_not_evaluated(tmp_path):
    from mvrecon.evaluate.meshes import read_mesh

    rng = np.random.default_rng(0)
    v, f = rng.random((50, 3)), rng.integers(0, 50, (80, 3))
    text = "OFF\n50 80 0\n" + "".join(f"{a} {b} {c}\n" for a, b, c in v) + "".join(f"3 {a} {b} {c}\n" for a, b, c in f)
    p = tmp_path / "scan.off"
    p.write_text(text)
    assert [len(x) for x in read_mesh(p)] == [50, 80]
    p.write_text(text[: len(text) - 200])
    with pytest.raises(InputError, match="declares 50 vertices and 80 faces"):
        read_mesh(p)
