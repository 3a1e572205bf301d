// Options of the plain benchmark programs (weight_groups, step_products): `--name value` pairs
// over a table of defaults, `-h`/`--help` for the usage, and integers read whole (no "12abc", no
// "1.5", no overflow). Bad input: one line on stderr naming the value and what is allowed, exit 2.
#pragma once

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

namespace membptt::bench {

class Options {
 public:
  // defaults: every option the program takes, with its default value as text.
  Options(const char* program, const char* usage, std::map<std::string, std::string> defaults)
      : program_(program), usage_(usage), values_(std::move(defaults)) {}

  // Reads argv; prints the usage and exits 0 on -h/--help, exits 2 on anything it cannot take.
  void parse(int argc, char** argv) {
    for (int i = 1; i < argc; i += 2) {
      const std::string name = argv[i];
      if (name == "-h" || name == "--help") {
        std::printf("usage: %s %s\n", program_, usage_);
        std::exit(0);
      }
      if (!values_.count(name)) fail("unknown option '" + name + "' (--help lists them)");
      if (i + 1 >= argc) fail(name + " needs a value");
      values_[name] = argv[i + 1];
    }
  }

  const std::string& text(const std::string& name) const { return values_.at(name); }

  // The option as an integer >= 1, read whole.
  int positive(const std::string& name) const {
    const std::string& v = values_.at(name);
    int n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || end != v.data() + v.size() || n < 1)
      fail(name + " '" + v + "' is not allowed: an integer from 1 to 2147483647");
    return n;
  }

  [[noreturn]] void fail(const std::string& why) const {
    std::fprintf(stderr, "%s: %s\n", program_, why.c_str());
    std::exit(2);
  }

 private:
  const char* program_;
  const char* usage_;
  std::map<std::string, std::string> values_;
};

}  // namespace membptt::bench
