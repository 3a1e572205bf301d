"""The README's install command, run as written: a venv that sees Debian's packages, then
`pip install --no-build-isolation .` (offline), then import and plan from outside the checkout."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_pip_install(tmp_path):
    for module in ("pip", "venv", "ensurepip", "setuptools", "wheel"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{sys.executable} lacks {module} (Debian: python3-pip, python3-venv, python3-setuptools, "
                        "python3-wheel), so the install command is not tested")
    build_dir = os.environ.get("MEMBPTT_CMAKE_BUILD_DIR")
    if not build_dir:
        pytest.skip("MEMBPTT_CMAKE_BUILD_DIR is not set (CTest sets it to its build folder, whose library the "
                    "install then reuses; a fresh CMake build would take minutes)")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("MEMBPTT_LIBRARY", "PYTHONPATH")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    out = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-build-isolation", "."], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    probe = ("import membptt, pathlib; p = membptt.plan(1000, '5%', alpha=4); "
             "print(pathlib.Path(membptt.__file__).parent, p.policy, p.forward_steps)")
    got = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    where, policy, steps = got.stdout.split()
    assert Path(where).is_relative_to(venv) and (Path(where) / "libmembptt.so").is_file()
    assert (policy, steps) == ("msm", "1950")
    if importlib.util.find_spec("torch") is not None:  # the torch layers are installed too, and run
        probe = ("import torch, membptt.torch as mt; m = mt.LSTM(3, 4, memory='50%'); "
                 "y, _ = m(torch.randn(20, 2, 3)); y.sum().backward(); print(m.last_stats.forward_steps > 20)")
        got = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=120)
        assert got.returncode == 0, got.stderr
        assert got.stdout.split() == ["True"]
