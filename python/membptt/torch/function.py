"""The autograd Function around the C API's membptt_rnn (include/membptt/membptt.h).

``forward`` runs the plan up to its first backward step: each step once, the outputs written, the
plan's stored states kept in a membptt_pass; ``backward`` runs the rest of the plan with the output
gradients (the executor's module form, include/membptt/exec/basic_executor.hpp). Tensors cross as
pointers to contiguous, time-major CPU memory. ctypes releases the GIL during each call; the BLAS
runs at PyTorch's thread count during it (set_num_threads).
"""
from __future__ import annotations

import contextlib
import operator
import ctypes
import functools
from dataclasses import dataclass
from typing import Optional

import torch

from .. import _lib
from ..planner import Plan, plan_of_handle

_DTYPES = {torch.float32: _lib.FLOAT32, torch.float64: _lib.FLOAT64}


def _ptr(t: Optional[torch.Tensor]):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


_threads: Optional[int] = None  # set_num_threads's count; None: follow torch.get_num_threads()


def set_num_threads(n: Optional[int]) -> None:
    """Threads the cells' matrix products run on during membptt's calls (membptt's own threads,
    over libxsmm's kernels or single-threaded OpenBLAS). By default membptt follows
    ``torch.get_num_threads()`` (PyTorch's intra-op threads, idle while a membptt call runs, so the
    two never compete); n sets a count of its own (None: follow PyTorch again). PyTorch's own matrix
    products, which may share the same OpenBLAS, keep OpenBLAS's setting. Results do not depend on
    the count, bit for bit. docs/benchmarks.md has the measurements."""
    global _threads
    if n is not None:
        try:  # any integer type (numpy's too), not bool or float
            count = None if isinstance(n, bool) else operator.index(n)
        except TypeError:
            count = None
        if count is None or not 1 <= count <= 4096:
            raise ValueError(f"number of threads {n!r} ({type(n).__name__}) is not allowed: allowed is an integer "
                             "from 1 to 4096, or None")
        n = count
    _threads = n


@contextlib.contextmanager
def _blas_threads():
    """membptt's products at its thread count for one call, then as they were."""
    L = _lib.lib()
    want, before = _threads or torch.get_num_threads(), L.membptt_num_threads()
    if want != before:
        _lib.check(L.membptt_set_num_threads(want))
    try:
        yield
    finally:
        if want != before:
            L.membptt_set_num_threads(before)


@dataclass(frozen=True)
class PassStats:
    """What one training pass ran and held (the executor's counts, membptt_pass_stats)."""

    forward_steps: int          # cell steps run forward, forward and backward together
    backward_steps: int
    planned_forward_steps: int  # the plan's cost: equals forward_steps
    peak_arena_bytes: int       # most bytes the plan's stored states took
    arena_bytes: int            # the arena allocated for them (the plan's peak)
    workspace_bytes: int        # fixed bytes besides (cursor, carry gradient, scratch)
    budget_bytes: float         # the budget the plan was made for (plain BPTT's memory when none)

    @property
    def held_bytes(self) -> int:
        """What the module held between forward and backward: arena and workspace."""
        return self.arena_bytes + self.workspace_bytes


