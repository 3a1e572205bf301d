// Each group of subcommands registers itself here; the chosen one sets `action`.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace membptt::cli {
void add_plan_commands(CLI::App& app, std::function<int()>& action);
#ifdef MEMBPTT_HAVE_NN
void add_nn_commands(CLI::App& app, std::function<int()>& action);     // init, grad (cmd_nn.cpp)
void add_train_commands(CLI::App& app, std::function<int()>& action);  // train, eval, sample, plot, demo (cmd_train.cpp)
void add_bench_commands(CLI::App& app, std::function<int()>& action);  // bench (cmd_bench.cpp)
#endif
}  // namespace membptt::cli
