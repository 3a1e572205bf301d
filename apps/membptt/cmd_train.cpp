// Training commands: train, eval, sample, plot, demo.
#include "commands.hpp"

namespace membptt::cli {
void add_train_commands(CLI::App&, std::function<int()>&) {}
}  // namespace membptt::cli
