#include "membptt/exec/calibrate.hpp"

#include <vector>

namespace membptt {

template <class T>
StepTimes time_steps(const NetShape& shape, LossKind loss, int reps) {
  RecurrentNet<T> net(shape);
  Head<T> head(shape);
  Params<T> p(shape), g(shape);
  init_pytorch_default(p, 1);
  std::vector<T> x(static_cast<std::size_t>(shape.batch) * static_cast<std::size_t>(shape.input_size));
  fill_uniform(std::span<T>(x), T(1), 2);
  std::vector<T> carry(net.carry_elems()), dcarry(net.carry_elems()), record(net.record_elems());
  std::vector<std::int64_t> targets(static_cast<std::size_t>(shape.batch), 0);
  std::vector<T> y(static_cast<std::size_t>(shape.batch) * static_cast<std::size_t>(shape.output_size));

  StepTimes t;
  t.advance = median_seconds(reps, [&] { net.advance(p, x.data(), carry.data(), carry.data()); }, [] {});
  t.record = median_seconds(reps, [&] { net.advance_record(p, x.data(), carry.data(), record.data()); }, [] {});
  t.backward = median_seconds(reps, [&] {
    T* dh_top = net.top_hidden(dcarry.data());
    if (loss == LossKind::Xent) head.step_xent(p, net.top_hidden(net.record_carry_out(record.data())), targets.data(), T(1e-3), dh_top, g);
    net.backward(p, x.data(), record.data(), dcarry.data(), dcarry.data(), g);
    std::fill(dcarry.begin(), dcarry.end(), T(0));
  }, [] {});
  return t;
}

CostModel cost_model_from(const StepTimes& t, double alpha) {
  CostModel m;
  m.alpha = alpha;
  m.beta = t.backward / t.advance;
  m.record = t.record / t.advance;
  return m;
}

template StepTimes time_steps<float>(const NetShape&, LossKind, int);
template StepTimes time_steps<double>(const NetShape&, LossKind, int);

}  // namespace membptt
