// Timing of one plain BPTT pass (advance_record x T, then backward x T) of a float32 LSTM at the
// reference size T=1000, B=32, I=64, H=256, 1 layer. Disabled: run it by hand on a Release build:
//   test_nn --gtest_also_run_disabled_tests --gtest_filter='CellsTiming.*'
// Env MEMBPTT_TIMING_CELL=gru|rnn|lstm, MEMBPTT_TIMING_REPS=n change the cell and repetitions.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "membptt/backend/blas.hpp"
#include "membptt/cells/head.hpp"
#include "membptt/cells/params.hpp"
#include "membptt/cells/recurrent_net.hpp"

namespace membptt {
namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

TEST(CellsTiming, DISABLED_PlainBpttLstmT1000) {
  const char* ce = std::getenv("MEMBPTT_TIMING_CELL");
  const char* re = std::getenv("MEMBPTT_TIMING_REPS");
  const CellType cell = ce ? parse_cell(ce) : CellType::Lstm;
  const int reps = re ? std::atoi(re) : 3;
  const int T = 1000, B = 32, I = 64, H = 256, O = 10;
  const NetShape s{cell, I, H, 1, B, O};
  RecurrentNet<float> net(s);
  Head<float> head(s);
  Params<float> p(s), g(s);
  init_pytorch_default(p, 1);
  std::vector<float> x(std::size_t(T) * B * I), c0(net.carry_elems(), 0.0f);
  fill_uniform<float>(x, 1.0f, 2);
  std::vector<std::int64_t> tg(std::size_t(T) * B);
  for (std::size_t k = 0; k < tg.size(); ++k) tg[k] = std::int64_t(k % O);
  const std::size_t R = net.record_elems(), C = net.carry_elems();
  std::vector<float> rec(R * T), d(C), d2(C), a(C), b(C);
  std::printf("cell %s, T=%d B=%d I=%d H=%d, OpenBLAS threads %d, record %zu floats/step (%.0f MB)\n",
              std::string(cell_name(cell)).c_str(), T, B, I, H, backend::gemm_threads(), R,
              double(R) * T * 4 / 1e6);
  double best_f = 1e9, best_b = 1e9, best_bh = 1e9, best_adv = 1e9;
  for (int rep = 0; rep < reps; ++rep) {
    auto xt = [&](int t) { return x.data() + std::size_t(t) * B * I; };
    // advance only (no record)
    auto t0 = Clock::now();
    std::copy(c0.begin(), c0.end(), a.begin());
    for (int t = 0; t < T; ++t) net.advance(p, xt(t), a.data(), a.data());
    auto t1 = Clock::now();
    // forward with records
    const float* cur = c0.data();
    for (int t = 0; t < T; ++t) {
      net.advance_record(p, xt(t), cur, rec.data() + R * t);
      cur = net.record_carry_out(rec.data() + R * t);
    }
    auto t2 = Clock::now();
    // backward, no head (dcarry out of the last step = some constant)
    g.zero();
    std::fill(d.begin(), d.end(), 1e-3f);
    for (int t = T - 1; t >= 0; --t) net.backward(p, xt(t), rec.data() + R * t, d.data(), d.data(), g);
    auto t3 = Clock::now();
    // backward with the per-step cross-entropy head
    g.zero();
    std::fill(d.begin(), d.end(), 0.0f);
    float loss = 0;
    for (int t = T - 1; t >= 0; --t) {
      const float* r = rec.data() + R * t;
      loss += head.step_xent(p, net.top_hidden(net.record_carry_out(r)), tg.data() + t * B,
                             1.0f / (T * B), net.top_hidden(d.data()), g);
      net.backward(p, xt(t), r, d.data(), d.data(), g);
    }
    auto t4 = Clock::now();
    best_adv = std::min(best_adv, secs(t0, t1));
    best_f = std::min(best_f, secs(t1, t2));
    best_b = std::min(best_b, secs(t2, t3));
    best_bh = std::min(best_bh, secs(t3, t4));
    std::printf("rep %d: advance x T %.3f s | advance_record x T %.3f s | backward x T %.3f s | "
                "backward+xent head x T %.3f s | loss %.4f\n",
                rep, secs(t0, t1), secs(t1, t2), secs(t2, t3), secs(t3, t4), double(loss));
  }
  std::printf("best: plain BPTT pass (advance_record x T + backward x T) = %.3f s "
              "(%.3f fwd + %.3f bwd); with xent head %.3f s; advance-only %.3f s\n",
              best_f + best_b, best_f, best_b, best_f + best_bh, best_adv);
}

}  // namespace
}  // namespace membptt
