#!/usr/bin/env bash
# The README's first command: install, build, and run the main job on its built-in defaults:
# `membptt demo` trains an LSTM on the adding problem over 1000 steps holding 5% of plain BPTT's
# activation memory, and compares memory, time and gradients with plain BPTT (about a minute on
# two cores; writes out/demo-loss.svg, out/demo-log.jsonl, out/demo-model.safetensors).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Only the command-line tool (the tests, benchmarks and a CUDA build wait for scripts/test.sh).
echo "membptt: building the command-line tool into build/ (a minute or two on 2 cores)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target membptt >build/demo-build.log 2>&1 || {
  tail -n 30 build/demo-build.log >&2
  echo "membptt: the build failed (the whole log: build/demo-build.log)" >&2
  exit 1
}
mkdir -p out
bin=build/apps/membptt/membptt
"$bin" demo --out out
