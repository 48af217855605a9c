"""report.html in headless Chromium: the WebGL view renders, textured the right way up, no errors.

The browser helpers and the ``chromium`` fixture are shared with tests/pipeline (tests/browser.py).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from browser import screenshot as _screenshot
from browser import viewer_status as _status
from report_scene import checker, full_content, quad_mesh, quadrant_texture, two_part_glb

from mvrecon.io import write_image
from mvrecon.report import ReportContent, ViewerMesh, build_report


def test_full_report_renders_the_3d_view(chromium, tmp_path, ict_model):
    """The ICT mean face with a checker texture, with every other section filled in."""
    m = ict_model
    content = full_content(tmp_path / "in", None)
    mesh = ViewerMesh(m.mean, m.triangles, m.uvs, m.uv_triangles, texture=content.texture)
    session = tmp_path / "session"
    session.mkdir()
    report = build_report(session, dataclasses.replace(content, mesh=mesh))

    status = _status(chromium, tmp_path, report)
    assert status.get("status") == "ok", status
    assert int(status["triangles"]) == len(m.triangles)
    assert status["textured"] == "1"
    # The head covers a good part of the canvas, not a stray pixel or two.
    assert int(status["nonblank"]) > 0.05 * int(status["pixels"])
    # ... and drawn as a solid surface (a head fills ~2/3 of its bounding box; points would not).
    assert float(status["fill"]) > 0.45, status

    img = _screenshot(chromium, tmp_path, report.as_uri(), "1280,2400")
    # The checker's orange and blue both show up (the page itself has neither colour).
    orange = (img[..., 0] > 180) & (img[..., 1] > 70) & (img[..., 1] < 170) & (img[..., 2] < 110)
    blue = (img[..., 2] > 150) & (img[..., 0] < 90) & (img[..., 1] > 60)
    assert orange.sum() > 2000 and blue.sum() > 2000


@pytest.mark.parametrize("webgl", [2, 1])
def test_texture_is_the_right_way_up(chromium, tmp_path, webgl):
    """A quad with the top-left red, top-right green, bottom blue texture must look like that,
    with WebGL 2 and with the WebGL 1 fallback."""
    tex = write_image(tmp_path / "quad.png", quadrant_texture())
    report = build_report(tmp_path, ReportContent(subject="orientation", mesh=quad_mesh(tex)))
    extra = () if webgl == 2 else ("--disable-webgl2",)
    assert _status(chromium, tmp_path, report, *extra)["webgl"] == str(webgl)
    img = _screenshot(chromium, tmp_path, report.as_uri(), "1000,900", *extra).astype(int)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    masks = {"red": (r > 120) & (g < 60) & (b < 60), "green": (g > 120) & (r < 60) & (b < 60),
             "blue": (b > 120) & (r < 60) & (g < 60)}
    centres = {}
    for name, mask in masks.items():
        assert mask.sum() > 500, f"{name} missing from the rendered quad"
        ys, xs = np.nonzero(mask)
        centres[name] = (ys.mean(), xs.mean())
    assert centres["red"][0] < centres["blue"][0] and centres["green"][0] < centres["blue"][0]  # top above bottom
    assert centres["red"][1] < centres["green"][1]  # left is left (not mirrored)


def test_wireframe_draws_edges(chromium, tmp_path):
    v = np.array([[-0.1, -0.1, 0.0], [0.1, -0.1, 0.0], [0.1, 0.1, 0.0], [-0.1, 0.1, 0.0]])
    write_image(tmp_path / "c.png", checker(64, 4))
    mesh = ViewerMesh(v, np.array([[0, 1, 2], [0, 2, 3]]), uvs=(v[:, :2] + 0.1) * 5, texture=tmp_path / "c.png")
    report = build_report(tmp_path, ReportContent(mesh=mesh))
    line = np.array([26, 140, 217])  # the wireframe colour in the viewer's shader
    counts = []
    for url in (report.as_uri(), report.as_uri() + "#wireframe"):
        img = _screenshot(chromium, tmp_path, url).astype(int)
        counts.append(int((np.abs(img - line).sum(-1) < 20).sum()))
    assert counts[0] == 0 and counts[1] > 300, counts
    status = _status(chromium, tmp_path, Path(str(report)))
    assert status["status"] == "ok" and status["triangles"] == "2"


def test_viewer_reports_errors(chromium, tmp_path):
    """A texture the browser cannot decode must end in data-status="error", not a silent blank."""
    tex = write_image(tmp_path / "t.png", quadrant_texture(8))
    report = build_report(tmp_path, ReportContent(mesh=quad_mesh(tex)))
    text = report.read_text()
    broken = re.sub(r'"src":"data:image/png;base64,[^"]+"', '"src":"data:image/png;base64,AAAA"', text)
    assert broken != text
    report.write_text(broken)
    status = _status(chromium, tmp_path, report)
    assert status["status"] == "error" and "texture" in status["message"], status


def test_viewer_reports_missing_webgl(chromium, tmp_path):
    tex = write_image(tmp_path / "t.png", quadrant_texture(8))
    report = build_report(tmp_path, ReportContent(mesh=quad_mesh(tex)))
    status = _status(chromium, tmp_path, report, "--disable-webgl")
    assert status["status"] == "error" and "WebGL is not available" in status["message"], status


def test_glb_with_textured_and_plain_parts(chromium, tmp_path):
    glb = tmp_path / "head.glb"
    two_part_glb(glb)
    report = build_report(tmp_path, ReportContent(glb=glb))
    status = _status(chromium, tmp_path, report)
    assert status["status"] == "ok" and status["parts"] == "2" and status["textured"] == "1", status
    img = _screenshot(chromium, tmp_path, report.as_uri()).astype(int)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    # The plain part's base colour (230, 200, 20) lit, and the texture's pure red and blue.
    yellow = (r > 120) & (g > 100) & (b < 60)
    red = (r > 120) & (g < 60) & (b < 60)
    blue = (b > 120) & (r < 60) & (g < 60)
    assert yellow.sum() > 500 and red.sum() > 200 and blue.sum() > 200
    # The textured sphere is the left one, the yellow one the right (a little yellow also shows
    # where the texture's red and green quadrants blend, hence the share, not all pixels).
    split = np.nonzero(red | blue)[1].max()
    assert (np.nonzero(yellow)[1] > split).mean() > 0.9
