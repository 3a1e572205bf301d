// The planner's cost model: memory in units of one hidden state, time in forward steps.
#pragma once
#include <cstdint>

namespace membptt {

struct CostModel {
  // Size of one internal state (everything one backward step needs) over one hidden state.
  double alpha = 1.0;
  // Cost of one backward step over one forward step (advance); only used to predict time.
  double beta = 2.0;
  // Cost of a forward step that records its internal state over one that does not. Every plan
  // records each step exactly once (the record its backward step consumes), so this changes the
  // predicted time but never which plan is best: the planner still minimises forward steps.
  double record = 1.0;
};

// Plain BPTT keeps the internal state of every step: alpha*T units. (h_0, like the inputs, is
// the caller's and is not counted.)
inline double plain_bptt_units(std::int64_t length, const CostModel& m) {
  return m.alpha * static_cast<double>(length);
}

// Predicted time of one iteration over plain BPTT's. Plain BPTT runs T recording forward steps
// and T backward steps; a policy with C forward steps runs the same, plus C - T plain advances:
//   ratio = ((C - T) + T (record + beta)) / (T (record + beta)),
// which is (C/T + beta) / (1 + beta) when recording costs what advancing does.
inline double predicted_time_ratio(std::int64_t forward_steps, std::int64_t length, const CostModel& m) {
  if (length <= 0) return 1.0;
  const double T = static_cast<double>(length), per_step = m.record + m.beta;
  return (static_cast<double>(forward_steps) - T + T * per_step) / (T * per_step);
}

// The dynamic programs count memory in integer ticks. A hidden state is `hidden` ticks and an
// internal state `internal` ticks; when alpha is not a multiple of 1/ticks_per_hidden the
// internal state is rounded up, so a plan never uses more than its budget.
struct MemoryGrid {
  std::int64_t hidden = 1;
  std::int64_t internal = 1;
  static MemoryGrid for_alpha(double alpha);
  // Free ticks left for stored states when `units` are available in all (floor).
  std::int64_t ticks_of(double units) const;
  double units_of(std::int64_t ticks) const { return static_cast<double>(ticks) / static_cast<double>(hidden); }
};

}  // namespace membptt
