// Step costs measured, not guessed: times advancing, advancing-and-recording and backward steps
// (with their share of the head) of the real network, and turns them into the planner's cost model
// (beta = backward / advance, record = advance-and-record / advance).
//
// The steps are timed as a pass runs them, not one at a time: each kind is a chain of n steps over
// n distinct inputs; the recording steps write n distinct records, as plain BPTT does, and the
// backward steps read them back in reverse, carrying the gradient. A plan's recording and backward
// steps are timed again with their records cycling through the plan's arena. At small sizes the
// difference is large: for the demo (LSTM 32 units, batch 16, T = 1000; 16 KiB records, 16 MiB in
// all, beyond a 1 MiB L2; the plan's arena 0.75 MiB) single steps timed alone on one hot record,
// with the carry gradient zeroed, put a backward step at 1.18-1.36 advances against 1.38 in
// chains, and the plan's steps inside its arena cost 0.92x plain BPTT's; `membptt demo --steps 1`
// predicted 1.457x against 1.265x measured with the old figures, 1.300x against 1.310x now
// (medians of 6 runs each, docs/training.md#the-demo).
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "membptt/cells/params.hpp"
#include "membptt/exec/executor.hpp"
#include "membptt/plan/cost_model.hpp"

namespace membptt {

struct StepTimes {
  double advance = 0;   // seconds per step
  double record = 0;    // advance_record and the copy of its output carry into the cursor
  double backward = 0;  // including the head's share for a per-step loss
  // The same two with the records cycling through a plan's arena instead of streaming through
  // all n (time_steps' arena_bytes; equal to record and backward when not timed).
  double record_in_arena = 0;
  double backward_in_arena = 0;
  std::int64_t steps = 0;          // steps in each timed chain (n)
  std::int64_t arena_records = 0;  // records the arena chains cycle through (n when not timed)
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

// Records the calibration keeps at most: more than the last-level caches hold, so a chain whose
// records would not fit in them does not fit here either.
inline constexpr std::size_t kCalibrationRecordBytes = std::size_t{64} << 20;

// Seconds after which time_steps stops adding rounds (once it has timed 3).
inline constexpr double kCalibrationSeconds = 2.0;

// Steps in each timed chain: the sequence length (0: unknown, taken as unbounded), capped so that
// the records take at most kCalibrationRecordBytes, and at least 8 (or the length, if shorter).
std::int64_t calibration_steps(std::int64_t length, std::size_t record_bytes);

// Per-step costs over chains of n = calibration_steps(length, record bytes) steps: one warm-up
// round, then `reps` rounds, each running an advance chain, a recording chain and a backward chain
// in turn. Each chain is timed in blocks of up to 16 steps and costs its median block's time per
// step, so blocks that another process preempted fall out. The advance is the median over rounds;
// recording and backward steps are the median over rounds of their ratio to the same round's
// advance, so that a load that changes between rounds does not enter them. With arena_bytes > 0
// (a plan's arena, smaller than the n records) each round also times a recording and a backward
// chain whose records cycle through arena_bytes / record bytes slots, taken relative to the same
// round's streamed ones.
template <class T>
StepTimes time_steps(const NetShape& shape, LossKind loss, int reps = 7, std::int64_t length = 0,
                     std::size_t arena_bytes = 0);

// A plan's time over plain BPTT's from measured step costs. Plain BPTT runs T recording and T
// backward steps with its records streamed (record, backward); a plan with C forward steps runs
// C - T advances more, and its recording and backward steps find their records in its arena
// (record_in_arena, backward_in_arena):
//   ratio = ((C - T) advance + T (record_in_arena + backward_in_arena)) / (T (record + backward)),
// the planner's formula (cost_model.hpp) when the arena costs nothing less.
double predicted_time_ratio(const StepTimes& t, std::int64_t forward_steps, std::int64_t length);

// The planner's cost model from step costs as plain BPTT pays them.
CostModel cost_model_from(const StepTimes& t, double alpha);

extern template StepTimes time_steps<float>(const NetShape&, LossKind, int, std::int64_t, std::size_t);
extern template StepTimes time_steps<double>(const NetShape&, LossKind, int, std::int64_t, std::size_t);

}  // namespace membptt
