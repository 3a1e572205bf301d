#!/usr/bin/env bash
# membptt train --device cuda. Everywhere: a device that cannot be used (no GPU, no CUDA build, a
# device number out of range, --tf32 without cuda) is one line "membptt: error: ..." and a non-zero
# exit. With a GPU and membptt-cuda: a float64 LSTM on the adding task trained for a few steps on the
# CPU and on the GPU with the same seed logs the same losses to 1e-9 (relative), and --compare finds
# the GPU's gradients under the chosen plan identical to plain BPTT's on the GPU, and --no-graphs
# gives the same losses bit for bit, and a bidirectional model trains on the GPU as on the CPU;
# else exit 77 (skip).
# Usage: train_cuda.sh MEMBPTT_BINARY REPO_ROOT
set -euo pipefail
bin=$1
source "$(dirname "$0")/lib.bash"  # tmp, fail, expect_error

tiny=(--task adding --length 100 --hidden 16 --batch 8 --lr 0.01 --dtype float64 --eval-sequences 16 --memory 40%)
cuda_bin="$(dirname "$bin")/membptt-cuda"
gpu=0
if [ -x "$cuda_bin" ] && nvidia-smi -L >/dev/null 2>&1; then gpu=1; fi

expect_error "device 'gpu' is not allowed" "$bin" train "${tiny[@]}" --steps 2 --device gpu
expect_error "--tf32 is allowed only with --device cuda" "$bin" train "${tiny[@]}" --steps 2 --tf32
expect_error "--bf16 is allowed only with --device cuda" "$bin" train "${tiny[@]}" --steps 2 --bf16
expect_error "--bf16 is allowed only with --device cuda" "$bin" bench --length 10 --bf16
expect_error "--no-graphs is allowed only with --device cuda" "$bin" train "${tiny[@]}" --steps 2 --no-graphs
expect_error "not allowed together" "$bin" bench --length 10 --device cuda --tf32 --bf16
if [ -x "$cuda_bin" ]; then
  expect_error "CUDA device 99 does not exist" "$bin" train "${tiny[@]}" --steps 2 --device cuda:99
  if [ "$gpu" -eq 0 ]; then
    expect_error "CUDA device 0 does not exist" "$bin" train "${tiny[@]}" --steps 2 --device cuda
  fi
else
  expect_error "built without CUDA" "$bin" train "${tiny[@]}" --steps 2 --device cuda
fi
# Nothing was trained or saved by the failures above.
[ -z "$(ls -A "$tmp" | grep -v -e '^out$' -e '^err$')" ] || fail "a failing run wrote files"

if [ ! -x "$cuda_bin" ]; then
  echo "SKIP: this build has no CUDA backend ($cuda_bin is missing); the GPU training check did not run"
  exit 77
fi
if [ "$gpu" -eq 0 ]; then
  echo "SKIP: no GPU (nvidia-smi -L fails); the GPU training check did not run"
  exit 77
fi

steps=12
"$bin" train "${tiny[@]}" --steps $steps --seed 5 --device cpu --log "$tmp/cpu.jsonl" >"$tmp/cpu.out"
"$bin" train "${tiny[@]}" --steps $steps --seed 5 --device cuda --compare --log "$tmp/gpu.jsonl" >"$tmp/gpu.out" \
  || { cat "$tmp/gpu.out"; fail "training on cuda"; }
cat "$tmp/gpu.out"
grep -q "^device: cuda:0 (" "$tmp/gpu.out" || fail "the summary does not name the CUDA device"
grep -q "^device: cpu" "$tmp/cpu.out" || fail "the summary does not name the CPU"
grep -q "gradients vs plain BPTT: identical, bit for bit" "$tmp/gpu.out" || fail "--compare on cuda"
losses() { sed -E 's/.*"loss":([^,}]*).*/\1/' "$1"; }
losses "$tmp/cpu.jsonl" >"$tmp/cpu.loss"
losses "$tmp/gpu.jsonl" >"$tmp/gpu.loss"
[ "$(wc -l <"$tmp/gpu.loss")" -eq $steps ] || fail "the cuda log should have $steps lines"
paste "$tmp/cpu.loss" "$tmp/gpu.loss" | awk '
  { d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > worst) worst = r
    printf "step %2d  cpu %.15g  cuda %.15g  rel %.2e\n", NR, $1, $2, r }
  END { printf "largest relative difference %.2e (allowed 1e-9)\n", worst; exit !(worst <= 1e-9) }' \
  || fail "cpu and cuda losses differ by more than 1e-9"
# The pass replayed from a CUDA graph (the default) and issued kernel by kernel give the same bits;
# the graph's device memory is reported beside the activation memory, and only when there is one.
grep -q "held + CUDA graph ([1-9][0-9]* kernels, .*) (plain BPTT" "$tmp/gpu.out" ||
  fail "the progress lines do not report the CUDA graph"
grep -q '"graph_kernels":[1-9]' "$tmp/gpu.jsonl" || fail "the log does not record graph_kernels"
"$bin" train "${tiny[@]}" --steps $steps --seed 5 --device cuda --no-graphs --log "$tmp/nog.jsonl" >"$tmp/nog.out" \
  || { cat "$tmp/nog.out"; fail "training on cuda with --no-graphs"; }
losses "$tmp/nog.jsonl" | cmp -s - "$tmp/gpu.loss" || fail "--no-graphs changed the losses"
grep -q "CUDA graph" "$tmp/nog.out" && fail "--no-graphs still reports a CUDA graph"
grep -q "graph_kernels" "$tmp/nog.jsonl" && fail "--no-graphs still logs a graph"
echo "graphs and --no-graphs: the same $steps losses, bit for bit"

# A bidirectional model (two layers, dropout) on the GPU: the CPU's losses to 1e-9, the plan's
# gradients identical to plain BPTT's on the GPU.
bidir=(--task copy --copy-symbols 3 --length 24 --hidden 8 --layers 2 --batch 4 --lr 0.01 --dtype float64
       --bidirectional --dropout 0.2 --memory 40% --steps 6 --seed 3)
"$bin" train "${bidir[@]}" --device cpu --log "$tmp/bcpu.jsonl" >/dev/null
"$bin" train "${bidir[@]}" --device cuda --compare --log "$tmp/bgpu.jsonl" >"$tmp/bgpu.out" \
  || { cat "$tmp/bgpu.out"; fail "bidirectional training on cuda"; }
grep -q "gradients vs plain BPTT: identical, bit for bit" "$tmp/bgpu.out" || fail "--compare of a bidirectional model on cuda"
paste <(losses "$tmp/bcpu.jsonl") <(losses "$tmp/bgpu.jsonl") | awk '
  { d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > worst) worst = r }
  END { printf "bidirectional: largest relative difference %.2e (allowed 1e-9)\n", worst; exit !(NR == 6 && worst <= 1e-9) }' \
  || fail "bidirectional: cpu and cuda losses differ by more than 1e-9"
echo "PASS"
