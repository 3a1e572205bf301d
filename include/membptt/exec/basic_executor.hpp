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
//   complete(grads) (adds whatever gradient contributions a device still holds back into grads),
//   optionally add(dst, src, n) (dst += src), copy_rows / add_rows(dst, dst_stride, src,
//   src_stride, rows, cols) (the same on `rows` rows of `cols` elements, each at its stride: with a
//   net whose backward also gives dL/dx_t they enable the module form, forward() and backward()) and finish_loss(head, sum) (the loss once the run is over: the sum of what the head returned,
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
#include <optional>
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

// Where the module form's sequences lie, for a chain of a bidirectional stack
// (exec/bidirectional.hpp); the default is the plain layout [T x B x width], forward in time.
struct SequenceLayout {
  bool reverse = false;      // step t (1-based) reads and writes position T - t instead of t - 1
  int output_stride = 0;     // row width of outputs / doutputs (0: the net's output width R) ...
  int output_offset = 0;     // ... of which the net's h takes columns [offset, offset + R)
  bool add_dinputs = false;  // dinputs += dL/d inputs (the other direction wrote them) instead of =
};

struct RunStats {
  double loss = 0;
  std::int64_t forward_steps = 0;    // cell steps run forward (the plan's cost)
  std::int64_t backward_steps = 0;
  std::size_t peak_arena_bytes = 0;  // most bytes the stored states ever took
};

