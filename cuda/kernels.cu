// CudaOps's kernels: the cells' fused elementwise passes (elementwise.cuh over every (b, j)) and
// the heads' fused loss kernels. Reductions have a fixed shape (per-thread strided sums in index
// order, then a fixed tree), so equal inputs give equal bits; no atomics.
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "elementwise.cuh"
#include "internal.cuh"
#include "membptt/cuda/device.hpp"

namespace membptt::cuda {
namespace {

constexpr int kThreads = 256;  // elementwise blocks
constexpr int kReduce = 256;   // loss blocks (a power of two)

template <class F, class... A>
__global__ void __launch_bounds__(kThreads) each_kernel(int n, int H, A... a) {
  // Unsigned: n < 2^31 and the stride < 2^29, so idx + stride never wraps.
  const unsigned un = static_cast<unsigned>(n), uh = static_cast<unsigned>(H);
  for (unsigned idx = blockIdx.x * blockDim.x + threadIdx.x; idx < un; idx += gridDim.x * blockDim.x)
    F::run(static_cast<int>(idx / uh), static_cast<int>(idx % uh), H, a...);
}

template <class F, class... A>
void launch_each(const char* what, int B, int H, A... a) {
  const long long n = static_cast<long long>(B) * H;
  if (n <= 0) return;
  if (n > std::numeric_limits<int>::max())
    throw std::invalid_argument(std::string(what) + ": batch x hidden = " + std::to_string(n) + " is above 2^31 - 1");
  const long long blocks = (n + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < 65535LL * 16 ? blocks : 65535LL * 16);
  each_kernel<F, A...><<<grid, kThreads, 0, internal::stream()>>>(static_cast<int>(n), H, a...);
  internal::check(cudaGetLastError(), what);
}

template <class T>
__device__ __forceinline__ T maxv(T a, T b) {
  return a > b ? a : b;
}

// In-block fixed-order tree over red[0 .. kReduce); every thread gets the result.
template <class T, class Op>
__device__ T block_reduce(T v, T* red, Op op) {
  const int tid = threadIdx.x;
  red[tid] = v;
  __syncthreads();
  for (int s = kReduce / 2; s > 0; s >>= 1) {
    if (tid < s) red[tid] = op(red[tid], red[tid + s]);
    __syncthreads();
  }
  const T r = red[0];
  __syncthreads();
  return r;
}

struct MaxOp {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return maxv(a, b);
  }
};
struct AddOp {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};

// One block per batch row b.
template <class T>
__global__ void __launch_bounds__(kReduce)
    xent_kernel(int O, int H, const T* logits, const T* bias, const std::int64_t* targets, T scale, T* dl,
                const T* h_top, T* ht, double* row_loss, int* bad) {
  __shared__ T red[kReduce];
  const int b = blockIdx.x, tid = threadIdx.x;
  const T* z = logits + static_cast<std::size_t>(b) * O;
  T* d = dl + static_cast<std::size_t>(b) * O;
  T m = z[0] + bias[0];
  for (int k = tid; k < O; k += kReduce) m = maxv(m, z[k] + bias[k]);
  m = block_reduce(m, red, MaxOp{});
  T s = T(0);
  for (int k = tid; k < O; k += kReduce) s += ew::fexp((z[k] + bias[k]) - m);
  s = block_reduce(s, red, AddOp{});
  const std::int64_t tg = targets[b];
  const bool ok = tg >= 0 && tg < O;
  const int t = ok ? static_cast<int>(tg) : 0;
  const T inv = scale / s;
  for (int k = tid; k < O; k += kReduce) {
    const T e = ew::fexp((z[k] + bias[k]) - m) * inv;
    d[k] = k == t ? e - scale : e;
  }
  if (tid == 0) {
    if (!ok) *bad = 1;
    const T ce = ew::flog(s) - ((z[t] + bias[t]) - m);
    row_loss[b] += static_cast<double>(scale) * static_cast<double>(ce);
  }
  const std::size_t r = static_cast<std::size_t>(b) * H;
  for (int j = tid; j < H; j += kReduce) ht[r + j] = h_top[r + j];
}

// One block for the whole batch.
template <class T>
__global__ void __launch_bounds__(kReduce)
    mse_kernel(int B, int O, int H, const T* pred, const T* bias, const T* target, T* dl, const T* h_top, T* ht,
               double* loss) {
  __shared__ double red[kReduce];
  const int tid = threadIdx.x;
  const int n = B * O;
  const T k2 = T(2) / static_cast<T>(n);
  double acc = 0;
  for (int i = tid; i < n; i += kReduce) {
    const T d = (pred[i] + bias[i % O]) - target[i];
    dl[i] = k2 * d;
    acc += static_cast<double>(d) * static_cast<double>(d);
  }
  acc = block_reduce(acc, red, AddOp{});
  if (tid == 0) loss[0] += acc / static_cast<double>(n);
  for (int i = tid; i < B * H; i += kReduce) ht[i] = h_top[i];
}

}  // namespace

