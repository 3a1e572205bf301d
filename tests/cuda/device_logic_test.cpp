// The device cells, heads and deferred gradients (device_net.hpp) run on the host through HostOps:
// no GPU needed, so CI checks the logic the CUDA backend runs: the layout and equations against the
// CPU cell (float64 to rounding), every policy bitwise equal to plain BPTT, forward steps and peak
// bytes as planned, the workspace the planner is told, deferred weight-gradient groups of any size,
// staging, and the head's device-side loss and target checks.
#include <gtest/gtest.h>

#include "common.hpp"
#include "host_ops.hpp"

namespace membptt::cuda::test {
namespace {

template <class T>
using Emu = BasicDeviceBackend<T, HostOps>;

template <class T>
StateSizes emu_sizes(const NetShape& s) {
  return device_state_sizes<T, HostOps>(s, options());
}

// Restores the process-wide options at the end of a test.
using OptionsGuard = ScopedOptions;

struct Case {
  CellType cell;
  int layers;
  LossKind loss;
  bool bias = true;  // false: PyTorch's bias=False
  Nonlinearity nl = Nonlinearity::Tanh;
  int proj = 0;  // LSTM proj_size
};
const Case kCases[] = {{CellType::Lstm, 1, LossKind::Xent}, {CellType::Lstm, 2, LossKind::MseLast},
                       {CellType::Gru, 1, LossKind::Xent},  {CellType::Gru, 2, LossKind::Xent},
                       {CellType::Rnn, 1, LossKind::MseLast}, {CellType::Rnn, 2, LossKind::Xent},
                       {CellType::Lstm, 2, LossKind::Xent, false}, {CellType::Gru, 2, LossKind::MseLast, false},
                       {CellType::Rnn, 2, LossKind::Xent, false},  {CellType::Rnn, 2, LossKind::Xent, true, Nonlinearity::Relu},
                       {CellType::Rnn, 1, LossKind::MseLast, false, Nonlinearity::Relu},
                       {CellType::Lstm, 2, LossKind::Xent, true, Nonlinearity::Tanh, 3},
                       {CellType::Lstm, 1, LossKind::MseLast, false, Nonlinearity::Tanh, 3}};

std::string name(const Case& c) {
  return std::string(cell_name(c.cell)) + " L=" + std::to_string(c.layers) + (c.loss == LossKind::Xent ? " xent" : " mse") +
         (c.bias ? "" : " no bias") + (c.nl == Nonlinearity::Relu ? " relu" : "") +
         (c.proj ? " proj " + std::to_string(c.proj) : "");
}

TEST(DeviceLogic, Float64MatchesTheCpuCellToRounding) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(name(c));
    const NetShape shape{c.cell, 4, 5, c.layers, 3, 3, c.bias, c.nl, c.proj};
    const Problem<double> pr(shape, c.loss, 17, 11);
    const Plan plan = plain_plan(pr.T_len, state_sizes(shape, sizeof(double)));
    expect_close(run_device<double, HostOps>(pr, plan), run_cpu(pr, plan), shape, 1e-12);
  }
}

TEST(DeviceLogic, Float32WithinTolOfCpuFloat64) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(name(c));
    const NetShape shape{c.cell, 8, 16, c.layers, 4, 5, c.bias, c.nl, c.proj};
    const Problem<double> pr(shape, c.loss, 30, 5);
    const Plan plan = plain_plan(pr.T_len, state_sizes(shape, sizeof(double)));
    expect_close(run_device<float, HostOps>(pr.as<float>(), plan), run_cpu(pr, plan), shape, 1e-4);
  }
}

TEST(DeviceLogic, EveryPolicyBitwiseEqualToPlainBptt) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(name(c));
    const NetShape shape{c.cell, 4, 5, c.layers, 3, 3, c.bias, c.nl, c.proj};
    const Problem<float> pr(shape, c.loss, 23, 7 + static_cast<int>(c.cell) * 10 + c.layers);
    check_all_policies(pr, emu_sizes<float>(shape), [](const Problem<float>& p, const Plan& plan) {
      return run_device<float, HostOps>(p, plan);
    });
  }
}

