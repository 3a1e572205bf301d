// The recurrent cells and heads on a device, written once over an Ops type (device.hpp's CudaOps on
// a GPU; the tests' HostOps emulate it on the host, so CI checks all of this logic without a GPU).
//
// Same layout, same equations, same contracts as the CPU's RecurrentNet / Head / Params
// (cells/recurrent_net.hpp, head.hpp, params.hpp): the carry, the record and the parameter views
// are element for element those of the CPU cell, so alpha, the plans and the tensors move
// unchanged between devices, and the CPU float64 cell is the reference.
//
// PyTorch's options as the CPU cell has them: no biases (a zero vector on the device stands for
// b_ih, b_hh; no bias gradient), the relu RNN (a flag of the RNN kernels), LSTM projections (the
// kernel writes m = o*tanh(c') to scratch, then h' = m W_hr^T by a GEMM; backward keeps dL/dh' and
// m of each step in rings so that W_hr's gradient is deferred like the others).
//
// Per step (all on the stream, nothing allocated after construction):
//   forward, per layer: in W_ih^T (GEMM), h W_hh^T (GEMM), one fused elementwise kernel (their sum,
//     the biases, gates, c', h');
//   backward, per layer: one fused elementwise kernel (dL/dpre, dL/dc, copies of h_{t-1} and the
//     layer input into a ring), dL/dh_{t-1} = dg W_hh (GEMM), dL/d(input) = dg W_ih (GEMM, layers
//     above 0). The weight and bias gradients are DEFERRED: the dg of `defer_steps` consecutive
//     backward steps are kept in the ring, then W gets one GEMM with B*defer_steps rows and the
//     bias one GEMV with a ones vector (no atomics). Groups are counted in backward steps, which
//     every policy runs in the same order T..1, so the sums are grouped alike for every policy and
//     gradients are bitwise equal to plain BPTT's.
//   The head: logits GEMM, one fused kernel (softmax cross-entropy or MSE, the loss added into a
//     device accumulator in double, fixed order), dL/dh_top += dl W (GEMM); its weight gradient is
//     deferred the same way.
//
// Completing deferred gradients. A group still open when the backward pass ends is flushed by
// BasicDeviceHead::finish() (the executor's Backend::finish_loss, so run() returns complete
// gradients), or when the gradient buffer is read (BasicDeviceParams::data(), download()), or when a
// group fills up, or when a step for another gradient buffer (or a non-contiguous input) arrives.
// Layer 0's weight gradient reads x_t from the caller's input array at that moment: the inputs
// must stay alive until then (the executor's run() guarantees it).
//
// Bitwise reproducibility also needs the same GEMM kernels for the same step under every policy:
// cuBLAS picks kernels by shape and by pointer alignment, and a record's address depends on the
// policy. Every arena offset is a multiple of B*H elements, so when B*H*sizeof(T) is a multiple of
// 256 bytes all GEMM operands are 256-byte aligned whatever the policy; otherwise the operands read
// from the carry or a record are first copied into an aligned staging buffer.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "membptt/cells/dropout.hpp"
#include "membptt/cells/params.hpp"
#include "membptt/cells/recurrent_net.hpp"
#include "membptt/cuda/device.hpp"

namespace membptt::cuda {

// Something holding gradient contributions not yet added into a gradient buffer.
class Deferred {
 public:
  virtual void flush_deferred() = 0;  // add them now
  virtual void drop_deferred() = 0;   // forget them (the buffer is being zeroed, overwritten or destroyed)

 protected:
  ~Deferred() = default;
};

// The flat parameter (or gradient) buffer on the device: the same named views, in the same order,
// as Params<T> (params.hpp). Not copyable, not movable (deferred groups point at it).
template <class T, class Ops>
class BasicDeviceParams {
 public:
  explicit BasicDeviceParams(const NetShape& s)
      : shape_(s), views_(param_layout(s)), size_(views_.back().offset + views_.back().size), data_(size_) {}
  BasicDeviceParams(const BasicDeviceParams&) = delete;
  BasicDeviceParams& operator=(const BasicDeviceParams&) = delete;
  ~BasicDeviceParams() { drop_all(); }

  const NetShape& shape() const { return shape_; }
  std::size_t size() const { return size_; }
  const std::vector<ParamView>& views() const { return views_; }
  const ParamView* find(std::string_view name) const {
    for (const auto& v : views_)
      if (v.name == name) return &v;
    return nullptr;
  }

  // Device pointers to the whole buffer; both first complete deferred gradients.
  T* data() {
    complete();
    return data_.data();
  }
  const T* data() const {
    complete();
    return data_.data();
  }
  // Sets every element to 0 (pending deferred contributions are dropped: they would be zeroed).
  void zero() {
    drop_all();
    Ops::zero(data_.data(), size_);
  }
  void upload(const Params<T>& host) {
    check_host(host.size(), "upload");
    drop_all();
    Ops::upload(data_.data(), host.data(), size_);
  }
  void download(Params<T>& host) const {
    check_host(host.size(), "download");
    complete();
    Ops::download(host.data(), data_.data(), size_);
  }

  // --- For the cells: accumulation without completing, and the deferred registry.
  T* raw() { return data_.data(); }
  const T* raw_const() const { return data_.data(); }
  void defer(Deferred* d) const {
    if (std::find(pending_.begin(), pending_.end(), d) == pending_.end()) pending_.push_back(d);
  }
  void undefer(Deferred* d) const { pending_.erase(std::remove(pending_.begin(), pending_.end(), d), pending_.end()); }
  // Adds every deferred contribution into this buffer (queued on the stream).
  void complete() const {
    if (pending_.empty()) return;
    std::vector<Deferred*> now;
    now.swap(pending_);
    for (Deferred* d : now) d->flush_deferred();
  }

