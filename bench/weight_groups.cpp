// Plain BPTT on the CPU with the cell's weight gradients added per step (group 1) and in groups of
// K backward steps (recurrent_net.hpp's rings, what plan_for_bytes gives long sequences), in one
// process, the two executors alternating pass by pass so that the machine's drift falls on both;
// prints their medians and the median of the paired ratios (issue 18, docs/benchmarks.md).
//
//   weight_groups [--cell lstm|gru|rnn] [--input 64] [--hidden 256] [--batch 32] [--length 1000]
//                 [--threads 2] [--group 8] [--reps 7]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "membptt/backend/blas.hpp"
#include "membptt/exec/budget.hpp"
#include "membptt/exec/executor.hpp"
#include "options.hpp"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  using namespace membptt;
  bench::Options opt("weight_groups",
                      "[--cell lstm|gru|rnn] [--input 64] [--hidden 256] [--batch 32] [--length 1000] [--threads 2] "
                      "[--group 8] [--reps 7]",
                      {{"--cell", "lstm"}, {"--input", "64"}, {"--hidden", "256"}, {"--batch", "32"}, {"--length", "1000"},
                       {"--threads", "2"}, {"--group", "8"}, {"--reps", "7"}});
  opt.parse(argc, argv);
  const std::string& cell_name = opt.text("--cell");
  if (cell_name != "lstm" && cell_name != "gru" && cell_name != "rnn")
    opt.fail("--cell '" + cell_name + "' is not allowed: lstm, gru or rnn");
  try {
    const int I = opt.positive("--input"), H = opt.positive("--hidden"), B = opt.positive("--batch"),
              T = opt.positive("--length"), threads = opt.positive("--threads"), K = opt.positive("--group"),
              reps = opt.positive("--reps");
    const CellType cell = cell_name == "gru" ? CellType::Gru : cell_name == "rnn" ? CellType::Rnn : CellType::Lstm;
    backend::set_gemm_threads(threads);
    const int O = 64;
    const NetShape s{cell, I, H, 1, B, O};
    Params<float> p(s), g(s);
    init_pytorch_default(p, 1);
    std::vector<float> x(static_cast<std::size_t>(T) * B * I);
    fill_uniform<float>(x, 1.f, 2);
    std::vector<std::int64_t> cls(static_cast<std::size_t>(T) * B);
    for (std::size_t i = 0; i < cls.size(); ++i) cls[i] = static_cast<std::int64_t>(i % O);
    const SequenceBatch<float> batch{T, x.data(), cls.data(), nullptr, nullptr};
    Plan per_step = plan_for_bytes(Policy::Full, T, 1e300, state_sizes(s, sizeof(float)), 2.0), grouped = per_step;
    per_step.weight_gradient_group = 1;
    grouped.weight_gradient_group = K;
    Executor<float> a(s, LossKind::Xent, per_step), b(s, LossKind::Xent, grouped);
    std::vector<double> ta, tb, ratio;
    using Clock = std::chrono::steady_clock;
    for (int r = 0; r <= reps; ++r) {  // round 0 warms up
      g.zero();
      const auto t0 = Clock::now();
      a.run(p, batch, g);
      const auto t1 = Clock::now();
      g.zero();
      b.run(p, batch, g);
      const auto t2 = Clock::now();
      if (r == 0) continue;
      ta.push_back(std::chrono::duration<double>(t1 - t0).count());
      tb.push_back(std::chrono::duration<double>(t2 - t1).count());
      ratio.push_back(tb.back() / ta.back());
    }
    std::printf("%s I=%d H=%d B=%d T=%d, %d thread(s), plain BPTT: per step %.3f s, groups of %d %.3f s, "
                "paired ratio median %.3f (%.3f-%.3f)\n",
                cell_name.c_str(), I, H, B, T, threads, median(ta), K, median(tb), median(ratio),
                *std::min_element(ratio.begin(), ratio.end()), *std::max_element(ratio.begin(), ratio.end()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "weight_groups: %s\n", e.what());
    return 2;
  }
  return 0;
}
