#!/usr/bin/env bash
# bench/onednn_vs_membptt.sh --smoke on a build that has both programs: it exits 0, writes every
# run's JSON and a summary whose table has a row per shape and thread count, and whose text is
# what a reader sees (no printf escapes such as "%%" left in it: a new user's report, 2026-12-01).
#   onednn_smoke_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
bash "$src/bench/onednn_vs_membptt.sh" --smoke --build "$build" --out "$out" >"$out/log" 2>&1 || { cat "$out/log"; fail "the smoke run exited non-zero"; }
summary=$out/summary.md
[ -s "$summary" ] || fail "no summary.md"
rows=$(grep -c '^| \(lstm\|gru\) |' "$summary")
[ "$rows" -eq 8 ] || { cat "$summary"; fail "expected 8 rows (4 shapes x 1 and 2 threads), got $rows"; }
! grep -n '%%' "$summary" || fail "a printf escape is left in the summary"
grep -q 'about 5% extra work\|a negligible extra' "$summary" || fail "the head's note is missing"
[ "$(ls "$out"/onednn-*.json | wc -l)" -eq 8 ] || fail "expected 8 oneDNN JSON files"
[ "$(ls "$out"/membptt-*.json | wc -l)" -eq 8 ] || fail "expected 8 membptt JSON files"
echo "ok: $rows rows"
