// The CPU cell's deferred weight gradients (recurrent_net.hpp, defer_steps > 1): groups of any
// size give the per-step gradients to rounding (and dL/dh, dL/dx bit for bit: they are not
// deferred), a group is open until flush() or a backward() for another buffer, and the executor
// groups the weight gradients of large layers while every policy keeps plain BPTT's bits.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "membptt/cells/recurrent_net.hpp"
#include "membptt/exec/budget.hpp"
#include "policy_sweep.hpp"

namespace membptt {
namespace {

struct Pass {
  std::vector<double> grads, dh0, dx;
};

// advance_record over T steps, then backward T..1 with a fixed gradient at every step's top h.
Pass run(const NetShape& s, int defer, int T, bool dropout, Params<double>* grads_out = nullptr) {
  RecurrentNet<double> net(s, defer);
  Params<double> p(s), g(s);
  init_pytorch_default(p, 3);
  const std::size_t xs = static_cast<std::size_t>(s.batch) * static_cast<std::size_t>(s.input_size);
  std::vector<double> x(static_cast<std::size_t>(T) * xs), recs(static_cast<std::size_t>(T) * net.record_elems()),
      carry(net.carry_elems(), 0.1), dcarry(net.carry_elems(), 0.0), dtop(static_cast<std::size_t>(s.batch) * output_width(s));
  fill_uniform<double>(x, 1.0, 4);
  fill_uniform<double>(dtop, 1.0, 5);
  net.begin_pass(x.data(), T);
  net.set_dropout(dropout, 9);
  for (int t = 0; t < T; ++t) {
    double* r = recs.data() + static_cast<std::size_t>(t) * net.record_elems();
    net.advance_record(p, x.data() + static_cast<std::size_t>(t) * xs, carry.data(), r);
    std::copy_n(net.record_carry_out(r), carry.size(), carry.data());
  }
  Pass out;
  out.dx.resize(x.size());
  for (int t = T - 1; t >= 0; --t) {
    double* dh = net.top_hidden(dcarry.data());
    for (std::size_t k = 0; k < dtop.size(); ++k) dh[k] += dtop[k];
    net.backward(p, x.data() + static_cast<std::size_t>(t) * xs, recs.data() + static_cast<std::size_t>(t) * net.record_elems(),
                 dcarry.data(), dcarry.data(), g, out.dx.data() + static_cast<std::size_t>(t) * xs);
  }
  net.flush();
  out.grads.assign(g.data(), g.data() + g.size());
  out.dh0 = dcarry;
  if (grads_out) std::copy_n(g.data(), g.size(), grads_out->data());
  return out;
}

NetShape shape(CellType cell, int layers, bool bias, int proj, double dropout, Nonlinearity nl = Nonlinearity::Tanh) {
  return NetShape{cell, 3, 5, layers, 2, 1, bias, nl, proj, dropout};
}

TEST(CellsDeferred, GroupsOfAnySizeGiveThePerStepGradients) {
  const NetShape shapes[] = {shape(CellType::Lstm, 2, true, 3, 0.3), shape(CellType::Gru, 2, true, 0, 0.4),
                             shape(CellType::Rnn, 1, false, 0, 0, Nonlinearity::Relu),
                             shape(CellType::Lstm, 1, false, 0, 0)};
  for (const NetShape& s : shapes) {
    const Pass ref = run(s, 1, 11, s.dropout > 0);
    for (int k : {2, 3, 8, 16}) {
      SCOPED_TRACE(std::string(cell_name(s.cell)) + " L=" + std::to_string(s.num_layers) + " groups of " +
                   std::to_string(k));
      const Pass got = run(s, k, 11, s.dropout > 0);
      EXPECT_EQ(got.dh0, ref.dh0);  // not deferred: the same kernels in the same order
      EXPECT_EQ(got.dx, ref.dx);
      double scale = 0, diff = 0;
      for (std::size_t i = 0; i < ref.grads.size(); ++i) {
        scale = std::max(scale, std::abs(ref.grads[i]));
        diff = std::max(diff, std::abs(got.grads[i] - ref.grads[i]));
      }
      EXPECT_GT(scale, 0);
      EXPECT_LE(diff, 1e-12 * scale);
      EXPECT_NE(got.grads, std::vector<double>(got.grads.size(), 0.0));
    }
  }
  EXPECT_THROW(RecurrentNet<double>(shapes[0], 0), std::invalid_argument);
}

TEST(CellsDeferred, AGroupIsOpenUntilFlushOrAnotherBuffer) {
  const NetShape s = shape(CellType::Lstm, 1, true, 0, 0);
  RecurrentNet<double> net(s, 4);
  Params<double> p(s), g1(s), g2(s);
  init_pytorch_default(p, 3);
  std::vector<double> x(static_cast<std::size_t>(s.batch * s.input_size), 0.5), rec(net.record_elems()),
      carry(net.carry_elems(), 0.2), dcarry(net.carry_elems(), 0.3), dnext(net.carry_elems());
  net.advance_record(p, x.data(), carry.data(), rec.data());
  net.backward(p, x.data(), rec.data(), dcarry.data(), dnext.data(), g1);
  const std::vector<double> zeros(g1.size(), 0.0);
  EXPECT_EQ(std::vector<double>(g1.data(), g1.data() + g1.size()), zeros);  // held in the group
  net.backward(p, x.data(), rec.data(), dcarry.data(), dnext.data(), g2);    // another buffer: g1's group is added
  EXPECT_NE(std::vector<double>(g1.data(), g1.data() + g1.size()), zeros);
  EXPECT_EQ(std::vector<double>(g2.data(), g2.data() + g2.size()), zeros);
  net.flush();
  // One step each, the same step: the same gradients.
  EXPECT_EQ(std::vector<double>(g1.data(), g1.data() + g1.size()), std::vector<double>(g2.data(), g2.data() + g2.size()));
  net.flush();  // nothing open: nothing changes
  EXPECT_EQ(std::vector<double>(g1.data(), g1.data() + g1.size()), std::vector<double>(g2.data(), g2.data() + g2.size()));
}

// Large layers: the executor's net groups their weight gradients as the plan for the length says
// (the same for every budget of that length), the rings are in the workspace every budget of that
// length holds, and every policy at a grid of budgets keeps plain BPTT's bits.
TEST(CellsDeferred, ExecutorGroupsLargeLayersAndEveryPolicyKeepsTheBits) {
  const NetShape small{CellType::Lstm, 4, 5, 2, 3, 3};
  EXPECT_EQ(executor_defer_steps(small), 1);
  EXPECT_EQ(state_sizes(small, sizeof(double)).group_steps(100000), 1);
  const NetShape shapes[] = {NetShape{CellType::Lstm, 8, 128, 1, 2, 3}, NetShape{CellType::Gru, 8, 160, 2, 2, 3}};
  for (const NetShape& s : shapes) {
    SCOPED_TRACE(cell_name(s.cell));
    ASSERT_EQ(executor_defer_steps(s), kExecutorDeferSteps);
    const StateSizes sizes = state_sizes(s, sizeof(double));
    EXPECT_GT(sizes.group_step_bytes, static_cast<std::size_t>(s.batch) * gate_count(s.cell) * s.hidden_size * sizeof(double));
    // Groups grow with the length, up to kExecutorDeferSteps, their rings within 1/200 of plain.
    EXPECT_EQ(sizes.group_steps(1), 1);
    EXPECT_EQ(sizes.group_steps(100000), kExecutorDeferSteps);
    const std::int64_t T = 600;
    const int k = sizes.group_steps(T);
    EXPECT_GT(k, 1);
    EXPECT_LE(static_cast<double>(k) * static_cast<double>(sizes.group_step_bytes),
              static_cast<double>(T) * static_cast<double>(sizes.internal_bytes) / 200.0);
    EXPECT_EQ(sizes.workspace_at(T), sizes.workspace_bytes + static_cast<std::size_t>(k) * sizes.group_step_bytes);
    const Plan full = plan_for_bytes(Policy::Full, T, static_cast<double>(sizes.plain_bptt_bytes(T)), sizes, 2.0);
    const Plan tight = plan_for_bytes(Policy::Msm, T, least_bytes(Policy::Msm, T, sizes), sizes, 2.0);
    EXPECT_EQ(full.weight_gradient_group, k);
    EXPECT_EQ(tight.weight_gradient_group, k);
    // Every policy at a grid of budgets, each plan grouping 3 steps (a short sequence, so that the
    // sweep stays quick): plain BPTT's bits, and the rings in the workspace.
    test::Problem<double> pr(s, LossKind::Xent, 29, 5);
    test::check_all_policies(pr, sizes, test::run_cpu<double>, 3);
  }
}

}  // namespace
}  // namespace membptt
