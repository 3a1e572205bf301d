#include "cmd_online.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <vector>

#include "cli_common.hpp"
#include "membptt/plan/binomial.hpp"
#include "membptt/plan/online.hpp"
#include "membptt/plan/planner.hpp"
#include "membptt/schedule/simulator.hpp"
#include "svg.hpp"

namespace membptt::cli {
namespace {

constexpr std::int64_t kMaxDrawnOps = 200'000;

// The online schedule of a sequence that turns out to have `length` steps, fed to `sink` op by op.
template <class Sink>
std::int64_t unroll(OnlineSchedule& s, std::int64_t length, Sink&& sink) {
  for (std::int64_t t = 1; t < length; ++t)
    for (const Op& op : s.push()) sink(op);
  s.finish();
  Op op{};
  while (s.next(op)) sink(op);
  return s.cost();
}

std::optional<std::int64_t> offline(Policy p, std::int64_t length, double budget, const CostModel& model, std::string& why) {
  try {
    return make_plan(p, length, budget, model).forward_steps;
  } catch (const PlanError& e) {
    why = e.what();
    return std::nullopt;
  }
}

}  // namespace

int run_plan_online(std::int64_t length, double budget_units, const CostModel& model, bool json, bool schedule,
                    const std::string& svg_path) {
  online_slots(budget_units, model.alpha);  // checks alpha and the budget (PlanError)
  // More than plain BPTT's memory and a checkpoint a step changes nothing (as online_cost).
  const double useful = std::min(budget_units, model.alpha * static_cast<double>(length) + static_cast<double>(length));
  OnlineSchedule sched(useful, model.alpha);
  Simulator sim(length, model.alpha, useful);
  std::vector<Op> ops;
  bool keep_ops = schedule || !svg_path.empty();
  const std::int64_t cost = unroll(sched, length, [&](const Op& op) {
    sim.apply(op);
    if (keep_ops) {
      if (!svg_path.empty() && static_cast<std::int64_t>(ops.size()) >= kMaxDrawnOps)
        throw UsageError(fmt::format("the schedule has more than {} operations, too many to draw: use a shorter --length", kMaxDrawnOps));
      ops.push_back(op);
    }
  });
  const SimulationReport rep = sim.finish();
  if (!rep.ok || rep.forward_steps != cost)
    throw std::logic_error("membptt: the online schedule failed its simulation: " + rep.error);
  const std::int64_t m = sched.slots();
  const std::int64_t optimal_to = sched.policy().optimal_up_to();
  const bool msm_backward = sched.backward() == OnlineBackward::Msm;
  const std::int64_t cost_hsm_backward = msm_backward ? online_cost(length, useful, model.alpha, OnlineBackward::Hsm) : cost;
  std::string why_hsm, why_msm;
  const auto hsm = offline(Policy::Revolve, length, budget_units, model, why_hsm);
  const auto msm = offline(Policy::Msm, length, budget_units, model, why_msm);
  const double plain = plain_bptt_units(length, model);
  auto ratio = [&](const std::optional<std::int64_t>& o) {
    return o ? static_cast<double>(cost) / static_cast<double>(*o) : std::nan("");
  };
  if (json) {
    nlohmann::json j{{"policy", "online"},
                     {"length", length},
                     {"memory", budget_units},
                     {"alpha", model.alpha},
                     {"beta", model.beta},
                     {"slots", m},
                     {"optimal_up_to", optimal_to},
                     {"forward_ops", cost},
                     {"backward", msm_backward ? "msm" : "hsm"},
                     {"forward_ops_hsm_backward", cost_hsm_backward},
                     {"backward_ops", length},
                     {"forward_per_step", static_cast<double>(cost) / static_cast<double>(length)},
                     {"peak_memory", rep.peak_units},
                     {"plain_bptt_memory", plain},
                     {"time_ratio", predicted_time_ratio(cost, length, model)},
                     {"max_slots", rep.max_slots}};
    j["offline_hsm_forward_ops"] = hsm ? nlohmann::json(*hsm) : nlohmann::json(nullptr);
    j["offline_msm_forward_ops"] = msm ? nlohmann::json(*msm) : nlohmann::json(nullptr);
    j["ratio_to_hsm"] = hsm ? nlohmann::json(ratio(hsm)) : nlohmann::json(nullptr);
    j["ratio_to_msm"] = msm ? nlohmann::json(ratio(msm)) : nlohmann::json(nullptr);
    if (schedule) {
      auto& arr = j["ops"] = nlohmann::json::array();
      for (const Op& op : ops) {
        nlohmann::json o{{"op", std::string(op_name(op.kind))}, {"t", op.t}};
        if (op.slot >= 0) o["slot"] = op.slot;
        if (op.kind == OpKind::Advance) o["count"] = op.count;
        arr.push_back(o);
      }
    }
    std::cout << j.dump() << "\n";
  } else {
    fmt::print("policy online (the length known only at the end)   T = {}   alpha = {:g}   beta = {:g}\n", length, model.alpha, model.beta);
    fmt::print("  budget          {:.6g} units: {} hidden slots, h_0's included (optimal up to T = {})\n", budget_units, m, optimal_to);
    fmt::print("  peak memory     {:.6g} units ({:.2f}% of plain BPTT's {:.6g})\n", rep.peak_units, 100 * rep.peak_units / plain, plain);
    fmt::print("  forward steps   {} ({:.4f} per step; plain BPTT runs {}); segments reversed by {} ({} with HSM's)\n", cost,
               static_cast<double>(cost) / static_cast<double>(length), length, msm_backward ? "MSM" : "HSM (the MSM table too large)",
               cost_hsm_backward);
    fmt::print("  predicted time  {:.4f} x plain BPTT (backward costs beta = {:g} forward steps)\n", predicted_time_ratio(cost, length, model), model.beta);
    if (hsm)
      fmt::print("  offline HSM     {} forward steps, the length known in advance: online / HSM = {:.4f}\n", *hsm, ratio(hsm));
    else
      fmt::print("  offline HSM     not available: {}\n", why_hsm);
    if (msm)
      fmt::print("  offline MSM     {} forward steps: online / MSM = {:.4f}\n", *msm, ratio(msm));
    else
      fmt::print("  offline MSM     not available: {}\n", why_msm);
    if (schedule)
      for (const Op& op : ops) {
        if (op.kind == OpKind::Advance)
          fmt::print("{} {}..{}\n", op_name(op.kind), op.t, op.t + op.count - 1);
        else
          fmt::print("{} {} slot {}\n", op_name(op.kind), op.t, op.slot);
      }
  }
  if (!svg_path.empty())
    write_file_atomic(svg_path, schedule_svg(ops, length, fmt::format("online schedule: T={} (known at the end), budget {:.4g} units, {} forward steps",
                                                                       length, budget_units, cost)));
  return 0;
}

int run_curve_online(std::int64_t max_length, double budget_units, const CostModel& model, int points,
                     const std::string& csv_path, const std::string& svg_path) {
  const std::int64_t m = std::min(online_slots(budget_units, model.alpha), max_length);
  OnlineCheckpointer p(m);
  const std::int64_t optimal_to = OnlineCheckpointer(online_slots(budget_units, model.alpha)).optimal_up_to();
  std::set<std::int64_t> lengths;
  for (int i = 0; i < points; ++i)
    lengths.insert(std::clamp<std::int64_t>(std::llround(std::pow(static_cast<double>(max_length), static_cast<double>(i) / (points - 1))), 1, max_length));
  for (std::int64_t t : {optimal_to, optimal_to + 1})
    if (t <= max_length) lengths.insert(t);
  std::string csv = "length,online_forward_steps,hsm_forward_steps,ratio,optimal\n";
  Series s{"online / offline HSM", {}, {}};
  fmt::print("online / offline (HSM, the same memory) forward steps against the length; budget {:g} units, alpha = {:g}: {} slots, optimal up to T = {}\n",
             budget_units, model.alpha, online_slots(budget_units, model.alpha), optimal_to);
  fmt::print("{:>10} {:>14} {:>14} {:>8}\n", "T", "online", "offline HSM", "ratio");
  const int every = std::max<int>(1, static_cast<int>(lengths.size()) / 30);
  int row = 0;
  double worst = 1;
  std::int64_t n = 0;  // decisions made about h_1..h_n
  for (std::int64_t T : lengths) {
    for (; n + 2 <= T; ++n)
      if (n >= 1) p.decide(n);
    const std::int64_t online = p.cost(T), offline = hsm_cost(T, online_slots(budget_units, model.alpha));
    const double r = static_cast<double>(online) / static_cast<double>(offline);
    worst = std::max(worst, r);
    csv += fmt::format("{},{},{},{},{}\n", T, online, offline, r, T <= optimal_to ? 1 : 0);
    s.x.push_back(static_cast<double>(T));
    s.y.push_back(r);
    if (row++ % every == 0 || T == *lengths.rbegin()) fmt::print("{:>10} {:>14} {:>14} {:>8.4f}\n", T, online, offline, r);
  }
  fmt::print("worst ratio over these lengths: {:.4f}\n", worst);
  if (!csv_path.empty()) write_file_atomic(csv_path, csv);
  if (!svg_path.empty())
    write_file_atomic(svg_path, curve_svg({s}, fmt::format("Online / offline forward steps against T, budget {:g} units, alpha = {:g}", budget_units, model.alpha),
                                          "sequence length T (log scale)", "online / offline HSM forward steps",
                                          std::max(1.2, std::ceil(worst * 10) / 10)));
  return 0;
}

}  // namespace membptt::cli
