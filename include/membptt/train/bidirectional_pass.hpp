// The work of a bidirectional training pass, written once over a Backend (exec/executor.hpp's
// CpuBackend, cuda/cuda_backend.hpp's device backend): a BasicBidirectionalStack forwarded into the
// top outputs y [T x B x 2R] (held), the head on them (Xent: every step in order, scale 1/(T*B);
// MseLast: the last step), which accumulates dy [T x B x 2R], then the stack's backward. The
// trainer's CPU pass (gradient_pass.cpp) runs it on the host's arrays; the device pass
// (cuda/gradient_pass.hpp) on device buffers it uploads. Every policy runs the head on the same
// y in the same order, and the stack's chains are plain BPTT's bits, so the pass is too.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "membptt/exec/bidirectional.hpp"

namespace membptt::train {

template <class Backend>
class BidirectionalHeadPass {
 public:
  using T = typename Backend::Scalar;
  using ParamsT = typename Backend::Params;

  BidirectionalHeadPass(const NetShape& shape, LossKind loss, const BidirectionalPlans& plans)
      : shape_(shape), loss_(loss), plan0_(*plans.layer.at(0)), stack_(shape, plans), head_(shape),
        y_(sequence()), dy_(sequence()) {}

  // params, grads: the whole network's (the stack's tensors, then the head's), grads overwritten;
  // the batch's arrays and final_carry (optional, PyTorch's layout) where the Backend computes.
  RunStats run(const ParamsT& params, const SequenceBatch<T>& batch, ParamsT& grads, T* final_carry) {
    if (batch.length != plan0_.length)
      throw std::invalid_argument("sequence length " + std::to_string(batch.length) + " does not match the plan's " +
                                  std::to_string(plan0_.length));
    grads.zero();
    const RunStats f = stack_.forward(params.data(), batch.inputs, batch.length, batch.h0, y_.data(), final_carry);
    Backend::zero(dy_.data(), dy_.size());
    const std::size_t row = static_cast<std::size_t>(shape_.batch) * 2 * static_cast<std::size_t>(output_width(shape_));
    const auto B = static_cast<std::size_t>(shape_.batch);
    T loss = T(0);
    if (loss_ == LossKind::Xent) {
      const T scale = T(1) / (static_cast<T>(batch.length) * static_cast<T>(shape_.batch));
      for (std::int64_t t = 0; t < batch.length; ++t) {
        const auto k = static_cast<std::size_t>(t);
        loss += head_.step_xent(params, y_.data() + k * row, batch.class_targets + k * B, scale, dy_.data() + k * row,
                                grads);
      }
    } else {
      const auto k = static_cast<std::size_t>(batch.length - 1);
      loss = head_.last_mse(params, y_.data() + k * row, batch.regression_targets, dy_.data() + k * row, grads);
    }
    // The rnn.* part of grads (first in the layout); the head's stays as the head wrote it.
    // (The backward's stats continue the forward's: the whole pass, summed over the chains.)
    RunStats r = stack_.backward(params.data(), dy_.data(), nullptr, nullptr, nullptr, grads.data());
    r.loss = static_cast<double>(Backend::finish_loss(head_, loss));
    r.peak_arena_bytes = std::max(f.peak_arena_bytes, r.peak_arena_bytes);
    return r;
  }

  void set_dropout(bool on, std::uint64_t seed) { stack_.set_dropout(on, seed); }
  const Plan& plan() const { return plan0_; }
  std::int64_t planned_forward_steps() const { return stack_.planned_forward_steps(); }
  // Everything held besides the chains' arenas: their workspaces, the stack's sequences and carries,
  // y and dy, the head's scratch.
  std::size_t workspace_bytes() const {
    return stack_.workspace_bytes() + stack_.held_bytes() + (y_.size() + dy_.size()) * sizeof(T) + head_.scratch_bytes();
  }

 private:
  std::size_t sequence() const {
    return static_cast<std::size_t>(plan0_.length) * static_cast<std::size_t>(shape_.batch) * 2 *
           static_cast<std::size_t>(output_width(shape_));
  }

  NetShape shape_;
  LossKind loss_;
  Plan plan0_;
  BasicBidirectionalStack<Backend> stack_;
  typename Backend::Head head_;
  typename Backend::Buffer y_, dy_;
};

}  // namespace membptt::train
