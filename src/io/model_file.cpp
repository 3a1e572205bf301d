#include "membptt/io/model_file.hpp"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <optional>
#include <set>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

#include "membptt/cells/params.hpp"

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
  if (spec.nonlinearity != "tanh" && spec.nonlinearity != "relu") {
    throw std::runtime_error(
        fmt::format("{}: nonlinearity='{}' is not one of tanh, relu", what, printable(spec.nonlinearity)));
  }
  if (spec.proj_size < 0 || (spec.proj_size > 0 && (spec.cell != "lstm" || spec.proj_size >= spec.hidden_size))) {
    throw std::runtime_error(fmt::format("{}: proj_size={} is not allowed: 0, or for cell lstm 1 to hidden_size - 1 ({})",
                                         what, spec.proj_size, spec.hidden_size - 1));
  }
  if (spec.nonlinearity == "relu" && spec.cell != "rnn") {
    throw std::runtime_error(fmt::format("{}: nonlinearity='relu' is not allowed for cell {}: only rnn takes relu", what,
                                         spec.cell));
  }
}

namespace {
// Metadata bias: "true" / "false" (absent: true).
bool bias_of(const std::string* v, const std::string& prefix) {
  if (!v || *v == "true") return true;
  if (*v == "false") return false;
  throw std::runtime_error(fmt::format("{}: metadata bias='{}' is not one of true, false", prefix, printable(*v)));
}
}  // namespace

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
    if ((*nl != "tanh" && *nl != "relu") || spec.cell != "rnn") {
      throw std::runtime_error(fmt::format("{}: metadata nonlinearity='{}' is not allowed (only 'tanh' or 'relu', for "
                                           "cell rnn)",
                                           prefix, printable(*nl)));
    }
    spec.nonlinearity = *nl;
  }
  spec.bias = bias_of(file.find_metadata("bias"), prefix);
  if (const std::string* ps = file.find_metadata("proj_size")) {
    if (!parse_positive_int(*ps, spec.proj_size) || spec.cell != "lstm" || spec.proj_size >= spec.hidden_size) {
      throw std::runtime_error(fmt::format("{}: metadata proj_size='{}' is not allowed (for cell lstm: 1 to hidden_size "
                                           "- 1; absent: no projection)",
                                           prefix, printable(*ps)));
    }
  }
  if (const std::string* bd = file.find_metadata("bidirectional")) {
    if (*bd != "true" && *bd != "false") {
      throw std::runtime_error(fmt::format("{}: metadata bidirectional='{}' is not one of true, false", prefix,
                                           printable(*bd)));
    }
    spec.bidirectional = *bd == "true";
  }
  return spec;
}

std::map<std::string, std::string> model_spec_metadata(const ModelSpec& spec) {
  std::map<std::string, std::string> m{{"cell", spec.cell},
                                       {"input_size", std::to_string(spec.input_size)},
                                       {"hidden_size", std::to_string(spec.hidden_size)},
                                       {"num_layers", std::to_string(spec.num_layers)},
                                       {"output_size", std::to_string(spec.output_size)},
                                       {"loss", spec.loss},
                                       {"dtype", spec.dtype}};
  if (!spec.bias) m["bias"] = "false";
  if (spec.nonlinearity != "tanh") m["nonlinearity"] = spec.nonlinearity;
  if (spec.proj_size > 0) m["proj_size"] = std::to_string(spec.proj_size);
  if (spec.bidirectional) m["bidirectional"] = "true";
  return m;
}

