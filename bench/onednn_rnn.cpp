// oneDNN's LSTM / GRU training primitives timed on the shapes membptt's bench takes (issue 18):
// one layer, unidirectional, float32, CPU engine. One iteration is one forward-training pass and
// one backward pass over T steps; the median of --reps timed iterations (after one untimed warm-up)
// is printed with GFLOP/s and oneDNN's training memory (the workspace: what the forward pass keeps
// for the backward one).
//
// The GRU is oneDNN's lbr_gru ("linear-before-reset"), which is PyTorch's nn.GRU (and membptt's);
// oneDNN's plain gru_forward applies the reset gate before the recurrent product and is a different
// cell.
//
// FLOPs counted (the same count the driver bench/onednn_vs_membptt.sh uses for membptt): the GEMM
// FLOPs only, G = 4 (LSTM) or 3 (GRU):
//   forward  2*T*B*G*H*(I+H)          (x W_ih and h W_hh for every step)
//   backward 2 * forward              (dW_ih + dW_hh, and dx + dh_prev)
//   total    3 * forward = 6*T*B*G*H*(I+H)
// Elementwise work (gate nonlinearities, biases) is not counted.
//
// Each timed iteration also zeroes the weight and bias gradients (oneDNN 2.x's RNN backward
// accumulates into them) and reorders the plain ldigo weights into the formats the primitives chose
// when those differ (what a training step must do after each weight update); both are tiny beside
// the T-step passes.
//
// Usage: onednn_rnn [--cell lstm|gru] [--length T] [--batch B] [--input I] [--hidden H] [--reps R]
//                   [--json FILE] [--check]
// --check: also compare two weight gradients with central finite differences of
// L = sum(dL/dh . dst_layer) (two extra forward passes each; for small shapes).
// Threads: this oneDNN is built with OpenMP, so OMP_NUM_THREADS sets them.
#include <dnnl.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#ifdef MEMBPTT_BENCH_OPENMP
#include <omp.h>
#endif

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

struct Options {
  std::string cell = "lstm";
  std::int64_t length = 1000, batch = 32, input = 64, hidden = 256, reps = 3;
  std::string json;
  bool check = false;
};

[[noreturn]] void bad(const std::string& what) {
  std::fprintf(stderr, "onednn_rnn: %s\n", what.c_str());
  std::exit(2);
}

std::int64_t positive(std::string_view opt, std::string_view v) {
  std::int64_t x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || p != v.data() + v.size() || x < 1 || x > (std::int64_t{1} << 40))
    bad("bad value '" + std::string(v) + "' for " + std::string(opt) + " (a positive integer)");
  return x;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "-h" || a == "--help") {
      std::printf(
          "usage: onednn_rnn [--cell lstm|gru] [--length T] [--batch B] [--input I] [--hidden H] "
          "[--reps R] [--json FILE] [--check]\n"
          "oneDNN forward-training + backward pass, median of R timed iterations after one warm-up;\n"
          "threads: OMP_NUM_THREADS\n");
      std::exit(0);
    }
    if (a == "--check") {
      o.check = true;
      continue;
    }
    if (i + 1 >= argc) bad("option '" + std::string(a) + "' needs a value (or is unknown)");
    std::string_view v = argv[++i];
    if (a == "--cell") {
      if (v != "lstm" && v != "gru") bad("bad value '" + std::string(v) + "' for --cell (lstm | gru)");
      o.cell = v;
    } else if (a == "--length") o.length = positive(a, v);
    else if (a == "--batch") o.batch = positive(a, v);
    else if (a == "--input") o.input = positive(a, v);
    else if (a == "--hidden") o.hidden = positive(a, v);
    else if (a == "--reps") o.reps = positive(a, v);
    else if (a == "--json") {
      if (v.empty()) bad("bad value '' for --json");
      o.json = v;
    } else bad("unknown option '" + std::string(a) + "'");
  }
  return o;
}

void fill(const memory& m, float scale, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(-scale, scale);
  auto* p = static_cast<float*>(m.get_data_handle());
  const std::size_t n = m.get_desc().get_size() / sizeof(float);
  for (std::size_t i = 0; i < n; ++i) p[i] = d(rng);
}

void zero(const memory& m) { std::memset(m.get_data_handle(), 0, m.get_desc().get_size()); }

int threads_used() {
#ifdef MEMBPTT_BENCH_OPENMP
  return omp_get_max_threads();
#else
  const char* e = std::getenv("OMP_NUM_THREADS");
  return e ? std::atoi(e) : 0;  // 0: unknown (OpenMP's default, one per core)
#endif
}

