#!/usr/bin/env bash
# Runs examples/char_lm.py briefly (small sizes, 20 steps): the loss at the end must be below the
# loss at the start, the plan and the held-out loss are printed, and bad options or a missing data
# file stop with status != 0 and one line. Exits 77 (CTest: skipped), saying why, without torch.
# Usage: example_char_lm.sh SOURCE_DIR   (MEMBPTT_PYTHON: the interpreter, default /usr/bin/python3)
set -euo pipefail
py=${MEMBPTT_PYTHON:-/usr/bin/python3}
if ! "$py" -c "import torch" 2>/dev/null; then
  echo "SKIP: $py has no torch (Debian: apt-get install python3-torch, or scripts/install-deps.sh --test)"
  exit 77
fi
cd "$1"
export PYTHONPATH="$1/python${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1
example=(examples/char_lm.py --seq-len 100 --batch 8 --hidden 32 --steps 20 --log-every 5 --lr 0.01
         --memory 10% --sample 40 --temperature 0)
out=$("$py" "${example[@]}")
echo "$out"
fail() { echo "FAIL: $*"; exit 1; }
grep -q '^plan: policy msm, ' <<<"$out" || fail "no 'plan: policy msm' line"
grep -q '^held-out loss [0-9.]* bits/char' <<<"$out" || fail "no held-out loss"
grep -q '^sample:$' <<<"$out" || fail "no sample"
losses=$(sed -n 's/^step *[0-9]*  loss \([0-9.]*\) bits\/char.*/\1/p' <<<"$out")
[[ $(wc -l <<<"$losses") -eq 5 ]] || fail "expected 5 loss lines (steps 1, 5, 10, 15, 20), got: $losses"
first=$(head -n1 <<<"$losses") last=$(tail -n1 <<<"$losses")
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.5) }' || fail "loss $first -> $last did not fall by 0.5 bits/char"
echo "ok: loss $first -> $last bits/char"

# Bad options and a missing file: status != 0, one line on stderr naming the problem, nothing on stdout.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
expect_error() {
  local want=$1; shift
  local status=0 stdout stderr
  stdout=$("$py" examples/char_lm.py "$@" 2>"$tmp/stderr") || status=$?
  stderr=$(<"$tmp/stderr")
  [[ $status -ne 0 ]] || fail "$* exited 0"
  [[ -z $stdout ]] || fail "$* printed on stdout: $stdout"
  [[ $(wc -l <<<"$stderr") -eq 1 ]] || fail "$* did not print one line: $stderr"
  grep -q -- "$want" <<<"$stderr" || fail "$*: expected '$want' in: $stderr"
  echo "ok ($status): $* -> $stderr"
}
expect_error "--steps must be at least 1" --steps 0
expect_error "argument --batch: invalid int value" --batch x
expect_error "unrecognized arguments: --bogus" --bogus
expect_error "argument --device: invalid choice: 'cuda'" --device cuda
expect_error "--memory: memory budget '5 parsecs' has an unknown unit" --memory "5 parsecs"
expect_error "--memory: memory budget 1 bytes is below the least" --memory 1B
expect_error "--seq-len 100000 is too long for 16 streams" --seq-len 100000
expect_error "error: cannot read --data /nonexistent/verse.txt: No such file or directory" --data /nonexistent/verse.txt
