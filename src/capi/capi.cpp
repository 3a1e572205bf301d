// The C API (include/membptt/membptt.h) over the planner: every entry point catches what the
// library throws and turns it into a status and this thread's one-line message.
#include "membptt/membptt.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <new>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "internal.hpp"
#include "membptt/exec/budget.hpp"
#include "membptt/plan/online.hpp"
#include "membptt/plan/planner.hpp"


namespace membptt::capi {
std::string& last_error() {
  thread_local std::string message;
  return message;
}

std::optional<Policy> policy_of(const char* name) {
  if (name == nullptr || std::string(name) == "auto") return std::nullopt;
  if (auto p = parse_policy(name)) return *p;
  std::string allowed = "auto";
  for (Policy p : kAllPolicies) allowed += ", " + std::string(policy_name(p));
  throw PlanError("unknown policy '" + std::string(name) + "': allowed are " + allowed);
}

void check_length(std::int64_t length) {
  if (length < 1 || length > kMaxLength)
    throw PlanError("sequence length " + std::to_string(length) + " is not allowed: allowed is 1 to " +
                    std::to_string(kMaxLength));
}
}  // namespace membptt::capi

namespace {

using namespace membptt;

using capi::guarded;
using capi::policy_of;
using capi::require;

std::string number_text(double v) {
  std::ostringstream os;
  os.precision(10);
  os << v;
  return os.str();
}

double units_of(double memory, int32_t unit, std::int64_t length, const CostModel& model, double hidden_bytes) {
  if (!std::isfinite(memory) || memory < 0)
    throw PlanError("memory budget " + number_text(memory) + " is not allowed: it must be a finite number >= 0");
  switch (unit) {
    case MEMBPTT_UNIT_UNITS: return memory;
    case MEMBPTT_UNIT_PERCENT: return std::min(memory / 100.0 * plain_bptt_units(length, model), std::numeric_limits<double>::max());
    case MEMBPTT_UNIT_BYTES:
      if (!std::isfinite(hidden_bytes) || !(hidden_bytes > 0))
        throw PlanError("hidden_bytes " + number_text(hidden_bytes) +
                        " is not allowed: a budget in bytes needs the bytes of one hidden state, a finite number > 0");
      return memory / hidden_bytes;
    default:
      throw PlanError("unit " + std::to_string(unit) + " is not allowed: use 0 (units), 1 (percent) or 2 (bytes)");
  }
}

}  // namespace

extern "C" {

int32_t membptt_api_version(void) { return MEMBPTT_API_VERSION; }

const char* membptt_last_error(void) { return capi::last_error().c_str(); }

membptt_status membptt_plan_make(const char* policy, int64_t length, double memory, int32_t unit, double alpha,
                                 double beta, double hidden_bytes, membptt_plan** out) {
  return guarded([&] {
    require(out != nullptr, "out");
    *out = nullptr;
    const std::optional<Policy> p = policy_of(policy);
    const CostModel model{alpha, beta, 1.0};
    const double units = units_of(memory, unit, length, model, hidden_bytes);
    auto* h = new membptt_plan{p ? make_plan(*p, length, units, model) : make_auto_plan(length, units, model)};
    *out = h;
  });
}

void membptt_plan_free(membptt_plan* plan) { delete plan; }

const char* membptt_plan_policy(const membptt_plan* plan) { return policy_name(plan->plan.policy).data(); }
int64_t membptt_plan_length(const membptt_plan* plan) { return plan->plan.length; }
int64_t membptt_plan_forward_steps(const membptt_plan* plan) { return plan->plan.forward_steps; }
double membptt_plan_peak_units(const membptt_plan* plan) { return plan->plan.peak_units; }
double membptt_plan_budget_units(const membptt_plan* plan) { return plan->plan.budget_units; }
double membptt_plan_alpha(const membptt_plan* plan) { return plan->plan.model.alpha; }
double membptt_plan_beta(const membptt_plan* plan) { return plan->plan.model.beta; }
double membptt_plan_time_ratio(const membptt_plan* plan) { return plan->plan.time_ratio(); }
int32_t membptt_plan_max_slots(const membptt_plan* plan) { return plan->plan.max_slots; }
int32_t membptt_plan_optimal(const membptt_plan* plan) { return plan->plan.optimal ? 1 : 0; }
int64_t membptt_plan_lower_bound(const membptt_plan* plan) { return plan->plan.lower_bound; }

membptt_status membptt_plan_ops(const membptt_plan* plan, membptt_op* ops, int64_t capacity, int64_t* total) {
  return guarded([&] {
    require(plan != nullptr, "plan");
    require(total != nullptr, "total");
    if (capacity < 0) throw PlanError("capacity " + std::to_string(capacity) + " is not allowed: it must be >= 0");
    require(capacity == 0 || ops != nullptr, "ops (with a capacity > 0)");
    ScheduleGenerator gen = plan->plan.schedule();
    Op op{};
    std::int64_t n = 0;
    while (gen.next(op)) {
      if (n < capacity) ops[n] = {static_cast<int64_t>(op.kind), op.t, op.slot, op.count};
      ++n;
    }
    *total = n;
  });
}

membptt_status membptt_curve(const char* policy, int64_t length, double alpha, const double* budgets, int64_t n,
                             int64_t* forward_steps) {
  return guarded([&] {
    if (n < 0) throw PlanError("n " + std::to_string(n) + " is not allowed: it must be >= 0");
    require(n == 0 || (budgets != nullptr && forward_steps != nullptr), "budgets and forward_steps (with n > 0)");
    const Policy p = policy_of(policy).value_or(Policy::Msm);
    const CostModel model{alpha, 2.0, 1.0};
    std::vector<double> b(budgets, budgets + n);
    for (double v : b)
      if (!std::isfinite(v)) throw PlanError("memory budget " + number_text(v) + " is not allowed: it must be a finite number of units");
    const std::vector<CurvePoint> pts = cost_curve(p, length, model, b);
    // cost_curve leaves out the budgets below the least, keeping the order of the rest.
    std::size_t k = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      if (k < pts.size() && pts[k].budget_units == b[i])
        forward_steps[i] = pts[k++].forward_steps;
      else
        forward_steps[i] = -1;
    }
  });
}

