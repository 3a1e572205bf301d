// The planner: for a policy, a sequence length and a memory budget, the plan that backpropagates
// with the fewest forward steps. Pure: no I/O; throws PlanError with a one-line message.
//
// Memory is counted in hidden-state units of activation memory: stored hidden states take 1 unit,
// internal states alpha units, and the internal state a backward step consumes is counted too.
// h_0 is an input, like x: the caller holds it (stack slot 0) and it is not counted. Plain BPTT
// therefore needs alpha*T units, and the dynamic programs get budget - alpha free units (every
// policy needs one internal state to backpropagate a step).
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "membptt/plan/cost_model.hpp"
#include "membptt/plan/policy.hpp"
#include "membptt/plan/split.hpp"
#include "membptt/schedule/schedule.hpp"

namespace membptt {

struct PlanError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Plan {
  Policy policy = Policy::Full;
  std::int64_t length = 0;
  CostModel model;
  double budget_units = 0;          // what the caller allowed
  MemoryGrid grid;
  std::int64_t free_ticks = 0;      // memory handed to the splits (budget less one internal state)
  std::int64_t forward_steps = 0;   // the plan's cost, first pass included
  double peak_units = 0;            // most memory the schedule ever holds (exact, from a dry run)
  std::int32_t max_slots = 0;       // deepest stack, h_0's slot 0 included
  // Whether forward_steps is the least the policy allows (tables, closed forms, fixed rules). MSM
  // past kMaxTableCells is blocked (blocked.hpp) and not: lower_bound is then a proven least for
  // every MSM plan within the budget, so forward_steps / lower_bound bounds the distance.
  bool optimal = true;
  std::int64_t lower_bound = 0;     // <= the optimum of the policy; = forward_steps when optimal
  std::int64_t table_length = 0;    // blocked MSM only (blocked.hpp): the exact table's length L,
  std::int64_t block = 0;           // the block s, and the ticks Revolve over blocks keeps for the
  std::int64_t block_ticks = -1;    // blocks (-1: the dynamic program over blocks)
  std::shared_ptr<const SplitOracle> oracle;
  // Set by exec/budget.hpp's plan_for_bytes, not by the planner: the backward steps over which the
  // CPU executor's net groups its weight gradients (1: none; its rings are StateSizes::group_bytes,
  // inside the budget).
  int weight_gradient_group = 1;

  double steps_per_step() const { return length ? static_cast<double>(forward_steps) / static_cast<double>(length) : 0; }
  double time_ratio() const { return predicted_time_ratio(forward_steps, length, model); }
  double memory_fraction() const { return peak_units / plain_bptt_units(length, model); }
  ScheduleGenerator schedule() const { return ScheduleGenerator(*oracle, length, free_ticks, grid); }
};

// The least budget (units) in which `policy` runs a sequence of `length` steps.
double least_budget(Policy policy, std::int64_t length, const CostModel& model);

// The best plan of `policy` within `budget_units`. Throws PlanError naming the value at fault:
// length outside 1..kMaxLength, alpha outside 1..kMaxAlpha, beta outside 0..kMaxCostRatio, or a
// budget below least_budget (the message gives it). Any finite budget above plain BPTT's memory
// plans as plain BPTT's memory would.
Plan make_plan(Policy policy, std::int64_t length, double budget_units, const CostModel& model);

// "auto": plain BPTT when the budget holds it (whatever its size), else MSM (exact up to
// kMaxTableCells, blocked beyond). Below MSM's least: PlanError naming it.
Plan make_auto_plan(std::int64_t length, double budget_units, const CostModel& model);

// Cost per step against memory for one policy: the points of the trade-off curve.
struct CurvePoint {
  double budget_units;
  std::int64_t forward_steps;
};
std::vector<CurvePoint> cost_curve(Policy policy, std::int64_t length, const CostModel& model,
                                   const std::vector<double>& budgets);

// What the planner takes: lengths up to 10^7 steps (a plan walks its schedule once to check it and
// count its cost, O(forward steps): seconds at 10^7), alpha up to 10^6 (alpha * T in ticks fits a
// 64-bit integer many times over), cost ratios up to 10^6; policy quadratic up to 10^9 forward steps.
inline constexpr std::int64_t kMaxLength = 10'000'000;
inline constexpr std::int64_t kMaxQuadraticSteps = 1'000'000'000;
inline constexpr double kMaxAlpha = 1e6;
inline constexpr double kMaxCostRatio = 1e6;

// The largest table the exact dynamic programs solve for one plan: (length + 1) x (free ticks + 1)
// cells, lengths up to kMaxTableLength (its scans grow with the length): about 2 s and 80 MB at
// most, measured (docs/benchmarks.md). A cost curve solves one table for all its budgets and may
// take up to kMaxCurveTableCells (200 MB). Past them HSM uses the binomial closed form (the same
// cost), MSM the blocked plan of blocked.hpp, certified by its lower bound, and ISM is refused.
inline constexpr std::int64_t kMaxTableCells = 2'000'000;
inline constexpr std::int64_t kMaxCurveTableCells = 5'000'000;
inline constexpr std::int64_t kMaxTableLength = 10'000;
inline constexpr std::int64_t kBlockedTableCells = 400'000;
inline constexpr std::int64_t kBlockDpCells = 4'000'000;

}  // namespace membptt
