"""Finds libmembptt.so (the C API of include/membptt/membptt.h) and declares its functions for ctypes.

Where it looks, in order: the file named by the environment variable MEMBPTT_LIBRARY; the copy
installed inside this package (``pip install .``); the build folders of the checkout this package
sits in (``build/src``, ``build-py/src``, ``build-python/cmake/src``).
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

API_VERSION = 3
LIBRARY_NAME = "libmembptt.so"

OK, INVALID_ARGUMENT, OUT_OF_MEMORY, INTERNAL_ERROR = 0, 1, 2, 3
UNIT_UNITS, UNIT_PERCENT, UNIT_BYTES = 0, 1, 2
FLOAT32, FLOAT64 = 0, 1


class Op(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int64), ("t", ctypes.c_int64), ("slot", ctypes.c_int64), ("count", ctypes.c_int64)]


class PassStats(ctypes.Structure):
    _fields_ = [("forward_steps", ctypes.c_int64), ("backward_steps", ctypes.c_int64),
                ("planned_forward_steps", ctypes.c_int64), ("peak_arena_bytes", ctypes.c_int64),
                ("arena_bytes", ctypes.c_int64), ("workspace_bytes", ctypes.c_int64), ("budget_bytes", ctypes.c_double)]


class RnnOptions(ctypes.Structure):
    """membptt_rnn_options (include/membptt/membptt.h)."""
    _fields_ = [("bias", ctypes.c_int32), ("bidirectional", ctypes.c_int32), ("proj_size", ctypes.c_int64),
                ("dropout", ctypes.c_double), ("nonlinearity", ctypes.c_char_p)]


def candidates() -> list[Path]:
    """The paths tried, in order."""
    env = os.environ.get("MEMBPTT_LIBRARY")
    if env:
        return [Path(env)]
    here = Path(__file__).resolve().parent
    root = here.parent.parent  # python/membptt -> the checkout
    return [here / LIBRARY_NAME] + [root / d / LIBRARY_NAME for d in ("build/src", "build-py/src", "build-python/cmake/src")]


def _declare(lib: ctypes.CDLL) -> None:
    c = ctypes
    P = c.c_void_p
    sig = {
        "membptt_api_version": (c.c_int32, []),
        "membptt_last_error": (c.c_char_p, []),
        "membptt_plan_make": (c.c_int, [c.c_char_p, c.c_int64, c.c_double, c.c_int32, c.c_double, c.c_double,
                                        c.c_double, c.POINTER(P)]),
        "membptt_plan_free": (None, [P]),
        "membptt_plan_policy": (c.c_char_p, [P]),
        "membptt_plan_length": (c.c_int64, [P]),
        "membptt_plan_forward_steps": (c.c_int64, [P]),
        "membptt_plan_optimal": (c.c_int32, [P]),
        "membptt_plan_lower_bound": (c.c_int64, [P]),
        "membptt_plan_peak_units": (c.c_double, [P]),
        "membptt_plan_budget_units": (c.c_double, [P]),
        "membptt_plan_alpha": (c.c_double, [P]),
        "membptt_plan_beta": (c.c_double, [P]),
        "membptt_plan_time_ratio": (c.c_double, [P]),
        "membptt_plan_max_slots": (c.c_int32, [P]),
        "membptt_plan_ops": (c.c_int, [P, c.POINTER(Op), c.c_int64, c.POINTER(c.c_int64)]),
        "membptt_curve": (c.c_int, [c.c_char_p, c.c_int64, c.c_double, c.POINTER(c.c_double), c.c_int64,
                                    c.POINTER(c.c_int64)]),
        "membptt_least_budget": (c.c_int, [c.c_char_p, c.c_int64, c.c_double, c.POINTER(c.c_double)]),
        "membptt_parse_budget": (c.c_int, [c.c_char_p, c.POINTER(c.c_double), c.POINTER(c.c_int32)]),
        "membptt_online_create": (c.c_int, [c.c_double, c.c_double, c.c_char_p, c.POINTER(P)]),
        "membptt_online_free": (None, [P]),
        "membptt_online_push": (c.c_int, [P, c.POINTER(Op), c.POINTER(c.c_int64)]),
        "membptt_online_finish": (c.c_int, [P, c.POINTER(c.c_int64), c.POINTER(c.c_int64)]),
        "membptt_online_next": (c.c_int, [P, c.POINTER(Op), c.c_int64, c.POINTER(c.c_int64)]),
        "membptt_online_slots": (c.c_int64, [P]),
        "membptt_online_optimal_up_to": (c.c_int64, [P]),
        "membptt_online_cost": (c.c_int, [c.c_int64, c.c_double, c.c_double, c.c_char_p, c.POINTER(c.c_int64)]),
        "membptt_rnn_create": (c.c_int, [c.c_char_p, c.c_int64, c.c_int64, c.c_int64, c.c_int32, c.c_char_p, c.c_char_p,
                                         c.c_double, c.POINTER(P)]),
        "membptt_rnn_options_default": (None, [c.POINTER(RnnOptions)]),
        "membptt_rnn_create_ex": (c.c_int, [c.c_char_p, c.c_int64, c.c_int64, c.c_int64, c.POINTER(RnnOptions),
                                            c.c_int32, c.c_char_p, c.c_char_p, c.c_double, c.POINTER(P)]),
        "membptt_rnn_free": (None, [P]),
        "membptt_rnn_set_dropout": (c.c_int, [P, c.c_int32, c.c_uint64]),
        "membptt_dropout_keep": (c.c_int, [c.c_uint64, c.c_int64, c.c_int64, c.c_int64, c.c_double,
                                           c.POINTER(c.c_uint8)]),
        "membptt_rnn_weight_count": (c.c_int64, [P]),
        "membptt_rnn_carry_count": (c.c_int64, [P, c.c_int64]),
        "membptt_rnn_plan": (c.c_int, [P, c.c_int64, c.c_int64, c.POINTER(P), c.POINTER(c.c_double),
                                       c.POINTER(c.c_double)]),
        "membptt_rnn_forward": (c.c_int, [P, c.c_int64, c.c_int64, P, P, P, P, P, c.POINTER(P)]),
        "membptt_pass_backward": (c.c_int, [P, P, P, P, P, P, P]),
        "membptt_pass_stats_get": (c.c_int, [P, c.POINTER(PassStats)]),
        "membptt_pass_free": (None, [P]),
        "membptt_num_threads": (c.c_int32, []),
        "membptt_set_num_threads": (c.c_int, [c.c_int32]),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args


_lib: ctypes.CDLL | None = None


def lib() -> ctypes.CDLL:
    """The loaded library (loaded on first use)."""
    global _lib
    if _lib is not None:
        return _lib
    tried = candidates()
    for path in tried:
        if path.is_file():
            loaded = ctypes.CDLL(str(path))
            _declare(loaded)
            version = loaded.membptt_api_version()
            if version != API_VERSION:
                raise ImportError(f"{path} has membptt C API version {version}; this package needs {API_VERSION}: "
                                  "rebuild it (scripts/build.sh) or reinstall the package")
            _lib = loaded
            return _lib
    raise ImportError(f"membptt: {LIBRARY_NAME} not found (tried {', '.join(map(str, tried))}): install the package "
                      "with pip, build the checkout with scripts/build.sh, or set MEMBPTT_LIBRARY to the library's path")


def check(status: int) -> None:
    """Raises the library's one-line message as ValueError (bad input), MemoryError or RuntimeError."""
    if status == OK:
        return
    message = (lib().membptt_last_error() or b"").decode("utf-8", "replace")
    if status == INVALID_ARGUMENT:
        raise ValueError(message)
    if status == OUT_OF_MEMORY:
        raise MemoryError(message)
    raise RuntimeError(message)
