// membptt: memory-efficient backpropagation through time from the command line.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <unistd.h>

#include <cstdio>
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
  try {
    app.parse(argc, argv);
    return action ? action() : 0;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "membptt: error: {} (see membptt --help)\n", e.what());
    return 2;
  } catch (const membptt::PlanError& e) {
    fmt::print(stderr, "membptt: error: {}\n", e.what());
    return 2;
  } catch (const membptt::cli::UsageError& e) {
    fmt::print(stderr, "membptt: error: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "membptt: error: {}\n", e.what());
    return 1;
  }
}
