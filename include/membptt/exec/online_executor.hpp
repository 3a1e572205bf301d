// The executor's online mode: backpropagation through a sequence whose length is known only when
// it ends. The caller pushes one step's input at a time and reads its output at once (so the next
// input may depend on it, as in an RL episode); the last step comes with finish(); backward() then
// runs the backward pass. What is kept is decided by the online policy (plan/online.hpp: optimal up
// to (m+1)(m+2)/2 steps, Stumm and Walther 2010), step by step, without knowing the length.
//
// Memory: the budget in bytes covers the fixed workspace (cursor, carry gradient, zero h_0, the
// cell's scratch) and the arena, sized once at construction from the budget (budget.hpp's units:
// one hidden state = one carry). Nothing is allocated per step: the table of input pointers is
// sized for max_length steps at construction. A checkpoint given up mid-stack (op Drop) frees its
// block of the arena through a table of block indices, with no copy; when the last step arrives
// the kept checkpoints are put in order at the arena's bottom (at most one swap each) and the
// backward phase runs the stack discipline of op.hpp on the rest.
//
// Gradients: the same kernels on the same inputs in the same backward order T..1 as every other
// policy, so outputs, dL/dx, dL/dh_0 and parameter gradients equal plain BPTT's bit for bit.
// Module form only (the caller owns the loss, as membptt.torch): needs a net whose backward gives
// dL/dx_t and a Backend with add() (the CPU backend).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "membptt/exec/basic_executor.hpp"
#include "membptt/plan/online.hpp"

namespace membptt {

template <class Backend>
class OnlineExecutor {
 public:
  using T = typename Backend::Scalar;
  using Net = typename Backend::Net;
  using Buffer = typename Backend::Buffer;
  using ParamsT = typename Backend::Params;

  // budget_bytes: the most bytes held at any moment (workspace + stored states). max_length: the
  // most steps one sequence may have. Throws PlanError when the budget cannot hold the workspace and
  // one internal state (naming both), std::invalid_argument for max_length < 1.
  OnlineExecutor(const NetShape& shape, double budget_bytes, std::int64_t max_length)
      : shape_(shape), net_(shape), cursor_(net_.carry_elems()), dcarry_(net_.carry_elems()),
        zeros_(net_.carry_elems()), schedule_(schedule_for(budget_bytes, max_length)),
        arena_(arena_elems_for(schedule_, net_.carry_elems())), budget_bytes_(budget_bytes), max_length_(max_length) {
    Backend::zero(zeros_.data(), zeros_.size());
    schedule_.reserve();  // push() allocates nothing
    const std::size_t blocks = static_cast<std::size_t>(schedule_.slots() - 1);
    phys_.reserve(blocks + 1);
    free_.reserve(blocks);
    where_.assign(blocks, -1);
    inputs_.reserve(static_cast<std::size_t>(max_length));
    const std::size_t depth = static_cast<std::size_t>(schedule_.budget_ticks() / schedule_.grid().hidden) + 3;
    offset_.assign(depth, 0);
    internal_.assign(depth, 0);
    begin(nullptr);
  }

  // Starts a sequence from h0 (carry layout; null: zeros), which must stay valid until backward().
  // Drops whatever a previous sequence left.
  void begin(const T* h0) {
    schedule_.reset();
    h0_ = h0 ? h0 : zeros_.data();
    Backend::copy(cursor_.data(), h0_, net_.carry_elems());
    inputs_.clear();
    phys_.assign(1, -1);  // logical slot 0: h_0, the caller's
    free_.clear();
    for (std::size_t b = where_.size(); b-- > 0;) free_.push_back(static_cast<std::int32_t>(b));
    stats_ = RunStats{};
    held_ = 0;
    waiting_ = false;
  }

  // Step t = length() + 1, not the last: x [B x I] must stay valid and unchanged until backward().
  // Writes the top layer's h_t to y [B x R] (optional; R = output_width(shape)).
  void push(const ParamsT& params, const T* x, T* y) {
    take_input(x);
    for (const Op& op : schedule_.push()) forward_phase_op(op, params, y);
  }

