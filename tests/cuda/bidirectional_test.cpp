// Bidirectional stacks on the device (exec/bidirectional.hpp over the device backend,
// train/bidirectional_pass.hpp, cuda/gradient_pass.hpp) run on the host through HostOps: no GPU
// needed, so CI checks what `--device cuda --bidirectional` runs besides the kernels: reversed
// chains (their deferred weight-gradient groups grow upward), outputs in strided columns, dL/dx
// added across directions, dropout of the held outputs; against the CPU stack in float64 to
// rounding, every policy bitwise equal to plain BPTT on the device, and the trainer on the device
// following the CPU trainer.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common.hpp"
#include "host_ops.hpp"
#include "membptt/cuda/gradient_pass.hpp"
#include "membptt/exec/bidirectional.hpp"
#include "membptt/train/trainer.hpp"

namespace membptt::cuda::test {
namespace {

// HostOps counting its GEMMs: the deferred groups of a reversed chain must form (fewer GEMMs).
struct CountingOps : HostOps {
  static inline long gemms = 0;
  static void gemm_cm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
                      int ldb, double beta, double* c, int ldc, GemmMath g) {
    ++gemms;
    HostOps::gemm_cm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, g);
  }
  static void gemm_cm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                      int ldb, float beta, float* c, int ldc, GemmMath g) {
    ++gemms;
    HostOps::gemm_cm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, g);
  }
};

template <class Ops>
using EmuStack = BasicBidirectionalStack<BasicDeviceBackend<double, Ops>>;

NetShape bi(CellType cell, int layers, int proj = 0, double dropout = 0, Nonlinearity nl = Nonlinearity::Tanh) {
  NetShape s{cell, 3, 5, layers, 2, 1, true, nl, proj, dropout};
  s.bidirectional = true;
  return s;
}

std::string name(const NetShape& s) {
  return std::string(cell_name(s.cell)) + " L=" + std::to_string(s.num_layers) +
         (s.proj_size ? " proj " + std::to_string(s.proj_size) : "") + (s.dropout > 0 ? " dropout" : "") +
         (s.nonlinearity == Nonlinearity::Relu ? " relu" : "");
}

template <class Ops = HostOps>
ChainSizes emu_sizes() {
  return [](const NetShape& c) { return device_state_sizes<double, Ops>(c, options()); };
}

struct Data {
  NetShape s;
  std::int64_t T;
  std::vector<double> w, x, h0, dy, dhn;
  Data(const NetShape& shape, std::int64_t length) : s(shape), T(length) {
    const std::size_t carry = carry_elems(s), out = static_cast<std::size_t>(T) * s.batch * 2 * output_width(s);
    auto filled = [](std::size_t n, std::uint64_t seed) {
      std::vector<double> v(n);
      fill_uniform<double>(v, 0.6, seed);
      return v;
    };
    w = filled(param_count(s), 1);
    x = filled(static_cast<std::size_t>(T) * s.batch * s.input_size, 2);
    h0 = filled(carry, 3);
    dy = filled(out, 4);
    dhn = filled(carry, 5);
  }
};

struct Result {
  std::vector<double> y, hn, dx, dh0, dw;
  RunStats fwd, bwd;
};

Result run_cpu_stack(const Data& d, const BidirectionalPlans& plans, bool dropout) {
  BidirectionalStack<double> stack(d.s, plans);
  stack.set_dropout(dropout, 77);
  Result r{std::vector<double>(d.dy.size()), std::vector<double>(d.h0.size()), std::vector<double>(d.x.size()),
           std::vector<double>(d.h0.size()), std::vector<double>(d.w.size(), 0.0), {}, {}};
  r.fwd = stack.forward(d.w.data(), d.x.data(), d.T, d.h0.data(), r.y.data(), r.hn.data());
  r.bwd = stack.backward(d.w.data(), d.dy.data(), d.dhn.data(), r.dx.data(), r.dh0.data(), r.dw.data());
  return r;
}

// The same on the emulated device: every array uploaded, the results downloaded.
template <class Ops = HostOps>
Result run_device_stack(const Data& d, const BidirectionalPlans& plans, bool dropout) {
  EmuStack<Ops> stack(d.s, plans);
  stack.set_dropout(dropout, 77);
  auto w = to_device<Ops>(d.w), x = to_device<Ops>(d.x), h0 = to_device<Ops>(d.h0), dy = to_device<Ops>(d.dy),
       dhn = to_device<Ops>(d.dhn);
  typename Ops::template Buffer<double> y(d.dy.size()), hn(d.h0.size()), dx(d.x.size()), dh0(d.h0.size()),
      dw(d.w.size());
  Result r;
  r.fwd = stack.forward(w.data(), x.data(), d.T, h0.data(), y.data(), hn.data());
  r.bwd = stack.backward(w.data(), dy.data(), dhn.data(), dx.data(), dh0.data(), dw.data());
  r.y = to_host<Ops>(y);
  r.hn = to_host<Ops>(hn);
  r.dx = to_host<Ops>(dx);
  r.dh0 = to_host<Ops>(dh0);
  r.dw = to_host<Ops>(dw);
  return r;
}

