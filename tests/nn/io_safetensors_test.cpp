// The safetensors reader and writer: round trips, every rejection, and a mutation fuzz test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "membptt/io/safetensors.hpp"

namespace membptt {
namespace {

namespace fs = std::filesystem;

std::vector<std::byte> to_bytes(std::string_view s) {
  std::vector<std::byte> out;
  for (const char c : s) out.push_back(static_cast<std::byte>(c));
  return out;
}

// A raw file: u64 header length (default: the real length), header text, data bytes.
std::vector<std::byte> raw_file(std::string_view header, std::size_t data_len,
                                std::optional<std::uint64_t> header_len = std::nullopt) {
  std::vector<std::byte> out(8);
  const std::uint64_t n = header_len.value_or(header.size());
  std::memcpy(out.data(), &n, 8);
  const auto h = to_bytes(header);
  out.insert(out.end(), h.begin(), h.end());
  for (std::size_t i = 0; i < data_len; ++i) out.push_back(static_cast<std::byte>(i * 37 + 11));
  return out;
}

// Expects parse() to throw std::runtime_error whose one-line message contains every fragment.
void expect_reject(const std::vector<std::byte>& bytes, std::initializer_list<std::string_view> fragments) {
  try {
    SafeTensors::parse(bytes, "bad.safetensors");
    ADD_FAILURE() << "no exception; expected one mentioning " << *fragments.begin();
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    for (auto f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "missing '" << f << "' in: " << msg;
  }
}

template <class F>
void expect_throw_with(F&& f, std::initializer_list<std::string_view> fragments) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning " << *fragments.begin();
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (auto f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "missing '" << f << "' in: " << msg;
  }
}

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            fmt::format("membptt_io_{}_{}_{}", ::getpid(), info->test_suite_name(), info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

SafeTensorsWriter sample_writer() {
  SafeTensorsWriter w;
  w.set_metadata("cell", "lstm");
  w.set_metadata("note", "utf-8 \xc2\xb5 and \"quotes\"");
  w.add_f64("b.f64", {2, 3}, std::vector<double>{1.5, -2.25, 3e300, -0.0, 1e-310, 7});
  w.add_f32("a.f32", {3}, std::vector<float>{0.1f, -1e30f, 42.f});
  w.add_i64("c.i64", {2, 2}, std::vector<std::int64_t>{-1, 0, INT64_MAX, INT64_MIN});
  w.add_f64("scalar", {}, std::vector<double>{3.25});
  w.add_f32("empty", {0, 4}, std::vector<float>{});
  w.add_f32("odd", {1}, std::vector<float>{5.f});  // makes the F32 block end unaligned to 8
  return w;
}

TEST(SafetensorsRoundTrip, WriteThenReadGivesTheSameValues) {
  TempDir dir;
  const fs::path file = dir.path() / "t.safetensors";
  sample_writer().write(file);
  const SafeTensors st = SafeTensors::load(file);

  EXPECT_EQ(st.source(), file.string());
  EXPECT_EQ(st.metadata().size(), 2u);
  ASSERT_NE(st.find_metadata("note"), nullptr);
  EXPECT_EQ(*st.find_metadata("note"), "utf-8 \xc2\xb5 and \"quotes\"");
  EXPECT_EQ(st.find_metadata("absent"), nullptr);
  EXPECT_EQ(st.names(), (std::vector<std::string>{"a.f32", "b.f64", "c.i64", "empty", "odd", "scalar"}));

  EXPECT_EQ(st.read_f64("b.f64", {2, 3}), (std::vector<double>{1.5, -2.25, 3e300, -0.0, 1e-310, 7}));
  EXPECT_TRUE(std::signbit(st.read_f64("b.f64")[3]));
  EXPECT_EQ(st.read_f32("a.f32", {3}), (std::vector<float>{0.1f, -1e30f, 42.f}));
  EXPECT_EQ(st.read_i64("c.i64", {2, 2}), (std::vector<std::int64_t>{-1, 0, INT64_MAX, INT64_MIN}));
  EXPECT_EQ(st.read_f64("scalar", {}), std::vector<double>{3.25});
  EXPECT_EQ(st.info("scalar").numel(), 1);
  EXPECT_TRUE(st.read_f32("empty", {0, 4}).empty());
  EXPECT_EQ(st.info("empty").dtype, DType::F32);

  // F32 <-> F64 conversions on request.
  EXPECT_EQ(st.read_f64("a.f32")[0], static_cast<double>(0.1f));
  EXPECT_EQ(st.read_f32("b.f64")[1], -2.25f);
}

TEST(SafetensorsRoundTrip, LayoutIsDeterministicAlignedAndPadded) {
  const auto bytes = sample_writer().serialize();
  // The same contents added in another order give the same bytes.
  SafeTensorsWriter w;
  w.add_f32("odd", {1}, std::vector<float>{5.f});
  w.add_f32("empty", {0, 4}, std::vector<float>{});
  w.add_f64("scalar", {}, std::vector<double>{3.25});
  w.add_i64("c.i64", {2, 2}, std::vector<std::int64_t>{-1, 0, INT64_MAX, INT64_MIN});
  w.add_f32("a.f32", {3}, std::vector<float>{0.1f, -1e30f, 42.f});
  w.add_f64("b.f64", {2, 3}, std::vector<double>{1.5, -2.25, 3e300, -0.0, 1e-310, 7});
  w.set_metadata("note", "utf-8 \xc2\xb5 and \"quotes\"");
  w.set_metadata("cell", "lstm");
  EXPECT_EQ(w.serialize(), bytes);

  std::uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const std::string header(reinterpret_cast<const char*>(bytes.data()) + 8, n);
  EXPECT_EQ(header.front(), '{');
  EXPECT_EQ(header.find_last_not_of(' '), header.find_last_of('}'));
  EXPECT_EQ(header.find('\n'), std::string::npos);

  const SafeTensors st = SafeTensors::parse(bytes);
  for (const auto& [name, info] : st.tensors()) {
    EXPECT_EQ(info.begin % dtype_size(info.dtype), 0u) << name;
  }
  // 8-byte tensors first (by name), then the 4-byte ones.
  EXPECT_EQ(st.info("b.f64").begin, 0u);
  EXPECT_LT(st.info("scalar").begin, st.info("a.f32").begin);
}

TEST(SafetensorsRoundTrip, EmptyFileAndOtherDtypes) {
  const auto empty = SafeTensorsWriter().serialize();
  const SafeTensors e = SafeTensors::parse(empty);
  EXPECT_TRUE(e.tensors().empty());
  EXPECT_TRUE(e.metadata().empty());

  SafeTensorsWriter w;
  const std::uint16_t half[] = {0x3c00, 0xc000, 0x0001, 0x7c00};  // 1, -2, 2^-24, inf
  const std::uint16_t bf16[] = {0x3f80, 0x4049};                  // 1, 3.140625
  const std::int32_t i32[] = {-5, 7};
  const std::uint8_t u8[] = {0, 255, 3};
  w.add_bytes("h", DType::F16, {4}, std::as_bytes(std::span(half)));
  w.add_bytes("bf", DType::BF16, {2}, std::as_bytes(std::span(bf16)));
  w.add_bytes("i", DType::I32, {2}, std::as_bytes(std::span(i32)));
  w.add_bytes("u", DType::U8, {3}, std::as_bytes(std::span(u8)));
  const SafeTensors st = SafeTensors::parse(w.serialize());
  const auto h = st.read_f64("h");
  EXPECT_EQ(h[0], 1.0);
  EXPECT_EQ(h[1], -2.0);
  EXPECT_EQ(h[2], std::ldexp(1.0, -24));
  EXPECT_TRUE(std::isinf(h[3]));
  EXPECT_EQ(st.read_f32("bf"), (std::vector<float>{1.0f, 3.140625f}));
  EXPECT_EQ(st.read_i64("i"), (std::vector<std::int64_t>{-5, 7}));
  EXPECT_EQ(st.read_i64("u"), (std::vector<std::int64_t>{0, 255, 3}));
}

TEST(SafetensorsWriter, AtomicWriteReplacesAndLeavesNoTemporary) {
  TempDir dir;
  const fs::path file = dir.path() / "w.safetensors";
  { std::ofstream(file) << "old contents"; }
  SafeTensorsWriter w;
  w.add_f64("x", {1}, std::vector<double>{1});
  w.write(file);
  EXPECT_EQ(SafeTensors::load(file).read_f64("x"), std::vector<double>{1});
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1);

  expect_throw_with([&] { w.write(dir.path() / "no_such_dir" / "w.safetensors"); }, {"no_such_dir", "failed"});
  expect_throw_with([&] { SafeTensors::load(dir.path() / "missing.safetensors"); },
                    {"missing.safetensors", "cannot open"});
  expect_throw_with([&] { SafeTensors::load(dir.path()); }, {"not a regular file"});
}

TEST(SafetensorsWriter, RejectsBadTensors) {
  SafeTensorsWriter w;
  w.add_f32("x", {2}, std::vector<float>{1, 2});
  expect_throw_with([&] { w.add_f32("x", {2}, std::vector<float>{1, 2}); }, {"'x'", "twice"});
  expect_throw_with([&] { w.add_f32("y", {3}, std::vector<float>{1, 2}); }, {"'y'", "[3]", "8 bytes"});
  expect_throw_with([&] { w.add_f32("z", {-1}, std::vector<float>{}); }, {"'z'", "negative"});
  expect_throw_with([&] { w.add_f32("__metadata__", {0}, std::vector<float>{}); }, {"reserved"});
  SafeTensorsWriter bad;
  bad.set_metadata("k", "\xff\xfe");
  expect_throw_with([&] { bad.serialize(); }, {"UTF-8"});
}

// ---------------------------------------------------------------------------------------------
// Rejections

TEST(SafetensorsReject, ShortFileAndHeaderLength) {
  expect_reject({}, {"0 bytes", "8-byte"});
  expect_reject(std::vector<std::byte>(7), {"7 bytes", "8-byte"});
  expect_reject(raw_file("{}", 0, 3), {"header length 3", "2 bytes"});
  expect_reject(raw_file("{}", 0, UINT64_MAX), {"18446744073709551615", "100000000"});
  expect_reject(raw_file("{}", 0, 100'000'001), {"100000001", "limit of 100000000"});
}

TEST(SafetensorsReject, HeaderNotJsonObject) {
  expect_reject(raw_file("{\"a\":", 0), {"not valid JSON"});
  expect_reject(raw_file("", 0), {"not valid JSON"});
  expect_reject(raw_file("{} x", 0), {"not valid JSON"});
  expect_reject(raw_file("{\"\xff\":1}", 0), {"not valid JSON"});  // invalid UTF-8
  expect_reject(raw_file("[1,2]", 0), {"JSON array", "allowed: a JSON object"});
  expect_reject(raw_file("\"s\"", 0), {"JSON string"});
  expect_reject(raw_file("{\"a\":[[[[1]]]]}", 0), {"nested deeper"});
  expect_reject(raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
                         4),
                {"'a' twice"});
  expect_reject(raw_file("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4),
                {"'dtype' twice"});
  // Trailing spaces (the padding) are fine.
  EXPECT_NO_THROW(SafeTensors::parse(raw_file("{}      ", 0)));
}

TEST(SafetensorsReject, BadMetadata) {
  expect_reject(raw_file(R"({"__metadata__":{"k":3}})", 0), {"metadata 'k'", "3", "allowed: a string"});
  expect_reject(raw_file(R"({"__metadata__":[1]})", 0), {"__metadata__", "[1]", "object of strings"});
}

TEST(SafetensorsReject, BadDtype) {
  expect_reject(raw_file(R"({"t":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", 16),
                {"'t'", "\"F128\"", "allowed: BOOL", "F64"});
  expect_reject(raw_file(R"({"t":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", 4), {"dtype 4"});
  expect_reject(raw_file(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", 4), {"'t'", "no \"dtype\""});
  expect_reject(raw_file(R"({"t":[1]})", 0), {"'t'", "[1]", "allowed: an object"});
}

TEST(SafetensorsReject, BadShapeEntries) {
  expect_reject(raw_file(R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
                {"'t'", "shape entry -1", "non-negative integers"});
  expect_reject(raw_file(R"({"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,4]}})", 4), {"shape entry 2.5"});
  expect_reject(raw_file(R"({"t":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", 4), {"shape entry 1.0"});
  expect_reject(raw_file(R"({"t":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}})", 4), {"shape entry \"1\""});
  expect_reject(raw_file(R"({"t":{"dtype":"F32","shape":[1e30],"data_offsets":[0,4]}})", 4), {"shape entry"});
  expect_reject(raw_file(R"({"t":{"dtype":"F32","shape":9,"data_offsets":[0,4]}})", 4), {"shape 9"});
  // Element count overflow, and byte size overflow.
  expect_reject(raw_file(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4),
                {"overflows 63 bits"});
  expect_reject(raw_file(R"({"t":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8),
                {"overflows 64 bits"});
  expect_reject(raw_file(R"({"t":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,4]}})", 4),
                {"shape entry 9223372036854775808"});
  // A zero dimension makes a huge other dimension harmless.
  EXPECT_NO_THROW(SafeTensors::parse(
      raw_file(R"({"t":{"dtype":"F32","shape":[0,9223372036854775807],"data_offsets":[0,0]}})", 0)));
}

TEST(SafetensorsReject, SizeMismatchAndOffsetsOutOfBuffer) {
  expect_reject(raw_file(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
                {"'t'", "[0, 8]", "8 bytes", "F32", "[3]", "need 12"});
  expect_reject(raw_file(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})", 8),
                {"[0, 12]", "beyond the 8-byte data buffer"});
  expect_reject(raw_file(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8), {"begin after end"});
  expect_reject(raw_file(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4), {"data_offsets [0]"});
  expect_reject(raw_file(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 4), {"data_offsets [-4,0]"});
  expect_reject(raw_file(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,0]}})", 4),
                {"data_offsets"});
}