std::vector<ParamShape> expected_parameters(const ModelSpec& spec) {
  validate_model_spec(spec);
  const std::int64_t gh = static_cast<std::int64_t>(gate_count(spec.cell)) * spec.hidden_size;
  const std::int64_t h = spec.hidden_size, r = spec.proj_size > 0 ? spec.proj_size : h;
  const std::int64_t dirs = spec.bidirectional ? 2 : 1;
  std::vector<ParamShape> out;
  for (int l = 0; l < spec.num_layers; ++l) {
    const std::int64_t in = l == 0 ? spec.input_size : dirs * r;
    for (int d = 0; d < dirs; ++d) {
      const char* sfx = d == 1 ? "_reverse" : "";
      out.push_back({fmt::format("rnn.weight_ih_l{}{}", l, sfx), {gh, in}});
      out.push_back({fmt::format("rnn.weight_hh_l{}{}", l, sfx), {gh, r}});
      if (spec.bias) {
        out.push_back({fmt::format("rnn.bias_ih_l{}{}", l, sfx), {gh}});
        out.push_back({fmt::format("rnn.bias_hh_l{}{}", l, sfx), {gh}});
      }
      if (spec.proj_size > 0) out.push_back({fmt::format("rnn.weight_hr_l{}{}", l, sfx), {r, h}});
    }
  }
  out.push_back({"head.weight", {spec.output_size, dirs * r}});
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

namespace {

// A recurrent tensor's name split as PyTorch writes it: <prefix><weight|bias>_<ih|hh|hr>_l<layer>[_reverse].
struct RecurrentName {
  std::string prefix;  // "" or ending in '.'
  std::string kind;    // weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, bias_hr
  int layer = 0;
  bool reverse = false;
};

std::optional<RecurrentName> parse_recurrent(std::string_view name) {
  const auto dot = name.rfind('.');
  std::string_view base = dot == std::string_view::npos ? name : name.substr(dot + 1);
  RecurrentName r;
  r.prefix = std::string(name.substr(0, name.size() - base.size()));
  constexpr std::string_view kReverse = "_reverse";
  if (base.size() > kReverse.size() && base.substr(base.size() - kReverse.size()) == kReverse) {
    r.reverse = true;
    base.remove_suffix(kReverse.size());
  }
  for (std::string_view kind : {"weight_ih", "weight_hh", "weight_hr", "bias_ih", "bias_hh", "bias_hr"}) {
    if (base.size() > kind.size() + 2 && base.substr(0, kind.size()) == kind && base.substr(kind.size(), 2) == "_l") {
      const std::string_view digits = base.substr(kind.size() + 2);
      // Decimal without leading zeros, below a million layers.
      if (digits.size() > 6 || (digits.size() > 1 && digits[0] == '0')) return std::nullopt;
      int layer = 0;
      const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), layer);
      if (ec != std::errc() || ptr != digits.data() + digits.size()) return std::nullopt;
      r.kind = std::string(kind);
      r.layer = layer;
      return r;
    }
  }
  return std::nullopt;
}

std::string tq(std::string_view name) { return fmt::format("'{}'", printable(name, 120)); }

// "a, b, c, ..." of the file's tensor names, bounded.
std::string name_list(const SafeTensors& file) {
  std::string s;
  for (const auto& [name, info] : file.tensors()) {
    if (s.size() > 200) return s + ", ...";
    if (!s.empty()) s += ", ";
    s += printable(name, 60);
  }
  return s.empty() ? "no tensors" : s;
}

std::string cell_upper(const std::string& cell) { return cell == "lstm" ? "LSTM" : cell == "gru" ? "GRU" : "RNN"; }

std::string cell_words(const std::string& cell) {
  if (cell == "lstm") return "an LSTM (4 gates)";
  if (cell == "gru") return "a GRU (3 gates)";
  return "an RNN (1 gate)";
}

}  // namespace

const std::string& ModelFile::file_name(const std::string& name) const {
  const auto it = file_names.find(name);
  return it == file_names.end() ? name : it->second;
}

ModelFile load_model_file(const std::filesystem::path& path, const ModelLoadOptions& options) {
  return interpret_model(SafeTensors::load(path), options);
}

