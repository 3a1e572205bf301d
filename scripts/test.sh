#!/usr/bin/env bash
# The README's test command (and CI's): install, build, run every test; then the same tests
# again under AddressSanitizer and UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
jobs=$(nproc)
echo "== Release build and tests"
scripts/build.sh build
ctest --test-dir build --output-on-failure -j"$jobs"
echo "== AddressSanitizer + UBSan build and tests"
# Without libxsmm (-DMEMBPTT_LIBXSMM=OFF): the release build tests the products on libxsmm's
# kernels, this one every product on OpenBLAS alone, as a machine without libxsmm builds them.
# -O1 -g1: ASan's advised level, and line tables are all its reports need; -O2 -g took twice as
# long to build (measured: src/train/trainer.cpp 37.8 s against 19.6 s).
scripts/build.sh build-asan -DMEMBPTT_SANITIZE=ON -DMEMBPTT_BENCH=OFF -DMEMBPTT_LIBXSMM=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE slow