TEST(SafetensorsReject, OverlapHolesAndUncoveredBytes) {
  expect_reject(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         12),
                {"'b'", "overlaps tensor 'a'"});
  expect_reject(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                         4),
                {"overlaps"});
  expect_reject(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                         12),
                {"hole", "[4, 8)", "'b'"});
  expect_reject(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), {"hole", "[0, 4)"});
  expect_reject(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 6),
                {"6 bytes", "cover only the first 4"});
  expect_reject(raw_file("{}", 1), {"1 bytes", "first 0"});
  // Zero-size tensors may sit anywhere on the tiling.
  EXPECT_NO_THROW(SafeTensors::parse(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                              R"("z":{"dtype":"F64","shape":[0],"data_offsets":[4,4]},)"
                                              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                              8)));
}

TEST(SafetensorsReject, MissingTensorWrongShapeWrongDtype) {
  const SafeTensors st = SafeTensors::parse(sample_writer().serialize(), "s.safetensors");
  expect_throw_with([&] { st.read_f64("nope"); }, {"s.safetensors", "no tensor 'nope'", "a.f32, b.f64"});
  expect_throw_with([&] { st.read_f64("b.f64", {3, 2}); }, {"s.safetensors", "'b.f64'", "[2, 3]", "expected [3, 2]"});
  expect_throw_with([&] { st.read_f32("scalar", {1}); }, {"shape []", "expected [1]"});
  expect_throw_with([&] { st.read_f64("c.i64"); }, {"'c.i64'", "dtype I64", "f64", "allowed: F64"});
  expect_throw_with([&] { st.read_f32("c.i64"); }, {"dtype I64", "f32"});
  expect_throw_with([&] { st.read_i64("a.f32"); }, {"'a.f32'", "dtype F32", "i64", "allowed: I64"});
  expect_throw_with([&] { st.read_i64("empty"); }, {"dtype F32"});
}

