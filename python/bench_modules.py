#!/usr/bin/python3
"""membptt.torch.LSTM beside torch.nn.LSTM on the CPU, through PyTorch's autograd (issue 12).

usage: bench_modules.py [--length 1000] [--batch 32] [--input 64] [--hidden 256] [--memory 5%]
                        [--reps 5] [--threads auto] [--membptt-threads N] [--threads-study] [--study-reps 10] [--skip-main]
                        [--profile-memory] [--malloc auto] [--json FILE]

One iteration, every variant: ``module.zero_grad()``, the module's forward over x [T, B, I]
(float32, no gradient wanted for x), loss = (output * G).sum() with a fixed random G [T, B, H]
(every output gets a different gradient), ``loss.backward()``. The variants, on the same weights
(``load_state_dict``):

  membptt plain   membptt.torch.LSTM(memory=None): plain BPTT
  membptt 5%      membptt.torch.LSTM(memory="5%"): BPTT-MSM in 5% of plain BPTT's memory
  nn.LSTM         torch.nn.LSTM over the whole sequence
  nn.LSTM ckpt    torch.nn.LSTM over K segments of S = ceil(T/K) steps, each run under
                  torch.utils.checkpoint (use_reentrant=False where this torch has the argument;
                  else the reentrant form, for which x is made to want a gradient),
                  (h, c) carried from one segment to the next; the loss is summed per segment
                  (no torch.cat of the outputs, which would add a copy of the whole output)

Time: each variant once to warm up (its gradients are kept for the checks below), then --reps
rounds, each round timing every variant once, in an order rotated from round to round, so that
the machine's noise falls on all of them alike. Quoted: the median seconds per iteration, the
ratio of medians, and the median of the per-round ratios (paired within a round).

Memory, and how checkpointing is put at membptt's budget. membptt's figures are the executor's own
counts (``module.last_stats``): the bytes held between forward and backward (the plan's arena
and the fixed workspace) against the budget (5% of plain BPTT's memory for this sequence).
PyTorch's CPU allocator keeps no statistics in 1.13, so nn.LSTM's activation memory is MEASURED
with autograd's saved-tensor hooks (torch.autograd.graph.saved_tensors_hooks): during one forward,
the bytes of every distinct storage autograd saves for the backward, less the parameters' and
x's (which exist before the iteration starts). That is the analogue of membptt's held bytes: what
the layer keeps from its forward for its backward. It does not count transients (nn.LSTM's CPU
forward makes the input projection of the whole segment at once, [S, B, 4H], and frees it before
returning; gradients in flight during the backward), nor the output [T, B, H], which every
variant returns and the loss keeps.

Checkpointing over K segments holds, ESTIMATED from that measurement:
    (K - 1) * 2 * B * H * 4 bytes   (the stored inputs of segments 2..K: the (h, c) carried in;
                                     their x is a view of x, nothing new)
  + A(S)                            (one segment's recomputed saved tensors, alive while that
                                     segment's backward runs: A(S) is measured by the hooks on
                                     a forward of S steps)
The script measures a = A(T) / T once, takes the smallest K whose estimate (K - 1) * carry +
ceil(T/K) * a is at most membptt's budget (fewest segments: least overhead; checkpointing
recomputes each step once whatever K is), then measures A(S) at the chosen S and prints the
estimate with it. With --profile-memory it also runs torch.profiler (profile_memory=True) over one
iteration of each nn.LSTM variant, as bench_torch.py does: the peak of the running sum of the
allocations less frees, which counts everything (gradients, transients, the output) and so is
larger than the held bytes; it cannot see membptt's arena (the library allocates it itself).

Checks (on the warm-up's results): membptt plain and membptt 5% give bitwise equal outputs and
gradients (torch.equal); membptt plain against nn.LSTM, and the checkpointed run against nn.LSTM,
agree within 1e-4 (printed: the largest |difference| over nn.LSTM's largest |value|, per tensor,
the worst over the output and every parameter's gradient).

Threads: PyTorch's operators run at --threads, by default the faster of 1 and every core for
nn.LSTM, measured before anything else (bench_threads.py: on 2 cores Debian's PyTorch ran nn.LSTM
3-4x slower at 2 threads than at 1, its OpenMP threads spinning beside OpenBLAS's); membptt's
products at --membptt-threads (membptt.torch.set_num_threads; default every core). Each side at
its own best: nn.LSTM as fast as this machine runs it.

--threads-study: during its calls the package runs OpenBLAS at torch.get_num_threads() threads,
or at membptt.torch.set_num_threads(n) (membptt.torch.function._blas_threads). This times membptt
plain with torch's threads and the BLAS's set independently ((torch, BLAS) in {1, 2} x {1, 2},
through set_num_threads), interleaved as above. By default the package runs the diagonal: (1, 1)
when torch has 1 thread, (2, 2) when it has 2. Printed: medians, and the median
of the per-round ratios to (2, 2).
"""
import argparse
import inspect
import json
import math
import os
import platform
import statistics
import subprocess
import time

