// Every policy, at a grid of budgets, for every cell: the same loss and gradients as plain BPTT,
// bit for bit; the forward steps and the arena's peak exactly as planned.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "membptt/exec/budget.hpp"
#include "membptt/exec/executor.hpp"

namespace membptt {
namespace {

template <class T>
struct Problem {
  NetShape shape;
  LossKind loss;
  std::int64_t T_len;
  std::vector<T> x, y, h0;
  std::vector<std::int64_t> cls;
  Params<T> params;

  Problem(NetShape s, LossKind l, std::int64_t len, std::uint64_t seed)
      : shape(s), loss(l), T_len(len), params(s) {
    init_pytorch_default(params, seed);
    std::mt19937_64 rng(seed + 1);
    std::uniform_real_distribution<double> u(-1, 1);
    x.resize(static_cast<std::size_t>(len * s.batch * s.input_size));
    for (auto& v : x) v = static_cast<T>(u(rng));
    cls.resize(static_cast<std::size_t>(len * s.batch));
    for (auto& c : cls) c = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(s.output_size));
    y.resize(static_cast<std::size_t>(s.batch * s.output_size));
    for (auto& v : y) v = static_cast<T>(u(rng));
    RecurrentNet<T> net(s);
    h0.resize(net.carry_elems());
    for (auto& v : h0) v = static_cast<T>(0.5 * u(rng));
  }
  SequenceBatch<T> batch() const { return {T_len, x.data(), cls.data(), y.data(), h0.data()}; }
};

template <class T>
struct Outcome {
  RunStats stats;
  std::vector<T> grads, dh0, final_carry;
  std::size_t arena_bytes = 0;
};

template <class T>
Outcome<T> run_plan(const Problem<T>& pr, const Plan& plan) {
  Executor<T> ex(pr.shape, pr.loss, plan);
  Params<T> grads(pr.shape);
  Outcome<T> out;
  out.dh0.resize(ex.net().carry_elems());
  out.final_carry.resize(ex.net().carry_elems());
  out.stats = ex.run(pr.params, pr.batch(), grads, out.final_carry.data(), out.dh0.data());
  out.grads.assign(grads.data(), grads.data() + grads.size());
  out.arena_bytes = ex.arena_bytes();
  return out;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class T>
void check_all_policies(CellType cell, int layers, LossKind loss) {
  const NetShape shape{cell, 4, 5, layers, 3, 3};
  const std::int64_t len = 23;
  Problem<T> pr(shape, loss, len, 7 + static_cast<int>(cell) * 10 + layers);
  const StateSizes sizes = state_sizes(shape, sizeof(T));
  const CostModel model{sizes.alpha(), 2.0};
  const Outcome<T> plain = run_plan(pr, make_plan(Policy::Full, len, plain_bptt_units(len, model), model));
  ASSERT_EQ(plain.stats.forward_steps, len);
  ASSERT_EQ(plain.stats.peak_arena_bytes, static_cast<std::size_t>(len) * sizes.internal_bytes);

  for (Policy pol : kAllPolicies) {
    const double least = least_budget(pol, len, model);
    for (double extra : {0.0, 1.0, 2.0, 5.0, 13.0, 40.0}) {
      const double budget = least + extra;
      const Plan plan = make_plan(pol, len, budget, model);
      const Outcome<T> got = run_plan(pr, plan);
      SCOPED_TRACE(std::string(policy_name(pol)) + " budget " + std::to_string(budget));
      EXPECT_EQ(got.stats.forward_steps, plan.forward_steps);
      EXPECT_EQ(got.stats.backward_steps, len);
      EXPECT_EQ(got.stats.peak_arena_bytes, got.arena_bytes);
      EXPECT_EQ(static_cast<double>(got.stats.peak_arena_bytes), plan.peak_units * static_cast<double>(sizes.hidden_bytes));
      EXPECT_LE(static_cast<double>(got.stats.peak_arena_bytes), budget * static_cast<double>(sizes.hidden_bytes));
      EXPECT_EQ(std::memcmp(&got.stats.loss, &plain.stats.loss, sizeof(double)), 0);
      EXPECT_TRUE(same_bits(got.grads, plain.grads));
      EXPECT_TRUE(same_bits(got.dh0, plain.dh0));
      EXPECT_TRUE(same_bits(got.final_carry, plain.final_carry));
    }
  }
}

TEST(ExecBitwise, LstmFloat) { check_all_policies<float>(CellType::Lstm, 1, LossKind::Xent); }
TEST(ExecBitwise, LstmTwoLayersDoubleMse) { check_all_policies<double>(CellType::Lstm, 2, LossKind::MseLast); }
TEST(ExecBitwise, GruFloat) { check_all_policies<float>(CellType::Gru, 1, LossKind::Xent); }
TEST(ExecBitwise, GruTwoLayersDouble) { check_all_policies<double>(CellType::Gru, 2, LossKind::Xent); }
TEST(ExecBitwise, RnnFloatMse) { check_all_policies<float>(CellType::Rnn, 1, LossKind::MseLast); }
TEST(ExecBitwise, RnnTwoLayersDouble) { check_all_policies<double>(CellType::Rnn, 2, LossKind::Xent); }

// A pass that throws part way (a class target out of range at step 5) leaves nothing behind: the
// next pass's loss is the loss a fresh executor computes, bit for bit.
TEST(ExecBitwise, APassThatThrewLeavesNoLossBehind) {
  const NetShape shape{CellType::Lstm, 3, 8, 1, 2, 4};
  Problem<double> pr(shape, LossKind::Xent, 12, 9);
  const Plan plan = plan_for_bytes(Policy::Full, pr.T_len, 1e9, state_sizes(shape, sizeof(double)), 2.0);
  Executor<double> ex(shape, LossKind::Xent, plan);
  Params<double> grads(shape);
  Problem<double> bad = pr;
  bad.cls[4 * 2] = 99;  // step 5, row 0; the backward pass meets steps 12..6 first
  EXPECT_THROW(ex.run(bad.params, bad.batch(), grads), std::invalid_argument);
  grads.zero();
  const double again = ex.run(pr.params, pr.batch(), grads).loss;
  const double fresh = run_plan(pr, plan).stats.loss;
  EXPECT_EQ(std::memcmp(&again, &fresh, sizeof(double)), 0) << again << " vs " << fresh;
}

TEST(ExecBudget, BytesBudgetNamesTheLeastThatWorks) {
  const NetShape shape{CellType::Lstm, 4, 8, 1, 2, 3};
  const StateSizes sizes = state_sizes(shape, sizeof(float));
  EXPECT_EQ(sizes.internal_bytes, 4 * sizes.hidden_bytes);  // LSTM: alpha = 4
  try {
    plan_for_bytes(std::nullopt, 100, 10.0, sizes, 2.0);
    FAIL() << "no error";
  } catch (const PlanError& e) {
    EXPECT_NE(std::string(e.what()).find("below the least"), std::string::npos) << e.what();
  }
  const double budget = static_cast<double>(sizes.workspace_bytes) + 0.05 * 100 * static_cast<double>(sizes.internal_bytes);
  const Plan p = plan_for_bytes(std::nullopt, 100, budget, sizes, 2.0);
  EXPECT_EQ(p.policy, Policy::Msm);
  EXPECT_LE(static_cast<double>(sizes.workspace_bytes) + p.peak_units * static_cast<double>(sizes.hidden_bytes), budget);
}

}  // namespace
}  // namespace membptt

namespace membptt {
namespace {

TEST(ExecBudget, ParsesBytesUnitsAndPercent) {
  EXPECT_DOUBLE_EQ(parse_budget("1048576").value, 1048576);
  EXPECT_DOUBLE_EQ(parse_budget("64MiB").value, 64.0 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(parse_budget("500KB").value, 500e3);
  EXPECT_DOUBLE_EQ(parse_budget("1e6").value, 1e6);
  EXPECT_TRUE(parse_budget("5%").percent);
  EXPECT_DOUBLE_EQ(parse_budget("5%").value, 5);
  for (const char* bad : {"", "abc", " 5%", "0x10", "5 parsecs", "-3MiB", "nan", "inf"})
    EXPECT_THROW(parse_budget(bad), PlanError) << bad;
}

}  // namespace
}  // namespace membptt
