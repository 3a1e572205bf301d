#!/usr/bin/env bash
# The plain benchmark programs' options (bench/options.hpp): --help prints the usage and exits 0;
# a value that is not a whole integer >= 1, an unknown option or a missing value is one line on
# stderr naming it, exit 2, before any timing.
#   options_test.sh STEP_PRODUCTS WEIGHT_GROUPS
set -euo pipefail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
refused() {  # TEXT COMMAND...
  local want=$1 rc=0
  shift
  "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  [ "$rc" -eq 2 ] || fail "exit $rc, expected 2: $*"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "expected one line on stderr: $*"; }
  grep -qF -- "$want" "$tmp/err" || { cat "$tmp/err"; fail "expected '$want': $*"; }
  [ ! -s "$tmp/out" ] || fail "output before the refusal: $*"
  echo "ok: $(cat "$tmp/err")"
}
for prog in "$1" "$2"; do
  name=$(basename "$prog")
  "$prog" --help >"$tmp/help" || fail "$name --help exited $?"
  grep -q "^usage: $name " "$tmp/help" || fail "$name --help printed no usage"
  refused "$name: --hidden '12abc' is not allowed: an integer from 1 to 2147483647" "$prog" --hidden 12abc
  refused "--hidden '1.5' is not allowed" "$prog" --hidden 1.5
  refused "--batch 'x' is not allowed" "$prog" --batch x
  refused "--threads '99999999999' is not allowed" "$prog" --threads 99999999999
  refused "--reps '0' is not allowed" "$prog" --reps 0
  refused "unknown option '--bogus' (--help lists them)" "$prog" --bogus 1
  refused "--hidden needs a value" "$prog" --hidden
done
refused "--cell 'foo' is not allowed: lstm, gru or rnn" "$2" --cell foo
