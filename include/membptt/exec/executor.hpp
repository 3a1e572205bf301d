// The executor on the CPU: BasicExecutor (basic_executor.hpp) over RecurrentNet and Head.
#pragma once
#include <cstring>

#include "membptt/backend/buffer.hpp"
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
  static void complete(Params&) {}  // the CPU adds gradients as it goes
  static T finish_loss(const Head&, T sum) { return sum; }
};

template <class T>
using Executor = BasicExecutor<CpuBackend<T>>;

extern template class BasicExecutor<CpuBackend<float>>;
extern template class BasicExecutor<CpuBackend<double>>;

}  // namespace membptt
