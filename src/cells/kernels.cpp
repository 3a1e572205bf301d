// The fused elementwise kernels. Built so that GCC vectorises them:
//   - no-trapping-math lets it if-convert the branch-free selects of the float exp/tanh (it does not
//     change any result: no floating-point trap is ever enabled here);
//   - each kernel is cloned for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and the baseline, chosen once at load time,
//     so a given machine always runs the same code (determinism, advance == advance_record bits).
#pragma GCC optimize("no-trapping-math")

#include "kernels.hpp"

#include <cmath>
#include <cstdint>

#include "membptt/backend/math.hpp"
#include "membptt/backend/tile_pool.hpp"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define MEMBPTT_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define MEMBPTT_CLONES
#endif

namespace membptt::detail {

using backend::act_sigmoid;
using backend::act_tanh;

namespace {

template <class T>
inline void lstm_fwd_row(int H, const T* __restrict p, const T* __restrict bias,
                         const T* __restrict ci, T* __restrict a, T* __restrict ho,
                         T* __restrict co) {
  for (int j = 0; j < H; ++j) {
    const T i = act_sigmoid(p[j] + bias[j]);
    const T f = act_sigmoid(p[H + j] + bias[H + j]);
    const T g = act_tanh(p[2 * H + j] + bias[2 * H + j]);
    const T o = act_sigmoid(p[3 * H + j] + bias[3 * H + j]);
    a[j] = i;
    a[H + j] = f;
    a[2 * H + j] = g;
    a[3 * H + j] = o;
    const T c = f * ci[j] + i * g;
    co[j] = c;
    ho[j] = o * act_tanh(c);
  }
}

template <class T>
inline void lstm_bwd_row(int H, const T* __restrict a, const T* __restrict ci,
                         const T* __restrict co, const T* __restrict dh,
                         const T* __restrict dco, T* __restrict dg, T* __restrict dci) {
  const T one = T(1);
  for (int j = 0; j < H; ++j) {
    const T i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
    const T tc = act_tanh(co[j]);
    const T d = dh[j];
    const T dc = dco[j] + d * o * (one - tc * tc);
    const T d_o = d * tc;
    dci[j] = dc * f;
    dg[j] = dc * g * i * (one - i);
    dg[H + j] = dc * ci[j] * f * (one - f);
    dg[2 * H + j] = dc * i * (one - g * g);
    dg[3 * H + j] = d_o * o * (one - o);
  }
}

template <class T>
inline void gru_fwd_row(int H, const T* __restrict px, const T* __restrict ph,
                        const T* __restrict bi, const T* __restrict bh, const T* __restrict hi,
                        T* __restrict a, T* __restrict ho) {
  for (int j = 0; j < H; ++j) {
    const T r = act_sigmoid((px[j] + bi[j]) + (ph[j] + bh[j]));
    const T z = act_sigmoid((px[H + j] + bi[H + j]) + (ph[H + j] + bh[H + j]));
    const T hn = ph[2 * H + j] + bh[2 * H + j];
    const T n = act_tanh((px[2 * H + j] + bi[2 * H + j]) + r * hn);
    a[j] = r;
    a[H + j] = z;
    a[2 * H + j] = n;
    a[3 * H + j] = hn;
    ho[j] = n + z * (hi[j] - n);
  }
}

template <class T>
inline void gru_bwd_row(int H, const T* __restrict a, const T* __restrict hi,
                        const T* __restrict dh, T* __restrict dgx, T* __restrict dgh,
                        T* __restrict dhi) {
  const T one = T(1);
  for (int j = 0; j < H; ++j) {
    const T r = a[j], z = a[H + j], n = a[2 * H + j], hn = a[3 * H + j];
    const T d = dh[j];
    const T dan = d * (one - z) * (one - n * n);
    const T dr = dan * hn * r * (one - r);
    const T dz = d * (hi[j] - n) * z * (one - z);
    dhi[j] = d * z;
    dgx[j] = dr;
    dgx[H + j] = dz;
    dgx[2 * H + j] = dan;
    dgh[j] = dr;
    dgh[H + j] = dz;
    dgh[2 * H + j] = dan * r;
  }
}

// The kernels run over rows [b0, b1) (a row: one sequence of the batch), cloned per instruction
// set; the public forms below spread blocks of rows over the products' threads (each row's values
// do not depend on the split).
template <class T>
MEMBPTT_CLONES void lstm_fwd_rows(int b0, int b1, int H, const T* pre, const T* bias, const T* c_in, T* act,
                                  T* h_out, T* c_out) {
  const long G = 4L * H;
  for (int b = b0; b < b1; ++b)
    lstm_fwd_row(H, pre + b * G, bias, c_in + long(b) * H, act + b * G, h_out + long(b) * H,
                 c_out + long(b) * H);
}

template <class T>
MEMBPTT_CLONES void lstm_bwd_rows(int b0, int b1, int H, const T* act, const T* c_in, const T* c_out,
                                  const T* dh, const T* dc_out, T* dg, T* dc_in) {
  const long G = 4L * H;
  for (int b = b0; b < b1; ++b) {
    const long o = long(b) * H;
    lstm_bwd_row(H, act + b * G, c_in + o, c_out + o, dh + o, dc_out + o, dg + b * G, dc_in + o);
  }
}

template <class T>
MEMBPTT_CLONES void gru_fwd_rows(int b0, int b1, int H, const T* px, const T* ph, const T* b_ih, const T* b_hh,
                                 const T* h_in, T* act, T* h_out) {
  const long G3 = 3L * H, G4 = 4L * H;
  for (int b = b0; b < b1; ++b)
    gru_fwd_row(H, px + b * G3, ph + b * G3, b_ih, b_hh, h_in + long(b) * H, act + b * G4,
                h_out + long(b) * H);
}

template <class T>
MEMBPTT_CLONES void gru_bwd_rows(int b0, int b1, int H, const T* act, const T* h_in, const T* dh, T* dgx,
                                 T* dgh, T* dh_in) {
  const long G3 = 3L * H, G4 = 4L * H;
  for (int b = b0; b < b1; ++b) {
    const long o = long(b) * H;
    gru_bwd_row(H, act + b * G4, h_in + o, dh + o, dgx + b * G3, dgh + b * G3, dh_in + o);
  }
}

// Rows per block: a block's work (about 16 KiB of gates) outweighs handing it to a thread.
int row_block(int H) { return std::max(1, 1024 / std::max(1, H)); }
// About a nanosecond per hidden unit of a row (a few exp/tanh): to decide whether to use threads.
double row_ns(int H) { return static_cast<double>(H); }

}  // namespace

template <class T>
void lstm_fwd(int B, int H, const T* pre, const T* bias, const T* c_in, T* act, T* h_out, T* c_out) {
  backend::parallel_blocks(B, row_block(H), row_ns(H), [&](int b0, int b1) { lstm_fwd_rows(b0, b1, H, pre, bias, c_in, act, h_out, c_out); });
}

template <class T>
void lstm_bwd(int B, int H, const T* act, const T* c_in, const T* c_out, const T* dh, const T* dc_out, T* dg,
              T* dc_in) {
  backend::parallel_blocks(B, row_block(H), row_ns(H), [&](int b0, int b1) {
    lstm_bwd_rows(b0, b1, H, act, c_in, c_out, dh, dc_out, dg, dc_in);
  });
}

template <class T>
MEMBPTT_CLONES void lstm_m(int B, int H, const T* __restrict act, const T* __restrict c_out,
                           T* __restrict m) {
  const long G = 4L * H;
  for (int b = 0; b < B; ++b) {
    const T* __restrict o = act + b * G + 3L * H;
    const T* __restrict c = c_out + long(b) * H;
    T* __restrict mo = m + long(b) * H;
    for (int j = 0; j < H; ++j) mo[j] = o[j] * act_tanh(c[j]);
  }
}

template <class T>
void gru_fwd(int B, int H, const T* px, const T* ph, const T* b_ih, const T* b_hh, const T* h_in, T* act,
             T* h_out) {
  backend::parallel_blocks(B, row_block(H), row_ns(H), [&](int b0, int b1) {
    gru_fwd_rows(b0, b1, H, px, ph, b_ih, b_hh, h_in, act, h_out);
  });
}

template <class T>
void gru_bwd(int B, int H, const T* act, const T* h_in, const T* dh, T* dgx, T* dgh, T* dh_in) {
  backend::parallel_blocks(B, row_block(H), row_ns(H), [&](int b0, int b1) {
    gru_bwd_rows(b0, b1, H, act, h_in, dh, dgx, dgh, dh_in);
  });
}

template <class T>
MEMBPTT_CLONES void rnn_fwd(int B, int H, const T* __restrict pre, const T* __restrict bias,
                            T* __restrict h_out) {
  for (int b = 0; b < B; ++b) {
    const T* __restrict p = pre + long(b) * H;
    T* __restrict ho = h_out + long(b) * H;
    for (int j = 0; j < H; ++j) ho[j] = act_tanh(p[j] + bias[j]);
  }
}

template <class T>
MEMBPTT_CLONES void rnn_bwd(int B, int H, const T* __restrict h_out, const T* __restrict dh,
                            T* __restrict dg) {
  const long n = long(B) * H;
  for (long k = 0; k < n; ++k) dg[k] = dh[k] * (T(1) - h_out[k] * h_out[k]);
}

template <class T>
MEMBPTT_CLONES void rnn_relu_fwd(int B, int H, const T* __restrict pre, const T* __restrict bias,
                                 T* __restrict h_out) {
  for (int b = 0; b < B; ++b) {
    const T* __restrict p = pre + long(b) * H;
    T* __restrict ho = h_out + long(b) * H;
    for (int j = 0; j < H; ++j) {
      const T v = p[j] + bias[j];
      ho[j] = v < T(0) ? T(0) : v;
    }
  }
}

template <class T>
MEMBPTT_CLONES void rnn_relu_bwd(int B, int H, const T* __restrict h_out, const T* __restrict dh,
                                 T* __restrict dg) {
  const long n = long(B) * H;
  for (long k = 0; k < n; ++k) dg[k] = h_out[k] > T(0) ? dh[k] : T(0);
}

namespace {
// Columns [j0, j1) of colsum_add: out (and out2, when given) += each row, rows in order.
template <class T>
MEMBPTT_CLONES void colsum_add_cols(int j0, int j1, int B, int N, const T* __restrict m, T* __restrict out,
                                    T* __restrict out2) {
  for (int b = 0; b < B; ++b) {
    const T* __restrict row = m + long(b) * N;
    for (int j = j0; j < j1; ++j) out[j] += row[j];
    if (out2)
      for (int j = j0; j < j1; ++j) out2[j] += row[j];
  }
}
// Columns per block: 256 floats of every row (a block's rows stream through cache once).
constexpr int kColumnBlock = 256;
}  // namespace

template <class T>
void colsum_add(int B, int N, const T* m, T* out, T* out2) {
  // Each column adds its rows in order b = 0 .. B-1 whatever the split: the bits do not depend on it.
  backend::parallel_blocks(N, kColumnBlock, 0.25 * B * (out2 ? 2 : 1), [&](int j0, int j1) {
    colsum_add_cols(j0, j1, B, N, m, out, out2);
  });
}

template <class T>
MEMBPTT_CLONES double xent_rows(int B, int O, const T* __restrict z, const std::int64_t* __restrict targets, T scale,
                                T* __restrict dz, std::int64_t* n_correct) {
  double sum = 0;
  std::int64_t correct = 0;
  for (int b = 0; b < B; ++b) {
    const T* __restrict zr = z + long(b) * O;
    T* __restrict dr = dz + long(b) * O;
    int arg = 0;  // the first maximum (as std::max_element)
    for (int k = 1; k < O; ++k)
      if (zr[arg] < zr[k]) arg = k;
    const T m = zr[arg];
    for (int k = 0; k < O; ++k) dr[k] = backend::act_exp(zr[k] - m);  // vectorised
    T s = 0;
    for (int k = 0; k < O; ++k) s += dr[k];  // in order
    const auto t = static_cast<int>(targets[b]);
    sum += static_cast<double>(std::log(s) - (zr[t] - m));
    const T inv = scale / s;
    for (int k = 0; k < O; ++k) dr[k] *= inv;
    dr[t] -= scale;
    correct += arg == t ? 1 : 0;
  }
  if (n_correct) *n_correct += correct;
  return sum;
}

template <class T>
MEMBPTT_CLONES void vadd(int n, const T* __restrict a, const T* __restrict b, T* __restrict out) {
  for (int j = 0; j < n; ++j) out[j] = a[j] + b[j];
}

#define MEMBPTT_INST(T)                                                                          \
  template void lstm_fwd<T>(int, int, const T*, const T*, const T*, T*, T*, T*);                 \
  template void lstm_bwd<T>(int, int, const T*, const T*, const T*, const T*, const T*, T*, T*); \
  template void gru_fwd<T>(int, int, const T*, const T*, const T*, const T*, const T*, T*, T*);  \
  template void gru_bwd<T>(int, int, const T*, const T*, const T*, T*, T*, T*);                  \
  template void rnn_fwd<T>(int, int, const T*, const T*, T*);                                    \
  template void rnn_bwd<T>(int, int, const T*, const T*, T*);                                    \
  template void rnn_relu_fwd<T>(int, int, const T*, const T*, T*);                               \
  template void lstm_m<T>(int, int, const T*, const T*, T*);                                     \
  template void rnn_relu_bwd<T>(int, int, const T*, const T*, T*);                               \
  template void colsum_add<T>(int, int, const T*, T*, T*);                                       \
  template void vadd<T>(int, const T*, const T*, T*);                                            \
  template double xent_rows<T>(int, int, const T*, const std::int64_t*, T, T*, std::int64_t*);
MEMBPTT_INST(float)
MEMBPTT_INST(double)
#undef MEMBPTT_INST

}  // namespace membptt::detail