  // The last step T = length() + 1: as push, and final_carry (optional, carry layout) receives
  // h_T. The stored states then wait for backward().
  RunStats finish(const ParamsT& params, const T* x, T* y, T* final_carry) {
    take_input(x);
    schedule_.finish();
    compact();
    while (true) {
      if (!schedule_.next(pending_)) throw std::logic_error("membptt: an online schedule ended before its backward phase");
      if (pending_.kind == OpKind::Backward) break;
      run_op(pending_, params);
      if (pending_.kind == OpKind::AdvanceRecord && pending_.t == schedule_.steps() && y)
        Backend::copy(y, net_.top_hidden(cursor_.data()), y_step());
    }
    if (final_carry) Backend::copy(final_carry, cursor_.data(), net_.carry_elems());
    waiting_ = true;
    return stats_;
  }

  // The backward pass, as BasicExecutor::backward: doutputs = dL/d outputs [T x B x R] and
  // dfinal_carry (each optional: zeros); writes dinputs [T x B x I] and dh0 (each optional); ADDS
  // the parameter gradients into grads.
  RunStats backward(const ParamsT& params, const T* doutputs, const T* dfinal_carry, T* dinputs, T* dh0,
                    ParamsT& grads) {
    if (!waiting_) throw std::logic_error("membptt: OnlineExecutor::backward() without a finish() waiting for it");
    const std::size_t carry = net_.carry_elems();
    const std::size_t x_step = static_cast<std::size_t>(shape_.batch) * static_cast<std::size_t>(shape_.input_size);
    if (dfinal_carry)
      Backend::copy(dcarry_.data(), dfinal_carry, carry);
    else
      Backend::zero(dcarry_.data(), carry);
    bool more = true;  // pending_: the first backward step
    while (more) {
      if (pending_.kind == OpKind::Backward) {
        const T* rec = slot_ptr(pending_.slot);
        const std::size_t k = static_cast<std::size_t>(pending_.t - 1);
        if (doutputs) Backend::add(net_.top_hidden(dcarry_.data()), doutputs + k * y_step(), y_step());
        net_.backward(params, inputs_[k], rec, dcarry_.data(), dcarry_.data(), grads,
                      dinputs ? dinputs + k * x_step : nullptr);
        held_ = offset_[static_cast<std::size_t>(pending_.slot) - 1];
        stats_.backward_steps += 1;
      } else {
        run_op(pending_, params);
      }
      more = schedule_.next(pending_);
    }
    if (dh0) Backend::copy(dh0, dcarry_.data(), carry);
    Backend::complete(grads);
    waiting_ = false;
    return stats_;
  }

  std::int64_t length() const { return static_cast<std::int64_t>(inputs_.size()); }
  std::int64_t max_length() const { return max_length_; }
  bool waiting() const { return waiting_; }
  const RunStats& stats() const { return stats_; }
  const OnlineSchedule& schedule() const { return schedule_; }
  const Net& net() const { return net_; }
  double budget_bytes() const { return budget_bytes_; }
  std::size_t arena_bytes() const { return arena_.size() * sizeof(T); }
  std::size_t workspace_bytes() const {
    return (cursor_.size() + dcarry_.size() + zeros_.size()) * sizeof(T) + net_.scratch_bytes();
  }

