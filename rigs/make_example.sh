#!/usr/bin/env bash
# Recreate the example studio rig rigs/example/ and a capture made with it (synthetic; generated,
# never committed: the same seed gives the same bytes on any machine with the same library versions).
#
#   rigs/example/rig.json           camera names, image sizes, lenses and the ChArUco board (no extrinsics)
#   rigs/example/calib/s<nn>/cam<i>.png   12 board shots, each by every camera that sees the board
#   sessions/example-photos/f000/cam<i>.jpg   the photos of a head, as JPEGs
#
#   bash rigs/make_example.sh            # 4 cameras, 640x480
# then the README's "Your own photos" steps: mvrecon rig calibrate rigs/example, mvrecon session init ...
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mvrecon="${MVRECON_BIN:-$repo/.venv/bin/mvrecon}"
"$mvrecon" synth example-rig "$repo/rigs/example" --photos "$repo/sessions/example-photos" \
    --cameras 4 --seed 7 --size 640x480 --overwrite
