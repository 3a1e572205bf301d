#!/usr/bin/env bash
# Issue 11's inputs from the field, each a kind of fault: numbers out of range (A), writes whose
# failure was ignored (B), held-out scoring of unseen characters (C), which checkpoint survives a
# stop (D), and foreign or absurd values reported by a low-level check (E).
# Usage: field_inputs.sh MEMBPTT_BINARY REPO_ROOT
set -euo pipefail
bin=$1
source "$(dirname "$0")/lib.bash"  # tmp, fail, expect_error

# ---- A. Numbers out of range -------------------------------------------------------------------
# A budget far above plain BPTT's memory runs plain BPTT, however large.
for budget in 1e21 1e300 1TB 2TiB 3T 1e30% 1e306% 1e308%; do
  "$bin" train --task adding --length 50 --hidden 4 --batch 2 --steps 1 --eval-sequences 2 --memory "$budget" >"$tmp/out" \
    || fail "train --memory $budget failed"
  grep -q "plan: policy full" "$tmp/out" || { cat "$tmp/out"; fail "--memory $budget did not plan plain BPTT"; }
done
"$bin" plan --length 1000 --memory 1e308 --unit percent --alpha 4 >"$tmp/out" || fail "plan with a huge budget"
grep -q "above plain BPTT's 4000: planned as that" "$tmp/out" || { cat "$tmp/out"; fail "plan's text for a huge budget"; }
"$bin" plan --length 1000 --memory 1e21 --unit percent --json >"$tmp/out" || fail "plan with a huge budget"
grep -q '"forward_ops":1000' "$tmp/out" || { cat "$tmp/out"; fail "a huge budget is not plain BPTT's cost"; }
# Revolve (HSM) recomputes every step once even with a slot per step: 2T - 1, as at plain BPTT's memory.
"$bin" plan --length 1000 --memory 1e300 --unit slots --policy revolve --json >"$tmp/out" || fail "revolve, huge budget"
grep -q '"forward_ops":1999' "$tmp/out" || { cat "$tmp/out"; fail "revolve at a huge budget"; }
"$bin" curve --length 200 --points 3 >/dev/null || fail "curve"
# Values outside what the code represents: one line echoing what was typed, and the range.
expect_error "--alpha: 1e400 is not allowed: allowed is a number from 1 to 1e+06" "$bin" plan --length 10 --memory 5 --alpha 1e400
expect_error "--alpha: 1e7 is not allowed" "$bin" plan --length 10 --memory 5 --alpha 1e7
expect_error "--beta: -1 is not allowed" "$bin" plan --length 10 --memory 5 --beta -1
expect_error "--beta: nan is not allowed" "$bin" plan --length 10 --memory 5 --beta nan
expect_error "--length: 1e21 is not allowed: allowed is an integer from 1 to 10000000" "$bin" plan --length 1e21 --memory 5
expect_error "--length: 1000000000000 is not allowed" "$bin" curve --length 1000000000000
expect_error "policy quadratic at 1000000 steps would run" "$bin" plan --length 1000000 --memory 5 --policy quadratic
expect_error "--memory: 1e400 is not allowed" "$bin" plan --length 10 --memory 1e400
expect_error "--hidden-bytes: 0 is not allowed" "$bin" plan --length 10 --memory 5 --unit bytes --hidden-bytes 0
expect_error "--points: 1 is not allowed" "$bin" curve --length 10 --points 1
expect_error "--lr: 1e400 is not allowed" "$bin" train --lr 1e400
expect_error "--lr: 0 is not allowed: allowed is a finite number > 0" "$bin" train --lr 0
expect_error "--lr: -1 is not allowed: allowed is a finite number > 0" "$bin" train --lr -1
expect_error "--record-cost: 0 is not allowed: allowed is a number > 0 and at most 1e+06" "$bin" plan --length 10 --memory 5 --record-cost 0
expect_error "--length: 0 is not allowed: allowed is an integer from 1 to" "$bin" sample --model "$tmp/none" --length 0
expect_error "--hidden: 1e21 is not allowed" "$bin" train --hidden 1e21
expect_error "--layers: 5000 is not allowed: allowed is an integer from 1 to 1024" "$bin" train --layers 5000
expect_error "--steps: -3 is not allowed" "$bin" train --steps -3
expect_error "--seed: -1 is not allowed" "$bin" train --seed -1
expect_error "--clip: inf is not allowed" "$bin" train --clip inf
expect_error "memory budget '1e400' is not allowed: the number is too large" "$bin" train --memory 1e400
expect_error "memory budget '1e300TiB' is not allowed: it is too large" "$bin" train --memory 1e300TiB
expect_error "--temperature: 1e400 is not allowed" "$bin" sample --model "$tmp/none" --temperature 1e400
expect_error "--sequences: 0 is not allowed" "$bin" eval --model "$tmp/none" --sequences 0
expect_error "--input-size: 3000000000 is not allowed" "$bin" init --input-size 3000000000 --hidden 4 --output 2 --out "$tmp/m"
expect_error "--hidden: 1e400 is not allowed" "$bin" bench --hidden 1e400
expect_error "--reps: 0 is not allowed" "$bin" bench --reps 0
# bench checks what it was given before its calibration and timed rounds, not after.
expect_error "--budgets '' names no budget" "$bin" bench --budgets ''
expect_error "--policies ',' names no policy" "$bin" bench --policies ,
expect_error "unknown policy 'foo' in --policies: allowed are full, " "$bin" bench --policies foo
# Every configuration below its least: an error (status 2), after a skip line each.
expect_error "no policy runs at the budgets given" "$bin" bench --length 100 --batch 4 --input 8 --hidden 16 \
  --budgets 1% --policies msm
