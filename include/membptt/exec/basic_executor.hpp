// The executor: runs any schedule of the planner over a real network, inside one arena.
//
// The arena is the schedule's stack (op.hpp): slot k starts where slot k-1 ends, hidden entries
// take carry_elems, internal entries record_elems. It is sized once, at construction, by a dry
// pass over the schedule, and never grows; run() allocates nothing. Besides the arena the executor
// holds a fixed workspace (the cursor, the carry gradient, a zero h_0, the cell's and head's
// scratch); the memory budget in bytes covers both (see budget.hpp).
//
// Every policy runs the same kernels on the same inputs in the same backward order T..1, so the
// loss and gradients are bitwise identical to plain BPTT's; run() counts the forward steps it
// really ran and the peak bytes the arena really held, which must equal the plan's.
//
// BasicExecutor is written once for every device. A Backend supplies:
//   Scalar, Net (advance, advance_record, backward, record_carry_out, top_hidden, carry_elems,
//   record_elems, scratch_bytes), Head (step_xent, last_mse, scratch_bytes), Buffer (a fixed
//   array: Buffer(n), data(), size()), Params; and static copy(dst, src, n), zero(dst, n),
//   complete(grads) (adds whatever gradient contributions a device still holds back into grads)
//   and finish_loss(head, sum) (the loss once the run is over: the sum of what the head returned,
//   or what a device head accumulated itself). All pointers in a batch live where the Backend
//   computes.
//
// run() = enqueue() + finish(). enqueue() issues the whole pass, up to complete gradients, without
// reading anything back, so that a device can capture it once as a graph and replay it
// (cuda_backend.hpp); on the CPU it simply computes.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "membptt/cells/params.hpp"
#include "membptt/plan/planner.hpp"

namespace membptt {

enum class LossKind { Xent, MseLast };

// One batch of sequences, time-major, owned by the caller.
template <class T>
struct SequenceBatch {
  std::int64_t length = 0;                       // T
  const T* inputs = nullptr;                     // [T x B x I]
  const std::int64_t* class_targets = nullptr;   // Xent: [T x B] class indices
  const T* regression_targets = nullptr;         // MseLast: [B x O]
  const T* h0 = nullptr;                         // initial carry (carry layout); null: zeros
};

struct RunStats {
  double loss = 0;
  std::int64_t forward_steps = 0;    // cell steps run forward (the plan's cost)
  std::int64_t backward_steps = 0;
  std::size_t peak_arena_bytes = 0;  // most bytes the stored states ever took
};

// Walks a schedule once, tracking only the stack's top: the arena's size in elements.
std::size_t arena_elems(const Plan& plan, std::size_t carry_elems, std::size_t record_elems);

template <class Backend>
class BasicExecutor {
 public:
  using T = typename Backend::Scalar;
  using Net = typename Backend::Net;
  using HeadT = typename Backend::Head;
  using Buffer = typename Backend::Buffer;
  using ParamsT = typename Backend::Params;

  BasicExecutor(const NetShape& shape, LossKind loss, Plan plan)
      : shape_(shape), loss_(loss), plan_(std::move(plan)), net_(shape), head_(shape),
        arena_(arena_elems(plan_, net_.carry_elems(), net_.record_elems())),
        cursor_(net_.carry_elems()), dcarry_(net_.carry_elems()), zeros_(net_.carry_elems()),
        offset_(static_cast<std::size_t>(plan_.max_slots) + 1, 0),
        internal_(offset_.size(), 0) {
    Backend::zero(zeros_.data(), zeros_.size());
  }

  // One forward and backward pass: returns the loss and ADDS the gradients into `grads`.
  // `final_carry` (optional) receives h_T (for truncated BPTT over a stream), `dh0` (optional)
  // dL/dh_0.
  RunStats run(const ParamsT& params, const SequenceBatch<T>& batch, ParamsT& grads, T* final_carry = nullptr,
               T* dh0 = nullptr) {
    RunStats stats = enqueue(params, batch, grads, final_carry, dh0);
    stats.loss = finish();
    return stats;
  }
  // The pass without its loss: stats.loss is 0, finish() returns it. The stats depend on the plan
  // alone, so they hold for every replay of what this issued.
  RunStats enqueue(const ParamsT& params, const SequenceBatch<T>& batch, ParamsT& grads, T* final_carry = nullptr,
                   T* dh0 = nullptr);
  // The loss of the pass issued last (on a device: waits for it).
  double finish() { return static_cast<double>(Backend::finish_loss(head_, std::exchange(loss_sum_, T(0)))); }

  const Plan& plan() const { return plan_; }
  std::size_t arena_bytes() const { return arena_.size() * sizeof(T); }
  // Bytes held besides the arena: cursor, carry gradient, zero h_0, the cell's and head's scratch.
  std::size_t workspace_bytes() const {
    return (cursor_.size() + dcarry_.size() + zeros_.size()) * sizeof(T) + net_.scratch_bytes() + head_.scratch_bytes();
  }
  const Net& net() const { return net_; }