 private:
  OnlineSchedule schedule_for(double budget_bytes, std::int64_t max_length) const {
    if (max_length < 1)
      throw std::invalid_argument("max_length " + std::to_string(max_length) + " is not allowed: at least 1 step");
    const double hidden = static_cast<double>(net_.carry_elems() * sizeof(T));
    const double internal = static_cast<double>(net_.record_elems() * sizeof(T));
    const double workspace =
        static_cast<double>((3 * net_.carry_elems()) * sizeof(T) + net_.scratch_bytes());
    if (!(budget_bytes >= workspace + internal))
      throw PlanError("memory budget " + std::to_string(static_cast<long long>(budget_bytes)) +
                      " bytes is below the least in which online checkpointing runs: " +
                      std::to_string(static_cast<long long>(workspace + internal)) + " bytes (workspace " +
                      std::to_string(static_cast<long long>(workspace)) + " + one internal state " +
                      std::to_string(static_cast<long long>(internal)) + ")");
    const double alpha = internal / hidden;
    // No sequence of max_length steps uses more than plain BPTT's memory and a checkpoint a step.
    const double m = static_cast<double>(max_length);
    const double units = std::min((budget_bytes - workspace) / hidden, alpha * m + m);
    return OnlineSchedule(units, alpha);
  }
  // Every stored state is at most its ticks' share of hidden states: budget_ticks carries in all.
  static std::size_t arena_elems_for(const OnlineSchedule& s, std::size_t carry) {
    return static_cast<std::size_t>(s.budget_ticks()) * carry / static_cast<std::size_t>(s.grid().hidden);
  }
  std::size_t y_step() const {  // the top layer's h_t: R = proj_size if > 0, else hidden_size
    return static_cast<std::size_t>(shape_.batch) * static_cast<std::size_t>(output_width(shape_));
  }
  void take_input(const T* x) {
    if (waiting_) throw std::logic_error("membptt: OnlineExecutor: a step after finish() (call begin() first)");
    if (length() >= max_length_)
      throw std::length_error("sequence longer than max_length " + std::to_string(max_length_) +
                              " steps: make the executor with a larger max_length");
    inputs_.push_back(x);
  }
  T* block_ptr(std::int32_t b) { return arena_.data() + static_cast<std::size_t>(b) * net_.carry_elems(); }
  void note_peak() {
    stats_.peak_arena_bytes = std::max(stats_.peak_arena_bytes, held_ * sizeof(T));
  }

  // The forward phase: Drop and Keep by block table, Advance from the cursor.
  void forward_phase_op(const Op& op, const ParamsT& params, T* y) {
    const std::size_t carry = net_.carry_elems();
    switch (op.kind) {
      case OpKind::Drop:
        free_.push_back(phys_[static_cast<std::size_t>(op.slot)]);
        phys_.erase(phys_.begin() + op.slot);
        held_ -= carry;
        return;
      case OpKind::Keep: {
        const std::int32_t b = free_.back();
        free_.pop_back();
        Backend::copy(block_ptr(b), cursor_.data(), carry);
        phys_.push_back(b);
        held_ += carry;
        note_peak();
        return;
      }
      case OpKind::Advance:
        for (std::int64_t t = op.t; t < op.t + op.count; ++t)
          net_.advance(params, inputs_[static_cast<std::size_t>(t - 1)], cursor_.data(), cursor_.data());
        stats_.forward_steps += op.count;
        if (y) Backend::copy(y, net_.top_hidden(cursor_.data()), y_step());
        return;
      default: throw std::logic_error("membptt: an online schedule's forward phase has op " + std::string(op_name(op.kind)));
    }
  }

  // The last step has come: checkpoint i goes to block i - 1 (at most one swap each, through the
  // carry gradient, unused until backward()), so the rest is an ordinary stack.
  void compact() {
    const std::size_t carry = net_.carry_elems();
    std::fill(where_.begin(), where_.end(), -1);
    for (std::size_t i = 1; i < phys_.size(); ++i) where_[static_cast<std::size_t>(phys_[i])] = static_cast<std::int32_t>(i);
    for (std::size_t i = 1; i < phys_.size(); ++i) {
      const auto target = static_cast<std::int32_t>(i - 1), cur = phys_[i];
      if (cur != target) {
        const std::int32_t other = where_[static_cast<std::size_t>(target)];  // a later checkpoint, or none
        if (other < 0) {
          Backend::copy(block_ptr(target), block_ptr(cur), carry);
          where_[static_cast<std::size_t>(cur)] = -1;
        } else {
          Backend::copy(dcarry_.data(), block_ptr(target), carry);
          Backend::copy(block_ptr(target), block_ptr(cur), carry);
          Backend::copy(block_ptr(cur), dcarry_.data(), carry);
          phys_[static_cast<std::size_t>(other)] = cur;
          where_[static_cast<std::size_t>(cur)] = other;
        }
        phys_[i] = target;
        where_[static_cast<std::size_t>(target)] = static_cast<std::int32_t>(i);
      }
      offset_[i] = i * carry;
      internal_[i] = 0;
    }
    offset_[0] = 0;
  }

