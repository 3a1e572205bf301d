#!/usr/bin/env bash
# The README's first command: install, build, and run the main job on its built-in defaults:
# `membptt demo` trains an LSTM on the adding problem over 1000 steps holding 5% of plain BPTT's
# activation memory, and compares memory, time and gradients with plain BPTT (about a minute on
# two cores; writes out/demo-loss.svg, out/demo-log.jsonl, out/demo-model.safetensors).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build >/dev/null
mkdir -p out
bin=build/apps/membptt/membptt
"$bin" demo --out out