import torch
from torch.utils.checkpoint import checkpoint

import membptt.torch as mt
from membptt import _lib

from bench_malloc import loaded, malloc_arg, use_malloc  # same directory
from bench_threads import count_arg, describe, fastest_torch_threads, thread_arg, threads_text

MiB = 2.0 ** 20
CKPT_KW = {"use_reentrant": False} if "use_reentrant" in inspect.signature(checkpoint).parameters else {}


def storage_of(t):
    s = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
    return s.data_ptr(), s.nbytes()


def saved_bytes(fn, exclude):
    """Bytes of the distinct storages autograd saves for the backward while fn() runs (a forward);
    storages of the tensors in `exclude` are not counted. The graph (returned) keeps them alive, so
    no address is reused while counting."""
    skip = {storage_of(t)[0] for t in exclude}
    seen = {}

    def pack(t):
        ptr, n = storage_of(t)
        if ptr not in skip:
            seen[ptr] = n
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def nn_segment(rnn):
    def run(xs, *state):
        out, (h, c) = rnn(xs, state if state else None)
        return out, h, c
    return run


def nn_forward(rnn, x, segment):
    """nn.LSTM's forward, whole or checkpointed; returns the per-segment outputs [(start, out)]."""
    if not segment:
        return [(0, rnn(x)[0])]
    run, state, outs = nn_segment(rnn), (), []
    if not CKPT_KW:  # reentrant checkpoint (torch < 1.11): without an input that wants a gradient,
        x = x.detach().requires_grad_()  # the first segment's parameters would get none
    for s in range(0, x.shape[0], segment):
        out, h, c = checkpoint(run, x[s:s + segment], *state, **CKPT_KW)
        outs.append((s, out))
        state = (h, c)
    return outs


def iteration(module, x, g, segment=None):
    """zero_grad, forward, loss, backward; returns the output segments (detached) for the checks."""
    module.zero_grad()
    if segment is None:  # membptt
        outs = [(0, module(x)[0])]
    else:
        outs = nn_forward(module, x, segment)
    loss = sum((out * g[s:s + out.shape[0]]).sum() for s, out in outs)
    loss.backward()
    return [out.detach() for _, out in outs]


def timed_rounds(variants, reps, after=None):
    """variants: {name: fn}; every fn once per round, the order rotated each round."""
    names = list(variants)
    times = {n: [] for n in names}
    for r in range(reps):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            t0 = time.perf_counter()
            variants[n]()
            times[n].append(time.perf_counter() - t0)
            if after:
                after(n)
        print(f"  round {r + 1}/{reps}: " + ", ".join(f"{n} {times[n][-1]:.3f}" for n in names), flush=True)
    return times


def worst_rel(a, b):
    """Largest |a - b| over the largest |b|, worst over the pairs of tensors."""
    return max(((x - y).abs().max() / y.abs().max().clamp_min(1e-30)).item() for x, y in zip(a, b))


