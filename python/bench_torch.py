#!/usr/bin/python3
"""PyTorch's CPU LSTM/GRU on the shapes membptt benchmarks: plain BPTT, and torch.utils.checkpoint
over segments of ceil(sqrt(T)) steps; time per forward+backward iteration (median) and the peak
memory its allocator reports above the weights and inputs.

usage: bench_torch.py --cell lstm --length 1000 --batch 32 --input 64 --hidden 256 --output 64 [--reps 3]
                      [--threads auto] [--malloc auto] [--json FILE]

Threads: --threads, by default the faster of 1 and every core for plain BPTT, measured first
(bench_threads.py: on 2 cores Debian's PyTorch ran nn.LSTM 3-4x slower at 2 threads than at 1),
used for both rows. Allocator: --malloc, by default tcmalloc where installed (bench_malloc.py).

Memory: torch's CPU allocator has no statistics in torch 1.13, so the activation memory is read
with torch.profiler (profile_memory=True): the peak, over one iteration, of the running sum of each
operator's own allocations less its own frees, in the order the operators started. That counts every tensor the iteration allocates (activations, gradients
of activations, workspace), not the parameters or inputs, which exist before it starts.
"""
import argparse
import json
import os
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from bench_malloc import loaded, malloc_arg, use_malloc  # same directory
from bench_threads import count_arg, describe, fastest_torch_threads, thread_arg

CELLS = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


def segment_fn(rnn):
    # One checkpointed segment: (inputs, *state) -> (outputs, *state), with plain tensors only.
    def run(xs, *state):
        out, h = rnn(xs, state if len(state) > 1 else state[0])
        return (out, *h) if isinstance(h, tuple) else (out, h)
    return run


def iteration(rnn, head, x, y, segment):
    if segment:
        B, H = x.shape[1], rnn.hidden_size
        state = tuple(torch.zeros(1, B, H) for _ in range(2 if isinstance(rnn, torch.nn.LSTM) else 1))
        run = segment_fn(rnn)
        outs = []
        for s in range(0, x.shape[0], segment):
            out, *state = checkpoint(run, x[s:s + segment], *state, use_reentrant=False)
            outs.append(out)
        out = torch.cat(outs)
    else:
        out, _ = rnn(x)
    loss = F.cross_entropy(head(out).reshape(-1, head.out_features), y.reshape(-1))
    loss.backward()
    return loss


def peak_bytes(fn):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Each operator's own allocations less its own frees (self memory: children are not counted
    # twice), plus "[memory]" events (frees of tensors no operator is running for), in time order.
    deltas = []
    for e in prof.events():
        d = e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        if d:
            deltas.append((e.time_range.start, d))
    cur = peak = 0
    for _, d in sorted(deltas):
        cur += d
        peak = max(peak, cur)
    return peak


def main():
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--cell", default="lstm", choices=sorted(CELLS), help="torch.nn's recurrent layer (default lstm)")
    p.add_argument("--length", type=count_arg, default=1000, help="T, the steps (default 1000)")
    p.add_argument("--batch", type=count_arg, default=32, help="B (default 32)")
    p.add_argument("--input", type=count_arg, default=64, help="I, the input features (default 64)")
    p.add_argument("--hidden", type=count_arg, default=256, help="H, the hidden units (default 256)")
    p.add_argument("--output", type=count_arg, default=64, help="the classes of the softmax head per step (default 64)")
    p.add_argument("--reps", type=count_arg, default=3, help="timed iterations per row, after one warm-up (default 3)")
    p.add_argument("--threads", type=thread_arg, default="auto",
                   help="auto (default) or a count: PyTorch's threads; auto measures 1 and every core and takes "
                        "the faster")
    p.add_argument("--malloc", type=malloc_arg, default="auto",
                   help="the C allocator: glibc, tcmalloc or jemalloc (the script runs again under it, "
                        "LD_PRELOAD); auto (default): tcmalloc where installed, else glibc (bench_malloc.py says why)")
    p.add_argument("--json", help="write the figures here (atomically)")
    a = p.parse_args()
    malloc = use_malloc(a.malloc, "bench_torch.py")
    torch.manual_seed(0)
    rnn = CELLS[a.cell](a.input, a.hidden)
    head = torch.nn.Linear(a.hidden, a.output)
    x = torch.rand(a.length, a.batch, a.input)
    y = torch.randint(0, a.output, (a.length, a.batch))
    seg = math.ceil(math.sqrt(a.length))
    threads, thread_times = fastest_torch_threads(lambda: iteration(rnn, head, x, y, 0), a.threads)
    print(f"{a.cell.upper()} T={a.length} B={a.batch} I={a.input} H={a.hidden}, {a.output}-class head, float32, "
          f"torch {torch.__version__} on {describe(threads, thread_times)}, malloc {malloc}", flush=True)
    rows = []
    for name, segment in (("torch plain", 0), (f"torch checkpoint sqrt(T)={seg}", seg)):
        run = lambda: iteration(rnn, head, x, y, segment)  # noqa: E731
        run()  # warm up
        times = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        mem = peak_bytes(run)
        rows.append({"name": name, "median_seconds": statistics.median(times), "seconds": times, "peak_bytes": mem})
        print(f"{name:32s} {statistics.median(times):8.3f} s/iter   peak {mem / 2**20:9.2f} MiB", flush=True)
    if a.json:
        tmp = f"{a.json}.tmp.{os.getpid()}"  # atomic: a reader never sees half a file
        with open(tmp, "w") as f:
            json.dump({"torch": torch.__version__, **vars(a), "malloc": loaded(), "threads": threads, "thread_choice_seconds": thread_times,
                       "rows": rows}, f, indent=1)
        os.replace(tmp, a.json)


if __name__ == "__main__":
    main()
