#!/usr/bin/env bash
# membptt plan / curve from the outside: JSON keys and values, exit codes, one-line errors, files.
set -uo pipefail
bin=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
check() {  # check NAME CONDITION-COMMAND...
  local name=$1; shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
# expect_error NAME PATTERN ARGS...: exit 2 and exactly one line on stderr matching PATTERN
expect_error() {
  local name=$1 pattern=$2; shift 2
  "$bin" "$@" >"$work/out" 2>"$work/err"
  local rc=$?
  check "$name: exit 2 (got $rc)" test "$rc" -eq 2
  check "$name: one line" test "$(wc -l <"$work/err")" -eq 1
  check "$name: says '$pattern'" grep -q -- "$pattern" "$work/err"
  check "$name: nothing on stdout" test ! -s "$work/out"
}

json=$("$bin" plan --length 1000 --memory 5 --unit percent --alpha 4 --json)
for key in policy length memory alpha forward_ops peak_memory time_ratio; do
  check "json has $key" grep -q "\"$key\"" <<<"$json"
done
check "msm at 5% runs <= 1950 forward steps" python3 -c "import json,sys; j=json.loads(sys.argv[1]); assert j['forward_ops'] <= 1950 and isinstance(j['forward_ops'], int) and j['peak_memory'] <= 200" "$json"
# Past the exact table (issue 15): MSM is a blocked plan, said so with its proven lower bound; HSM is
# the closed form; ISM is refused naming the size and msm.
long=$("$bin" plan --length 100000 --memory 1000 --unit slots --alpha 4 --json)
check "msm at T=10^5, 1000 units: blocked, certified within 0.1%" python3 -c "import json,sys; j=json.loads(sys.argv[1]); assert j['optimal'] is False and j['lower_bound_forward_ops'] <= j['forward_ops'] <= 1.001 * j['lower_bound_forward_ops'] and j['peak_memory'] <= 1000 and j['blocked']['block'] >= 1" "$long"
exact=$("$bin" plan --length 1000000 --memory 10000 --unit slots --alpha 4 --json)
check "msm at T=10^6, 10000 units: optimal" python3 -c "import json,sys; j=json.loads(sys.argv[1]); assert j['optimal'] is True and j['forward_ops'] == j['lower_bound_forward_ops'] == 2 * 10**6 - 2500 and 'blocked' not in j" "$exact"
check "msm text says how far from the optimum" bash -c "'$bin' plan --length 100000 --memory 1000 --unit slots --alpha 4 | grep -q 'within 1.00[0-9]*x of the optimum'"
check "exact plans say optimal" python3 -c "import json,sys; j=json.loads(sys.argv[1]); assert j['optimal'] is True and j['lower_bound_forward_ops'] == j['forward_ops']" "$json"
check "hsm past the table: the closed form" python3 -c "import json,sys,subprocess as s; h=json.loads(s.check_output([sys.argv[1],'plan','--length','1000000','--memory','10000','--unit','slots','--alpha','4','--policy','hsm','--json'])); r=json.loads(s.check_output([sys.argv[1],'plan','--length','1000000','--memory','10000','--unit','slots','--alpha','4','--policy','revolve','--json'])); assert h['optimal'] and h['forward_ops'] == r['forward_ops']" "$bin"
expect_error "ism past the table" "policy msm plans any length" plan --length 1000000 --memory 1000 --unit slots --alpha 4 --policy ism
sched=$("$bin" plan --length 20 --memory 6 --alpha 2 --unit slots --json --schedule)
check "--schedule adds ops" python3 -c "import json,sys; j=json.loads(sys.argv[1]); ops=j['ops']; assert sum(1 for o in ops if o['op']=='backward')==20" "$sched"
check "bytes unit" bash -c "'$bin' plan --length 100 --memory 4096 --unit bytes --hidden-bytes 64 --internal-bytes 256 --json | grep -q '\"alpha\":4.0'"
"$bin" plan --length 40 --memory 12 --alpha 2 --unit slots --svg "$work/s.svg" >/dev/null
check "schedule svg written" grep -q "<svg" "$work/s.svg"
"$bin" curve --length 300 --alpha 3 --points 12 --csv "$work/c.csv" --svg "$work/c.svg" >/dev/null
check "curve csv has msm rows" grep -q "^msm," "$work/c.csv"
check "curve svg written" grep -q "polyline" "$work/c.svg"
check "no temp files left" test "$(ls "$work" | grep -c tmp)" -eq 0

"$bin" bench --length 20 --batch 2 --input 3 --hidden 4 --output 3 --policies full,msm --budgets 50% --reps 2 \
  --warmup 0 --json "$work/bench.json" >/dev/null
check "bench --warmup 0 times every round" python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['warmup'] == 0 and all(len(r['seconds']) == 2 for r in j['rows'])" "$work/bench.json"
# A tiny network's table shows its seconds and MiB, not 0.000 and 0.00 (a new user's report): the
# s/iter and held MiB columns of every row are nonzero numbers as printed.
"$bin" bench --cell lstm --length 100 --batch 5 --input 7 --hidden 17 --output 3 --budgets 10%,50% --reps 2 \
  --policies full,msm >"$work/tiny.txt"
check "bench's tiny rows show their seconds and MiB" python3 -c "
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.split()[:1] in (['full'], ['msm'])]
assert len(rows) == 3, rows
for r in rows:
    assert float(r[2]) > 0 and float(r[5]) > 0, r
" "$work/tiny.txt"
expect_error "negative warmup" "--warmup: -1 is not allowed: allowed is an integer from 0 to" bench --length 20 --warmup -1

expect_error "negative length" "--length: -5 is not allowed: allowed is an integer from 1 to" plan --length -5 --memory 10
expect_error "zero length" "--length: 0 is not allowed" plan --length 0 --memory 10
expect_error "budget below the least" "least in which policy msm runs 100 steps: 4 units" plan --length 100 --memory 3 --unit slots --alpha 4
expect_error "alpha below 1" "--alpha: 0.5 is not allowed: allowed is a number from 1 to 1e+06" plan --length 100 --memory 30 --alpha 0.5
expect_error "unknown policy" "unknown policy 'fast'" plan --length 100 --memory 30 --policy fast
expect_error "unparsable number" "abc" plan --length abc --memory 30
expect_error "unknown unit" "unknown unit 'pages'" plan --length 100 --memory 30 --unit pages
expect_error "nan budget" "--memory: nan is not allowed: allowed is a finite number >= 0" plan --length 100 --memory nan
expect_error "curve length" "--length: -1 is not allowed" curve --length -1

if ((fails)); then echo "$fails checks failed"; exit 1; fi
echo "all checks passed"