def machine():
    info = {"nproc": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                info["cpu"] = line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:  # which BLAS libraries this process has mapped (torch's and membptt's may be one library)
        with open("/proc/self/maps") as f:
            info["blas_libraries"] = sorted({ln.split()[-1] for ln in f if "blas" in ln.lower() and "/" in ln})
    except OSError:
        pass
    return info


def main_bench(a, out):
    T, B, I, H = a.length, a.batch, a.input, a.hidden
    torch.manual_seed(0)
    plain = mt.LSTM(I, H, memory=None)
    small = mt.LSTM(I, H, memory=a.memory)
    small.load_state_dict(plain.state_dict())
    ref = torch.nn.LSTM(I, H)
    ref.load_state_dict(plain.state_dict())
    x = torch.rand(T, B, I)
    g = torch.randn(T, B, H)
    plan, budget, plain_bytes = small.plan(T, B)
    carry = 2 * B * H * x.element_size()
    threads, thread_times = fastest_torch_threads(lambda: iteration(ref, x, g, 0), a.threads)
    mt.set_num_threads(a.membptt_threads)
    out["torch_threads"], out["thread_choice_seconds"] = threads, thread_times
    print(f"LSTM T={T} B={B} I={I} H={H} float32, torch {torch.__version__}, PyTorch's operators on "
          f"{describe(threads, thread_times)}; membptt's products on {threads_text(a.membptt_threads)} of its own")
    print(f"membptt at {a.memory}: budget {budget / MiB:.2f} MiB of plain BPTT's {plain_bytes / MiB:.2f} MiB; "
          f"plan {plan.policy}, {plan.forward_steps} forward steps ({plan.forward_per_step:.3f} per step), "
          f"predicted {plan.time_ratio:.3f}x plain BPTT's time")

    # nn.LSTM's saved activations per step, and the checkpoint segments that fit the budget.
    params = list(ref.parameters())
    a_T, graph = saved_bytes(lambda: ref(x)[0], params + [x])
    del graph
    per_step = a_T / T
    K = next((k for k in range(1, T + 1) if (k - 1) * carry + math.ceil(T / k) * per_step <= budget), None)
    if K is None:  # not reachable: the least-memory K
        K = min(range(1, T + 1), key=lambda k: (k - 1) * carry + math.ceil(T / k) * per_step)
    S = math.ceil(T / K)
    K = math.ceil(T / S)
    a_S, graph = saved_bytes(lambda: ref(x[:S])[0], params + [x])
    del graph
    ckpt_held = (K - 1) * carry + a_S
    print(f"nn.LSTM saves {a_T / MiB:.2f} MiB for its backward over T={T} (saved-tensor hooks, measured): "
          f"{per_step / 1024:.1f} KiB per step")
    print(f"checkpoint: K={K} segments of S={S} steps: (K-1) x {carry / 1024:.0f} KiB carried + one segment's "
          f"{a_S / MiB:.2f} MiB (measured at S) = {ckpt_held / MiB:.2f} MiB estimated held "
          f"(membptt's budget {budget / MiB:.2f} MiB{'' if ckpt_held <= budget else '; OVER it: the least found'}); "
          f"checkpoint options {CKPT_KW or 'default (reentrant)'}", flush=True)

    names = ["membptt plain", f"membptt {a.memory}", "nn.LSTM", f"nn.LSTM ckpt {K}x{S}"]
    runs = {names[0]: lambda: iteration(plain, x, g), names[1]: lambda: iteration(small, x, g),
            names[2]: lambda: iteration(ref, x, g, 0), names[3]: lambda: iteration(ref, x, g, S)}
    stats = {}

    def keep_stats(name):
        m = {names[0]: plain, names[1]: small}.get(name)
        if m is not None:
            stats[name] = m.last_stats

    # Warm-up, and the checks on its results.
    print("warm-up and checks", flush=True)
    results = {}
    for n in names:
        t0 = time.perf_counter()
        y = torch.cat(runs[n]())
        mod = {names[0]: plain, names[1]: small}.get(n, ref)
        results[n] = [y] + [p.grad.clone() for p in mod.parameters()]
        keep_stats(n)
        print(f"  {n}: {time.perf_counter() - t0:.3f} s", flush=True)
    bitwise = all(torch.equal(u, v) for u, v in zip(results[names[0]], results[names[1]]))
    rel_nn = worst_rel(results[names[0]], results[names[2]])
    rel_ck = worst_rel(results[names[3]], results[names[2]])
    tol = 1e-4
    checks = {"membptt_5pct_bitwise_equal_plain": bitwise, "membptt_plain_vs_nn_worst_rel": rel_nn,
              "nn_ckpt_vs_nn_worst_rel": rel_ck, "tolerance": tol,
              "ok": bool(bitwise and rel_nn <= tol and rel_ck <= tol)}
    print(f"  membptt {a.memory} vs membptt plain, output and every gradient: "
          f"{'bitwise equal' if bitwise else 'NOT bitwise equal'}")
    print(f"  membptt plain vs nn.LSTM: worst |diff|/max|ref| {rel_nn:.2e}; nn.LSTM ckpt vs nn.LSTM: {rel_ck:.2e} "
          f"({'within' if max(rel_nn, rel_ck) <= tol else 'OVER'} {tol:g})", flush=True)
    del results

    print(f"timing: {a.reps} rounds", flush=True)
    times = timed_rounds(runs, a.reps, keep_stats)
    med = {n: statistics.median(times[n]) for n in names}

    def paired(num, den):
        return statistics.median(t / u for t, u in zip(times[num], times[den]))

    ratios = [("nn.LSTM / membptt plain", names[2], names[0], ">= 4"),
              (f"membptt {a.memory} / membptt plain", names[1], names[0], "<= 1.35"),
              (f"checkpoint / membptt {a.memory}", names[3], names[1], "> 1")]
    held = {names[0]: stats[names[0]].held_bytes, names[1]: stats[names[1]].held_bytes,
            names[2]: a_T, names[3]: ckpt_held}
    how = {names[0]: "executor", names[1]: "executor", names[2]: "saved tensors, measured",
           names[3]: "estimate"}
    print(f"\n{'variant':26s} {'median s/iter':>13s} {'min':>8s} {'held MiB':>9s}  (how)")
    for n in names:
        print(f"{n:26s} {med[n]:13.3f} {min(times[n]):8.3f} {held[n] / MiB:9.2f}  ({how[n]})")
    print(f"\n{'ratio':28s} {'of medians':>10s} {'paired':>8s}  target")
    rows = []
    for label, num, den, target in ratios:
        r, p = med[num] / med[den], paired(num, den)
        rows.append({"ratio": label, "of_medians": r, "paired_median": p, "target": target})
        print(f"{label:28s} {r:10.3f} {p:8.3f}  {target}")
    print(f"(membptt's plan predicted {plan.time_ratio:.3f}x for {a.memory} / plain)")
    print("\nmembptt last_stats:")
    for n in names[:2]:
        s = stats[n]
        print(f"  {n}: {s.forward_steps} forward steps ({s.forward_steps / T:.3f} per step), "
              f"held {s.held_bytes / MiB:.2f} MiB (arena {s.arena_bytes / MiB:.2f} + workspace "
              f"{s.workspace_bytes / MiB:.2f}) of a budget of {s.budget_bytes / MiB:.2f} MiB")

    if a.profile_memory:
        from bench_torch import peak_bytes  # same directory
        print("\ntorch.profiler peak over one iteration (everything torch allocates: activations, gradients, "
              "transients, the output):", flush=True)
        prof = {}
        for n, seg in ((names[2], 0), (names[3], S)):
            prof[n] = peak_bytes(lambda: iteration(ref, x, g, seg))
            print(f"  {n}: {prof[n] / MiB:.2f} MiB", flush=True)
        out["profiler_peak_bytes"] = prof

    out.update({"shape": {"T": T, "B": B, "I": I, "H": H, "dtype": "float32"},
                "plan": {"policy": plan.policy, "forward_steps": plan.forward_steps,
                         "predicted_time_ratio": plan.time_ratio, "budget_bytes": budget, "plain_bytes": plain_bytes},
                "nn_saved_bytes_per_step": per_step, "nn_saved_bytes": a_T,
                "checkpoint": {"segments": K, "segment_steps": S, "carry_bytes": carry, "segment_saved_bytes": a_S,
                               "estimated_held_bytes": ckpt_held, "options": CKPT_KW},
                "seconds": times, "median_seconds": med, "held_bytes": held, "held_how": how, "ratios": rows,
                "last_stats": {n: {**vars(s), "held_bytes": s.held_bytes} for n, s in stats.items()},
                "checks": checks})


def threads_study(a, out):
    T, B, I, H = a.length, a.batch, a.input, a.hidden
    torch.manual_seed(0)
    plain = mt.LSTM(I, H, memory=None)
    x = torch.rand(T, B, I)
    g = torch.randn(T, B, H)
    configs = [(1, 1), (1, 2), (2, 1), (2, 2)]

    def make(tt, bt):
        def run():
            torch.set_num_threads(tt)
            mt.set_num_threads(bt)
            iteration(plain, x, g)
        return run

    print(f"\nthreads study: membptt plain, T={T} B={B} I={I} H={H}; matching turned off, (torch threads, OpenBLAS "
          f"threads) set before each iteration; {a.study_reps} rounds", flush=True)
    try:
        runs = {f"torch {tt} / BLAS {bt}": make(tt, bt) for tt, bt in configs}
        for fn in runs.values():
            fn()  # warm-up
        times = timed_rounds(runs, a.study_reps)
    finally:
        mt.set_num_threads(None)
    med = {n: statistics.median(v) for n, v in times.items()}
    best = min(med.values())
    ref = "torch 2 / BLAS 2"
    paired = {n: statistics.median(t / u for t, u in zip(times[n], times[ref])) for n in runs}
    print(f"\n{'torch / BLAS threads':22s} {'median s/iter':>13s} {'min':>8s} {'vs best':>8s} {'paired vs 2/2':>14s}")
    for (tt, bt), n in zip(configs, runs):
        tag = "  <- what the package runs when torch has %d thread%s" % (tt, "s" if tt > 1 else "") if tt == bt else ""
        print(f"{n:22s} {med[n]:13.3f} {min(times[n]):8.3f} {med[n] / best:8.3f} {paired[n]:14.3f}{tag}")
    out["threads_study"] = {"seconds": times, "median_seconds": med, "paired_vs_2_2": paired,
                            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                                  "OMP_WAIT_POLICY")}}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--length", "-T", type=count_arg, default=1000)
    p.add_argument("--batch", "-B", type=count_arg, default=32)
    p.add_argument("--input", "-I", type=count_arg, default=64)
    p.add_argument("--hidden", "-H", type=count_arg, default=256)
    p.add_argument("--memory", default="5%", help="membptt's budget for the second variant (default 5%%)")
    p.add_argument("--reps", type=count_arg, default=5, help="timed rounds (default 5)")
    p.add_argument("--threads", type=thread_arg, default="auto",
                   help="torch.set_num_threads for the main run; auto (default): the faster of 1 and every core for "
                        "nn.LSTM, measured first (bench_threads.py says why)")
    p.add_argument("--membptt-threads", type=count_arg, default=os.cpu_count() or 1,
                   help="membptt.torch.set_num_threads for the main run (default: every core)")
    p.add_argument("--threads-study", action="store_true", help="also time membptt plain over torch/BLAS threads")
    p.add_argument("--study-reps", type=count_arg, default=10, help="rounds of the threads study (default 10)")
    p.add_argument("--skip-main", action="store_true", help="only the threads study")
    p.add_argument("--profile-memory", action="store_true", help="also torch.profiler's peak for the nn.LSTM variants")
    p.add_argument("--malloc", type=malloc_arg, default="auto",
                   help="the C allocator: glibc, tcmalloc or jemalloc (the script runs again under it, "
                        "LD_PRELOAD); auto (default): tcmalloc where installed, else glibc (bench_malloc.py says why)")
    p.add_argument("--json", help="write the figures here (atomically)")
    a = p.parse_args()
    malloc = use_malloc(a.malloc, "bench_modules.py")
    _lib.lib()  # loaded first, so that machine() sees its BLAS too
    out = {"args": vars(a), "machine": machine(), "loadavg_start": os.getloadavg(),
           "malloc": loaded(), "torch_default_threads": torch.get_num_threads(), "blas_threads_at_start": _lib.lib().membptt_num_threads()}
    print(f"machine: {out['machine']}; malloc {malloc}; load average {out['loadavg_start']}")
    print(f"torch's default threads here: {out['torch_default_threads']}, OpenBLAS's at start: "
          f"{out['blas_threads_at_start']}")
    t0 = time.perf_counter()
    if not a.skip_main:
        main_bench(a, out)
    if a.threads_study or a.skip_main:
        threads_study(a, out)
    out["wall_seconds"] = time.perf_counter() - t0
    out["loadavg_end"] = os.getloadavg()
    print(f"\nwall {out['wall_seconds']:.0f} s; load average (1, 5, 15 min) at start {out['loadavg_start']}, "
          f"at the end {out['loadavg_end']}")
    if a.json:
        tmp = f"{a.json}.tmp.{os.getpid()}"  # atomic: a reader never sees half a file
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, a.json)


if __name__ == "__main__":
    main()
