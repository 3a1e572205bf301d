// Step costs measured, not guessed: times one advance, one advance-and-record and one backward
// step (with its share of the head) of the real network, and turns them into the planner's
// cost model (beta = backward / advance, record = advance-and-record / advance).
#pragma once
#include "membptt/cells/params.hpp"
#include "membptt/exec/executor.hpp"
#include "membptt/plan/cost_model.hpp"

namespace membptt {

struct StepTimes {
  double advance = 0;   // seconds, median
  double record = 0;
  double backward = 0;  // including the head's share for a per-step loss
};

template <class T>
StepTimes time_steps(const NetShape& shape, LossKind loss, int reps = 15);

CostModel cost_model_from(const StepTimes& t, double alpha);

extern template StepTimes time_steps<float>(const NetShape&, LossKind, int);
extern template StepTimes time_steps<double>(const NetShape&, LossKind, int);

}  // namespace membptt
