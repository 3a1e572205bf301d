"""DistributedDataParallel around membptt's modules and scan (examples/ddp_train.py): two processes
on this machine (gloo, localhost), whose gradients after a step equal one process's over the whole
batch, in float64."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="membptt.torch needs PyTorch (Debian: python3-torch)")

ROOT = Path(__file__).resolve().parents[2]


def run_example(*args, timeout=120):
    """examples/ddp_train.py with these arguments, the checkout's package on the path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(ROOT / "examples" / "ddp_train.py"), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("model", ["lstm", "scan"])
def test_ddp_gradients_equal_one_process(model):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this PyTorch has no gloo backend for torch.distributed")
    out = run_example("--nproc", "2", "--check", "--model", model, "--steps", "3", "--seq-len", "60", timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    diffs = [float(line.rsplit(" ", 1)[1]) for line in out.stdout.splitlines() if "largest gradient difference" in line]
    assert len(diffs) == 2 and max(diffs) <= 1e-10
    losses = [float(line.split()[-1]) for line in out.stdout.splitlines() if line.startswith("step")]
    assert len(losses) == 2 and losses[1] < losses[0]


def test_device_cuda_is_refused_in_one_line_where_it_cannot_run():
    out = run_example("--nproc", "1", "--device", "cuda", "--model", "lstm")
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].endswith(
        "--device cuda is allowed with --model scan only: membptt.torch.LSTM takes CPU tensors")
    if torch.cuda.is_available():
        out = run_example("--nproc", str(torch.cuda.device_count() + 1), "--device", "cuda", "--model", "scan")
        assert out.returncode == 2 and "needs a GPU per process" in out.stderr
    else:
        out = run_example("--nproc", "1", "--device", "cuda", "--model", "scan")
        assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].endswith(
            "--device cuda: this PyTorch sees no CUDA device")


def test_a_budget_below_the_least_is_one_line_from_one_rank():
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this PyTorch has no gloo backend for torch.distributed")
    out = run_example("--nproc", "2", "--model", "scan", "--memory", "10", "--steps", "2", "--seq-len", "30")
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(lines) == 1 and lines[0].startswith("ddp_train.py: --memory 10: scan: memory budget 10 bytes is below")
