"""The benchmarks' choice of PyTorch's thread count (python/bench_threads.py), and bench_scan.py end
to end at a tiny size: a comparison with PyTorch must run PyTorch at its fastest setting."""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
PYTHON_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PYTHON_DIR))
from bench_threads import describe, fastest_torch_threads, thread_arg  # noqa: E402


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_auto_keeps_the_faster_count_and_sets_it(restore_threads):
    cores = os.cpu_count() or 1
    if cores < 2:
        pytest.skip("one core: nothing to choose between")

    def run():  # slow at one thread, fast at every core: the choice must follow the timing
        time.sleep(0.02 if torch.get_num_threads() == 1 else 0.0)

    best, times = fastest_torch_threads(run, "auto", reps=1)
    assert best == cores and torch.get_num_threads() == cores and set(times) == {1, cores}
    assert times[1] > times[cores]

    def run_slow_on_all():
        time.sleep(0.0 if torch.get_num_threads() == 1 else 0.02)

    best, times = fastest_torch_threads(run_slow_on_all, "auto", reps=1)
    assert best == 1 and torch.get_num_threads() == 1
    assert "1 torch thread (the fastest" in describe(best, times)


def test_a_given_count_is_set_without_timing(restore_threads):
    calls = []
    best, times = fastest_torch_threads(lambda: calls.append(1), 1)
    assert (best, times, calls) == (1, {}, []) and torch.get_num_threads() == 1
    assert describe(1, {}) == "1 torch thread (as given)"


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_thread_arg_refuses_what_is_not_a_count(bad):
    with pytest.raises(argparse.ArgumentTypeError, match=f"'{bad}' is not allowed: 'auto' or an integer >= 1"):
        thread_arg(bad)
    assert thread_arg("auto") == "auto" and thread_arg("3") == 3


def test_bench_scan_runs_end_to_end_and_checks_the_bits(tmp_path):
    out = tmp_path / "scan.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PYTHON_DIR), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, str(PYTHON_DIR / "bench_scan.py"), "--T", "12", "--batch", "2", "--input",
                        "3", "--hidden", "4", "--reps", "3", "--json", str(out)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["torch_threads"] in (1, os.cpu_count()) and set(map(int, d["thread_choice_seconds"])) <= {1, os.cpu_count()}
    assert all(c["bitwise"] for k, c in d["checks"].items() if "vs scan" in k)
    rows = {row["name"]: row for row in d["rows"]}
    assert {"plain", "checkpoint", "scan 5%", "scan @ckpt"} <= set(rows)
    assert 0 < rows["scan 5%"]["peak_bytes"] <= rows["scan 5%"]["budget_bytes"]
