#!/usr/bin/env bash
# Runs examples/custom_cell.py briefly (a layer-normalised LSTM cell of its own, trained with
# membptt.torch.scan at memory="5%" on data/verse.txt; small sizes, 30 steps): the plan is printed
# (msm, its stored states within 5% of plain autograd's), the loss at the end is below the loss at
# the start, and a bad option stops with status != 0. Exits 77 (CTest: skipped), saying why, without torch.
# Usage: example_custom_cell.sh SOURCE_DIR   (MEMBPTT_PYTHON: the interpreter, default /usr/bin/python3)
set -euo pipefail
py=${MEMBPTT_PYTHON:-/usr/bin/python3}
if ! "$py" -c "import torch" 2>/dev/null; then
  echo "SKIP: $py has no torch (Debian: apt-get install python3-torch, or scripts/install-deps.sh --test)"
  exit 77
fi
cd "$1"
export PYTHONPATH="$1/python${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1
out=$("$py" examples/custom_cell.py --seq-len 60 --batch 8 --hidden 32 --steps 30 --log-every 10 --lr 0.02 --memory 5%)
echo "$out"
fail() { echo "FAIL: $*"; exit 1; }
plan=$(grep '^plan: policy msm, ' <<<"$out") || fail "no 'plan: policy msm' line"
share=$(sed -n 's/.*(\([0-9.]*\)%)$/\1/p' <<<"$plan")
awk -v s="$share" 'BEGIN { exit !(s > 0 && s <= 5.0) }' || fail "stored states held ${share:-?}% of plain autograd's, not within 5%"
losses=$(sed -n 's/^step *[0-9]*  loss \([0-9.]*\) bits\/char.*/\1/p' <<<"$out")
[[ $(wc -l <<<"$losses") -eq 4 ]] || fail "expected 4 loss lines (steps 1, 10, 20, 30), got: $losses"
first=$(head -n1 <<<"$losses") last=$(tail -n1 <<<"$losses")
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.5) }' || fail "loss $first -> $last did not fall by 0.5 bits/char"
echo "ok: loss $first -> $last bits/char"
status=0
"$py" examples/custom_cell.py --steps 0 >/dev/null 2>&1 || status=$?
[[ $status -eq 2 ]] || fail "--steps 0 exited $status, expected 2"
echo "ok: --steps 0 refused"
