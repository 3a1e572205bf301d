// Shared by the CUDA backend's tests: a random problem, and one pass of a plan on the CPU
// (Executor<T>) or on a device backend (BasicExecutor over BasicDeviceBackend<T, Ops>), with
// everything it produced brought back to the host.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "membptt/cuda/cuda_backend.hpp"
#include "membptt/exec/budget.hpp"
#include "membptt/exec/executor.hpp"

namespace membptt::cuda::test {

// cuda::options() changed for a test's duration (edit: what to change) and restored after.
class ScopedOptions {
 public:
  ScopedOptions() = default;
  template <class Edit>
  explicit ScopedOptions(Edit edit) {
    Options o = saved_;
    edit(o);
    set_options(o);
  }
  ScopedOptions(const ScopedOptions&) = delete;
  ScopedOptions& operator=(const ScopedOptions&) = delete;
  ~ScopedOptions() { set_options(saved_); }

 private:
  Options saved_ = options();
};

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
  out.stats = ex.run(pr.params, {pr.T_len, pr.x.data(), pr.cls.data(), pr.y.data(), pr.h0.data()}, grads,
                     out.final_carry.data(), out.dh0.data());
  out.grads.assign(grads.data(), grads.data() + grads.size());
  out.arena_bytes = ex.arena_bytes();
  out.workspace_bytes = ex.workspace_bytes();
  return out;
}

template <class Ops, class U>
typename Ops::template Buffer<U> to_device(const std::vector<U>& v) {
  typename Ops::template Buffer<U> b(v.size());
  Ops::upload(b.data(), v.data(), v.size());
  return b;
}
template <class Ops, class U>
std::vector<U> to_host(const typename Ops::template Buffer<U>& b) {
  std::vector<U> v(b.size());
  Ops::download(v.data(), b.data(), v.size());
  return v;
}

// One pass on a device (`runs` passes on the same buffers with the gradients zeroed between them:
// with a CudaExecutor the first captures a graph and the others replay it); the last one's results.
template <class T, class Ops, class Exec = BasicExecutor<BasicDeviceBackend<T, Ops>>>
Outcome<T> run_device(const Problem<T>& pr, const Plan& plan, int runs = 1) {
  using Backend = BasicDeviceBackend<T, Ops>;
  Exec ex(pr.shape, pr.loss, plan);
  typename Backend::Params params(pr.shape), grads(pr.shape);
  params.upload(pr.params);
  const auto x = to_device<Ops>(pr.x), y = to_device<Ops>(pr.y), h0 = to_device<Ops>(pr.h0);
  const auto cls = to_device<Ops>(pr.cls);
  typename Ops::template Buffer<T> dh0(ex.net().carry_elems()), fc(ex.net().carry_elems());
  Outcome<T> out;
  for (int r = 0; r < runs; ++r) {
    grads.zero();
    out.stats = ex.run(params, {pr.T_len, x.data(), cls.data(), y.data(), h0.data()}, grads, fc.data(), dh0.data());
  }
  Params<T> g(pr.shape);
  grads.download(g);
  out.grads.assign(g.data(), g.data() + g.size());
  out.dh0 = to_host<Ops, T>(dh0);
  out.final_carry = to_host<Ops, T>(fc);
  out.arena_bytes = ex.arena_bytes();
  out.workspace_bytes = ex.workspace_bytes();
  return out;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// max |a - b| / max |b| over a range (the error relative to the tensor's scale).
template <class A, class B>
double rel_err(const A* a, const B* b, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den > 0 ? num / den : num;
}

// Every parameter view, dL/dh0, h_T and the loss of `got` within tol (relative, per tensor) of ref.
template <class T, class R>
void expect_close(const Outcome<T>& got, const Outcome<R>& ref, const NetShape& shape, double tol) {
  const double dl = std::abs(got.stats.loss - ref.stats.loss) / std::max(1e-30, std::abs(ref.stats.loss));
  EXPECT_LE(dl, tol) << "loss " << got.stats.loss << " vs " << ref.stats.loss;
  for (const ParamView& v : param_layout(shape)) {
    const double e = rel_err(got.grads.data() + v.offset, ref.grads.data() + v.offset, v.size);
    EXPECT_LE(e, tol) << "gradient " << v.name;
  }
  EXPECT_LE(rel_err(got.dh0.data(), ref.dh0.data(), ref.dh0.size()), tol) << "dL/dh0";
  EXPECT_LE(rel_err(got.final_carry.data(), ref.final_carry.data(), ref.final_carry.size()), tol) << "h_T";
}

// Runs every policy at a grid of budgets through run(pr, plan) and holds each to plain BPTT's
// result with the same runner, bit for bit, and to the plan's forward steps and peak. Returns the
// plain result.
template <class T, class Run>
Outcome<T> check_all_policies(const Problem<T>& pr, const StateSizes& sizes, Run&& run) {
  const std::int64_t len = pr.T_len;
  const CostModel model{sizes.alpha(), 2.0};
  const Outcome<T> plain = run(pr, make_plan(Policy::Full, len, plain_bptt_units(len, model), model));
  EXPECT_EQ(plain.stats.forward_steps, len);
  EXPECT_EQ(plain.stats.peak_arena_bytes, static_cast<std::size_t>(len) * sizes.internal_bytes);
  EXPECT_EQ(plain.workspace_bytes, sizes.workspace_bytes);
  for (Policy pol : kAllPolicies) {
    const double least = least_budget(pol, len, model);
    for (double extra : {0.0, 1.0, 2.0, 5.0, 13.0, 40.0}) {
      const double budget = least + extra;
      const Plan plan = make_plan(pol, len, budget, model);
      const Outcome<T> got = run(pr, plan);
      SCOPED_TRACE(std::string(policy_name(pol)) + " budget " + std::to_string(budget));
      EXPECT_EQ(got.stats.forward_steps, plan.forward_steps);
      EXPECT_EQ(got.stats.backward_steps, len);
      EXPECT_EQ(got.stats.peak_arena_bytes, got.arena_bytes);
      EXPECT_EQ(static_cast<double>(got.stats.peak_arena_bytes), plan.peak_units * static_cast<double>(sizes.hidden_bytes));
      EXPECT_LE(static_cast<double>(got.stats.peak_arena_bytes), budget * static_cast<double>(sizes.hidden_bytes));
      EXPECT_EQ(got.workspace_bytes, sizes.workspace_bytes);
      EXPECT_EQ(std::memcmp(&got.stats.loss, &plain.stats.loss, sizeof(double)), 0);
      EXPECT_TRUE(same_bits(got.grads, plain.grads));
      EXPECT_TRUE(same_bits(got.dh0, plain.dh0));
      EXPECT_TRUE(same_bits(got.final_carry, plain.final_carry));
    }
  }
  return plain;
}

// Plain BPTT's plan for a problem.
inline Plan plain_plan(std::int64_t len, const StateSizes& sizes) {
  const CostModel model{sizes.alpha(), 2.0};
  return make_plan(Policy::Full, len, plain_bptt_units(len, model), model);
}

}  // namespace membptt::cuda::test
