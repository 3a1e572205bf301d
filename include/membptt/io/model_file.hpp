// The model file and the inputs file, both safetensors.
//
// Model file: the state dict of a PyTorch module with submodules `rnn` (nn.LSTM, nn.GRU or nn.RNN
// with tanh) and `head` (nn.Linear), e.g. written by python/torch_reference.py make:
//   rnn.weight_ih_l{l} [G*H x (l == 0 ? I : H)], rnn.weight_hh_l{l} [G*H x H],
//   rnn.bias_ih_l{l} [G*H], rnn.bias_hh_l{l} [G*H]   for l = 0 .. L-1,
//   head.weight [O x H], head.bias [O]
// with G = 4 (lstm: gates i, f, g, o), 3 (gru: r, z, n), 1 (rnn), and metadata
//   cell (lstm|gru|rnn), input_size, hidden_size, num_layers, output_size (positive integers),
//   loss (xent|mse_last), dtype (float32|float64), optionally nonlinearity (tanh; rnn only).
// A gradient file has the same layout (plus metadata "loss_value").
//
// Inputs file: input [T x B x I] (F32/F64), target [T x B] integer in [0, O) (xent) or
// [B x O] float (mse_last), optional h0 [L x B x H] and, for LSTM, c0 [L x B x H].
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

struct ModelFile {
  ModelSpec spec;
  SafeTensors tensors;  // validated by check_model_tensors
};
ModelFile load_model_file(const std::filesystem::path& path);

struct InputsData {
  std::int64_t T = 0;  // sequence length, >= 1
  std::int64_t B = 0;  // batch size, >= 1
  std::vector<double> input;               // [T x B x I], row-major, all finite
  std::vector<std::int64_t> target_class;  // xent: [T x B], each in [0, O); empty otherwise
  std::vector<double> target_value;        // mse_last: [B x O], all finite; empty otherwise
  std::vector<double> h0;                  // [L x B x H], empty when absent (zeros)
  std::vector<double> c0;                  // [L x B x H], LSTM only, empty when absent (zeros)
};

// Validates the inputs file against `spec` (shapes, dtypes, finite values, class range, no unknown
// tensors) and copies it. Messages start with "inputs file <name>:".
InputsData read_inputs(const SafeTensors& file, const ModelSpec& spec);
InputsData load_inputs_file(const std::filesystem::path& path, const ModelSpec& spec);

}  // namespace membptt
