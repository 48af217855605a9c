#!/usr/bin/env bash
# One-shot setup of a fresh machine: system libraries, a virtual environment with the pinned
# CPU stack, mvrecon itself (editable), the test tools (pytest; ruff and mypy, pinned in
# pyproject.toml's dev extra), and the ICT-FaceKit face model import.
#
#   bash tools/setup.sh            # CPU (default): torch 2.13.0 CPU build, pinned
#   MVRECON_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu124" bash tools/setup.sh
#                                  # GPU machines: any CUDA build of torch instead (pin it!)
#
# Environment:
#   MVRECON_VENV    where the virtual environment goes (default: .venv in the repository)
#   MVRECON_MODELS  where imported face models are written (default: the user cache)
#   MVRECON_ICT     path to ICT-FaceKit's FaceXModel/ folder or .tar.xz (default: ../shared/models/...)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MVRECON_VENV:-$repo/.venv}"
torch_spec="${MVRECON_TORCH:-torch==2.13.0}"

# System packages: Open3D links libusb-1.0 at import; headless OpenCV and Open3D need libgomp on
# slim images.
need=()
ldconfig -p | grep -q 'libusb-1.0.so.0' || need+=(libusb-1.0-0)
ldconfig -p | grep -q 'libgomp.so.1' || need+=(libgomp1)
# The report test opens report.html in headless Chromium (Debian's packages, with its driver).
{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || need+=(chromium chromium-driver)
# meshoptimizer (LODs) is a source package on PyPI: it builds with the system C++ compiler.
command -v g++ >/dev/null 2>&1 || need+=(g++)
# three.js (the report's glTF viewer) comes from the npm registry.
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x "$venv/bin/python" ] || python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip
# torch first and pinned, so that nothing later can replace it with a multi-GB CUDA build.
"$py" -m pip install -q $torch_spec
pinned_torch="$("$py" -c 'import torch; print(torch.__version__.split("+")[0])')"
echo "torch==$pinned_torch" > "$venv/torch-pin.txt"
"$py" -m pip install -q -c "$venv/torch-pin.txt" -e "$repo[test,dev]"

# The face model: imported once from the read-only upstream copy, never committed.
ict="${MVRECON_ICT:-$repo/../shared/models/ict-facekit/FaceXModel.tar.xz}"
if "$venv/bin/mvrecon" model info ict >/dev/null 2>&1; then
  echo "face model 'ict' already imported"
elif [ -e "$ict" ]; then
  "$venv/bin/mvrecon" model import ict "$ict"
else
  echo "note: ICT-FaceKit not found at $ict; run 'mvrecon model fetch ict' (internet) or" \
       "'mvrecon model import ict PATH' later" >&2
fi
# Where MediaPipe's points lie on the model (rendered from synthetic heads, ~25 s, once).
if "$venv/bin/mvrecon" model info ict >/dev/null 2>&1 && [ ! -e "$("$py" -c 'from mvrecon.cues.embedding import embedding_path; print(embedding_path("ict"))')" ]; then
  "$venv/bin/mvrecon" model embed ict
fi
# three.js for the report's glTF viewer (npm package, installed once under the user cache).
if command -v npm >/dev/null 2>&1; then
  "$py" -c 'from mvrecon.report.threejs import three_dir; three_dir()' || echo "note: three.js not installed (npm failed)" >&2
fi
echo "mvrecon is set up in $venv (activate: source $venv/bin/activate)"