double max_rel(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double scale = 1e-300, diff = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    scale = std::max(scale, std::abs(b[i]));
    diff = std::max(diff, std::abs(a[i] - b[i]));
  }
  return diff / scale;
}

const NetShape kShapes[] = {bi(CellType::Lstm, 2), bi(CellType::Gru, 3, 0, 0.4), bi(CellType::Rnn, 1, 0, 0, Nonlinearity::Relu),
                            bi(CellType::Lstm, 2, 3, 0.3)};

// Small groups and blocks, so that a sequence holds several of each (and a reversed chain's
// groups and blocks are crossed in the other direction).
struct SmallGroups : ScopedOptions {
  explicit SmallGroups(int defer = 3, int chunk = 4)
      : ScopedOptions([=](Options& o) {
          o.defer_steps = defer;
          o.input_chunk_steps = chunk;
        }) {}
};

template <class Ops>
void expect_cpu_values(const std::vector<int>& defers, double tol) {
  for (int defer : defers) {
    SmallGroups guard(defer, 4);
    for (const NetShape& s : kShapes) {
      SCOPED_TRACE(name(s) + ", defer_steps " + std::to_string(defer));
      const Data d(s, 11);
      const BidirectionalPlans cpu_plans = plan_bidirectional(Policy::Full, s, d.T, std::nullopt, 8, 2.0);
      const BidirectionalPlans dev_plans =
          plan_bidirectional(Policy::Full, s, d.T, std::nullopt, 8, 2.0, emu_sizes<Ops>());
      const bool drop = s.dropout > 0;
      const Result ref = run_cpu_stack(d, cpu_plans, drop), got = run_device_stack<Ops>(d, dev_plans, drop);
      EXPECT_LE(max_rel(got.y, ref.y), tol);
      EXPECT_LE(max_rel(got.hn, ref.hn), tol);
      EXPECT_LE(max_rel(got.dx, ref.dx), tol);
      EXPECT_LE(max_rel(got.dh0, ref.dh0), tol);
      EXPECT_LE(max_rel(got.dw, ref.dw), tol);
      EXPECT_EQ(got.bwd.forward_steps, ref.bwd.forward_steps);
    }
  }
}

template <class Ops>
void expect_every_policy_bitwise() {
  SmallGroups guard;
  for (const NetShape& s : kShapes) {
    SCOPED_TRACE(name(s));
    const Data d(s, 13);
    const bool drop = s.dropout > 0;
    const ChainSizes sizes = emu_sizes<Ops>();
    const BidirectionalPlans full = plan_bidirectional(Policy::Full, s, d.T, std::nullopt, 8, 2.0, sizes);
    const Result ref = run_device_stack<Ops>(d, full, drop);
    for (Policy p : {Policy::Msm, Policy::Hsm, Policy::Ism}) {
      const double least = bidirectional_least_bytes(p, s, d.T, 8, sizes);
      for (double f : {1.0, 1.3, 2.0}) {
        SCOPED_TRACE(std::string(policy_name(p)) + " at " + std::to_string(f) + " x least");
        const BidirectionalPlans plans = plan_bidirectional(p, s, d.T, least * f, 8, 2.0, sizes);
        const Result got = run_device_stack<Ops>(d, plans, drop);
        EXPECT_EQ(got.y, ref.y);
        EXPECT_EQ(got.hn, ref.hn);
        EXPECT_EQ(got.dx, ref.dx);
        EXPECT_EQ(got.dh0, ref.dh0);
        EXPECT_EQ(got.dw, ref.dw);
        std::int64_t planned = 0;
        for (const auto& pl : plans.layer) planned += 2 * pl->forward_steps;
        EXPECT_EQ(got.bwd.forward_steps, planned);  // forward() and backward() together: the plans' cost
      }
    }
  }
}

TEST(DeviceBidirectional, MatchesTheCpuStackToRounding) { expect_cpu_values<HostOps>({1, 3, 64}, 1e-12); }

TEST(DeviceBidirectional, EveryPolicyBitwiseEqualToPlainBpttOnTheDevice) { expect_every_policy_bitwise<HostOps>(); }

// The same on a GPU (skips without one): cuBLAS, cudaMemcpy2DAsync, geam and the kernels.
TEST(DeviceBidirectional, OnTheGpuMatchesTheCpuAndEveryPolicyIsBitwise) {
  if (device_count() == 0) GTEST_SKIP() << "no CUDA device: " << no_device_reason();
  expect_cpu_values<CudaOps>({1, 8}, 1e-10);
  expect_every_policy_bitwise<CudaOps>();
}

