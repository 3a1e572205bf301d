#!/usr/bin/env bash
# membptt plan --online / curve --online: the online policy's cost beside the offline optimum, its
# schedule replayed, the optimal range, files, and one-line errors.
set -uo pipefail
bin=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
check() {  # check NAME CONDITION-COMMAND...
  local name=$1; shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
expect_error() {  # NAME PATTERN ARGS...: exit 2, one line on stderr matching PATTERN, nothing on stdout
  local name=$1 pattern=$2; shift 2
  "$bin" "$@" >"$work/out" 2>"$work/err"
  local rc=$?
  check "$name: exit 2 (got $rc)" test "$rc" -eq 2
  check "$name: one line" test "$(wc -l <"$work/err")" -eq 1
  check "$name: says '$pattern'" grep -q -- "$pattern" "$work/err"
  check "$name: nothing on stdout" test ! -s "$work/out"
}

# 24 units at alpha 4: 21 slots, optimal up to T = 22*23/2 = 253, where it equals revolve's plan.
j=$("$bin" plan --online --length 253 --memory 24 --unit slots --alpha 4 --json)
r=$("$bin" plan --policy revolve --length 253 --memory 24 --unit slots --alpha 4 --json)
check "online json keys" python3 -c "
import json,sys; j=json.loads(sys.argv[1])
for k in ('policy','length','slots','optimal_up_to','forward_ops','peak_memory','offline_hsm_forward_ops','offline_msm_forward_ops','ratio_to_hsm','ratio_to_msm'): assert k in j, k
assert j['policy']=='online' and j['slots']==21 and j['optimal_up_to']==253" "$j"
check "optimal at T = beta(m, 2): online = revolve" python3 -c "
import json,sys; j=json.loads(sys.argv[1]); r=json.loads(sys.argv[2])
assert j['forward_ops_hsm_backward']==r['forward_ops']==j['offline_hsm_forward_ops'], (j, r)
assert j['offline_msm_forward_ops'] <= j['forward_ops'] <= j['forward_ops_hsm_backward'] and j['peak_memory'] <= 24" "$j" "$r"
j=$("$bin" plan --online --length 5000 --memory 2 --unit percent --alpha 4 --json)
check "past the range: the HSM backward within 10% of HSM, never below it" python3 -c "
import json,sys; j=json.loads(sys.argv[1]); r=j['forward_ops_hsm_backward']/j['offline_hsm_forward_ops']
assert 1.0 <= r < 1.1 and j['peak_memory'] <= 400, j
assert j['backward']=='msm' and j['offline_msm_forward_ops'] <= j['forward_ops'] < j['forward_ops_hsm_backward'], j" "$j"
j=$("$bin" plan --online --length 30 --memory 7 --unit slots --alpha 2 --json --schedule)
check "--schedule: keep, drop, 30 backward steps" python3 -c "
import json,sys; ops=json.loads(sys.argv[1])['ops']; names=[o['op'] for o in ops]
assert names.count('backward')==30 and 'keep' in names and 'drop' in names" "$j"
out=$("$bin" plan --online --length 1000 --memory 5 --alpha 4)
check "text names the offline optimum and the ratio" grep -q "online / HSM = " <<<"$out"
"$bin" plan --online --length 40 --memory 8 --unit slots --alpha 2 --svg "$work/o.svg" >/dev/null
check "online schedule svg" grep -q "<svg" "$work/o.svg"
"$bin" curve --online --length 2000 --memory 12 --alpha 4 --points 40 --csv "$work/c.csv" --svg "$work/c.svg" >"$work/table"
check "curve csv: header and optimal rows at ratio 1" python3 -c "
import csv,sys; rows=list(csv.DictReader(open(sys.argv[1])))
assert rows and all(float(r['ratio'])==1.0 for r in rows if r['optimal']=='1'), rows[:3]
assert any(r['optimal']=='0' for r in rows) and all(float(r['ratio']) >= 1.0 for r in rows)
assert any(int(r['length'])==55 for r in rows) and any(int(r['length'])==56 for r in rows)  # m = 9: (m+1)(m+2)/2 = 55" "$work/c.csv"
check "curve svg" grep -q "polyline" "$work/c.svg"
check "curve table printed" grep -q "worst ratio" "$work/table"

# The least budget (one internal state): quadratic, as offline; fractional alpha and past the table too.
least=$("$bin" plan --online --length 1000 --memory 3.3 --unit slots --alpha 3.3 --json)
check "least budget, alpha 3.3: quadratic" python3 -c "import json,sys; j=json.loads(sys.argv[1]); assert j['forward_ops'] == 1000 * 1001 // 2 == j['offline_msm_forward_ops']" "$least"
least=$("$bin" plan --online --length 20000 --memory 4 --unit slots --alpha 4 --json)
check "least budget past the table: quadratic" python3 -c "import json,sys; j=json.loads(sys.argv[1]); assert j['forward_ops'] == 20000 * 20001 // 2 == j['offline_msm_forward_ops']" "$least"
expect_error "below one internal state" "below the least in which online checkpointing runs: 4 units" plan --online --length 100 --memory 3 --unit slots --alpha 4
expect_error "alpha below 1" "--alpha: 0.5 is not allowed" plan --online --length 100 --memory 30 --alpha 0.5
expect_error "--policy with --online" "--policy is not allowed with --online" plan --online --length 100 --memory 30 --policy msm
expect_error "curve --online without memory" "--online needs --memory" curve --online --length 100
expect_error "curve --memory without --online" "--memory is for --online only" curve --length 100 --memory 10
expect_error "curve --online memory below alpha" "below the least in which online checkpointing runs" curve --online --length 100 --memory 2 --alpha 3

if ((fails)); then echo "$fails checks failed"; exit 1; fi
echo "all checks passed"
