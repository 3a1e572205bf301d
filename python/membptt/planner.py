"""The planner from Python: the plan of ``membptt plan`` and the curves of ``membptt curve``.

Memory is counted in hidden-state units (an internal state is ``alpha`` units; plain BPTT needs
``alpha * length``), time in forward steps, the first pass included (docs/planner.md).
"""
from __future__ import annotations

import ctypes
import functools
import operator
import warnings
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from . import _lib

POLICIES = ("full", "hsm", "ism", "msm", "revolve", "chen-sqrt", "chen-recursive", "quadratic")
OP_NAMES = ("advance", "advance_hidden", "advance_record", "backward", "restore", "pop", "keep", "drop")
# One operation of a schedule: the C API's membptt_op (kind indexes OP_NAMES; slot -1 for advance;
# count: steps of an advance, else 1).
OP_DTYPE = np.dtype([("kind", np.int64), ("t", np.int64), ("slot", np.int64), ("count", np.int64)])
CURVE_DTYPE = np.dtype([("budget", np.float64), ("memory_fraction", np.float64), ("forward_steps", np.int64),
                        ("forward_per_step", np.float64), ("time_ratio", np.float64)])
_UNITS = {"units": _lib.UNIT_UNITS, "percent": _lib.UNIT_PERCENT, "bytes": _lib.UNIT_BYTES}
_FIXED_MEMORY = ("full", "chen-sqrt", "chen-recursive")


class _Handle:
    """Owns one membptt_plan* of the C API."""

    def __init__(self, ptr: ctypes.c_void_p):
        self.ptr = ptr
        self._free = _lib.lib().membptt_plan_free

    def __del__(self):
        if self.ptr:
            self._free(self.ptr)
            self.ptr = None


@dataclass(frozen=True)
class Plan:
    """A plan: what ``membptt plan --json`` prints, and the schedule's operations (``ops``)."""

    policy: str
    length: int
    budget: float             # units allowed
    alpha: float
    beta: float
    forward_steps: int        # the plan's cost, first pass included (backward steps are always length)
    peak_memory: float        # units the schedule holds at most
    plain_bptt_memory: float  # alpha * length
    memory_fraction: float    # peak_memory / plain_bptt_memory
    time_ratio: float         # predicted time against plain BPTT: (C/T + beta) / (1 + beta)
    max_slots: int            # deepest stack, h_0's slot included
    optimal: bool             # forward_steps is the policy's least (False: MSM's blocked plan past the exact table)
    lower_bound: int          # every plan of the policy within the budget runs at least this many forward steps
    _handle: _Handle = field(repr=False, compare=False)

    @property
    def forward_per_step(self) -> float:
        return self.forward_steps / self.length

    @functools.cached_property
    def ops(self) -> np.ndarray:
        """The schedule's operations in order, a structured array of OP_DTYPE (made on first use)."""
        f = _lib.lib().membptt_plan_ops
        total = ctypes.c_int64(0)
        _lib.check(f(self._handle.ptr, None, 0, ctypes.byref(total)))
        out = np.zeros(total.value, dtype=OP_DTYPE)
        buf = out.ctypes.data_as(ctypes.POINTER(_lib.Op))
        _lib.check(f(self._handle.ptr, buf, total.value, ctypes.byref(total)))
        out.flags.writeable = False
        return out

    def op_list(self) -> list[tuple[str, int, int, int]]:
        """The operations as (name, t, slot, count) tuples."""
        return [(OP_NAMES[k], int(t), int(s), int(c)) for k, t, s, c in self.ops.tolist()]


def _integer(name: str, value) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def _policy_bytes(policy) -> bytes:
    if not isinstance(policy, str):
        raise TypeError(f"policy must be a string, got {type(policy).__name__}")
    return policy.encode("utf-8")


def parse_budget(text: str) -> tuple[float, bool]:
    """A budget as users write it: ("64MiB" -> (67108864.0, False)), ("5%" -> (5.0, True))."""
    value, percent = ctypes.c_double(0), ctypes.c_int32(0)
    _lib.check(_lib.lib().membptt_parse_budget(text.encode("utf-8"), ctypes.byref(value), ctypes.byref(percent)))
    return value.value, bool(percent.value)


