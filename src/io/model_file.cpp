#include "membptt/io/model_file.hpp"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <set>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

namespace membptt {
namespace {

// Metadata and tensor names come from files: escape anything that would break a one-line message.
std::string printable(std::string_view s, std::size_t max_len = 80) {
  std::string out;
  for (const char ch : s) {
    if (out.size() >= max_len) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f) {
      out += ch;
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  return out;
}

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) {
    if (!s.empty()) s += ", ";
    s += n;
  }
  return s;
}

// Strict decimal: digits only (no sign, spaces or exponent), value in [1, INT_MAX].
bool parse_positive_int(std::string_view s, int& out) {
  if (s.empty() || s.front() < '0' || s.front() > '9') return false;
  long long v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v < 1 || v > INT_MAX) return false;
  out = static_cast<int>(v);
  return true;
}

// "[2, 0, 3]" for flat index `flat` of a row-major tensor of shape `shape`.
std::string index_string(std::size_t flat, const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> idx(shape.size());
  for (std::size_t d = shape.size(); d-- > 0;) {
    const auto extent = static_cast<std::size_t>(shape[d]);
    idx[d] = static_cast<std::int64_t>(flat % extent);
    flat /= extent;
  }
  return shape_string(idx);
}

std::string value_word(double v) {
  if (std::isnan(v)) return "nan";
  return v > 0 ? "inf" : "-inf";
}

void check_finite(const std::string& prefix, const std::string& name, const std::vector<double>& values,
                  const std::vector<std::int64_t>& shape) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      throw std::runtime_error(fmt::format("{}: {}{} is {}, allowed: finite values", prefix, name,
                                           index_string(i, shape), value_word(values[i])));
    }
  }
}

}  // namespace

int gate_count(const std::string& cell) {
  if (cell == "lstm") return 4;
  if (cell == "gru") return 3;
  if (cell == "rnn") return 1;
  throw std::runtime_error(fmt::format("unknown cell '{}', allowed: lstm, gru, rnn", printable(cell)));
}

void validate_model_spec(const ModelSpec& spec, const std::string& what) {
  if (spec.cell != "lstm" && spec.cell != "gru" && spec.cell != "rnn") {
    throw std::runtime_error(fmt::format("{}: cell='{}' is not one of lstm, gru, rnn", what, printable(spec.cell)));
  }
  const std::pair<const char*, int> sizes[] = {{"input_size", spec.input_size},
                                               {"hidden_size", spec.hidden_size},
                                               {"num_layers", spec.num_layers},
                                               {"output_size", spec.output_size}};
  for (const auto& [key, v] : sizes) {
    if (v < 1) throw std::runtime_error(fmt::format("{}: {}={} is not a positive integer", what, key, v));
  }
  if (spec.loss != "xent" && spec.loss != "mse_last") {
    throw std::runtime_error(fmt::format("{}: loss='{}' is not one of xent, mse_last", what, printable(spec.loss)));
  }
  if (spec.dtype != "float32" && spec.dtype != "float64") {
    throw std::runtime_error(
        fmt::format("{}: dtype='{}' is not one of float32, float64", what, printable(spec.dtype)));
  }
}

ModelSpec read_model_spec(const SafeTensors& file, const std::string& what) {
  const std::string prefix = fmt::format("{} {}", what, file.source());
  auto get = [&](const char* key, const char* allowed) -> const std::string& {
    const std::string* v = file.find_metadata(key);
    if (!v) throw std::runtime_error(fmt::format("{}: metadata has no '{}' ({})", prefix, key, allowed));
    return *v;
  };
  auto one_of = [&](const char* key, std::initializer_list<std::string_view> allowed) {
    const std::string& v = get(key, "");
    for (auto a : allowed) {
      if (v == a) return v;
    }
    std::string list;
    for (auto a : allowed) list += fmt::format("{}{}", list.empty() ? "" : ", ", a);
    throw std::runtime_error(fmt::format("{}: metadata {}='{}' is not one of {}", prefix, key, printable(v), list));
  };
  auto positive = [&](const char* key) {
    const std::string& v = get(key, "a positive integer");
    int out = 0;
    if (!parse_positive_int(v, out)) {
      throw std::runtime_error(
          fmt::format("{}: metadata {}='{}' is not a positive integer (1 to {})", prefix, key, printable(v), INT_MAX));
    }
    return out;
  };
  // Check presence of the string-valued keys with a helpful list first.
  get("cell", "one of lstm, gru, rnn");
  get("loss", "one of xent, mse_last");
  get("dtype", "one of float32, float64");

  ModelSpec spec;
  spec.cell = one_of("cell", {"lstm", "gru", "rnn"});
  spec.input_size = positive("input_size");
  spec.hidden_size = positive("hidden_size");
  spec.num_layers = positive("num_layers");
  spec.output_size = positive("output_size");
  spec.loss = one_of("loss", {"xent", "mse_last"});
  spec.dtype = one_of("dtype", {"float32", "float64"});
  if (const std::string* nl = file.find_metadata("nonlinearity")) {
    if (*nl != "tanh" || spec.cell != "rnn") {
      throw std::runtime_error(fmt::format("{}: metadata nonlinearity='{}' is not allowed (only 'tanh', for cell rnn)",
                                           prefix, printable(*nl)));
    }
  }
  return spec;
}

