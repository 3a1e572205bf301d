#include "membptt/train/gradient_pass.hpp"

#include <algorithm>
#include <chrono>
#include <sstream>
#include <stdexcept>

#include "membptt/cells/head.hpp"
#include "membptt/exec/executor.hpp"
#include "membptt/train/bidirectional_pass.hpp"

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
  std::size_t head_scratch_bytes(const NetShape& shape, std::size_t scalar_bytes) const override {
    return scalar_bytes == sizeof(float) ? Head<float>::scratch_bytes_for(shape) : Head<double>::scratch_bytes_for(shape);
  }
  std::unique_ptr<GradientPass<float>> make_bidirectional_pass_f32(const NetShape& shape, LossKind loss,
                                                                   const BidirectionalPlans& plans) const override;
  std::unique_ptr<GradientPass<double>> make_bidirectional_pass_f64(const NetShape& shape, LossKind loss,
                                                                    const BidirectionalPlans& plans) const override;
};

// A bidirectional stack, the head on its top outputs y (held), then the stack's backward
// (bidirectional_pass.hpp), on the host's arrays.
template <class T>
class CpuBidirectionalPass final : public GradientPass<T> {
 public:
  CpuBidirectionalPass(const NetShape& shape, LossKind loss, const BidirectionalPlans& plans) : core_(shape, loss, plans) {}

  RunStats run(const Params<T>& params, const SequenceBatch<T>& batch, Params<T>& grads, T* final_carry) override {
    last_params_ = &params;
    last_batch_ = batch;
    last_grads_ = &grads;
    return core_.run(params, batch, grads, final_carry);
  }

  double time_again() override {
    if (!last_grads_) throw std::logic_error("GradientPass::time_again before run");
    const auto t0 = std::chrono::steady_clock::now();
    core_.run(*last_params_, last_batch_, *last_grads_, nullptr);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  void set_dropout(bool on, std::uint64_t seed) override { core_.set_dropout(on, seed); }
  const Plan& plan() const override { return core_.plan(); }
  std::int64_t planned_forward_steps() const override { return core_.planned_forward_steps(); }
  std::size_t workspace_bytes() const override { return core_.workspace_bytes(); }

 private:
  BidirectionalHeadPass<CpuBackend<T>> core_;
  const Params<T>* last_params_ = nullptr;
  SequenceBatch<T> last_batch_;
  Params<T>* last_grads_ = nullptr;
};

std::unique_ptr<GradientPass<float>> CpuDevice::make_bidirectional_pass_f32(const NetShape& shape, LossKind loss,
                                                                           const BidirectionalPlans& plans) const {
  return std::make_unique<CpuBidirectionalPass<float>>(shape, loss, plans);
}
std::unique_ptr<GradientPass<double>> CpuDevice::make_bidirectional_pass_f64(const NetShape& shape, LossKind loss,
                                                                            const BidirectionalPlans& plans) const {
  return std::make_unique<CpuBidirectionalPass<double>>(shape, loss, plans);
}

const GradientDevice& or_cpu(const GradientDevice* device) { return device ? *device : *cpu_device(); }

// The device's chain sizes for the planner.
ChainSizes chain_sizes(const GradientDevice& device, std::size_t scalar_bytes) {
  return [&device, scalar_bytes](const NetShape& chain) { return device.sizes(chain, scalar_bytes); };
}

}  // namespace

std::shared_ptr<const GradientDevice> cpu_device() {
  static const auto d = std::make_shared<const CpuDevice>();
  return d;
}

double bidirectional_pass_extra_bytes(const NetShape& s, std::int64_t length, std::size_t scalar_bytes,
                                      const GradientDevice* device) {
  return 2.0 * static_cast<double>(length) * s.batch * 2.0 * output_width(s) * static_cast<double>(scalar_bytes) +
         static_cast<double>(or_cpu(device).head_scratch_bytes(s, scalar_bytes));
}