grep -q "skip msm at 1%" "$tmp/out" || fail "bench: the skip line"
# A value that is not allowed is a usage error (status 2), whatever layer finds it.
rc=0
"$bin" bench --cell foo >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "bench --cell foo exited $rc, expected 2"
expect_error "memory budget 'nan' is not allowed" "$bin" bench --budgets 5%,nan
expect_error "cannot write $tmp/no/such/dir/b.csv: its directory" "$bin" bench --csv "$tmp/no/such/dir/b.csv"
[ ! -s "$tmp/out" ] || { cat "$tmp/out"; fail "bench printed before refusing its options"; }
expect_error "(--memory 50 bytes is 0.5 units of --hidden-bytes 100; the least is 200 bytes)" \
  "$bin" plan --length 100 --memory 50 --unit bytes --hidden-bytes 100 --alpha 2
# An integer written as 1e3 is still an integer; blanks around a number are dropped, not an error.
"$bin" plan --length 1e3 --memory 5 --json | grep -q '"length":1000' || fail "--length 1e3"
"$bin" plan --length ' 100 ' --memory '5 ' --alpha ' 2' --json | grep -q '"length":100,.*"memory":10.0' || fail "blanks around numbers"
"$bin" init --input-size 2 --hidden '3 ' --output 2 --seed 1e3 --out "$tmp/s.safetensors" >/dev/null || fail "--seed 1e3"

# ---- E. Absurd sizes: how many bytes, and for what (no raw exception text) ---------------------
if [ -z "${MEMBPTT_SANITIZED:-}" ]; then
  expect_error "membptt init: the model's" "$bin" init --input-size 1000000 --hidden 2000000 --output 2 --out "$tmp/huge.safetensors"
  grep -q "GiB of float32" "$tmp/err" || { cat "$tmp/err"; fail "init: no size in the message"; }
  [ ! -e "$tmp/huge.safetensors" ] || fail "a failed init left a file"
  expect_error "not enough memory for this run: it needs about" "$bin" train --length 1000000000 --batch 1000000 --hidden 4
  grep -q "GiB for a batch of 1000000 x 1000000000 steps of 2 inputs" "$tmp/err" || { cat "$tmp/err"; fail "train: no size"; }
else
  echo "skip: allocations of terabytes under AddressSanitizer (it aborts on a failed operator new instead of throwing)"
