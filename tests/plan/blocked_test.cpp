// MSM past the exact table (blocked.hpp): the lower bound never exceeds the exact optimum, every
// blocked schedule is valid and within its budget, and long plans are certified close to optimal.
#include "membptt/plan/blocked.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "membptt/plan/binomial.hpp"
#include "membptt/plan/planner.hpp"
#include "membptt/schedule/simulator.hpp"

namespace membptt {
namespace {

SimulationReport simulate_oracle(const SplitOracle& oracle, std::int64_t length, std::int64_t free_ticks, MemoryGrid g,
                                 double alpha, double budget) {
  ScheduleGenerator gen(oracle, length, free_ticks, g);
  Simulator sim(length, alpha, budget);
  Op op{};
  while (gen.next(op))
    if (!sim.apply(op)) break;
  return sim.finish();
}

TEST(Blocked, LowerBoundNeverExceedsTheExactOptimum) {
  for (double alpha : {1.0, 1.25, 1.5, 1.75, 2.0, 3.0, 4.0, 5.0}) {
    const MemoryGrid g = MemoryGrid::for_alpha(alpha);
    const std::int64_t T = 200, F = std::max<std::int64_t>(40 * g.hidden, g.internal * T / 2);
    const DpTable msm(DpFamily::Msm, T, F, g);
    std::int64_t above_length = 0;
    for (std::int64_t f = 0; f <= F; ++f)
      for (std::int64_t t = 1; t <= T; ++t) {
        const std::int64_t lb = msm_lower_bound(t, f, g);
        ASSERT_LE(lb, msm.cost(t, f)) << "alpha=" << alpha << " t=" << t << " f=" << f;
        above_length += lb > t;
      }
    EXPECT_GT(above_length, 0) << "the bound says more than 'every step once' somewhere, alpha=" << alpha;
  }
}

// Where every step can run at most twice (internal states only, segments shrinking by one), the
// plan meets the lower bound: it is optimal, and equals the exact table.
TEST(Blocked, RunningEveryStepAtMostTwiceIsOptimalWhereItFits) {
  for (double alpha : {1.0, 1.5, 2.0, 4.0, 5.0}) {
    const MemoryGrid g = MemoryGrid::for_alpha(alpha);
    const std::int64_t T = 160, F = 12 * g.internal;
    const DpTable exact(DpFamily::Msm, T, F, g);
    std::int64_t checked = 0;
    for (std::int64_t f = 0; f <= F; ++f)
      for (std::int64_t t = 2; t <= T; ++t) {
        const BlockedMsm b = choose_blocked_msm(t, f, g, 1'000, 1'000);
        if (b.block != 0) break;  // past the twice-run plan's reach for this f
        const SimulationReport r = simulate_oracle(*b.oracle, t, f, g, alpha, alpha + g.units_of(f));
        ASSERT_TRUE(r.ok) << r.error;
        ASSERT_EQ(r.forward_steps, exact.cost(t, f)) << "alpha=" << alpha << " t=" << t << " f=" << f;
        ASSERT_EQ(r.forward_steps, msm_lower_bound(t, f, g)) << "alpha=" << alpha << " t=" << t << " f=" << f;
        ++checked;
      }
    EXPECT_GT(checked, 100) << "alpha=" << alpha;
  }
  // Issue 15's T = 10^6 with 10,000 units: exact, proven, in well under a second.
  const Plan p = make_plan(Policy::Msm, 1'000'000, 10'000, CostModel{4.0, 2.0});
  EXPECT_TRUE(p.optimal);
  EXPECT_EQ(p.forward_steps, 2 * 1'000'000 - (9'996 / 4 + 1));
}

// Small caps force both blocked plans at lengths the exact table also solves.
TEST(Blocked, EveryBlockedScheduleIsValidWithinBudgetAndNearTheOptimum) {
  for (double alpha : {1.5, 2.0, 4.0, 5.0}) {
    const MemoryGrid g = MemoryGrid::for_alpha(alpha);
    for (std::int64_t T : {97, 500, 1201}) {
      for (double share : {0.02, 0.05, 0.2}) {
        const double budget = alpha + share * alpha * static_cast<double>(T);
        const std::int64_t F = g.ticks_of(budget - alpha);
        if (T * F > 400'000) continue;  // keep the exact tables small
        const DpTable exact(DpFamily::Msm, T, F, g);
        for (std::int64_t dp_cells : {std::int64_t{1}, std::int64_t{400'000}}) {
          const BlockedMsm b = choose_blocked_msm(T, F, g, 3'000, dp_cells);
          const SimulationReport r = simulate_oracle(*b.oracle, T, F, g, alpha, budget);
          const std::string where = "alpha=" + std::to_string(alpha) + " T=" + std::to_string(T) +
                                    " share=" + std::to_string(share) + " dp_cells=" + std::to_string(dp_cells);
          ASSERT_TRUE(r.ok) << r.error << " " << where;
          EXPECT_LE(r.peak_units, budget + 1e-9) << where;
          EXPECT_EQ(r.forward_steps, b.forward_steps) << where;
          EXPECT_GE(r.forward_steps, exact.cost(T, F)) << where;
          EXPECT_LE(r.forward_steps, hsm_cost(T, F / g.hidden + 1)) << "never worse than Revolve: " << where;
          if (dp_cells > 1) {
            EXPECT_LE(static_cast<double>(r.forward_steps), 1.15 * static_cast<double>(exact.cost(T, F))) << where;
          }
        }
      }
    }
  }
}

TEST(Blocked, TheDynamicProgramOverBlocksComesCloseWhereTheTableRuns) {
  // T = 6000 with 200 units at alpha = 4: the exact table (1.2 million cells) against the blocked plan.
  const MemoryGrid g = MemoryGrid::for_alpha(4.0);
  const std::int64_t T = 6'000, F = 196;
  const DpTable exact(DpFamily::Msm, T, F, g);
  const BlockedMsm b = choose_blocked_msm(T, F, g, kBlockedTableCells, kBlockDpCells);
  const SimulationReport r = simulate_oracle(*b.oracle, T, F, g, 4.0, 200.0);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_GE(r.forward_steps, exact.cost(T, F));
  EXPECT_LE(static_cast<double>(r.forward_steps), 1.005 * static_cast<double>(exact.cost(T, F)));
}

TEST(Blocked, LongPlansAreValidAndCertified) {
  struct Case {
    double alpha;
    std::int64_t length;
    double units;
    double certified;  // forward steps / lower bound at most this (measured 1, 1, 1.016, 1, 1.055, 1)
  };
  for (const Case c : {Case{4.0, 1'000'000, 10'000, 1.002}, Case{2.0, 1'000'000, 10'000, 1.002}, Case{5.0, 100'000, 1'000, 1.02},
                       Case{3.3, 1'000'000, 10'000, 1.03}, Case{4.0, 100'000, 200, 1.06}, Case{4.0, 100'000, 200'000, 1.003}}) {
    const CostModel m{c.alpha, 2.0};
    const Plan p = make_plan(Policy::Msm, c.length, c.units, m);
    const std::string where = "alpha=" + std::to_string(c.alpha) + " T=" + std::to_string(c.length);
    EXPECT_LE(p.peak_units, c.units + 1e-9) << where;
    EXPECT_LE(p.lower_bound, p.forward_steps) << where;
    EXPECT_LE(static_cast<double>(p.forward_steps), c.certified * static_cast<double>(p.lower_bound)) << where;
    EXPECT_LE(p.forward_steps, hsm_cost(c.length, p.free_ticks / p.grid.hidden + 1)) << where;
    const Plan a = make_auto_plan(c.length, c.units, m);
    EXPECT_EQ(a.policy, Policy::Msm);
    EXPECT_EQ(a.forward_steps, p.forward_steps);
  }
}

// The least budget (one internal state, nothing free) past the table: the quadratic plan, no crash.
TEST(Blocked, TheLeastBudgetPastTheTablePlansQuadratic) {
  for (double alpha : {1.0, 3.3, 4.0}) {
    const CostModel m{alpha, 2.0};
    const std::int64_t T = kMaxTableLength + 1;
    const Plan p = make_plan(Policy::Msm, T, least_budget(Policy::Msm, T, m), m);
    EXPECT_EQ(p.forward_steps, T * (T + 1) / 2) << "alpha=" << alpha;
    EXPECT_TRUE(p.optimal);
  }
}

TEST(Blocked, HsmPastTheTableIsTheClosedFormAndIsmIsRefused) {
  const CostModel m{4.0, 2.0};
  const Plan hsm = make_plan(Policy::Hsm, 1'000'000, 10'000, m);
  EXPECT_TRUE(hsm.optimal);
  EXPECT_EQ(hsm.forward_steps, hsm_cost(1'000'000, hsm.free_ticks + 1));
  EXPECT_EQ(hsm.forward_steps, make_plan(Policy::Revolve, 1'000'000, 10'000, m).forward_steps);
  // ISM where every step runs at most twice is that optimal plan; past it, refused.
  const Plan ism = make_plan(Policy::Ism, 1'000'000, 10'000, m);
  EXPECT_TRUE(ism.optimal);
  EXPECT_EQ(ism.forward_steps, make_plan(Policy::Msm, 1'000'000, 10'000, m).forward_steps);
  try {
    make_plan(Policy::Ism, 1'000'000, 1'000, m);
    ADD_FAILURE() << "ISM past the table must be refused";
  } catch (const PlanError& e) {
    EXPECT_NE(std::string(e.what()).find("policy msm plans any length"), std::string::npos) << e.what();
  }
  const auto curve = cost_curve(Policy::Msm, 200'000, m, {1'000, 4'000});
  ASSERT_EQ(curve.size(), 2u);
  EXPECT_GT(curve[0].forward_steps, curve[1].forward_steps);
}

}  // namespace
}  // namespace membptt
