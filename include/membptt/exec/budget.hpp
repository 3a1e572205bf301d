// Memory budgets in bytes: from a network's real state sizes to the planner's units and back.
//
//   bytes held = workspace + arena,   arena = peak_units * hidden_bytes
// where the workspace (cursor, carry gradient, the cell's and head's scratch) is fixed by the
// shape and the arena holds the schedule's stored states. Plain BPTT's activation memory is
// workspace + T * internal_bytes.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "membptt/cells/params.hpp"
#include "membptt/plan/planner.hpp"

namespace membptt {

struct StateSizes {
  std::size_t hidden_bytes = 0;     // one carry: h (and c) of every layer, whole batch
  std::size_t internal_bytes = 0;   // one step's record
  std::size_t workspace_bytes = 0;  // fixed, whatever the policy
  // The CPU net's weight-gradient rings (recurrent_net.hpp), bytes per step of a group; 0: layers
  // too small to gain from groups (executor_defer_steps). The group's length depends on the
  // sequence's alone (group_steps), so every plan for one length groups alike, keeping plain
  // BPTT's bits, and the rings are in every budget of that length.
  std::size_t group_step_bytes = 0;
  int max_group_steps = 1;
  double alpha() const { return static_cast<double>(internal_bytes) / static_cast<double>(hidden_bytes); }
  // Steps per weight-gradient group at `length`: as many as fit in 1/200 of plain BPTT's records
  // (so at a 5% budget the rings take at most a tenth of it), at most max_group_steps, at least 1.
  int group_steps(std::int64_t length) const {
    if (group_step_bytes == 0 || length <= 0) return 1;
    const double fit = static_cast<double>(length) * static_cast<double>(internal_bytes) / 200.0 /
                       static_cast<double>(group_step_bytes);
    return fit >= max_group_steps ? max_group_steps : fit >= 2 ? static_cast<int>(fit) : 1;
  }
  // The fixed bytes at `length`: the workspace and the rings of its groups.
  std::size_t workspace_at(std::int64_t length) const {
    const int k = group_steps(length);
    return workspace_bytes + (k > 1 ? static_cast<std::size_t>(k) * group_step_bytes : 0);
  }
  std::size_t plain_bptt_bytes(std::int64_t length) const {
    return workspace_at(length) + static_cast<std::size_t>(length) * internal_bytes;
  }
};

StateSizes state_sizes(const NetShape& shape, std::size_t scalar_bytes);

// The plan for a budget in bytes. policy = nullopt picks the best that fits (plain BPTT when the
// budget holds it, whatever its size; else MSM, exact or past its table blocked: planner.hpp). Throws PlanError naming the budget and the
// least budget in bytes that works. The plan carries the CPU net's weight-gradient groups for its
// length (Plan::weight_gradient_group = sizes.group_steps(length); their rings are in
// sizes.workspace_at(length)).
Plan plan_for_bytes(std::optional<Policy> policy, std::int64_t length, double budget_bytes, const StateSizes& sizes,
                    double beta);

// A budget as users write it: bytes ("1048576", "1e6", "64MiB", "500KB", "2GiB", "1TB", "1T") or a
// share of plain BPTT's activation memory ("5%"). KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB,
// TiB and the bare K, M, G, T powers of 1024 (as memory limits are written for Docker or Slurm).
struct BudgetSpec {
  double value = 0;
  bool percent = false;
  // A share so large that it passes the largest double (1e306% of a large model) is still finite:
  // any budget above plain BPTT's memory plans as plain BPTT's.
  double bytes(const StateSizes& sizes, std::int64_t length) const {
    return percent ? std::min(value / 100.0 * static_cast<double>(sizes.plain_bptt_bytes(length)), std::numeric_limits<double>::max())
                   : value;
  }
};
// Throws PlanError naming the text and the forms allowed.
BudgetSpec parse_budget(const std::string& text);

// "1234 bytes", with " (x.xx MiB)" from 1 MiB up: how errors name a budget.
std::string bytes_text(double bytes);

// The least budget in bytes in which `policy` runs.
double least_bytes(Policy policy, std::int64_t length, const StateSizes& sizes);

}  // namespace membptt
