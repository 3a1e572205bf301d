"""PyTorch's thread count for a benchmark that compares against PyTorch: measured, not assumed.

Debian 12's PyTorch 1.13 runs its elementwise operators on OpenMP threads, which spin for a while
after each operator, and its matrix products through OpenBLAS (openblas-pthread), whose own
threads spin too. On a 2-core machine, 2 torch threads beside 2 OpenBLAS threads oversubscribe the
cores: measured 2026-12-01 on a 2-core Zen 5 VM, a layer-normalised LSTM's training loop in
PyTorch ops (T 1000, B 32, H 256) took 0.62-0.64 s per iteration at 1 thread and 2.6-3.1 s at 2,
and ``torch.nn.LSTM`` 0.62 s against 1.9-2.7 s (0.65-0.76 s with ``OMP_WAIT_POLICY=passive``).
PyTorch's own default here is 1 thread. A comparison that ran PyTorch at 2 would flatter membptt,
so every benchmark that times PyTorch runs it at the fastest count it measures.
"""
import argparse
import os
import statistics
import time

import torch


def count_arg(value: str, allowed="an integer >= 1"):
    """argparse type for a size, count or number of threads: an integer >= 1 (0 or less would end
    in a traceback far from the option that caused it)."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not allowed: {allowed}")
    return n


def thread_arg(value: str):
    """argparse type for --threads: 'auto' (measure, see fastest_torch_threads) or a count >= 1."""
    return value if value == "auto" else count_arg(value, "'auto' or an integer >= 1")


def fastest_torch_threads(run, threads="auto", reps=3):
    """Sets torch's thread count for the benchmark and returns (count, {count: median s}).

    threads: a count (set as given; nothing timed) or "auto": run() once to warm up at 1 thread and
    at every core (os.cpu_count()), then reps rounds, each timing one run() at each count in turn,
    and keep the count with the smaller median.
    run: one iteration of the PyTorch variant the benchmark compares against."""
    if threads != "auto":
        torch.set_num_threads(threads)
        return threads, {}
    counts = sorted({1, os.cpu_count() or 1})
    for n in counts:
        torch.set_num_threads(n)
        run()
    samples = {n: [] for n in counts}
    # Alternated: timed in blocks (every rep at 1 thread, then every rep at 2), bench_scan.py --T 50
    # measured 4.0 s an iteration at 2 threads where its own timed rounds at 2 took 0.49 s; a switch
    # of count distorts the runs after it, and alternating gives every count the same share of that
    # and of the machine's drift.
    for _ in range(reps):
        for n in counts:
            torch.set_num_threads(n)
            t0 = time.perf_counter()
            run()
            samples[n].append(time.perf_counter() - t0)
    times = {n: statistics.median(s) for n, s in samples.items()}
    best = min(times, key=times.get)
    torch.set_num_threads(best)
    return best, times


def threads_text(count: int, what: str = "") -> str:
    """"1 torch thread", "2 torch threads" (what: "torch", or nothing)."""
    return f"{count} {what + ' ' if what else ''}thread{'' if count == 1 else 's'}"


def describe(count, times) -> str:
    """One line for the report: the count used, and what was measured to choose it."""
    noun = threads_text(count, "torch")
    if not times:
        return f"{noun} (as given)"
    measured = ", ".join(f"{n}: {s:.3f} s" for n, s in sorted(times.items()))
    return (f"{noun} (the fastest for PyTorch here; per iteration, the median of rounds alternating "
            f"the counts: {measured})")
