// Bidirectional stacks run layer by layer (exec/bidirectional.hpp): every policy at a grid of
// budgets gives plain BPTT's outputs, final carry and gradients bit for bit, inside its budget;
// the gradients match central differences in double (with and without dropout); budgets below
// the least name it. PyTorch's own bidirectional modules are compared in python/tests.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "membptt/exec/bidirectional.hpp"

namespace membptt::test {
namespace {

NetShape bi(CellType cell, int input, int hidden, int layers, int batch, bool bias = true, int proj = 0,
            Nonlinearity nl = Nonlinearity::Tanh, double dropout = 0) {
  NetShape s{cell, input, hidden, layers, batch, 1, bias, nl, proj, dropout};
  s.bidirectional = true;
  return s;
}

std::size_t rnn_weights(const NetShape& s) { return param_count(s) - static_cast<std::size_t>(2 * output_width(s) + 1); }

struct Data {
  NetShape s;
  std::int64_t T;
  std::vector<double> w, x, h0, dy, dhn;
  Data(const NetShape& shape, std::int64_t length) : s(shape), T(length) {
    const std::size_t carry = carry_elems(s), out = static_cast<std::size_t>(T) * s.batch * 2 * output_width(s);
    auto filled = [](std::size_t n, std::uint64_t seed) {
      std::vector<double> v(n);
      fill_uniform<double>(v, 0.6, seed);
      return v;
    };
    w = filled(rnn_weights(s), 1);
    x = filled(static_cast<std::size_t>(T) * s.batch * s.input_size, 2);
    h0 = filled(carry, 3);
    dy = filled(out, 4);
    dhn = filled(carry, 5);
  }
};

struct Result {
  std::vector<double> y, hn, dx, dh0, dw;
  RunStats fwd, bwd;
  std::size_t held = 0;
  std::int64_t planned = 0;
  double loss = 0;  // sum(y * dy) + sum(hn * dhn): the loss whose gradients these are
};

Result run(const Data& d, const BidirectionalPlans& plans, bool dropout = false) {
  BidirectionalStack<double> stack(d.s, plans);
  stack.set_dropout(dropout, 77);
  Result r;
  r.y.resize(d.dy.size());
  r.hn.resize(d.h0.size());
  r.dx.resize(d.x.size());
  r.dh0.resize(d.h0.size());
  r.dw.resize(d.w.size());
  r.fwd = stack.forward(d.w.data(), d.x.data(), d.T, d.h0.data(), r.y.data(), r.hn.data());
  EXPECT_TRUE(stack.waiting());
  r.bwd = stack.backward(d.w.data(), d.dy.data(), d.dhn.data(), r.dx.data(), r.dh0.data(), r.dw.data());
  EXPECT_FALSE(stack.waiting());
  r.held = stack.arena_bytes() + stack.workspace_bytes() + stack.held_bytes();
  r.planned = stack.planned_forward_steps();
  for (std::size_t i = 0; i < r.y.size(); ++i) r.loss += r.y[i] * d.dy[i];
  for (std::size_t i = 0; i < r.hn.size(); ++i) r.loss += r.hn[i] * d.dhn[i];
  return r;
}

void expect_same_bits(const Result& a, const Result& b, const std::string& what) {
  EXPECT_EQ(a.y, b.y) << what;
  EXPECT_EQ(a.hn, b.hn) << what;
  EXPECT_EQ(a.dx, b.dx) << what;
  EXPECT_EQ(a.dh0, b.dh0) << what;
  EXPECT_EQ(a.dw, b.dw) << what;
}

const std::vector<NetShape>& shapes() {
  static const std::vector<NetShape> all = {
      bi(CellType::Lstm, 3, 4, 2, 2),
      bi(CellType::Lstm, 3, 5, 3, 2, true, 2),  // projections, three layers
      bi(CellType::Gru, 2, 3, 2, 3, false),
      bi(CellType::Rnn, 3, 4, 1, 2, true, 0, Nonlinearity::Relu),
  };
  return all;
}

TEST(Bidirectional, EveryPolicyEqualsPlainBpttBitwiseWithinItsBudget) {
  const std::int64_t T = 19;
  for (const NetShape& s : shapes()) {
    const Data d(s, T);
    const Result full = run(d, plan_bidirectional(Policy::Full, s, T, std::nullopt, sizeof(double), 2.0));
    EXPECT_EQ(full.fwd.forward_steps, 2 * s.num_layers * T);
    EXPECT_EQ(full.bwd.backward_steps, 2 * s.num_layers * T);
    const double plain = bidirectional_plain_bytes(s, T, sizeof(double));
    EXPECT_LE(static_cast<double>(full.held), plain);
    for (const Policy p : {Policy::Hsm, Policy::Ism, Policy::Msm}) {
      const double least = bidirectional_least_bytes(p, s, T, sizeof(double));
      for (const double share : {0.0, 0.1, 0.4, 1.0}) {
        const double budget = least + share * (plain - least);
        const std::string what = std::string(cell_name(s.cell)) + " L=" + std::to_string(s.num_layers) + " " +
                                 std::string(policy_name(p)) + " budget " + std::to_string(budget);
        const Result r = run(d, plan_bidirectional(p, s, T, budget, sizeof(double), 2.0));
        expect_same_bits(r, full, what);
        EXPECT_EQ(r.bwd.forward_steps, r.planned) << what;  // no step more than the plans say
        EXPECT_LE(static_cast<double>(r.held), budget) << what;
        if (share == 0.0 && p == Policy::Msm) {
          EXPECT_GT(r.bwd.forward_steps, full.bwd.forward_steps) << what;
        }
      }
    }
  }
}

// Central differences of sum(y * dy) + sum(hn * dhn) against the gradients, in double.
void check_gradients(const NetShape& s, bool dropout) {
  Data d(s, 7);
  const BidirectionalPlans plans = plan_bidirectional(
      Policy::Msm, s, d.T, bidirectional_least_bytes(Policy::Msm, s, d.T, sizeof(double)), sizeof(double), 2.0);
  const Result base = run(d, plans, dropout);
  const double h = 1e-6;
  auto probe = [&](std::vector<double>& v, const std::vector<double>& grad, const char* name) {
    for (std::size_t i = 0; i < v.size(); i += 1 + v.size() / 23) {
      const double keep = v[i];
      v[i] = keep + h;
      const double up = run(d, plans, dropout).loss;
      v[i] = keep - h;
      const double down = run(d, plans, dropout).loss;
      v[i] = keep;
      EXPECT_NEAR(grad[i], (up - down) / (2 * h), 1e-7) << name << "[" << i << "] " << cell_name(s.cell);
    }
  };
  probe(d.x, base.dx, "x");
  probe(d.h0, base.dh0, "h0");
  probe(d.w, base.dw, "w");
}

TEST(Bidirectional, GradientsMatchCentralDifferences) {
  for (const NetShape& s : shapes()) check_gradients(s, false);
}

TEST(Bidirectional, DropoutBetweenLayers) {
  const NetShape s = bi(CellType::Lstm, 3, 4, 3, 2, true, 0, Nonlinearity::Tanh, 0.5);
  check_gradients(s, true);
  const Data d(s, 15);
  const Result full = run(d, plan_bidirectional(Policy::Full, s, d.T, std::nullopt, sizeof(double), 2.0), true);
  const Result off = run(d, plan_bidirectional(Policy::Full, s, d.T, std::nullopt, sizeof(double), 2.0), false);
  EXPECT_NE(full.y, off.y);  // the masks change the top layer's input
  const double least = bidirectional_least_bytes(Policy::Msm, s, d.T, sizeof(double));
  expect_same_bits(run(d, plan_bidirectional(Policy::Msm, s, d.T, least, sizeof(double), 2.0), true), full, "msm");
  NetShape zero = s;
  zero.dropout = 0;
  expect_same_bits(run(Data(zero, 15), plan_bidirectional(Policy::Full, zero, 15, std::nullopt, sizeof(double), 2.0), true),
                   off, "p = 0");
}

TEST(Bidirectional, InferenceEqualsTheTrainingForward) {
  for (const NetShape& s : shapes()) {
    const Data d(s, 11);
    const Result r = run(d, plan_bidirectional(Policy::Msm, s, d.T, std::nullopt, sizeof(double), 2.0));
    std::vector<double> y(r.y.size()), hn(r.hn.size());
    bidirectional_infer<double>(s, d.w.data(), d.x.data(), d.T, d.h0.data(), y.data(), hn.data(), false, 0);
    EXPECT_EQ(y, r.y);
    EXPECT_EQ(hn, r.hn);
  }
}

TEST(Bidirectional, BudgetBelowTheLeastNamesItAndWhatGrowsWithTheLength) {
  const NetShape s = bi(CellType::Lstm, 3, 4, 2, 2);
  const double least = bidirectional_least_bytes(Policy::Msm, s, 1000, sizeof(float));
  try {
    (void)plan_bidirectional(Policy::Msm, s, 1000, least - 1, sizeof(float), 2.0);
    FAIL() << "no error";
  } catch (const PlanError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(std::to_string(static_cast<long long>(least)) + " bytes"), std::string::npos) << m;
    EXPECT_NE(m.find("growing with the length"), std::string::npos) << m;
  }
  // The held sequences grow with T: twice the length, more than twice their bytes' share.
  EXPECT_GT(bidirectional_least_bytes(Policy::Msm, s, 2000, sizeof(float)), 1.9 * least);
}

// Layer 0's chains and those above differ in size (their inputs are I and 2R wide; a backend's
// scratch may grow with the input, as libxsmm's transposes do). Here the chains above get a
// workspace 5000 bytes larger. The budget is split by what each chain needs: at plain BPTT's
// memory every chain is plain BPTT, policy full needs exactly that, and a budget between the least
// and plain holds every chain within its share (an even split put the larger chains over theirs).
TEST(Bidirectional, ChainsOfDifferentSizesShareTheBudgetByWhatEachNeeds) {
  NetShape s{CellType::Lstm, 3, 5, 3, 2, 4};
  s.bidirectional = true;
  const std::int64_t T = 40;
  const ChainSizes sizes = [&](const NetShape& c) {
    StateSizes z = state_sizes(c, sizeof(double));
    if (c.input_size != s.input_size) z.workspace_bytes += 5000;
    return z;
  };
  const double plain = bidirectional_plain_bytes(s, T, sizeof(double), sizes);
  EXPECT_DOUBLE_EQ(bidirectional_least_bytes(Policy::Full, s, T, sizeof(double), sizes), plain);
  const BidirectionalPlans full = plan_bidirectional(Policy::Full, s, T, plain, sizeof(double), 2.0, sizes);
  const BidirectionalPlans msm = plan_bidirectional(Policy::Msm, s, T, plain, sizeof(double), 2.0, sizes);
  for (int l = 0; l < s.num_layers; ++l) {
    EXPECT_EQ(full.layer[static_cast<std::size_t>(l)]->forward_steps, T) << "layer " << l;
    EXPECT_EQ(msm.layer[static_cast<std::size_t>(l)]->forward_steps, T) << "layer " << l;
  }
  const double least = bidirectional_least_bytes(Policy::Msm, s, T, sizeof(double), sizes);
  for (const double share : {0.0, 0.3, 0.7}) {
    const double budget = least + share * (plain - least);
    const BidirectionalPlans p = plan_bidirectional(Policy::Msm, s, T, budget, sizeof(double), 2.0, sizes);
    double held = p.held_bytes;
    for (int l = 0; l < s.num_layers; ++l) {
      const StateSizes z = sizes(chain_shape(s, l));
      const Plan& plan = *p.layer[static_cast<std::size_t>(l)];
      held += 2.0 * (static_cast<double>(z.workspace_at(T)) + plan.peak_units * static_cast<double>(z.hidden_bytes));
    }
    EXPECT_LE(held, budget * (1 + 1e-12)) << "share " << share;
  }
}

TEST(Bidirectional, LayoutNamesAndSizesArePyTorchs) {
  const NetShape s = bi(CellType::Lstm, 3, 5, 2, 1, true, 2);
  const auto v = param_layout(s);
  ASSERT_GE(v.size(), 10u);
  EXPECT_EQ(v[5].name, "rnn.weight_ih_l0_reverse");
  EXPECT_EQ(v[10].name, "rnn.weight_ih_l1");
  EXPECT_EQ(v[10].shape, (std::vector<std::int64_t>{20, 4}));  // 4H x 2P
  EXPECT_EQ(v[14].name, "rnn.weight_hr_l1");
  EXPECT_EQ(v[19].name, "rnn.weight_hr_l1_reverse");
  EXPECT_EQ(v[20].name, "head.weight");
  EXPECT_EQ(v[20].shape, (std::vector<std::int64_t>{1, 4}));
  EXPECT_EQ(carry_elems(s), std::size_t(4 * 1 * 2 + 4 * 1 * 5));
  EXPECT_THROW(RecurrentNet<double>{s}, std::invalid_argument);
}

}  // namespace
}  // namespace membptt::test
