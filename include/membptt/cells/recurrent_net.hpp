// RecurrentNet<T>: one time step of a stack of LSTM / GRU / tanh-RNN layers on the CPU, batched,
// forward and backward, with PyTorch's parameter layout and equations (see params.hpp), so weights
// move unchanged between membptt and torch.nn.LSTM / GRU / RNN (batch_first=False; bias=True or
// False; the RNN with nonlinearity='tanh' or 'relu').
//
// This is what the executor of a memory-efficient BPTT schedule calls (op.hpp):
//   advance         = a forward step that keeps nothing (Advance, AdvanceHidden);
//   advance_record  = a forward step that writes the step's internal state (AdvanceRecord);
//   backward        = the backward step from that internal state (Backward).
//
// Equations (per layer, x = the layer's input, h/c = its carry in, all gates for the whole batch):
//   LSTM  i,f,g,o = sig, sig, tanh, sig of (x W_ih^T + b_ih + h W_hh^T + b_hh)   (row blocks i f g o)
//         c' = f*c + i*g ;  h' = o*tanh(c')
//         with proj_size P > 0: h' = W_hr (o*tanh(c'))  ([B x P]; W_hr [P x H]; W_hh [4H x P])
//   GRU   r = sig(x W_ir^T + b_ir + h W_hr^T + b_hr) ;  z likewise
//         n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn)) ;  h' = (1-z)*n + z*h
//   RNN   h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)     (nonlinearity relu: max(0, ...); its
//         derivative is taken as PyTorch's: 1 where h' > 0, else 0)
// Without biases (NetShape::bias false, PyTorch's bias=False) every b_* above is 0: a zero vector
// stands in for them (x + 0 is x), and no bias gradient is accumulated.
// Layer 0 reads x_t [B x I]; layer l > 0 reads the new h' of layer l-1 (with dropout on, that h'
// times the mask of (seed, l, t) / (1 - p): cells/dropout.hpp; the record keeps the undropped h',
// and backward draws the same mask again, so nothing more is stored).
// R = output_width(shape): the width of h (P with projections, else H).
//
// CARRY (the "hidden state" the schedule stores in a hidden entry), carry_elems() elements of T:
//   h of every layer: [L][B][R] at offset 0                 (same order as PyTorch's h_n [L,B,R])
//   c of every layer: [L][B][H] at offset L*B*R, LSTM only  (PyTorch's c_n)
//   carry_elems = L*B*R + (LSTM: L*B*H)
//   (the free carry_elems() of a bidirectional shape: the same with L*D entries, index 2l + d, as
//   PyTorch's h_n / c_n; exec/bidirectional.hpp)
//
// RECORD (the "internal state" of one step, an internal entry), record_elems() elements of T:
//   [0, C)       carry in  (h_{t-1}, c_{t-1} of every layer), carry layout, C = carry_elems
//   [C, 2C)      carry out (h_t, c_t of every layer), carry layout; record_carry_out() points here
//   [2C, ...)    per layer l, at 2C + l*E, E elements, row-major [B][4H]:
//                  LSTM: activated gates i, f, g, o (each H wide)          E = 4*B*H
//                  GRU : r, z, n and hn = h W_hn^T + b_hn (each H wide)    E = 4*B*H
//                  RNN : nothing (h' is in the carry out)                  E = 0
//   record_elems: LSTM 8*L*B*H (alpha = record/carry = 4), GRU 6*L*B*H (alpha = 6),
//                 RNN 2*L*B*H (alpha = 2); with projections 2*L*B*(P+H) + 4*L*B*H. The input x_t of
//                 layer 0 is not recorded: backward takes it again as an argument; the inputs of
//                 layers > 0 are in the carry out.
//   LSTM's tanh(c_t) (and with projections m = o*tanh(c_t)) is recomputed by backward rather than
//   stored.
//
// Numerics: advance() and advance_record() run the same code (the gates of advance() go to scratch),
// so the carry out inside a record is bitwise equal to advance()'s carry out. Every operation has a
// fixed order (no atomics, no reductions whose order depends on threads other than inside OpenBLAS
// GEMMs, which are deterministic for a fixed thread count), so equal inputs give equal bits.
// float uses fast vectorised exp/tanh (a few ulp); double uses std::exp / std::tanh.
//
// Deferred weight gradients (defer_steps > 1, as the executor builds its net: kExecutorDeferSteps):
// backward() keeps each step's d(pre-activation), layer input and h_{t-1} in rings of defer_steps
// slots, and the weight and bias gradients of that many consecutive backward() calls are added at
// once: one GEMM with defer_steps * B rows per weight instead of one with B rows per step (whose
// K = B is too short for OpenBLAS: measured 65 against 125 GFLOP/s with 2 threads for LSTM
// I = 64, H = 256, B = 32, groups of 8). Groups are counted in backward() calls, which every policy
// makes in the same order T..1, so every policy still gives plain BPTT's bits. grads is complete
// only after flush() (the executor calls it at the end of each pass), or when a backward() for
// another gradient buffer arrives.
//
// Allocation: every scratch buffer is allocated in the constructor; advance, advance_record and
// backward never allocate. An instance is not safe to use from two threads at once (shared scratch).
// Aliasing: advance() accepts carry_out == carry_in (in place); backward() accepts
// dcarry_in == dcarry_out (in place). Any other overlap between arguments is not allowed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "membptt/backend/buffer.hpp"
#include "membptt/cells/params.hpp"

