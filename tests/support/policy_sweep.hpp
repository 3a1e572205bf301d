// Shared by the executor's tests on the CPU (tests/nn) and on a device (tests/cuda): a random
// problem, one pass of a plan on the CPU with everything it produced, and the sweep that holds every
// policy at a grid of budgets to plain BPTT's result, bit for bit.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "membptt/exec/budget.hpp"
#include "membptt/exec/executor.hpp"

namespace membptt::test {

template <class T>
struct Problem {
  NetShape shape;
  LossKind loss;
  std::int64_t T_len;
  std::vector<T> x, y, h0;
  std::vector<std::int64_t> cls;
  Params<T> params;

  Problem(NetShape s, LossKind l, std::int64_t len, std::uint64_t seed) : shape(s), loss(l), T_len(len), params(s) {
    init_pytorch_default(params, seed);
    std::mt19937_64 rng(seed + 1);
    std::uniform_real_distribution<double> u(-1, 1);
    x.resize(static_cast<std::size_t>(len * s.batch * s.input_size));
    for (auto& v : x) v = static_cast<T>(u(rng));
    cls.resize(static_cast<std::size_t>(len * s.batch));
    for (auto& c : cls) c = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(s.output_size));
    y.resize(static_cast<std::size_t>(s.batch * s.output_size));
    for (auto& v : y) v = static_cast<T>(u(rng));
    h0.resize(membptt::carry_elems(s));
    for (auto& v : h0) v = static_cast<T>(0.5 * u(rng));
  }
  SequenceBatch<T> batch() const { return {T_len, x.data(), cls.data(), y.data(), h0.data()}; }
  // The same problem in another precision (the same values, rounded once).
  template <class U>
  Problem<U> as() const {
    Problem<U> p(shape, loss, T_len, 0);
    std::transform(x.begin(), x.end(), p.x.begin(), [](T v) { return static_cast<U>(v); });
    std::transform(y.begin(), y.end(), p.y.begin(), [](T v) { return static_cast<U>(v); });
    std::transform(h0.begin(), h0.end(), p.h0.begin(), [](T v) { return static_cast<U>(v); });
    p.cls = cls;
    for (std::size_t i = 0; i < params.size(); ++i) p.params.data()[i] = static_cast<U>(params.data()[i]);
    return p;
  }
};

template <class T>
struct Outcome {
  RunStats stats;
  std::vector<T> grads, dh0, final_carry;
  std::size_t arena_bytes = 0, workspace_bytes = 0;
};

template <class T>
Outcome<T> run_cpu(const Problem<T>& pr, const Plan& plan) {
  Executor<T> ex(pr.shape, pr.loss, plan);
  Params<T> grads(pr.shape);
  Outcome<T> out;
  out.dh0.resize(ex.net().carry_elems());
  out.final_carry.resize(ex.net().carry_elems());
  out.stats = ex.run(pr.params, pr.batch(), grads, out.final_carry.data(), out.dh0.data());
  out.grads.assign(grads.data(), grads.data() + grads.size());
  out.arena_bytes = ex.arena_bytes();
  out.workspace_bytes = ex.workspace_bytes();
  return out;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Runs every policy at a grid of budgets through run(pr, plan) and holds each to plain BPTT's
// result with the same runner, bit for bit, and to the plan's forward steps and peak. Every plan
// carries `group` weight-gradient steps (the CPU net's; default: what plan_for_bytes gives the
// length). Returns the plain result.
template <class T, class Run>
Outcome<T> check_all_policies(const Problem<T>& pr, const StateSizes& sizes, Run&& run, int group = 0) {
  const std::int64_t len = pr.T_len;
  const CostModel model{sizes.alpha(), 2.0};
  if (group < 1) group = sizes.group_steps(len);
  const std::size_t workspace =
      sizes.workspace_bytes + (group > 1 ? static_cast<std::size_t>(group) * sizes.group_step_bytes : 0);
  auto grouped = [&](Plan p) {
    p.weight_gradient_group = group;
    return p;
  };
  const Outcome<T> plain = run(pr, grouped(make_plan(Policy::Full, len, plain_bptt_units(len, model), model)));
  EXPECT_EQ(plain.stats.forward_steps, len);
  EXPECT_EQ(plain.stats.peak_arena_bytes, static_cast<std::size_t>(len) * sizes.internal_bytes);
  EXPECT_EQ(plain.workspace_bytes, workspace);
  for (Policy pol : kAllPolicies) {
    const double least = least_budget(pol, len, model);
    for (double extra : {0.0, 1.0, 2.0, 5.0, 13.0, 40.0}) {
      const double budget = least + extra;
      const Plan plan = grouped(make_plan(pol, len, budget, model));
      const Outcome<T> got = run(pr, plan);
      SCOPED_TRACE(std::string(policy_name(pol)) + " budget " + std::to_string(budget));
      EXPECT_EQ(got.stats.forward_steps, plan.forward_steps);
      EXPECT_EQ(got.stats.backward_steps, len);
      EXPECT_EQ(got.stats.peak_arena_bytes, got.arena_bytes);
      EXPECT_EQ(static_cast<double>(got.stats.peak_arena_bytes), plan.peak_units * static_cast<double>(sizes.hidden_bytes));
      EXPECT_LE(static_cast<double>(got.stats.peak_arena_bytes), budget * static_cast<double>(sizes.hidden_bytes));
      EXPECT_EQ(got.workspace_bytes, workspace);
      EXPECT_EQ(std::memcmp(&got.stats.loss, &plain.stats.loss, sizeof(double)), 0);
      EXPECT_TRUE(same_bits(got.grads, plain.grads));
      EXPECT_TRUE(same_bits(got.dh0, plain.dh0));
      EXPECT_TRUE(same_bits(got.final_carry, plain.final_carry));
    }
  }
  return plain;
}

}  // namespace membptt::test