fi
expect_error "parameters: allowed are at most 2^48" "$bin" init --input-size 2000000000 --hidden 2000000000 --output 2 --out "$tmp/h2"
! grep -q "bad_alloc\|basic_string\|vector::" "$tmp/err" || fail "raw exception text"
expect_error "this run is too large to represent" "$bin" train --task copy --length 1000000000000 --batch 1000000 --hidden 4

# ---- B. Writes whose failure is ignored --------------------------------------------------------
# Standard output that cannot be written is an error, not exit 0 with nothing written.
rc=0
"$bin" plan --length 100 --memory 5 --json >/dev/full 2>"$tmp/err" || rc=$?
[ "$rc" -eq 1 ] || fail "plan --json > /dev/full exited $rc"
grep -q "cannot write standard output: No space left on device" "$tmp/err" || { cat "$tmp/err"; fail "stdout message"; }
for cmd in "curve --length 100 --points 4" "plan --length 100 --memory 5 --schedule"; do
  rc=0
  # shellcheck disable=SC2086
  "$bin" $cmd >/dev/full 2>"$tmp/err" || rc=$?
  [ "$rc" -ne 0 ] || fail "$cmd > /dev/full exited 0"
done
# A log file that ends in an unfinished line (from a run killed mid-write): cut off before appending.
printf '{"step":1,"loss":0.5}\n{"step":2,"lo' >"$tmp/partial.jsonl"
"$bin" train --task adding --length 20 --hidden 4 --batch 2 --steps 2 --eval-sequences 2 --log "$tmp/partial.jsonl" \
  >/dev/null 2>"$tmp/err" || fail "train with a partial log"
grep -q "ended in an unfinished line" "$tmp/err" || { cat "$tmp/err"; fail "no note on the cut line"; }
[ "$(wc -l <"$tmp/partial.jsonl")" -eq 3 ] || { cat "$tmp/partial.jsonl"; fail "the log is not 3 whole lines"; }
"$bin" plot "$tmp/partial.jsonl" --svg "$tmp/p.svg" >/dev/null || fail "plot of the repaired log"
# plot reads a log whose last line is unfinished (written by another tool): it leaves that line out.
printf '{"step":1,"loss":0.5}\n{"step":2,"loss":0.4}\n{"step":3,"lo' >"$tmp/cut.jsonl"
"$bin" plot "$tmp/cut.jsonl" --svg "$tmp/c.svg" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "plot of a cut log"; }
grep -q "2 steps" "$tmp/out" || fail "plot kept the unfinished line"
grep -q "unfinished last line" "$tmp/err" || fail "plot said nothing of the unfinished line"
# A full disk under --log (a small tmpfs, where this test may mount one).
disk="$tmp/disk"
mkdir -p "$disk"
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=48k tmpfs "$disk" 2>/dev/null; then
  trap 'umount "$disk" 2>/dev/null || true; rm -rf "$tmp"' EXIT
  head -c 40000 /dev/zero >"$disk/filler"
  rc=0
  "$bin" train --task adding --length 20 --hidden 4 --batch 2 --steps 400 --eval-sequences 2 --log "$disk/run.jsonl" \
    --save "$tmp/fullsave" --save-every 1000 >"$tmp/out" 2>"$tmp/err" || rc=$?
  [ "$rc" -eq 1 ] || { cat "$tmp/err"; fail "train with a full log disk exited $rc"; }
  grep -q "^membptt: error: --log $disk/run.jsonl: cannot write the log: No space left on device; training stopped after step" \
    "$tmp/err" || { cat "$tmp/err"; fail "full-disk log message"; }
  grep -q "saved to $tmp/fullsave/checkpoint.safetensors" "$tmp/err" || { cat "$tmp/err"; fail "no checkpoint on a log failure"; }
  [ "$(tail -c 1 "$disk/run.jsonl" | od -An -c | tr -d ' ')" = '\n' ] || fail "the log ends in a half line"
  "$bin" plot "$disk/run.jsonl" --svg "$tmp/full.svg" >/dev/null || fail "plot of the full-disk log"
  # With room again, the resumed run writes the line the full disk kept out first: every step once.
  rm -f "$disk/filler"
  "$bin" train --resume "$tmp/fullsave" --steps 60 --log "$disk/run.jsonl" >/dev/null || fail "resume after the full disk"
  /usr/bin/env python3 -c '
