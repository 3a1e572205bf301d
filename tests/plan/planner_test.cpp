#include "membptt/plan/planner.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "membptt/plan/binomial.hpp"
#include "membptt/plan/dp.hpp"
#include "membptt/schedule/simulator.hpp"

namespace membptt {
namespace {

SimulationReport run_schedule(const Plan& plan, double budget) {
  ScheduleGenerator gen = plan.schedule();
  Simulator sim(plan.length, plan.model.alpha, budget);
  Op op{};
  while (gen.next(op))
    if (!sim.apply(op)) break;
  return sim.finish();
}

TEST(Planner, FivePercentAtT1000CostsAtMost1950) {
  for (double alpha : {2.0, 3.0, 4.0, 5.0}) {
    const CostModel m{alpha, 2.0};
    const Plan p = make_plan(Policy::Msm, 1000, 0.05 * alpha * 1000, m);
    EXPECT_LE(p.forward_steps, 1950) << "alpha=" << alpha;
    EXPECT_LE(p.peak_units, 0.05 * alpha * 1000 + 1e-9);
    EXPECT_LT(p.time_ratio(), 1.3334);  // "one third more time" at beta = 2
  }
}

TEST(Planner, RoomForEveryInternalStateCostsExactlyT) {
  for (double alpha : {1.0, 2.5, 4.0})
    for (std::int64_t T : {1, 2, 7, 60}) {
      const CostModel m{alpha, 2.0};
      for (Policy p : {Policy::Ism, Policy::Msm, Policy::Full})
        EXPECT_EQ(make_plan(p, T, plain_bptt_units(T, m), m).forward_steps, T) << policy_name(p) << " T=" << T;
    }
}

TEST(Planner, HsmWithASlotPerStepCosts2TMinus1) {
  for (std::int64_t T : {1, 2, 9, 100}) {
    const CostModel m{3.0, 2.0};
    // T slots including h_0's: T - 1 stored hidden states and the internal state being consumed.
    const double budget = static_cast<double>(T - 1) + m.alpha;
    EXPECT_EQ(make_plan(Policy::Hsm, T, budget, m).forward_steps, 2 * T - 1);
    EXPECT_EQ(make_plan(Policy::Revolve, T, budget, m).forward_steps, 2 * T - 1);
  }
}

TEST(Planner, MsmNeverCostsMoreThanHsmOrIsm) {
  for (double alpha : {1.0, 1.5, 2.0, 3.0, 4.0, 5.0}) {
    const std::int64_t T = 200;
    const MemoryGrid g = MemoryGrid::for_alpha(alpha);
    const std::int64_t F = g.internal * (T - 1);
    DpTable msm(DpFamily::Msm, T, F, g), hsm(DpFamily::Hsm, T, F, g), ism(DpFamily::Ism, T, F, g);
    for (std::int64_t t = 0; t <= T; ++t)
      for (std::int64_t f = 0; f <= F; ++f) {
        ASSERT_LE(msm.cost(t, f), hsm.cost(t, f)) << "alpha=" << alpha << " t=" << t << " f=" << f;
        ASSERT_LE(msm.cost(t, f), ism.cost(t, f)) << "alpha=" << alpha << " t=" << t << " f=" << f;
      }
  }
}

TEST(Planner, TableIsMonotoneInLengthAndMemory) {
  // The pruning of the fast scan rests on F(t+1, f) >= F(t, f) + 1; more memory never costs more.
  const MemoryGrid g{2, 5};  // alpha = 2.5
  DpTable msm(DpFamily::Msm, 150, 5 * 149, g);
  for (std::int64_t f = 0; f <= 5 * 149; ++f)
    for (std::int64_t t = 0; t < 150; ++t) {
      ASSERT_GE(msm.cost(t + 1, f), msm.cost(t, f) + 1);
      if (f > 0) {
        ASSERT_LE(msm.cost(t, f), msm.cost(t, f - 1));
      }
    }
}

TEST(Planner, PrunedDpEqualsNaiveDp) {
  for (const MemoryGrid g : {MemoryGrid{1, 1}, MemoryGrid{1, 2}, MemoryGrid{1, 3}, MemoryGrid{2, 3}, MemoryGrid{4, 9},
                             MemoryGrid{1, 5}})
    for (DpFamily fam : {DpFamily::Hsm, DpFamily::Ism, DpFamily::Msm}) {
      const std::int64_t T = 120, F = g.internal * (T - 1) / 2 + 3;
      DpTable fast(fam, T, F, g), naive(fam, T, F, g, /*naive=*/true);
      for (std::int64_t t = 0; t <= T; ++t)
        for (std::int64_t f = 0; f <= F; ++f)
          ASSERT_EQ(fast.cost(t, f), naive.cost(t, f)) << "fam=" << static_cast<int>(fam) << " t=" << t << " f=" << f;
    }
}

TEST(Planner, FastDpEqualsNaiveDpOnALongerMsmTable) {
  // Long enough that some rows are convex and others not, so both searches are exercised.
  for (const MemoryGrid g : {MemoryGrid{1, 4}, MemoryGrid{2, 5}}) {
    const std::int64_t T = 260, F = g.internal * 70;
    DpTable fast(DpFamily::Msm, T, F, g), naive(DpFamily::Msm, T, F, g, /*naive=*/true);
    for (std::int64_t f = 0; f <= F; ++f)
      for (std::int64_t t = 0; t <= T; ++t) {
        ASSERT_EQ(fast.cost(t, f), naive.cost(t, f)) << "t=" << t << " f=" << f;
        ASSERT_EQ(fast.cost(t, f, true), naive.cost(t, f, true)) << "R t=" << t << " f=" << f;
      }
  }
}

TEST(Planner, FractionalAlphaNeverExceedsTheBudget) {
  for (double alpha : {1.3, 2.7, 3.14159})
    for (double frac : {0.01, 0.05, 0.2, 0.5}) {
      const CostModel m{alpha, 1.0};
      const double budget = std::max(frac * plain_bptt_units(200, m), alpha);
      const Plan p = make_plan(Policy::Msm, 200, budget, m);
      const SimulationReport r = run_schedule(p, budget);
      ASSERT_TRUE(r.ok) << r.error;
      EXPECT_EQ(r.forward_steps, p.forward_steps);
    }
}

TEST(Planner, EveryPolicyScheduleIsValidAndCostsWhatThePlanSays) {
  for (double alpha : {1.0, 2.0, 4.0, 2.5})
    for (std::int64_t T : {1, 2, 3, 10, 37, 200})
      for (Policy pol : kAllPolicies) {
        const CostModel m{alpha, 2.0};
        const double least = least_budget(pol, T, m);
        for (double extra : {0.0, 1.0, 7.0, 0.1 * plain_bptt_units(T, m), plain_bptt_units(T, m)}) {
          const double budget = least + extra;
          const Plan p = make_plan(pol, T, budget, m);
          const SimulationReport r = run_schedule(p, budget);
          ASSERT_TRUE(r.ok) << policy_name(pol) << " T=" << T << " alpha=" << alpha << ": " << r.error;
          EXPECT_EQ(r.forward_steps, p.forward_steps);
          EXPECT_EQ(r.backward_steps, T);
          EXPECT_DOUBLE_EQ(r.peak_units, p.peak_units);
          EXPECT_GE(p.forward_steps, T);
        }
      }
}

TEST(Planner, KnownCostsOfTheBaselines) {
  const CostModel m{2.0, 2.0};
  const std::int64_t T = 100;
  EXPECT_EQ(make_plan(Policy::Quadratic, T, m.alpha, m).forward_steps, T * (T + 1) / 2);
  // chen-sqrt: segments of 10; the first pass plus one recomputation of all but the last segment.
  EXPECT_EQ(make_plan(Policy::ChenSqrt, T, 1e9, m).forward_steps, T + (T - 10));
  // Its memory: 9 stored hidden checkpoints and the 10 internal states of one segment.
  EXPECT_DOUBLE_EQ(least_budget(Policy::ChenSqrt, T, m), 9 + 10 * m.alpha);
  EXPECT_DOUBLE_EQ(least_budget(Policy::Full, T, m), T * m.alpha);
}

TEST(Planner, MillionStepsWithoutDeepRecursion) {
  const CostModel m{4.0, 2.0};
  const std::int64_t T = 1'000'000;
  const Plan r = make_plan(Policy::Revolve, T, 20 + m.alpha, m);  // 21 slots with h_0's
  EXPECT_EQ(r.forward_steps, hsm_cost(T, 21));
  EXPECT_LE(r.peak_units, 20 + m.alpha);
  const Plan c = make_plan(Policy::ChenRecursive, T, 1e9, m);
  EXPECT_LE(c.max_slots, 22);
  const Plan f = make_plan(Policy::Full, T, plain_bptt_units(T, m), m);
  EXPECT_EQ(f.forward_steps, T);
}

TEST(Planner, BadInputIsRejectedWithTheValue) {
  const CostModel m{2.0, 2.0};
  auto message = [](auto&& fn) {
    try {
      fn();
    } catch (const PlanError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { make_plan(Policy::Msm, 0, 10, m); }).find("length 0"), std::string::npos);
  EXPECT_NE(message([&] { make_plan(Policy::Msm, -5, 10, m); }).find("length -5"), std::string::npos);
  EXPECT_NE(message([&] { make_plan(Policy::Msm, 10, 1.5, m); }).find("least"), std::string::npos);
  EXPECT_NE(message([&] { make_plan(Policy::Msm, 10, 10, CostModel{0.5, 2}); }).find("alpha 0.5"), std::string::npos);
  EXPECT_NE(message([&] { make_plan(Policy::Full, 10, 19, m); }).find("20 units"), std::string::npos);
  EXPECT_NE(message([&] { make_plan(Policy::Msm, 10, std::nan(""), m); }).find("budget"), std::string::npos);
  // Past what the planner represents exactly: named, with the range.
  EXPECT_NE(message([&] { make_plan(Policy::Msm, 10, 10, CostModel{1e7, 2}); }).find("alpha 10000000"), std::string::npos);
  EXPECT_NE(message([&] { make_plan(Policy::Msm, 10, 10, CostModel{2, 1e300}); }).find("beta 1e+300"), std::string::npos);
  EXPECT_NE(message([&] { make_plan(Policy::Quadratic, 50000, 10, m); }).find("at most 1000000000"), std::string::npos);
  EXPECT_NE(message([&] { make_plan(Policy::Revolve, kMaxLength + 1, 10, m); }).find("allowed is 1 to 10000000"),
            std::string::npos);
}

// Issue 11 A: a budget above plain BPTT's memory, however large (1e21 bytes became a negative
// table size through an overflowing conversion), plans exactly as plain BPTT's memory does.
TEST(Planner, AnyBudgetAbovePlainBpttPlansAsPlainBptt) {
  for (double alpha : {1.0, 2.0, 4.0, 2.7}) {
    const CostModel m{alpha, 2.0};
    const std::int64_t T = 50;
    const double plain = plain_bptt_units(T, m);
    for (Policy p : {Policy::Msm, Policy::Hsm, Policy::Ism, Policy::Revolve, Policy::Full}) {
      const Plan at_plain = make_plan(p, T, plain, m);
      for (double huge : {2 * plain, 1e21, 1e300, std::numeric_limits<double>::max()}) {
        const Plan r = make_plan(p, T, huge, m);
        EXPECT_EQ(r.forward_steps, at_plain.forward_steps) << policy_name(p) << " " << huge;
        EXPECT_EQ(r.free_ticks, at_plain.free_ticks) << policy_name(p) << " " << huge;
        EXPECT_DOUBLE_EQ(r.peak_units, at_plain.peak_units) << policy_name(p) << " " << huge;
      }
    }
    for (Policy p : {Policy::Msm, Policy::Revolve}) {
      const auto pts = cost_curve(p, T, m, {plain, 1e21, 1e300});
      ASSERT_EQ(pts.size(), 3u);
      EXPECT_EQ(pts[1].forward_steps, pts[0].forward_steps);
      EXPECT_EQ(pts[2].forward_steps, pts[0].forward_steps);
    }
  }
  EXPECT_EQ(MemoryGrid::for_alpha(2.0).ticks_of(1e300), MemoryGrid::for_alpha(2.0).ticks_of(1e200));  // saturates
  EXPECT_GT(MemoryGrid::for_alpha(2.0).ticks_of(1e300), 0);
}

}  // namespace
}  // namespace membptt