 private:
  void drop_all() const {
    std::vector<Deferred*> now;
    now.swap(pending_);
    for (Deferred* d : now) d->drop_deferred();
  }
  void check_host(std::size_t n, const char* what) const {
    if (n != size_)
      throw std::invalid_argument(std::string("DeviceParams::") + what + ": host Params has " + std::to_string(n) +
                                  " elements, this one " + std::to_string(size_));
  }

  NetShape shape_;
  std::vector<ParamView> views_;
  std::size_t size_ = 0;
  typename Ops::template Buffer<T> data_;
  mutable std::vector<Deferred*> pending_;
};

namespace detail {
inline std::size_t ubh(const NetShape& s) {
  return static_cast<std::size_t>(s.batch) * static_cast<std::size_t>(s.hidden_size);
}
// B * R: one layer's h (R = output_width: proj_size with projections, else hidden_size).
inline std::size_t ubr(const NetShape& s) {
  return static_cast<std::size_t>(s.batch) * static_cast<std::size_t>(output_width(s));
}
// Whether pointers into the carry / records must be staged (see the header comment; with
// projections carry offsets are sums of multiples of B*P and B*H, so both must be aligned).
inline bool needs_staging(const NetShape& s, std::size_t scalar_bytes) {
  return (ubh(s) * scalar_bytes) % 256 != 0 || (ubr(s) * scalar_bytes) % 256 != 0;
}
inline int chunk_of(const Options& o) {
  if (o.input_chunk_steps < 1)
    throw std::invalid_argument("cuda::Options::input_chunk_steps must be >= 1, got " + std::to_string(o.input_chunk_steps));
  return o.input_chunk_steps;
}
inline int defer_of(const Options& o) {
  if (o.defer_steps < 1) throw std::invalid_argument("cuda::Options::defer_steps must be >= 1, got " + std::to_string(o.defer_steps));
  return o.defer_steps;
}
}  // namespace detail

// One time step of a stack of LSTM / GRU / tanh-RNN layers on the device; the interface of
// RecurrentNet<T> (recurrent_net.hpp) with device pointers and device parameters.
template <class T, class Ops>
class BasicDeviceNet final : public Deferred {
 public:
  using ParamsT = BasicDeviceParams<T, Ops>;

  explicit BasicDeviceNet(const NetShape& s) : BasicDeviceNet(s, options()) {}
  BasicDeviceNet(const NetShape& s, const Options& o)
      : s_(s),
        G_(gate_count(s.cell)),
        K_(detail::defer_of(o)),
        C_(detail::chunk_of(o)),
        math_(gemm_math(o)),
        stage_(detail::needs_staging(s, sizeof(T))),
        relu_(s.cell == CellType::Rnn && s.nonlinearity == Nonlinearity::Relu),
        proj_(s.proj_size > 0),
        bh_(detail::ubh(s)),
        br_(detail::ubr(s)),
        carry_(membptt::carry_elems(s)),
        record_(membptt::record_elems(s)),
        extra_(s.cell == CellType::Rnn ? 0 : 4 * detail::ubh(s)),
        top_off_(static_cast<std::size_t>(s.num_layers - 1) * detail::ubr(s)) {
    const auto views = param_layout(s);
    nparams_ = views.back().offset + views.back().size;
    const std::size_t per = (s.bias ? 4 : 2) + (proj_ ? 1 : 0);  // views per layer
    for (int l = 0; l < s.num_layers; ++l) {
      const auto* v = &views[per * static_cast<std::size_t>(l)];
      lay_.push_back({v[0].offset, v[1].offset, s.bias ? v[2].offset : 0, s.bias ? v[3].offset : 0,
                      proj_ ? v[per - 1].offset : 0, l == 0 ? s.input_size : output_width(s)});
    }
    const Sizes z = sizes(s, K_, C_, sizeof(T));
    zero_bias_ = Buf(z.zero_bias);  // zeroed on allocation, never written
    m_ = Buf(z.m);
    dm_ = Buf(z.m);
    hproj_ = Buf(z.hproj);
    for (int l = 0; l < s.num_layers; ++l) {
      dhr_.emplace_back(z.dhr);
      mr_.emplace_back(z.mr);
    }
    drop_ = Buf(z.drop);
    seed_dev_ = typename Ops::template Buffer<std::uint64_t>(1);
    pre_ = Buf(z.pre);
    xproj_ = Buf(z.xproj);
    pre_h_ = Buf(z.pre_h);
    act_ = Buf(z.act);
    dh_ = Buf(z.dh);
    stage_h_ = Buf(z.stage);
    stage_in_ = Buf(z.stage);
    for (int l = 0; l < s.num_layers; ++l) {
      dg_.emplace_back(z.dg);
      dgh_.emplace_back(z.dgh);
      hp_.emplace_back(z.hp);
      xin_.emplace_back(l == 0 ? 0 : z.xin);
    }
    ones_ = Buf(z.ones);
    const std::vector<T> ones(z.ones, T(1));
    Ops::upload(ones_.data(), ones.data(), z.ones);
  }
  BasicDeviceNet(const BasicDeviceNet&) = delete;
  BasicDeviceNet& operator=(const BasicDeviceNet&) = delete;
  ~BasicDeviceNet() {
    try {
      flush();
    } catch (...) {  // a destructor must not throw; the gradients are then incomplete
    }
  }

