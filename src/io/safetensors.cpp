#include "membptt/io/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

static_assert(std::endian::native == std::endian::little,
              "membptt's safetensors I/O assumes a little-endian host");

namespace membptt {
namespace {

using json = nlohmann::json;

constexpr std::array<std::pair<DType, std::string_view>, 15> kDTypeNames{{
    {DType::BOOL, "BOOL"}, {DType::U8, "U8"},     {DType::I8, "I8"},     {DType::F8_E5M2, "F8_E5M2"},
    {DType::F8_E4M3, "F8_E4M3"}, {DType::I16, "I16"}, {DType::U16, "U16"}, {DType::F16, "F16"},
    {DType::BF16, "BF16"}, {DType::I32, "I32"},   {DType::U32, "U32"},   {DType::F32, "F32"},
    {DType::F64, "F64"},   {DType::I64, "I64"},   {DType::U64, "U64"},
}};

constexpr std::string_view kAllowedDTypes =
    "BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64";

// Makes an arbitrary (possibly hostile) string safe for a one-line message: control and
// non-ASCII bytes are escaped, and long strings are cut.
std::string printable(std::string_view s, std::size_t max_len = 120) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (out.size() >= max_len) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  return out;
}

std::string quote_name(std::string_view s) { return fmt::format("'{}'", printable(s)); }

// A JSON value for a message; the header's depth is bounded, so dump() cannot recurse deeply.
std::string describe(const json& j) {
  return printable(j.dump(-1, ' ', false, json::error_handler_t::replace), 80);
}

std::string type_word(const json& j) {
  if (j.is_number_unsigned() || j.is_number_integer()) return "integer";
  if (j.is_number_float()) return "number";
  return j.type_name();
}

std::string errno_text(int err) { return std::strerror(err); }

struct HeaderTooDeep {};
struct DuplicateKey {
  std::string key;
};

// Non-negative JSON integer that fits in int64 (floats such as 2.0 or 1e30 are rejected).
std::optional<std::int64_t> as_index(const json& j) {
  if (j.is_number_unsigned()) {
    const auto v = j.get<std::uint64_t>();
    if (v <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return static_cast<std::int64_t>(v);
    }
  }
  return std::nullopt;
}

bool mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return __builtin_mul_overflow(a, b, &out);
}

// nlohmann's messages start with "[json.exception.parse_error.101] ": keep only what they say.
std::string json_error_text(const json::exception& e) {
  std::string_view w = e.what();
  if (!w.empty() && w.front() == '[') {
    const auto close = w.find("] ");
    if (close != std::string_view::npos) w.remove_prefix(close + 2);
  }
  return printable(w, 200);
}

bool starts_with(std::span<const std::byte> b, std::string_view magic) {
  if (b.size() < magic.size()) return false;
  return std::memcmp(b.data(), magic.data(), magic.size()) == 0;
}

constexpr std::string_view kSafetensorsLayout = "an 8-byte little-endian header length, a JSON header, then the data";