 private:
  // Optional hooks of a device net, found at compile time (the CPU's RecurrentNet has neither):
  // begin_pass(x, T) announces the pass's inputs (input projection by blocks of steps); a
  // five-argument advance_record also writes the carry it produces into the cursor.
  static constexpr bool kNetTakesInputs = requires(Net& n, const T* x) { n.begin_pass(x, std::int64_t{0}); };
  static constexpr bool kNetRecordsToCursor = requires(Net& n, const ParamsT& p, const T* x, T* c) {
    n.advance_record(p, x, c, c, c);
  };

  // Slot 0 is the caller's h_0 (only ever read); slot k >= 1 starts where slot k-1 ends.
  T* slot_ptr(std::int32_t slot, const T* h0) {
    if (slot == 0) return const_cast<T*>(h0);
    return arena_.data() + offset_[static_cast<std::size_t>(slot) - 1];
  }

  NetShape shape_;
  LossKind loss_;
  Plan plan_;
  Net net_;
  HeadT head_;
  Buffer arena_, cursor_, dcarry_, zeros_;
  std::vector<std::size_t> offset_;     // per stack depth k: where slot k ends (slot 0, h_0: at 0)
  std::vector<std::uint8_t> internal_;  // per stack depth: 1 when it holds an internal state
  T loss_sum_ = T(0);                   // what the head returned in the pass issued last
};

template <class Backend>
RunStats BasicExecutor<Backend>::enqueue(const ParamsT& params, const SequenceBatch<T>& batch, ParamsT& grads,
                                         T* final_carry, T* dh0) {
  if (batch.length != plan_.length)
    throw std::invalid_argument("sequence length " + std::to_string(batch.length) + " does not match the plan's " +
                                std::to_string(plan_.length));
  const std::size_t carry = net_.carry_elems();
  const std::size_t x_step = static_cast<std::size_t>(shape_.batch) * static_cast<std::size_t>(shape_.input_size);
  const T* h0 = batch.h0 ? batch.h0 : zeros_.data();
  auto x_at = [&](std::int64_t t) { return batch.inputs + static_cast<std::size_t>(t - 1) * x_step; };
  const T xent_scale = T(1) / static_cast<T>(batch.length * shape_.batch);
  auto push = [&](std::int32_t slot, std::size_t elems, bool internal) {
    offset_[slot] = offset_[slot - 1] + elems;
    internal_[slot] = internal;
    return slot_ptr(slot, h0);
  };

  RunStats stats;
  std::size_t top = 0;  // elements the stored states take now
  if constexpr (kNetTakesInputs) net_.begin_pass(batch.inputs, batch.length);
  Backend::copy(cursor_.data(), h0, carry);
  Backend::zero(dcarry_.data(), carry);
  loss_sum_ = T(0);  // (a pass that threw may have left a part)
  T& loss = loss_sum_;

  ScheduleGenerator gen = plan_.schedule();
  Op op{};
  while (gen.next(op)) {
    switch (op.kind) {
      case OpKind::Restore: {
        const T* src = slot_ptr(op.slot, h0);
        Backend::copy(cursor_.data(), internal_[op.slot] ? net_.record_carry_out(src) : src, carry);
        break;
      }
      case OpKind::Advance:
        for (std::int64_t t = op.t; t < op.t + op.count; ++t) net_.advance(params, x_at(t), cursor_.data(), cursor_.data());
        stats.forward_steps += op.count;
        break;
      case OpKind::AdvanceHidden: {
        T* dst = push(op.slot, carry, false);
        net_.advance(params, x_at(op.t), cursor_.data(), cursor_.data());
        Backend::copy(dst, cursor_.data(), carry);
        stats.forward_steps += 1;
        top = offset_[op.slot];
        break;
      }
      case OpKind::AdvanceRecord: {
        T* rec = push(op.slot, net_.record_elems(), true);
        if constexpr (kNetRecordsToCursor) {
          net_.advance_record(params, x_at(op.t), cursor_.data(), rec, cursor_.data());
        } else {
          net_.advance_record(params, x_at(op.t), cursor_.data(), rec);
          Backend::copy(cursor_.data(), net_.record_carry_out(rec), carry);
        }
        stats.forward_steps += 1;
        top = offset_[op.slot];
        break;
      }
      case OpKind::Backward: {
        const T* rec = slot_ptr(op.slot, h0);
        const T* h_top = net_.top_hidden(net_.record_carry_out(rec));
        T* dh_top = net_.top_hidden(dcarry_.data());
        if (loss_ == LossKind::Xent)
          loss += head_.step_xent(params, h_top, batch.class_targets + static_cast<std::size_t>(op.t - 1) * shape_.batch,
                                  xent_scale, dh_top, grads);
        else if (op.t == batch.length)
          loss += head_.last_mse(params, h_top, batch.regression_targets, dh_top, grads);
        if (op.t == batch.length && final_carry) Backend::copy(final_carry, net_.record_carry_out(rec), carry);
        net_.backward(params, x_at(op.t), rec, dcarry_.data(), dcarry_.data(), grads);
        stats.backward_steps += 1;
        break;
      }
      case OpKind::Pop: break;
    }
    stats.peak_arena_bytes = std::max(stats.peak_arena_bytes, top * sizeof(T));
  }
  if (dh0) Backend::copy(dh0, dcarry_.data(), carry);
  if constexpr (kNetTakesInputs) net_.begin_pass(nullptr, 0);  // the pass is over
  Backend::complete(grads);
  return stats;
}

}  // namespace membptt
