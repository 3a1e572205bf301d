#include "cli_common.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <span>

#include "membptt/io/safetensors.hpp"

namespace membptt::cli {
namespace {

std::string trimmed(const std::string& s) {
  const auto a = s.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t") - a + 1);
}

}  // namespace

CLI::Validator integer_in(std::int64_t lo, std::int64_t hi) {
  const std::string allowed = fmt::format("allowed is an integer from {} to {}", lo, hi);
  return CLI::Validator(
      [lo, hi, allowed](std::string& text) -> std::string {
        const std::string t = trimmed(text);
        std::int64_t v = 0;
        const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
        if (ec == std::errc() && end == t.data() + t.size() && !t.empty()) {
          if (v < lo || v > hi) return fmt::format("{} is not allowed: {}", text, allowed);
          text = t;
          return "";
        }
        // Not an integer as typed; a number in range with no fraction (1e6) is still an integer.
        double d = 0;
        const auto [dend, dec] = std::from_chars(t.data(), t.data() + t.size(), d, std::chars_format::general);
        if (dec == std::errc() && dend == t.data() + t.size() && !t.empty() && std::isfinite(d) && d == std::floor(d) &&
            d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) {
          text = fmt::format("{}", static_cast<std::int64_t>(d));
          return "";
        }
        return fmt::format("{} is not allowed: {}", text, allowed);
      },
      fmt::format("INT in [{} - {}]", lo, hi));
}

CLI::Validator number_in(double lo, double hi, bool above) {
  const bool unbounded = hi >= std::numeric_limits<double>::max();
  const char* op = above ? ">" : ">=";
  const std::string allowed = unbounded ? fmt::format("allowed is a finite number {} {:g}", op, lo)
                              : above   ? fmt::format("allowed is a number > {:g} and at most {:g}", lo, hi)
                                        : fmt::format("allowed is a number from {:g} to {:g}", lo, hi);
  return CLI::Validator(
      [lo, hi, above, allowed](std::string& text) -> std::string {
        const std::string t = trimmed(text);
        double v = 0;
        const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v, std::chars_format::general);
        if (t.empty() || end != t.data() + t.size() || (ec != std::errc() && ec != std::errc::result_out_of_range))
          return fmt::format("'{}' is not a number: {}", text, allowed);
        if (ec == std::errc::result_out_of_range || !std::isfinite(v) || v < lo || (above && v == lo) || v > hi)
          return fmt::format("{} is not allowed: {}", text, allowed);
        text = t;
        return "";
      },
      unbounded ? fmt::format("NUMBER {} {:g}", op, lo) : fmt::format("NUMBER in [{:g} - {:g}]", lo, hi));
}

CLI::Validator unsigned64() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const std::string t = trimmed(text);
        std::uint64_t v = 0;
        const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
        if (!t.empty() && ec == std::errc() && end == t.data() + t.size()) {
          text = t;
          return "";
        }
        double d = 0;  // 1e3 is an integer too (exactly, up to 2^53)
        const auto [dend, dec] = std::from_chars(t.data(), t.data() + t.size(), d, std::chars_format::general);
        if (!t.empty() && dec == std::errc() && dend == t.data() + t.size() && d >= 0 && d <= 9007199254740992.0 &&
            d == std::floor(d)) {
          text = fmt::format("{}", static_cast<std::uint64_t>(d));
          return "";
        }
        return fmt::format("{} is not allowed: allowed is an integer from 0 to {}", text, UINT64_MAX);
      },
      "UINT64");
}

void write_file_atomic(const std::string& path, const std::string& text) {
  membptt::write_file_atomic(path, std::as_bytes(std::span(text.data(), text.size())));
}

std::string close_stdout() {
  // std::cout shares stdout's buffer (sync_with_stdio), so its flush may be the one that fails:
  // keep the first errno seen.
  int err = 0;
  auto note = [&err](bool failed) {
    if (failed && err == 0) err = errno;
    return failed;
  };
  errno = 0;
  std::cout.flush();
  bool failed = note(!std::cout);
  errno = 0;
  failed |= note(std::fflush(stdout) != 0);
  failed |= std::ferror(stdout) != 0;
  errno = 0;
  failed |= note(std::fclose(stdout) != 0);
  if (!failed) return "";
  return err != 0 ? std::strerror(err) : "a write failed";
}

}  // namespace membptt::cli
