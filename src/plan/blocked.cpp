#include "membptt/plan/blocked.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "membptt/plan/binomial.hpp"
#include "membptt/schedule/schedule.hpp"

namespace membptt {

std::int64_t msm_lower_bound(std::int64_t length, std::int64_t free_ticks, MemoryGrid grid) {
  if (length <= 0) return 0;
  // Room for nothing but the record being backpropagated: every step from h_0 again (quadratic).
  if (free_ticks < grid.hidden && free_ticks < grid.internal) {
    const __int128 q = static_cast<__int128>(length) * (length + 1) / 2;
    return q > std::numeric_limits<std::int64_t>::max() ? std::numeric_limits<std::int64_t>::max() : static_cast<std::int64_t>(q);
  }
  // The HSM schedule a conversion gives holds 2 hidden states where the MSM schedule held one
  // internal state: no more memory when alpha >= 2, at most 2/alpha times as much below.
  const std::int64_t g = grid.internal >= 2 * grid.hidden
                             ? free_ticks
                             : static_cast<std::int64_t>(static_cast<__int128>(free_ticks) * 2 * grid.hidden / grid.internal);
  const std::int64_t hsm = hsm_cost(length, g / grid.hidden + 1);
  const std::int64_t from_hsm = hsm == std::numeric_limits<std::int64_t>::max() ? hsm : hsm - length;
  // Steps run only once all hold their records when the last of them runs: at most f/a + 1.
  const std::int64_t once = std::min(length, free_ticks / grid.internal + 1);
  return std::max({length, from_hsm, 2 * length - once});
}

namespace {

constexpr std::int64_t kInf = std::numeric_limits<std::int64_t>::max() / 4;
constexpr std::int64_t kLongestBlockTable = 2000;
constexpr std::int64_t kProbes = 4;  // evenly spaced splits a block DP cell also tries

// Room for the internal state of every step but the last: record them all (plain BPTT), t steps.
bool records_all(std::int64_t t, std::int64_t f, MemoryGrid g) { return f >= g.internal * (t - 1); }
constexpr Split kRecordAll{SplitKind::Internal, 1};

// --- every step run at most twice: internal states only, segments shrinking by one ---------

// With f free ticks, n(f) = f/a + 1 records fit. An internal state kept at y serves as the right
// part's start and as step y's record; the left part (y - 1 steps) then has all of f and records
// every step: y - 1 <= n(f). So the longest segment whose steps all run at most twice is (with the
// least such y, at least 1)
//   L(f) = n(f)                        (f < a: no room to split)
//   L(f) = n(f) + 1 + L(f - a)         (split at y = t - L(f - a))
// and its cost 2t - n(f) (t > n(f)) meets the lower bound: the plan is optimal.
class TwiceOracle final : public SplitOracle {
 public:
  // Past n(f) > length every segment records all, so the chain stops there (at most length long).
  TwiceOracle(std::int64_t free_ticks, MemoryGrid grid, std::int64_t length) : free_(free_ticks), grid_(grid) {
    for (std::int64_t f = free_ % grid.internal; f <= free_; f += grid.internal) {
      longest_.push_back(f < grid.internal ? records(f) : records(f) + 1 + longest_.back());
      if (records(f) > length) break;
    }
  }
  std::int64_t longest() const { return longest_.back(); }

  Split split(std::int64_t t, std::int64_t f, bool) const override {
    if (t <= 1) return {SplitKind::Leaf, t};
    if (records_all(t, f, grid_)) return kRecordAll;
    // Right parts take f - a at each split, left parts record all: f is on the chain.
    const auto i = static_cast<std::size_t>((f - free_ % grid_.internal) / grid_.internal);
    return {SplitKind::Internal, std::max<std::int64_t>(1, t - longest_[i - 1])};
  }

 private:
  std::int64_t records(std::int64_t f) const { return f / grid_.internal + 1; }
  std::int64_t free_;
  MemoryGrid grid_;
  std::vector<std::int64_t> longest_;  // L(f) for f = free mod a, + a, ..., free
};

// --- Revolve over blocks ------------------------------------------------------------------

class RevolveBlocksOracle final : public SplitOracle {
 public:
  // Segments up to table_length (at least the block) go to the table.
  RevolveBlocksOracle(std::shared_ptr<const DpTable> table, std::int64_t block, std::int64_t inner, std::int64_t table_length = 0)
      : table_(std::move(table)), block_(block), inner_(inner), table_length_(std::max(block, table_length)) {}

