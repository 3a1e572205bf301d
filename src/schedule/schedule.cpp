#include "membptt/schedule/schedule.hpp"

namespace membptt {

ScheduleGenerator::ScheduleGenerator(const SplitOracle& oracle, std::int64_t length, std::int64_t free_ticks,
                                     MemoryGrid grid)
    : oracle_(oracle), grid_(grid) {
  top_slot_ = 1;  // slot 0 holds h_0 for the whole run
  if (length > 0) {
    stack_.push_back({0, length, free_ticks, 0, false, {}, 0, 0});
    enter(stack_.back());
  }
}

void ScheduleGenerator::enter(Segment& s) {
  s.split = oracle_.split(s.length, s.free_ticks, s.releasable);
  s.stage = 0;
  s.counter = s.length;
}

namespace {
Op make(OpKind k, std::int32_t slot, std::int64_t t, std::int64_t count = 1) { return Op{k, slot, t, count}; }
}  // namespace

bool ScheduleGenerator::next(Op& op) {
  while (!stack_.empty()) {
    Segment& s = stack_.back();
    // The position just before the step this segment records next, if any.
    std::int64_t target = -1;
    switch (s.split.kind) {
      case SplitKind::Leaf:
      case SplitKind::Quadratic: target = s.stage == 0 ? s.start + s.counter - 1 : -1; break;
      case SplitKind::Hidden:
      case SplitKind::Internal:
      case SplitKind::InternalReleasing: target = s.stage == 0 ? s.start + s.split.y - 1 : -1; break;
    }
    if (s.length == 0 || (s.split.kind == SplitKind::Leaf && s.stage == 2) ||
        (s.split.kind == SplitKind::Quadratic && s.counter == 0)) {
      stack_.pop_back();
      continue;
    }
    if (target >= 0 && cursor_ != target) {
      if (cursor_ < s.start || cursor_ > target) {
        cursor_ = s.start;
        op = make(OpKind::Restore, s.start_slot, s.start);
        return true;
      }
      op = make(OpKind::Advance, -1, cursor_ + 1, target - cursor_);
      cursor_ = target;
      return true;
    }
    switch (s.split.kind) {
      case SplitKind::Leaf:
      case SplitKind::Quadratic: {
        const std::int64_t t = s.start + s.counter;
        if (s.stage == 0) {
          op = make(OpKind::AdvanceRecord, top_slot_++, t);
          cursor_ = t;
          s.stage = 1;
        } else {
          op = make(OpKind::Backward, --top_slot_, t);
          if (s.split.kind == SplitKind::Leaf) {
            s.stage = 2;
          } else {
            --s.counter;
            s.stage = 0;
          }
        }
        return true;
      }
      case SplitKind::InternalReleasing: {
        // The start, now in the cursor, is used no more: its slot takes step 1's record.
        const std::int64_t t = s.start + 1;
        if (s.stage == 0) {
          op = make(OpKind::Pop, --top_slot_, s.start);
          s.stage = 1;
          return true;
        }
        if (s.stage == 1) {
          op = make(OpKind::AdvanceRecord, top_slot_++, t);
          cursor_ = t;
          s.stage = 2;
          return true;
        }
        if (s.stage == 2) {
          s.stage = 3;
          const std::int64_t f = s.free_ticks + grid_.hidden - grid_.internal;
          stack_.push_back(Segment{t, s.length - 1, f, top_slot_ - 1, false, {}, 0, 0});  // invalidates s
          enter(stack_.back());
          continue;
        }
        if (s.stage == 3) {
          op = make(OpKind::Backward, --top_slot_, t);
          s.stage = 4;
          return true;
        }
        stack_.pop_back();  // no left part: the segment is done
        continue;
      }
      case SplitKind::Hidden:
      case SplitKind::Internal: {
        const bool hidden = s.split.kind == SplitKind::Hidden;
        const std::int64_t y = s.split.y;
        const std::int64_t t = s.start + y;
        if (s.stage == 0) {
          op = make(hidden ? OpKind::AdvanceHidden : OpKind::AdvanceRecord, top_slot_++, t);
          cursor_ = t;
          s.stage = 1;
          return true;
        }
        if (s.stage == 1) {
          s.stage = 2;
          const std::int64_t f = s.free_ticks - (hidden ? grid_.hidden : grid_.internal);
          Segment right{t, s.length - y, f, top_slot_ - 1, hidden, {}, 0, 0};
          stack_.push_back(right);  // invalidates s
          enter(stack_.back());
          continue;
        }
        if (s.stage == 2) {
          s.stage = 3;
          // A right part that started from h_y may have popped it already (InternalReleasing).
          if (hidden && top_slot_ == s.start_slot + 1) continue;
          op = make(hidden ? OpKind::Pop : OpKind::Backward, --top_slot_, t);
          return true;
        }
        // Left part: same start, same memory; replaces this segment (a loop, not a recursion).
        s.length = hidden ? y : y - 1;
        enter(s);
        continue;
      }
    }
  }
  return false;
}

std::vector<Op> materialize(ScheduleGenerator gen) {
  std::vector<Op> ops;
  Op op{};
  while (gen.next(op)) ops.push_back(op);
  return ops;
}

}  // namespace membptt