// What a file that is not safetensors is, where its first bytes say so cheaply: the end of a sentence
// "safetensors file F: <this>". nullopt when the bytes match nothing known. Called only after the
// file failed to parse as safetensors, so a valid file is never misnamed.
std::optional<std::string> foreign_format(std::span<const std::byte> b, const std::string& source) {
  const std::string expected = fmt::format("but a safetensors file was expected ({})", kSafetensorsLayout);
  std::filesystem::path target = std::filesystem::path(source).filename();
  target.replace_extension(".safetensors");
  if (target.empty() || target == std::filesystem::path(source).filename()) target = "converted.safetensors";
  const std::string convert = fmt::format(
      "convert it in Python with safetensors.torch.save_file(torch.load(\"{0}\"), \"{1}\") "
      "(for a saved whole module, its .state_dict()), or without the safetensors package with "
      "python3 python/membptt_st.py convert {0} {1}",
      printable(source, 200), printable(target.string(), 100));
  if (b.empty()) return fmt::format("the file is empty (0 bytes), {}", expected);
  if (starts_with(b, "PK\x03\x04") || starts_with(b, "PK\x05\x06")) {
    return fmt::format("this is a zip archive, which is what torch.save writes (numpy.savez too), not a safetensors "
                       "file; {}",
                       convert);
  }
  if (b.size() >= 2 && static_cast<unsigned char>(b[0]) == 0x80 && static_cast<unsigned char>(b[1]) >= 2 &&
      static_cast<unsigned char>(b[1]) <= 5) {
    return fmt::format("this is a Python pickle (torch.save with _use_new_zipfile_serialization=False, or "
                       "pickle.dump), not a safetensors file; {}",
                       convert);
  }
  if (starts_with(b, "\x1f\x8b")) {
    return fmt::format("this is gzip-compressed data, {}; decompress it first (gunzip, or tar -xzf for a .tar.gz)",
                       expected);
  }
  if (starts_with(b, "BZh")) return fmt::format("this is bzip2-compressed data, {}; decompress it first", expected);
  if (starts_with(b, "\xfd" "7zXZ")) {
    return fmt::format("this is xz-compressed data, {}; decompress it first", expected);
  }
  if (starts_with(b, "\x28\xb5\x2f\xfd")) {
    return fmt::format("this is zstd-compressed data, {}; decompress it first", expected);
  }
  if (starts_with(b, "\x93NUMPY")) return fmt::format("this is a NumPy .npy array, {}", expected);
  if (starts_with(b, "\x89HDF\r\n\x1a\n")) return fmt::format("this is an HDF5 file (such as Keras .h5), {}", expected);
  // Text: the first 4 KiB are UTF-8 with no control bytes other than tab, CR and LF.
  const std::size_t n = std::min<std::size_t>(b.size(), 4096);
  std::string head;
  for (std::size_t i = 0; i < n;) {
    const auto c = static_cast<unsigned char>(b[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) return std::nullopt;
      head += static_cast<char>(c);
      ++i;
      continue;
    }
    const std::size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (len == 0) return std::nullopt;
    for (std::size_t k = 1; k < len; ++k) {
      if (i + k >= b.size()) return std::nullopt;  // the file ends inside a character
      if (i + k >= n) break;                        // the sample does: fine
      const auto d = static_cast<unsigned char>(b[i + k]);
      if (d < 0x80 || d > 0xbf) return std::nullopt;
    }
    for (std::size_t k = 0; k < len && i + k < n; ++k) head += static_cast<char>(b[i + k]);
    i += len;
  }
  const auto first = head.find_first_not_of(" \t\r\n");
  std::string begins = first == std::string::npos ? std::string() : head.substr(first, 40);
  const bool cut = first != std::string::npos && head.size() - first > 40;
  for (char& c : begins) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  if (!cut) begins.erase(begins.find_last_not_of(' ') + 1);
  const std::string quoted = fmt::format("'{}{}'", printable(begins, 40), cut ? "..." : "");
  if (first != std::string::npos && (head[first] == '{' || head[first] == '[')) {
    const char* p = reinterpret_cast<const char*>(b.data());
    const bool valid = b.size() <= (std::size_t{16} << 20) && json::accept(p, p + b.size());
    return fmt::format("this is {} (it begins {}), {}", valid ? "a JSON document" : "JSON-like text", quoted, expected);
  }
  if (first == std::string::npos) return fmt::format("this is a text file holding only white space, {}", expected);
  return fmt::format("this is a text file (it begins {}), {}", quoted, expected);
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = (h >> 15) & 1u;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t mant = h & 0x3ffu;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal
  } else if (exp == 31) {
    v = mant == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
  } else {
    v = std::ldexp(static_cast<float>(mant | 0x400u), static_cast<int>(exp) - 25);
  }
  return sign ? -v : v;
}

float bf16_to_float(std::uint16_t h) { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }

