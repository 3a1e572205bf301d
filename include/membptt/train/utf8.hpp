// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace membptt::train {

// The byte offset of the first byte that does not start a valid sequence; nullopt when all is valid.
std::optional<std::size_t> find_invalid_utf8(std::string_view s);

// The code points of valid UTF-8. Throws TrainError "<what> is not valid UTF-8: bad byte 0x.. at
// byte offset N (line L)" otherwise.
std::vector<char32_t> decode_utf8(std::string_view s, const std::string& what);

void append_utf8(std::string& out, char32_t cp);
std::string encode_utf8(const std::vector<char32_t>& cps);

// For messages: "'a' (U+0061)", or just "U+000A" for a control character.
std::string describe_code_point(char32_t cp);

}  // namespace membptt::train
