#!/usr/bin/python3
"""PyTorch as the outside oracle for `membptt grad`, in one process (torch imports once).

For every cell, dtype, loss and depth below: make a model with torch's default initialisation and
random inputs, run `membptt grad` under several policies and budgets, and compare the loss and
every gradient with torch.nn.LSTM/GRU/RNN + nn.Linear on the same weights. Relative error
(max|a-b| / max|b| per tensor) must stay below 1e-5 in float32 and 1e-10 in float64.

With --bidirectional, the bidirectional cases instead (PyTorch's bidirectional=True), each also
checked bit for bit against --policy full (every policy runs plain BPTT's kernels in its order).

usage: oracle_check.py MEMBPTT_BINARY WORKDIR [--bidirectional]   (exit 77 when torch is missing: a skip)
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys

if importlib.util.find_spec("torch") is None:
    print("SKIP: PyTorch (Debian's python3-torch) is not installed for", sys.executable)
    sys.exit(77)

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import membptt_st as st  # noqa: E402
import torch_reference as ref  # noqa: E402

RTOL = {"float32": 1e-5, "float64": 1e-10}
CASES = [  # cell, dtype, loss, layers, PyTorch's other options
    ("lstm", "float32", "xent", 1, {}), ("lstm", "float64", "xent", 2, {}), ("lstm", "float64", "mse_last", 1, {}),
    ("gru", "float32", "mse_last", 2, {}), ("gru", "float64", "xent", 1, {}),
    ("rnn", "float32", "xent", 2, {}), ("rnn", "float64", "mse_last", 1, {}),
    # bias=False, the relu RNN and LSTM projections (exports with those options)
    ("lstm", "float64", "xent", 2, {"no_bias": True}), ("gru", "float32", "xent", 2, {"no_bias": True}),
    ("rnn", "float64", "xent", 2, {"nonlinearity": "relu"}), ("rnn", "float32", "mse_last", 1, {"nonlinearity": "relu", "no_bias": True}),
    ("lstm", "float64", "xent", 2, {"proj_size": 3}), ("lstm", "float32", "mse_last", 2, {"proj_size": 2, "no_bias": True}),
]
POLICIES = [("full", "100%"), ("msm", "12%"), ("hsm", "12%"), ("revolve", "12%"), ("chen-sqrt", "100%"),
            ("auto", "20%")]
# Bidirectional: 2 layers (the inner layer's outputs held), projections, no bias.
BI_CASES = [
    ("lstm", "float64", "xent", 2, {"bidirectional": True}),
    ("lstm", "float32", "mse_last", 2, {"bidirectional": True, "proj_size": 3}),
    ("gru", "float64", "xent", 2, {"bidirectional": True, "no_bias": True}),
]
# The held sequences grow with T, so the least share is larger than a one-way stack's.
BI_POLICIES = [("full", "100%"), ("msm", "45%"), ("hsm", "45%"), ("revolve", "45%"), ("ism", "45%"),
               ("chen-sqrt", "100%"), ("auto", "50%")]


def worst_error(ours, theirs):
    worst = ("(none)", 0.0)
    for name, y in theirs.items():
        x = ours[name].double()
        y = y.double()
        err = (x - y).abs().max().item() / max(y.abs().max().item(), 1e-300)
        if not torch.isfinite(x).all() or err > worst[1]:
            worst = (name, float("inf") if not torch.isfinite(x).all() else err)
    return worst


def main():
    p = argparse.ArgumentParser()
    p.add_argument("membptt")
    p.add_argument("workdir")
    p.add_argument("--bidirectional", action="store_true", help="the bidirectional cases, bitwise across policies")
    a = p.parse_args()
    cases, policies = (BI_CASES, BI_POLICIES) if a.bidirectional else (CASES, POLICIES)
    torch.set_num_threads(1)
    os.makedirs(a.workdir, exist_ok=True)
    failures = 0
    for i, (cell, dtype, loss, layers, opts) in enumerate(cases):
        model, inputs = os.path.join(a.workdir, f"m{i}.safetensors"), os.path.join(a.workdir, f"x{i}.safetensors")
        ref.make(argparse.Namespace(cell=cell, input_size=3, hidden=7, layers=layers, output=4, loss=loss, T=40,
                                    batch=3, dtype=dtype, seed=100 + i, model=model, inputs=inputs, init_state=True,
                                    **opts))
        theirs, _, their_loss = ref.compute_grad(model, inputs)
        full_bytes = None
        for policy, budget in policies:
            out = os.path.join(a.workdir, f"g{i}-{policy}.safetensors")
            r = subprocess.run([a.membptt, "grad", "--model", model, "--inputs", inputs, "--policy", policy,
                                "--memory", budget, "--out", out, "--json"], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"FAIL {cell} {dtype} {loss} L={layers} {policy}: membptt exited {r.returncode}: {r.stderr.strip()}")
                failures += 1
                continue
            info = json.loads(r.stdout)
            ours, _ = st.load(out)
            name, err = worst_error(ours, theirs)
            loss_err = abs(info["loss"] - their_loss) / abs(their_loss)
            ok = err <= RTOL[dtype] and loss_err <= RTOL[dtype] and info["peak_bytes"] <= info["budget_bytes"]
            if a.bidirectional:  # the same bits as plain BPTT (--policy full, run first)
                raw = open(out, "rb").read()
                raw = raw[8 + int.from_bytes(raw[:8], "little"):]  # the tensors' bytes, after the header
                if full_bytes is None:
                    full_bytes = raw
                elif raw != full_bytes:
                    print(f"FAIL {cell} {opts} {policy}: the gradients' bits differ from --policy full's")
                    ok = False
                if info.get("bidirectional") is not True:
                    print(f"FAIL {cell} {opts} {policy}: --json does not say bidirectional")
                    ok = False
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {cell:4s} {dtype} {loss:8s} L={layers} {opts} {policy:10s} "
                  f"{info['policy']:8s} forward {info['forward_ops']:4d} peak {info['peak_bytes']:6d} <= "
                  f"{info['budget_bytes']:9.0f} B  grad err {err:.1e} ({name})  loss err {loss_err:.1e}")
    print(f"{len(cases) * len(policies) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
