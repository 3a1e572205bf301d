// membptt: memory-efficient backpropagation through time from the command line.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <functional>

#include "cli_common.hpp"
#include "commands.hpp"
#include "membptt/plan/planner.hpp"

int main(int argc, char** argv) {
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
