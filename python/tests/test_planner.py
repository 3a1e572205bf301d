"""membptt.plan and membptt.curve against the command line's planner, the schedule's replay, errors."""
import math

import numpy as np
import pytest

import membptt

CASES = [  # policy, length, memory, unit, alpha
    ("msm", 1000, 5, "percent", 4),
    ("msm", 1000, 200, "slots", 2),
    ("msm", 300, 17.5, "slots", 1.5),
    ("hsm", 1000, 200, "slots", 4),
    ("ism", 200, 30, "percent", 3),
    ("revolve", 1000000, 25, "slots", 4),
    ("msm", 200000, 1000, "slots", 4),
    ("hsm", 200000, 1000, "slots", 4),
    ("chen-sqrt", 500, 100, "percent", 2),
    ("chen-recursive", 500, 100, "percent", 2),
    ("quadratic", 50, 3, "slots", 1),
    ("full", 64, 100, "percent", 5),
]


@pytest.mark.parametrize("policy,length,memory,unit,alpha", CASES)
def test_plan_equals_cli(cli, policy, length, memory, unit, alpha):
    want = cli("plan", "--length", length, "--memory", memory, "--unit", unit, "--alpha", alpha, "--policy", policy,
               "--json")
    got = membptt.plan(length, memory, alpha=alpha, policy=policy, unit="units" if unit == "slots" else unit)
    assert got.policy == want["policy"]
    assert got.length == want["length"]
    assert got.forward_steps == want["forward_ops"]
    assert got.peak_memory == pytest.approx(want["peak_memory"], rel=1e-12)
    assert got.budget == pytest.approx(want["memory"], rel=1e-12)
    assert got.plain_bptt_memory == pytest.approx(want["plain_bptt_memory"], rel=1e-12)
    assert got.time_ratio == pytest.approx(want["time_ratio"], rel=1e-12)
    assert got.max_slots == want["max_slots"]
    assert got.optimal == want["optimal"]
    assert got.lower_bound == want["lower_bound_forward_ops"]


def test_paper_figure():
    for alpha in (2, 3, 4, 5):
        p = membptt.plan(1000, "5%", alpha=alpha)
        assert (p.policy, p.forward_steps) == ("msm", 1950)
        assert p.time_ratio == pytest.approx(1.31666, abs=1e-4)
        assert p.memory_fraction <= 0.05 + 1e-12


def test_ops_equal_cli_schedule(cli):
    want = cli("plan", "--length", 40, "--memory", 12, "--alpha", 2, "--unit", "slots", "--policy", "msm", "--json",
               "--schedule")["ops"]
    got = membptt.plan(40, 12, alpha=2, policy="msm").op_list()
    assert len(got) == len(want)
    for (name, t, slot, count), w in zip(got, want):
        assert (name, t) == (w["op"], w["t"])
        assert slot == w.get("slot", -1)
        assert count == w.get("count", 1)


@pytest.mark.parametrize("policy", membptt.POLICIES)
def test_ops_replay(policy):
    # The schedule run on the abstract machine: forward steps as counted, every step backpropagated
    # once from its own record, in order T..1, the stack never deeper than max_slots.
    p = membptt.plan(120, "20%", alpha=3, policy=policy) if policy not in ("full",) else membptt.plan(120, "100%", alpha=3, policy=policy)
    ops = p.ops
    assert ops.dtype == membptt.OP_DTYPE
    kind = ops["kind"]
    adv, hid, rec, bwd = (membptt.OP_NAMES.index(n) for n in ("advance", "advance_hidden", "advance_record", "backward"))
    forward = int(ops["count"][kind == adv].sum()) + int(np.count_nonzero((kind == hid) | (kind == rec)))
    assert forward == p.forward_steps
    assert ops["t"][kind == bwd].tolist() == list(range(p.length, 0, -1))
    assert int(ops["slot"].max()) + 1 <= p.max_slots
    cursor, stack = 0, {0: ("h", 0)}
    for k, t, slot, count in ops.tolist():
        name = membptt.OP_NAMES[k]
        if name == "advance":
            assert cursor == t - 1
            cursor += count
        elif name in ("advance_hidden", "advance_record"):
            assert cursor == t - 1 and slot == max(stack) + 1
            stack[slot] = ("h" if name == "advance_hidden" else "i", t)
            cursor = t
        elif name == "backward":
            assert stack.pop(slot) == ("i", t) and slot == max(stack, default=-1) + 1
        elif name == "restore":
            kind_, pos = stack[slot]
            assert t == pos
            cursor = t
        elif name == "pop":
            assert stack.pop(slot)[0] == "h"
    assert list(stack) == [0]


def test_auto():
    assert membptt.plan(100, "100%", alpha=4).policy == "full"
    assert membptt.plan(100, 1e30, alpha=4).policy == "full"
    assert membptt.plan(1000, "5%", alpha=4).policy == "msm"
    # Past the exact MSM table: a blocked MSM plan, certified by a lower bound, never worse than revolve.
    big = membptt.plan(1_000_000, 100, alpha=4)
    assert big.policy == "msm" and big.peak_memory <= 100 and not big.optimal
    assert big.lower_bound <= big.forward_steps <= membptt.plan(1_000_000, 100, alpha=4, policy="revolve").forward_steps
    small = membptt.plan(1000, "5%", alpha=4)
    assert small.optimal and small.lower_bound == small.forward_steps


