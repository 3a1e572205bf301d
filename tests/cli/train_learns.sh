#!/usr/bin/env bash
# End to end: an LSTM trained on the adding problem (T = 50) at 20% of plain BPTT's activation
# memory beats the trivial baseline (MSE 0.167 for always answering the mean) by far, which an
# untrained model cannot; eval, plot and a character model's sample work on the results.
# Usage: train_learns.sh MEMBPTT_BINARY REPO_ROOT
set -euo pipefail
bin=$1
root=$2
source "$(dirname "$0")/lib.bash"  # tmp, fail, expect_error

"$bin" train --task adding --length 50 --hidden 32 --batch 32 --steps 800 --lr 0.01 --memory 20% \
  --save "$tmp/m" --log "$tmp/log.jsonl" --eval-sequences 256 >"$tmp/out"
grep -q "^plan: policy msm, .* forward steps per step, activation memory .* held vs .* for plain BPTT" "$tmp/out" \
  || { cat "$tmp/out"; fail "plan line"; }
[ "$(wc -l <"$tmp/log.jsonl")" -eq 800 ] || fail "the log should have one line per step"
head -1 "$tmp/log.jsonl" | grep -q '"forward_steps":' || fail "log fields"
"$bin" eval --model "$tmp/m" --json >"$tmp/eval.json"
cat "$tmp/eval.json"
mse=$(sed -E 's/.*"loss":([^,}]*).*/\1/' "$tmp/eval.json")
base=$(sed -E 's/.*"baseline":([^,}]*).*/\1/' "$tmp/eval.json")
awk -v m="$mse" -v b="$base" 'BEGIN { exit !(m < 0.03 && b > 0.12) }' || fail "held-out MSE $mse is not well below the baseline $base"
# An untrained model (0 steps is not allowed; 1 step) is near the baseline or worse.
"$bin" train --task adding --length 50 --hidden 32 --batch 32 --steps 1 --lr 0.01 --save "$tmp/u" >/dev/null
"$bin" eval --model "$tmp/u" --json >"$tmp/u.json"
umse=$(sed -E 's/.*"loss":([^,}]*).*/\1/' "$tmp/u.json")
awk -v m="$umse" 'BEGIN { exit !(m > 0.1) }' || fail "an untrained model scored $umse"
# The model file loads as a plain model file too (the tensors PyTorch reads).
"$bin" eval --model "$tmp/m/model.safetensors" --sequences 64 | grep -q "held-out MSE" || fail "eval of the model file"
"$bin" plot "$tmp/log.jsonl" --svg "$tmp/loss.svg" >/dev/null
grep -q "<polyline" "$tmp/loss.svg" || fail "plot"

# A small character model on the default corpus: train a few windows, evaluate, sample.
"$bin" train --task text --text "$root/data/verse.txt" --length 32 --hidden 32 --batch 8 --steps 30 --lr 0.01 \
  --memory 30% --save "$tmp/lm" >"$tmp/lm.out"
grep -q "bits per character" "$tmp/lm.out" || { cat "$tmp/lm.out"; fail "text eval line"; }
"$bin" sample --model "$tmp/lm" --length 40 --prime "The " --seed 3 >"$tmp/sample.txt"
grep -q "^The " "$tmp/sample.txt" || fail "the sample does not start with its prime"
expect=$("$bin" sample --model "$tmp/lm" --length 40 --prime "The " --seed 3)
[ "$expect" = "$(cat "$tmp/sample.txt")" ] || fail "sampling is not deterministic for a seed"
if "$bin" sample --model "$tmp/m" --length 5 2>"$tmp/err"; then fail "sampled from an adding model"; fi
grep -q "not a character-level text model" "$tmp/err" || fail "message for sampling a non-text model"
echo "PASS"
