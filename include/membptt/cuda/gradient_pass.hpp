// The trainer's gradient pass on a device (train/gradient_pass.hpp): `membptt train --device cuda`.
//
// The host parameters stay the truth (the optimizer, checkpoints and resume never see the device).
// Each run():
//   upload   the parameters (P scalars) into device parameters allocated once, the batch's inputs
//            [T x B x I], its targets ([T x B] int64 classes or [B x O] values) and h_0 (the carry)
//            into device buffers allocated once;
//   run      the device executor on them (every pointer the same at every step, so an executor
//            that captures the pass as a graph replays it);
//   download the gradients (P scalars), h_T (the carry) and, inside the executor, the loss.
// The gradients are complete and the stream idle when run() returns.
//
// Written over an Ops type like the device cells (device_net.hpp): CudaOps on a GPU
// (cuda_gradient_device, cuda/gradient_pass.cpp), the tests' HostOps on the host, so CI checks
// this logic without a GPU.
#pragma once
#include <chrono>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "membptt/cuda/cuda_backend.hpp"
#include "membptt/train/bidirectional_pass.hpp"
#include "membptt/train/gradient_pass.hpp"

namespace membptt::cuda {

// The executor a device pass runs: BasicExecutor over the device backend; CudaExecutor on a GPU.
template <class T, class Ops>
struct DeviceExecutorOf {
  using type = BasicExecutor<BasicDeviceBackend<T, Ops>>;
};
template <class T>
struct DeviceExecutorOf<T, CudaOps> {
  using type = CudaExecutor<T>;
};

// A pass's batch on the device: buffers allocated once for `length` steps, a host batch uploaded
// into them each run (the same pointers every time, so a captured graph replays), and the carry
// after the last step downloaded. h_0 is always the buffer, zeros when the batch starts afresh
// (the same values as the executor's own zero h_0, so the same bits).
template <class T, class Ops>
class DeviceBatch {
 public:
  DeviceBatch(const NetShape& shape, LossKind loss, std::int64_t length)
      : loss_(loss),
        length_(length),
        x_(rows(shape, length) * static_cast<std::size_t>(shape.input_size)),
        cls_(loss == LossKind::Xent ? rows(shape, length) : 0),
        y_(loss == LossKind::MseLast ? rows(shape, 1) * static_cast<std::size_t>(shape.output_size) : 0),
        h0_(membptt::carry_elems(shape)),
        carry_(membptt::carry_elems(shape)) {}

  // Uploads `batch` (host memory; its length checked) and returns it in device pointers.
  const SequenceBatch<T>& upload(const SequenceBatch<T>& batch) {
    if (batch.length != length_)
      throw std::invalid_argument("sequence length " + std::to_string(batch.length) + " does not match the plan's " +
                                  std::to_string(length_));
    Ops::upload(x_.data(), batch.inputs, x_.size());
    if (loss_ == LossKind::Xent)
      Ops::upload(cls_.data(), batch.class_targets, cls_.size());
    else
      Ops::upload(y_.data(), batch.regression_targets, y_.size());
    if (batch.h0)
      Ops::upload(h0_.data(), batch.h0, h0_.size());
    else
      Ops::zero(h0_.data(), h0_.size());
    device_ = SequenceBatch<T>{length_, x_.data(), cls_.data(), y_.data(), h0_.data()};
    return device_;
  }
  const SequenceBatch<T>& device() const { return device_; }
  T* carry() { return carry_.data(); }  // the carry after the last step, in device memory
  void download_carry(T* host) const {
    if (host) Ops::download(host, carry_.data(), carry_.size());
  }

 private:
  static std::size_t rows(const NetShape& s, std::int64_t steps) {
    return static_cast<std::size_t>(steps) * static_cast<std::size_t>(s.batch);
  }
  template <class U>
  using Buf = typename Ops::template Buffer<U>;
  LossKind loss_;
  std::int64_t length_;
  Buf<T> x_;
  Buf<std::int64_t> cls_;
  Buf<T> y_, h0_, carry_;
  SequenceBatch<T> device_;
};

template <class T, class Ops>
class BasicDeviceGradientPass final : public train::GradientPass<T> {
 public:
  using Exec = typename DeviceExecutorOf<T, Ops>::type;

  BasicDeviceGradientPass(const NetShape& shape, LossKind loss, Plan plan)
      : batch_(shape, loss, plan.length), exec_(shape, loss, std::move(plan)), params_(shape), grads_(shape) {}

  RunStats run(const Params<T>& params, const SequenceBatch<T>& batch, Params<T>& grads, T* final_carry) override {
    const SequenceBatch<T>& device = batch_.upload(batch);
    params_.upload(params);
    grads_.zero();
    const RunStats stats = exec_.run(params_, device, grads_, batch_.carry());
    grads_.download(grads);
    batch_.download_carry(final_carry);
    ran_ = true;
    return stats;
  }

