// The executor on a CUDA device: BasicExecutor (exec/basic_executor.hpp) over the device cells.
//
//   cuda::select_device(0);                      // optional; device 0 by default
//   cuda::CudaParams<float> params(shape), grads(shape);
//   params.upload(host_params);
//   cuda::DeviceBuffer<float> x(T * B * I);  cuda::upload(x.data(), host_x.data(), x.size());
//   ... class targets (int64) likewise; h0 (optional) in the carry layout ...
//   const Plan plan = plan_for_bytes(policy, T, budget, cuda::cuda_state_sizes(shape, 4), beta);
//   cuda::CudaExecutor<float> exec(shape, LossKind::Xent, plan);
//   RunStats st = exec.run(params, {T, x.data(), y.data(), nullptr, nullptr}, grads);
//   grads.download(host_grads);
//
// Every pointer in the SequenceBatch (and final_carry, dh0) is a device pointer. run() returns
// once the loss has been read back (the stream is synchronised then); the loss and gradients are
// complete. Memory: exec.workspace_bytes() + stats.peak_arena_bytes is the device memory the
// executor allocated (the activation memory: everything besides parameters, gradients, inputs,
// and the process's CUDA context and cuBLAS workspace, which exist before any executor, like
// PyTorch's), and cuda_state_sizes() gives the same workspace to the planner.
#pragma once
#include <cstddef>

#include "membptt/cuda/device.hpp"
#include "membptt/cuda/device_net.hpp"
#include "membptt/exec/basic_executor.hpp"
#include "membptt/exec/budget.hpp"
#include "membptt/exec/calibrate.hpp"

namespace membptt::cuda {

template <class T, class Ops>
struct BasicDeviceBackend {
  using Scalar = T;
  using Net = BasicDeviceNet<T, Ops>;
  using Head = BasicDeviceHead<T, Ops>;
  using Buffer = typename Ops::template Buffer<T>;
  using Params = BasicDeviceParams<T, Ops>;
  static void copy(T* dst, const T* src, std::size_t n) { Ops::copy(dst, src, n); }
  static void zero(T* dst, std::size_t n) { Ops::zero(dst, n); }
  static T finish_loss(const Head& head, T) { return head.finish(); }
};

// Sizes for the planner: the hidden and internal states of the CPU cell (the same layout) and the
// device executor's workspace (cursor, carry gradient, zero h_0, the cell's and head's scratch and
// their deferred-gradient rings).
template <class T, class Ops>
StateSizes device_state_sizes(const NetShape& shape, const Options& o) {
  StateSizes s;
  s.hidden_bytes = membptt::carry_elems(shape) * sizeof(T);
  s.internal_bytes = membptt::record_elems(shape) * sizeof(T);
  s.workspace_bytes = 3 * s.hidden_bytes + BasicDeviceNet<T, Ops>::scratch_bytes_for(shape, o) +
                      BasicDeviceHead<T, Ops>::scratch_bytes_for(shape, o);
  return s;
}

template <class T>
using CudaBackend = BasicDeviceBackend<T, CudaOps>;
template <class T>
using CudaExecutor = BasicExecutor<CudaBackend<T>>;
template <class T>
using CudaRecurrentNet = BasicDeviceNet<T, CudaOps>;
template <class T>
using CudaHead = BasicDeviceHead<T, CudaOps>;
template <class T>
using CudaParams = BasicDeviceParams<T, CudaOps>;

// scalar_bytes: 4 (float) or 8 (double). Uses options() unless given.
StateSizes cuda_state_sizes(const NetShape& shape, std::size_t scalar_bytes);
StateSizes cuda_state_sizes(const NetShape& shape, std::size_t scalar_bytes, const Options& o);

// Step costs on the device (exec/calibrate.hpp's, measured over runs of defer_steps steps so the
// deferred weight-gradient GEMMs are counted, the stream synchronised around each timing).
template <class T>
StepTimes time_steps_cuda(const NetShape& shape, LossKind loss, int reps = 15);

extern template class BasicDeviceNet<float, CudaOps>;
extern template class BasicDeviceNet<double, CudaOps>;
extern template class BasicDeviceHead<float, CudaOps>;
extern template class BasicDeviceHead<double, CudaOps>;
extern template class BasicDeviceParams<float, CudaOps>;
extern template class BasicDeviceParams<double, CudaOps>;
extern template StepTimes time_steps_cuda<float>(const NetShape&, LossKind, int);
extern template StepTimes time_steps_cuda<double>(const NetShape&, LossKind, int);

}  // namespace membptt::cuda

namespace membptt {
extern template class BasicExecutor<cuda::CudaBackend<float>>;
extern template class BasicExecutor<cuda::CudaBackend<double>>;
}  // namespace membptt
