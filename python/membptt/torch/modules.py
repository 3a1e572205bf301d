"""``membptt.torch.LSTM``, ``GRU`` and ``RNN``: ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` whose training
keeps within a memory budget.

Same constructor arguments, parameter names, shapes and initialisation (U(-1/sqrt(H), 1/sqrt(H))),
so ``load_state_dict`` works both ways with ``torch.nn``'s modules; same ``forward(input, hx)``
and outputs, unbatched input included. Two arguments more:

- ``memory``: the most bytes the layer may hold between forward and backward for its activations
  (the plan's stored states and a fixed workspace): bytes (``"64MiB"``, ``"500KB"``, ``2**26``) or a
  share of plain BPTT's memory for the sequence at hand (``"5%"``; raised to the least that works
  on a sequence too short for it; bytes are a limit, and a sequence they cannot hold is a
  ValueError naming that least). ``None``: plain BPTT. May be changed between calls.
- ``policy``: ``"auto"`` (plain BPTT when the budget holds it, else BPTT-MSM, the paper's best),
  or one of ``membptt.POLICIES``.

The cells are the equations of torch.nn (include/membptt/cells/recurrent_net.hpp): LSTM (gates
i, f, g, o; with proj_size, h = W_hr (o * tanh(c))), GRU (r, z, n), RNN with tanh or relu, with
biases or without (bias=False), and dropout between layers in training. Dropout's masks come from
membptt's counter-based generator (include/membptt/cells/dropout.hpp), keyed by a seed drawn from
PyTorch's default generator at each training call (so torch.manual_seed makes runs repeatable),
the layer, the step and the element: a recomputed step draws the mask it drew the first time, and
every policy keeps plain BPTT's bits. They are not the masks torch.nn draws. Bidirectional stacks
run layer by layer, each direction of each layer a chain with its own plan; from two layers up they
also hold the inner layers' outputs, so the least budget grows with the length, and a share such as
"5%" is of the chains' plain memory with those outputs added whole
(include/membptt/exec/bidirectional.hpp). Tensors: float32 or float64, on the CPU.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Optional, Union

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from ..planner import POLICIES, Plan, parse_budget
from .function import PassStats, RnnFunction, RnnHandle, flat_weights

_GATES = {"lstm": 4, "gru": 3, "rnn": 1}
_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def _budget_text(memory) -> Optional[str]:
    """memory as the C API reads it (checked now, so that a bad one fails at construction)."""
    if memory is None:
        return None
    if isinstance(memory, bool) or not isinstance(memory, (str, numbers.Real)):
        raise TypeError(f"memory must be bytes (a number or a string such as '64MiB') or a share such as '5%', "
                        f"got {type(memory).__name__}")
    text = memory if isinstance(memory, str) else repr(float(memory))
    parse_budget(text)  # ValueError naming the text and the forms allowed
    return text


class _RecurrentBase(nn.Module):
    _cell = ""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None, *, nonlinearity: str = "tanh", memory: Union[str, float, None] = None,
                 policy: str = "auto", beta: float = 2.0):
        super().__init__()
        name = f"membptt.torch.{_NAMES[self._cell]}"
        for arg, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{arg} should be of type int, got: {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{arg} must be greater than zero, got {value}")
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an element "
                             "being zeroed")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        if nonlinearity != "tanh" and self._cell != "rnn":
            raise ValueError(f"{name}: nonlinearity='{nonlinearity}' is not allowed: only RNN takes a nonlinearity")
        if isinstance(proj_size, bool) or not isinstance(proj_size, numbers.Integral):
            raise TypeError(f"proj_size should be of type int, got: {type(proj_size).__name__}")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}")
        self.mode = _NAMES[self._cell]
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        if self._cell == "rnn":
            self.nonlinearity = nonlinearity
        self._dropout_seed: Optional[int] = None  # the seed of the last training call (None: no dropout)
        self.bidirectional, self.proj_size = bool(bidirectional), int(proj_size)
        self._handles: dict[torch.dtype, RnnHandle] = {}
        self.memory, self.policy, self.beta = memory, policy, beta
        factory = {"device": device, "dtype": dtype}
        gate_size = _GATES[self._cell] * hidden_size
        width = self._out_width  # h's: proj_size when > 0
        self._flat_weights_names = []
        for layer in range(num_layers):
            for sfx in ("", "_reverse")[:self._directions]:
                layer_input = input_size if layer == 0 else width * self._directions
                params = [(f"weight_ih_l{layer}{sfx}", (gate_size, layer_input)),
                          (f"weight_hh_l{layer}{sfx}", (gate_size, width))]
                if self.bias:
                    params += [(f"bias_ih_l{layer}{sfx}", (gate_size,)), (f"bias_hh_l{layer}{sfx}", (gate_size,))]
                if self.proj_size > 0:
                    params.append((f"weight_hr_l{layer}{sfx}", (self.proj_size, hidden_size)))
                for pname, shape in params:
                    setattr(self, pname, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(pname)
        self._last_stats: Optional[PassStats] = None
        self.reset_parameters()

    # -- torch.nn.RNNBase's conventions ---------------------------------------------------------
    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    @property
    def _flat_weights(self) -> list[torch.Tensor]:
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        w, n = self._flat_weights, (4 if self.bias else 2) + (1 if self.proj_size > 0 else 0)
        return [w[n * k:n * k + n] for k in range(self.num_layers * self._directions)]

    @property
    def _out_width(self) -> int:
        """The width of h, the output and h_n: proj_size when > 0, else hidden_size."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    @property
    def _directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _output_size(self) -> int:
        """The width of the output: both directions' h side by side when bidirectional."""
        return self._directions * self._out_width

    def flatten_parameters(self) -> None:
        """Nothing to do (torch.nn's modules compact weights for cuDNN here); kept for drop-in use."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.memory is not None:
            s += f", memory={self.memory!r}"
        if self.policy != "auto":
            s += f", policy={self.policy!r}"
        return s

    def __setstate__(self, state):
        super().__setstate__(state)
        self._handles = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"] = {}  # C handles are rebuilt on first use (pickling, deepcopy, DDP)
        return state

    # -- membptt ----------------------------------------------------------------------------------
    # memory, policy and beta may be changed between calls: the next call plans with the new value.
    @property
    def memory(self) -> Optional[str]:
        """The budget as the C API reads it ("64MiB", "5%", bytes as a number's text), or None."""
        return self._memory

    @memory.setter
    def memory(self, value) -> None:
        self._memory = _budget_text(value)
        self._handles = {}

    @property
    def policy(self) -> str:
        return self._policy

    @policy.setter
    def policy(self, value: str) -> None:
        if not isinstance(value, str) or value not in ("auto", *POLICIES):
            raise ValueError(f"policy {value!r} is not allowed: use 'auto' or one of {', '.join(POLICIES)}")
        self._policy = value
        self._handles = {}

    @property
    def beta(self) -> float:
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1e6:
            raise ValueError(f"beta {value!r} is not allowed: the cost of a backward step in forward steps, 0 to 1e+06")
        self._beta = float(value)
        self._handles = {}

    def __prepare_scriptable__(self):
        raise RuntimeError(f"membptt.torch.{self.mode} cannot be compiled by TorchScript: its forward calls membptt's "
                           "library through ctypes; script the modules around it, or use torch.nn."
                           f"{self.mode} for a scripted model")

    @property
    def last_stats(self) -> Optional[PassStats]:
        """The executor's counts for the last backward pass (None before one): forward steps (the
        plan's cost), the bytes held between forward and backward, the budget."""
        return self._last_stats

    def plan(self, length: int, batch: int = 1) -> tuple[Plan, float, float]:
        """(plan, budget in bytes, plain BPTT's memory in bytes) for sequences of ``length`` steps and
        a batch of ``batch``, at the module's dtype: what training such a batch runs. Bidirectional:
        the plan of layer 0's chains (each layer and direction has its own; ``last_stats`` counts
        them all), the budget and plain BPTT's memory of the whole stack."""
        return self._handle(self._flat_weights[0].dtype).plan(int(length), int(batch))

    def _handle(self, dtype: torch.dtype) -> RnnHandle:
        h = self._handles.get(dtype)
        if h is not None and h.dropout != self.dropout:  # changed since: a handle with the new p
            h = None
        if h is None:
            h = RnnHandle(self._cell, self.input_size, self.hidden_size, self.num_layers, dtype, self.memory,
                          self.policy, self.beta, self.bias, getattr(self, "nonlinearity", "tanh"), self.proj_size,
                          self.dropout, self.bidirectional)
            self._handles[dtype] = h
        return h

    def _warn_if_share_raised(self, handle: RnnHandle, dtype: torch.dtype, T: int, B: int) -> None:
        """Once per budget, length, batch and dtype: a share that leaves so little for the stored
        states (a short sequence, where the fixed workspace outweighs a few percent of little, so
        the share is raised to the least that works; or the held sequences of a bidirectional
        stack) that the plan recomputes more than twice per step is worth a warning."""
        memory = self.memory
        if memory is None or not memory.strip().endswith("%"):
            return
        seen = self.__dict__.setdefault("_share_checked", set())
        key = (memory, self.policy, dtype, T, B)
        if key in seen:
            return
        seen.add(key)
        plan, budget, _ = handle.plan(T, B)
        per_step = plan.forward_steps / T
        if per_step > 3:
            warnings.warn(f"membptt.torch.{self.mode}: memory={memory!r} for {T} steps of a batch of {B} ({budget:.0f} "
                          f"bytes) leaves so little for the stored states that the plan runs {per_step:.3g} forward "
                          "steps per step (plain BPTT: 1); a larger share or a budget in bytes runs faster",
                          stacklevel=4)

    def _carry_count(self, batch: int) -> int:
        return self._handle(self._flat_weights[0].dtype).carry_count(batch)

    # -- forward ----------------------------------------------------------------------------------
    def _check_input(self, input: torch.Tensor, weights: list[torch.Tensor]) -> None:
        name = self.mode
        if torch.jit.is_tracing() or torch.jit.is_scripting():
            raise RuntimeError(f"membptt.torch.{name} cannot be traced or scripted by TorchScript: its forward calls "
                               f"membptt's library through ctypes; use torch.nn.{name} in a traced model")
        if isinstance(input, PackedSequence):
            raise ValueError(f"membptt.torch.{name}: PackedSequence input is not supported yet: pass a padded "
                             "tensor (torch.nn.utils.rnn.pad_packed_sequence) or sequences of one length")
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D instead")
        wdtype = weights[0].dtype
        if wdtype not in (torch.float32, torch.float64):
            raise ValueError(f"membptt.torch.{name}: parameters of dtype {wdtype} are not supported: use float32 or "
                             "float64 (module.float() or module.double())")
        if input.dtype != wdtype:
            raise ValueError(f"input must have the type {wdtype}, got type {input.dtype}")
        devices = {w.device for w in weights}
        if len(devices) > 1 or input.device not in devices:
            raise RuntimeError(f"Expected all tensors to be on the same device, but found input on {input.device} "
                               f"and parameters on {', '.join(sorted(map(str, devices)))}")
        if input.device.type != "cpu":
            raise RuntimeError(f"membptt.torch.{name}: tensors on {input.device} are not supported by this build: "
                               "the Python package runs the CPU cells (move the module and input to the CPU)")
        if input.size(-1) != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                               f"got {input.size(-1)}")
        if input.size(0 if input.dim() == 2 or not self.batch_first else 1) == 0:
            raise ValueError(f"membptt.torch.{name}: the input has no time steps (sequence length 0)")

    def _check_hidden(self, h: torch.Tensor, expected: tuple[int, ...], what: str, input: torch.Tensor) -> None:
        if not isinstance(h, torch.Tensor):
            raise TypeError(f"{what} must be a Tensor, got {type(h).__name__}")
        if tuple(h.shape) != expected:
            raise RuntimeError(f"Expected {what} size {expected}, got {list(h.shape)}")
        if h.dtype != input.dtype:
            raise ValueError(f"{what} must have the type {input.dtype}, got type {h.dtype}")
        if h.device != input.device:
            raise RuntimeError(f"Expected all tensors to be on the same device, but found input on {input.device} "
                               f"and {what} on {h.device}")

    def _carry0(self, hx, input: torch.Tensor, batch: int, batched: bool) -> Optional[torch.Tensor]:
        """hx as the C API's carry (h of every layer, then c), flat; None: zeros."""
        if hx is None:
            return None
        LD = self.num_layers * self._directions
        lead = (LD, batch) if batched else (LD,)
        shape = (*lead, self._out_width)
        if self._cell == "lstm":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("LSTM: hx must be a tuple (h_0, c_0) of two tensors")
            self._check_hidden(hx[0], shape, "hidden[0]", input)
            self._check_hidden(hx[1], (*lead, self.hidden_size), "hidden[1]", input)
            return torch.cat([hx[0].reshape(-1), hx[1].reshape(-1)])
        self._check_hidden(hx, shape, "hidden", input)
        return hx.reshape(-1)

    def _empty_outputs(self, x: torch.Tensor, T: int):
        L, H, R = self.num_layers * self._directions, self.hidden_size, self._out_width
        Y = self._output_size
        y = x.new_zeros((0, T, Y) if self.batch_first else (T, 0, Y))
        h = x.new_zeros(L, 0, R)
        return (y, (h, x.new_zeros(L, 0, H))) if self._cell == "lstm" else (y, h)

    def forward(self, input: torch.Tensor, hx=None):
        weights = self._flat_weights
        self._check_input(input, weights)
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        T, B = x.shape[0], x.shape[1]
        carry0 = self._carry0(hx, input, B, batched)
        if B == 0:  # an empty batch, as torch.nn's modules take it: empty outputs
            return self._empty_outputs(x, T)
        handle = self._handle(input.dtype)
        C = self._carry_count(B)
        # Dropout between layers while training: a fresh seed from PyTorch's default generator.
        seed = None
        if self.training and self.dropout > 0 and self.num_layers > 1:
            seed = int(torch.randint(0, 2 ** 63 - 1, (1,), dtype=torch.int64).item())
        self._dropout_seed = seed
        handle.set_dropout(seed)
        train = torch.is_grad_enabled() and (x.requires_grad or (carry0 is not None and carry0.requires_grad)
                                             or any(w.requires_grad for w in weights))
        if train:
            self._warn_if_share_raised(handle, input.dtype, T, B)
            y, carry_n = RnnFunction.apply(handle, self, self._output_size, C, x, carry0, *weights)
        else:
            c0 = None if carry0 is None else carry0.detach().contiguous()
            y, carry_n = handle.infer(x.detach().contiguous(), c0, flat_weights(tuple(weights)), self._output_size, C)
        R, LD = self._out_width, self.num_layers * self._directions
        LBR = LD * B * R
        lead = (LD, B) if batched else (LD,)
        h_n = carry_n[:LBR].view(*lead, R)
        if batched and self.batch_first:
            y = y.transpose(0, 1)
        elif not batched:
            y = y.squeeze(1)
        if self._cell == "lstm":
            return y, (h_n, carry_n[LBR:].view(*lead, self.hidden_size))
        return y, h_n


