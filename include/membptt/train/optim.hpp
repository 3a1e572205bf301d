// Optimizers over the flat Params buffer, and gradient clipping by global norm.
//
// Adam follows torch.optim.Adam with its defaults (betas 0.9, 0.999, eps 1e-8, no weight decay,
// no amsgrad) and the order of operations of its single-tensor CPU path, elementwise in T:
//   step += 1;  bc1 = 1 - 0.9^step;  bc2 = 1 - 0.999^step       (in double, like Python floats)
//   m = m + 0.1 * (g - m)                                        (exp_avg.lerp_(g, 1 - beta1))
//   v = v * 0.999 + (0.001 * g) * g                              (mul_(beta2).addcmul_(g, g, 1 - beta2))
//   denom = sqrt(v) / sqrt(bc2) + eps
//   p = p + (-(lr / bc1) * m) / denom                            (addcdiv_(m, denom, -step_size))
// SGD is torch.optim.SGD without momentum: p = p + (-lr) * g.
// Clipping follows torch.nn.utils.clip_grad_norm_: norm = ||g||_2 over all parameters (summed in
// double here), and when max_norm / (norm + 1e-6) < 1 every gradient is multiplied by that factor.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "membptt/cells/params.hpp"

namespace membptt::train {

template <class T>
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual std::string name() const = 0;
  virtual void step(Params<T>& p, const Params<T>& g) = 0;
  virtual std::int64_t steps() const = 0;
  // Adam's moments (nullptr for SGD); restore writes them and the step count.
  virtual Params<T>* exp_avg() { return nullptr; }
  virtual Params<T>* exp_avg_sq() { return nullptr; }
  virtual void set_steps(std::int64_t n) = 0;
};

template <class T>
class Adam final : public Optimizer<T> {
 public:
  Adam(const NetShape& shape, double lr, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8);
  std::string name() const override { return "adam"; }
  void step(Params<T>& p, const Params<T>& g) override;
  std::int64_t steps() const override { return step_; }
  void set_steps(std::int64_t n) override { step_ = n; }
  Params<T>* exp_avg() override { return &m_; }
  Params<T>* exp_avg_sq() override { return &v_; }

 private:
  double lr_, beta1_, beta2_, eps_;
  std::int64_t step_ = 0;
  Params<T> m_, v_;
};

template <class T>
class Sgd final : public Optimizer<T> {
 public:
  explicit Sgd(double lr) : lr_(lr) {}
  std::string name() const override { return "sgd"; }
  void step(Params<T>& p, const Params<T>& g) override;
  std::int64_t steps() const override { return step_; }
  void set_steps(std::int64_t n) override { step_ = n; }

 private:
  double lr_;
  std::int64_t step_ = 0;
};

// "adam" or "sgd"; throws TrainError otherwise.
template <class T>
std::unique_ptr<Optimizer<T>> make_optimizer(const std::string& name, const NetShape& shape, double lr);

// ||g||_2 over every element, accumulated in double in index order.
template <class T>
double global_norm(const Params<T>& g);

// Scales g as clip_grad_norm_ does when max_norm > 0; returns the norm before clipping (nan or inf
// when a gradient is not finite; then g is left alone).
template <class T>
double clip_global_norm(Params<T>& g, double max_norm);

}  // namespace membptt::train