// ---------------------------------------------------------------------------------------------
// Fuzz: random mutations of a valid file must parse or throw std::runtime_error, never crash or
// read out of bounds (run under -DMEMBPTT_SANITIZE=ON to check the latter).

TEST(SafetensorsFuzz, MutationsParseOrThrowRuntimeError) {
  const std::vector<std::byte> valid = sample_writer().serialize();
  std::uint64_t header_len;
  std::memcpy(&header_len, valid.data(), 8);
  const char* tokens[] = {"-1", "0", "1e999", "2.0", "18446744073709551615", "9223372036854775808",
                          "4611686018427387904", "[", "]", "{", "}", "\"", ",", ":", "\\u0000", "\"F64\"",
                          "\"I64\"", "null", "[0,0]", "\"__metadata__\""};
  std::mt19937_64 rng(20240611);
  int ok = 0, rejected = 0;
  constexpr int kIterations = 30000;
  for (int it = 0; it < kIterations; ++it) {
    std::vector<std::byte> b = valid;
    const int mutations = 1 + static_cast<int>(rng() % 3);
    for (int m = 0; m < mutations; ++m) {
      std::uint64_t n;
      std::memcpy(&n, b.data(), 8);
      const std::size_t hend = std::min<std::size_t>(b.size(), 8 + std::min<std::uint64_t>(n, b.size()));
      auto in_header = [&] { return hend > 8 ? 8 + rng() % (hend - 8) : rng() % b.size(); };
      switch (rng() % 8) {
        case 0:  // bit flip anywhere
          b[rng() % b.size()] ^= static_cast<std::byte>(1u << (rng() % 8));
          break;
        case 1:  // random byte in the header
          b[in_header()] = static_cast<std::byte>(rng() % 256);
          break;
        case 2: {  // overwrite header bytes with a token
          const std::string tok = tokens[rng() % std::size(tokens)];
          const std::size_t at = in_header();
          for (std::size_t k = 0; k < tok.size() && at + k < b.size(); ++k) b[at + k] = std::byte(tok[k]);
          break;
        }
        case 3:  // insert a token into the header, keeping the length field consistent
        case 4: {
          const std::string tok = tokens[rng() % std::size(tokens)];
          const std::size_t at = in_header();
          const auto t = to_bytes(tok);
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), t.begin(), t.end());
          if (rng() % 2) {
            n += tok.size();
            std::memcpy(b.data(), &n, 8);
          }
          break;
        }
        case 5:  // truncate
          b.resize(rng() % (b.size() + 1));
          break;
        case 6: {  // edit the header length
          const std::uint64_t choices[] = {n + 1, n - 1, n + 8, n - 8, rng(), rng() % (b.size() + 16), 0,
                                           kSafetensorsMaxHeaderBytes, kSafetensorsMaxHeaderBytes + 1};
          n = choices[rng() % std::size(choices)];
          if (b.size() >= 8) std::memcpy(b.data(), &n, 8);
          break;
        }
        case 7: {  // delete a range of the data buffer or the header
          if (b.size() > 9) {
            const std::size_t at = 8 + rng() % (b.size() - 8);
            const std::size_t len = std::min<std::size_t>(1 + rng() % 16, b.size() - at);
            b.erase(b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(at + len));
          }
          break;
        }
      }
      if (b.size() < 8) break;
    }
    try {
      const SafeTensors st = SafeTensors::parse(std::move(b), "fuzz.safetensors");
      ++ok;
      // Everything the parser accepted must be readable within bounds.
      std::size_t total = 0;
      for (const auto& [name, info] : st.tensors()) {
        const auto bytes = st.bytes(name);
        ASSERT_EQ(bytes.size(), static_cast<std::size_t>(info.numel()) * dtype_size(info.dtype));
        total += bytes.size();
        try {
          if (info.dtype == DType::F32 || info.dtype == DType::F64) {
            ASSERT_EQ(st.read_f64(name, info.shape).size(), static_cast<std::size_t>(info.numel()));
            ASSERT_EQ(st.read_f32(name).size(), static_cast<std::size_t>(info.numel()));
          } else {
            ASSERT_EQ(st.read_i64(name, info.shape).size(), static_cast<std::size_t>(info.numel()));
          }
        } catch (const std::runtime_error&) {
          // a mutated dtype that the accessor does not convert
        }
      }
      (void)total;
    } catch (const std::runtime_error& e) {
      ++rejected;
      ASSERT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      FAIL() << "iteration " << it << ": exception other than std::runtime_error: " << e.what();
    }
  }
  EXPECT_GT(ok, 100);
  EXPECT_GT(rejected, kIterations / 2);
  EXPECT_EQ(ok + rejected, kIterations);
}

}  // namespace
}  // namespace membptt
