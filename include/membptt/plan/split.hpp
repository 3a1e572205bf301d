// How a plan divides a segment: the node of the recursion the schedule generator unrolls.
#pragma once
#include <cstdint>

namespace membptt {

enum class SplitKind : std::uint8_t {
  Leaf,       // t <= 1: record the single step and backpropagate it
  Quadratic,  // keep nothing: for each step from the last, recompute it from the segment's start
  Hidden,     // run y steps, keep h_y (1 unit); solve the right part; drop it; solve the left part (y)
  Internal,   // run y steps, keep step y's internal state (alpha units), which also starts the
              // right part; solve the right part; backpropagate y from it; solve the left part (y-1)
  InternalReleasing,  // y = 1 in a segment whose start is a hidden state it may release: copy the
                      // start into the cursor, pop it, and record step 1 in its place
};

struct Split {
  SplitKind kind = SplitKind::Leaf;
  std::int64_t y = 0;
};

// Answers "how is a segment of t steps with `free_ticks` of free memory split?". Implemented by
// the DP tables, the binomial closed form and the fixed baseline rules. Free memory excludes the
// segment's start (already held by the caller) and the internal state a leaf records.
// `releasable`: the start is a hidden state owned by this segment (the right part of a hidden
// split), which it may pop once it has last been copied into the cursor.
class SplitOracle {
 public:
  virtual ~SplitOracle() = default;
  virtual Split split(std::int64_t t, std::int64_t free_ticks, bool releasable) const = 0;
};

}  // namespace membptt
