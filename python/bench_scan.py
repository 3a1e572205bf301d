#!/usr/bin/python3
"""membptt.torch.scan on a cell written in PyTorch ops, beside plain autograd and
torch.utils.checkpoint, on the CPU (issue 14).

usage: bench_scan.py [--length 1000] [--batch 32] [--input 64] [--hidden 256] [--reps 3] [--threads auto]
                     [--device cpu|cuda] [--timed plain,scan5,...] [--malloc auto] [--json FILE]

The cell: a layer-normalised LSTM (python/tests/test_torch_scan.py's LayerNormLSTM: one
nn.Linear(I + H, 4H) over [x_t, h], LayerNorm over the gates and over the cell), float32, carry
(h, c) from zeros. One iteration, every variant: ``cell.zero_grad(set_to_none=True)``, the
recurrence over x [T, B, I] (no gradient wanted for x or the initial carry), the outputs h_t
stacked into ys [T, B, H], loss = (ys * G).sum() with a fixed random G [T, B, H] (every output gets
a different gradient), ``loss.backward()``. The variants, on the same cell:

  plain        plain autograd: a Python loop of T steps, torch.stack of the h_t
  scan P%      membptt.torch.scan(cell, carry, x, memory="P%", outputs="stack"), P = 5, 10, 20
  checkpoint   K = ceil(T / S) segments of S = ceil(sqrt(T)) steps, each a loop of steps run
               under torch.utils.checkpoint (use_reentrant=False: torch >= 1.11), (h, c)
               carried between segments, torch.cat of the segments' stacked outputs
  scan @ckpt   scan with memory = checkpoint's measured bytes (below): the two at equal memory

Threads: every variant runs PyTorch's operators at one thread count, by default the faster of 1
and every core for plain autograd, measured before the warm-up (bench_threads.py: on 2 cores,
Debian's PyTorch ran this loop 4x slower at 2 threads than at 1); --threads N sets it. --device
cuda runs every variant on the GPU (the times include torch.cuda.synchronize() after each
iteration; the thread choice is skipped). --timed times a subset of the variants.

Allocator: under glibc's malloc a loop's time depends on what the process allocated before (the
warm-up's plain forward holds 350 MiB), by up to 10% for scan (bench_malloc.py gives the figures).
By default the script runs under tcmalloc where it is installed (as PyTorch's tuning guide
advises for the CPU), else glibc; --malloc glibc|tcmalloc|jemalloc chooses. The header says which.

Time: every variant once to warm up (gradients, memory and plans from this run), then --reps
rounds, each timing every variant once in an order rotated from round to round, so that the
machine's noise falls on all alike. Quoted: the median seconds per iteration and the ratio of
medians; beside it the median of the per-round ratios (paired within a round). --reps is at least
3. Smaller --length or --hidden for a quick look.

Memory: "peak MiB" is the most bytes of stored state held for the backward pass, parameters,
x, the initial carry and the outputs ys left out (they exist in every variant):
  - scan: ``ScanStats.peak_bytes`` (scan's own count, through
    torch.autograd.graph.saved_tensors_hooks, of the stored states' saved tensors and carries as
    they are made, in both passes), from the warm-up, which passes stats=; the timed runs do not
    (the hooks cost about 0.15 ms a recorded step, as they would cost a user). The "of plain"
    column is a share of ``ScanStats.plain_bytes`` (scan's model of plain autograd: T x one
    recorded step, i.e. its saved tensors, the carry in and the carry out), printed under the
    table beside the hooks' figure for plain;
  - plain: MEASURED with torch.autograd.graph.saved_tensors_hooks around the forward: the bytes
    of every distinct storage autograd saves (each storage once, by its data pointer), less the
    parameters', x's and the initial carry's. Nothing is freed before the backward, so the total
    at the end of the forward is the peak.
  - checkpoint: the same hooks see nothing saved inside a non-reentrant checkpoint (its own
    hooks are innermost and save a handle); what it holds is MEASURED in parts: the forward's
    visible saved tensors (the hooks; 0 here), the segments' inputs each checkpoint keeps to
    recompute from (the distinct storages of the (h, c) passed to segments 2..K; segment 1's is
    the initial carry), and, during the backward, one segment's saved tensors recomputed at once
    (the hooks around a plain forward of the longest segment, S steps, from a carry that is left
    out). peak = the sum: during the last segment's backward (the first to run) all K - 1 inputs
    are still held beside its recomputation.
Not counted anywhere: gradients in flight, transients inside a step, the outputs ys [T, B, H].

Checks: every scan's gradients against plain autograd's (parameters; bitwise, or else the
largest |difference| over the largest |value| must be under 1e-4 and is printed), every scan row
bitwise equal to scan 5% (same cell, the schedule only changes the order of recomputation), and
checkpoint's against plain's likewise. --json FILE: every figure, written atomically.
"""
import argparse
import inspect
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import membptt
from membptt.torch import ScanStats, scan

