// Internal: the fused elementwise passes of the cells (one pass over the gates of a layer for the
// whole batch). Pointers never alias (callers copy in-place arguments to scratch first).
// Row layouts: pre/act/dg are [B][G*H] with the gate blocks side by side, as PyTorch's weight rows.
#pragma once
#include <cstdint>

namespace membptt::detail {

// act = (i, f, g, o) = (sig, sig, tanh, sig)(pre + bias); c_out = f*c_in + i*g; h_out = o*tanh(c_out)
template <class T>
void lstm_fwd(int B, int H, const T* pre, const T* bias, const T* c_in, T* act, T* h_out, T* c_out);
// dh, dc_out: dL/dh', dL/dc'. Writes dg = dL/d(pre-activation) [B][4H], dc_in = dL/dc.
template <class T>
void lstm_bwd(int B, int H, const T* act, const T* c_in, const T* c_out, const T* dh,
              const T* dc_out, T* dg, T* dc_in);

// m = o * tanh(c_out) [B][H] (LSTM projections: what W_hr multiplies), as lstm_fwd computes it.
template <class T>
void lstm_m(int B, int H, const T* act, const T* c_out, T* m);

// px = x W_ih^T, ph = h W_hh^T (no biases, [B][3H] each). act = (r, z, n, hn) [B][4H];
// h_out = n + z*(h_in - n)  (= (1-z)*n + z*h_in).
template <class T>
void gru_fwd(int B, int H, const T* px, const T* ph, const T* b_ih, const T* b_hh, const T* h_in,
             T* act, T* h_out);
// Writes dgx = dL/d(x W_ih^T + b_ih) [B][3H], dgh = dL/d(h W_hh^T + b_hh) [B][3H],
// dh_in = the direct part dL/dh' * z (the caller adds dgh W_hh).
template <class T>
void gru_bwd(int B, int H, const T* act, const T* h_in, const T* dh, T* dgx, T* dgh, T* dh_in);

// h_out = tanh(pre + bias)
template <class T>
void rnn_fwd(int B, int H, const T* pre, const T* bias, T* h_out);
// dg = dh * (1 - h_out^2)
template <class T>
void rnn_bwd(int B, int H, const T* h_out, const T* dh, T* dg);
// relu RNN: h_out = max(0, pre + bias) (a NaN stays NaN, as torch.relu)
template <class T>
void rnn_relu_fwd(int B, int H, const T* pre, const T* bias, T* h_out);
// dg = h_out > 0 ? dh : 0 (PyTorch's threshold_backward on the result)
template <class T>
void rnn_relu_bwd(int B, int H, const T* h_out, const T* dh, T* dg);

// out[j] += sum over b (in order b = 0 .. B-1) of m[b*N + j]; the same into out2 when given (an
// LSTM's or RNN's b_ih and b_hh, whose gradients are the same rows: one pass over them).
// Spread over the products' threads by blocks of columns.
template <class T>
void colsum_add(int B, int N, const T* m, T* out, T* out2 = nullptr);
// Softmax cross-entropy of the rows of logits z [B x O] against targets (each in [0, O)): returns
// the sum over rows, in order, of log(sum_k exp(z_bk - m_b)) - (z_bt - m_b) (m_b: the row's
// maximum), in double; writes dz = scale * (softmax(z) - onehot(t)); adds to *n_correct (when
// given) the rows whose first maximum is the target. exp: act_exp (vectorised for float).
template <class T>
double xent_rows(int B, int O, const T* z, const std::int64_t* targets, T scale, T* dz, std::int64_t* n_correct);
// out[j] = a[j] + b[j]
template <class T>
void vadd(int n, const T* a, const T* b, T* out);

}  // namespace membptt::detail
