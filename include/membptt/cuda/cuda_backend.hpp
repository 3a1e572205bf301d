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
#include <cstdint>

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
  static void add(T* dst, const T* src, std::size_t n) { Ops::add(dst, src, n); }
  static void copy_rows(T* dst, std::size_t dst_stride, const T* src, std::size_t src_stride, std::size_t rows,
                        std::size_t cols) {
    Ops::copy_rows(dst, dst_stride, src, src_stride, rows, cols);
  }
  static void add_rows(T* dst, std::size_t dst_stride, const T* src, std::size_t src_stride, std::size_t rows,
                       std::size_t cols) {
    Ops::add_rows(dst, dst_stride, src, src_stride, rows, cols);
  }
  template <class U>
  using BufferOf = typename Ops::template Buffer<U>;
  template <class U>
  static void upload(U* dst, const U* host, std::size_t n) {
    Ops::upload(dst, host, n);
  }
  // CpuBackend::dropout_steps's contract; the seed in device memory. A kernel per step.
  static void dropout_steps(T* seq, std::int64_t steps, int rows, int cols, const std::uint64_t* seed, int layer,
                            double p) {
    const std::uint64_t threshold = dropout_threshold(p);
    const T scale = dropout_scale<T>(p);
    const std::size_t n = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
    for (std::int64_t t = 0; t < steps; ++t) {
      T* r = seq + static_cast<std::size_t>(t) * n;
      Ops::dropout(rows, cols, r, r, seed, static_cast<std::uint64_t>(layer), static_cast<std::uint64_t>(t), threshold,
                   scale);
    }
  }
  static void complete(Params& grads) { grads.complete(); }
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
// The executor on the device. The first run() with given pointers (parameters, gradients, the
// batch's arrays, final_carry, dh0) captures the pass as one CUDA graph (Options::graphs, plans of
// at most Options::graph_max_steps steps); a run() with the same pointers replays it: the same
// kernels with the same arguments, so the same bits, reading whatever the arrays hold now and
// adding into grads. Other pointers capture anew. The graph's own device memory (the kernels'
// arguments, taken by the driver) is not activation memory; graph_bytes() reports it.
template <class T>
class CudaExecutor : public BasicExecutor<CudaBackend<T>> {
  using Base = BasicExecutor<CudaBackend<T>>;

 public:
  using ParamsT = BasicDeviceParams<T, CudaOps>;
  CudaExecutor(const NetShape& shape, LossKind loss, Plan plan, bool graphs = options().graphs)
      : Base(shape, loss, std::move(plan)),
        graphs_(graphs && this->plan().forward_steps + this->plan().length <= options().graph_max_steps) {}

  RunStats run(const ParamsT& params, const SequenceBatch<T>& batch, ParamsT& grads, T* final_carry = nullptr,
               T* dh0 = nullptr) {
    if (!graphs_) return Base::run(params, batch, grads, final_carry, dh0);
    params.complete();  // contributions held back from before must not be captured into the replay
    grads.complete();
    const Key key{params.raw_const(), grads.raw(), batch.inputs, batch.class_targets, batch.regression_targets,
                  batch.h0, final_carry, dh0, batch.length};
    if (!graph_ || !(key == key_)) {
      graph_ = Graph();
      synchronize();
      const MemInfo before = mem_info();
      Graph::begin_capture();
      try {
        stats_ = Base::enqueue(params, batch, grads, final_carry, dh0);
      } catch (...) {
        Graph::abort_capture();
        throw;
      }
      graph_ = Graph::end_capture();
      synchronize();
      graph_bytes_ = static_cast<std::int64_t>(before.free_bytes) - static_cast<std::int64_t>(mem_info().free_bytes);
      key_ = key;
      ++captures_;
    }
    graph_.launch();
    RunStats s = stats_;
    s.loss = Base::finish();
    return s;
  }

  bool graphs() const { return graphs_; }
  std::size_t graph_nodes() const { return graph_.nodes(); }
  // Device memory the driver took for the current graph (cudaMemGetInfo across its instantiation).
  std::int64_t graph_bytes() const { return graph_bytes_; }
  int captures() const { return captures_; }

 private:
  struct Key {
    const void *params, *grads, *x, *cls, *reg, *h0, *final_carry, *dh0;
    std::int64_t length;
    bool operator==(const Key&) const = default;
  };
  bool graphs_;
  Graph graph_;
  Key key_{};
  RunStats stats_;
  std::int64_t graph_bytes_ = 0;
  int captures_ = 0;
};
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
