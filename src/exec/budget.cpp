#include "membptt/exec/budget.hpp"

#include <charconv>
#include <cmath>
#include <sstream>

#include "membptt/cells/head.hpp"
#include "membptt/cells/recurrent_net.hpp"

namespace membptt {
namespace {

template <class T>
StateSizes sizes_of(const NetShape& shape) {
  // The executor's workspace: cursor, carry gradient, zero h_0, and the scratch of cell and head.
  const RecurrentNet<T> net(shape);
  const Head<T> head(shape);
  StateSizes s;
  s.hidden_bytes = net.carry_elems() * sizeof(T);
  s.internal_bytes = net.record_elems() * sizeof(T);
  s.workspace_bytes = 3 * s.hidden_bytes + net.scratch_bytes() + head.scratch_bytes();
  s.max_group_steps = executor_defer_steps(shape);
  if (s.max_group_steps > 1)
    s.group_step_bytes = (RecurrentNet<T>(shape, 2).scratch_bytes() - net.scratch_bytes()) / 2;
  return s;
}

}  // namespace

std::string bytes_text(double b) {
  std::ostringstream os;
  os.precision(0);
  os << std::fixed << b << " bytes";
  if (b >= 1 << 20) {
    os.precision(2);
    os << " (" << b / (1 << 20) << " MiB)";
  }
  return os.str();
}

BudgetSpec parse_budget(const std::string& given) {
  // Blanks around the budget are dropped (" 5%", "1 GiB "), as around the tool's numeric options.
  const std::size_t first = given.find_first_not_of(" \t"), last = given.find_last_not_of(" \t");
  const std::string text = first == std::string::npos ? std::string() : given.substr(first, last - first + 1);
  const std::string allowed =
      "a number of bytes with an optional unit (B; KB, MB, GB, TB: powers of 1000; KiB, MiB, GiB, TiB or K, M, G, T: "
      "powers of 1024) or a percentage of plain BPTT's memory such as 5%";
  // from_chars: no locale, no leading blanks, no hex.
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v, std::chars_format::general);
  if (ec == std::errc::result_out_of_range)
    throw PlanError("memory budget '" + text + "' is not allowed: the number is too large to represent (allowed is a finite number >= 0)");
  if (ec != std::errc() || text.empty()) throw PlanError("memory budget '" + text + "' is not allowed: use " + allowed);
  std::string unit(end, text.data() + text.size());
  unit.erase(0, unit.find_first_not_of(' '));
  constexpr double k = 1024.0;
  static const std::pair<const char*, double> kUnits[] = {
      {"", 1},          {"B", 1},        {"KB", 1e3},          {"MB", 1e6},              {"GB", 1e9},
      {"TB", 1e12},     {"KiB", k},      {"MiB", k * k},       {"GiB", k * k * k},       {"TiB", k * k * k * k},
      {"K", k},         {"M", k * k},    {"G", k * k * k},     {"T", k * k * k * k}};
  if (!std::isfinite(v) || v < 0) throw PlanError("memory budget '" + text + "' is not allowed: it must be a finite number >= 0");
  if (unit == "%") return {v, true};
  for (const auto& [name, scale] : kUnits)
    if (unit == name) {
      if (!std::isfinite(v * scale))
        throw PlanError("memory budget '" + text + "' is not allowed: it is too large to represent (allowed is a finite number of bytes)");
      return {v * scale, false};
    }
  throw PlanError("memory budget '" + text + "' has an unknown unit '" + unit + "': use " + allowed);
}

StateSizes state_sizes(const NetShape& shape, std::size_t scalar_bytes) {
  return scalar_bytes == sizeof(float) ? sizes_of<float>(shape) : sizes_of<double>(shape);
}

double least_bytes(Policy policy, std::int64_t length, const StateSizes& sizes) {
  const CostModel model{sizes.alpha(), 2.0};
  return static_cast<double>(sizes.workspace_at(length)) +
         least_budget(policy, length, model) * static_cast<double>(sizes.hidden_bytes);
}

Plan plan_for_bytes(std::optional<Policy> policy, std::int64_t length, double budget_bytes, const StateSizes& sizes,
                    double beta) {
  const CostModel model{sizes.alpha(), beta};
  const Policy p = policy.value_or(Policy::Msm);
  const double least = least_bytes(p, length, sizes);
  if (!(budget_bytes >= least))
    throw PlanError("memory budget " + bytes_text(budget_bytes) + " is below the least in which policy " +
                    std::string(policy_name(p)) + " runs " + std::to_string(length) + " steps: " + bytes_text(least) +
                    "; the workspace takes " + bytes_text(static_cast<double>(sizes.workspace_at(length))) + " and plain BPTT needs " +
                    bytes_text(static_cast<double>(sizes.plain_bptt_bytes(length))));
  const double units = (budget_bytes - static_cast<double>(sizes.workspace_at(length))) / static_cast<double>(sizes.hidden_bytes);
  Plan plan = policy ? make_plan(p, length, units, model) : make_auto_plan(length, units, model);
  plan.weight_gradient_group = sizes.group_steps(length);
  return plan;
}

}  // namespace membptt
