"""``membptt.torch.scan``: any recurrent PyTorch step, trained by the plan that minimises
recomputation within a memory budget (Gruslys et al. 2016, BPTT-MSM), with PyTorch's autograd.

    final_carry, ys = scan(step, carry, xs, memory="5%")
    # step(carry, x_t) -> (carry, y_t): any PyTorch code; carry and x_t nested tuples/lists/dicts
    # of tensors; xs scanned along its first dimension.

How it runs the planner's schedule (include/membptt/schedule/op.hpp):

- advance: the step without a graph (``torch.no_grad``);
- advance_hidden: the same, keeping the carry it produced (a hidden state);
- advance_record: the step with its graph; what autograd saves for it, with the carry it produced,
  is the internal state;
- backward: ``torch.autograd.grad`` of that graph with the carry's and output's gradients, giving
  the carry's gradient for the step before, x_t's, and the parameters', summed over the steps and
  handed to autograd once per scan (hooks and optimizers, DistributedDataParallel's included, see
  one accumulation);
- keep, drop (online schedules, xs an iterator): keep the current carry as a hidden state; give up
  an earlier one.

The first sweep (everything before the first backward step) runs in the forward pass and produces
each output once; the rest runs in the backward pass: the forward steps of both are the plan's
cost. Sizes for the planner are measured on a probe step (autograd's saved tensors through
``torch.autograd.graph.saved_tensors_hooks``: alpha = (saved bytes + a carry) / a carry), and the
step's costs too (an advance against a recorded step's backward: beta, for the predicted time), once
per step function and shapes: a few extra steps the first time, none after. Randomness inside the step (dropout) is reproduced on recomputation: the
generator's state is kept with every stored state, as ``torch.utils.checkpoint`` does, and after
the scan's forward the generators stand where the plain loop leaves them; the backward pass puts
them back where it found them.

Parameters: the step's leaf tensors that require grad, found by walking the probe step's graph
(``AccumulateGrad`` nodes), or given as ``params=``. A tensor the step captures that requires grad
and is not a leaf (computed before the scan) cannot be found that way; pass it in the carry or in
``xs``, or list its leaves in ``params``.
"""
from __future__ import annotations

import collections.abc
import contextlib
import math
import time
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch.utils import _pytree as pytree

from ..planner import OP_NAMES, POLICIES, OnlineSchedule, Plan, least_budget, parse_budget, plan as make_plan
from .function import single_backward

ADVANCE, ADVANCE_HIDDEN, ADVANCE_RECORD, BACKWARD, RESTORE, POP, KEEP, DROP = range(len(OP_NAMES))
_OUTPUT_MODES = ("stack", "sum", "none")


@dataclass
class ScanStats:
    """What one scan ran and held (filled when ``stats=`` is given a ScanStats)."""

    plan: Optional[Plan] = None
    carry_bytes: int = 0           # one carry: the planner's unit
    record_bytes: int = 0          # one recorded step: autograd's saved tensors + the carry out
    budget_bytes: float = 0.0      # what the plan was made for
    plain_bytes: int = 0           # plain autograd over the scan: length * record_bytes
    forward_steps: int = 0         # steps run forward, both passes (the plan's cost)
    backward_steps: int = 0
    peak_bytes: int = 0            # most bytes the stored states held (counted as they are made)
    counted: bool = False          # True (stats= given): each recorded step's saved tensors counted
                                   # through saved_tensors_hooks; False: taken as the probe step's
    params: list = field(default_factory=list, repr=False)  # (tensors: left out of the repr)
    online_forward_steps: int = 0  # xs an iterator: the online schedule's cost (plan is None), known at its end
    online_slots: int = 0          # xs an iterator: hidden slots the budget gave, the initial carry's included


# --- structures ------------------------------------------------------------------------------------

def _flatten(tree, what: str) -> tuple[list[torch.Tensor], Any]:
    leaves, spec = pytree.tree_flatten(tree)
    for leaf in leaves:
        if not isinstance(leaf, torch.Tensor):
            raise TypeError(f"scan: {what} must be a tensor or a nested tuple/list/dict of tensors, found "
                            f"{type(leaf).__name__}")
    return leaves, spec


def _signature(leaves: Sequence[torch.Tensor]) -> tuple:
    return tuple((tuple(t.shape), t.dtype, t.device) for t in leaves)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class _Rng:
    """The generators a step may draw from: the CPU's, and CUDA's when it is in use."""

    def __init__(self, cuda: bool):
        self.cuda = cuda and torch.cuda.is_available() and torch.cuda.is_initialized()

    def get(self):
        return (torch.get_rng_state(), torch.cuda.get_rng_state_all() if self.cuda else None)

    def set(self, state) -> None:
        torch.set_rng_state(state[0])
        if self.cuda:
            torch.cuda.set_rng_state_all(state[1])


