#include "membptt/backend/tile_pool.hpp"

#include <unistd.h>

#include <algorithm>

namespace membptt::backend {

namespace {
inline void pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}
// About 50-100 microseconds of polling before a worker sleeps: longer than the gaps between a
// pass's products (the gate arithmetic between them), short enough not to hold a core after it.
constexpr int kSpins = 1 << 16;
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

void TilePool::work(int index, Flag& flag) {
  std::uint32_t seen = 0;
  for (;;) {
    int spins = 0;
    std::uint32_t now;
    while ((now = flag.go.load(std::memory_order_acquire)) == seen) {
      if (++spins < kSpins) {
        pause();
      } else {
        flag.go.wait(seen, std::memory_order_acquire);
      }
    }
    seen = now;
    if (stop_.load(std::memory_order_relaxed)) return;
    const int a = static_cast<int>(static_cast<long>(tiles_) * index / threads_);
    const int b = static_cast<int>(static_cast<long>(tiles_) * (index + 1) / threads_);
    if (a < b) fn_(ctx_, a, b);
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
    const int index = static_cast<int>(workers_.size()) + 1;
    workers_.emplace_back([this, index, flag] { work(index, *flag); });
  }
  fn_ = fn, ctx_ = ctx, tiles_ = tiles, threads_ = threads;
  pending_.store(threads - 1, std::memory_order_relaxed);
  for (int i = 0; i < threads - 1; ++i) {
    Flag& f = *flags_[static_cast<std::size_t>(i)];
    f.go.fetch_add(1, std::memory_order_release);
    f.go.notify_one();
  }
  fn(ctx, 0, static_cast<int>(static_cast<long>(tiles) / threads));
  while (pending_.load(std::memory_order_acquire) != 0) pause();
  busy_.store(false, std::memory_order_release);
}

}  // namespace membptt::backend
