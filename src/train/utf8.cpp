#include "membptt/train/utf8.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "membptt/train/config.hpp"

namespace membptt::train {
namespace {

// Length of the valid sequence at s[i], decoding it into cp; 0 when invalid.
std::size_t decode_one(std::string_view s, std::size_t i, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  std::size_t n = 0;
  char32_t v = 0, min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2, v = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3, v = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4, v = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  cp = v;
  return n;
}

}  // namespace

std::optional<std::size_t> find_invalid_utf8(std::string_view s) {
  char32_t cp = 0;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = decode_one(s, i, cp);
    if (n == 0) return i;
    i += n;
  }
  return std::nullopt;
}

std::vector<char32_t> decode_utf8(std::string_view s, const std::string& what) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  char32_t cp = 0;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = decode_one(s, i, cp);
    if (n == 0) {
      const auto line = 1 + std::count(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(i), '\n');
      throw TrainError(fmt::format("{} is not valid UTF-8: bad byte 0x{:02x} at byte offset {} (line {}); allowed is UTF-8 text",
                                   what, static_cast<unsigned char>(s[i]), i, line));
    }
    out.push_back(cp);
    i += n;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string encode_utf8(const std::vector<char32_t>& cps) {
  std::string s;
  s.reserve(cps.size());
  for (char32_t c : cps) append_utf8(s, c);
  return s;
}

std::string describe_code_point(char32_t cp) {
  const std::string code = fmt::format("U+{:04X}", static_cast<std::uint32_t>(cp));
  if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) return code;
  std::string s = "'";
  append_utf8(s, cp);
  return s + "' (" + code + ")";
}

}  // namespace membptt::train
