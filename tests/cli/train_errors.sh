#!/usr/bin/env bash
# membptt train/eval: corrupt and truncated checkpoints, bad text files, lengths longer than the
# data, a diverging run (nan/inf loss) and a budget below the least: one-line errors, non-zero
# exits, and files left as they were.
# Usage: train_errors.sh MEMBPTT_BINARY REPO_ROOT
set -euo pipefail
bin=$1
source "$(dirname "$0")/lib.bash"  # tmp, fail, expect_error

small=(--task adding --length 30 --hidden 8 --batch 4 --lr 0.01 --eval-sequences 8)

# A good checkpoint, then a corrupt copy (one byte flipped in the tensor data) and a truncated one.
"$bin" train "${small[@]}" --steps 20 --save "$tmp/good" --save-every 5 >/dev/null
ck="$tmp/good/checkpoint.safetensors"
size=$(stat -c %s "$ck")
mkdir -p "$tmp/corrupt" "$tmp/short"
cp "$ck" "$tmp/corrupt/checkpoint.safetensors"
printf '\x55' | dd of="$tmp/corrupt/checkpoint.safetensors" bs=1 seek=$((size - 20)) conv=notrunc status=none
cp "$tmp/corrupt/checkpoint.safetensors" "$tmp/corrupt.copy"
head -c $((size / 2)) "$ck" >"$tmp/short/checkpoint.safetensors"
cp "$tmp/short/checkpoint.safetensors" "$tmp/short.copy"
expect_error "checksum mismatch" "$bin" train --resume "$tmp/corrupt" --steps 40
cmp "$tmp/corrupt/checkpoint.safetensors" "$tmp/corrupt.copy" || fail "a failing run touched the corrupt checkpoint"
expect_error "truncated or corrupt" "$bin" train --resume "$tmp/short" --steps 40
cmp "$tmp/short/checkpoint.safetensors" "$tmp/short.copy" || fail "a failing run touched the truncated checkpoint"
expect_error "checksum mismatch" "$bin" eval --model "$tmp/corrupt"
expect_error "no such file or directory" "$bin" train --resume "$tmp/nothing-here" --steps 4
mkdir -p "$tmp/emptydir"
expect_error "holds no checkpoint.safetensors" "$bin" train --resume "$tmp/emptydir" --steps 4
[ -z "$(ls "$tmp/corrupt" | grep -v checkpoint.safetensors)" ] || fail "temporary files left in $tmp/corrupt"

# Text files: not UTF-8, empty, shorter than one window.
printf 'abc\xff\xfedef\n' >"$tmp/bad.txt"
: >"$tmp/empty.txt"
printf 'only a short line of text, far shorter than the window asked for\n' >"$tmp/short.txt"
expect_error "is not valid UTF-8: bad byte 0xff at byte offset 3" "$bin" train --task text --text "$tmp/bad.txt" --steps 2
expect_error "is empty" "$bin" train --task text --text "$tmp/empty.txt" --steps 2
expect_error "--length 500 is longer than the data" "$bin" train --task text --text "$tmp/short.txt" --length 500 --batch 1 --steps 2
expect_error "cannot read text file" "$bin" train --task text --text "$tmp/missing.txt" --steps 2
# Bad options name the value and what is allowed.
expect_error "--task 'sorting' is not allowed: allowed are adding, copy, text" "$bin" train --task sorting
expect_error "--hidden: 0 is not allowed: allowed is an integer from 1 to 1048576" "$bin" train --hidden 0
expect_error "is below the least in which policy msm runs" "$bin" train "${small[@]}" --memory 1KB --steps 2
expect_error "unknown unit" "$bin" train "${small[@]}" --memory 5XB --steps 2

# A huge learning rate: the loss becomes inf or nan; the step is named, the last good checkpoint kept.
rc=0
"$bin" train --task adding --length 30 --hidden 8 --batch 4 --optimizer sgd --lr 1e30 --clip 0 --steps 50 \
  --save "$tmp/nan" --save-every 1 >"$tmp/out" 2>"$tmp/err" || rc=$?
[ "$rc" -ne 0 ] || fail "a diverging run exited 0"
grep -Eq "^membptt: error: the (loss|gradient norm) is (nan|inf) at step [0-9]+|^membptt: error: the update of step [0-9]+" "$tmp/err" \
  || { cat "$tmp/err"; fail "divergence message"; }
grep -q "the last good checkpoint" "$tmp/err" || { cat "$tmp/err"; fail "no word on the last good checkpoint"; }
"$bin" eval --model "$tmp/nan" >/dev/null || fail "the last good checkpoint does not load"
[ ! -f "$tmp/nan/model.safetensors" ] || fail "a diverged run wrote a final model"
echo "PASS"
