"""The C allocator a Python benchmark runs under: glibc's malloc, tcmalloc or jemalloc.

PyTorch's CPU tensors come from malloc, and a step-by-step loop allocates and frees a few
tensors per step. Under glibc's malloc such a loop's time depends on what the process allocated
before: membptt.torch.scan at 5% of plain autograd's memory took 1.27x plain autograd's time in a
fresh process and 1.39x after a plain forward of 350 MiB of saved tensors and a checkpointed one
(2026-12-01, paired medians of 9 rounds; `perf` put glibc's _int_malloc and unlink_chunk at 3.1%
of the samples there, under 0.9% fresh). Under tcmalloc: 1.30x and 1.29x. PyTorch's Performance Tuning Guide (CPU specific
optimizations) recommends tcmalloc or jemalloc for this kind of work.

An allocator must be loaded before the interpreter starts, so a benchmark calls use_malloc()
first thing: where the one asked for is not the one loaded, it executes the script again with
LD_PRELOAD set (the libraries: Debian's libtcmalloc-minimal4 and libjemalloc2, installed by
scripts/install-deps.sh --bench).
"""
import argparse
import ctypes.util
import os
import sys

# name -> (library stem for ctypes.util.find_library, its soname, the Debian package)
ALLOCATORS = {
    "tcmalloc": ("tcmalloc_minimal", "libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
    "jemalloc": ("jemalloc", "libjemalloc.so.2", "libjemalloc2"),
}
CHOICES = ("auto", "glibc", *ALLOCATORS)
_REEXEC = "MEMBPTT_BENCH_MALLOC_REEXEC"  # set in the re-executed process: never loop


def malloc_arg(value: str) -> str:
    """argparse type of --malloc."""
    if value not in CHOICES:
        raise argparse.ArgumentTypeError(f"{value!r} is not allowed: one of {', '.join(CHOICES)}")
    return value


def loaded() -> str:
    """The allocator in this process: tcmalloc or jemalloc where its library is mapped, else glibc."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return "glibc"
    for name, (stem, _, _) in ALLOCATORS.items():
        if f"lib{stem}.so" in maps or f"lib{stem}_" in maps:
            return name
    return "glibc"


def installed(name: str):
    """The library of `name` as LD_PRELOAD takes it (a soname the loader finds), or None."""
    return ctypes.util.find_library(ALLOCATORS[name][0])


def use_malloc(choice: str, prog: str) -> str:
    """Makes this process run under `choice` (auto: tcmalloc where installed, else glibc) and
    returns the allocator it runs under; re-executes the script when needed (never returns then).
    An allocator that is not installed: exits with one line naming its Debian package."""
    now = loaded()
    if choice == "auto":
        choice = now if now != "glibc" else ("tcmalloc" if installed("tcmalloc") else "glibc")
    if choice == now:
        return now
    if os.environ.get(_REEXEC):
        sys.exit(f"{prog}: --malloc {choice}: the process still runs under {now} after setting LD_PRELOAD")
    others = [ALLOCATORS[n][0] for n in ALLOCATORS]
    keep = [e for e in os.environ.get("LD_PRELOAD", "").replace(":", " ").split()
            if not any(f"lib{stem}" in os.path.basename(e) for stem in others)]
    if choice != "glibc":
        lib = installed(choice)
        if lib is None:
            _, soname, package = ALLOCATORS[choice]
            sys.exit(f"{prog}: --malloc {choice}: {soname} is not installed (Debian: apt-get install {package}, "
                     f"or scripts/install-deps.sh --bench)")
        keep.insert(0, lib)
    env = dict(os.environ, **{_REEXEC: "1"})
    env["LD_PRELOAD"] = " ".join(keep)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)
