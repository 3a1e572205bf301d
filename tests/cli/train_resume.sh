#!/usr/bin/env bash
# membptt train: stop a run with SIGTERM after its first checkpoint, resume it, and compare the
# final weights with an uninterrupted run's, bit for bit (adding task, and the text task whose
# hidden state is carried from window to window).
# Usage: train_resume.sh MEMBPTT_BINARY REPO_ROOT
set -euo pipefail
bin=$1
source "$(dirname "$0")/lib.bash"  # tmp, fail, expect_error

# $1: name; rest: the training options (without --save).
check_resume() {
  local name=$1
  shift
  local whole="$tmp/$name-whole" cut="$tmp/$name-cut"
  "$bin" train "$@" --save "$whole" >"$tmp/$name-whole.out" 2>&1 || { cat "$tmp/$name-whole.out"; fail "$name: uninterrupted run"; }
  "$bin" train "$@" --save "$cut" --log "$tmp/$name.jsonl" >"$tmp/$name-cut.out" 2>&1 &
  local pid=$!
  for _ in $(seq 1 1000); do
    [ -f "$cut/checkpoint.safetensors" ] && break
    sleep 0.01
  done
  [ -f "$cut/checkpoint.safetensors" ] || { kill $pid; fail "$name: no checkpoint appeared"; }
  kill -TERM $pid
  local rc=0
  wait $pid || rc=$?
  [ "$rc" -eq 143 ] || { cat "$tmp/$name-cut.out"; fail "$name: a run stopped by SIGTERM exited with $rc, expected 143"; }
  grep -q "stopped by SIGTERM after step" "$tmp/$name-cut.out" || fail "$name: no stop message"
  [ ! -f "$cut/model.safetensors" ] || fail "$name: the stopped run wrote a final model"
  local at
  at=$(grep -o 'after step [0-9]*' "$tmp/$name-cut.out" | grep -o '[0-9]*$')
  echo "$name: stopped after step $at"
  "$bin" train --resume "$cut" >"$tmp/$name-resume.out" 2>&1 || { cat "$tmp/$name-resume.out"; fail "$name: resume"; }
  grep -q "resuming from .* at step $at of" "$tmp/$name-resume.out" || { cat "$tmp/$name-resume.out"; fail "$name: resume message"; }
  cmp "$whole/model.safetensors" "$cut/model.safetensors" || fail "$name: resumed weights differ from the uninterrupted run's"
  # The log of the two parts has every step once.
  [ "$(wc -l <"$tmp/$name.jsonl")" -ge 1 ] || fail "$name: empty log"
}

check_resume adding --task adding --length 100 --hidden 32 --batch 16 --steps 400 --lr 0.01 --memory 10% \
  --save-every 10 --eval-sequences 32

# A text of ~24 KB: 8 streams of ~2700 characters, windows of 40: the state is carried and wraps.
for i in $(seq 1 300); do echo "line $i: the quick brown fox jumps over the lazy dog $((i * 7 % 13))"; done >"$tmp/t.txt"
check_resume text --task text --text "$tmp/t.txt" --cell gru --length 40 --hidden 32 --batch 8 --steps 300 \
  --lr 0.003 --memory 20% --save-every 10

# A resumed run must keep the settings that decide the result.
if "$bin" train --resume "$tmp/adding-cut" --lr 0.5 >"$tmp/o" 2>"$tmp/e"; then fail "a resumed run accepted another --lr"; fi
grep -q -- "--lr 0.01 in the checkpoint, 0.5 given" "$tmp/e" || { cat "$tmp/e"; fail "message for a changed --lr"; }
# A --save directory that holds a checkpoint is not overwritten by a fresh run.
if "$bin" train --task adding --length 20 --steps 2 --save "$tmp/adding-cut" >"$tmp/o" 2>"$tmp/e"; then
  fail "a fresh run overwrote an existing checkpoint"
fi
grep -q "already holds a checkpoint" "$tmp/e" || { cat "$tmp/e"; fail "message for an existing checkpoint"; }
echo "PASS"