class _SavedBytes:
    """Counts the bytes autograd saves while it is active (each tensor once; parameters and the
    step's inputs x_t left out: they exist anyway), plus the carry the step produced."""

    def __init__(self, skip: set):
        self.skip, self.seen = skip, {}

    def pack(self, t: torch.Tensor):
        if t.numel() and t.data_ptr() not in self.skip:
            self.seen[(t.data_ptr(), t.dtype, tuple(t.shape))] = _nbytes(t)
        return t

    def drop(self, ptrs: set) -> None:
        self.skip |= ptrs
        self.seen = {k: v for k, v in self.seen.items() if k[0] not in ptrs}

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)

    def total(self, carry_out: Sequence[torch.Tensor]) -> int:
        seen = dict(self.seen)
        for c in carry_out:
            seen[(c.data_ptr(), c.dtype, tuple(c.shape))] = _nbytes(c)
        return sum(seen.values())


# --- the probe: parameters and sizes ---------------------------------------------------------------

@dataclass
class _Probe:
    params: list
    carry_bytes: int
    record_bytes: int
    beta: float  # measured: a recorded step's backward over an advance (the planner's time model)


_probes: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _probe(step, carry_leaves, carry_spec, x_leaves, x_spec, rng: _Rng) -> _Probe:
    """Runs step 1 once with a graph (the generators put back after): the parameters it uses (the
    leaves of its graph that require grad) and the bytes a recorded step holds."""
    cin = [_grad_leaf(c) for c in carry_leaves]
    xin = [x.detach() for x in x_leaves]
    state = rng.get()
    counter = _SavedBytes({t.data_ptr() for t in xin if t.numel()})
    try:
        with torch.enable_grad(), counter.hooks():
            out_carry, y, _ = _call(step, cin, carry_spec, xin, x_spec)
    finally:
        rng.set(state)
    ours = {id(t) for t in cin}
    params, seen = [], set()
    todo = [t.grad_fn for t in out_carry + (y or []) if t.grad_fn is not None]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        var = getattr(node, "variable", None)
        if var is not None:
            if id(var) not in ours and all(var is not p for p in params):
                params.append(var)
            continue
        todo.extend(n for n, _ in node.next_functions)
    counter.drop({p.data_ptr() for p in params})  # known only now: the parameters are not activations
    beta = _measure_beta(step, carry_leaves, carry_spec, xin, x_spec, params, rng)
    return _Probe(params, sum(_nbytes(c) for c in carry_leaves), counter.total(out_carry), beta)


