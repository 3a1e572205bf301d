"""membptt.torch.LSTM / GRU / RNN against torch.nn's modules on the same weights: outputs, loss and
every gradient; every policy bit for bit against plain BPTT; gradcheck; the budget; errors."""
import copy
import ctypes
import warnings

import pytest

torch = pytest.importorskip("torch", reason="membptt.torch needs PyTorch (Debian: python3-torch)")
nn = torch.nn

import membptt  # noqa: E402
import membptt.torch as mt  # noqa: E402
from membptt import _lib  # noqa: E402
from membptt.torch.function import RnnFunction  # noqa: E402

PAIRS = {"lstm": (mt.LSTM, nn.LSTM), "gru": (mt.GRU, nn.GRU), "rnn": (mt.RNN, nn.RNN)}
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-5, atol=1e-5)}


def pair(cell, *args, memory=None, policy="auto", **kw):
    ours = PAIRS[cell][0](*args, memory=memory, policy=policy, **kw)
    ref = PAIRS[cell][1](*args, **kw)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def hidden(cell, shape, dtype, gen):
    make = lambda: torch.randn(*shape, dtype=dtype, generator=gen).requires_grad_()  # noqa: E731
    return (make(), make()) if cell == "lstm" else make()


def leaves(h):
    return list(h) if isinstance(h, tuple) else [h]


def run(module, x, hx):
    """Forward and backward of a loss touching the output and the final state; returns
    (output, final state list, loss, gradients of input, hx, parameters)."""
    y, h = module(x, hx)
    hn = leaves(h)
    loss = (y * torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)).pow(2).sum() + sum((t * 0.5).sum() for t in hn)
    loss.backward()
    grads = [x.grad] + [t.grad for t in leaves(hx)] if hx is not None else [x.grad]
    return y, hn, loss, grads + [p.grad for p in module.parameters()]


@pytest.mark.parametrize("cell", PAIRS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layers,batch_first,batched,with_hx", [(1, False, True, False), (2, True, True, True),
                                                               (3, False, False, True), (2, False, True, True)])
def test_matches_torch_nn(cell, dtype, layers, batch_first, batched, with_hx):
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(3)
    T, B, I, H = 37, 3, 5, 6
    ours, ref = pair(cell, I, H, layers, batch_first=batch_first, dtype=dtype, memory="20%")
    shape = ((B, T, I) if batch_first else (T, B, I)) if batched else (T, I)
    x = torch.randn(*shape, dtype=dtype, generator=gen)
    hx = hidden(cell, (layers, B, H) if batched else (layers, H), dtype, gen) if with_hx else None
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    h1 = None if hx is None else (tuple(t.detach().clone().requires_grad_() for t in hx) if cell == "lstm"
                                  else hx.detach().clone().requires_grad_())
    h2 = None if hx is None else (tuple(t.detach().clone().requires_grad_() for t in hx) if cell == "lstm"
                                  else hx.detach().clone().requires_grad_())
    y1, hn1, loss1, g1 = run(ours, x1, h1)
    y2, hn2, loss2, g2 = run(ref, x2, h2)
    assert y1.shape == y2.shape and [t.shape for t in hn1] == [t.shape for t in hn2]
    torch.testing.assert_close(y1, y2, **TOL[dtype])
    for a, b in zip(hn1, hn2):
        torch.testing.assert_close(a, b, **TOL[dtype])
    torch.testing.assert_close(loss1, loss2, **TOL[dtype])
    assert len(g1) == len(g2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, **TOL[dtype])
    stats = ours.last_stats
    assert stats.forward_steps == stats.planned_forward_steps > T  # 20%: states were recomputed
    assert stats.backward_steps == T


@pytest.mark.parametrize("cell,hidden_size", [("lstm", 512), ("rnn", 1024)])
def test_wide_layers_match_torch_nn(cell, hidden_size):
    """Wide layers (W_hh of 2^20 elements) against torch.nn, twice with an optimizer step between:
    nothing derived from the first call's weights may serve the second."""
    gen = torch.Generator().manual_seed(11)
    T, B, I = 6, 2, 3
    ours, ref = pair(cell, I, hidden_size, 2, dtype=torch.float64, memory="30%")
    opt1, opt2 = torch.optim.SGD(ours.parameters(), lr=0.5), torch.optim.SGD(ref.parameters(), lr=0.5)
    x = torch.randn(T, B, I, dtype=torch.float64, generator=gen)
    for _ in range(2):
        opt1.zero_grad(), opt2.zero_grad()
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        *_, g1 = run(ours, x1, None)
        *_, g2 = run(ref, x2, None)
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, **TOL[torch.float64])
        opt1.step(), opt2.step()
    assert ours.last_stats.forward_steps > T  # 30%: states were recomputed


def memory_for(policy):
    # Fixed-memory policies take what they need; the others get a share that forces recomputation.
    return None if policy in ("full", "chen-sqrt", "chen-recursive") else "12%"