template <class T>
T load_le(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <class Out>
std::vector<Out> convert_float(const TensorInfo& info, std::span<const std::byte> data) {
  const auto n = static_cast<std::size_t>(info.numel());
  std::vector<Out> out(n);
  const std::byte* p = data.data();
  for (std::size_t i = 0; i < n; ++i) {
    switch (info.dtype) {
      case DType::F64: out[i] = static_cast<Out>(load_le<double>(p + 8 * i)); break;
      case DType::F32: out[i] = static_cast<Out>(load_le<float>(p + 4 * i)); break;
      case DType::F16: out[i] = static_cast<Out>(half_to_float(load_le<std::uint16_t>(p + 2 * i))); break;
      case DType::BF16: out[i] = static_cast<Out>(bf16_to_float(load_le<std::uint16_t>(p + 2 * i))); break;
      default: break;  // unreachable: checked by the caller
    }
  }
  return out;
}

}  // namespace

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::BOOL:
    case DType::U8:
    case DType::I8:
    case DType::F8_E5M2:
    case DType::F8_E4M3: return 1;
    case DType::I16:
    case DType::U16:
    case DType::F16:
    case DType::BF16: return 2;
    case DType::I32:
    case DType::U32:
    case DType::F32: return 4;
    case DType::F64:
    case DType::I64:
    case DType::U64: return 8;
  }
  return 0;
}

std::string_view dtype_name(DType dtype) {
  for (const auto& [d, name] : kDTypeNames) {
    if (d == dtype) return name;
  }
  return "?";
}

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& [d, n] : kDTypeNames) {
    if (n == name) return d;
  }
  return std::nullopt;
}

