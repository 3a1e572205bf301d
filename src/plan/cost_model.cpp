#include "membptt/plan/cost_model.hpp"

#include <cmath>
#include <stdexcept>

namespace membptt {

MemoryGrid MemoryGrid::for_alpha(double alpha) {
  if (!(alpha >= 1.0) || !std::isfinite(alpha)) throw std::invalid_argument("alpha must be a finite number >= 1");
  // The finest grid up to 1/8 of a hidden state on which alpha is exact; else 1/8 with alpha
  // rounded up (conservative: the plan then assumes slightly larger internal states).
  for (std::int64_t q : {1, 2, 4, 8}) {
    const double a = alpha * static_cast<double>(q);
    if (std::abs(a - std::round(a)) < 1e-9) return {q, static_cast<std::int64_t>(std::llround(a))};
  }
  return {8, static_cast<std::int64_t>(std::ceil(alpha * 8.0 - 1e-9))};
}

std::int64_t MemoryGrid::ticks_of(double units) const {
  if (!(units > 0)) return 0;
  // Saturate rather than overflow (the planner caps budgets first; this guards other callers).
  const double ticks = std::floor(units * static_cast<double>(hidden) + 1e-9);
  if (!(ticks < 4.0e18)) return std::int64_t{4'000'000'000'000'000'000};
  return static_cast<std::int64_t>(ticks);
}

}  // namespace membptt