import json, sys
steps = [json.loads(l)["step"] for l in open(sys.argv[1])]
assert steps == list(range(1, 61)), steps' "$disk/run.jsonl" || fail "the resumed log does not hold steps 1 to 60 once each"
  # plan --json into a file on the full disk: an error, not exit 0 with 0 bytes.
  rm -f "$disk/run.jsonl"
  head -c 20000 /dev/zero >"$disk/filler2" 2>/dev/null || true
  rc=0
  "$bin" plan --length 20000 --memory 5 --json --schedule >"$disk/plan.json" 2>"$tmp/err" || rc=$?
  [ "$rc" -eq 1 ] || fail "plan --json on a full disk exited $rc"
  grep -q "^membptt: error: cannot write standard output: " "$tmp/err" || { cat "$tmp/err"; fail "plan full-disk message"; }
  umount "$disk"
  trap 'rm -rf "$tmp"' EXIT
else
  echo "skip: the full-disk --log checks need root and a tmpfs mount (here: uid $(id -u))"
fi

# ---- C. Held-out characters never seen in training ---------------------------------------------
{ for _ in $(seq 450); do printf 'ab'; done; for _ in $(seq 25); do printf 'pqrs'; done; } >"$tmp/unseen.txt"
"$bin" train --task text --text "$tmp/unseen.txt" --length 20 --batch 2 --hidden 8 --steps 30 --lr 0.02 --save "$tmp/lm" \
  >/dev/null || fail "train on the text"
"$bin" eval --model "$tmp/lm" --json >"$tmp/eval.json"
/usr/bin/env python3 - "$tmp/eval.json" <<'PY' || fail "eval of unseen characters"
import json, math, sys
r = json.load(open(sys.argv[1]))
assert r["unknown"] >= 98, r            # every held-out target but none is outside {a, b}
assert r["accuracy"] == 0.0, r          # none of them can be predicted right
assert r["bits_per_char"] > math.log2(0x110000 - 0x800 - 2), r  # each costs at least the spread of p(unknown)
PY
"$bin" eval --model "$tmp/lm" | grep -q "outside the training vocabulary: counted wrong" || fail "eval summary"
expect_error "--length 5 is not allowed for a text model" "$bin" eval --model "$tmp/lm" --length 5
# A temperature that underflows every weight but the best is greedy sampling, not garbage.
"$bin" sample --model "$tmp/lm" --length 30 --prime ab --temperature 0 >"$tmp/greedy.txt"
for t in 1e-300 1e-310 1e-320; do
  "$bin" sample --model "$tmp/lm" --length 30 --prime ab --temperature "$t" | cmp - "$tmp/greedy.txt" || fail "temperature $t"
done

# ---- D. Which checkpoint survives a stop -------------------------------------------------------
run=(--task adding --length 20 --hidden 4 --batch 2 --eval-sequences 2)
"$bin" train "${run[@]}" --steps 6 --save "$tmp/d" --save-every 3 >/dev/null
rc=0
"$bin" train "${run[@]}" --steps 6 --save "$tmp/d" --force --optimizer sgd --lr 1e300 --clip 0 --save-every 3 \
  >/dev/null 2>"$tmp/err" || rc=$?
[ "$rc" -eq 1 ] || { cat "$tmp/err"; fail "the diverging --force run exited $rc"; }
grep -q "this run had saved no checkpoint yet; $tmp/d/checkpoint.safetensors still holds an earlier run's step 6, not this run's" \
  "$tmp/err" || { cat "$tmp/err"; fail "the message does not say the checkpoint is an earlier run's"; }
echo "PASS"
