// Online checkpointing (plan/online.hpp): the Simulator replays every online schedule (budget at
// every op, order, cost), the policy never looks ahead, and up to beta(m, 2) = (m+1)(m+2)/2 steps
// its cost is the offline HSM optimum (Stumm and Walther's range).
#include "membptt/plan/online.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "membptt/plan/binomial.hpp"
#include "membptt/plan/dp.hpp"
#include "membptt/plan/planner.hpp"
#include "membptt/schedule/simulator.hpp"

namespace membptt {
namespace {

// Runs the online schedule over a sequence that turns out to have T steps, through the Simulator.
// Returns the report; `forward_ops` receives the ops before finish().
SimulationReport replay(std::int64_t T, double budget, double alpha, std::int64_t* cost = nullptr,
                        std::vector<Op>* forward_ops = nullptr, OnlineBackward backward = OnlineBackward::Msm) {
  OnlineSchedule s(budget, alpha, backward);
  Simulator sim(T, alpha, budget);
  for (std::int64_t t = 1; t < T; ++t)
    for (const Op& op : s.push()) {
      if (forward_ops) forward_ops->push_back(op);
      if (!sim.apply(op)) return sim.finish();
    }
  EXPECT_EQ(s.finish(), T);
  Op op{};
  while (s.next(op))
    if (!sim.apply(op)) break;
  if (cost) *cost = s.cost();
  return sim.finish();
}

struct Grid {
  double alpha;
  std::vector<double> extra;  // budget = alpha + extra
};
const std::vector<Grid> kGrids = {{1.0, {0, 1, 2, 3, 5, 9}},
                                  {2.0, {0, 0.5, 1, 4, 7}},
                                  {4.0, {0, 2, 3, 6, 12.5}},
                                  {1.5, {0, 1, 2.25, 6}},
                                  {2.7, {0.2, 3.9, 8}}};

TEST(Online, SimulatorAcceptsEveryScheduleWithinTheBudget) {
  std::vector<std::int64_t> lengths;
  for (std::int64_t T = 1; T <= 300; ++T) lengths.push_back(T);
  for (std::int64_t T : {377, 500, 1000, 2345, 5000}) lengths.push_back(T);
  for (const Grid& g : kGrids)
    for (double extra : g.extra)
      for (std::int64_t T : lengths)
        for (OnlineBackward b : {OnlineBackward::Msm, OnlineBackward::Hsm}) {
          const double budget = g.alpha + extra;
          std::int64_t cost = 0;
          const SimulationReport r = replay(T, budget, g.alpha, &cost, nullptr, b);
          SCOPED_TRACE("T=" + std::to_string(T) + " alpha=" + std::to_string(g.alpha) + " budget=" +
                       std::to_string(budget) + (b == OnlineBackward::Msm ? " msm" : " hsm"));
          ASSERT_TRUE(r.ok) << r.error;
          ASSERT_EQ(r.backward_steps, T);
          ASSERT_EQ(r.forward_steps, cost);
          ASSERT_EQ(cost, online_cost(T, budget, g.alpha, b));
          ASSERT_LE(r.peak_units, budget + 1e-9);
          if (b == OnlineBackward::Hsm) {
            ASSERT_LE(r.max_slots, online_slots(budget, g.alpha) + 1);  // + one record
          }
        }
}

TEST(Online, NeverLooksAhead) {
  // The ops before finish() are the same whatever length the sequence turns out to have.
  for (double budget : {1.0, 3.0, 6.0, 11.0}) {
    std::vector<Op> longest;
    replay(400, budget, 1.0, nullptr, &longest);
    for (std::int64_t T : {2, 17, 64, 211, 399}) {
      std::vector<Op> ops;
      replay(T, budget, 1.0, nullptr, &ops);
      ASSERT_LE(ops.size(), longest.size());
      for (std::size_t i = 0; i < ops.size(); ++i)
        ASSERT_TRUE(ops[i].kind == longest[i].kind && ops[i].t == longest[i].t && ops[i].slot == longest[i].slot)
            << "T=" << T << " op " << i;
    }
  }
}

TEST(Online, OptimalUpToBeta2) {
  // m slots (h_0's included) from a budget of alpha + m - 1 units; the offline optimum with the
  // same memory is HSM with m slots: hsm_cost(T, m), also what make_plan(revolve) runs.
  for (double alpha : {1.0, 3.0, 4.0})
    for (std::int64_t m = 1; m <= 16; ++m) {
      const double budget = alpha + static_cast<double>(m - 1);
      ASSERT_EQ(online_slots(budget, alpha), m);
      OnlineCheckpointer p(m);
      ASSERT_EQ(p.optimal_up_to(), (m + 1) * (m + 2) / 2);
      const CostModel model{alpha, 2.0};
      for (std::int64_t T = 1; T <= p.optimal_up_to(); ++T) {
        ASSERT_EQ(online_cost(T, budget, alpha, OnlineBackward::Hsm), hsm_cost(T, m)) << "m=" << m << " T=" << T;
        if (T % 7 == 0) {
          ASSERT_EQ(online_cost(T, budget, alpha, OnlineBackward::Hsm), make_plan(Policy::Revolve, T, budget, model).forward_steps);
        }
      }
    }
}

// Every online strategy at once: the checkpoint sets reachable by some sequence of choices
// (keep nothing, keep h_n, keep h_n and drop any c_i) that was optimal at every length so far.
// Returns the first length at which none is left (0: some strategy is optimal up to max_T).
std::int64_t first_length_no_strategy_is_optimal(std::int64_t m, std::int64_t max_T) {
  auto cost = [&](const std::vector<std::int64_t>& c, std::int64_t T) {
    std::int64_t v = T;
    for (std::size_t j = 0; j < c.size(); ++j)
      v += hsm_cost((j + 1 < c.size() ? c[j + 1] : T - 1) - c[j], m - static_cast<std::int64_t>(j));
    return v;
  };
  std::vector<std::vector<std::int64_t>> states{{0}};
  for (std::int64_t n = 1; n + 2 <= max_T; ++n) {
    std::vector<std::vector<std::int64_t>> next;
    for (const auto& c : states) {
      next.push_back(c);
      auto kept = c;
      kept.push_back(n);
      if (static_cast<std::int64_t>(kept.size()) <= m) next.push_back(kept);
      for (std::size_t i = 1; i < c.size(); ++i) {
        auto d = kept;
        d.erase(d.begin() + static_cast<std::ptrdiff_t>(i));
        if (static_cast<std::int64_t>(d.size()) <= m) next.push_back(d);
      }
    }
    std::sort(next.begin(), next.end());
    next.erase(std::unique(next.begin(), next.end()), next.end());
    states.clear();
    for (auto& c : next)
      if (cost(c, n + 2) == hsm_cost(n + 2, m)) states.push_back(std::move(c));
    if (states.empty()) return n + 2;
  }
  return 0;
}

TEST(Online, TheRangeIsTight) {
  // Exhaustion over every online strategy: none is optimal at every length up to beta(m, 2) + 2,
  // and the policy is optimal at every length up to beta(m, 2) + 1: the most any online rule gets.
  for (std::int64_t m = 2; m <= 6; ++m) {
    const std::int64_t b2 = (m + 1) * (m + 2) / 2;
    EXPECT_EQ(first_length_no_strategy_is_optimal(m, b2 + 10), b2 + 2) << "m=" << m;
  }
  for (std::int64_t m = 2; m <= 16; ++m) {
    const std::int64_t b2 = (m + 1) * (m + 2) / 2;
    EXPECT_EQ(online_cost(b2 + 1, static_cast<double>(m), 1, OnlineBackward::Hsm), hsm_cost(b2 + 1, m)) << "m=" << m;
    EXPECT_GT(online_cost(b2 + 2, static_cast<double>(m), 1, OnlineBackward::Hsm), hsm_cost(b2 + 2, m)) << "m=" << m;
  }
}

// Exhaustive: over every set of checkpoints for a known T, the least cost() is the offline
// optimum hsm_cost(T, m): the decomposition the policy is measured by loses nothing by itself.
std::int64_t best_set_cost(std::int64_t T, std::int64_t m) {
  // Checkpoints are a subset of 1..T-2 of size <= m-1; segment j gets m - j slots.
  std::int64_t best = INT64_MAX;
  const std::int64_t n = std::max<std::int64_t>(T - 2, 0);
  for (std::int64_t mask = 0; mask < (std::int64_t{1} << n); ++mask) {
    std::vector<std::int64_t> c{0};
    for (std::int64_t i = 0; i < n; ++i)
      if (mask >> i & 1) c.push_back(i + 1);
    if (static_cast<std::int64_t>(c.size()) > m) continue;
    std::int64_t cost = T;
    for (std::size_t j = 0; j < c.size(); ++j)
      cost += hsm_cost((j + 1 < c.size() ? c[j + 1] : T - 1) - c[j], m - static_cast<std::int64_t>(j));
    best = std::min(best, cost);
  }
  return best;
}

TEST(Online, CostDecompositionMatchesTheOfflineOptimum) {
  for (std::int64_t m = 1; m <= 5; ++m)
    for (std::int64_t T = 1; T <= 16; ++T) ASSERT_EQ(best_set_cost(T, m), hsm_cost(T, m)) << "m=" << m << " T=" << T;
}

TEST(Online, ContinuationStaysCloseToTheOfflineOptimum) {
  // Past beta(m, 2) no optimality is claimed; the measured worst ratio (docs/benchmarks.md).
  double worst = 1;
  for (std::int64_t m = 2; m <= 24; m += 1)
    for (std::int64_t T = 2; T <= 3000; T += (T < 400 ? 1 : 37)) {
      const double r = static_cast<double>(online_cost(T, static_cast<double>(m), 1.0, OnlineBackward::Hsm)) /
                       static_cast<double>(hsm_cost(T, m));
      worst = std::max(worst, r);
      ASSERT_GE(r, 1.0) << "m=" << m << " T=" << T;  // never below the offline optimum
    }
  EXPECT_LT(worst, 1.11);
}

TEST(Online, MsmBackwardBetweenTheOfflineOptimumAndTheHsmBackward) {
  // The MSM backward never costs more than the HSM one (same checkpoints, a table that allows more),
  // and no online schedule beats the offline MSM optimum (tests/plan/brute_force_test.cpp: the
  // table is the least over every schedule of the machine, drops included).
  for (double alpha : {1.0, 2.0, 4.0})
    for (double extra : {0.0, 2.0, 5.0, 11.0, 30.0}) {
      const double budget = alpha + extra;
      const MemoryGrid grid = MemoryGrid::for_alpha(alpha);
      const DpTable table(DpFamily::Msm, 200, grid.ticks_of(budget) - grid.internal, grid);
      bool below = false;
      for (std::int64_t T = 1; T <= 200; ++T) {
        const std::int64_t msm = online_cost(T, budget, alpha), hsm = online_cost(T, budget, alpha, OnlineBackward::Hsm);
        ASSERT_LE(msm, hsm) << "T=" << T;
        ASSERT_GE(msm, table.cost(T, grid.ticks_of(budget) - grid.internal)) << "T=" << T << " budget " << budget;
        below = below || msm < hsm;
      }
      if (alpha > 1 && extra >= 11) {
        EXPECT_TRUE(below) << "alpha " << alpha << " budget " << budget;
      }
    }
  // Long segments (the first ones grow to m + 1 steps) are where records pay: 5% at T = 1000.
  OnlineSchedule s(200, 4);
  for (int t = 1; t < 1000; ++t) s.push();
  s.finish();
  EXPECT_EQ(s.backward(), OnlineBackward::Msm);
  EXPECT_LT(s.cost(), online_cost(1000, 200, 4, OnlineBackward::Hsm));
}

TEST(Online, Errors) {
  EXPECT_THROW(OnlineSchedule(3.9, 4.0), PlanError);
  try {
    online_slots(1.5, 2.0);
    FAIL();
  } catch (const PlanError& e) {
    EXPECT_EQ(std::string(e.what()),
              "memory budget 1.5 units is below the least in which online checkpointing runs: 2 units (one internal state)");
  }
  EXPECT_THROW(online_slots(10, 0.5), PlanError);
  EXPECT_THROW(online_cost(0, 10, 1), PlanError);
  OnlineSchedule s(5, 1);
  Op op{};
  EXPECT_THROW(s.next(op), std::logic_error);
  s.finish();
  EXPECT_THROW(s.push(), std::logic_error);
}

TEST(Online, ResetStartsOver) {
  OnlineSchedule s(4, 1);
  for (int i = 0; i < 30; ++i) s.push();
  s.finish();
  const std::int64_t first = s.cost();
  s.reset();
  for (int i = 0; i < 30; ++i) s.push();
  s.finish();
  EXPECT_EQ(s.cost(), first);
  EXPECT_EQ(first, online_cost(31, 4, 1));
}

TEST(Online, LongSequence) {
  std::int64_t cost = 0;
  const SimulationReport r = replay(100000, 21, 1.0, &cost);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.forward_steps, cost);
  EXPECT_LT(static_cast<double>(cost) / static_cast<double>(hsm_cost(100000, 21)), 1.1);
}

}  // namespace
}  // namespace membptt
