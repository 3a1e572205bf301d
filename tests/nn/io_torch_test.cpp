// Cross-checks with PyTorch through files: python/membptt_st.py and python/torch_reference.py.
// Needs Debian's /usr/bin/python3 with python3-torch; skipped with a message otherwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "membptt/io/model_file.hpp"

namespace membptt {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPython = "/usr/bin/python3";

fs::path source_dir() {
  if (const char* env = std::getenv("MEMBPTT_SOURCE_DIR"); env && *env) return env;
  return fs::path(__FILE__).parent_path().parent_path().parent_path();  // tests/nn/<this file>
}

std::string sh_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

bool torch_available() {
  // find_spec locates torch without importing it (an import costs ~2 s; every script run pays it anyway).
  static const bool ok =
      std::system(fmt::format("{} -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec(\"torch\") is None)'"
                              " >/dev/null 2>&1",
                              kPython)
                      .c_str()) == 0;
  return ok;
}

class IoTorch : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch_available()) {
      GTEST_SKIP() << kPython << " cannot import torch (install Debian's python3-torch); skipping the PyTorch "
                   << "cross-checks";
    }
    python_dir_ = source_dir() / "python";
    if (!fs::exists(python_dir_ / "membptt_st.py")) {
      GTEST_SKIP() << "python/membptt_st.py not found under " << source_dir() << " (set MEMBPTT_SOURCE_DIR)";
    }
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / fmt::format("membptt_io_torch_{}_{}", ::getpid(), info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  // Runs a python script with arguments; returns its stdout, fails the test on a non-zero exit.
  std::string run(const std::string& script, const std::vector<std::string>& args, int expect_rc = 0) {
    std::string cmd = fmt::format("{} {}", kPython, sh_quote((python_dir_ / script).string()));
    for (const auto& a : args) cmd += fmt::format(" {}", sh_quote(a));
    const fs::path out = dir_ / "stdout.txt";
    cmd += fmt::format(" >{} 2>&1", sh_quote(out.string()));
    const int status = std::system(cmd.c_str());
    std::ifstream f(out);
    std::stringstream text;
    text << f.rdbuf();
    EXPECT_TRUE(WIFEXITED(status)) << cmd;
    EXPECT_EQ(WEXITSTATUS(status), expect_rc) << cmd << "\n" << text.str();
    return text.str();
  }

  std::string file(const char* name) const { return (dir_ / name).string(); }

  fs::path python_dir_;
  fs::path dir_;
};

SafeTensorsWriter mixed_writer(double scale, double shift, std::int64_t int_shift, bool with_arange) {
  SafeTensorsWriter w;
  std::vector<double> f64{1.5, -2.25, 1e-300, 6.0, 0.0, -7.125};
  std::vector<float> f32{0.5f, -3.0f, 1e30f};
  std::vector<std::int64_t> i64{-9, 0, 123456789012345, 7};
  for (auto& v : f64) v = v * scale + shift;
  for (auto& v : f32) v = static_cast<float>(v * scale + shift);
  for (auto& v : i64) v += int_shift;
  w.add_f64("rnn.weight_hh_l0", {2, 3}, f64);
  w.add_f32("head.bias", {3}, f32);
  w.add_i64("target", {2, 2}, i64);
  w.add_f64("scalar", {}, std::vector<double>{scale + shift});
  w.add_f32("empty", {0, 2}, std::vector<float>{});
  w.set_metadata("cell", "lstm");
  w.set_metadata("unicode", "\xc2\xb5s \xe2\x88\x82");
  if (with_arange) {
    w.add_f64("torch.arange", {2, 3}, std::vector<double>{0, 1, 2, 3, 4, 5});
    w.set_metadata("written_by", "membptt_st.py");
  }
  return w;
}

