#include "membptt/train/gradient_pass.hpp"

#include <algorithm>
#include <chrono>
#include <sstream>
#include <stdexcept>

#include "membptt/cells/head.hpp"
#include "membptt/exec/executor.hpp"

namespace membptt::train {
namespace {

// Executor<T> on the host's arrays: grads zeroed, then the executor adds into them (what the
// trainer always did, so the bits are unchanged).
template <class T>
class CpuGradientPass final : public GradientPass<T> {
 public:
  CpuGradientPass(const NetShape& shape, LossKind loss, Plan plan) : exec_(shape, loss, std::move(plan)) {}

  RunStats run(const Params<T>& params, const SequenceBatch<T>& batch, Params<T>& grads, T* final_carry) override {
    grads.zero();
    last_params_ = &params;
    last_batch_ = batch;
    last_grads_ = &grads;
    return exec_.run(params, batch, grads, final_carry);
  }

  double time_again() override {
    if (!last_grads_) throw std::logic_error("GradientPass::time_again before run");
    last_grads_->zero();
    const auto t0 = std::chrono::steady_clock::now();
    exec_.run(*last_params_, last_batch_, *last_grads_);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  void set_dropout(bool on, std::uint64_t seed) override { exec_.net().set_dropout(on, seed); }
  const Plan& plan() const override { return exec_.plan(); }
  std::size_t workspace_bytes() const override { return exec_.workspace_bytes(); }

 private:
  Executor<T> exec_;
  const Params<T>* last_params_ = nullptr;
  SequenceBatch<T> last_batch_;
  Params<T>* last_grads_ = nullptr;
};

class CpuDevice final : public GradientDevice {
 public:
  std::string name() const override { return "cpu"; }
  StateSizes sizes(const NetShape& shape, std::size_t scalar_bytes) const override {
    return state_sizes(shape, scalar_bytes);  // (a bidirectional shape: plan_bidirectional_pass instead)
  }
  std::unique_ptr<GradientPass<float>> make_pass_f32(const NetShape& shape, LossKind loss, Plan plan) const override {
    return std::make_unique<CpuGradientPass<float>>(shape, loss, std::move(plan));
  }
  std::unique_ptr<GradientPass<double>> make_pass_f64(const NetShape& shape, LossKind loss, Plan plan) const override {
    return std::make_unique<CpuGradientPass<double>>(shape, loss, std::move(plan));
  }
};

// A bidirectional stack, the head on its top outputs y (held), then the stack's backward.
template <class T>
class CpuBidirectionalPass final : public GradientPass<T> {
 public:
  CpuBidirectionalPass(const NetShape& shape, LossKind loss, const BidirectionalPlans& plans)
      : shape_(shape),
        loss_(loss),
        plan0_(*plans.layer.at(0)),
        stack_(shape, plans),
        head_(shape),
        y_(sequence()),
        dy_(sequence()) {}

  RunStats run(const Params<T>& params, const SequenceBatch<T>& batch, Params<T>& grads, T* final_carry) override {
    last_params_ = &params;
    last_batch_ = batch;
    last_grads_ = &grads;
    return pass(params, batch, grads, final_carry);
  }

