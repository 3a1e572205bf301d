#include "membptt/train/gradient_pass.hpp"

#include <chrono>
#include <stdexcept>

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
    return state_sizes(shape, scalar_bytes);
  }
  std::unique_ptr<GradientPass<float>> make_pass_f32(const NetShape& shape, LossKind loss, Plan plan) const override {
    return std::make_unique<CpuGradientPass<float>>(shape, loss, std::move(plan));
  }
  std::unique_ptr<GradientPass<double>> make_pass_f64(const NetShape& shape, LossKind loss, Plan plan) const override {
    return std::make_unique<CpuGradientPass<double>>(shape, loss, std::move(plan));
  }
};

}  // namespace

std::shared_ptr<const GradientDevice> cpu_device() {
  static const auto d = std::make_shared<const CpuDevice>();
  return d;
}

}  // namespace membptt::train
