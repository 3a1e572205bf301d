// The model file and the inputs file, both safetensors.
//
// Model file: the state dict of a PyTorch module with submodules `rnn` (nn.LSTM, nn.GRU or nn.RNN
// with tanh or relu) and `head` (nn.Linear), e.g. written by python/torch_reference.py make:
//   rnn.weight_ih_l{l} [G*H x (l == 0 ? I : H)], rnn.weight_hh_l{l} [G*H x H],
//   rnn.bias_ih_l{l} [G*H], rnn.bias_hh_l{l} [G*H]   for l = 0 .. L-1 (biases: not with bias=False),
//   rnn.weight_hr_l{l} [P x H] (an LSTM with proj_size P; then H above reads P where it is h's width:
//   weight_hh [4H x P], weight_ih of l > 0 [4H x P], head.weight [O x P]),
//   head.weight [O x H], head.bias [O]
// with G = 4 (lstm: gates i, f, g, o), 3 (gru: r, z, n), 1 (rnn), and metadata
//   cell (lstm|gru|rnn), input_size, hidden_size, num_layers, output_size (positive integers),
//   loss (xent|mse_last), dtype (float32|float64), optionally nonlinearity (tanh|relu; relu for
//   rnn only; absent: tanh), bias (true|false; absent: true), proj_size (lstm; absent: 0) and
//   bidirectional (true|false; absent: false). membptt writes these four only when they are not the
//   default. A bidirectional model (PyTorch's bidirectional=True) has after each layer's tensors the
//   same with suffix _reverse; layers above 0 and the head read both directions' h (2H, or 2P):
//   weight_ih of l > 0 [G*H x 2H], head.weight [O x 2H].
// Inputs' h0 is [L x B x P] with projections (c0 stays [L x B x H]); bidirectional: [2L x B x ...]
// (PyTorch's h_n order, index 2l + d).
// That is what membptt writes; load_model_file also reads a PyTorch state dict under other names,
// with no or partial metadata, in F32, F64, F16 or BF16 (see interpret_model).
// A gradient file has the same layout (plus metadata "loss_value"), under the model file's names.
//
// Inputs file: input [T x B x I] (F32/F64/F16/BF16), target [T x B] integer in [0, O) (xent) or
// [B x O] float (mse_last), optional h0 [L x B x H] and, for LSTM, c0 [L x B x H]. F16 and BF16
// values are converted exactly to the model's dtype.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "membptt/io/safetensors.hpp"

namespace membptt {

struct ModelSpec {
  std::string cell;  // lstm | gru | rnn
  int input_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int output_size = 0;
  std::string loss;   // xent | mse_last
  std::string dtype;  // float32 | float64
  bool bias = true;                   // false: no rnn.bias_* tensors (PyTorch's bias=False)
  std::string nonlinearity = "tanh";  // tanh | relu (relu: cell rnn only)
  int proj_size = 0;                  // lstm: 0 (none) or 1 .. hidden_size - 1 (h = W_hr (o * tanh(c)))
  bool bidirectional = false;         // PyTorch's bidirectional=True: *_reverse tensors, h of width 2R above
};

// Gates per cell: lstm 4, gru 3, rnn 1. Throws for an unknown cell.
int gate_count(const std::string& cell);

// Throws std::runtime_error "<what>: <field>=... is not ..." for the first bad field.
void validate_model_spec(const ModelSpec& spec, const std::string& what = "model spec");

// Reads and validates the metadata of a model (or gradient) file. Messages look like
// "model file m.safetensors: metadata hidden_size='abc' is not a positive integer".
// `what` prefixes the messages ("gradient file" when checking a gradient file).
ModelSpec read_model_spec(const SafeTensors& file, const std::string& what = "model file");

// The metadata that describes `spec` (cell, sizes, loss, dtype), for writing model/gradient files.
std::map<std::string, std::string> model_spec_metadata(const ModelSpec& spec);

struct ParamShape {
  std::string name;
  std::vector<std::int64_t> shape;
};

// The parameters of `spec` in PyTorch state-dict order (per layer weight_ih, weight_hh, bias_ih,
// bias_hh; then head.weight, head.bias).
std::vector<ParamShape> expected_parameters(const ModelSpec& spec);

// The file holds exactly the expected tensors, with the expected shapes, in the spec's dtype
// (F32 for float32, F64 for float64). Errors name the offending tensor, its shape and the expected one.
void check_model_tensors(const SafeTensors& file, const ModelSpec& spec, const std::string& what = "model file");

// What `load_model_file` may need beyond the file: the loss, which tensors cannot tell
// (`membptt grad --loss`). Empty: only the file's metadata says.
struct ModelLoadOptions {
  std::string loss;       // "", xent or mse_last
  std::string loss_hint;  // what to tell a user when the loss is unknown ("": pass --loss ...)
  // "", tanh or relu: the nonlinearity of a 1-gate (RNN) state dict without metadata
  // 'nonlinearity' (`membptt grad --nonlinearity`); the tensors cannot tell. "": tanh.
  std::string nonlinearity{};
};

struct ModelFile {
  ModelSpec spec;
  // Under membptt's names ("rnn.weight_ih_l0", ..., "head.bias") in the spec's dtype (F32 for float32,
  // F64 for float64); validated by check_model_tensors. A file under other names or in F16/BF16 is
  // copied into this form (F16/BF16 -> F32 exactly).
  SafeTensors tensors;
  // membptt's name -> the name in the file (e.g. "rnn.weight_ih_l0" -> "lstm.weight_ih_l0",
  // "head.weight" -> "fc.weight"); the identity for a membptt model file. Gradients are written
  // under the file's names.
  std::map<std::string, std::string> file_names;
  // The file's tensors' dtype: F32, F64, F16 or BF16.
  DType file_dtype = DType::F32;
  // One-line notes for the user (stderr), e.g. that F16/BF16 parameters are computed in float32,
  // or that a cell was inferred from the tensors; empty for a membptt model file.
  std::vector<std::string> notes;

