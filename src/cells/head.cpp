#include "membptt/cells/head.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels.hpp"
#include "membptt/backend/blas.hpp"

namespace membptt {

using backend::gemm;
using backend::Trans;

namespace {
// The width of h_top: both directions' h side by side when bidirectional.
int head_width(const NetShape& s) { return directions(s) * output_width(s); }
// Elements of the forward product's transposes (none for a tiny head: weight_products_scratch).
std::size_t transposes_elems(const NetShape& s) {
  return backend::weight_products_scratch(s.batch, s.output_size, head_width(s), 0);
}
}  // namespace

template <class T>
std::size_t Head<T>::scratch_bytes_for(const NetShape& s) {
  const auto n = static_cast<std::size_t>(s.batch) * static_cast<std::size_t>(s.output_size);
  return (2 * n + transposes_elems(s)) * sizeof(T);
}

template <class T>
Head<T>::Head(const NetShape& s) : s_(s) {
  const auto views = param_layout(s);
  const ParamView& w = views[views.size() - 2];
  const ParamView& b = views[views.size() - 1];
  w_off_ = w.offset;
  b_off_ = b.offset;
  nparams_ = b.offset + b.size;
  const auto n = static_cast<std::size_t>(s.batch) * static_cast<std::size_t>(s.output_size);
  out_ = backend::AlignedBuffer<T>(n);
  dout_ = backend::AlignedBuffer<T>(n);
  wp_ = backend::AlignedBuffer<T>(transposes_elems(s));
}

template <class T>
void Head<T>::check(const Params<T>& p, const char* what) const {
  if (p.size() != nparams_)
    throw std::invalid_argument(std::string("Head::") + what + ": Params has " +
                                std::to_string(p.size()) + " elements, this network needs " +
                                std::to_string(nparams_));
}

template <class T>
void Head<T>::check_targets(const std::int64_t* targets_t, const char* what) const {
  for (int b = 0; b < s_.batch; ++b) {
    const std::int64_t t = targets_t[b];
    if (t < 0 || t >= s_.output_size)
      throw std::invalid_argument(std::string("Head::") + what + ": target " + std::to_string(t) +
                                  " (batch row " + std::to_string(b) + ") is outside [0, " +
                                  std::to_string(s_.output_size) + ")");
  }
}

template <class T>
const T* Head<T>::forward(const Params<T>& p, const T* h_top) {
  check(p, "forward");
  const int B = s_.batch, H = head_width(s_), O = s_.output_size;
  const T* bias = p.data() + b_off_;
  // h W^T (through the transposes on libxsmm, or on OpenBLAS for a tiny head), then + b.
  backend::weight_products<T>(B, O, h_top, H, p.data() + w_off_, nullptr, 0, nullptr, out_.data(), wp_.data());
  for (int b = 0; b < B; ++b) {
    T* row = out_.data() + static_cast<std::size_t>(b) * O;
    for (int o = 0; o < O; ++o) row[o] += bias[o];
  }
  return out_.data();
}

template <class T>
void Head<T>::backward(const Params<T>& p, const T* h_top, T* dh_top, Params<T>& grads) {
  const int B = s_.batch, H = head_width(s_), O = s_.output_size;
  gemm<T>(Trans::No, Trans::No, B, H, O, T(1), dout_.data(), O, p.data() + w_off_, H, T(1), dh_top,
          H);
  gemm<T>(Trans::Yes, Trans::No, O, H, B, T(1), dout_.data(), O, h_top, H, T(1),
          grads.data() + w_off_, H);
  detail::colsum_add<T>(B, O, dout_.data(), grads.data() + b_off_);
}

template <class T>
T Head<T>::step_xent(const Params<T>& p, const T* h_top, const std::int64_t* targets_t, T scale,
                     T* dh_top, Params<T>& grads) {
  check(grads, "step_xent (grads)");
  check_targets(targets_t, "step_xent");
  const T* z = forward(p, h_top);
  const double sum = detail::xent_rows<T>(s_.batch, s_.output_size, z, targets_t, scale, dout_.data(), nullptr);
  backward(p, h_top, dh_top, grads);
  return static_cast<T>(static_cast<double>(scale) * sum);
}

template <class T>
T Head<T>::step_xent_loss(const Params<T>& p, const T* h_top, const std::int64_t* targets_t,
                          T scale, std::int64_t* n_correct) {
  check_targets(targets_t, "step_xent_loss");
  const T* z = forward(p, h_top);
  // (dout_ is written too: scratch, no gradient is kept between calls)
  const double sum = detail::xent_rows<T>(s_.batch, s_.output_size, z, targets_t, scale, dout_.data(), n_correct);
  return static_cast<T>(static_cast<double>(scale) * sum);
}

template <class T>
T Head<T>::last_mse(const Params<T>& p, const T* h_top, const T* target, T* dh_top,
                    Params<T>& grads) {
  check(grads, "last_mse (grads)");
  const T* y = forward(p, h_top);
  const std::size_t n = static_cast<std::size_t>(s_.batch) * static_cast<std::size_t>(s_.output_size);
  const T k = T(2) / static_cast<T>(n);
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const T d = y[i] - target[i];
    sum += static_cast<double>(d) * static_cast<double>(d);
    dout_[i] = k * d;
  }
  backward(p, h_top, dh_top, grads);
  return static_cast<T>(sum / static_cast<double>(n));
}

template <class T>
T Head<T>::last_mse_loss(const Params<T>& p, const T* h_top, const T* target) {
  const T* y = forward(p, h_top);
  const std::size_t n = static_cast<std::size_t>(s_.batch) * static_cast<std::size_t>(s_.output_size);
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(y[i]) - static_cast<double>(target[i]);
    sum += d * d;
  }
  return static_cast<T>(sum / static_cast<double>(n));
}

template class Head<float>;
template class Head<double>;

}  // namespace membptt
