// Model and inputs files: metadata validation, expected parameters, tensor checks, inputs checks.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "membptt/io/model_file.hpp"

namespace membptt {
namespace {

template <class F>
void expect_throw_with(F&& f, std::initializer_list<std::string_view> fragments) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning " << *fragments.begin();
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (auto f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "missing '" << f << "' in: " << msg;
  }
}

ModelSpec small_spec(std::string cell = "lstm", std::string loss = "xent") {
  return ModelSpec{cell, 3, 5, 2, 4, loss, "float64"};
}

std::vector<double> iota(std::size_t n, double start = 0.0) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = start + 0.01 * static_cast<double>(i);
  return v;
}

std::int64_t numel(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// A complete, valid model file for `spec`.
SafeTensorsWriter model_writer(const ModelSpec& spec) {
  SafeTensorsWriter w;
  for (const auto& [k, v] : model_spec_metadata(spec)) w.set_metadata(k, v);
  for (const auto& p : expected_parameters(spec)) {
    const auto values = iota(static_cast<std::size_t>(numel(p.shape)));
    if (spec.dtype == "float64") {
      w.add_f64(p.name, p.shape, values);
    } else {
      const std::vector<float> f(values.begin(), values.end());
      w.add_f32(p.name, p.shape, f);
    }
  }
  return w;
}

SafeTensors parse_as(const SafeTensorsWriter& w, const char* name) { return SafeTensors::parse(w.serialize(), name); }

SafeTensors with_metadata(std::map<std::string, std::string> meta) {
  SafeTensorsWriter w;
  for (auto& [k, v] : meta) w.set_metadata(k, v);
  return parse_as(w, "m.safetensors");
}

const std::map<std::string, std::string> kGoodMeta = {
    {"cell", "gru"},     {"input_size", "3"},  {"hidden_size", "5"},  {"num_layers", "2"},
    {"output_size", "4"}, {"loss", "mse_last"}, {"dtype", "float32"},
};

TEST(IoModelSpec, ReadsValidMetadata) {
  const ModelSpec s = read_model_spec(with_metadata(kGoodMeta));
  EXPECT_EQ(s.cell, "gru");
  EXPECT_EQ(s.input_size, 3);
  EXPECT_EQ(s.hidden_size, 5);
  EXPECT_EQ(s.num_layers, 2);
  EXPECT_EQ(s.output_size, 4);
  EXPECT_EQ(s.loss, "mse_last");
  EXPECT_EQ(s.dtype, "float32");
  EXPECT_EQ(model_spec_metadata(s), kGoodMeta);

  auto rnn = kGoodMeta;
  rnn["cell"] = "rnn";
  rnn["nonlinearity"] = "tanh";
  rnn["extra"] = "ignored";
  EXPECT_EQ(read_model_spec(with_metadata(rnn)).cell, "rnn");
}

TEST(IoModelSpec, RejectsMissingAndBadValues) {
  for (const auto& [key, value] : kGoodMeta) {
    auto meta = kGoodMeta;
    meta.erase(key);
    expect_throw_with([&] { read_model_spec(with_metadata(meta)); }, {"model file m.safetensors", fmt::format("'{}'", key)});
  }
  struct Case {
    const char* key;
    const char* value;
    const char* expect;
  };
  const Case cases[] = {
      {"hidden_size", "abc", "metadata hidden_size='abc' is not a positive integer"},
      {"hidden_size", "0", "hidden_size='0' is not a positive integer"},
      {"input_size", "-3", "input_size='-3'"},
      {"num_layers", "1.5", "num_layers='1.5'"},
      {"output_size", " 4", "output_size=' 4'"},
      {"output_size", "+4", "output_size='+4'"},
      {"hidden_size", "99999999999", "hidden_size='99999999999'"},
      {"hidden_size", "", "hidden_size=''"},
      {"cell", "LSTM", "cell='LSTM' is not one of lstm, gru, rnn"},
      {"loss", "mse", "loss='mse' is not one of xent, mse_last"},
      {"dtype", "float16", "dtype='float16' is not one of float32, float64"},
      {"nonlinearity", "gelu", "nonlinearity='gelu'"},
      {"bias", "no", "metadata bias='no' is not one of true, false"},
  };
  for (const auto& c : cases) {
    auto meta = kGoodMeta;
    meta[c.key] = c.value;
    if (std::string(c.key) == "nonlinearity") meta["cell"] = "rnn";
    expect_throw_with([&] { read_model_spec(with_metadata(meta)); }, {"model file m.safetensors: ", c.expect});
  }
  auto tanh_gru = kGoodMeta;
  tanh_gru["nonlinearity"] = "tanh";
  expect_throw_with([&] { read_model_spec(with_metadata(tanh_gru)); }, {"only 'tanh' or 'relu', for cell rnn"});
}

// bias=False and the relu RNN: read from the metadata, written back only when not the default,
// and the expected tensors lose their biases.
TEST(IoModelSpec, BiasAndNonlinearityRoundTrip) {
  auto meta = kGoodMeta;
  meta["cell"] = "rnn";
  meta["nonlinearity"] = "relu";
  meta["bias"] = "false";
  const ModelSpec s = read_model_spec(with_metadata(meta));
  EXPECT_FALSE(s.bias);
  EXPECT_EQ(s.nonlinearity, "relu");
  EXPECT_EQ(model_spec_metadata(s), meta);
  const auto p = expected_parameters(s);
  ASSERT_EQ(p.size(), 2u * 2 + 2);  // two layers of weight_ih, weight_hh; the head
  EXPECT_EQ(p[2].name, "rnn.weight_ih_l1");
  ModelSpec lstm = s;
  lstm.cell = "lstm";
  expect_throw_with([&] { validate_model_spec(lstm); }, {"nonlinearity='relu' is not allowed for cell lstm"});
}

TEST(IoModelSpec, ExpectedParametersInPyTorchOrder) {
  const auto p = expected_parameters(small_spec("lstm"));
  ASSERT_EQ(p.size(), 10u);
  const std::vector<std::string> names{"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
                                       "rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_ih_l1", "rnn.bias_hh_l1",
                                       "head.weight",      "head.bias"};
  for (std::size_t i = 0; i < names.size(); ++i) EXPECT_EQ(p[i].name, names[i]);
  EXPECT_EQ(p[0].shape, (std::vector<std::int64_t>{20, 3}));
  EXPECT_EQ(p[1].shape, (std::vector<std::int64_t>{20, 5}));
  EXPECT_EQ(p[2].shape, (std::vector<std::int64_t>{20}));
  EXPECT_EQ(p[4].shape, (std::vector<std::int64_t>{20, 5}));
  EXPECT_EQ(p[8].shape, (std::vector<std::int64_t>{4, 5}));
  EXPECT_EQ(p[9].shape, (std::vector<std::int64_t>{4}));
  EXPECT_EQ(expected_parameters(small_spec("gru"))[0].shape, (std::vector<std::int64_t>{15, 3}));
  EXPECT_EQ(expected_parameters(small_spec("rnn"))[1].shape, (std::vector<std::int64_t>{5, 5}));
  EXPECT_EQ(gate_count("lstm"), 4);
  EXPECT_EQ(gate_count("gru"), 3);
  EXPECT_EQ(gate_count("rnn"), 1);
  expect_throw_with([] { gate_count("x"); }, {"unknown cell 'x'"});
  expect_throw_with([] { expected_parameters(ModelSpec{"lstm", 3, 0, 1, 2, "xent", "float64"}); },
                    {"hidden_size=0"});
}

TEST(IoModelTensors, AcceptsACompleteFile) {
  for (const char* cell : {"lstm", "gru", "rnn"}) {
    for (const char* dtype : {"float32", "float64"}) {
      ModelSpec spec = small_spec(cell);
      spec.dtype = dtype;
      const SafeTensors st = parse_as(model_writer(spec), "m.safetensors");
      const ModelSpec read = read_model_spec(st);
      EXPECT_EQ(read.cell, cell);
      EXPECT_NO_THROW(check_model_tensors(st, read));
    }
  }
}

TEST(IoModelTensors, RejectsMissingExtraWrongShapeAndDtype) {
  const ModelSpec spec = small_spec("lstm");
  {
    SafeTensorsWriter w;
    for (const auto& p : expected_parameters(spec)) {
      if (p.name != "rnn.bias_hh_l1") w.add_f64(p.name, p.shape, iota(static_cast<std::size_t>(numel(p.shape))));
    }
    const SafeTensors st = parse_as(w, "m.safetensors");
    expect_throw_with([&] { check_model_tensors(st, spec); },
                      {"model file m.safetensors", "missing tensor 'rnn.bias_hh_l1'", "[20]"});
  }
  {
    SafeTensorsWriter w = model_writer(spec);
    w.add_f64("rnn.weight_ih_l2", {20, 5}, iota(100));
    expect_throw_with([&] { check_model_tensors(parse_as(w, "m.safetensors"), spec); },
                      {"unexpected tensor 'rnn.weight_ih_l2'", "[20, 5]"});
  }
  {
    SafeTensorsWriter w;
    for (const auto& p : expected_parameters(spec)) {
      auto shape = p.shape;
      if (p.name == "rnn.weight_ih_l0") shape = {20, 4};
      w.add_f64(p.name, shape, iota(static_cast<std::size_t>(numel(shape))));
    }
    expect_throw_with([&] { check_model_tensors(parse_as(w, "m.safetensors"), spec); },
                      {"tensor 'rnn.weight_ih_l0' has shape [20, 4], expected [20, 3]"});
  }
  {
    ModelSpec f32 = spec;
    f32.dtype = "float32";
    SafeTensorsWriter w = model_writer(f32);
    expect_throw_with([&] { check_model_tensors(parse_as(w, "g.safetensors"), spec, "gradient file"); },
                      {"gradient file g.safetensors", "dtype F32, expected F64", "dtype=float64"});
  }
}

TEST(IoModelTensors, LoadModelFileFromDisk) {
  const auto path = std::filesystem::temp_directory_path() / fmt::format("membptt_io_model_{}", ::getpid());
  model_writer(small_spec("gru", "mse_last")).write(path);
  const ModelFile m = load_model_file(path);
  EXPECT_EQ(m.spec.cell, "gru");
  EXPECT_EQ(m.tensors.read_f64("head.bias", {4}), iota(4));
  std::filesystem::remove(path);
}

// ---------------------------------------------------------------------------------------------
// Inputs

struct InputsBuilder {
  ModelSpec spec = small_spec();
  std::int64_t T = 3, B = 2;
  SafeTensorsWriter w;

  explicit InputsBuilder(ModelSpec s) : spec(std::move(s)) {}
  std::vector<std::int64_t> state_shape() const { return {spec.num_layers, B, spec.hidden_size}; }
  InputsBuilder& input(std::vector<double> v = {}) {
    if (v.empty()) v = iota(static_cast<std::size_t>(T * B * spec.input_size), -0.1);
    w.add_f64("input", {T, B, spec.input_size}, v);
    return *this;
  }
  InputsBuilder& classes(std::vector<std::int64_t> v = {}) {
    if (v.empty()) {
      for (std::int64_t i = 0; i < T * B; ++i) v.push_back(i % spec.output_size);
    }
    w.add_i64("target", {T, B}, v);
    return *this;
  }
  InputsBuilder& values() {
    w.add_f32("target", {B, spec.output_size}, std::vector<float>(static_cast<std::size_t>(B * spec.output_size), 0.5f));
    return *this;
  }
  InputsBuilder& state(const char* name, std::vector<double> v = {}) {
    if (v.empty()) v = iota(static_cast<std::size_t>(numel(state_shape())), 0.2);
    w.add_f64(name, state_shape(), v);
    return *this;
  }
  InputsData read() const { return read_inputs(SafeTensors::parse(w.serialize(), "x.safetensors"), spec); }
};

TEST(IoInputs, ReadsXentWithInitialState) {
  InputsBuilder b(small_spec("lstm", "xent"));
  b.input().classes().state("h0").state("c0");
  const InputsData d = b.read();
  EXPECT_EQ(d.T, 3);
  EXPECT_EQ(d.B, 2);
  EXPECT_EQ(d.input, iota(18, -0.1));
  EXPECT_EQ(d.target_class, (std::vector<std::int64_t>{0, 1, 2, 3, 0, 1}));
  EXPECT_TRUE(d.target_value.empty());
  EXPECT_EQ(d.h0.size(), 20u);
  EXPECT_EQ(d.c0, iota(20, 0.2));
}

TEST(IoInputs, ReadsMseLastWithoutState) {
  InputsBuilder b(small_spec("gru", "mse_last"));
  b.input().values();
  const InputsData d = b.read();
  EXPECT_EQ(d.target_value, std::vector<double>(8, 0.5));
  EXPECT_TRUE(d.target_class.empty());
  EXPECT_TRUE(d.h0.empty());
  EXPECT_TRUE(d.c0.empty());
}

TEST(IoInputs, RejectsNonFiniteValues) {
  {
    InputsBuilder b(small_spec());
    auto v = iota(18);
    v[1 * 6 + 0 * 3 + 2] = std::numeric_limits<double>::quiet_NaN();  // t=1, b=0, i=2
    b.input(v).classes();
    expect_throw_with([&] { b.read(); }, {"inputs file x.safetensors", "input[1, 0, 2] is nan"});
  }
  {
    InputsBuilder b(small_spec());
    auto v = iota(20);
    v[19] = -std::numeric_limits<double>::infinity();
    b.input().classes().state("h0", v);
    expect_throw_with([&] { b.read(); }, {"h0[1, 1, 4] is -inf"});
  }
}

TEST(IoInputs, RejectsTargetsOutOfRangeAndWrongKinds) {
  {
    InputsBuilder b(small_spec());
    b.input().classes({0, 1, 2, 4, 0, 1});
    expect_throw_with([&] { b.read(); }, {"target[1, 1] = 4 is outside the classes [0, 4)"});
  }
  {
    InputsBuilder b(small_spec());
    b.input().classes({0, -1, 2, 3, 0, 1});
    expect_throw_with([&] { b.read(); }, {"target[0, 1] = -1"});
  }
  {
    InputsBuilder b(small_spec("lstm", "xent"));
    b.T = 1;
    b.B = 4;
    b.input().values();  // float [B x O] target for xent
    expect_throw_with([&] { b.read(); }, {"target", "[4, 4]", "expected [1, 4]"});
  }
  {
    InputsBuilder b(small_spec("lstm", "xent"));
    b.w.add_f64("input", {3, 2, 3}, iota(18));
    b.w.add_f64("target", {3, 2}, iota(6));
    expect_throw_with([&] { b.read(); }, {"'target' has dtype F64", "I64"});
  }
  {
    InputsBuilder b(small_spec("gru", "mse_last"));
    b.input();
    b.w.add_i64("target", {2, 4}, std::vector<std::int64_t>(8, 1));
    expect_throw_with([&] { b.read(); }, {"'target' has dtype I64, allowed: F32, F64"});
  }
}

TEST(IoInputs, RejectsWrongShapesMissingAndUnknownTensors) {
  {
    InputsBuilder b(small_spec());
    b.w.add_f64("input", {3, 2, 4}, iota(24));
    b.classes();
    expect_throw_with([&] { b.read(); }, {"'input' has shape [3, 2, 4], expected [T, B, 3]"});
  }
  {
    InputsBuilder b(small_spec());
    b.T = 0;
    b.input(std::vector<double>{}).classes();
    expect_throw_with([&] { b.read(); }, {"'input' has shape [0, 2, 3]", "T, B >= 1"});
  }
  {
    InputsBuilder b(small_spec());
    b.input();
    expect_throw_with([&] { b.read(); }, {"missing tensor 'target'"});
  }
  {
    InputsBuilder b(small_spec());
    b.classes();
    expect_throw_with([&] { b.read(); }, {"missing tensor 'input'"});
  }
  {
    InputsBuilder b(small_spec("gru"));
    b.input().classes().state("c0");
    expect_throw_with([&] { b.read(); }, {"unexpected tensor 'c0'", "allowed for a gru model: input, target, h0"});
  }
  {
    InputsBuilder b(small_spec());
    b.input().classes();
    b.w.add_f64("h0", {2, 3, 5}, iota(30));
    expect_throw_with([&] { b.read(); }, {"'h0' has shape [2, 3, 5], expected [2, 2, 5]"});
  }
}

}  // namespace
}  // namespace membptt
