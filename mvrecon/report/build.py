"""``SESSION/report.html``: one self-contained page a person can open from disk, offline.

Photos are embedded as JPEG data URIs, maps (texture, heatmap, loss curve) as PNG data URIs, the
3D view's mesh as base64 arrays and its viewer as inline JavaScript; nothing is fetched.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InputError
from ..io import read_image, write_text
from .content import Overlay, ReportContent
from .viewer import DEFAULT_MAX_TRIANGLES, ViewerData, mesh_from_glb, prepare
from .viewer_js import VIEWER_JS

REPORT_NAME = "report.html"


@dataclass(frozen=True)
class ReportConfig:
    """How big the embedded material may get."""

    photo_max_side: int = 1280
    """Photos (overlays) larger than this many pixels on their long side are downscaled."""
    map_max_side: int = 1024
    """Texture, heatmap and loss curve larger than this on their long side are downscaled (the
    viewer reuses the embedded texture, so this also sets its resolution)."""
    jpeg_quality: int = 88
    """JPEG quality (1-100) of re-encoded photos."""
    max_triangles: int = DEFAULT_MAX_TRIANGLES
    """Triangle budget of the 3D view; bigger meshes are decimated (kept region at full res)."""


def _data_uri(path: Path, kind: Literal["photo", "map"], cfg: ReportConfig) -> str:
    """Embed ``path`` as a data URI: photos as JPEG, maps as PNG, downscaled to the size limits.

    Files already in the right format and size are embedded byte for byte (after a full decode,
    so a corrupt file is refused here rather than shown broken).
    """
    import cv2

    path = Path(path)
    img = read_image(path)
    h, w = img.shape[:2]
    limit = cfg.photo_max_side if kind == "photo" else cfg.map_max_side
    want = "jpeg" if kind == "photo" else "png"
    head = path.read_bytes()[:8]
    is_fmt = head.startswith(b"\xff\xd8\xff") if want == "jpeg" else head.startswith(b"\x89PNG")
    if is_fmt and max(h, w) <= limit:
        data = path.read_bytes()
    else:
        if max(h, w) > limit:
            s = limit / max(h, w)
            img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(img[..., ::-1])
        params = [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality] if want == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 6]
        ok, buf = cv2.imencode(".jpg" if want == "jpeg" else ".png", bgr, params)
        if not ok:
            raise InputError(f"could not re-encode as {want}", path)
        data = buf.tobytes()
    return f"data:image/{want};base64," + base64.b64encode(data).decode("ascii")


def _bytes_uri(data: bytes, what: str, cfg: ReportConfig) -> str:
    """Embed an encoded image held in memory (a GLB's texture) as a PNG data URI, downscaled."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{what}: embedded texture is not a decodable image")
    h, w = img.shape[:2]
    if max(h, w) > cfg.map_max_side:
        s = cfg.map_max_side / max(h, w)
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise InputError(f"{what}: could not re-encode the texture as png")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _fmt(v: object) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if v != 0 else "0"
    if isinstance(v, (list, tuple, np.ndarray)):
        return ", ".join(_fmt(x) for x in list(np.asarray(v).ravel())[:12])
    return str(v)


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _metrics_rows(metrics: Mapping[str, object], depth: int = 0) -> list[str]:
    rows = []
    for k, v in metrics.items():
        if isinstance(v, Mapping):
            rows.append(f'<tr class="group d{depth}"><th colspan="2">{_e(k)}</th></tr>')
            rows += _metrics_rows(v, depth + 1)
        else:
            rows.append(f'<tr class="d{depth}"><td>{_e(k)}</td><td class="num">{_e(_fmt(v))}</td></tr>')
    return rows


def _stage_table(content: ReportContent) -> str:
    if not content.stages:
        return '<p class="empty">No stage summary was recorded for this run.</p>'
    rows = []
    for r in content.stages:
        secs = "" if r.seconds is None else (f"{r.seconds:.1f} s" if r.seconds < 120 else f"{r.seconds / 60:.1f} min")
        nums = " ".join(
            f'<span class="kv"><span class="k">{_e(k)}</span> <span class="v">{_e(_fmt(v))}</span></span>'
            for k, v in r.numbers.items()
        )
        note = f'<div class="note">{_e(r.note)}</div>' if r.note else ""
        rows.append(
            f'<tr><td class="stage">{_e(r.stage)}</td>'
            f'<td><span class="badge {_e(r.status.replace(" ", "-"))}">{_e(r.status)}</span></td>'
            f'<td class="num">{_e(secs)}</td><td>{nums}{note}</td></tr>'
        )
    total = sum(r.seconds for r in content.stages if r.seconds is not None)
    return (
        '<table class="summary"><thead><tr><th>Stage</th><th>Status</th><th class="num">Time</th>'
        "<th>Key numbers</th></tr></thead><tbody>" + "".join(rows) + "</tbody>"
        f'<tfoot><tr><td>total</td><td></td><td class="num">{total:.1f} s</td><td></td></tr></tfoot></table>'
    )


def _figure(uri: str, caption: str, img_id: str = "", cls: str = "") -> str:
    idattr = f' id="{_e(img_id)}"' if img_id else ""
    return (
        f'<figure class="{cls}"><img{idattr} src="{uri}" alt="{_e(caption)}" loading="eager">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _viewer_section(content: ReportContent, cfg: ReportConfig, texture_uri: str | None) -> tuple[str, str]:
    """The 3D view's HTML and the JSON mesh blob ('' when there is no asset)."""
    meshes = content.mesh
    source = "fitted mesh"
    if meshes is None and content.glb is not None:
        meshes = mesh_from_glb(content.glb)
        source = Path(content.glb).name
    if meshes is None:
        return (
            '<div class="viewer empty-viewer"><p>No 3D asset was produced in this run.</p>'
            '<div id="viewer-status" data-status="none">no 3D asset</div></div>',
            "",
        )
    data: ViewerData = prepare(meshes, cfg.max_triangles)
    blob = data.packed()
    # Each distinct texture is embedded once; the page's own texture <img> is reused, not copied.
    textures: list[dict] = []
    seen: dict[object, int] = {}
    shown = None if content.texture is None else Path(content.texture).resolve()
    parts = []
    for part in data.parts:
        tex_index = -1
        if part.texture is not None:
            key = part.texture if isinstance(part.texture, bytes) else Path(part.texture).resolve()
            if key not in seen:
                if isinstance(part.texture, bytes):
                    textures.append({"src": _bytes_uri(part.texture, source, cfg)})
                elif key == shown and texture_uri is not None:
                    textures.append({"img": "texture-img"})
                else:
                    textures.append({"src": _data_uri(Path(part.texture), "map", cfg)})
                seen[key] = len(textures) - 1
            tex_index = seen[key]
        parts.append(
            {
                "start": part.start,
                "count": part.count,
                "texture": tex_index,
                "color": list(part.color),
                "name": part.name,
            }
        )
    blob["textures"] = textures
    blob["parts"] = parts
    decimated = (
        f" (decimated from {data.source_triangles:,} for the viewer)"
        if data.source_triangles != len(data.indices)
        else ""
    )
    names = [p.name for p in data.parts if p.name]
    part_info = f" in {len(data.parts)} parts" if len(data.parts) > 1 else ""
    info = f"{_e(source)}: {len(data.positions):,} vertices, {len(data.indices):,} triangles{part_info}{_e(decimated)}"
    if names and len(data.parts) > 1:
        info += f" ({_e(', '.join(names))})"
    viewer = (
        '<div class="viewer">'
        '<canvas id="viewer-canvas" aria-label="interactive 3D view of the reconstructed head"></canvas>'
        '<div class="toolbar">'
        '<button id="viewer-reset" type="button" title="back to the front view (or double-click)">Reset view</button>'
        '<button id="viewer-wire" type="button" aria-pressed="false">Wireframe</button>'
        '<button id="viewer-texture" type="button" aria-pressed="false">Texture</button>'
        '<span class="hint">drag: orbit &middot; shift/right drag: pan &middot; wheel: zoom</span>'
        "</div>"
        '<div id="viewer-status" class="viewer-status pending" data-status="pending">Loading the 3D view&hellip;</div>'
        f'<p class="meta">{info}</p></div>'
    )
    return viewer, json.dumps(blob, separators=(",", ":")).replace("</", "<\\/")


def _game_section(content: ReportContent) -> tuple[str, str]:
    """The exported .glb in three.js (materials as authored, morph sliders, LOD switch), or
    nothing when there is no .glb or three.js is not installed (the page says which)."""
    from .threejs import CSS, ThreeUnavailable, viewer_fragment

    if content.glb is None or not Path(content.glb).is_file():
        return "", ""
    try:
        html, scripts = viewer_fragment(Path(content.glb).read_bytes())
    except ThreeUnavailable as e:
        return (
            f'<section id="game"><h2>Game asset</h2><p class="sub">The three.js viewer is not available '
            f"here ({_e(e)}).</p></section>",
            "",
        )
    head = (
        f'<section id="game"><h2>Game asset ({_e(Path(content.glb).name)} in three.js)</h2>'
        '<p class="sub">As a game engine shows it: its materials (transparent eye film), every morph '
        f"target as a slider, the levels of detail.</p><style>{CSS}</style>"
    )
    return head + html + "</section>", scripts


def render_html(content: ReportContent, cfg: ReportConfig = ReportConfig()) -> str:
    """The whole report page as one string (no file access beyond reading the inputs)."""
    from .. import __version__ as mvrecon_version

    title = content.subject or "session"
    prov = dict(content.provenance)
    prov.setdefault("mvrecon", str(mvrecon_version))
    prov_html = "".join(f'<span class="chip"><span class="k">{_e(k)}</span> {_e(v)}</span>' for k, v in prov.items())

    overlays = [o if isinstance(o, Overlay) else Overlay(Path(o)) for o in content.overlays]
    overlay_html = "".join(
        _figure(_data_uri(o.path, "photo", cfg), o.caption or Path(o.path).stem, cls="overlay") for o in overlays
    )
    texture_uri = None if content.texture is None else _data_uri(content.texture, "map", cfg)
    maps = []
    if texture_uri is not None:
        maps.append(_figure(texture_uri, "Baked albedo texture (UV layout)", img_id="texture-img"))
    if content.heatmap is not None:
        maps.append(_figure(_data_uri(content.heatmap, "map", cfg), "Scan error heatmap", img_id="heatmap-img"))
    loss_html = (
        "" if content.loss_curve is None else _figure(_data_uri(content.loss_curve, "map", cfg), "Fit loss per step")
    )
    viewer_html, mesh_json = _viewer_section(content, cfg, texture_uri)

    sections = [
        f'<section id="view3d"><h2>3D view</h2>{viewer_html}</section>',
        f'<section id="summary"><h2>Summary</h2>{_stage_table(content)}</section>',
    ]
    if overlay_html:
        sections.append(
            '<section id="overlays"><h2>Views</h2><p class="sub">Photos with the fitted mesh and part outlines '
            f'(click to enlarge).</p><div class="grid">{overlay_html}</div></section>'
        )
    if maps:
        sections.append(
            f'<section id="maps"><h2>Texture and scan error</h2><div class="pair">{"".join(maps)}</div></section>'
        )
    if content.metrics:
        sections.append(
            '<section id="metrics"><h2>Metrics</h2><table class="metrics"><tbody>'
            + "".join(_metrics_rows(content.metrics))
            + "</tbody></table></section>"
        )
    if loss_html:
        sections.append(f'<section id="loss"><h2>Fit</h2><div class="single">{loss_html}</div></section>')

    scripts = ""
    if mesh_json:
        scripts = f'<script type="application/json" id="mesh-data">{mesh_json}</script>\n<script>{VIEWER_JS}</script>'
    game_html, game_scripts = _game_section(content)
    if game_html:
        sections.insert(1, game_html)
        scripts += "\n" + game_scripts
    return _PAGE.format(
        title=_e(title),
        prov=prov_html,
        css=_CSS,
        body="\n".join(sections),
        scripts=scripts,
        zoom_js=_ZOOM_JS,
    )


def build_report(session_root: str | Path, content: ReportContent, cfg: ReportConfig = ReportConfig()) -> Path:
    """Write ``session_root/report.html`` atomically and return its path.

    Raises :class:`~mvrecon.errors.InputError` naming the file when an image or GLB given in
    ``content`` is missing or corrupt; the previous report (if any) is then left untouched.
    """
    root = Path(session_root)
    if not root.is_dir():
        raise InputError("session folder not found", root)
    return write_text(root / REPORT_NAME, render_html(content, cfg))


_ZOOM_JS = r"""
document.querySelectorAll('figure.overlay img').forEach(function (img) {
  img.addEventListener('click', function () { img.closest('figure').classList.toggle('zoomed'); });
});
"""

_CSS = r"""
:root { --fg: #1d2430; --muted: #5d6778; --line: #dde2ea; --bg: #f6f7f9; --card: #fff; --accent: #1a73c8; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); background: var(--bg); }
header { background: #17202e; color: #fff; padding: 22px 32px 18px; }
header .brand { font-size: 12px; letter-spacing: .12em; text-transform: uppercase; color: #9fb3cc; }
header h1 { margin: 4px 0 10px; font-size: 26px; font-weight: 600; }
.chip { display: inline-block; margin: 0 6px 6px 0; padding: 2px 10px; border-radius: 12px;
        background: #26344a; color: #e6edf6; font-size: 13px; }
.chip .k { color: #9fb3cc; margin-right: 4px; }
main { max-width: 1280px; margin: 0 auto; padding: 8px 24px 40px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; margin: 20px 0; padding: 16px 20px; }
h2 { margin: 0 0 12px; font-size: 18px; font-weight: 600; }
p.sub, p.meta, p.empty { color: var(--muted); margin: 4px 0 10px; font-size: 13px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); }
tfoot td { font-weight: 600; border-bottom: none; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.stage { font-weight: 600; }
.kv { display: inline-block; margin: 0 14px 2px 0; white-space: nowrap; }
.kv .k { color: var(--muted); } .kv .v { font-variant-numeric: tabular-nums; font-weight: 600; }
.note { color: #a4262c; font-size: 13px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.badge.done { background: #e3f4e8; color: #1e7b3c; } .badge.skipped { background: #eef1f5; color: #5d6778; }
.badge.failed { background: #fde7e9; color: #a4262c; } .badge.not-run { background: #fff4ce; color: #7a5d00; }
.badge.stale { background: #fde7e9; color: #7a3d00; }
table.metrics { max-width: 720px; }
table.metrics tr.group th { background: #f0f3f7; font-size: 13px; }
table.metrics tr.d1 td:first-child { padding-left: 24px; } table.metrics tr.d2 td:first-child { padding-left: 40px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 14px; }
.pair { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 18px; }
.single { max-width: 760px; }
figure { margin: 0; }
figure img { display: block; width: 100%; height: auto; border-radius: 6px; border: 1px solid var(--line); background: #eee; }
figure.overlay img { cursor: zoom-in; }
figure.overlay.zoomed { grid-column: 1 / -1; } figure.overlay.zoomed img { cursor: zoom-out; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; text-align: center; }
.viewer { position: relative; }
#viewer-canvas { display: block; width: 100%; height: 560px; border-radius: 6px; border: 1px solid var(--line);
                 background: #f3f5f8; touch-action: none; cursor: grab; }
.toolbar { display: flex; gap: 8px; align-items: center; margin-top: 10px; flex-wrap: wrap; }
.toolbar button { font: inherit; font-size: 13px; padding: 5px 12px; border-radius: 6px; border: 1px solid #c5ccd8;
                  background: #fff; color: var(--fg); cursor: pointer; }
.toolbar button[aria-pressed="true"] { background: var(--accent); color: #fff; border-color: var(--accent); }
.toolbar button:disabled { opacity: .45; cursor: default; }
.toolbar .hint { color: var(--muted); font-size: 13px; margin-left: auto; }
.viewer-status { position: absolute; top: 12px; left: 12px; font-size: 13px; padding: 4px 10px; border-radius: 6px; }
.viewer-status.pending { background: #fff; color: var(--muted); }
.viewer-status.error { background: #fde7e9; color: #a4262c; }
.viewer-status.ok { display: none; }
.empty-viewer { padding: 30px; text-align: center; color: var(--muted); }
footer { text-align: center; color: var(--muted); font-size: 12px; padding: 0 0 30px; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} &middot; mvrecon report</title>
<style>{css}</style>
</head>
<body>
<header><div class="brand">mvrecon session report</div><h1>{title}</h1><div class="prov">{prov}</div></header>
<main>
{body}
</main>
<footer>One self-contained file: every image, the mesh and the viewer are embedded; it needs no network.</footer>
{scripts}
<script>{zoom_js}</script>
</body>
</html>
"""
