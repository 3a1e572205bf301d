#include "membptt/backend/tile_pool.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>

namespace membptt::backend {

namespace {
inline void pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}
// Waiting: a few microseconds of polling, then polling that yields the core (a syscall: nearly as
// fast when nothing else wants the core, and it lets another thread run when something does).
constexpr int kPolls = 256;
// A worker sleeps after this long without work: longer than the gaps between a pass's products,
// short enough not to hold a core after the pass.
constexpr auto kYieldFor = std::chrono::microseconds(200);

// Polls `ready` until it holds; false if `deadline_after` passed first (never, if zero).
template <class Ready>
bool poll(Ready ready, std::chrono::microseconds deadline_after) {
  for (int i = 0; i < kPolls; ++i) {
    if (ready()) return true;
    pause();
  }
  const auto deadline = std::chrono::steady_clock::now() + deadline_after;
  for (unsigned i = 0;; ++i) {
    if (ready()) return true;
    std::this_thread::yield();
    if (deadline_after.count() && (i & 15) == 15 && std::chrono::steady_clock::now() > deadline) return false;
  }
}

// Takes tiles from `next` until none is left.
void take_tiles(std::atomic<int>& next, int tiles, TilePool::Fn fn, const void* ctx) {
  for (int i; (i = next.fetch_add(1, std::memory_order_relaxed)) < tiles;) fn(ctx, i, i + 1);
}
}  // namespace

TilePool& TilePool::instance() {
  static TilePool pool;
  return pool;
}

TilePool::~TilePool() {
  if (workers_.empty() || pid_ != getpid()) return;
  stop_.store(true, std::memory_order_relaxed);
  for (auto& f : flags_) {
    f->go.fetch_add(1, std::memory_order_release);
    f->go.notify_one();
  }
  for (auto& w : workers_) w.join();
}

void TilePool::work(Flag& flag) {
  std::uint32_t seen = 0;
  for (;;) {
    const auto moved = [&] { return flag.go.load(std::memory_order_acquire) != seen; };
    if (!poll(moved, kYieldFor))
      while (!moved()) flag.go.wait(seen, std::memory_order_acquire);
    seen = flag.go.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_relaxed)) return;
    take_tiles(next_tile_, tiles_, fn_, ctx_);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void TilePool::run(int tiles, int threads, Fn fn, const void* ctx) {
  threads = std::min(threads, tiles);
  // One call at a time uses the workers; a call made while another runs (a second thread of the
  // host program) runs inline: same tiles, same bits.
  if (threads <= 1 || busy_.exchange(true, std::memory_order_acquire)) {
    fn(ctx, 0, tiles);
    return;
  }
  if (pid_ != getpid()) {  // first use, or a child forked after its parent's: that parent's threads are not here
    if (!workers_.empty()) new std::vector<std::thread>(std::move(workers_));  // (left: they cannot be joined)
    workers_.clear();
    flags_.clear();
    pid_ = getpid();
  }
  while (static_cast<int>(workers_.size()) < threads - 1) {
    flags_.push_back(std::make_unique<Flag>());
    Flag* flag = flags_.back().get();
    workers_.emplace_back([this, flag] { work(*flag); });
  }
  fn_ = fn, ctx_ = ctx, tiles_ = tiles;
  next_tile_.store(0, std::memory_order_relaxed);
  pending_.store(threads - 1, std::memory_order_relaxed);
  for (int i = 0; i < threads - 1; ++i) {
    Flag& f = *flags_[static_cast<std::size_t>(i)];
    f.go.fetch_add(1, std::memory_order_release);
    f.go.notify_one();
  }
  take_tiles(next_tile_, tiles, fn, ctx);
  // The job's fields stay until every woken worker has seen it (one not yet run finds no tile left).
  poll([&] { return pending_.load(std::memory_order_acquire) == 0; }, std::chrono::microseconds(0));
  busy_.store(false, std::memory_order_release);
}

}  // namespace membptt::backend
