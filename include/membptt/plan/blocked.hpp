// BPTT-MSM past the exact table's reach (T x budget beyond kMaxTableCells): a plan that is optimal
// where every step can run at most twice, else plans built on one small exact MSM table; and a
// proven lower bound on the optimum that certifies how far they can be from it. See
// docs/planner.md, "Long sequences".
//
// Every step at most twice. With f free ticks n(f) = f/a + 1 records fit. Keeping an internal state
// at y (step y's record and the right part's start) and recording every step of the left part
// (y - 1 <= n(f)) reverses the longest segment L(f) = n(f) + 1 + L(f - a) (L = n(f) when f < a) in
// 2t - n(f) forward steps: on the lower bound below, so optimal, for MSM and for ISM (it keeps only
// internal states). The planner uses it for both whenever T <= L(f), table or not (it is found in
// O(n)); that holds at T = 10^6 with 10,000 units for alpha up to 5.
//
// Past L(f), two blocked plans. Both record every step of a segment that has room for it, split a
// segment of t <= L steps (L the table's length) by the exact MSM table (dp.hpp)
// with the free ticks it has, and a longer one by a hidden split at a multiple of a block of s steps
// (the segment holding the sequence's end ends in its remainder, T - (K-1) s for K = ceil(T / s)):
//
// - Revolve over blocks: the n = ceil(t / s) blocks are split like Revolve splits n steps with m
//   slots (binomial.hpp), y = s * hsm_split(n, m), m = (f - inner) / h + 1 block starts, `inner`
//   ticks kept back for the blocks, and L = s. s and inner minimise its estimated cost
//     s (C(n, m) - n) + (n - 1) F(s, inner) + F(t - (n-1) s, inner)
//   (C Revolve's, F the table's; blocks run with more memory where fewer block starts are held,
//   and Revolve's one-slot case keeps a block start from the blocks' memory instead). With s = 1
//   and inner = 0 it is Revolve itself. Any length: it keeps nothing per block.
// - A dynamic program over blocks: the recursion of dp.hpp with hidden splits only, on multiples of
//   s, and the table for every segment it covers:
//     G(k, f) = F(k s, f)                                  (k s <= L)
//             = min_j  j s + G(k - j, f - h) + G(j, f)     (else; likewise for the end's segments)
//   It needs K x (budget) cells, so it runs when s can be small; its split j is found by walking
//   downhill on j s + G(k-j, f-h) + G(j, f) from the split of k-1 blocks (a heuristic: any j gives
//   a valid plan, and the planner's dry run counts the real cost).
// choose_blocked_msm takes the twice-run plan where it reaches; else it builds one table and both
// blocked plans where they fit, counts what each schedule really runs, and keeps the cheaper,
// never worse than Revolve.
//
// The bounds (proofs in docs/planner.md). Steps run only once: each keeps its record from its one
// run to its backward step, and backward runs from T down, so when the last of them runs all their
// records are held: at most f / a + 1 (the budget's one internal state included); every other step
// runs twice or more. Through HSM: storing, for each internal state kept, the hidden states before
// and after its step instead (2 hidden states for alpha's worth of memory) and running that step
// again when its record is needed turns any MSM schedule into an HSM schedule with one forward step
// more per internal state kept, at most one per step. Hence, with C(t, m) Revolve's optimum and
// m = g / h + 1 slots for g free ticks (g = f when alpha >= 2, else f scaled by 2 / alpha),
//   F_MSM(t, f) >= max(t, 2 t - (f / a + 1), C(t, m) - t),
// and t (t + 1) / 2 when f has room for no state at all (every step recomputed from h_0).
// tests/plan/blocked_test.cpp checks it against the exact table on grids.
#pragma once
#include <cstdint>
#include <memory>

#include "membptt/plan/cost_model.hpp"
#include "membptt/plan/dp.hpp"
#include "membptt/plan/split.hpp"

namespace membptt {

// A proven lower bound on the forward steps of every MSM plan (hence of HSM and ISM too) for
// `length` steps with `free_ticks` free ticks on `grid`.
std::int64_t msm_lower_bound(std::int64_t length, std::int64_t free_ticks, MemoryGrid grid);

// The plan that runs every step at most twice (internal states only), optimal for MSM and ISM;
// null where it does not reach (length > L(free_ticks)).
std::shared_ptr<const SplitOracle> twice_run_plan(std::int64_t length, std::int64_t free_ticks, MemoryGrid grid);

struct BlockedMsm {
  std::shared_ptr<const SplitOracle> oracle;
  std::int64_t table_length = 0;  // L: segments up to this length use the exact table (0: twice-run)
  std::int64_t block = 0;         // s: hidden splits above L fall on multiples of s (0: twice-run)
  std::int64_t inner_ticks = -1;  // Revolve over blocks: the ticks kept for the blocks; -1: the DP
  std::int64_t forward_steps = 0;  // the plan's cost, counted on its schedule
};

// The cheaper blocked plan for `length` steps with `free_ticks` free ticks: one exact MSM table of
// at most `table_cells` cells, and a dynamic program over blocks of at most `dp_cells` cells.
BlockedMsm choose_blocked_msm(std::int64_t length, std::int64_t free_ticks, MemoryGrid grid, std::int64_t table_cells,
                              std::int64_t dp_cells);

}  // namespace membptt
