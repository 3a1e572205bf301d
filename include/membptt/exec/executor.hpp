// The executor on the CPU: BasicExecutor (basic_executor.hpp) over RecurrentNet and Head.
#pragma once
#include <cstdint>
#include <cstring>

#include "membptt/backend/buffer.hpp"
#include "membptt/cells/dropout.hpp"
#include "membptt/cells/head.hpp"
#include "membptt/cells/recurrent_net.hpp"
#include "membptt/exec/basic_executor.hpp"

namespace membptt {

template <class T>
struct CpuBackend {
  using Scalar = T;
  using Net = RecurrentNet<T>;
  using Head = membptt::Head<T>;
  using Buffer = backend::AlignedBuffer<T>;
  using Params = membptt::Params<T>;
  static void copy(T* dst, const T* src, std::size_t n) { std::memcpy(dst, src, n * sizeof(T)); }
  static void zero(T* dst, std::size_t n) { std::memset(dst, 0, n * sizeof(T)); }
  static void add(T* dst, const T* src, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) dst[i] += src[i];
  }
  static void copy_rows(T* dst, std::size_t dst_stride, const T* src, std::size_t src_stride, std::size_t rows,
                        std::size_t cols) {
    for (std::size_t i = 0; i < rows; ++i) std::memcpy(dst + i * dst_stride, src + i * src_stride, cols * sizeof(T));
  }
  static void add_rows(T* dst, std::size_t dst_stride, const T* src, std::size_t src_stride, std::size_t rows,
                       std::size_t cols) {
    for (std::size_t i = 0; i < rows; ++i) add(dst + i * dst_stride, src + i * src_stride, cols);
  }
  // What a bidirectional stack (bidirectional.hpp) needs besides: buffers of other scalars, host
  // values into them, and dropout in place over `steps` steps of [rows x cols], element k of step t
  // kept with the mask of (*seed, layer, t, k) (cells/dropout.hpp), scaled by 1 / (1 - p).
  template <class U>
  using BufferOf = backend::AlignedBuffer<U>;
  template <class U>
  static void upload(U* dst, const U* src, std::size_t n) {
    std::memcpy(dst, src, n * sizeof(U));
  }
  static void dropout_steps(T* seq, std::int64_t steps, int rows, int cols, const std::uint64_t* seed, int layer,
                            double p) {
    const std::uint64_t threshold = dropout_threshold(p);
    const T scale = dropout_scale<T>(p);
    const std::size_t n = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
    for (std::int64_t t = 0; t < steps; ++t) {
      T* r = seq + static_cast<std::size_t>(t) * n;
      for (std::size_t k = 0; k < n; ++k)
        r[k] = dropout_bits(*seed, static_cast<std::uint64_t>(layer), static_cast<std::uint64_t>(t), k) >= threshold
                   ? r[k] * scale
                   : T(0);
    }
  }
  // The executor's net groups its weight gradients as its plan says (recurrent_net.hpp, budget.hpp);
  // the executor flushes it at the end of every pass.
  static Net make_net(const NetShape& s, const Plan& plan) { return Net(s, plan.weight_gradient_group); }
  static void complete(Params&) {}  // the CPU adds gradients as it goes
  static T finish_loss(const Head&, T sum) { return sum; }
};

template <class T>
using Executor = BasicExecutor<CpuBackend<T>>;

extern template class BasicExecutor<CpuBackend<float>>;
extern template class BasicExecutor<CpuBackend<double>>;

}  // namespace membptt