  const NetShape& shape() const { return s_; }
  std::size_t carry_elems() const { return carry_; }
  std::size_t record_elems() const { return record_; }
  std::size_t param_count() const { return nparams_; }
  int defer_steps() const { return K_; }
  GemmMath math() const { return math_; }
  // Device bytes this instance allocated (all of its working memory). The cuBLAS workspace is the
  // process's, allocated once with the device like the CUDA context, and is not counted here.
  std::size_t scratch_bytes() const { return sizes(s_, K_, C_, sizeof(T)).total * sizeof(T) + sizeof(std::uint64_t); }
  static std::size_t scratch_bytes_for(const NetShape& s, const Options& o) {
    return sizes(s, detail::defer_of(o), detail::chunk_of(o), sizeof(T)).total * sizeof(T) + sizeof(std::uint64_t);
  }  // (+ dropout's seed)
  int input_chunk_steps() const { return C_; }

  // The inputs of the pass that starts (the executor calls this first): advance() and
  // advance_record() given x_t inside [x, x + length steps) take layer 0's input projection from
  // the block of input_chunk_steps() steps it lies in, computed once per block and pass. Null:
  // every step computes its own.
  void begin_pass(const T* x, std::int64_t length) {
    x_base_ = x;
    length_ = length;
    chunk_ = -1;
  }

  // RecurrentNet::set_dropout's contract: dropout between layers (shape().dropout > 0, two layers
  // or more) with masks of `seed` for the passes that follow; steps must lie in begin_pass's inputs.
  // The seed goes to device memory (a blocking copy: not while a graph is being captured), so a
  // replayed graph draws the new masks; switching dropout on or off changes the kernels a pass
  // issues, so do it before a CudaExecutor captures its graph.
  void set_dropout(bool on, std::uint64_t seed) {
    drop_on_ = on && s_.dropout > 0 && s_.num_layers > 1;
    Ops::upload(seed_dev_.data(), &seed, 1);
    threshold_ = dropout_threshold(s_.dropout);
    scale_ = dropout_scale<T>(s_.dropout);
  }
  bool dropout_on() const { return drop_on_; }

  void advance(const ParamsT& p, const T* x_t, const T* carry_in, T* carry_out) {
    check(p, "advance");
    step(p.data(), x_t, carry_in, carry_out, act_.data(), 0);  // gates of every layer to one scratch
  }
  // The record is (carry_in, carry_out, gates). The step's kernels write carry_in into it as they
  // read it, and carry_out also to `carry_copy` when given (the executor's cursor, which may be
  // carry_in): no separate copies.
  void advance_record(const ParamsT& p, const T* x_t, const T* carry_in, T* record, T* carry_copy = nullptr) {
    check(p, "advance_record");
    step(p.data(), x_t, carry_in, record + carry_, record + 2 * carry_, extra_, record, carry_copy);
  }

  const T* record_carry_in(const T* record) const { return record; }
  const T* record_carry_out(const T* record) const { return record + carry_; }
  const T* top_hidden(const T* carry) const { return carry + top_off_; }
  T* top_hidden(T* carry) const { return carry + top_off_; }

