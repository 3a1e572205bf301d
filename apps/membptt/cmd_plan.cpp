// `membptt plan` and `membptt curve`: the planner from the command line.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cmath>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli_common.hpp"
#include "cmd_online.hpp"
#include "commands.hpp"
#include "membptt/plan/planner.hpp"
#include "membptt/schedule/simulator.hpp"
#include "svg.hpp"

namespace membptt::cli {
namespace {

constexpr std::int64_t kMaxDrawnOps = 200'000;
// Any finite budget or state size that a double holds exactly enough (a budget above plain BPTT's
// memory plans as plain BPTT).
constexpr double kMaxBudget = std::numeric_limits<double>::max();
constexpr double kMaxBytes = 1e18;

std::string policy_list() {
  std::string s;
  for (Policy p : kAllPolicies) s += (s.empty() ? "" : ", ") + std::string(policy_name(p));
  return s;
}

Policy policy_or_throw(const std::string& name) {
  if (auto p = parse_policy(name)) return *p;
  throw UsageError("unknown policy '" + name + "': allowed are " + policy_list());
}

struct ModelOptions {
  double alpha = 1.0;
  double beta = 2.0;
  double record = 1.0;
  double hidden_bytes = 0;    // 0: not given
  double internal_bytes = 0;  // 0: not given
  CostModel model() const {
    CostModel m{alpha, beta, record};
    if (internal_bytes > 0) {
      if (!(hidden_bytes > 0)) throw UsageError("--internal-bytes needs --hidden-bytes");
      m.alpha = internal_bytes / hidden_bytes;
    }
    return m;
  }
};

void add_model_options(CLI::App* cmd, ModelOptions& o) {
  cmd->add_option("--alpha", o.alpha, "internal state size / hidden state size (>= 1)")
      ->capture_default_str()
      ->transform(number_in(1, kMaxAlpha));
  cmd->add_option("--beta", o.beta, "backward step cost / forward step cost, to predict time")
      ->capture_default_str()
      ->transform(number_in(0, kMaxCostRatio));
  cmd->add_option("--record-cost", o.record, "cost of a recording forward step over a plain one (> 0), to predict time")
      ->capture_default_str()
      ->transform(number_in(0, kMaxCostRatio, true));
  cmd->add_option("--hidden-bytes", o.hidden_bytes, "bytes of one hidden state (plan: for --unit bytes; with --internal-bytes, sets alpha)")->transform(number_in(1, kMaxBytes));
  cmd->add_option("--internal-bytes", o.internal_bytes, "bytes of one internal state (sets alpha)")->transform(number_in(1, kMaxBytes));
}

double budget_in_units(double memory, const std::string& unit, std::int64_t length, const CostModel& model,
                       const ModelOptions& o) {
  if (!std::isfinite(memory) || memory < 0)
    throw UsageError(fmt::format("memory budget {} is not allowed: it must be a finite number >= 0", memory));
  if (unit == "slots") return memory;
  if (unit == "percent") return std::min(memory / 100.0 * plain_bptt_units(length, model), std::numeric_limits<double>::max());
  if (unit == "bytes") {
    if (!(o.hidden_bytes > 0)) throw UsageError("--unit bytes needs --hidden-bytes (bytes of one hidden state)");
    return memory / o.hidden_bytes;
  }
  throw UsageError("unknown unit '" + unit + "': allowed are slots, bytes, percent");
}

nlohmann::json op_json(const Op& op) {
  nlohmann::json j{{"op", std::string(op_name(op.kind))}, {"t", op.t}};
  if (op.slot >= 0) j["slot"] = op.slot;
  if (op.kind == OpKind::Advance) j["count"] = op.count;
  return j;
}

std::vector<Op> ops_for_drawing(const Plan& plan) {
  std::vector<Op> ops;
  ScheduleGenerator gen = plan.schedule();
  Op op{};
  while (gen.next(op)) {
    if (static_cast<std::int64_t>(ops.size()) >= kMaxDrawnOps)
      throw UsageError(fmt::format("the schedule has more than {} operations, too many to draw: use a shorter --length", kMaxDrawnOps));
    ops.push_back(op);
  }
  return ops;
}

int run_plan(std::int64_t length, double memory, const std::string& unit, const std::string& policy_name_arg,
             const ModelOptions& o, bool json, bool with_schedule, const std::string& svg_path) {
  const CostModel model = o.model();
  const Policy policy = policy_or_throw(policy_name_arg);
  const double budget = budget_in_units(memory, unit, length, model, o);
  const Plan plan = [&] {
    try {
      return make_plan(policy, length, budget, model);
    } catch (const PlanError& e) {
      if (unit != "bytes") throw;
      // The planner speaks in hidden states: say what the user's bytes are in them.
      throw PlanError(fmt::format("{} (--memory {:g} bytes is {:g} units of --hidden-bytes {:g}; the least is {:g} bytes)", e.what(),
                                  memory, budget, o.hidden_bytes, least_budget(policy, length, model) * o.hidden_bytes));
    }
  }();
  const double plain = plain_bptt_units(length, model);

  if (json) {
    nlohmann::json j{{"policy", std::string(policy_name(policy))},
                     {"length", length},
                     {"memory", budget},
                     {"alpha", model.alpha},
                     {"beta", model.beta},
                     {"forward_ops", plan.forward_steps},
                     {"backward_ops", length},
                     {"forward_per_step", plan.steps_per_step()},
                     {"peak_memory", plan.peak_units},
                     {"plain_bptt_memory", plain},
                     {"memory_saving", 1.0 - plan.peak_units / plain},
                     {"time_ratio", plan.time_ratio()},
                     {"max_slots", plan.max_slots},
                     {"optimal", plan.optimal},
                     {"lower_bound_forward_ops", plan.lower_bound}};
    if (!plan.optimal) j["blocked"] = {{"table_length", plan.table_length}, {"block", plan.block}, {"block_ticks", plan.block_ticks}};
    if (o.hidden_bytes > 0) {
      j["peak_bytes"] = plan.peak_units * o.hidden_bytes;
      j["plain_bptt_bytes"] = plain * o.hidden_bytes;
    }
    if (with_schedule) {
      auto& ops = j["ops"] = nlohmann::json::array();
      ScheduleGenerator gen = plan.schedule();
      Op op{};
      while (gen.next(op)) ops.push_back(op_json(op));
    }
    std::cout << j.dump() << "\n";
  } else {
    fmt::print("policy {}   T = {}   alpha = {:g}   beta = {:g}\n", policy_name(policy), length, model.alpha, model.beta);
    if (budget > plain)
      fmt::print("  budget          {:.6g} units (above plain BPTT's {:.6g}: planned as that)\n", budget, plain);
    else
      fmt::print("  budget          {:.6g} units ({:.2f}% of plain BPTT's {:.6g})\n", budget, 100 * budget / plain, plain);
    fmt::print("  peak memory     {:.6g} units ({:.2f}% of plain BPTT): saves {:.2f}%\n", plan.peak_units,
               100 * plan.peak_units / plain, 100 * (1 - plan.peak_units / plain));
    if (o.hidden_bytes > 0)
      fmt::print("  peak bytes      {:.0f} (plain BPTT {:.0f})\n", plan.peak_units * o.hidden_bytes, plain * o.hidden_bytes);
    fmt::print("  forward steps   {} ({:.4f} per step; plain BPTT runs {})\n", plan.forward_steps, plan.steps_per_step(), length);
    fmt::print("  predicted time  {:.4f} x plain BPTT (backward costs beta = {:g} forward steps)\n", plan.time_ratio(), model.beta);
    const bool dynamic_program = policy == Policy::Msm || policy == Policy::Hsm || policy == Policy::Ism;
    const auto steps = [](std::int64_t n) { return fmt::format("{} step{}", n, n == 1 ? "" : "s"); };
    if (dynamic_program && plan.optimal)
      fmt::print("  optimality      optimal: no {} plan within this budget runs fewer forward steps\n", policy_name(policy));
    if (!plan.optimal)
      fmt::print("  optimality      within {:.4f}x of the optimum: every MSM plan runs >= {} forward steps\n"
                 "                  (blocked plan past the exact table: {})\n",
                 static_cast<double>(plan.forward_steps) / static_cast<double>(plan.lower_bound), plan.lower_bound,
                 plan.block_ticks < 0 ? fmt::format("table to {}, hidden splits every {} above", steps(plan.table_length), steps(plan.block))
                                      : fmt::format("Revolve over blocks of {}, {:g} units kept for them, table to {}", steps(plan.block),
                                                    plan.grid.units_of(plan.block_ticks), steps(plan.table_length)));
    if (with_schedule) {
      ScheduleGenerator gen = plan.schedule();
      Op op{};
      while (gen.next(op)) {
        if (op.kind == OpKind::Advance)
          fmt::print("{} {}..{}\n", op_name(op.kind), op.t, op.t + op.count - 1);
        else
          fmt::print("{} {} slot {}\n", op_name(op.kind), op.t, op.slot);
      }
    }
  }
  if (!svg_path.empty()) {
    const auto ops = ops_for_drawing(plan);
    const std::string title = fmt::format("{} schedule: T={}, budget {:.4g} units ({:.1f}% of plain BPTT), {} forward steps",
                                          policy_name(policy), length, budget, 100 * budget / plain, plan.forward_steps);
    write_file_atomic(svg_path, schedule_svg(ops, length, title));
  }
  return 0;
}

// Budgets for the curve: from the least any policy needs to plain BPTT's, evenly in log space,
// plus each fixed-memory policy's own point.
std::vector<double> curve_budgets(std::int64_t length, const CostModel& model, int points) {
  const double lo = 1.0 + model.alpha, hi = plain_bptt_units(length, model);
  std::vector<double> b;
  for (int i = 0; i < points; ++i) b.push_back(lo * std::pow(hi / lo, static_cast<double>(i) / (points - 1)));
  return b;
}

int run_curve(std::int64_t length, const ModelOptions& o, int points, const std::string& csv_path,
              const std::string& svg_path) {
  const CostModel model = o.model();
  if (points < 2 || points > 100000) throw UsageError(fmt::format("--points {} is not allowed: use 2..100000", points));
  const double plain = plain_bptt_units(length, model);
  const std::vector<double> budgets = curve_budgets(length, model, points);

  std::vector<Series> series;
  std::string csv = "policy,budget_units,memory_fraction,forward_steps,forward_per_step,time_ratio\n";
  fmt::print("cost per step (forward steps / T) against memory, T = {}, alpha = {:g}, beta = {:g}\n", length, model.alpha, model.beta);
  fmt::print("{:>10} {:>8}", "budget", "% plain");
  std::vector<std::vector<CurvePoint>> all;
  std::vector<Policy> shown;
  for (Policy p : kAllPolicies) {
    std::vector<CurvePoint> pts;
    try {
      if (p == Policy::Full || p == Policy::ChenSqrt || p == Policy::ChenRecursive) {
        const double least = least_budget(p, length, model);
        pts = cost_curve(p, length, model, {least});
      } else {
        pts = cost_curve(p, length, model, budgets);
      }
    } catch (const PlanError& e) {
      fmt::print(stderr, "note: {} left out: {}\n", policy_name(p), e.what());
      continue;
    }
    Series s{std::string(policy_name(p)), {}, {}};
    for (const auto& c : pts) {
      const double per = static_cast<double>(c.forward_steps) / static_cast<double>(length);
      s.x.push_back(c.budget_units / plain);
      s.y.push_back(per);
      csv += fmt::format("{},{},{},{},{},{}\n", policy_name(p), c.budget_units, c.budget_units / plain, c.forward_steps, per,
                         predicted_time_ratio(c.forward_steps, length, model));
    }
    series.push_back(std::move(s));
    all.push_back(std::move(pts));
    shown.push_back(p);
    fmt::print(" {:>10}", policy_name(p));
  }
  fmt::print("\n");
  // The table: one row per budget; fixed-memory policies on their own rows.
  for (std::size_t i = 0; i < shown.size(); ++i) {
    if (all[i].size() != 1) continue;
    fmt::print("{:>10.5g} {:>7.2f}%", all[i][0].budget_units, 100 * all[i][0].budget_units / plain);
    for (std::size_t j = 0; j < shown.size(); ++j)
      fmt::print(" {:>10}", j == i ? fmt::format("{:.3f}", static_cast<double>(all[i][0].forward_steps) / length) : "");
    fmt::print("\n");
  }
  const int every = std::max(1, points / 24);
  for (std::size_t r = 0; r < budgets.size(); r += every) {
    fmt::print("{:>10.5g} {:>7.2f}%", budgets[r], 100 * budgets[r] / plain);
    for (std::size_t j = 0; j < shown.size(); ++j) {
      std::string cell;
      if (all[j].size() > 1)
        for (const auto& c : all[j])
          if (c.budget_units == budgets[r]) cell = fmt::format("{:.3f}", static_cast<double>(c.forward_steps) / length);
      fmt::print(" {:>10}", cell);
    }
    fmt::print("\n");
  }
  if (!csv_path.empty()) write_file_atomic(csv_path, csv);
  if (!svg_path.empty()) {
    double y_max = 0;
    for (const auto& s : series)
      for (double y : s.y) y_max = std::max(y_max, std::min(y, 8.0));
    write_file_atomic(svg_path, curve_svg(series, fmt::format("Forward steps per step against memory, T = {}, alpha = {:g}", length, model.alpha),
                                          "memory / plain BPTT's memory (log scale)", "forward steps per step (cut at 8)",
                                          std::ceil(y_max)));
  }
  return 0;
}

}  // namespace

void add_plan_commands(CLI::App& app, std::function<int()>& action) {
  static std::int64_t length = 1000;
  static double memory = 5;
  static std::string unit = "percent", policy = "msm", svg;
  static bool json = false, schedule = false;
  static ModelOptions model_opts;
  auto* plan = app.add_subcommand("plan", "the best policy's cost and memory for a length and a budget");
  plan->add_option("--length", length, "sequence length T (steps)")->required()->transform(integer_in(1, kMaxLength));
  plan->add_option("--memory", memory, "memory budget, in --unit")->required()->transform(number_in(0, kMaxBudget));
  plan->add_option("--unit", unit, "slots (hidden-state units) | bytes | percent (of plain BPTT)")->capture_default_str();
  plan->add_option("--policy", policy, "one of: " + policy_list())->capture_default_str();
  plan->add_flag("--json", json, "print one JSON object");
  plan->add_flag("--schedule", schedule, "also print the schedule's operations");
  plan->add_option("--svg", svg, "draw the schedule into this SVG file");
  add_model_options(plan, model_opts);
  static bool online = false;
  plan->add_flag("--online", online, "the online policy: the length known only when the sequence ends (plan/online.hpp), beside the offline optimum");
  plan->callback([&action, plan] {
    if (online && plan->get_option("--policy")->count() > 0)
      throw UsageError("--policy is not allowed with --online: the online policy runs, beside offline HSM and MSM");
    action = [] {
      if (online) {
        const CostModel m = model_opts.model();
        return run_plan_online(length, budget_in_units(memory, unit, length, m, model_opts), m, json, schedule, svg);
      }
      return run_plan(length, memory, unit, policy, model_opts, json, schedule, svg);
    };
  });

  static std::int64_t c_length = 1000;
  static int points = 60;
  static std::string csv, c_svg;
  static ModelOptions c_model;
  auto* curve = app.add_subcommand("curve", "cost per step against memory for every policy (the paper's figure)");
  curve->add_option("--length", c_length, "sequence length T (steps)")->required()->transform(integer_in(1, kMaxLength));
  curve->add_option("--points", points, "budgets sampled from the least to plain BPTT's")
      ->capture_default_str()
      ->transform(integer_in(2, 100000));
  curve->add_option("--csv", csv, "write the points to this CSV file");
  curve->add_option("--svg", c_svg, "draw the curves into this SVG file");
  add_model_options(curve, c_model);
  static bool c_online = false;
  static double c_memory = -1;
  curve->add_flag("--online", c_online, "the online/offline cost ratio against the length T = 1..--length, at --memory");
  curve->add_option("--memory", c_memory, "with --online: the budget in slots (hidden-state units)")->transform(number_in(0, kMaxBudget));
  curve->callback([&action] {
    if (c_length <= 0) throw UsageError(fmt::format("sequence length {} is not allowed: it must be a positive integer", c_length));
    if (c_online != (c_memory >= 0))
      throw UsageError(c_online ? "--online needs --memory (the budget in slots: hidden-state units)"
                                : "--memory is for --online only (the offline curve spans every budget)");
    if (c_online) {
      action = [] { return run_curve_online(c_length, c_memory, c_model.model(), points, csv, c_svg); };
      return;
    }
    action = [] { return run_curve(c_length, c_model, points, csv, c_svg); };
  });
}

}  // namespace membptt::cli
