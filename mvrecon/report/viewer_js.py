"""The report's WebGL viewer, plain JavaScript inlined into report.html (no library, no network).

It reads the mesh from ``<script type="application/json" id="mesh-data">`` (base64 little-endian
Float32/Uint32 arrays, see :mod:`mvrecon.report.viewer`), draws it textured with a camera-attached
key and fill light, orbits on drag, pans on shift/right drag, zooms on the wheel, and toggles a
wireframe and the texture. After the first complete frame it reads the pixels back and records in
``#viewer-status`` whether anything but background was drawn, so a headless browser can check it.
"""

VIEWER_JS = r"""
(function () {
  'use strict';
  var statusEl = document.getElementById('viewer-status');
  function setStatus(state, message, attrs) {
    if (!statusEl) return;
    // The first error wins: a later 'ok' must not hide it.
    if (statusEl.getAttribute('data-status') === 'error') return;
    statusEl.setAttribute('data-status', state);
    if (message !== undefined) statusEl.setAttribute('data-message', message);
    for (var k in (attrs || {})) statusEl.setAttribute('data-' + k, String(attrs[k]));
    statusEl.textContent = state === 'ok' ? '' : message;
    statusEl.className = 'viewer-status ' + state;
  }
  window.onerror = function (msg, src, line) {
    setStatus('error', 'viewer error: ' + msg + (line ? ' (line ' + line + ')' : ''));
  };
  var dataEl = document.getElementById('mesh-data');
  if (!dataEl) return;
  var mesh = JSON.parse(dataEl.textContent);

  function decode(b64, Type) {
    var bin = atob(b64), n = bin.length, bytes = new Uint8Array(n);
    for (var i = 0; i < n; i++) bytes[i] = bin.charCodeAt(i);
    // The arrays were written little-endian; every platform browsers run on is little-endian.
    return new Type(bytes.buffer);
  }
  var pos = decode(mesh.positions, Float32Array);
  var nrm = decode(mesh.normals, Float32Array);
  var uv = mesh.uvs ? decode(mesh.uvs, Float32Array) : null;
  var idx = decode(mesh.indices, Uint32Array);

  var canvas = document.getElementById('viewer-canvas');
  var opts = { antialias: true, preserveDrawingBuffer: true, alpha: false };
  var gl = canvas.getContext('webgl2', opts);
  var gl2 = !!gl;
  if (!gl) gl = canvas.getContext('webgl', opts) || canvas.getContext('experimental-webgl', opts);
  if (!gl) throw new Error('WebGL is not available in this browser');
  var indexType = gl.UNSIGNED_INT;
  if (!gl2 && !gl.getExtension('OES_element_index_uint')) {
    if (mesh.vertexCount > 65535) throw new Error('this browser cannot draw meshes above 65535 vertices');
    idx = new Uint16Array(idx);
    indexType = gl.UNSIGNED_SHORT;
  }

  var VS = [
    'attribute vec3 aPos; attribute vec3 aNrm; attribute vec2 aUV;',
    'uniform mat4 uMV; uniform mat4 uProj; uniform mat3 uNrmMat;',
    'varying vec3 vN; varying vec3 vP; varying vec2 vUV;',
    'void main() { vec4 p = uMV * vec4(aPos, 1.0); vP = p.xyz; vN = uNrmMat * aNrm; vUV = aUV;',
    '  gl_Position = uProj * p; }'].join('\n');
  var FS = [
    'precision mediump float;',
    'uniform sampler2D uTex; uniform float uUseTex; uniform float uLines; uniform vec3 uBase;',
    'varying vec3 vN; varying vec3 vP; varying vec2 vUV;',
    'void main() {',
    '  if (uLines > 0.5) { gl_FragColor = vec4(0.10, 0.55, 0.85, 1.0); return; }',
    '  vec3 n = normalize(vN); if (!gl_FrontFacing) n = -n;',
    '  vec3 v = normalize(-vP);',
    // Lights ride with the camera so whatever side the user looks at is lit.
    '  vec3 key = normalize(vec3(0.35, 0.55, 1.0)); vec3 fill = normalize(vec3(-0.7, 0.0, 0.5));',
    '  float d = 0.28 + 0.62 * max(dot(n, key), 0.0) + 0.22 * max(dot(n, fill), 0.0);',
    '  float s = 0.06 * pow(max(dot(n, normalize(key + v)), 0.0), 24.0);',
    '  vec3 albedo = uUseTex > 0.5 ? texture2D(uTex, vUV).rgb : uBase;',
    '  gl_FragColor = vec4(albedo * d + s, 1.0);',
    '}'].join('\n');
  function shader(type, src) {
    var s = gl.createShader(type);
    gl.shaderSource(s, src); gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error('shader: ' + gl.getShaderInfoLog(s));
    return s;
  }
  var prog = gl.createProgram();
  gl.attachShader(prog, shader(gl.VERTEX_SHADER, VS));
  gl.attachShader(prog, shader(gl.FRAGMENT_SHADER, FS));
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error('program: ' + gl.getProgramInfoLog(prog));
  gl.useProgram(prog);
  var U = {};
  ['uMV', 'uProj', 'uNrmMat', 'uTex', 'uUseTex', 'uLines', 'uBase'].forEach(function (n) {
    U[n] = gl.getUniformLocation(prog, n);
  });
  function attrib(name, data, size) {
    var loc = gl.getAttribLocation(prog, name);
    if (loc < 0) return;
    if (!data) { gl.disableVertexAttribArray(loc); gl.vertexAttrib2f(loc, 0, 0); return; }
    var b = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, b);
    gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
    gl.enableVertexAttribArray(loc);
    gl.vertexAttribPointer(loc, size, gl.FLOAT, false, 0, 0);
  }
  attrib('aPos', pos, 3); attrib('aNrm', nrm, 3); attrib('aUV', uv, 2);
  var triBuf = gl.createBuffer();
  gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, triBuf);
  gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, idx, gl.STATIC_DRAW);
  var lineBuf = null, lineCount = 0;
  function buildEdges() {
    // Unique undirected edges: key a*V+b (a<b) fits a double exactly for any mesh WebGL can hold.
    var V = mesh.vertexCount, m = idx.length, keys = new Float64Array(m);
    for (var t = 0; t < m; t += 3) {
      for (var k = 0; k < 3; k++) {
        var a = idx[t + k], b = idx[t + (k + 1) % 3];
        keys[t + k] = a < b ? a * V + b : b * V + a;
      }
    }
    keys.sort();
    var out = new (indexType === gl.UNSIGNED_INT ? Uint32Array : Uint16Array)(2 * m), n = 0;
    for (var i = 0; i < m; i++) {
      if (i > 0 && keys[i] === keys[i - 1]) continue;
      out[n++] = Math.floor(keys[i] / V); out[n++] = keys[i] % V;
    }
    lineBuf = gl.createBuffer();
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, lineBuf);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, out.subarray(0, n), gl.STATIC_DRAW);
    lineCount = n;
  }

  // Camera: orbit (yaw, pitch) around a target at a distance, model +Y up, starting on +Z.
  var lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
  for (var i = 0; i < pos.length; i += 3) {
    for (var k = 0; k < 3; k++) { lo[k] = Math.min(lo[k], pos[i + k]); hi[k] = Math.max(hi[k], pos[i + k]); }
  }
  var centre = [0, 1, 2].map(function (k) { return 0.5 * (lo[k] + hi[k]); });
  var radius = 0.5 * Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]) || 1;
  var FOV = 35 * Math.PI / 180;
  var cam;
  function resetCamera() {
    // Frame the front view on the bounding box (tighter than the bounding sphere for a head).
    var aspect = Math.max(canvas.clientWidth, 1) / Math.max(canvas.clientHeight, 1);
    var half = Math.max(0.5 * (hi[1] - lo[1]), 0.5 * (hi[0] - lo[0]) / aspect);
    var dist = 1.12 * half / Math.tan(FOV / 2) + 0.5 * (hi[2] - lo[2]);
    cam = { yaw: 0, pitch: 0, dist: Math.max(dist, 1e-6), target: centre.slice() };
  }
  resetCamera();

  function perspective(fovy, aspect, near, far) {
    var f = 1 / Math.tan(fovy / 2), nf = 1 / (near - far);
    return [f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0];
  }
  function modelView() {
    // R = Rx(pitch) * Ry(yaw); MV = T(0, 0, -dist) * R * T(-target); column-major.
    var cy = Math.cos(cam.yaw), sy = Math.sin(cam.yaw), cp = Math.cos(cam.pitch), sp = Math.sin(cam.pitch);
    var R = [cy, sp * sy, -cp * sy, 0, cp, sp, sy, -sp * cy, cp * cy];  // columns of the 3x3
    var t = cam.target;
    var tx = -(R[0] * t[0] + R[3] * t[1] + R[6] * t[2]);
    var ty = -(R[1] * t[0] + R[4] * t[1] + R[7] * t[2]);
    var tz = -(R[2] * t[0] + R[5] * t[1] + R[8] * t[2]) - cam.dist;
    return { mv: [R[0], R[1], R[2], 0, R[3], R[4], R[5], 0, R[6], R[7], R[8], 0, tx, ty, tz, 1], rot: R };
  }

  var parts = mesh.parts || [{ start: 0, count: mesh.triangleCount, texture: -1, color: [0.78, 0.72, 0.68] }];
  var texInfo = mesh.textures || [];
  var glTextures = texInfo.map(function () { return null; });
  var state = { wire: false, textured: !!uv && texInfo.length > 0, texReady: false };
  var indexBytes = indexType === gl.UNSIGNED_INT ? 4 : 2;
  var BG = [0.955, 0.96, 0.968];
  function resize() {
    var dpr = window.devicePixelRatio || 1;
    var w = Math.max(1, Math.round(canvas.clientWidth * dpr)), h = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  }
  function draw() {
    resize();
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(BG[0], BG[1], BG[2], 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.enable(gl.DEPTH_TEST);
    var m = modelView();
    var near = Math.max(cam.dist - 2 * radius, cam.dist * 0.01), far = cam.dist + 2 * radius;
    gl.uniformMatrix4fv(U.uMV, false, new Float32Array(m.mv));
    gl.uniformMatrix4fv(U.uProj, false, new Float32Array(perspective(FOV, canvas.width / canvas.height, near, far)));
    gl.uniformMatrix3fv(U.uNrmMat, false, new Float32Array(m.rot));
    gl.uniform1f(U.uLines, 0);
    // Push the surface back a little so the wireframe drawn on top wins the depth test.
    gl.enable(gl.POLYGON_OFFSET_FILL); gl.polygonOffset(1, 1);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, triBuf);
    gl.activeTexture(gl.TEXTURE0);
    gl.uniform1i(U.uTex, 0);
    parts.forEach(function (part) {
      var t = part.texture >= 0 ? glTextures[part.texture] : null;
      var useTex = !!(t && state.textured);
      if (useTex) gl.bindTexture(gl.TEXTURE_2D, t);
      gl.uniform1f(U.uUseTex, useTex ? 1 : 0);
      gl.uniform3f(U.uBase, part.color[0], part.color[1], part.color[2]);
      gl.drawElements(gl.TRIANGLES, 3 * part.count, indexType, 3 * part.start * indexBytes);
    });
    gl.disable(gl.POLYGON_OFFSET_FILL);
    if (state.wire) {
      if (!lineBuf) buildEdges();
      gl.uniform1f(U.uLines, 1);
      gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, lineBuf);
      gl.drawElements(gl.LINES, lineCount, indexType, 0);
    }
    var err = gl.getError();
    if (err !== gl.NO_ERROR) throw new Error('WebGL error 0x' + err.toString(16));
  }
  var pending = false;
  function redraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; draw(); });
  }
  function firstFrame() {
    draw();
    var w = canvas.width, h = canvas.height, px = new Uint8Array(w * h * 4), bg = BG.map(function (c) { return Math.round(c * 255); });
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px);
    var nonblank = 0, x0 = w, x1 = -1, y0 = h, y1 = -1;
    for (var p = 0; p < px.length; p += 4) {
      if (Math.abs(px[p] - bg[0]) + Math.abs(px[p + 1] - bg[1]) + Math.abs(px[p + 2] - bg[2]) > 6) {
        nonblank++;
        var q = p >> 2, x = q % w, y = (q - x) / w;
        if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
      }
    }
    // Share of the drawn bounding box that is covered: a solid surface fills most of it,
    // stray points or lines would not.
    var fill = nonblank ? nonblank / ((x1 - x0 + 1) * (y1 - y0 + 1)) : 0;
    var attrs = { triangles: mesh.triangleCount, 'source-triangles': mesh.sourceTriangles, vertices: mesh.vertexCount,
                  nonblank: nonblank, pixels: w * h, fill: fill.toFixed(3), textured: glTextures.filter(function (t) { return t; }).length, parts: parts.length, webgl: gl2 ? 2 : 1 };
    if (nonblank === 0) setStatus('error', 'the first frame drew nothing but background', attrs);
    else setStatus('ok', '', attrs);
  }

  function loadTextures(done) {
    var pending = uv ? texInfo.length : 0;
    if (!pending) { done(); return; }
    texInfo.forEach(function (info, i) {
      var src = info.src || (info.img && document.getElementById(info.img).getAttribute('src'));
      var img = new Image();
      img.onload = function () {
        var t = gl.createTexture();
        gl.bindTexture(gl.TEXTURE_2D, t);
        gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, true);  // UVs are v-up (OBJ), images are top row first
        gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, img);
        var pot = (img.width & (img.width - 1)) === 0 && (img.height & (img.height - 1)) === 0;
        if (gl2 || pot) { gl.generateMipmap(gl.TEXTURE_2D); gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR_MIPMAP_LINEAR); }
        else gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
        glTextures[i] = t;
        if (--pending === 0) { state.texReady = true; done(); }
      };
      img.onerror = function () { setStatus('error', 'texture ' + (i + 1) + ' of the 3D view could not be decoded'); };
      img.src = src;
    });
  }

  // Interaction.
  var drag = null;
  canvas.addEventListener('contextmenu', function (e) { e.preventDefault(); });
  canvas.addEventListener('pointerdown', function (e) {
    drag = { x: e.clientX, y: e.clientY, pan: e.shiftKey || e.button === 2 };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener('pointermove', function (e) {
    if (!drag) return;
    var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    drag.x = e.clientX; drag.y = e.clientY;
    if (drag.pan) {
      var s = 2 * cam.dist * Math.tan(FOV / 2) / canvas.clientHeight, R = modelView().rot;
      for (var k = 0; k < 3; k++) cam.target[k] -= s * (dx * R[3 * k] - dy * R[3 * k + 1]);
    } else {
      cam.yaw += dx * 0.01;
      cam.pitch = Math.max(-1.5, Math.min(1.5, cam.pitch + dy * 0.01));
    }
    redraw();
  });
  function endDrag() { drag = null; }
  canvas.addEventListener('pointerup', endDrag);
  canvas.addEventListener('pointercancel', endDrag);
  canvas.addEventListener('wheel', function (e) {
    e.preventDefault();
    cam.dist = Math.max(radius * 0.2, Math.min(radius * 30, cam.dist * Math.exp(e.deltaY * 0.0015)));
    redraw();
  }, { passive: false });
  canvas.addEventListener('dblclick', function () { resetCamera(); redraw(); });
  function button(id, fn) { var b = document.getElementById(id); if (b) b.addEventListener('click', fn); return b; }
  button('viewer-reset', function () { resetCamera(); redraw(); });
  var wireBtn = button('viewer-wire', function () {
    state.wire = !state.wire; wireBtn.setAttribute('aria-pressed', String(state.wire)); redraw();
  });
  var texBtn = button('viewer-texture', function () {
    state.textured = !state.textured; texBtn.setAttribute('aria-pressed', String(state.textured)); redraw();
  });
  // report.html#wireframe opens with the wireframe on (handy for links and for headless checks).
  if (/wireframe/.test(location.hash)) { state.wire = true; if (wireBtn) wireBtn.setAttribute('aria-pressed', 'true'); }
  if (texBtn) { if (!state.textured) texBtn.disabled = true; else texBtn.setAttribute('aria-pressed', 'true'); }
  window.addEventListener('resize', redraw);

  loadTextures(firstFrame);
})();
"""