def plan(length: int, memory: Union[float, str], alpha: float = 1.0, policy: str = "auto", beta: float = 2.0,
         unit: Optional[str] = None, hidden_bytes: Optional[float] = None) -> Plan:
    """The plan with the fewest forward steps for ``length`` steps within ``memory``.

    memory: a number in ``unit`` ("units", the default: hidden-state units; "percent" of plain
    BPTT's memory; "bytes", with ``hidden_bytes`` the bytes of one hidden state), or a string: a
    share such as ``"5%"``, or bytes such as ``"64MiB"`` (with ``hidden_bytes``).
    policy: "auto" (plain BPTT when the budget holds it, else MSM) or one of POLICIES. MSM past its exact
        table (T > 10^4 or 2 million cells) is a blocked plan: ``optimal`` is then False and ``lower_bound``
        a proven least that every MSM plan within the budget runs.
    Bad values raise ValueError with one line naming the value and what is allowed.
    """
    length = _integer("length", length)
    alpha, beta = _number("alpha", alpha), _number("beta", beta)
    if isinstance(memory, str):
        if unit is not None:
            raise ValueError(f"unit={unit!r} is not allowed with memory given as the string {memory!r}: the string "
                             "carries its own unit")
        value, percent = parse_budget(memory)
        if not percent and hidden_bytes is None:
            raise ValueError(f"memory {memory!r} is in bytes: give hidden_bytes= (the bytes of one hidden state), "
                             "or give memory in units or as a share such as '5%'")
        code = _lib.UNIT_PERCENT if percent else _lib.UNIT_BYTES
    else:
        value = _number("memory", memory)
        unit = "units" if unit is None else unit
        if unit not in _UNITS:
            raise ValueError(f"unit {unit!r} is not allowed: use one of {', '.join(_UNITS)}")
        code = _UNITS[unit]
    hb = 0.0 if hidden_bytes is None else _number("hidden_bytes", hidden_bytes)
    ptr = ctypes.c_void_p()
    _lib.check(_lib.lib().membptt_plan_make(_policy_bytes(policy), length, value, code, alpha, beta, hb, ctypes.byref(ptr)))
    return plan_of_handle(ptr)


def plan_of_handle(ptr: ctypes.c_void_p) -> Plan:
    """The Plan of a membptt_plan* the caller passes on (it is freed with the Plan)."""
    L = _lib.lib()
    h = _Handle(ptr)
    n = L.membptt_plan_length(ptr)
    peak = L.membptt_plan_peak_units(ptr)
    plain = L.membptt_plan_alpha(ptr) * n
    return Plan(policy=L.membptt_plan_policy(ptr).decode(), length=n, budget=L.membptt_plan_budget_units(ptr),
                alpha=L.membptt_plan_alpha(ptr), beta=L.membptt_plan_beta(ptr),
                forward_steps=L.membptt_plan_forward_steps(ptr), peak_memory=peak, plain_bptt_memory=plain,
                memory_fraction=peak / plain, time_ratio=L.membptt_plan_time_ratio(ptr),
                max_slots=L.membptt_plan_max_slots(ptr), optimal=bool(L.membptt_plan_optimal(ptr)),
                lower_bound=L.membptt_plan_lower_bound(ptr), _handle=h)


def least_budget(length: int, alpha: float = 1.0, policy: str = "auto") -> float:
    """The least budget, in units, in which ``policy`` ("auto": MSM's) runs ``length`` steps."""
    out = ctypes.c_double(0)
    _lib.check(_lib.lib().membptt_least_budget(_policy_bytes(policy), _integer("length", length),
                                               _number("alpha", alpha), ctypes.byref(out)))
    return out.value


def curve_budgets(length: int, alpha: float, points: int) -> np.ndarray:
    """The budgets ``membptt curve`` samples: from 1 + alpha to alpha * length units, evenly in log space."""
    lo, hi = 1.0 + alpha, alpha * length
    return np.array([lo * (hi / lo) ** (i / (points - 1)) for i in range(points)], dtype=np.float64)