std::string shape_string(std::span<const std::int64_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Reader

SafeTensors SafeTensors::load(const std::filesystem::path& path) {
  const std::string name = path.string();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw std::runtime_error(fmt::format("safetensors file {}: cannot open: {}", name, errno_text(errno)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error(fmt::format("safetensors file {}: cannot stat: {}", name, errno_text(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error(fmt::format("safetensors file {}: not a regular file{}", name,
                                         S_ISDIR(st.st_mode) ? " (it is a directory)" : ""));
  }
  std::vector<std::byte> bytes(static_cast<std::size_t>(st.st_size));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t got = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int err = errno;
      ::close(fd);
      throw std::runtime_error(fmt::format("safetensors file {}: read failed: {}", name, errno_text(err)));
    }
    if (got == 0) break;  // the file shrank while reading: validate what we have
    done += static_cast<std::size_t>(got);
  }
  ::close(fd);
  bytes.resize(done);
  return parse(std::move(bytes), name);
}

SafeTensors SafeTensors::parse(std::span<const std::byte> file_bytes, std::string source) {
  return parse(std::vector<std::byte>(file_bytes.begin(), file_bytes.end()), std::move(source));
}

SafeTensors SafeTensors::parse(std::vector<std::byte> file_bytes, std::string source) {
  SafeTensors st;
  st.source_ = std::move(source);
  st.file_ = std::move(file_bytes);
  const std::string& src = st.source_;
  auto fail = [&](const std::string& what) {
    return std::runtime_error(fmt::format("safetensors file {}: {}", src, what));
  };

  // A file that fails the first structural checks is often something else altogether (a torch.save
  // zip, a gzip archive, JSON, text): say what, where its first bytes tell.
  auto not_safetensors = [&](const std::string& what) {
    if (auto foreign = foreign_format(st.file_, src)) {
      throw NotSafetensorsError(fmt::format("safetensors file {}: {}", src, *foreign));
    }
    return fail(fmt::format("{}: not a safetensors file ({}), or a corrupt one", what, kSafetensorsLayout));
  };

  const std::size_t size = st.file_.size();
  if (size < 8) {
    throw not_safetensors(fmt::format("file is {} bytes, shorter than the 8-byte header length prefix", size));
  }
  const auto header_len = load_le<std::uint64_t>(st.file_.data());
  if (header_len > kSafetensorsMaxHeaderBytes) {
    throw not_safetensors(fmt::format("header length {} exceeds the limit of {} bytes", header_len,
                                      kSafetensorsMaxHeaderBytes));
  }
  if (header_len > size - 8) {
    throw not_safetensors(fmt::format("header length {} exceeds the {} bytes after the 8-byte prefix", header_len,
                                      size - 8));
  }
  st.data_start_ = 8 + static_cast<std::size_t>(header_len);
  const std::size_t buffer_len = size - st.data_start_;
  const char* hbegin = reinterpret_cast<const char*>(st.file_.data() + 8);
  const char* hend = hbegin + header_len;

  // Parse with a callback that bounds nesting (the valid structure is 3 levels deep) and rejects
  // duplicate keys, which nlohmann would otherwise resolve silently.
  json header;
  {
    std::set<std::string> top_keys;
    std::set<std::string> inner_keys;
    auto cb = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
      if (depth > 3) throw HeaderTooDeep{};
      if (event == json::parse_event_t::object_start && depth == 1) inner_keys.clear();
      if (event == json::parse_event_t::key) {
        auto& keys = depth == 1 ? top_keys : inner_keys;
        const auto& k = parsed.get_ref<const std::string&>();
        if (!keys.insert(k).second) throw DuplicateKey{k};
      }
      return true;
    };
    try {
      header = json::parse(hbegin, hend, cb);
    } catch (const json::exception& e) {
      if (header_len == 0 || *hbegin != '{') {
        throw not_safetensors(fmt::format("header is not valid JSON: {}", json_error_text(e)));
      }
      throw fail(fmt::format("header is not valid JSON: {}", json_error_text(e)));
    } catch (const HeaderTooDeep&) {
      throw fail("header JSON is nested deeper than allowed (object of tensor objects of shape arrays)");
    } catch (const DuplicateKey& d) {
      throw fail(fmt::format("header has the key {} twice", quote_name(d.key)));
    }
  }
  if (!header.is_object()) {
    throw fail(fmt::format("header is a JSON {}, allowed: a JSON object", type_word(header)));
  }

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const json& value = it.value();
    if (key == "__metadata__") {
      if (value.is_null()) continue;  // the reference implementation reads null as no metadata
      if (!value.is_object()) {
        throw fail(fmt::format("__metadata__ is {} ({}), allowed: an object of strings", describe(value),
                               type_word(value)));
      }
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string()) {
          throw fail(fmt::format("metadata {} is {} ({}), allowed: a string", quote_name(m.key()),
                                 describe(m.value()), type_word(m.value())));
        }
        st.metadata_.emplace(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    const std::string t = fmt::format("tensor {}", quote_name(key));
    if (!value.is_object()) {
      throw fail(fmt::format("{} is {} ({}), allowed: an object with dtype, shape and data_offsets", t,
                             describe(value), type_word(value)));
    }
    for (const char* field : {"dtype", "shape", "data_offsets"}) {
      if (!value.contains(field)) throw fail(fmt::format("{} has no \"{}\"", t, field));
    }
    const json& jd = value["dtype"];
    const auto dtype = jd.is_string() ? parse_dtype(jd.get_ref<const std::string&>()) : std::nullopt;
    if (!dtype) {
      throw fail(fmt::format("{} has dtype {}, allowed: {}", t, describe(jd), kAllowedDTypes));
    }
    const json& js = value["shape"];
    if (!js.is_array()) {
      throw fail(fmt::format("{} has shape {}, allowed: an array of non-negative integers", t, describe(js)));
    }
    TensorInfo info{*dtype, {}, 0, 0};
    std::uint64_t numel = 1;
    for (const json& d : js) {
      const auto v = as_index(d);
      if (!v) {
        throw fail(fmt::format("{} has shape entry {} in {}, allowed: non-negative integers below 2^63", t,
                               describe(d), describe(js)));
      }
      info.shape.push_back(*v);
      std::uint64_t next;
      if (mul_overflows(numel, static_cast<std::uint64_t>(*v), next) ||
          next > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        throw fail(fmt::format("{} has shape {} whose element count overflows 63 bits", t, describe(js)));
      }
      numel = next;
    }
    // A zero dimension makes the count 0 even if the other entries would overflow: fine.
    std::uint64_t nbytes;
    if (mul_overflows(numel, dtype_size(*dtype), nbytes)) {
      throw fail(fmt::format("{} has shape {} whose byte size overflows 64 bits", t, describe(js)));
    }
    const json& jo = value["data_offsets"];
    if (!jo.is_array() || jo.size() != 2 || !as_index(jo[0]) || !as_index(jo[1])) {
      throw fail(fmt::format("{} has data_offsets {}, allowed: [begin, end] with non-negative integers", t,
                             describe(jo)));
    }
    const auto begin = static_cast<std::uint64_t>(*as_index(jo[0]));
    const auto end = static_cast<std::uint64_t>(*as_index(jo[1]));
    if (begin > end) {
      throw fail(fmt::format("{} has data_offsets [{}, {}] with begin after end", t, begin, end));
    }
    if (end > buffer_len) {
      throw fail(fmt::format("{} has data_offsets [{}, {}] beyond the {}-byte data buffer", t, begin, end,
                             buffer_len));
    }
    if (end - begin != nbytes) {
      throw fail(fmt::format("{} has data_offsets [{}, {}] spanning {} bytes, but dtype {} and shape {} need {}",
                             t, begin, end, end - begin, dtype_name(*dtype), shape_string(info.shape), nbytes));
    }
    info.begin = static_cast<std::size_t>(begin);
    info.end = static_cast<std::size_t>(end);
    st.tensors_.emplace(key, std::move(info));
  }

  // The tensors must tile the buffer exactly: sorted by offsets, each starts where the previous ended.
  std::vector<std::pair<const std::string*, const TensorInfo*>> order;
  order.reserve(st.tensors_.size());
  for (const auto& [name, info] : st.tensors_) order.emplace_back(&name, &info);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return std::pair(a.second->begin, a.second->end) < std::pair(b.second->begin, b.second->end);
  });
  std::size_t pos = 0;
  const std::string* prev = nullptr;
  for (const auto& [name, info] : order) {
    if (info->begin < pos) {
      throw fail(fmt::format("tensor {} at data_offsets [{}, {}] overlaps tensor {} which ends at {}", quote_name(*name),
                             info->begin, info->end, quote_name(*prev), pos));
    }
    if (info->begin > pos) {
      throw fail(fmt::format("data buffer has a hole: bytes [{}, {}) belong to no tensor (next is {})", pos,
                             info->begin, quote_name(*name)));
    }
    pos = info->end;
    prev = name;
  }
  if (pos != buffer_len) {
    throw fail(fmt::format("data buffer is {} bytes but the tensors cover only the first {}", buffer_len, pos));
  }
  return st;
}

