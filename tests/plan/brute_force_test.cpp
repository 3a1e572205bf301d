// Optimality by exhaustion: for short sequences, a search over EVERY valid schedule of the
// abstract machine (stores and frees in any order, not only the planner's stack discipline;
// any restore; records of any step) finds exactly the dynamic program's minimum.
#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "membptt/plan/dp.hpp"

namespace membptt {
namespace {

enum class Family { Hsm, Ism, Msm };

// State: cursor position c, next step to backpropagate b, and what is stored at each position
// 1..T (0 nothing, 1 h_s, 2 the internal state of step s, 3 both). Moves: advance one step
// keeping nothing / h / the internal state (cost 1); backward b from its stored internal state;
// restore any stored state; free any stored state (cost 0). h_0 is always there and free.
// Budget: stored h count + alpha * stored internal count <= budget.
class BruteForce {
 public:
  BruteForce(int T, Family fam, int alpha, int budget) : T_(T), fam_(fam), alpha_(alpha), budget_(budget) {
    pow4_.assign(T + 2, 1);
    for (int i = 1; i <= T + 1; ++i) pow4_[i] = pow4_[i - 1] * 4;
  }

  std::int64_t min_forward_steps() {
    // 0-1 breadth-first search over the reachable states (few, under a small budget).
    std::unordered_map<std::int64_t, std::int32_t> dist;
    std::unordered_set<std::int64_t> done;
    std::deque<std::int64_t> queue;
    const std::int64_t start = encode(0, T_, 0);
    dist[start] = 0;
    queue.push_back(start);
    while (!queue.empty()) {
      const std::int64_t s = queue.front();
      queue.pop_front();
      if (!done.insert(s).second) continue;
      int c, b;
      std::int64_t stored;
      decode(s, c, b, stored);
      if (b == 0) return dist[s];
      auto relax = [&](std::int64_t to, int w) {
        const std::int32_t nd = dist[s] + w;
        auto it = dist.find(to);
        if (it == dist.end() || nd < it->second) {
          dist[to] = nd;
          if (w == 0) queue.push_front(to); else queue.push_back(to);
        }
      };
      // Advance one step from the cursor.
      if (c < b) {
        const int t = c + 1;
        relax(encode(t, b, stored), 1);
        const int here = at(stored, t);
        if (fam_ != Family::Ism && !(here & 1) && fits(stored, 1, 0)) relax(encode(t, b, stored + pow4_[t - 1] * 1), 1);
        // ISM and MSM record any step; HSM only the one it backpropagates next.
        const bool record_ok = fam_ != Family::Hsm || t == b;
        if (record_ok && !(here & 2) && fits(stored, 0, 1)) relax(encode(t, b, stored + pow4_[t - 1] * 2), 1);
      }
      // Backward b from its internal state.
      if (at(stored, b) & 2) relax(encode(c, b - 1, stored - pow4_[b - 1] * 2), 0);
      for (int p = 1; p <= T_; ++p) {
        const int here = at(stored, p);
        if (here) relax(encode(p, b, stored), 0);  // restore h_p
        if (here & 1) relax(encode(c, b, stored - pow4_[p - 1] * 1), 0);
        if (here & 2) relax(encode(c, b, stored - pow4_[p - 1] * 2), 0);
      }
      relax(encode(0, b, stored), 0);  // restore h_0
    }
    return -1;
  }

 private:
  int at(std::int64_t stored, int p) const { return static_cast<int>(stored / pow4_[p - 1] % 4); }
  bool fits(std::int64_t stored, int add_h, int add_i) const {
    int h = add_h, i = add_i;
    for (int p = 1; p <= T_; ++p) {
      const int v = at(stored, p);
      h += v & 1;
      i += (v >> 1) & 1;
    }
    return h + alpha_ * i <= budget_;
  }
  std::int64_t encode(int c, int b, std::int64_t stored) const { return (stored * (T_ + 1) + c) * (T_ + 1) + b; }
  void decode(std::int64_t s, int& c, int& b, std::int64_t& stored) const {
    b = static_cast<int>(s % (T_ + 1));
    s /= (T_ + 1);
    c = static_cast<int>(s % (T_ + 1));
    stored = s / (T_ + 1);
  }

  int T_;
  Family fam_;
  int alpha_, budget_;
  std::vector<std::int64_t> pow4_;
};

DpFamily dp_family(Family f) { return f == Family::Hsm ? DpFamily::Hsm : f == Family::Ism ? DpFamily::Ism : DpFamily::Msm; }

TEST(BruteForce, DynamicProgramsAreOptimal) {
  int checked = 0;
  for (int alpha = 1; alpha <= 3; ++alpha)
    for (Family fam : {Family::Hsm, Family::Ism, Family::Msm}) {
      const int T_max = 9;
      DpTable table(dp_family(fam), T_max, alpha * T_max, MemoryGrid{1, alpha});
      for (int T = 1; T <= T_max; ++T)
        for (int budget = alpha; budget <= alpha + 4 && budget <= alpha * T; ++budget) {
          BruteForce bf(T, fam, alpha, budget);
          const std::int64_t best = bf.min_forward_steps();
          ASSERT_EQ(best, table.cost(T, budget - alpha))
              << "family " << static_cast<int>(fam) << " alpha=" << alpha << " T=" << T << " budget=" << budget;
          ++checked;
        }
    }
  EXPECT_GT(checked, 100);
}

}  // namespace
}  // namespace membptt
