// The per-element arithmetic of the device cells, written once for the GPU kernels (kernels.cu)
// and for the host emulation the tests run without a GPU (tests/cuda/host_ops.hpp).
//
// Each functor's run(b, j, H, ...) handles element (b, j) of a layer: batch row b, unit j < H.
// Row layouts are the CPU cell's (src/cells/kernels.hpp): pre/act/dg are [B][G*H] with the gate
// blocks side by side (PyTorch's row order), h/c are [B][H]. The equations are the CPU cell's,
// term for term, so that float64 agrees with the CPU reference to rounding.
//
// In-place calls: every functor reads all of its element's inputs before it writes, and reads and
// writes only its own element (b, j) of the carry / carry gradient, so carry_out == carry_in,
// h_out2 == h_in and dcarry_in == dcarry_out are safe (the executor calls them in place).
//
// Backward functors also copy what the deferred weight-gradient GEMMs need later into ring slots
// owned by the net (the step's record may be freed before the GEMM runs): h_prev -> hp, and for
// layers above 0 the layer's input -> xin (null when not wanted).
#pragma once
#include <math.h>

#include "membptt/cells/dropout.hpp"  // the masks' generator (host and device)
#include "membptt/cuda/device.hpp"   // CarryCopies

#if defined(__CUDACC__)
#define MEMBPTT_HD __host__ __device__ __forceinline__
#else
#define MEMBPTT_HD inline
#endif

