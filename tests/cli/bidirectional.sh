#!/usr/bin/env bash
# Bidirectional models (PyTorch's bidirectional=True) on the command line, on the CPU: init writes
# the option and the *_reverse tensors; train gives the same losses under every budget, resumes
# exactly, and its model evaluates; sample refuses in one line. With PyTorch
# (Debian's python3-torch): PyTorch exports through `membptt grad` match torch's gradients, every
# policy with the bits of --policy full (python/oracle_check.py --bidirectional).
# Usage: bidirectional.sh MEMBPTT_BINARY REPO_ROOT
set -euo pipefail
bin=$1 root=$2
source "$(dirname "$0")/lib.bash"  # tmp, fail, expect_error
py=/usr/bin/python3
[ -x "$py" ] || py=python3

losses() { sed -E 's/.*"loss":([^,}]*).*/\1/' "$1"; }

# init: the option in the metadata, both directions' tensors, the head reading 2H.
"$bin" init --cell gru --input-size 3 --hidden 6 --layers 2 --output 4 --bidirectional --out "$tmp/b.safetensors" >/dev/null
grep -q '"bidirectional":"true"' "$tmp/b.safetensors" || fail "init: metadata bidirectional"
grep -qE '"rnn.weight_ih_l1_reverse":\{[^}]*"shape":\[18,12\]' "$tmp/b.safetensors" || fail "init: weight_ih_l1_reverse [18, 12]"
grep -qE '"head.weight":\{[^}]*"shape":\[4,12\]' "$tmp/b.safetensors" || fail "init: head.weight [4, 12]"
echo "ok: init --bidirectional"

# train: the same losses under plain BPTT and a budget that recomputes; resume continues them.
common=(--task copy --copy-symbols 3 --length 12 --hidden 8 --layers 2 --batch 4 --lr 0.01 --seed 3 --bidirectional)
"$bin" train "${common[@]}" --steps 6 --policy full --log "$tmp/full.jsonl" >/dev/null
"$bin" train "${common[@]}" --steps 6 --memory 60% --log "$tmp/part.jsonl" --save "$tmp/ck" >"$tmp/part.out"
[ "$(losses "$tmp/full.jsonl")" = "$(losses "$tmp/part.jsonl")" ] || fail "train: losses differ between full and 60%"
grep -q "chains (bidirectional)" "$tmp/part.out" || { cat "$tmp/part.out"; fail "train: the plan line"; }
"$bin" train "${common[@]}" --steps 3 --memory 60% --log "$tmp/half.jsonl" --save "$tmp/ck2" >/dev/null
"$bin" train --resume "$tmp/ck2" --steps 6 --log "$tmp/half.jsonl" >/dev/null
[ "$(losses "$tmp/half.jsonl")" = "$(losses "$tmp/full.jsonl")" ] || fail "train: a resumed run differs"
expect_error "--bidirectional true in the checkpoint, false given" "$bin" train --resume "$tmp/ck" --steps 9 --bidirectional=false
"$bin" train --task adding --length 10 --hidden 5 --batch 3 --steps 3 --bidirectional --proj-size 2 --dropout 0.2 \
  --layers 2 --memory 70% --save "$tmp/add" >/dev/null
"$bin" eval --model "$tmp/add/model.safetensors" --sequences 6 --json | grep -q '"task":"adding"' || fail "eval: adding"
"$bin" eval --model "$tmp/ck/model.safetensors" --sequences 8 --json | grep -q '"accuracy"' || fail "eval: copy"
"$bin" bench --cell lstm --length 8 --batch 2 --input 3 --hidden 4 --layers 2 --output 3 --bidirectional \
  --policies full,msm --budgets 60% --reps 1 --warmup 0 >"$tmp/bench.out"
grep -q "msm" "$tmp/bench.out" || { cat "$tmp/bench.out"; fail "bench --bidirectional"; }
echo "ok: train, resume, eval, bench"

# Refusals, one line each.
for _ in $(seq 200); do printf 'abcabcabd\n'; done >"$tmp/t.txt"
expect_error "--task text is not allowed with --bidirectional: the reverse direction would read the next character" \
  "$bin" train --task text --text "$tmp/t.txt" --length 4 --hidden 4 --batch 2 --steps 2 --bidirectional --save "$tmp/txt"
"$bin" train --task text --text "$tmp/t.txt" --length 4 --hidden 4 --batch 2 --steps 2 --save "$tmp/txt" >/dev/null
expect_error "--bidirectional" "$bin" train --resume "$tmp/txt" --steps 3 --bidirectional
expect_error "is a bidirectional model: it reads the future of every step, so it cannot generate text left to right" \
  "$bin" sample --model "$tmp/add/model.safetensors"
# --device cuda is no longer refused for being bidirectional: here it fails only for want of a GPU or
# of the CUDA build (tests/cli/train_cuda.sh trains one on a GPU).
if [ -x "$(dirname "$bin")/membptt-cuda" ]; then no_cuda="CUDA device 0 does not exist"; else no_cuda="built without CUDA"; fi
if ! nvidia-smi -L >/dev/null 2>&1; then
  expect_error "$no_cuda" "$bin" train "${common[@]}" --steps 2 --device cuda
  expect_error "$no_cuda" "$bin" grad --model "$tmp/b.safetensors" --inputs "$tmp/b.safetensors" --device cuda
  expect_error "$no_cuda" "$bin" bench --bidirectional --device cuda
fi
expect_error "is below the least in which policy msm runs this bidirectional network of 2 layer(s)" \
  "$bin" train "${common[@]}" --steps 2 --memory 2KB
# One layer holds no inner outputs: the error names what it does hold.
expect_error "network of 1 layer(s) over 100 steps" "$bin" train --task copy --length 100 --memory 200KB --hidden 16 \
  --batch 8 --bidirectional --steps 2
grep -q "inner layers" "$tmp/err" && fail "a one-layer bidirectional network's error names inner layers"

# With PyTorch: exports through membptt grad against torch, every policy bit for bit.
if ! "$py" -c 'import torch' 2>/dev/null; then
  echo "SKIP (PyTorch part): $py cannot import torch (install Debian's python3-torch)"
  exit 0
fi
"$py" "$root/python/oracle_check.py" "$bin" "$tmp/oracle" --bidirectional
