// HostOps: CudaOps's operations (include/membptt/cuda/device.hpp) emulated on the host, so the
// device cells, heads and their deferred gradients (device_net.hpp) run and are checked in CI
// without a GPU. The elementwise functors are the very ones the kernels run (elementwise.cuh);
// gemm_cm / gemv_cm are OpenBLAS's column-major products, the semantics of cuBLAS's calls, so the
// row-major-to-column-major mapping of the cells is checked too. The loss reductions are written
// plainly (the kernels' tree order is not reproduced; only the GPU tests check those bits).
#pragma once
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "elementwise.cuh"

namespace membptt::cuda::test {

struct HostOps {
  template <class U>
  class Buffer {
   public:
    Buffer() = default;
    explicit Buffer(std::size_t n) : v_(n) {}
    U* data() { return v_.empty() ? nullptr : v_.data(); }
    const U* data() const { return v_.empty() ? nullptr : v_.data(); }
    std::size_t size() const { return v_.size(); }

   private:
    std::vector<U> v_;
  };

  template <class U>
  static void copy(U* dst, const U* src, std::size_t n) {
    if (n && dst != src) std::memmove(dst, src, n * sizeof(U));
  }
  template <class U>
  static void zero(U* dst, std::size_t n) {
    if (n) std::memset(dst, 0, n * sizeof(U));
  }
  template <class U>
  static void upload(U* dst, const U* src, std::size_t n) {
    copy(dst, src, n);
  }
  template <class U>
  static void download(U* dst, const U* src, std::size_t n) {
    copy(dst, src, n);
  }
  static std::size_t blas_workspace_bytes() { return 0; }

