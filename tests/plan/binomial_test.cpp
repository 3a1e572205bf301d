#include "membptt/plan/binomial.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "membptt/plan/dp.hpp"

namespace membptt {
namespace {

// C(t, m) by the recursion of DEVELOPERS.md, written out independently of the library.
std::vector<std::vector<std::int64_t>> hsm_recursion(int T, int M) {
  std::vector<std::vector<std::int64_t>> c(T + 1, std::vector<std::int64_t>(M + 1, 0));
  for (int t = 1; t <= T; ++t)
    for (int m = 1; m <= M; ++m) {
      if (t == 1) { c[t][m] = 1; continue; }
      if (m == 1) { c[t][m] = std::int64_t{t} * (t + 1) / 2; continue; }
      std::int64_t best = INT64_MAX;
      for (int y = 1; y < t; ++y) best = std::min(best, y + c[t - y][m - 1] + c[y][m]);
      c[t][m] = best;
    }
  return c;
}

TEST(Binomial, SaturatesInsteadOfOverflowing) {
  EXPECT_EQ(binomial_saturating(10, 3), 120);
  EXPECT_EQ(binomial_saturating(5, 7), 0);
  EXPECT_EQ(binomial_saturating(60, 30), 118264581564861424);
  EXPECT_EQ(binomial_saturating(200, 100), INT64_MAX);
}

TEST(Binomial, ClosedFormEqualsRecursion) {
  const auto c = hsm_recursion(300, 12);
  for (int t = 0; t <= 300; ++t)
    for (int m = 1; m <= 12; ++m) ASSERT_EQ(hsm_cost(t, m), c[t][m]) << "t=" << t << " m=" << m;
}

TEST(Binomial, KnownValues) {
  EXPECT_EQ(hsm_cost(1000, 10), 4636);
  EXPECT_EQ(hsm_cost(100000, 20), 634220);
  EXPECT_EQ(hsm_cost(7, 1), 28);          // t(t+1)/2
  EXPECT_EQ(hsm_cost(50, 50), 99);        // m >= t: 2t - 1
  EXPECT_EQ(hsm_cost(50, 200), 99);
}

TEST(Binomial, SplitIsOptimalEverywhere) {
  for (std::int64_t t = 2; t <= 400; ++t)
    for (std::int64_t m = 2; m <= 16; ++m) {
      const std::int64_t y = hsm_split(t, m);
      ASSERT_GE(y, 1);
      ASSERT_LT(y, t);
      ASSERT_EQ(y + hsm_cost(t - y, m - 1) + hsm_cost(y, m), hsm_cost(t, m)) << "t=" << t << " m=" << m;
    }
  // Large lengths: the split still satisfies the recursion with the closed form.
  for (std::int64_t t : {1000000LL, 999983LL, 123456789LL})
    for (std::int64_t m : {2LL, 3LL, 10LL, 20LL, 100LL, 5000LL}) {
      const std::int64_t y = hsm_split(t, m);
      EXPECT_EQ(y + hsm_cost(t - y, m - 1) + hsm_cost(y, m), hsm_cost(t, m)) << "t=" << t << " m=" << m;
    }
}

TEST(Binomial, TableHsmEqualsClosedForm) {
  // The HSM table with f free ticks has m = f + 1 slots.
  DpTable table(DpFamily::Hsm, 500, 30, MemoryGrid{1, 1});
  for (std::int64_t t = 0; t <= 500; ++t)
    for (std::int64_t f = 0; f <= 30; ++f) ASSERT_EQ(table.cost(t, f), hsm_cost(t, f + 1)) << t << " " << f;
}

}  // namespace
}  // namespace membptt
