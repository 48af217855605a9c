"""An offline glTF viewer for the exported head: three.js (npm package ``three``, MIT) inlined.

three.js is installed once with npm under ``~/.cache/mvrecon/npm`` (``MVRECON_NPM_CACHE``; the same
prefix as the glTF validator, :mod:`mvrecon.export.validator`; ``tools/setup.sh`` installs it) and
its modules (three, GLTFLoader with BufferGeometryUtils, OrbitControls, the meshopt decoder) are
put into the page as ``data:`` modules behind an import map, with three.js's licence in a comment:
the page needs no network. The viewer shows the .glb with its materials as authored (alpha
blending for the eye film, alpha-tested lashes), a slider per morph target, a LOD switch
(the file's scenes) and the captured expression clip.

Query parameters (for tests and links): ``lod=K``, ``morph=name:w,name:w``, ``focus=eye_left``
(frame a joint close up), ``clip=1`` (show the captured clip's first frame).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

from ..errors import MvreconError

THREE_VERSION = "0.170.0"


class ThreeUnavailable(MvreconError):
    """node/npm or the three package is not available."""


def three_dir(install: bool = True) -> Path:
    """The installed ``three`` package (installed with npm when missing and ``install``)."""
    from ..export.validator import npm_prefix

    prefix = npm_prefix()
    pkg = prefix / "node_modules" / "three"
    if (pkg / "build" / "three.module.min.js").is_file():
        return pkg
    if not install or shutil.which("npm") is None:
        raise ThreeUnavailable(f"three.js is not installed under {prefix} and npm is not available")
    prefix.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["npm", "install", "--prefix", str(prefix), f"three@{THREE_VERSION}", "--no-audit", "--no-fund"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode != 0 or not (pkg / "build" / "three.module.min.js").is_file():
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ThreeUnavailable(f"npm install three failed: {tail[0]}")
    return pkg


def _data_module(src: str) -> str:
    return "data:text/javascript;base64," + base64.b64encode(src.encode("utf-8")).decode("ascii")


def import_map(install: bool = True) -> tuple[str, str]:
    """(the ``<script type="importmap">`` element, three.js's licence text)."""
    pkg = three_dir(install)
    jsm = pkg / "examples" / "jsm"
    gltf = (jsm / "loaders" / "GLTFLoader.js").read_text()
    # a data: module cannot import relative paths: name the helper through the import map
    gltf = gltf.replace("'../utils/BufferGeometryUtils.js'", "'three/addons/BufferGeometryUtils.js'")
    mods = {
        "three": (pkg / "build" / "three.module.min.js").read_text(),
        "three/addons/GLTFLoader.js": gltf,
        "three/addons/BufferGeometryUtils.js": (jsm / "utils" / "BufferGeometryUtils.js").read_text(),
        "three/addons/OrbitControls.js": (jsm / "controls" / "OrbitControls.js").read_text(),
        "three/addons/meshopt_decoder.js": (jsm / "libs" / "meshopt_decoder.module.js").read_text(),
    }
    imap = json.dumps({"imports": {k: _data_module(v) for k, v in mods.items()}})
    return f'<script type="importmap">{imap}</script>', (pkg / "LICENSE").read_text()


VIEWER_JS = r"""
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/GLTFLoader.js';
import { OrbitControls } from 'three/addons/OrbitControls.js';
import { MeshoptDecoder } from 'three/addons/meshopt_decoder.js';

const status = document.getElementById('game-status');
function say(state, text, extra) {
  status.dataset.status = state; status.textContent = text;
  for (const [k, v] of Object.entries(extra || {})) status.dataset[k] = String(v);
  status.className = 'game-status ' + state;
}
try {
  const q = new URLSearchParams(location.search);
  const canvas = document.getElementById('game-canvas');
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(1);
  renderer.outputColorSpace = THREE.SRGBColorSpace;
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0xe9ecef);
  const camera = new THREE.PerspectiveCamera(25, 1, 0.005, 10);
  scene.add(new THREE.HemisphereLight(0xffffff, 0x8d7f76, 1.6));
  const key = new THREE.DirectionalLight(0xffffff, 1.6); key.position.set(0.4, 0.6, 1.0); scene.add(key);
  const controls = new OrbitControls(camera, canvas);
  const b64 = document.getElementById('game-glb').textContent.trim();
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const loader = new GLTFLoader();
  loader.setMeshoptDecoder(MeshoptDecoder);
  loader.parse(bytes.buffer, '', (gltf) => {
    const lods = gltf.scenes.map((s) => { const g = new THREE.Group(); g.add(s); return g; });
    const meshes = [];   // the morphing meshes of each LOD
    lods.forEach((g, i) => {
      const list = [];
      g.traverse((o) => { if (o.isMesh && o.morphTargetInfluences) list.push(o); });
      meshes.push(list); scene.add(g); g.visible = false;
    });
    const names = (gltf.parser.json.meshes[0].extras || {}).targetNames || [];
    const weights = new Float32Array(names.length);
    let lod = Math.min(parseInt(q.get('lod') || '0', 10), lods.length - 1);
    const clip = gltf.animations[0];
    if (clip && q.get('clip') === '1') {
      for (const tr of clip.tracks) if (tr.name.endsWith('.morphTargetInfluences')) {
        for (let k = 0; k < names.length; k++) weights[k] = tr.values[k];
        break;
      }
    }
    for (const pair of (q.get('morph') || '').split(',')) {
      const [n, w] = pair.split(':');
      const k = names.indexOf(n);
      if (k >= 0) weights[k] = parseFloat(w);
    }
    function apply() {
      lods.forEach((g, i) => { g.visible = i === lod; });
      for (const list of meshes) for (const m of list)
        for (let k = 0; k < weights.length; k++) m.morphTargetInfluences[k] = weights[k];
      render();
    }
    // frame the head, or a joint close up
    const box = new THREE.Box3().setFromObject(lods[0]);
    const centre = box.getCenter(new THREE.Vector3());
    const size = box.getSize(new THREE.Vector3()).length();
    let target = centre.clone(), dist = size * 1.6;
    const focus = q.get('focus');
    if (focus) {
      const j = scene.getObjectByName(focus);
      if (j) { scene.updateMatrixWorld(true); target = j.getWorldPosition(new THREE.Vector3()); dist = size * 0.22; }
    }
    camera.position.set(target.x, target.y, target.z + dist);
    controls.target.copy(target); controls.update();
    function render() { renderer.render(scene, camera); }
    function resize() {
      const w = canvas.clientWidth, h = canvas.clientHeight;
      renderer.setSize(w, h, false); camera.aspect = w / h; camera.updateProjectionMatrix(); render();
    }
    controls.addEventListener('change', render);
    window.addEventListener('resize', resize);
    // controls: LOD switch and a slider per morph target
    const sel = document.getElementById('game-lod');
    lods.forEach((_, i) => { const o = document.createElement('option'); o.value = i; o.textContent = 'LOD ' + i; sel.appendChild(o); });
    sel.value = String(lod);
    sel.addEventListener('change', () => { lod = parseInt(sel.value, 10); apply(); });
    const box2 = document.getElementById('game-morphs');
    names.forEach((n, k) => {
      const row = document.createElement('label');
      const s = document.createElement('input');
      s.type = 'range'; s.min = 0; s.max = 1; s.step = 0.01; s.value = weights[k]; s.dataset.morph = n;
      s.addEventListener('input', () => { weights[k] = parseFloat(s.value); apply(); });
      row.append(s, ' ' + n); box2.appendChild(row);
    });
    document.getElementById('game-neutral').addEventListener('click', () => {
      weights.fill(0); box2.querySelectorAll('input').forEach((s) => { s.value = 0; }); apply();
    });
    resize(); apply();
    let tris = 0;
    lods[lod].traverse((o) => { if (o.isMesh) tris += o.geometry.index.count / 3; });
    say('ok', 'ok', { lods: lods.length, morphs: names.length, triangles: tris, lod,
                      transparent: gltf.parser.json.materials.filter((m) => m.alphaMode === 'BLEND' || m.alphaMode === 'MASK').length });
  }, (err) => say('error', 'could not load the asset: ' + err));
} catch (e) { say('error', 'viewer failed: ' + e); }
"""

CSS = """
.game { position: relative; display: grid; grid-template-columns: 1fr 260px; gap: 10px; }
#game-canvas { width: 100%; height: 560px; display: block; border: 1px solid #d0d5da; border-radius: 6px; }
#game-controls { max-height: 560px; overflow-y: auto; font-size: 12px; }
#game-controls label { display: block; white-space: nowrap; }
#game-controls input[type=range] { width: 110px; vertical-align: middle; }
.game-status { position: absolute; top: 10px; left: 10px; font-size: 13px; padding: 4px 10px; background: #fff; }
.game-status.ok { display: none; }
.game-status.error { background: #fde7e9; color: #a4262c; }
"""


def viewer_fragment(glb: bytes) -> tuple[str, str]:
    """(the viewer's HTML, the scripts to put after it: import map with three.js, its licence as a
    comment, the embedded .glb and the viewer module)."""
    imap, licence = import_map()
    html = (
        '<div class="game"><canvas id="game-canvas" aria-label="the exported head.glb in three.js"></canvas>'
        '<div id="game-controls"><p><select id="game-lod" aria-label="level of detail"></select> '
        '<button id="game-neutral" type="button">Neutral</button></p>'
        '<div id="game-morphs"></div></div>'
        '<div id="game-status" class="game-status pending" data-status="pending">Loading head.glb&hellip;</div></div>'
    )
    lic = licence.replace("*/", "* /")
    scripts = (
        f"<!-- three.js {THREE_VERSION} (npm package 'three'), inlined below:\n{lic}\n-->\n{imap}\n"
        f'<script type="text/plain" id="game-glb">{base64.b64encode(glb).decode("ascii")}</script>\n'
        f'<script type="module">{VIEWER_JS}</script>'
    )
    return html, scripts


def viewer_page(glb: bytes, title: str = "head.glb") -> str:
    """A standalone HTML page showing ``glb`` (see the module docstring)."""
    html, scripts = viewer_fragment(glb)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{CSS}"
        "body{font-family:sans-serif;margin:12px}</style></head><body>"
        f"{html}\n{scripts}</body></html>"
    )
