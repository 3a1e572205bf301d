// `membptt init` (a fresh model file) and `membptt grad` (one forward and backward pass of a model
// file on an inputs file, under a memory budget, gradients out).
#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <type_traits>

#include "cli_common.hpp"
#include "commands.hpp"
#include "device_option.hpp"
#include "membptt/cuda/device_spec.hpp"
#include "membptt/exec/budget.hpp"
#include "membptt/exec/executor.hpp"
#include "membptt/io/params_io.hpp"
#include "membptt/train/gradient_pass.hpp"
#ifdef MEMBPTT_HAVE_CUDA
#include "membptt/cuda/cuda_backend.hpp"
#include "membptt/cuda/gradient_pass.hpp"
#endif

namespace membptt::cli {
namespace {

std::optional<Policy> policy_or_auto(const std::string& name) {
  if (name == "auto") return std::nullopt;
  if (auto p = parse_policy(name)) return p;
  std::string all = "auto";
  for (Policy p : kAllPolicies) all += ", " + std::string(policy_name(p));
  throw UsageError("unknown policy '" + name + "': allowed are " + all);
}

struct InitOptions {
  std::string cell = "lstm", loss = "xent", dtype = "float32", out, nonlinearity = "tanh";
  bool no_bias = false, bidirectional = false;
  int proj_size = 0;
  int input_size = 0, hidden = 0, layers = 1, output = 0;
  std::uint64_t seed = 0;
};

template <class T>
int run_init(const InitOptions& o) {
  ModelSpec spec{o.cell, o.input_size, o.hidden, o.layers, o.output, o.loss, o.dtype, !o.no_bias, o.nonlinearity, o.proj_size,
                 o.bidirectional};
  validate_model_spec(spec, "membptt init");
  const NetShape shape = net_shape(spec, 1);
  const std::size_t count = param_count(shape);
  std::optional<Params<T>> held;
  try {
    held.emplace(shape);
  } catch (const backend::AllocationError& e) {
    throw std::runtime_error(fmt::format("membptt init: the model's {} parameters ({} {}x{}, input {}, output {}) need {:.2f} GiB "
                                         "of {}: {}",
                                         count, o.cell, o.layers, o.hidden, o.input_size, o.output,
                                         static_cast<double>(count) * sizeof(T) / (1024.0 * 1024 * 1024), o.dtype, e.what()));
  }
  Params<T>& p = *held;
  init_pytorch_default(p, o.seed);
  SafeTensorsWriter w;
  for (const auto& [k, v] : model_spec_metadata(spec)) w.set_metadata(k, v);
  add_params(w, p, "");
  w.write(o.out);
  fmt::print("wrote {}: {} {} with {} parameters\n", o.out, o.cell, o.dtype, p.size());
  return 0;
}

struct GradOptions {
  std::string model, inputs, policy = "auto", memory = "100%", out, device = "cpu", loss, nonlinearity;
  double beta = 2.0;
  bool json = false;
};


// What one pass produced on whichever device ran it.
struct GradPass {
  RunStats stats;
  std::size_t workspace_bytes = 0;
  std::int64_t device_taken_bytes = -1;  // CUDA: device memory the executor took (cudaMemGetInfo)
  double seconds = 0;
};

template <class T>
std::vector<T> converted(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

#ifdef MEMBPTT_HAVE_CUDA
// The same pass on a CUDA device: inputs uploaded once, gradients downloaded into `grads`.
template <class T>
GradPass grad_on_cuda(const NetShape& shape, LossKind loss, const Plan& plan, const Params<T>& params, Params<T>& grads,
                      const std::vector<T>& x, const std::vector<std::int64_t>& cls, const std::vector<T>& y,
                      const std::vector<T>& h0) {
  auto up = [](const auto& v) {
    using U = typename std::decay_t<decltype(v)>::value_type;
    cuda::DeviceBuffer<U> b(std::max<std::size_t>(v.size(), 1));
    cuda::upload(b.data(), v.data(), v.size());
    return b;
  };
  cuda::CudaParams<T> dparams(shape), dgrads(shape);
  dparams.upload(params);
  const auto dx = up(x), dy = up(y), dh0 = up(h0);
  const auto dcls = up(cls);
  cuda::synchronize();
  const cuda::MemInfo before = cuda::mem_info();
  cuda::CudaExecutor<T> exec(shape, loss, plan, /*graphs=*/false);  // one pass: a graph would not pay
  cuda::synchronize();
  const cuda::MemInfo after = cuda::mem_info();
  GradPass r;
  const auto t0 = std::chrono::steady_clock::now();
  r.stats = exec.run(dparams, {plan.length, dx.data(), dcls.data(), dy.data(), dh0.data()}, dgrads);
  cuda::synchronize();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  dgrads.download(grads);
  r.workspace_bytes = exec.workspace_bytes();
  r.device_taken_bytes = static_cast<std::int64_t>(before.free_bytes) - static_cast<std::int64_t>(after.free_bytes);
  return r;
}
#endif

// A bidirectional model (CPU or device): its stack planned layer by layer, the head on its held top
// outputs (train/gradient_pass.hpp).
template <class T>
int run_grad_bidirectional(const ModelFile& model, const GradOptions& o, const InputsData& in, const NetShape& shape,
                           const Params<T>& params, Params<T>& grads, const std::vector<T>& h0,
                           const train::GradientDevice* device) {
  const double plain = train::bidirectional_pass_plain_bytes(shape, in.T, sizeof(T), device);
  const double budget = train::bidirectional_pass_budget_bytes(parse_budget(o.memory), shape, in.T, sizeof(T), device);
  const BidirectionalPlans plans =
      train::plan_bidirectional_pass(policy_or_auto(o.policy), shape, in.T, budget, sizeof(T), o.beta, device);
  const LossKind loss = model.spec.loss == "xent" ? LossKind::Xent : LossKind::MseLast;
  const std::vector<T> x = converted<T>(in.input), y = converted<T>(in.target_value);
  const auto pass = train::make_bidirectional_pass<T>(shape, loss, plans, device);
  const SequenceBatch<T> batch{in.T, x.data(), in.target_class.data(), y.data(), h0.data()};
  const auto t0 = std::chrono::steady_clock::now();
  const RunStats stats = pass->run(params, batch, grads, nullptr);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string policies;  // every layer's (auto may choose per layer)
  for (const auto& p : plans.layer) {
    const std::string n(policy_name(p->policy));
    if (policies.find(n) == std::string::npos) policies += (policies.empty() ? "" : "+") + n;
  }
  if (!o.out.empty()) {
    SafeTensorsWriter w;
    for (const auto& [k, v] : model_spec_metadata(model.spec)) w.set_metadata(k, v);
    w.set_metadata("loss_value", fmt::format("{:.17g}", stats.loss));
    w.set_metadata("policy", policies);
    add_params(w, grads, model);  // under the model file's names
    w.write(o.out);
  }
  const std::size_t peak = pass->workspace_bytes() + stats.peak_arena_bytes;
  const double ratio = train::bidirectional_time_ratio(plans);
  const std::int64_t chains = 2 * std::int64_t{shape.num_layers};
  if (o.json) {
    nlohmann::json j{{"loss", stats.loss},
                     {"policy", policies},
                     {"length", in.T},
                     {"batch", in.B},
                     {"bidirectional", true},
                     {"chains", chains},
                     {"forward_ops", stats.forward_steps},
                     {"backward_ops", stats.backward_steps},
                     {"planned_forward_ops", pass->planned_forward_steps()},
                     {"peak_bytes", peak},
                     {"arena_peak_bytes", stats.peak_arena_bytes},
                     {"workspace_bytes", pass->workspace_bytes()},
                     {"device", device ? device->name() : "cpu"},
                     {"budget_bytes", budget},
                     {"plain_bptt_bytes", plain},
                     {"alpha", state_sizes(chain_shape(shape, 0), sizeof(T)).alpha()},
                     {"predicted_time_ratio", ratio},
                     {"seconds", seconds}};
    std::cout << j.dump() << "\n";
  } else {
    fmt::print("loss {:.9g}\npolicy {}: {} forward steps over {} chains of T = {} ({:.3f} per chain step), predicted "
               "{:.3f}x plain BPTT's time\n",
               stats.loss, policies, stats.forward_steps, chains, in.T,
               static_cast<double>(stats.forward_steps) / static_cast<double>(chains * in.T), ratio);
    fmt::print("memory held {} bytes ({:.2f}% of plain BPTT's {:.0f} bytes); {:.3f} s\n", peak,
               100.0 * static_cast<double>(peak) / plain, plain, seconds);
  }
  return 0;
}

template <class T>
int run_grad(const ModelFile& model, const GradOptions& o) {
  const cuda::DeviceSpec dev = device_of(o.device);
#ifdef MEMBPTT_HAVE_CUDA
  if (dev.cuda) cuda::select_device(dev.index);
#endif
  const InputsData in = load_inputs_file(o.inputs, model.spec);
  for (const std::string& note : model.notes) fmt::print(stderr, "{}\n", note);
  if (!in.note.empty()) fmt::print(stderr, "{}\n", in.note);
  const NetShape shape = net_shape(model.spec, static_cast<int>(in.B));
  Params<T> params(shape), grads(shape);
  load_params(model.tensors, params);
  if (shape.bidirectional) {
    // The initial carry in PyTorch's layout: h [2L x B x R], then c [2L x B x H] (LSTM).
    std::vector<T> h0(carry_elems(shape), T(0));
    std::copy(in.h0.begin(), in.h0.end(), h0.begin());
    std::copy(in.c0.begin(), in.c0.end(), h0.begin() + 2 * static_cast<std::ptrdiff_t>(shape.num_layers) * shape.batch *
                                                           output_width(shape));
    std::shared_ptr<const train::GradientDevice> device;  // null: the CPU
#ifdef MEMBPTT_HAVE_CUDA
    if (dev.cuda) device = cuda::cuda_gradient_device(dev.index);
#endif
    return run_grad_bidirectional<T>(model, o, in, shape, params, grads, h0, device.get());
  }

  StateSizes sizes = state_sizes(shape, sizeof(T));
#ifdef MEMBPTT_HAVE_CUDA
  if (dev.cuda) sizes = cuda::cuda_state_sizes(shape, sizeof(T));  // the device executor's workspace
#endif
  const double budget = parse_budget(o.memory).bytes(sizes, in.T);
  const Plan plan = plan_for_bytes(policy_or_auto(o.policy), in.T, budget, sizes, o.beta);
  const LossKind loss = model.spec.loss == "xent" ? LossKind::Xent : LossKind::MseLast;

  // The initial carry: h of every layer, then c (LSTM), as PyTorch's h_0 / c_0.
  std::vector<T> h0(carry_elems(shape), T(0));
  std::copy(in.h0.begin(), in.h0.end(), h0.begin());
  const auto layer_states = static_cast<std::ptrdiff_t>(shape.num_layers) * shape.batch * output_width(shape);
  std::copy(in.c0.begin(), in.c0.end(), h0.begin() + layer_states);
  const std::vector<T> x = converted<T>(in.input), y = converted<T>(in.target_value);

  GradPass pass;
  if (!dev.cuda) {
    Executor<T> exec(shape, loss, plan);
    const SequenceBatch<T> batch{in.T, x.data(), in.target_class.data(), y.data(), h0.data()};
    const auto t0 = std::chrono::steady_clock::now();
    pass.stats = exec.run(params, batch, grads);
    pass.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    pass.workspace_bytes = exec.workspace_bytes();
  } else {
#ifdef MEMBPTT_HAVE_CUDA
    pass = grad_on_cuda<T>(shape, loss, plan, params, grads, x, in.target_class, y, h0);
#endif
  }
  const RunStats& stats = pass.stats;
  const double seconds = pass.seconds;

  if (!o.out.empty()) {
    SafeTensorsWriter w;
    for (const auto& [k, v] : model_spec_metadata(model.spec)) w.set_metadata(k, v);
    w.set_metadata("loss_value", fmt::format("{:.17g}", stats.loss));
    w.set_metadata("policy", std::string(policy_name(plan.policy)));
    add_params(w, grads, model);  // under the model file's names
    w.write(o.out);
  }
  const std::size_t peak = pass.workspace_bytes + stats.peak_arena_bytes;
  const std::size_t plain = sizes.plain_bptt_bytes(in.T);
  if (o.json) {
    nlohmann::json j{{"loss", stats.loss},
                     {"policy", std::string(policy_name(plan.policy))},
                     {"length", in.T},
                     {"batch", in.B},
                     {"forward_ops", stats.forward_steps},
                     {"backward_ops", stats.backward_steps},
                     {"planned_forward_ops", plan.forward_steps},
                     {"peak_bytes", peak},
                     {"arena_peak_bytes", stats.peak_arena_bytes},
                     {"workspace_bytes", pass.workspace_bytes},
                     {"device", dev.text()},
                     {"budget_bytes", budget},
                     {"plain_bptt_bytes", plain},
                     {"alpha", sizes.alpha()},
                     {"predicted_time_ratio", plan.time_ratio()},
                     {"seconds", seconds}};
    if (pass.device_taken_bytes >= 0) j["device_memory_taken_bytes"] = pass.device_taken_bytes;
    std::cout << j.dump() << "\n";
  } else {
    fmt::print("loss {:.9g}\npolicy {}: {} forward steps for T = {} ({:.3f} per step), predicted {:.3f}x plain BPTT's time\n",
               stats.loss, policy_name(plan.policy), stats.forward_steps, in.T,
               static_cast<double>(stats.forward_steps) / static_cast<double>(in.T), plan.time_ratio());
    fmt::print("memory held {} bytes ({:.2f}% of plain BPTT's {} bytes); {:.3f} s{}\n", peak,
               100.0 * static_cast<double>(peak) / static_cast<double>(plain), plain, seconds,
               dev.cuda ? " on " + dev.text() : std::string());
    if (pass.device_taken_bytes >= 0)
      fmt::print("device memory taken by the executor (cudaMemGetInfo): {} bytes\n", pass.device_taken_bytes);
  }
  return 0;
}

}  // namespace

void add_nn_commands(CLI::App& app, std::function<int()>& action) {
  static InitOptions io;
  auto* init = app.add_subcommand("init", "write a freshly initialised model file (PyTorch's default initialisation)");
  init->add_option("--cell", io.cell, "lstm | gru | rnn")->capture_default_str();
  init->add_option("--input-size", io.input_size, "inputs per step")->required()->transform(integer_in(1, INT_MAX));
  init->add_option("--hidden", io.hidden, "hidden units per layer")->required()->transform(integer_in(1, INT_MAX));
  init->add_option("--layers", io.layers, "stacked layers")->capture_default_str()->transform(integer_in(1, kMaxLayers));
  init->add_option("--output", io.output, "classes (xent) or regression width (mse_last)")
      ->required()
      ->transform(integer_in(1, INT_MAX));
  init->add_option("--loss", io.loss, "xent | mse_last")->capture_default_str();
  init->add_flag("--no-bias", io.no_bias, "recurrent layers without biases (PyTorch's bias=False)");
  init->add_flag("--bidirectional", io.bidirectional,
                 "every layer also reads the sequence backwards (PyTorch's bidirectional=True)");
  init->add_option("--proj-size", io.proj_size, "lstm: projections of h to this width (PyTorch's proj_size; 0: none)")
      ->capture_default_str()
      ->transform(integer_in(0, INT_MAX));
  init->add_option("--nonlinearity", io.nonlinearity, "tanh | relu (the rnn cell's)")
      ->capture_default_str()
      ->check(CLI::IsMember({"tanh", "relu"}));
  init->add_option("--dtype", io.dtype, "float32 | float64")->capture_default_str();
  init->add_option("--seed", io.seed, "random seed")->capture_default_str()->transform(unsigned64());
  init->add_option("--out", io.out, "model file to write (safetensors)")->required();
  init->callback([&action] { action = [] { return io.dtype == "float64" ? run_init<double>(io) : run_init<float>(io); }; });

  static GradOptions go;
  auto* grad = app.add_subcommand("grad", "one forward and backward pass under a memory budget; writes the gradients");
  grad->add_option("--model", go.model, "model file (safetensors, PyTorch names)")->required();
  grad->add_option("--inputs", go.inputs, "inputs file: input [T x B x I], target, optional h0, c0")->required();
  grad->add_option("--policy", go.policy, "auto (the best that fits) or a policy name")->capture_default_str();
  grad->add_option("--memory", go.memory, "activation memory budget: bytes (64MiB, 1e6) or percent of plain BPTT (5%)")
      ->capture_default_str();
  grad->add_option("--beta", go.beta, "backward/forward cost ratio for the predicted time")
      ->capture_default_str()
      ->transform(number_in(0, kMaxCostRatio));
  grad->add_option("--out", go.out, "gradients file to write (same tensor names as the model)");
  grad->add_flag("--json", go.json, "print one JSON object");
  grad->add_option("--loss", go.loss,
                   "xent | mse_last: the loss of a model file without metadata 'loss' (a PyTorch state dict)")
      ->check(CLI::IsMember({"xent", "mse_last"}));
  grad->add_option("--nonlinearity", go.nonlinearity,
                   "tanh | relu: the nonlinearity of an RNN state dict without metadata 'nonlinearity' (default tanh)")
      ->check(CLI::IsMember({"tanh", "relu"}));
  grad->add_option("--device", go.device, "cpu, cuda or cuda:N (CUDA builds; TF32 off, float32 products)")
      ->capture_default_str();
  grad->callback([&action] {
    action = [] {
      const ModelFile model = load_model_file(go.model, ModelLoadOptions{go.loss, "", go.nonlinearity});
      return model.spec.dtype == "float64" ? run_grad<double>(model, go) : run_grad<float>(model, go);
    };
  });
}

}  // namespace membptt::cli
