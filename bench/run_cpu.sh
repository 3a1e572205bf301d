#!/usr/bin/env bash
# The paper's trade-off measured on this machine: membptt's policies at budgets from the least to
# plain BPTT's, and PyTorch's nn.LSTM / nn.GRU plain and checkpointed, on the same shapes, in one
# run. Writes out/bench/*.csv|json, then bench/report.py turns them into docs/benchmarks.md tables
# and SVG charts.
#
#   bench/run_cpu.sh [quick|full]     (quick: T in {100, 1000}, H = 256; full adds T = 10000, H = 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-quick}
bin=build/apps/membptt/membptt
[ -x "$bin" ] || scripts/build.sh build >/dev/null
out=out/bench
mkdir -p "$out"
policies=full,msm,hsm,ism,chen-sqrt,chen-recursive
budgets=2%,5%,10%,20%,50%
shapes=("lstm 100 256" "lstm 1000 256" "gru 1000 256")
[ "$mode" = full ] && shapes+=("lstm 10000 256" "gru 10000 256" "lstm 1000 1024" "gru 1000 1024")
for s in "${shapes[@]}"; do
  read -r cell T H <<<"$s"
  reps=3
  [ "$T" -ge 10000 ] && reps=1
  tag="$cell-T$T-H$H"
  echo "== membptt $tag"
  "$bin" bench --cell "$cell" --length "$T" --batch 32 --input 64 --hidden "$H" --output 64 \
    --policies "$policies" --budgets "$budgets" --reps "$reps" --csv "$out/membptt-$tag.csv" --json "$out/membptt-$tag.json"
  if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "== PyTorch $tag"
    /usr/bin/python3 python/bench_torch.py --cell "$cell" --length "$T" --batch 32 --input 64 --hidden "$H" \
      --output 64 --reps "$reps" --json "$out/torch-$tag.json" 2>&1 | grep -v -i warning
  fi
done
/usr/bin/python3 bench/report.py "$out" docs
