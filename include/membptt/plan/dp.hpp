// The dynamic programs of Gruslys et al. (2016): the least forward steps to backpropagate a
// segment of t steps with f free ticks of memory, its start already held.
//
//   F(0, f) = 0,  F(1, f) = 1,  F(t, f) = min of
//     quadratic                 t(t+1)/2
//     hidden split   (f >= h)   min_{1<=y<t}  y + R(t-y, f-h) + F(y,   f)
//     internal split (f >= a)   min_{1<=y<t}  y + F(t-y, f-a) + F(y-1, f)
// with h, a the ticks of a hidden and of an internal state. HSM allows hidden splits, ISM
// internal splits, MSM both. The internal state stored at y holds h_y, so it also serves as the
// start of the right part: no second copy.
//
// R is F for a segment whose start is a hidden state it owns (the right part of a hidden split):
// once it has copied the start into the cursor for the last time it may pop it. That happens
// when it records its first step (internal split at y = 1): the record takes the start's place.
//   R(t, f) = min of F's options with R in place of F for the left parts, and
//     internal split at 1 (f + h >= a)   1 + F(t-1, f + h - a)
// The exhaustive search of tests/plan/brute_force_test.cpp, which may free anything at any time,
// found this saving; for HSM and ISM R = F. See docs/planner.md.
#pragma once
#include <cstdint>
#include <vector>

#include "membptt/plan/cost_model.hpp"
#include "membptt/plan/split.hpp"

namespace membptt {

enum class DpFamily { Hsm, Ism, Msm };

class DpTable final : public SplitOracle {
 public:
  // Solves F(t, f) for every t <= max_length and f <= max_free_ticks.
  // `naive` scans every split point; otherwise a provably exact pruned scan is used.
  DpTable(DpFamily family, std::int64_t max_length, std::int64_t max_free_ticks, MemoryGrid grid,
          bool naive = false);

  std::int64_t cost(std::int64_t t, std::int64_t f, bool releasable = false) const {
    return (releasable && has_r_ ? cost_r_ : cost_)[index(t, f)];
  }
  Split split(std::int64_t t, std::int64_t f, bool releasable = false) const override;

  std::int64_t max_length() const { return max_length_; }
  std::int64_t max_free_ticks() const { return max_free_; }
  const MemoryGrid& grid() const { return grid_; }

 private:
  std::size_t index(std::int64_t t, std::int64_t f) const {
    return static_cast<std::size_t>(f) * static_cast<std::size_t>(max_length_ + 1) + static_cast<std::size_t>(t);
  }
  void solve_row(std::int64_t f, bool naive);

  DpFamily family_;
  std::int64_t max_length_, max_free_;
  MemoryGrid grid_;
  bool has_r_;                         // MSM only: R differs from F
  std::vector<std::int64_t> cost_, cost_r_;    // F and R, [f][t]
  std::vector<std::int64_t> convex_, convex_r_;  // per row f: the row is convex in t on [0, this]
  std::vector<double> hull_values_, hull_values_r_;  // [f][t]: row f's lower convex hull at t
  std::vector<std::int32_t> split_, split_r_;  // [f][t]: y > 0 hidden split, y < 0 internal at -y,
                                               // 0 quadratic; R only: INT32_MIN internal-releasing
};

}  // namespace membptt