def _measure_beta(step, carry_leaves, carry_spec, x_leaves, x_spec, params, rng: _Rng, reps: int = 3) -> float:
    """Times step 1 as an advance (no graph) and as a recorded step's backward, medians of reps (the
    command line's calibration, exec/calibrate.hpp, in small): beta = backward / advance."""
    def advance():
        with torch.no_grad():
            _call(step, carry_leaves, carry_spec, x_leaves, x_spec)

    def backward():
        cin = [_grad_leaf(c) for c in carry_leaves]
        with torch.enable_grad():
            out, y, _ = _call(step, cin, carry_spec, x_leaves, x_spec)
            outs = [v for v in out + (y or []) if v.requires_grad]
            wrt = [c for c in cin if c.requires_grad] + [p for p in params if p.requires_grad]
            t0 = time.perf_counter()
            if outs and wrt:
                # (retain_graph: a graph the step reaches outside itself stays for the scan to report)
                torch.autograd.grad(outs, wrt, [torch.ones_like(v) for v in outs], allow_unused=True, retain_graph=True)
            return time.perf_counter() - t0

    def median(f):
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            r = f()
            times.append(r if r is not None else time.perf_counter() - t0)
        return sorted(times)[reps // 2]

    state = rng.get()
    try:
        fwd, bwd = median(advance), median(backward)
    finally:
        rng.set(state)
    return min(max(bwd / fwd, 0.1), 100.0) if fwd > 0 else 2.0


def _grad_leaf(t: torch.Tensor) -> torch.Tensor:
    """A detached copy that autograd follows (floating point only)."""
    return t.detach().requires_grad_(t.is_floating_point() or t.is_complex())


def _call(step, carry_leaves, carry_spec, x_leaves, x_spec):
    """step on flat leaves; returns (carry leaves, y leaves or None, y's structure)."""
    out = step(pytree.tree_unflatten(carry_leaves, carry_spec), pytree.tree_unflatten(x_leaves, x_spec))
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError("scan: step(carry, x_t) must return a pair (carry, y_t)")
    new_carry, y = out
    c_leaves, c_spec = _flatten(new_carry, "the carry step returns")
    if c_spec != carry_spec:
        raise ValueError(f"scan: step changed the carry's structure: it was {carry_spec}, step returned {c_spec}")
    if y is None:
        return c_leaves, None, None
    y_leaves, y_spec = _flatten(y, "step's output y_t")
    return c_leaves, y_leaves, y_spec


# --- the schedule with autograd --------------------------------------------------------------------

class _Entry:
    """A stored state at position t: a carry (hidden), or step t's graph (a record: its detached
    inputs, its outputs with their graph); rng: the generators as they stood after step t."""

    __slots__ = ("t", "carry", "rng", "bytes", "inputs", "xs", "y")

    def __init__(self, t, carry, rng, nbytes, inputs=None, xs=None, y=None):
        self.t, self.carry, self.rng, self.bytes = t, carry, rng, nbytes
        self.inputs, self.xs, self.y = inputs, xs, y


def _check_carry(sig, leaves, t: int) -> None:
    got = _signature(leaves)
    if got != sig:
        raise ValueError(f"scan: step {t} changed the carry's shapes or dtypes: from {[s[:2] for s in sig]} to "
                         f"{[s[:2] for s in got]}")


class _Outputs:
    """The y_t of the first sweep (of the loop, without gradients): stacked, summed, or dropped."""

    def __init__(self, mode: str):
        self.mode, self.ys, self.total, self.spec = mode, [], None, None

    def emit(self, t: int, y, y_spec) -> None:
        if self.mode == "none":
            return
        if y is None:
            raise ValueError(f"scan: step {t} returned y_t None with outputs={self.mode!r}; use outputs='none'")
        y = [v.detach() for v in y]
        if self.spec is None:
            self.spec = y_spec
        elif y_spec != self.spec or (self.mode == "stack" and [v.shape for v in y] != [v.shape for v in self.ys[0]]):
            raise ValueError(f"scan: step {t} returned outputs {[tuple(v.shape) for v in y]}, step 1 "
                             f"{[tuple(v.shape) for v in (self.ys[0] if self.ys else self.total)]}: outputs="
                             f"{self.mode!r} needs one structure and shape")
        if self.mode == "stack":
            self.ys.append(y)
        else:
            self.total = y if self.total is None else [a + b for a, b in zip(self.total, y)]

    def leaves(self) -> list:
        """The outputs' leaves (and forgets the steps')."""
        if self.mode == "stack":
            out = [torch.stack([y[i] for y in self.ys]) for i in range(len(self.ys[0]))]
        else:
            out = self.total or []
        self.ys, self.total = [], None
        return out


class _Run:
    """One scan's schedule: run up to its first backward step in the forward pass, the rest in the
    backward pass. Slot 0 is the caller's initial carry (not counted: it exists anyway)."""

    def __init__(self, step, ops: list, carry_spec, x_spec, x_leaves, x_needs, params, stats: ScanStats,
                 rng: _Rng, sig, outputs: str):
        self.step, self.ops, self.k = step, ops, 0  # ops: (kind, t, slot, count) tuples of ints
        self.carry_spec, self.x_spec, self.x_leaves, self.x_needs = carry_spec, x_spec, x_leaves, x_needs
        self.params, self.stats, self.rng, self.sig, self.outputs = params, stats, rng, sig, outputs
        self.skip = {p.data_ptr() for p in params if p.numel()} | {x.data_ptr() for x in x_leaves if x.numel()}
        self.slots: dict[int, _Entry] = {}
        self.held = 0
        self.out = _Outputs(outputs)  # the first sweep's y_t

    def x_at(self, t: int) -> list[torch.Tensor]:
        return [x[t - 1] for x in self.x_leaves]

    def needs_at(self, t: int) -> list[bool]:
        return self.x_needs

    # dL/dxs: one tensor per leaf of xs, filled step by step.
    def dx_init(self) -> list:
        return [None] * len(self.x_leaves)

    def dx_store(self, dxs: list, i: int, t: int, g: torch.Tensor) -> None:
        if dxs[i] is None:
            dxs[i] = torch.zeros_like(self.x_leaves[i])
        dxs[i][t - 1] = g

    def forward_sweep(self, carry0):
        """The first sweep (in the autograd Function's forward): up to the first backward op."""
        self.slots[0] = _Entry(0, carry0, self.rng.get(), 0)
        return self.run(carry0, True)

    def advance(self, carry, t: int, first_sweep: bool):
        with torch.no_grad():
            carry, y, y_spec = _call(self.step, carry, self.carry_spec, self.x_at(t), self.x_spec)
        if first_sweep:
            _check_carry(self.sig, carry, t)
            self.out.emit(t, y, y_spec)
        self.stats.forward_steps += 1
        return carry

    def record(self, carry, t: int, first_sweep: bool, slot: int):
        cin = [_grad_leaf(c) for c in carry]
        xin = [x.detach().requires_grad_(need) for x, need in zip(self.x_at(t), self.needs_at(t))]
        counter = _SavedBytes(self.skip | {x.data_ptr() for x in xin if x.numel()}) if self.stats.counted else None
        with torch.enable_grad(), (counter.hooks() if counter else contextlib.nullcontext()):
            out, y, y_spec = _call(self.step, cin, self.carry_spec, xin, self.x_spec)
        if first_sweep:
            _check_carry(self.sig, out, t)
            self.out.emit(t, y, y_spec)
        self.stats.forward_steps += 1
        nbytes = counter.total(out) if counter else self.stats.record_bytes
        self.push(slot, _Entry(t, out, self.rng.get(), nbytes, inputs=cin, xs=xin, y=y))
        return [c.detach() for c in out]

    def push(self, slot: int, entry: _Entry) -> None:
        self.slots[slot] = entry
        self.held += entry.bytes
        self.stats.peak_bytes = max(self.stats.peak_bytes, self.held)

    def pop(self, slot: int) -> _Entry:
        e = self.slots.pop(slot)
        self.held -= e.bytes
        return e

    def run(self, carry, forward_pass: bool, on_backward=None):
        """Runs the ops from self.k on: in the forward pass up to the first backward op."""
        while self.k < len(self.ops):
            kind, t, slot, count = self.ops[self.k]
            if kind == BACKWARD and forward_pass:
                return carry
            self.k += 1
            if kind == ADVANCE:
                for s in range(t, t + count):
                    carry = self.advance(carry, s, forward_pass)
            elif kind == ADVANCE_HIDDEN:
                carry = self.advance(carry, t, forward_pass)
                self.push(slot, _Entry(t, carry, self.rng.get(), sum(_nbytes(c) for c in carry)))
            elif kind == ADVANCE_RECORD:
                carry = self.record(carry, t, forward_pass, slot)
            elif kind == RESTORE:
                e = self.slots[slot]
                carry = [c.detach() for c in e.carry]
                self.rng.set(e.rng)  # as the plain loop's generators stood after step e.t
            elif kind == POP:
                self.pop(slot)
            elif kind == KEEP:  # online: the cursor's carry kept (the generators as they stand after step t)
                self.push(slot, _Entry(t, carry, self.rng.get(), sum(_nbytes(c) for c in carry)))
            elif kind == DROP:  # online: an earlier carry given up; those above move down one slot
                self.pop(slot)
                for s in range(slot + 1, max(self.slots) + 2):
                    if s in self.slots:
                        self.slots[s - 1] = self.slots.pop(s)
            else:  # BACKWARD
                on_backward(self.pop(slot))
                self.stats.backward_steps += 1
        return carry


class _ScanFunction(torch.autograd.Function):
    """(run, *carry0 leaves, *xs leaves, *params) -> (*final carry leaves, *output leaves)."""

    @staticmethod
    def forward(ctx, run: _Run, *inputs):
        ctx.set_materialize_grads(False)
        n_carry = len(run.sig)
        carry0 = [c.detach() for c in inputs[:n_carry]]
        final = run.forward_sweep(carry0)
        out_y = run.out.leaves()
        ctx.run = run
        ctx.mark_non_differentiable(*[v for v in [*final, *out_y] if not v.is_floating_point()])
        return (*final, *out_y)

    @staticmethod
    @single_backward("membptt.torch.scan")
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        run: _Run = ctx.run
        if run.ops is None:
            raise RuntimeError("scan: backward through a scan a second time: its stored states were used up by the "
                               "first backward (retain_graph=True does not keep them); run the scan again")
        n_carry = len(run.sig)
        dcarry = list(grads[:n_carry])
        dys = grads[n_carry:]
        params = run.params
        dparams: list = [None] * len(params)
        dxs: list = run.dx_init()
        grad_params = [p for p in params if p.requires_grad]  # (the same for every step)

        def on_backward(e: _Entry):
            outs, gouts = [], []
            for c, g in zip(e.carry, dcarry):
                if g is not None and c.requires_grad:
                    outs.append(c)
                    gouts.append(g)
            for v, g in zip(e.y or [], dys):
                if g is not None and v.requires_grad:
                    outs.append(v)
                    gouts.append(g[e.t - 1] if run.outputs == "stack" else g)
            wrt = [c for c in e.inputs if c.requires_grad] + [x for x in e.xs if x.requires_grad] + grad_params
            try:
                got = iter(torch.autograd.grad(outs, wrt, gouts, allow_unused=True) if outs else [None] * len(wrt))
            except RuntimeError as err:
                if "second time" not in str(err):
                    raise
                raise RuntimeError("scan: the step uses a tensor that requires grad and was computed before the "
                                   "scan (not a leaf), whose graph every step would backpropagate through: pass it "
                                   "in the carry or in xs") from None
            for i, c in enumerate(e.inputs):
                dcarry[i] = next(got) if c.requires_grad else None
            for i, x in enumerate(e.xs):
                if x.requires_grad:
                    g = next(got)
                    if g is not None:
                        run.dx_store(dxs, i, e.t, g)
            for i, p in enumerate(params):
                if p.requires_grad:
                    g = next(got)
                    if g is not None:
                        if dparams[i] is None:
                            dparams[i] = g
                        else:
                            dparams[i].add_(g)  # (g is autograd's fresh tensor, ours to add into)

        caller = run.rng.get()  # the backward pass leaves the generators where it found them
        try:
            run.run(None, False, on_backward)
        finally:
            run.rng.set(caller)
            run.ops, run.slots = None, {}  # used up
        return (None, *dcarry, *dxs, *dparams)


class _NoRng(_Rng):
    """preserve_rng_state=False: the generators are left alone."""

    def __init__(self):
        self.cuda = False

    def get(self):
        return None

    def set(self, state) -> None:
        pass


_plans: dict = {}


def _plan(T: int, budget: float, carry_bytes: int, record_bytes: int, policy: str, beta: float) -> tuple[Plan, list]:
    """The plan and its ops as (kind, t, slot, count) tuples of ints (read a step at a time: a
    numpy row costs microseconds), made once per (length, budget, sizes, policy): training repeats
    the same scan. alpha is
    rounded up to a whole number of carries (a record is counted no smaller than it is, so the budget
    still holds), which keeps the planner on its fast integer grid: at T = 1000, 5%, a fractional
    alpha took it about 3 s, an integral one 0.3 s."""
    alpha = float(math.ceil(record_bytes / carry_bytes - 1e-9))
    units = math.floor(budget / carry_bytes * 1e9) / 1e9
    key = (T, units, alpha, policy, round(beta, 2))
    p = _plans.get(key)
    if p is None:
        if len(_plans) >= 64:
            _plans.clear()
        plan = make_plan(T, units, alpha=alpha, policy=policy, beta=round(beta, 2))
        p = _plans[key] = (plan, plan.ops.tolist())
    return p


def _parse_memory(memory: str) -> tuple[float, bool]:
    """parse_budget in scan's words (a share is of plain autograd's memory over the scan)."""
    try:
        return parse_budget(memory)
    except ValueError as e:
        raise ValueError("scan: " + str(e).replace("plain BPTT's memory", "plain autograd's memory over the scan")) \
            from None


def _budget_bytes(memory, plain_bytes: int) -> float:
    if memory is None:
        return float(plain_bytes)
    if isinstance(memory, str):
        value, percent = _parse_memory(memory)
        return value / 100.0 * plain_bytes if percent else value
    if isinstance(memory, (int, float)) and not isinstance(memory, bool):
        if not math.isfinite(memory) or memory < 0:
            raise ValueError(f"scan: memory {memory!r} is not allowed: a number of bytes >= 0")
        return float(memory)
    raise TypeError(f"scan: memory must be bytes (a number or a string such as '64MiB') or a share such as '5%', "
                    f"got {type(memory).__name__}")


def scan(step: Callable, carry, xs, *, memory: Union[str, float, None] = None, policy: str = "auto",
         outputs: str = "stack", params: Optional[Sequence[torch.Tensor]] = None, beta: Optional[float] = None,
         preserve_rng_state: bool = True, stats: Optional[ScanStats] = None):
    """Runs ``carry, y_t = step(carry, x_t)`` over ``xs``'s first dimension; returns (final carry,
    outputs): the y_t stacked along a new first dimension (``outputs="stack"``), summed over the
    steps (``"sum"``: a per-step loss, so that nothing of size T is held), or None (``"none"``).

    memory: the most bytes the scan's stored states may hold between its forward and backward
    passes: bytes (``"64MiB"``, a number) or a share of plain autograd's memory over the scan
    (``"5%"``); None: plain autograd's (no recomputation). policy: ``"auto"`` or one of
    ``membptt.POLICIES``. params: the tensors the step uses that need gradients (default: found on
    a probe step). beta: a backward step's cost in forward steps, for the planner's predicted time
    (None: measured on the probe step; it never changes which plan is best).
    preserve_rng_state: replay the generators on recomputation (as torch.utils.checkpoint).
    stats: a ScanStats to fill (plan, sizes, forward steps, peak bytes held). Given, each recorded
    step's saved tensors are counted through saved_tensors_hooks as it runs; without it nothing is
    counted and a recorded step is taken as large as the probe step's (the hooks call into Python
    for every saved tensor: 0.15 ms a step for a layer-normalised LSTM at batch 32, hidden 256,
    whose step takes 0.23 ms; docs/benchmarks.md).

    xs may be an iterator (a generator, a stream) of x_t of unknown length: the online plan then
    decides step by step what to keep (docs/planner.md, "Online checkpointing"; reading one element
    ahead to know which is the last). memory must be bytes (None: plain autograd over the steps
    stacked); policy "auto" or "online"; stats.plan is None and stats.online_forward_steps the
    schedule's cost. Gradients are those of the same data as a tensor, bit for bit.

    Gradients are plain autograd's over the unrolled loop (for the parameters, the carry and xs).
    Errors: ValueError (a step that changes the carry's structure, shapes or dtypes; outputs of
    varying shape with "stack"; a budget below the least that works, named in bytes; an empty xs),
    TypeError (a step that does not return a pair of tensors or nested structures of tensors).
    """
    if outputs not in _OUTPUT_MODES:
        raise ValueError(f"scan: outputs={outputs!r} is not allowed: use one of {', '.join(_OUTPUT_MODES)}")
    if not isinstance(policy, str) or policy not in ("auto", *POLICIES):
        raise ValueError(f"scan: policy {policy!r} is not allowed: use 'auto' or one of {', '.join(POLICIES)}")
    if isinstance(memory, str):
        _parse_memory(memory)  # (a bad string refused before any step runs)
    if isinstance(xs, collections.abc.Iterator):  # a generator, iter(list), a stream: the length unknown
        if policy not in ("auto", "online"):
            raise ValueError(f"scan: policy {policy!r} is not allowed with xs an iterator (its length is unknown): "
                             "the online policy runs ('auto' or 'online')")
        return _scan_online(step, carry, xs, memory, outputs, params, preserve_rng_state, stats)
    carry_leaves, carry_spec = _flatten(carry, "carry")
    x_leaves, x_spec = _flatten(xs, "xs")
    if not carry_leaves:
        raise ValueError("scan: the carry has no tensors")
    if not x_leaves:
        raise ValueError("scan: xs has no tensors")
    lengths = {x.shape[0] if x.dim() else None for x in x_leaves}
    if len(lengths) != 1 or None in lengths:
        raise ValueError(f"scan: every tensor of xs must have the same first dimension (the steps): found "
                         f"{[tuple(v.shape) for v in x_leaves]}")
    T = lengths.pop()
    if T == 0:
        raise ValueError("scan: xs is empty (0 steps)")
    if not torch.is_grad_enabled():
        return _plain_loop(step, carry_leaves, carry_spec, x_leaves, x_spec, outputs)
    rng = _Rng(any(t.is_cuda for t in carry_leaves + x_leaves)) if preserve_rng_state else _NoRng()

    key = (_signature(carry_leaves), _signature([x[0] for x in x_leaves]), str(carry_spec), str(x_spec))
    try:
        cache = _probes.setdefault(step, {})
    except TypeError:  # a step that cannot be weakly referenced: probed on every call
        cache = {}
    probe = cache.get(key)
    if probe is None:
        probe = cache[key] = _probe(step, carry_leaves, carry_spec, [x[0] for x in x_leaves], x_spec, rng)
    use_params = list(params) if params is not None else list(probe.params)
    if not any(t.requires_grad for t in carry_leaves + x_leaves + use_params):
        return _plain_loop(step, carry_leaves, carry_spec, x_leaves, x_spec, outputs)

    carry_bytes = max(probe.carry_bytes, 1)
    record_bytes = max(probe.record_bytes, carry_bytes)
    plain_bytes = T * record_bytes  # plain autograd's (a share is of this)
    planned_plain = T * math.ceil(record_bytes / carry_bytes - 1e-9) * carry_bytes  # records as _plan counts them
    budget = _budget_bytes(memory, plain_bytes) if memory is not None else float(planned_plain)
    alpha = math.ceil(record_bytes / carry_bytes - 1e-9)
    least = least_budget(T, alpha, "msm" if policy == "auto" else policy) * carry_bytes
    if isinstance(memory, str) and memory.strip().endswith("%"):
        budget = max(budget, least)  # a share of a short scan below the least that works: that least
    if budget < least:
        raise ValueError(f"scan: memory budget {budget:.0f} bytes is below the least in which policy "
                         f"{'msm' if policy == 'auto' else policy} runs {T} steps: {least:.0f} bytes (a carry is "
                         f"{carry_bytes} bytes, a recorded step {record_bytes}; plain autograd holds {plain_bytes})")
    p, ops = _plan(T, min(budget, float(planned_plain)), carry_bytes, record_bytes, policy,
                   probe.beta if beta is None else beta)
    if p.forward_steps > 3 * T and memory is not None and policy not in ("quadratic", "chen-sqrt", "chen-recursive"):
        warnings.warn(f"scan: memory={memory!r} for {T} steps ({budget:.0f} bytes) leaves so little for the stored "
                      f"states that the plan runs {p.forward_steps / T:.3g} forward steps per step (plain autograd: 1); "
                      "a larger budget runs faster", stacklevel=2)
    st = stats if stats is not None else ScanStats()
    st.plan, st.carry_bytes, st.record_bytes, st.plain_bytes = p, carry_bytes, record_bytes, plain_bytes
    st.budget_bytes = budget if memory is not None else float(plain_bytes)  # (None: plain autograd's, exactly)
    st.forward_steps = st.backward_steps = st.peak_bytes = 0
    st.params, st.counted = use_params, stats is not None
    run = _Run(step, ops, carry_spec, x_spec, [x.detach() for x in x_leaves],
               [x.requires_grad and (x.is_floating_point() or x.is_complex()) for x in x_leaves], use_params, st, rng,
               _signature(carry_leaves), outputs)
    flat = _ScanFunction.apply(run, *carry_leaves, *x_leaves, *use_params)
    final = pytree.tree_unflatten(list(flat[:len(carry_leaves)]), carry_spec)
    if outputs == "none":
        return final, None
    return final, pytree.tree_unflatten(list(flat[len(carry_leaves):]), run.out.spec)


def _plain_loop(step, carry_leaves, carry_spec, x_leaves, x_spec, outputs):
    """Without gradients: the loop itself, with the same checks."""
    carry, out, sig = carry_leaves, _Outputs(outputs), _signature(carry_leaves)
    for t in range(1, x_leaves[0].shape[0] + 1):
        carry, y, y_spec = _call(step, carry, carry_spec, [x[t - 1] for x in x_leaves], x_spec)
        _check_carry(sig, carry, t)
        out.emit(t, y, y_spec)
    final = pytree.tree_unflatten(carry, carry_spec)
    if outputs == "none":
        return final, None
    return final, pytree.tree_unflatten(out.leaves(), out.spec)


# --- xs an iterator: the length known only at its end (online checkpointing) -----------------------

_END = object()


class _OnlineRun(_Run):
    """A scan over an iterator: the ops come from the online schedule (docs/planner.md, "Online
    checkpointing") as the steps arrive; x_t is each step's own leaves (the caller's tensors, kept
    for recomputation as a tensor xs is)."""

    def __init__(self, step, schedule: OnlineSchedule, carry_spec, x_spec, params, stats, rng, sig, outputs):
        super().__init__(step, [], carry_spec, x_spec, [], [], params, stats, rng, sig, outputs)
        self.schedule = schedule
        self.steps: list = []   # per step: its leaves, detached
        self.needs: list = []   # per step: which leaves need a gradient
        self.final = None       # the first sweep's carry, run before the autograd Function

    def x_at(self, t: int) -> list:
        return self.steps[t - 1]

    def needs_at(self, t: int) -> list:
        return self.needs[t - 1]

    def dx_init(self) -> list:
        return [None] * (len(self.steps) * len(self.steps[0]))

    def dx_store(self, dxs: list, i: int, t: int, g) -> None:
        dxs[(t - 1) * len(self.steps[0]) + i] = g

    def add_step(self, leaves) -> None:
        self.steps.append([x.detach() for x in leaves])
        self.needs.append([x.requires_grad and (x.is_floating_point() or x.is_complex()) for x in leaves])
        self.skip |= {x.data_ptr() for x in leaves if x.numel()}

    def run(self, carry, forward_pass: bool, on_backward=None):
        """The ops in hand, then (after the last step) the schedule's next ones, chunk by chunk."""
        while True:
            carry = super().run(carry, forward_pass, on_backward)
            if self.k < len(self.ops) or not self.schedule.finished:
                return carry  # stopped at the first backward op, or the step's ops are done
            self.ops, self.k = self.schedule.next_ops(), 0
            if not self.ops:
                return carry

    def forward_sweep(self, carry0):
        return self.final


class _Schedule(OnlineSchedule):
    """OnlineSchedule (the MSM backward) that remembers whether the sequence has ended."""

    finished = False

    def finish(self):
        self.finished = True
        return super().finish()


def _scan_online(step, carry, it, memory, outputs, params, preserve_rng_state, stats):
    carry_leaves, carry_spec = _flatten(carry, "carry")
    if not carry_leaves:
        raise ValueError("scan: the carry has no tensors")
    first = next(it, _END)
    if first is _END:
        raise ValueError("scan: xs is empty (0 steps)")
    x0, x_spec = _flatten(first, "each x_t of xs")
    if not x0:
        raise ValueError("scan: x_t has no tensors")
    if not torch.is_grad_enabled() or memory is None:
        # Without gradients: the loop itself. memory None: plain autograd, over the steps stacked.
        steps = [first] + list(it)
        leaves = [_flatten(x, "each x_t of xs")[0] for x in steps]
        for t, lv in enumerate(leaves, 1):
            if _signature(lv) != _signature(x0):
                raise ValueError(f"scan: x_{t} of the iterator has shapes or dtypes {[s[:2] for s in _signature(lv)]}, "
                                 f"x_1 {[s[:2] for s in _signature(x0)]}: every x_t must have the same")
        xs = pytree.tree_unflatten([torch.stack([lv[i] for lv in leaves]) for i in range(len(x0))], x_spec)
        return scan(step, carry, xs, memory=None, outputs=outputs, params=params,
                    preserve_rng_state=preserve_rng_state, stats=stats)
    if isinstance(memory, str) and _parse_memory(memory)[1]:
        raise ValueError(f"scan: memory {memory!r} is a share of plain autograd's memory over the scan, which an "
                         "iterator of unknown length does not have: give bytes (such as '64MiB') for an iterator")
    rng = _Rng(any(t.is_cuda for t in carry_leaves + x0)) if preserve_rng_state else _NoRng()
    key = (_signature(carry_leaves), _signature(x0), str(carry_spec), str(x_spec))
    try:
        cache = _probes.setdefault(step, {})
    except TypeError:
        cache = {}
    probe = cache.get(key)
    if probe is None:
        probe = cache[key] = _probe(step, carry_leaves, carry_spec, x0, x_spec, rng)
    use_params = list(params) if params is not None else list(probe.params)
    carry_bytes = max(probe.carry_bytes, 1)
    record_bytes = max(probe.record_bytes, carry_bytes)
    alpha = math.ceil(record_bytes / carry_bytes - 1e-9)  # a record counted no smaller than it is
    budget = _budget_bytes(memory, 0)
    least = alpha * carry_bytes
    if budget < least:
        raise ValueError(f"scan: memory budget {budget:.0f} bytes is below the least in which the online policy runs "
                         f"(xs an iterator): {least} bytes (a carry is {carry_bytes} bytes, a recorded step "
                         f"{record_bytes})")
    units = math.floor(budget / carry_bytes * 1e9) / 1e9
    schedule = _Schedule(units, float(alpha))
    st = stats if stats is not None else ScanStats()
    st.plan, st.carry_bytes, st.record_bytes, st.budget_bytes = None, carry_bytes, record_bytes, budget
    st.forward_steps = st.backward_steps = st.peak_bytes = 0
    st.params, st.online_slots, st.counted = use_params, schedule.slots, stats is not None
    run = _OnlineRun(step, schedule, carry_spec, x_spec, use_params, st, rng, _signature(carry_leaves), outputs)
    inputs = []  # every step's leaves: the autograd Function's inputs, for dL/dx_t
    cur = [c.detach() for c in carry_leaves]
    run.slots[0] = _Entry(0, cur, rng.get(), 0)
    x, t = first, 0
    # (not under no_grad: the iterator's next element may be a view the caller's graph must see)
    while True:
        t += 1
        leaves = x0 if t == 1 else _flatten(x, "each x_t of xs")[0]
        if t > 1 and _signature(leaves) != _signature(x0):
            raise ValueError(f"scan: x_{t} of the iterator has shapes or dtypes {[s[:2] for s in _signature(leaves)]}, "
                             f"x_1 {[s[:2] for s in _signature(x0)]}: every x_t must have the same")
        run.add_step(leaves)
        inputs.extend(leaves)
        nxt = next(it, _END)  # one element ahead: is x_t the last?
        if nxt is _END:
            T, st.online_forward_steps = schedule.finish()
            run.ops, run.k = schedule.next_ops(), 0
        else:
            run.ops, run.k = schedule.push(), 0
        cur = run.run(cur, True)
        if nxt is _END:
            break
        x = nxt
    run.final = cur
    st.plain_bytes = T * record_bytes
    flat = _ScanFunction.apply(run, *carry_leaves, *inputs, *use_params)
    final = pytree.tree_unflatten(list(flat[:len(carry_leaves)]), carry_spec)
    if outputs == "none":
        return final, None
    return final, pytree.tree_unflatten(list(flat[len(carry_leaves):]), run.out.spec)