  static CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }
  static void gemm_cm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                      int ldb, float beta, float* c, int ldc, GemmMath) {  // full products whatever the math
    cblas_sgemm(CblasColMajor, tr(ta), tr(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  static void gemm_cm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
                      int ldb, double beta, double* c, int ldc, GemmMath) {
    cblas_dgemm(CblasColMajor, tr(ta), tr(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  static void gemv_cm(int m, int n, float alpha, const float* a, int lda, const float* x, float beta, float* y) {
    cblas_sgemv(CblasColMajor, CblasNoTrans, m, n, alpha, a, lda, x, 1, beta, y, 1);
  }
  static void gemv_cm(int m, int n, double alpha, const double* a, int lda, const double* x, double beta, double* y) {
    cblas_dgemv(CblasColMajor, CblasNoTrans, m, n, alpha, a, lda, x, 1, beta, y, 1);
  }
  template <class U>
  static void add(U* dst, const U* src, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) dst[i] += src[i];
  }

  template <class U>
  static void copy_rows(U* dst, std::size_t dst_stride, const U* src, std::size_t src_stride, std::size_t rows,
                        std::size_t cols) {
    for (std::size_t i = 0; i < rows; ++i) copy(dst + i * dst_stride, src + i * src_stride, cols);
  }
  template <class U>
  static void add_rows(U* dst, std::size_t dst_stride, const U* src, std::size_t src_stride, std::size_t rows,
                       std::size_t cols) {
    for (std::size_t i = 0; i < rows; ++i) add(dst + i * dst_stride, src + i * src_stride, cols);
  }

  template <class F, class... A>
  static void each(int B, int H, A... a) {
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < H; ++j) F::run(b, j, H, a...);
  }
  template <class T>
  static void lstm_fwd(int B, int H, const T* px, const T* ph, const T* b_ih, const T* b_hh, const T* h_in,
                       const T* c_in, T* act, T* h_out, T* c_out, CarryCopies<T> cc) {
    each<ew::LstmFwd>(B, H, px, ph, b_ih, b_hh, h_in, c_in, act, h_out, c_out, cc);
  }
  template <class T>
  static void lstm_bwd(int B, int H, const T* act, const T* c_in, const T* c_out, const T* dh_a, const T* dh_b,
                       const T* dc_out, T* dg, T* dc_in, const T* h_prev, T* hp, const T* x_in, T* xin) {
    each<ew::LstmBwd>(B, H, act, c_in, c_out, dh_a, dh_b, dc_out, dg, dc_in, h_prev, hp, x_in, xin);
  }
  template <class T>
  static void gru_fwd(int B, int H, const T* px, const T* ph, const T* b_ih, const T* b_hh, const T* h_in, T* act,
                      T* h_out, CarryCopies<T> cc) {
    each<ew::GruFwd>(B, H, px, ph, b_ih, b_hh, h_in, act, h_out, cc);
  }
  template <class T>
  static void gru_bwd(int B, int H, const T* act, const T* h_in, const T* dh_a, const T* dh_b, T* dgx, T* dgh,
                      T* dh_in, T* hp, const T* x_in, T* xin) {
    each<ew::GruBwd>(B, H, act, h_in, dh_a, dh_b, dgx, dgh, dh_in, hp, x_in, xin);
  }
  template <class T>
  static void dropout(int B, int R, const T* in, T* out, const std::uint64_t* seed, std::uint64_t layer, std::uint64_t step,
                      std::uint64_t threshold, T scale) {
    each<ew::Dropout>(B, R, in, out, seed, layer, step, threshold, scale);
  }
  template <class T>
  static void lstm_m(int B, int H, const T* act, const T* c_out, T* m) {
    each<ew::LstmM>(B, H, act, c_out, m);
  }
  template <class T>
  static void rnn_fwd(int B, int H, const T* px, const T* ph, const T* b_ih, const T* b_hh, const T* h_in, T* h_out,
                      CarryCopies<T> cc, bool relu) {
    each<ew::RnnFwd>(B, H, px, ph, b_ih, b_hh, h_in, h_out, cc, relu);
  }
  template <class T>
  static void rnn_bwd(int B, int H, const T* h_out, const T* dh_a, const T* dh_b, T* dg, const T* h_prev, T* hp,
                      const T* x_in, T* xin, bool relu) {
    each<ew::RnnBwd>(B, H, h_out, dh_a, dh_b, dg, h_prev, hp, x_in, xin, relu);
  }
  template <class T>
  static void xent(int B, int O, int H, const T* logits, const T* bias, const std::int64_t* targets, T scale, T* dl,
                   const T* h_top, T* ht, double* row_loss, int* bad) {
    for (int b = 0; b < B; ++b) {
      const T* z = logits + static_cast<std::size_t>(b) * O;
      T* d = dl + static_cast<std::size_t>(b) * O;
      T m = z[0] + bias[0];
      for (int k = 0; k < O; ++k) m = std::max(m, z[k] + bias[k]);
      T s = 0;
      for (int k = 0; k < O; ++k) s += ew::fexp((z[k] + bias[k]) - m);
      const std::int64_t tg = targets[b];
      const bool ok = tg >= 0 && tg < O;
      const int t = ok ? static_cast<int>(tg) : 0;
      if (!ok) *bad = 1;
      const T inv = scale / s;
      for (int k = 0; k < O; ++k) {
        const T e = ew::fexp((z[k] + bias[k]) - m) * inv;
        d[k] = k == t ? e - scale : e;
      }
      row_loss[b] += static_cast<double>(scale) * static_cast<double>(ew::flog(s) - ((z[t] + bias[t]) - m));
      copy(ht + static_cast<std::size_t>(b) * H, h_top + static_cast<std::size_t>(b) * H, static_cast<std::size_t>(H));
    }
  }
  template <class T>
  static void mse(int B, int O, int H, const T* pred, const T* bias, const T* target, T* dl, const T* h_top, T* ht,
                  double* loss) {
    const int n = B * O;
    const T k2 = T(2) / static_cast<T>(n);
    double acc = 0;
    for (int i = 0; i < n; ++i) {
      const T d = (pred[i] + bias[i % O]) - target[i];
      dl[i] = k2 * d;
      acc += static_cast<double>(d) * static_cast<double>(d);
    }
    loss[0] += acc / static_cast<double>(n);
    copy(ht, h_top, static_cast<std::size_t>(B) * static_cast<std::size_t>(H));
  }
};

}  // namespace membptt::cuda::test
