// The CPU backend's products (backend/blas.cpp): libxsmm's kernels or OpenBLAS on tiles fixed by
// the shape, spread over TilePool's threads. What must hold: every product equals a plain
// reference within rounding, and its bits do not depend on the thread count (so a pass's
// gradients do not either).
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cmath>
#include <random>
#include <vector>

#include "membptt/backend/blas.hpp"
#include "membptt/backend/tile_pool.hpp"

namespace membptt {
namespace {

using backend::Trans;

template <class T>
std::vector<T> random_vec(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(u(rng));
  return v;
}

// C = beta C + op(A) op(B) by the definition, in double.
template <class T>
std::vector<double> reference(Trans ta, Trans tb, int m, int n, int k, const std::vector<T>& a, int lda,
                              const std::vector<T>& b, int ldb, T beta, const std::vector<T>& c, int ldc) {
  std::vector<double> out(c.begin(), c.end());
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p) {
        const double x = ta == Trans::Yes ? a[static_cast<std::size_t>(p) * lda + i] : a[static_cast<std::size_t>(i) * lda + p];
        const double y = tb == Trans::Yes ? b[static_cast<std::size_t>(j) * ldb + p] : b[static_cast<std::size_t>(p) * ldb + j];
        s += x * y;
      }
      out[static_cast<std::size_t>(i) * ldc + j] = beta * out[static_cast<std::size_t>(i) * ldc + j] + s;
    }
  return out;
}

class ThreadsGuard {
 public:
  ThreadsGuard() : before_(backend::gemm_threads()) {}
  ~ThreadsGuard() { backend::set_gemm_threads(before_); }

 private:
  int before_;
};

struct Shape {
  Trans ta, tb;
  int m, n, k;
  double beta;
};

template <class T>
void check_shapes(double tol) {
  ThreadsGuard guard;
  // Per-step products of a cell (B = 32 rows; tails of the 64-wide tiles; k in chunks), grouped weight
  // gradients (op(A) = A^T, K * B rows), and products with op(B) = B^T (OpenBLAS's tiles).
  const Shape shapes[] = {{Trans::No, Trans::No, 32, 256, 1024, 0}, {Trans::No, Trans::No, 32, 100, 300, 1},
                          {Trans::Yes, Trans::No, 1024, 64, 96, 1}, {Trans::Yes, Trans::No, 70, 130, 5, 0},
                          {Trans::No, Trans::Yes, 32, 1024, 256, 1}, {Trans::No, Trans::Yes, 300, 600, 17, 0},
                          {Trans::Yes, Trans::Yes, 33, 65, 40, 1}, {Trans::No, Trans::No, 1, 1, 1, 1},
                          // k in several chunks with a shorter last one (dL/dh of a wide layer; a long group)
                          {Trans::No, Trans::No, 32, 130, 1100, 1}, {Trans::Yes, Trans::No, 96, 200, 600, 0}};
  unsigned seed = 1;
  for (const Shape& s : shapes) {
    const int lda = (s.ta == Trans::Yes ? s.m : s.k) + 3, ldb = (s.tb == Trans::Yes ? s.k : s.n) + 1, ldc = s.n + 2;
    const auto a = random_vec<T>(static_cast<std::size_t>(lda) * (s.ta == Trans::Yes ? s.k : s.m), seed++);
    const auto b = random_vec<T>(static_cast<std::size_t>(ldb) * (s.tb == Trans::Yes ? s.n : s.k), seed++);
    const auto c0 = random_vec<T>(static_cast<std::size_t>(ldc) * s.m, seed++);
    const auto ref = reference<T>(s.ta, s.tb, s.m, s.n, s.k, a, lda, b, ldb, T(s.beta), c0, ldc);
    std::vector<T> first;
    for (int threads : {1, 2, 3, 7}) {
      backend::set_gemm_threads(threads);
      std::vector<T> c = c0;
      backend::gemm<T>(s.ta, s.tb, s.m, s.n, s.k, T(1), a.data(), lda, b.data(), ldb, T(s.beta), c.data(), ldc);
      double worst = 0;
      for (int i = 0; i < s.m; ++i)
        for (int j = 0; j < ldc; ++j) {
          const std::size_t at = static_cast<std::size_t>(i) * ldc + j;
          if (j >= s.n) {
            ASSERT_EQ(c[at], c0[at]) << "a product wrote past its columns";
          } else {
            worst = std::max(worst, std::abs(c[at] - ref[at]) / (1.0 + std::abs(ref[at])));
          }
        }
      EXPECT_LT(worst, tol * s.k) << "m " << s.m << " n " << s.n << " k " << s.k << ", " << threads << " threads";
      if (first.empty()) {
        first = c;
      } else {
        EXPECT_EQ(c, first) << "the bits changed with " << threads << " threads (m " << s.m << " n " << s.n << ")";
      }
    }
  }
}

