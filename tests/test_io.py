import numpy as np
import pytest

from mvrecon.errors import InputError, MvreconError
from mvrecon.io import atomic_dir, read_image, write_image, write_json


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        write_json(target, {"a": object()})
    assert target.read_text().strip().startswith("{") and '"a": 1' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_dir_replaces_whole_folder(tmp_path):
    d = tmp_path / "stage"
    with atomic_dir(d) as t:
        (t / "x.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(d) as t:
            (t / "y.txt").write_text("2")
            raise RuntimeError("boom")
    assert sorted(p.name for p in d.iterdir()) == ["x.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]


def test_unwritable_output_is_clear_error(tmp_path):
    # root can write anywhere, so make the folder impossible instead: its parent is a file
    (tmp_path / "file").write_text("x")
    with pytest.raises(MvreconError, match="cannot create output folder"):
        write_json(tmp_path / "file" / "sub" / "x.json", {})


def test_image_round_trip_rgb(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    write_image(tmp_path / "a.png", img)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), img)


def test_truncated_image_refused(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    p = write_image(tmp_path / "a.png", img)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="a.png: image is truncated or corrupt"):
        read_image(p)


def test_huge_image_refused_before_decoding(tmp_path):
    p = write_image(tmp_path / "big.png", np.zeros((300, 400), np.uint8))
    with pytest.raises(InputError, match="above the limit"):
        read_image(p, max_pixels=100_000)
