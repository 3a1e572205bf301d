"""The benchmarks' choice of PyTorch's thread count (python/bench_threads.py), bench_scan.py end to
end at a tiny size (a comparison with PyTorch must run PyTorch at its fastest setting), its choice
of C allocator (python/bench_malloc.py), and the benchmark scripts' one-line refusals of bad
arguments."""
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
from bench_malloc import installed  # noqa: E402
from bench_threads import count_arg, describe, fastest_torch_threads, thread_arg  # noqa: E402


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


def test_auto_alternates_the_counts_round_by_round(restore_threads):
    seen = []
    fastest_torch_threads(lambda: seen.append(torch.get_num_threads()), "auto", reps=3)
    counts = sorted({1, os.cpu_count() or 1})
    assert seen == counts + counts * 3  # one warm-up at each count, then 1, n, 1, n, ...


@pytest.mark.parametrize("bad", ["0", "-1", "x"])
def test_count_arg_refuses_what_is_not_a_positive_integer(bad):
    with pytest.raises(argparse.ArgumentTypeError, match=f"'{bad}' is not allowed: an integer >= 1"):
        count_arg(bad)
    assert count_arg("7") == 7


ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PYTHON_DIR), os.environ.get("PYTHONPATH", "")]))


@pytest.mark.parametrize("script, args, says", [
    ("bench_modules.py", ["--membptt-threads", "0"], "argument --membptt-threads: '0' is not allowed: an integer >= 1"),
    ("bench_options.py", ["--membptt-threads", "-1"], "argument --membptt-threads: '-1' is not allowed: an integer >= 1"),
    ("bench_scan.py", ["--length", "0"], "argument --length/--T: '0' is not allowed: an integer >= 1"),
    ("bench_scan.py", ["--T", "-3"], "argument --length/--T: '-3' is not allowed: an integer >= 1"),
    ("bench_torch.py", ["--length", "0"], "argument --length: '0' is not allowed: an integer >= 1"),
    ("bench_torch.py", ["--hidden", "-2"], "argument --hidden: '-2' is not allowed: an integer >= 1"),
    ("bench_torch.py", ["--reps", "0"], "argument --reps: '0' is not allowed: an integer >= 1"),
    ("bench_options.py", ["--only", "nothing"], "--only 'nothing' matches no configuration: a part of one of 'LSTM', "),
    ("bench_scan.py", ["--timed", "scan5,bogus"], "--timed 'scan5,bogus' is not allowed: a comma-separated list of "),
    ("bench_scan.py", ["--timed", "scan5"], "plain among them"),
    ("bench_scan.py", ["--malloc", "mimalloc"],
     "argument --malloc: 'mimalloc' is not allowed: one of auto, glibc, tcmalloc, jemalloc"),
    ("bench_torch.py", ["--malloc", ""], "argument --malloc: '' is not allowed: one of auto, glibc, tcmalloc"),
    ("bench_modules.py", ["--malloc", "TCMALLOC"], "argument --malloc: 'TCMALLOC' is not allowed: one of auto"),
    ("bench_options.py", ["--malloc", "glib"], "argument --malloc: 'glib' is not allowed: one of auto"),
])
def test_bad_arguments_are_refused_in_one_line(script, args, says):
    # Refused while parsing, before any timing: quick, exit 2, no traceback.
    r = subprocess.run([sys.executable, str(PYTHON_DIR / script), *args], capture_output=True, text=True,
                       timeout=60, env=ENV)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == "", r.stderr
    assert says in r.stderr.strip().splitlines()[-1]


def test_bench_scan_runs_end_to_end_and_checks_the_bits(tmp_path):
    out = tmp_path / "scan.json"
    r = subprocess.run([sys.executable, str(PYTHON_DIR / "bench_scan.py"), "--length", "12", "--batch", "2", "--input",
                        "3", "--hidden", "4", "--reps", "3", "--json", str(out)],
                       capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["torch_threads"] in (1, os.cpu_count()) and set(map(int, d["thread_choice_seconds"])) <= {1, os.cpu_count()}
    assert all(c["bitwise"] for k, c in d["checks"].items() if "vs scan" in k)
    rows = {row["name"]: row for row in d["rows"]}
    assert {"plain", "checkpoint", "scan 5%", "scan @ckpt"} <= set(rows)
    assert 0 < rows["scan 5%"]["peak_bytes"] <= rows["scan 5%"]["budget_bytes"]


def tiny_scan(tmp_path, *args, env=None):
    out = tmp_path / "scan.json"
    r = subprocess.run([sys.executable, str(PYTHON_DIR / "bench_scan.py"), "--length", "6", "--batch", "2", "--input",
                        "3", "--hidden", "4", "--reps", "3", "--timed", "plain,scan5", "--json", str(out), *args],
                       capture_output=True, text=True, timeout=120, env=env or ENV)
    return r, (json.loads(out.read_text()) if r.returncode == 0 else None)


@pytest.mark.parametrize("name", ["tcmalloc", "jemalloc"])
def test_bench_scan_runs_under_the_allocator_asked_for(tmp_path, name):
    r, d = tiny_scan(tmp_path, "--malloc", name)
    if installed(name) is None:  # one line naming the Debian package, no traceback
        package = {"tcmalloc": "libtcmalloc-minimal4", "jemalloc": "libjemalloc2"}[name]
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith(f"bench_scan.py: --malloc {name}: ")
        assert package in r.stderr
        return
    assert r.returncode == 0, r.stderr
    assert d["malloc"] == name and f"malloc {name}," in r.stdout  # what /proc/self/maps shows, and the header


def test_bench_scan_under_glibc_drops_a_preloaded_allocator(tmp_path):
    lib = installed("tcmalloc") or installed("jemalloc")
    if lib is None:
        pytest.skip("neither tcmalloc nor jemalloc is installed (scripts/install-deps.sh --bench)")
    r, d = tiny_scan(tmp_path, "--malloc", "glibc", env=dict(ENV, LD_PRELOAD=lib))
    assert r.returncode == 0, r.stderr
    assert d["malloc"] == "glibc"
