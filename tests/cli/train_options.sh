#!/usr/bin/env bash
# PyTorch's recurrent options on the command line: init writes them into the model file's metadata
# and grad reads them back; train with dropout between layers, projections and no biases gives the
# same losses under every policy (the masks are redrawn, not stored) and resumes exactly; values
# that are not allowed are one line each.
# Usage: train_options.sh MEMBPTT_BINARY REPO_ROOT
set -euo pipefail
bin=$1
source "$(dirname "$0")/lib.bash"  # tmp, fail, expect_error

losses() { sed -E 's/.*"loss":([^,}]*).*/\1/' "$1"; }

# init: the options land in the metadata (grad_torch_oracle.sh runs grad on such files against PyTorch).
"$bin" init --cell lstm --input-size 3 --hidden 6 --layers 2 --output 4 --proj-size 2 --no-bias --dtype float64 \
  --out "$tmp/p.safetensors" >/dev/null
grep -q '"proj_size":"2"' "$tmp/p.safetensors" || fail "init: metadata proj_size"
grep -q '"bias":"false"' "$tmp/p.safetensors" || fail "init: metadata bias"
grep -q '"rnn.weight_hr_l1"' "$tmp/p.safetensors" || fail "init: weight_hr_l1"
grep -q '"rnn.bias_ih_l0"' "$tmp/p.safetensors" && fail "init: a bias in a bias-free model"
"$bin" init --cell rnn --input-size 3 --hidden 6 --output 4 --nonlinearity relu --out "$tmp/r.safetensors" >/dev/null
grep -q '"nonlinearity":"relu"' "$tmp/r.safetensors" || fail "init: metadata nonlinearity"

common=(--task adding --length 30 --hidden 12 --layers 3 --batch 8 --lr 0.01 --seed 5)
for opts in "--dropout 0.3" "--dropout 0.3 --proj-size 5 --no-bias" "--cell rnn --nonlinearity relu --dropout 0.5"; do
  # shellcheck disable=SC2086
  "$bin" train "${common[@]}" --steps 12 $opts --policy full --log "$tmp/full.jsonl" >/dev/null
  # shellcheck disable=SC2086
  "$bin" train "${common[@]}" --steps 12 $opts --memory 15% --log "$tmp/msm.jsonl" >/dev/null
  [ "$(losses "$tmp/full.jsonl")" = "$(losses "$tmp/msm.jsonl")" ] || fail "$opts: losses differ between full and 15%"
  grep -q '"forward_steps":30,' "$tmp/msm.jsonl" && fail "$opts: 15% did not recompute"
  echo "ok: $opts: the same losses under full and 15%"
done
# Dropout draws masks: the losses are not those without it; a resumed run continues them exactly.
"$bin" train "${common[@]}" --steps 12 --log "$tmp/nodrop.jsonl" >/dev/null
"$bin" train "${common[@]}" --steps 12 --dropout 0.3 --log "$tmp/drop.jsonl" --save "$tmp/ck" >/dev/null
[ "$(losses "$tmp/nodrop.jsonl")" != "$(losses "$tmp/drop.jsonl")" ] || fail "dropout changed nothing"
"$bin" train "${common[@]}" --dropout 0.3 --steps 6 --log "$tmp/half.jsonl" --save "$tmp/ck2" >/dev/null
"$bin" train --resume "$tmp/ck2" --steps 12 --log "$tmp/half.jsonl" >/dev/null
[ "$(losses "$tmp/half.jsonl")" = "$(losses "$tmp/drop.jsonl")" ] || fail "a resumed dropout run differs"
expect_error "--dropout 0.3 in the checkpoint, 0.5 given" "$bin" train --resume "$tmp/ck" --steps 20 --dropout 0.5

expect_error "--proj-size 4 is not allowed" "$bin" train --cell gru --proj-size 4
expect_error "--nonlinearity relu is not allowed with --cell lstm" "$bin" train --nonlinearity relu
expect_error "--dropout 1 is not allowed" "$bin" train --dropout 1
expect_error "proj_size=6 is not allowed" "$bin" init --cell lstm --input-size 3 --hidden 6 --output 4 --proj-size 6 \
  --out "$tmp/bad.safetensors"