  double time_again() override {
    if (!last_grads_) throw std::logic_error("GradientPass::time_again before run");
    const auto t0 = std::chrono::steady_clock::now();
    pass(*last_params_, last_batch_, *last_grads_, nullptr);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  void set_dropout(bool on, std::uint64_t seed) override { stack_.set_dropout(on, seed); }
  const Plan& plan() const override { return plan0_; }
  std::int64_t planned_forward_steps() const override { return stack_.planned_forward_steps(); }
  std::size_t workspace_bytes() const override {
    return stack_.workspace_bytes() + stack_.held_bytes() + (y_.size() + dy_.size()) * sizeof(T) + head_.scratch_bytes();
  }

 private:
  std::size_t sequence() const {
    return static_cast<std::size_t>(plan0_.length) * static_cast<std::size_t>(shape_.batch) * 2 *
           static_cast<std::size_t>(output_width(shape_));
  }

  RunStats pass(const Params<T>& params, const SequenceBatch<T>& batch, Params<T>& grads, T* final_carry) {
    if (batch.length != plan0_.length)
      throw std::invalid_argument("sequence length " + std::to_string(batch.length) + " does not match the plan's " +
                                  std::to_string(plan0_.length));
    grads.zero();
    const RunStats f = stack_.forward(params.data(), batch.inputs, batch.length, batch.h0, y_.data(), final_carry);
    dy_.zero();
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
    r.loss = static_cast<double>(loss);
    r.peak_arena_bytes = std::max(f.peak_arena_bytes, r.peak_arena_bytes);
    return r;
  }

  NetShape shape_;
  LossKind loss_;
  Plan plan0_;
  BidirectionalStack<T> stack_;
  Head<T> head_;
  backend::AlignedBuffer<T> y_, dy_;
  const Params<T>* last_params_ = nullptr;
  SequenceBatch<T> last_batch_;
  Params<T>* last_grads_ = nullptr;
};

}  // namespace

std::shared_ptr<const GradientDevice> cpu_device() {
  static const auto d = std::make_shared<const CpuDevice>();
  return d;
}

double bidirectional_pass_extra_bytes(const NetShape& s, std::int64_t length, std::size_t scalar_bytes) {
  return (2.0 * static_cast<double>(length) * s.batch * 2.0 * output_width(s) + 2.0 * s.batch * s.output_size) *
         static_cast<double>(scalar_bytes);
}

double bidirectional_pass_plain_bytes(const NetShape& s, std::int64_t length, std::size_t scalar_bytes) {
  return bidirectional_pass_extra_bytes(s, length, scalar_bytes) + bidirectional_plain_bytes(s, length, scalar_bytes);
}

double bidirectional_pass_budget_bytes(const BudgetSpec& spec, const NetShape& s, std::int64_t length,
                                       std::size_t scalar_bytes) {
  return spec.percent ? bidirectional_share_bytes(spec.value, s, length, scalar_bytes,
                                                  bidirectional_pass_extra_bytes(s, length, scalar_bytes))
                      : spec.value;
}

double bidirectional_pass_least_bytes(Policy policy, const NetShape& s, std::int64_t length, std::size_t scalar_bytes) {
  return bidirectional_pass_extra_bytes(s, length, scalar_bytes) +
         bidirectional_least_bytes(policy, s, length, scalar_bytes);
}

BidirectionalPlans plan_bidirectional_pass(std::optional<Policy> policy, const NetShape& s, std::int64_t length,
                                           std::optional<double> budget_bytes, std::size_t scalar_bytes, double beta) {
  const double extra = bidirectional_pass_extra_bytes(s, length, scalar_bytes);
  if (!budget_bytes) return plan_bidirectional(policy, s, length, std::nullopt, scalar_bytes, beta);
  const double least = bidirectional_pass_least_bytes(policy.value_or(Policy::Msm), s, length, scalar_bytes);
  if (!(*budget_bytes >= least)) {
    std::ostringstream os;
    os << "memory budget " << bytes_text(*budget_bytes) << " is below the least in which policy "
       << policy_name(policy.value_or(Policy::Msm)) << " runs this bidirectional network of " << s.num_layers
       << " layer(s) over " << length << " steps: " << bytes_text(least) << ", of which " << bytes_text(extra)
       << " hold the top layer's outputs, their gradient and the head's scratch, and "
       << bytes_text(bidirectional_held_bytes(s, length, scalar_bytes))
       << " the inner layers' outputs and a gradient (all growing with the length), and the rest the "
       << 2 * s.num_layers << " chains' plans; plain BPTT needs "
       << bytes_text(bidirectional_pass_plain_bytes(s, length, scalar_bytes));
    throw PlanError(os.str());
  }
  return plan_bidirectional(policy, s, length, *budget_bytes - extra, scalar_bytes, beta);
}

double bidirectional_pass_planned_bytes(const NetShape& s, const BidirectionalPlans& plans, std::size_t scalar_bytes) {
  const std::int64_t length = plans.layer.at(0)->length;
  double held = bidirectional_pass_extra_bytes(s, length, scalar_bytes) + plans.held_bytes;
  for (int l = 0; l < s.num_layers; ++l) {
    const StateSizes sizes = state_sizes(chain_shape(s, l), scalar_bytes);
    held += 2.0 * (static_cast<double>(sizes.workspace_bytes) +
                   plans.layer[static_cast<std::size_t>(l)]->peak_units * static_cast<double>(sizes.hidden_bytes));
  }
  return held;
}

double bidirectional_time_ratio(const BidirectionalPlans& plans) {
  double sum = 0;
  for (const auto& p : plans.layer) sum += p->time_ratio();
  return plans.layer.empty() ? 0 : sum / static_cast<double>(plans.layer.size());
}

template <class T>
std::unique_ptr<GradientPass<T>> make_bidirectional_pass(const NetShape& shape, LossKind loss,
                                                         const BidirectionalPlans& plans) {
  return std::make_unique<CpuBidirectionalPass<T>>(shape, loss, plans);
}

template std::unique_ptr<GradientPass<float>> make_bidirectional_pass<float>(const NetShape&, LossKind,
                                                                             const BidirectionalPlans&);
template std::unique_ptr<GradientPass<double>> make_bidirectional_pass<double>(const NetShape&, LossKind,
                                                                               const BidirectionalPlans&);

}  // namespace membptt::train
