#!/usr/bin/env bash
# membptt grad against PyTorch on the same weights, every cell, both dtypes, several policies.
set -euo pipefail
bin=$1 root=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
exec /usr/bin/python3 "$root/python/oracle_check.py" "$bin" "$work"