  double time_again() override {
    if (!ran_) throw std::logic_error("GradientPass::time_again before run");
    grads_.zero();
    const auto t0 = std::chrono::steady_clock::now();
    exec_.run(params_, batch_.device(), grads_, batch_.carry());  // returns once the loss is read back
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  void set_dropout(bool on, std::uint64_t seed) override { exec_.net().set_dropout(on, seed); }
  const Plan& plan() const override { return exec_.plan(); }
  std::size_t workspace_bytes() const override { return exec_.workspace_bytes(); }
  train::GraphUse graph() const override {
    if constexpr (std::is_same_v<Ops, CudaOps>)
      if (exec_.graphs()) return {static_cast<std::int64_t>(exec_.graph_nodes()), exec_.graph_bytes()};
    return {};
  }
  const Exec& executor() const { return exec_; }

 private:
  DeviceBatch<T, Ops> batch_;
  Exec exec_;
  BasicDeviceParams<T, Ops> params_, grads_;
  bool ran_ = false;
};

// A bidirectional stack and its head on the device (train/bidirectional_pass.hpp): each run()
// uploads the parameters and the batch (DeviceBatch), runs the pass and downloads the gradients
// and h_n, as BasicDeviceGradientPass does. No CUDA graph: the stack's
// 2L chains run one after another, each in the module form.
template <class T, class Ops>
class BasicDeviceBidirectionalPass final : public train::GradientPass<T> {
 public:
  BasicDeviceBidirectionalPass(const NetShape& shape, LossKind loss, const BidirectionalPlans& plans)
      : batch_(shape, loss, plans.layer.at(0)->length), core_(shape, loss, plans), params_(shape), grads_(shape) {}

  RunStats run(const Params<T>& params, const SequenceBatch<T>& batch, Params<T>& grads, T* final_carry) override {
    const SequenceBatch<T>& device = batch_.upload(batch);
    params_.upload(params);
    const RunStats stats = core_.run(params_, device, grads_, batch_.carry());
    grads_.download(grads);
    batch_.download_carry(final_carry);
    ran_ = true;
    return stats;
  }

  double time_again() override {
    if (!ran_) throw std::logic_error("GradientPass::time_again before run");
    const auto t0 = std::chrono::steady_clock::now();
    core_.run(params_, batch_.device(), grads_, batch_.carry());  // returns once the loss is read back
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  void set_dropout(bool on, std::uint64_t seed) override { core_.set_dropout(on, seed); }
  const Plan& plan() const override { return core_.plan(); }
  std::int64_t planned_forward_steps() const override { return core_.planned_forward_steps(); }
  std::size_t workspace_bytes() const override { return core_.workspace_bytes(); }

 private:
  DeviceBatch<T, Ops> batch_;
  train::BidirectionalHeadPass<BasicDeviceBackend<T, Ops>> core_;
  BasicDeviceParams<T, Ops> params_, grads_;
  bool ran_ = false;
};

// A device for the trainer: state sizes from device_state_sizes (the options() now), passes over Ops.
template <class Ops>
class BasicGradientDevice final : public train::GradientDevice {
 public:
  explicit BasicGradientDevice(std::string name) : name_(std::move(name)) {}
  std::string name() const override { return name_; }
  StateSizes sizes(const NetShape& shape, std::size_t scalar_bytes) const override {
    return scalar_bytes == sizeof(float) ? device_state_sizes<float, Ops>(shape, options())
                                         : device_state_sizes<double, Ops>(shape, options());
  }
  std::unique_ptr<train::GradientPass<float>> make_pass_f32(const NetShape& shape, LossKind loss,
                                                            Plan plan) const override {
    return std::make_unique<BasicDeviceGradientPass<float, Ops>>(shape, loss, std::move(plan));
  }
  std::unique_ptr<train::GradientPass<double>> make_pass_f64(const NetShape& shape, LossKind loss,
                                                             Plan plan) const override {
    return std::make_unique<BasicDeviceGradientPass<double, Ops>>(shape, loss, std::move(plan));
  }
  std::size_t head_scratch_bytes(const NetShape& shape, std::size_t scalar_bytes) const override {
    return scalar_bytes == sizeof(float) ? BasicDeviceHead<float, Ops>::scratch_bytes_for(shape, options())
                                         : BasicDeviceHead<double, Ops>::scratch_bytes_for(shape, options());
  }
  std::unique_ptr<train::GradientPass<float>> make_bidirectional_pass_f32(const NetShape& shape, LossKind loss,
                                                                          const BidirectionalPlans& plans) const override {
    return std::make_unique<BasicDeviceBidirectionalPass<float, Ops>>(shape, loss, plans);
  }
  std::unique_ptr<train::GradientPass<double>> make_bidirectional_pass_f64(const NetShape& shape, LossKind loss,
                                                                           const BidirectionalPlans& plans) const override {
    return std::make_unique<BasicDeviceBidirectionalPass<double, Ops>>(shape, loss, plans);
  }

 private:
  std::string name_;
};

// Selects CUDA device `index` (cuda::select_device: throws std::runtime_error naming the reason
// when there is none) and returns it as the trainer's device, named "cuda:N (description)".
// Set cuda::set_options (TF32, ...) before: the passes read them when they are made.
std::shared_ptr<const train::GradientDevice> cuda_gradient_device(int index);

}  // namespace membptt::cuda
