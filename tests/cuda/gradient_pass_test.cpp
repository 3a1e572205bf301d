// The trainer's device gradient pass (cuda/gradient_pass.hpp) on the host through HostOps: no GPU
// needed, so CI checks what `membptt train --device cuda` runs besides the kernels: uploads of the
// host parameters and batch, h_0 and the carried state, gradients overwritten and downloaded, the
// device's state sizes given to the planner, and compare_with_plain on the device.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common.hpp"
#include "host_ops.hpp"
#include "membptt/cuda/gradient_pass.hpp"
#include "membptt/train/trainer.hpp"

namespace membptt::cuda::test {
namespace {

namespace fs = std::filesystem;
using train::TrainConfig;

// Small weight-gradient groups and input blocks: the tiny networks here then leave room for plans
// besides the device's workspace, whatever the defaults (which are sized for large networks).
struct SmallWorkspace : ScopedOptions {
  SmallWorkspace()
      : ScopedOptions([](Options& o) {
          o.defer_steps = 4;
          o.input_chunk_steps = 4;
        }) {}
};

std::shared_ptr<const train::GradientDevice> emulated() {
  return std::make_shared<const BasicGradientDevice<HostOps>>("host emulation");
}

TrainConfig small(const std::string& dtype) {
  TrainConfig c;
  c.hidden = 6;
  c.batch = 3;
  c.length = 60;  // long enough that 40% leaves room besides the device's larger workspace
  c.steps = 8;
  c.lr = 0.01;
  c.memory = "40%";
  c.dtype = dtype;
  return c;
}

double rel(double a, double b) { return std::abs(a - b) / std::max(1e-300, std::abs(b)); }

// The same run on the CPU and on the emulated device: the same losses to rounding, step by step.
void expect_same_run(const TrainConfig& c, double tol) {
  auto corpus = train::load_corpus(c);
  auto cpu = train::make_trainer(c, corpus), dev = train::make_trainer(c, corpus, emulated());
  EXPECT_EQ(cpu->device(), "cpu");
  EXPECT_EQ(dev->device(), "host emulation");
  for (std::int64_t k = 0; k < c.steps; ++k) {
    const train::StepResult a = cpu->step(), b = dev->step();
    EXPECT_LE(rel(b.loss, a.loss), tol) << "step " << b.step << ": " << b.loss << " vs " << a.loss;
    EXPECT_LE(rel(b.grad_norm, a.grad_norm), tol) << "step " << b.step;
    EXPECT_EQ(b.stats.forward_steps, dev->plan().forward_steps);
    EXPECT_EQ(b.held_bytes, dev->planned_bytes());
  }
}

TEST(GradientPassLogic, DeviceTrainerFollowsTheCpuTrainerFloat64) {
  SmallWorkspace guard;
  {
    SCOPED_TRACE("adding, lstm");
    expect_same_run(small("float64"), 1e-11);
  }
  {
    SCOPED_TRACE("copy, rnn");
    TrainConfig c = small("float64");
    c.task = "copy";
    c.cell = "rnn";
    c.copy_symbols = 3;
    c.copy_alphabet = 4;
    expect_same_run(c, 1e-11);
  }
}

TEST(GradientPassLogic, CarriedStateAcrossWindowsAndWrapAround) {
  SmallWorkspace guard;
  const fs::path dir = fs::temp_directory_path() / ("membptt_gp_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string text;
  for (int i = 0; i < 400; ++i) text += "the quick brown fox "[static_cast<std::size_t>(i % 20)];
  std::ofstream(dir / "t.txt") << text;
  TrainConfig c = small("float64");
  c.task = "text";
  c.text = (dir / "t.txt").string();
  c.cell = "gru";
  c.length = 30;
  c.steps = 10;  // 4 windows per pass over the streams: wraps twice (h_0 from the carry, then zeros)
  c.memory = "60%";
  expect_same_run(c, 1e-11);
  fs::remove_all(dir);
}

TEST(GradientPassLogic, DeviceSizesPlanAndComparisonWithPlainBptt) {
  SmallWorkspace guard;
  TrainConfig c = small("float32");
  auto t = train::make_trainer(c, nullptr, emulated());
  const NetShape shape{CellType::Lstm, 2, c.hidden, c.layers, c.batch, 1};
  EXPECT_EQ(t->sizes().workspace_bytes, (device_state_sizes<float, HostOps>(shape, options()).workspace_bytes));
  EXPECT_NE(t->sizes().workspace_bytes, state_sizes(shape, sizeof(float)).workspace_bytes);
  EXPECT_NE(t->plan().policy, Policy::Full);
  t->step();
  const train::PlainComparison pc = t->compare_with_plain(2);
  EXPECT_TRUE(pc.bitwise_equal);
  EXPECT_EQ(pc.plain_forward_steps, c.length);
  EXPECT_EQ(pc.chosen_forward_steps, t->plan().forward_steps);
  EXPECT_LT(pc.chosen_held_bytes, pc.plain_held_bytes);
  EXPECT_GT(pc.plain_seconds, 0);
}

TEST(GradientPassLogic, EveryBudgetGivesTheSameWeightsOnTheDevice) {
  SmallWorkspace guard;
  TrainConfig a = small("float32"), b = small("float32");
  a.memory = "100%";
  a.policy = "full";
  b.memory = "25%";
  auto ta = train::make_trainer(a, nullptr, emulated()), tb = train::make_trainer(b, nullptr, emulated());
  for (int i = 0; i < 5; ++i) {
    const double la = ta->step().loss, lb = tb->step().loss;
    EXPECT_EQ(std::memcmp(&la, &lb, sizeof(double)), 0) << "step " << i + 1;
  }
}

TEST(GradientPassLogic, GradientsAreOverwrittenAndTheBatchChecked) {
  SmallWorkspace guard;
  const NetShape shape{CellType::Lstm, 3, 5, 2, 4, 3};
  const Problem<double> pr(shape, LossKind::Xent, 11, 7);
  const Plan plan = plain_plan(pr.T_len, device_state_sizes<double, HostOps>(shape, options()));
  BasicDeviceGradientPass<double, HostOps> pass(shape, LossKind::Xent, plan);
  EXPECT_THROW(pass.time_again(), std::logic_error);
  const SequenceBatch<double> batch{pr.T_len, pr.x.data(), pr.cls.data(), nullptr, pr.h0.data()};
  Params<double> g1(shape), g2(shape);
  std::vector<double> c1(carry_elems(shape)), c2(carry_elems(shape));
  const RunStats s1 = pass.run(pr.params, batch, g1, c1.data());
  std::fill(g2.data(), g2.data() + g2.size(), 123.0);  // overwritten, not added to
  const RunStats s2 = pass.run(pr.params, batch, g2, c2.data());
  EXPECT_EQ(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(double)), 0);
  EXPECT_EQ(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(double)), 0);
  EXPECT_EQ(s1.loss, s2.loss);
  EXPECT_GE(pass.time_again(), 0.0);
  // Against the emulated executor run directly with the same problem: the same bits.
  const Outcome<double> direct = run_device<double, HostOps>(pr, plan);
  EXPECT_TRUE(same_bits(direct.grads, std::vector<double>(g1.data(), g1.data() + g1.size())));
  EXPECT_TRUE(same_bits(direct.final_carry, c1));
  EXPECT_EQ(s1.loss, direct.stats.loss);
  // No h_0: zeros, as the executor's own.
  const SequenceBatch<double> fresh{pr.T_len, pr.x.data(), pr.cls.data(), nullptr, nullptr};
  Problem<double> zero_h0(shape, LossKind::Xent, 11, 7);  // the same problem
  std::fill(zero_h0.h0.begin(), zero_h0.h0.end(), 0.0);
  const RunStats s3 = pass.run(pr.params, fresh, g2, nullptr);
  EXPECT_EQ(s3.loss, (run_device<double, HostOps>(zero_h0, plan).stats.loss));
  const SequenceBatch<double> short_batch{pr.T_len - 1, pr.x.data(), pr.cls.data(), nullptr, nullptr};
  EXPECT_THROW(pass.run(pr.params, short_batch, g2, nullptr), std::invalid_argument);
}

// A device whose passes say they replay a CUDA graph (what CudaExecutor's do on a GPU): the
// trainer hands that on with every step, for the progress line and the log.
template <class T>
class GraphReportingPass final : public train::GradientPass<T> {
 public:
  explicit GraphReportingPass(std::unique_ptr<train::GradientPass<T>> inner) : inner_(std::move(inner)) {}
  RunStats run(const Params<T>& p, const SequenceBatch<T>& b, Params<T>& g, T* carry) override {
    ++runs_;
    return inner_->run(p, b, g, carry);
  }
  void set_dropout(bool on, std::uint64_t seed) override { inner_->set_dropout(on, seed); }
  double time_again() override { return inner_->time_again(); }
  const Plan& plan() const override { return inner_->plan(); }
  std::size_t workspace_bytes() const override { return inner_->workspace_bytes(); }
  train::GraphUse graph() const override { return {100 + runs_, std::int64_t{2} << 20}; }