// Dropout between layers on the device cells: the CPU cell's masks (float64 to rounding), and every
// policy bitwise equal to plain BPTT with the same seed.
TEST(DeviceLogic, DropoutDrawsTheCpuMasksAndKeepsPlainBpttBits) {
  for (const CellType cell : {CellType::Lstm, CellType::Gru, CellType::Rnn}) {
    SCOPED_TRACE(std::string(cell_name(cell)));
    NetShape shape{cell, 4, 5, 3, 3, 3};
    shape.dropout = 0.4;
    if (cell == CellType::Lstm) shape.proj_size = 3;
    const Problem<double> pr(shape, LossKind::Xent, 17, 11);
    const Plan plan = plain_plan(pr.T_len, state_sizes(shape, sizeof(double)));
    Executor<double> cpu(shape, pr.loss, plan);
    cpu.net().set_dropout(true, 31);
    Params<double> grads(shape);
    Outcome<double> ref;
    ref.dh0.resize(carry_elems(shape));
    ref.final_carry.resize(carry_elems(shape));
    ref.stats = cpu.run(pr.params, pr.batch(), grads, ref.final_carry.data(), ref.dh0.data());
    ref.grads.assign(grads.data(), grads.data() + grads.size());
    expect_close(run_device<double, HostOps>(pr, plan, 1, 31), ref, shape, 1e-12);
    const Outcome<double> off = run_device<double, HostOps>(pr, plan);
    EXPECT_GT(std::abs(off.stats.loss - ref.stats.loss), 1e-6);  // the masks did something
    const Problem<float> pf = pr.as<float>();
    check_all_policies(pf, emu_sizes<float>(shape), [](const Problem<float>& p, const Plan& pl) {
      return run_device<float, HostOps>(p, pl, 1, 31);
    });
  }
}

// The module form (membptt.torch's forward and backward apart) on the device cells: dL/dx from the
// device backward, dL/dy added on the device; every policy bitwise equal to plain BPTT, and the
// CPU module form's values to rounding.
TEST(DeviceLogic, ModuleFormEveryPolicyBitwiseAndMatchesTheCpu) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(name(c));
    const NetShape shape{c.cell, 4, 5, c.layers, 3, 1, c.bias, c.nl, c.proj};
    const Problem<double> pr(shape, LossKind::Xent, 19, 3 + c.layers);
    const OutputGrads<double> g(pr, 9);
    const Outcome<double> plain = check_all_policies(pr, emu_sizes<double>(shape), [&](const Problem<double>& p, const Plan& plan) {
      return run_module_device<double, HostOps>(p, plan, g);
    });
    // The CPU's module form on the same problem (its test: tests/nn/exec_module_form_test.cpp).
    Executor<double> cpu(shape, LossKind::Xent, plain_plan(pr.T_len, state_sizes(shape, sizeof(double))));
    std::vector<double> y(g.dy.size()), fc(carry_elems(shape)), dh0(fc.size()), dx(pr.x.size());
    Params<double> grads(shape);
    cpu.forward(pr.params, pr.x.data(), pr.T_len, pr.h0.data(), y.data(), fc.data());
    const RunStats st = cpu.backward(pr.params, g.dy.data(), g.dfinal.data(), dx.data(), dh0.data(), grads);
    const Outcome<double> ref = module_outcome(st, g, y, fc, dh0, dx, std::vector<double>(grads.data(), grads.data() + grads.size()));
    expect_close(plain, ref, shape, 1e-12);
  }
}

TEST(DeviceLogic, DeferredGroupsOfAnySizeAgree) {
  OptionsGuard guard;
  const NetShape shape{CellType::Lstm, 3, 6, 2, 2, 4};
  const Problem<double> pr(shape, LossKind::Xent, 19, 3);
  const Plan plan = plain_plan(pr.T_len, state_sizes(shape, sizeof(double)));
  const Outcome<double> ref = run_cpu(pr, plan);
  for (int k : {1, 2, 3, 8, 19, 64}) {
    SCOPED_TRACE("defer_steps " + std::to_string(k));
    Options o = options();
    o.defer_steps = k;
    set_options(o);
    const Outcome<double> got = run_device<double, HostOps>(pr, plan);
    expect_close(got, ref, shape, 1e-12);
    EXPECT_EQ(got.workspace_bytes, emu_sizes<double>(shape).workspace_bytes);
    // Every policy still bitwise equal to plain BPTT with this grouping.
    const StateSizes sizes = emu_sizes<double>(shape);
    const CostModel model{sizes.alpha(), 2.0};
    const Plan tight = make_plan(Policy::Msm, pr.T_len, least_budget(Policy::Msm, pr.T_len, model) + 2, model);
    const Outcome<double> t = run_device<double, HostOps>(pr, tight);
    EXPECT_TRUE(same_bits(t.grads, got.grads));
  }
  Options bad = options();
  bad.defer_steps = 0;
  EXPECT_THROW(set_options(bad), std::invalid_argument);
}

