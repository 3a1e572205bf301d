// The trainer's data: task generators, UTF-8, the text corpus and its stream windows, budgets.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "membptt/exec/budget.hpp"
#include "membptt/train/tasks.hpp"
#include "membptt/train/utf8.hpp"

namespace membptt::train {
namespace {

TrainConfig small(const std::string& task, std::int64_t length, int batch) {
  TrainConfig c;
  c.task = task;
  c.length = length;
  c.batch = batch;
  c.hidden = 4;
  return c;
}

TEST(TrainTasks, AddingShapesMarkersAndTargets) {
  const TrainConfig c = small("adding", 11, 5);
  auto task = make_task<float>(c, nullptr);
  EXPECT_EQ(task->info().input_size, 2);
  EXPECT_EQ(task->info().output_size, 1);
  EXPECT_EQ(task->info().loss, LossKind::MseLast);
  EXPECT_NEAR(task->baseline(), 1.0 / 6.0, 1e-12);
  Batch<float> b;
  for (int rep = 0; rep < 20; ++rep) {
    task->next_batch(b);
    ASSERT_EQ(b.inputs.size(), 11u * 5 * 2);
    ASSERT_EQ(b.values.size(), 5u);
    EXPECT_TRUE(b.classes.empty());
    for (int i = 0; i < 5; ++i) {
      std::vector<std::int64_t> marked;
      for (int t = 0; t < 11; ++t) {
        const float* x = &b.inputs[(static_cast<std::size_t>(t) * 5 + static_cast<std::size_t>(i)) * 2];
        EXPECT_GE(x[0], 0.0f);
        EXPECT_LT(x[0], 1.0f);
        ASSERT_TRUE(x[1] == 0.0f || x[1] == 1.0f);
        if (x[1] == 1.0f) marked.push_back(t);
      }
      ASSERT_EQ(marked.size(), 2u);
      EXPECT_LT(marked[0], 5);  // first half: [0, T/2)
      EXPECT_GE(marked[1], 5);  // second half: [T/2, T)
      const float v1 = b.inputs[(static_cast<std::size_t>(marked[0]) * 5 + static_cast<std::size_t>(i)) * 2];
      const float v2 = b.inputs[(static_cast<std::size_t>(marked[1]) * 5 + static_cast<std::size_t>(i)) * 2];
      EXPECT_EQ(b.values[static_cast<std::size_t>(i)], static_cast<float>(double{v1} + double{v2}));
    }
  }
}

TEST(TrainTasks, AddingStateRestoresTheStream) {
  const TrainConfig c = small("adding", 8, 3);
  auto a = make_task<double>(c, nullptr);
  Batch<double> b1, b2;
  a->next_batch(b1);
  const nlohmann::json st = a->state();
  a->next_batch(b1);
  auto fresh = make_task<double>(c, nullptr);
  fresh->restore(st);
  fresh->next_batch(b2);
  EXPECT_EQ(b1.inputs, b2.inputs);
  EXPECT_EQ(b1.values, b2.values);
  EXPECT_THROW(fresh->restore(nlohmann::json{{"rng", "not a state"}}), TrainError);
}

TEST(TrainTasks, AddingNeedsTwoSteps) {
  try {
    (void)make_task<float>(small("adding", 1, 2), nullptr);
    FAIL();
  } catch (const TrainError& e) {
    EXPECT_NE(std::string(e.what()).find("--length 1"), std::string::npos) << e.what();
  }
}

TEST(TrainTasks, CopyLayout) {
  TrainConfig c = small("copy", 13, 4);
  c.copy_symbols = 3;
  c.copy_alphabet = 5;
  auto task = make_task<float>(c, nullptr);
  const int A = 5, K = 3, T = 13, B = 4, I = A + 2;
  EXPECT_EQ(task->info().input_size, I);
  EXPECT_EQ(task->info().output_size, A + 1);
  EXPECT_EQ(task->info().loss, LossKind::Xent);
  EXPECT_NEAR(task->baseline(), K * std::log(5.0) / T, 1e-12);
  Batch<float> b;
  task->next_batch(b);
  ASSERT_EQ(b.inputs.size(), static_cast<std::size_t>(T * B * I));
  ASSERT_EQ(b.classes.size(), static_cast<std::size_t>(T * B));
  for (int i = 0; i < B; ++i) {
    std::vector<int> channel(T);
    for (int t = 0; t < T; ++t) {
      int ones = 0;
      for (int k = 0; k < I; ++k) {
        const float v = b.inputs[static_cast<std::size_t>((t * B + i) * I + k)];
        if (v == 1.0f) ++ones, channel[static_cast<std::size_t>(t)] = k;
        else ASSERT_EQ(v, 0.0f);
      }
      ASSERT_EQ(ones, 1);
    }
    for (int t = 0; t < T; ++t) {
      const auto target = b.classes[static_cast<std::size_t>(t * B + i)];
      const int ch = channel[static_cast<std::size_t>(t)];
      if (t < K) EXPECT_LT(ch, A);
      else if (t == T - K - 1) EXPECT_EQ(ch, A + 1);  // delimiter
      else EXPECT_EQ(ch, A);                          // blank
      if (t >= T - K) EXPECT_EQ(target, channel[static_cast<std::size_t>(t - (T - K))]);
      else EXPECT_EQ(target, A);
    }
  }
  c.length = 6;  // < 2K + 1
  EXPECT_THROW((void)make_task<float>(c, nullptr), TrainError);
}

TEST(TrainUtf8, ValidAndInvalid) {
  const std::string ok = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";  // a é € 😀
  EXPECT_FALSE(find_invalid_utf8(ok));
  const auto cps = decode_utf8(ok, "t");
  ASSERT_EQ(cps.size(), 4u);
  EXPECT_EQ(cps[1], U'\u00e9');
  EXPECT_EQ(cps[3], U'\U0001F600');
  EXPECT_EQ(encode_utf8(cps), ok);
  EXPECT_EQ(find_invalid_utf8("ab\x80"), 2u);              // lone continuation byte
  EXPECT_EQ(find_invalid_utf8("\xc0\x80"), 0u);            // overlong NUL
  EXPECT_EQ(find_invalid_utf8("x\xe0\x80\xaf"), 1u);       // overlong
  EXPECT_EQ(find_invalid_utf8("\xed\xa0\x80"), 0u);        // surrogate
  EXPECT_EQ(find_invalid_utf8("\xf4\x90\x80\x80"), 0u);    // above U+10FFFF
  EXPECT_EQ(find_invalid_utf8("abc\xe2\x82"), 3u);         // truncated at the end
  EXPECT_EQ(find_invalid_utf8("\xff"), 0u);
  try {
    (void)decode_utf8("line\nline\n\xff", "text file f.txt");
    FAIL();
  } catch (const TrainError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("f.txt is not valid UTF-8"), std::string::npos) << m;
    EXPECT_NE(m.find("byte offset 10 (line 3)"), std::string::npos) << m;
  }
}

TEST(TrainCorpus, VocabularySplitAndErrors) {
  // 20 characters: the first 18 train, the last 2 are held out; 'z' only in the held-out part.
  const Corpus c = Corpus::from_bytes("abcabcabcabcabcabcaz", "mem");
  EXPECT_EQ(c.vocab, (std::vector<char32_t>{U'a', U'b', U'c'}));
  EXPECT_EQ(c.classes(), 4);
  EXPECT_EQ(c.train.size(), 18u);
  ASSERT_EQ(c.heldout.size(), 2u);
  EXPECT_EQ(c.heldout[0], 0);
  EXPECT_EQ(c.heldout[1], c.unknown_class());
  EXPECT_THROW((void)Corpus::from_bytes("", "empty"), TrainError);
  EXPECT_THROW((void)Corpus::from_bytes("a", "one"), TrainError);
  EXPECT_THROW((void)Corpus::from_bytes("ab\xfe", "bad"), TrainError);
}

// Issue 11 C: a held-out part whose characters the training part never has. A model that always
// predicts the unknown class used to score 100%; an unknown target is never predicted right, and
// costs -ln p(unknown) + ln(code points outside the vocabulary).
TEST(TrainCorpus, UnseenHeldOutCharactersAreNeverRightAndCostTheirShare) {
  std::string text;
  for (int i = 0; i < 450; ++i) text += "ab";
  for (int i = 0; i < 25; ++i) text += "pqrs";
  auto corpus = std::make_shared<const Corpus>(Corpus::from_bytes(text, "mem"));
  ASSERT_EQ(corpus->vocab.size(), 2u);
  TrainConfig c = small("text", 10, 2);
  c.text = "mem";
  auto task = make_task<double>(c, corpus);
  const NetShape shape{CellType::Lstm, 3, 4, 1, 2, 3};
  Params<double> p(shape);
  auto bias = p.view("head.bias");
  bias[static_cast<std::size_t>(corpus->unknown_class())] = 50;  // always answers "unknown", p ~ 1
  const EvalResult r = task->evaluate(p, shape, 0);
  ASSERT_EQ(r.items, 99);
  EXPECT_EQ(r.unknown, 99);
  EXPECT_EQ(r.accuracy, 0.0);
  EXPECT_EQ(r.chance_accuracy, 0.0);
  EXPECT_NEAR(r.loss, std::log(unknown_code_points(2)), 1e-9);
  EXPECT_GT(r.baseline, std::log(unknown_code_points(2)));
  EXPECT_NE(r.summary().find("99 of them (100.0%) are outside the training vocabulary"), std::string::npos) << r.summary();
  EXPECT_EQ(r.to_json()["unknown"], 99);
  // In-vocabulary targets still count as before: the same model on a text with none unseen.
  std::string seen;
  for (int i = 0; i < 500; ++i) seen += "ab";
  auto known = std::make_shared<const Corpus>(Corpus::from_bytes(seen, "mem2"));
  const EvalResult k = make_task<double>(c, known)->evaluate(p, shape, 0);
  EXPECT_EQ(k.unknown, 0);
  EXPECT_EQ(k.summary().find("outside"), std::string::npos);
  EXPECT_EQ(unknown_code_points(2), 0x110000 - 0x800 - 2);
}

TEST(TrainCorpus, StreamWindows) {
  const StreamLayout l = stream_layout(103, 4, 5, "t");
  EXPECT_EQ(l.stream_len, 25);
  EXPECT_EQ(l.windows, 4);  // (25 - 1) / 5
  EXPECT_EQ(l.input_index(2, 3, 4), 2 * 25 + 3 * 5 + 4);
  try {
    (void)stream_layout(103, 4, 25, "the training part");
    FAIL();
  } catch (const TrainError& e) {
    EXPECT_NE(std::string(e.what()).find("--length 25 is longer than the data"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("allowed is --length 1 to 24"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)stream_layout(5, 4, 1, "t"), TrainError);  // streams of 1 character
}

TEST(TrainCorpus, TextTaskWindowsCarryAndWrap) {
  // 50 characters: training part 45 = "0123456789" repeated; 2 streams of 22, windows of 5: 4 per pass.
  std::string s;
  for (int i = 0; i < 50; ++i) s += static_cast<char>('0' + i % 10);
  auto corpus = std::make_shared<const Corpus>(Corpus::from_bytes(s, "digits"));
  TrainConfig c = small("text", 5, 2);
  c.text = "digits";
  auto task = make_task<float>(c, corpus);
  const int V = corpus->classes();
  ASSERT_EQ(V, 11);
  Batch<float> b;
  for (int pass = 0; pass < 2; ++pass) {
    for (int w = 0; w < 4; ++w) {
      task->next_batch(b);
      EXPECT_EQ(b.continues, w != 0) << "window " << w;
      for (int t = 0; t < 5; ++t) {
        for (int i = 0; i < 2; ++i) {
          const int at = i * 22 + w * 5 + t;
          const auto* x = &b.inputs[static_cast<std::size_t>((t * 2 + i) * V)];
          const auto hot = std::max_element(x, x + V) - x;
          EXPECT_EQ(hot, corpus->train[static_cast<std::size_t>(at)]);
          EXPECT_EQ(b.classes[static_cast<std::size_t>(t * 2 + i)], corpus->train[static_cast<std::size_t>(at + 1)]);
        }
      }
    }
  }
  EXPECT_EQ(task->state()["epoch"], 1);
  EXPECT_EQ(task->state()["window"], 4);
}

TEST(TrainBudget, ParsesUnitsAndPercent) {
  EXPECT_EQ(parse_budget("64MiB").value, 64.0 * 1024 * 1024);
  EXPECT_FALSE(parse_budget("64MiB").percent);
  EXPECT_EQ(parse_budget("500KB").value, 500e3);
  EXPECT_EQ(parse_budget("1e6").value, 1e6);
  EXPECT_EQ(parse_budget("2GiB").value, 2.0 * 1024 * 1024 * 1024);
  const BudgetSpec p = parse_budget("5%");
  EXPECT_TRUE(p.percent);
  EXPECT_EQ(p.value, 5.0);
  StateSizes sizes;
  sizes.hidden_bytes = 10;
  sizes.internal_bytes = 40;
  sizes.workspace_bytes = 100;
  EXPECT_DOUBLE_EQ(p.bytes(sizes, 50), 0.05 * (100 + 50 * 40));
  EXPECT_THROW((void)parse_budget("12QB"), PlanError);
  EXPECT_THROW((void)parse_budget("-1MiB"), PlanError);
  EXPECT_THROW((void)parse_budget("lots"), PlanError);
  for (const char* bad : {"", "  ", "abc", "5 %x", "0x10", "5 parsecs", "-3MiB", "nan", "inf", "1e400", "1e300TiB", "1e400%"})
    EXPECT_THROW((void)parse_budget(bad), PlanError) << bad;
  // Blanks around a budget are dropped, as around the tool's numeric options.
  EXPECT_EQ(parse_budget(" 5% ").value, 5.0);
  EXPECT_EQ(parse_budget("\t1 GiB ").value, 1024.0 * 1024 * 1024);
  // Terabytes (issue 11): TB is 10^12; TiB and the bare T (as memory limits are written) 2^40.
  EXPECT_EQ(parse_budget("1TB").value, 1e12);
  EXPECT_EQ(parse_budget("1TiB").value, 1024.0 * 1024 * 1024 * 1024);
  EXPECT_EQ(parse_budget("1T").value, 1024.0 * 1024 * 1024 * 1024);
  EXPECT_EQ(parse_budget("3G").value, 3.0 * 1024 * 1024 * 1024);
  EXPECT_EQ(parse_budget("1e21").value, 1e21);
}

// Issue 11 A: a byte budget above plain BPTT's memory runs plain BPTT whatever its size; a policy
// asked for by name plans as it would at plain BPTT's memory.
TEST(TrainBudget, AnyBudgetAbovePlainBpttRunsPlainBptt) {
  const StateSizes sizes = state_sizes(NetShape{CellType::Lstm, 1, 4, 1, 2, 1}, sizeof(float));
  const double plain = static_cast<double>(sizes.plain_bptt_bytes(50));
  for (double bytes : {plain, 10 * plain, 1e21, 1e300}) {
    const Plan a = plan_for_bytes(std::nullopt, 50, bytes, sizes, 2.0);
    EXPECT_EQ(a.policy, Policy::Full) << bytes;
    EXPECT_EQ(a.forward_steps, 50) << bytes;
    const Plan m = plan_for_bytes(Policy::Msm, 50, bytes, sizes, 2.0);
    EXPECT_EQ(m.forward_steps, 50) << bytes;
    EXPECT_LE(m.peak_units * static_cast<double>(sizes.hidden_bytes) + static_cast<double>(sizes.workspace_bytes), plain * 1.000001);
  }
}

// A number past its field's type in a checkpoint's config is refused, never truncated.
TEST(TrainConfigTest, ConfigNumbersPastTheirTypeAreRefused) {
  nlohmann::json j = to_json(TrainConfig{});
  j["hidden"] = std::int64_t{1} << 40;
  EXPECT_THROW((void)config_from_json(j, "x"), TrainError);
  j = to_json(TrainConfig{});
  j["seed"] = -1;
  EXPECT_THROW((void)config_from_json(j, "x"), TrainError);
  j = to_json(TrainConfig{});
  j["batch"] = 2.5;
  EXPECT_THROW((void)config_from_json(j, "x"), TrainError);
  j = to_json(TrainConfig{});
  j["seed"] = std::uint64_t{18446744073709551615u};
  EXPECT_EQ(config_from_json(j, "x").seed, std::uint64_t{18446744073709551615u});
  try {
    j = to_json(TrainConfig{});
    j["layers"] = 4294967297LL;
    (void)config_from_json(j, "ck");
    FAIL();
  } catch (const TrainError& e) {
    EXPECT_NE(std::string(e.what()).find("'layers' = 4294967297 is not allowed"), std::string::npos) << e.what();
  }
}

TEST(TrainConfigTest, ValidationNamesTheValue) {
  TrainConfig c;
  c.hidden = 0;
  try {
    validate(c);
    FAIL();
  } catch (const TrainError& e) {
    EXPECT_NE(std::string(e.what()).find("--hidden 0"), std::string::npos) << e.what();
  }
  c = TrainConfig{};
  c.policy = "fastest";
  EXPECT_THROW(validate(c), TrainError);
  c = TrainConfig{};
  c.memory = "5 parsecs";
  EXPECT_THROW(validate(c), TrainError);
  c = TrainConfig{};
  c.lr = -1;
  EXPECT_THROW(validate(c), TrainError);
  const TrainConfig back = config_from_json(to_json(TrainConfig{}), "x");
  EXPECT_EQ(to_json(back), to_json(TrainConfig{}));
}

}  // namespace
}  // namespace membptt::train