from bench_malloc import loaded, malloc_arg, use_malloc  # same directory
from bench_threads import count_arg, describe, fastest_torch_threads, thread_arg

scan_module = sys.modules["membptt.torch.scan"]  # the module (membptt.torch.scan is the function)
MiB = 2.0 ** 20
# --timed's names for the variants
TIMED = {"plain": "plain", "checkpoint": "checkpoint", "scan5": "scan 5%", "scan10": "scan 10%", "scan20": "scan 20%",
         "scan-ckpt": "scan @ckpt"}
HAS_USE_REENTRANT = "use_reentrant" in inspect.signature(checkpoint).parameters  # torch >= 1.11


class LayerNormLSTM(nn.Module):
    """An LSTM cell with layer normalisation of the gates and the cell: a cell of the user's own."""

    def __init__(self, i, h):
        super().__init__()
        self.lin = nn.Linear(i + h, 4 * h)
        self.ln_gates, self.ln_c = nn.LayerNorm(4 * h), nn.LayerNorm(h)

    def forward(self, carry, x):
        h, c = carry
        i, f, g, o = self.ln_gates(self.lin(torch.cat([x, h], -1))).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(self.ln_c(c))
        return (h, c), h


def storage_key(t):
    s = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
    return s.data_ptr(), s.nbytes()


class SavedCounter:
    """torch.autograd.graph.saved_tensors_hooks: the bytes of the distinct storages autograd saves
    while active, those of `exclude` (parameters, inputs) left out."""

    def __init__(self, exclude):
        self.skip = {storage_key(t)[0] for t in exclude}
        self.seen = {}

    def pack(self, t):
        ptr, n = storage_key(t)
        if n and ptr not in self.skip:
            self.seen[ptr] = n
        return t

    def __enter__(self):
        self.ctx = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self.ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self.ctx.__exit__(*exc)

    @property
    def bytes(self):
        return sum(self.seen.values())


def loop(cell, carry, xs):
    ys = []
    for t in range(xs.shape[0]):
        carry, y = cell(carry, xs[t])
        ys.append(y)
    return carry, torch.stack(ys)


def checkpointed(cell, carry, xs, S, held=None):
    """K segments of S steps under torch.utils.checkpoint; held: a list to receive the carries
    each segment after the first keeps."""
    kw = {"use_reentrant": False} if HAS_USE_REENTRANT else {}

    def segment(h, c, x_seg):
        (h, c), ys = loop(cell, (h, c), x_seg)
        return h, c, ys

    outs = []
    for s in range(0, xs.shape[0], S):
        if held is not None and s:
            held.extend(carry)
        h, c, ys = checkpoint(segment, *carry, xs[s:s + S], **kw)
        carry = (h, c)
        outs.append(ys)
    return carry, torch.cat(outs)


def grads_of(cell):
    return [p.grad.detach().clone() for p in cell.parameters()]


