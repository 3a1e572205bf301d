// Optimizers, clipping, and the trainer: exact resume, policy independence, corrupt checkpoints,
// divergence.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "membptt/train/optim.hpp"
#include "membptt/train/trainer.hpp"

namespace membptt::train {
namespace {

namespace fs = std::filesystem;

NetShape tiny_shape() { return NetShape{CellType::Rnn, 1, 1, 1, 1, 1}; }  // rnn 1x1 + head: 6 parameters

TEST(TrainOptim, AdamMatchesHandComputedSteps) {
  const NetShape s = tiny_shape();
  Params<double> p(s), g(s);
  ASSERT_EQ(p.size(), 6u);
  const double p0[6] = {1.0, -2.0, 0.5, 0.0, 3.0, -0.25};
  const double g1[6] = {0.5, -1.0, 1e-3, 0.0, 4.0, -0.75};
  const double g2[6] = {0.3, 2.0, -1e-3, 0.0, -4.0, 0.5};
  std::copy(p0, p0 + 6, p.data());
  Adam<double> adam(s, 0.1);
  // Step 1 by hand: m = 0.1 g, v = 0.001 g^2, so p -= lr * g / (|g| + eps) (bias corrections
  // 0.1 and 0.001 cancel): p -= 0.1 * sign(g) * |g| / (|g| + 1e-8).
  std::copy(g1, g1 + 6, g.data());
  adam.step(p, g);
  for (int i = 0; i < 6; ++i) {
    const double expect = p0[i] - (g1[i] == 0 ? 0.0 : 0.1 * g1[i] / (std::fabs(g1[i]) + 1e-8));
    EXPECT_NEAR(p.data()[i], expect, 1e-15) << i;
  }
  // Step 2 by the textbook formulas (Kingma & Ba): m_hat / (sqrt(v_hat) + eps).
  std::copy(g2, g2 + 6, g.data());
  const Params<double> before = p;
  adam.step(p, g);
  EXPECT_EQ(adam.steps(), 2);
  for (int i = 0; i < 6; ++i) {
    const long double m = 0.9L * 0.1L * g1[i] + 0.1L * g2[i];
    const long double v = 0.999L * 0.001L * g1[i] * g1[i] + 0.001L * g2[i] * g2[i];
    const long double mhat = m / (1 - 0.81L), vhat = v / (1 - 0.999L * 0.999L);
    const long double expect = before.data()[i] - 0.1L * mhat / (std::sqrt(vhat) + 1e-8L);
    EXPECT_NEAR(p.data()[i], static_cast<double>(expect), 1e-12) << i;
  }
  EXPECT_EQ(p.data()[3], 0.0);  // zero gradient, zero moments: no move
}

TEST(TrainOptim, SgdAndClipping) {
  const NetShape s = tiny_shape();
  Params<float> p(s), g(s);
  g.data()[0] = 3;
  g.data()[5] = 4;
  EXPECT_DOUBLE_EQ(global_norm(g), 5.0);
  Params<float> g2 = g;
  EXPECT_DOUBLE_EQ(clip_global_norm(g2, 10.0), 5.0);  // below the limit: untouched
  EXPECT_EQ(g2.data()[0], 3.0f);
  EXPECT_DOUBLE_EQ(clip_global_norm(g2, 0.0), 5.0);  // 0: off
  EXPECT_EQ(g2.data()[5], 4.0f);
  EXPECT_DOUBLE_EQ(clip_global_norm(g2, 1.0), 5.0);
  const float coef = static_cast<float>(1.0 / (5.0 + 1e-6));
  EXPECT_EQ(g2.data()[0], 3.0f * coef);
  EXPECT_EQ(g2.data()[5], 4.0f * coef);
  EXPECT_NEAR(global_norm(g2), 1.0, 1e-6);
  Sgd<float> sgd(0.5);
  sgd.step(p, g);
  EXPECT_EQ(p.data()[0], -1.5f);
  EXPECT_EQ(p.data()[5], -2.0f);
  g.data()[1] = std::nanf("");
  Params<float> g3 = g;
  EXPECT_TRUE(std::isnan(clip_global_norm(g3, 1.0)));
  EXPECT_EQ(g3.data()[0], 3.0f);  // left alone
  EXPECT_THROW((void)make_optimizer<float>("rmsprop", s, 0.1), TrainError);
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("membptt_train_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TrainConfig small_adding() {
  TrainConfig c;
  c.task = "adding";
  c.hidden = 6;
  c.batch = 3;
  c.length = 17;
  c.steps = 8;
  c.lr = 0.01;
  c.memory = "30%";
  return c;
}

std::string run_and_dump(const TrainConfig& c, std::int64_t steps, const fs::path& model) {
  auto t = make_trainer(c, load_corpus(c));
  for (std::int64_t i = 0; i < steps; ++i) t->step();
  t->write_model(model);
  return slurp(model);
}

TEST(TrainTrainer, EveryPolicyGivesTheSameWeights) {
  TempDir d;
  TrainConfig c = small_adding();
  c.memory = "100%";
  c.policy = "full";
  TrainConfig m = c;
  m.memory = "25%";
  m.policy = "auto";
  auto a = make_trainer(c, nullptr), b = make_trainer(m, nullptr);
  EXPECT_EQ(a->plan().policy, Policy::Full);
  EXPECT_NE(b->plan().policy, Policy::Full);
  EXPECT_LT(b->planned_bytes(), a->planned_bytes());
  for (int i = 0; i < 5; ++i) {
    const StepResult ra = a->step(), rb = b->step();
    EXPECT_EQ(ra.loss, rb.loss);
    EXPECT_EQ(rb.stats.forward_steps, b->plan().forward_steps);
    EXPECT_EQ(rb.held_bytes, b->planned_bytes());
  }
  a->write_model(d.path / "a");
  b->write_model(d.path / "b");
  // The configs differ in memory and policy only; compare the parameters.
  const ModelSource ma = open_model(d.path / "a"), mb = open_model(d.path / "b");
  for (const auto& [name, info] : ma.tensors.tensors()) {
    const auto x = ma.tensors.bytes(name), y = mb.tensors.bytes(name);
    ASSERT_EQ(x.size(), y.size());
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size()), 0) << name;
  }
  EXPECT_TRUE(b->compare_with_plain(1).bitwise_equal);
}

void check_resume(TrainConfig c, const fs::path& dir) {
  const std::string whole = run_and_dump(c, c.steps, dir / "whole.safetensors");
  auto first = make_trainer(c, load_corpus(c));
  for (int i = 0; i < 3; ++i) first->step();
  first->save_checkpoint(dir / kCheckpointName, 1.0);
  first.reset();
  c.memory = "80%";  // a resumed run may use another budget
  auto second = make_trainer(c, load_corpus(c));
  second->restore(open_checkpoint(dir));
  EXPECT_EQ(second->step_count(), 3);
  while (second->step_count() < c.steps) second->step();
  second->write_model(dir / "resumed.safetensors");
  const ModelSource a = open_model(dir / "whole.safetensors"), b = open_model(dir / "resumed.safetensors");
  for (const auto& [name, info] : a.tensors.tensors()) {
    const auto x = a.tensors.bytes(name), y = b.tensors.bytes(name);
    ASSERT_EQ(x.size(), y.size());
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size()), 0) << name;
  }
}

