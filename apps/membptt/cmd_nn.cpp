// Commands that run real networks: registered once the executor lands.
#include "commands.hpp"

namespace membptt::cli {
void add_nn_commands(CLI::App&, std::function<int()>&) {}
}  // namespace membptt::cli
