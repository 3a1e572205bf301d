#!/usr/bin/python3
"""PyTorch oracle for membptt: makes model/inputs files and computes reference gradients.

Run with Debian's /usr/bin/python3 (python3-torch). Files are safetensors (see membptt_st.py).

  torch_reference.py make --cell lstm --input-size I --hidden H --layers L --output O --loss xent \
      --T T --batch B --dtype float64 --seed S --model M.safetensors --inputs X.safetensors [--init-state]
      [--no-bias] [--nonlinearity relu] [--proj-size P] [--bidirectional]
  torch_reference.py grad --model M --inputs X --out G.safetensors [--json]
  torch_reference.py compare G1 G2 [--rtol R]

Losses: xent = mean over T x B of cross_entropy(head(output_t)); mse_last = mean over B x O of
(head(h_T of the top layer) - target)^2 (bidirectional: head(output_T), both directions' h at step T). The gradient file has one tensor per parameter under the
model's names, the model's metadata and "loss_value" (repr of the float loss).
compare: per tensor, max|a - b| / max(max|b|, tiny); exit 1 naming the worst tensor when above
rtol, exit 2 when the files do not hold the same tensors/shapes.
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import membptt_st as st  # noqa: E402

DTYPES = {"float32": torch.float32, "float64": torch.float64}
CELLS = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
SPEC_INTS = ("input_size", "hidden_size", "num_layers", "output_size")


class Net(torch.nn.Module):
    def __init__(self, spec):
        super().__init__()
        kwargs = {"nonlinearity": spec.get("nonlinearity", "tanh")} if spec["cell"] == "rnn" else {}
        if int(spec.get("proj_size", 0)):
            kwargs["proj_size"] = int(spec["proj_size"])
        self.rnn = CELLS[spec["cell"]](spec["input_size"], spec["hidden_size"], num_layers=spec["num_layers"],
                                       bias=spec.get("bias", "true") != "false",
                                       bidirectional=directions(spec) == 2, **kwargs)
        self.head = torch.nn.Linear(directions(spec) * width(spec), spec["output_size"])


def width(spec):
    """The width of h: proj_size when > 0, else hidden_size."""
    return int(spec.get("proj_size", 0)) or spec["hidden_size"]


def directions(spec):
    """2 for a bidirectional model (metadata bidirectional=true), else 1."""
    return 2 if str(spec.get("bidirectional", "false")).lower() == "true" else 1


def spec_from_metadata(meta):
    spec = {k: meta[k] for k in ("cell", "loss", "dtype")}
    spec.update({k: int(meta[k]) for k in SPEC_INTS})
    spec.update({k: meta[k] for k in ("bias", "nonlinearity", "proj_size", "bidirectional") if k in meta})
    if spec["cell"] not in CELLS or spec["loss"] not in ("xent", "mse_last") or spec["dtype"] not in DTYPES:
        raise SystemExit(f"bad model metadata: {meta}")
    return spec


def make(a):
    spec = {"cell": a.cell, "input_size": a.input_size, "hidden_size": a.hidden, "num_layers": a.layers,
            "output_size": a.output, "loss": a.loss, "dtype": a.dtype}
    # PyTorch's other options, in the metadata only when not the default (as membptt writes them).
    if getattr(a, "no_bias", False):
        spec["bias"] = "false"
    if getattr(a, "nonlinearity", "tanh") != "tanh":
        spec["nonlinearity"] = a.nonlinearity
    if getattr(a, "proj_size", 0):
        spec["proj_size"] = a.proj_size
    if getattr(a, "bidirectional", False):
        spec["bidirectional"] = "true"
    dtype = DTYPES[a.dtype]
    torch.manual_seed(a.seed)
    net = Net(spec).to(dtype)  # torch's default initialization, drawn in float32 then converted
    T, B, L, H, O = a.T, a.batch, a.layers, a.hidden, a.output
    inputs = {"input": torch.randn(T, B, a.input_size, dtype=dtype)}
    if a.loss == "xent":
        inputs["target"] = torch.randint(0, O, (T, B), dtype=torch.int64)
    else:
        inputs["target"] = torch.randn(B, O, dtype=dtype)
    if a.init_state:
        D = directions(spec)  # PyTorch's h_0 / c_0: [D*L, B, ...]
        inputs["h0"] = 0.5 * torch.randn(D * L, B, width(spec), dtype=dtype)
        if a.cell == "lstm":
            inputs["c0"] = 0.5 * torch.randn(D * L, B, H, dtype=dtype)
    st.save(a.model, net.state_dict(), {k: str(v) for k, v in spec.items()})
    st.save(a.inputs, inputs)


def compute_grad(model_path, inputs_path):
    params, meta = st.load(model_path)
    spec = spec_from_metadata(meta)
    dtype = DTYPES[spec["dtype"]]
    net = Net(spec).to(dtype)
    net.load_state_dict(params, strict=True)
    x, _ = st.load(inputs_path)
    inp = x["input"].to(dtype)
    hx = None
    if "h0" in x or "c0" in x:
        shape = (directions(spec) * spec["num_layers"], inp.shape[1], spec["hidden_size"])
        h0 = x["h0"].to(dtype) if "h0" in x else torch.zeros(shape[:2] + (width(spec),), dtype=dtype)
        c0 = x["c0"].to(dtype) if "c0" in x else torch.zeros(shape, dtype=dtype)
        hx = (h0, c0) if spec["cell"] == "lstm" else h0
    out, _ = net.rnn(inp, hx)  # out: [T, B, D*H], the top layer's h_t (both directions')
    if spec["loss"] == "xent":
        logits = net.head(out)
        loss = F.cross_entropy(logits.reshape(-1, spec["output_size"]), x["target"].long().reshape(-1))
    else:
        loss = ((net.head(out[-1]) - x["target"].to(dtype)) ** 2).mean()
    loss.backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    return grads, meta, loss.item()


def grad(a):
    grads, meta, loss = compute_grad(a.model, a.inputs)
    meta = dict(meta, loss_value=repr(loss))
    st.save(a.out, grads, meta)
    print(json.dumps({"loss": loss}) if a.json else f"loss = {loss!r}")


def compare(a):
    g1, m1 = st.load(a.g1)
    g2, m2 = st.load(a.g2)
    if set(g1) != set(g2):
        only1, only2 = sorted(set(g1) - set(g2)), sorted(set(g2) - set(g1))
        print(f"compare: tensors differ: only in {a.g1}: {only1}; only in {a.g2}: {only2}", file=sys.stderr)
        return 2
    rows = []
    for name in sorted(g1):
        x, y = g1[name].double(), g2[name].double()
        if x.shape != y.shape:
            print(f"compare: tensor {name}: shape {list(x.shape)} vs {list(y.shape)}", file=sys.stderr)
            return 2
        if x.numel() == 0:
            rows.append((name, 0.0))
            continue
        if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
            rows.append((name, math.inf))
            continue
        scale = max(y.abs().max().item(), torch.finfo(torch.float64).tiny)
        rows.append((name, (x - y).abs().max().item() / scale))
    if "loss_value" in m1 and "loss_value" in m2:
        l1, l2 = float(m1["loss_value"]), float(m2["loss_value"])
        err = abs(l1 - l2) / max(abs(l2), torch.finfo(torch.float64).tiny)
        rows.append(("(loss)", err if math.isfinite(err) else math.inf))
    worst = max(rows, key=lambda r: r[1], default=("(none)", 0.0))
    for name, err in rows:
        print(f"{name:24s} {err:.3e}")
    if worst[1] > a.rtol:
        print(f"compare: FAIL: worst tensor {worst[0]}: max relative error {worst[1]:.3e} > rtol {a.rtol:g}",
              file=sys.stderr)
        return 1
    print(f"compare: OK: worst tensor {worst[0]}: max relative error {worst[1]:.3e} <= rtol {a.rtol:g}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write a model and random inputs")
    m.add_argument("--cell", choices=sorted(CELLS), required=True)
    m.add_argument("--input-size", type=int, required=True)
    m.add_argument("--hidden", type=int, required=True)
    m.add_argument("--layers", type=int, default=1)
    m.add_argument("--output", type=int, required=True)
    m.add_argument("--loss", choices=["xent", "mse_last"], default="xent")
    m.add_argument("--T", type=int, required=True)
    m.add_argument("--batch", type=int, required=True)
    m.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--model", required=True)
    m.add_argument("--inputs", required=True)
    m.add_argument("--init-state", action="store_true", help="also write random h0 (and c0 for lstm)")
    m.add_argument("--no-bias", action="store_true", help="bias=False")
    m.add_argument("--nonlinearity", choices=["tanh", "relu"], default="tanh", help="rnn only")
    m.add_argument("--proj-size", type=int, default=0, help="lstm only: proj_size")
    m.add_argument("--bidirectional", action="store_true", help="bidirectional=True")
    g = sub.add_parser("grad", help="compute the loss and parameter gradients")
    g.add_argument("--model", required=True)
    g.add_argument("--inputs", required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--json", action="store_true", help='print {"loss": ...} as JSON')
    c = sub.add_parser("compare", help="compare two gradient files")
    c.add_argument("g1")
    c.add_argument("g2")
    c.add_argument("--rtol", type=float, default=1e-6)
    a = p.parse_args()
    for name in ("input_size", "hidden", "layers", "output", "T", "batch"):
        if a.cmd == "make" and getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    torch.set_num_threads(1)
    if a.cmd == "make":
        make(a)
    elif a.cmd == "grad":
        grad(a)
    else:
        sys.exit(compare(a))


if __name__ == "__main__":
    main()
