// `membptt plan --online` and `membptt curve --online`: the online checkpointing policy
// (plan/online.hpp) for a sequence whose length is known only when it ends, beside the offline
// optimum with the same memory.
#pragma once
#include <cstdint>
#include <string>

#include "membptt/plan/cost_model.hpp"

namespace membptt::cli {

// The online policy's cost for a sequence that turns out to have `length` steps (segments reversed
// by MSM, and by HSM), its schedule replayed by the Simulator (budget, order, cost), beside
// offline HSM (revolve) and MSM with the same budget, and their ratios. `schedule`: also print the ops; `svg_path`: draw them.
int run_plan_online(std::int64_t length, double budget_units, const CostModel& model, bool json, bool schedule,
                    const std::string& svg_path);

// The online/offline cost ratio against the length, T = 1..max_length (`points` lengths,
// log-spaced, with beta(m, 2) and the one after it), at one budget: a table, a CSV, an SVG. The
// policy's own measure: HSM backward against offline HSM (the MSM backward needs a table per T).
int run_curve_online(std::int64_t max_length, double budget_units, const CostModel& model, int points,
                     const std::string& csv_path, const std::string& svg_path);

}  // namespace membptt::cli
