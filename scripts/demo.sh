#!/usr/bin/env bash
# The README's first command: install, build, and run the main job on its built-in defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build >/dev/null
mkdir -p out
bin=build/apps/membptt/membptt
"$bin" curve --length 1000 --alpha 4 --points 40 --csv out/curve.csv --svg out/curve.svg
echo
"$bin" plan --length 1000 --memory 5 --unit percent --alpha 4 --policy msm --svg out/schedule-msm.svg
echo
echo "wrote out/curve.csv, out/curve.svg (cost against memory) and out/schedule-msm.svg (the plan drawn)"
