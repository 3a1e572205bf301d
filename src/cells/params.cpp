#include "membptt/cells/params.hpp"

#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>

namespace membptt {

std::string_view cell_name(CellType c) {
  switch (c) {
    case CellType::Lstm: return "lstm";
    case CellType::Gru: return "gru";
    case CellType::Rnn: return "rnn";
  }
  return "?";
}

CellType parse_cell(std::string_view name) {
  if (name == "lstm") return CellType::Lstm;
  if (name == "gru") return CellType::Gru;
  if (name == "rnn") return CellType::Rnn;
  throw std::invalid_argument("unknown cell type '" + std::string(name) +
                              "' (expected lstm, gru or rnn)");
}

int gate_count(CellType c) {
  switch (c) {
    case CellType::Lstm: return 4;
    case CellType::Gru: return 3;
    case CellType::Rnn: return 1;
  }
  throw std::invalid_argument("invalid CellType value " + std::to_string(static_cast<int>(c)));
}

std::string_view nonlinearity_name(Nonlinearity n) { return n == Nonlinearity::Relu ? "relu" : "tanh"; }

Nonlinearity parse_nonlinearity(std::string_view name) {
  if (name == "tanh") return Nonlinearity::Tanh;
  if (name == "relu") return Nonlinearity::Relu;
  throw std::invalid_argument("nonlinearity '" + std::string(name) + "' is not allowed: allowed are tanh, relu");
}

void validate(const NetShape& s) {
  auto need = [](int v, const char* field) {
    if (v < 1)
      throw std::invalid_argument(std::string("NetShape.") + field + " must be >= 1, got " +
                                  std::to_string(v));
  };
  (void)gate_count(s.cell);
  need(s.input_size, "input_size");
  need(s.hidden_size, "hidden_size");
  need(s.num_layers, "num_layers");
  need(s.batch, "batch");
  need(s.output_size, "output_size");
  if (s.nonlinearity != Nonlinearity::Tanh && s.cell != CellType::Rnn)
    throw std::invalid_argument("nonlinearity " + std::string(nonlinearity_name(s.nonlinearity)) + " is not allowed for " +
                                std::string(cell_name(s.cell)) + ": only the plain rnn cell takes relu");
  if (s.proj_size < 0 || (s.proj_size > 0 && s.proj_size >= s.hidden_size))
    throw std::invalid_argument("proj_size " + std::to_string(s.proj_size) + " is not allowed: allowed is 0 (none) or 1 to " +
                                std::to_string(s.hidden_size - 1) + " (below hidden_size " + std::to_string(s.hidden_size) + ")");
  if (s.proj_size > 0 && s.cell != CellType::Lstm)
    throw std::invalid_argument("proj_size " + std::to_string(s.proj_size) + " is not allowed for " +
                                std::string(cell_name(s.cell)) + ": only the lstm cell has projections");
  if (!(s.dropout >= 0 && s.dropout <= 1))
    throw std::invalid_argument("dropout " + std::to_string(s.dropout) + " is not allowed: allowed is 0 to 1");
  if (s.num_layers > kMaxLayers)
    throw std::invalid_argument("num_layers " + std::to_string(s.num_layers) + " is not allowed: allowed is 1 to " +
                                std::to_string(kMaxLayers));
  // Count in floating point first: the sizes are ints, their products may not fit 64 bits.
  const double g = gate_count(s.cell), h = s.hidden_size, nb = s.bias ? 2 : 0, r = output_width(s),
               hr = s.proj_size > 0 ? r * h : 0, d = directions(s);
  const double count = d * (g * h * (s.input_size + r + nb) + hr + (s.num_layers - 1) * (g * h * ((d + 1) * r + nb) + hr)) +
                       static_cast<double>(s.output_size) * (d * r + 1);
  if (count > kMaxParams) {
    char n[64];
    std::snprintf(n, sizeof n, "%.4g", count);
    throw std::invalid_argument(std::string("a ") + std::string(cell_name(s.cell)) + " of " + std::to_string(s.num_layers) + " layer(s) of " +
                                std::to_string(s.hidden_size) + " units, input " + std::to_string(s.input_size) + " and output " +
                                std::to_string(s.output_size) + " would have " + n +
                                " parameters: allowed are at most 2^48 (about 2.8e14)");
  }
}

std::vector<ParamView> param_layout(const NetShape& s) {
  validate(s);
  const std::int64_t gh = std::int64_t{gate_count(s.cell)} * s.hidden_size;
  const std::int64_t h = s.hidden_size, r = output_width(s);
  std::vector<ParamView> v;
  std::size_t off = 0;
  auto add = [&](std::string name, std::vector<std::int64_t> shape) {
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    v.push_back(ParamView{std::move(name), std::move(shape), off, n});
    off += n;
  };
  const std::int64_t d = directions(s);
  for (int l = 0; l < s.num_layers; ++l)
    for (int dir = 0; dir < d; ++dir) {
      const std::int64_t in = l == 0 ? s.input_size : d * r;
      const std::string sfx = "_l" + std::to_string(l) + (dir == 1 ? "_reverse" : "");
      add("rnn.weight_ih" + sfx, {gh, in});
      add("rnn.weight_hh" + sfx, {gh, r});
      if (s.bias) {
        add("rnn.bias_ih" + sfx, {gh});
        add("rnn.bias_hh" + sfx, {gh});
      }
      if (s.proj_size > 0) add("rnn.weight_hr" + sfx, {r, h});
    }
  add("head.weight", {s.output_size, d * r});
  add("head.bias", {s.output_size});
  return v;
}

std::size_t param_count(const NetShape& s) {
  const auto v = param_layout(s);
  return v.back().offset + v.back().size;
}

template <class T>
Params<T>::Params(const NetShape& s)
    : shape_(s), views_(param_layout(s)), size_(views_.back().offset + views_.back().size),
      data_(size_) {}

template <class T>
const ParamView* Params<T>::find(std::string_view name) const {
  for (const auto& v : views_)
    if (v.name == name) return &v;
  return nullptr;
}

template <class T>
const ParamView& Params<T>::info(std::string_view name) const {
  if (const ParamView* v = find(name)) return *v;
  throw std::out_of_range("no parameter named '" + std::string(name) + "'");
}

template <class T>
std::span<T> Params<T>::view(std::string_view name) {
  const ParamView& v = info(name);
  return {data() + v.offset, v.size};
}

template <class T>
std::span<const T> Params<T>::view(std::string_view name) const {
  const ParamView& v = info(name);
  return {data() + v.offset, v.size};
}

namespace {
// 53-bit uniform in [0, 1), the same on every platform (std::uniform_real_distribution is not).
double unit(std::mt19937_64& g) { return static_cast<double>(g() >> 11) * 0x1.0p-53; }
}  // namespace

template <class T>
void fill_uniform(std::span<T> out, T bound, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  const double b = static_cast<double>(bound);
  for (T& x : out) x = static_cast<T>(-b + 2.0 * b * unit(g));
}

template <class T>
void init_pytorch_default(Params<T>& p, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  // nn.LSTM/GRU/RNN: every weight and bias U(-1/sqrt(H), 1/sqrt(H)).
  // nn.Linear(H, O): weight kaiming_uniform(a=sqrt(5)) -> bound sqrt(6/((1+5) fan_in)) = 1/sqrt(H);
  // bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = H.
  // With projections the head's fan_in is proj_size (its input is h of width R); bidirectional: 2R.
  const double b_rnn = 1.0 / std::sqrt(static_cast<double>(p.shape().hidden_size));
  const double b_head = 1.0 / std::sqrt(static_cast<double>(directions(p.shape()) * output_width(p.shape())));
  for (const ParamView& v : p.views()) {
    const double b = v.name.rfind("head.", 0) == 0 ? b_head : b_rnn;
    T* d = p.data() + v.offset;
    for (std::size_t k = 0; k < v.size; ++k) d[k] = static_cast<T>(-b + 2.0 * b * unit(g));
  }
}

template class Params<float>;
template class Params<double>;
template void init_pytorch_default<float>(Params<float>&, std::uint64_t);
template void init_pytorch_default<double>(Params<double>&, std::uint64_t);
template void fill_uniform<float>(std::span<float>, float, std::uint64_t);
template void fill_uniform<double>(std::span<double>, double, std::uint64_t);

}  // namespace membptt
