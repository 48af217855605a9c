"""report.html without a browser: self-contained, every image embedded, mesh data exact, bad inputs."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from report_scene import full_content, icosphere, quad_mesh, quadrant_texture, sphere_uv, two_part_glb

from mvrecon.errors import InputError, MvreconError
from mvrecon.io import read_image, write_image
from mvrecon.report import (
    Overlay,
    ReportConfig,
    ReportContent,
    ViewerMesh,
    build_report,
    mesh_from_glb,
    overlays_in,
    prepare,
)


def _data_uris(text: str) -> list[tuple[str, bytes]]:
    return [(m.group(1), base64.b64decode(m.group(2))) for m in re.finditer(r'src="data:image/(\w+);base64,([^"]+)"', text)]


def _mesh_blob(text: str) -> dict:
    m = re.search(r'<script type="application/json" id="mesh-data">(.*?)</script>', text, re.S)
    assert m, "no mesh data in the report"
    return json.loads(m.group(1))


def _decode(blob: dict, key: str, dtype: str, cols: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(blob[key]), dtype=dtype).reshape(-1, cols)


def test_report_is_self_contained_and_holds_each_image(tmp_path):
    v, f = icosphere(2)
    content = full_content(tmp_path / "in", ViewerMesh(v, f, sphere_uv(v), None, texture=tmp_path / "in" / "albedo.png"))
    session = tmp_path / "session"
    session.mkdir()
    out = build_report(session, content)
    assert out == session / "report.html"
    text = out.read_text(encoding="utf-8")

    # Nothing is fetched: no remote or relative resource of any kind.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", text, re.I)
    assert not re.search(r"<script[^>]+src=", text, re.I)
    assert not re.search(r"<link\b", text, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", text, re.I)
    assert "https://" not in text and "http://" not in text

    uris = _data_uris(text)
    # 3 overlays + texture + heatmap + loss curve; the viewer reuses the texture <img>.
    assert [kind for kind, _ in uris] == ["jpeg"] * 3 + ["png"] * 3
    assert _mesh_blob(text)["textures"] == [{"img": "texture-img"}]
    # JPEG photos and PNG maps in range are embedded byte for byte.
    embedded = [data for _, data in uris]
    for p in content.overlays[:2]:
        assert p.path.read_bytes() in embedded
    for p in (content.texture, content.heatmap, content.loss_curve):
        assert p.read_bytes() in embedded
    # The PNG photo was re-encoded as JPEG: same picture within JPEG error.
    png_photo = content.overlays[2].path
    assert png_photo.read_bytes() not in embedded
    decoded = _decode_image(tmp_path, uris[2][1], "jpg")
    assert np.abs(decoded.astype(int) - read_image(png_photo).astype(int)).mean() < 3.0

    for word in ("synthetic subject 01", "studio8", "reprojection RMS (px)", "0.31", "landmark error (px)",
                 "scan.ply: not found", "mean (mm)", "1.234", "cam1", 'id="viewer-status"'):
        assert word in text, word
    assert text.index('id="view3d"') < text.index('id="summary"') < text.index('id="overlays"')


def _decode_image(tmp_path: Path, data: bytes, ext: str) -> np.ndarray:
    p = tmp_path / f"decoded.{ext}"
    p.write_bytes(data)
    return read_image(p)


def test_big_photos_and_maps_are_downscaled(tmp_path):
    photo = write_image(tmp_path / "big.jpg", np.full((1500, 3000, 3), 128, np.uint8))
    tex = write_image(tmp_path / "tex.png", np.full((1024, 512, 3), 90, np.uint8))
    cfg = ReportConfig(photo_max_side=600, map_max_side=256)
    out = build_report(tmp_path, ReportContent(overlays=[photo], texture=tex), cfg)
    (kind_a, a), (kind_b, b) = _data_uris(out.read_text())
    assert (kind_a, kind_b) == ("jpeg", "png")
    assert _decode_image(tmp_path, a, "jpg").shape == (300, 600, 3)
    assert _decode_image(tmp_path, b, "png").shape == (256, 128, 3)


def test_mesh_data_reproduces_every_corner(tmp_path, rng):
    """Seam splitting must keep each corner's position and UV: checked against the inputs."""
    v, f = icosphere(2)
    # Per-corner UVs with seams: every triangle gets its own three UVs, shared by nothing.
    uvs = rng.random((3 * len(f), 2))
    uvf = np.arange(3 * len(f)).reshape(-1, 3)
    write_image(tmp_path / "t.png", quadrant_texture(16))
    text = build_report(tmp_path, ReportContent(mesh=ViewerMesh(v, f, uvs, uvf, texture=tmp_path / "t.png"))).read_text()
    blob = _mesh_blob(text)
    pos, uv = _decode(blob, "positions", "<f4", 3), _decode(blob, "uvs", "<f4", 2)
    nrm, idx = _decode(blob, "normals", "<f4", 3), _decode(blob, "indices", "<u4", 3)
    assert blob["triangleCount"] == len(f) == len(idx)
    assert len(pos) == 3 * len(f)  # no corner shares a UV, so each is its own GPU vertex
    np.testing.assert_allclose(pos[idx], v[f], atol=1e-7)
    np.testing.assert_allclose(uv[idx], uvs[uvf], atol=1e-7)
    # Normals are shared across the seams: smooth and outward on a sphere despite the split.
    unit = pos / np.linalg.norm(pos, axis=1, keepdims=True)
    assert np.allclose(np.linalg.norm(nrm, axis=1), 1, atol=1e-5)
    assert (np.einsum("ij,ij->i", nrm, unit) > 0.99).all()
    assert blob["textures"][0]["src"].startswith("data:image/png;base64,")


