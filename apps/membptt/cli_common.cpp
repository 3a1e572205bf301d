#include "cli_common.hpp"

#include <span>

#include "membptt/io/safetensors.hpp"

namespace membptt::cli {

void write_file_atomic(const std::string& path, const std::string& text) {
  membptt::write_file_atomic(path, std::as_bytes(std::span(text.data(), text.size())));
}

}  // namespace membptt::cli
