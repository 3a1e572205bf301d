// Replays a schedule on the abstract machine of op.hpp and checks that it is a correct BPTT:
// every op is legal where it stands (cursor position, stack order, slot kinds; an online
// schedule's keep holds the cursor's position, its drop a hidden state below only hidden ones), the budget is
// never exceeded, backward steps run T..1 once each from their own internal state, and the
// forward steps add up to what the plan promised.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "membptt/schedule/op.hpp"

namespace membptt {

struct SimulationReport {
  bool ok = true;
  std::string error;              // first violation, empty when ok
  std::int64_t forward_steps = 0;
  std::int64_t backward_steps = 0;
  std::int64_t ops = 0;
  double peak_units = 0;          // stored hidden states + alpha * internal states (h_0 not counted)
  std::int64_t peak_hidden = 0;   // at the moment of the peak
  std::int64_t peak_internal = 0;
  std::int32_t max_slots = 0;     // deepest stack, h_0's slot included
};

class Simulator {
 public:
  // `budget_units` < 0 means no budget check.
  Simulator(std::int64_t length, double alpha, double budget_units = -1);
  // Applies one op; returns false (and records the error) on the first violation.
  bool apply(const Op& op);
  // Checks the end state: every step backpropagated, only h_0 left on the stack.
  SimulationReport finish();
  const SimulationReport& report() const { return report_; }

 private:
  struct Entry {
    bool internal;
    std::int64_t position;  // hidden: the state's position; internal: the step it records
  };
  bool fail(const std::string& msg);
  void account();

  std::int64_t length_;
  double alpha_, budget_;
  std::vector<Entry> stack_;
  std::int64_t cursor_ = 0;
  std::int64_t next_backward_;
  std::int64_t n_hidden_ = 0, n_internal_ = 0;
  SimulationReport report_;
};

SimulationReport simulate(const std::vector<Op>& ops, std::int64_t length, double alpha, double budget_units = -1);

}  // namespace membptt
