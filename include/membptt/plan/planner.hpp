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
  std::shared_ptr<const SplitOracle> oracle;

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

// "auto": plain BPTT when the budget holds it (whatever its size), else MSM, else revolve (HSM by
// the closed form) when the MSM table would be too large. Below MSM's least: PlanError naming it.
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

// The largest length a table-based policy will solve before the planner asks for revolve.
inline constexpr std::int64_t kMaxTableCells = 60'000'000;

}  // namespace membptt