// The Backend's net for a plan: Backend::make_net(shape, plan) when it has one (the CPU's groups
// its weight gradients as the plan says, recurrent_net.hpp; the executor then flushes it at the
// end of every pass), else Net(shape).
template <class Backend>
typename Backend::Net make_backend_net(const NetShape& s, const Plan& plan) {
  if constexpr (requires { Backend::make_net(s, plan); })
    return Backend::make_net(s, plan);
  else
    return typename Backend::Net(s);
}
template <class Backend>
inline constexpr bool backend_net_flushes = requires(typename Backend::Net& n, const NetShape& s, const Plan& p) {
  Backend::make_net(s, p);
  n.flush();
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

 private:
  // Optional hooks of a device net, found at compile time (the CPU's RecurrentNet has neither):
  // begin_pass(x, T) announces the pass's inputs (input projection by blocks of steps); a
  // five-argument advance_record also writes the carry it produces into the cursor.
  static constexpr bool kNetTakesInputs = requires(Net& n, const T* x) { n.begin_pass(x, std::int64_t{0}); };
  static constexpr bool kNetRecordsToCursor = requires(Net& n, const ParamsT& p, const T* x, T* c) {
    n.advance_record(p, x, c, c, c);
  };
  // The module form needs dL/dx_t from the net and an elementwise add from the backend.
  static constexpr bool kModuleForm = requires(Net& n, const ParamsT& p, ParamsT& g, const T* x, T* c) {
    n.backward(p, x, x, x, c, g, c);
    Backend::add(c, x, std::size_t{0});
    Backend::add_rows(c, std::size_t{0}, x, std::size_t{0}, std::size_t{0}, std::size_t{0});
    Backend::copy_rows(c, std::size_t{0}, x, std::size_t{0}, std::size_t{0}, std::size_t{0});
  };
  // A device net that groups the weight gradients of consecutive backward steps by where their
  // inputs lie learns of a reversed layout (set_reverse: positions ascend as backward runs).
  static constexpr bool kNetTakesOrder = requires(Net& n) { n.set_reverse(true); };
  static constexpr bool kNetFlushes = backend_net_flushes<Backend>;


 public:
  BasicExecutor(const NetShape& shape, LossKind loss, Plan plan)
      : shape_(shape), loss_(loss), plan_(std::move(plan)), net_(make_backend_net<Backend>(shape, plan_)), head_(shape),
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
  // Bytes held besides the arena: cursor, carry gradient, zero h_0, the cell's and head's scratch
  // (and, once a layout added dL/dx to its inputs, one step's dL/dx).
  std::size_t workspace_bytes() const {
    return (cursor_.size() + dcarry_.size() + zeros_.size() + dx_.size()) * sizeof(T) + net_.scratch_bytes() +
           head_.scratch_bytes();
  }
  const Net& net() const { return net_; }
  Net& net() { return net_; }  // e.g. to switch dropout on for the passes that follow

  // The module form (membptt.torch, the C API's membptt_rnn): the stack of cells without a head,
  // its outputs given to the caller, forward and backward called apart.
  //
  // forward() runs the schedule up to its first backward step: every step once, in order, writing
  // the top layer's h_t to outputs [T x B x H] (time-major) and the carry after step T to
  // final_carry (optional, carry layout). It keeps the schedule's stored states, and the pointers
  // inputs [T x B x I] and h0 (carry layout; null: zeros), which must stay valid and unchanged until
  // backward(). `layout` places the sequences otherwise (reversed in time, outputs in some columns
// of wider rows, dinputs added to): a bidirectional stack's chains (exec/bidirectional.hpp).
// backward() runs the rest: doutputs = dL/d outputs [T x B x H] and dfinal_carry =
  // dL/d final carry (each optional: zeros); writes dinputs = dL/d inputs [T x B x I] and dh0 =
  // dL/d h0 (each optional); ADDS the parameter gradients into grads. The forward steps of both
  // together are the plan's cost: the outputs are computed once, in the first sweep.
  RunStats forward(const ParamsT& params, const T* inputs, std::int64_t length, const T* h0, T* outputs,
                   T* final_carry, const SequenceLayout& layout = {})
    requires kModuleForm;
  RunStats backward(const ParamsT& params, const T* doutputs, const T* dfinal_carry, T* dinputs, T* dh0,
                    ParamsT& grads)
    requires kModuleForm;
  // True between a forward() and its backward().
  bool waiting() const { return pending_ && pending_->forward_done; }

 private:
  // Runs op unless it is a backward step (then returns false, doing nothing); after_step(t) after
  // each forward step t.
  template <class AfterStep>
  bool forward_op(const Op& op, const ParamsT& params, const T* inputs, const T* h0, RunStats& stats,
                  std::size_t& top, AfterStep&& after_step);
  // The sequence position of step t (1-based) under layout_.
  std::size_t position(std::int64_t t) const {
    return static_cast<std::size_t>(layout_.reverse ? plan_.length - t : t - 1);
  }
  // Copies between a step's h [B x R] and its rows in a [B x stride] sequence row (the layout's).
  void put_output(T* row, const T* h) const;
  void add_doutput(T* dh, const T* row) const;
  void check_length(std::int64_t length) const {
    if (length != plan_.length)
      throw std::invalid_argument("sequence length " + std::to_string(length) + " does not match the plan's " +
                                  std::to_string(plan_.length));
  }

  // A forward() waiting for its backward(): where the schedule stopped and what it ran on.
  struct Pending {
    ScheduleGenerator gen;
    Op op;
    const T* inputs;
    const T* h0;
    RunStats stats;
    std::size_t top;
    bool forward_done;
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
  std::optional<Pending> pending_;      // the module form between forward() and backward()
  SequenceLayout layout_;               // the module form's (enqueue(): the default)
  Buffer dx_;                           // layout_.add_dinputs: one step's dL/dx, then added
};

template <class Backend>
template <class AfterStep>
bool BasicExecutor<Backend>::forward_op(const Op& op, const ParamsT& params, const T* inputs, const T* h0,
                                        RunStats& stats, std::size_t& top, AfterStep&& after_step) {
  const std::size_t carry = net_.carry_elems();
  const std::size_t x_step = static_cast<std::size_t>(shape_.batch) * static_cast<std::size_t>(shape_.input_size);
  auto x_at = [&](std::int64_t t) { return inputs + position(t) * x_step; };
  auto push = [&](std::int32_t slot, std::size_t elems, bool internal) {
    offset_[slot] = offset_[slot - 1] + elems;
    internal_[slot] = internal;
    top = offset_[slot];
    return slot_ptr(slot, h0);
  };
  switch (op.kind) {
    case OpKind::Restore: {
      const T* src = slot_ptr(op.slot, h0);
      Backend::copy(cursor_.data(), internal_[op.slot] ? net_.record_carry_out(src) : src, carry);
      return true;
    }
    case OpKind::Advance:
      for (std::int64_t t = op.t; t < op.t + op.count; ++t) {
        net_.advance(params, x_at(t), cursor_.data(), cursor_.data());
        after_step(t);
      }
      stats.forward_steps += op.count;
      return true;
    case OpKind::AdvanceHidden: {
      T* dst = push(op.slot, carry, false);
      net_.advance(params, x_at(op.t), cursor_.data(), cursor_.data());
      Backend::copy(dst, cursor_.data(), carry);
      stats.forward_steps += 1;
      after_step(op.t);
      return true;
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
      after_step(op.t);
      return true;
    }
    case OpKind::Pop: return true;
    case OpKind::Backward: return false;
    case OpKind::Keep:
    case OpKind::Drop:  // online schedules run on OnlineExecutor (online_executor.hpp), never on a Plan
      throw std::logic_error("membptt: an offline plan's schedule has an online op");
  }
  return false;
}

template <class Backend>
RunStats BasicExecutor<Backend>::enqueue(const ParamsT& params, const SequenceBatch<T>& batch, ParamsT& grads,
                                         T* final_carry, T* dh0) {
  check_length(batch.length);
  const std::size_t carry = net_.carry_elems();
  const std::size_t x_step = static_cast<std::size_t>(shape_.batch) * static_cast<std::size_t>(shape_.input_size);
  const T* h0 = batch.h0 ? batch.h0 : zeros_.data();
  const T xent_scale = T(1) / static_cast<T>(batch.length * shape_.batch);
  layout_ = SequenceLayout{};
  if constexpr (kNetTakesOrder) net_.set_reverse(false);

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
    if (!forward_op(op, params, batch.inputs, h0, stats, top, [](std::int64_t) {})) {  // a backward step
      const T* rec = slot_ptr(op.slot, h0);
      const T* h_top = net_.top_hidden(net_.record_carry_out(rec));
      T* dh_top = net_.top_hidden(dcarry_.data());
      if (loss_ == LossKind::Xent)
        loss += head_.step_xent(params, h_top, batch.class_targets + static_cast<std::size_t>(op.t - 1) * shape_.batch,
                                xent_scale, dh_top, grads);
      else if (op.t == batch.length)
        loss += head_.last_mse(params, h_top, batch.regression_targets, dh_top, grads);
      if (op.t == batch.length && final_carry) Backend::copy(final_carry, net_.record_carry_out(rec), carry);
      net_.backward(params, batch.inputs + static_cast<std::size_t>(op.t - 1) * x_step, rec, dcarry_.data(),
                    dcarry_.data(), grads);
      stats.backward_steps += 1;
    }
    stats.peak_arena_bytes = std::max(stats.peak_arena_bytes, top * sizeof(T));
  }
  if (dh0) Backend::copy(dh0, dcarry_.data(), carry);
  if constexpr (kNetTakesInputs) net_.begin_pass(nullptr, 0);  // the pass is over
  if constexpr (kNetFlushes) net_.flush();
  Backend::complete(grads);
  return stats;
}

