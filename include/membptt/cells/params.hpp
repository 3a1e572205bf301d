// Network shape and the flat parameter buffer of a recurrent network with an output head.
//
// All parameters of the network (every recurrent layer and the output head) live in ONE contiguous
// buffer of T; a table of named views (name, shape, offset, size) describes it. An optimizer state
// or a gradient buffer is just another Params<T> of the same NetShape, so element k means the same
// parameter in all of them, and an update is a loop over data()[0 .. size()).
//
// The names, shapes and order are those of the PyTorch state dict of a module with two submodules,
// `rnn` (nn.LSTM / nn.GRU / nn.RNN(nonlinearity='tanh' or 'relu'), batch_first=False, bias=True or
// False) and `head` (nn.Linear(hidden_size, output_size)); all row-major (PyTorch's contiguous layout):
//   for l in 0 .. num_layers-1, then (bidirectional) the same with suffix _reverse, per layer:
//     rnn.weight_ih_l{l}  [G*H x in_l]   (in_0 = input_size, in_l = D*R for l > 0)
//     rnn.weight_hh_l{l}  [G*H x R]
//     rnn.bias_ih_l{l}    [G*H]          (only with bias = true, PyTorch's default)
//     rnn.bias_hh_l{l}    [G*H]          (only with bias = true)
//     rnn.weight_hr_l{l}  [P x H]        (only with proj_size P > 0, LSTM: h = W_hr (o * tanh(c)))
//   head.weight           [O x D*R]
//   head.bias             [O]
// R = output_width(shape): the width of each layer's h (its output, and what is carried), P when
// proj_size > 0, else H. D = directions(shape): 2 when bidirectional (PyTorch's order: layer l's
// forward tensors, then its *_reverse tensors, then layer l+1), else 1.
// G = 4 for LSTM (gate rows in the order i, f, g, o), 3 for GRU (r, z, n), 1 for the plain RNN.
// The views are packed back to back in that order, without padding.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "membptt/backend/buffer.hpp"

namespace membptt {

enum class CellType : std::uint8_t { Lstm, Gru, Rnn };
// The plain RNN's activation (PyTorch's nonlinearity='tanh' | 'relu'); LSTM and GRU are tanh only.
enum class Nonlinearity : std::uint8_t { Tanh, Relu };

// "lstm", "gru", "rnn".
std::string_view cell_name(CellType c);
// Parses "lstm" / "gru" / "rnn" (case-sensitive); throws std::invalid_argument otherwise.
CellType parse_cell(std::string_view name);
// Gates per cell: 4 (LSTM), 3 (GRU), 1 (RNN).
int gate_count(CellType c);
// "tanh", "relu".
std::string_view nonlinearity_name(Nonlinearity n);
// Parses "tanh" / "relu"; throws std::invalid_argument (one line naming the value) otherwise.
Nonlinearity parse_nonlinearity(std::string_view name);

// What a network may have: layers, and parameters in all (2^48: 1 PiB of float32, past any
// machine; the bound keeps every size and offset exact in 64 bits).
inline constexpr int kMaxLayers = 65536;
inline constexpr double kMaxParams = 281474976710656.0;

struct NetShape {
  CellType cell = CellType::Lstm;
  int input_size = 0;   // I
  int hidden_size = 0;  // H
  int num_layers = 1;   // L
  int batch = 1;        // B
  int output_size = 0;  // O (classes for the cross-entropy head, regression width for MSE)
  bool bias = true;     // false: the recurrent layers have no b_ih, b_hh (PyTorch's bias=False)
  Nonlinearity nonlinearity = Nonlinearity::Tanh;  // the plain RNN's: h' = tanh(...) or relu(...)
  int proj_size = 0;    // P: LSTM only, 0 (none) or 1 .. H-1: h = W_hr (o * tanh(c)), of width P
  // p of dropout between layers (0 to 1; cells/dropout.hpp). A net applies it while training is on
  // (RecurrentNet::set_dropout); it sizes the scratch the masks need. No parameters.
  double dropout = 0;
  // PyTorch's bidirectional=True: every layer also runs from step T down to 1 (*_reverse tensors)
  // and outputs both directions' h side by side. RecurrentNet runs one direction only: a
  // bidirectional stack runs layer by layer (exec/bidirectional.hpp).
  bool bidirectional = false;
};

// D: 2 for a bidirectional stack, else 1.
inline int directions(const NetShape& s) { return s.bidirectional ? 2 : 1; }

// R: the width of each layer's h, its output and carried state (proj_size when > 0, else hidden_size).
inline int output_width(const NetShape& s) { return s.proj_size > 0 ? s.proj_size : s.hidden_size; }

// Throws std::invalid_argument (one line naming the field) unless every size is >= 1, proj_size is
// 0 or (LSTM only) 1 .. hidden_size - 1, and the
// nonlinearity is tanh for LSTM and GRU (relu is the plain RNN's only).
void validate(const NetShape& s);

// One named tensor inside a Params buffer.
struct ParamView {
  std::string name;                  // e.g. "rnn.weight_ih_l0", "head.bias"
  std::vector<std::int64_t> shape;   // PyTorch shape, row-major
  std::size_t offset = 0;            // first element inside the flat buffer
  std::size_t size = 0;              // number of elements (product of shape)
};

// The table of views for a shape, in state-dict order (see above). Validates the shape.
std::vector<ParamView> param_layout(const NetShape& s);
// Total number of parameters (sum of all view sizes).
std::size_t param_count(const NetShape& s);

// Flat, 64-byte aligned, zero-initialised parameter (or gradient, or optimizer-moment) buffer.
template <class T>
class Params {
 public:
  explicit Params(const NetShape& s);

  const NetShape& shape() const { return shape_; }
  std::size_t size() const { return size_; }
  T* data() { return data_.data(); }
  const T* data() const { return data_.data(); }
  std::span<T> all() { return data_.span(); }
  std::span<const T> all() const { return data_.span(); }
  void zero() { data_.zero(); }

  // The table of named views, in state-dict order.
  const std::vector<ParamView>& views() const { return views_; }
  // nullptr when there is no such name.
  const ParamView* find(std::string_view name) const;
  // Throws std::out_of_range ("no parameter named 'x'") when there is no such name.
  const ParamView& info(std::string_view name) const;
  std::span<T> view(std::string_view name);
  std::span<const T> view(std::string_view name) const;

 private:
  NetShape shape_;
  std::vector<ParamView> views_;
  std::size_t size_ = 0;
  backend::AlignedBuffer<T> data_;
};

extern template class Params<float>;
extern template class Params<double>;

// PyTorch's default initialisation: every rnn.* tensor U(-1/sqrt(H), 1/sqrt(H)); head.weight
// kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(H), 1/sqrt(H)) (fan_in = H) and head.bias
// U(-1/sqrt(H), 1/sqrt(H)). Draws from std::mt19937_64(seed) in layout order, 53-bit uniforms
// built by hand, so the values are the same on every platform (they are not torch's RNG bits).
template <class T>
void init_pytorch_default(Params<T>& p, std::uint64_t seed);

// Fills every element with U(-bound, bound) from std::mt19937_64(seed) (tests, synthetic data).
template <class T>
void fill_uniform(std::span<T> out, T bound, std::uint64_t seed);

}  // namespace membptt