def test_long_msm_plans_exact_or_certified():
    # Issue 15's sizes. T = 10^6 with 10,000 units at alpha = 4: every step runs at most twice, optimal.
    p = membptt.plan(1_000_000, 10_000, alpha=4, policy="msm")
    assert p.optimal and p.peak_memory <= 10_000 and p.forward_steps == p.lower_bound == 2 * 10**6 - 2500
    # T = 10^5 with 1,000 units: a blocked plan, certified within 0.1% of the optimum.
    q = membptt.plan(100_000, 1_000, alpha=4, policy="msm")
    assert not q.optimal and q.peak_memory <= 1_000
    assert q.lower_bound <= q.forward_steps <= 1.001 * q.lower_bound
    assert membptt.plan(1_000_000, 10_000, alpha=4, policy="hsm").optimal  # the closed form past the table


def test_bytes(cli):
    want = cli("plan", "--length", 1000, "--memory", 1048576, "--unit", "bytes", "--hidden-bytes", 16384,
               "--internal-bytes", 65536, "--policy", "msm", "--json")
    for memory in ("1MiB", "1048576"):
        got = membptt.plan(1000, memory, alpha=4, hidden_bytes=16384)
        assert (got.policy, got.forward_steps, got.peak_memory) == ("msm", want["forward_ops"], want["peak_memory"])
    assert membptt.plan(1000, 1048576, alpha=4, unit="bytes", hidden_bytes=16384).forward_steps == want["forward_ops"]
    assert membptt.parse_budget("64MiB") == (64 * 2**20, False)
    assert membptt.parse_budget("5%") == (5.0, True)


@pytest.mark.parametrize("kwargs,named", [
    (dict(length=1000, memory=10, alpha=0.5), "alpha 0.5"),
    (dict(length=0, memory=10), "sequence length 0"),
    (dict(length=-3, memory=10), "sequence length -3"),
    (dict(length=100, memory=3, alpha=4), "below the least in which policy msm runs 100 steps: 4 units"),
    (dict(length=100, memory=10, alpha=4, policy="chen-sqrt"), "below the least in which policy chen-sqrt"),
    (dict(length=100, memory=10, policy="bptt"), "unknown policy 'bptt'"),
    (dict(length=100, memory=10, beta=-1), "beta -1"),
    (dict(length=100, memory=float("nan")), "memory budget nan"),
    (dict(length=100, memory=-5), "memory budget -5"),
    (dict(length=100, memory="12 parsecs"), "unknown unit 'parsecs'"),
    (dict(length=100, memory="64MiB"), "give hidden_bytes="),
    (dict(length=100, memory=5, unit="furlongs"), "unit 'furlongs'"),
    (dict(length=100, memory=1e6, unit="bytes"), "hidden_bytes 0"),
    (dict(length=10**13, memory=10), "sequence length 10000000000000"),
])
def test_errors_name_the_value(kwargs, named):
    with pytest.raises(ValueError) as e:
        membptt.plan(**kwargs)
    msg = str(e.value)
    assert named in msg and "\n" not in msg


def test_type_errors():
    with pytest.raises(TypeError, match="length must be an integer"):
        membptt.plan(10.5, 10)
    with pytest.raises(TypeError, match="alpha must be a number"):
        membptt.plan(10, 10, alpha="4")


def test_curve_monotone_and_equal_to_cli(cli, tmp_path):
    curves = membptt.curve(200, alpha=2, points=12)
    assert set(curves) == set(membptt.POLICIES)
    for name, c in curves.items():
        assert c.dtype == membptt.CURVE_DTYPE
        assert np.all(np.diff(c["budget"]) > 0)
        assert np.all(np.diff(c["forward_steps"]) <= 0), name  # more memory never costs more
        assert np.all(c["forward_steps"] >= 200)
    assert np.all(curves["msm"]["forward_steps"] <= curves["hsm"]["forward_steps"])
    assert np.all(curves["msm"]["forward_steps"] <= curves["ism"]["forward_steps"])
    assert np.array_equal(curves["hsm"]["forward_steps"], curves["revolve"]["forward_steps"])
    csv = tmp_path / "curve.csv"
    cli("curve", "--length", 200, "--alpha", 2, "--points", 12, "--csv", csv, expect_json=False)
    rows = [line.split(",") for line in csv.read_text().splitlines()[1:]]
    want = {}
    for policy, budget, _, steps, _, ratio in rows:
        want.setdefault(policy, []).append((float(budget), int(steps), float(ratio)))
    assert set(want) == set(curves)
    for name, pts in want.items():
        got = curves[name]
        assert got["forward_steps"].tolist() == [s for _, s, _ in pts], name
        assert got["budget"].tolist() == pytest.approx([b for b, _, _ in pts], rel=1e-12)
        assert got["time_ratio"].tolist() == pytest.approx([r for _, _, r in pts], rel=1e-12)


def test_curve_errors():
    with pytest.raises(ValueError, match="points 1 is not allowed"):
        membptt.curve(100, points=1)
    with pytest.raises(ValueError, match="alpha 0.5"):
        membptt.curve(100, alpha=0.5)
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        membptt.curve(100, policies=["nope"])
    # Past the exact table ISM is left out (MSM and revolve plan any length).
    with pytest.warns(UserWarning, match="ism left out"):
        c = membptt.curve(1_000_000, alpha=4, points=3, policies=["ism", "msm", "revolve"])
    assert list(c) == ["msm", "revolve"] and math.isfinite(c["revolve"]["time_ratio"][0])
    assert (c["msm"]["forward_steps"] <= c["revolve"]["forward_steps"]).all()


def test_least_budget():
    assert membptt.least_budget(100, alpha=4) == 4
    assert membptt.least_budget(100, alpha=4, policy="full") == 400
