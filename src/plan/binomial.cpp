#include "membptt/plan/binomial.hpp"

#include <algorithm>
#include <limits>

namespace membptt {
namespace {
constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();

// a * b / c with saturation, for the exact multiplicative binomial recurrence.
std::int64_t mul_div_saturating(std::int64_t a, std::int64_t b, std::int64_t c) {
  __int128 v = static_cast<__int128>(a) * b / c;
  return v > kMax ? kMax : static_cast<std::int64_t>(v);
}

// beta(c, r) = binom(c + r, c): the longest segment that c slots reverse with r repetitions.
std::int64_t beta(std::int64_t c, std::int64_t r) {
  if (r < 0) return 0;
  return binomial_saturating(c + r, c);
}
}  // namespace

std::int64_t binomial_saturating(std::int64_t n, std::int64_t k) {
  if (k < 0 || n < 0 || k > n) return 0;
  k = std::min(k, n - k);
  std::int64_t v = 1;
  for (std::int64_t i = 1; i <= k; ++i) {
    // v * (n - k + i) / i is exact: v = binom(n - k + i - 1, i - 1) before the step.
    v = mul_div_saturating(v, n - k + i, i);
    if (v == kMax) return kMax;
  }
  return v;
}

std::int64_t hsm_repetitions(std::int64_t t, std::int64_t m) {
  // binom(m + r, m) grows by (m + r) / r per step of r; walk it upwards.
  std::int64_t r = 0, b = 1;
  while (b < t) {
    ++r;
    b = mul_div_saturating(b, m + r, r);
  }
  return r;
}

std::int64_t hsm_cost(std::int64_t t, std::int64_t m) {
  if (t <= 0) return 0;
  const std::int64_t r = hsm_repetitions(t, m);
  const __int128 c = static_cast<__int128>(t) * (r + 1) - binomial_saturating(m + r, m + 1);
  return c > kMax ? kMax : static_cast<std::int64_t>(c);
}

std::int64_t hsm_split(std::int64_t t, std::int64_t m) {
  // The cost is the upper envelope of lines (r+1)t - binom(m+r, m+1), one per repetition number.
  // A split is optimal exactly when the left part (y steps, m slots, already run once) sits on
  // line r-1 and the right part (t-y steps, m-1 slots) on line r: that gives the interval below.
  const std::int64_t r = hsm_repetitions(t, m);
  const std::int64_t lo = std::max(beta(m, r - 2), t - beta(m - 1, r));
  return std::clamp<std::int64_t>(lo, 1, t - 1);
}

}  // namespace membptt