  Split split(std::int64_t t, std::int64_t f, bool releasable) const override {
    if (t <= 1) return {SplitKind::Leaf, t};
    if (records_all(t, f, table_->grid())) return kRecordAll;
    if (t <= table_length_) return table_->split(t, std::min(f, table_->max_free_ticks()), releasable);
    const std::int64_t h = table_->grid().hidden;
    const std::int64_t n = (t + block_ - 1) / block_;
    const std::int64_t m = f >= inner_ ? (f - inner_) / h + 1 : 1;
    if (m >= 2) return {SplitKind::Hidden, block_ * hsm_split(n, m)};
    // Revolve's single slot (its quadratic case): keep the last block's start from the blocks' memory.
    if (f >= h) return {SplitKind::Hidden, block_ * (n - 1)};
    return {SplitKind::Quadratic, 0};
  }

 private:
  std::shared_ptr<const DpTable> table_;
  std::int64_t block_, inner_, table_length_;
};

// The header's estimate of Revolve over blocks of `block` steps keeping `inner` ticks; kInf if none.
std::int64_t revolve_blocks_cost(std::int64_t length, std::int64_t free_ticks, const DpTable& table, std::int64_t block,
                                 std::int64_t inner) {
  const std::int64_t n = (length + block - 1) / block;
  if (n == 1) return table.cost(length, inner);
  const std::int64_t m = (free_ticks - inner) / table.grid().hidden + 1;
  if (m < 2) return kInf;
  const std::int64_t revolve = hsm_cost(n, m);
  if (revolve >= kInf) return kInf;
  const __int128 c = static_cast<__int128>(block) * (revolve - n) + static_cast<__int128>(n - 1) * table.cost(block, inner) +
                     table.cost(length - (n - 1) * block, inner);
  return c >= kInf ? kInf : static_cast<std::int64_t>(c);
}

BlockedMsm best_revolve_blocks(std::int64_t length, std::int64_t free_ticks, std::shared_ptr<const DpTable> table) {
  BlockedMsm best;
  best.block = 1;  // Revolve itself unless a block does better (and with no room for a block start)
  best.inner_ticks = 0;
  std::int64_t predicted = kInf;
  const std::int64_t max_block = std::min(table->max_length(), length);
  for (std::int64_t block = 1; block <= max_block; ++block) {
    for (std::int64_t inner = 0; inner <= std::min(free_ticks, table->max_free_ticks()); ++inner) {
      const std::int64_t c = revolve_blocks_cost(length, free_ticks, *table, block, inner);
      if (c < predicted) predicted = c, best.block = block, best.inner_ticks = inner;
    }
  }
  best.table_length = best.block;
  best.oracle = std::make_shared<RevolveBlocksOracle>(std::move(table), best.block, best.inner_ticks);
  return best;
}

// --- a dynamic program over blocks --------------------------------------------------------

class BlockDpOracle final : public SplitOracle {
 public:
  // Solves G for segments of k blocks (full: k s steps; end: (k-1) s + rem steps), k <= K, f <= F.
  BlockDpOracle(std::shared_ptr<const DpTable> table, std::int64_t length, std::int64_t free_ticks, std::int64_t block)
      : table_(std::move(table)), s_(block), blocks_((length + block - 1) / block), rem_(length - (blocks_ - 1) * block),
        free_(free_ticks) {
    const auto cells = static_cast<std::size_t>(blocks_ + 1) * static_cast<std::size_t>(free_ + 1);
    split_full_.assign(cells, 0);
    split_end_.assign(cells, 0);
    solve();
  }

  std::int64_t cost() const { return cost_; }

  Split split(std::int64_t t, std::int64_t f, bool releasable) const override {
    if (t <= 1) return {SplitKind::Leaf, t};
    if (records_all(t, f, table_->grid())) return kRecordAll;
    if (t <= table_->max_length()) return table_->split(t, std::min(f, table_->max_free_ticks()), releasable);
    const bool end = (t - rem_) % s_ == 0;
    const std::int64_t k = end ? (t - rem_) / s_ + 1 : t / s_;
    const std::int32_t j = (end ? split_end_ : split_full_)[index(k, std::min(f, free_))];
    if (j > 0) return {SplitKind::Hidden, j * s_};
    return {SplitKind::Quadratic, 0};  // not reached from the top: G is finite there
  }

 private:
  std::size_t index(std::int64_t k, std::int64_t f) const {
    return static_cast<std::size_t>(f) * static_cast<std::size_t>(blocks_ + 1) + static_cast<std::size_t>(k);
  }
  std::int64_t steps(std::int64_t k, bool end) const { return end ? (k - 1) * s_ + rem_ : k * s_; }

