// `membptt bench`: time per iteration against memory for every policy, side by side in one run,
// with the planner's calibrated prediction beside each measurement.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_common.hpp"
#include "commands.hpp"
#include "device_option.hpp"
#include "membptt/cuda/device.hpp"  // Options' defaults (no CUDA header)
#include "membptt/cuda/device_spec.hpp"
#include "membptt/exec/budget.hpp"
#include "membptt/exec/calibrate.hpp"
#include "membptt/exec/executor.hpp"
#include "membptt/train/config.hpp"
#include "membptt/train/gradient_pass.hpp"
#ifdef MEMBPTT_HAVE_CUDA
#include "membptt/cuda/cuda_backend.hpp"
#include "membptt/cuda/gradient_pass.hpp"
#endif

namespace membptt::cli {
namespace {

using train::kMaxSize;

// v with `decimals` decimals, or with 3 significant digits where those decimals would show a
// nonzero v as 0 (a tiny network's seconds, milliseconds or MiB).
std::string fixed_or_small(double v, int decimals) {
  if (v != 0 && std::abs(v) < 0.5 * std::pow(10.0, -decimals)) return fmt::format("{:.3g}", v);
  return fmt::format("{:.{}f}", v, decimals);
}

struct BenchOptions {
  std::string cell = "lstm", dtype = "float32", policies = "full,msm,hsm,ism,chen-sqrt,chen-recursive",
              budgets = "5%,10%,20%,50%", csv, json, device = "cpu";
  std::int64_t length = 1000;
  int batch = 32, input = 64, hidden = 256, layers = 1, output = 64, reps = 3, warmup = 1;
  bool no_bias = false;   // recurrent layers without b_ih, b_hh (PyTorch's bias=False)
  bool bidirectional = false;  // PyTorch's bidirectional=True
  int proj_size = 0;      // lstm projections (PyTorch's proj_size)
  std::string nonlinearity = "tanh";  // rnn: tanh | relu
  bool tf32 = false;      // CUDA: TF32 tensor-core GEMMs
  bool bf16 = false;      // CUDA: bf16 tensor-core GEMMs
  int defer_steps = cuda::Options{}.defer_steps;  // CUDA: backward steps per weight-gradient GEMM
  bool no_graphs = false; // CUDA: issue every kernel instead of replaying a captured graph
  int input_chunk = cuda::Options{}.input_chunk_steps;  // CUDA: steps per input-projection GEMM
};


// One timed pass of a configuration.
struct Timed {
  double seconds = 0;
  RunStats stats;
  std::size_t held_bytes = 0;           // workspace + peak arena
  std::int64_t device_taken_bytes = -1;  // CUDA: what constructing the executor took (cudaMemGetInfo)
  std::int64_t graph_bytes = -1;         // CUDA: what the driver took for the pass's graph
  std::size_t graph_nodes = 0;
};

#ifdef MEMBPTT_HAVE_CUDA
// Inputs, targets, parameters and gradients on the device, uploaded once. The host inputs may
// cover fewer steps than T (long sequences): they are repeated to fill the device's.
template <class T>
struct CudaBenchData {
  cuda::DeviceBuffer<T> x;
  cuda::DeviceBuffer<std::int64_t> cls;
  cuda::CudaParams<T> params, grads;
  CudaBenchData(const NetShape& shape, std::size_t x_elems, const std::vector<T>& hx,
                const std::vector<std::int64_t>& hcls, const Params<T>& hp)
      : x(x_elems), cls(hcls.size()), params(shape), grads(shape) {
    for (std::size_t at = 0; at < x_elems; at += hx.size())
      cuda::upload(x.data() + at, hx.data(), std::min(hx.size(), x_elems - at));
    cuda::upload(cls.data(), hcls.data(), hcls.size());
    params.upload(hp);
  }
};
#endif

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

struct Config {
  Policy policy;
  std::string budget_text;
  double budget_bytes;
  std::unique_ptr<Plan> plan;
  std::vector<double> seconds;
  RunStats stats;
  std::size_t held_bytes = 0;
  std::int64_t device_taken_bytes = -1;
  std::int64_t graph_bytes = -1;
  std::size_t graph_nodes = 0;
};

// --policies: each name one of the planner's policies.
Policy bench_policy(const std::string& name) {
  if (auto p = parse_policy(name)) return *p;
  std::string all;
  for (Policy p : kAllPolicies) all += (all.empty() ? "" : ", ") + std::string(policy_name(p));
  throw UsageError("unknown policy '" + name + "' in --policies: allowed are " + all);
}

// Every configuration was below the least that works (each said so): nothing to time.
void require_runnable(bool any) {
  if (!any)
    throw UsageError("no policy runs at the budgets given: each is below the least that works (the skip lines above "
                     "name it); give larger --budgets");
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// A bidirectional stack on the CPU or a device: each policy and budget planned per layer
// (train::plan_bidirectional_pass), timed as one training pass; no calibration (beta 2).
// The benchmark's data: random inputs for `steps` steps (a device repeats them past that) and
// classes for every step, and parameters initialised as PyTorch does.
template <class T>
struct BenchData {
  std::vector<T> x;
  std::vector<std::int64_t> cls;
  Params<T> params, grads;
  SequenceBatch<T> batch;
  BenchData(const BenchOptions& o, const NetShape& shape, std::int64_t steps)
      : x(static_cast<std::size_t>(steps) * static_cast<std::size_t>(o.batch) * static_cast<std::size_t>(o.input)),
        cls(static_cast<std::size_t>(o.length) * static_cast<std::size_t>(o.batch)), params(shape), grads(shape) {
    fill_uniform(std::span<T>(x), T(1), 3);
    for (std::size_t i = 0; i < cls.size(); ++i)
      cls[i] = static_cast<std::int64_t>((i * 7919) % static_cast<std::size_t>(o.output));
    init_pytorch_default(params, 4);
    batch = SequenceBatch<T>{o.length, x.data(), cls.data(), nullptr, nullptr};
  }
};

template <class T>
int run_bench_bidirectional(const BenchOptions& o, const NetShape& shape, const train::GradientDevice* device) {
  const double plain = train::bidirectional_pass_plain_bytes(shape, o.length, sizeof(T), device);
  fmt::print("{} bidirectional T={} B={} I={} H={} L={}{}{}{} {}: {} chains, plain BPTT {} B\n", o.cell, o.length, o.batch,
             o.input, o.hidden, o.layers, o.proj_size ? fmt::format(" P={}", o.proj_size) : "", o.no_bias ? " no-bias" : "",
             o.nonlinearity == "relu" ? " relu" : "", o.dtype, 2 * o.layers, plain);
  BenchData<T> data(o, shape, o.length);
  const Params<T>& params = data.params;
  Params<T>& grads = data.grads;
  const SequenceBatch<T>& batch = data.batch;
  struct Row {
    Policy policy;
    std::string budget;
    std::unique_ptr<train::GradientPass<T>> pass;
    double ratio = 0;
    std::vector<double> seconds;
    RunStats stats;
  };
  std::vector<Row> rows;
  auto add = [&](Policy p, const std::string& text, std::optional<double> bytes) {
    try {
      const BidirectionalPlans plans = train::plan_bidirectional_pass(p, shape, o.length, bytes, sizeof(T), 2.0, device);
      rows.push_back(Row{p, text, train::make_bidirectional_pass<T>(shape, LossKind::Xent, plans, device),
                         train::bidirectional_time_ratio(plans), {}, {}});
    } catch (const PlanError& e) {
      fmt::print("  skip {} at {}: {}\n", policy_name(p), text, e.what());
    }
  };
  for (const std::string& name : split_list(o.policies)) {
    const Policy p = *parse_policy(name);
    if (p == Policy::Full || p == Policy::ChenSqrt || p == Policy::ChenRecursive || p == Policy::Quadratic) {
      const double least = train::bidirectional_pass_least_bytes(p, shape, o.length, sizeof(T), device);
      add(p, fmt::format("{:.1f}%", 100 * least / plain), p == Policy::Full ? std::nullopt : std::optional<double>(least));
    } else {
      for (const std::string& b : split_list(o.budgets)) {
        add(p, b, train::bidirectional_pass_budget_bytes(parse_budget(b), shape, o.length, sizeof(T), device));
      }
    }
  }
  require_runnable(!rows.empty());
  // One pass each for its stats (and, on a device, the transfers), then the timed passes again.
  for (Row& row : rows) row.stats = row.pass->run(params, batch, grads, nullptr);
  for (int r = 0; r < o.warmup + o.reps; ++r)
    for (Row& row : rows) {
      const double sec = row.pass->time_again();
      if (r >= o.warmup) row.seconds.push_back(sec);
    }
  double base_s = 0;
  for (const Row& row : rows)
    if (row.policy == Policy::Full) base_s = median(row.seconds);
  fmt::print("\n{:>15} {:>8} {:>10} {:>9} {:>9} {:>9} {:>10} {:>10}\n", "policy", "budget", "held MiB", "% plain",
             "fwd/step", "s/iter", "measured", "predicted");
  nlohmann::json out = nlohmann::json::array();
  std::string csv = "cell,length,batch,input,hidden,layers,dtype,policy,budget,held_bytes,plain_bytes,forward_steps,median_seconds,measured_ratio,predicted_ratio\n";
  for (const Row& row : rows) {
    const double sec = median(row.seconds), measured = base_s > 0 ? sec / base_s : 0;
    const std::size_t held = row.pass->workspace_bytes() + row.stats.peak_arena_bytes;
    // Forward steps per step of each chain (2L chains of T steps).
    const double per_step = static_cast<double>(row.stats.forward_steps) / (2.0 * o.layers * static_cast<double>(o.length));
    fmt::print("{:>15} {:>8} {:>10} {:>8.2f}% {:>9.3f} {:>9} {:>10.3f} {:>10.3f}\n", policy_name(row.policy), row.budget,
               fixed_or_small(static_cast<double>(held) / (1 << 20), 2), 100.0 * static_cast<double>(held) / plain,
               per_step, fixed_or_small(sec, 3), measured, row.ratio);
    out.push_back({{"policy", std::string(policy_name(row.policy))}, {"budget", row.budget}, {"held_bytes", held},
                   {"plain_bytes", plain}, {"forward_steps", row.stats.forward_steps}, {"median_seconds", sec},
                   {"seconds", row.seconds}, {"measured_ratio", measured}, {"predicted_ratio", row.ratio}});
    csv += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", o.cell, o.length, o.batch, o.input, o.hidden,
                       o.layers, o.dtype, policy_name(row.policy), row.budget, held, plain, row.stats.forward_steps, sec,
                       measured, row.ratio);
  }
  fmt::print("(a budget given as a share is of the chains' plain BPTT memory, the held layer outputs added whole: "
             "\"% plain\" is of everything; docs/architecture.md)\n");
  if (!o.csv.empty()) write_file_atomic(o.csv, csv);
  if (!o.json.empty()) {
    nlohmann::json j{{"cell", o.cell}, {"length", o.length}, {"batch", o.batch}, {"input", o.input}, {"hidden", o.hidden},
                     {"layers", o.layers}, {"bias", !o.no_bias}, {"proj_size", o.proj_size}, {"bidirectional", true},
                     {"nonlinearity", o.nonlinearity}, {"dtype", o.dtype}, {"reps", o.reps}, {"warmup", o.warmup},
                     {"device", device ? device->name() : "cpu"}, {"plain_bptt_bytes", plain}, {"rows", out}};
    write_file_atomic(o.json, j.dump(1) + "\n");
  }
  return 0;
}

template <class T>
int run_bench(const BenchOptions& o) {
  const NetShape shape{parse_cell(o.cell), o.input,    o.hidden,   o.layers,
                       o.batch,           o.output,   !o.no_bias, parse_nonlinearity(o.nonlinearity),
                       o.proj_size,       0,          o.bidirectional};
  validate(shape);
  if (o.length <= 0) throw UsageError(fmt::format("sequence length {} is not allowed: it must be a positive integer", o.length));
  if (o.reps < 1) throw UsageError(fmt::format("--reps {} is not allowed: use 1 or more", o.reps));
  if (o.warmup < 0) throw UsageError(fmt::format("--warmup {} is not allowed: use 0 or more", o.warmup));
  if (o.defer_steps < 1) throw UsageError(fmt::format("--defer-steps {} is not allowed: use 1 or more", o.defer_steps));
  if (o.input_chunk < 1) throw UsageError(fmt::format("--input-chunk {} is not allowed: use 1 or more", o.input_chunk));
  if (o.tf32 && o.bf16) throw UsageError("--tf32 and --bf16 are not allowed together: choose one GEMM mode");
  if ((o.tf32 || o.bf16) && o.dtype != "float32")
    throw UsageError(fmt::format("--{} is allowed only with --dtype float32 (got {})", o.bf16 ? "bf16" : "tf32", o.dtype));
  const cuda::DeviceSpec dev = device_of(o.device);
  if ((o.tf32 || o.bf16) && !dev.cuda)
    throw UsageError(fmt::format("--{} is allowed only with --device cuda (a GPU's GEMM mode)", o.bf16 ? "bf16" : "tf32"));
  // Everything the user typed is checked before the calibration and the timed rounds (minutes).
  if (split_list(o.policies).empty()) throw UsageError("--policies '" + o.policies + "' names no policy");
  for (const std::string& name : split_list(o.policies))
    (void)bench_policy(name);
  if (split_list(o.budgets).empty()) throw UsageError("--budgets '" + o.budgets + "' names no budget");
  for (const std::string& b : split_list(o.budgets)) (void)parse_budget(b);
  for (const std::string& out : {o.csv, o.json}) {
    if (out.empty()) continue;
    const std::filesystem::path dir = std::filesystem::absolute(out).parent_path();
    if (::access(dir.c_str(), W_OK) != 0)
      throw UsageError(fmt::format("cannot write {}: its directory {} is not writable ({})", out, dir.string(), std::strerror(errno)));
  }
  std::shared_ptr<const train::GradientDevice> device;  // a bidirectional model's (null: the CPU)
#ifdef MEMBPTT_HAVE_CUDA
  if (dev.cuda) {
    cuda::select_device(dev.index);
    cuda::Options co = cuda::options();
    co.tf32 = o.tf32;
    co.bf16 = o.bf16;
    co.defer_steps = o.defer_steps;
    co.graphs = !o.no_graphs;
    co.input_chunk_steps = o.input_chunk;
    cuda::set_options(co);
    fmt::print("device {}: {}; {} GEMMs, weight gradients every {} steps, input projection every {} steps, {}; cuBLAS "
               "workspace {} B (the process's, not counted)\n",
               dev.text(), cuda::device_description(),
               sizeof(T) == sizeof(double) ? "float64" : cuda::gemm_math_name(cuda::gemm_math(co)), o.defer_steps, o.input_chunk,
               co.graphs && !o.bidirectional ? "passes replayed from CUDA graphs" : "no graphs", co.blas_workspace_bytes);
    if (o.bidirectional) device = cuda::cuda_gradient_device(dev.index);
  }
#endif
  if (o.bidirectional) return run_bench_bidirectional<T>(o, shape, device.get());
  StateSizes sizes;
  StepTimes st;
  if (!dev.cuda) {
    sizes = state_sizes(shape, sizeof(T));
    st = time_steps<T>(shape, LossKind::Xent, 7, o.length);  // chains as long as the run's (capped)
  } else {
#ifdef MEMBPTT_HAVE_CUDA
    sizes = cuda::cuda_state_sizes(shape, sizeof(T));
    st = cuda::time_steps_cuda<T>(shape, LossKind::Xent);
#endif
  }
  const CostModel model = cost_model_from(st, sizes.alpha());
  fmt::print("{} T={} B={} I={} H={} L={}{}{}{} {}: hidden state {} B, internal state {} B (alpha {:g}), workspace {} B\n",
             o.cell, o.length, o.batch, o.input, o.hidden, o.layers, o.proj_size ? fmt::format(" P={}", o.proj_size) : "",
             o.no_bias ? " no-bias" : "", o.nonlinearity == "relu" ? " relu" : "", o.dtype, sizes.hidden_bytes,
             sizes.internal_bytes, sizes.alpha(), sizes.workspace_at(o.length));
  fmt::print("calibrated step costs: advance {} ms, advance+record {} ms, backward+head {} ms "
             "(record {:.3f}, beta {:.3f})\n",
             fixed_or_small(1e3 * st.advance, 3), fixed_or_small(1e3 * st.record, 3), fixed_or_small(1e3 * st.backward, 3),
             model.record, model.beta);

  // Data: random inputs and classes. On a device a long sequence repeats its first 4096 steps'
  // inputs (the time per step does not depend on the values; generating them would).
  // On a device a long sequence repeats its first 4096 steps' inputs (the time per step does not
  // depend on the values; generating them would).
  BenchData<T> data(o, shape, dev.cuda ? std::min<std::int64_t>(o.length, 4096) : o.length);
  const Params<T>& params = data.params;
  Params<T>& grads = data.grads;
  const SequenceBatch<T>& batch = data.batch;

  // One timed pass of a plan on the chosen device (the executor built first, not timed).
  std::function<Timed(const Plan&)> run_one = [&](const Plan& plan) {
    Executor<T> exec(shape, LossKind::Xent, plan);
    grads.zero();
    Timed r;
    const auto t0 = std::chrono::steady_clock::now();
    r.stats = exec.run(params, batch, grads);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.held_bytes = exec.workspace_bytes() + r.stats.peak_arena_bytes;
    return r;
  };
#ifdef MEMBPTT_HAVE_CUDA
  std::unique_ptr<CudaBenchData<T>> cd;
  if (dev.cuda) {
    cd = std::make_unique<CudaBenchData<T>>(shape, static_cast<std::size_t>(o.length) * static_cast<std::size_t>(o.batch) *
                                                       static_cast<std::size_t>(o.input),
                                            data.x, data.cls, params);
    // One executor per plan, kept across rounds (a graph is captured in its first, warm-up, round).
    struct Kept {
      std::unique_ptr<cuda::CudaExecutor<T>> exec;
      std::int64_t taken = 0;
    };
    auto kept = std::make_shared<std::map<const Plan*, Kept>>();
    run_one = [&, kept](const Plan& plan) {
      Kept& k = (*kept)[&plan];
      if (!k.exec) {
        cuda::synchronize();
        const cuda::MemInfo before = cuda::mem_info();
        k.exec = std::make_unique<cuda::CudaExecutor<T>>(shape, LossKind::Xent, plan);
        cuda::synchronize();
        k.taken = static_cast<std::int64_t>(before.free_bytes) - static_cast<std::int64_t>(cuda::mem_info().free_bytes);
      }
      cuda::CudaExecutor<T>& exec = *k.exec;
      cd->grads.zero();
      cuda::synchronize();
      Timed r;
      const auto t0 = std::chrono::steady_clock::now();
      r.stats = exec.run(cd->params, {o.length, cd->x.data(), cd->cls.data(), nullptr, nullptr}, cd->grads);
      cuda::synchronize();
      r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      r.held_bytes = exec.workspace_bytes() + r.stats.peak_arena_bytes;
      r.device_taken_bytes = k.taken;
      r.graph_bytes = exec.graphs() ? exec.graph_bytes() : -1;
      r.graph_nodes = exec.graph_nodes();
      return r;
    };
  }
#endif

  std::vector<Config> configs;
  auto add = [&](Policy p, const std::string& text, double bytes) {
    Config c{p, text, bytes, nullptr, {}, {}, 0, -1, -1, 0};
    try {
      const Plan plan = plan_for_bytes(p, o.length, bytes, sizes, model.beta);
      Plan calibrated = plan;
      calibrated.model = model;
      c.plan = std::make_unique<Plan>(calibrated);
    } catch (const PlanError& e) {
      fmt::print("  skip {} at {}: {}\n", policy_name(p), text, e.what());
      return;
    }
    configs.push_back(std::move(c));
  };
  const double plain = static_cast<double>(sizes.plain_bptt_bytes(o.length));
  for (const std::string& name : split_list(o.policies)) {
    const std::optional<Policy> p = bench_policy(name);
    if (*p == Policy::Full || *p == Policy::ChenSqrt || *p == Policy::ChenRecursive || *p == Policy::Quadratic) {
      const double least = *p == Policy::Quadratic ? least_bytes(*p, o.length, sizes) : least_bytes(*p, o.length, sizes);
      add(*p, fmt::format("{:.1f}%", 100 * least / plain), least);
    } else {
      for (const std::string& b : split_list(o.budgets)) add(*p, b, parse_budget(b).bytes(sizes, o.length));
    }
  }
  require_runnable(!configs.empty());
  // Interleaved repetitions: every configuration once per round, so drift hits all alike.
  for (int r = 0; r < o.warmup + o.reps; ++r)
    for (Config& c : configs) {
      const Timed t = run_one(*c.plan);
      if (r >= o.warmup) c.seconds.push_back(t.seconds);  // the first rounds warm up (and capture graphs)
      c.stats = t.stats;
      c.held_bytes = t.held_bytes;
      c.device_taken_bytes = t.device_taken_bytes;
      c.graph_bytes = t.graph_bytes;
      c.graph_nodes = t.graph_nodes;
    }
  const Config* base = nullptr;
  for (const Config& c : configs)
    if (c.policy == Policy::Full) base = &c;
  const double base_s = base ? median(base->seconds) : 0;

  fmt::print("\n{:>15} {:>8} {:>10} {:>9} {:>9} {:>9} {:>10} {:>10} {:>7}{}\n", "policy", "budget", "held MiB", "% plain",
             "fwd/step", "s/iter", "measured", "predicted", "diff",
             dev.cuda ? fmt::format(" {:>10} {:>9} {:>7}", "taken MiB", "graph MiB", "kernels") : "");
  nlohmann::json rows = nlohmann::json::array();
  std::string csv = "cell,length,batch,input,hidden,layers,dtype,policy,budget,held_bytes,plain_bytes,forward_steps,median_seconds,measured_ratio,predicted_ratio\n";
  for (const Config& c : configs) {
    const double s = median(c.seconds);
    const double measured = base_s > 0 ? s / base_s : 0, predicted = c.plan->time_ratio();
    fmt::print("{:>15} {:>8} {:>10} {:>8.2f}% {:>9.3f} {:>9} {:>10.3f} {:>10.3f} {:>6.1f}%{}\n", policy_name(c.policy),
               c.budget_text, fixed_or_small(static_cast<double>(c.held_bytes) / (1 << 20), 2),
               100.0 * static_cast<double>(c.held_bytes) / plain,
               static_cast<double>(c.stats.forward_steps) / static_cast<double>(o.length),
               fixed_or_small(s, dev.cuda ? 4 : 3), measured, predicted,
               base_s > 0 ? 100.0 * (measured - predicted) / predicted : 0.0,
               dev.cuda ? fmt::format(" {:>10.2f} {:>9} {:>7}", static_cast<double>(c.device_taken_bytes) / (1 << 20),
                                      c.graph_bytes >= 0 ? fmt::format("{:.2f}", static_cast<double>(c.graph_bytes) / (1 << 20)) : "-",
                                      c.graph_nodes)
                        : "");
    rows.push_back({{"policy", std::string(policy_name(c.policy))}, {"budget", c.budget_text}, {"held_bytes", c.held_bytes},
                    {"plain_bytes", plain}, {"forward_steps", c.stats.forward_steps}, {"median_seconds", s},
                    {"seconds", c.seconds}, {"measured_ratio", measured}, {"predicted_ratio", predicted}});
    if (c.device_taken_bytes >= 0) rows.back()["device_taken_bytes"] = c.device_taken_bytes;
    if (c.graph_bytes >= 0) {
      rows.back()["graph_bytes"] = c.graph_bytes;
      rows.back()["graph_nodes"] = c.graph_nodes;
    }
    csv += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", o.cell, o.length, o.batch, o.input, o.hidden, o.layers,
                       o.dtype, policy_name(c.policy), c.budget_text, c.held_bytes, plain, c.stats.forward_steps, s, measured,
                       predicted);
  }
  if (!o.csv.empty()) write_file_atomic(o.csv, csv);
  if (!o.json.empty()) {
    nlohmann::json j{{"cell", o.cell}, {"length", o.length}, {"batch", o.batch}, {"input", o.input}, {"hidden", o.hidden},
                     {"layers", o.layers}, {"bias", !o.no_bias}, {"proj_size", o.proj_size},
                     {"nonlinearity", o.nonlinearity}, {"dtype", o.dtype}, {"reps", o.reps}, {"warmup", o.warmup},
                     {"calibration", {{"advance_s", st.advance}, {"record_s", st.record}, {"backward_s", st.backward}}},
                     {"device", dev.text()}, {"tf32", dev.cuda && o.tf32 && !o.bf16}, {"bf16", dev.cuda && o.bf16}, {"defer_steps", o.defer_steps}, {"input_chunk_steps", o.input_chunk},
                     {"graphs", dev.cuda && !o.no_graphs},
                     {"workspace_bytes", sizes.workspace_at(o.length)}, {"hidden_bytes", sizes.hidden_bytes},
                     {"internal_bytes", sizes.internal_bytes}, {"plain_bptt_bytes", plain},
                     {"rows", rows}};
    write_file_atomic(o.json, j.dump(1) + "\n");
  }
  return 0;
}

}  // namespace