namespace membptt::cuda::ew {

MEMBPTT_HD float fexp(float x) { return expf(x); }
MEMBPTT_HD double fexp(double x) { return exp(x); }
MEMBPTT_HD float ftanh(float x) { return tanhf(x); }
MEMBPTT_HD double ftanh(double x) { return tanh(x); }
MEMBPTT_HD float flog(float x) { return logf(x); }
MEMBPTT_HD double flog(double x) { return log(x); }
template <class T>
MEMBPTT_HD T sigmoid(T x) {
  return T(1) / (T(1) + fexp(-x));
}

// LSTM: px = x W_ih^T, ph = h W_hh^T ([B][4H] each, computed apart so that the two GEMMs can
// run at once); act = (i, f, g, o) = (sig, sig, tanh, sig)((px + ph) + (b_ih + b_hh));
// c' = f*c + i*g; h' = o * tanh(c'). With projections h_out receives m = o * tanh(c') [B][H] (the
// net then takes h' = m W_hr^T) and the h copies of cc are null (h is [B][P], copied by the net).
struct LstmFwd {
  template <class T>
  static MEMBPTT_HD void run(int b, int j, int H, const T* px, const T* ph, const T* b_ih, const T* b_hh,
                             const T* h_in, const T* c_in, T* act, T* h_out, T* c_out, CarryCopies<T> cc) {
    const long G = 4L * H, k = long(b) * H + j;
    const T* x = px + b * G;
    const T* h = ph + b * G;
    const T hi = cc.h_save ? h_in[k] : T(0), ci = c_in[k];  // (h_in: [B][H] only when h_save is set)
    const T i = sigmoid((x[j] + h[j]) + (b_ih[j] + b_hh[j]));
    const T f = sigmoid((x[H + j] + h[H + j]) + (b_ih[H + j] + b_hh[H + j]));
    const T g = ftanh((x[2 * H + j] + h[2 * H + j]) + (b_ih[2 * H + j] + b_hh[2 * H + j]));
    const T o = sigmoid((x[3 * H + j] + h[3 * H + j]) + (b_ih[3 * H + j] + b_hh[3 * H + j]));
    const T c = f * ci + i * g;
    const T hn = o * ftanh(c);
    T* a = act + b * G;
    a[j] = i;
    a[H + j] = f;
    a[2 * H + j] = g;
    a[3 * H + j] = o;
    c_out[k] = c;
    h_out[k] = hn;
    if (cc.h_save) cc.h_save[k] = hi;
    if (cc.c_save) cc.c_save[k] = ci;
    if (cc.h_out2) cc.h_out2[k] = hn;
    if (cc.c_out2) cc.c_out2[k] = c;
  }
};

// Dropout between layers: out = in * mask * scale, element k = b*R + j of a [B][R] layer input, the
// mask of (*seed, layer, step) drawn by cells/dropout.hpp's generator (the CPU cell's masks). The
// seed is read from device memory, so a captured graph replays with the seed of the pass. In place
// (out == in) is allowed.
struct Dropout {
  template <class T>
  static MEMBPTT_HD void run(int b, int j, int R, const T* in, T* out, const std::uint64_t* seed, std::uint64_t layer,
                             std::uint64_t step, std::uint64_t threshold, T scale) {
    const long k = long(b) * R + j;
    const T v = in[k];
    out[k] = dropout_bits(*seed, layer, step, static_cast<std::uint64_t>(k)) >= threshold ? v * scale : T(0);
  }
};

// LSTM projections: m = o * tanh(c') [B][H] again (what W_hr multiplied), for its weight gradient.
struct LstmM {
  template <class T>
  static MEMBPTT_HD void run(int b, int j, int H, const T* act, const T* c_out, T* m) {
    const long k = long(b) * H + j;
    m[k] = act[b * 4L * H + 3L * H + j] * ftanh(c_out[k]);
  }
};

// dh = dh_a (+ dh_b when not null): dL/dh'; dc_out = dL/dc'. Writes dg = dL/d(pre) [B][4H] and
// dc_in = dL/dc. hp null: h_prev is not copied here (with projections it is [B][P]: the net copies).
struct LstmBwd {
  template <class T>
  static MEMBPTT_HD void run(int b, int j, int H, const T* act, const T* c_in, const T* c_out, const T* dh_a,
                             const T* dh_b, const T* dc_out, T* dg, T* dc_in, const T* h_prev, T* hp, const T* x_in,
                             T* xin) {
    const long G = 4L * H, k = long(b) * H + j;
    const T* a = act + b * G;
    const T one = T(1);
    const T i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
    const T tc = ftanh(c_out[k]);
    const T d = dh_b ? dh_a[k] + dh_b[k] : dh_a[k];
    const T ci = c_in[k];
    const T hprev = hp ? h_prev[k] : T(0);
    const T xv = xin ? x_in[k] : T(0);
    const T dc = dc_out[k] + d * o * (one - tc * tc);
    const T d_o = d * tc;
    dc_in[k] = dc * f;
    T* r = dg + b * G;
    r[j] = dc * g * i * (one - i);
    r[H + j] = dc * ci * f * (one - f);
    r[2 * H + j] = dc * i * (one - g * g);
    r[3 * H + j] = d_o * o * (one - o);
    if (hp) hp[k] = hprev;
    if (xin) xin[k] = xv;
  }
};

// GRU: px = x W_ih^T, ph = h W_hh^T (no biases, [B][3H] each). act = (r, z, n, hn) [B][4H];
// h' = n + z*(h - n).
struct GruFwd {
  template <class T>
  static MEMBPTT_HD void run(int b, int j, int H, const T* px, const T* ph, const T* b_ih, const T* b_hh,
                             const T* h_in, T* act, T* h_out, CarryCopies<T> cc) {
    const long G3 = 3L * H, G4 = 4L * H, k = long(b) * H + j;
    const T* x = px + b * G3;
    const T* h = ph + b * G3;
    const T r = sigmoid((x[j] + b_ih[j]) + (h[j] + b_hh[j]));
    const T z = sigmoid((x[H + j] + b_ih[H + j]) + (h[H + j] + b_hh[H + j]));
    const T hn = h[2 * H + j] + b_hh[2 * H + j];
    const T n = ftanh((x[2 * H + j] + b_ih[2 * H + j]) + r * hn);
    const T hi = h_in[k];
    T* a = act + b * G4;
    a[j] = r;
    a[H + j] = z;
    a[2 * H + j] = n;
    a[3 * H + j] = hn;
    const T out = n + z * (hi - n);
    h_out[k] = out;
    if (cc.h_save) cc.h_save[k] = hi;
    if (cc.h_out2) cc.h_out2[k] = out;
  }
};

// Writes dgx = dL/d(x W_ih^T + b_ih) [B][3H], dgh = dL/d(h W_hh^T + b_hh) [B][3H] and the direct
// part of dL/dh, dh_in = dL/dh' * z (the caller adds dgh W_hh).
struct GruBwd {
  template <class T>
  static MEMBPTT_HD void run(int b, int j, int H, const T* act, const T* h_in, const T* dh_a, const T* dh_b,
                             T* dgx, T* dgh, T* dh_in, T* hp, const T* x_in, T* xin) {
    const long G3 = 3L * H, G4 = 4L * H, k = long(b) * H + j;
    const T* a = act + b * G4;
    const T one = T(1);
    const T r = a[j], z = a[H + j], n = a[2 * H + j], hn = a[3 * H + j];
    const T d = dh_b ? dh_a[k] + dh_b[k] : dh_a[k];
    const T hi = h_in[k];
    const T xv = xin ? x_in[k] : T(0);
    const T dan = d * (one - z) * (one - n * n);
    const T dr = dan * hn * r * (one - r);
    const T dz = d * (hi - n) * z * (one - z);
    dh_in[k] = d * z;
    T* gx = dgx + b * G3;
    T* gh = dgh + b * G3;
    gx[j] = dr;
    gx[H + j] = dz;
    gx[2 * H + j] = dan;
    gh[j] = dr;
    gh[H + j] = dz;
    gh[2 * H + j] = dan * r;
    hp[k] = hi;
    if (xin) xin[k] = xv;
  }
};

// Plain RNN: h' = act((px + ph) + (b_ih + b_hh)), px = x W_ih^T, ph = h W_hh^T ([B][H] each);
// act = tanh, or with relu max(0, .) (NaN stays NaN, as torch.relu). Without biases b_ih, b_hh
// point at zeros.
struct RnnFwd {
  template <class T>
  static MEMBPTT_HD void run(int b, int j, int H, const T* px, const T* ph, const T* b_ih, const T* b_hh, const T* h_in,
                             T* h_out, CarryCopies<T> cc, bool relu) {
    const long k = long(b) * H + j;
    const T hi = cc.h_save ? h_in[k] : T(0);
    const T v = (px[k] + ph[k]) + (b_ih[j] + b_hh[j]);
    const T out = relu ? (v < T(0) ? T(0) : v) : ftanh(v);
    h_out[k] = out;
    if (cc.h_save) cc.h_save[k] = hi;
    if (cc.h_out2) cc.h_out2[k] = out;
  }
};

// dg = dh * (1 - h'^2); with relu dg = h' > 0 ? dh : 0 (PyTorch's threshold_backward).
struct RnnBwd {
  template <class T>
  static MEMBPTT_HD void run(int b, int j, int H, const T* h_out, const T* dh_a, const T* dh_b, T* dg,
                             const T* h_prev, T* hp, const T* x_in, T* xin, bool relu) {
    const long k = long(b) * H + j;
    const T d = dh_b ? dh_a[k] + dh_b[k] : dh_a[k];
    const T h = h_out[k];
    const T hprev = h_prev[k];
    const T xv = xin ? x_in[k] : T(0);
    dg[k] = relu ? (h > T(0) ? d : T(0)) : d * (T(1) - h * h);
    hp[k] = hprev;
    if (xin) xin[k] = xv;
  }
};

}  // namespace membptt::cuda::ew
