# Shared by the tests/cli/*.sh scripts (sourced; not a test itself, hence not *.sh): a scratch
# directory removed on exit, fail, and expect_error.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_error EXPECTED_TEXT COMMAND...: non-zero exit, one line on stderr starting "membptt: error:"
# and containing the text.
expect_error() {
  local want=$1
  shift
  local rc=0
  "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  [ "$rc" -ne 0 ] || fail "expected failure: $*"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "expected one line on stderr: $*"; }
  grep -q "^membptt: error: " "$tmp/err" || { cat "$tmp/err"; fail "no 'membptt: error:' prefix: $*"; }
  grep -qF -- "$want" "$tmp/err" || { cat "$tmp/err"; fail "expected '$want' in the message: $*"; }
  echo "ok ($rc): $(cat "$tmp/err")"
}
