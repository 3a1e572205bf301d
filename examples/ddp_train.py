"""Data-parallel training with membptt under torch.distributed: DistributedDataParallel around a model
with a membptt.torch.LSTM and one whose recurrence is a cell of its own run by membptt.torch.scan,
unchanged from single-process code.

Each process takes its share of every batch (character windows of data/verse.txt); DDP averages the
gradients. With --check, rank 0 also runs the whole batch in one process and compares the
gradients after the first step: they must agree to rounding (float64).

    torchrun --nproc_per_node 2 examples/ddp_train.py --steps 20     # gloo, CPU tensors
    python3 examples/ddp_train.py --nproc 2 --steps 20                 # the same, started by itself
    python3 examples/ddp_train.py --nproc 1 --model scan --device cuda --check   # nccl, CUDA tensors

--device cuda (scan only: membptt.torch's modules take CPU tensors) runs each rank on GPU
LOCAL_RANK and reduces with nccl, which needs one GPU per rank.

The second form starts the processes itself (localhost, a free port): Debian 12's PyTorch 1.13
under Python 3.11 has a launcher (torchrun, python3 -m torch.distributed.run) that fails before
starting anything. From a checkout, with PYTHONPATH=python and Debian's /usr/bin/python3 (it has
torch).
"""
import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import membptt
import membptt.torch as mt


class MinGRU(nn.Module):
    """A recurrence of the user's own (minGRU, Feng et al. 2024), run by membptt.torch.scan."""

    def __init__(self, i, h):
        super().__init__()
        self.z, self.h = nn.Linear(i + h, h), nn.Linear(i, h)

    def forward(self, h, x):
        z = torch.sigmoid(self.z(torch.cat([x, h], -1)))
        h = (1 - z) * h + z * torch.tanh(self.h(x))
        return h, h


class CharModel(nn.Module):
    def __init__(self, vocab, hidden, memory, kind):
        super().__init__()
        self.kind, self.hidden, self.memory = kind, hidden, memory
        self.embed = nn.Embedding(vocab, 32)
        self.rnn = mt.LSTM(32, hidden, memory=memory) if kind == "lstm" else MinGRU(32, hidden)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x):  # x [T, B] -> logits [T, B, vocab]
        e = self.embed(x)
        if self.kind == "lstm":
            y, _ = self.rnn(e)
        else:
            _, y = mt.scan(self.rnn, e.new_zeros(e.shape[1], self.hidden), e, memory=self.memory)
        return self.head(y)


def batches(text_ids, seq_len, batch, seed):
    g = torch.Generator().manual_seed(seed)
    while True:
        starts = torch.randint(0, len(text_ids) - seq_len - 1, (batch,), generator=g)
        w = torch.stack([text_ids[s:s + seq_len + 1] for s in starts.tolist()], 1)  # [T+1, B]
        yield w[:-1], w[1:]


def say(line: str) -> None:
    """One write per line: the ranks share standard output."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def loss_of(model, x, y):
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def launch(nproc: int) -> int:
    """Starts this script nproc times as the ranks of one group on localhost (what torchrun does)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [a for i, a in enumerate(sys.argv[1:]) if a != "--nproc" and sys.argv[i] != "--nproc"
            and not a.startswith("--nproc=")]
    procs = []
    for rank in range(nproc):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                   WORLD_SIZE=str(nproc))
        procs.append(subprocess.Popen([sys.executable, __file__, *argv], env=env))
    codes = [p.wait() for p in procs]
    return next((c for c in codes if c), 0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "verse.txt")
    p.add_argument("--model", choices=["lstm", "scan"], default="lstm")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seq-len", type=int, default=200)
    p.add_argument("--batch", type=int, default=8, help="the global batch, split between the processes")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--memory", default="10%", help="bytes (64MiB), a share (10%%) or none")
    p.add_argument("--check", action="store_true", help="compare the first step's gradients with one process's")
    p.add_argument("--nproc", type=int, help="start this many processes (instead of torchrun)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cpu (gloo) or cuda (nccl, --model scan only, one GPU per process)")
    args = p.parse_args()
    for name in ("steps", "seq_len", "batch", "hidden"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)} is not allowed: at least 1")
    if args.memory.lower() == "none":
        args.memory = None
    else:
        try:
            membptt.parse_budget(args.memory)
        except ValueError as e:
            p.error(f"--memory: {e}")
    if args.device == "cuda":
        if args.model != "scan":
            p.error("--device cuda is allowed with --model scan only: membptt.torch.LSTM takes CPU tensors")
        if not torch.cuda.is_available():
            p.error("--device cuda: this PyTorch sees no CUDA device")
        if args.nproc is not None and args.nproc > torch.cuda.device_count():
            p.error(f"--nproc {args.nproc} with --device cuda needs a GPU per process; "
                    f"{torch.cuda.device_count()} found")
    if "RANK" not in os.environ:
        if args.nproc is None:
            p.error("start it with torchrun --nproc_per_node N, or give --nproc N")
        if args.nproc < 1:
            p.error(f"--nproc {args.nproc} is not allowed: at least 1")
        sys.exit(launch(args.nproc))
    device = torch.device("cpu")
    if args.device == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.batch % world:
        p.error(f"--batch {args.batch} must be a multiple of the {world} processes")
    try:
        text = args.data.read_text(encoding="utf-8")
    except OSError as e:
        p.error(f"cannot read --data {args.data}: {e.strerror}")
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text[:20000]], dtype=torch.long)
    torch.set_default_dtype(torch.float64)  # --check compares to rounding
    torch.manual_seed(0)
    model = CharModel(len(vocab), args.hidden, args.memory, args.model).to(device)
    reference = CharModel(len(vocab), args.hidden, args.memory, args.model).to(device)
    reference.load_state_dict(model.state_dict())
    ddp = DDP(model)
    opt = torch.optim.Adam(ddp.parameters(), lr=3e-3)
    share = args.batch // world
    for step, (x, y) in zip(range(1, args.steps + 1), batches(ids, args.seq_len, args.batch, seed=1)):
        mine = slice(rank * share, (rank + 1) * share)
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        try:
            loss = loss_of(ddp, x[:, mine], y[:, mine])
        except ValueError as e:  # a budget below the least that works: one line, from one rank
            if rank == 0:
                sys.stderr.write(f"ddp_train.py: --memory {args.memory}: {e}\n")
            sys.exit(2)
        loss.backward()
        if args.check and step == 1:
            loss_of(reference, x, y).backward()  # the whole batch, one process
            worst = max((a.grad - b.grad).abs().max().item() for a, b in zip(model.parameters(), reference.parameters()))
            say(f"rank {rank}: largest gradient difference from one process over the whole batch: {worst:.3g}")
            if worst > 1e-10:
                sys.exit(f"rank {rank}: DDP's gradients differ from one process's by {worst:.3g}")
        opt.step()
        total = loss.detach().clone()
        dist.all_reduce(total)
        if rank == 0 and (step == 1 or step % 5 == 0 or step == args.steps):
            say(f"step {step:4d}  loss {total.item() / world:.4f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