class RnnHandle:
    """One membptt_rnn: a cell stack of one dtype with its budget, plans and reusable executor."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int, dtype: torch.dtype,
                 memory: Optional[str], policy: str, beta: float, bias: bool = True, nonlinearity: str = "tanh",
                 proj_size: int = 0, dropout: float = 0.0, bidirectional: bool = False):
        L = _lib.lib()
        self.ptr = None
        ptr = ctypes.c_void_p()
        options = _lib.RnnOptions()
        L.membptt_rnn_options_default(ctypes.byref(options))
        options.bias = 1 if bias else 0
        options.nonlinearity = nonlinearity.encode()
        options.proj_size = proj_size
        options.dropout = dropout
        options.bidirectional = 1 if bidirectional else 0
        self.dropout = dropout
        self.seed: Optional[int] = None
        _lib.check(L.membptt_rnn_create_ex(cell.encode(), input_size, hidden_size, num_layers, ctypes.byref(options),
                                           _DTYPES[dtype], None if memory is None else memory.encode(),
                                           policy.encode(), beta, ctypes.byref(ptr)))
        self.ptr = ptr
        self._free = L.membptt_rnn_free
        self.weight_count = L.membptt_rnn_weight_count(ptr)

    def __del__(self):
        if self.ptr:
            self._free(self.ptr)
            self.ptr = None

    def set_dropout(self, seed: Optional[int]) -> None:
        """Dropout between layers for the forward calls that follow: masks of ``seed``, or off (None)."""
        _lib.check(_lib.lib().membptt_rnn_set_dropout(self.ptr, 0 if seed is None else 1, 0 if seed is None else seed))
        self.seed = seed

    def carry_count(self, batch: int) -> int:
        """Elements of the carry for a batch: h of every layer, then (LSTM) c."""
        return _lib.lib().membptt_rnn_carry_count(self.ptr, batch)

    def plan(self, length: int, batch: int) -> tuple[Plan, float, float]:
        out, budget, plain = ctypes.c_void_p(), ctypes.c_double(0), ctypes.c_double(0)
        _lib.check(_lib.lib().membptt_rnn_plan(self.ptr, length, batch, ctypes.byref(out), ctypes.byref(budget),
                                               ctypes.byref(plain)))
        return plan_of_handle(out), budget.value, plain.value

    def infer(self, x: torch.Tensor, carry0: Optional[torch.Tensor], weights: torch.Tensor, output_size: int,
              carry_count: int) -> tuple[torch.Tensor, torch.Tensor]:
        T, B = x.shape[0], x.shape[1]
        y = torch.empty(T, B, output_size, dtype=x.dtype)
        carry_n = torch.empty(carry_count, dtype=x.dtype)
        with _blas_threads():
            _lib.check(_lib.lib().membptt_rnn_forward(self.ptr, T, B, _ptr(weights), _ptr(x), _ptr(carry0), _ptr(y),
                                                      _ptr(carry_n), None))
        return y, carry_n


class _Pass:
    """Owns one membptt_pass (freed after its backward, or with the graph that holds it)."""

    def __init__(self, ptr: ctypes.c_void_p, owner: RnnHandle):
        self.ptr, self.owner = ptr, owner  # the handle outlives its passes (the library does too)
        self._free = _lib.lib().membptt_pass_free

    def stats(self) -> PassStats:
        s = _lib.PassStats()
        _lib.check(_lib.lib().membptt_pass_stats_get(self.ptr, ctypes.byref(s)))
        return PassStats(*(getattr(s, f) for f, _ in _lib.PassStats._fields_))

    def free(self):
        if self.ptr:
            self._free(self.ptr)
            self.ptr = None

    __del__ = free


def _start_pass(handle: RnnHandle, w: torch.Tensor, xc: torch.Tensor, c0: Optional[torch.Tensor], y: torch.Tensor,
                carry_n: torch.Tensor) -> _Pass:
    """The forward part of a training pass: writes y and carry_n, returns the pass to backpropagate."""
    ptr = ctypes.c_void_p()
    with _blas_threads():
        _lib.check(_lib.lib().membptt_rnn_forward(handle.ptr, xc.shape[0], xc.shape[1], _ptr(w), _ptr(xc), _ptr(c0),
                                                  _ptr(y), _ptr(carry_n), ctypes.byref(ptr)))
    return _Pass(ptr, handle)


def flat_weights(weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The weights back to back in state-dict order (the C API's layout), contiguous."""
    return torch.cat([w.detach().reshape(-1) for w in weights])