namespace membptt {

// Sizes for a shape without building a network (the planner's alpha = record / carry).
std::size_t carry_elems(const NetShape& s);
std::size_t record_elems(const NetShape& s);

// The weight-gradient groups of the executor's CPU net (see the header comment): groups of
// kExecutorDeferSteps when a layer's weight gradient (G*H x (in + R)) has at least
// kDeferMinWeights elements, else 1. Smaller products gain nothing from longer GEMMs, and their
// rings (about 5 hidden states a step for an LSTM) would only take memory from the plans.
inline constexpr int kExecutorDeferSteps = 8;
inline constexpr std::size_t kDeferMinWeights = std::size_t{1} << 16;
int executor_defer_steps(const NetShape& s);

template <class T>
class RecurrentNet {
 public:
  // defer_steps >= 1: backward() calls whose weight gradients are added at once (1: each its own).
  explicit RecurrentNet(const NetShape& s, int defer_steps = 1);
  int defer_steps() const { return K_; }
  // Adds the open group's weight and bias gradients into its gradient buffer now (nothing when
  // defer_steps is 1 or no group is open).
  void flush();

  const NetShape& shape() const { return s_; }
  std::size_t carry_elems() const { return carry_; }
  std::size_t record_elems() const { return record_; }
  std::size_t param_count() const { return nparams_; }
  // Bytes of scratch this instance allocated in its constructor (all of its working memory).
  std::size_t scratch_bytes() const;

  // Dropout between layers (shape().dropout > 0, two layers or more): on for the passes that
  // follow, with masks of `seed`, until set off. Off by default (inference).
  void set_dropout(bool on, std::uint64_t seed);
  bool dropout_on() const { return drop_on_; }
  // The pass's inputs, [length][B x I]: with dropout on, a step's index t (the masks' counter) is
  // x_t's position in them, so every x_t given to advance / advance_record / backward must lie
  // there (the executor announces its inputs; a step outside them throws std::logic_error).
  void begin_pass(const T* x, std::int64_t length) {
    x_base_ = x;
    length_ = length;
  }

  // One forward step: x_t [B x I] row-major, carry_in -> carry_out; records nothing.
  void advance(const Params<T>& p, const T* x_t, const T* carry_in, T* carry_out);
  // The same step; writes the whole record (carry in, carry out, gates) into `record`.
  void advance_record(const Params<T>& p, const T* x_t, const T* carry_in, T* record);

  const T* record_carry_in(const T* record) const { return record; }
  const T* record_carry_out(const T* record) const { return record + carry_; }
  // The top layer's h [B x R] inside a carry (or inside a carry gradient).
  const T* top_hidden(const T* carry) const { return carry + top_off_; }
  T* top_hidden(T* carry) const { return carry + top_off_; }

  // Backward of one step. dcarry_out = dL/d(carry out) in carry layout (everything later steps and
  // the head sent back); writes dcarry_in = dL/d(carry in) (overwrites it, carry layout);
  // ACCUMULATES the parameter gradients into grads (+=; grads' head.* views are not touched).
  // x_t is the step's input (layer 0's input is not in the record). dx_t (optional, [B x I])
  // receives dL/dx_t (overwritten), for a caller whose inputs need gradients (membptt.torch).
  // Deterministic.
  void backward(const Params<T>& p, const T* x_t, const T* record, const T* dcarry_out,
                T* dcarry_in, Params<T>& grads, T* dx_t = nullptr);

