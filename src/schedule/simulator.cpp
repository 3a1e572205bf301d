#include "membptt/schedule/simulator.hpp"

#include <string>

namespace membptt {

Simulator::Simulator(std::int64_t length, double alpha, double budget_units)
    : length_(length), alpha_(alpha), budget_(budget_units), next_backward_(length) {
  stack_.push_back({false, 0});  // h_0: the caller's, not counted
  account();
}

bool Simulator::fail(const std::string& msg) {
  if (report_.ok) {
    report_.ok = false;
    report_.error = "op " + std::to_string(report_.ops) + ": " + msg;
  }
  return false;
}

void Simulator::account() {
  const double units = static_cast<double>(n_hidden_) + alpha_ * static_cast<double>(n_internal_);
  if (units > report_.peak_units) {
    report_.peak_units = units;
    report_.peak_hidden = n_hidden_;
    report_.peak_internal = n_internal_;
  }
  const auto depth = static_cast<std::int32_t>(stack_.size());
  if (depth > report_.max_slots) report_.max_slots = depth;
  if (budget_ >= 0 && units > budget_ + 1e-9)
    fail("memory " + std::to_string(units) + " units exceeds the budget " + std::to_string(budget_));
}

bool Simulator::apply(const Op& op) {
  if (!report_.ok) return false;
  const auto top = static_cast<std::int32_t>(stack_.size());
  auto push = [&](bool internal, std::int64_t pos) {
    if (op.slot != top) return fail("push at slot " + std::to_string(op.slot) + " but the top is " + std::to_string(top));
    stack_.push_back({internal, pos});
    (internal ? n_internal_ : n_hidden_) += 1;
    account();
    return report_.ok;
  };
  auto step_from_cursor = [&](std::int64_t t) {
    if (t < 1 || t > length_) return fail("step " + std::to_string(t) + " outside 1.." + std::to_string(length_));
    if (cursor_ != t - 1)
      return fail("step " + std::to_string(t) + " needs h_" + std::to_string(t - 1) + " but the cursor holds h_" +
                  std::to_string(cursor_));
    return true;
  };
  switch (op.kind) {
    case OpKind::Advance:
      if (op.count < 1) return fail("advance of " + std::to_string(op.count) + " steps");
      if (!step_from_cursor(op.t)) return false;
      if (op.t + op.count - 1 > length_) return fail("advance past step T");
      cursor_ = op.t + op.count - 1;
      report_.forward_steps += op.count;
      break;
    case OpKind::AdvanceHidden:
      if (!step_from_cursor(op.t) || !push(false, op.t)) return false;
      cursor_ = op.t;
      report_.forward_steps += 1;
      break;
    case OpKind::AdvanceRecord:
      if (!step_from_cursor(op.t) || !push(true, op.t)) return false;
      cursor_ = op.t;
      report_.forward_steps += 1;
      break;
    case OpKind::Backward: {
      if (op.slot != top - 1 || top <= 1) return fail("backward from slot " + std::to_string(op.slot) + ", not the top");
      const Entry e = stack_.back();
      if (!e.internal) return fail("backward step " + std::to_string(op.t) + " from a hidden state");
      if (e.position != op.t) return fail("backward step " + std::to_string(op.t) + " from the internal state of step " + std::to_string(e.position));
      if (op.t != next_backward_) return fail("backward step " + std::to_string(op.t) + " but step " + std::to_string(next_backward_) + " is due");
      stack_.pop_back();
      --n_internal_;
      --next_backward_;
      ++report_.backward_steps;
      break;
    }
    case OpKind::Pop:
      if (op.slot != top - 1 || top <= 1) return fail("pop of slot " + std::to_string(op.slot) + ", not the top");
      if (stack_.back().internal) return fail("pop of an internal state (only backward frees those)");
      stack_.pop_back();
      --n_hidden_;
      break;
    case OpKind::Keep:
      if (op.t != cursor_)
        return fail("keep of h_" + std::to_string(op.t) + " but the cursor holds h_" + std::to_string(cursor_));
      if (!push(false, op.t)) return false;
      break;
    case OpKind::Drop: {
      if (op.slot < 1 || op.slot >= top) return fail("drop of slot " + std::to_string(op.slot) + ": not a stored state above h_0");
      const auto at = stack_.begin() + op.slot;
      if (at->internal || at->position != op.t)
        return fail("drop of h_" + std::to_string(op.t) + " from a slot holding " + (at->internal ? "an internal state" : "h_" + std::to_string(at->position)));
      for (auto it = at + 1; n_internal_ > 0 && it != stack_.end(); ++it)  // none to find without records
        if (it->internal) return fail("drop of slot " + std::to_string(op.slot) + " below an internal state (only hidden states move down)");
      stack_.erase(at);
      --n_hidden_;
      break;
    }
    case OpKind::Restore: {
      if (op.slot < 0 || op.slot >= top) return fail("restore from empty slot " + std::to_string(op.slot));
      const Entry& e = stack_[static_cast<std::size_t>(op.slot)];
      if (e.position != op.t) return fail("restore of h_" + std::to_string(op.t) + " from a slot holding position " + std::to_string(e.position));
      cursor_ = op.t;
      break;
    }
  }
  ++report_.ops;
  return true;
}

SimulationReport Simulator::finish() {
  if (report_.ok && next_backward_ != 0)
    fail("the schedule ended with step " + std::to_string(next_backward_) + " not backpropagated");
  if (report_.ok && stack_.size() != 1) fail("the schedule ended with " + std::to_string(stack_.size() - 1) + " states still stored");
  return report_;
}

SimulationReport simulate(const std::vector<Op>& ops, std::int64_t length, double alpha, double budget_units) {
  Simulator sim(length, alpha, budget_units);
  for (const Op& op : ops)
    if (!sim.apply(op)) break;
  return sim.finish();
}

}  // namespace membptt
