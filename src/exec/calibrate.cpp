#include "membptt/exec/calibrate.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "membptt/exec/budget.hpp"

namespace membptt {

std::int64_t calibration_steps(std::int64_t length, std::size_t record_bytes) {
  if (length < 0) throw std::invalid_argument("calibration_steps: length " + std::to_string(length) + " is negative");
  const auto fit = static_cast<std::int64_t>(kCalibrationRecordBytes / std::max<std::size_t>(record_bytes, 1));
  const std::int64_t n = std::max<std::int64_t>(fit, 8);
  return length > 0 ? std::min(length, n) : n;
}

template <class T>
StepTimes time_steps(const NetShape& shape, LossKind loss, int reps, std::int64_t length, std::size_t arena_bytes) {
  if (reps < 1) throw std::invalid_argument("time_steps: reps " + std::to_string(reps) + " is less than 1");
  // The executor's net, with the weight-gradient groups its plans for this length take (budget.hpp).
  const int group = length > 0 ? state_sizes(shape, sizeof(T)).group_steps(length) : executor_defer_steps(shape);
  RecurrentNet<T> net(shape, group);
  Head<T> head(shape);
  Params<T> p(shape), g(shape);
  init_pytorch_default(p, 1);
  const std::size_t carry = net.carry_elems(), rec = net.record_elems();
  const std::int64_t n = calibration_steps(length, rec * sizeof(T));
  const auto un = static_cast<std::size_t>(n);
  const std::size_t x_step = static_cast<std::size_t>(shape.batch) * static_cast<std::size_t>(shape.input_size);
  std::vector<T> x(un * x_step);
  fill_uniform(std::span<T>(x), T(1), 2);
  std::vector<T> cursor(carry), dcarry(carry), records(un * rec);
  std::vector<std::int64_t> targets(static_cast<std::size_t>(shape.batch), 0);
  std::vector<T> y(static_cast<std::size_t>(shape.batch) * static_cast<std::size_t>(shape.output_size), T(0));
  auto x_at = [&](std::int64_t k) { return x.data() + static_cast<std::size_t>(k) * x_step; };
  // The chains stream their records through all n (as plain BPTT does), or cycle them through the
  // first `ring` (as in a plan's arena of arena_bytes).
  const auto ring = std::clamp<std::int64_t>(static_cast<std::int64_t>(arena_bytes / (rec * sizeof(T))), 1, n);
  const bool arena_timed = arena_bytes > 0 && ring < n;
  std::int64_t slots = n;
  auto rec_at = [&](std::int64_t k) { return records.data() + static_cast<std::size_t>(k % slots) * rec; };

  // Each chain is timed in blocks of a few steps; its cost per step is the median block's. A block
  // that another process preempted (on a shared machine, many) falls out of the median instead of
  // inflating one kind of step.
  // A block holds whole weight-gradient groups (defer_steps() backward steps each, flushed
  // at the group's last step), so that every block's backward time counts its share of them.
  const std::int64_t group_steps = net.defer_steps();
  const std::int64_t block =
      std::min<std::int64_t>(n, (std::clamp<std::int64_t>(n / 32, 1, 16) + group_steps - 1) / group_steps * group_steps);
  auto timed = [&](std::vector<double>& out, std::int64_t k, std::int64_t k_end, auto&& step) {
    auto t0 = std::chrono::steady_clock::now();
    std::int64_t in_block = 0;
    for (; k != k_end; k += k_end > k ? 1 : -1) {
      step(k);
      if (++in_block == block) {
        const auto t1 = std::chrono::steady_clock::now();
        out.push_back(std::chrono::duration<double>(t1 - t0).count() / static_cast<double>(block));
        t0 = t1;
        in_block = 0;
      }
    }
  };
  // What the executor runs (basic_executor.hpp): Advance ops chain advances in place on the
  // cursor; AdvanceRecord writes the step's record and copies its output carry to the cursor;
  // Backward runs the head on the record's output, then the cell's backward step.
  auto advance_step = [&](std::int64_t k) { net.advance(p, x_at(k), cursor.data(), cursor.data()); };
  auto record_step = [&](std::int64_t k) {
    T* rk = rec_at(k);
    net.advance_record(p, x_at(k), cursor.data(), rk);
    std::copy_n(net.record_carry_out(rk), carry, cursor.data());
  };
  const T xent_scale = T(1) / static_cast<T>(n * shape.batch);
  auto backward_step = [&](std::int64_t k) {
    const T* rk = rec_at(k);
    T* dh_top = net.top_hidden(dcarry.data());
    if (loss == LossKind::Xent)
      head.step_xent(p, net.top_hidden(net.record_carry_out(rk)), targets.data(), xent_scale, dh_top, g);
    else if (k == n - 1)
      head.last_mse(p, net.top_hidden(net.record_carry_out(rk)), y.data(), dh_top, g);
    net.backward(p, x_at(k), rk, dcarry.data(), dcarry.data(), g);
  };
  auto median = [](std::vector<double> v) {
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  // Round 0 warms caches, the records' pages, BLAS threads. At large sizes, where a round takes
  // seconds, stop after 3 timed rounds once kCalibrationSeconds have passed. The recording and
  // backward steps are taken relative to the advances of the same round (and the arena's to the
  // streamed ones), so that a load that changes between rounds does not enter the ratios.
  const auto start = std::chrono::steady_clock::now();
  std::vector<double> a, record_ratio, backward_ratio, arena_record_ratio, arena_backward_ratio;
  for (int i = 0; i <= reps; ++i) {
    if (i > 3 && std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > kCalibrationSeconds)
      break;
    std::vector<double> wa, wr, wb, ra, ba;
    std::fill(cursor.begin(), cursor.end(), T(0));
    timed(wa, 0, n, advance_step);
    std::fill(cursor.begin(), cursor.end(), T(0));
    timed(wr, 0, n, record_step);
    std::fill(dcarry.begin(), dcarry.end(), T(0));
    timed(wb, n - 1, -1, backward_step);  // reads back the records the chain before wrote
    net.flush();
    if (i == 0) continue;
    const double ma = median(wa), mr = median(wr), mb = median(wb);
    a.push_back(ma);
    record_ratio.push_back(mr / ma);
    backward_ratio.push_back(mb / ma);
    if (!arena_timed) continue;
    slots = ring;
    std::fill(cursor.begin(), cursor.end(), T(0));
    timed(ra, 0, n, record_step);
    std::fill(dcarry.begin(), dcarry.end(), T(0));
    timed(ba, n - 1, -1, backward_step);
    net.flush();
    slots = n;
    arena_record_ratio.push_back(median(ra) / mr);
    arena_backward_ratio.push_back(median(ba) / mb);
  }
  StepTimes t;
  t.steps = n;
  t.advance = median(a);
  t.record = t.advance * median(record_ratio);
  t.backward = t.advance * median(backward_ratio);
  t.record_in_arena = arena_timed ? t.record * median(arena_record_ratio) : t.record;
  t.backward_in_arena = arena_timed ? t.backward * median(arena_backward_ratio) : t.backward;
  t.arena_records = arena_timed ? ring : n;
  return t;
}

double predicted_time_ratio(const StepTimes& t, std::int64_t forward_steps, std::int64_t length) {
  if (length <= 0) return 1.0;
  const double T = static_cast<double>(length), extra = static_cast<double>(forward_steps - length);
  return (extra * t.advance + T * (t.record_in_arena + t.backward_in_arena)) / (T * (t.record + t.backward));
}

CostModel cost_model_from(const StepTimes& t, double alpha) {
  CostModel m;
  m.alpha = alpha;
  m.beta = t.backward / t.advance;
  m.record = t.record / t.advance;
  return m;
}

template StepTimes time_steps<float>(const NetShape&, LossKind, int, std::int64_t, std::size_t);
template StepTimes time_steps<double>(const NetShape&, LossKind, int, std::int64_t, std::size_t);

}  // namespace membptt