// Layer 0's input projection by blocks of C steps: any C agrees with the CPU cell to rounding, is
// counted in the workspace, and keeps every policy (MSM and HSM at a tight budget, where
// recomputation starts inside blocks) bitwise equal to plain BPTT, for every cell.
TEST(DeviceLogic, InputProjectionBlocksOfAnySizeAgree) {
  OptionsGuard guard;
  for (const CellType cell : {CellType::Lstm, CellType::Gru, CellType::Rnn}) {
    const NetShape shape{cell, 3, 6, 2, 2, 4};
    const Problem<double> pr(shape, LossKind::Xent, 23, 4);
    const Outcome<double> ref = run_cpu(pr, plain_plan(pr.T_len, state_sizes(shape, sizeof(double))));
    for (int c : {1, 2, 5, 8, 23, 40}) {
      SCOPED_TRACE(std::string(cell_name(cell)) + " input_chunk_steps " + std::to_string(c));
      Options o = options();
      o.input_chunk_steps = c;
      set_options(o);
      const StateSizes sizes = emu_sizes<double>(shape);
      const Outcome<double> plain = run_device<double, HostOps>(pr, plain_plan(pr.T_len, sizes));
      expect_close(plain, ref, shape, 1e-12);
      EXPECT_EQ(plain.workspace_bytes, sizes.workspace_bytes);
      const CostModel model{sizes.alpha(), 2.0};
      for (const Policy p : {Policy::Msm, Policy::Hsm}) {
        const Plan tight = make_plan(p, pr.T_len, least_budget(p, pr.T_len, model) + 1, model);
        const Outcome<double> t = run_device<double, HostOps>(pr, tight);
        EXPECT_TRUE(same_bits(t.grads, plain.grads)) << policy_name(p);
        EXPECT_TRUE(same_bits(t.final_carry, plain.final_carry)) << policy_name(p);
        EXPECT_EQ(std::memcmp(&t.stats.loss, &plain.stats.loss, sizeof(double)), 0) << policy_name(p);
      }
    }
  }
  Options bad = options();
  bad.input_chunk_steps = 0;
  EXPECT_THROW(set_options(bad), std::invalid_argument);
}

TEST(DeviceLogic, StagingShapesAndAlignedShapes) {
  // B*H*4 bytes a multiple of 256 (no staging) and not (staging), for float and double.
  EXPECT_FALSE(detail::needs_staging(NetShape{CellType::Lstm, 4, 16, 1, 4, 2}, sizeof(float)));
  EXPECT_TRUE(detail::needs_staging(NetShape{CellType::Lstm, 4, 16, 1, 3, 2}, sizeof(float)));
  EXPECT_FALSE(detail::needs_staging(NetShape{CellType::Lstm, 4, 1024, 1, 64, 2}, sizeof(float)));
  EXPECT_FALSE(detail::needs_staging(NetShape{CellType::Lstm, 4, 16, 1, 2, 2}, sizeof(double)));
  // The staging path gives what the plain path would (here checked against the CPU).
  const NetShape shape{CellType::Gru, 4, 5, 2, 3, 3};
  const Problem<double> pr(shape, LossKind::Xent, 9, 2);
  const Plan plan = plain_plan(pr.T_len, state_sizes(shape, sizeof(double)));
  expect_close(run_device<double, HostOps>(pr, plan), run_cpu(pr, plan), shape, 1e-12);
}

TEST(DeviceLogic, WorkspaceIsWhatThePlannerIsTold) {
  for (const Case& c : kCases) {
    const NetShape shape{c.cell, 6, 8, c.layers, 4, 7, c.bias, c.nl, c.proj};
    const StateSizes cpu = state_sizes(shape, sizeof(float)), dev = emu_sizes<float>(shape);
    EXPECT_EQ(dev.hidden_bytes, cpu.hidden_bytes);
    EXPECT_EQ(dev.internal_bytes, cpu.internal_bytes);
    BasicExecutor<Emu<float>> ex(shape, c.loss, plain_plan(10, dev));
    EXPECT_EQ(ex.workspace_bytes(), dev.workspace_bytes);
  }
}

