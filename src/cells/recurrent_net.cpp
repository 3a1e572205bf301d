#include "membptt/cells/recurrent_net.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels.hpp"
#include "membptt/backend/blas.hpp"

namespace membptt {

using backend::gemm;
using backend::Trans;

namespace {
std::size_t layer_bh(const NetShape& s) {
  return static_cast<std::size_t>(s.batch) * static_cast<std::size_t>(s.hidden_size);
}
// Elements of per-layer gate storage in a record.
std::size_t extra_per_layer(const NetShape& s) {
  return s.cell == CellType::Rnn ? 0 : 4 * layer_bh(s);
}
}  // namespace

std::size_t carry_elems(const NetShape& s) {
  validate(s);
  return layer_bh(s) * static_cast<std::size_t>(s.num_layers) * (s.cell == CellType::Lstm ? 2 : 1);
}

std::size_t record_elems(const NetShape& s) {
  return 2 * carry_elems(s) + extra_per_layer(s) * static_cast<std::size_t>(s.num_layers);
}

template <class T>
RecurrentNet<T>::RecurrentNet(const NetShape& s)
    : s_(s),
      G_(gate_count(s.cell)),
      bh_(layer_bh(s)),
      carry_(membptt::carry_elems(s)),
      record_(membptt::record_elems(s)),
      extra_(extra_per_layer(s)),
      top_off_(static_cast<std::size_t>(s.num_layers - 1) * layer_bh(s)) {
  const auto views = param_layout(s);
  nparams_ = views.back().offset + views.back().size;
  for (int l = 0; l < s.num_layers; ++l) {
    const auto* v = &views[static_cast<std::size_t>(4 * l)];
    lay_.push_back({v[0].offset, v[1].offset, v[2].offset, v[3].offset,
                    l == 0 ? s.input_size : s.hidden_size});
  }
  const std::size_t gbh = bh_ * static_cast<std::size_t>(G_);
  pre_ = backend::AlignedBuffer<T>(gbh);
  act_ = backend::AlignedBuffer<T>(extra_);
  bias_ = backend::AlignedBuffer<T>(static_cast<std::size_t>(G_ * s.hidden_size));
  dg_ = backend::AlignedBuffer<T>(gbh);
  dh_ = backend::AlignedBuffer<T>(bh_);
  alias_ = backend::AlignedBuffer<T>(carry_);
  if (s.cell == CellType::Gru) {
    pre_h_ = backend::AlignedBuffer<T>(gbh);
    dgh_ = backend::AlignedBuffer<T>(gbh);
  }
}

template <class T>
std::size_t RecurrentNet<T>::scratch_bytes() const {
  return (pre_.size() + pre_h_.size() + act_.size() + bias_.size() + dg_.size() + dgh_.size() +
          dh_.size() + alias_.size()) *
         sizeof(T);
}

template <class T>
void RecurrentNet<T>::check(const Params<T>& p, const char* what) const {
  if (p.size() != nparams_)
    throw std::invalid_argument(std::string("RecurrentNet::") + what + ": Params has " +
                                std::to_string(p.size()) + " elements, this network needs " +
                                std::to_string(nparams_));
}

template <class T>
void RecurrentNet<T>::step(const Params<T>& p, const T* x_t, const T* carry_in, T* carry_out,
                           T* gates, std::size_t gates_stride) {
  const int B = s_.batch, H = s_.hidden_size, GH = G_ * H;
  const std::size_t LBH = bh_ * static_cast<std::size_t>(s_.num_layers);
  const T* w = p.data();
  for (int l = 0; l < s_.num_layers; ++l) {
    const LayerOffsets& o = lay_[static_cast<std::size_t>(l)];
    const std::size_t lo = static_cast<std::size_t>(l) * bh_;
    const T* in = l == 0 ? x_t : carry_out + lo - bh_;
    const T* h_prev = carry_in + lo;
    T* h_out = carry_out + lo;
    T* act = gates + static_cast<std::size_t>(l) * gates_stride;
    gemm<T>(Trans::No, Trans::Yes, B, GH, o.in, T(1), in, o.in, w + o.w_ih, o.in, T(0),
            pre_.data(), GH);
    switch (s_.cell) {
      case CellType::Lstm:
        gemm<T>(Trans::No, Trans::Yes, B, GH, H, T(1), h_prev, H, w + o.w_hh, H, T(1), pre_.data(),
                GH);
        detail::vadd<T>(GH, w + o.b_ih, w + o.b_hh, bias_.data());
        detail::lstm_fwd<T>(B, H, pre_.data(), bias_.data(), carry_in + LBH + lo, act, h_out,
                            carry_out + LBH + lo);
        break;
      case CellType::Gru:
        gemm<T>(Trans::No, Trans::Yes, B, GH, H, T(1), h_prev, H, w + o.w_hh, H, T(0),
                pre_h_.data(), GH);
        detail::gru_fwd<T>(B, H, pre_.data(), pre_h_.data(), w + o.b_ih, w + o.b_hh, h_prev, act,
                           h_out);
        break;
      case CellType::Rnn:
        gemm<T>(Trans::No, Trans::Yes, B, GH, H, T(1), h_prev, H, w + o.w_hh, H, T(1), pre_.data(),
                GH);
        detail::vadd<T>(GH, w + o.b_ih, w + o.b_hh, bias_.data());
        detail::rnn_fwd<T>(B, H, pre_.data(), bias_.data(), h_out);
        break;
    }
  }
}

template <class T>
void RecurrentNet<T>::advance(const Params<T>& p, const T* x_t, const T* carry_in, T* carry_out) {
  check(p, "advance");
  if (carry_in == carry_out) {  // in place: read the old carry from a copy
    std::copy_n(carry_in, carry_, alias_.data());
    carry_in = alias_.data();
  }
  // Gates of every layer go to the same scratch (stride 0): nothing is kept.
  step(p, x_t, carry_in, carry_out, act_.data(), 0);
}

template <class T>
void RecurrentNet<T>::advance_record(const Params<T>& p, const T* x_t, const T* carry_in,
                                     T* record) {
  check(p, "advance_record");
  if (carry_in != record) std::copy_n(carry_in, carry_, record);
  step(p, x_t, record, record + carry_, record + 2 * carry_, extra_);
}

template <class T>
void RecurrentNet<T>::backward(const Params<T>& p, const T* x_t, const T* record,
                               const T* dcarry_out, T* dcarry_in, Params<T>& grads, T* dx_t) {
  check(p, "backward");
  check(grads, "backward (grads)");
  if (dcarry_in == dcarry_out) {  // in place: read the incoming gradient from a copy
    std::copy_n(dcarry_out, carry_, alias_.data());
    dcarry_out = alias_.data();
  }
  const int B = s_.batch, H = s_.hidden_size, GH = G_ * H, L = s_.num_layers;
  const std::size_t LBH = bh_ * static_cast<std::size_t>(L);
  const T* w = p.data();
  T* gw = grads.data();
  const T* cin = record;
  const T* cout = record + carry_;
  const T* gates = record + 2 * carry_;
  for (int l = L - 1; l >= 0; --l) {
    const LayerOffsets& o = lay_[static_cast<std::size_t>(l)];
    const std::size_t lo = static_cast<std::size_t>(l) * bh_;
    const T* in = l == 0 ? x_t : cout + lo - bh_;
    const T* h_prev = cin + lo;
    const T* act = gates + static_cast<std::size_t>(l) * extra_;
    // dL/dh' of this layer: what came from later steps / the head, plus (below the top) what the
    // layer above sent down through its input; the latter is already summed into dh_.
    const T* dh = l == L - 1 ? dcarry_out + lo : dh_.data();
    T* dh_in = dcarry_in + lo;
    const T* dgh = dg_.data();  // gradient w.r.t. (h W_hh^T + b_hh)
    T beta_hh = T(0);
    switch (s_.cell) {
      case CellType::Lstm:
        detail::lstm_bwd<T>(B, H, act, cin + LBH + lo, cout + LBH + lo, dh, dcarry_out + LBH + lo,
                            dg_.data(), dcarry_in + LBH + lo);
        break;
      case CellType::Gru:
        detail::gru_bwd<T>(B, H, act, h_prev, dh, dg_.data(), dgh_.data(), dh_in);
        dgh = dgh_.data();
        beta_hh = T(1);
        break;
      case CellType::Rnn:
        detail::rnn_bwd<T>(B, H, cout + lo, dh, dg_.data());
        break;
    }
    // dL/dh_{t-1} of this layer.
    gemm<T>(Trans::No, Trans::No, B, H, GH, T(1), dgh, GH, w + o.w_hh, H, beta_hh, dh_in, H);
    // dL/d(input) of this layer = part of dL/dh' of the layer below; layer 0's, dL/dx_t, only
    // when the caller asks.
    if (l > 0) {
      std::copy_n(dcarry_out + lo - bh_, bh_, dh_.data());
      gemm<T>(Trans::No, Trans::No, B, o.in, GH, T(1), dg_.data(), GH, w + o.w_ih, o.in, T(1),
              dh_.data(), o.in);
    } else if (dx_t != nullptr) {
      gemm<T>(Trans::No, Trans::No, B, o.in, GH, T(1), dg_.data(), GH, w + o.w_ih, o.in, T(0), dx_t,
              o.in);
    }
    // Parameter gradients (accumulated).
    gemm<T>(Trans::Yes, Trans::No, GH, o.in, B, T(1), dg_.data(), GH, in, o.in, T(1), gw + o.w_ih,
            o.in);
    gemm<T>(Trans::Yes, Trans::No, GH, H, B, T(1), dgh, GH, h_prev, H, T(1), gw + o.w_hh, H);
    detail::colsum_add<T>(B, GH, dg_.data(), gw + o.b_ih);
    detail::colsum_add<T>(B, GH, dgh, gw + o.b_hh);
  }
}

template class RecurrentNet<float>;
template class RecurrentNet<double>;

}  // namespace membptt
