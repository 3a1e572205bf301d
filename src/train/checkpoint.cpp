#include "membptt/train/checkpoint.hpp"

#include <fmt/format.h>

#include "membptt/io/params_io.hpp"
#include "membptt/train/tasks.hpp"

namespace membptt::train {

std::string hex64(std::uint64_t v) { return fmt::format("{:016x}", v); }

void CheckedWriter::set_metadata(const std::string& key, const std::string& value) { w_.set_metadata(key, value); }

template <class T>
void CheckedWriter::add(const std::string& name, std::vector<std::int64_t> shape, const T* data, std::size_t n) {
  if constexpr (sizeof(T) == sizeof(float))
    w_.add_f32(name, std::move(shape), std::span<const float>(data, n));
  else
    w_.add_f64(name, std::move(shape), std::span<const double>(data, n));
}

void CheckedWriter::add_i64(const std::string& name, std::vector<std::int64_t> shape, const std::int64_t* data,
                            std::size_t n) {
  w_.add_i64(name, std::move(shape), std::span<const std::int64_t>(data, n));
}

void CheckedWriter::write(const std::filesystem::path& path) {
  const SafeTensors st = SafeTensors::parse(w_.serialize(), path.string());
  w_.set_metadata("checksum", content_checksum(st));
  const std::vector<std::byte> bytes = w_.serialize();
  write_file_atomic(path, bytes);
}

template void CheckedWriter::add<float>(const std::string&, std::vector<std::int64_t>, const float*, std::size_t);
template void CheckedWriter::add<double>(const std::string&, std::vector<std::int64_t>, const double*, std::size_t);

std::string content_checksum(const SafeTensors& st) {
  std::uint64_t h = kFnvOffset;
  auto mix = [&h](std::string_view s) {
    h = fnv1a64(std::as_bytes(std::span(s.data(), s.size())), h);
    const std::byte zero{0};
    h = fnv1a64(std::span(&zero, 1), h);
  };
  for (const auto& [key, value] : st.metadata()) {
    if (key == "checksum") continue;
    mix(key);
    mix(value);
  }
  for (const auto& [name, info] : st.tensors()) {
    mix(name);
    mix(dtype_name(info.dtype));
    mix(shape_string(info.shape));
    h = fnv1a64(st.bytes(name), h);
  }
  return hex64(h);
}

namespace {

std::int64_t meta_int(const SafeTensors& st, const std::string& prefix, const char* key) {
  const std::string* v = st.find_metadata(key);
  if (!v) throw TrainError(fmt::format("{}: metadata has no '{}'", prefix, key));
  try {
    std::size_t used = 0;
    const long long x = std::stoll(*v, &used);
    if (used != v->size() || x < 0) throw std::invalid_argument("");
    return x;
  } catch (const std::exception&) {
    throw TrainError(fmt::format("{}: metadata {}='{}' is not an integer >= 0", prefix, key, v->substr(0, 40)));
  }
}

nlohmann::json meta_json(const SafeTensors& st, const std::string& prefix, const char* key) {
  const std::string* v = st.find_metadata(key);
  if (!v) throw TrainError(fmt::format("{}: metadata has no '{}'", prefix, key));
  try {
    return nlohmann::json::parse(*v);
  } catch (const nlohmann::json::exception&) {
    throw TrainError(fmt::format("{}: metadata '{}' is not valid JSON", prefix, key));
  }
}

void check_parameters(const SafeTensors& st, const ModelSpec& spec, const std::string& prefix) {
  const DType want = spec.dtype == "float32" ? DType::F32 : DType::F64;
  for (const ParamShape& p : expected_parameters(spec)) {
    if (!st.contains(p.name))
      throw TrainError(fmt::format("{}: missing tensor '{}' (expected shape {} for a {}-layer {})", prefix, p.name,
                                   shape_string(p.shape), spec.num_layers, spec.cell));
    const TensorInfo& info = st.info(p.name);
    if (info.shape != p.shape)
      throw TrainError(fmt::format("{}: tensor '{}' has shape {}, expected {}", prefix, p.name, shape_string(info.shape),
                                   shape_string(p.shape)));
    if (info.dtype != want)
      throw TrainError(fmt::format("{}: tensor '{}' has dtype {}, expected {} (metadata dtype={})", prefix, p.name,
                                   dtype_name(info.dtype), dtype_name(want), spec.dtype));
  }
}

}  // namespace

ModelSource open_model(const std::filesystem::path& file_or_dir, const ModelLoadOptions& options) {
  std::error_code ec;
  std::filesystem::path file = file_or_dir;
  if (std::filesystem::is_directory(file_or_dir, ec)) {
    if (std::filesystem::exists(file_or_dir / kCheckpointName, ec))
      file = file_or_dir / kCheckpointName;
    else if (std::filesystem::exists(file_or_dir / kModelName, ec))
      file = file_or_dir / kModelName;
    else
      throw TrainError(fmt::format("directory {} holds no {} and no {}", file_or_dir.string(), kCheckpointName, kModelName));
  } else if (!std::filesystem::exists(file_or_dir, ec)) {
    throw TrainError(fmt::format("no such file or directory: {}", file_or_dir.string()));
  }
  ModelSource m;
  m.file = file;
  const std::string prefix = file.string();
  try {
    m.tensors = SafeTensors::load(file);
  } catch (const NotSafetensorsError& e) {
    throw TrainError(e.what());  // a zip from torch.save, JSON, text: it says what it is
  } catch (const std::exception& e) {
    throw TrainError(fmt::format("{} (the file is truncated or corrupt)", e.what()));
  }
  const std::string* format = m.tensors.find_metadata("format");
  m.is_checkpoint = format && *format == kCheckpointFormat;
  m.loss_from_file = m.is_checkpoint || m.tensors.find_metadata("loss");
  if (!m.is_checkpoint) {
    // A model file: membptt's own, or a PyTorch state dict whose sizes the tensors tell
    // (interpret_model; the loss from its metadata or `options`).
    try {
      ModelFile mf = interpret_model(std::move(m.tensors), options, "model file");
      m.tensors = std::move(mf.tensors);
      m.spec = mf.spec;
      m.notes = std::move(mf.notes);
    } catch (const std::exception& e) {
      throw TrainError(e.what());
    }
  }
  const std::string* sum = m.tensors.find_metadata("checksum");
  if (m.is_checkpoint && !sum) throw TrainError(fmt::format("{}: checkpoint has no checksum", prefix));
  if (sum) {
    const std::string actual = content_checksum(m.tensors);
    if (actual != *sum)
      throw TrainError(fmt::format("{}: checksum mismatch (stored {}, contents give {}): the file is corrupt", prefix,
                                   sum->substr(0, 20), actual));
  }
  try {
    if (m.is_checkpoint) m.spec = read_model_spec(m.tensors);
  } catch (const TrainError&) {
    throw;
  } catch (const std::exception& e) {
    throw TrainError(e.what());
  }
  check_parameters(m.tensors, m.spec, prefix);
  if (m.tensors.find_metadata("config")) m.config = config_from_json(meta_json(m.tensors, prefix, "config"), prefix);
  if (m.tensors.find_metadata("vocab")) {
    const nlohmann::json v = meta_json(m.tensors, prefix, "vocab");
    if (!v.is_array()) throw TrainError(fmt::format("{}: metadata 'vocab' is not a JSON array", prefix));
    for (const auto& x : v) {
      if (!x.is_number_unsigned() || x.get<std::uint64_t>() > 0x10FFFF ||
          (!m.vocab.empty() && x.get<std::uint64_t>() <= m.vocab.back()))
        throw TrainError(fmt::format("{}: metadata 'vocab' is not an increasing list of code points", prefix));
      m.vocab.push_back(static_cast<char32_t>(x.get<std::uint64_t>()));
    }
  }
  if (const std::string* h = m.tensors.find_metadata("text_hash")) m.text_hash = *h;
  if (const std::string* l = m.tensors.find_metadata("pending_log")) m.pending_log = *l;
  if (m.config) {
    const TrainConfig& c = *m.config;
    if (c.cell != m.spec.cell || c.hidden != m.spec.hidden_size || c.layers != m.spec.num_layers ||
        c.dtype != m.spec.dtype || c.bias != m.spec.bias || c.nonlinearity != m.spec.nonlinearity ||
        c.proj_size != m.spec.proj_size || c.bidirectional != m.spec.bidirectional)
      throw TrainError(fmt::format("{}: the config (cell {}, hidden {}, layers {}, dtype {}, bias {}, nonlinearity {}, "
                                   "proj_size {}, bidirectional {}) does not match the model's metadata (cell {}, "
                                   "hidden_size {}, num_layers {}, dtype {}, bias {}, nonlinearity {}, proj_size {}, "
                                   "bidirectional {})",
                                   prefix, c.cell, c.hidden, c.layers, c.dtype, c.bias, c.nonlinearity, c.proj_size,
                                   c.bidirectional, m.spec.cell, m.spec.hidden_size, m.spec.num_layers, m.spec.dtype,
                                   m.spec.bias, m.spec.nonlinearity, m.spec.proj_size, m.spec.bidirectional));
    if (c.task == "text" && m.vocab.empty())
      throw TrainError(fmt::format("{}: a text model without a vocabulary (metadata 'vocab')", prefix));
  }
  if (m.is_checkpoint) {
    if (!m.config) throw TrainError(fmt::format("{}: checkpoint has no metadata 'config'", prefix));
    m.step = meta_int(m.tensors, prefix, "step");
    m.optimizer_step = meta_int(m.tensors, prefix, "optimizer_step");
    m.data = meta_json(m.tensors, prefix, "data");
    if (const std::string* e = m.tensors.find_metadata("elapsed_seconds")) {
      try {
        m.elapsed_seconds = std::stod(*e);
      } catch (const std::exception&) {
        m.elapsed_seconds = 0;
      }
    }
  }
  return m;
}

ModelSource open_checkpoint(const std::filesystem::path& file_or_dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(file_or_dir, ec) && !std::filesystem::exists(file_or_dir / kCheckpointName, ec))
    throw TrainError(fmt::format("directory {} holds no {} to resume from", file_or_dir.string(), kCheckpointName));
  ModelSource m = open_model(file_or_dir);
  if (!m.is_checkpoint)
    throw TrainError(fmt::format("{} is a model file, not a checkpoint (metadata format='{}' is missing): nothing to "
                                 "resume",
                                 m.file.string(), kCheckpointFormat));
  return m;
}

}  // namespace membptt::train
