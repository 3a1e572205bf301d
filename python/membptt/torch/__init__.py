"""membptt's recurrent layers as PyTorch modules: drop-in for ``torch.nn.LSTM``, ``GRU`` and ``RNN``
that train inside a memory budget (Gruslys et al. 2016, BPTT-MSM).

    import membptt.torch as mt
    lstm = mt.LSTM(64, 256, num_layers=2, memory="5%")   # or memory="64MiB"; None: plain BPTT
    output, (h_n, c_n) = lstm(x)                           # x: [T, B, 64], as torch.nn.LSTM

Parameters, initialisation, state dicts, inputs and outputs are PyTorch's; gradients are those of
plain BPTT, bit for bit, whatever the budget. ``scan(step, carry, xs, memory="5%")`` gives the same
to any recurrent step written in PyTorch. Layout: ``modules`` (LSTM, GRU, RNN), ``function`` (their
autograd Function over the C API's membptt_rnn), ``scan`` (the schedule run with autograd).
"""
from .function import PassStats, set_num_threads
from .modules import GRU, LSTM, RNN
from .scan import ScanStats, scan

__all__ = ["LSTM", "GRU", "RNN", "scan", "PassStats", "ScanStats", "set_num_threads"]
