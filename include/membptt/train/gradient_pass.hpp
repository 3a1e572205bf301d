// Where a training step's forward and backward pass runs.
//
// The trainer keeps everything else on the host: the parameters (the truth: checkpoints, resume
// and the optimizer read and write them there), the optimizer's moments, the data and the carried
// hidden state. Each step it hands the parameters and a batch, both in host memory, to a
// GradientPass, which returns the loss and the executor's stats and writes the gradients (and h_T)
// back into host memory. The CPU pass (cpu_device()) wraps Executor<T> and computes in place; the
// CUDA pass (include/membptt/cuda/gradient_pass.hpp, in membptt_cuda) uploads the parameters and
// the batch into device buffers allocated once, runs the device executor and downloads the
// gradients.
//
// The trainer library links no device code: a device is a GradientDevice given to make_trainer
// (nullptr: the CPU). It also supplies the state sizes the planner is told (the device executor's
// workspace differs from the CPU's).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include <optional>

#include "membptt/exec/basic_executor.hpp"
#include "membptt/exec/bidirectional.hpp"
#include "membptt/exec/budget.hpp"

namespace membptt::train {

// A CUDA graph a pass is replayed from: its kernels, and the device memory the driver took for it
// (their arguments; measured by cudaMemGetInfo, so in whole pages: 0 for a small graph). Not
// activation memory and not in the budget: reported beside it.
struct GraphUse {
  std::int64_t kernels = 0;
  std::int64_t bytes = 0;
};

template <class T>
class GradientPass {
 public:
  virtual ~GradientPass() = default;
  // One forward and backward pass of the plan on `batch` at `params`, everything in host memory:
  // returns the loss and the executor's stats (forward steps, peak arena bytes); `grads` receives
  // the gradients (overwritten, not added to), `final_carry` (optional) h_T in the carry layout.
  virtual RunStats run(const Params<T>& params, const SequenceBatch<T>& batch, Params<T>& grads, T* final_carry) = 0;
  // Dropout between layers (the shape's p) for the runs that follow, masks of `seed`, or off.
  virtual void set_dropout(bool on, std::uint64_t seed) = 0;
  // Seconds of the same forward and backward pass again, on the parameters and batch of the last
  // run() (which must still be alive), without transfers (a device is waited for); for timing.
  virtual double time_again() = 0;
  // The plan; a bidirectional pass's: layer 0's (each chain has its own, planned_forward_steps()).
  virtual const Plan& plan() const = 0;
  // Forward steps the plan(s) run per pass: a bidirectional pass's, summed over its chains.
  virtual std::int64_t planned_forward_steps() const { return plan().forward_steps; }
  // Activation memory besides the arena: the executor's workspace (budget.hpp), on its device.
  virtual std::size_t workspace_bytes() const = 0;
  // The CUDA graph the pass is replayed from, if any (zeros without one).
  virtual GraphUse graph() const { return {}; }
};

class GradientDevice {
 public:
  virtual ~GradientDevice() = default;
  // "cpu", or e.g. "cuda:0 (NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB))".
  virtual std::string name() const = 0;
  // What the planner is told: one hidden state, one internal state, and this device executor's
  // workspace, for `shape` with scalars of `scalar_bytes` (4 or 8).
  virtual StateSizes sizes(const NetShape& shape, std::size_t scalar_bytes) const = 0;
  virtual std::unique_ptr<GradientPass<float>> make_pass_f32(const NetShape& shape, LossKind loss, Plan plan) const = 0;
  virtual std::unique_ptr<GradientPass<double>> make_pass_f64(const NetShape& shape, LossKind loss, Plan plan) const = 0;

  // Bidirectional shapes (below): the bytes of the head's scratch a pass holds on this device (its
  // chains' sizes are sizes(chain_shape(shape, l), ...)), and a pass over a stack planned so.
  virtual std::size_t head_scratch_bytes(const NetShape& shape, std::size_t scalar_bytes) const = 0;
  virtual std::unique_ptr<GradientPass<float>> make_bidirectional_pass_f32(const NetShape& shape, LossKind loss,
                                                                           const BidirectionalPlans& plans) const = 0;
  virtual std::unique_ptr<GradientPass<double>> make_bidirectional_pass_f64(const NetShape& shape, LossKind loss,
                                                                            const BidirectionalPlans& plans) const = 0;