  // RecurrentNet::backward's contract (dx_t, optional: dL/dx_t [B x I], written now); the
  // parameter gradients are added when the group is flushed (see the header comment). x_t must
  // stay valid until then.
  void backward(const ParamsT& p, const T* x_t, const T* record, const T* dcarry_out, T* dcarry_in, ParamsT& grads,
                T* dx_t = nullptr) {
    check(p, "backward");
    check(grads, "backward (grads)");
    const std::size_t xstep = static_cast<std::size_t>(s_.batch) * static_cast<std::size_t>(s_.input_size);
    // A group's inputs lie side by side: below its first step's (plain order), or above (reversed).
    const std::uintptr_t step_bytes = static_cast<std::uintptr_t>(n_) * xstep * sizeof(T);
    const bool adjacent = reverse_ ? reinterpret_cast<std::uintptr_t>(x_first_) + step_bytes ==
                                         reinterpret_cast<std::uintptr_t>(x_t)
                                   : reinterpret_cast<std::uintptr_t>(x_t) + step_bytes ==
                                         reinterpret_cast<std::uintptr_t>(x_first_);
    if (target_ && (target_ != &grads || !adjacent)) flush();
    if (!target_) {
      target_ = &grads;
      grads.defer(this);
      x_first_ = x_t;
      group_reverse_ = reverse_;
    }
    const std::size_t slot = static_cast<std::size_t>(group_reverse_ ? n_ : K_ - 1 - n_);
    const int B = s_.batch, H = s_.hidden_size, R = output_width(s_), GH = G_ * H, L = s_.num_layers;
    const std::size_t LBR = br_ * static_cast<std::size_t>(L), gbh = bh_ * static_cast<std::size_t>(G_);
    const T* w = p.data();
    const T* cin = record;
    const T* cout = record + carry_;
    const T* gates = record + 2 * carry_;
    const std::int64_t t = drop_on_ ? step_of(x_t) : 0;
    for (int l = L - 1; l >= 0; --l) {
      const Lay& o = lay_[static_cast<std::size_t>(l)];
      const std::size_t lo = static_cast<std::size_t>(l) * br_;           // this layer's h
      const std::size_t lc = LBR + static_cast<std::size_t>(l) * bh_;     // its c (LSTM)
      const T* in = l == 0 ? nullptr : cout + lo - br_;
      if (in && drop_on_) in = dropped(in, l, t);  // the dropped input, for W_ih's gradient
      T* xin = l == 0 ? nullptr : xin_[static_cast<std::size_t>(l)].data() + slot * br_;
      const T* h_prev = cin + lo;
      T* hp = hp_[static_cast<std::size_t>(l)].data() + slot * br_;
      T* dg = dg_[static_cast<std::size_t>(l)].data() + slot * gbh;
      const T* act = gates + static_cast<std::size_t>(l) * extra_;
      const T* dh_a = dcarry_out + lo;
      const T* dh_b = l == L - 1 ? nullptr : dh_.data();  // what the layer above sent down
      T* dh_in = dcarry_in + lo;
      const T* dgh = dg;
      T beta_hh = T(0);
      switch (s_.cell) {
        case CellType::Lstm:
          if (proj_) {
            // h' = m W_hr^T: dh = dh_a (+ dh_b) and m = o*tanh(c') kept in rings for W_hr's deferred
            // gradient; dm = dh W_hr; h_{t-1} and the input ([B x P]) copied here, not by the kernel.
            T* dhr = dhr_[static_cast<std::size_t>(l)].data() + slot * br_;
            T* mr = mr_[static_cast<std::size_t>(l)].data() + slot * bh_;
            Ops::copy(dhr, dh_a, br_);
            if (dh_b) Ops::add(dhr, dh_b, br_);
            Ops::lstm_m(B, H, act, cout + lc, mr);
            gemm_rm(false, false, B, H, R, T(1), dhr, R, w + o.w_hr, H, T(0), dm_.data(), H);
            Ops::copy(hp, h_prev, br_);
            if (xin) Ops::copy(xin, in, br_);
            Ops::lstm_bwd(B, H, act, cin + lc, cout + lc, dm_.data(), static_cast<const T*>(nullptr),
                          dcarry_out + lc, dg, dcarry_in + lc, static_cast<const T*>(nullptr), static_cast<T*>(nullptr),
                          static_cast<const T*>(nullptr), static_cast<T*>(nullptr));
          } else {
            Ops::lstm_bwd(B, H, act, cin + lc, cout + lc, dh_a, dh_b, dcarry_out + lc, dg, dcarry_in + lc, h_prev, hp,
                          in, xin);
          }
          break;
        case CellType::Gru: {
          T* g2 = dgh_[static_cast<std::size_t>(l)].data() + slot * gbh;
          Ops::gru_bwd(B, H, act, h_prev, dh_a, dh_b, dg, g2, dh_in, hp, in, xin);
          dgh = g2;
          beta_hh = T(1);
          break;
        }
        case CellType::Rnn:
          Ops::rnn_bwd(B, H, cout + lo, dh_a, dh_b, dg, h_prev, hp, in, xin, relu_);
          break;
      }
      gemm_rm(false, false, B, R, GH, T(1), dgh, GH, w + o.w_hh, R, beta_hh, dh_in, R);
      if (l > 0) {
        gemm_rm(false, false, B, o.in, GH, T(1), dg, GH, w + o.w_ih, o.in, T(0), dh_.data(), o.in);
        if (drop_on_)  // back through the same mask
          Ops::dropout(B, R, dh_.data(), dh_.data(), seed_dev_.data(), static_cast<std::uint64_t>(l),
                       static_cast<std::uint64_t>(t), threshold_, scale_);
      }
      else if (dx_t) gemm_rm(false, false, B, o.in, GH, T(1), dg, GH, w + o.w_ih, o.in, T(0), dx_t, o.in);
    }
    if (++n_ == K_) flush();
  }

  // Adds the open group's weight and bias gradients into its gradient buffer now.
  void flush() {
    if (!target_) return;
    ParamsT* t = std::exchange(target_, nullptr);
    t->undefer(this);
    const int n = std::exchange(n_, 0);
    if (n == 0) return;
    T* gw = t->raw();
    const int B = s_.batch, H = s_.hidden_size, R = output_width(s_), GH = G_ * H, rows = n * B;
    // The group's slots in ascending position: [K-n, K) in plain order, [0, n) reversed.
    const std::size_t off = group_reverse_ ? 0 : static_cast<std::size_t>(K_ - n), gbh = bh_ * static_cast<std::size_t>(G_);
    const std::size_t xstep = static_cast<std::size_t>(B) * static_cast<std::size_t>(s_.input_size);
    const T* x_low = group_reverse_ ? x_first_ : x_first_ - static_cast<std::size_t>(n - 1) * xstep;
    for (int l = 0; l < s_.num_layers; ++l) {
      const auto ul = static_cast<std::size_t>(l);
      const Lay& o = lay_[ul];
      const T* in = l == 0 ? x_low : xin_[ul].data() + off * br_;
      const T* dg = dg_[ul].data() + off * gbh;
      const T* dgh = s_.cell == CellType::Gru ? dgh_[ul].data() + off * gbh : dg;
      gemm_rm(true, false, GH, o.in, rows, T(1), dg, GH, in, o.in, T(1), gw + o.w_ih, o.in);
      gemm_rm(true, false, GH, R, rows, T(1), dgh, GH, hp_[ul].data() + off * br_, R, T(1), gw + o.w_hh, R);
      if (proj_)  // dW_hr [P x H] += dh^T m over the group's rows
        gemm_rm(true, false, R, H, rows, T(1), dhr_[ul].data() + off * br_, R, mr_[ul].data() + off * bh_, H, T(1),
                gw + o.w_hr, H);
      if (!s_.bias) continue;
      Ops::gemv_cm(GH, rows, T(1), dg, GH, ones_.data(), T(1), gw + o.b_ih);
      Ops::gemv_cm(GH, rows, T(1), dgh, GH, ones_.data(), T(1), gw + o.b_hh);
    }
  }
  void flush_deferred() override { flush(); }
  void drop_deferred() override {
    target_ = nullptr;
    n_ = 0;
  }

