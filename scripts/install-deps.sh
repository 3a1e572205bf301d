#!/usr/bin/env bash
# Installs what membptt needs to build and run from Debian's packages (libxsmm: the cells' small products;
# the build runs without it, on OpenBLAS alone, about half as fast on a step's products); with --test also what the
# tests need (PyTorch, the outside oracle; pytest, pip, venv, setuptools and wheel for the Python
# package and its install command); with --bench also what the optional benchmarks need (oneDNN,
# libdnnl-dev, for bench/onednn_rnn; tcmalloc and jemalloc for the Python benchmarks' --malloc;
# never dependencies of the library). The options combine.
# Idempotent: does nothing when everything is there.
set -euo pipefail
packages=(build-essential cmake pkg-config libopenblas-dev libcli11-dev nlohmann-json3-dev libfmt-dev
          libgtest-dev libgmock-dev libbenchmark-dev libxsmm-dev python3)
for opt in "$@"; do
  case "$opt" in
    --test) packages+=(python3-torch python3-numpy python3-pytest python3-pip python3-venv python3-setuptools python3-wheel) ;;
    --bench) packages+=(libdnnl-dev libtcmalloc-minimal4 libjemalloc2) ;;
    *) echo "install-deps.sh: unknown option '$opt' (--test, --bench)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "membptt: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
