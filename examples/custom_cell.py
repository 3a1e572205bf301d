"""A recurrent cell of your own, trained inside a memory budget with membptt.torch.scan.

The cell is a layer-normalised LSTM written in PyTorch ops (no membptt layer exists for it);
`membptt.torch.scan(step, carry, xs, memory="5%")` runs `carry, y_t = step(carry, x_t)` over the
sequence keeping 5% of what plain autograd would store for it and recomputing the rest (Gruslys et
al. 2016); the gradients are plain autograd's. The task is a character-level language model on
data/verse.txt: nn.Embedding, the cell, an nn.Linear head. The head and the cross-entropy are
inside the step and the per-step losses are summed by scan (outputs="sum"), so no [T, B, vocab]
logits are kept either: the budget covers the whole recurrence. It prints the plan scan ran
(policy, forward steps per step, the bytes its stored states held against plain autograd's) and
the loss falling.

From a checkout (after building libmembptt.so into build/; Debian's interpreter has torch):
    PYTHONPATH=python /usr/bin/python3 examples/custom_cell.py --steps 60
--help lists the options; --memory none runs plain autograd through the same code.
"""
import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import membptt.torch as mt


class LayerNormLSTM(nn.Module):
    """An LSTM cell with layer normalisation of the gates and of the cell state."""

    def __init__(self, i, h):
        super().__init__()
        self.lin = nn.Linear(i + h, 4 * h)
        self.ln_gates, self.ln_c = nn.LayerNorm(4 * h), nn.LayerNorm(h)

    def forward(self, carry, x):
        h, c = carry
        i, f, g, o = self.ln_gates(self.lin(torch.cat([x, h], -1))).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(self.ln_c(c))
        return h, c


class CharModel(nn.Module):
    def __init__(self, vocab, hidden):
        super().__init__()
        self.embed, self.cell, self.head = nn.Embedding(vocab, 32), LayerNormLSTM(32, hidden), nn.Linear(hidden, vocab)

    def step(self, carry, inp):  # one character: (h, c), (embedding [B, 32], target [B]) -> (h, c), loss_t
        e, target = inp
        h, c = self.cell(carry, e)
        return (h, c), F.cross_entropy(self.head(h), target, reduction="sum")

    def loss(self, x, y, memory, stats):  # x, y: [T, B] character ids -> mean loss in nats
        B, H = x.shape[1], self.head.in_features
        carry = (torch.zeros(B, H), torch.zeros(B, H))
        _, total = mt.scan(self.step, carry, (self.embed(x), y), memory=memory, outputs="sum", stats=stats)
        return total / y.numel()


def kib(n):
    return f"{n / 1024:.1f} KiB" if n < 2**20 else f"{n / 2**20:.2f} MiB"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "verse.txt")
    p.add_argument("--seq-len", type=int, default=200, help="characters per window (the scan's length)")
    p.add_argument("--batch", type=int, default=16, help="windows per step")
    p.add_argument("--hidden", type=int, default=128, help="cell units")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps")
    p.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate")
    p.add_argument("--memory", default="5%", help="scan's budget: '5%%', '256KiB', or 'none' (plain autograd)")
    p.add_argument("--log-every", type=int, default=10, help="print the mean loss every N steps")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    for name in ("seq_len", "batch", "hidden", "steps", "log_every"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(a, name)}")
    try:
        text = a.data.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        p.error(f"cannot read --data {a.data}: {e.strerror if isinstance(e, OSError) else e}")
    if len(text) < a.seq_len + 2:
        p.error(f"--seq-len {a.seq_len} is too long for {a.data} ({len(text)} characters)")
    torch.manual_seed(a.seed)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([stoi[c] for c in text])
    memory = None if a.memory.lower() == "none" else a.memory
    model = CharModel(len(chars), a.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    print(f"{len(chars)} characters in the vocabulary (uniform: {math.log2(len(chars)):.2f} bits/char); "
          f"windows of {a.seq_len}, batch {a.batch}, hidden {a.hidden}, memory {a.memory}")
    losses, t0 = [], time.time()
    for step in range(1, a.steps + 1):
        starts = torch.randint(0, len(ids) - a.seq_len - 1, (a.batch,))
        w = torch.stack([ids[s:s + a.seq_len + 1] for s in starts.tolist()], 1)  # [T + 1, B]
        stats = mt.ScanStats() if step == 1 else None  # counting saved tensors costs time: once is enough
        try:
            loss = model.loss(w[:-1], w[1:], memory, stats)
        except ValueError as e:
            p.error(f"--memory {a.memory}: {e}")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item() / math.log(2))
        if step == 1:
            pl = stats.plan
            print(f"plan: policy {pl.policy}, {stats.forward_steps / a.seq_len:.3f} forward steps per step "
                  f"(predicted time {pl.time_ratio:.3f}x plain autograd's); stored states held {kib(stats.peak_bytes)}"
                  f" of plain autograd's {kib(stats.plain_bytes)} ({stats.peak_bytes / stats.plain_bytes:.1%})")
        if step == 1 or step % a.log_every == 0 or step == a.steps:
            print(f"step {step:4d}  loss {sum(losses) / len(losses):.3f} bits/char  "
                  f"{(time.time() - t0) / step:.3f} s/step", flush=True)
            losses = []


if __name__ == "__main__":
    main()