TEST(BackendGemm, EqualsTheDefinitionAndItsBitsDoNotDependOnTheThreads) {
  check_shapes<float>(1e-6);
  check_shapes<double>(1e-14);
}

TEST(BackendGemm, WeightProductsAreInputTimesWeightsTransposedPlusHiddenTimesWeightsTransposed) {
  ThreadsGuard guard;
  // A large layer (through the transposes where libxsmm is built) and a small one (OpenBLAS).
  for (const auto [m, n, k1, k2] : {std::array{32, 1024, 64, 256}, std::array{4, 12, 3, 5}, std::array{32, 300, 300, 0}}) {
    const auto a1 = random_vec<double>(static_cast<std::size_t>(m) * k1, 11);
    const auto w1 = random_vec<double>(static_cast<std::size_t>(n) * k1, 12);
    const auto a2 = random_vec<double>(static_cast<std::size_t>(m) * std::max(k2, 1), 13);
    const auto w2 = random_vec<double>(static_cast<std::size_t>(n) * std::max(k2, 1), 14);
    const std::vector<double> zero(static_cast<std::size_t>(m) * n, 0.0);
    auto ref = reference<double>(Trans::No, Trans::Yes, m, n, k1, a1, k1, w1, k1, 0.0, zero, n);
    if (k2 > 0) {
      const std::vector<double> part(ref.begin(), ref.end());
      ref = reference<double>(Trans::No, Trans::Yes, m, n, k2, a2, k2, w2, k2, 1.0, part, n);
    }
    std::vector<double> scratch(backend::weight_products_scratch(m, n, k1, k2));
    std::vector<double> first;
    for (int threads : {1, 2, 5}) {
      backend::set_gemm_threads(threads);
      std::vector<double> out(static_cast<std::size_t>(m) * n, -7.0);
      backend::weight_products<double>(m, n, a1.data(), k1, w1.data(), k2 > 0 ? a2.data() : nullptr, k2, w2.data(),
                                       out.data(), scratch.data());
      for (std::size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 1e-12) << "at " << i;
      if (first.empty()) first = out;
      else EXPECT_EQ(out, first) << threads << " threads";
    }
  }
}

// Every tile runs exactly once, whatever the thread count (the pool grown for 8 threads, then
// used with fewer), and a call made from inside a tile runs inline instead of waiting on itself.
TEST(TilePool, EveryTileRunsOnceAndNestedCallsRunInline) {
  auto& pool = backend::TilePool::instance();
  for (const int threads : {8, 2, 1, 3, 8, 2}) {
    for (const int tiles : {1, 2, 5, 64, 1000}) {
      std::vector<std::atomic<int>> count(static_cast<std::size_t>(tiles));
      struct Ctx {
        std::vector<std::atomic<int>>* count;
      } ctx{&count};
      pool.run(tiles, threads, [](const void* p, int a, int b) {
        auto& c = *static_cast<const Ctx*>(p)->count;
        for (int i = a; i < b; ++i) c[static_cast<std::size_t>(i)].fetch_add(1);
      }, &ctx);
      for (int i = 0; i < tiles; ++i)
        ASSERT_EQ(count[static_cast<std::size_t>(i)].load(), 1) << "tile " << i << " of " << tiles << ", " << threads << " threads";
    }
  }
  std::atomic<int> inner{0};
  pool.run(4, 2, [](const void* p, int a, int b) {
    for (int i = a; i < b; ++i)
      backend::TilePool::instance().run(3, 2, [](const void* q, int x, int y) {
        static_cast<std::atomic<int>*>(const_cast<void*>(q))->fetch_add(y - x);
      }, p);
  }, &inner);
  EXPECT_EQ(inner.load(), 12);
}

TEST(BackendGemm, ThreadCountIsKeptAndAtLeastOne) {
  ThreadsGuard guard;
  backend::set_gemm_threads(3);
  EXPECT_EQ(backend::gemm_threads(), 3);
  backend::set_gemm_threads(0);
  EXPECT_EQ(backend::gemm_threads(), 1);
}

}  // namespace
}  // namespace membptt