def _boundary_edges(pos: np.ndarray, idx: np.ndarray) -> int:
    """Edges used by exactly one triangle after welding equal positions (cracks, holes)."""
    weld = np.unique(np.round(pos * 1e6).astype(np.int64), axis=0, return_inverse=True)[1].reshape(-1)
    t = weld[idx]
    e = np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), axis=1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    return int((counts == 1).sum())


def test_decimation_keeps_region_and_stays_closed(tmp_path):
    v, f = icosphere(5)  # 20480 triangles
    centroid_z = v[f].mean(1)[:, 2] / 0.1
    keep = centroid_z > 0.8  # a "face" cap at full resolution
    tex = write_image(tmp_path / "t.png", quadrant_texture(8))
    mesh = ViewerMesh(v, f, sphere_uv(v), None, texture=tex, keep=keep)
    data = prepare(mesh, max_triangles=4000)
    assert data.source_triangles == len(f)
    assert int(keep.sum()) < len(data.indices) <= 4000 + 50
    # The kept cap is there triangle for triangle, unchanged.
    got = {tuple(np.round(t, 6).ravel()) for t in data.positions[data.indices].astype(float)}
    want = [tuple(np.round(t, 6).ravel()) for t in v[f[keep]].astype(np.float32).astype(float)]
    assert all(w in got for w in want)
    # No crack between the kept cap and the decimated rest, no hole anywhere.
    assert _boundary_edges(data.positions.astype(float), data.indices.astype(np.int64)) == 0
    # Vertices stay on the sphere, UVs follow their positions, normals point outward.
    r = np.linalg.norm(data.positions, axis=1)
    assert np.abs(r - 0.1).max() < 0.01
    np.testing.assert_allclose(data.uvs, sphere_uv(data.positions.astype(float)), atol=0.02)
    assert (np.einsum("ij,ij->i", data.normals, data.positions / r[:, None]) > 0.9).all()
    # Under the budget nothing changes.
    assert len(prepare(mesh, max_triangles=len(f)).indices) == len(f)


def test_decimation_keeps_uv_islands_apart_without_cracks(tmp_path):
    """Two UV islands (x < 0 and x >= 0 halves) meet at a seam: decimation may not open it, and
    every triangle must keep texture coordinates from its own island."""
    v, f = icosphere(5)
    right = v[f].mean(1)[:, 0] >= 0
    uv0 = 0.5 * sphere_uv(v)
    uvs = np.concatenate([uv0, uv0 + [0.5, 0.0]])  # island 1 is island 0 shifted right by 0.5
    uvf = np.where(right[:, None], f + len(v), f)
    tex = write_image(tmp_path / "t.png", quadrant_texture(8))
    data = prepare(ViewerMesh(v, f, uvs, uvf, texture=tex), max_triangles=3000)
    assert 1500 < len(data.indices) <= 3000
    assert len(data.positions) > len(np.unique(data.positions, axis=0))  # the seam was split...
    assert _boundary_edges(data.positions.astype(float), data.indices.astype(np.int64)) == 0  # ...not opened
    corner_u = data.uvs[data.indices][..., 0]
    side = corner_u >= 0.5
    assert (side.all(1) | ~side.any(1)).all()  # no triangle mixes the islands
    tri_x = data.positions[data.indices].mean(1)[:, 0]
    away = np.abs(tri_x) > 0.015  # clusters move corners by up to a cell near the seam
    assert away.mean() > 0.7 and (side[away, 0] == (tri_x[away] > 0)).all()