template <class Backend>
void BasicExecutor<Backend>::put_output(T* row, const T* h) const {
  const std::size_t r = static_cast<std::size_t>(output_width(shape_)), b = static_cast<std::size_t>(shape_.batch);
  if (layout_.output_stride == 0) return Backend::copy(row, h, b * r);
  Backend::copy_rows(row + layout_.output_offset, static_cast<std::size_t>(layout_.output_stride), h, r, b, r);
}

template <class Backend>
void BasicExecutor<Backend>::add_doutput(T* dh, const T* row) const {
  const std::size_t r = static_cast<std::size_t>(output_width(shape_)), b = static_cast<std::size_t>(shape_.batch);
  if (layout_.output_stride == 0) return Backend::add(dh, row, b * r);
  Backend::add_rows(dh, r, row + layout_.output_offset, static_cast<std::size_t>(layout_.output_stride), b, r);
}

template <class Backend>
RunStats BasicExecutor<Backend>::forward(const ParamsT& params, const T* inputs, std::int64_t length, const T* h0,
                                         T* outputs, T* final_carry, const SequenceLayout& layout)
  requires kModuleForm
{
  check_length(length);
  const int r = output_width(shape_);
  if (layout.output_stride != 0 &&
      (layout.output_offset < 0 || layout.output_stride < r || layout.output_offset > layout.output_stride - r))
    throw std::invalid_argument("SequenceLayout: columns " + std::to_string(layout.output_offset) + " + " +
                                std::to_string(r) + " do not fit rows of " + std::to_string(layout.output_stride));
  layout_ = layout;
  if constexpr (kNetTakesOrder) net_.set_reverse(layout.reverse);
  const std::size_t carry = net_.carry_elems();
  const std::size_t y_step = static_cast<std::size_t>(shape_.batch) *
                             static_cast<std::size_t>(layout.output_stride != 0 ? layout.output_stride : r);
  if (layout.add_dinputs && dx_.size() == 0)  // once per executor, not per step
    dx_ = Buffer(static_cast<std::size_t>(shape_.batch) * static_cast<std::size_t>(shape_.input_size));
  pending_.reset();
  pending_.emplace(Pending{plan_.schedule(), Op{}, inputs, h0 ? h0 : zeros_.data(), RunStats{}, 0, false});
  Pending& p = *pending_;
  if constexpr (kNetTakesInputs) net_.begin_pass(inputs, length);  // until the end of backward()
  Backend::copy(cursor_.data(), p.h0, carry);
  std::int64_t last = 0;  // the first sweep runs steps 1..T once each, in order
  auto emit = [&](std::int64_t t) {
    if (t != last + 1) throw std::logic_error("membptt: a schedule's first sweep ran step " + std::to_string(t) +
                                              " after step " + std::to_string(last));
    last = t;
    put_output(outputs + position(t) * y_step, net_.top_hidden(cursor_.data()));
  };
  while (true) {
    if (!p.gen.next(p.op)) throw std::logic_error("membptt: a schedule ended before its first backward step");
    const bool forward_step = forward_op(p.op, params, inputs, p.h0, p.stats, p.top, emit);
    p.stats.peak_arena_bytes = std::max(p.stats.peak_arena_bytes, p.top * sizeof(T));
    if (!forward_step) break;  // p.op: the first backward step, run by backward()
  }
  if (last != length) throw std::logic_error("membptt: a schedule's first sweep stopped at step " + std::to_string(last));
  if (final_carry) Backend::copy(final_carry, cursor_.data(), carry);
  p.forward_done = true;
  return p.stats;
}