  // The executor's reversed layout (a bidirectional stack's reverse chains, SequenceLayout): the
  // backward steps T..1 read inputs at ascending positions, so a group of weight gradients grows
  // upward from its first step's input (slots 0, 1, ...) instead of downward.
  void set_reverse(bool on) { reverse_ = on; }

 private:
  using Buf = typename Ops::template Buffer<T>;
  struct Lay {
    std::size_t w_ih, w_hh, b_ih, b_hh, w_hr;
    int in;
  };
  struct Sizes {
    std::size_t pre = 0, pre_h = 0, xproj = 0, act = 0, dh = 0, stage = 0, dg = 0, dgh = 0, hp = 0, xin = 0, ones = 0,
                zero_bias = 0, m = 0, hproj = 0, dhr = 0, mr = 0, drop = 0, total = 0;
  };
  static Sizes sizes(const NetShape& s, int K, int C, std::size_t scalar_bytes) {
    Sizes z;
    const std::size_t bh = detail::ubh(s), G = static_cast<std::size_t>(gate_count(s.cell)),
                      L = static_cast<std::size_t>(s.num_layers), k = static_cast<std::size_t>(K);
    z.pre = G * bh;
    z.pre_h = G * bh;
    z.xproj = C > 1 ? static_cast<std::size_t>(C) * G * bh : 0;
    const std::size_t br = detail::ubr(s);  // one layer's h: B*P with projections
    const bool proj = s.proj_size > 0, stage = detail::needs_staging(s, scalar_bytes);
    z.act = s.cell == CellType::Rnn ? 0 : 4 * bh;
    z.dh = L > 1 ? br : 0;
    z.stage = stage ? br : 0;
    z.dg = k * G * bh;
    z.dgh = s.cell == CellType::Gru ? k * G * bh : 0;
    z.hp = k * br;
    z.xin = L > 1 ? k * br : 0;
    z.ones = k * static_cast<std::size_t>(s.batch);
    z.zero_bias = s.bias ? 0 : G * static_cast<std::size_t>(s.hidden_size);  // stands for b_ih, b_hh without biases
    z.m = proj ? bh : 0;                // m = o*tanh(c') forward; dm backward (two buffers)
    z.hproj = proj && stage ? br : 0;   // h' = m W_hr^T before it is copied into the carry
    z.dhr = proj ? k * br : 0;          // per layer: dL/dh' of the group's steps
    z.mr = proj ? k * bh : 0;           // per layer: m of the group's steps
    z.drop = s.dropout > 0 && L > 1 ? br : 0;  // a layer's dropped input
    z.total = z.pre + z.pre_h + z.xproj + z.act + z.dh + 2 * z.stage + L * (z.dg + z.dgh + z.hp + z.dhr + z.mr) +
              (L - 1) * z.xin + z.ones + z.zero_bias + 2 * z.m + z.hproj + z.drop;
    return z;
  }

  void check(const ParamsT& p, const char* what) const {
    if (p.size() != nparams_)
      throw std::invalid_argument(std::string("CudaRecurrentNet::") + what + ": Params has " + std::to_string(p.size()) +
                                  " elements, this network needs " + std::to_string(nparams_));
  }
  // Row-major C[m x n] = alpha op(A) op(B) + beta C, as the column-major C^T = op(B)^T op(A)^T.
  void gemm_rm(bool ta, bool tb, int m, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb, T beta, T* c,
               int ldc) const {
    Ops::gemm_cm(tb, ta, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc, math_);
  }
  // The 0-based step of x_t in begin_pass's inputs (dropout's counter).
  std::int64_t step_of(const T* x_t) const {
    const std::size_t xstep = static_cast<std::size_t>(s_.batch) * static_cast<std::size_t>(s_.input_size);
    if (x_base_ && x_t >= x_base_) {
      const std::size_t d = static_cast<std::size_t>(x_t - x_base_);
      const auto t = static_cast<std::int64_t>(d / xstep);
      if (d % xstep == 0 && t < length_) return t;
    }
    throw std::logic_error("CudaRecurrentNet: dropout needs each step's input inside the pass's inputs (begin_pass)");
  }
  // Layer l's input h (B*R values) times its mask at step t, in the aligned drop_ buffer.
  const T* dropped(const T* h, int l, std::int64_t t) {
    Ops::dropout(s_.batch, output_width(s_), h, drop_.data(), seed_dev_.data(), static_cast<std::uint64_t>(l),
                 static_cast<std::uint64_t>(t), threshold_, scale_);
    return drop_.data();
  }

  // An aligned pointer to the same B*R values, one layer's h (see the header comment on staging).
  const T* staged(const T* p, Buf& buf) const {
    if (!stage_) return p;
    Ops::copy(buf.data(), p, br_);
    return buf.data();
  }

  // Layer 0's x_t W_ih^T from its block of C_ steps (one GEMM when the block is not the one held),
  // or null when x_t is not in the pass's inputs (or C_ is 1): then the caller computes it.
  const T* projected(const T* w, const T* x_t) {
    if (C_ == 1 || !x_base_ || x_t < x_base_) return nullptr;
    const std::size_t xstep = static_cast<std::size_t>(s_.batch) * static_cast<std::size_t>(s_.input_size);
    const auto t = static_cast<std::int64_t>(static_cast<std::size_t>(x_t - x_base_) / xstep);  // 0-based
    if (t >= length_ || x_t != x_base_ + static_cast<std::size_t>(t) * xstep) return nullptr;
    const std::int64_t c = t / C_, first = c * C_;
    const int GH = G_ * s_.hidden_size, I = s_.input_size;
    if (c != chunk_) {
      const auto rows = static_cast<int>(std::min<std::int64_t>(C_, length_ - first) * s_.batch);
      gemm_rm(false, true, rows, GH, I, T(1), x_base_ + static_cast<std::size_t>(first) * xstep, I,
              w + lay_[0].w_ih, I, T(0), xproj_.data(), GH);
      chunk_ = c;
    }
    return xproj_.data() + static_cast<std::size_t>(t - first) * static_cast<std::size_t>(s_.batch) * GH;
  }