const std::string* SafeTensors::find_metadata(std::string_view key) const {
  const auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

std::vector<std::string> SafeTensors::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, info] : tensors_) out.push_back(name);
  return out;
}

bool SafeTensors::contains(std::string_view name) const { return tensors_.find(name) != tensors_.end(); }

const TensorInfo& SafeTensors::info(std::string_view name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    std::string have;
    for (const auto& [n, i] : tensors_) {
      if (have.size() > 200) {
        have += ", ...";
        break;
      }
      if (!have.empty()) have += ", ";
      have += printable(n);
    }
    throw std::runtime_error(fmt::format("safetensors file {}: no tensor {} (the file has: {})", source_,
                                         quote_name(name), have.empty() ? "no tensors" : have));
  }
  return it->second;
}

std::span<const std::byte> SafeTensors::bytes(std::string_view name) const {
  const TensorInfo& i = info(name);
  return std::span<const std::byte>(file_).subspan(data_start_ + i.begin, i.end - i.begin);
}

void SafeTensors::check_shape(std::string_view name, const std::vector<std::int64_t>& expected_shape) const {
  const TensorInfo& i = info(name);
  if (i.shape != expected_shape) {
    throw std::runtime_error(fmt::format("safetensors file {}: tensor {} has shape {}, expected {}", source_,
                                         quote_name(name), shape_string(i.shape), shape_string(expected_shape)));
  }
}

std::vector<double> SafeTensors::read_f64(std::string_view name) const {
  const TensorInfo& i = info(name);
  if (i.dtype != DType::F64 && i.dtype != DType::F32 && i.dtype != DType::F16 && i.dtype != DType::BF16) {
    throw std::runtime_error(fmt::format(
        "safetensors file {}: tensor {} has dtype {}, which cannot be read as f64 (allowed: F64, F32, F16, BF16)",
        source_, quote_name(name), dtype_name(i.dtype)));
  }
  return convert_float<double>(i, bytes(name));
}

