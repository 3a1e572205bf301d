#include "membptt/plan/dp.hpp"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <stdexcept>

namespace membptt {

namespace {

// Minimises y + child[t - y] + row[y - shift] over 1 <= y < t, updating best and best_split
// (sign marks hidden + or internal -); ties keep the smaller y. With `prune` the scan stops once
// t + row[y - shift] reaches best: tables grow by at least 1 per step of length, so that bounds
// the cost of this and every later y.
void scan(std::int64_t t, const std::int64_t* row, const std::int64_t* child, std::int64_t shift, bool prune,
          std::int64_t& best, std::int32_t& best_split, int sign, std::int64_t y0 = 1, std::int64_t y1 = -1) {
  if (y1 < 0) y1 = t - 1;
  for (std::int64_t y = y0; y <= y1; ++y) {
    if (prune && t + row[y - shift] >= best) return;
    const std::int64_t c = y + child[t - y] + row[y - shift];
    if (c < best) best = c, best_split = static_cast<std::int32_t>(sign * y);
  }
}

// The same minimum when y -> y + child[t - y] + row[y - shift] is convex (both rows convex on the
// range used): a binary search for the first y where the cost stops falling.
void convex_min(std::int64_t t, const std::int64_t* row, const std::int64_t* child, std::int64_t shift,
                std::int64_t& best, std::int32_t& best_split, int sign) {
  auto g = [&](std::int64_t y) { return y + child[t - y] + row[y - shift]; };
  std::int64_t lo = 1, hi = t - 1;
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    if (g(mid + 1) < g(mid)) lo = mid + 1; else hi = mid;
  }
  const std::int64_t c = g(lo);
  if (c < best) best = c, best_split = static_cast<std::int32_t>(sign * lo);
}

// The lower convex hull of a row's points (t, cost), as vertex lengths in increasing order: a
// convex function below the row, for bounding the splits of rows that are not convex themselves.
void hull_push(std::vector<std::int32_t>& hull, const std::int64_t* row, std::int64_t t) {
  while (hull.size() >= 2) {
    const std::int64_t a = hull[hull.size() - 2], b = hull.back();
    // Drop b unless it lies strictly below the segment from a to t.
    if ((b - a) * (row[t] - row[a]) - (row[b] - row[a]) * (t - a) > 0) break;
    hull.pop_back();
  }
  hull.push_back(static_cast<std::int32_t>(t));
}

double hull_at(const std::vector<std::int32_t>& hull, const std::int64_t* row, std::int64_t x) {
  const auto it = std::lower_bound(hull.begin(), hull.end(), x);
  if (*it == x) return static_cast<double>(row[x]);
  const std::int64_t b = *it, a = *(it - 1);
  return static_cast<double>(row[a]) + static_cast<double>(row[b] - row[a]) * static_cast<double>(x - a) / static_cast<double>(b - a);
}

// The lower convex hull of the row being filled, its value at every length where that is final.
// Pushing a point pops only vertices from the end, so a value on a segment ending at or before the
// second-last vertex never changes unless a later push pops back past it: such values are
// tabulated once (again only when pops reach further back); the last segment is interpolated on
// the spot. Same vertices, same arithmetic: the values equal hull_at's bit for bit.
class GrowingHull {
 public:
  void reset(const std::int64_t* row, double* values) {
    row_ = row;
    values_ = values;
    hull_.clear();
    tabulated_ = -1;
  }

  void push(std::int64_t t) {
    hull_push(hull_, row_, t);
    if (hull_.size() >= 2) tabulate_to(hull_[hull_.size() - 2]);
  }

  double at(std::int64_t x) const {
    if (x <= tabulated_) return values_[x];
    if (hull_.size() < 2) return hull_at(hull_, row_, x);
    const std::int64_t a = hull_[hull_.size() - 2], b = hull_.back();
    if (x == b) return static_cast<double>(row_[b]);
    if (x == a) return static_cast<double>(row_[a]);
    return static_cast<double>(row_[a]) +
           static_cast<double>(row_[b] - row_[a]) * static_cast<double>(x - a) / static_cast<double>(b - a);
  }

  // Values up to the last vertex: the finished row's hull everywhere.
  void finish() { tabulate_to(hull_.back()); }
  const std::vector<std::int32_t>& vertices() const { return hull_; }

 private:
  void tabulate_to(std::int64_t stable) {
    tabulated_ = std::min(tabulated_, stable);
    for (std::int64_t x = tabulated_ + 1; x <= stable; ++x) values_[x] = hull_at(hull_, row_, x);
    tabulated_ = std::max(tabulated_, stable);
  }