  // save_in: where carry_in is copied (null: nowhere); out2: a second destination of carry_out.
  void step(const T* w, const T* x_t, const T* carry_in, T* carry_out, T* gates, std::size_t gates_stride,
            T* save_in = nullptr, T* out2 = nullptr) {
    const int B = s_.batch, H = s_.hidden_size, R = output_width(s_), GH = G_ * H;
    const std::size_t LBR = br_ * static_cast<std::size_t>(s_.num_layers);
    const std::int64_t t = drop_on_ ? step_of(x_t) : 0;
    for (int l = 0; l < s_.num_layers; ++l) {
      const Lay& o = lay_[static_cast<std::size_t>(l)];
      const std::size_t lo = static_cast<std::size_t>(l) * br_;
      const std::size_t lc = LBR + static_cast<std::size_t>(l) * bh_;
      const T* in = l == 0 ? x_t : drop_on_ ? dropped(carry_out + lo - br_, l, t) : staged(carry_out + lo - br_, stage_in_);
      const T* h_prev = carry_in + lo;
      const T* h_gemm = staged(h_prev, stage_h_);
      T* h_out = carry_out + lo;
      T* act = gates + static_cast<std::size_t>(l) * gates_stride;
      // The two products apart; the cell's kernel adds them. (Running the first on a second stream
      // beside the second gained 1% on an H200 and took 3.5x the graph memory: not done.)
      const T* px = l == 0 ? projected(w, x_t) : nullptr;
      if (!px) {
        gemm_rm(false, true, B, GH, o.in, T(1), in, o.in, w + o.w_ih, o.in, T(0), pre_.data(), GH);
        px = pre_.data();
      }
      gemm_rm(false, true, B, GH, R, T(1), h_gemm, R, w + o.w_hh, R, T(0), pre_h_.data(), GH);
      const T* b_ih = s_.bias ? w + o.b_ih : zero_bias_.data();
      const T* b_hh = s_.bias ? w + o.b_hh : zero_bias_.data();
      CarryCopies<T> cc;
      if (save_in) cc.h_save = save_in + lo;
      if (out2) cc.h_out2 = out2 + lo;
      switch (s_.cell) {
        case CellType::Lstm:
          if (save_in) cc.c_save = save_in + lc;
          if (out2) cc.c_out2 = out2 + lc;
          if (!proj_) {
            Ops::lstm_fwd(B, H, px, pre_h_.data(), b_ih, b_hh, h_prev, carry_in + lc, act, h_out, carry_out + lc, cc);
            break;
          }
          // Projections: the kernel writes m = o*tanh(c') and the carry's c; then h_{t-1} is saved
          // (before out2, which may be carry_in, is written), h' = m W_hr^T, and h' copied to out2.
          cc.h_save = cc.h_out2 = nullptr;
          Ops::lstm_fwd(B, H, px, pre_h_.data(), b_ih, b_hh, h_prev, carry_in + lc, act, m_.data(), carry_out + lc, cc);
          if (save_in) Ops::copy(save_in + lo, h_prev, br_);
          if (stage_) {  // the GEMM writes an aligned buffer whatever the carry's address
            gemm_rm(false, true, B, R, H, T(1), m_.data(), H, w + o.w_hr, H, T(0), hproj_.data(), R);
            Ops::copy(h_out, hproj_.data(), br_);
          } else {
            gemm_rm(false, true, B, R, H, T(1), m_.data(), H, w + o.w_hr, H, T(0), h_out, R);
          }
          if (out2) Ops::copy(out2 + lo, h_out, br_);
          break;
        case CellType::Gru:
          Ops::gru_fwd(B, H, px, pre_h_.data(), b_ih, b_hh, h_prev, act, h_out, cc);
          break;
        case CellType::Rnn:
          Ops::rnn_fwd(B, H, px, pre_h_.data(), b_ih, b_hh, h_prev, h_out, cc, relu_);
          break;
      }
    }
  }

