"""A character-level language model trained with membptt.torch.LSTM inside a memory budget.

Ordinary PyTorch (nn.Embedding, an LSTM, an nn.Linear head, F.cross_entropy, Adam, gradient
clipping) with one change: the LSTM is membptt.torch.LSTM(..., memory="10%"), which keeps 10% of
plain BPTT's activation memory for its windows of 500 steps and recomputes the rest (Gruslys et al.
2016); its gradients are plain BPTT's, bit for bit. Training is truncated BPTT over data/verse.txt:
--batch parallel streams read in windows of --seq-len characters, the hidden state carried
(detached) from one window to the next. It prints the plan the LSTM runs, the loss in bits per
character, the held-out loss (the last 10% of the text) and a sample. The budget covers the LSTM's
activations; autograd keeps the embedding's and the head's tensors as usual.

From a checkout (after building libmembptt.so into build/; Debian's interpreter has torch):
    PYTHONPATH=python /usr/bin/python3 examples/char_lm.py --steps 300 --sample 400
With membptt installed (`pip install .`, README "From Python"), the same without PYTHONPATH, by the
interpreter it is installed for (.venv/bin/python). --help lists the options.
"""
import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import membptt.torch as mt


def kib(n):
    return f"{n / 1024:.1f} KiB" if n < 2**20 else f"{n / 2**20:.2f} MiB"


def fail(msg):
    print(f"char_lm.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


class CharLM(nn.Module):
    def __init__(self, vocab, hidden, layers, memory):
        super().__init__()
        self.embed = nn.Embedding(vocab, 64)
        self.lstm = mt.LSTM(64, hidden, num_layers=layers, memory=memory)  # was: nn.LSTM(64, hidden, layers)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):  # x: [T, B] character ids -> logits [T, B, vocab]
        y, state = self.lstm(self.embed(x), state)
        return self.head(y), state


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.error = fail  # bad options: one line, status 2
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "verse.txt",
                   help="UTF-8 text")
    p.add_argument("--seq-len", type=int, default=500, help="window of truncated BPTT")
    p.add_argument("--batch", type=int, default=16, help="parallel streams")
    p.add_argument("--hidden", type=int, default=128, help="LSTM units")
    p.add_argument("--layers", type=int, default=1, help="LSTM layers")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps")
    p.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate")
    p.add_argument("--clip", type=float, default=1.0, help="max global gradient norm (0: off)")
    p.add_argument("--memory", default="10%", help="LSTM activation budget: '10%%', '256KiB', or 'none' (plain BPTT)")
    p.add_argument("--seed", type=int, default=1, help="initial weights and sample")
    p.add_argument("--log-every", type=int, default=20, help="print the mean loss every N steps")
    p.add_argument("--sample", type=int, default=200, metavar="N", help="characters to generate at the end")
    p.add_argument("--temperature", type=float, default=0.8, help="of the sample; 0: greedy")
    p.add_argument("--prime", default="The ", help="text the sample starts from")
    p.add_argument("--device", default="cpu", choices=["cpu"], help="membptt.torch runs on the CPU in this build")
    a = p.parse_args()
    for name in ("seq_len", "batch", "hidden", "layers", "steps", "log_every"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(a, name)}")
    if not a.lr > 0:
        p.error(f"--lr {a.lr} is not allowed: it must be > 0")
    for name in ("clip", "temperature", "sample"):
        if not getattr(a, name) >= 0:
            p.error(f"--{name} {getattr(a, name)} is not allowed: it must be >= 0")
    try:
        text = a.data.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        sys.exit(f"char_lm.py: error: cannot read --data {a.data}: {e.strerror if isinstance(e, OSError) else e}")
    if len(text) < 40:
        p.error(f"--data {a.data} is too short: {len(text)} characters")
    torch.manual_seed(a.seed)

    chars = sorted(set(text))  # the vocabulary: every character of the file
    stoi = {c: i for i, c in enumerate(chars)}
    if a.sample and (not a.prime or any(c not in stoi for c in a.prime)):
        p.error(f"--prime {a.prime!r} must be one or more characters of {a.data.name}")
    ids = torch.tensor([stoi[c] for c in text])
    split = len(ids) * 9 // 10  # the last 10% is held out
    n = split // a.batch  # stream length
    if n < 2:
        p.error(f"--batch {a.batch} is too large for the first 90% of {a.data.name} ({split} characters): "
                f"at most {split // 2}")
    if a.seq_len + 1 > n:
        p.error(f"--seq-len {a.seq_len} is too long for {a.batch} streams of the first 90% of {a.data.name}: "
                f"at most {n - 1}")
    streams = ids[:n * a.batch].view(a.batch, n).t()  # [n, batch]: column b is the text's b-th slice
    freq = torch.bincount(ids[:split], minlength=len(chars)).double() / split
    unigram = -(freq[freq > 0] * freq[freq > 0].log2()).sum().item()

    try:
        model = CharLM(len(chars), a.hidden, a.layers, None if a.memory.lower() == "none" else a.memory)
        plan, budget, plain = model.lstm.plan(a.seq_len, a.batch)
    except (ValueError, RuntimeError) as e:
        p.error(f"--memory: {e}")
    print(f"{len(text)} characters, {len(chars)} distinct; {a.batch} streams of {n}, windows of {a.seq_len}; "
          f"unigram {unigram:.3f} bits/char")
    print(f"plan: policy {plan.policy}, {plan.forward_steps / a.seq_len:.3f} forward steps per step, "
          f"stores {100 * plan.memory_fraction:.1f}% of plain BPTT's {kib(plain)} (budget {kib(budget)}), "
          f"predicted time {plan.time_ratio:.3f}x plain BPTT's")
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)

    pos, state, losses, t0 = 0, None, [], time.time()
    for step in range(1, a.steps + 1):
        if pos + a.seq_len + 1 > n:  # the streams wrap around: start again from zero state
            pos, state = 0, None
        x, y = streams[pos:pos + a.seq_len], streams[pos + 1:pos + a.seq_len + 1]
        pos += a.seq_len
        logits, state = model(x, state)
        state = tuple(s.detach() for s in state)  # truncated BPTT: carry the state, not its graph
        loss = F.cross_entropy(logits.reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        if a.clip:
            nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        losses.append(loss.item() / math.log(2))
        if step == 1:
            s = model.lstm.last_stats
            print(f"step 1 held {kib(s.held_bytes)} for the backward pass, {s.forward_steps} forward steps "
                  f"(planned {s.planned_forward_steps})")
        if step == 1 or step % a.log_every == 0 or step == a.steps:
            print(f"step {step:5d}  loss {sum(losses) / len(losses):.3f} bits/char  "
                  f"{(time.time() - t0) / step:.3f} s/step", flush=True)
            losses = []

    with torch.no_grad():  # held-out bits per character, one sequence from zero state
        held = ids[split:]
        logits, _ = model(held[:-1].unsqueeze(1))
        bpc = F.cross_entropy(logits.squeeze(1), held[1:]).item() / math.log(2)
    print(f"held-out loss {bpc:.3f} bits/char over {len(held) - 1} characters (unigram {unigram:.3f})")
    if a.sample:
        with torch.no_grad():
            logits, s = model(torch.tensor([stoi[c] for c in a.prime]).unsqueeze(1))
            out = []
            for _ in range(a.sample):
                last = logits[-1, 0]
                c = last.argmax() if a.temperature == 0 else torch.multinomial((last / a.temperature).softmax(-1), 1)[0]
                out.append(chars[c])
                logits, s = model(c.view(1, 1), s)
        print("sample:\n" + a.prime + "".join(out))


if __name__ == "__main__":
    main()
