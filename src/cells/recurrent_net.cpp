#include "membptt/cells/recurrent_net.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "kernels.hpp"
#include "membptt/backend/blas.hpp"
#include "membptt/cells/dropout.hpp"

namespace membptt {

using backend::gemm;
using backend::Trans;

namespace {
std::size_t layer_bh(const NetShape& s) {
  return static_cast<std::size_t>(s.batch) * static_cast<std::size_t>(s.hidden_size);
}
// Elements of one layer's h in the carry: B * R.
std::size_t layer_br(const NetShape& s) {
  return static_cast<std::size_t>(s.batch) * static_cast<std::size_t>(output_width(s));
}
// Elements of per-layer gate storage in a record.
std::size_t extra_per_layer(const NetShape& s) {
  return s.cell == CellType::Rnn ? 0 : 4 * layer_bh(s);
}
}  // namespace

std::size_t carry_elems(const NetShape& s) {
  validate(s);
  return (layer_br(s) + (s.cell == CellType::Lstm ? layer_bh(s) : 0)) * static_cast<std::size_t>(s.num_layers) *
         static_cast<std::size_t>(directions(s));
}

int executor_defer_steps(const NetShape& s) {
  const std::size_t gh = static_cast<std::size_t>(gate_count(s.cell)) * static_cast<std::size_t>(s.hidden_size);
  const auto r = static_cast<std::size_t>(output_width(s));
  const std::size_t in = static_cast<std::size_t>(std::max(s.input_size, s.num_layers > 1 ? output_width(s) : 0));
  return gh * (in + r) >= kDeferMinWeights ? kExecutorDeferSteps : 1;
}

std::size_t record_elems(const NetShape& s) {
  return 2 * carry_elems(s) + extra_per_layer(s) * static_cast<std::size_t>(s.num_layers);
}

template <class T>
RecurrentNet<T>::RecurrentNet(const NetShape& s, int defer_steps)
    : s_(s),
      G_(gate_count(s.cell)),
      K_(defer_steps),
      bh_(layer_bh(s)),
      br_(layer_br(s)),
      carry_(membptt::carry_elems(s)),
      record_(membptt::record_elems(s)),
      extra_(extra_per_layer(s)),
      top_off_(static_cast<std::size_t>(s.num_layers - 1) * layer_br(s)) {
  if (s.bidirectional)
    throw std::invalid_argument("RecurrentNet runs one direction: a bidirectional stack runs layer by layer "
                                "(exec/bidirectional.hpp)");
  const auto views = param_layout(s);
  nparams_ = views.back().offset + views.back().size;
  const std::size_t per = (s.bias ? 4 : 2) + (s.proj_size > 0 ? 1 : 0);  // views per layer
  for (int l = 0; l < s.num_layers; ++l) {
    const auto* v = &views[per * static_cast<std::size_t>(l)];
    lay_.push_back({v[0].offset, v[1].offset, s.bias ? v[2].offset : kNoBias, s.bias ? v[3].offset : kNoBias,
                    s.proj_size > 0 ? v[per - 1].offset : kNoBias, l == 0 ? s.input_size : output_width(s)});
  }
  const std::size_t gbh = bh_ * static_cast<std::size_t>(G_);
  pre_ = backend::AlignedBuffer<T>(gbh);
  act_ = backend::AlignedBuffer<T>(extra_);
  // Zero-initialised; without biases it stays zero and stands for b_ih, b_hh and their sum.
  bias_ = backend::AlignedBuffer<T>(static_cast<std::size_t>(G_ * s.hidden_size));
  dg_ = backend::AlignedBuffer<T>(gbh);
  dh_ = backend::AlignedBuffer<T>(br_);
  alias_ = backend::AlignedBuffer<T>(carry_);
  // The largest forward product's transposes: x W_ih^T (+ h W_hh^T but for the GRU, whose h W_hh^T
  // is a product of its own), and the projection's.
  const int GH = G_ * s.hidden_size, R = output_width(s);
  const bool gru = s.cell == CellType::Gru;
  std::size_t wp = std::max(gru ? backend::weight_products_scratch(s.batch, GH, R, 0) : 0,
                            s.proj_size > 0 ? backend::weight_products_scratch(s.batch, R, s.hidden_size, 0) : 0);
  for (const LayerOffsets& o : lay_)
    wp = std::max(wp, backend::weight_products_scratch(s.batch, GH, o.in, gru ? 0 : R));
  wp_ = backend::AlignedBuffer<T>(wp);
  if (s.proj_size > 0) {
    m_ = backend::AlignedBuffer<T>(bh_);
    dm_ = backend::AlignedBuffer<T>(bh_);
  }
  if (s.dropout > 0 && s.num_layers > 1) {
    drop_ = backend::AlignedBuffer<T>(br_);
    ddrop_ = backend::AlignedBuffer<T>(br_);
  }
  if (s.cell == CellType::Gru) {
    pre_h_ = backend::AlignedBuffer<T>(gbh);
    dgh_ = backend::AlignedBuffer<T>(gbh);
  }
  if (defer_steps < 1)
    throw std::invalid_argument("RecurrentNet: defer_steps " + std::to_string(defer_steps) + " is not allowed: use 1 or more");
  if (K_ > 1) {
    const auto k = static_cast<std::size_t>(K_), b = static_cast<std::size_t>(s.batch);
    for (int l = 0; l < s.num_layers; ++l) {
      dgr_.emplace_back(k * gbh);
      if (s.cell == CellType::Gru) dghr_.emplace_back(k * gbh);
      inr_.emplace_back(k * b * static_cast<std::size_t>(lay_[static_cast<std::size_t>(l)].in));
      hpr_.emplace_back(k * br_);
      if (s.proj_size > 0) {
        dhr_.emplace_back(k * br_);
        mr_.emplace_back(k * bh_);
      }
    }
  }
}

template <class T>
std::size_t RecurrentNet<T>::scratch_bytes() const {
  std::size_t rings = 0;
  for (const auto* r : {&dgr_, &dghr_, &inr_, &hpr_, &dhr_, &mr_})
    for (const auto& b : *r) rings += b.size();
  return (pre_.size() + pre_h_.size() + act_.size() + bias_.size() + dg_.size() + dgh_.size() +
          dh_.size() + wp_.size() + alias_.size() + m_.size() + dm_.size() + drop_.size() + ddrop_.size() + rings) *
         sizeof(T);
}

template <class T>
void RecurrentNet<T>::flush() {
  if (!target_) return;
  Params<T>& g = *std::exchange(target_, nullptr);
  const int n = std::exchange(n_, 0);
  if (n == 0) return;
  T* gw = g.data();
  const int H = s_.hidden_size, R = output_width(s_), GH = G_ * H, rows = n * s_.batch;
  for (int l = 0; l < s_.num_layers; ++l) {
    const LayerOffsets& o = lay_[static_cast<std::size_t>(l)];
    const auto ul = static_cast<std::size_t>(l);
    const T* dg = dgr_[ul].data();
    const T* dgh = s_.cell == CellType::Gru ? dghr_[ul].data() : dg;
    gemm<T>(Trans::Yes, Trans::No, GH, o.in, rows, T(1), dg, GH, inr_[ul].data(), o.in, T(1), gw + o.w_ih, o.in);
    gemm<T>(Trans::Yes, Trans::No, GH, R, rows, T(1), dgh, GH, hpr_[ul].data(), R, T(1), gw + o.w_hh, R);
    if (s_.proj_size > 0)
      gemm<T>(Trans::Yes, Trans::No, R, H, rows, T(1), dhr_[ul].data(), R, mr_[ul].data(), H, T(1), gw + o.w_hr, H);
    if (s_.bias) add_bias_grads(rows, dg, dgh, gw + o.b_ih, gw + o.b_hh);
  }
}

template <class T>
void RecurrentNet<T>::add_bias_grads(int rows, const T* dg, const T* dgh, T* db_ih, T* db_hh) const {
  const int GH = G_ * s_.hidden_size;
  if (dgh == dg) return detail::colsum_add<T>(rows, GH, dg, db_ih, db_hh);  // LSTM, RNN: the same rows
  detail::colsum_add<T>(rows, GH, dg, db_ih);
  detail::colsum_add<T>(rows, GH, dgh, db_hh);
}

template <class T>
void RecurrentNet<T>::check(const Params<T>& p, const char* what) const {
  if (p.size() != nparams_)
    throw std::invalid_argument(std::string("RecurrentNet::") + what + ": Params has " +
                                std::to_string(p.size()) + " elements, this network needs " +
                                std::to_string(nparams_));
}

template <class T>
void RecurrentNet<T>::set_dropout(bool on, std::uint64_t seed) {
  drop_on_ = on && s_.dropout > 0 && s_.num_layers > 1;
  seed_ = seed;
  threshold_ = dropout_threshold(s_.dropout);
  scale_ = dropout_scale<T>(s_.dropout);
}

template <class T>
std::int64_t RecurrentNet<T>::step_of(const T* x_t) const {
  const std::size_t xstep = static_cast<std::size_t>(s_.batch) * static_cast<std::size_t>(s_.input_size);
  if (x_base_ != nullptr && x_t >= x_base_) {
    const std::size_t d = static_cast<std::size_t>(x_t - x_base_);
    const auto t = static_cast<std::int64_t>(d / xstep);
    if (d % xstep == 0 && t < length_) return t;
  }
  throw std::logic_error("RecurrentNet: dropout needs each step's input inside the pass's inputs (begin_pass)");
}

template <class T>
void RecurrentNet<T>::drop(const T* in, int layer, std::int64_t t, T* out) const {
  const std::size_t n = br_;
  const auto ul = static_cast<std::uint64_t>(layer), ut = static_cast<std::uint64_t>(t);
  for (std::size_t k = 0; k < n; ++k)
    out[k] = dropout_bits(seed_, ul, ut, k) >= threshold_ ? in[k] * scale_ : T(0);
}

template <class T>
void RecurrentNet<T>::step(const Params<T>& p, const T* x_t, const T* carry_in, T* carry_out,
                           T* gates, std::size_t gates_stride) {
  const int B = s_.batch, H = s_.hidden_size, R = output_width(s_), GH = G_ * H;
  const std::size_t LBR = br_ * static_cast<std::size_t>(s_.num_layers);  // where c starts (LSTM)
  const T* w = p.data();
  const bool has_bias = s_.bias, proj = s_.proj_size > 0;
  const std::int64_t t = drop_on_ ? step_of(x_t) : 0;
  for (int l = 0; l < s_.num_layers; ++l) {
    const LayerOffsets& o = lay_[static_cast<std::size_t>(l)];
    const std::size_t lo = static_cast<std::size_t>(l) * br_;  // this layer's h in the carry
    const std::size_t lc = LBR + static_cast<std::size_t>(l) * bh_;  // and its c (LSTM)
    const T* in = l == 0 ? x_t : carry_out + lo - br_;
    if (l > 0 && drop_on_) {
      drop(in, l, t, drop_.data());
      in = drop_.data();
    }
    const T* h_prev = carry_in + lo;
    T* h_out = carry_out + lo;
    T* act = gates + static_cast<std::size_t>(l) * gates_stride;
    // Without biases, bias_ (zeros) stands for b_ih, b_hh and their sum: adding +0 changes no value.
    const T* b_ih = has_bias ? w + o.b_ih : bias_.data();
    const T* b_hh = has_bias ? w + o.b_hh : bias_.data();
    const bool gru = s_.cell == CellType::Gru;  // (whose h W_hh^T stays apart from x W_ih^T)
    backend::weight_products<T>(B, GH, in, o.in, w + o.w_ih, gru ? nullptr : h_prev, R, w + o.w_hh, pre_.data(),
                                wp_.data());
    switch (s_.cell) {
      case CellType::Lstm:
        if (has_bias) detail::vadd<T>(GH, b_ih, b_hh, bias_.data());
        // With projections o * tanh(c') goes to m_ and h' = m_ W_hr^T ([B x P]).
        detail::lstm_fwd<T>(B, H, pre_.data(), bias_.data(), carry_in + lc, act, proj ? m_.data() : h_out,
                            carry_out + lc);
        if (proj)
          backend::weight_products<T>(B, R, m_.data(), H, w + o.w_hr, nullptr, 0, nullptr, h_out, wp_.data());
        break;
      case CellType::Gru:
        backend::weight_products<T>(B, GH, h_prev, H, w + o.w_hh, nullptr, 0, nullptr, pre_h_.data(), wp_.data());
        detail::gru_fwd<T>(B, H, pre_.data(), pre_h_.data(), b_ih, b_hh, h_prev, act, h_out);
        break;
      case CellType::Rnn:
        if (has_bias) detail::vadd<T>(GH, b_ih, b_hh, bias_.data());
        if (s_.nonlinearity == Nonlinearity::Relu)
          detail::rnn_relu_fwd<T>(B, H, pre_.data(), bias_.data(), h_out);
        else
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
  const int B = s_.batch, H = s_.hidden_size, R = output_width(s_), GH = G_ * H, L = s_.num_layers;
  const std::size_t LBR = br_ * static_cast<std::size_t>(L);
  const T* w = p.data();
  T* gw = grads.data();
  const T* cin = record;
  const T* cout = record + carry_;
  const T* gates = record + 2 * carry_;
  const std::int64_t t = drop_on_ ? step_of(x_t) : 0;
  const bool defer = K_ > 1;
  if (defer && target_ != &grads) {  // a group is open for another buffer: complete it first
    flush();
    target_ = &grads;
  }
  const auto slot = static_cast<std::size_t>(n_);
  const std::size_t gbh = bh_ * static_cast<std::size_t>(G_);
  for (int l = L - 1; l >= 0; --l) {
    const LayerOffsets& o = lay_[static_cast<std::size_t>(l)];
    const std::size_t lo = static_cast<std::size_t>(l) * br_;
    const std::size_t lc = LBR + static_cast<std::size_t>(l) * bh_;
    const T* in = l == 0 ? x_t : cout + lo - br_;
    if (l > 0 && drop_on_) {  // the same mask as the forward step drew
      drop(in, l, t, drop_.data());
      in = drop_.data();
    }
    const T* h_prev = cin + lo;
    const T* act = gates + static_cast<std::size_t>(l) * extra_;
    // dL/dh' of this layer: what came from later steps / the head, plus (below the top) what the
    // layer above sent down through its input; the latter is already summed into dh_.
    const T* dh = l == L - 1 ? dcarry_out + lo : dh_.data();
    T* dh_in = dcarry_in + lo;
    // d(pre-activation): in the group's ring slot when deferred, else in dg_.
    T* dg = defer ? ring(dgr_, l, slot, gbh) : dg_.data();
    const T* dgh = dg;  // gradient w.r.t. (h W_hh^T + b_hh)
    T beta_hh = T(0);
    switch (s_.cell) {
      case CellType::Lstm: {
        const T* dm = dh;  // dL/d(o * tanh(c'))
        if (s_.proj_size > 0) {  // h' = m W_hr^T: dW_hr += dh^T m, dm = dh W_hr (m recomputed)
          T* m = defer ? ring(mr_, l, slot, bh_) : m_.data();
          detail::lstm_m<T>(B, H, act, cout + lc, m);
          if (defer)
            std::copy_n(dh, br_, ring(dhr_, l, slot, br_));
          else
            gemm<T>(Trans::Yes, Trans::No, R, H, B, T(1), dh, R, m, H, T(1), gw + o.w_hr, H);
          gemm<T>(Trans::No, Trans::No, B, H, R, T(1), dh, R, w + o.w_hr, H, T(0), dm_.data(), H);
          dm = dm_.data();
        }
        detail::lstm_bwd<T>(B, H, act, cin + lc, cout + lc, dm, dcarry_out + lc, dg, dcarry_in + lc);
        break;
      }
      case CellType::Gru: {
        T* g2 = defer ? ring(dghr_, l, slot, gbh) : dgh_.data();
        detail::gru_bwd<T>(B, H, act, h_prev, dh, dg, g2, dh_in);
        dgh = g2;
        beta_hh = T(1);
        break;
      }
      case CellType::Rnn:
        if (s_.nonlinearity == Nonlinearity::Relu)
          detail::rnn_relu_bwd<T>(B, H, cout + lo, dh, dg);
        else
          detail::rnn_bwd<T>(B, H, cout + lo, dh, dg);
        break;
    }
    // dL/dh_{t-1} of this layer.
    gemm<T>(Trans::No, Trans::No, B, R, GH, T(1), dgh, GH, w + o.w_hh, R, beta_hh, dh_in, R);
    // dL/d(input) of this layer = part of dL/dh' of the layer below; layer 0's, dL/dx_t, only
    // when the caller asks.
    if (l > 0 && drop_on_) {  // through the mask: dh_ = dcarry_out + (dg W_ih) * mask * scale
      gemm<T>(Trans::No, Trans::No, B, o.in, GH, T(1), dg, GH, w + o.w_ih, o.in, T(0), ddrop_.data(), o.in);
      drop(ddrop_.data(), l, t, ddrop_.data());
      const T* below = dcarry_out + lo - br_;
      for (std::size_t k = 0; k < br_; ++k) dh_.data()[k] = below[k] + ddrop_.data()[k];
    } else if (l > 0) {
      std::copy_n(dcarry_out + lo - br_, br_, dh_.data());
      gemm<T>(Trans::No, Trans::No, B, o.in, GH, T(1), dg, GH, w + o.w_ih, o.in, T(1), dh_.data(), o.in);
    } else if (dx_t != nullptr) {
      gemm<T>(Trans::No, Trans::No, B, o.in, GH, T(1), dg, GH, w + o.w_ih, o.in, T(0), dx_t, o.in);
    }
    // Parameter gradients: kept for the group's GEMMs (flush), or accumulated now.
    if (defer) {
      const std::size_t in_elems = static_cast<std::size_t>(B) * static_cast<std::size_t>(o.in);
      std::copy_n(in, in_elems, ring(inr_, l, slot, in_elems));
      std::copy_n(h_prev, br_, ring(hpr_, l, slot, br_));
      continue;
    }
    gemm<T>(Trans::Yes, Trans::No, GH, o.in, B, T(1), dg, GH, in, o.in, T(1), gw + o.w_ih, o.in);
    gemm<T>(Trans::Yes, Trans::No, GH, R, B, T(1), dgh, GH, h_prev, R, T(1), gw + o.w_hh, R);
    if (s_.bias) add_bias_grads(B, dg, dgh, gw + o.b_ih, gw + o.b_hh);
  }
  if (defer && ++n_ == K_) flush();
}

template class RecurrentNet<float>;
template class RecurrentNet<double>;

}  // namespace membptt
