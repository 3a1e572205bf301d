#!/usr/bin/python3
"""PyTorch's recurrent options (issue 13) on the CPU: membptt.torch beside torch.nn, one forward and
backward pass per iteration, for each option: LSTM (the default, for reference), LSTM bias=False,
LSTM proj_size=H/2, RNN relu, two-layer LSTM with dropout 0.3 (training), bidirectional LSTM, and a
two-layer bidirectional LSTM with proj_size=H/2.

usage: bench_options.py [--length 300] [--batch 16] [--input 64] [--hidden 256] [--reps 5]
                        [--threads auto] [--membptt-threads N] [--only SUBSTRING] [--malloc auto] [--json FILE]

Per configuration, three variants on the same weights: membptt plain (memory=None), membptt 5%
(BPTT-MSM in 5% of plain BPTT's memory) and torch.nn's module. Each is run once to warm up, then
--reps rounds time every variant once (order rotated per round). Quoted: the median ms per
iteration and the median of the per-round ratios to torch.nn (paired within a round, so that
the machine's noise falls on all alike). Threads: PyTorch's at --threads, by default the faster of 1
and every core for torch.nn.LSTM (the first configuration), measured first (bench_threads.py says
why); membptt's at --membptt-threads (default every core). Dropout's masks differ between membptt and torch.nn (each
draws its own), so that row compares speed only.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import membptt.torch as mt  # noqa: E402
from bench_malloc import loaded, malloc_arg, use_malloc  # noqa: E402
from bench_threads import count_arg, describe, fastest_torch_threads, thread_arg, threads_text  # noqa: E402

CONFIGS = [
    ("lstm", "LSTM", {}),
    ("lstm", "LSTM bias=False", {"bias": False}),
    ("lstm", "LSTM proj_size=H/2", {"proj_size": None}),
    ("rnn", "RNN relu", {"nonlinearity": "relu"}),
    ("lstm", "LSTM 2 layers dropout=0.3", {"num_layers": 2, "dropout": 0.3}),
    ("lstm", "LSTM bidirectional", {"bidirectional": True}),
    ("lstm", "LSTM 2 layers bidir. P=H/2", {"num_layers": 2, "bidirectional": True, "proj_size": None}),
]
PAIRS = {"lstm": (mt.LSTM, torch.nn.LSTM), "rnn": (mt.RNN, torch.nn.RNN)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--length", type=count_arg, default=300)
    p.add_argument("--batch", type=count_arg, default=16)
    p.add_argument("--input", type=count_arg, default=64)
    p.add_argument("--hidden", type=count_arg, default=256)
    p.add_argument("--reps", type=count_arg, default=5)
    p.add_argument("--threads", type=thread_arg, default="auto")
    p.add_argument("--membptt-threads", type=count_arg, default=os.cpu_count() or 1)
    p.add_argument("--only", default="", help="run the configurations whose name contains this")
    p.add_argument("--malloc", type=malloc_arg, default="auto",
                   help="the C allocator: glibc, tcmalloc or jemalloc (the script runs again under it, "
                        "LD_PRELOAD); auto (default): tcmalloc where installed, else glibc (bench_malloc.py says why)")
    p.add_argument("--json")
    a = p.parse_args()
    if not any(a.only in name for _, name, _ in CONFIGS):  # before the threads are measured
        p.error(f"--only {a.only!r} matches no configuration: a part of one of "
                f"{', '.join(repr(name) for _, name, _ in CONFIGS)}")
    malloc = use_malloc(a.malloc, "bench_options.py")
    T, B, I, H = a.length, a.batch, a.input, a.hidden
    probe, px, pg = torch.nn.LSTM(I, H), torch.randn(T, B, I), torch.randn(T, B, H)

    def torch_lstm():
        probe.zero_grad()
        (probe(px)[0] * pg).sum().backward()

    threads, thread_times = fastest_torch_threads(torch_lstm, a.threads)
    mt.set_num_threads(a.membptt_threads)
    print(f"malloc {malloc}; PyTorch's operators on {describe(threads, thread_times)}; membptt's on "
          f"{threads_text(a.membptt_threads)}", flush=True)
    rows = []
    for cell, name, kw in CONFIGS:
        if a.only not in name:
            continue
        kw = dict(kw)
        if "proj_size" in kw:
            kw["proj_size"] = H // 2
        torch.manual_seed(0)
        ours = PAIRS[cell][0](I, H, **kw)
        plain_kw = dict(kw)
        budget = PAIRS[cell][0](I, H, memory="5%", **kw)
        budget.load_state_dict(ours.state_dict())
        ref = PAIRS[cell][1](I, H, **plain_kw)
        ref.load_state_dict(ours.state_dict())
        x = torch.randn(T, B, I)
        R = (kw.get("proj_size") or H) * (2 if kw.get("bidirectional") else 1)
        G = torch.randn(T, B, R)
        variants = {"membptt plain": ours, "membptt 5%": budget, "torch.nn": ref}

        def once(m):
            m.zero_grad()
            t0 = time.perf_counter()
            y, _ = m(x)
            (y * G).sum().backward()
            return time.perf_counter() - t0

        for m in variants.values():
            once(m)
        times = {k: [] for k in variants}
        names = list(variants)
        for r in range(a.reps):
            order = names[r % len(names):] + names[:r % len(names)]
            for k in order:
                times[k].append(once(variants[k]))
        row = {"config": name}
        for k in names:
            row[k + " ms"] = 1e3 * statistics.median(times[k])
            row[k + " / torch.nn"] = statistics.median(t / u for t, u in zip(times[k], times["torch.nn"]))
        row["5% budget bytes"] = budget.last_stats.budget_bytes  # raised to the least where 5% is below it
        row["5% held bytes"] = budget.last_stats.held_bytes
        row["plain held bytes"] = ours.last_stats.held_bytes
        rows.append(row)
        print(f"{name:28s} membptt plain {row['membptt plain ms']:8.1f} ms ({row['membptt plain / torch.nn']:.2f}x)  "
              f"membptt 5% {row['membptt 5% ms']:8.1f} ms ({row['membptt 5% / torch.nn']:.2f}x)  "
              f"torch.nn {row['torch.nn ms']:8.1f} ms   held {row['5% held bytes'] / 2**20:.2f} MiB at 5% vs "
              f"{row['plain held bytes'] / 2**20:.2f} MiB plain", flush=True)
    if a.json:
        tmp = f"{a.json}.tmp.{os.getpid()}"  # atomic: a reader never sees half a file
        with open(tmp, "w") as f:
            json.dump({"args": vars(a), "malloc": loaded(), "torch": torch.__version__, "torch_threads": threads,
                       "thread_choice_seconds": thread_times, "rows": rows}, f, indent=1)
        os.replace(tmp, a.json)


if __name__ == "__main__":
    main()