 private:
  static constexpr std::size_t kNoBias = ~std::size_t{0};  // b_ih / b_hh offset without biases
  struct LayerOffsets {
    std::size_t w_ih, w_hh, b_ih, b_hh, w_hr;
    int in;
  };
  void check(const Params<T>& p, const char* what) const;
  // db_ih += column sums of dg [rows x G*H], db_hh += those of dgh (rows in order).
  void add_bias_grads(int rows, const T* dg, const T* dgh, T* db_ih, T* db_hh) const;
  // The 0-based step of x_t in the pass's inputs (dropout's counter).
  std::int64_t step_of(const T* x_t) const;
  // out = in * mask(layer, t) * scale, [B x R].
  void drop(const T* in, int layer, std::int64_t t, T* out) const;
  void step(const Params<T>& p, const T* x_t, const T* carry_in, T* carry_out, T* gates_out,
            std::size_t gates_stride);

  // Layer l's ring of K_ slots of `per` elements each: slot `slot`.
  static T* ring(std::vector<backend::AlignedBuffer<T>>& r, int l, std::size_t slot, std::size_t per) {
    return r[static_cast<std::size_t>(l)].data() + slot * per;
  }

  NetShape s_;
  int G_ = 1, K_ = 1;
  std::size_t bh_ = 0, br_ = 0, carry_ = 0, record_ = 0, extra_ = 0, top_off_ = 0, nparams_ = 0;
  std::vector<LayerOffsets> lay_;
  backend::AlignedBuffer<T> pre_;    // [B x G*H] gate pre-activations (x W_ih^T + h W_hh^T)
  backend::AlignedBuffer<T> pre_h_;  // GRU: [B x 3H] h W_hh^T
  backend::AlignedBuffer<T> act_;    // advance(): [B x 4H] gates of the current layer
  backend::AlignedBuffer<T> bias_;   // [G*H] b_ih + b_hh (LSTM, RNN); zeros without biases
  backend::AlignedBuffer<T> dg_;     // backward: [B x G*H] d(pre-activation) for W_ih / b_ih
  backend::AlignedBuffer<T> dgh_;    // GRU backward: [B x 3H] d(h W_hh^T + b_hh)
  backend::AlignedBuffer<T> dh_;     // backward: [B x R] total dL/dh' of the current layer
  backend::AlignedBuffer<T> m_;      // proj_size: [B x H] o * tanh(c') (forward, and recomputed)
  backend::AlignedBuffer<T> dm_;     // proj_size: [B x H] dL/d(o * tanh(c'))
  backend::AlignedBuffer<T> wp_;     // backend::weight_products' transposes (empty without libxsmm)
  backend::AlignedBuffer<T> alias_;  // [carry] copy of carry_in / dcarry_out for in-place calls
  backend::AlignedBuffer<T> drop_;   // dropout: [B x R] a layer's dropped input
  backend::AlignedBuffer<T> ddrop_;  // dropout: [B x R] dL/d(dropped input)
  bool drop_on_ = false;
  std::uint64_t seed_ = 0, threshold_ = 0;
  T scale_ = T(1);
  const T* x_base_ = nullptr;
  std::int64_t length_ = 0;
  // Deferred weight gradients (K_ > 1), per layer, K_ slots; slot j holds the group's j-th step.
  std::vector<backend::AlignedBuffer<T>> dgr_;   // [K][B x G*H] d(pre-activation) (GRU: of x W_ih^T + b_ih)
  std::vector<backend::AlignedBuffer<T>> dghr_;  // GRU: [K][B x 3H] d(h W_hh^T + b_hh)
  std::vector<backend::AlignedBuffer<T>> inr_;   // [K][B x in] the layer's input (dropped, with dropout)
  std::vector<backend::AlignedBuffer<T>> hpr_;   // [K][B x R] h_{t-1}
  std::vector<backend::AlignedBuffer<T>> dhr_;   // projections: [K][B x R] dL/dh'
  std::vector<backend::AlignedBuffer<T>> mr_;    // projections: [K][B x H] m = o * tanh(c')
  Params<T>* target_ = nullptr;  // the open group's gradient buffer (null: none)
  int n_ = 0;                    // steps in the open group
};

extern template class RecurrentNet<float>;
extern template class RecurrentNet<double>;

}  // namespace membptt