TEST(DeviceLogic, GradientsCompleteOnReadAndSwitchTargets) {
  // Direct use of the cell without the executor: two gradient buffers interleaved, read back
  // without finish(); must equal one buffer per pass with one GEMM per step.
  OptionsGuard guard;
  const NetShape shape{CellType::Lstm, 3, 4, 1, 2, 2};
  Params<double> hp(shape);
  init_pytorch_default(hp, 9);
  const std::size_t C = membptt::carry_elems(shape), R = membptt::record_elems(shape);
  std::vector<double> x(6 * 3 * 2), rec(R), dcarry(C, 0.1);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.01 * static_cast<double>(i % 17) - 0.05;
  auto pass = [&](int defer, bool interleave) {
    Options o = options();
    o.defer_steps = defer;
    set_options(o);
    BasicDeviceNet<double, HostOps> net(shape);
    BasicDeviceParams<double, HostOps> p(shape), ga(shape), gb(shape);
    p.upload(hp);
    std::vector<double> carry(C, 0.2);
    for (int t = 5; t >= 0; --t) {
      const double* xt = x.data() + static_cast<std::size_t>(t) * 6;
      net.advance_record(p, xt, carry.data(), rec.data());
      std::vector<double> d = dcarry;
      net.backward(p, xt, rec.data(), d.data(), d.data(), ga);
      if (interleave) net.backward(p, xt, rec.data(), dcarry.data(), d.data(), gb);
    }
    Params<double> a(shape), b(shape);
    ga.download(a);
    gb.download(b);
    return std::make_pair(std::vector<double>(a.all().begin(), a.all().end()), std::vector<double>(b.all().begin(), b.all().end()));
  };
  const auto ref = pass(1, false);
  const auto got = pass(4, true);
  const auto got_plain = pass(4, false);
  EXPECT_LE(rel_err(got.first.data(), ref.first.data(), ref.first.size()), 1e-13);
  EXPECT_LE(rel_err(got.second.data(), ref.first.data(), ref.first.size()), 1e-13);
  EXPECT_LE(rel_err(got_plain.first.data(), ref.first.data(), ref.first.size()), 1e-13);
  // Zeroing drops a pending group.
  Options o = options();
  o.defer_steps = 4;
  set_options(o);
  BasicDeviceNet<double, HostOps> net(shape);
  BasicDeviceParams<double, HostOps> p(shape), g(shape);
  p.upload(hp);
  std::vector<double> carry(C, 0.2);
  net.advance_record(p, x.data(), carry.data(), rec.data());
  net.backward(p, x.data(), rec.data(), dcarry.data(), carry.data(), g);
  g.zero();
  Params<double> z(shape);
  g.download(z);
  for (double v : z.all()) EXPECT_EQ(v, 0.0);
}

TEST(DeviceLogic, HeadReportsBadTargetsAtFinish) {
  const NetShape shape{CellType::Rnn, 2, 4, 1, 2, 3};
  Problem<double> pr(shape, LossKind::Xent, 5, 1);
  pr.cls[3] = 3;  // outside [0, 3)
  const Plan plan = plain_plan(pr.T_len, emu_sizes<double>(shape));
  EXPECT_THROW((run_device<double, HostOps>(pr, plan)), std::invalid_argument);
  pr.cls[3] = -1;
  EXPECT_THROW((run_device<double, HostOps>(pr, plan)), std::invalid_argument);
  pr.cls[3] = 2;
  EXPECT_NO_THROW((run_device<double, HostOps>(pr, plan)));
}

TEST(DeviceLogic, SizeMismatchesAreRefused) {
  const NetShape a{CellType::Lstm, 2, 4, 1, 2, 3}, b{CellType::Lstm, 2, 5, 1, 2, 3};
  BasicDeviceParams<float, HostOps> p(a);
  Params<float> h(b);
  EXPECT_THROW(p.upload(h), std::invalid_argument);
  EXPECT_THROW(p.download(h), std::invalid_argument);
  BasicDeviceNet<float, HostOps> net(b);
  std::vector<float> x(8), c(net.carry_elems());
  EXPECT_THROW(net.advance(p, x.data(), c.data(), c.data()), std::invalid_argument);
}

}  // namespace
}  // namespace membptt::cuda::test