  const std::int64_t* row_ = nullptr;
  double* values_ = nullptr;
  std::vector<std::int32_t> hull_;
  std::int64_t tabulated_ = -1;
};

// Like scan, for rows that are not convex: y + hull_child(t - y) + hull_row(y - shift) is convex
// and below every split's cost, so only the y where it is under `best` can win; binary searches
// find that interval and only it is scanned.
// child_hull_values: the child row's hull at every length (a finished row's, tabulated once).
void hull_scan(std::int64_t t, const std::int64_t* row, const GrowingHull& row_hull, const std::int64_t* child,
               const double* child_hull_values, std::int64_t shift, std::int64_t& best, std::int32_t& best_split,
               int sign) {
  auto lb = [&](std::int64_t y) { return static_cast<double>(y) + child_hull_values[t - y] + row_hull.at(y - shift); };
  std::int64_t lo = 1, hi = t - 1;
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    if (lb(mid + 1) < lb(mid)) lo = mid + 1; else hi = mid;
  }
  const double limit = static_cast<double>(best) - 0.5;  // costs are integers: a winner is <= best - 1
  if (lb(lo) > limit) return;
  std::int64_t a = 1, b = lo;  // leftmost y with lb(y) <= limit, in [1, lo]
  while (a < b) {
    const std::int64_t mid = a + (b - a) / 2;
    if (lb(mid) <= limit) b = mid; else a = mid + 1;
  }
  std::int64_t c = lo, d = t - 1;  // rightmost y with lb(y) <= limit, in [lo, t-1]
  while (c < d) {
    const std::int64_t mid = c + (d - c + 1) / 2;
    if (lb(mid) <= limit) c = mid; else d = mid - 1;
  }
  // One element of slack on each side against rounding in the interpolation.
  scan(t, row, child, shift, false, best, best_split, sign, std::max<std::int64_t>(1, a - 1), std::min(t - 1, c + 1));
}

}  // namespace

DpTable::DpTable(DpFamily family, std::int64_t max_length, std::int64_t max_free_ticks, MemoryGrid grid, bool naive)
    : family_(family), max_length_(max_length), max_free_(max_free_ticks), grid_(grid), has_r_(family == DpFamily::Msm) {
  if (max_length < 0 || max_free_ticks < 0) throw std::invalid_argument("DpTable: negative size");
  if (max_length >= std::numeric_limits<std::int32_t>::max())
    throw std::invalid_argument("DpTable: length too large for a table; use the revolve policy");
  const auto cells = static_cast<std::size_t>(max_length + 1) * static_cast<std::size_t>(max_free_ticks + 1);
  cost_.assign(cells, 0);
  split_.assign(cells, 0);
  hull_values_.assign(cells, 0.0);
  if (has_r_) {
    cost_r_.assign(cells, 0);
    split_r_.assign(cells, 0);
    hull_values_r_.assign(cells, 0.0);
  }
  convex_.assign(static_cast<std::size_t>(max_free_ticks + 1), 0);
  convex_r_.assign(static_cast<std::size_t>(max_free_ticks + 1), 0);
  for (std::int64_t f = 0; f <= max_free_; ++f) solve_row(f, naive);
}

Split DpTable::split(std::int64_t t, std::int64_t f, bool releasable) const {
  if (t <= 1) return {SplitKind::Leaf, t};
  const std::int32_t s = (releasable && has_r_ ? split_r_ : split_)[index(t, f)];
  if (s == std::numeric_limits<std::int32_t>::min()) return {SplitKind::InternalReleasing, 1};
  if (s > 0) return {SplitKind::Hidden, s};
  if (s < 0) return {SplitKind::Internal, -static_cast<std::int64_t>(s)};
  return {SplitKind::Quadratic, 0};
}