  template <class T>
  std::unique_ptr<GradientPass<T>> make_pass(const NetShape& shape, LossKind loss, Plan plan) const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
    if constexpr (std::is_same_v<T, float>)
      return make_pass_f32(shape, loss, std::move(plan));
    else
      return make_pass_f64(shape, loss, std::move(plan));
  }
  template <class T>
  std::unique_ptr<GradientPass<T>> make_bidirectional_pass(const NetShape& shape, LossKind loss,
                                                           const BidirectionalPlans& plans) const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
    if constexpr (std::is_same_v<T, float>)
      return make_bidirectional_pass_f32(shape, loss, plans);
    else
      return make_bidirectional_pass_f64(shape, loss, plans);
  }
};

// The CPU: Executor<T> on the host's parameters and batch, no copies.
std::shared_ptr<const GradientDevice> cpu_device();

// ---- bidirectional shapes (NetShape::bidirectional) ----
//
// A pass forwards a stack (exec/bidirectional.hpp) holding the top outputs y [T x B x 2R], runs
// the head on them (Xent: every step, scale 1/(T*B); MseLast: the last step), accumulating
// dy [T x B x 2R], then the stack's backward (train/bidirectional_pass.hpp). y and dy and the
// head's scratch are held besides the stack's plans: they are taken from the budget first and
// counted in workspace_bytes(). Every function takes the device the pass runs on (null: the CPU):
// its chains' state sizes and its head's scratch.

// The bytes of y and dy and the head's scratch: 2 * T * B * 2R * scalar_bytes + head_scratch_bytes.
double bidirectional_pass_extra_bytes(const NetShape& s, std::int64_t length, std::size_t scalar_bytes,
                                      const GradientDevice* device = nullptr);
// Plain BPTT's memory of a pass (extra + bidirectional_plain_bytes), the base of a share.
double bidirectional_pass_plain_bytes(const NetShape& s, std::int64_t length, std::size_t scalar_bytes,
                                      const GradientDevice* device = nullptr);
// A budget as users write it for a bidirectional pass, in bytes: a share is of the chains' plain
// BPTT memory, with the held sequences and the top outputs whole (bidirectional_share_bytes).
double bidirectional_pass_budget_bytes(const BudgetSpec& spec, const NetShape& s, std::int64_t length,
                                       std::size_t scalar_bytes, const GradientDevice* device = nullptr);
// The least budget in which `policy` runs a pass (extra + bidirectional_least_bytes).
double bidirectional_pass_least_bytes(Policy policy, const NetShape& s, std::int64_t length, std::size_t scalar_bytes,
                                      const GradientDevice* device = nullptr);
// Plans the stack in budget_bytes less the extra (nullopt: plain BPTT). Throws PlanError (one line)
// naming the budget and the least that works when it is too small.
BidirectionalPlans plan_bidirectional_pass(std::optional<Policy> policy, const NetShape& s, std::int64_t length,
                                           std::optional<double> budget_bytes, std::size_t scalar_bytes, double beta,
                                           const GradientDevice* device = nullptr);
// What the plans hold, predicted: the extra, the held sequences and every chain's workspace and
// arena peak.
double bidirectional_pass_planned_bytes(const NetShape& s, const BidirectionalPlans& plans, std::size_t scalar_bytes,
                                        const GradientDevice* device = nullptr);
// The predicted time of the pass against plain BPTT's (the chains' ratios, averaged).
double bidirectional_time_ratio(const BidirectionalPlans& plans);

// A pass over a bidirectional stack on `device` (null: the CPU).
template <class T>
std::unique_ptr<GradientPass<T>> make_bidirectional_pass(const NetShape& shape, LossKind loss,
                                                         const BidirectionalPlans& plans,
                                                         const GradientDevice* device = nullptr);

}  // namespace membptt::train
