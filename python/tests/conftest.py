"""Shared fixtures: the command-line tool the planner is compared with.

CTest sets MEMBPTT_LIBRARY (the library under test) and MEMBPTT_CLI (the `membptt` binary of the
same build); run by hand, the checkout's build/ folders are searched.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cli_path():
    env = os.environ.get("MEMBPTT_CLI")
    if env:
        return Path(env)
    for d in ("build", "build-py"):
        p = ROOT / d / "apps" / "membptt" / "membptt"
        if p.is_file():
            return p
    return None


@pytest.fixture(scope="session")
def cli():
    path = _cli_path()
    if path is None or not path.is_file():
        pytest.skip("the membptt binary was not found: set MEMBPTT_CLI or build the checkout (scripts/build.sh)")

    def run(*args, expect_json=True):
        out = subprocess.run([str(path), *map(str, args)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if expect_json else out.stdout

    return run