# PyTorch's bias=False (every cell) and nonlinearity='relu' (RNN), against torch.nn on the same weights.
OPTION_CASES = [("lstm", dict(bias=False)), ("gru", dict(bias=False)), ("rnn", dict(bias=False)),
                ("rnn", dict(nonlinearity="relu")), ("rnn", dict(nonlinearity="relu", bias=False)),
                ("lstm", dict(proj_size=3)), ("lstm", dict(proj_size=2, bias=False)),
                ("lstm", dict(bidirectional=True)), ("gru", dict(bidirectional=True, bias=False)),
                ("rnn", dict(bidirectional=True, nonlinearity="relu")), ("lstm", dict(bidirectional=True, proj_size=3))]


def directions(kw):
    return 2 if kw.get("bidirectional") else 1


def plain_steps(kw, layers, T):
    """Forward steps of plain BPTT: a step runs the whole stack; bidirectional, each layer's
    direction is a chain of its own."""
    return 2 * layers * T if kw.get("bidirectional") else T


def option_id(case):
    cell, kw = case
    return cell + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("case", OPTION_CASES, ids=option_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layers,batch_first", [(1, False), (3, True)])
def test_options_match_torch_nn(case, dtype, layers, batch_first):
    cell, kw = case
    gen = torch.Generator().manual_seed(17)
    torch.manual_seed(4)
    T, B, I, H = 29, 3, 5, 6
    ours, ref = pair(cell, I, H, layers, batch_first=batch_first, dtype=dtype, memory="20%", **kw)
    names = [n for n, _ in ours.named_parameters()]
    assert names == [n for n, _ in ref.named_parameters()]
    assert any("bias" in n for n in names) == kw.get("bias", True)
    x = torch.randn(*((B, T, I) if batch_first else (T, B, I)), dtype=dtype, generator=gen)
    D = directions(kw)
    hx = hidden(cell, (D * layers, B, H), dtype, gen)
    if kw.get("proj_size"):  # h_0 [D*L, B, P], c_0 [D*L, B, H]
        hx = (torch.randn(D * layers, B, kw["proj_size"], dtype=dtype, generator=gen), hx[1])
    copies = lambda: (tuple(t.detach().clone().requires_grad_() for t in hx) if cell == "lstm"  # noqa: E731
                      else hx.detach().clone().requires_grad_())
    y1, hn1, loss1, g1 = run(ours, x.clone().requires_grad_(), copies())
    y2, hn2, loss2, g2 = run(ref, x.clone().requires_grad_(), copies())
    if kw.get("nonlinearity") == "relu":
        assert (y2 == 0).any() and (y2 > 0).any()  # relu clipped somewhere: tanh would not match
    torch.testing.assert_close(y1, y2, **TOL[dtype])
    for a, b in zip(hn1, hn2):
        torch.testing.assert_close(a, b, **TOL[dtype])
    torch.testing.assert_close(loss1, loss2, **TOL[dtype])
    assert len(g1) == len(g2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, **TOL[dtype])
    assert ours.last_stats.forward_steps > plain_steps(kw, layers, T)  # 20%: states were recomputed
    assert ours.last_stats.held_bytes <= ours.last_stats.budget_bytes
    assert y1.shape[-1] == D * (kw.get("proj_size") or H) and hn1[0].shape[0] == D * layers
    if kw.get("proj_size"):
        assert hn1[0].shape[-1] == kw["proj_size"] and hn1[1].shape[-1] == H
    with torch.no_grad():  # inference takes the options too
        torch.testing.assert_close(ours(x)[0], ref(x)[0], **TOL[dtype])


@pytest.mark.parametrize("case", OPTION_CASES, ids=option_id)
def test_options_every_policy_is_bitwise_plain_bptt(case):
    cell, kw = case
    T, B, I, H, L, dtype = 50, 2, 3, 4, 2, torch.float64
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(T, B, I, dtype=dtype, generator=gen)
    results = {}
    for policy in ("full", *membptt.POLICIES):
        torch.manual_seed(6)
        m = PAIRS[cell][0](I, H, L, dtype=dtype, memory=memory_for(policy), policy=policy, **kw)
        y, hn, loss, grads = run(m, x.clone().requires_grad_(), None)
        results[policy] = [y, *hn, loss, *grads]
        if policy != "full":
            assert m.last_stats.forward_steps > plain_steps(kw, L, T), policy
    for policy, got in results.items():
        for a, b in zip(got, results["full"]):
            assert torch.equal(a, b), policy


def gradcheck_module(cell, **kw):
    """A float64 finite-difference check of RnnFunction through a small module of `cell` with options kw."""
    T, B, I, H, L = 9, 2, 3, 4 if kw.get("proj_size") else 2, 2
    torch.manual_seed(2)
    m = PAIRS[cell][0](I, H, L, dtype=torch.float64, memory="40%", **kw)
    R = directions(kw) * (kw.get("proj_size") or H)
    handle = m._handle(torch.float64)
    C = m._carry_count(B)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(C, dtype=torch.float64, requires_grad=True)
    weights = [p.detach().clone().requires_grad_() for p in m.parameters()]

    def f(x, c0, *w):
        return RnnFunction.apply(handle, m, R, C, x, c0, *w)

    assert torch.autograd.gradcheck(f, (x, c0, *weights), eps=1e-6, atol=1e-8, rtol=1e-6)
    assert m.last_stats.forward_steps > T


@pytest.mark.parametrize("case", OPTION_CASES, ids=option_id)
def test_options_gradcheck_float64(case):
    cell, kw = case
    gradcheck_module(cell, **kw)


def dropout_masks(seed, layer, T, B, R, p):
    """membptt's masks of layer ``layer``'s input, [T, B, R] of 0/1 (membptt_dropout_keep)."""
    out = torch.empty(T, B * R, dtype=torch.uint8)
    for t in range(T):
        _lib.check(_lib.lib().membptt_dropout_keep(seed, layer, t, B * R, p,
                                                   ctypes.cast(out[t].data_ptr(), ctypes.POINTER(ctypes.c_uint8))))
    return out.view(T, B, R)


def dropout_reference(cell, ours, x, hx, seed, **kw):
    """torch.nn's layers one by one with membptt's masks between them: what dropout must compute."""
    L, H, p, D = ours.num_layers, ours.hidden_size, ours.dropout, directions(kw)
    R = D * (ours.proj_size or H)  # a layer's output
    T, B = x.shape[0], x.shape[1]
    state = ours.state_dict()
    inp, hs, cs, layers = x, [], [], []
    for k in range(L):
        layer = PAIRS[cell][1](inp.shape[-1], H, 1, dtype=x.dtype, **kw)
        layers.append(layer)
        layer.load_state_dict({n.replace(f"_l{k}", "_l0"): v for n, v in state.items()
                               if n.endswith(f"_l{k}") or n.endswith(f"_l{k}_reverse")})
        if cell == "lstm":
            out, (h, c) = layer(inp, (hx[0][D * k:D * k + D], hx[1][D * k:D * k + D]))
            cs.append(c)
        else:
            out, h = layer(inp, hx[D * k:D * k + D])
        hs.append(h)
        if k + 1 < L:
            mask = dropout_masks(seed, k + 1, T, B, R, p).to(x.dtype)
            inp = out * mask * (1.0 / (1.0 - p))
        else:
            inp = out
    return inp, ((torch.cat(hs), torch.cat(cs)) if cell == "lstm" else torch.cat(hs)), layers


@pytest.mark.parametrize("case", [("lstm", {}), ("gru", {}), ("rnn", dict(nonlinearity="relu")),
                                  ("lstm", dict(proj_size=3, bias=False)), ("lstm", dict(bidirectional=True)),
                                  ("gru", dict(bidirectional=True))], ids=option_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dropout_matches_torch_nn_with_the_same_masks(case, dtype):
    cell, kw = case
    T, B, I, H, L, p = 23, 3, 4, 5, 3, 0.4
    torch.manual_seed(21)
    ours = PAIRS[cell][0](I, H, L, dropout=p, dtype=dtype, memory="20%", **kw)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(T, B, I, dtype=dtype, generator=gen)
    R, LD = kw.get("proj_size") or H, directions(kw) * L
    hx = ((torch.randn(LD, B, R, dtype=dtype, generator=gen), torch.randn(LD, B, H, dtype=dtype, generator=gen))
          if cell == "lstm" else torch.randn(LD, B, H, dtype=dtype, generator=gen))
    copies = lambda: (tuple(t.clone().requires_grad_() for t in hx) if cell == "lstm"  # noqa: E731
                      else hx.clone().requires_grad_())
    x1, h1 = x.clone().requires_grad_(), copies()
    y1, hn1, loss1, g1 = run(ours, x1, h1)
    seed = ours._dropout_seed
    assert seed is not None
    x2, h2 = x.clone().requires_grad_(), copies()
    y2, hn2, layers = dropout_reference(cell, ours, x2, h2, seed, **kw)
    hn2 = leaves(hn2)
    loss2 = (y2 * torch.linspace(-1, 1, y2.shape[-1], dtype=dtype)).pow(2).sum() + sum((t * 0.5).sum() for t in hn2)
    # The reference's parameter gradients: the same loss through torch.nn's layers.
    loss2.backward()
    torch.testing.assert_close(y1, y2, **TOL[dtype])
    for a, b in zip(hn1, hn2):
        torch.testing.assert_close(a, b, **TOL[dtype])
    torch.testing.assert_close(loss1, loss2, **TOL[dtype])
    torch.testing.assert_close(g1[0], x2.grad, **TOL[dtype])
    for a, b in zip(leaves(h1), leaves(h2)):
        torch.testing.assert_close(a.grad, b.grad, **TOL[dtype])
    for name, param in ours.named_parameters():  # every parameter's gradient, layer by layer
        stem, k = name.rsplit("_l", 1)
        k, reverse = k.split("_")[0], "_reverse" if k.endswith("_reverse") else ""
        ref_param = dict(layers[int(k)].named_parameters())[stem + "_l0" + reverse]
        torch.testing.assert_close(param.grad, ref_param.grad, **TOL[dtype])
    assert ours.last_stats.forward_steps > T  # 20%: recomputed steps drew the same masks
    with torch.no_grad():  # eval: no dropout, as torch.nn
        ours.eval()
        ref = PAIRS[cell][1](I, H, L, dropout=p, dtype=dtype, **kw)
        ref.load_state_dict(ours.state_dict())
        ref.eval()
        torch.testing.assert_close(ours(x, hx)[0], ref(x, hx)[0], **TOL[dtype])


@pytest.mark.parametrize("cell", PAIRS)
def test_dropout_every_policy_is_bitwise_plain_bptt_and_p0_is_no_dropout(cell):
    T, B, I, H, L, dtype = 40, 2, 3, 4, 3, torch.float64
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(T, B, I, dtype=dtype, generator=gen)
    results = {}
    for policy in ("full", *membptt.POLICIES):
        torch.manual_seed(6)
        m = PAIRS[cell][0](I, H, L, dropout=0.5, dtype=dtype, memory=memory_for(policy), policy=policy)
        y, hn, loss, grads = run(m, x.clone().requires_grad_(), None)
        results[policy] = [y, *hn, loss, *grads]
        if policy != "full":
            assert m.last_stats.forward_steps > T, policy
    for policy, got in results.items():
        for a, b in zip(got, results["full"]):
            assert torch.equal(a, b), policy
    # Another seed: other masks, another result.
    torch.manual_seed(7)
    m = PAIRS[cell][0](I, H, L, dropout=0.5, dtype=dtype, policy="full")
    torch.manual_seed(6)
    m.load_state_dict(PAIRS[cell][0](I, H, L, dtype=dtype).state_dict())
    torch.manual_seed(99)
    assert not torch.equal(m(x)[0], results["full"][0])
    # p = 0: the same bits as no dropout at all.
    torch.manual_seed(6)
    m0 = PAIRS[cell][0](I, H, L, dropout=0.0, dtype=dtype)
    torch.manual_seed(6)
    m1 = PAIRS[cell][0](I, H, L, dtype=dtype)
    assert torch.equal(m0(x)[0], m1(x)[0])


@pytest.mark.parametrize("cell,fields,match", [
    ("lstm", dict(bidirectional=2), "bidirectional 2 is not allowed: use 0 (forward in time) or 1 (both directions)"),
    ("gru", dict(proj_size=2), "proj_size 2 is not allowed for cell gru: only lstm has projections"),
    ("lstm", dict(proj_size=8), "proj_size 8 is not allowed: allowed is 0 (none) or 1 to 7"),
    ("lstm", dict(nonlinearity=b"relu"), "nonlinearity relu is not allowed for cell lstm"),
    ("rnn", dict(nonlinearity=b"gelu"), "nonlinearity 'gelu' is not allowed: allowed are tanh, relu"),
    ("rnn", dict(bias=2), "bias 2 is not allowed"),
    ("rnn", dict(dropout=1.5), "dropout 1.500000 is not allowed: allowed is 0 to 1"),
])
def test_c_api_options_refused_in_one_line(cell, fields, match):
    L = _lib.lib()
    opts = _lib.RnnOptions()
    L.membptt_rnn_options_default(ctypes.byref(opts))
    assert (opts.bias, opts.bidirectional, opts.proj_size, opts.dropout, opts.nonlinearity) == (1, 0, 0, 0.0, b"tanh")
    for k, v in fields.items():
        setattr(opts, k, v)
    out = ctypes.c_void_p()
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        _lib.check(L.membptt_rnn_create_ex(cell.encode(), 3, 8, 2, ctypes.byref(opts), 0, None, b"auto", 2.0,
                                           ctypes.byref(out)))
    assert "\n" not in L.membptt_last_error().decode()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keeps_one_minus_p(p):
    n, seed = 200_000, 12345
    keep = torch.empty(n, dtype=torch.uint8)
    _lib.check(_lib.lib().membptt_dropout_keep(seed, 1, 7, n, p, ctypes.cast(keep.data_ptr(), ctypes.POINTER(ctypes.c_uint8))))
    frac = keep.double().mean().item()
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(frac - (1 - p)) < 5 * sigma, (frac, 1 - p)
    # Other layers, steps and seeds draw other masks.
    other = torch.empty(n, dtype=torch.uint8)
    _lib.check(_lib.lib().membptt_dropout_keep(seed, 2, 7, n, p, ctypes.cast(other.data_ptr(), ctypes.POINTER(ctypes.c_uint8))))
    assert not torch.equal(keep, other)


@pytest.mark.parametrize("cell", PAIRS)
def test_dropout_gradcheck_float64(cell):
    T, B, I, H, L = 7, 2, 3, 2, 3
    torch.manual_seed(2)
    m = PAIRS[cell][0](I, H, L, dtype=torch.float64, memory="40%", dropout=0.5)
    handle = m._handle(torch.float64)
    handle.set_dropout(4242)
    C = m._carry_count(B)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(C, dtype=torch.float64, requires_grad=True)
    weights = [p.detach().clone().requires_grad_() for p in m.parameters()]

    def f(x, c0, *w):
        return RnnFunction.apply(handle, m, H, C, x, c0, *w)

    assert torch.autograd.gradcheck(f, (x, c0, *weights), eps=1e-6, atol=1e-8, rtol=1e-6)
    assert m.last_stats.forward_steps > T


@pytest.mark.parametrize("cell", PAIRS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_policy_is_bitwise_plain_bptt(cell, dtype):
    T, B, I, H, L = 60, 2, 3, 4, 2
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(T, B, I, dtype=dtype, generator=gen)
    hx = hidden(cell, (L, B, H), dtype, gen)
    results = {}
    for policy in ("full", "auto", *membptt.POLICIES):
        torch.manual_seed(5)
        m = PAIRS[cell][0](I, H, L, dtype=dtype, memory=memory_for(policy), policy=policy)
        xi = x.clone().requires_grad_()
        hi = tuple(t.detach().clone().requires_grad_() for t in hx) if cell == "lstm" else hx.detach().clone().requires_grad_()
        y, hn, loss, grads = run(m, xi, hi)
        results[policy] = [y, *hn, loss, *grads]
        s = m.last_stats
        assert s.forward_steps == s.planned_forward_steps == m.plan(T, B)[0].forward_steps
        assert s.peak_arena_bytes == s.arena_bytes and s.held_bytes <= s.budget_bytes
        if policy not in ("full",):
            assert s.forward_steps > T, policy  # each of these recomputes at this budget
    for policy, got in results.items():
        for a, b in zip(got, results["full"]):
            assert torch.equal(a, b), policy


@pytest.mark.parametrize("cell", PAIRS)
def test_gradcheck_float64(cell):
    gradcheck_module(cell)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mixed_model_trains_like_torch_nn(dtype):
    """Embedding -> membptt LSTM -> Linear -> cross-entropy with Adam: the same losses as torch.nn's."""
    V, E, H, T, B = 11, 8, 16, 40, 4

    class Model(nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.embed, self.rnn, self.head = nn.Embedding(V, E, dtype=dtype), rnn, nn.Linear(H, V, dtype=dtype)

        def forward(self, tokens):
            y, _ = self.rnn(self.embed(tokens))
            return self.head(y)

    torch.manual_seed(0)
    ours = Model(mt.LSTM(E, H, 2, memory="15%", dtype=dtype))
    ref = copy.deepcopy(ours)
    ref.rnn = nn.LSTM(E, H, 2, dtype=dtype)
    ref.load_state_dict(ours.state_dict())
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in (ours, ref)]
    gen = torch.Generator().manual_seed(1)
    losses = [[], []]
    for _ in range(50):
        start = torch.randint(0, V, (1, B), generator=gen)  # a learnable stream: each token predicts the next
        tokens = (start + 3 * torch.arange(T + 1).unsqueeze(1)) % V
        for k, (m, opt) in enumerate(zip((ours, ref), opts)):
            opt.zero_grad()
            logits = m(tokens[:-1])
            loss = nn.functional.cross_entropy(logits.reshape(-1, V), tokens[1:].reshape(-1))
            loss.backward()
            opt.step()
            losses[k].append(loss.item())
    tol = 1e-9 if dtype == torch.float64 else 2e-4
    assert losses[0][-1] < losses[0][0] - 0.1  # it learned something
    for a, b in zip(*losses):
        assert abs(a - b) <= tol * max(1.0, abs(b))
    assert ours.rnn.last_stats.forward_steps > T


def test_state_dict_both_ways_and_initialisation():
    for cell, (ours_cls, ref_cls) in PAIRS.items():
        ours, ref = ours_cls(5, 7, 3), ref_cls(5, 7, 3)
        assert list(ours.state_dict()) == list(ref.state_dict())
        assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
        ours.load_state_dict(ref.state_dict())
        ref.load_state_dict(ours.state_dict())
        bound = 1 / 7 ** 0.5
        assert all(p.abs().max() <= bound for p in ours.parameters())
        assert max(p.abs().max() for p in ours.parameters()) > 0.9 * bound  # uniform over the range
        assert len(ours.all_weights) == 3 and ours.all_weights[0][0] is ours.weight_ih_l0
        bi, ref_bi = ours_cls(5, 7, 3, bidirectional=True), ref_cls(5, 7, 3, bidirectional=True)
        assert list(bi.state_dict()) == list(ref_bi.state_dict())
        assert [p.shape for p in bi.parameters()] == [p.shape for p in ref_bi.parameters()]
        bi.load_state_dict(ref_bi.state_dict())
        assert len(bi.all_weights) == 6 and bi.all_weights[1][0] is bi.weight_ih_l0_reverse
        assert "bidirectional=True" in repr(bi)


def test_inference_equals_training_forward_bitwise():
    torch.manual_seed(0)
    m = mt.GRU(4, 6, 2, memory="10%")
    x = torch.randn(30, 3, 4)
    with torch.no_grad():
        y0, h0 = m(x)
    y1, h1 = m(x.requires_grad_())
    assert torch.equal(y0, y1) and torch.equal(h0, h1)
    assert y0.grad_fn is None and y1.grad_fn is not None


def test_budget_held_and_too_small():
    T, B, I, H = 200, 4, 8, 16
    m = mt.LSTM(I, H, memory="64KiB")
    plan, budget, plain = m.plan(T, B)
    assert budget == 65536 and plain > 4 * budget and plan.policy == "msm"
    y, _ = m(torch.randn(T, B, I))
    y.sum().backward()
    s = m.last_stats
    assert s.held_bytes <= 65536 and s.forward_steps == plan.forward_steps
    # A percentage is of this sequence's plain BPTT memory.
    m5 = mt.LSTM(I, H, memory="5%")
    _, budget5, plain5 = m5.plan(T, B)
    assert budget5 == pytest.approx(0.05 * plain5)
    y, _ = m5(torch.randn(T, B, I))
    y.sum().backward()
    assert m5.last_stats.held_bytes <= budget5
    # Below the least that works: a ValueError naming that least in bytes.
    tiny = mt.LSTM(I, H, memory="1KiB")
    with pytest.raises(ValueError, match=r"memory budget 1024 bytes is below the least .* \d+ bytes"):
        tiny(torch.randn(T, B, I, requires_grad=True))
    # A share of a short sequence below the least that works is raised to that least (bytes fail).
    _, budget_short, plain_short = m5.plan(5, B)
    assert budget_short > 0.05 * plain_short
    m5(torch.randn(5, B, I, requires_grad=True))[0].sum().backward()
    assert m5.last_stats.held_bytes <= budget_short
    with torch.no_grad():  # inference holds no states: any budget
        assert tiny(torch.randn(T, B, I))[0].shape == (T, B, H)


def test_bidirectional_budget_held_and_too_small():
    T, B, I, H = 300, 4, 8, 16
    m = mt.GRU(I, H, num_layers=2, bidirectional=True, memory="25%")
    plan, budget, plain = m.plan(T, B)
    # A share is of the chains' plain memory; the held sequences (two of [T, B, 2H]) are added whole.
    seq = T * B * 2 * H * 4
    assert 2 * seq + 0.25 * (plain - 2 * seq) <= budget < 2 * seq + 0.25 * (plain - 2 * seq) + 4096
    assert plan.policy == "msm"
    y, h = m(torch.randn(T, B, I, requires_grad=True))
    assert y.shape == (T, B, 2 * H) and h.shape == (4, B, H)
    (y.sum() + h.sum()).backward()
    s = m.last_stats
    assert s.held_bytes <= budget and s.forward_steps == s.planned_forward_steps > 4 * T
    # Two layers hold layer 0's outputs and a gradient, [T, B, 2H] each: the least grows with T.
    tight = mt.GRU(I, H, num_layers=2, bidirectional=True, memory=2 * seq)
    with pytest.raises(ValueError, match=r"below the least .* bidirectional stack of 2 layer\(s\) over 300 steps: "
                                         r"\d+ bytes, of which \d+ bytes hold the inner layers. outputs and a gradient \(growing with the length\)"):
        tight(torch.randn(T, B, I, requires_grad=True))
    assert tight(torch.randn(T // 10, B, I, requires_grad=True))[0].shape == (T // 10, B, 2 * H)  # a shorter one fits
    # One layer holds no inner outputs: its error names what it holds instead.
    with pytest.raises(ValueError, match=r"bidirectional stack of 1 layer\(s\) .* hold the chains' carries and the rest"):
        mt.LSTM(I, H, bidirectional=True, memory=1000)(torch.randn(T, B, I))


def test_a_share_that_forces_heavy_recomputation_warns_once():
    m = mt.LSTM(3, 5, memory="5%")
    with pytest.warns(UserWarning, match=r"memory='5%' for 50 steps of a batch of 2 \(\d+ bytes\) leaves so little .* "
                                         r"runs 25.5 forward steps per step"):
        m(torch.randn(50, 2, 3, requires_grad=True))[0].sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m(torch.randn(50, 2, 3, requires_grad=True))[0].sum().backward()  # once per shape
        mt.LSTM(3, 5, memory="5%")(torch.randn(2000, 2, 3, requires_grad=True))[0].sum().backward()  # long: ~2


def test_lengths_and_batches_change_between_calls():
    torch.manual_seed(0)
    ours, ref = pair("lstm", 3, 5, memory="10%", dtype=torch.float64)
    for T, B in ((100, 2), (150, 1), (100, 2), (80, 5)):
        x = torch.randn(T, B, 3, dtype=torch.float64)
        y1, _ = ours(x.requires_grad_())
        y2, _ = ref(x)
        torch.testing.assert_close(y1, y2, **TOL[torch.float64])
        y1.sum().backward()
        assert ours.last_stats.forward_steps == ours.plan(T, B)[0].forward_steps


def test_dropped_graph_and_second_backward():
    m = mt.RNN(3, 4, memory="30%")
    x = torch.randn(40, 2, 3, requires_grad=True)
    y, _ = m(x)
    del y  # a forward whose graph is dropped: its states are freed, the next pass is unaffected
    y, _ = m(x)
    y.sum().backward(retain_graph=True)
    first = [x.grad.clone()] + [p.grad.clone() for p in m.parameters()]
    steps = m.last_stats.forward_steps
    y.sum().backward()  # a second backward runs the forward sweep again: the same gradients again
    second = [x.grad] + [p.grad for p in m.parameters()]
    assert all(torch.equal(b, 2 * a) for a, b in zip(first, second))
    assert m.last_stats.forward_steps == steps


def test_double_backward_is_refused_in_one_line():
    m = mt.LSTM(3, 4, memory="30%", bidirectional=True)
    x = torch.randn(12, 2, 3, requires_grad=True)
    y, _ = m(x)
    with pytest.raises(RuntimeError, match=r"double backward \(create_graph=True\) is not supported"):
        torch.autograd.grad(y.square().sum(), list(m.parameters()), create_graph=True)
    y, _ = m(x)  # first order still works after the refusal
    (g,) = torch.autograd.grad(y.sum(), [x])
    assert g.shape == x.shape
    step = nn.Linear(4 + 3, 4).double()
    carry, out = mt.scan(lambda h, x_t: (torch.tanh(step(torch.cat([h, x_t], -1))),) * 2,
                         torch.zeros(2, 4, dtype=torch.float64), torch.randn(9, 2, 3, dtype=torch.float64),
                         memory="40%")
    with pytest.raises(RuntimeError, match=r"membptt.torch.scan: double backward"):
        torch.autograd.grad(out.square().sum(), list(step.parameters()), create_graph=True)


def test_threads_follow_torch_during_calls_only():
    from membptt.torch import function
    L = _lib.lib()
    old, before = torch.get_num_threads(), L.membptt_num_threads()
    seen = []
    real = L.membptt_rnn_forward

    class Spy:  # sees the BLAS's count while membptt computes
        def __call__(self, *args):
            seen.append(L.membptt_num_threads())
            return real(*args)

    try:
        torch.set_num_threads(1)
        L.membptt_rnn_forward = Spy()
        m = mt.LSTM(3, 4)
        m(torch.randn(5, 1, 3, requires_grad=True))[0].sum().backward()
        mt.set_num_threads(2)
        m(torch.randn(5, 1, 3, requires_grad=True))[0].sum().backward()
    finally:
        L.membptt_rnn_forward = real
        mt.set_num_threads(None)
        torch.set_num_threads(old)
    assert seen == [1, 2]
    assert L.membptt_num_threads() == before  # PyTorch's own products keep their BLAS setting
    with pytest.raises(ValueError, match="number of threads 0"):
        mt.set_num_threads(0)
    for bad in (True, 2.0, "2", -1, 5000):
        with pytest.raises(ValueError, match="is not allowed: allowed is an integer from 1 to 4096"):
            mt.set_num_threads(bad)
    assert function._threads is None
    np = pytest.importorskip("numpy")
    mt.set_num_threads(np.int64(3))  # any integer type
    try:
        assert function._threads == 3 and type(function._threads) is int
    finally:
        mt.set_num_threads(None)


def test_results_do_not_depend_on_the_thread_count():
    """The products run on tiles fixed by the shape, whichever thread runs each (a layer of 65536
    weights or more takes the libxsmm path's transposes where it is built): output and every
    gradient are the same bits on 1, 2 and 3 threads."""
    torch.manual_seed(5)
    m = mt.LSTM(64, 128, num_layers=2, memory="20%")
    x = torch.randn(40, 6, 64, requires_grad=True)
    runs = []
    try:
        for n in (1, 2, 3):
            mt.set_num_threads(n)
            m.zero_grad()
            x.grad = None
            y, (h, c) = m(x)
            (y.square().sum() + h.sum() + c.sum()).backward()
            runs.append([y.detach(), h.detach(), c.detach(), x.grad] + [p.grad for p in m.parameters()])
    finally:
        mt.set_num_threads(None)
    for other in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], other))


@pytest.mark.parametrize("kwargs,match", [
    (dict(memory="5 parsecs"), "unknown unit 'parsecs'"),
    (dict(memory="-1MiB"), "must be a finite number >= 0"),
    (dict(policy="fastest"), "policy 'fastest' is not allowed"),
    (dict(dropout=1.5), "dropout should be a number in range"),
    (dict(hidden_size=0), "hidden_size must be greater than zero"),
])
def test_construction_errors(kwargs, match):
    args = dict(input_size=3, hidden_size=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        mt.LSTM(**args)


def test_cell_specific_refusals():
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        mt.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="membptt.torch.LSTM: nonlinearity='relu' is not allowed: only RNN"):
        mt.LSTM(3, 4, nonlinearity="relu")
    with pytest.raises(ValueError, match="Unknown nonlinearity 'gelu'"):
        mt.RNN(3, 4, nonlinearity="gelu")
    with pytest.raises(TypeError, match="input_size should be of type int"):
        mt.GRU(3.5, 4)


def test_forward_errors():
    m = mt.LSTM(3, 4, 2)
    x = torch.randn(6, 2, 3)
    cases = [
        (ValueError, "Expected input to be 2D or 3D, got 4D", lambda: m(torch.randn(1, 6, 2, 3))),
        (RuntimeError, "input.size\\(-1\\) must be equal to input_size. Expected 3, got 5", lambda: m(torch.randn(6, 2, 5))),
        (ValueError, "input must have the type torch.float32, got type torch.float64", lambda: m(x.double())),
        (RuntimeError, r"Expected hidden\[0\] size \(2, 2, 4\), got \[1, 2, 4\]",
         lambda: m(x, (torch.zeros(1, 2, 4), torch.zeros(2, 2, 4)))),
        (TypeError, "hx must be a tuple", lambda: m(x, torch.zeros(2, 2, 4))),
        (ValueError, "sequence length 0", lambda: m(torch.randn(0, 2, 3))),
        (ValueError, "PackedSequence input is not supported", lambda: m(nn.utils.rnn.pack_sequence([torch.randn(4, 3)]))),
        (ValueError, "dtype torch.float16 are not supported", lambda: copy.deepcopy(m).half()(x.half())),
    ]
    for exc, match, call in cases:
        with pytest.raises(exc, match=match):
            call()
    g = mt.GRU(3, 4)
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(1, 2, 4\), got \[2, 4\]"):
        g(x, torch.zeros(2, 4))
    # Devices: mixed ones, and tensors that are not on the CPU (meta stands in for CUDA here).
    with pytest.raises(RuntimeError, match="same device, but found input on meta and parameters on cpu"):
        g(x.to("meta"))
    with pytest.raises(RuntimeError, match="same device, but found input on cpu and hidden on meta"):
        g(x, torch.zeros(1, 2, 4, device="meta"))
    with pytest.raises(RuntimeError, match="tensors on meta are not supported by this build"):
        copy.deepcopy(g).to("meta")(x.to("meta"))


def test_budget_and_policy_can_change_between_calls():
    m = mt.LSTM(3, 4, memory="10%")
    x = torch.randn(200, 2, 3)
    m(x)[0].sum().backward()
    low = m.last_stats.budget_bytes
    m.memory = " 50% "  # blanks around a budget are fine
    m(x)[0].sum().backward()
    assert m.last_stats.budget_bytes == pytest.approx(5 * low)
    m.policy = "revolve"
    assert m.plan(200, 2)[0].policy == "revolve"
    with pytest.raises(ValueError, match="memory budget 'garbage' is not allowed"):
        m.memory = "garbage"
    with pytest.raises(ValueError, match="policy 'fast' is not allowed"):
        m.policy = "fast"


def test_empty_batch_and_torchscript():
    for cell in PAIRS:
        ours, ref = pair(cell, 4, 8)
        y, h = ours(torch.randn(5, 0, 4))
        y2, h2 = ref(torch.randn(5, 0, 4))
        assert y.shape == y2.shape and [t.shape for t in leaves(h)] == [t.shape for t in leaves(h2)]
    with pytest.raises(RuntimeError, match="cannot be compiled by TorchScript"):
        torch.jit.script(mt.GRU(3, 4))
    with pytest.raises(RuntimeError, match="cannot be traced or scripted"):
        torch.jit.trace(mt.GRU(3, 4), torch.randn(5, 2, 3))


def test_module_conventions():
    m = mt.LSTM(3, 4, 2, batch_first=True, memory="5%")
    assert repr(m) == "LSTM(3, 4, num_layers=2, batch_first=True, memory='5%')"
    copy.deepcopy(m)(torch.randn(2, 100, 3, requires_grad=True))[0].sum().backward()  # handles rebuilt
    m2 = mt.LSTM(3, 4, memory=2 ** 20)
    assert m2.plan(10, 2)[1] == 2 ** 20
    m3 = mt.LSTM(3, 4, memory="5%")
    m3.plan(100, 2)
    assert ctypes.sizeof(_lib.PassStats) == 7 * 8


@pytest.mark.parametrize("cls", [mt.GRU, mt.RNN])
def test_proj_size_is_lstm_only_as_in_torch_nn(cls):
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        cls(5, 7, proj_size=3)