def compare(a, b):
    """(bitwise equal, the largest |a - b| over the largest |b|, worst tensor)."""
    same = all(torch.equal(x, y) for x, y in zip(a, b))
    rel = max(((x - y).abs().max() / y.abs().max().clamp_min(1e-30)).item() for x, y in zip(a, b))
    return same, rel


def main():
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--length", "--T", dest="T", type=count_arg, default=1000,
                   help="T, the steps (--length as in the other benchmarks; default 1000)")
    p.add_argument("--batch", type=count_arg, default=32)
    p.add_argument("--input", type=count_arg, default=64)
    p.add_argument("--hidden", type=count_arg, default=256)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=thread_arg, default="auto",
                   help="torch.set_num_threads for every variant; auto (default): the faster of 1 and every core "
                        "for plain autograd, measured first (bench_threads.py says why)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--timed", default=",".join(TIMED),
                   help="the variants the rounds time, comma-separated, plain among them (default: all: "
                        f"{','.join(TIMED)}); every one is still warmed up and checked")
    p.add_argument("--malloc", type=malloc_arg, default="auto",
                   help="the C allocator: glibc, tcmalloc or jemalloc (the script runs again under it, "
                        "LD_PRELOAD); auto (default): tcmalloc where installed, else glibc (bench_malloc.py says why)")
    p.add_argument("--json", help="write every figure here (atomically)")
    a = p.parse_args()
    malloc = use_malloc(a.malloc, "bench_scan.py")
    timed = {TIMED.get(k.strip(), k.strip()) for k in a.timed.split(",") if k.strip()}
    unknown = timed - set(TIMED.values())
    if unknown or "plain" not in timed:
        p.error(f"--timed {a.timed!r} is not allowed: a comma-separated list of {', '.join(TIMED)}, plain among them")
    if a.reps < 3:
        p.error(f"--reps {a.reps}: at least 3 rounds (a median of fewer says little on a noisy machine)")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: this PyTorch sees no CUDA device")
    dev = torch.device(a.device)
    torch.manual_seed(0)
    T, B = a.T, a.batch
    cell = LayerNormLSTM(a.input, a.hidden).to(dev)
    x = torch.randn(T, B, a.input).to(dev)
    G = torch.randn(T, B, a.hidden).to(dev)
    carry0 = (torch.zeros(B, a.hidden, device=dev), torch.zeros(B, a.hidden, device=dev))
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    S = math.ceil(math.sqrt(T))
    K = math.ceil(T / S)
    exclude = [*cell.parameters(), x, *carry0]
    def run_plain():
        cell.zero_grad(set_to_none=True)
        _, ys = loop(cell, carry0, x)
        (ys * G).sum().backward()

    if a.device == "cuda":
        threads, thread_times = torch.get_num_threads(), {}
        where = f"on {torch.cuda.get_device_name()}"
    else:
        threads, thread_times = fastest_torch_threads(run_plain, a.threads)
        where = describe(threads, thread_times)
    print(f"LayerNormLSTM T={T} B={B} I={a.input} H={a.hidden} float32, torch {torch.__version__}, "
          f"{where}, malloc {malloc}, loss (stack(h_t) * G).sum(); checkpoint: {K} segments of {S} steps, "
          f"use_reentrant={'False' if HAS_USE_REENTRANT else '(not in this torch: reentrant)'}", flush=True)

    # make_plan, timed inside every scan call (scan keeps its plans: after the warm-up, none).
    real_make_plan = scan_module.make_plan
    plan_times = []

    def make_plan(*args, **kw):
        t0 = time.perf_counter()
        plan = real_make_plan(*args, **kw)
        plan_times.append(time.perf_counter() - t0)
        return plan

    scan_module.make_plan = make_plan

    info = {}  # name -> {stats, peak_bytes, how}

    def run_scan(name, memory, counted):
        """counted: with stats= (the saved-tensor hooks count every recorded step: the warm-up);
        the timed runs go without, as training would."""
        def it():
            cell.zero_grad(set_to_none=True)
            st = ScanStats() if counted else None
            _, ys = scan(cell, carry0, x, memory=memory, outputs="stack", stats=st)
            (ys * G).sum().backward()
            if counted:
                info.setdefault(name, {})["stats"] = st
        return it

    def run_ckpt():
        cell.zero_grad(set_to_none=True)
        _, ys = checkpointed(cell, carry0, x, S)
        (ys * G).sum().backward()

    # --- warm-up: memory, gradients, the plans -----------------------------------------------
    cell.zero_grad(set_to_none=True)
    with SavedCounter(exclude) as plain_saved:
        _, ys = loop(cell, carry0, x)
    (ys * G).sum().backward()
    ref = grads_of(cell)
    info["plain"] = {"peak_bytes": plain_saved.bytes,
                     "how": "saved_tensors_hooks over the forward: distinct storages, less parameters, x, carry0"}

    cell.zero_grad(set_to_none=True)
    held = []
    with SavedCounter(exclude) as ckpt_visible:
        _, ys = checkpointed(cell, carry0, x, S, held=held)
    (ys * G).sum().backward()
    ckpt_same, ckpt_rel = compare(grads_of(cell), ref)
    inputs_bytes = sum({storage_key(t)[0]: storage_key(t)[1] for t in held}.values())
    with torch.enable_grad(), SavedCounter(exclude) as seg_saved:  # one segment's recomputation
        loop(cell, carry0, x[:S])
    ckpt_bytes = ckpt_visible.bytes + inputs_bytes + seg_saved.bytes
    info["checkpoint"] = {"peak_bytes": ckpt_bytes, "forward_visible_bytes": ckpt_visible.bytes,
                          "segment_inputs_bytes": inputs_bytes, "segment_recompute_bytes": seg_saved.bytes,
                          "how": "measured parts: hooks-visible saved tensors + the (h, c) kept for segments 2..K "
                                 "+ one segment's saved tensors (hooks around a plain forward of S steps)"}

    scans = [("scan 5%", "5%"), ("scan 10%", "10%"), ("scan 20%", "20%"), ("scan @ckpt", int(ckpt_bytes))]
    variants = {"plain": run_plain, "checkpoint": run_ckpt}
    checks = {"checkpoint vs plain": {"bitwise": ckpt_same, "rel": ckpt_rel}}
    first = None
    for name, memory in scans:
        variants[name] = run_scan(name, memory, counted=False)
        del plan_times[:]
        run_scan(name, memory, counted=True)()  # warm-up: memory counted, the plan made here once
        g = grads_of(cell)
        same, rel = compare(g, ref)
        checks[f"{name} vs plain"] = {"bitwise": same, "rel": rel}
        if first is None:
            first = g
        else:
            checks[f"{name} vs scan 5%"] = {"bitwise": all(torch.equal(u, v) for u, v in zip(g, first)), "rel": 0.0}
        st = info[name]["stats"]
        info[name].update(peak_bytes=st.peak_bytes, how="ScanStats.peak_bytes", memory=memory)
    plain_model = info["scan 5%"]["stats"].plain_bytes

    for k, v in checks.items():
        print(f"check {k:34s} {'bitwise equal' if v['bitwise'] else 'max |diff|/max|ref| = %.2e' % v['rel']}")
    bad = [k for k, v in checks.items() if not v["bitwise"] and (v["rel"] > 1e-4 or "vs scan" in k)]
    if bad:
        sys.exit(f"bench_scan.py: gradients differ: {', '.join(bad)}")

    # --- timed rounds ----------------------------------------------------------------------------
    names = [n for n in variants if n in timed]
    times = {n: [] for n in names}
    ptimes = {n: [] for n in names}
    t_start = time.perf_counter()
    for r in range(a.reps):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            del plan_times[:]
            sync()
            t0 = time.perf_counter()
            variants[n]()
            sync()
            times[n].append(time.perf_counter() - t0)
            ptimes[n].append(sum(plan_times))
        print(f"round {r + 1}/{a.reps}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in names), flush=True)
    elapsed = time.perf_counter() - t_start

    med = {n: statistics.median(times[n]) for n in names}

    def paired(num, den):
        return statistics.median(u / v for u, v in zip(times[num], times[den]))

    print(f"\n{'variant':22s} {'s/iter':>8s} {'vs plain':>9s} {'plan s':>7s} {'fwd steps':>9s} "
          f"{'peak MiB':>9s} {'of plain':>8s}  how the memory is counted")
    rows = []
    for n in names:
        st = info[n].get("stats")
        peak = info[n]["peak_bytes"]
        row = {"name": n, "seconds": times[n], "median_seconds": med[n], "ratio_to_plain": med[n] / med["plain"],
               "paired_ratio_to_plain": paired(n, "plain"), "plan_seconds": ptimes[n], "peak_bytes": peak,
               "how": info[n]["how"]}
        fsteps = f"{st.forward_steps / T:.3f}" if st else ("1" if n == "plain" else "2")
        if st:
            row.update(policy=st.plan.policy, forward_steps=st.forward_steps, budget_bytes=st.budget_bytes,
                       plain_bytes=st.plain_bytes, carry_bytes=st.carry_bytes, record_bytes=st.record_bytes,
                       predicted_time_ratio=st.plan.time_ratio)
        if n == "checkpoint":
            row.update({k: v for k, v in info[n].items() if k.endswith("_bytes")})
        rows.append(row)
        plan_s = f"{statistics.median(ptimes[n]):.2f}" if st else ""
        print(f"{n:22s} {med[n]:8.3f} {med[n] / med['plain']:9.3f} {plan_s:>7s} {fsteps:>9s} {peak / MiB:9.2f} "
              f"{peak / plain_model:8.1%}  {info[n]['how'].split(':')[0]}")
    st5 = info["scan 5%"]["stats"]
    print(f"\nplain autograd over the scan, as scan counts it (ScanStats.plain_bytes, T x "
          f"{st5.record_bytes} B per recorded step; a carry {st5.carry_bytes} B, alpha "
          f"{st5.record_bytes / st5.carry_bytes:.3f}): {plain_model / MiB:.2f} MiB; measured by hooks: "
          f"{info['plain']['peak_bytes'] / MiB:.2f} MiB. Percentages above are of ScanStats.plain_bytes.")
    print(f"checkpoint: forward-visible {ckpt_visible.bytes / MiB:.2f} MiB + segment inputs "
          f"{inputs_bytes / MiB:.2f} MiB + one segment recomputed {seg_saved.bytes / MiB:.2f} MiB")
    wanted = [("scan 5%", "plain", "goal <= 1.4"), ("checkpoint", "scan @ckpt", "goal > 1"),
              ("checkpoint", "scan 5%", "scan 5% holds more than checkpoint here"
               if info["scan 5%"]["peak_bytes"] > ckpt_bytes else "scan 5% holds no more than checkpoint")]
    ratios = {f"{u} / {v}": (med[u] / med[v], paired(u, v), note) for u, v, note in wanted if u in med and v in med}
    for k, (r, pr, note) in ratios.items():
        print(f"{k:30s} {r:.3f} (paired median {pr:.3f})  {note}")
    print(f"timed rounds took {elapsed:.0f} s")

    if a.json:
        out = {"torch": torch.__version__, "python": platform.python_version(), "membptt": membptt.__version__,
               "config": vars(a), "malloc": loaded(), "torch_threads": threads, "thread_choice_seconds": thread_times,
               "segments": K, "segment_steps": S, "plain_bytes_scan_model": plain_model,
               "rows": rows, "checks": checks,
               "ratios": {k: {"ratio_of_medians": r, "paired_median": pr, "note": n}
                          for k, (r, pr, n) in ratios.items()},
               "timed_seconds": elapsed}
        tmp = f"{a.json}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1, default=float)
        os.replace(tmp, a.json)  # a reader never sees half a file


if __name__ == "__main__":
    main()