  NetShape s_;
  int G_ = 1, K_ = 1, C_ = 1;
  GemmMath math_ = GemmMath::Fp32;
  bool stage_ = false;
  bool relu_ = false;  // the plain RNN with nonlinearity relu
  bool proj_ = false;  // LSTM projections (proj_size > 0)
  std::size_t bh_ = 0, br_ = 0, carry_ = 0, record_ = 0, extra_ = 0, top_off_ = 0, nparams_ = 0;
  std::vector<Lay> lay_;
  Buf zero_bias_;  // without biases: [G*H] zeros standing for b_ih and b_hh
  Buf m_;          // projections: [B x H] o*tanh(c') of the step being computed
  Buf dm_;         // projections: [B x H] dL/dm
  Buf hproj_;      // projections with staging: [B x P] h' before it is copied into the carry
  std::vector<Buf> dhr_;  // projections, per layer: [K][B x P] dL/dh' (W_hr's deferred gradient)
  std::vector<Buf> mr_;   // projections, per layer: [K][B x H] m
  Buf drop_;              // dropout: [B x R] a layer's dropped input
  typename Ops::template Buffer<std::uint64_t> seed_dev_;  // dropout's seed, read by the kernels
  bool drop_on_ = false;
  std::uint64_t threshold_ = 0;
  T scale_ = T(1);
  Buf pre_;       // [B x G*H] x W_ih^T (layers above 0, or an x outside the pass's inputs)
  Buf xproj_;     // [C][B x G*H] x W_ih^T of layer 0 for the block of steps chunk_
  const T* x_base_ = nullptr;  // the pass's inputs (begin_pass)
  std::int64_t length_ = 0, chunk_ = -1;
  Buf pre_h_;     // [B x G*H] h W_hh^T
  Buf act_;       // advance(): [B x 4H] gates (LSTM, GRU), not kept
  Buf dh_;        // backward: [B x R] dL/d(input) of the layer above, sent down
  Buf stage_h_;   // staging of h_{t-1} (only when pointers need it)
  Buf stage_in_;  // staging of the input of layers above 0
  // Deferred weight gradients, per layer, K_ slots of one step each; the j-th step of a group uses
  // slot K_-1-j, so a group of n steps lies in slots [K_-n, K_) in ascending time order, like x
  // (reversed, set_reverse: slot j, so [0, n), again in the order of the inputs).
  std::vector<Buf> dg_;   // [K][B x G*H] dL/dpre (GRU: w.r.t. x W_ih^T + b_ih)
  std::vector<Buf> dgh_;  // GRU: [K][B x 3H] dL/d(h W_hh^T + b_hh)
  std::vector<Buf> hp_;   // [K][B x R] h_{t-1}
  std::vector<Buf> xin_;  // layers above 0: [K][B x R] the layer's input
  Buf ones_;              // [K*B] ones, for the bias GEMVs
  ParamsT* target_ = nullptr;  // the gradient buffer of the open group (null: none)
  const T* x_first_ = nullptr;  // x_t of the open group's first (latest) step
  int n_ = 0;                   // steps in the open group
  bool reverse_ = false;        // set_reverse: backward steps' inputs ascend
  bool group_reverse_ = false;  // the open group's order (reverse_ when it began)
};

// The output head on the device: Head<T>'s losses (head.hpp) with the loss accumulated on the
// device; step_xent and last_mse return 0 and finish() returns the loss of the whole pass.
template <class T, class Ops>
class BasicDeviceHead final : public Deferred {
 public:
  using ParamsT = BasicDeviceParams<T, Ops>;

  explicit BasicDeviceHead(const NetShape& s) : BasicDeviceHead(s, options()) {}
  BasicDeviceHead(const NetShape& s, const Options& o)
      : s_(s), K_(detail::defer_of(o)), math_(gemm_math(o)), stage_(detail::needs_staging(s, sizeof(T))) {
    const auto views = param_layout(s);
    w_off_ = views[views.size() - 2].offset;
    b_off_ = views[views.size() - 1].offset;
    nparams_ = b_off_ + views.back().size;
    const Sizes z = sizes(s, K_, sizeof(T));
    out_ = Buf(z.out);
    dl_ = Buf(z.dl);
    ht_ = Buf(z.ht);
    stage_h_ = Buf(z.stage);
    ones_ = Buf(z.ones);
    const std::vector<T> ones(z.ones, T(1));
    Ops::upload(ones_.data(), ones.data(), z.ones);
    acc_ = typename Ops::template Buffer<double>(static_cast<std::size_t>(s.batch));
    bad_ = typename Ops::template Buffer<int>(1);
  }
  BasicDeviceHead(const BasicDeviceHead&) = delete;
  BasicDeviceHead& operator=(const BasicDeviceHead&) = delete;
  ~BasicDeviceHead() {
    try {
      flush();
    } catch (...) {
    }
  }

  const NetShape& shape() const { return s_; }
  std::size_t scratch_bytes() const { return bytes(sizes(s_, K_, sizeof(T)), s_); }
  static std::size_t scratch_bytes_for(const NetShape& s, const Options& o) {
    return bytes(sizes(s, detail::defer_of(o), sizeof(T)), s);
  }

  // Head::step_xent's contract, except: returns 0 (the step's loss is added on the device; finish()
  // returns the sum), and a target outside [0, O) is reported by finish() (it throws), not here.
  T step_xent(const ParamsT& p, const T* h_top, const std::int64_t* targets_t, T scale, T* dh_top, ParamsT& grads) {
    const int B = s_.batch, H = width(s_), O = s_.output_size;
    const std::size_t slot = begin(p, grads, "step_xent");
    T* dl = dl_.data() + slot * static_cast<std::size_t>(B) * static_cast<std::size_t>(O);
    T* ht = ht_.data() + slot * top_elems(s_);
    logits(p, h_top);
    Ops::xent(B, O, H, out_.data(), p.data() + b_off_, targets_t, scale, dl, h_top, ht, acc_.data(), bad_.data());
    end(p, dl, dh_top);
    return T(0);
  }
  // Head::last_mse's contract, except that it returns 0 (finish() returns the loss).
  T last_mse(const ParamsT& p, const T* h_top, const T* target, T* dh_top, ParamsT& grads) {
    const int B = s_.batch, H = width(s_), O = s_.output_size;
    const std::size_t slot = begin(p, grads, "last_mse");
    T* dl = dl_.data() + slot * static_cast<std::size_t>(B) * static_cast<std::size_t>(O);
    T* ht = ht_.data() + slot * top_elems(s_);
    logits(p, h_top);
    Ops::mse(B, O, H, out_.data(), p.data() + b_off_, target, dl, h_top, ht, acc_.data());
    end(p, dl, dh_top);
    return T(0);
  }

