// Parsing of a device name as the command line takes it: "cpu", "cuda" (device 0) or "cuda:N".
// Header-only and free of CUDA, so a build without the CUDA backend can parse and refuse it.
#pragma once
#include <cctype>
#include <stdexcept>
#include <string>

namespace membptt::cuda {

struct DeviceSpec {
  bool cuda = false;
  int index = 0;
  std::string text() const { return cuda ? "cuda:" + std::to_string(index) : "cpu"; }
};

// Throws std::invalid_argument naming the text and the forms allowed.
inline DeviceSpec parse_device_spec(const std::string& s) {
  const auto bad = [&] {
    return std::invalid_argument("device '" + s + "' is not allowed: use cpu, cuda or cuda:N (N = 0, 1, ...)");
  };
  if (s == "cpu") return {false, 0};
  if (s == "cuda") return {true, 0};
  if (s.rfind("cuda:", 0) != 0 || s.size() == 5 || s.size() > 5 + 6) throw bad();
  int n = 0;
  for (std::size_t i = 5; i < s.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) throw bad();
    n = n * 10 + (s[i] - '0');
  }
  return {true, n};
}

}  // namespace membptt::cuda