def test_glb_asset_round_trip(tmp_path):
    glb = tmp_path / "head.glb"
    v, f = two_part_glb(glb)
    parts = {p.name: p for p in mesh_from_glb(glb)}
    assert sorted(parts) == ["eyes", "skin"]
    skin, eyes = parts["skin"], parts["eyes"]
    assert isinstance(skin.texture, bytes) and skin.texture.startswith(b"\x89PNG")
    np.testing.assert_allclose(skin.vertices, v - [0.12, 0, 0], atol=1e-6)
    np.testing.assert_array_equal(skin.triangles, f)
    np.testing.assert_allclose(skin.uvs, sphere_uv(v), atol=1e-6)  # v up again after glTF's v down
    assert eyes.texture is None and eyes.uvs is None
    np.testing.assert_allclose(eyes.color, np.array([230, 200, 20]) / 255, atol=1e-3)

    text = build_report(tmp_path, ReportContent(glb=glb)).read_text()
    blob = _mesh_blob(text)
    assert blob["triangleCount"] == 2 * len(f)
    assert len(blob["textures"]) == 1 and blob["textures"][0]["src"].startswith("data:image/png")
    got = sorted((p["name"], p["count"], p["texture"]) for p in blob["parts"])
    assert got == [("eyes", len(f), -1), ("skin", len(f), 0)]
    assert "head.glb" in text and "2 parts" in text


def test_parts_share_the_budget_and_textures(tmp_path):
    v, f = icosphere(4)  # 5120 triangles per part
    tex = write_image(tmp_path / "t.png", quadrant_texture(16))
    a = ViewerMesh(v, f, sphere_uv(v), None, texture=tex, name="a")
    b = ViewerMesh(v + 1.0, f, sphere_uv(v), None, texture=tex, name="b")
    c = ViewerMesh(v - 1.0, f[:1280], None, None, color=(1.0, 0.0, 0.0), name="c")
    data = prepare([a, b, c], max_triangles=5000)
    assert [p.name for p in data.parts] == ["a", "b", "c"]
    counts = [p.count for p in data.parts]
    assert sum(counts) <= 5000 and counts[0] > 3 * counts[2] and abs(counts[0] - counts[1]) < 0.1 * counts[0]
    assert [p.start for p in data.parts] == [0, counts[0], counts[0] + counts[1]]
    # Every part indexes only its own vertices.
    part_of = np.repeat(np.arange(3), counts)
    centre = data.positions[data.indices].mean(1).mean(1)
    assert (np.abs(centre - np.array([0.0, 1.0, -1.0])[part_of]) < 0.2).all()
    blob = _mesh_blob(build_report(tmp_path, ReportContent(mesh=[a, b, c])).read_text())
    assert len(blob["textures"]) == 1  # one file, embedded once
    assert [p["texture"] for p in blob["parts"]] == [0, 0, -1] and blob["parts"][2]["color"] == [1.0, 0.0, 0.0]


def test_partial_content_and_escaping(tmp_path):
    text = build_report(tmp_path, ReportContent(subject="<script>alert(1)</script>")).read_text()
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)" in text
    assert 'data-status="none"' in text and 'id="mesh-data"' not in text
    assert "No stage summary" in text


def test_bad_inputs_name_the_file_and_keep_the_old_report(tmp_path):
    old = build_report(tmp_path, ReportContent(subject="first")).read_bytes()
    report = tmp_path / "report.html"

    missing = tmp_path / "fit" / "overlays" / "cam9.jpg"
    with pytest.raises(InputError, match="cam9.jpg"):
        build_report(tmp_path, ReportContent(subject="second", overlays=[Overlay(missing)]))
    assert report.read_bytes() == old

    good = write_image(tmp_path / "tex.png", quadrant_texture(64))
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError, match="broken.png"):
        build_report(tmp_path, ReportContent(texture=broken))
    assert report.read_bytes() == old

    bad_glb = tmp_path / "bad.glb"
    bad_glb.write_bytes(b"glTF" + b"\x00" * 40)
    with pytest.raises(InputError, match="bad.glb"):
        build_report(tmp_path, ReportContent(glb=bad_glb))

    v, f = icosphere(1)
    with pytest.raises(MvreconError, match="uv_triangles"):
        build_report(tmp_path, ReportContent(mesh=ViewerMesh(v, f, sphere_uv(v), f[:-1])))
    with pytest.raises(MvreconError, match="out of range"):
        build_report(tmp_path, ReportContent(mesh=ViewerMesh(v, f + 1000)))
    with pytest.raises(InputError, match="viewer texture not found"):
        build_report(tmp_path, ReportContent(mesh=quad_mesh(tmp_path / "nope.png")))
    assert report.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    with pytest.raises(InputError, match="session folder not found"):
        build_report(tmp_path / "no-such-session", ReportContent())


def test_overlays_in_lists_images_by_name(tmp_path):
    folder = tmp_path / "fit" / "overlays"
    assert overlays_in(folder) == []
    for name in ("rig01_cam2.jpg", "rig01_cam0.png", ".rig01_cam1.jpg.tmp-1-x", "notes.txt"):
        write_image(folder / name, quadrant_texture(8)) if name.endswith((".jpg", ".png")) else (folder / name).write_text("x")
    got = overlays_in(folder)
    assert [(o.path.name, o.caption) for o in got] == [("rig01_cam0.png", "rig01_cam0"), ("rig01_cam2.jpg", "rig01_cam2")]
