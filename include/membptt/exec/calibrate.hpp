// Step costs measured, not guessed: times one advance, one advance-and-record and one backward
// step (with its share of the head) of the real network, and turns them into the planner's
// cost model (beta = backward / advance, record = advance-and-record / advance).
#pragma once
#include <algorithm>
#include <chrono>
#include <vector>

#include "membptt/cells/params.hpp"
#include "membptt/exec/executor.hpp"
#include "membptt/plan/cost_model.hpp"

namespace membptt {

struct StepTimes {
  double advance = 0;   // seconds, median
  double record = 0;
  double backward = 0;  // including the head's share for a per-step loss
};

// Median seconds of f() over `reps` runs after one warm-up run; `sync` waits until the device has
// finished (a no-op on the CPU, the stream's synchronisation on a GPU).
template <class F, class Sync>
double median_seconds(int reps, F&& f, Sync&& sync) {
  std::vector<double> s;
  sync();
  f();  // warm caches, threads, kernels
  sync();
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    sync();
    s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(s.size() / 2), s.end());
  return s[s.size() / 2];
}

template <class T>
StepTimes time_steps(const NetShape& shape, LossKind loss, int reps = 15);

CostModel cost_model_from(const StepTimes& t, double alpha);

extern template StepTimes time_steps<float>(const NetShape&, LossKind, int);
extern template StepTimes time_steps<double>(const NetShape&, LossKind, int);

}  // namespace membptt
