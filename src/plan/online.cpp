#include "membptt/plan/online.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include "membptt/plan/binomial.hpp"
#include "membptt/plan/dp.hpp"
#include "membptt/plan/planner.hpp"

namespace membptt {
namespace {

std::string fmt_number(double u) {
  std::ostringstream os;
  os.precision(10);
  os << u;
  return os.str();
}

std::int64_t add_saturating(std::int64_t a, std::int64_t b) {
  return a > std::numeric_limits<std::int64_t>::max() - b ? std::numeric_limits<std::int64_t>::max() : a + b;
}

// Slots are capped at what a sequence of kMaxLength steps can use (positions 1..T-2), so a budget
// of 10^20 units never sizes a table by it.
constexpr std::int64_t kMaxSlots = kMaxLength;

}  // namespace

OnlineCheckpointer::OnlineCheckpointer(std::int64_t slots) : m_(std::clamp<std::int64_t>(slots, 1, kMaxSlots)) {
  if (slots < 1) throw PlanError("online checkpointing needs at least 1 slot (h_0's), got " + std::to_string(slots));
  // A budget of many slots reserves as checkpoints come (reserve() sizes everything at once).
  cps_.reserve(static_cast<std::size_t>(std::min<std::int64_t>(m_, 4096)) + 1);
  cps_.push_back(0);
}

void OnlineCheckpointer::reserve() {
  cps_.reserve(static_cast<std::size_t>(m_) + 1);
  prefix_.resize(static_cast<std::size_t>(m_) + 2, 0);
  suffix_.resize(static_cast<std::size_t>(m_) + 2, 0);
}

std::int64_t OnlineCheckpointer::optimal_up_to() const {
  return binomial_saturating(m_ + 2, 2);  // beta(m, 2) = (m+1)(m+2)/2
}

std::int64_t OnlineCheckpointer::cost(std::int64_t T) const {
  std::int64_t c = T;
  const std::size_t k = cps_.size() - 1;
  for (std::size_t j = 0; j <= k; ++j) {
    const std::int64_t end = j < k ? cps_[j + 1] : T - 1;
    c = add_saturating(c, hsm_cost(end - cps_[j], m_ - static_cast<std::int64_t>(j)));
  }
  return c;
}

OnlineCheckpointer::Decision OnlineCheckpointer::decide(std::int64_t n) {
  Decision d;
  if (static_cast<std::int64_t>(cps_.size()) < m_) {  // a free slot: keep
    cps_.push_back(n);
    d.keep = true;
    return d;
  }
  if (m_ == 1) return d;  // only h_0's slot
  const std::int64_t T = n + 2;  // the shortest the sequence may still be
  // a_0..a_m: the kept states and h_n.
  auto a = [&](std::int64_t j) { return j < m_ ? cps_[static_cast<std::size_t>(j)] : n; };
  auto give_up = [&](std::int64_t i) {
    d.drop = static_cast<std::int32_t>(i);
    d.dropped = cps_[static_cast<std::size_t>(i)];
    d.keep = true;
    cps_.erase(cps_.begin() + i);
    cps_.push_back(n);
    return d;
  };
  if (T <= optimal_up_to()) {
    // Phase 1: the first checkpoint whose two gaps merged stay within one repetition's bound.
    for (std::int64_t i = 1; i < m_; ++i)
      if (a(i + 1) - a(i - 1) <= m_ - i + 2) return give_up(i);
    return d;
  }
  // Phase 2: the least cost should the sequence end at step T. G_j = a_{j+1} - a_j (j < m),
  // G_m = T - 1 - n = 1. Dropping a_i: segments before i keep their slots, G_{i-1} + G_i gets
  // m - i + 1, and every later one gains a slot.
  auto G = [&](std::int64_t j) { return j < m_ ? a(j + 1) - a(j) : T - 1 - n; };
  if (prefix_.size() < static_cast<std::size_t>(m_) + 2) reserve();  // phase 2 reached: once
  prefix_[0] = 0;
  for (std::int64_t j = 0; j < m_; ++j)
    prefix_[static_cast<std::size_t>(j) + 1] = add_saturating(prefix_[static_cast<std::size_t>(j)], hsm_cost(G(j), m_ - j));
  suffix_[static_cast<std::size_t>(m_) + 1] = 0;
  for (std::int64_t j = m_; j >= 1; --j)
    suffix_[static_cast<std::size_t>(j)] = add_saturating(suffix_[static_cast<std::size_t>(j) + 1], hsm_cost(G(j), m_ - j + 1));
  // Keeping nothing: the last segment runs from a_{m-1} to T - 1 with one slot.
  std::int64_t best = add_saturating(prefix_[static_cast<std::size_t>(m_) - 1], hsm_cost(T - 1 - a(m_ - 1), 1));
  std::int64_t best_i = 0;
  for (std::int64_t i = 1; i < m_; ++i) {
    const std::int64_t c = add_saturating(add_saturating(prefix_[static_cast<std::size_t>(i) - 1],
                                                         hsm_cost(G(i - 1) + G(i), m_ - i + 1)),
                                          suffix_[static_cast<std::size_t>(i) + 1]);
    if (c < best) {
      best = c;
      best_i = i;
    }
  }
  return best_i ? give_up(best_i) : d;
}

std::int64_t online_slots(double budget_units, double alpha) {
  if (!std::isfinite(alpha) || alpha < 1.0 || alpha > kMaxAlpha)
    throw PlanError("alpha " + fmt_number(alpha) + " is not allowed: an internal state holds a hidden state, so alpha must be 1 to " +
                    fmt_number(kMaxAlpha));
  if (!std::isfinite(budget_units))
    throw PlanError("memory budget " + fmt_number(budget_units) + " is not allowed: it must be a finite number of units");
  if (budget_units < alpha - 1e-9)
    throw PlanError("memory budget " + fmt_number(budget_units) +
                    " units is below the least in which online checkpointing runs: " + fmt_number(alpha) +
                    " units (one internal state)");
  const MemoryGrid g = MemoryGrid::for_alpha(alpha);
  // As offline: the free ticks are the budget less one internal state of alpha units (not its
  // rounded-up ticks), so a budget of exactly alpha plans as the offline planner's least does.
  const std::int64_t free = g.ticks_of(std::min(budget_units, alpha + static_cast<double>(kMaxSlots)) - alpha);
  return free / g.hidden + 1;
}

OnlineSchedule::OnlineSchedule(double budget_units, double alpha, OnlineBackward backward)
    : budget_(budget_units), alpha_(alpha), policy_(online_slots(budget_units, alpha)), asked_(backward),
      used_(backward) {
  grid_ = MemoryGrid::for_alpha(alpha);
  budget_ticks_ = grid_.ticks_of(std::min(budget_units, alpha + static_cast<double>(kMaxSlots)));
  free_ticks_ = grid_.ticks_of(std::min(budget_units, alpha + static_cast<double>(kMaxSlots)) - alpha);
  hsm_ = oracle_ = std::make_shared<RevolveOracle>(grid_);
}

void OnlineSchedule::reset() {
  policy_.clear();
  steps_ = cost_ = 0;
  finished_ = false;
  used_ = asked_;
  oracle_ = hsm_;
  stage_ = 0;
  segment_ = 0;
  gen_.reset();
}

std::span<const Op> OnlineSchedule::push() {
  if (finished_) throw std::logic_error("membptt: OnlineSchedule::push after finish (call reset first)");
  const std::int64_t t = steps_ + 1;
  std::size_t n = 0;
  if (t >= 2) {
    const OnlineCheckpointer::Decision d = policy_.decide(t - 1);
    if (d.drop) ops_[n++] = Op{OpKind::Drop, d.drop, d.dropped, 1};
    if (d.keep)
      ops_[n++] = Op{OpKind::Keep, static_cast<std::int32_t>(policy_.checkpoints().size() - 1), t - 1, 1};
  }
  ops_[n++] = Op{OpKind::Advance, -1, t, 1};
  steps_ = t;
  return {ops_, n};
}

std::int64_t OnlineSchedule::finish() {
  if (finished_) throw std::logic_error("membptt: OnlineSchedule::finish twice (call reset first)");
  steps_ += 1;
  finished_ = true;
  stage_ = 0;
  const std::int64_t T = steps_;
  const std::vector<std::int64_t>& c = policy_.checkpoints();
  const auto k = static_cast<std::int64_t>(c.size()) - 1;
  auto seg_len = [&](std::int64_t j) { return (j < k ? c[static_cast<std::size_t>(j) + 1] : T - 1) - c[static_cast<std::size_t>(j)]; };
  auto seg_free = [&](std::int64_t j) { return std::max<std::int64_t>(free_ticks_ - j * grid_.hidden, 0); };
  used_ = asked_;
  oracle_ = hsm_;
  if (asked_ == OnlineBackward::Msm) {
    std::int64_t longest = 0;
    for (std::int64_t j = 0; j <= k; ++j) longest = std::max(longest, seg_len(j));
    const std::int64_t free0 = seg_free(0);
    if (longest >= 1 && static_cast<double>(longest + 1) * static_cast<double>(free0 + 1) <= kMaxOnlineTableCells)
      oracle_ = std::make_shared<DpTable>(DpFamily::Msm, longest, free0, grid_);
    else
      used_ = OnlineBackward::Hsm;
  }
  if (used_ == OnlineBackward::Hsm) {
    cost_ = policy_.cost(T);
  } else {
    const auto& table = static_cast<const DpTable&>(*oracle_);
    cost_ = T;
    for (std::int64_t j = 0; j <= k; ++j) cost_ = add_saturating(cost_, table.cost(seg_len(j), seg_free(j)));
  }
  return steps_;
}

bool OnlineSchedule::next(Op& op) {
  if (!finished_) throw std::logic_error("membptt: OnlineSchedule::next before finish");
  const std::vector<std::int64_t>& c = policy_.checkpoints();
  const auto k = static_cast<std::int64_t>(c.size()) - 1;
  const std::int64_t T = steps_;
  switch (stage_) {
    case 0:  // the cursor holds h_{T-1}: record the last step
      op = Op{OpKind::AdvanceRecord, static_cast<std::int32_t>(k + 1), T, 1};
      stage_ = 1;
      return true;
    case 1:
      op = Op{OpKind::Backward, static_cast<std::int32_t>(k + 1), T, 1};
      stage_ = 2;
      segment_ = k;
      return true;
    default: break;
  }
  while (segment_ >= 0) {
    const std::int64_t j = segment_;
    const std::int64_t start = c[static_cast<std::size_t>(j)];
    if (stage_ == 2) {  // enter segment j: c_j .. its end, reversed with what the states below leave
      const std::int64_t len = (j < k ? c[static_cast<std::size_t>(j) + 1] : T - 1) - start;
      stage_ = 3;
      if (len >= 1) {
        const std::int64_t free = std::max<std::int64_t>(free_ticks_ - j * grid_.hidden, 0);
        gen_ = std::make_unique<ScheduleGenerator>(*oracle_, len, free, grid_);
        op = Op{OpKind::Restore, static_cast<std::int32_t>(j), start, 1};
        return true;
      }
    }
    if (gen_) {
      if (gen_->next(op)) {  // the generator's slot 0 is c_j's slot, its position 0 is c_j
        if (op.slot >= 0) op.slot += static_cast<std::int32_t>(j);
        op.t += start;
        return true;
      }
      gen_.reset();
    }
    --segment_;
    stage_ = 2;
    if (j >= 1) {
      op = Op{OpKind::Pop, static_cast<std::int32_t>(j), start, 1};
      return true;
    }
  }
  return false;
}

std::int64_t online_cost(std::int64_t length, double budget_units, double alpha, OnlineBackward backward) {
  if (length <= 0 || length > kMaxLength)
    throw PlanError("sequence length " + std::to_string(length) + " is not allowed: allowed is 1 to " + std::to_string(kMaxLength));
  if (backward == OnlineBackward::Hsm) {
    OnlineCheckpointer p(std::min(online_slots(budget_units, alpha), std::max<std::int64_t>(length, 1)));
    for (std::int64_t n = 1; n + 2 <= length; ++n) p.decide(n);
    return p.cost(length);
  }
  // Slots past the length change nothing (every state is kept either way): a smaller budget keeps
  // the MSM table small without changing the plan. (Memory above plain BPTT's is useless too.)
  OnlineSchedule s(std::min(budget_units, alpha * static_cast<double>(length) + static_cast<double>(length)), alpha, backward);
  for (std::int64_t t = 1; t < length; ++t) s.push();
  s.finish();
  return s.cost();
}

}  // namespace membptt