void add_bench_commands(CLI::App& app, std::function<int()>& action) {
  static BenchOptions o;
  auto* b = app.add_subcommand("bench", "time per iteration against memory for each policy, beside the planner's prediction");
  b->add_option("--cell", o.cell, "lstm | gru | rnn")->capture_default_str();
  b->add_option("--length", o.length, "sequence length T")->capture_default_str()->transform(integer_in(1, train::kMaxLength));
  b->add_option("--batch", o.batch, "batch size")->capture_default_str()->transform(integer_in(1, kMaxSize));
  b->add_option("--input", o.input, "input size")->capture_default_str()->transform(integer_in(1, kMaxSize));
  b->add_option("--hidden", o.hidden, "hidden size")->capture_default_str()->transform(integer_in(1, kMaxSize));
  b->add_option("--layers", o.layers, "layers")->capture_default_str()->transform(integer_in(1, train::kMaxLayers));
  b->add_flag("--no-bias", o.no_bias, "recurrent layers without biases (PyTorch's bias=False)");
  b->add_flag("--bidirectional", o.bidirectional,
              "every layer also reads the sequence backwards (PyTorch's bidirectional=True)");
  b->add_option("--proj-size", o.proj_size, "lstm: projections of h to this width (PyTorch's proj_size; 0: none)")
      ->capture_default_str()
      ->transform(integer_in(0, kMaxSize));
  b->add_option("--nonlinearity", o.nonlinearity, "tanh | relu (the rnn cell's)")
      ->capture_default_str()
      ->check(CLI::IsMember({"tanh", "relu"}));
  b->add_option("--output", o.output, "classes of the per-step softmax head")->capture_default_str()->transform(integer_in(1, kMaxSize));
  b->add_option("--dtype", o.dtype, "float32 | float64")->capture_default_str();
  b->add_option("--policies", o.policies, "comma-separated policies")->capture_default_str();
  b->add_option("--budgets", o.budgets, "comma-separated budgets for the budgeted policies (bytes or %)")->capture_default_str();
  b->add_option("--reps", o.reps, "timed repetitions per configuration (median reported)")
      ->capture_default_str()
      ->transform(integer_in(1, 1'000'000));
  b->add_option("--warmup", o.warmup,
                "untimed rounds before them (the first captures a GPU graph; 0 for one long pass)")
      ->capture_default_str()
      ->transform(integer_in(0, 1'000'000));
  b->add_option("--csv", o.csv, "write the rows as CSV");
  b->add_option("--json", o.json, "write the rows as JSON");
  b->add_option("--device", o.device, "cpu, cuda or cuda:N (CUDA builds)")->capture_default_str();
  b->add_flag("--tf32", o.tf32, "CUDA: TF32 tensor-core GEMMs for float32 (default: full float32 products)");
  b->add_flag("--bf16", o.bf16, "CUDA: bf16 tensor-core GEMMs for float32 (float32 storage and accumulation)");
  b->add_option("--defer-steps", o.defer_steps, "CUDA: backward steps whose weight gradients one GEMM sums")
      ->capture_default_str()
      ->transform(integer_in(1, 1'000'000));
  b->add_option("--input-chunk", o.input_chunk, "CUDA: steps whose layer-0 input projection one GEMM computes")
      ->capture_default_str()
      ->transform(integer_in(1, 1'000'000));
  b->add_flag("--no-graphs", o.no_graphs, "CUDA: issue every kernel of a pass instead of replaying it from a CUDA graph");
  b->callback([&action] {
    if (o.dtype != "float32" && o.dtype != "float64") throw UsageError("--dtype '" + o.dtype + "' is not allowed: use float32 or float64");
    action = [] { return o.dtype == "float64" ? run_bench<double>(o) : run_bench<float>(o); };
  });
}

}  // namespace membptt::cli
