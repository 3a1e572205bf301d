#include "membptt/exec/executor.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace membptt {
namespace {

// Walks a schedule once, tracking only the stack's top: the arena's size.
std::size_t size_arena(const Plan& plan, std::size_t carry, std::size_t record) {
  std::vector<std::size_t> end(static_cast<std::size_t>(plan.max_slots) + 1, 0);  // end[k]: where slot k ends
  std::size_t arena = 0;
  ScheduleGenerator gen = plan.schedule();
  Op op{};
  while (gen.next(op)) {
    const auto k = static_cast<std::size_t>(op.slot);
    if (op.kind == OpKind::AdvanceHidden || op.kind == OpKind::AdvanceRecord) {
      end[k] = end[k - 1] + (op.kind == OpKind::AdvanceHidden ? carry : record);
      arena = std::max(arena, end[k]);
    }
  }
  return arena;
}

}  // namespace

template <class T>
Executor<T>::Executor(const NetShape& shape, LossKind loss, Plan plan)
    : shape_(shape), loss_(loss), plan_(std::move(plan)), net_(shape), head_(shape) {
  arena_ = backend::AlignedBuffer<T>(size_arena(plan_, net_.carry_elems(), net_.record_elems()));
  offset_.assign(static_cast<std::size_t>(plan_.max_slots) + 1, 0);
  cursor_ = backend::AlignedBuffer<T>(net_.carry_elems());
  dcarry_ = backend::AlignedBuffer<T>(net_.carry_elems());
  zeros_ = backend::AlignedBuffer<T>(net_.carry_elems());
  internal_.assign(offset_.size(), 0);
}

template <class T>
std::size_t Executor<T>::workspace_bytes() const {
  return (cursor_.size() + dcarry_.size() + zeros_.size()) * sizeof(T) + net_.scratch_bytes() + head_.scratch_bytes();
}

template <class T>
T* Executor<T>::slot_ptr(std::int32_t slot, const T* h0) {
  if (slot == 0) return const_cast<T*>(h0);  // only ever read
  return arena_.data() + offset_[static_cast<std::size_t>(slot) - 1];
}

template <class T>
RunStats Executor<T>::run(const Params<T>& params, const SequenceBatch<T>& batch, Params<T>& grads, T* final_carry,
                          T* dh0) {
  if (batch.length != plan_.length)
    throw std::invalid_argument("sequence length " + std::to_string(batch.length) + " does not match the plan's " +
                                std::to_string(plan_.length));
  const std::size_t carry = net_.carry_elems();
  const std::size_t carry_bytes = carry * sizeof(T);
  const std::size_t x_step = static_cast<std::size_t>(shape_.batch) * static_cast<std::size_t>(shape_.input_size);
  const T* h0 = batch.h0 ? batch.h0 : zeros_.data();
  auto x_at = [&](std::int64_t t) { return batch.inputs + static_cast<std::size_t>(t - 1) * x_step; };
  const T xent_scale = T(1) / static_cast<T>(batch.length * shape_.batch);

  RunStats stats;
  std::size_t top_bytes = 0;
  std::memcpy(cursor_.data(), h0, carry_bytes);
  std::fill_n(dcarry_.data(), carry, T(0));
  T loss = 0;

  ScheduleGenerator gen = plan_.schedule();
  Op op{};
  while (gen.next(op)) {
    switch (op.kind) {
      case OpKind::Restore: {
        const T* src = slot_ptr(op.slot, h0);
        if (internal_[static_cast<std::size_t>(op.slot)]) src = net_.record_carry_out(src);
        std::memcpy(cursor_.data(), src, carry_bytes);
        break;
      }
      case OpKind::Advance:
        for (std::int64_t t = op.t; t < op.t + op.count; ++t) net_.advance(params, x_at(t), cursor_.data(), cursor_.data());
        stats.forward_steps += op.count;
        break;
      case OpKind::AdvanceHidden: {
        offset_[op.slot] = offset_[op.slot - 1] + carry;
        net_.advance(params, x_at(op.t), cursor_.data(), cursor_.data());
        std::memcpy(slot_ptr(op.slot, h0), cursor_.data(), carry_bytes);
        internal_[static_cast<std::size_t>(op.slot)] = 0;
        stats.forward_steps += 1;
        top_bytes = offset_[op.slot] * sizeof(T);
        break;
      }
      case OpKind::AdvanceRecord: {
        offset_[op.slot] = offset_[op.slot - 1] + net_.record_elems();
        T* rec = slot_ptr(op.slot, h0);
        net_.advance_record(params, x_at(op.t), cursor_.data(), rec);
        std::memcpy(cursor_.data(), net_.record_carry_out(rec), carry_bytes);
        internal_[static_cast<std::size_t>(op.slot)] = 1;
        stats.forward_steps += 1;
        top_bytes = offset_[op.slot] * sizeof(T);
        break;
      }
      case OpKind::Backward: {
        const T* rec = slot_ptr(op.slot, h0);
        const T* h_top = net_.top_hidden(net_.record_carry_out(rec));
        T* dh_top = net_.top_hidden(dcarry_.data());
        if (loss_ == LossKind::Xent) {
          loss += head_.step_xent(params, h_top, batch.class_targets + static_cast<std::size_t>(op.t - 1) * shape_.batch,
                                  xent_scale, dh_top, grads);
        } else if (op.t == batch.length) {
          loss += head_.last_mse(params, h_top, batch.regression_targets, dh_top, grads);
          if (final_carry) std::memcpy(final_carry, net_.record_carry_out(rec), carry_bytes);
        }
        if (loss_ == LossKind::Xent && op.t == batch.length && final_carry)
          std::memcpy(final_carry, net_.record_carry_out(rec), carry_bytes);
        net_.backward(params, x_at(op.t), rec, dcarry_.data(), dcarry_.data(), grads);
        stats.backward_steps += 1;
        break;
      }
      case OpKind::Pop: break;
    }
    stats.peak_arena_bytes = std::max(stats.peak_arena_bytes, top_bytes);
  }
  stats.loss = static_cast<double>(loss);
  if (dh0) std::memcpy(dh0, dcarry_.data(), carry_bytes);
  return stats;
}

template class Executor<float>;
template class Executor<double>;

}  // namespace membptt