  T* slot_ptr(std::int32_t slot) {
    if (slot == 0) return const_cast<T*>(h0_);
    return arena_.data() + offset_[static_cast<std::size_t>(slot) - 1];
  }

  // The backward phase's forward ops (op.hpp's stack; Backward is run by backward()).
  void run_op(const Op& op, const ParamsT& params) {
    const std::size_t carry = net_.carry_elems();
    auto push = [&](std::int32_t slot, std::size_t elems, bool internal) {
      const auto s = static_cast<std::size_t>(slot);
      if (s >= offset_.size()) throw std::logic_error("membptt: an online schedule went deeper than its budget allows");
      offset_[s] = offset_[s - 1] + elems;
      internal_[s] = internal;
      held_ = offset_[s];
      if (held_ > arena_.size()) throw std::logic_error("membptt: an online schedule outgrew its arena");
      note_peak();
      return slot_ptr(slot);
    };
    auto x_at = [&](std::int64_t t) { return inputs_[static_cast<std::size_t>(t - 1)]; };
    switch (op.kind) {
      case OpKind::Restore: {
        const T* src = slot_ptr(op.slot);
        Backend::copy(cursor_.data(), internal_[static_cast<std::size_t>(op.slot)] ? net_.record_carry_out(src) : src, carry);
        return;
      }
      case OpKind::Advance:
        for (std::int64_t t = op.t; t < op.t + op.count; ++t) net_.advance(params, x_at(t), cursor_.data(), cursor_.data());
        stats_.forward_steps += op.count;
        return;
      case OpKind::AdvanceHidden: {
        T* dst = push(op.slot, carry, false);
        net_.advance(params, x_at(op.t), cursor_.data(), cursor_.data());
        Backend::copy(dst, cursor_.data(), carry);
        stats_.forward_steps += 1;
        return;
      }
      case OpKind::AdvanceRecord: {
        T* rec = push(op.slot, net_.record_elems(), true);
        net_.advance_record(params, x_at(op.t), cursor_.data(), rec);
        Backend::copy(cursor_.data(), net_.record_carry_out(rec), carry);
        stats_.forward_steps += 1;
        return;
      }
      case OpKind::Pop: held_ = offset_[static_cast<std::size_t>(op.slot) - 1]; return;
      default: throw std::logic_error("membptt: an online schedule's backward phase has op " + std::string(op_name(op.kind)));
    }
  }

  NetShape shape_;
  Net net_;
  Buffer cursor_, dcarry_, zeros_;
  OnlineSchedule schedule_;
  Buffer arena_;
  double budget_bytes_;
  std::int64_t max_length_;
  const T* h0_ = nullptr;
  std::vector<const T*> inputs_;         // x_t of the steps so far (the caller's)
  std::vector<std::int32_t> phys_;       // forward phase: logical slot -> arena block (slot 0: h_0)
  std::vector<std::int32_t> free_;       // forward phase: free blocks
  std::vector<std::int32_t> where_;      // compaction: block -> logical slot
  std::vector<std::size_t> offset_;      // backward phase: per stack depth, where its slot ends
  std::vector<std::uint8_t> internal_;   // backward phase: 1 where the slot holds an internal state
  std::size_t held_ = 0;                 // elements the stored states take now
  RunStats stats_;
  Op pending_{};
  bool waiting_ = false;
};

}  // namespace membptt
