// Shared pieces of the command-line tool: errors, checked numeric options, atomic file output,
// and the check that standard output really reached its file.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace membptt::cli {

// A user error: printed as one line "membptt: error: ..." with exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Checks on a numeric option's text before CLI11 converts it, so that the error echoes what the
// user typed ("--alpha: 1e400 is not allowed: allowed is a number from 1 to 1e+06") instead of a
// converted value (inf) or a conversion failure. They rewrite the text they accept (blanks around
// it dropped, a whole number written as 1e6 as 1000000): attach them with ->transform().
// number_in: `above` excludes lo itself; hi = the largest double means no upper bound.
CLI::Validator integer_in(std::int64_t lo, std::int64_t hi);
CLI::Validator number_in(double lo, double hi, bool above = false);
// Any unsigned 64-bit integer (seeds).
CLI::Validator unsigned64();

// Writes `text` to `path` through a temporary file, fsync and rename, so a reader never sees a
// half-written file and a crash leaves the old file intact.
void write_file_atomic(const std::string& path, const std::string& text);

// Flushes and closes standard output and reports whether it held everything written (a full disk,
// a closed pipe or /dev/full show here, not in the writes). Returns "" or the reason.
std::string close_stdout();

}  // namespace membptt::cli
