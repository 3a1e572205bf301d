#include "membptt/train/optim.hpp"

#include <cmath>

#include <fmt/format.h>

#include "membptt/train/config.hpp"

namespace membptt::train {

template <class T>
Adam<T>::Adam(const NetShape& shape, double lr, double beta1, double beta2, double eps)
    : lr_(lr), beta1_(beta1), beta2_(beta2), eps_(eps), m_(shape), v_(shape) {}

template <class T>
void Adam<T>::step(Params<T>& p, const Params<T>& g) {
  ++step_;
  const double bc1 = 1.0 - std::pow(beta1_, static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(beta2_, static_cast<double>(step_));
  const T neg_step_size = static_cast<T>(-(lr_ / bc1));
  const T bc2_sqrt = static_cast<T>(std::sqrt(bc2));
  const T w1 = static_cast<T>(1.0 - beta1_);  // lerp weight, < 0.5: self + w * (end - self)
  const T b2 = static_cast<T>(beta2_);
  const T w2 = static_cast<T>(1.0 - beta2_);
  const T eps = static_cast<T>(eps_);
  T* pp = p.data();
  T* m = m_.data();
  T* v = v_.data();
  const T* gg = g.data();
  const std::size_t n = p.size();
  for (std::size_t i = 0; i < n; ++i) {
    const T gi = gg[i];
    m[i] = m[i] + w1 * (gi - m[i]);
    v[i] = v[i] * b2;
    v[i] = v[i] + w2 * gi * gi;
    const T denom = std::sqrt(v[i]) / bc2_sqrt + eps;
    pp[i] = pp[i] + neg_step_size * m[i] / denom;
  }
}

template <class T>
void Sgd<T>::step(Params<T>& p, const Params<T>& g) {
  ++step_;
  const T neg_lr = static_cast<T>(-lr_);
  T* pp = p.data();
  const T* gg = g.data();
  for (std::size_t i = 0; i < p.size(); ++i) pp[i] = pp[i] + neg_lr * gg[i];
}

template <class T>
std::unique_ptr<Optimizer<T>> make_optimizer(const std::string& name, const NetShape& shape, double lr) {
  if (name == "adam") return std::make_unique<Adam<T>>(shape, lr);
  if (name == "sgd") return std::make_unique<Sgd<T>>(lr);
  throw TrainError(fmt::format("--optimizer '{}' is not allowed: allowed are adam, sgd", name));
}

template <class T>
double global_norm(const Params<T>& g) {
  double s = 0;
  const T* d = g.data();
  for (std::size_t i = 0; i < g.size(); ++i) s += static_cast<double>(d[i]) * static_cast<double>(d[i]);
  return std::sqrt(s);
}

template <class T>
double clip_global_norm(Params<T>& g, double max_norm) {
  const double norm = global_norm(g);
  if (!std::isfinite(norm) || !(max_norm > 0)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    const T c = static_cast<T>(coef);
    for (T& x : g.all()) x *= c;
  }
  return norm;
}

template class Adam<float>;
template class Adam<double>;
template class Sgd<float>;
template class Sgd<double>;
template std::unique_ptr<Optimizer<float>> make_optimizer<float>(const std::string&, const NetShape&, double);
template std::unique_ptr<Optimizer<double>> make_optimizer<double>(const std::string&, const NetShape&, double);
template double global_norm<float>(const Params<float>&);
template double global_norm<double>(const Params<double>&);
template double clip_global_norm<float>(Params<float>&, double);
template double clip_global_norm<double>(Params<double>&, double);

}  // namespace membptt::train
