// Online checkpointing: backpropagation through a sequence whose length T is known only when it
// ends (RL episodes, streams, adaptive solvers). Pure: no I/O; throws PlanError.
//
// The model (docs/planner.md, "Online checkpointing"). Steps arrive one at a time; each is run as
// it arrives. With step t the caller says whether it is the last: `push` (more follow) or `finish`
// (t = T). Before running a step t that is not the last, the policy decides whether to keep the
// cursor's state h_{t-1} as a hidden checkpoint (it then knows T >= t + 1, so h_{t-1} is never the
// state the last step starts from), possibly giving up an earlier one. When the last step arrives
// it is recorded (its internal state) and backpropagated at once, and the segments between the
// kept checkpoints are reversed last to first, each by an offline plan with the memory left at that
// moment: BPTT-MSM's table (dp.hpp; hidden or internal states, the least forward steps of all) when
// it is small enough (kMaxOnlineTableCells), else BPTT-HSM by Griewank's binomial closed form
// (binomial.hpp). The backward phase is optimal given the kept checkpoints (MSM; HSM: among
// hidden-state plans).
//
// Memory is the planner's (planner.hpp): budget B units, a hidden state 1 unit, an internal state
// alpha units, h_0 not counted. m = floor(B - alpha) + 1 hidden slots counting h_0's (the last
// step's record needs alpha): the policy keeps at most m - 1 checkpoints. Cost: forward steps, the
// first pass included, as the offline plans count it; with the HSM backward
//   cost(T) = T + sum_j C(L_j, m - j),   C = hsm_cost (binomial.hpp),
// over the segments j = 0..k between checkpoints 0 = c_0 < c_1 < ... < c_k <= T - 2, of lengths
// L_j = c_{j+1} - c_j and L_k = T - 1 - c_k (segment j reverses with m - j slots: c_1..c_j stay
// held below it). The MSM backward replaces C(L_j, m - j) by the table's F(L_j, f_j) <= it, f_j the
// free ticks of segment j. The policy's decisions are the same either way (made on HSM's costs).
//
// The policy, in two phases:
//   1. T <= (m+1)(m+2)/2 = beta(m, 2): Stumm and Walther's range ("New algorithms for optimal
//      online checkpointing", SIAM J. Sci. Comput. 32(2), 2010: with s checkpoints, optimal for
//      up to (s+1)(s+2)/2 steps; s = m here, h_0's slot included as Revolve counts it). Our rule
//      (proof in docs/planner.md): keep every state; once m - 1 are kept, keep the new one and drop
//      the first c_i (i >= 1) whose two gaps merged fit the bound of one repetition,
//      c_{i+1} - c_{i-1} <= m - i + 2; keep nothing when no c_i qualifies. Then cost(T) equals the
//      offline optimum hsm_cost(T, m) for every T <= beta(m, 2) (tests/plan/online_test.cpp).
//   2. Beyond: greedy on cost: of "keep nothing" and "keep h_{t-1}, drop c_i" (each i), the choice
//      with the least cost should the sequence end at the next step (ties: keep nothing, then the
//      lowest i). It is still optimal at beta(m, 2) + 1; no online rule is optimal at every length
//      up to beta(m, 2) + 2 (exhaustive search, m = 2..6), so no more is claimed; measured, the
//      ratio to the offline HSM optimum stays below 1.11 (1.109 at m = 2, 1.053 at m = 3, under
//      1.02 from m = 12; docs/planner.md, docs/benchmarks.md).
// Per step: O(m) at most (phase 1 scans for the first c_i that qualifies; phase 2 sums the
// segments' costs by prefix and suffix).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "membptt/plan/cost_model.hpp"
#include "membptt/plan/split.hpp"
#include "membptt/schedule/op.hpp"
#include "membptt/schedule/schedule.hpp"

namespace membptt {

// The checkpoint policy alone: which hidden states to keep, step by step.
class OnlineCheckpointer {
 public:
  // m = slots (h_0's included), at least 1. Use online_slots() for a budget in units. Reserves
  // for up to 4096 checkpoints; reserve() for all m (then decide() never allocates).
  explicit OnlineCheckpointer(std::int64_t slots);
  void reserve();
  // Back to h_0 alone (keeps the capacity).
  void clear() { cps_.resize(1); }