std::vector<double> SafeTensors::read_f64(std::string_view name, const std::vector<std::int64_t>& expected_shape) const {
  check_shape(name, expected_shape);
  return read_f64(name);
}

std::vector<float> SafeTensors::read_f32(std::string_view name) const {
  const TensorInfo& i = info(name);
  if (i.dtype != DType::F64 && i.dtype != DType::F32 && i.dtype != DType::F16 && i.dtype != DType::BF16) {
    throw std::runtime_error(fmt::format(
        "safetensors file {}: tensor {} has dtype {}, which cannot be read as f32 (allowed: F32, F64, F16, BF16)",
        source_, quote_name(name), dtype_name(i.dtype)));
  }
  return convert_float<float>(i, bytes(name));
}

std::vector<float> SafeTensors::read_f32(std::string_view name, const std::vector<std::int64_t>& expected_shape) const {
  check_shape(name, expected_shape);
  return read_f32(name);
}

std::vector<std::int64_t> SafeTensors::read_i64(std::string_view name) const {
  const TensorInfo& i = info(name);
  switch (i.dtype) {
    case DType::I64:
    case DType::I32:
    case DType::U32:
    case DType::I16:
    case DType::U16:
    case DType::I8:
    case DType::U8:
    case DType::BOOL: break;
    default:
      throw std::runtime_error(fmt::format(
          "safetensors file {}: tensor {} has dtype {}, which cannot be read as i64 "
          "(allowed: I64, I32, U32, I16, U16, I8, U8, BOOL)",
          source_, quote_name(name), dtype_name(i.dtype)));
  }
  const auto data = bytes(name);
  const auto n = static_cast<std::size_t>(i.numel());
  std::vector<std::int64_t> out(n);
  const std::byte* p = data.data();
  for (std::size_t k = 0; k < n; ++k) {
    switch (i.dtype) {
      case DType::I64: out[k] = load_le<std::int64_t>(p + 8 * k); break;
      case DType::I32: out[k] = load_le<std::int32_t>(p + 4 * k); break;
      case DType::U32: out[k] = load_le<std::uint32_t>(p + 4 * k); break;
      case DType::I16: out[k] = load_le<std::int16_t>(p + 2 * k); break;
      case DType::U16: out[k] = load_le<std::uint16_t>(p + 2 * k); break;
      case DType::I8: out[k] = load_le<std::int8_t>(p + k); break;
      case DType::U8: out[k] = load_le<std::uint8_t>(p + k); break;
      default: out[k] = load_le<std::uint8_t>(p + k) != 0; break;  // BOOL
    }
  }
  return out;
}

std::vector<std::int64_t> SafeTensors::read_i64(std::string_view name,
                                                const std::vector<std::int64_t>& expected_shape) const {
  check_shape(name, expected_shape);
  return read_i64(name);
}

// ---------------------------------------------------------------------------------------------
// Writer

void SafeTensorsWriter::set_metadata(std::string key, std::string value) {
  metadata_[std::move(key)] = std::move(value);
}

void SafeTensorsWriter::add_bytes(std::string name, DType dtype, std::vector<std::int64_t> shape,
                                  std::span<const std::byte> data) {
  if (name == "__metadata__") {
    throw std::runtime_error("safetensors writer: the tensor name '__metadata__' is reserved");
  }
  if (tensors_.count(name)) {
    throw std::runtime_error(fmt::format("safetensors writer: tensor {} added twice", quote_name(name)));
  }
  std::uint64_t numel = 1;
  for (auto d : shape) {
    if (d < 0) {
      throw std::runtime_error(fmt::format("safetensors writer: tensor {} has shape {} with a negative entry",
                                           quote_name(name), shape_string(shape)));
    }
    if (mul_overflows(numel, static_cast<std::uint64_t>(d), numel) ||
        numel > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      throw std::runtime_error(fmt::format("safetensors writer: tensor {} has shape {} whose size overflows",
                                           quote_name(name), shape_string(shape)));
    }
  }
  std::uint64_t nbytes;
  if (mul_overflows(numel, dtype_size(dtype), nbytes) || nbytes != data.size()) {
    throw std::runtime_error(fmt::format("safetensors writer: tensor {} has shape {} and dtype {} ({} elements) "
                                         "but {} bytes of data",
                                         quote_name(name), shape_string(shape), dtype_name(dtype), numel, data.size()));
  }
  tensors_.emplace(std::move(name), Entry{dtype, std::move(shape), std::vector<std::byte>(data.begin(), data.end())});
}