std::map<std::string, std::string> model_spec_metadata(const ModelSpec& spec) {
  return {{"cell", spec.cell},
          {"input_size", std::to_string(spec.input_size)},
          {"hidden_size", std::to_string(spec.hidden_size)},
          {"num_layers", std::to_string(spec.num_layers)},
          {"output_size", std::to_string(spec.output_size)},
          {"loss", spec.loss},
          {"dtype", spec.dtype}};
}

std::vector<ParamShape> expected_parameters(const ModelSpec& spec) {
  validate_model_spec(spec);
  const std::int64_t gh = static_cast<std::int64_t>(gate_count(spec.cell)) * spec.hidden_size;
  const std::int64_t h = spec.hidden_size;
  std::vector<ParamShape> out;
  for (int l = 0; l < spec.num_layers; ++l) {
    const std::int64_t in = l == 0 ? spec.input_size : h;
    out.push_back({fmt::format("rnn.weight_ih_l{}", l), {gh, in}});
    out.push_back({fmt::format("rnn.weight_hh_l{}", l), {gh, h}});
    out.push_back({fmt::format("rnn.bias_ih_l{}", l), {gh}});
    out.push_back({fmt::format("rnn.bias_hh_l{}", l), {gh}});
  }
  out.push_back({"head.weight", {spec.output_size, h}});
  out.push_back({"head.bias", {spec.output_size}});
  return out;
}

void check_model_tensors(const SafeTensors& file, const ModelSpec& spec, const std::string& what) {
  const std::string prefix = fmt::format("{} {}", what, file.source());
  validate_model_spec(spec, prefix);
  const DType want = spec.dtype == "float32" ? DType::F32 : DType::F64;
  const auto expected = expected_parameters(spec);
  std::set<std::string, std::less<>> names;
  for (const auto& p : expected) {
    names.insert(p.name);
    if (!file.contains(p.name)) {
      throw std::runtime_error(fmt::format("{}: missing tensor '{}' (expected shape {} for a {}-layer {})", prefix,
                                           p.name, shape_string(p.shape), spec.num_layers, spec.cell));
    }
    const TensorInfo& info = file.info(p.name);
    if (info.shape != p.shape) {
      throw std::runtime_error(fmt::format("{}: tensor '{}' has shape {}, expected {}", prefix, p.name,
                                           shape_string(info.shape), shape_string(p.shape)));
    }
    if (info.dtype != want) {
      throw std::runtime_error(fmt::format("{}: tensor '{}' has dtype {}, expected {} (metadata dtype={})", prefix,
                                           p.name, dtype_name(info.dtype), dtype_name(want), spec.dtype));
    }
  }
  for (const auto& [name, info] : file.tensors()) {
    if (!names.count(name)) {
      throw std::runtime_error(fmt::format("{}: unexpected tensor '{}' with shape {} (not a parameter of a {}-layer {})",
                                           prefix, printable(name), shape_string(info.shape), spec.num_layers,
                                           spec.cell));
    }
  }
}

ModelFile load_model_file(const std::filesystem::path& path) {
  SafeTensors st = SafeTensors::load(path);
  ModelSpec spec = read_model_spec(st);
  check_model_tensors(st, spec);
  return ModelFile{std::move(spec), std::move(st)};
}

