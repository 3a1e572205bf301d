#!/usr/bin/env bash
# CTest's entry to the Python package's tests (python/tests): Debian's interpreter, the library and
# binary of this build. Exits 77 (CTest: skipped), saying why, when pytest or numpy is missing.
# Usage: run_pytest.sh SOURCE_DIR
set -euo pipefail
py=${MEMBPTT_PYTHON:-/usr/bin/python3}
for m in pytest numpy; do
  if ! "$py" -c "import $m" 2>/dev/null; then
    echo "SKIP: $py has no $m (Debian: apt-get install python3-pytest python3-numpy, or scripts/install-deps.sh --test)"
    exit 77
  fi
done
cd "$1"
PYTHONPATH="$1/python${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 exec "$py" -m pytest -q -p no:cacheprovider python/tests
