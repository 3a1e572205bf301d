// Every policy, at a grid of budgets, for every cell: the same loss and gradients as plain BPTT,
// bit for bit; the forward steps and the arena's peak exactly as planned.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "membptt/exec/budget.hpp"
#include "membptt/exec/executor.hpp"
#include "policy_sweep.hpp"

namespace membptt {
namespace {

using test::Problem;

template <class T>
void check_all_policies(CellType cell, int layers, LossKind loss, bool bias = true,
                        Nonlinearity nl = Nonlinearity::Tanh, int proj = 0) {
  const NetShape shape{cell, 4, 5, layers, 3, 3, bias, nl, proj};
  Problem<T> pr(shape, loss, 23, 7 + static_cast<int>(cell) * 10 + layers);
  test::check_all_policies(pr, state_sizes(shape, sizeof(T)), test::run_cpu<T>);
}

TEST(ExecBitwise, LstmFloat) { check_all_policies<float>(CellType::Lstm, 1, LossKind::Xent); }
TEST(ExecBitwise, LstmTwoLayersDoubleMse) { check_all_policies<double>(CellType::Lstm, 2, LossKind::MseLast); }
TEST(ExecBitwise, GruFloat) { check_all_policies<float>(CellType::Gru, 1, LossKind::Xent); }
TEST(ExecBitwise, GruTwoLayersDouble) { check_all_policies<double>(CellType::Gru, 2, LossKind::Xent); }
TEST(ExecBitwise, RnnFloatMse) { check_all_policies<float>(CellType::Rnn, 1, LossKind::MseLast); }
TEST(ExecBitwise, RnnTwoLayersDouble) { check_all_policies<double>(CellType::Rnn, 2, LossKind::Xent); }
// PyTorch's bias=False and the relu RNN.
TEST(ExecBitwise, NoBiasLstmTwoLayersFloat) { check_all_policies<float>(CellType::Lstm, 2, LossKind::Xent, false); }
TEST(ExecBitwise, NoBiasGruDoubleMse) { check_all_policies<double>(CellType::Gru, 1, LossKind::MseLast, false); }
TEST(ExecBitwise, NoBiasRnnTwoLayersFloat) { check_all_policies<float>(CellType::Rnn, 2, LossKind::Xent, false); }
TEST(ExecBitwise, ReluRnnTwoLayersFloat) {
  check_all_policies<float>(CellType::Rnn, 2, LossKind::Xent, true, Nonlinearity::Relu);
}
TEST(ExecBitwise, ReluRnnNoBiasDoubleMse) {
  check_all_policies<double>(CellType::Rnn, 1, LossKind::MseLast, false, Nonlinearity::Relu);
}
// LSTM projections (proj_size): h and the carry of width P. (P = 3 with H = 5: alpha = 4.5, exact in
// binary, so the sweep's byte counts compare exactly.)
TEST(ExecBitwise, ProjLstmTwoLayersFloat) {
  check_all_policies<float>(CellType::Lstm, 2, LossKind::Xent, true, Nonlinearity::Tanh, 3);
}
TEST(ExecBitwise, ProjLstmNoBiasDoubleMse) {
  check_all_policies<double>(CellType::Lstm, 2, LossKind::MseLast, false, Nonlinearity::Tanh, 3);
}

// Dropout between layers: masks keyed by (seed, layer, step, element), so a recomputed step draws
// the same mask and every policy keeps plain BPTT's bits; p = 0 is no dropout, bit for bit.
template <class T>
test::Outcome<T> run_cpu_dropout(const Problem<T>& pr, const Plan& plan, std::uint64_t seed) {
  Executor<T> ex(pr.shape, pr.loss, plan);
  ex.net().set_dropout(true, seed);
  Params<T> grads(pr.shape);
  test::Outcome<T> out;
  out.dh0.resize(ex.net().carry_elems());
  out.final_carry.resize(ex.net().carry_elems());
  out.stats = ex.run(pr.params, pr.batch(), grads, out.final_carry.data(), out.dh0.data());
  out.grads.assign(grads.data(), grads.data() + grads.size());
  out.arena_bytes = ex.arena_bytes();
  out.workspace_bytes = ex.workspace_bytes();
  return out;
}

TEST(ExecBitwise, DropoutEveryPolicyKeepsPlainBpttBits) {
  for (const CellType cell : {CellType::Lstm, CellType::Gru, CellType::Rnn}) {
    SCOPED_TRACE(std::string(cell_name(cell)));
    NetShape shape{cell, 4, 5, 3, 3, 3};
    shape.dropout = 0.4;
    if (cell == CellType::Lstm) shape.proj_size = 3;
    Problem<double> pr(shape, LossKind::Xent, 23, 5);
    const auto plain = test::check_all_policies(
        pr, state_sizes(shape, sizeof(double)),
        [](const Problem<double>& p, const Plan& plan) { return run_cpu_dropout(p, plan, 99); });
    const Plan full = plan_for_bytes(Policy::Full, pr.T_len, 1e12, state_sizes(shape, sizeof(double)), 2.0);
    // Dropout did something, another seed draws other masks, off is the plain network.
    const auto off = test::run_cpu(pr, full);
    EXPECT_FALSE(test::same_bits(off.grads, plain.grads));
    EXPECT_FALSE(test::same_bits(run_cpu_dropout(pr, full, 100).grads, plain.grads));
    // p = 0 with dropout on: the bits of no dropout.
    NetShape zero = shape;
    zero.dropout = 0;
    Problem<double> pz(zero, LossKind::Xent, 23, 5);
    const auto p0 = run_cpu_dropout(pz, full, 99);
    EXPECT_TRUE(test::same_bits(p0.grads, off.grads));
    EXPECT_EQ(std::memcmp(&p0.stats.loss, &off.stats.loss, sizeof(double)), 0);
  }
}

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
  const double fresh = test::run_cpu(pr, plan).stats.loss;
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

