#!/usr/bin/env bash
# Recreate the example session sessions/example/ (synthetic, with ground truth).
# Its images are generated, not committed: the same seed gives the same bytes on any machine
# with the same library versions (see sessions/README.md).
#
#   bash sessions/make_example.sh            # 4 cameras, 640x480, 12 board shots
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mvrecon="${MVRECON_BIN:-$repo/.venv/bin/mvrecon}"
"$mvrecon" synth session "$repo/sessions/example" --cameras 4 --seed 7 --size 640x480 --overwrite