// Row f needs rows f - hidden and f - internal (already solved) and its own shorter lengths.
//
// Pruning (exact): every step runs forward at least once, so F(n, g) >= n, and F(., f) grows by
// at least 1 per step of length (drop the first step of a plan for n+1 steps, taking h_1 as the
// start: a plan for n steps, cheaper by every run of step 1; likewise R). Hence for y' >= y
//   hidden:   y' + R(t-y', f-h) + L(y', f)    >= t + L(y, f)
//   internal: y' + F(t-y', f-a) + L(y'-1, f)  >= t + L(y-1, f)
// (L the left part's table) and the scan stops once that bound reaches the best found.
// tests/plan/planner_test.cpp checks the pruned tables against the naive scan.
void DpTable::solve_row(std::int64_t f, bool naive) {
  const bool hidden_ok = family_ != DpFamily::Ism && f >= grid_.hidden;
  const bool internal_ok = family_ != DpFamily::Hsm && f >= grid_.internal;
  const std::int64_t release_row = f + grid_.hidden - grid_.internal;  // R's internal split at 1
  const bool release_ok = has_r_ && release_row >= 0;
  const std::int64_t* right_h = hidden_ok ? &(has_r_ ? cost_r_ : cost_)[index(0, f - grid_.hidden)] : nullptr;
  const std::int64_t* right_a = internal_ok ? &cost_[index(0, f - grid_.internal)] : nullptr;
  const std::int64_t* after_release = release_ok ? &cost_[index(0, release_row)] : nullptr;
  const std::int64_t right_h_convex = hidden_ok ? (has_r_ ? convex_r_ : convex_)[f - grid_.hidden] : 0;
  const std::int64_t right_a_convex = internal_ok ? convex_[f - grid_.internal] : 0;
  const double* right_h_hull_values = hidden_ok ? &(has_r_ ? hull_values_r_ : hull_values_)[index(0, f - grid_.hidden)] : nullptr;
  const double* right_a_hull_values = internal_ok ? &hull_values_[index(0, f - grid_.internal)] : nullptr;

  // Solve F (left parts from F), then R (left parts from R, plus the releasing split).
  for (int pass = 0; pass < (has_r_ ? 2 : 1); ++pass) {
    const bool r = pass == 1;
    std::int64_t* out = &(r ? cost_r_ : cost_)[index(0, f)];
    std::int32_t* out_split = &(r ? split_r_ : split_)[index(0, f)];
    const std::int64_t* left = out;
    std::int64_t& left_convex = (r ? convex_r_ : convex_)[f];  // this row is convex on [0, left_convex]
    GrowingHull left_hull;
    left_hull.reset(out, &(r ? hull_values_r_ : hull_values_)[index(0, f)]);
    out[0] = 0;
    if (max_length_ >= 1) out[1] = 1;
    left_convex = std::min<std::int64_t>(max_length_, 1);
    for (std::int64_t t = 0; t <= std::min<std::int64_t>(max_length_, 1); ++t) left_hull.push(t);
    for (std::int64_t t = 2; t <= max_length_; ++t) {
      // Room for every internal state: plain BPTT, the least any plan can cost.
      if (internal_ok && f >= grid_.internal * (t - 1)) {
        out[t] = t;
        out_split[t] = -1;
        if (left_convex == t - 1 && out[t] - 2 * out[t - 1] + out[t - 2] >= 0) left_convex = t;
        left_hull.push(t);
        continue;
      }
      std::int64_t best = t * (t + 1) / 2;
      std::int32_t best_split = 0;
      if (r && release_ok && 1 + after_release[t - 1] < best) {
        best = 1 + after_release[t - 1];
        best_split = std::numeric_limits<std::int32_t>::min();
      }
      if (!naive) {
        // Seed with the previous length's split, often optimal here too, so the bound bites early.
        const std::int64_t prev = out_split[t - 1];
        if (prev > 0 && prev < t && hidden_ok && prev + right_h[t - prev] + left[prev] < best) {
          best = prev + right_h[t - prev] + left[prev];
          best_split = static_cast<std::int32_t>(prev);
        } else if (prev < 0 && prev != std::numeric_limits<std::int32_t>::min() && -prev < t && internal_ok &&
                   -prev + right_a[t + prev] + left[-prev - 1] < best) {
          best = -prev + right_a[t + prev] + left[-prev - 1];
          best_split = static_cast<std::int32_t>(prev);
        }
      }
      // Where both rows are convex over the range a split uses, so is the split's cost in y, and
      // a binary search finds its minimum; elsewhere their convex hulls bound it from below and
      // only the y the bound cannot rule out are scanned.
      if (hidden_ok) {
        if (!naive && left_convex >= t - 1 && right_h_convex >= t - 1)
          convex_min(t, left, right_h, 0, best, best_split, 1);
        else
          naive ? scan(t, left, right_h, 0, false, best, best_split, 1)
                : hull_scan(t, left, left_hull, right_h, right_h_hull_values, 0, best, best_split, 1);
      }
      if (internal_ok) {
        if (!naive && left_convex >= t - 2 && right_a_convex >= t - 1)
          convex_min(t, left, right_a, 1, best, best_split, -1);
        else
          naive ? scan(t, left, right_a, 1, false, best, best_split, -1)
                : hull_scan(t, left, left_hull, right_a, right_a_hull_values, 1, best, best_split, -1);
      }
      out[t] = best;
      out_split[t] = best_split;
      if (left_convex == t - 1 && out[t] - 2 * out[t - 1] + out[t - 2] >= 0) left_convex = t;
      left_hull.push(t);
    }
    left_hull.finish();  // the finished row's hull at every length, for the rows reading it as a right part
  }
}

}  // namespace membptt