template <class Backend>
RunStats BasicExecutor<Backend>::backward(const ParamsT& params, const T* doutputs, const T* dfinal_carry, T* dinputs,
                                          T* dh0, ParamsT& grads)
  requires kModuleForm
{
  if (!pending_ || !pending_->forward_done)
    throw std::logic_error("membptt: backward() without a forward() waiting for it");
  Pending& p = *pending_;
  const std::size_t carry = net_.carry_elems();
  const std::size_t x_step = static_cast<std::size_t>(shape_.batch) * static_cast<std::size_t>(shape_.input_size);
  const std::size_t y_step =
      static_cast<std::size_t>(shape_.batch) *
      static_cast<std::size_t>(layout_.output_stride != 0 ? layout_.output_stride : output_width(shape_));
  if (dfinal_carry)
    Backend::copy(dcarry_.data(), dfinal_carry, carry);
  else
    Backend::zero(dcarry_.data(), carry);
  bool more = true;  // p.op holds the first backward step
  while (more) {
    if (!forward_op(p.op, params, p.inputs, p.h0, p.stats, p.top, [](std::int64_t) {})) {
      const T* rec = slot_ptr(p.op.slot, p.h0);
      const std::size_t k = position(p.op.t);
      if (doutputs) add_doutput(net_.top_hidden(dcarry_.data()), doutputs + k * y_step);
      T* dx = dinputs == nullptr ? nullptr : layout_.add_dinputs ? dx_.data() : dinputs + k * x_step;
      net_.backward(params, p.inputs + k * x_step, rec, dcarry_.data(), dcarry_.data(), grads, dx);
      if (dinputs && layout_.add_dinputs) Backend::add(dinputs + k * x_step, dx_.data(), x_step);
      p.stats.backward_steps += 1;
    }
    p.stats.peak_arena_bytes = std::max(p.stats.peak_arena_bytes, p.top * sizeof(T));
    more = p.gen.next(p.op);
  }
  if (dh0) Backend::copy(dh0, dcarry_.data(), carry);
  if constexpr (kNetTakesInputs) net_.begin_pass(nullptr, 0);  // the pass is over
  if constexpr (kNetFlushes) net_.flush();
  Backend::complete(grads);
  const RunStats stats = p.stats;
  pending_.reset();
  return stats;
}

}  // namespace membptt
