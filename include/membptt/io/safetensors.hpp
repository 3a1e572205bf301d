// Reader and writer for the safetensors format (https://github.com/huggingface/safetensors).
//
// Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON
//   {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ..}
// then the raw little-endian data buffer; offsets are relative to the start of that buffer, and the
// tensors cover the buffer exactly (no holes, no overlaps, nothing after the last one).
//
// The reader validates everything before handing out a single byte and reports every problem as a
// one-line std::runtime_error naming the file, the offending value and what is allowed. The writer
// produces files byte-identical to python/membptt_st.py and readable by the reference library.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace membptt {

// Every dtype of the safetensors specification. The typed accessors convert only between floating
// types (F16/BF16/F32/F64 -> f32/f64) and widen integers (I8..I64, U8..U32, BOOL -> i64).
enum class DType : std::uint8_t { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

std::size_t dtype_size(DType dtype);                          // bytes per element
std::string_view dtype_name(DType dtype);                     // "F32", ...
std::optional<DType> parse_dtype(std::string_view name);      // nullopt when unknown

// Thrown by SafeTensors::load/parse when the bytes are not a safetensors file at all and their
// first bytes say what they are instead (a zip archive as torch.save writes, gzip, JSON, text, an
// empty file, ...): the message names the format and says a safetensors file was expected. Callers
// that add "truncated or corrupt" to reader errors should not add it to this one.
struct NotSafetensorsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Header limit of the reference implementation.
inline constexpr std::uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

// "[3, 4]"
std::string shape_string(std::span<const std::int64_t> shape);

struct TensorInfo {
  DType dtype;
  std::vector<std::int64_t> shape;
  std::size_t begin = 0;  // byte offsets relative to the data buffer
  std::size_t end = 0;
  std::int64_t numel() const;  // product of shape (1 for a scalar); validated not to overflow
};

class SafeTensors {
 public:
  using MetadataMap = std::map<std::string, std::string, std::less<>>;
  using TensorMap = std::map<std::string, TensorInfo, std::less<>>;

  // Reads and validates a whole file; `source` in messages is path.string().
  static SafeTensors load(const std::filesystem::path& path);
  // Validates the bytes of a whole file held in memory; `source` names it in error messages.
  static SafeTensors parse(std::vector<std::byte> file_bytes, std::string source = "<memory>");
  static SafeTensors parse(std::span<const std::byte> file_bytes, std::string source = "<memory>");

  const std::string& source() const { return source_; }
  const MetadataMap& metadata() const { return metadata_; }
  // nullptr when the key is absent.
  const std::string* find_metadata(std::string_view key) const;
  const TensorMap& tensors() const { return tensors_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(std::string_view name) const;

  // Throws "safetensors file F: no tensor 'x' (the file has: a, b, ...)" when missing.
  const TensorInfo& info(std::string_view name) const;
  // Raw little-endian bytes of the tensor (unaligned in general: copy with memcpy).
  std::span<const std::byte> bytes(std::string_view name) const;

  // Typed copies in row-major order. With `expected_shape` the tensor's shape must equal it.
  // read_f64 / read_f32 accept F64, F32, F16 and BF16; read_i64 accepts every integer dtype and
  // BOOL except U64. Anything else is a "wrong dtype" error.
  std::vector<double> read_f64(std::string_view name) const;
  std::vector<double> read_f64(std::string_view name, const std::vector<std::int64_t>& expected_shape) const;
  std::vector<float> read_f32(std::string_view name) const;
  std::vector<float> read_f32(std::string_view name, const std::vector<std::int64_t>& expected_shape) const;
  std::vector<std::int64_t> read_i64(std::string_view name) const;
  std::vector<std::int64_t> read_i64(std::string_view name, const std::vector<std::int64_t>& expected_shape) const;

  // Throws unless the tensor has exactly this shape.
  void check_shape(std::string_view name, const std::vector<std::int64_t>& expected_shape) const;

 private:
  std::string source_;
  std::vector<std::byte> file_;
  std::size_t data_start_ = 0;  // 8 + header length
  MetadataMap metadata_;
  TensorMap tensors_;
};

// Collects tensors and metadata, then serializes them. Tensors are laid out by decreasing element
// size, then by name (so every tensor is aligned to its element size, as in the reference
// implementation); header keys are sorted; the header is padded with spaces to a multiple of 8.
// The output depends only on the contents, never on the order of the calls.
class SafeTensorsWriter {
 public:
  void set_metadata(std::string key, std::string value);
  void add_f64(std::string name, std::vector<std::int64_t> shape, std::span<const double> values);
  void add_f32(std::string name, std::vector<std::int64_t> shape, std::span<const float> values);
  void add_i64(std::string name, std::vector<std::int64_t> shape, std::span<const std::int64_t> values);
  // Any dtype, raw little-endian bytes (size must be numel * dtype_size).
  void add_bytes(std::string name, DType dtype, std::vector<std::int64_t> shape, std::span<const std::byte> data);

  std::vector<std::byte> serialize() const;
  // serialize() then write_file_atomic().
  void write(const std::filesystem::path& path) const;

 private:
  struct Entry {
    DType dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> data;
  };
  std::map<std::string, std::string> metadata_;
  std::map<std::string, Entry> tensors_;
};

// Writes `bytes` to "<path>.tmp.<pid>", fflush + fsync, renames it over `path`, then fsyncs the
// directory. On failure the temporary file is removed and std::runtime_error names the step.
void write_file_atomic(const std::filesystem::path& path, std::span<const std::byte> bytes);

}  // namespace membptt