class LSTM(_RecurrentBase):
    """``torch.nn.LSTM`` (input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None) plus ``memory=`` and
    ``policy=`` (see the module's docstring). Input [T, B, input_size] ([B, T, ...] with
    batch_first; [T, input_size] unbatched); hx = (h_0, c_0), h_0 [D*num_layers, B, R] and c_0
    [D*num_layers, B, hidden_size] (R = proj_size if > 0, else hidden_size; D = 2 if bidirectional,
    else 1); returns output [T, B, D*R] and (h_n, c_n)."""

    _cell = "lstm"


class GRU(_RecurrentBase):
    """``torch.nn.GRU`` (input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, device=None, dtype=None) plus ``memory=`` and ``policy=``.
    Returns output [T, B, D*hidden_size] and h_n [D*num_layers, B, hidden_size] (D = 2 if
    bidirectional, else 1)."""

    _cell = "gru"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None, **membptt_options):
        _refuse_proj_size(membptt_options)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0, device,
                         dtype, **membptt_options)


def _refuse_proj_size(options: dict) -> None:
    # torch.nn.GRU/RNN refuse proj_size with this ValueError; without it Python would say "multiple values".
    if "proj_size" in options:
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")


class RNN(_RecurrentBase):
    """``torch.nn.RNN`` (input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None) plus ``memory=``
    and ``policy=``. Returns output [T, B, D*hidden_size] and h_n [D*num_layers, B, hidden_size]
    (D = 2 if bidirectional, else 1)."""

    _cell = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, **membptt_options):
        _refuse_proj_size(membptt_options)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0, device,
                         dtype, nonlinearity=nonlinearity, **membptt_options)
