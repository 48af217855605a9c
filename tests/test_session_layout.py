import json
import multiprocessing as mp

import numpy as np
import pytest

from mvrecon import cameras as C
from mvrecon.errors import InputError, SessionBusy
from mvrecon.io import write_image
from mvrecon.session import load_session, session_lock, write_session_file


def make_session(tmp_path, w=64, h=48):
    rig = C.Rig(cameras=tuple(
        C.Camera(name=n, width=w, height=h, K=[[50, 0, w / 2], [0, 50, h / 2], [0, 0, 1]],
                 world_to_cam=C.look_at([x, 0, 1], [0, 0, 0])) for n, x in (("a", -0.3), ("b", 0.3))))
    C.save_rig(rig, tmp_path / "rig")
    root = tmp_path / "s"
    for cam in rig:
        write_image(root / "images" / f"{cam.name}.png", np.full((h, w, 3), 100, np.uint8))
    write_session_file(root, rig="../rig", frames=[{"name": "f0", "images": {"a": "images/a.png", "b": "images/b.png"}}])
    return root


def test_load_valid_session(tmp_path):
    s = load_session(make_session(tmp_path))
    assert [v.key for v in s.views()] == ["f0_a", "f0_b"]
    assert s.rig.names == ["a", "b"]
    assert s.stage_dir("fit") == s.root / "fit"


def edit(root, fn):
    sf = root / "session.json"
    d = json.loads(sf.read_text())
    fn(d)
    sf.write_text(json.dumps(d))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(rig="../nope"), "rig '../nope' not found"),
        (lambda d: d["frames"][0]["images"].update(c="images/a.png"), "camera 'c', which rig"),
        (lambda d: d["frames"][0]["images"].update(a="images/missing.png"), "not found"),
        (lambda d: d.update(frames=[]), "non-empty list"),
        (lambda d: d.pop("rig"), "no 'rig'"),
    ],
)
def test_bad_session_files(tmp_path, mutate, message):
    root = make_session(tmp_path)
    edit(root, mutate)
    with pytest.raises(InputError) as e:
        load_session(root)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_malformed_session_json(tmp_path):
    root = make_session(tmp_path)
    (root / "session.json").write_text("{")
    with pytest.raises(InputError, match="session.json: malformed JSON"):
        load_session(root)


def test_wrong_image_size_is_named(tmp_path):
    root = make_session(tmp_path)
    write_image(root / "images" / "b.png", np.zeros((10, 20, 3), np.uint8))
    with pytest.raises(InputError) as e:
        load_session(root)
    assert "b.png" in str(e.value) and "20x10" in str(e.value) and "64x48" in str(e.value)


def test_corrupt_image_is_named(tmp_path):
    root = make_session(tmp_path)
    (root / "images" / "a.png").write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="a.png: not a readable image"):
        load_session(root)


def _hold_lock(root, ready, release):
    with session_lock(root):
        ready.set()
        release.wait(10)


def test_second_holder_of_the_lock_is_refused(tmp_path):
    root = make_session(tmp_path)
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_lock, args=(root, ready, release))
    p.start()
    try:
        assert ready.wait(20)
        with pytest.raises(SessionBusy, match="busy"):
            with session_lock(root):
                pass
    finally:
        release.set()
        p.join(10)
    with session_lock(root):  # free again once the holder is gone
        pass


def _moved(rig, name, dx):
    """``rig`` with camera ``name``'s centre moved by ``dx`` metres along x (a new Rig)."""
    cams = []
    for c in rig.cameras:
        if c.name == name:
            M = c.world_to_cam.copy()
            M[:3, 3] = -M[:3, :3] @ (c.center + np.array([dx, 0.0, 0.0]))
            c = c.replace(world_to_cam=M)
        cams.append(c)
    return rig.with_cameras(cams)


def test_current_rig_refined_over_calibrated_over_own(tmp_path):
    from mvrecon.errors import StageMissing

    s = load_session(make_session(tmp_path))
    own = s.current_rig()
    assert own.source == "session" and own.path == s.rig_path
    C.save_rig(_moved(s.rig, "b", 0.002), s.root / "calibrate" / "rig.json")
    C.save_rig(_moved(s.rig, "b", 0.005), s.root / "refine" / "rig.json")

    def shift_mm(session):
        return 1000 * float(np.linalg.norm(session.rig["b"].center - s.rig["b"].center))

    assert s.current_rig().source == "refine" and shift_mm(s.in_force()) == pytest.approx(5.0)
    assert s.in_force(["calibrate"]).rig_source == "calibrate" and shift_mm(s.in_force(["calibrate"])) == pytest.approx(2.0)
    # a rig stage that does not apply does not count, whatever its folder holds
    assert shift_mm(s.in_force([])) == 0.0 and s.in_force([]).rig_source == "session"
    assert s.in_force(["calibrate"]).in_force([]).rig["b"].center == pytest.approx(s.rig["b"].center)
    (s.root / "refine" / "rig.json").unlink()
    assert s.current_rig().source == "calibrate"
    with pytest.raises(StageMissing, match="refine stage has no rig.json"):
        s.in_force(["refine", "calibrate"])
