// Output heads on top of a RecurrentNet: the linear layer `head` (head.weight [O x H], head.bias [O],
// nn.Linear's layout) applied to the top layer's hidden state, and the two losses membptt trains:
//   - per-step softmax cross-entropy: logits_t = h_top_t W^T + b; loss = mean over all T x B of
//     CE(logits_t[b], target_t[b]); the caller passes scale = 1/(T*B) to every step;
//   - last-step regression: y = h_top_T W^T + b; loss = mean over B x O of (y - target)^2.
// Gradient versions ACCUMULATE: dh_top += dL/dh_top (the caller adds it into the carry gradient of
// that step, i.e. RecurrentNet::top_hidden(dcarry_out)) and grads' head.* views += dL/dW, dL/db.
// They touch no rnn.* view. Scratch (logits, dlogits) is allocated in the constructor; no call
// allocates. Log-softmax is computed stably (max subtracted). Deterministic (fixed order).
// The head keeps no internal state between calls beyond scratch, so it needs no record.
#pragma once
#include <cstddef>
#include <cstdint>

#include "membptt/backend/buffer.hpp"
#include "membptt/cells/params.hpp"

namespace membptt {

template <class T>
class Head {
 public:
  explicit Head(const NetShape& s);

  const NetShape& shape() const { return s_; }
  // Bytes of scratch allocated in the constructor (logits and their gradient, B x O each; the
  // forward product's transposes).
  std::size_t scratch_bytes() const { return (out_.size() + dout_.size() + wp_.size()) * sizeof(T); }
  // The same without building a head (the planners' predictions).
  static std::size_t scratch_bytes_for(const NetShape& s);

  // logits / predictions [B x O] for h_top [B x H]; points into scratch, valid until the next call.
  const T* forward(const Params<T>& p, const T* h_top);

  // Cross-entropy of one step. targets_t: B class indices in [0, O); any other value throws
  // std::invalid_argument before anything is written. Returns scale * sum_b CE_b (the step's share
  // of the mean when scale = 1/(T*B)); dh_top += scale * dCE/dh_top; grads += scale * dCE/dhead.
  T step_xent(const Params<T>& p, const T* h_top, const std::int64_t* targets_t, T scale, T* dh_top,
              Params<T>& grads);
  // Forward only: the same returned value; adds the number of rows whose argmax equals the target
  // (first maximum wins) to *n_correct when it is not null.
  T step_xent_loss(const Params<T>& p, const T* h_top, const std::int64_t* targets_t, T scale,
                   std::int64_t* n_correct = nullptr);

  // Mean squared error of the last step against target [B x O]; returns the loss,
  // dh_top += dL/dh_top, grads += dL/dhead.
  T last_mse(const Params<T>& p, const T* h_top, const T* target, T* dh_top, Params<T>& grads);
  // Forward only.
  T last_mse_loss(const Params<T>& p, const T* h_top, const T* target);

 private:
  void check(const Params<T>& p, const char* what) const;
  void check_targets(const std::int64_t* targets_t, const char* what) const;
  void backward(const Params<T>& p, const T* h_top, T* dh_top, Params<T>& grads);

  NetShape s_;
  std::size_t w_off_ = 0, b_off_ = 0, nparams_ = 0;
  backend::AlignedBuffer<T> out_;   // [B x O] logits / predictions
  backend::AlignedBuffer<T> dout_;  // [B x O] dL/d(logits or predictions)
  backend::AlignedBuffer<T> wp_;    // backend::weight_products' transposes (empty without libxsmm)
};

extern template class Head<float>;
extern template class Head<double>;

}  // namespace membptt
