#!/usr/bin/env bash
# The CPU's products run on membptt's own threads (OPENBLAS_NUM_THREADS of them), on tiles fixed by
# the shape: training gives the same losses, bit for bit, on 1, 2 and 3 threads, under plain BPTT
# and under a budget that recomputes. A hidden size of 128 takes the layer past 65536 weights, so
# its forward products run through backend::weight_products' transposes where libxsmm is built.
# Usage: threads.sh MEMBPTT_BINARY REPO_ROOT
set -euo pipefail
bin=$1
source "$(dirname "$0")/lib.bash"  # tmp, fail

losses() { sed -E 's/.*"loss":([^,}]*).*/\1/' "$1"; }
common=(--task adding --length 30 --hidden 128 --batch 5 --lr 0.01 --seed 4 --steps 4)
for n in 1 2 3; do
  OPENBLAS_NUM_THREADS=$n "$bin" train "${common[@]}" --policy full --log "$tmp/full-$n.jsonl" >/dev/null
  OPENBLAS_NUM_THREADS=$n "$bin" train "${common[@]}" --memory 30% --log "$tmp/part-$n.jsonl" >/dev/null
done
[ "$(wc -l <"$tmp/full-1.jsonl")" -ge 4 ] || fail "no losses logged"
for n in 2 3; do
  [ "$(losses "$tmp/full-$n.jsonl")" = "$(losses "$tmp/full-1.jsonl")" ] || fail "plain BPTT: $n threads differ from 1"
  [ "$(losses "$tmp/part-$n.jsonl")" = "$(losses "$tmp/full-1.jsonl")" ] || fail "30%: $n threads differ from plain BPTT on 1"
done
echo "ok: the same losses on 1, 2 and 3 threads, plain BPTT and 30%"
