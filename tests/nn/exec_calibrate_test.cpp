// The step-cost calibration (exec/calibrate.hpp): what it times and how its figures combine. No
// assertion here depends on how fast anything runs: only on the chains' structure and the formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>

#include "membptt/exec/calibrate.hpp"
#include "membptt/plan/cost_model.hpp"

namespace membptt {
namespace {

TEST(Calibrate, ChainLengthFollowsTheSequenceAndTheRecordCap) {
  // The demo: T = 1000, 16 KiB records (16 MiB in all, under the 64 MiB cap): the whole sequence.
  EXPECT_EQ(calibration_steps(1000, 16384), 1000);
  // Unknown length: as many records as the cap holds.
  EXPECT_EQ(calibration_steps(0, 16384), static_cast<std::int64_t>(kCalibrationRecordBytes / 16384));
  // 1 MiB records: 64 of them fill the cap.
  EXPECT_EQ(calibration_steps(1000, std::size_t{1} << 20), 64);
  // Records larger than the cap: still 8 steps, and never more than the sequence.
  EXPECT_EQ(calibration_steps(1000, kCalibrationRecordBytes + 1), 8);
  EXPECT_EQ(calibration_steps(5, kCalibrationRecordBytes + 1), 5);
  EXPECT_EQ(calibration_steps(3, 64), 3);
  EXPECT_THROW(calibration_steps(-1, 64), std::invalid_argument);
}

TEST(Calibrate, TimesChainsOfTheSequenceAndTheArenaInsideThem) {
  const NetShape shape{CellType::Lstm, 3, 4, 1, 2, 2};
  const std::size_t record_bytes = record_elems(shape) * sizeof(float);
  // A plan's arena of 5 records inside a sequence of 20: the arena chains cycle through 5 slots.
  const StepTimes t = time_steps<float>(shape, LossKind::Xent, 1, 20, 5 * record_bytes + record_bytes / 2);
  EXPECT_EQ(t.steps, 20);
  EXPECT_EQ(t.arena_records, 5);
  for (double s : {t.advance, t.record, t.backward, t.record_in_arena, t.backward_in_arena}) {
    EXPECT_TRUE(std::isfinite(s));
    EXPECT_GT(s, 0.0);
  }
  // No arena, or one as large as the sequence's records: nothing timed apart, the streamed figures.
  const std::size_t record_bytes_f64 = record_elems(shape) * sizeof(double);
  for (std::size_t arena : {std::size_t{0}, 20 * record_bytes_f64, 100 * record_bytes_f64}) {
    const StepTimes u = time_steps<double>(shape, LossKind::MseLast, 2, 20, arena);
    EXPECT_EQ(u.steps, 20);
    EXPECT_EQ(u.arena_records, 20) << arena;
    EXPECT_EQ(u.record_in_arena, u.record) << arena;
    EXPECT_EQ(u.backward_in_arena, u.backward) << arena;
  }
  EXPECT_THROW(time_steps<float>(shape, LossKind::Xent, 0, 20), std::invalid_argument);
}

TEST(Calibrate, PredictionFromStepTimes) {
  StepTimes t;
  t.advance = 2e-6;
  t.record = 2.2e-6;
  t.backward = 3e-6;
  t.record_in_arena = t.record;
  t.backward_in_arena = t.backward;
  const CostModel m = cost_model_from(t, 4.0);
  EXPECT_DOUBLE_EQ(m.alpha, 4.0);
  EXPECT_DOUBLE_EQ(m.beta, 1.5);
  EXPECT_DOUBLE_EQ(m.record, 1.1);
  // An arena that costs nothing less: the planner's formula with the calibrated cost model.
  EXPECT_NEAR(predicted_time_ratio(t, 1953, 1000), predicted_time_ratio(1953, 1000, m), 1e-12);
  EXPECT_NEAR(predicted_time_ratio(t, 1953, 1000), (953 * 2.0 + 1000 * 5.2) / (1000 * 5.2), 1e-12);
  // Recording and backward steps 10% cheaper inside the arena: plain BPTT pays the streamed cost,
  // the plan the arena's.
  t.record_in_arena = 0.9 * t.record;
  t.backward_in_arena = 0.9 * t.backward;
  EXPECT_NEAR(predicted_time_ratio(t, 1953, 1000), (953 * 2.0 + 1000 * 0.9 * 5.2) / (1000 * 5.2), 1e-12);
  // Plain BPTT against itself.
  t.record_in_arena = t.record;
  t.backward_in_arena = t.backward;
  EXPECT_DOUBLE_EQ(predicted_time_ratio(t, 1000, 1000), 1.0);
}

}  // namespace
}  // namespace membptt
