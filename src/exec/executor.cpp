#include "membptt/exec/executor.hpp"

namespace membptt {

std::size_t arena_elems(const Plan& plan, std::size_t carry_elems, std::size_t record_elems) {
  std::vector<std::size_t> end(static_cast<std::size_t>(plan.max_slots) + 1, 0);  // end[k]: where slot k ends
  std::size_t arena = 0;
  ScheduleGenerator gen = plan.schedule();
  Op op{};
  while (gen.next(op)) {
    const auto k = static_cast<std::size_t>(op.slot);
    if (op.kind == OpKind::AdvanceHidden || op.kind == OpKind::AdvanceRecord) {
      end[k] = end[k - 1] + (op.kind == OpKind::AdvanceHidden ? carry_elems : record_elems);
      arena = std::max(arena, end[k]);
    }
  }
  return arena;
}

template class BasicExecutor<CpuBackend<float>>;
template class BasicExecutor<CpuBackend<double>>;

}  // namespace membptt