  // The name in the file of membptt's parameter `name` (itself when not renamed).
  const std::string& file_name(const std::string& name) const;
};

// Reads a model file: either membptt's own (the seven metadata keys above, membptt's names) or a
// PyTorch state dict as PyTorch users save it. For the latter the spec is inferred from the tensors
// (see interpret_model), metadata present is checked against them, and the loss comes from the
// metadata or `options.loss`.
ModelFile load_model_file(const std::filesystem::path& path, const ModelLoadOptions& options = {});

// The spec of a PyTorch state dict, inferred from its tensors' names, shapes and dtypes:
//   recurrent tensors <p>weight_ih_l{k} [G*H x I_k], <p>weight_hh_l{k} [G*H x H], <p>bias_ih_l{k},
//   <p>bias_hh_l{k} [G*H] for k = 0 .. L-1 (one prefix <p> for all, any or none: "rnn.", "lstm.",
//   "model.rnn.", ""), and one Linear head <q>weight [O x H], <q>bias [O] (any prefix <q>: "head.",
//   "fc.", ...). The cell is G = rows / columns of weight_hh_l0: 4 lstm, 3 gru, 1 rnn (tanh). dtype:
//   F64 -> float64; F32, F16, BF16 -> float32 (one dtype for all tensors). Metadata keys cell,
//   input_size, hidden_size, num_layers, output_size, loss, dtype (float32, float64, float16,
//   bfloat16) and nonlinearity, where present, must agree with the tensors; other keys (such as
//   format=pt) are ignored. The loss: metadata, else `options.loss`, else an error asking for
//   --loss. No recurrent bias at all is bias=False; some but not all is a missing tensor. A 1-gate
//   module is a tanh RNN unless metadata nonlinearity or `options.nonlinearity` says relu.
//   weight_hr_l{k} [P x H] makes an LSTM with proj_size P (weight_hh [4H x P]). Tensors with suffix
//   _reverse make a bidirectional model (every layer must then have both directions; metadata
//   bidirectional, where present, must agree).
//   Every error is one line naming the tensor or key and what was expected.
ModelFile interpret_model(SafeTensors file, const ModelLoadOptions& options = {},
                          const std::string& what = "model file");

struct InputsData {
  std::int64_t T = 0;  // sequence length, >= 1
  std::int64_t B = 0;  // batch size, >= 1
  std::vector<double> input;               // [T x B x I], row-major, all finite
  std::vector<std::int64_t> target_class;  // xent: [T x B], each in [0, O); empty otherwise
  std::vector<double> target_value;        // mse_last: [B x O], all finite; empty otherwise
  std::vector<double> h0;                  // [L x B x H], empty when absent (zeros)
  std::vector<double> c0;                  // [L x B x H], LSTM only, empty when absent (zeros)
  // A one-line note for the user when some float tensors were F16/BF16 (converted exactly); else empty.
  std::string note;
};

// Validates the inputs file against `spec` (shapes, dtypes, finite values, class range, no unknown
// tensors) and copies it. Messages start with "inputs file <name>:".
InputsData read_inputs(const SafeTensors& file, const ModelSpec& spec);
InputsData load_inputs_file(const std::filesystem::path& path, const ModelSpec& spec);

}  // namespace membptt
