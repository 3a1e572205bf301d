// The CUDA backend on a GPU: every policy at a grid of budgets bitwise equal to plain BPTT on the
// GPU, forward steps and peak bytes as planned, float32 (TF32 off) within 1e-4 of the CPU float64
// reference, float64 to rounding, determinism run to run. Every test skips without a device.
#include <gtest/gtest.h>

#include "common.hpp"

namespace membptt::cuda::test {
namespace {

#define MEMBPTT_NEED_GPU()                                                          \
  do {                                                                              \
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device: " << no_device_reason(); \
  } while (0)

struct OptionsGuard : ScopedOptions {
  explicit OptionsGuard(bool tf32 = false, int defer = 8, bool bf16 = false)
      : ScopedOptions([&](Options& o) {
          o.tf32 = tf32;
          o.bf16 = bf16;
          o.defer_steps = defer;
        }) {}
};

// As users run it: CudaExecutor, twice (the first run captures the graph, the second replays it).
template <class T>
Outcome<T> run_gpu(const Problem<T>& pr, const Plan& plan) {
  return run_device<T, CudaOps, CudaExecutor<T>>(pr, plan, 2);
}
// Kernel by kernel, no graph.
template <class T>
Outcome<T> run_stream(const Problem<T>& pr, const Plan& plan) {
  return run_device<T, CudaOps>(pr, plan);
}

struct Case {
  CellType cell;
  int layers;
  LossKind loss;
  bool bias = true;  // false: PyTorch's bias=False
  Nonlinearity nl = Nonlinearity::Tanh;
};
const Case kCases[] = {{CellType::Lstm, 1, LossKind::Xent}, {CellType::Lstm, 2, LossKind::MseLast},
                       {CellType::Gru, 1, LossKind::Xent},  {CellType::Gru, 2, LossKind::MseLast},
                       {CellType::Rnn, 1, LossKind::MseLast}, {CellType::Rnn, 2, LossKind::Xent},
                       {CellType::Lstm, 2, LossKind::Xent, false}, {CellType::Gru, 1, LossKind::Xent, false},
                       {CellType::Rnn, 2, LossKind::Xent, false, Nonlinearity::Relu}};
std::string name(const Case& c) {
  return std::string(cell_name(c.cell)) + " L=" + std::to_string(c.layers) + (c.loss == LossKind::Xent ? " xent" : " mse") +
         (c.bias ? "" : " no bias") + (c.nl == Nonlinearity::Relu ? " relu" : "");
}

TEST(Cuda, Device) {
  MEMBPTT_NEED_GPU();
  std::printf("[ device   ] %s\n", device_description().c_str());
  const MemInfo m = mem_info();
  EXPECT_GT(m.total_bytes, 0u);
}

// Aligned shapes (B*H*4 a multiple of 256 bytes) and odd ones (staged GEMM operands).
TEST(Cuda, EveryPolicyBitwiseEqualToPlainBpttFloat) {
  MEMBPTT_NEED_GPU();
  OptionsGuard guard;
  for (const Case& c : kCases)
    for (const NetShape shape : {NetShape{c.cell, 8, 16, c.layers, 4, 5, c.bias, c.nl}, NetShape{c.cell, 4, 5, c.layers, 3, 3, c.bias, c.nl}}) {
      SCOPED_TRACE(name(c) + " H=" + std::to_string(shape.hidden_size));
      const Problem<float> pr(shape, c.loss, 23, 7 + static_cast<int>(c.cell) * 10 + c.layers);
      check_all_policies(pr, cuda_state_sizes(shape, sizeof(float)), run_gpu<float>);
    }
}

TEST(Cuda, EveryPolicyBitwiseEqualToPlainBpttDoubleAndTf32) {
  MEMBPTT_NEED_GPU();
  {
    OptionsGuard guard;
    const NetShape shape{CellType::Lstm, 8, 16, 2, 4, 5};
    const Problem<double> pr(shape, LossKind::Xent, 23, 3);
    check_all_policies(pr, cuda_state_sizes(shape, sizeof(double)), run_gpu<double>);
  }
  {
    OptionsGuard guard(/*tf32=*/true, /*defer=*/5);
    const NetShape shape{CellType::Lstm, 32, 64, 1, 8, 10};
    const Problem<float> pr(shape, LossKind::Xent, 23, 4);
    check_all_policies(pr, cuda_state_sizes(shape, sizeof(float)), run_gpu<float>);
  }
}

// bf16 GEMMs: every policy bitwise equal to plain BPTT in that mode too, and within bf16's
// precision (8-bit mantissa inputs, float32 sums) of the CPU float64 reference.
TEST(Cuda, Bf16GemmsBitwiseAcrossPoliciesAndNearFloat64) {
  MEMBPTT_NEED_GPU();
  OptionsGuard guard(/*tf32=*/false, /*defer=*/8, /*bf16=*/true);
  const NetShape shape{CellType::Lstm, 32, 64, 1, 8, 10};
  const Problem<double> pr(shape, LossKind::Xent, 30, 6);
  check_all_policies(pr.as<float>(), cuda_state_sizes(shape, sizeof(float)), run_gpu<float>);
  const Plan plan = plain_plan(pr.T_len, cuda_state_sizes(shape, sizeof(float)));
  const Outcome<float> bf = run_gpu(pr.as<float>(), plan);
  expect_close(bf, run_cpu(pr, plan), shape, 3e-2);
  OptionsGuard full;  // and bf16 is not float32: the bits differ from full products
  EXPECT_FALSE(same_bits(bf.grads, run_gpu(pr.as<float>(), plan).grads));
}

TEST(Cuda, Float32MatchesCpuFloat64Within1e4) {
  MEMBPTT_NEED_GPU();
  OptionsGuard guard;
  for (const Case& c : kCases)
    for (const NetShape shape : {NetShape{c.cell, 8, 16, c.layers, 4, 5, c.bias, c.nl}, NetShape{c.cell, 4, 5, c.layers, 3, 3, c.bias, c.nl}}) {
      SCOPED_TRACE(name(c) + " H=" + std::to_string(shape.hidden_size));
      const Problem<double> pr(shape, c.loss, 40, 5);
      const Plan plan = plain_plan(pr.T_len, cuda_state_sizes(shape, sizeof(float)));
      expect_close(run_gpu(pr.as<float>(), plan), run_cpu(pr, plan), shape, 1e-4);
    }
}

TEST(Cuda, Float64MatchesCpuFloat64ToRounding) {
  MEMBPTT_NEED_GPU();
  OptionsGuard guard;
  for (const Case& c : kCases) {
    SCOPED_TRACE(name(c));
    const NetShape shape{c.cell, 8, 16, c.layers, 4, 5};
    const Problem<double> pr(shape, c.loss, 30, 6);
    const Plan plan = plain_plan(pr.T_len, cuda_state_sizes(shape, sizeof(double)));
    expect_close(run_gpu(pr, plan), run_cpu(pr, plan), shape, 1e-10);
  }
}

// Large enough for many blocks per kernel, several strides in the loss kernel (O > 256), and
// cuBLAS's bigger kernels; a tight MSM plan against plain BPTT, and against the CPU.
TEST(Cuda, LargerShapes) {
  MEMBPTT_NEED_GPU();
  OptionsGuard guard;
  const NetShape shape{CellType::Lstm, 96, 256, 2, 32, 300};
  const Problem<double> pr(shape, LossKind::Xent, 60, 8);
  const StateSizes sizes = cuda_state_sizes(shape, sizeof(float));
  const Plan plan = plain_plan(pr.T_len, sizes);
  const Problem<float> pf = pr.as<float>();
  const Outcome<float> plain = run_gpu(pf, plan);
  expect_close(plain, run_cpu(pr, plan), shape, 1e-4);
  const double budget = static_cast<double>(sizes.workspace_bytes) + 0.1 * static_cast<double>(pr.T_len * sizes.internal_bytes);
  const Plan tight = plan_for_bytes(Policy::Msm, pr.T_len, budget, sizes, 2.0);
  const Outcome<float> got = run_gpu(pf, tight);
  EXPECT_EQ(got.stats.forward_steps, tight.forward_steps);
  EXPECT_GT(got.stats.forward_steps, pr.T_len);
  EXPECT_TRUE(same_bits(got.grads, plain.grads));
  EXPECT_TRUE(same_bits(got.dh0, plain.dh0));
  EXPECT_EQ(std::memcmp(&got.stats.loss, &plain.stats.loss, sizeof(double)), 0);
  EXPECT_LE(static_cast<double>(got.workspace_bytes + got.stats.peak_arena_bytes), budget);
}

TEST(Cuda, SameInputsSameBitsRunToRun) {
  MEMBPTT_NEED_GPU();
  OptionsGuard guard;
  const NetShape shape{CellType::Gru, 64, 128, 2, 16, 40};
  const Problem<float> pr(shape, LossKind::Xent, 33, 12);
  const Plan plan = plain_plan(pr.T_len, cuda_state_sizes(shape, sizeof(float)));
  const Outcome<float> a = run_gpu(pr, plan), b = run_gpu(pr, plan);
  EXPECT_TRUE(same_bits(a.grads, b.grads));
  EXPECT_TRUE(same_bits(a.dh0, b.dh0));
  EXPECT_EQ(std::memcmp(&a.stats.loss, &b.stats.loss, sizeof(double)), 0);
}

TEST(Cuda, WorkspaceAndDeviceMemoryAreWhatThePlannerIsTold) {
  MEMBPTT_NEED_GPU();
  OptionsGuard guard;
  const NetShape shape{CellType::Lstm, 64, 128, 1, 16, 10};
  const StateSizes sizes = cuda_state_sizes(shape, sizeof(float));
  synchronize();
  const MemInfo before = mem_info();
  CudaExecutor<float> ex(shape, LossKind::Xent, plain_plan(50, sizes));
  synchronize();
  const MemInfo after = mem_info();
  EXPECT_EQ(ex.workspace_bytes(), sizes.workspace_bytes);
  const double held = static_cast<double>(ex.workspace_bytes() + ex.arena_bytes());
  const double taken = static_cast<double>(before.free_bytes) - static_cast<double>(after.free_bytes);
  // cudaMalloc rounds each buffer up (2 MiB pages at most): allow that slack per buffer.
  EXPECT_LE(taken, held + 40.0 * (2 << 20)) << "held " << held << " taken " << taken;
}

// A replayed graph reads what the buffers hold now: new inputs and parameters at the same
// addresses give the bits a kernel-by-kernel pass gives on them. New addresses capture anew.
TEST(Cuda, GraphReplayEqualsKernelByKernelOnNewData) {
  MEMBPTT_NEED_GPU();
  OptionsGuard guard(true);
  const NetShape shape{CellType::Lstm, 24, 64, 2, 8, 12};
  const StateSizes sizes = cuda_state_sizes(shape, sizeof(float));
  const Plan plan = plan_for_bytes(Policy::Msm, 60, 0.2 * static_cast<double>(sizes.plain_bptt_bytes(60)), sizes, 2.0);
  CudaExecutor<float> ex(shape, LossKind::Xent, plan, true);
  ASSERT_TRUE(ex.graphs());
  CudaParams<float> params(shape), grads(shape);
  Problem<float> pr(shape, LossKind::Xent, 60, 1);
  auto x = to_device<CudaOps>(pr.x);
  const auto cls = to_device<CudaOps>(pr.cls);
  const auto y = to_device<CudaOps>(pr.y);
  DeviceBuffer<float> fc(ex.net().carry_elems());
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Problem<float> now(shape, LossKind::Xent, 60, seed);
    now.cls = pr.cls;
    params.upload(now.params);
    upload(x.data(), now.x.data(), now.x.size());
    grads.zero();
    const RunStats st = ex.run(params, {60, x.data(), cls.data(), y.data(), nullptr}, grads, fc.data());
    EXPECT_EQ(ex.captures(), 1);
    EXPECT_GT(ex.graph_nodes(), static_cast<std::size_t>(plan.forward_steps));
    Params<float> g(shape);
    grads.download(g);
    now.h0.assign(now.h0.size(), 0.0f);
    const Outcome<float> ref = run_stream(now, plan);
    EXPECT_TRUE(same_bits(std::vector<float>(g.data(), g.data() + g.size()), ref.grads));
    EXPECT_TRUE(same_bits(to_host<CudaOps, float>(fc), ref.final_carry));
    EXPECT_EQ(std::memcmp(&st.loss, &ref.stats.loss, sizeof(double)), 0);
    EXPECT_EQ(st.forward_steps, plan.forward_steps);
  }
  Params<float> g1(shape), g2(shape);
  grads.download(g1);
  CudaParams<float> grads2(shape);
  ex.run(params, {60, x.data(), cls.data(), y.data(), nullptr}, grads2, fc.data());
  EXPECT_EQ(ex.captures(), 2) << "a new gradient buffer needs a new graph";
  grads2.download(g2);
  EXPECT_EQ(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(float)), 0);
}

// With graphs off (or over Options::graph_max_steps) CudaExecutor issues kernel by kernel.
TEST(Cuda, GraphsCanBeTurnedOff) {
  MEMBPTT_NEED_GPU();
  OptionsGuard guard;
  const NetShape shape{CellType::Gru, 8, 16, 1, 4, 5};
  const Plan plan = plain_plan(20, cuda_state_sizes(shape, sizeof(float)));
  EXPECT_FALSE(CudaExecutor<float>(shape, LossKind::Xent, plan, false).graphs());
  Options o = options();
  o.graph_max_steps = 39;
  set_options(o);
  EXPECT_FALSE(CudaExecutor<float>(shape, LossKind::Xent, plan).graphs());
  o.graph_max_steps = 40;
  set_options(o);
  EXPECT_TRUE(CudaExecutor<float>(shape, LossKind::Xent, plan).graphs());
}

TEST(Cuda, BadTargetsThrow) {
  MEMBPTT_NEED_GPU();
  OptionsGuard guard;
  const NetShape shape{CellType::Rnn, 2, 4, 1, 2, 3};
  Problem<float> pr(shape, LossKind::Xent, 5, 1);
  pr.cls[3] = 7;
  EXPECT_THROW(run_gpu(pr, plain_plan(pr.T_len, cuda_state_sizes(shape, sizeof(float)))), std::invalid_argument);
}

}  // namespace
}  // namespace membptt::cuda::test