membptt_status membptt_least_budget(const char* policy, int64_t length, double alpha, double* units) {
  return guarded([&] {
    require(units != nullptr, "units");
    *units = least_budget(policy_of(policy).value_or(Policy::Msm), length, CostModel{alpha, 2.0, 1.0});
  });
}

}  // extern "C"

struct membptt_online {
  membptt::OnlineSchedule schedule;
};

namespace {
membptt_op c_op(const membptt::Op& op) {
  return membptt_op{static_cast<int64_t>(op.kind), op.t, op.slot, op.count};
}
membptt::OnlineBackward backward_of(const char* name) {
  if (name == nullptr || std::string(name) == "msm") return membptt::OnlineBackward::Msm;
  if (std::string(name) == "hsm") return membptt::OnlineBackward::Hsm;
  throw membptt::PlanError("online backward '" + std::string(name) + "' is not allowed: use msm or hsm");
}
}  // namespace

extern "C" {

membptt_status membptt_online_create(double budget_units, double alpha, const char* backward, membptt_online** out) {
  return guarded([&] {
    require(out != nullptr, "out");
    *out = new membptt_online{OnlineSchedule(budget_units, alpha, backward_of(backward))};
  });
}

void membptt_online_free(membptt_online* online) { delete online; }

membptt_status membptt_online_push(membptt_online* online, membptt_op* ops, int64_t* n) {
  return guarded([&] {
    require(online != nullptr && ops != nullptr && n != nullptr, "online, ops and n");
    if (online->schedule.finished()) throw PlanError("membptt_online_push after membptt_online_finish: the sequence has ended");
    int64_t k = 0;
    for (const Op& op : online->schedule.push()) ops[k++] = c_op(op);
    *n = k;
  });
}

membptt_status membptt_online_finish(membptt_online* online, int64_t* length, int64_t* forward_steps) {
  return guarded([&] {
    require(online != nullptr, "online");
    if (online->schedule.finished()) throw PlanError("membptt_online_finish twice: the sequence has ended");
    const std::int64_t T = online->schedule.finish();
    if (length) *length = T;
    if (forward_steps) *forward_steps = online->schedule.cost();
  });
}

membptt_status membptt_online_next(membptt_online* online, membptt_op* ops, int64_t capacity, int64_t* n) {
  return guarded([&] {
    require(online != nullptr && n != nullptr && (capacity == 0 || ops != nullptr), "online, n and ops (with capacity > 0)");
    if (!online->schedule.finished()) throw PlanError("membptt_online_next before membptt_online_finish");
    int64_t k = 0;
    Op op{};
    while (k < capacity && online->schedule.next(op)) ops[k++] = c_op(op);
    *n = k;
  });
}

int64_t membptt_online_slots(const membptt_online* online) { return online ? online->schedule.slots() : 0; }

int64_t membptt_online_optimal_up_to(const membptt_online* online) {
  return online ? online->schedule.policy().optimal_up_to() : 0;
}

membptt_status membptt_online_cost(int64_t length, double budget_units, double alpha, const char* backward,
                                  int64_t* forward_steps) {
  return guarded([&] {
    require(forward_steps != nullptr, "forward_steps");
    *forward_steps = online_cost(length, budget_units, alpha, backward_of(backward));
  });
}

membptt_status membptt_parse_budget(const char* text, double* value, int32_t* is_percent) {
  return guarded([&] {
    require(text != nullptr && value != nullptr && is_percent != nullptr, "text, value and is_percent");
    const BudgetSpec s = parse_budget(text);
    *value = s.value;
    *is_percent = s.percent ? 1 : 0;
  });
}

}  // extern "C"