  // Rows f - h (right parts) must be kept while row f is solved: a ring of h + 1 rows of costs.
  void solve() {
    const std::int64_t h = table_->grid().hidden;
    const std::size_t width = static_cast<std::size_t>(blocks_ + 1);
    std::vector<std::int64_t> full(width * static_cast<std::size_t>(h + 1)), end(full.size());
    auto row = [&](std::vector<std::int64_t>& v, std::int64_t f) { return &v[static_cast<std::size_t>(f % (h + 1)) * width]; };
    for (std::int64_t f = 0; f <= free_; ++f) {
      std::int64_t* g_full = row(full, f);
      std::int64_t* g_end = row(end, f);
      const std::int64_t* r_full = f >= h ? row(full, f - h) : nullptr;
      const std::int64_t* r_end = f >= h ? row(end, f - h) : nullptr;
      const std::int64_t table_f = std::min(f, table_->max_free_ticks());
      g_full[0] = g_end[0] = 0;
      std::int64_t prev_j[2] = {1, 1};
      for (std::int64_t k = 1; k <= blocks_; ++k) {
        for (int e = 0; e < 2; ++e) {
          std::int64_t* g = e ? g_end : g_full;
          const std::int64_t* right = e ? r_end : r_full;
          const std::int64_t t = steps(k, e == 1);
          std::int64_t best = records_all(t, f, table_->grid()) ? t : t <= table_->max_length() ? table_->cost(t, table_f) : kInf;
          std::int32_t best_j = 0;
          if (right != nullptr && k >= 2 && t > table_->max_length() && best > t) {
            auto c = [&](std::int64_t j) { return std::min(kInf, j * s_ + right[k - j] + g_full[j]); };
            // Walk downhill from the best of the previous length's split (the best split moves
            // little with k) and a few evenly spaced ones (the cost is not convex in j).
            std::int64_t j = std::clamp<std::int64_t>(prev_j[e], 1, k - 1);
            std::int64_t cj = c(j);
            for (std::int64_t i = 1; i <= kProbes; ++i) {
              const std::int64_t y = std::max<std::int64_t>(1, (k - 1) * i / kProbes);
              if (const std::int64_t cy = c(y); cy < cj) cj = cy, j = y;
            }
            while (j + 1 < k && c(j + 1) < cj) cj = c(++j);
            while (j > 1 && c(j - 1) < cj) cj = c(--j);
            prev_j[e] = j;
            if (cj < best) best = cj, best_j = static_cast<std::int32_t>(j);
          }
          g[k] = best;
          (e ? split_end_ : split_full_)[index(k, f)] = best_j;
        }
      }
    }
    cost_ = row(end, free_)[blocks_];
  }

  std::shared_ptr<const DpTable> table_;
  std::int64_t s_, blocks_, rem_, free_;
  std::int64_t cost_ = kInf;
  std::vector<std::int32_t> split_full_, split_end_;  // [f][k]: j blocks on the left, 0 none
};

// The forward steps a schedule really runs: one walk over its operations.
std::int64_t count_forward_steps(const SplitOracle& oracle, std::int64_t length, std::int64_t free_ticks, MemoryGrid grid) {
  ScheduleGenerator gen(oracle, length, free_ticks, grid);
  std::int64_t steps = 0;
  Op op{};
  while (gen.next(op)) steps += forward_steps(op);
  return steps;
}

// A plan made on a coarser grid (alpha rounded up to whole hidden states), asked in fine ticks: a
// node's f fine ticks are f / h coarse ones. Children get at least what the coarse plan gave them
// (f - h fine is f/h - 1 coarse; f - a fine is at least f/h - ceil(a/h)), and every state is no
// larger than the coarse plan assumed, so it stays within its budget.
class CoarseGridOracle final : public SplitOracle {
 public:
  CoarseGridOracle(std::shared_ptr<const SplitOracle> coarse, std::int64_t ticks_per_hidden)
      : coarse_(std::move(coarse)), h_(ticks_per_hidden) {}
  Split split(std::int64_t t, std::int64_t f, bool releasable) const override { return coarse_->split(t, f / h_, releasable); }