#define MEMBPTT_CUDA_OPS_DEF(T)                                                                                    \
  void CudaOps::lstm_fwd(int B, int H, const T* px, const T* ph, const T* b_ih, const T* b_hh, const T* h_in,    \
                         const T* c_in, T* act, T* h_out, T* c_out, CarryCopies<T> cc) {                       \
    launch_each<ew::LstmFwd>("lstm_fwd", B, H, px, ph, b_ih, b_hh, h_in, c_in, act, h_out, c_out, cc);             \
  }                                                                                                                \
  void CudaOps::lstm_bwd(int B, int H, const T* act, const T* c_in, const T* c_out, const T* dh_a, const T* dh_b, \
                         const T* dc_out, T* dg, T* dc_in, const T* h_prev, T* hp, const T* x_in, T* xin) {        \
    launch_each<ew::LstmBwd>("lstm_bwd", B, H, act, c_in, c_out, dh_a, dh_b, dc_out, dg, dc_in, h_prev, hp, x_in,  \
                             xin);                                                                                 \
  }                                                                                                                \
  void CudaOps::dropout(int B, int R, const T* in, T* out, const std::uint64_t* seed, std::uint64_t layer,      \
                        std::uint64_t step, std::uint64_t threshold, T scale) {                                   \
    launch_each<ew::Dropout>("dropout", B, R, in, out, seed, layer, step, threshold, scale);                       \
  }                                                                                                                \
  void CudaOps::lstm_m(int B, int H, const T* act, const T* c_out, T* m) {                                      \
    launch_each<ew::LstmM>("lstm_m", B, H, act, c_out, m);                                                         \
  }                                                                                                                \
  void CudaOps::gru_fwd(int B, int H, const T* px, const T* ph, const T* b_ih, const T* b_hh, const T* h_in,       \
                        T* act, T* h_out, CarryCopies<T> cc) {                                                 \
    launch_each<ew::GruFwd>("gru_fwd", B, H, px, ph, b_ih, b_hh, h_in, act, h_out, cc);                            \
  }                                                                                                                \
  void CudaOps::gru_bwd(int B, int H, const T* act, const T* h_in, const T* dh_a, const T* dh_b, T* dgx, T* dgh,   \
                        T* dh_in, T* hp, const T* x_in, T* xin) {                                                  \
    launch_each<ew::GruBwd>("gru_bwd", B, H, act, h_in, dh_a, dh_b, dgx, dgh, dh_in, hp, x_in, xin);               \
  }                                                                                                                \
  void CudaOps::rnn_fwd(int B, int H, const T* px, const T* ph, const T* b_ih, const T* b_hh, const T* h_in,       \
                        T* h_out, CarryCopies<T> cc, bool relu) {                                                \
    launch_each<ew::RnnFwd>("rnn_fwd", B, H, px, ph, b_ih, b_hh, h_in, h_out, cc, relu);                           \
  }                                                                                                                \
  void CudaOps::rnn_bwd(int B, int H, const T* h_out, const T* dh_a, const T* dh_b, T* dg, const T* h_prev, T* hp, \
                        const T* x_in, T* xin, bool relu) {                                                        \
    launch_each<ew::RnnBwd>("rnn_bwd", B, H, h_out, dh_a, dh_b, dg, h_prev, hp, x_in, xin, relu);                  \
  }                                                                                                                \
  void CudaOps::xent(int B, int O, int H, const T* logits, const T* bias, const std::int64_t* targets, T scale,   \
                     T* dl, const T* h_top, T* ht, double* row_loss, int* bad) {                                   \
    xent_kernel<T><<<B, kReduce, 0, internal::stream()>>>(O, H, logits, bias, targets, scale, dl, h_top, ht,       \
                                                          row_loss, bad);                                          \
    internal::check(cudaGetLastError(), "xent kernel");                                                           \
  }                                                                                                                \
  void CudaOps::mse(int B, int O, int H, const T* pred, const T* bias, const T* target, T* dl, const T* h_top,     \
                    T* ht, double* loss) {                                                                         \
    mse_kernel<T><<<1, kReduce, 0, internal::stream()>>>(B, O, H, pred, bias, target, dl, h_top, ht, loss);        \
    internal::check(cudaGetLastError(), "mse kernel");                                                            \
  }

MEMBPTT_CUDA_OPS_DEF(float)
MEMBPTT_CUDA_OPS_DEF(double)
#undef MEMBPTT_CUDA_OPS_DEF

}  // namespace membptt::cuda