TEST(TrainTrainer, ResumeIsExactAdding) {
  TempDir d;
  check_resume(small_adding(), d.path);
}

TEST(TrainTrainer, ResumeIsExactTextWithCarriedState) {
  TempDir d;
  std::string text;
  for (int i = 0; i < 400; ++i) text += "the quick brown fox "[static_cast<std::size_t>(i % 20)];
  std::ofstream(d.path / "t.txt") << text;
  TrainConfig c = small_adding();
  c.task = "text";
  c.text = (d.path / "t.txt").string();
  c.cell = "gru";
  c.length = 9;
  c.steps = 30;  // 360 training characters / 3 streams / 9 = 13 windows per pass: wraps twice
  c.memory = "50%";
  check_resume(c, d.path);
}

TEST(TrainTrainer, CorruptCheckpointIsRefused) {
  TempDir d;
  auto t = make_trainer(small_adding(), nullptr);
  t->step();
  const fs::path ck = d.path / kCheckpointName;
  t->save_checkpoint(ck, 0.5);
  EXPECT_NO_THROW((void)open_checkpoint(d.path));
  std::string bytes = slurp(ck);
  // Flip one byte of tensor data near the end.
  std::string bad = bytes;
  bad[bad.size() - 5] = static_cast<char>(bad[bad.size() - 5] ^ 0x40);
  std::ofstream(ck, std::ios::binary) << bad;
  try {
    (void)open_checkpoint(d.path);
    FAIL();
  } catch (const TrainError& e) {
    EXPECT_NE(std::string(e.what()).find("checksum mismatch"), std::string::npos) << e.what();
  }
  std::ofstream(ck, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  EXPECT_THROW((void)open_checkpoint(d.path), TrainError);
  // A model file is not a checkpoint.
  t->write_model(d.path / "m.safetensors");
  EXPECT_THROW((void)open_checkpoint(d.path / "m.safetensors"), TrainError);
  EXPECT_NO_THROW((void)open_model(d.path / "m.safetensors"));
}

TEST(TrainTrainer, HugeLearningRateDiverges) {
  TrainConfig c = small_adding();
  c.optimizer = "sgd";
  c.lr = 1e30;
  c.clip = 0;
  auto t = make_trainer(c, nullptr);
  try {
    for (int i = 0; i < 20; ++i) t->step();
    FAIL() << "no divergence";
  } catch (const Diverged& d) {
    EXPECT_GE(d.step, 1);
    EXPECT_NE(std::string(d.what()).find("step " + std::to_string(d.step)), std::string::npos) << d.what();
  }
}

TEST(TrainTrainer, BudgetTooSmallNamesTheLeast) {
  TrainConfig c = small_adding();
  c.memory = "10B";
  try {
    (void)make_trainer(c, nullptr);
    FAIL();
  } catch (const PlanError& e) {
    EXPECT_NE(std::string(e.what()).find("is below the least"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace membptt::train
