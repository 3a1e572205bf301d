"""membptt.torch.scan against plain autograd over the unrolled loop: outputs, final carry and every
gradient; every policy bit for bit; the budget held; randomness replayed; errors."""
import warnings

import pytest

torch = pytest.importorskip("torch", reason="membptt.torch needs PyTorch (Debian: python3-torch)")
nn = torch.nn

import membptt  # noqa: E402
from membptt.torch import ScanStats, scan  # noqa: E402

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-5, atol=1e-5)}
POLICY_MEMORY = [("full", None), ("msm", "15%"), ("hsm", "15%"), ("ism", "30%"), ("revolve", "15%"),
                 ("chen-sqrt", None), ("chen-recursive", None), ("quadratic", None), ("auto", "10%")]


class LayerNormLSTM(nn.Module):
    """An LSTM cell with layer normalisation of the gates and the cell (a cell of the user's own)."""

    def __init__(self, i, h, dtype):
        super().__init__()
        self.lin = nn.Linear(i + h, 4 * h, dtype=dtype)
        self.ln_gates, self.ln_c = nn.LayerNorm(4 * h, dtype=dtype), nn.LayerNorm(h, dtype=dtype)

    def forward(self, carry, x):
        h, c = carry
        i, f, g, o = self.ln_gates(self.lin(torch.cat([x, h], -1))).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(self.ln_c(c))
        return (h, c), h


class MinGRU(nn.Module):
    """minGRU (Feng et al. 2024): h' = (1 - z) h + z h~, gates from the input alone."""

    def __init__(self, i, h, dtype):
        super().__init__()
        self.z, self.h = nn.Linear(i, h, dtype=dtype), nn.Linear(i, h, dtype=dtype)

    def forward(self, h, x):
        z = torch.sigmoid(self.z(x))
        h = (1 - z) * h + z * self.h(x)
        return h, h


class GRUWithHead(nn.Module):
    """torch.nn.GRUCell, dropout, and a per-step loss as the output (outputs='sum')."""

    def __init__(self, i, h, dtype):
        super().__init__()
        self.cell, self.drop, self.head = nn.GRUCell(i, h, dtype=dtype), nn.Dropout(0.25), nn.Linear(h, 3, dtype=dtype)

    def forward(self, h, x):
        h = self.cell(x, h)
        return h, self.head(self.drop(h)).pow(2).mean()


def make(kind, dtype, I=3, H=5, B=4):
    torch.manual_seed(0)
    if kind == "layernorm_lstm":
        m = LayerNormLSTM(I, H, dtype)
        carry = (torch.randn(B, H, dtype=dtype), torch.zeros(B, H, dtype=dtype))
    elif kind == "min_gru":
        m = MinGRU(I, H, dtype)
        carry = torch.randn(B, H, dtype=dtype)
    else:
        m = GRUWithHead(I, H, dtype)
        carry = torch.randn(B, H, dtype=dtype)
    return m, carry


def plain(step, carry, xs, outputs):
    ys, total = [], None
    for t in range(xs.shape[0]):
        carry, y = step(carry, xs[t])
        ys.append(y)
        total = y if total is None else total + y
    return carry, (torch.stack(ys) if outputs == "stack" else total)


def loss_of(carry, ys):
    leaves = list(carry) if isinstance(carry, tuple) else [carry]
    return (ys * 1.5).pow(2).sum() + sum(c.sin().sum() for c in leaves)


def gradients(kind, dtype, policy, memory, T=40, seed=11):
    m, carry = make(kind, dtype)
    outputs = "sum" if kind == "gru_dropout_sum" else "stack"
    xs = torch.randn(T, 4, 3, dtype=dtype, generator=torch.Generator().manual_seed(1)).requires_grad_()
    leaves = list(carry) if isinstance(carry, tuple) else [carry]
    for c in leaves:
        c.requires_grad_()
    torch.manual_seed(seed)
    st = ScanStats()
    if policy == "loop":
        final, ys = plain(m, carry, xs, outputs)
    else:
        final, ys = scan(m, carry, xs, memory=memory, policy=policy, outputs=outputs, stats=st)
    after_forward = torch.rand(3)
    loss_of(final, ys).backward()
    grads = [xs.grad] + [c.grad for c in leaves] + [p.grad for p in m.parameters()]
    return ys.detach(), grads, after_forward, st


