// A small fork-join pool for the CPU backend's tiled products (backend/blas.cpp): the caller and
// up to n-1 persistent workers run a call's tiles, then the caller waits for the workers it woke.
// Why not OpenBLAS's threads: the per-step products of a recurrent cell
// are small (B = 32 rows), and each runs as JIT-compiled single-threaded kernels (libxsmm) on
// tiles whose split never depends on the thread count, so the bits do not either.
// Tiles are taken from a shared counter, so a worker the scheduler has not run yet holds none:
// the threads that run take them all. Only the workers a call uses are woken (a flag each), so a
// pool grown for 8 threads costs nothing to a later call on 2. Waiting threads poll, yield the core
// (to whatever else is runnable: more threads than cores must not cost a time slice per product),
// and after about a fifth of a millisecond sleep.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "membptt/backend/blas.hpp"

namespace membptt::backend {

class TilePool {
 public:
  using Fn = void (*)(const void* ctx, int first_tile, int end_tile);

  // The process's pool (created on first use, joined at exit).
  static TilePool& instance();
  ~TilePool();

  // Runs fn(ctx, a, b) over [0, tiles), one tile at a time, on the caller and up to threads - 1
  // workers; returns when all are done. threads <= 1 or tiles <= 1: runs inline.
  void run(int tiles, int threads, Fn fn, const void* ctx);

 private:
  TilePool() = default;
  struct alignas(64) Flag {  // a worker's: bumped when a call has work for it (its own cache line)
    std::atomic<std::uint32_t> go{0};
  };
  void work(Flag& flag);

  std::vector<std::thread> workers_;
  std::vector<std::unique_ptr<Flag>> flags_;  // flags_[i]: worker i + 1's
  int pid_ = 0;  // the process the workers belong to (a fork's child has none of them)
  std::atomic<int> pending_{0};   // workers woken for this call that have not finished it
  std::atomic<int> next_tile_{0};
  std::atomic<bool> busy_{false};
  std::atomic<bool> stop_{false};
  Fn fn_ = nullptr;
  const void* ctx_ = nullptr;
  int tiles_ = 0;
};

// The threads for a call of about `nanoseconds` of work on one core: gemm_threads(), or 1 below
// a few microseconds, where waking another thread costs about as much as it saves (and, with more
// threads than free cores, far more). Which thread runs a tile never changes its bits.
inline int threads_for(double nanoseconds) { return nanoseconds >= 4000 ? gemm_threads() : 1; }

// f(first, end) over [0, n) in blocks of `block` items, on threads_for(n * ns_per_item) threads:
// for elementwise work whose result per item does not depend on how the items are split (the
// cells' gate kernels).
template <class F>
void parallel_blocks(int n, int block, double ns_per_item, const F& f) {
  if (n <= 0) return;
  struct Ctx {
    const F* f;
    int n, block;
  } ctx{&f, n, block};
  TilePool::instance().run((n + block - 1) / block, threads_for(n * ns_per_item), [](const void* p, int a, int b) {
    const Ctx& c = *static_cast<const Ctx*>(p);
    (*c.f)(a * c.block, std::min(c.n, b * c.block));
  }, &ctx);
}

}  // namespace membptt::backend
