// Griewank's binomial checkpointing (Revolve) in closed form: the cost of BPTT-HSM and its
// optimal split without a table, so hidden-state plans reach any length.
#pragma once
#include <cstdint>

#include "membptt/plan/cost_model.hpp"
#include "membptt/plan/split.hpp"

namespace membptt {

// binom(n, k), saturating at INT64_MAX instead of overflowing. 0 when k < 0 or k > n.
std::int64_t binomial_saturating(std::int64_t n, std::int64_t k);

// Least r with binom(m + r, m) >= t: how many times the worst step is run forward.
std::int64_t hsm_repetitions(std::int64_t t, std::int64_t m);

// C(t, m) of BPTT-HSM: forward steps (the first pass included) to backpropagate t steps with m
// hidden-state slots, the slot holding the segment's start included. Requires m >= 1.
// Equals t + r*t - binom(m + r, m + 1). Saturates at INT64_MAX.
std::int64_t hsm_cost(std::int64_t t, std::int64_t m);

// An optimal first checkpoint y (1 <= y < t) for C(t, m), m >= 2, t >= 2:
// C(t, m) = y + C(t - y, m - 1) + C(y, m).
std::int64_t hsm_split(std::int64_t t, std::int64_t m);

// BPTT-HSM's splits by the closed form, for any length: the `revolve` policy, HSM past its table,
// and the online policy's backward phase. m = f / hidden + 1 slots; one slot is the quadratic case.
class RevolveOracle final : public SplitOracle {
 public:
  explicit RevolveOracle(MemoryGrid g) : grid_(g) {}
  Split split(std::int64_t t, std::int64_t f, bool) const override {
    if (t <= 1) return {SplitKind::Leaf, t};
    const std::int64_t m = f / grid_.hidden + 1;  // hidden slots, the start's included
    if (m <= 1) return {SplitKind::Quadratic, 0};
    return {SplitKind::Hidden, hsm_split(t, m)};
  }

 private:
  MemoryGrid grid_;
};

}  // namespace membptt
