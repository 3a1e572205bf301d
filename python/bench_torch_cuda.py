#!/usr/bin/env python3
"""PyTorch's cuDNN LSTM/GRU/RNN on the GPU, on the shapes `membptt bench --device cuda` runs: time
per forward+backward iteration and activation memory, for

  plain       nn.LSTM over the whole sequence (cuDNN), the head on every output, cross-entropy;
  ckpt        torch.utils.checkpoint over segments of ceil(sqrt(T)) steps (use_reentrant=False),
              the head on the concatenated outputs (what the CPU script bench_torch.py does);
  ckpt-head   the same segments with the head and the loss inside each checkpointed segment, so
              that only the segment boundaries' states are kept (the least memory checkpointing
              reaches here).

Time: the median over --reps iterations after --warmup, torch.cuda.synchronize() around each.
Activation memory: torch.cuda.max_memory_allocated() during one iteration less
torch.cuda.memory_allocated() before it (parameters, their gradients, and the inputs already
exist then, so they are not counted; cuDNN's and cuBLAS's workspaces are, being allocated by
PyTorch's caching allocator).

usage: bench_torch_cuda.py --cell lstm --length 1000 --batch 64 --input 1024 --hidden 1024 --output 64
                           [--modes plain,ckpt,ckpt-head] [--reps 10] [--warmup 3] [--json FILE]
                           [--tf32 default|on|off]
"""
import argparse
import json
import os
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

CELLS = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


def tf32_state():
    """What TF32 settings are in force (old and new PyTorch APIs, whichever exist)."""
    s = {}
    for name, get in (("cudnn.allow_tf32", lambda: torch.backends.cudnn.allow_tf32),
                      ("matmul.allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32),
                      ("cudnn.rnn.fp32_precision", lambda: torch.backends.cudnn.rnn.fp32_precision),
                      ("matmul.fp32_precision", lambda: torch.backends.cuda.matmul.fp32_precision)):
        try:
            s[name] = str(get())
        except Exception:  # noqa: BLE001 - an API this version lacks
            pass
    return s


def set_tf32(mode):
    if mode == "default":
        return
    on = mode == "on"
    try:
        torch.backends.cudnn.allow_tf32 = on
        torch.backends.cuda.matmul.allow_tf32 = on
    except Exception:  # noqa: BLE001
        pass


def make_iteration(mode, rnn, head, x, y, seg):
    lstm = isinstance(rnn, torch.nn.LSTM)
    T, B = x.shape[0], x.shape[1]
    H, O = rnn.hidden_size, head.out_features

    def zero_state():
        z = torch.zeros(1, B, H, device=x.device)
        return (z, z.clone()) if lstm else (z,)

    def run_rnn(xs, *state):
        out, h = rnn(xs, state if lstm else state[0])
        return (out, *h) if lstm else (out, h)

    def run_with_head(xs, ys, *state):
        out, h = rnn(xs, state if lstm else state[0])
        # Sum of the per-step cross-entropies of the segment (divided by T*B outside).
        part = F.cross_entropy(head(out).reshape(-1, O), ys.reshape(-1), reduction="sum")
        return (part, *h) if lstm else (part, h)

    def plain():
        out, _ = rnn(x)
        loss = F.cross_entropy(head(out).reshape(-1, O), y.reshape(-1))
        loss.backward()
        return loss

    def ckpt():
        state = zero_state()
        outs = []
        for s in range(0, T, seg):
            out, *state = checkpoint(run_rnn, x[s:s + seg], *state, use_reentrant=False)
            outs.append(out)
        loss = F.cross_entropy(head(torch.cat(outs)).reshape(-1, O), y.reshape(-1))
        loss.backward()
        return loss

    def ckpt_head():
        state = zero_state()
        total = 0
        for s in range(0, T, seg):
            part, *state = checkpoint(run_with_head, x[s:s + seg], y[s:s + seg], *state, use_reentrant=False)
            total = total + part
        loss = total / (T * B)
        loss.backward()
        return loss

    return {"plain": plain, "ckpt": ckpt, "ckpt-head": ckpt_head}[mode]


def measure(fn, params, reps, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        for p in params:
            p.grad.zero_()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    for p in params:
        p.grad.zero_()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    return times, peak


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cell", default="lstm", choices=sorted(CELLS))
    p.add_argument("--length", type=int, default=1000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--input", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--output", type=int, default=64)
    p.add_argument("--modes", default="plain,ckpt,ckpt-head")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--tf32", default="default", choices=["default", "on", "off"])
    p.add_argument("--json")
    a = p.parse_args()
    if not torch.cuda.is_available():
        print("SKIP: torch.cuda is not available", file=sys.stderr)
        return 77
    set_tf32(a.tf32)
    dev = torch.device("cuda")
    torch.manual_seed(0)
    rnn = CELLS[a.cell](a.input, a.hidden).to(dev)
    head = torch.nn.Linear(a.hidden, a.output).to(dev)
    x = torch.rand(a.length, a.batch, a.input, device=dev)
    y = torch.randint(0, a.output, (a.length, a.batch), device=dev)
    params = list(rnn.parameters()) + list(head.parameters())
    for q in params:
        q.grad = torch.zeros_like(q)
    seg = math.ceil(math.sqrt(a.length))
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "device": torch.cuda.get_device_name(), "tf32": tf32_state(), "segment": seg}
    print(f"torch {info['torch']} (CUDA {info['cuda']}, cuDNN {info['cudnn']}) on {info['device']}; "
          f"TF32: {info['tf32']}", flush=True)
    rows = []
    for mode in a.modes.split(","):
        fn = make_iteration(mode, rnn, head, x, y, seg)
        times, peak = measure(fn, params, a.reps, a.warmup)
        name = {"plain": "torch plain (cuDNN)", "ckpt": f"torch checkpoint sqrt(T)={seg}",
                "ckpt-head": f"torch checkpoint+head sqrt(T)={seg}"}[mode]
        med = statistics.median(times)
        rows.append({"mode": mode, "name": name, "median_seconds": med, "seconds": times, "activation_bytes": peak})
        print(f"{name:36s} {1e3 * med:9.2f} ms/iter   activations {peak / 2**20:9.1f} MiB", flush=True)
    if a.json:
        tmp = f"{a.json}.tmp.{os.getpid()}"  # atomic: a reader never sees half a file
        with open(tmp, "w") as f:
            json.dump({**info, **vars(a), "rows": rows}, f, indent=1)
        os.replace(tmp, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