// A reversed chain's backward steps read ascending positions: its weight gradients must still be
// grouped (one GEMM per group and weight, not per step), as the forward chain's are.
TEST(DeviceBidirectional, ReversedChainsGroupTheirWeightGradients) {
  const NetShape s = bi(CellType::Lstm, 1);
  const Data d(s, 24);
  auto gemms_with = [&](int defer) {
    SmallGroups guard(defer, 1);
    const BidirectionalPlans plans = plan_bidirectional(Policy::Full, s, d.T, std::nullopt, 8, 2.0, emu_sizes<>());
    CountingOps::gemms = 0;
    (void)run_device_stack<CountingOps>(d, plans, false);
    return CountingOps::gemms;
  };
  const long per_step = gemms_with(1), grouped = gemms_with(8);
  // Per step and chain the weight gradients take 2 GEMMs (W_ih, W_hh): 2 chains x 24 steps; in
  // groups of 8, 2 x 3 groups. Everything else is the same.
  EXPECT_EQ(per_step - grouped, 2 * 2 * 24 - 2 * 2 * 3);
}

// The trainer's pass on the emulated device: the CPU pass's loss and gradients to rounding.
TEST(DeviceBidirectional, GradientPassFollowsTheCpuPass) {
  SmallGroups guard;
  const auto device = std::make_shared<const BasicGradientDevice<HostOps>>("host emulation");
  for (LossKind loss : {LossKind::Xent, LossKind::MseLast}) {
    NetShape s = bi(CellType::Gru, 2, 0, 0.25);
    s.output_size = 4;
    const std::int64_t T = 9;
    Params<double> params(s), g_cpu(s), g_dev(s), g_tight(s);
    init_pytorch_default(params, 5);
    std::vector<double> x(static_cast<std::size_t>(T) * s.batch * s.input_size), y(static_cast<std::size_t>(s.batch) * 4);
    fill_uniform<double>(x, 1.0, 6);
    fill_uniform<double>(y, 1.0, 7);
    std::vector<std::int64_t> cls(static_cast<std::size_t>(T) * s.batch);
    for (std::size_t i = 0; i < cls.size(); ++i) cls[i] = static_cast<std::int64_t>(i % 4);
    const SequenceBatch<double> batch{T, x.data(), cls.data(), y.data(), nullptr};
    const auto cpu = train::make_bidirectional_pass<double>(
        s, loss, train::plan_bidirectional_pass(Policy::Full, s, T, std::nullopt, 8, 2.0));
    const auto dev = train::make_bidirectional_pass<double>(
        s, loss, train::plan_bidirectional_pass(Policy::Full, s, T, std::nullopt, 8, 2.0, device.get()), device.get());
    const double least = train::bidirectional_pass_least_bytes(Policy::Msm, s, T, 8, device.get());
    const auto tight = train::make_bidirectional_pass<double>(
        s, loss, train::plan_bidirectional_pass(Policy::Msm, s, T, least, 8, 2.0, device.get()), device.get());
    for (auto* p : {cpu.get(), dev.get(), tight.get()}) p->set_dropout(true, 11);
    const RunStats a = cpu->run(params, batch, g_cpu, nullptr), b = dev->run(params, batch, g_dev, nullptr),
                   c = tight->run(params, batch, g_tight, nullptr);
    EXPECT_LE(std::abs(b.loss - a.loss), 1e-12 * std::abs(a.loss));
    EXPECT_LE(max_rel({g_dev.data(), g_dev.data() + g_dev.size()}, {g_cpu.data(), g_cpu.data() + g_cpu.size()}), 1e-12);
    EXPECT_EQ(c.loss, b.loss);
    EXPECT_EQ(std::vector<double>(g_tight.data(), g_tight.data() + g_tight.size()),
              std::vector<double>(g_dev.data(), g_dev.data() + g_dev.size()));
    EXPECT_EQ(c.forward_steps, tight->planned_forward_steps());
    // What the tight pass holds is what its budget allowed.
    EXPECT_LE(static_cast<double>(tight->workspace_bytes() + c.peak_arena_bytes), least);
  }
}

// `membptt train --device cuda --bidirectional`: the trainer on the emulated device follows the
// CPU trainer step by step, holding what it planned.
TEST(DeviceBidirectional, TrainerFollowsTheCpuTrainer) {
  SmallGroups guard;
  train::TrainConfig c;
  c.hidden = 6;
  c.batch = 3;
  c.length = 30;
  c.layers = 2;
  c.steps = 4;
  c.lr = 0.01;
  c.memory = "30%";
  c.dtype = "float64";
  c.bidirectional = true;
  c.dropout = 0.2;
  auto corpus = train::load_corpus(c);
  auto cpu = train::make_trainer(c, corpus);
  auto dev = train::make_trainer(c, corpus, std::make_shared<const BasicGradientDevice<HostOps>>("host emulation"));
  EXPECT_NE(dev->plan().policy, Policy::Full);
  for (std::int64_t k = 0; k < c.steps; ++k) {
    const train::StepResult a = cpu->step(), b = dev->step();
    EXPECT_LE(std::abs(b.loss - a.loss), 1e-11 * std::abs(a.loss)) << "step " << b.step;
    EXPECT_LE(std::abs(b.grad_norm - a.grad_norm), 1e-11 * std::abs(a.grad_norm)) << "step " << b.step;
    EXPECT_EQ(b.stats.forward_steps, dev->planned_forward_steps());
    EXPECT_EQ(b.held_bytes, dev->planned_bytes());
  }
}

}  // namespace
}  // namespace membptt::cuda::test