def single_backward(what: str):
    """Refuses double backward (create_graph=True) in one line: once_differentiable would let it
    pass silently, and a gradient penalty would miss these parameters' second-order terms."""
    def wrap(backward):
        @functools.wraps(backward)
        def checked(ctx, *grads):
            if torch.is_grad_enabled():  # the engine runs backward in grad mode only for create_graph=True
                raise RuntimeError(f"{what}: double backward (create_graph=True) is not supported: its backward "
                                   "runs membptt's executor, which builds no graph; use torch.nn's module or "
                                   "plain autograd for higher-order gradients")
            return backward(ctx, *grads)
        return checked
    return wrap


class RnnFunction(torch.autograd.Function):
    """(x [T,B,I], carry0 [C] or None, *weights) -> (output [T,B,Y], carry_n [C]); C: the carry, Y: the
    output's width (D*R)."""

    @staticmethod
    def forward(ctx, handle: RnnHandle, module, output_size: int, carry_count: int, x: torch.Tensor,
                carry0: Optional[torch.Tensor], *weights: torch.Tensor):
        ctx.set_materialize_grads(False)
        T, B = x.shape[0], x.shape[1]
        xc = x.detach().contiguous()
        c0 = None if carry0 is None else carry0.detach().contiguous()
        y = torch.empty(T, B, output_size, dtype=x.dtype)
        carry_n = torch.empty(carry_count, dtype=x.dtype)
        ctx.pass_ = _start_pass(handle, flat_weights(weights), xc, c0, y, carry_n)
        ctx.seed = handle.seed  # a second backward's forward sweep must draw the same masks
        ctx.module = module
        # The pass reads x and carry0 again in the backward: keep the very buffers it points at
        # (saved tensors would be checked for in-place changes, but may be copies in some versions).
        ctx.buffers = (xc, c0)
        ctx.save_for_backward(x, carry0, *weights)  # autograd's check that none changes in place
        ctx.shape, ctx.carry_count = (T, B, x.shape[2]), carry_count
        return y, carry_n

    @staticmethod
    @single_backward("membptt.torch's recurrent modules")
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy: Optional[torch.Tensor], dcarry_n: Optional[torch.Tensor]):
        saved = ctx.saved_tensors
        x, carry0, weights = saved[0], saved[1], saved[2:]
        need = ctx.needs_input_grad
        T, B, I = ctx.shape
        w = flat_weights(weights)
        if ctx.pass_.ptr is None:
            # A second backward through the graph (retain_graph=True, gradcheck): the first used up
            # the stored states, so the forward sweep runs again (its outputs are the same bits).
            H = ctx.module._output_size
            ctx.pass_.owner.set_dropout(ctx.seed)
            ctx.pass_ = _start_pass(ctx.pass_.owner, w, *ctx.buffers, torch.empty(T, B, H, dtype=x.dtype),
                                    torch.empty(ctx.carry_count, dtype=x.dtype))
        dx = torch.empty(T, B, I, dtype=x.dtype) if need[4] else None
        dc0 = torch.empty_like(ctx.buffers[1]) if carry0 is not None and need[5] else None
        want_w = any(need[6:])
        dw = torch.empty(ctx.pass_.owner.weight_count, dtype=x.dtype) if want_w else None
        dy = None if dy is None else dy.contiguous()
        dcarry_n = None if dcarry_n is None else dcarry_n.contiguous()
        with _blas_threads():
            _lib.check(_lib.lib().membptt_pass_backward(ctx.pass_.ptr, _ptr(w), _ptr(dy),
                                                        _ptr(dcarry_n), _ptr(dx), _ptr(dc0), _ptr(dw)))
        ctx.module._last_stats = ctx.pass_.stats()
        ctx.pass_.free()  # the executor goes back to the handle for the next pass
        grads = [None] * len(weights)
        if want_w:
            offset = 0
            for i, w in enumerate(weights):
                n = w.numel()
                if need[6 + i]:
                    grads[i] = dw[offset:offset + n].view_as(w)
                offset += n
        return (None, None, None, None, dx, dc0, *grads)
