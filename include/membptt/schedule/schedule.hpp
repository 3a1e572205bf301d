// A plan unrolled into a flat sequence of operations, produced lazily: the generator keeps an
// explicit stack of open segments (no recursion, so T = 10^6 cannot overflow the call stack) and
// never holds more than one op at a time, so a schedule of 10^9 operations costs O(depth) memory.
#pragma once
#include <cstdint>
#include <vector>

#include "membptt/plan/cost_model.hpp"
#include "membptt/plan/split.hpp"
#include "membptt/schedule/op.hpp"

namespace membptt {

class ScheduleGenerator {
 public:
  // Unrolls the segment of `length` steps whose start h_0 sits at stack slot 0, with
  // `free_ticks` of free memory, splitting as `oracle` says. The oracle must outlive this.
  ScheduleGenerator(const SplitOracle& oracle, std::int64_t length, std::int64_t free_ticks, MemoryGrid grid);

  // Next operation; false at the end.
  bool next(Op& op);

 private:
  struct Segment {
    std::int64_t start;       // position of the state the segment starts from
    std::int64_t length;      // steps start+1 .. start+length
    std::int64_t free_ticks;  // memory left for the segment's own stored states
    std::int32_t start_slot;  // stack slot holding the start
    bool releasable;          // the start is a hidden state this segment may pop
    Split split;              // decision taken on entry
    std::int32_t stage;       // progress through the segment's ops
    std::int64_t counter;     // quadratic: next step to backpropagate
  };
  void enter(Segment& s);

  const SplitOracle& oracle_;
  MemoryGrid grid_;
  std::vector<Segment> stack_;
  std::int32_t top_slot_ = 0;    // slots in use; slot 0 holds h_0
  std::int64_t cursor_ = 0;      // position of the state in the cursor
};

// Every op of a schedule in order (small plans, tests and drawings only).
std::vector<Op> materialize(ScheduleGenerator gen);

}  // namespace membptt