KINDS = ["layernorm_lstm", "min_gru", "gru_dropout_sum"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_plain_autograd_and_every_policy_is_bitwise_full(kind, dtype):
    ref_y, ref_g, ref_rng, _ = gradients(kind, dtype, "loop", None)
    full = None
    for policy, memory in POLICY_MEMORY:
        y, g, rng, st = gradients(kind, dtype, policy, memory)
        torch.testing.assert_close(y, ref_y, **TOL[dtype])
        assert len(g) == len(ref_g)
        for a, b in zip(g, ref_g):
            torch.testing.assert_close(a, b, **TOL[dtype])
        assert torch.equal(rng, ref_rng), "the generators after the scan's forward are not the plain loop's"
        assert st.forward_steps == st.plan.forward_steps and st.backward_steps == 40
        assert st.peak_bytes <= st.budget_bytes
        if policy != "full":
            assert st.forward_steps > 40, policy
        if full is None:
            full = (y, g)
        else:
            assert torch.equal(y, full[0]) and all(torch.equal(a, b) for a, b in zip(g, full[1])), policy


def test_without_stats_nothing_is_counted_and_the_bits_are_the_same():
    """stats= turns on the saved-tensor hooks that count each recorded step; without it the scan
    runs the same schedule, a record taken as large as the probe step's."""
    runs = []
    for st in (ScanStats(), None):
        m, carry = make("layernorm_lstm", torch.float32)
        xs = torch.randn(60, 4, 3, generator=torch.Generator().manual_seed(2))
        final, ys = scan(m, carry, xs, memory="10%", stats=st)
        loss_of(final, ys).backward()
        runs.append([ys.detach()] + [p.grad for p in m.parameters()])
        if st is not None:
            assert st.counted and 0 < st.peak_bytes <= st.budget_bytes
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_budget_in_bytes_is_held_and_too_small_is_named():
    m, carry = make("layernorm_lstm", torch.float64)
    xs = torch.randn(200, 4, 3, dtype=torch.float64)
    st = ScanStats()
    final, ys = scan(m, carry, xs, memory="5%", stats=st)
    assert st.plan.policy == "msm" and st.budget_bytes == pytest.approx(0.05 * st.plain_bytes)
    ys.sum().backward()
    assert 0 < st.peak_bytes <= st.budget_bytes
    budget = int(st.budget_bytes)
    st2 = ScanStats()
    scan(m, carry, xs, memory=budget, stats=st2)[1].sum().backward()
    assert st2.peak_bytes <= budget and st2.forward_steps == st.forward_steps
    with pytest.raises(ValueError, match=r"scan: memory budget 100 bytes is below the least in which policy msm runs "
                                         r"200 steps: \d+ bytes"):
        scan(m, carry, xs, memory=100)
    # A share of a short scan below the least that works is raised to that least.
    st3 = ScanStats()
    scan(m, carry, xs[:3], memory="5%", stats=st3)[1].sum().backward()
    assert st3.budget_bytes > 0.05 * st3.plain_bytes and st3.peak_bytes <= st3.budget_bytes


def test_no_grad_is_the_plain_loop_and_parameters_get_one_accumulation():
    m, carry = make("min_gru", torch.float64)
    xs = torch.randn(30, 4, 3, dtype=torch.float64)
    with torch.no_grad():
        final, ys = scan(m, carry, xs, memory="10%")
    ref_final, ref_ys = plain(m, carry, xs, "stack")
    assert torch.equal(final, ref_final) and torch.equal(ys, ref_ys) and ys.grad_fn is None
    calls = []
    m.z.weight.register_hook(lambda g: calls.append(1))
    scan(m, carry, xs, memory="10%")[1].sum().backward()
    assert calls == [1]  # once per scan, not once per step


def test_tuple_carry_dict_xs_and_nested_outputs():
    torch.manual_seed(0)
    lin = nn.Linear(4, 2, dtype=torch.float64)

    def step(carry, x):
        a, b = carry
        a = torch.tanh(lin(torch.cat([a, x["u"]], -1)) + b)
        return (a, b * x["v"]), {"a": a, "s": a.sum(-1)}

    carry = (torch.zeros(3, 2, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64, requires_grad=True))
    xs = {"u": torch.randn(25, 3, 2, dtype=torch.float64, requires_grad=True),
          "v": torch.rand(25, 3, 1, dtype=torch.float64) + 0.5}
    final, ys = scan(step, carry, xs, memory="20%")
    assert set(ys) == {"a", "s"} and ys["a"].shape == (25, 3, 2) and ys["s"].shape == (25, 3)
    (ys["a"].sum() + ys["s"].pow(2).sum() + final[1].sum()).backward()
    got = [xs["u"].grad.clone(), carry[1].grad.clone(), lin.weight.grad.clone()]
    xs["u"].grad = carry[1].grad = lin.weight.grad = lin.bias.grad = None
    c, outs = carry, []
    for t in range(25):
        c, y = step(c, {"u": xs["u"][t], "v": xs["v"][t]})
        outs.append(y)
    (torch.stack([o["a"] for o in outs]).sum() + torch.stack([o["s"] for o in outs]).pow(2).sum() + c[1].sum()).backward()
    for a, b in zip(got, [xs["u"].grad, carry[1].grad, lin.weight.grad]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_errors():
    lin = nn.Linear(2, 2)
    xs = torch.randn(5, 2)
    h = torch.zeros(2)
    cases = [
        (ValueError, "changed the carry's structure", lambda: scan(lambda c, x: ((c, c), c), h, xs)),
        (ValueError, "step 1 changed the carry's shapes or dtypes", lambda: scan(lambda c, x: (lin(x)[:1], c), h, xs)),
        (ValueError, "changed the carry's shapes or dtypes", lambda: scan(lambda c, x: (lin(c + x).double(), c), h, xs)),
        (ValueError, "outputs='stack' needs one structure and shape",
         lambda: scan(lambda c, x: (lin(c + x), torch.zeros(int(c.abs().sum() * 1e6) % 3 + 1)), h, xs)),
        (ValueError, "xs is empty", lambda: scan(lambda c, x: (lin(c + x), c), h, torch.zeros(0, 2))),
        (ValueError, "outputs='all' is not allowed", lambda: scan(lambda c, x: (c, c), h, xs, outputs="all")),
        (TypeError, "must return a pair", lambda: scan(lambda c, x: lin(c + x), h, xs)),
        (ValueError, "unknown unit", lambda: scan(lambda c, x: (lin(c + x), c), h, xs, memory="5 bananas")),
        (ValueError, "same first dimension", lambda: scan(lambda c, x: (c, c), h, (xs, torch.zeros(4, 2)))),
    ]
    for exc, match, call in cases:
        with pytest.raises(exc, match=match):
            call()


def test_the_loop_without_gradients_checks_as_the_scan_does():
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        with pytest.raises(ValueError, match="returned y_t None with outputs='stack'"):
            scan(lambda c, x: (lin(c + x), None), torch.zeros(2), torch.randn(5, 2))
        with pytest.raises(ValueError, match="step 1 changed the carry's shapes"):
            scan(lambda c, x: (torch.cat([c, c]), c), torch.zeros(2), torch.randn(5, 2))
        with pytest.raises(ValueError, match="policy 'bogus' is not allowed"):
            scan(lambda c, x: (c, c), torch.zeros(2), torch.randn(5, 2), policy="bogus")


def test_captured_non_leaf_is_named():
    lin = nn.Linear(2, 2)
    w = lin.weight * 2  # requires grad, not a leaf

    def step(c, x):
        c = torch.tanh(c @ w + x)
        return c, c

    with pytest.raises(RuntimeError, match="computed before the scan"):
        scan(step, torch.zeros(3, 2), torch.randn(6, 3, 2), memory=None)[1].sum().backward()


# --- xs an iterator of unknown length: the online policy ---------------------------------------------

def online_gradients(kind, dtype, memory, T=40, seed=11, as_generator=False):
    """gradients() with xs given step by step (an iterator over its rows, or a generator)."""
    m, carry = make(kind, dtype)
    outputs = "sum" if kind == "gru_dropout_sum" else "stack"
    xs = torch.randn(T, 4, 3, dtype=dtype, generator=torch.Generator().manual_seed(1)).requires_grad_()
    leaves = list(carry) if isinstance(carry, tuple) else [carry]
    for c in leaves:
        c.requires_grad_()
    torch.manual_seed(seed)
    st = ScanStats()
    rows = (xs[t] for t in range(T)) if as_generator else iter([xs[t] for t in range(T)])
    final, ys = scan(m, carry, rows, memory=memory, outputs=outputs, stats=st)
    after_forward = torch.rand(3)
    loss_of(final, ys).backward()
    grads = [xs.grad] + [c.grad for c in leaves] + [p.grad for p in m.parameters()]
    return ys.detach(), grads, after_forward, st


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_iterator_is_bitwise_the_tensor_scan_within_the_budget(kind, dtype):
    ref_y, ref_g, ref_rng, _ = gradients(kind, dtype, "full", None)
    _, _, _, probe = online_gradients(kind, dtype, 10**9, T=3)
    carry, record = probe.carry_bytes, probe.record_bytes
    alpha = -(-record // carry)
    seen = set()
    for extra in (0, 1, 2, 4, 9, 40):
        budget = alpha * carry + extra * carry
        y, g, rng, st = online_gradients(kind, dtype, budget, as_generator=extra == 4)
        assert torch.equal(y, ref_y), extra
        assert len(g) == len(ref_g) and all(torch.equal(a, b) for a, b in zip(g, ref_g)), extra
        assert torch.equal(rng, ref_rng), "the generators after the scan's forward are not the plain loop's"
        assert st.plan is None and st.online_slots == extra + 1
        assert st.forward_steps == st.online_forward_steps == membptt.online_cost(40, budget / carry, alpha)
        assert st.backward_steps == 40
        assert 0 < st.peak_bytes <= budget, (st.peak_bytes, budget)
        seen.add(st.forward_steps)
    assert len(seen) >= 4  # the budgets do change the schedule


def test_iterator_optimal_range_and_errors():
    # Up to (m+1)(m+2)/2 steps the online cost is the offline HSM (revolve) optimum.
    for m in (1, 2, 5):
        for T in range(1, (m + 1) * (m + 2) // 2 + 1):
            hsm = membptt.plan(T, 4 + m - 1, alpha=4, policy="revolve").forward_steps
            assert membptt.online_cost(T, 4 + m - 1, 4.0, backward="hsm") == hsm
            assert membptt.online_cost(T, 4 + m - 1, 4.0) <= hsm  # the MSM backward
    s = membptt.OnlineSchedule(6, 2.0)
    assert s.slots == 5 and s.optimal_up_to == 21
    ops = [op for _ in range(9) for op in s.push()]
    assert sum(1 for k, *_ in ops if membptt.OP_NAMES[k] == "advance") == 9
    T, cost = s.finish()
    rest, chunk = [], s.next_ops()
    while chunk:
        rest += chunk
        chunk = s.next_ops()
    assert T == 10 and cost == membptt.online_cost(10, 6, 2.0)
    assert sum(1 for k, *_ in rest if membptt.OP_NAMES[k] == "backward") == 10
    with pytest.raises(ValueError, match="below the least in which online checkpointing runs: 2 units"):
        membptt.OnlineSchedule(1.5, 2.0)
    with pytest.raises(ValueError, match="online backward 'ism' is not allowed: use msm or hsm"):
        membptt.OnlineSchedule(6, 2.0, backward="ism")

    m, carry = make("min_gru", torch.float64)
    xs = [torch.randn(4, 3, dtype=torch.float64) for _ in range(5)]
    with pytest.raises(ValueError, match="share of plain autograd's memory"):
        scan(m, carry, iter(xs), memory="5%")
    with pytest.raises(ValueError, match="policy 'msm' is not allowed with xs an iterator"):
        scan(m, carry, iter(xs), memory="1MiB", policy="msm")
    with pytest.raises(ValueError, match="xs is empty"):
        scan(m, carry, iter([]), memory="1MiB")
    with pytest.raises(ValueError, match=r"scan: memory budget 10 bytes is below the least in which the online policy "
                                         r"runs \(xs an iterator\): \d+ bytes"):
        scan(m, carry, iter(xs), memory=10)
    with pytest.raises(ValueError, match="x_3 of the iterator has shapes"):
        scan(m, carry, iter(xs[:2] + [torch.randn(2, 3, dtype=torch.float64)]), memory="1MiB")
    # memory=None: plain autograd over the steps (stacked); no gradients: the loop.
    ref_final, ref_ys = scan(m, carry, torch.stack(xs))
    final, ys = scan(m, carry, iter(xs))
    assert torch.equal(final, ref_final) and torch.equal(ys, ref_ys)
    with torch.no_grad():
        final, ys = scan(m, carry, iter(xs), memory="1MiB")
    assert torch.equal(final, ref_final) and torch.equal(ys, ref_ys)


def test_little_memory_warns_bad_strings_are_scans_and_stats_read_well():
    m, carry = make("min_gru", torch.float64)
    xs = torch.randn(200, 4, 3, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"scan: memory='0%' for 200 steps \(\d+ bytes\) leaves so little for the "
                                         r"stored states that the plan runs [\d.]+ forward steps per step"):
        scan(m, carry, xs, memory="0%")[1].sum().backward()
    st = ScanStats()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an ample budget warns of nothing
        scan(m, carry, xs, memory=None, stats=st)[1].sum().backward()
    assert st.budget_bytes == st.plain_bytes  # plain autograd's, not its rounding to whole carries
    assert "params=" not in repr(st) and "peak_bytes=" in repr(st)  # (the tensors stay out of the repr)
    for bad in ("lots", "-5%"):
        with pytest.raises(ValueError, match=rf"^scan: memory budget '{bad}' is not allowed"):
            scan(m, carry, xs, memory=bad)
    with pytest.raises(ValueError, match="a percentage of plain autograd's memory over the scan"):
        scan(m, carry, iter(xs), memory="lots")
