// The products of one LSTM step on the CPU, each timed alone (issue 18, docs/benchmarks.md): the
// forward's [x h] W^T (backend::weight_products), the backward's dL/dh_{t-1} = dg W_hh read as it
// is stored (its columns: backend::gemm, what the cell runs) and through a transposed W_hh
// (weight_products: faster at B = 32 and H = 1024, slower at B <= 16, so not used; see
// docs/benchmarks.md), and a group of backward steps' weight gradients (the rings' products).
// Prints microseconds (median of --reps calls) and GFLOP/s (2 m n k per product), and whether the
// two forms of dL/dh agree bit for bit.
//
//   step_products [--input 64] [--hidden 256] [--batch 32] [--threads 2] [--group 8] [--reps 200]
//
// The weights sit in huge pages as a network's do (AlignedBuffer). The program waits a second
// before timing: OpenBLAS's threads spin for a while after they start and would take a core.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <thread>
#include <vector>

#include "membptt/backend/blas.hpp"
#include "membptt/backend/buffer.hpp"
#include "membptt/cells/params.hpp"
#include "options.hpp"

namespace {

template <class F>
double median_seconds(int reps, F&& f) {
  std::vector<double> v;
  for (int r = 0; r <= reps; ++r) {  // call 0 warms up
    const auto t0 = std::chrono::steady_clock::now();
    f();
    if (r > 0) v.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void report(const char* what, double seconds, double flops) {
  std::printf("%-44s %9.1f us %7.0f GFLOP/s\n", what, seconds * 1e6, flops / seconds * 1e-9);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace membptt;
  using backend::AlignedBuffer;
  using backend::Trans;
  bench::Options opt("step_products", "[--input 64] [--hidden 256] [--batch 32] [--threads 2] [--group 8] [--reps 200]",
                      {{"--input", "64"}, {"--hidden", "256"}, {"--batch", "32"}, {"--threads", "2"}, {"--group", "8"},
                       {"--reps", "200"}});
  opt.parse(argc, argv);
  try {
    const int I = opt.positive("--input"), H = opt.positive("--hidden"), B = opt.positive("--batch"),
              threads = opt.positive("--threads"), K = opt.positive("--group"), reps = opt.positive("--reps");
    const int GH = 4 * H, rows = K * B;
    backend::set_gemm_threads(threads);
    const auto n = [](long a, long b) { return static_cast<std::size_t>(a) * static_cast<std::size_t>(b); };
    AlignedBuffer<float> w_ih(n(GH, I)), w_hh(n(GH, H)), w_hh_t(n(H, GH)), dw_ih(n(GH, I)), dw_hh(n(GH, H));
    std::vector<float> x(n(rows, I)), h(n(rows, H)), dg(n(rows, GH)), pre(n(B, GH)), dh(n(B, H)), dh_t(n(B, H));
    for (auto* v : {&x, &h, &dg}) fill_uniform<float>(*v, 1.f, 3);
    fill_uniform<float>(w_ih.span(), 0.1f, 4);
    fill_uniform<float>(w_hh.span(), 0.1f, 5);
    backend::transpose<float>(GH, H, w_hh.data(), w_hh_t.data());
    std::vector<float> scratch(std::max(backend::weight_products_scratch(B, GH, I, H), backend::weight_products_scratch(B, H, GH, 0)) + 1);
    std::this_thread::sleep_for(std::chrono::seconds(1));

    std::printf("LSTM I=%d H=%d B=%d, %d thread(s), weight-gradient group of %d steps\n", I, H, B, threads, K);
    // Warm up for about 50 ms first: in 1 of 4 runs the first ~25 ms after the pool's workers slept
    // ran the forward product 2x slower on 2 threads (a transient; passes do not show it).
    const auto forward = [&] {
      backend::weight_products<float>(B, GH, x.data(), I, w_ih.data(), h.data(), H, w_hh.data(), pre.data(), scratch.data());
    };
    for (const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(50); std::chrono::steady_clock::now() < end;)
      forward();
    report("forward [x h] W^T", median_seconds(reps, forward), 2.0 * B * GH * (I + H));
    report("dL/dh = dg W_hh, W_hh as stored", median_seconds(reps, [&] {
             backend::gemm<float>(Trans::No, Trans::No, B, H, GH, 1.f, dg.data(), GH, w_hh.data(), H, 0.f, dh.data(), H);
           }), 2.0 * B * GH * H);
    report("dL/dh through W_hh^T", median_seconds(reps, [&] {
             backend::weight_products<float>(B, H, dg.data(), GH, w_hh_t.data(), nullptr, 0, nullptr, dh_t.data(), scratch.data());
           }), 2.0 * B * GH * H);
    report("weight gradients of the group (per step)", median_seconds(std::max(reps / K, 3), [&] {
             backend::gemm<float>(Trans::Yes, Trans::No, GH, I, rows, 1.f, dg.data(), GH, x.data(), I, 1.f, dw_ih.data(), I);
             backend::gemm<float>(Trans::Yes, Trans::No, GH, H, rows, 1.f, dg.data(), GH, h.data(), H, 1.f, dw_hh.data(), H);
           }) / K, 2.0 * B * GH * (I + H));
    std::printf("the two dL/dh bit for bit: %s\n", dh == dh_t ? "equal" : "different");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "step_products: %s\n", e.what());
    return 2;
  }
  return 0;
}