// Plain-layout copy of m (reordered when m's layout is not `plain`).
std::vector<float> to_plain(memory m, const memory::desc& plain, const dnnl::engine& eng,
                            dnnl::stream& s) {
  memory out(plain, eng);
  if (m.get_desc() == plain) {
    std::memcpy(out.get_data_handle(), m.get_data_handle(), plain.get_size());
  } else {
    dnnl::reorder(m, out).execute(s, m, out);
    s.wait();
  }
  auto* p = static_cast<const float*>(out.get_data_handle());
  return {p, p + plain.get_size() / sizeof(float)};
}

struct GradStats {
  std::size_t n = 0, nonzero = 0, nonfinite = 0;
  double max_abs = 0;
};

GradStats stats(const std::vector<float>& v) {
  GradStats g;
  g.n = v.size();
  for (float x : v) {
    if (!std::isfinite(x)) ++g.nonfinite;
    else {
      if (x != 0.0f) ++g.nonzero;
      g.max_abs = std::max(g.max_abs, double(std::fabs(x)));
    }
  }
  return g;
}

bool write_json(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return false;
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = (std::fflush(f) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  if (ok) ok = std::rename(tmp.c_str(), path.c_str()) == 0;
  if (!ok) {
    const int e = errno;
    std::remove(tmp.c_str());
    errno = e;
  }
  return ok;
}

int run(const Options& o) {
  const bool lstm = o.cell == "lstm";
  const memory::dim T = o.length, B = o.batch, I = o.input, H = o.hidden;
  const memory::dim G = lstm ? 4 : 3;          // gates in the GEMMs
  const memory::dim Gb = 4;                    // bias rows: LSTM 4, lbr_gru 3 + 1 (the linear-before-reset one)
  const auto dir = dnnl::rnn_direction::unidirectional_left2right;

  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);

  const memory::desc src_layer_md({T, B, I}, dt::f32, tag::tnc);
  const memory::desc dst_layer_md({T, B, H}, dt::f32, tag::tnc);
  const memory::desc iter_md({1, 1, B, H}, dt::f32, tag::ldnc);
  const memory::desc wl_plain({1, 1, I, G, H}, dt::f32, tag::ldigo);
  const memory::desc wi_plain({1, 1, H, G, H}, dt::f32, tag::ldigo);
  const memory::desc wl_any({1, 1, I, G, H}, dt::f32, tag::any);
  const memory::desc wi_any({1, 1, H, G, H}, dt::f32, tag::any);
  const memory::desc bias_md({1, 1, Gb, H}, dt::f32, tag::ldgo);
  const memory::desc none;  // zero descriptor: no src_iter_c etc. for the GRU

  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // so that its size can be reported

  dnnl::primitive fwd, bwd;
  dnnl::rnn_primitive_desc_base fpd, bpd;
  if (lstm) {
    dnnl::lstm_forward::desc fd(dnnl::prop_kind::forward_training, dir, src_layer_md, iter_md, iter_md,
                                wl_any, wi_any, bias_md, dst_layer_md, iter_md, iter_md);
    dnnl::lstm_forward::primitive_desc f(fd, attr, eng);
    dnnl::lstm_backward::desc bd(dnnl::prop_kind::backward, dir, src_layer_md, iter_md, iter_md, wl_any,
                                 wi_any, bias_md, dst_layer_md, iter_md, iter_md, src_layer_md, iter_md,
                                 iter_md, wl_any, wi_any, bias_md, dst_layer_md, iter_md, iter_md);
    dnnl::lstm_backward::primitive_desc b(bd, attr, eng, f);
    fwd = dnnl::lstm_forward(f);
    bwd = dnnl::lstm_backward(b);
    fpd = f;
    bpd = b;
  } else {
    dnnl::lbr_gru_forward::desc fd(dnnl::prop_kind::forward_training, dir, src_layer_md, iter_md, wl_any,
                                   wi_any, bias_md, dst_layer_md, iter_md);
    dnnl::lbr_gru_forward::primitive_desc f(fd, attr, eng);
    dnnl::lbr_gru_backward::desc bd(dnnl::prop_kind::backward, dir, src_layer_md, iter_md, wl_any, wi_any,
                                    bias_md, dst_layer_md, iter_md, src_layer_md, iter_md, wl_any, wi_any,
                                    bias_md, dst_layer_md, iter_md);
    dnnl::lbr_gru_backward::primitive_desc b(bd, attr, eng, f);
    fwd = dnnl::lbr_gru_forward(f);
    bwd = dnnl::lbr_gru_backward(b);
    fpd = f;
    bpd = b;
  }

  std::mt19937 rng(1234);
  const float wscale = 1.0f / std::sqrt(float(H));  // PyTorch's init range
  memory src_layer(src_layer_md, eng), src_iter(iter_md, eng), src_iter_c(iter_md, eng);
  memory dst_layer(dst_layer_md, eng), dst_iter(iter_md, eng), dst_iter_c(iter_md, eng);
  memory wl_user(wl_plain, eng), wi_user(wi_plain, eng), bias(bias_md, eng);
  fill(src_layer, 1.0f, rng);
  zero(src_iter);
  zero(src_iter_c);
  fill(wl_user, wscale, rng);
  fill(wi_user, wscale, rng);
  fill(bias, wscale, rng);

  // Weights in the formats each primitive chose (forward and backward may differ).
  const bool fwd_reorder = fpd.weights_layer_desc() != wl_plain || fpd.weights_iter_desc() != wi_plain;
  const bool bwd_reorder = bpd.weights_layer_desc() != wl_plain || bpd.weights_iter_desc() != wi_plain;
  memory wl_fwd = fwd_reorder ? memory(fpd.weights_layer_desc(), eng) : wl_user;
  memory wi_fwd = fwd_reorder ? memory(fpd.weights_iter_desc(), eng) : wi_user;
  memory wl_bwd = bwd_reorder ? memory(bpd.weights_layer_desc(), eng) : wl_user;
  memory wi_bwd = bwd_reorder ? memory(bpd.weights_iter_desc(), eng) : wi_user;
  dnnl::reorder r_wl_fwd, r_wi_fwd, r_wl_bwd, r_wi_bwd;
  if (fwd_reorder) r_wl_fwd = dnnl::reorder(wl_user, wl_fwd), r_wi_fwd = dnnl::reorder(wi_user, wi_fwd);
  if (bwd_reorder) r_wl_bwd = dnnl::reorder(wl_user, wl_bwd), r_wi_bwd = dnnl::reorder(wi_user, wi_bwd);

  const memory::desc ws_md = fpd.workspace_desc();
  const std::size_t ws_bytes = ws_md.get_size();
  memory workspace(ws_md, eng);
  const std::size_t fwd_scratch = fpd.scratchpad_desc().get_size();
  const std::size_t bwd_scratch = bpd.scratchpad_desc().get_size();
  memory scratch_f(fpd.scratchpad_desc(), eng), scratch_b(bpd.scratchpad_desc(), eng);

  memory diff_src_layer(src_layer_md, eng), diff_src_iter(iter_md, eng), diff_src_iter_c(iter_md, eng);
  memory diff_wl(bpd.diff_weights_layer_desc(), eng), diff_wi(bpd.diff_weights_iter_desc(), eng);
  memory diff_bias(bpd.diff_bias_desc(), eng);
  memory diff_dst_layer(dst_layer_md, eng), diff_dst_iter(iter_md, eng), diff_dst_iter_c(iter_md, eng);
  fill(diff_dst_layer, 0.1f, rng);  // stands for the per-step loss gradient a head would give
  zero(diff_dst_iter);
  zero(diff_dst_iter_c);

  std::unordered_map<int, memory> fargs{
      {DNNL_ARG_SRC_LAYER, src_layer}, {DNNL_ARG_SRC_ITER, src_iter},
      {DNNL_ARG_WEIGHTS_LAYER, wl_fwd}, {DNNL_ARG_WEIGHTS_ITER, wi_fwd},
      {DNNL_ARG_BIAS, bias},           {DNNL_ARG_DST_LAYER, dst_layer},
      {DNNL_ARG_DST_ITER, dst_iter},   {DNNL_ARG_WORKSPACE, workspace},
      {DNNL_ARG_SCRATCHPAD, scratch_f}};
  std::unordered_map<int, memory> bargs{
      {DNNL_ARG_SRC_LAYER, src_layer},           {DNNL_ARG_SRC_ITER, src_iter},
      {DNNL_ARG_WEIGHTS_LAYER, wl_bwd},          {DNNL_ARG_WEIGHTS_ITER, wi_bwd},
      {DNNL_ARG_BIAS, bias},                     {DNNL_ARG_DST_LAYER, dst_layer},
      {DNNL_ARG_DST_ITER, dst_iter},             {DNNL_ARG_WORKSPACE, workspace},
      {DNNL_ARG_DIFF_SRC_LAYER, diff_src_layer}, {DNNL_ARG_DIFF_SRC_ITER, diff_src_iter},
      {DNNL_ARG_DIFF_WEIGHTS_LAYER, diff_wl},    {DNNL_ARG_DIFF_WEIGHTS_ITER, diff_wi},
      {DNNL_ARG_DIFF_BIAS, diff_bias},           {DNNL_ARG_DIFF_DST_LAYER, diff_dst_layer},
      {DNNL_ARG_DIFF_DST_ITER, diff_dst_iter},   {DNNL_ARG_SCRATCHPAD, scratch_b}};
  if (lstm) {
    fargs.insert({{DNNL_ARG_SRC_ITER_C, src_iter_c}, {DNNL_ARG_DST_ITER_C, dst_iter_c}});
    bargs.insert({{DNNL_ARG_SRC_ITER_C, src_iter_c},
                  {DNNL_ARG_DST_ITER_C, dst_iter_c},
                  {DNNL_ARG_DIFF_SRC_ITER_C, diff_src_iter_c},
                  {DNNL_ARG_DIFF_DST_ITER_C, diff_dst_iter_c}});
  }

  auto iteration = [&] {
    if (fwd_reorder) r_wl_fwd.execute(s, wl_user, wl_fwd), r_wi_fwd.execute(s, wi_user, wi_fwd);
    fwd.execute(s, fargs);
    if (bwd_reorder) r_wl_bwd.execute(s, wl_user, wl_bwd), r_wi_bwd.execute(s, wi_user, wi_bwd);
    zero(diff_wl);  // oneDNN 2.x accumulates into the weight gradients
    zero(diff_wi);
    zero(diff_bias);
    bwd.execute(s, bargs);
    s.wait();
  };

  iteration();  // warm-up
  std::vector<double> secs;
  for (std::int64_t r = 0; r < o.reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    iteration();
    secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<double> sorted = secs;
  std::sort(sorted.begin(), sorted.end());
  const std::size_t n = sorted.size();
  const double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  const double fwd_flops = 2.0 * double(T) * double(B) * double(G) * double(H) * double(I + H);
  const double flops = 3.0 * fwd_flops;
  const double gflops = flops / median * 1e-9;

  // One cheap sanity check of the gradients: finite and not all zero.
  const GradStats gwl = stats(to_plain(diff_wl, wl_plain, eng, s));
  const GradStats gwi = stats(to_plain(diff_wi, wi_plain, eng, s));
  const GradStats gx = stats(to_plain(diff_src_layer, src_layer_md, eng, s));
  const bool grads_ok = gwl.nonfinite + gwi.nonfinite + gx.nonfinite == 0 && gwl.nonzero > 0 &&
                        gwi.nonzero > 0 && gx.nonzero > 0;

  // --check: dL/dW for the largest-gradient element of each weight matrix against central
  // differences of L = sum(diff_dst_layer * dst_layer), the loss whose dL/dh diff_dst_layer is.
  double worst_rel = 0;
  if (o.check) {
    const auto* g = static_cast<const float*>(diff_dst_layer.get_data_handle());
    const auto* h = static_cast<const float*>(dst_layer.get_data_handle());
    const std::size_t nh = dst_layer_md.get_size() / sizeof(float);
    auto loss = [&] {
      if (fwd_reorder) r_wl_fwd.execute(s, wl_user, wl_fwd), r_wi_fwd.execute(s, wi_user, wi_fwd);
      fwd.execute(s, fargs);
      s.wait();
      double l = 0;
      for (std::size_t i = 0; i < nh; ++i) l += double(g[i]) * double(h[i]);
      return l;
    };
    const std::vector<float> awl = to_plain(diff_wl, wl_plain, eng, s), awi = to_plain(diff_wi, wi_plain, eng, s);
    for (int which = 0; which < 2; ++which) {
      const std::vector<float>& a = which ? awi : awl;
      auto* w = static_cast<float*>((which ? wi_user : wl_user).get_data_handle());
      std::size_t k = 0;
      for (std::size_t i = 1; i < a.size(); ++i)
        if (std::fabs(a[i]) > std::fabs(a[k])) k = i;
      const float w0 = w[k], eps = 1e-2f;
      w[k] = w0 + eps;
      const double lp = loss();
      w[k] = w0 - eps;
      const double lm = loss();
      w[k] = w0;
      const double num = (lp - lm) / (2.0 * double(eps)), rel = std::fabs(num - a[k]) / std::max(1e-6, std::fabs(num));
      worst_rel = std::max(worst_rel, rel);
      std::printf("check: dL/d%s[%zu] oneDNN %.6g, central difference %.6g, relative error %.2e\n",
                  which ? "W_iter" : "W_layer", k, double(a[k]), num, rel);
    }
  }
  const bool check_ok = !o.check || worst_rel < 1e-2;

  const int threads = threads_used();
  const dnnl_version_t* v = dnnl_version();
  const double MiB = 1024.0 * 1024.0;
  std::printf("oneDNN %d.%d.%d %s (%s), T=%lld B=%lld I=%lld H=%lld, threads=%d (OMP_NUM_THREADS), reps=%lld\n",
              v->major, v->minor, v->patch, lstm ? "lstm" : "lbr_gru", "forward_training + backward",
              (long long)T, (long long)B, (long long)I, (long long)H, threads, (long long)o.reps);
  std::printf("median %.6f s per iteration (min %.6f, max %.6f)\n", median, sorted.front(), sorted.back());
  std::printf("%.2f GFLOP/s, counting GEMM FLOPs only: 3 * 2*T*B*G*H*(I+H) with G=%lld (forward once, "
              "backward twice) = %.4g FLOP\n",
              gflops, (long long)G, flops);
  std::printf("workspace (kept from forward for backward) %zu bytes = %.2f MiB; dst_layer %.2f MiB; "
              "scratchpad forward %.2f MiB, backward %.2f MiB\n",
              ws_bytes, ws_bytes / MiB, dst_layer_md.get_size() / MiB, fwd_scratch / MiB, bwd_scratch / MiB);
  std::printf("weights reordered from ldigo: forward %s, backward %s (inside the timed iteration)\n",
              fwd_reorder ? "yes" : "no", bwd_reorder ? "yes" : "no");
  std::printf("gradients: dW_layer %zu/%zu nonzero max|.| %.3g, dW_iter %zu/%zu nonzero max|.| %.3g, "
              "dx %zu/%zu nonzero; non-finite %zu -> %s\n",
              gwl.nonzero, gwl.n, gwl.max_abs, gwi.nonzero, gwi.n, gwi.max_abs, gx.nonzero, gx.n,
              gwl.nonfinite + gwi.nonfinite + gx.nonfinite, grads_ok ? "ok" : "BAD");

  if (!o.json.empty()) {
    std::string j = "{\"tool\": \"onednn\", \"onednn_version\": \"" + std::to_string(v->major) + "." +
                    std::to_string(v->minor) + "." + std::to_string(v->patch) + "\", \"cell\": \"" +
                    (lstm ? "lstm" : "gru") + "\", \"onednn_cell\": \"" + (lstm ? "lstm" : "lbr_gru") +
                    "\", \"length\": " + std::to_string(T) + ", \"batch\": " + std::to_string(B) +
                    ", \"input\": " + std::to_string(I) + ", \"hidden\": " + std::to_string(H) +
                    ", \"threads\": " + std::to_string(threads) + ", \"reps\": " + std::to_string(o.reps);
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  ", \"median_s\": %.9g, \"min_s\": %.9g, \"max_s\": %.9g, \"flops\": %.17g, "
                  "\"flops_counted\": \"GEMM only: 6*T*B*G*H*(I+H)\", \"gflops\": %.6g",
                  median, sorted.front(), sorted.back(), flops, gflops);
    j += buf;
    j += ", \"times_s\": [";
    for (std::size_t i = 0; i < secs.size(); ++i) {
      std::snprintf(buf, sizeof buf, "%s%.9g", i ? ", " : "", secs[i]);
      j += buf;
    }
    j += "], \"workspace_bytes\": " + std::to_string(ws_bytes) +
         ", \"dst_layer_bytes\": " + std::to_string(dst_layer_md.get_size()) +
         ", \"scratchpad_fwd_bytes\": " + std::to_string(fwd_scratch) +
         ", \"scratchpad_bwd_bytes\": " + std::to_string(bwd_scratch) +
         ", \"grads_ok\": " + (grads_ok ? "true" : "false") + "}\n";
    if (!write_json(o.json, j)) {
      std::fprintf(stderr, "onednn_rnn: cannot write %s: %s\n", o.json.c_str(), std::strerror(errno));
      return 1;
    }
  }
  if (!grads_ok) {
    std::fprintf(stderr, "onednn_rnn: the gradients are zero or not finite\n");
    return 1;
  }
  if (!check_ok) {
    std::fprintf(stderr, "onednn_rnn: the gradients disagree with finite differences (relative error %.2e)\n",
                 worst_rel);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    return run(o);
  } catch (const dnnl::error& e) {
    std::fprintf(stderr, "onednn_rnn: oneDNN error: %s (status %d)\n", e.what(), int(e.status));
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "onednn_rnn: %s\n", e.what());
    return 1;
  }
}