 private:
  std::shared_ptr<const SplitOracle> coarse_;
  std::int64_t h_;
};

}  // namespace

std::shared_ptr<const SplitOracle> twice_run_plan(std::int64_t length, std::int64_t free_ticks, MemoryGrid grid) {
  auto twice = std::make_shared<const TwiceOracle>(free_ticks, grid, length);
  if (length > twice->longest()) return nullptr;
  return twice;
}

BlockedMsm choose_blocked_msm(std::int64_t length, std::int64_t free_ticks, MemoryGrid grid, std::int64_t table_cells,
                              std::int64_t dp_cells) {
  if (auto twice = twice_run_plan(length, free_ticks, grid)) {
    BlockedMsm b;
    b.forward_steps = count_forward_steps(*twice, length, free_ticks, grid);
    b.oracle = std::move(twice);
    return b;  // optimal: on the lower bound
  }
  // Quarter and eighth ticks make every table 4-8x wider for little: plan on whole hidden states.
  if (grid.hidden >= 4) {
    const MemoryGrid coarse{1, (grid.internal + grid.hidden - 1) / grid.hidden};
    BlockedMsm b = choose_blocked_msm(length, free_ticks / grid.hidden, coarse, table_cells, dp_cells);
    b.oracle = std::make_shared<const CoarseGridOracle>(std::move(b.oracle), grid.hidden);
    b.forward_steps = count_forward_steps(*b.oracle, length, free_ticks, grid);
    if (b.inner_ticks > 0) b.inner_ticks *= grid.hidden;
    return b;
  }
  // The best blocks of Revolve over blocks keep nearly every internal state of a block (inner ~ a
  // s ticks), so the table is about 1.5 a times as wide in ticks as it is long in steps, unless the
  // budget or the sequence is smaller than that.
  const double cells = static_cast<double>(std::max<std::int64_t>(table_cells, 16));
  const auto wide = static_cast<std::int64_t>(std::sqrt(cells * 1.5 * static_cast<double>(grid.internal)));
  const std::int64_t max_free = std::clamp<std::int64_t>(wide, 0, free_ticks);
  // Long rows cost the table most (its scans grow with t).
  const std::int64_t max_length =
      std::clamp<std::int64_t>(static_cast<std::int64_t>(cells) / (max_free + 1), 1, std::min<std::int64_t>(length, kLongestBlockTable));
  auto table = std::make_shared<const DpTable>(DpFamily::Msm, max_length, max_free, grid);

  BlockedMsm best = best_revolve_blocks(length, free_ticks, table);
  best.forward_steps = count_forward_steps(*best.oracle, length, free_ticks, grid);
  // The DP over blocks, with the finest blocks its cells allow (it needs a block within the table).
  const double finest = std::ceil(static_cast<double>(length) * static_cast<double>(free_ticks + 1) /
                                  static_cast<double>(std::max<std::int64_t>(dp_cells, 1)));
  const std::int64_t block = finest > static_cast<double>(length) / 2 ? length / 2 : std::max<std::int64_t>(1, static_cast<std::int64_t>(finest));
  if (length > max_length && free_ticks >= grid.hidden) {
    auto dp = std::make_shared<const BlockDpOracle>(table, length, free_ticks, block);
    const std::int64_t steps = dp->cost() < kInf ? count_forward_steps(*dp, length, free_ticks, grid) : kInf;
    if (steps < best.forward_steps) {
      best.forward_steps = steps;
      best.table_length = max_length;
      best.block = block;
      best.inner_ticks = -1;
      best.oracle = std::move(dp);
    }
  }
  // Revolve on single steps down to the table's length, and the table below: at small budgets the
  // blocks' estimates above miss what the segments' own memory buys; it is also never much worse
  // than Revolve itself (the table's MSM beats HSM on every segment it takes within its width).
  auto revolve_table = std::make_shared<const RevolveBlocksOracle>(table, 1, 0, max_length);
  if (const std::int64_t steps = count_forward_steps(*revolve_table, length, free_ticks, grid); steps < best.forward_steps) {
    best.forward_steps = steps;
    best.table_length = max_length;
    best.block = 1;
    best.inner_ticks = 0;
    best.oracle = std::move(revolve_table);
  }
  // Revolve itself (blocks of one step, nothing kept back) where everything above came out worse.
  if (best.forward_steps > hsm_cost(length, free_ticks / grid.hidden + 1)) {
    best.oracle = std::make_shared<RevolveBlocksOracle>(table, 1, 0);
    best.table_length = best.block = 1;
    best.inner_ticks = 0;
    best.forward_steps = count_forward_steps(*best.oracle, length, free_ticks, grid);
  }
  return best;
}

}  // namespace membptt
