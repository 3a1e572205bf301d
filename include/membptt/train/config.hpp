// The training configuration: everything that decides what `membptt train` computes, saved in
// every checkpoint so that a resumed run continues the same computation.
//
// Two kinds of fields: those that decide the result (task, network, data, optimizer, seed, dtype,
// the number of steps) and those that only decide how it is computed or reported (the memory
// budget and policy: every policy gives bitwise the same gradients as plain BPTT). A resumed run
// may change the second kind and the number of steps, never the first.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace membptt::train {

// A problem the user can fix (a bad option, bad data, a bad checkpoint): one line naming the value
// and what is allowed.
struct TrainError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The ranges of validate(), which the command line checks as typed too.
inline constexpr int kMaxSize = 1 << 20;                       // hidden, batch, copy symbols and alphabet
inline constexpr int kMaxLayers = 1024;
inline constexpr std::int64_t kMaxLength = std::int64_t{1} << 40;  // steps of one sequence or window
inline constexpr std::int64_t kMaxSteps = std::int64_t{1} << 50;   // optimizer steps

struct TrainConfig {
  // What is computed.
  std::string task = "adding";  // adding | copy | text
  std::string cell = "lstm";    // lstm | gru | rnn
  int hidden = 128;
  int layers = 1;
  bool bias = true;                   // false: no recurrent biases (--no-bias, PyTorch's bias=False)
  std::string nonlinearity = "tanh";  // tanh | relu (relu: --cell rnn only)
  int proj_size = 0;                  // --cell lstm: projections of h to this width (0: none)
  bool bidirectional = false;         // --bidirectional: PyTorch's bidirectional=True
  double dropout = 0;                 // between layers, 0 to 1 (masks: cells/dropout.hpp, seeded by seed and step)
  int batch = 32;
  std::int64_t length = 100;  // T: sequence length (adding, copy) or window length (text)
  std::int64_t steps = 1000;  // optimizer steps in all (a resumed run may raise it)
  std::string optimizer = "adam";  // adam | sgd
  double lr = 1e-3;
  double clip = 1.0;  // global gradient norm limit; 0 turns clipping off
  std::uint64_t seed = 1;
  // Initial weights: "pytorch" (PyTorch's default) or "chrono" (LSTM only: PyTorch's default, then
  // the chrono initialisation of Tallec & Ollivier 2018 for the gate biases: forget bias log(u),
  // input bias -log(u), u ~ U[1, length - 1], so that memories last up to ~length steps).
  std::string init = "pytorch";
  std::string dtype = "float32";  // float32 | float64
  std::string text;               // text task: the corpus file
  int copy_symbols = 10;          // copy task: K symbols to remember
  int copy_alphabet = 8;          // copy task: A distinct symbols
  // How it is computed (free to change on resume).
  std::string memory = "100%";  // bytes with a unit, or a percentage of plain BPTT's activation memory
  std::string policy = "auto";  // auto or a planner policy name
};

// Throws TrainError for the first field that is not allowed ("--hidden 0: allowed is 1 to ...").
void validate(const TrainConfig& c);

nlohmann::json to_json(const TrainConfig& c);
// Reads what to_json wrote; throws TrainError ("<what>: config field 'x' ...") when a field is
// missing or has the wrong type.
TrainConfig config_from_json(const nlohmann::json& j, const std::string& what);

}  // namespace membptt::train