 private:
  std::unique_ptr<train::GradientPass<T>> inner_;
  std::int64_t runs_ = 0;
};

class GraphReportingDevice final : public train::GradientDevice {
 public:
  std::string name() const override { return inner_->name(); }
  StateSizes sizes(const NetShape& shape, std::size_t scalar_bytes) const override {
    return inner_->sizes(shape, scalar_bytes);
  }
  std::unique_ptr<train::GradientPass<float>> make_pass_f32(const NetShape& s, LossKind l, Plan p) const override {
    return std::make_unique<GraphReportingPass<float>>(inner_->make_pass_f32(s, l, std::move(p)));
  }
  std::unique_ptr<train::GradientPass<double>> make_pass_f64(const NetShape& s, LossKind l, Plan p) const override {
    return std::make_unique<GraphReportingPass<double>>(inner_->make_pass_f64(s, l, std::move(p)));
  }
  std::size_t head_scratch_bytes(const NetShape& s, std::size_t scalar_bytes) const override {
    return inner_->head_scratch_bytes(s, scalar_bytes);
  }
  std::unique_ptr<train::GradientPass<float>> make_bidirectional_pass_f32(const NetShape& s, LossKind l,
                                                                          const BidirectionalPlans& p) const override {
    return inner_->make_bidirectional_pass_f32(s, l, p);
  }
  std::unique_ptr<train::GradientPass<double>> make_bidirectional_pass_f64(const NetShape& s, LossKind l,
                                                                           const BidirectionalPlans& p) const override {
    return inner_->make_bidirectional_pass_f64(s, l, p);
  }

 private:
  std::shared_ptr<const train::GradientDevice> inner_ = emulated();
};

TEST(GradientPassLogic, EveryStepReportsThePassesGraph) {
  SmallWorkspace guard;
  const TrainConfig c = small("float64");
  auto plain = train::make_trainer(c, nullptr, emulated());
  EXPECT_EQ(plain->step().graph.kernels, 0);  // the emulation replays no graph
  auto t = train::make_trainer(c, nullptr, std::make_shared<const GraphReportingDevice>());
  for (std::int64_t k = 1; k <= 3; ++k) {
    const train::StepResult r = t->step();
    EXPECT_EQ(r.graph.kernels, 100 + k) << "step " << k;  // read after that step's pass
    EXPECT_EQ(r.graph.bytes, std::int64_t{2} << 20);
  }
}

}  // namespace
}  // namespace membptt::cuda::test
