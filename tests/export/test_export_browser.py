"""The exported head.glb in three.js in headless Chromium, checked on its pixels: the left eye
turns with eyeLookOutLeft, closes with eyeBlinkLeft, and LOD 0/1/2 agree on the face."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mvrecon.export import ExportConfig, export

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from browser import dom_status, screenshot  # noqa: E402


@pytest.fixture(scope="module")
def page(scene, export_helpers, tmp_path_factory):
    from mvrecon.report.threejs import ThreeUnavailable, viewer_page

    root = tmp_path_factory.mktemp("game")
    session = export_helpers.write_session(root / "s", scene, textures=True)
    res = export(session, ExportConfig(texture_size=export_helpers.ATLAS))
    try:
        html = viewer_page((res.out_dir / "head.glb").read_bytes())
    except ThreeUnavailable as e:
        pytest.skip(f"three.js unavailable: {e}")
    path = root / "viewer.html"
    path.write_text(html)
    comp = export(session, ExportConfig(texture_size=export_helpers.ATLAS, compress=True, out_dir=str(root / "c")))
    (root / "viewer_compressed.html").write_text(viewer_page((comp.out_dir / "head.glb").read_bytes()))
    return path


def _shot(chromium, tmp_path, page, query, size="600,600"):
    img = screenshot(chromium, tmp_path, page.as_uri() + "?" + query, size).astype(np.float64)
    return img[:, : int(size.split(",")[0]) - 290]       # the canvas, without the sliders column


@pytest.mark.parametrize("which", ["viewer.html", "viewer_compressed.html"])
def test_viewer_loads_every_lod_and_morph(chromium, tmp_path, page, which):
    st = dom_status(chromium, tmp_path, page.with_name(which).as_uri(), "game-status")
    assert st.get("status") == "ok", st
    assert st["lods"] == "3" and st["morphs"] == "52" and int(st["transparent"]) >= 1


def _dark(im):
    """Dark pixels at the centre of an eye close-up (the pupil, at the eye joint)."""
    h, w = im.shape[:2]
    c = im[int(0.4 * h):int(0.6 * h), int(0.35 * w):int(0.65 * w)]
    return int((c.max(-1) < 40).sum())


def test_compressed_head_blinks_like_the_plain_one(chromium, tmp_path, page):
    """--compress (quantised morph deltas, meshopt): the left eye closes with eyeBlinkLeft and the
    closed lid looks as in the uncompressed file."""
    comp = page.with_name("viewer_compressed.html")
    rest = _shot(chromium, tmp_path, comp, "focus=eye_left")
    blink = _shot(chromium, tmp_path, comp, "focus=eye_left&morph=eyeBlinkLeft:1")
    plain = _shot(chromium, tmp_path, page, "focus=eye_left&morph=eyeBlinkLeft:1")
    moved = np.abs(blink - rest).mean()
    off = np.abs(blink - plain).mean()
    print(f"compressed eye close-up: blink {moved:.2f}, against the plain file's blink {off:.2f}; "
          f"dark pixels rest {_dark(rest)}, blink {_dark(blink)}")
    assert _dark(rest) > 50 and _dark(blink) < 0.2 * _dark(rest)
    assert off < 0.25 * moved


def test_left_eye_turns_and_closes(chromium, tmp_path, page):
    rest = _shot(chromium, tmp_path, page, "focus=eye_left")
    out = _shot(chromium, tmp_path, page, "focus=eye_left&morph=eyeLookOutLeft:1")
    blink = _shot(chromium, tmp_path, page, "focus=eye_left&morph=eyeBlinkLeft:1")
    other = _shot(chromium, tmp_path, page, "focus=eye_left&morph=eyeBlinkRight:1")
    d_out = np.abs(out - rest).mean()
    d_blink = np.abs(blink - rest).mean()
    d_other = np.abs(other - rest).mean()
    # the pupil (dark, at the centre of the close-up: the eye joint) is visible at rest and
    # covered by the closed lid
    print(f"eye close-up: look-out {d_out:.2f}, blink {d_blink:.2f}, right blink {d_other:.2f}; "
          f"dark pixels rest {_dark(rest)}, blink {_dark(blink)}")
    assert d_out > 2.0 and d_blink > 4.0
    assert d_other < 0.25 * min(d_out, d_blink)         # the right eye's shape does not move the left eye
    assert _dark(rest) > 50 and _dark(blink) < 0.2 * _dark(rest)


def test_lods_agree_on_the_face(chromium, tmp_path, page):
    shots = [_shot(chromium, tmp_path, page, f"lod={k}") for k in range(3)]
    bg = np.abs(shots[0] - np.array([233, 236, 239])).max(-1) > 12
    assert bg.mean() > 0.05
    d1 = np.abs(shots[1] - shots[0]).max(-1)[bg].mean()
    d2 = np.abs(shots[2] - shots[0]).max(-1)[bg].mean()
    wrong = np.abs(shots[0][:, ::-1] - shots[0]).max(-1)[bg].mean()      # a mirrored head, for scale
    print(f"LOD difference on the head: LOD1 {d1:.1f}, LOD2 {d2:.1f}, mirrored LOD0 {wrong:.1f}")
    assert d1 < 0.3 * wrong and d2 < 0.5 * wrong