TEST_F(IoTorch, SafetensorsRoundTripThroughPython) {
  mixed_writer(1, 0, 0, false).write(file("cpp.safetensors"));
  run("membptt_st.py", {"roundtrip", file("cpp.safetensors"), file("py.safetensors")});

  const SafeTensors py = SafeTensors::load(file("py.safetensors"));
  EXPECT_EQ(py.read_f64("rnn.weight_hh_l0", {2, 3}), (std::vector<double>{4.0, -3.5, 1.0, 13.0, 1.0, -13.25}));
  EXPECT_EQ(py.read_f32("head.bias", {3}), (std::vector<float>{2.0f, -5.0f, 2e30f + 1}));
  EXPECT_EQ(py.read_i64("target", {2, 2}), (std::vector<std::int64_t>{-8, 1, 123456789012346, 8}));
  EXPECT_EQ(py.read_f64("torch.arange", {2, 3}), (std::vector<double>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(py.info("empty").shape, (std::vector<std::int64_t>{0, 2}));
  ASSERT_NE(py.find_metadata("unicode"), nullptr);
  EXPECT_EQ(*py.find_metadata("unicode"), "\xc2\xb5s \xe2\x88\x82");

  // Python's writer and ours produce identical bytes for identical contents.
  std::ifstream f(file("py.safetensors"), std::ios::binary);
  const std::string py_bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto ours = mixed_writer(2, 1, 1, true).serialize();
  ASSERT_EQ(py_bytes.size(), ours.size());
  EXPECT_EQ(std::memcmp(py_bytes.data(), ours.data(), ours.size()), 0);
}

TEST_F(IoTorch, ReferenceModelInputsAndGradientsValidate) {
  struct Case {
    const char* cell;
    const char* loss;
    const char* dtype;
    bool init_state;
  };
  for (const Case c : {Case{"lstm", "xent", "float64", true}, Case{"gru", "mse_last", "float32", false}}) {
    SCOPED_TRACE(c.cell);
    std::vector<std::string> args{"make",   "--cell",    c.cell, "--input-size", "3",  "--hidden", "4",
                                  "--layers", "2",       "--output", "5",       "--loss", c.loss, "--T",
                                  "6",      "--batch",   "2",    "--dtype",      c.dtype, "--seed", "3",
                                  "--model", file("m.safetensors"), "--inputs", file("x.safetensors")};
    if (c.init_state) args.push_back("--init-state");
    run("torch_reference.py", args);

    const ModelFile m = load_model_file(file("m.safetensors"));
    EXPECT_EQ(m.spec.cell, c.cell);
    EXPECT_EQ(m.spec.input_size, 3);
    EXPECT_EQ(m.spec.hidden_size, 4);
    EXPECT_EQ(m.spec.num_layers, 2);
    EXPECT_EQ(m.spec.output_size, 5);
    EXPECT_EQ(m.spec.loss, c.loss);
    EXPECT_EQ(m.spec.dtype, c.dtype);
    const InputsData x = load_inputs_file(file("x.safetensors"), m.spec);
    EXPECT_EQ(x.T, 6);
    EXPECT_EQ(x.B, 2);
    EXPECT_EQ(x.h0.empty(), !c.init_state);
    EXPECT_EQ(x.c0.empty(), !c.init_state);

    const std::string out = run("torch_reference.py", {"grad", "--model", file("m.safetensors"), "--inputs",
                                                       file("x.safetensors"), "--out", file("g.safetensors"), "--json"});
    const double loss = nlohmann::json::parse(out).at("loss").get<double>();
    EXPECT_GT(loss, 0.0);
    const SafeTensors g = SafeTensors::load(file("g.safetensors"));
    const ModelSpec gs = read_model_spec(g, "gradient file");
    EXPECT_NO_THROW(check_model_tensors(g, gs, "gradient file"));
    ASSERT_NE(g.find_metadata("loss_value"), nullptr);
    EXPECT_EQ(std::stod(*g.find_metadata("loss_value")), loss);

    // compare: a perturbed copy written by C++ fails, naming the tensor (once: each script run costs ~2 s).
    if (!c.init_state) continue;
    SafeTensorsWriter w;
    for (const auto& [k, v] : g.metadata()) w.set_metadata(k, v);
    for (const auto& p : expected_parameters(gs)) {
      auto v = g.read_f64(p.name, p.shape);
      if (p.name == "rnn.weight_hh_l1") v[0] += 1e-3 * (std::abs(v[0]) + 1);
      w.add_f64(p.name, p.shape, v);  // F64 even for a float32 model: compare works in float64
    }
    w.write(file("g2.safetensors"));
    const std::string cmp =
        run("torch_reference.py", {"compare", file("g2.safetensors"), file("g.safetensors"), "--rtol", "1e-6"}, 1);
    EXPECT_NE(cmp.find("worst tensor rnn.weight_hh_l1"), std::string::npos) << cmp;
  }
}

}  // namespace
}  // namespace membptt
