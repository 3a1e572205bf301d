// membptt: memory-efficient backpropagation through time from the command line.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <unistd.h>

#include <cstdio>
#include <new>
#include <stdexcept>
#include <string>
#include <filesystem>
#include <functional>
#include <string_view>

#include "cli_common.hpp"
#include "commands.hpp"
#include "membptt/plan/planner.hpp"

#ifdef MEMBPTT_CUDA_SIBLING
namespace {
// This binary has no CUDA (so that it starts fast); a command that asks for --device cuda runs in
// the CUDA build beside it instead, with the same arguments.
void run_cuda_sibling_if_asked(char** argv) {
  bool cuda = false;
  for (char** a = argv + 1; *a; ++a) {
    const std::string_view arg(*a);
    if ((arg == "--device" && a[1] && std::string_view(a[1]).starts_with("cuda")) || arg.starts_with("--device=cuda"))
      cuda = true;
  }
  if (!cuda) return;
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return;
  const std::string sibling = (self.parent_path() / MEMBPTT_CUDA_SIBLING).string();
  ::execv(sibling.c_str(), argv);  // returns only on failure: then this build says it has no CUDA
}
}  // namespace
#endif

namespace {

// Runs the command; every error becomes one line on stderr and an exit status (2: usage, 1: other).
int run(CLI::App& app, std::function<int()>& action, int argc, char** argv) {
  auto fail = [](int status, const std::string& text) {
    fmt::print(stderr, "membptt: error: {}\n", text);
    return status;
  };
  try {
    app.parse(argc, argv);
    return action ? action() : 0;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(2, fmt::format("{} (see membptt --help)", e.what()));
  } catch (const membptt::PlanError& e) {
    return fail(2, e.what());
  } catch (const membptt::cli::UsageError& e) {
    return fail(2, e.what());
  } catch (const std::invalid_argument& e) {  // a value given is not allowed (e.g. an unknown cell type)
    return fail(2, e.what());
  } catch (const std::bad_alloc&) {
    // Allocations whose size a user decides say so themselves (backend::AllocationError); this is
    // the rest.
    return fail(1, "out of memory: a memory allocation failed (try smaller sizes, a shorter --length or a smaller --batch)");
  } catch (const std::filesystem::filesystem_error& e) {
    // libstdc++'s text ("filesystem error: cannot create directories: ...") is the library's, not ours.
    const std::string where = e.path1().empty() ? "" : e.path1().string() + ": ";
    return fail(1, fmt::format("{}{}", where, e.code().message()));
  } catch (const std::length_error&) {
    return fail(1, "a size is too large to represent (try smaller sizes, a shorter --length or a smaller --batch)");
  } catch (const std::exception& e) {
    return fail(1, e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
#ifdef MEMBPTT_CUDA_SIBLING
  run_cuda_sibling_if_asked(argv);
#endif
  CLI::App app{"membptt: train recurrent networks on long sequences inside a memory budget (Gruslys et al. 2016)"};
  app.require_subcommand(1);
  std::function<int()> action;
  membptt::cli::add_plan_commands(app, action);
#ifdef MEMBPTT_HAVE_NN
  membptt::cli::add_nn_commands(app, action);
  membptt::cli::add_train_commands(app, action);
  membptt::cli::add_bench_commands(app, action);
#endif
  int status = run(app, action, argc, argv);
  // Output that never reached its file is an error too (`plan --json > file` on a full disk).
  if (const std::string why = membptt::cli::close_stdout(); !why.empty()) {
    fmt::print(stderr, "membptt: error: cannot write standard output: {}\n", why);
    if (status == 0) status = 1;
  }
  return status;
}
