// Shared by the CUDA backend's tests: one pass of a plan on a device backend (BasicExecutor over
// BasicDeviceBackend<T, Ops>) with everything it produced brought back to the host, tolerances,
// and tests/support's problem, CPU pass and policy sweep.
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
#include "module_form.hpp"
#include "policy_sweep.hpp"

namespace membptt::cuda::test {

using membptt::test::check_all_policies;
using membptt::test::module_outcome;
using membptt::test::OutputGrads;
using membptt::test::Outcome;
using membptt::test::Problem;
using membptt::test::run_cpu;
using membptt::test::same_bits;

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
// dropout_seed >= 0: dropout between layers on, with that seed.
template <class T, class Ops, class Exec = BasicExecutor<BasicDeviceBackend<T, Ops>>>
Outcome<T> run_device(const Problem<T>& pr, const Plan& plan, int runs = 1, std::int64_t dropout_seed = -1) {
  using Backend = BasicDeviceBackend<T, Ops>;
  Exec ex(pr.shape, pr.loss, plan);
  if (dropout_seed >= 0) ex.net().set_dropout(true, static_cast<std::uint64_t>(dropout_seed));
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

// One pass of the module form (forward() then backward(), what membptt.torch runs) on a device,
// brought back as module_outcome packs it.
template <class T, class Ops>
Outcome<T> run_module_device(const Problem<T>& pr, const Plan& plan, const OutputGrads<T>& g) {
  using Backend = BasicDeviceBackend<T, Ops>;
  BasicExecutor<Backend> ex(pr.shape, pr.loss, plan);
  typename Backend::Params params(pr.shape), grads(pr.shape);
  params.upload(pr.params);
  const auto x = to_device<Ops>(pr.x), h0 = to_device<Ops>(pr.h0), dy = to_device<Ops>(g.dy),
             dfinal = to_device<Ops>(g.dfinal);
  const std::size_t carry = ex.net().carry_elems();
  typename Ops::template Buffer<T> y(g.dy.size()), fc(carry), dh0(carry), dx(pr.x.size());
  ex.forward(params, x.data(), pr.T_len, h0.data(), y.data(), fc.data());
  const RunStats stats = ex.backward(params, dy.data(), dfinal.data(), dx.data(), dh0.data(), grads);
  Params<T> gh(pr.shape);
  grads.download(gh);
  Outcome<T> out = module_outcome(stats, g, to_host<Ops, T>(y), to_host<Ops, T>(fc), to_host<Ops, T>(dh0),
                                  to_host<Ops, T>(dx), std::vector<T>(gh.data(), gh.data() + gh.size()));
  out.arena_bytes = ex.arena_bytes();
  out.workspace_bytes = ex.workspace_bytes();
  return out;
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

// Plain BPTT's plan for a problem.
inline Plan plain_plan(std::int64_t len, const StateSizes& sizes) {
  const CostModel model{sizes.alpha(), 2.0};
  return make_plan(Policy::Full, len, plain_bptt_units(len, model), model);
}

}  // namespace membptt::cuda::test