double bidirectional_pass_plain_bytes(const NetShape& s, std::int64_t length, std::size_t scalar_bytes,
                                      const GradientDevice* device) {
  return bidirectional_pass_extra_bytes(s, length, scalar_bytes, device) +
         bidirectional_plain_bytes(s, length, scalar_bytes, chain_sizes(or_cpu(device), scalar_bytes));
}

double bidirectional_pass_budget_bytes(const BudgetSpec& spec, const NetShape& s, std::int64_t length,
                                       std::size_t scalar_bytes, const GradientDevice* device) {
  return spec.percent ? bidirectional_share_bytes(spec.value, s, length, scalar_bytes,
                                                  bidirectional_pass_extra_bytes(s, length, scalar_bytes, device),
                                                  chain_sizes(or_cpu(device), scalar_bytes))
                      : spec.value;
}

double bidirectional_pass_least_bytes(Policy policy, const NetShape& s, std::int64_t length, std::size_t scalar_bytes,
                                      const GradientDevice* device) {
  return bidirectional_pass_extra_bytes(s, length, scalar_bytes, device) +
         bidirectional_least_bytes(policy, s, length, scalar_bytes, chain_sizes(or_cpu(device), scalar_bytes));
}

BidirectionalPlans plan_bidirectional_pass(std::optional<Policy> policy, const NetShape& s, std::int64_t length,
                                           std::optional<double> budget_bytes, std::size_t scalar_bytes, double beta,
                                           const GradientDevice* device) {
  const ChainSizes sizes = chain_sizes(or_cpu(device), scalar_bytes);
  const double extra = bidirectional_pass_extra_bytes(s, length, scalar_bytes, device);
  if (!budget_bytes) return plan_bidirectional(policy, s, length, std::nullopt, scalar_bytes, beta, sizes);
  const double least = bidirectional_pass_least_bytes(policy.value_or(Policy::Msm), s, length, scalar_bytes, device);
  if (!(*budget_bytes >= least)) {
    std::ostringstream os;
    os << "memory budget " << bytes_text(*budget_bytes) << " is below the least in which policy "
       << policy_name(policy.value_or(Policy::Msm)) << " runs this bidirectional network of " << s.num_layers
       << " layer(s) over " << length << " steps: " << bytes_text(least) << ", of which " << bytes_text(extra)
       << " hold the top layer's outputs, their gradient and the head's scratch (growing with the length), "
       << bytes_text(bidirectional_held_bytes(s, length, scalar_bytes))
       << (s.num_layers > 1 ? " the inner layers' outputs and a gradient (growing too), and the chains' carries,"
                            : " the chains' carries,")
       << " and the rest the "
       << 2 * s.num_layers << " chains' plans; plain BPTT needs "
       << bytes_text(bidirectional_pass_plain_bytes(s, length, scalar_bytes, device));
    throw PlanError(os.str());
  }
  return plan_bidirectional(policy, s, length, *budget_bytes - extra, scalar_bytes, beta, sizes);
}

double bidirectional_pass_planned_bytes(const NetShape& s, const BidirectionalPlans& plans, std::size_t scalar_bytes,
                                        const GradientDevice* device) {
  const std::int64_t length = plans.layer.at(0)->length;
  double held = bidirectional_pass_extra_bytes(s, length, scalar_bytes, device) + plans.held_bytes;
  for (int l = 0; l < s.num_layers; ++l) {
    const StateSizes sizes = or_cpu(device).sizes(chain_shape(s, l), scalar_bytes);
    held += 2.0 * (static_cast<double>(sizes.workspace_at(length)) +
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
                                                         const BidirectionalPlans& plans, const GradientDevice* device) {
  return or_cpu(device).make_bidirectional_pass<T>(shape, loss, plans);
}

template std::unique_ptr<GradientPass<float>> make_bidirectional_pass<float>(const NetShape&, LossKind,
                                                                             const BidirectionalPlans&,
                                                                             const GradientDevice*);
template std::unique_ptr<GradientPass<double>> make_bidirectional_pass<double>(const NetShape&, LossKind,
                                                                               const BidirectionalPlans&,
                                                                               const GradientDevice*);

}  // namespace membptt::train