  // The end of a pass: completes the deferred gradients of the last gradient buffer this head
  // wrote (its own group and the network's), returns the loss accumulated since the previous
  // finish() and clears it. Throws std::invalid_argument if a class target was out of range.
  T finish() const {
    if (last_grads_) std::exchange(last_grads_, nullptr)->complete();
    const auto B = static_cast<std::size_t>(s_.batch);
    std::vector<double> acc(B);
    int bad = 0;
    Ops::download(acc.data(), acc_.data(), B);
    Ops::download(&bad, bad_.data(), 1);
    Ops::zero(acc_.data(), B);
    Ops::zero(bad_.data(), 1);
    if (bad)
      throw std::invalid_argument("CudaHead: a class target is outside [0, " + std::to_string(s_.output_size) +
                                  "): the loss and gradients of this pass are not valid");
    double sum = 0;
    for (double v : acc) sum += v;
    return static_cast<T>(sum);
  }

  void flush() {
    if (!target_) return;
    ParamsT* t = std::exchange(target_, nullptr);
    t->undefer(this);
    const int n = std::exchange(n_, 0);
    if (n == 0) return;
    const int B = s_.batch, H = width(s_), O = s_.output_size, rows = n * B;
    const std::size_t off = static_cast<std::size_t>(K_ - n);
    const T* dl = dl_.data() + off * static_cast<std::size_t>(B) * static_cast<std::size_t>(O);
    const T* ht = ht_.data() + off * top_elems(s_);
    T* gw = t->raw();
    Ops::gemm_cm(false, true, H, O, rows, T(1), ht, H, dl, O, T(1), gw + w_off_, H, math_);  // dW = dl^T ht
    Ops::gemv_cm(O, rows, T(1), dl, O, ones_.data(), T(1), gw + b_off_);
  }
  void flush_deferred() override { flush(); }
  void drop_deferred() override {
    target_ = nullptr;
    n_ = 0;
  }

 private:
  using Buf = typename Ops::template Buffer<T>;
  struct Sizes {
    std::size_t out = 0, dl = 0, ht = 0, stage = 0, ones = 0, total = 0;
  };
  // The width of h_top (both directions' h side by side in a bidirectional net) and its B rows.
  static int width(const NetShape& s) { return directions(s) * output_width(s); }
  static std::size_t top_elems(const NetShape& s) {
    return static_cast<std::size_t>(s.batch) * static_cast<std::size_t>(width(s));
  }
  static Sizes sizes(const NetShape& s, int K, std::size_t scalar_bytes) {
    Sizes z;
    const std::size_t bo = static_cast<std::size_t>(s.batch) * static_cast<std::size_t>(s.output_size),
                      k = static_cast<std::size_t>(K);
    z.out = bo;
    z.dl = k * bo;
    z.ht = k * top_elems(s);
    z.stage = detail::needs_staging(s, scalar_bytes) ? top_elems(s) : 0;
    z.ones = k * static_cast<std::size_t>(s.batch);
    z.total = z.out + z.dl + z.ht + z.stage + z.ones;
    return z;
  }
  static std::size_t bytes(const Sizes& z, const NetShape& s) {
    return z.total * sizeof(T) + static_cast<std::size_t>(s.batch) * sizeof(double) + sizeof(int);
  }
  void check(const ParamsT& p, const char* what) const {
    if (p.size() != nparams_)
      throw std::invalid_argument(std::string("CudaHead::") + what + ": Params has " + std::to_string(p.size()) +
                                  " elements, this network needs " + std::to_string(nparams_));
  }
  std::size_t begin(const ParamsT& p, ParamsT& grads, const char* what) {
    check(p, what);
    check(grads, what);
    if (target_ && target_ != &grads) flush();
    if (!target_) {
      target_ = &grads;
      grads.defer(this);
    }
    last_grads_ = &grads;
    return static_cast<std::size_t>(K_ - 1 - n_);
  }
  // out_ = h_top W^T (the bias is added by the loss kernel).
  void logits(const ParamsT& p, const T* h_top) {
    const int B = s_.batch, H = width(s_), O = s_.output_size;
    const T* a = h_top;
    if (stage_) {
      Ops::copy(stage_h_.data(), h_top, top_elems(s_));
      a = stage_h_.data();
    }
    // Row-major out[B x O] = a[B x H] W[O x H]^T, i.e. column-major out^T = W^T(col) a^T.
    Ops::gemm_cm(true, false, O, B, H, T(1), p.data() + w_off_, H, a, H, T(0), out_.data(), O, math_);
  }
  // dh_top += dl W, then closes the step's slot.
  void end(const ParamsT& p, const T* dl, T* dh_top) {
    const int B = s_.batch, H = width(s_), O = s_.output_size;
    // Row-major dh[B x H] += dl[B x O] W[O x H]: column-major dh^T = W^T(col, H x O) dl^T(O x B).
    Ops::gemm_cm(false, false, H, B, O, T(1), p.data() + w_off_, H, dl, O, T(1), dh_top, H, math_);
    if (++n_ == K_) flush();
  }

  NetShape s_;
  int K_ = 1;
  GemmMath math_ = GemmMath::Fp32;
  bool stage_ = false;
  std::size_t w_off_ = 0, b_off_ = 0, nparams_ = 0;
  Buf out_;      // [B x O] logits / predictions without the bias
  Buf dl_;       // [K][B x O] dL/dlogits of each step of the open group
  Buf ht_;       // [K][B x H] h_top of each step of the open group
  Buf stage_h_;  // staging of h_top (only when pointers need it)
  Buf ones_;     // [K*B] ones
  mutable typename Ops::template Buffer<double> acc_;  // [B] loss accumulated per batch row
  mutable typename Ops::template Buffer<int> bad_;     // 1 when a target was out of range
  ParamsT* target_ = nullptr;
  mutable const ParamsT* last_grads_ = nullptr;
  int n_ = 0;
};

}  // namespace membptt::cuda
