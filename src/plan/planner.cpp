#include "membptt/plan/planner.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "membptt/plan/binomial.hpp"
#include "membptt/plan/blocked.hpp"
#include "membptt/plan/dp.hpp"
#include "membptt/schedule/simulator.hpp"

namespace membptt {
namespace {

// --- the fixed rules of the baselines and of the closed form -------------------------------

struct FullOracle final : SplitOracle {
  Split split(std::int64_t t, std::int64_t, bool) const override {
    return t <= 1 ? Split{SplitKind::Leaf, t} : Split{SplitKind::Internal, 1};
  }
};

struct QuadraticOracle final : SplitOracle {
  Split split(std::int64_t t, std::int64_t, bool) const override {
    return t <= 1 ? Split{SplitKind::Leaf, t} : Split{SplitKind::Quadratic, 0};
  }
};

// Chen et al. (2016), sqrt(T): a hidden checkpoint every k steps on the first pass, each segment
// then recomputed once with all its internal states kept.
struct ChenSqrtOracle final : SplitOracle {
  explicit ChenSqrtOracle(std::int64_t seg) : k(seg) {}
  Split split(std::int64_t t, std::int64_t, bool) const override {
    if (t <= 1) return {SplitKind::Leaf, t};
    if (t <= k) return {SplitKind::Internal, 1};
    return {SplitKind::Hidden, k};
  }
  std::int64_t k;
};

// Chen et al. (2016), recursive: halve each segment with a hidden checkpoint, O(log T) memory.
struct ChenRecursiveOracle final : SplitOracle {
  Split split(std::int64_t t, std::int64_t, bool) const override {
    if (t <= 1) return {SplitKind::Leaf, t};
    return {SplitKind::Hidden, t / 2};
  }
};

std::int64_t chen_segment(std::int64_t length) {
  auto k = static_cast<std::int64_t>(std::ceil(std::sqrt(static_cast<double>(length))));
  return std::max<std::int64_t>(k, 1);
}

std::string fmt_units(double u) {
  std::ostringstream os;
  os.precision(10);
  os << u;
  return os.str();
}

void validate(std::int64_t length, const CostModel& model) {
  if (length <= 0 || length > kMaxLength)
    throw PlanError("sequence length " + std::to_string(length) + " is not allowed: allowed is 1 to " + std::to_string(kMaxLength));
  if (!std::isfinite(model.alpha) || model.alpha < 1.0 || model.alpha > kMaxAlpha)
    throw PlanError("alpha " + fmt_units(model.alpha) + " is not allowed: an internal state holds a hidden state, so alpha must be 1 to " +
                    fmt_units(kMaxAlpha));
  if (!std::isfinite(model.beta) || model.beta < 0.0 || model.beta > kMaxCostRatio)
    throw PlanError("beta " + fmt_units(model.beta) + " is not allowed: the backward/forward cost ratio must be 0 to " +
                    fmt_units(kMaxCostRatio));
  if (!std::isfinite(model.record) || model.record <= 0.0 || model.record > kMaxCostRatio)
    throw PlanError("record cost " + fmt_units(model.record) +
                    " is not allowed: the cost of a recording step over a plain one must be > 0 and at most " + fmt_units(kMaxCostRatio));
}

// No policy is helped by more memory than storing every step's internal state (plain BPTT) or,
// for a fixed-memory policy, than its own least: a larger budget (1e21 bytes, say) is cut to that
// before it becomes integer ticks, which it might overflow.
double useful_budget(double budget_units, double least, std::int64_t length, const CostModel& model) {
  return std::min(budget_units, std::max(least, plain_bptt_units(length, model)));
}

bool is_table_policy(Policy p) { return p == Policy::Hsm || p == Policy::Ism || p == Policy::Msm; }

DpFamily family_of(Policy p) {
  return p == Policy::Hsm ? DpFamily::Hsm : p == Policy::Ism ? DpFamily::Ism : DpFamily::Msm;
}

// Memory beyond which a table policy cannot get cheaper: every internal state (ISM, MSM) or
// every hidden state (HSM) stored.
std::int64_t saturating_ticks(Policy p, std::int64_t length, MemoryGrid g) {
  return (p == Policy::Hsm ? g.hidden : g.internal) * std::max<std::int64_t>(length - 1, 0);
}

bool table_fits(std::int64_t length, std::int64_t free_ticks, std::int64_t max_cells = kMaxTableCells) {
  return length <= kMaxTableLength &&
         static_cast<double>(length + 1) * static_cast<double>(free_ticks + 1) <= static_cast<double>(max_cells);
}

std::shared_ptr<const DpTable> solve_table(Policy p, std::int64_t length, std::int64_t free_ticks, MemoryGrid g,
                                           std::int64_t max_cells = kMaxTableCells) {
  if (!table_fits(length, free_ticks, max_cells))
    throw PlanError("policy " + std::string(policy_name(p)) + " at " + std::to_string(length) + " steps and this budget needs its table of " +
                    fmt_units(static_cast<double>(length + 1) * static_cast<double>(free_ticks + 1)) +
                    " cells, past the planner's limits (" + std::to_string(kMaxTableLength) + " steps, " +
                    std::to_string(max_cells) + " cells); policy msm plans any length");
  return std::make_shared<DpTable>(family_of(p), length, free_ticks, g);
}

// The oracle of a table policy at any size: the exact table where it fits; past it HSM's closed
// form (the same costs) or MSM's blocked plan. `optimal` tells which.
void set_table_policy_oracle(Plan& plan) {
  const Policy p = plan.policy;
  if (p != Policy::Hsm) {
    if (auto twice = twice_run_plan(plan.length, plan.free_ticks, plan.grid)) {  // optimal where it reaches
      plan.oracle = std::move(twice);
      plan.forward_steps = msm_lower_bound(plan.length, plan.free_ticks, plan.grid);
      return;
    }
  }
  if (table_fits(plan.length, plan.free_ticks) || p == Policy::Ism) {
    auto table = solve_table(p, plan.length, plan.free_ticks, plan.grid);
    plan.forward_steps = table->cost(plan.length, plan.free_ticks);
    plan.oracle = std::move(table);
  } else if (p == Policy::Hsm) {
    plan.oracle = std::make_shared<RevolveOracle>(plan.grid);
    plan.forward_steps = hsm_cost(plan.length, plan.free_ticks / plan.grid.hidden + 1);
  } else {
    BlockedMsm b = choose_blocked_msm(plan.length, plan.free_ticks, plan.grid, kBlockedTableCells, kBlockDpCells);
    plan.optimal = false;
    plan.oracle = std::move(b.oracle);
    plan.forward_steps = b.forward_steps;
    plan.table_length = b.table_length;
    plan.block = b.block;
    plan.block_ticks = b.inner_ticks;
  }
}

std::shared_ptr<const SplitOracle> fixed_oracle(Policy p, std::int64_t length, MemoryGrid g) {
  switch (p) {
    case Policy::Full: return std::make_shared<FullOracle>();
    case Policy::Quadratic: return std::make_shared<QuadraticOracle>();
    case Policy::Revolve: return std::make_shared<RevolveOracle>(g);
    case Policy::ChenSqrt: return std::make_shared<ChenSqrtOracle>(chen_segment(length));
    case Policy::ChenRecursive: return std::make_shared<ChenRecursiveOracle>();
    default: return nullptr;
  }
}

// Walks the schedule once, without a budget, for its exact cost and peak.
SimulationReport dry_run(const SplitOracle& oracle, std::int64_t length, std::int64_t free_ticks, MemoryGrid g,
                         double alpha) {
  ScheduleGenerator gen(oracle, length, free_ticks, g);
  Simulator sim(length, alpha);
  Op op{};
  while (gen.next(op))
    if (!sim.apply(op)) break;
  SimulationReport r = sim.finish();
  if (!r.ok) throw std::logic_error("membptt planner produced an invalid schedule: " + r.error);
  return r;
}

}  // namespace

double least_budget(Policy policy, std::int64_t length, const CostModel& model) {
  validate(length, model);
  switch (policy) {
    case Policy::Full: return plain_bptt_units(length, model);
    case Policy::ChenSqrt:
    case Policy::ChenRecursive: {
      const MemoryGrid g = MemoryGrid::for_alpha(model.alpha);
      return dry_run(*fixed_oracle(policy, length, g), length, 0, g, model.alpha).peak_units;
    }
    default: return model.alpha;  // the internal state of the step being backpropagated
  }
}

Plan make_plan(Policy policy, std::int64_t length, double budget_units, const CostModel& model) {
  validate(length, model);
  if (!std::isfinite(budget_units))
    throw PlanError("memory budget " + fmt_units(budget_units) + " is not allowed: it must be a finite number of units");
  if (policy == Policy::Quadratic && static_cast<double>(length) * static_cast<double>(length + 1) / 2 > kMaxQuadraticSteps)
    throw PlanError("policy quadratic at " + std::to_string(length) + " steps would run " +
                    fmt_units(static_cast<double>(length) * static_cast<double>(length + 1) / 2) +
                    " forward steps: allowed are at most " + std::to_string(kMaxQuadraticSteps) + " (T up to 44720)");
  const double least = least_budget(policy, length, model);
  if (budget_units < least - 1e-9)
    throw PlanError("memory budget " + fmt_units(budget_units) + " units is below the least in which policy " +
                    std::string(policy_name(policy)) + " runs " + std::to_string(length) + " steps: " +
                    fmt_units(least) + " units");

  Plan plan;
  plan.policy = policy;
  plan.length = length;
  plan.model = model;
  plan.budget_units = budget_units;
  plan.grid = MemoryGrid::for_alpha(model.alpha);
  plan.free_ticks = plan.grid.ticks_of(useful_budget(budget_units, least, length, model) - model.alpha);
  if (is_table_policy(policy)) {
    plan.free_ticks = std::min(plan.free_ticks, saturating_ticks(policy, length, plan.grid));
    set_table_policy_oracle(plan);
  } else {
    if (policy == Policy::Full) plan.free_ticks = saturating_ticks(Policy::Full, length, plan.grid);
    plan.oracle = fixed_oracle(policy, length, plan.grid);
  }
  const SimulationReport run = dry_run(*plan.oracle, length, plan.free_ticks, plan.grid, model.alpha);
  if (is_table_policy(policy) && run.forward_steps != plan.forward_steps)
    throw std::logic_error("membptt planner: schedule cost differs from the table's or the closed form's");
  if (policy == Policy::Revolve && run.forward_steps != hsm_cost(length, plan.free_ticks / plan.grid.hidden + 1))
    throw std::logic_error("membptt planner: revolve schedule cost differs from the closed form");
  plan.forward_steps = run.forward_steps;
  plan.peak_units = run.peak_units;
  plan.max_slots = run.max_slots;
  plan.lower_bound = plan.optimal ? plan.forward_steps : msm_lower_bound(length, plan.free_ticks, plan.grid);
  plan.optimal = plan.optimal || plan.lower_bound == plan.forward_steps;  // a blocked plan on its bound
  if (plan.lower_bound > plan.forward_steps) throw std::logic_error("membptt planner: a plan below its proven lower bound");
  if (plan.peak_units > budget_units + 1e-9) throw std::logic_error("membptt planner: plan exceeds its budget");
  return plan;
}

Plan make_auto_plan(std::int64_t length, double budget_units, const CostModel& model) {
  validate(length, model);
  if (budget_units >= plain_bptt_units(length, model)) return make_plan(Policy::Full, length, budget_units, model);
  return make_plan(Policy::Msm, length, budget_units, model);  // below MSM's least: throws, naming it
}

std::vector<CurvePoint> cost_curve(Policy policy, std::int64_t length, const CostModel& model,
                                   const std::vector<double>& budgets) {
  validate(length, model);
  std::vector<CurvePoint> out;
  const double least = least_budget(policy, length, model);
  if (is_table_policy(policy)) {
    const MemoryGrid g = MemoryGrid::for_alpha(model.alpha);
    double top = least;
    for (double b : budgets) top = std::max(top, useful_budget(b, least, length, model));
    const std::int64_t max_ticks =
        std::min(g.ticks_of(top - model.alpha), saturating_ticks(policy, length, g));
    if (!table_fits(length, max_ticks, kMaxCurveTableCells) && policy != Policy::Ism) {
      // Past the table: each point is a plan of its own (HSM's closed form, MSM's blocked plan).
      for (double b : budgets)
        if (b >= least - 1e-9) out.push_back({b, make_plan(policy, length, b, model).forward_steps});
      return out;
    }
    auto table = solve_table(policy, length, max_ticks, g, kMaxCurveTableCells);
    for (double b : budgets) {
      if (b < least - 1e-9) continue;
      const std::int64_t f = std::min(g.ticks_of(useful_budget(b, least, length, model) - model.alpha), max_ticks);
      out.push_back({b, table->cost(length, f)});
    }
    return out;
  }
  if (policy == Policy::Revolve) {
    const MemoryGrid g = MemoryGrid::for_alpha(model.alpha);
    for (double b : budgets)
      if (b >= least - 1e-9)
        out.push_back({b, hsm_cost(length, g.ticks_of(useful_budget(b, least, length, model) - model.alpha) / g.hidden + 1)});
    return out;
  }
  // Fixed-memory policies: one cost, valid at every budget from their least.
  const std::int64_t cost = make_plan(policy, length, std::max(least, 0.0), model).forward_steps;
  for (double b : budgets)
    if (b >= least - 1e-9) out.push_back({b, cost});
  return out;
}

}  // namespace membptt
