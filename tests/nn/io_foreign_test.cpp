// Files membptt is given that are not what it writes: foreign formats where a safetensors file was
// expected (named by their magic bytes), PyTorch state dicts as PyTorch users save them (the spec
// inferred from the tensors, metadata checked against them), and F16/BF16 tensors (converted
// exactly, computed in float32).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "membptt/exec/budget.hpp"
#include "membptt/exec/executor.hpp"
#include "membptt/io/model_file.hpp"
#include "membptt/io/params_io.hpp"

namespace membptt {
namespace {

namespace fs = std::filesystem;

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no exception)";
}

// The call throws one line holding every fragment.
void expect_error(const std::function<void()>& f, std::initializer_list<std::string_view> fragments) {
  const std::string msg = message_of(f);
  EXPECT_NE(msg, "(no exception)") << "expected an error mentioning " << *fragments.begin();
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  for (auto frag : fragments) EXPECT_NE(msg.find(frag), std::string::npos) << "missing '" << frag << "' in: " << msg;
}

std::vector<std::byte> bytes_of(std::string_view s) {
  std::vector<std::byte> b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

// ---------------------------------------------------------------------------------------------
// Foreign files where a safetensors file was expected

void expect_foreign(std::string_view content, const char* source, std::initializer_list<std::string_view> fragments) {
  SCOPED_TRACE(source);
  expect_error([&] { SafeTensors::parse(bytes_of(content), source); }, fragments);
  // No library's raw exception text.
  const std::string msg = message_of([&] { SafeTensors::parse(bytes_of(content), source); });
  EXPECT_EQ(msg.find("json.exception"), std::string::npos) << msg;
}

TEST(IoForeign, NamesWhatAFileIsWhenItIsNotSafetensors) {
  // What torch.save writes since PyTorch 1.6: a zip archive.
  expect_foreign(std::string("PK\x03\x04\x00\x00\x08\x08\x00\x00", 10) + "archive/data.pkl", "model.pt",
                 {"safetensors file model.pt: ", "zip archive", "torch.save", "not a safetensors file",
                  "safetensors.torch.save_file(torch.load(\"model.pt\"), \"model.safetensors\")",
                  "python3 python/membptt_st.py convert model.pt model.safetensors"});
  // An empty zip archive, named .safetensors: the converted file gets another name.
  expect_foreign(std::string("PK\x05\x06", 4) + std::string(18, '\0'), "m.safetensors",
                 {"zip archive", "convert m.safetensors converted.safetensors"});
  // The legacy torch.save format (a pickle).
  constexpr char kPickle[] =
      "\x80\x02\x8a\x0a"
      "l\xfc\x9c"
      "F\xf9 j\xa8"
      "P\x19.";
  expect_foreign(std::string(kPickle, sizeof kPickle - 1), "old.pt",
                 {"Python pickle", "torch.save", "convert old.pt old.safetensors"});
  expect_foreign(std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10), "m.safetensors.gz",
                 {"gzip-compressed", "a safetensors file was expected", "decompress it first"});
  expect_foreign(std::string("\x28\xb5\x2f\xfd\x00\x00\x00\x00\x00", 9), "m.zst", {"zstd-compressed"});
  expect_foreign(std::string("\x93NUMPY\x01\x00v\x00{'descr'", 18), "x.npy", {"NumPy .npy", "was expected"});
  expect_foreign(std::string("\x89HDF\r\n\x1a\n\x00\x00", 10), "w.h5", {"HDF5"});
  // A JSON document (a config.json, or a header without its length prefix).
  expect_foreign(
      "{\"hidden_size\": 64, \"num_layers\": 2}\n", "config.json",
      {"safetensors file config.json: this is a JSON document (it begins '{\"hidden_size\": 64, \"num_layers\": 2}')",
       "but a safetensors file was expected (an 8-byte little-endian header length, a JSON header, then "
       "the data)"});
  expect_foreign("  [1, 2,", "t.json", {"JSON-like text", "'[1, 2,'"});
  expect_foreign("input,target\n0.5,1\n0.25,0\n", "data.csv",
                 {"this is a text file (it begins 'input,target 0.5,1 0.25,0')", "a safetensors file was expected"});
  expect_foreign(std::string(100, 'x'), "long.txt", {"(it begins 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...')"});
  expect_foreign("hi\n", "short.txt", {"text file", "'hi'"});  // shorter than 8 bytes
  expect_foreign("\n\n", "blank.txt", {"only white space"});
  expect_foreign(
      "gr\xc3\xbc\xc3\x9f"
      "e, \xce\xbb = 1\n",
      "utf8.txt", {"text file (it begins 'gr\\xc3\\xbc\\xc3\\x9fe, "});
  // Not UTF-8 (0xff never is): not called text.
  const std::string msg =
      message_of([] { SafeTensors::parse(bytes_of("\xff\xff\xff\xff\xff\xff\xff\xff{}"), "f.bin"); });
  EXPECT_EQ(msg.find("text"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a safetensors file"), std::string::npos) << msg;
  expect_foreign(
      "", "empty.safetensors",
      {"safetensors file empty.safetensors: the file is empty (0 bytes)", "a safetensors file was expected"});
  // Unknown binary: the structural message, and that this is not a safetensors file.
  expect_foreign(std::string("\x01\x02\x03\x04\x05\x06\x07\x08\x09", 9), "blob.bin",
                 {"header length", "exceeds", "not a safetensors file", "or a corrupt one"});
  expect_foreign(std::string("\x05\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04\x05", 13), "blob2.bin",
                 {"header is not valid JSON", "not a safetensors file"});
}

TEST(IoForeign, ForeignFilesHaveTheirOwnExceptionTypeCorruptOnesDoNot) {
  // Callers that say "truncated or corrupt" for reader errors can leave a foreign file's message alone.
  EXPECT_THROW(SafeTensors::parse(bytes_of("PK\x03\x04...."), "m.pt"), NotSafetensorsError);
  EXPECT_THROW(SafeTensors::parse(bytes_of(""), "e"), NotSafetensorsError);
  EXPECT_THROW(SafeTensors::parse(bytes_of("{\"a\": 1}"), "j"), NotSafetensorsError);
  bool plain = false;
  try {
    SafeTensors::parse(bytes_of(std::string("\x01\x02\x03\x04\x05\x06\x07\x08\x09", 9)), "b");
  } catch (const NotSafetensorsError&) {
    ADD_FAILURE() << "unknown binary named as a known format";
  } catch (const std::runtime_error&) {
    plain = true;
  }
  EXPECT_TRUE(plain);
}

TEST(IoForeign, ValidFilesAndNullMetadataStillParse) {
  // The checks run only after a failure: a valid file whose first bytes look like text is fine.
  SafeTensorsWriter w;
  w.set_metadata("k", std::string(0x2020 - 64, 'v'));  // a header length whose low bytes are "  "
  w.add_f32("x", {1}, std::vector<float>{1.0f});
  EXPECT_NO_THROW(SafeTensors::parse(w.serialize(), "ok.safetensors"));
  // "__metadata__": null, as some writers put it, is no metadata (like the reference implementation).
  std::string header = R"({"__metadata__":null,"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string file(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(file.data(), &n, 8);
  file += header;
  file += std::string("\x00\x00\x80\x3f", 4);
  const SafeTensors st = SafeTensors::parse(bytes_of(file), "null.safetensors");
  EXPECT_TRUE(st.metadata().empty());
  EXPECT_EQ(st.read_f32("x"), std::vector<float>{1.0f});
}

TEST(IoForeign, LoadModelAndInputsFilesFromDiskNameTheFormat) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("membptt_io_foreign_{}", ::getpid());
  fs::create_directories(dir);
  const fs::path zip = dir / "model.pt", gz = dir / "x.gz";
  {
    std::FILE* f = std::fopen(zip.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("PK\x03\x04 some zip", f);
    std::fclose(f);
    f = std::fopen(gz.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fwrite("\x1f\x8b\x08\x00\x00\x00\x00\x00", 1, 8, f);
    std::fclose(f);
  }
  expect_error([&] { load_model_file(zip); }, {zip.string(), "zip archive", "torch.save"});
  expect_error([&] { load_inputs_file(gz, ModelSpec{"lstm", 1, 1, 1, 1, "xent", "float32"}); }, {"gzip"});
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// PyTorch state dicts

struct Net {
  std::string cell = "lstm";
  int I = 3, H = 5, L = 2, O = 4;
  int gates() const { return cell == "lstm" ? 4 : cell == "gru" ? 3 : 1; }
};

// A state dict as PyTorch's state_dict() names it, with values i * 0.01 + tensor index (bf16- and
// f16-inexact, which F32 does not care about).
SafeTensorsWriter torch_state_dict(const Net& n, const std::string& rnn = "rnn.", const std::string& head = "head.") {
  SafeTensorsWriter w;
  const std::int64_t gh = static_cast<std::int64_t>(n.gates()) * n.H;
  int k = 0;
  auto add = [&](const std::string& name, std::vector<std::int64_t> shape) {
    std::int64_t cnt = 1;
    for (auto d : shape) cnt *= d;
    std::vector<float> v(static_cast<std::size_t>(cnt));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(k) + 0.01f * static_cast<float>(i);
    ++k;
    w.add_f32(name, std::move(shape), v);
  };
  for (int l = 0; l < n.L; ++l) {
    add(fmt::format("{}weight_ih_l{}", rnn, l), {gh, l == 0 ? n.I : n.H});
    add(fmt::format("{}weight_hh_l{}", rnn, l), {gh, n.H});
    add(fmt::format("{}bias_ih_l{}", rnn, l), {gh});
    add(fmt::format("{}bias_hh_l{}", rnn, l), {gh});
  }
  add(head + "weight", {n.O, n.H});
  add(head + "bias", {n.O});
  return w;
}

ModelFile interpret(const SafeTensorsWriter& w, std::string loss = "xent") {
  return interpret_model(SafeTensors::parse(w.serialize(), "m.safetensors"), ModelLoadOptions{std::move(loss), ""});
}

TEST(IoTorchStateDict, InfersEveryCellUnderAnyPrefixWithoutMetadata) {
  struct Prefixes {
    const char* rnn;
    const char* head;
  };
  for (const char* cell : {"lstm", "gru", "rnn"}) {
    for (const Prefixes p : {Prefixes{"rnn.", "head."}, Prefixes{"lstm.", "fc."}, Prefixes{"model.rnn.", "model.head."},
                             Prefixes{"", "linear."}, Prefixes{"encoder.layers.", ""}}) {
      SCOPED_TRACE(fmt::format("{} {} {}", cell, p.rnn, p.head));
      Net n;
      n.cell = cell;
      n.I = 7;
      n.H = 6;
      n.L = 3;
      n.O = 2;
      const ModelFile m = interpret(torch_state_dict(n, p.rnn, p.head), "mse_last");
      EXPECT_EQ(m.spec.cell, cell);
      EXPECT_EQ(m.spec.input_size, 7);
      EXPECT_EQ(m.spec.hidden_size, 6);
      EXPECT_EQ(m.spec.num_layers, 3);
      EXPECT_EQ(m.spec.output_size, 2);
      EXPECT_EQ(m.spec.loss, "mse_last");
      EXPECT_EQ(m.spec.dtype, "float32");
      EXPECT_EQ(m.file_dtype, DType::F32);
      EXPECT_EQ(m.file_name("rnn.weight_hh_l2"), std::string(p.rnn) + "weight_hh_l2");
      EXPECT_EQ(m.file_name("head.bias"), std::string(p.head) + "bias");
      // The tensors, under membptt's names, hold the file's values.
      const SafeTensors orig = SafeTensors::parse(torch_state_dict(n, p.rnn, p.head).serialize());
      EXPECT_EQ(m.tensors.read_f32("rnn.bias_ih_l1"), orig.read_f32(std::string(p.rnn) + "bias_ih_l1"));
      EXPECT_EQ(m.tensors.read_f32("head.weight"), orig.read_f32(std::string(p.head) + "weight"));
      EXPECT_NO_THROW(check_model_tensors(m.tensors, m.spec));
      // A note says how a 1-gate layer was read; nothing else is worth a note for F32.
      EXPECT_EQ(m.notes.size(), n.cell == "rnn" ? 1u : 0u);
      if (n.cell == "rnn") {
        EXPECT_NE(m.notes[0].find("nn.RNN with tanh"), std::string::npos) << m.notes[0];
      }
    }
  }
}

// A relu RNN has a tanh RNN's tensors: metadata or --nonlinearity says which; relu is the RNN's only.
TEST(IoTorchStateDict, TheNonlinearityComesFromMetadataOrTheFlag) {
  Net n;
  n.cell = "rnn";
  auto load = [&](const SafeTensorsWriter& w, const std::string& nl) {
    return interpret_model(SafeTensors::parse(w.serialize(), "m.safetensors"), ModelLoadOptions{"xent", "", nl});
  };
  const SafeTensorsWriter plain = torch_state_dict(n);
  EXPECT_EQ(load(plain, "").spec.nonlinearity, "tanh");
  EXPECT_EQ(load(plain, "").notes.size(), 1u);  // read as tanh, saying so
  const ModelFile relu = load(plain, "relu");
  EXPECT_EQ(relu.spec.nonlinearity, "relu");
  EXPECT_TRUE(relu.notes.empty());
  SafeTensorsWriter tagged = torch_state_dict(n);
  tagged.set_metadata("nonlinearity", "relu");
  EXPECT_EQ(load(tagged, "").spec.nonlinearity, "relu");
  expect_error([&] { load(tagged, "tanh"); }, {"--nonlinearity tanh contradicts the file's metadata nonlinearity=relu"});
  n.cell = "gru";
  expect_error([&] { load(torch_state_dict(n), "relu"); },
               {"--nonlinearity relu is not allowed for a GRU (3 gates): only an RNN (1 gate) takes relu"});
}

// nn.LSTM(proj_size=P): weight_hr_l{k} [P x H], weight_hh [4H x P], layers above 0 read P inputs,
// the head reads P; bias=False beside it.
TEST(IoTorchStateDict, ProjectedLstmIsReadFromItsTensors) {
  for (const bool bias : {true, false}) {
    SCOPED_TRACE(bias ? "bias" : "no bias");
    const int I = 3, H = 5, P = 2, L = 2, O = 4;
    SafeTensorsWriter w;
    auto add = [&](const std::string& name, std::vector<std::int64_t> shape) {
      std::int64_t cnt = 1;
      for (auto d : shape) cnt *= d;
      w.add_f32(name, std::move(shape), std::vector<float>(static_cast<std::size_t>(cnt), 0.25f));
    };
    for (int l = 0; l < L; ++l) {
      add(fmt::format("lstm.weight_ih_l{}", l), {4 * H, l == 0 ? I : P});
      add(fmt::format("lstm.weight_hh_l{}", l), {4 * H, P});
      if (bias) {
        add(fmt::format("lstm.bias_ih_l{}", l), {4 * H});
        add(fmt::format("lstm.bias_hh_l{}", l), {4 * H});
      }
      add(fmt::format("lstm.weight_hr_l{}", l), {P, H});
    }
    add("fc.weight", {O, P});
    add("fc.bias", {O});
    const ModelFile m = interpret(w);
    EXPECT_EQ(m.spec.cell, "lstm");
    EXPECT_EQ(m.spec.hidden_size, H);
    EXPECT_EQ(m.spec.proj_size, P);
    EXPECT_EQ(m.spec.bias, bias);
    EXPECT_EQ(m.spec.num_layers, L);
    EXPECT_EQ(m.file_name("rnn.weight_hr_l1"), "lstm.weight_hr_l1");
    EXPECT_EQ(model_spec_metadata(m.spec).at("proj_size"), "2");
    w.set_metadata("proj_size", "3");
    expect_error([&] { interpret(w); }, {"metadata proj_size=3 contradicts the tensors, which have 'lstm.weight_hr_l0' [2, 5]"});
  }
}

TEST(IoTorchStateDict, TheLossComesFromMetadataOrTheFlagAndIsNeverGuessed) {
  SafeTensorsWriter w = torch_state_dict(Net{});
  w.set_metadata("format", "pt");  // what safetensors.torch.save_file writes
  expect_error([&] { interpret(w, ""); }, {"model file m.safetensors: the loss cannot be read from the tensors",
                                           "pass --loss xent", "--loss mse_last"});
  EXPECT_EQ(interpret(w, "xent").spec.loss, "xent");
  expect_error([&] { interpret(w, "mse"); }, {"--loss 'mse' is not one of xent, mse_last"});
  w.set_metadata("loss", "mse_last");
  EXPECT_EQ(interpret(w, "").spec.loss, "mse_last");
  EXPECT_EQ(interpret(w, "mse_last").spec.loss, "mse_last");
  expect_error([&] { interpret(w, "xent"); }, {"--loss xent contradicts the file's metadata loss=mse_last"});
  w.set_metadata("loss", "l1");
  expect_error([&] { interpret(w, "xent"); }, {"metadata loss='l1' is not one of xent, mse_last"});
}

TEST(IoTorchStateDict, MetadataPresentMustAgreeWithTheTensors) {
  struct Case {
    const char* key;
    const char* value;
    std::vector<std::string_view> expect;
  };
  // Net{}: lstm, I = 3, H = 5, L = 2, O = 4, F32.
  const Case cases[] = {
      {"cell", "gru", {"metadata cell=gru contradicts the tensors: 'rnn.weight_hh_l0' [20, 5] has 4 gates, an LSTM"}},
      {"cell", "LSTM", {"metadata cell='LSTM' is not one of lstm, gru, rnn"}},
      {"input_size", "4", {"metadata input_size=4 contradicts the tensors: 'rnn.weight_ih_l0' [20, 3] gives 3"}},
      {"hidden_size", "6", {"metadata hidden_size=6 contradicts the tensors: 'rnn.weight_hh_l0' [20, 5] gives 5"}},
      {"hidden_size", "five", {"metadata hidden_size='five' is not a positive integer"}},
      {"num_layers",
       "3",
       {"metadata num_layers=3 contradicts the tensors: the tensors have layers 0 to 1 ('rnn.weight_ih_l1') gives 2"}},
      {"output_size", "5", {"metadata output_size=5 contradicts the tensors: 'head.weight' [4, 5] gives 4"}},
      {"dtype", "float64", {"metadata dtype=float64 contradicts the tensors, which are F32 (float32)"}},
      {"dtype", "half", {"metadata dtype='half' is not one of float32, float64, float16, bfloat16"}},
      {"nonlinearity", "tanh", {"nonlinearity='tanh' is not allowed (only 'tanh' or 'relu', for cell rnn)"}},
      {"bias", "false", {"metadata bias=false contradicts the tensors, which have biases ('rnn.bias_ih_l0')"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(fmt::format("{}={}", c.key, c.value));
    SafeTensorsWriter w = torch_state_dict(Net{});
    w.set_metadata(c.key, c.value);
    const std::string msg = message_of([&] { interpret(w); });
    EXPECT_EQ(msg.find('\n'), std::string::npos);
    EXPECT_EQ(msg.rfind("model file m.safetensors: ", 0), 0u) << msg;
    for (auto frag : c.expect) EXPECT_NE(msg.find(frag), std::string::npos) << msg;
  }
  // Agreeing metadata (and keys membptt does not know) are fine.
  SafeTensorsWriter w = torch_state_dict(Net{});
  for (const auto& [k, v] : std::map<std::string, std::string>{{"cell", "lstm"},
                                                               {"input_size", "3"},
                                                               {"hidden_size", "5"},
                                                               {"num_layers", "2"},
                                                               {"output_size", "4"},
                                                               {"dtype", "float32"},
                                                               {"format", "pt"},
                                                               {"author", "someone"}})
    w.set_metadata(k, v);
  EXPECT_EQ(interpret(w).spec.hidden_size, 5);
}

TEST(IoTorchStateDict, MembpttsOwnModelFilesLoadUnchanged) {
  const ModelSpec spec{"gru", 3, 5, 2, 4, "mse_last", "float64"};
  SafeTensorsWriter w;
  for (const auto& [k, v] : model_spec_metadata(spec)) w.set_metadata(k, v);
  for (const auto& p : expected_parameters(spec)) {
    std::int64_t cnt = 1;
    for (auto d : p.shape) cnt *= d;
    w.add_f64(p.name, p.shape, std::vector<double>(static_cast<std::size_t>(cnt), 0.125));
  }
  const ModelFile m = interpret(w, "");
  EXPECT_EQ(m.spec.cell, spec.cell);
  EXPECT_EQ(m.spec.loss, spec.loss);
  EXPECT_EQ(m.spec.dtype, "float64");
  EXPECT_EQ(model_spec_metadata(m.spec), model_spec_metadata(spec));
  EXPECT_TRUE(m.notes.empty());
  EXPECT_EQ(m.file_name("rnn.weight_ih_l0"), "rnn.weight_ih_l0");
  EXPECT_EQ(m.tensors.metadata(), SafeTensors::parse(w.serialize()).metadata());  // the file itself, not a copy
}

// PyTorch's bidirectional=True: *_reverse tensors after each layer's, layers above 0 and the head
// reading both directions' h.
TEST(IoTorchStateDict, BidirectionalModulesAreReadFromTheirReverseTensors) {
  const int I = 3, H = 5, P = 2, L = 2, O = 4;
  for (const bool proj : {false, true}) {
    SCOPED_TRACE(proj ? "proj" : "no proj");
    const int R = proj ? P : H;
    auto make = [&](const std::string& skip) {
      SafeTensorsWriter w;
      auto add = [&](const std::string& name, std::vector<std::int64_t> shape) {
        if (name == skip) return;
        std::int64_t cnt = 1;
        for (auto d : shape) cnt *= d;
        w.add_f32(name, std::move(shape), std::vector<float>(static_cast<std::size_t>(cnt), 0.25f));
      };
      for (int l = 0; l < L; ++l)
        for (const char* sfx : {"", "_reverse"}) {
          add(fmt::format("lstm.weight_ih_l{}{}", l, sfx), {4 * H, l == 0 ? I : 2 * R});
          add(fmt::format("lstm.weight_hh_l{}{}", l, sfx), {4 * H, R});
          add(fmt::format("lstm.bias_ih_l{}{}", l, sfx), {4 * H});
          add(fmt::format("lstm.bias_hh_l{}{}", l, sfx), {4 * H});
          if (proj) add(fmt::format("lstm.weight_hr_l{}{}", l, sfx), {P, H});
        }
      add("fc.weight", {O, 2 * R});
      add("fc.bias", {O});
      return w;
    };
    SafeTensorsWriter w = make("");
    const ModelFile m = interpret(w);
    EXPECT_TRUE(m.spec.bidirectional);
    EXPECT_EQ(m.spec.num_layers, L);
    EXPECT_EQ(m.spec.proj_size, proj ? P : 0);
    EXPECT_EQ(m.file_name("rnn.weight_ih_l1_reverse"), "lstm.weight_ih_l1_reverse");
    EXPECT_EQ(model_spec_metadata(m.spec).at("bidirectional"), "true");
    {  // the file's layout is the cells' (params.hpp), name for name
      const auto views = param_layout(net_shape(m.spec, 1));
      const auto expected = expected_parameters(m.spec);
      ASSERT_EQ(views.size(), expected.size());
      for (std::size_t k = 0; k < views.size(); ++k) {
        EXPECT_EQ(views[k].name, expected[k].name);
        EXPECT_EQ(views[k].shape, expected[k].shape);
      }
    }
    // Saved under membptt's names with the option, read back the same.
    {
      SafeTensorsWriter out;
      for (const auto& [k, v] : model_spec_metadata(m.spec)) out.set_metadata(k, v);
      for (const auto& p : expected_parameters(m.spec)) out.add_bytes(p.name, DType::F32, p.shape, m.tensors.bytes(p.name));
      const SafeTensors back = SafeTensors::parse(out.serialize(), "back.safetensors");
      EXPECT_TRUE(read_model_spec(back).bidirectional);
      EXPECT_NO_THROW(check_model_tensors(back, m.spec));
      EXPECT_TRUE(interpret_model(SafeTensors::parse(out.serialize(), "back.safetensors")).spec.bidirectional);
    }
    // One _reverse tensor missing: named, with its shape.
    expect_error([&] { interpret(make("lstm.weight_hh_l1_reverse")); },
                 {fmt::format("missing tensor 'lstm.weight_hh_l1_reverse' (expected shape [20, {}]: layer 1 reverse of a "
                              "2-layer bidirectional LSTM",
                              R)});
    expect_error([&] { interpret(make("lstm.weight_ih_l0_reverse")); },
                 {"missing tensor 'lstm.weight_ih_l0_reverse' (expected shape [20, 3]"});
    // The head reads both directions.
    {
      SafeTensorsWriter bad = make("fc.weight");
      bad.add_f32("fc.weight", {O, R}, std::vector<float>(static_cast<std::size_t>(O * R), 0.25f));
      expect_error([&] { interpret(bad); },
                   {fmt::format("tensor 'fc.weight' has shape [4, {}], expected [output_size, {}] (both directions' h", R,
                                2 * R)});
    }
    // Layer 1 reads both directions of layer 0.
    {
      SafeTensorsWriter bad = make("lstm.weight_ih_l1");
      bad.add_f32("lstm.weight_ih_l1", {4 * H, R}, std::vector<float>(static_cast<std::size_t>(4 * H * R), 0.25f));
      expect_error([&] { interpret(bad); },
                   {fmt::format("tensor 'lstm.weight_ih_l1' has shape [20, {}], expected [20, {}]", R, 2 * R)});
    }
    w.set_metadata("bidirectional", "false");
    expect_error([&] { interpret(w); },
                 {"metadata bidirectional=false contradicts the tensors, which have *_reverse tensors "
                  "('lstm.weight_ih_l0_reverse')"});
  }
}

TEST(IoTorchStateDict, RefusesInconsistentTensorsNamingTheTensorAndTheExpectedShape) {
  const Net n;  // lstm, I = 3, H = 5, L = 2, O = 4
  auto without = [&](std::initializer_list<std::string> drop) {
    const SafeTensors full = SafeTensors::parse(torch_state_dict(n).serialize());
    SafeTensorsWriter w;
    for (const auto& [name, info] : full.tensors()) {
      bool skip = false;
      for (const auto& d : drop) skip = skip || d == name;
      if (!skip) w.add_bytes(name, info.dtype, info.shape, full.bytes(name));
    }
    return w;
  };
  auto with = [&](const std::string& name, std::vector<std::int64_t> shape, DType dtype = DType::F32) {
    SafeTensorsWriter w = torch_state_dict(n);
    std::int64_t cnt = 1;
    for (auto d : shape) cnt *= d;
    w.add_bytes(name, dtype, std::move(shape),
                std::vector<std::byte>(static_cast<std::size_t>(cnt) * dtype_size(dtype)));
    return w;
  };
  // A gap in the layers: l0 and l2 but no l1.
  {
    Net three = n;
    three.L = 3;
    const SafeTensors full = SafeTensors::parse(torch_state_dict(three).serialize());
    SafeTensorsWriter w;
    for (const auto& [name, info] : full.tensors()) {
      if (name.find("_l1") == std::string::npos) w.add_bytes(name, info.dtype, info.shape, full.bytes(name));
    }
    expect_error([&] { interpret(w); }, {"missing tensor 'rnn.weight_ih_l1' (expected shape [20, 5]: layer 1 of "
                                         "a 3-layer LSTM, as 'rnn.weight_hh_l2' shows)"});
  }
  expect_error([&] { interpret(without({"rnn.bias_hh_l1"})); },
               {"missing tensor 'rnn.bias_hh_l1' (expected shape [20]"});
  expect_error([&] { interpret(without({"rnn.weight_hh_l0"})); },
               {"missing tensor 'rnn.weight_hh_l0'", "the cell and the hidden size"});
  expect_error([&] { interpret(without({"rnn.weight_ih_l0"})); },
               {"missing tensor 'rnn.weight_ih_l0' (expected shape [20, input_size]"});
  // Wrong shapes.
  {
    Net bad = n;
    bad.H = 5;
    SafeTensorsWriter w = without({"rnn.weight_hh_l1"});
    w.add_f32("rnn.weight_hh_l1", {20, 4}, std::vector<float>(80, 0.0f));
    expect_error(
        [&] { interpret(w); },
        {"tensor 'rnn.weight_hh_l1' has shape [20, 4], expected [20, 5] (a 2-layer LSTM, input size "
         "3, hidden size 5)"});
  }
  {
    SafeTensorsWriter w = without({"rnn.weight_hh_l0"});
    w.add_f32("rnn.weight_hh_l0", {10, 5}, std::vector<float>(50, 0.0f));  // G = 2
    expect_error(
        [&] { interpret(w); },
        {"tensor 'rnn.weight_hh_l0' has shape [10, 5], expected [G*H, H] with G = 4 (LSTM), 3 (GRU) or 1 (RNN)"});
  }
  {
    SafeTensorsWriter w = without({"rnn.weight_ih_l0"});
    w.add_f32("rnn.weight_ih_l0", {15, 3}, std::vector<float>(45, 0.0f));
    expect_error([&] { interpret(w); }, {"tensor 'rnn.weight_ih_l0' has shape [15, 3], expected [20, input_size]"});
  }
  {
    SafeTensorsWriter w = without({"head.weight"});
    w.add_f32("head.weight", {4, 6}, std::vector<float>(24, 0.0f));
    expect_error([&] { interpret(w); }, {"tensor 'head.weight' has shape [4, 6], expected [output_size, 5]"});
  }
  {
    SafeTensorsWriter w = without({"head.bias"});
    w.add_f32("head.bias", {3}, std::vector<float>(3, 0.0f));
    expect_error([&] { interpret(w); }, {"tensor 'head.bias' has shape [3], expected [4]"});
  }
  // Extra and unknown tensors.
  expect_error(
      [&] { interpret(with("rnn.weight_ih_l0_extra", {2})); },
      {"unexpected tensor 'rnn.weight_ih_l0_extra' with shape [2]", "one Linear head ('head.weight', 'head.bias')"});
  expect_error(
      [&] {
        interpret(with("embedding.table", {7, 3}));
      },
      {"unexpected tensor 'embedding.table' with shape [7, 3]"});
  expect_error([&] { interpret(with("fc2.weight", {4, 4})); }, {"unexpected tensor 'fc2.weight'"});
  {
    SafeTensorsWriter w = with("fc2.weight", {4, 4});
    w.add_f32("fc2.bias", {4}, std::vector<float>(4, 0.0f));
    expect_error([&] { interpret(w); }, {"tensors 'fc2.weight' and 'head.weight' are two Linear layers"});
  }
  expect_error(
      [&] {
        interpret(with("decoder.weight_ih_l0", {20, 5}));
      },
      {"tensors 'decoder.weight_ih_l0' and 'rnn.bias_hh_l0' belong to two recurrent modules"});
  // A layer index far beyond the others: refused before anything is sized by it.
  expect_error([&] { interpret(with("rnn.weight_ih_l999999", {20, 5})); },
               {"tensor 'rnn.weight_ih_l999999' makes 1000000 layers; at most 65536 are supported"});
  expect_error([&] { interpret(with("rnn.bias_ih_l2", {20})); },
               {"missing tensor 'rnn.weight_ih_l2' (expected shape [20, 5]: layer 2 of a 3-layer LSTM"});
  // A *_reverse tensor makes the model bidirectional: then every layer needs both directions.
  expect_error(
      [&] {
        interpret(with("rnn.weight_ih_l0_reverse", {20, 3}));
      },
      {"missing tensor 'rnn.weight_hh_l0_reverse' (expected shape [20, 5]: layer 0 reverse of a 2-layer bidirectional "
       "LSTM"});
  expect_error(
      [&] {
        interpret(with("rnn.weight_hr_l0", {2, 5}));
      },
      {"tensors 'rnn.weight_hr_l0' [2, 5] and 'rnn.weight_hh_l0' [20, 5] are not an LSTM's projection: expected [P, H] "
       "and [4H, P] with 1 <= P < H"});
  // No recurrent bias at all is bias=False; some but not all is a missing tensor.
  {
    const ModelFile m = interpret(without({"rnn.bias_ih_l0", "rnn.bias_hh_l0", "rnn.bias_ih_l1", "rnn.bias_hh_l1"}));
    EXPECT_FALSE(m.spec.bias);
    EXPECT_EQ(m.tensors.tensors().size(), 6u);
    EXPECT_EQ(model_spec_metadata(m.spec).at("bias"), "false");
    SafeTensorsWriter w = without({"rnn.bias_ih_l0", "rnn.bias_hh_l0", "rnn.bias_ih_l1", "rnn.bias_hh_l1"});
    w.set_metadata("bias", "true");
    expect_error([&] { interpret(w); },
                 {"metadata bias=true contradicts the tensors, which have no bias (no 'rnn.bias_ih_l0')"});
  }
  expect_error([&] { interpret(without({"rnn.bias_hh_l1"})); }, {"missing tensor 'rnn.bias_hh_l1' (expected shape [20]"});
  expect_error(
      [&] { interpret(without({"head.bias"})); },
      {"the head 'head.weight' has no bias 'head.bias': a head without bias (bias=False) is not supported yet"});
  expect_error(
      [&] {
        interpret(without({"head.bias", "head.weight"}));
      },
      {"has no head: expected an nn.Linear's weight [output_size, 5] and bias [output_size]"});
  // Not a recurrent net at all; not floating point; mixed dtypes.
  {
    SafeTensorsWriter w;
    w.add_f32("conv1.weight", {2, 2}, std::vector<float>(4, 0.0f));
    expect_error([&] { interpret(w); },
                 {"has no recurrent tensors (the file has: conv1.weight)", "nn.LSTM, nn.GRU or nn.RNN"});
  }
  expect_error([&] { interpret(SafeTensorsWriter{}); }, {"holds no tensors"});
  expect_error([&] { interpret(with("step", {}, DType::I64)); },
               {"tensor 'step' has dtype I64, allowed for parameters: F32, F64, F16, BF16"});
  {
    SafeTensorsWriter w = without({"head.bias"});
    w.add_f64("head.bias", {4}, std::vector<double>(4, 0.0));
    expect_error([&] { interpret(w); },
                 {"tensor 'head.bias' is F64 but tensor", "is F32: all parameters must have one dtype"});
  }
}

// ---------------------------------------------------------------------------------------------
// F16 and BF16

std::vector<std::byte> u16_bytes(const std::vector<std::uint16_t>& v) {
  std::vector<std::byte> b(v.size() * 2);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<float> read_as_f32(DType dtype, const std::vector<std::uint16_t>& bits) {
  SafeTensorsWriter w;
  w.add_bytes("x", dtype, {static_cast<std::int64_t>(bits.size())}, u16_bytes(bits));
  return SafeTensors::parse(w.serialize()).read_f32("x");
}

TEST(IoHalf, F16DecodesNormalsSubnormalsInfinitiesAndNan) {
  const std::vector<std::uint16_t> bits{0x3c00, 0xc000, 0x0001, 0x03ff, 0x0400, 0x7bff, 0x7c00,
                                        0xfc00, 0x0000, 0x8000, 0x3555, 0x8001, 0x7e00, 0xfe01};
  const std::vector<float> v = read_as_f32(DType::F16, bits);
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], -2.0f);
  EXPECT_EQ(v[2], std::ldexp(1.0f, -24));            // the least subnormal
  EXPECT_EQ(v[3], 1023.0f * std::ldexp(1.0f, -24));  // the largest subnormal
  EXPECT_EQ(v[4], std::ldexp(1.0f, -14));            // the least normal
  EXPECT_EQ(v[5], 65504.0f);
  EXPECT_EQ(v[6], std::numeric_limits<float>::infinity());
  EXPECT_EQ(v[7], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(std::bit_cast<std::uint32_t>(v[8]), 0u);
  EXPECT_EQ(std::bit_cast<std::uint32_t>(v[9]), 0x80000000u);              // -0 keeps its sign
  EXPECT_EQ(v[10], 0x155 * std::ldexp(1.0f, -12) + std::ldexp(1.0f, -2));  // 0.333251953125
  EXPECT_EQ(v[11], -std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isnan(v[12]));
  EXPECT_TRUE(std::isnan(v[13]));
#ifdef __FLT16_MAX__
  // Every one of the 65536 patterns against the compiler's own half type.
  std::vector<std::uint16_t> all(65536);
  for (std::uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<std::uint16_t>(i);
  const std::vector<float> got = read_as_f32(DType::F16, all);
  for (std::uint32_t i = 0; i < 65536; ++i) {
    const _Float16 h = std::bit_cast<_Float16>(static_cast<std::uint16_t>(i));
    const float want = static_cast<float>(h);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got[i])) << i;
    } else {
      ASSERT_EQ(std::bit_cast<std::uint32_t>(got[i]), std::bit_cast<std::uint32_t>(want)) << i;
      // And back: the float rounds to the same half (the conversion is exact).
      ASSERT_EQ(std::bit_cast<std::uint16_t>(static_cast<_Float16>(got[i])), i);
    }
  }
#endif
}

TEST(IoHalf, Bf16IsTheTopHalfOfAFloat) {
  std::vector<std::uint16_t> all(65536);
  for (std::uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<std::uint16_t>(i);
  const std::vector<float> got = read_as_f32(DType::BF16, all);
  for (std::uint32_t i = 0; i < 65536; ++i) {
    ASSERT_EQ(std::bit_cast<std::uint32_t>(got[i]), i << 16) << i;  // NaN payloads, subnormals, -0 included
  }
  EXPECT_EQ(got[0x3f80], 1.0f);
  EXPECT_EQ(got[0x0001], std::ldexp(1.0f, -133));  // the least bf16 subnormal is a float subnormal
  EXPECT_EQ(got[0x7f80], std::numeric_limits<float>::infinity());
  // Doubles too.
  SafeTensorsWriter w;
  w.add_bytes("x", DType::BF16, {2}, u16_bytes({0xc040, 0x0001}));
  EXPECT_EQ(SafeTensors::parse(w.serialize()).read_f64("x"), (std::vector<double>{-3.0, std::ldexp(1.0, -133)}));
}

// The bits of `v` as a half; `v` must be exactly representable (finite).
std::uint16_t half_bits(float v) {
  const std::uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  const float a = std::fabs(v);
  if (a == 0) return sign;
  int e = 0;
  const float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  if (e - 1 < -14) {                  // subnormal: a = mant * 2^-24
    const float mant = std::ldexp(a, 24);
    EXPECT_EQ(mant, std::floor(mant));
    return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(mant));
  }
  const float mant = (2 * m - 1) * 1024;
  EXPECT_EQ(mant, std::floor(mant)) << v;
  return static_cast<std::uint16_t>(sign | ((e - 1 + 15) << 10) | static_cast<std::uint16_t>(mant));
}

// A float32 model and the same model (same values) in F16 or BF16 under PyTorch names without
// metadata: the gradients must be the same bits, written under the file's names in F32.
void check_reduced_model(DType dtype, const std::string& cell) {
  SCOPED_TRACE(fmt::format("{} {}", dtype_name(dtype), cell));
  const ModelSpec spec{cell, 3, 6, 2, 5, "xent", "float32"};
  const NetShape shape = net_shape(spec, 2);
  Params<float> p(shape);
  init_pytorch_default(p, 17);
  // Round every parameter to the reduced type (values that F32 holds exactly).
  std::vector<std::uint16_t> bits(p.size());
  for (std::size_t i = 0; i < p.size(); ++i) {
    float& v = p.data()[i];
    if (dtype == DType::BF16) {
      bits[i] = static_cast<std::uint16_t>(std::bit_cast<std::uint32_t>(v) >> 16);
      v = std::bit_cast<float>(static_cast<std::uint32_t>(bits[i]) << 16);
    } else {
      v = std::ldexp(std::round(std::ldexp(v, 12)), -12);  // |v| < 1: 12 fraction bits fit a half
      bits[i] = half_bits(v);
    }
  }
  SafeTensorsWriter f32, reduced;
  for (const auto& [k, v] : model_spec_metadata(spec)) f32.set_metadata(k, v);
  add_params(f32, p, "");
  reduced.set_metadata("format", "pt");
  for (const ParamView& v : p.views()) {
    std::string name = v.name;
    if (name.rfind("rnn.", 0) == 0) name = cell + "." + name.substr(4);
    if (name.rfind("head.", 0) == 0) name = "fc." + name.substr(5);
    const std::vector<std::uint16_t> part(bits.begin() + static_cast<std::ptrdiff_t>(v.offset),
                                          bits.begin() + static_cast<std::ptrdiff_t>(v.offset + v.size));
    reduced.add_bytes(name, dtype, v.shape, u16_bytes(part));
  }
  const ModelFile a = interpret_model(SafeTensors::parse(f32.serialize(), "f32.safetensors"));
  const ModelFile b = interpret_model(SafeTensors::parse(reduced.serialize(), "half.safetensors"), {"xent", ""});
  EXPECT_EQ(b.spec.dtype, "float32");
  EXPECT_EQ(b.file_dtype, dtype);
  EXPECT_EQ(model_spec_metadata(a.spec), model_spec_metadata(b.spec));
  ASSERT_EQ(b.notes.size(), cell == "rnn" ? 2u : 1u);
  EXPECT_NE(b.notes[0].find(fmt::format("the parameters are {}; membptt computes in float32 (and writes gradients, "
                                        "where it writes them, in float32)",
                                        dtype_name(dtype))),
            std::string::npos)
      << b.notes[0];

  // Inputs in the same reduced type read as the same values.
  const std::int64_t T = 7, B = 2;
  std::vector<float> x(static_cast<std::size_t>(T * B * 3));
  std::vector<std::uint16_t> xbits(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = static_cast<float>(static_cast<int>(i % 9) - 4) * 0.125f;  // exact in both
    xbits[i] =
        dtype == DType::BF16 ? static_cast<std::uint16_t>(std::bit_cast<std::uint32_t>(x[i]) >> 16) : half_bits(x[i]);
  }
  std::vector<std::int64_t> cls(static_cast<std::size_t>(T * B));
  for (std::size_t i = 0; i < cls.size(); ++i) cls[i] = static_cast<std::int64_t>(i * 3 % 5);
  SafeTensorsWriter xin;
  xin.add_bytes("input", dtype, {T, B, 3}, u16_bytes(xbits));
  xin.add_i64("target", {T, B}, cls);
  const InputsData in = read_inputs(SafeTensors::parse(xin.serialize(), "x.safetensors"), b.spec);
  EXPECT_EQ(in.input, std::vector<double>(x.begin(), x.end()));
  EXPECT_NE(in.note.find(
                fmt::format("inputs file x.safetensors: 'input' {} converted exactly to float32", dtype_name(dtype))),
            std::string::npos)
      << in.note;

  const StateSizes sizes = state_sizes(shape, sizeof(float));
  const CostModel cm{sizes.alpha(), 2.0};
  const Plan plan = make_plan(Policy::Msm, T, least_budget(Policy::Msm, T, cm) + 1, cm);
  std::vector<float> h0(carry_elems(shape), 0.0f);
  auto grads_of = [&](const ModelFile& m) {
    Params<float> params(shape), grads(shape);
    load_params(m.tensors, params);
    Executor<float> exec(shape, LossKind::Xent, plan);
    const std::vector<float> xf(in.input.begin(), in.input.end());
    const RunStats s =
        exec.run(params, SequenceBatch<float>{T, xf.data(), in.target_class.data(), nullptr, h0.data()}, grads);
    EXPECT_TRUE(std::isfinite(s.loss));
    return std::vector<float>(grads.data(), grads.data() + grads.size());
  };
  const std::vector<float> ga = grads_of(a), gb = grads_of(b);
  ASSERT_EQ(ga.size(), gb.size());
  EXPECT_EQ(std::memcmp(ga.data(), gb.data(), ga.size() * sizeof(float)), 0);
  EXPECT_NE(std::count(ga.begin(), ga.end(), 0.0f), static_cast<std::ptrdiff_t>(ga.size()));

  // Written under the file's names, in F32.
  Params<float> g(shape);
  std::copy(gb.begin(), gb.end(), g.data());
  SafeTensorsWriter out;
  add_params(out, g, b);
  const SafeTensors written = SafeTensors::parse(out.serialize());
  EXPECT_TRUE(written.contains(cell + ".weight_ih_l1"));
  EXPECT_TRUE(written.contains("fc.bias"));
  EXPECT_FALSE(written.contains("head.bias"));
  EXPECT_EQ(written.info("fc.weight").dtype, DType::F32);
  EXPECT_EQ(written.read_f32("fc.bias"), std::vector<float>(g.view("head.bias").begin(), g.view("head.bias").end()));
}

TEST(IoHalf, Bf16AndF16ModelsGiveTheGradientsOfTheFloat32ModelWithTheSameValues) {
  for (const char* cell : {"lstm", "gru", "rnn"}) {
    check_reduced_model(DType::BF16, cell);
    check_reduced_model(DType::F16, cell);
  }
}

TEST(IoHalf, ReducedPrecisionInputsAndStates) {
  const ModelSpec spec{"lstm", 2, 3, 1, 2, "mse_last", "float64"};
  SafeTensorsWriter w;
  w.add_bytes("input", DType::F16, {1, 1, 2}, u16_bytes({0x3c00, 0x0001}));
  w.add_bytes("target", DType::BF16, {1, 2}, u16_bytes({0x4000, 0xbf80}));
  w.add_bytes("h0", DType::F16, {1, 1, 3}, u16_bytes({0x3800, 0x3800, 0x3800}));
  const InputsData d = read_inputs(SafeTensors::parse(w.serialize(), "x.safetensors"), spec);
  EXPECT_EQ(d.input, (std::vector<double>{1.0, std::ldexp(1.0, -24)}));
  EXPECT_EQ(d.target_value, (std::vector<double>{2.0, -1.0}));
  EXPECT_EQ(d.h0, (std::vector<double>(3, 0.5)));
  EXPECT_EQ(d.note,
            "note: inputs file x.safetensors: 'input' F16, 'target' BF16, 'h0' F16 converted exactly to float64 "
            "for the computation");
  // F32/F64 only: no note. Non-finite reduced values are still refused.
  SafeTensorsWriter plain;
  plain.add_f32("input", {1, 1, 2}, std::vector<float>{1, 2});
  plain.add_f32("target", {1, 2}, std::vector<float>{1, 2});
  EXPECT_TRUE(read_inputs(SafeTensors::parse(plain.serialize(), "p.safetensors"), spec).note.empty());
  SafeTensorsWriter inf;
  inf.add_bytes("input", DType::BF16, {1, 1, 2}, u16_bytes({0x3f80, 0x7f80}));
  inf.add_f32("target", {1, 2}, std::vector<float>{1, 2});
  expect_error([&] { read_inputs(SafeTensors::parse(inf.serialize(), "i.safetensors"), spec); },
               {"input[0, 0, 1] is inf"});
  // Other dtypes are named with what is allowed.
  SafeTensorsWriter f8;
  f8.add_bytes("input", DType::F8_E4M3, {1, 1, 2}, std::vector<std::byte>(2));
  f8.add_f32("target", {1, 2}, std::vector<float>{1, 2});
  expect_error([&] { read_inputs(SafeTensors::parse(f8.serialize(), "q.safetensors"), spec); },
               {"tensor 'input' has dtype F8_E4M3, allowed: F32, F64, F16, BF16"});
}

}  // namespace
}  // namespace membptt
