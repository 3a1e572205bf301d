// Training passes over bidirectional stacks (train/gradient_pass.hpp): every plan gives plain
// BPTT's bits, the loss is the head's on the stack's outputs, the top outputs are in the budget,
// and the trainer plans, steps and writes the option into its config.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <span>
#include <tuple>
#include <string>
#include <vector>

#include "membptt/cells/head.hpp"
#include "membptt/exec/bidirectional.hpp"
#include "membptt/train/config.hpp"
#include "membptt/train/gradient_pass.hpp"
#include "membptt/train/trainer.hpp"

namespace membptt::train {
namespace {

NetShape bi_shape(CellType cell, LossKind loss, int proj = 0) {
  NetShape s;
  s.cell = cell;
  s.input_size = 3;
  s.hidden_size = 5;
  s.num_layers = 2;
  s.batch = 2;
  s.output_size = loss == LossKind::Xent ? 4 : 2;
  s.proj_size = proj;
  s.bidirectional = true;
  return s;
}

struct Outcome {
  RunStats stats;
  std::vector<double> grads, carry;
  std::size_t workspace = 0;
  std::int64_t planned = 0;
};

Outcome run(const NetShape& s, LossKind loss, const BidirectionalPlans& plans, std::int64_t T) {
  Params<double> p(s), g(s);
  init_pytorch_default(p, 11);
  std::vector<double> x(static_cast<std::size_t>(T * s.batch * s.input_size)), y(static_cast<std::size_t>(s.batch * s.output_size));
  fill_uniform(std::span<double>(x), 1.0, 3);
  fill_uniform(std::span<double>(y), 1.0, 4);
  std::vector<std::int64_t> cls(static_cast<std::size_t>(T * s.batch));
  for (std::size_t i = 0; i < cls.size(); ++i) cls[i] = static_cast<std::int64_t>((i * 5) % static_cast<std::size_t>(s.output_size));
  std::vector<double> h0(carry_elems(s));
  fill_uniform(std::span<double>(h0), 0.5, 5);
  auto pass = make_bidirectional_pass<double>(s, loss, plans);
  Outcome o;
  o.carry.resize(carry_elems(s));
  o.stats = pass->run(p, {T, x.data(), cls.data(), y.data(), h0.data()}, g, o.carry.data());
  o.grads.assign(g.data(), g.data() + g.size());
  o.workspace = pass->workspace_bytes();
  o.planned = pass->planned_forward_steps();
  // The loss is the head's on the stack's outputs (computed apart, forward only).
  std::vector<double> out(static_cast<std::size_t>(T * s.batch * 2 * output_width(s)));
  bidirectional_infer(s, p.data(), x.data(), T, h0.data(), out.data(), static_cast<double*>(nullptr), false, 0);
  Head<double> head(s);
  const std::size_t row = static_cast<std::size_t>(s.batch * 2 * output_width(s));
  double want = 0;
  if (loss == LossKind::Xent) {
    for (std::int64_t t = 0; t < T; ++t)
      want += head.step_xent_loss(p, out.data() + static_cast<std::size_t>(t) * row,
                                  cls.data() + static_cast<std::size_t>(t * s.batch), 1.0 / static_cast<double>(T * s.batch));
  } else {
    want = head.last_mse_loss(p, out.data() + static_cast<std::size_t>(T - 1) * row, y.data());
  }
  EXPECT_NEAR(o.stats.loss, want, 1e-12 * std::abs(want));
  return o;
}

TEST(TrainBidirectional, EveryPlanGivesPlainBpttsBitsAndTheHeadsLoss) {
  const std::int64_t T = 11;
  for (const auto& [cell, loss, proj] : {std::tuple{CellType::Lstm, LossKind::Xent, 0}, std::tuple{CellType::Lstm, LossKind::MseLast, 2},
                                         std::tuple{CellType::Gru, LossKind::Xent, 0}}) {
    const NetShape s = bi_shape(cell, loss, proj);
    SCOPED_TRACE(std::string(cell_name(cell)) + (loss == LossKind::Xent ? " xent" : " mse_last"));
    const Outcome full = run(s, loss, plan_bidirectional_pass(Policy::Full, s, T, std::nullopt, 8, 2.0), T);
    EXPECT_EQ(full.stats.forward_steps, 2 * s.num_layers * T);
    EXPECT_EQ(full.planned, full.stats.forward_steps);
    // The top outputs, their gradient and the head's scratch are counted.
    EXPECT_GE(static_cast<double>(full.workspace), bidirectional_pass_extra_bytes(s, T, 8));
    EXPECT_LE(static_cast<double>(full.workspace + full.stats.peak_arena_bytes), bidirectional_pass_plain_bytes(s, T, 8));
    for (const Policy p : {Policy::Msm, Policy::Hsm, Policy::Revolve, Policy::ChenSqrt}) {
      const double least = bidirectional_pass_least_bytes(p, s, T, 8);
      const Outcome o = run(s, loss, plan_bidirectional_pass(p, s, T, least, 8, 2.0), T);
      EXPECT_EQ(std::memcmp(o.grads.data(), full.grads.data(), o.grads.size() * sizeof(double)), 0) << policy_name(p);
      EXPECT_EQ(std::memcmp(o.carry.data(), full.carry.data(), o.carry.size() * sizeof(double)), 0) << policy_name(p);
      EXPECT_EQ(o.stats.loss, full.stats.loss) << policy_name(p);
      EXPECT_EQ(o.stats.forward_steps, o.planned) << policy_name(p);
      EXPECT_LE(static_cast<double>(o.workspace + o.stats.peak_arena_bytes), least) << policy_name(p);
    }
  }
}

TEST(TrainBidirectional, ABudgetBelowTheLeastNamesIt) {
  const NetShape s = bi_shape(CellType::Lstm, LossKind::Xent);
  const double least = bidirectional_pass_least_bytes(Policy::Msm, s, 50, 4);
  try {
    plan_bidirectional_pass(Policy::Msm, s, 50, least - 1, 4, 2.0);
    FAIL() << "no error";
  } catch (const PlanError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("is below the least in which policy msm runs this bidirectional network"), std::string::npos) << m;
    EXPECT_NE(m.find(std::to_string(static_cast<long long>(least)) + " bytes"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

TEST(TrainBidirectional, TheTrainerPlansStepsAndKeepsTheOption) {
  TrainConfig c;
  c.task = "copy";
  c.copy_symbols = 2;
  c.length = 8;
  c.hidden = 6;
  c.layers = 2;
  c.batch = 3;
  c.steps = 3;
  c.bidirectional = true;
  c.memory = "60%";
  const auto t = make_trainer(c, nullptr);
  EXPECT_EQ(t->planned_forward_steps(), [&] {
    NetShape s = bi_shape(CellType::Lstm, LossKind::Xent);
    s.input_size = c.copy_alphabet + 2;
    s.output_size = c.copy_alphabet + 1;
    s.hidden_size = c.hidden;
    s.batch = c.batch;
    const auto plans = plan_bidirectional_pass(std::nullopt, s, c.length, bidirectional_pass_budget_bytes(parse_budget("60%"), s, c.length, 4), 4, 2.0);
    std::int64_t n = 0;
    for (const auto& p : plans.layer) n += 2 * p->forward_steps;
    return n;
  }());
  EXPECT_LT(t->planned_bytes(), t->plain_bytes());
  for (int k = 0; k < 2; ++k) {
    const StepResult r = t->step();
    EXPECT_TRUE(std::isfinite(r.loss));
    EXPECT_EQ(r.stats.forward_steps, t->planned_forward_steps());
  }
  EXPECT_TRUE(t->compare_with_plain(1).bitwise_equal);
  EXPECT_EQ(to_json(c).at("bidirectional"), true);
  EXPECT_TRUE(config_from_json(to_json(c), "test").bidirectional);
  EXPECT_FALSE(to_json(TrainConfig{}).contains("bidirectional"));
  TrainConfig one_way = c;
  one_way.bidirectional = false;
  EXPECT_NE(result_difference(c, one_way).find("--bidirectional true in the checkpoint, false given"), std::string::npos);
}

}  // namespace
}  // namespace membptt::train
