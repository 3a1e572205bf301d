// Checkpoints and trained-model files.
//
// A checkpoint is ONE safetensors file, DIR/checkpoint.safetensors, written atomically (temporary
// file, fsync, rename, fsync of the directory), so the previous one stays valid until the new one
// is renamed in. It holds:
//   tensors   rnn.*, head.*          the parameters: PyTorch names, shapes and order, in the dtype
//                                    of the run (exactly the tensors of a model file)
//             optimizer.exp_avg      Adam only: first and second moments, flat [P], in the order
//             optimizer.exp_avg_sq   of the parameters above (state-dict order, each row-major)
//             state.carry            text only: the hidden state carried into the next window,
//                                    in the executor's carry layout [h of every layer, c of every
//                                    layer (LSTM)] x [L x B x H], shape [1 or 2, L, B, H]
//   metadata  cell, input_size, hidden_size, num_layers, output_size, loss, dtype (as a model file)
//             format = membptt-checkpoint/1
//             config          the whole training configuration (JSON, see config.hpp)
//             step            optimizer steps completed; optimizer_step: Adam's step count
//             data            the task's data position and random generator state (JSON)
//             vocab           text only: the vocabulary's code points (JSON array)
//             text_hash       text only: FNV-1a 64 of the corpus file, hex
//             elapsed_seconds training time so far (not part of the computation)
//             checksum        FNV-1a 64 (hex) over every other metadata entry and every tensor's
//                             bytes, in name order: a flipped byte anywhere is caught on load
// A model file (DIR/model.safetensors, written when training ends) has the parameters, the
// model-file metadata and the config (and vocab): loadable by load_model_file and by PyTorch.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "membptt/io/model_file.hpp"
#include "membptt/io/safetensors.hpp"
#include "membptt/train/config.hpp"

namespace membptt::train {

inline constexpr const char* kCheckpointFormat = "membptt-checkpoint/1";
inline constexpr const char* kCheckpointName = "checkpoint.safetensors";
inline constexpr const char* kModelName = "model.safetensors";

// Accumulates a checksum-protected safetensors file.
class CheckedWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value);
  template <class T>
  void add(const std::string& name, std::vector<std::int64_t> shape, const T* data, std::size_t n);
  void add_i64(const std::string& name, std::vector<std::int64_t> shape, const std::int64_t* data, std::size_t n);
  // Adds "checksum" and writes atomically.
  void write(const std::filesystem::path& path);

 private:
  SafeTensorsWriter w_;
  std::map<std::string, std::string> meta_;
  std::map<std::string, std::vector<std::byte>> bytes_;
};

// FNV-1a 64 of metadata (without "checksum") and tensors, as written in "checksum".
std::string content_checksum(const SafeTensors& st);

// What a model or checkpoint file holds, validated.
struct ModelSource {
  std::filesystem::path file;
  SafeTensors tensors;
  ModelSpec spec;
  bool is_checkpoint = false;
  std::optional<TrainConfig> config;  // from the file's "config" metadata when present
  std::vector<char32_t> vocab;        // text models
  std::string text_hash;              // text checkpoints
  std::int64_t step = 0;              // checkpoints
  double elapsed_seconds = 0;
  nlohmann::json data;                // checkpoints: the task state
  std::int64_t optimizer_step = 0;
  std::vector<std::string> notes;     // model files read as PyTorch state dicts (F16/BF16: computed in float32)
  std::string pending_log;            // checkpoints: the --log line a full disk kept out, written on resume
  bool loss_from_file = true;         // false: a state dict whose loss the caller supplied (eval --task)
};

// A directory means DIR/checkpoint.safetensors, or DIR/model.safetensors when there is no
// checkpoint. A model file may be membptt's own or a PyTorch state dict (interpret_model: the
// sizes from the tensors; the loss from its metadata or `options`, e.g. from `eval --task`).
// Throws TrainError naming the file and the problem (not safetensors, missing, truncated, corrupt,
// checksum mismatch, bad metadata, wrong tensors).
ModelSource open_model(const std::filesystem::path& file_or_dir, const ModelLoadOptions& options = {});
// The same, but the file must be a checkpoint.
ModelSource open_checkpoint(const std::filesystem::path& file_or_dir);

std::string hex64(std::uint64_t v);

}  // namespace membptt::train
