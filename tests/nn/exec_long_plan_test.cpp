// The executor on plans past the exact MSM table (plan/blocked.hpp): the blocked plans and the
// plan that runs every step at most twice keep plain BPTT's bits, cost what they say and hold no
// more than they say, at lengths the table does not reach.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "membptt/plan/planner.hpp"
#include "policy_sweep.hpp"

namespace membptt {
namespace {

TEST(ExecLongPlan, BlockedAndTwiceRunPlansKeepPlainBpttsBits) {
  const NetShape shape{CellType::Gru, 2, 3, 1, 1, 2};
  const std::int64_t T = kMaxTableLength + 2'345;  // past the exact table at any budget
  const test::Problem<double> pr(shape, LossKind::Xent, T, 15);
  const StateSizes sizes = state_sizes(shape, sizeof(double));
  const CostModel model{sizes.alpha(), 2.0};
  const test::Outcome<double> plain = test::run_cpu(pr, make_plan(Policy::Full, T, plain_bptt_units(T, model), model));
  // 12 units: blocked; 3000 units: every step at most twice (optimal).
  for (const double units : {12.0, 3000.0}) {
    const Plan plan = make_plan(Policy::Msm, T, units, model);
    SCOPED_TRACE("budget " + std::to_string(units) + " units, optimal " + std::to_string(plan.optimal));
    EXPECT_EQ(plan.optimal, units > 1000);
    const test::Outcome<double> got = test::run_cpu(pr, plan);
    EXPECT_EQ(got.stats.forward_steps, plan.forward_steps);
    EXPECT_EQ(static_cast<double>(got.stats.peak_arena_bytes), plan.peak_units * static_cast<double>(sizes.hidden_bytes));
    EXPECT_LE(plan.peak_units, units);
    EXPECT_EQ(std::memcmp(&got.stats.loss, &plain.stats.loss, sizeof(double)), 0);
    EXPECT_TRUE(test::same_bits(got.grads, plain.grads));
    EXPECT_TRUE(test::same_bits(got.dh0, plain.dh0));
  }
}

}  // namespace
}  // namespace membptt