InputsData read_inputs(const SafeTensors& file, const ModelSpec& spec) {
  const std::string prefix = fmt::format("inputs file {}", file.source());
  validate_model_spec(spec);
  const bool lstm = spec.cell == "lstm";
  const bool xent = spec.loss == "xent";

  std::vector<std::string> allowed{"input", "target", "h0"};
  if (lstm) allowed.push_back("c0");
  for (const auto& [name, info] : file.tensors()) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      throw std::runtime_error(fmt::format("{}: unexpected tensor '{}' (allowed for a {} model: {})", prefix,
                                           printable(name), spec.cell, join(allowed)));
    }
  }
  auto require = [&](const char* name, const char* layout) -> const TensorInfo& {
    if (!file.contains(name)) {
      throw std::runtime_error(fmt::format("{}: missing tensor '{}' ({})", prefix, name, layout));
    }
    return file.info(name);
  };
  auto check_float = [&](const char* name, const TensorInfo& info) {
    if (info.dtype != DType::F32 && info.dtype != DType::F64) {
      throw std::runtime_error(fmt::format("{}: tensor '{}' has dtype {}, allowed: F32, F64", prefix, name,
                                           dtype_name(info.dtype)));
    }
  };
  auto shape_error = [&](const char* name, const TensorInfo& info, const std::vector<std::int64_t>& expected,
                         const char* layout) {
    return std::runtime_error(fmt::format("{}: tensor '{}' has shape {}, expected {} ({})", prefix, name,
                                          shape_string(info.shape), shape_string(expected), layout));
  };

  InputsData d;
  const std::int64_t I = spec.input_size, O = spec.output_size, L = spec.num_layers, H = spec.hidden_size;

  const TensorInfo& in = require("input", "[T x B x input_size]");
  check_float("input", in);
  if (in.shape.size() != 3 || in.shape[2] != I || in.shape[0] < 1 || in.shape[1] < 1) {
    throw std::runtime_error(fmt::format("{}: tensor 'input' has shape {}, expected [T, B, {}] with T, B >= 1", prefix,
                                         shape_string(in.shape), I));
  }
  d.T = in.shape[0];
  d.B = in.shape[1];
  d.input = file.read_f64("input");
  check_finite(prefix, "input", d.input, in.shape);

  if (xent) {
    const TensorInfo& t = require("target", "int64 [T x B] class indices");
    const std::vector<std::int64_t> want{d.T, d.B};
    if (t.shape != want) throw shape_error("target", t, want, "[T x B] for loss xent");
    switch (t.dtype) {
      case DType::I64:
      case DType::I32:
      case DType::I16:
      case DType::I8:
      case DType::U8:
      case DType::U16:
      case DType::U32: break;
      default:
        throw std::runtime_error(fmt::format("{}: tensor 'target' has dtype {}, allowed for loss xent: I64 "
                                             "(or a narrower integer type)",
                                             prefix, dtype_name(t.dtype)));
    }
    d.target_class = file.read_i64("target");
    for (std::size_t i = 0; i < d.target_class.size(); ++i) {
      const auto c = d.target_class[i];
      if (c < 0 || c >= O) {
        throw std::runtime_error(fmt::format("{}: target{} = {} is outside the classes [0, {})", prefix,
                                             index_string(i, t.shape), c, O));
      }
    }
  } else {
    const TensorInfo& t = require("target", "float [B x output_size] for loss mse_last");
    check_float("target", t);
    const std::vector<std::int64_t> want{d.B, O};
    if (t.shape != want) throw shape_error("target", t, want, "[B x output_size] for loss mse_last");
    d.target_value = file.read_f64("target");
    check_finite(prefix, "target", d.target_value, t.shape);
  }

  const std::vector<std::int64_t> state_shape{L, d.B, H};
  for (const char* name : {"h0", "c0"}) {
    if (!file.contains(name)) continue;
    const TensorInfo& s = file.info(name);
    check_float(name, s);
    if (s.shape != state_shape) throw shape_error(name, s, state_shape, "[num_layers x B x hidden_size]");
    auto values = file.read_f64(name);
    check_finite(prefix, name, values, s.shape);
    (name[0] == 'h' ? d.h0 : d.c0) = std::move(values);
  }
  return d;
}

InputsData load_inputs_file(const std::filesystem::path& path, const ModelSpec& spec) {
  return read_inputs(SafeTensors::load(path), spec);
}

}  // namespace membptt
