// The executor: runs any schedule of the planner over a real network, inside one arena.
//
// The arena is the schedule's stack (op.hpp): slot k sits at a fixed offset, hidden entries take
// carry_elems, internal entries record_elems. It is sized once, at construction, by a dry pass
// over the schedule, and never grows; run() allocates nothing. Besides the arena the executor
// holds a fixed workspace (the cursor, the carry gradient, the cell's and head's scratch); the
// memory budget in bytes covers both (see budget.hpp).
//
// Every policy runs the same kernels on the same inputs in the same backward order T..1, so the
// loss and gradients are bitwise identical to plain BPTT's; run() counts the forward steps it
// really ran and the peak bytes the arena really held, which must equal the plan's.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "membptt/backend/buffer.hpp"
#include "membptt/cells/head.hpp"
#include "membptt/cells/recurrent_net.hpp"
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

template <class T>
class Executor {
 public:
  Executor(const NetShape& shape, LossKind loss, Plan plan);

  // One forward and backward pass: returns the loss and ADDS the gradients into `grads`.
  // `final_carry` (optional) receives h_T (for truncated BPTT over a stream) and `dh0` (optional)
  // dL/dh_0.
  RunStats run(const Params<T>& params, const SequenceBatch<T>& batch, Params<T>& grads,
               T* final_carry = nullptr, T* dh0 = nullptr);

  const Plan& plan() const { return plan_; }
  std::size_t arena_bytes() const { return arena_.size() * sizeof(T); }
  // Bytes held besides the arena: cursor, carry gradient, the cell's and the head's scratch.
  std::size_t workspace_bytes() const;
  const RecurrentNet<T>& net() const { return net_; }

 private:
  T* slot_ptr(std::int32_t slot, const T* h0);

  NetShape shape_;
  LossKind loss_;
  Plan plan_;
  RecurrentNet<T> net_;
  Head<T> head_;
  backend::AlignedBuffer<T> arena_;
  backend::AlignedBuffer<T> cursor_, dcarry_, zeros_;
  std::vector<std::size_t> offset_;     // per stack depth k: where slot k ends (slot 0, h_0: at 0)
  std::vector<std::uint8_t> internal_;  // per stack depth: 1 when it holds an internal state
};

extern template class Executor<float>;
extern template class Executor<double>;

}  // namespace membptt