def curve(length: int, alpha: float = 1.0, beta: float = 2.0, points: int = 60,
          policies: Optional[list[str]] = None) -> dict[str, np.ndarray]:
    """Cost against memory for each policy (the paper's figure, ``membptt curve``).

    Returns {policy: structured array of CURVE_DTYPE}, budgets rising: the dynamic programs and
    revolve at ``points`` budgets from 1 + alpha units to plain BPTT's; full, chen-sqrt and
    chen-recursive at their one budget (their least). A policy that cannot be computed (a table
    too large) is left out with a warning, as the command line leaves it out with a note.
    """
    length, points = _integer("length", length), _integer("points", points)
    alpha, beta = _number("alpha", alpha), _number("beta", beta)
    if not 2 <= points <= 100000:
        raise ValueError(f"points {points} is not allowed: use 2..100000")
    if not (0.0 <= beta <= 1e6):
        raise ValueError(f"beta {beta:g} is not allowed: the backward/forward cost ratio must be 0 to 1e+06")
    names = list(POLICIES if policies is None else policies)
    sampled = curve_budgets(length, alpha, points)
    L = _lib.lib()
    out: dict[str, np.ndarray] = {}
    for name in names:
        try:
            b = np.array([least_budget(length, alpha, name)]) if name in _FIXED_MEMORY else sampled
            b = np.ascontiguousarray(b, dtype=np.float64)
            steps = np.zeros(len(b), dtype=np.int64)
            _lib.check(L.membptt_curve(_policy_bytes(name), length, alpha, b.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                                       len(b), steps.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))))
        except ValueError as e:
            if name not in POLICIES or length < 1 or not 1.0 <= alpha <= 1e6:
                raise
            warnings.warn(f"membptt.curve: {name} left out: {e}", stacklevel=2)
            continue
        keep = steps >= 0
        r = np.zeros(int(keep.sum()), dtype=CURVE_DTYPE)
        r["budget"] = b[keep]
        r["memory_fraction"] = b[keep] / (alpha * length)
        r["forward_steps"] = steps[keep]
        r["forward_per_step"] = steps[keep] / length
        r["time_ratio"] = (steps[keep] - length + length * (1.0 + beta)) / (length * (1.0 + beta))
        out[name] = r
    return out


class OnlineSchedule:
    """Online checkpointing (docs/planner.md, "Online checkpointing"): the schedule of a sequence
    whose length is known only when it ends, made as the steps arrive, never looking ahead.

        s = OnlineSchedule(budget_units, alpha)
        for each step that is not the last: ops = s.push()     # (kind, t, slot, count) tuples
        T, forward_steps = s.finish()                          # the last step has come
        ops = s.next_ops()                                     # the rest, in chunks, [] at the end

    kind indexes OP_NAMES (keep: push the cursor's state at slot; drop: remove the hidden state at
    slot, those above moving down one). At every op the stored states hold at most budget_units.
    backward: how the segments between checkpoints are reversed once the length is known: "msm"
    (its table; HSM when that would be too large) or "hsm" (Revolve's closed form).
    """

    def __init__(self, budget_units: float, alpha: float = 1.0, backward: str = "msm"):
        ptr = ctypes.c_void_p()
        _lib.check(_lib.lib().membptt_online_create(_number("budget_units", budget_units), _number("alpha", alpha),
                                                    _policy_bytes(backward), ctypes.byref(ptr)))
        self._ptr = ptr
        self._free = _lib.lib().membptt_online_free
        self._ops = (_lib.Op * 256)()
        self._n = ctypes.c_int64(0)

    def __del__(self):
        if getattr(self, "_ptr", None):
            self._free(self._ptr)
            self._ptr = None

    @property
    def slots(self) -> int:
        """Hidden slots the budget gives, h_0's included (m)."""
        return _lib.lib().membptt_online_slots(self._ptr)

    @property
    def optimal_up_to(self) -> int:
        """Up to this length the cost is the offline HSM optimum: (m+1)(m+2)/2."""
        return _lib.lib().membptt_online_optimal_up_to(self._ptr)

    def _read(self) -> list[tuple[int, int, int, int]]:
        return [(o.kind, o.t, o.slot, o.count) for o in self._ops[:self._n.value]]

    def push(self) -> list[tuple[int, int, int, int]]:
        """The next step is not the last: the ops that run it."""
        _lib.check(_lib.lib().membptt_online_push(self._ptr, self._ops, ctypes.byref(self._n)))
        return self._read()

    def finish(self) -> tuple[int, int]:
        """The next step is the last: (its number T, the whole schedule's forward steps)."""
        T, cost = ctypes.c_int64(0), ctypes.c_int64(0)
        _lib.check(_lib.lib().membptt_online_finish(self._ptr, ctypes.byref(T), ctypes.byref(cost)))
        return T.value, cost.value

    def next_ops(self) -> list[tuple[int, int, int, int]]:
        """After finish(): the next ops of the backward phase ([] at the end)."""
        _lib.check(_lib.lib().membptt_online_next(self._ptr, self._ops, len(self._ops), ctypes.byref(self._n)))
        return self._read()


def online_cost(length: int, memory: float, alpha: float = 1.0, backward: str = "msm") -> int:
    """The online policy's forward steps for a sequence that turns out to have ``length`` steps,
    within ``memory`` units (as ``membptt plan --online --memory ... --unit slots``); backward as
    OnlineSchedule's."""
    out = ctypes.c_int64(0)
    _lib.check(_lib.lib().membptt_online_cost(_integer("length", length), _number("memory", memory),
                                              _number("alpha", alpha), _policy_bytes(backward), ctypes.byref(out)))
    return out.value
