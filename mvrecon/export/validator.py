"""Running the Khronos glTF validator (npm package ``gltf-validator``) on a file through node.

The package is installed once under ``~/.cache/mvrecon/npm`` (``MVRECON_NPM_CACHE`` overrides)
with ``npm install --prefix``; node and npm are needed. Used by the tests and ``bench/export.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import MvreconError

_RUNNER = r"""
const fs = require('fs');
const path = require('path');
const validator = require(process.argv[2]);
const data = new Uint8Array(fs.readFileSync(process.argv[3]));
// images referenced by uri are read from beside the file (shared textures of the LOD files)
const external = (uri) => new Promise((resolve, reject) => {
  fs.readFile(path.resolve(path.dirname(process.argv[3]), decodeURIComponent(uri)),
              (err, d) => err ? reject(err.toString()) : resolve(new Uint8Array(d)));
});
validator.validateBytes(data, {maxIssues: 200, externalResourceFunction: external}).then(
  (r) => { process.stdout.write(JSON.stringify(r)); },
  (e) => { process.stderr.write(String(e)); process.exit(3); });
"""


class ValidatorUnavailable(MvreconError):
    """node/npm or the gltf-validator package is not available."""


def npm_prefix() -> Path:
    return Path(os.environ.get("MVRECON_NPM_CACHE", Path.home() / ".cache" / "mvrecon" / "npm"))


def ensure_validator(install: bool = True) -> Path:
    """Path of the installed ``gltf-validator`` package (installing it when missing)."""
    if shutil.which("node") is None:
        raise ValidatorUnavailable("node is not installed (needed to run the Khronos glTF validator)")
    prefix = npm_prefix()
    pkg = prefix / "node_modules" / "gltf-validator"
    if (pkg / "index.js").is_file():
        return pkg
    if not install or shutil.which("npm") is None:
        raise ValidatorUnavailable(f"gltf-validator is not installed under {prefix} and npm is not available")
    prefix.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["npm", "install", "--prefix", str(prefix), "gltf-validator", "--no-audit", "--no-fund"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode != 0 or not (pkg / "index.js").is_file():
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ValidatorUnavailable(f"npm install gltf-validator failed: {tail[0]}")
    return pkg


def validate(path: str | Path, install: bool = True) -> dict:
    """The validator's report (a dict; ``report['issues']['numErrors']`` etc.) for a .glb/.gltf."""
    pkg = ensure_validator(install)
    prefix = npm_prefix()
    script = prefix / "mvrecon_validate.js"
    if not script.is_file() or script.read_text() != _RUNNER:
        script.write_text(_RUNNER)
    r = subprocess.run(["node", str(script), str(pkg), str(path)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise MvreconError(f"glTF validator failed to run: {r.stderr.strip()[:300]}", path)
    return json.loads(r.stdout)
