// One operation of a schedule: the contract between the planner and the executor.
//
// The abstract machine has
//   - a cursor: the carried state h_p at the current position p (executor workspace, not budgeted);
//   - a LIFO stack of stored states, which is the budgeted arena. Every plan the planner makes
//     stores and frees states in stack order (split: store, solve right part, free, solve left
//     part), so the executor places slot k at a fixed byte offset and never fragments.
//     A hidden entry (1 unit) holds h_s; an internal entry (alpha units) holds everything backward
//     step s needs (its input h_{s-1} and its output h_s included).
//   - entry 0 of the stack is always h_0, the start of the sequence.
//
// Steps are numbered 1..T; step t maps h_{t-1} to h_t.
#pragma once
#include <cstdint>
#include <string_view>

namespace membptt {

enum class OpKind : std::uint8_t {
  Advance,        // run steps t .. t+count-1 from the cursor, keeping nothing
  AdvanceHidden,  // run step t from the cursor and push h_t as a hidden entry at `slot`
  AdvanceRecord,  // run step t from the cursor and push its internal state at `slot`; cursor = h_t
  Backward,       // backward step t from the internal entry at `slot` (the top), then pop it
  Restore,        // cursor = the state at position t held by the entry at `slot`
  Pop,            // pop the hidden entry at `slot` (the top)
  // Online schedules only (plan/online.hpp: the length is known only when the sequence ends):
  Keep,           // push the cursor's state h_t (t: the cursor's position) as a hidden entry at `slot`
  Drop,           // remove the hidden entry at `slot` (below the top; every entry above is hidden and
                  // moves down one slot, in order): an earlier checkpoint given up
};

struct Op {
  OpKind kind;
  std::int32_t slot;   // stack depth of the entry concerned; -1 for Advance
  std::int64_t t;      // step number (Restore: the position 0..T of the state restored)
  std::int64_t count;  // Advance: number of steps; otherwise 1
};

constexpr std::string_view op_name(OpKind k) {
  switch (k) {
    case OpKind::Advance: return "advance";
    case OpKind::AdvanceHidden: return "advance_hidden";
    case OpKind::AdvanceRecord: return "advance_record";
    case OpKind::Backward: return "backward";
    case OpKind::Restore: return "restore";
    case OpKind::Pop: return "pop";
    case OpKind::Keep: return "keep";
    case OpKind::Drop: return "drop";
  }
  return "?";
}

// Forward steps an op runs (the unit of the planner's cost).
constexpr std::int64_t forward_steps(const Op& op) {
  switch (op.kind) {
    case OpKind::Advance: return op.count;
    case OpKind::AdvanceHidden:
    case OpKind::AdvanceRecord: return 1;
    default: return 0;
  }
}

}  // namespace membptt