  struct Decision {
    bool keep = false;       // keep the cursor's state h_n as checkpoint k+1 (the top)
    std::int32_t drop = 0;   // first give up checkpoint `drop` (1..k; 0: none)
    std::int64_t dropped = 0;  // its position
  };
  // The sequence is known to be longer than n + 1 steps and the cursor holds h_n (n >= 1, each n
  // once, in order): decide about h_n. Applies the decision and returns it.
  Decision decide(std::int64_t n);

  // Positions of the kept states, h_0's 0 first, increasing.
  const std::vector<std::int64_t>& checkpoints() const { return cps_; }
  std::int64_t slots() const { return m_; }
  // beta(m, 2) = (m+1)(m+2)/2: up to this length the policy's cost is the offline HSM optimum.
  std::int64_t optimal_up_to() const;
  // Forward steps of the whole run should the sequence end at step T (T >= the last n decided + 2).
  std::int64_t cost(std::int64_t T) const;

 private:
  std::int64_t m_;
  std::vector<std::int64_t> cps_;
  std::vector<std::int64_t> prefix_, suffix_;  // phase 2 scratch, sized once
};

// m for a budget of `budget_units` with internal states of `alpha` units: floor(B - alpha) + 1 on
// the planner's memory grid. Throws PlanError when B < alpha (naming it and the least, alpha) or
// alpha is outside 1..kMaxAlpha.
std::int64_t online_slots(double budget_units, double alpha);

// The online policy's schedule as ops (op.hpp, with Keep and Drop), produced as the steps arrive:
// the Simulator replays it like any plan. Never looks ahead: push() knows only that more steps
// follow. After reserve() push() allocates nothing (the policy's tables sized for all m slots; a
// budget of millions of slots may rather let them grow); finish() and the backward phase allocate
// the offline generator and, for the MSM backward, its table.
enum class OnlineBackward { Msm, Hsm };

// The largest MSM table the backward phase builds (longest segment x free ticks); past it, HSM.
inline constexpr std::int64_t kMaxOnlineTableCells = 1'000'000;

class OnlineSchedule {
 public:
  OnlineSchedule(double budget_units, double alpha, OnlineBackward backward = OnlineBackward::Msm);

  // Step t = steps() + 1 is not the last: the ops that run it, in order (at most 3: a Drop, a
  // Keep of h_{t-1}, then Advance t). Valid until the next call.
  std::span<const Op> push();
  // Step T = steps() + 1 is the last: from now on next() yields the rest of the schedule
  // (AdvanceRecord T, Backward T, then the backward phase). Returns T.
  std::int64_t finish();
  // The next op after finish(); false at the end.
  bool next(Op& op);
  // Starts a new sequence (same budget; keeps what reserve() sized).
  void reset();
  void reserve() { policy_.reserve(); }

  std::int64_t steps() const { return steps_; }
  bool finished() const { return finished_; }
  // After finish(): forward steps of the whole schedule (what the Simulator counts).
  std::int64_t cost() const { return cost_; }
  // After finish(): the backward phase's plans (Msm, or Hsm when asked or the table is too large).
  OnlineBackward backward() const { return used_; }
  std::int64_t slots() const { return policy_.slots(); }
  const OnlineCheckpointer& policy() const { return policy_; }
  double budget_units() const { return budget_; }
  double alpha() const { return alpha_; }
  const MemoryGrid& grid() const { return grid_; }
  // The budget in the planner's ticks (grid): what the stored states may take at any moment.
  std::int64_t budget_ticks() const { return budget_ticks_; }

 private:
  double budget_, alpha_;
  MemoryGrid grid_;
  std::int64_t budget_ticks_, free_ticks_;  // all of the budget; the budget less one internal state
  OnlineCheckpointer policy_;
  OnlineBackward asked_, used_;
  std::shared_ptr<const SplitOracle> hsm_, oracle_;
  std::int64_t steps_ = 0, cost_ = 0;
  bool finished_ = false;
  Op ops_[3]{};
  // The backward phase: stage 0 record T, 1 backward T, 2 next segment, 3 in a segment.
  int stage_ = 0;
  std::int64_t segment_ = 0;  // j: the segment being reversed (k down to 0)
  std::unique_ptr<ScheduleGenerator> gen_;
};

// The online policy's cost for a sequence that turns out to have `length` steps (runs the policy
// over length steps, O(length m) at most; the MSM backward adds its table).
std::int64_t online_cost(std::int64_t length, double budget_units, double alpha,
                         OnlineBackward backward = OnlineBackward::Msm);

}  // namespace membptt