ModelFile interpret_model(SafeTensors file, const ModelLoadOptions& options, const std::string& what) {
  const std::string prefix = fmt::format("{} {}", what, file.source());
  auto fail = [&](const std::string& msg) { return std::runtime_error(fmt::format("{}: {}", prefix, msg)); };
  const std::string torch_layout =
      "a state dict of nn.LSTM, nn.GRU or nn.RNN (tensors such as rnn.weight_ih_l0) and an nn.Linear head "
      "(such as head.weight, head.bias)";

  // One floating dtype for every tensor.
  if (file.tensors().empty()) throw fail(fmt::format("holds no tensors, expected {}", torch_layout));
  const std::string* first_name = nullptr;
  DType dtype = DType::F32;
  for (const auto& [name, info] : file.tensors()) {
    if (info.dtype != DType::F32 && info.dtype != DType::F64 && info.dtype != DType::F16 &&
        info.dtype != DType::BF16) {
      throw fail(fmt::format("tensor {} has dtype {}, allowed for parameters: F32, F64, F16, BF16", tq(name),
                             dtype_name(info.dtype)));
    }
    if (!first_name) {
      first_name = &name;
      dtype = info.dtype;
    } else if (info.dtype != dtype) {
      throw fail(fmt::format("tensor {} is {} but tensor {} is {}: all parameters must have one dtype",
                             tq(*first_name), dtype_name(dtype), tq(name), dtype_name(info.dtype)));
    }
  }

  // The recurrent tensors: one module (one prefix), layers 0 .. L-1.
  std::map<std::string, const TensorInfo*> recurrent;  // kind_l<k> -> info
  std::vector<std::string> others;
  std::string rnn_prefix;
  const std::string* rnn_first = nullptr;
  int max_layer = -1;
  bool any_reverse = false;  // *_reverse tensors: bidirectional=True
  for (const auto& [name, info] : file.tensors()) {
    const auto r = parse_recurrent(name);
    if (!r) {
      others.push_back(name);
      continue;
    }
    if (r->reverse) any_reverse = true;
    if (r->kind == "bias_hr") {
      throw fail(fmt::format("unexpected tensor {}: LSTM projections (weight_hr) have no bias in PyTorch", tq(name)));
    }
    if (!rnn_first) {
      rnn_first = &name;
      rnn_prefix = r->prefix;
    } else if (r->prefix != rnn_prefix) {
      throw fail(fmt::format("tensors {} and {} belong to two recurrent modules; one is supported (nn.LSTM, nn.GRU or "
                             "nn.RNN, stacked with num_layers)",
                             tq(*rnn_first), tq(name)));
    }
    recurrent[fmt::format("{}_l{}{}", r->kind, r->layer, r->reverse ? "_reverse" : "")] = &info;
    max_layer = std::max(max_layer, r->layer);
  }
  if (!rnn_first) {
    throw fail(fmt::format("has no recurrent tensors (the file has: {}), expected {}", name_list(file), torch_layout));
  }
  auto fname = [&](const char* kind, int layer, bool reverse = false) {
    return fmt::format("{}{}_l{}{}", rnn_prefix, kind, layer, reverse ? "_reverse" : "");
  };
  auto find = [&](const char* kind, int layer, bool reverse = false) -> const TensorInfo* {
    const auto it = recurrent.find(fmt::format("{}_l{}{}", kind, layer, reverse ? "_reverse" : ""));
    return it == recurrent.end() ? nullptr : it->second;
  };

  // Cell and hidden size from weight_hh_l0 [G*H x H], or with projections from weight_hr_l0 [P x H]
  // and weight_hh_l0 [4H x P] (an LSTM with proj_size P).
  const TensorInfo* hh0 = find("weight_hh", 0);
  if (!hh0) {
    throw fail(fmt::format("missing tensor {} ([G*H, H]: it tells the cell and the hidden size)",
                           tq(fname("weight_hh", 0))));
  }
  const auto& hs = hh0->shape;
  ModelSpec spec;
  std::int64_t gates = 0;
  if (const TensorInfo* hr0 = find("weight_hr", 0)) {
    const auto& rs = hr0->shape;
    if (rs.size() != 2 || rs[0] < 1 || rs[1] <= rs[0] || rs[1] > INT_MAX / 4 || hs.size() != 2 || hs[0] != 4 * rs[1] ||
        hs[1] != rs[0]) {
      throw fail(fmt::format("tensors {} {} and {} {} are not an LSTM's projection: expected [P, H] and [4H, P] with "
                             "1 <= P < H",
                             tq(fname("weight_hr", 0)), shape_string(rs), tq(fname("weight_hh", 0)), shape_string(hs)));
    }
    gates = 4;
    spec.hidden_size = static_cast<int>(rs[1]);
    spec.proj_size = static_cast<int>(rs[0]);
  } else {
    if (hs.size() != 2 || hs[1] < 1 || hs[0] % hs[1] != 0 ||
        (hs[0] / hs[1] != 4 && hs[0] / hs[1] != 3 && hs[0] / hs[1] != 1) || hs[1] > INT_MAX) {
      throw fail(fmt::format("tensor {} has shape {}, expected [G*H, H] with G = 4 (LSTM), 3 (GRU) or 1 (RNN) gates "
                             "and hidden size H >= 1",
                             tq(fname("weight_hh", 0)), shape_string(hs)));
    }
    gates = hs[0] / hs[1];
    spec.hidden_size = static_cast<int>(hs[1]);
  }
  spec.cell = gates == 4 ? "lstm" : gates == 3 ? "gru" : "rnn";
  const std::int64_t gh = hs[0];
  spec.bidirectional = any_reverse;
  const int dirs = any_reverse ? 2 : 1;
  const int width = spec.proj_size > 0 ? spec.proj_size : spec.hidden_size;  // h's
  const std::int64_t head_width = static_cast<std::int64_t>(dirs) * width;   // the head's input: every direction's h

  // Input size from weight_ih_l0 [G*H x I].
  const TensorInfo* ih0 = find("weight_ih", 0);
  if (!ih0) {
    throw fail(fmt::format("missing tensor {} (expected shape [{}, input_size] for {} of hidden size {})",
                           tq(fname("weight_ih", 0)), gh, cell_words(spec.cell), spec.hidden_size));
  }
  if (ih0->shape.size() != 2 || ih0->shape[0] != gh || ih0->shape[1] < 1 || ih0->shape[1] > INT_MAX) {
    throw fail(fmt::format("tensor {} has shape {}, expected [{}, input_size] for {} of hidden size {} "
                           "(as {} [{}, {}] says)",
                           tq(fname("weight_ih", 0)), shape_string(ih0->shape), gh, cell_words(spec.cell),
                           spec.hidden_size, tq(fname("weight_hh", 0)), gh, spec.hidden_size));
  }
  spec.input_size = static_cast<int>(ih0->shape[1]);
  spec.num_layers = max_layer + 1;

  // Biases: all there (bias=True), or none (bias=False); some is a missing tensor (checked below).
  bool any_bias = false;
  for (const auto& [key, info] : recurrent) any_bias = any_bias || key.rfind("bias_", 0) == 0;
  spec.bias = any_bias;

  // Every layer complete (both directions when any tensor is *_reverse), none missing in between
  // (before anything is sized by the layer count).
  if (spec.num_layers > kMaxLayers) {
    throw fail(fmt::format("tensor {} makes {} layers; at most {} are supported", tq(fname("weight_ih", max_layer)),
                           spec.num_layers, kMaxLayers));
  }
  for (int k = 0; k <= max_layer; ++k) {
    for (int d = 0; d < dirs; ++d) {
      for (const char* kind : {"weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"}) {
        const std::string_view kv = kind;
        const bool is_bias = kv.substr(0, 4) == "bias", is_hr = kv == "weight_hr";
        if (find(kind, k, d == 1) || (is_bias && !spec.bias) || (is_hr && spec.proj_size == 0)) continue;
        const std::string shape = is_bias             ? fmt::format("[{}]", gh)
                                  : is_hr             ? fmt::format("[{}, {}]", width, spec.hidden_size)
                                  : kv == "weight_hh" ? fmt::format("[{}, {}]", gh, width)
                                                      : fmt::format("[{}, {}]", gh, k == 0 ? spec.input_size : dirs * width);
        throw fail(fmt::format("missing tensor {} (expected shape {}: layer {}{} of a {}-layer {}{}, as {} shows)",
                               tq(fname(kind, k, d == 1)), shape, k, d == 1 ? " reverse" : "", spec.num_layers,
                               dirs == 2 ? "bidirectional " : "", cell_upper(spec.cell),
                               tq(fname("weight_hh", max_layer))));
      }
    }
  }

  // The head: the one <q>weight [O x H] + <q>bias [O] pair among the other tensors.
  std::vector<std::string> weights;
  for (const auto& n : others) {
    constexpr std::string_view kW = "weight";
    const std::string_view v = n;
    if (v.size() >= kW.size() && v.substr(v.size() - kW.size()) == kW) {
      const std::string_view q = v.substr(0, v.size() - kW.size());
      if (q.empty() || q.back() == '.') weights.push_back(n);
    }
  }
  std::string head_prefix;
  {
    std::vector<std::string> pairs;
    for (const auto& w : weights) {
      const std::string q = w.substr(0, w.size() - 6);
      if (file.contains(q + "bias")) pairs.push_back(q);
    }
    if (pairs.size() > 1) {
      throw fail(fmt::format("tensors {} and {} are two Linear layers; one head after the recurrent layers is "
                             "supported",
                             tq(pairs[0] + "weight"), tq(pairs[1] + "weight")));
    }
    if (pairs.empty()) {
      if (weights.size() == 1) {
        throw fail(fmt::format("the head {} has no bias {}: a head without bias (bias=False) is not supported yet",
                               tq(weights[0]), tq(weights[0].substr(0, weights[0].size() - 6) + "bias")));
      }
      throw fail(fmt::format("has no head: expected an nn.Linear's weight [output_size, {}] and bias [output_size] "
                             "(such as head.weight, head.bias) beside the recurrent tensors{}",
                             head_width,
                             others.empty() ? std::string() : fmt::format(" (the other tensors: {})", [&] {
                               std::string s;
                               for (const auto& n : others) s += (s.empty() ? "" : ", ") + printable(n, 60);
                               return printable(s, 200);
                             }())));
    }
    head_prefix = pairs[0];
  }
  const std::string head_w = head_prefix + "weight", head_b = head_prefix + "bias";
  for (const auto& n : others) {
    if (n != head_w && n != head_b) {
      throw fail(fmt::format("unexpected tensor {} with shape {}: a model is one recurrent module ({}weight_ih_l0 "
                             "...) and one Linear head ({}, {})",
                             tq(n), shape_string(file.info(n).shape), printable(rnn_prefix, 60), tq(head_w),
                             tq(head_b)));
    }
  }
  const auto& hw = file.info(head_w).shape;
  if (hw.size() != 2 || hw[0] < 1 || hw[0] > INT_MAX || hw[1] != head_width) {
    throw fail(fmt::format("tensor {} has shape {}, expected [output_size, {}] ({})", tq(head_w), shape_string(hw),
                           head_width,
                           dirs == 2 ? fmt::format("both directions' h, 2 x {}: the recurrent tensors are bidirectional", width)
                                     : std::string("the width of h")));
  }
  spec.output_size = static_cast<int>(hw[0]);
  spec.dtype = dtype == DType::F64 ? "float64" : "float32";

  // Metadata that is present must agree with the tensors.
  const std::string hh0_desc = fmt::format("{} {}", tq(fname("weight_hh", 0)), shape_string(hs));
  if (const std::string* v = file.find_metadata("cell")) {
    if (*v != "lstm" && *v != "gru" && *v != "rnn") {
      throw fail(fmt::format("metadata cell='{}' is not one of lstm, gru, rnn", printable(*v)));
    }
    if (*v != spec.cell) {
      throw fail(fmt::format("metadata cell={} contradicts the tensors: {} has {} gates, {}", *v, hh0_desc, gates,
                             cell_words(spec.cell)));
    }
  }
  const struct {
    const char* key;
    int value;
    std::string source;
  } sizes[] = {
      {"input_size", spec.input_size, fmt::format("{} {}", tq(fname("weight_ih", 0)), shape_string(ih0->shape))},
      {"hidden_size", spec.hidden_size, hh0_desc},
      {"num_layers", spec.num_layers,
       fmt::format("the tensors have layers 0 to {} ({})", max_layer, tq(fname("weight_ih", max_layer)))},
      {"output_size", spec.output_size, fmt::format("{} {}", tq(head_w), shape_string(hw))},
  };
  for (const auto& sz : sizes) {
    const std::string* v = file.find_metadata(sz.key);
    if (!v) continue;
    int got = 0;
    if (!parse_positive_int(*v, got)) {
      throw fail(fmt::format("metadata {}='{}' is not a positive integer (1 to {})", sz.key, printable(*v), INT_MAX));
    }
    if (got != sz.value) {
      throw fail(fmt::format("metadata {}={} contradicts the tensors: {} gives {}", sz.key, got, sz.source, sz.value));
    }
  }
  if (const std::string* v = file.find_metadata("dtype")) {
    const char* want = dtype == DType::F64 ? "float64" : dtype == DType::F32 ? "float32"
                       : dtype == DType::F16 ? "float16" : "bfloat16";
    if (*v != "float32" && *v != "float64" && *v != "float16" && *v != "bfloat16") {
      throw fail(fmt::format("metadata dtype='{}' is not one of float32, float64, float16, bfloat16", printable(*v)));
    }
    if (*v != want) {
      throw fail(fmt::format("metadata dtype={} contradicts the tensors, which are {} ({})", *v, dtype_name(dtype),
                             want));
    }
  }
  if (const std::string* v = file.find_metadata("proj_size")) {
    int got = 0;
    if (!parse_positive_int(*v, got)) {
      throw fail(fmt::format("metadata proj_size='{}' is not a positive integer (absent: no projection)", printable(*v)));
    }
    if (got != spec.proj_size) {
      throw fail(fmt::format("metadata proj_size={} contradicts the tensors, which have {}", got,
                             spec.proj_size > 0 ? fmt::format("{} [{}, {}]", tq(fname("weight_hr", 0)), spec.proj_size,
                                                              spec.hidden_size)
                                                : fmt::format("no {}", tq(fname("weight_hr", 0)))));
    }
  }
  if (const std::string* v = file.find_metadata("bidirectional")) {
    if (*v != "true" && *v != "false") {
      throw fail(fmt::format("metadata bidirectional='{}' is not one of true, false", printable(*v)));
    }
    if ((*v == "true") != spec.bidirectional) {
      throw fail(fmt::format("metadata bidirectional={} contradicts the tensors, which have {}", *v,
                             spec.bidirectional ? fmt::format("*_reverse tensors ({})", tq(fname("weight_ih", 0, true)))
                                                : fmt::format("no *_reverse tensor (no {})", tq(fname("weight_ih", 0, true)))));
    }
  }
  if (const std::string* v = file.find_metadata("bias")) {
    if (*v != "true" && *v != "false") {
      throw fail(fmt::format("metadata bias='{}' is not one of true, false", printable(*v)));
    }
    if ((*v == "true") != spec.bias) {
      throw fail(fmt::format("metadata bias={} contradicts the tensors, which have {}", *v,
                             spec.bias ? fmt::format("biases ({})", tq(fname("bias_ih", 0)))
                                       : fmt::format("no bias (no {})", tq(fname("bias_ih", 0)))));
    }
  }
  if (!options.nonlinearity.empty() && options.nonlinearity != "tanh" && options.nonlinearity != "relu") {
    throw std::runtime_error(
        fmt::format("--nonlinearity '{}' is not one of tanh, relu", printable(options.nonlinearity)));
  }
  if (!options.nonlinearity.empty() && spec.cell != "rnn" && options.nonlinearity != "tanh") {
    throw fail(fmt::format("--nonlinearity {} is not allowed for {}: only an RNN (1 gate) takes relu",
                           options.nonlinearity, cell_words(spec.cell)));
  }
  if (const std::string* nl = file.find_metadata("nonlinearity")) {
    if ((*nl != "tanh" && *nl != "relu") || spec.cell != "rnn") {
      throw fail(fmt::format("metadata nonlinearity='{}' is not allowed (only 'tanh' or 'relu', for cell rnn)",
                             printable(*nl)));
    }
    if (!options.nonlinearity.empty() && options.nonlinearity != *nl) {
      throw fail(fmt::format("--nonlinearity {} contradicts the file's metadata nonlinearity={}", options.nonlinearity,
                             *nl));
    }
    spec.nonlinearity = *nl;
  } else if (!options.nonlinearity.empty()) {
    spec.nonlinearity = options.nonlinearity;
  }
  if (!options.loss.empty() && options.loss != "xent" && options.loss != "mse_last") {
    throw std::runtime_error(fmt::format("--loss '{}' is not one of xent, mse_last", printable(options.loss)));
  }
  if (const std::string* v = file.find_metadata("loss")) {
    if (*v != "xent" && *v != "mse_last") {
      throw fail(fmt::format("metadata loss='{}' is not one of xent, mse_last", printable(*v)));
    }
    if (!options.loss.empty() && options.loss != *v) {
      throw fail(fmt::format("--loss {} contradicts the file's metadata loss={}", options.loss, *v));
    }
    spec.loss = *v;
  } else if (!options.loss.empty()) {
    spec.loss = options.loss;
  } else {
    throw fail("the loss cannot be read from the tensors and the file has no metadata 'loss': " +
               (options.loss_hint.empty() ? std::string("pass --loss xent (softmax cross-entropy at every step) or --loss "
                                                        "mse_last (squared error of the last step)")
                                          : options.loss_hint));
  }


  // Every layer's shapes.
  ModelFile out;
  out.spec = spec;
  out.file_dtype = dtype;
  const auto expected = expected_parameters(spec);
  for (const ParamShape& p : expected) {
    std::string in_file;
    if (p.name.rfind("head.", 0) == 0) {
      in_file = head_prefix + p.name.substr(5);
    } else {
      in_file = rnn_prefix + p.name.substr(4);  // "rnn."
    }
    const TensorInfo& info = file.info(in_file);
    if (info.shape != p.shape) {
      throw fail(fmt::format("tensor {} has shape {}, expected {} (a {}-layer {}, input size {}, hidden size {})",
                             tq(in_file), shape_string(info.shape), shape_string(p.shape), spec.num_layers,
                             cell_upper(spec.cell), spec.input_size, spec.hidden_size));
    }
    out.file_names.emplace(p.name, in_file);
  }
  // (Every recurrent tensor is one of those: its layer is at most max_layer, its kind one of four.)

  const bool renamed = std::any_of(out.file_names.begin(), out.file_names.end(),
                                   [](const auto& kv) { return kv.first != kv.second; });
  if (dtype == DType::F16 || dtype == DType::BF16) {
    out.notes.push_back(fmt::format("note: {}: the parameters are {}; membptt computes in float32 (and writes "
                                    "gradients, where it writes them, in float32)",
                                    prefix, dtype_name(dtype)));
  }
  if (spec.cell == "rnn" && !file.find_metadata("cell") && !file.find_metadata("nonlinearity") &&
      options.nonlinearity.empty()) {
    out.notes.push_back(fmt::format("note: {}: {} has 1 gate: read as nn.RNN with tanh, the default (a relu RNN has "
                                    "the same tensors: pass --nonlinearity relu)",
                                    prefix, hh0_desc));
  }
  if (!renamed && (dtype == DType::F32 || dtype == DType::F64)) {
    out.tensors = std::move(file);
  } else {
    // Copy into membptt's names and dtype (F16/BF16 -> F32, exactly).
    SafeTensorsWriter w;
    for (const auto& [k, v] : model_spec_metadata(spec)) w.set_metadata(k, v);
    for (const ParamShape& p : expected) {
      const std::string& in_file = out.file_names.at(p.name);
      if (dtype == DType::F32 || dtype == DType::F64) {
        w.add_bytes(p.name, dtype, p.shape, file.bytes(in_file));
      } else {
        const std::vector<float> v = file.read_f32(in_file);
        w.add_f32(p.name, p.shape, v);
      }
    }
    out.tensors = SafeTensors::parse(w.serialize(), file.source());
  }
  check_model_tensors(out.tensors, spec, what);
  // Parameters must be finite, as inputs must: a nan weight would give a nan loss and gradients
  // with status 0.
  for (const ParamShape& p : expected) {
    const std::vector<double> v = spec.dtype == "float64" ? out.tensors.read_f64(p.name) : [&] {
      const std::vector<float> f = out.tensors.read_f32(p.name);
      return std::vector<double>(f.begin(), f.end());
    }();
    const auto bad = std::find_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); });
    if (bad != v.end())
      throw fail(fmt::format("tensor {} holds {} at index {}: allowed are finite values", tq(out.file_name(p.name)),
                             std::isnan(*bad) ? "nan" : *bad > 0 ? "inf" : "-inf", bad - v.begin()));
  }
  return out;
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
  std::vector<std::string> reduced;  // "input (BF16)", ...: converted exactly, said once in d.note
  auto check_float = [&](const char* name, const TensorInfo& info) {
    if (info.dtype == DType::F16 || info.dtype == DType::BF16) {
      reduced.push_back(fmt::format("'{}' {}", name, dtype_name(info.dtype)));
    } else if (info.dtype != DType::F32 && info.dtype != DType::F64) {
      throw std::runtime_error(fmt::format("{}: tensor '{}' has dtype {}, allowed: F32, F64, F16, BF16", prefix, name,
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

  const std::int64_t R = spec.proj_size > 0 ? spec.proj_size : H;  // h's width
  for (const char* name : {"h0", "c0"}) {
    if (!file.contains(name)) continue;
    const TensorInfo& s = file.info(name);
    check_float(name, s);
    const std::int64_t DL = spec.bidirectional ? 2 * L : L;  // PyTorch's h_n / c_n: index 2l + d
    const std::vector<std::int64_t> state_shape{DL, d.B, name[0] == 'h' ? R : H};
    if (s.shape != state_shape)
      throw shape_error(name, s, state_shape,
                        spec.bidirectional ? (name[0] == 'h' && R != H ? "[2 * num_layers x B x proj_size], bidirectional"
                                                                       : "[2 * num_layers x B x hidden_size], bidirectional")
                        : name[0] == 'h' && R != H ? "[num_layers x B x proj_size]"
                                                   : "[num_layers x B x hidden_size]");
    auto values = file.read_f64(name);
    check_finite(prefix, name, values, s.shape);
    (name[0] == 'h' ? d.h0 : d.c0) = std::move(values);
  }
  if (!reduced.empty()) {
    d.note = fmt::format("note: {}: {} converted exactly to {} for the computation", prefix, join(reduced),
                         spec.dtype);
  }
  return d;
}

InputsData load_inputs_file(const std::filesystem::path& path, const ModelSpec& spec) {
  return read_inputs(SafeTensors::load(path), spec);
}

}  // namespace membptt