void SafeTensorsWriter::add_f64(std::string name, std::vector<std::int64_t> shape, std::span<const double> values) {
  add_bytes(std::move(name), DType::F64, std::move(shape), std::as_bytes(values));
}

void SafeTensorsWriter::add_f32(std::string name, std::vector<std::int64_t> shape, std::span<const float> values) {
  add_bytes(std::move(name), DType::F32, std::move(shape), std::as_bytes(values));
}

void SafeTensorsWriter::add_i64(std::string name, std::vector<std::int64_t> shape,
                                std::span<const std::int64_t> values) {
  add_bytes(std::move(name), DType::I64, std::move(shape), std::as_bytes(values));
}

std::vector<std::byte> SafeTensorsWriter::serialize() const {
  std::vector<const std::pair<const std::string, Entry>*> order;
  for (const auto& kv : tensors_) order.push_back(&kv);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return dtype_size(a->second.dtype) > dtype_size(b->second.dtype);  // names already sorted by the map
  });

  json header = json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  std::size_t offset = 0;
  for (const auto* kv : order) {
    const Entry& e = kv->second;
    header[kv->first] = {{"dtype", dtype_name(e.dtype)},
                         {"shape", e.shape},
                         {"data_offsets", {offset, offset + e.data.size()}}};
    offset += e.data.size();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    throw std::runtime_error(fmt::format("safetensors writer: a tensor name or metadata string is not valid UTF-8 ({})",
                                         json_error_text(e)));
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  std::vector<std::byte> out(8 + text.size() + offset);
  const std::uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, text.data(), text.size());
  std::byte* p = out.data() + 8 + text.size();
  for (const auto* kv : order) {
    if (!kv->second.data.empty()) std::memcpy(p, kv->second.data.data(), kv->second.data.size());
    p += kv->second.data.size();
  }
  return out;
}

void SafeTensorsWriter::write(const std::filesystem::path& path) const { write_file_atomic(path, serialize()); }

void write_file_atomic(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  std::filesystem::path tmp = path;
  tmp += fmt::format(".tmp.{}", ::getpid());
  const std::string name = path.string();
  auto fail = [&](const std::string& step, int err) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    return std::runtime_error(fmt::format("cannot write {}: {} failed: {}", name, step, errno_text(err)));
  };

  std::FILE* f = std::fopen(tmp.c_str(), "wbe");
  if (!f) throw fail(fmt::format("creating {}", tmp.string()), errno);
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) {
    const int err = errno;
    std::fclose(f);
    throw fail("write", err);
  }
  if (std::fflush(f) != 0) {
    const int err = errno;
    std::fclose(f);
    throw fail("fflush", err);
  }
  if (::fsync(::fileno(f)) != 0) {
    const int err = errno;
    std::fclose(f);
    throw fail("fsync", err);
  }
  if (std::fclose(f) != 0) throw fail("fclose", errno);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw fail(fmt::format("rename to {}", name), errno);

  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    throw std::runtime_error(fmt::format("cannot write {}: opening directory {} to fsync it failed: {}", name,
                                         dir.string(), errno_text(errno)));
  }
  // Some file systems cannot fsync a directory (EINVAL): the rename is then as durable as they allow.
  if (::fsync(dfd) != 0 && errno != EINVAL) {
    const int err = errno;
    ::close(dfd);
    throw std::runtime_error(
        fmt::format("cannot write {}: fsync of directory {} failed: {}", name, dir.string(), errno_text(err)));
  }
  ::close(dfd);
}

}  // namespace membptt
