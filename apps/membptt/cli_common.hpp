// Shared pieces of the command-line tool: errors, atomic file output.
#pragma once
#include <stdexcept>
#include <string>

namespace membptt::cli {

// A user error: printed as one line "membptt: error: ..." with exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Writes `text` to `path` through a temporary file, fsync and rename, so a reader never sees a
// half-written file and a crash leaves the old file intact.
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace membptt::cli
