// The C API's recurrent network (membptt_rnn, membptt_pass; include/membptt/membptt.h): the
// executor's module form (BasicExecutor::forward / backward) over caller-owned buffers, with the
// plan for each (length, batch) made once and an executor kept for reuse, so that steady training
// allocates nothing.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <variant>

#include "internal.hpp"
#include "membptt/backend/blas.hpp"
#include "membptt/cells/dropout.hpp"
#include "membptt/cells/recurrent_net.hpp"
#include "membptt/exec/bidirectional.hpp"
#include "membptt/exec/budget.hpp"
#include "membptt/exec/executor.hpp"

namespace {

using namespace membptt;
using capi::ArgumentError;
using capi::check_length;
using capi::guarded;
using capi::policy_of;
using capi::require;

// Sizes are ints inside the cells; lengths are the planner's.
int size_in(std::int64_t v, const char* name, std::int64_t hi) {
  if (v < 1 || v > hi)
    throw ArgumentError(std::string(name) + " " + std::to_string(v) + " is not allowed: allowed is 1 to " + std::to_string(hi));
  return static_cast<int>(v);
}

template <class T>
class Rnn;

// A plan for one (length, batch), with the budget it was made for and plain BPTT's memory, bytes.
// A bidirectional stack has a plan per layer (bi); `plan` is then layer 0's.
struct Planned {
  std::shared_ptr<const Plan> plan;
  double budget_bytes, plain_bytes;
  std::shared_ptr<const BidirectionalPlans> bi;
};

// One forward pass waiting for its backward: the executor (or, bidirectional, the stack of
// chains) holds the stored states.
template <class T>
struct PassOf {
  using Scalar = T;
  std::shared_ptr<Rnn<T>> rnn;
  std::shared_ptr<const Plan> plan;
  std::unique_ptr<Executor<T>> exec;
  std::unique_ptr<BidirectionalStack<T>> stack;
  std::shared_ptr<const BidirectionalPlans> bi;  // the stack's plans
  RunStats stats;
  double budget_bytes = 0;
  bool backward_done = false;

  bool waiting() const { return stack ? stack->waiting() : exec && exec->waiting(); }
  std::int64_t planned_forward_steps() const { return stack ? stack->planned_forward_steps() : exec->plan().forward_steps; }
  std::size_t arena_bytes() const { return stack ? stack->arena_bytes() : exec->arena_bytes(); }
  // Bidirectional: the chains' workspaces and the held sequences and carries.
  std::size_t workspace_bytes() const {
    return stack ? stack->workspace_bytes() + stack->held_bytes() : exec->workspace_bytes();
  }
};

template <class T>
class Rnn : public std::enable_shared_from_this<Rnn<T>> {
 public:
  using Scalar = T;
  Rnn(const NetShape& shape, std::optional<BudgetSpec> budget, std::optional<Policy> policy, double beta)
      : shape_(shape), budget_(budget), policy_(policy), beta_(beta), weights_(shape), grads_(shape) {
    // Less the unused one-unit head.
    weight_count_ = static_cast<std::int64_t>(param_count(shape) - static_cast<std::size_t>(directions(shape) * output_width(shape)) - 1);
  }

  std::int64_t weight_count() const { return weight_count_; }
  std::int64_t carry_count(std::int64_t batch) const {
    return static_cast<std::int64_t>(carry_elems(with_batch(static_cast<int>(batch))));
  }

  Planned plan_for(std::int64_t length, std::int64_t batch) {
    std::lock_guard lock(mu_);
    return plan_locked(length, batch);
  }

  void infer(std::int64_t length, std::int64_t batch, const T* weights, const T* x, const T* h0, T* y, T* hn) {
    std::lock_guard lock(mu_);
    const int b = size_in(batch, "batch", kMaxBatch);
    if (shape_.bidirectional) return bidirectional_infer(with_batch(b), weights, x, length, h0, y, hn, training_, seed_);
    if (!infer_net_ || infer_net_->shape().batch != b) {
      infer_net_.reset();
      infer_net_ = std::make_unique<RecurrentNet<T>>(with_batch(b));
      carry_ = backend::AlignedBuffer<T>(infer_net_->carry_elems());
    }
    load(weights);
    RecurrentNet<T>& net = *infer_net_;
    net.set_dropout(training_, seed_);
    net.begin_pass(x, length);
    const std::size_t x_step = static_cast<std::size_t>(b) * static_cast<std::size_t>(shape_.input_size);
    const std::size_t y_step = static_cast<std::size_t>(b) * static_cast<std::size_t>(output_width(shape_));
    if (h0) std::memcpy(carry_.data(), h0, carry_.size() * sizeof(T)); else carry_.zero();
    for (std::int64_t t = 0; t < length; ++t) {
      net.advance(weights_, x + static_cast<std::size_t>(t) * x_step, carry_.data(), carry_.data());
      std::memcpy(y + static_cast<std::size_t>(t) * y_step, net.top_hidden(carry_.data()), y_step * sizeof(T));
    }
    if (hn) std::memcpy(hn, carry_.data(), carry_.size() * sizeof(T));
    net.begin_pass(nullptr, 0);
  }

  // Dropout for the forward calls that follow (a pass keeps its seed until its backward).
  void set_dropout(bool training, std::uint64_t seed) {
    std::lock_guard lock(mu_);
    training_ = training;
    seed_ = seed;
  }

  std::unique_ptr<PassOf<T>> forward(std::int64_t length, std::int64_t batch, const T* weights, const T* x, const T* h0,
                                     T* y, T* hn) {
    std::lock_guard lock(mu_);
    const Planned planned = plan_locked(length, batch);
    auto pass = std::make_unique<PassOf<T>>();
    pass->rnn = this->shared_from_this();
    pass->plan = planned.plan;
    pass->budget_bytes = planned.budget_bytes;
    if (planned.bi) {  // bidirectional: the stack kept from an earlier pass of the same plans, else a new one
      pass->bi = planned.bi;
      if (idle_stack_ && idle_bi_ == planned.bi) {
        pass->stack = std::move(idle_stack_);
        idle_bi_.reset();
      } else {
        pass->stack = std::make_unique<BidirectionalStack<T>>(with_batch(static_cast<int>(batch)), *planned.bi);
      }
      pass->stack->set_dropout(training_, seed_);
      pass->stats = pass->stack->forward(weights, x, length, h0, y, hn);
      return pass;
    }
    // The executor kept from an earlier pass of the same plan, else a new one (its arena sized once).
    if (idle_ && idle_plan_ == planned.plan) {
      pass->exec = std::move(idle_);
      idle_plan_.reset();
    } else {
      pass->exec = std::make_unique<Executor<T>>(with_batch(static_cast<int>(batch)), LossKind::Xent, *planned.plan);
    }
    load(weights);
    pass->exec->net().set_dropout(training_, seed_);
    pass->stats = pass->exec->forward(weights_, x, length, h0, y, hn);
    return pass;
  }

  void backward(PassOf<T>& pass, const T* weights, const T* dy, const T* dhn, T* dx, T* dh0, T* dweights) {
    if (pass.backward_done)
      throw ArgumentError("this forward pass has been backpropagated already: its stored states are gone (in PyTorch: "
                          "backward through the graph a second time needs retain_graph=True, which membptt "
                          "does not keep)");
    std::lock_guard lock(mu_);
    if (pass.stack) {
      pass.stats = pass.stack->backward(weights, dy, dhn, dx, dh0, dweights);
      pass.backward_done = true;
      return;
    }
    load(weights);
    grads_.zero();
    pass.stats = pass.exec->backward(weights_, dy, dhn, dx, dh0, grads_);
    pass.backward_done = true;
    if (dweights) std::memcpy(dweights, grads_.data(), static_cast<std::size_t>(weight_count_) * sizeof(T));
  }

  // Keeps the executor of a finished pass for the next pass of the same plan (one is kept: the
  // last; a pass freed before its backward leaves its executor mid-schedule, so it is dropped).
  void give_back(PassOf<T>& pass) {
    if (pass.waiting()) return;
    std::lock_guard lock(mu_);
    if (pass.stack) {
      idle_stack_ = std::move(pass.stack);
      idle_bi_ = pass.bi;
      return;
    }
    if (!pass.exec) return;
    idle_ = std::move(pass.exec);
    idle_plan_ = pass.plan;
  }

 private:
  static constexpr std::int64_t kMaxBatch = 1 << 24;
  static constexpr std::size_t kPlansKept = 16;

  NetShape with_batch(int batch) const {
    NetShape s = shape_;
    s.batch = batch;
    return s;
  }

  void load(const T* weights) { std::memcpy(weights_.data(), weights, static_cast<std::size_t>(weight_count_) * sizeof(T)); }

  Planned plan_locked(std::int64_t length, std::int64_t batch) {
    check_length(length);
    const int b = size_in(batch, "batch", kMaxBatch);
    const auto key = std::make_pair(length, b);
    if (auto it = plans_.find(key); it != plans_.end()) return it->second;
    Planned planned = shape_.bidirectional ? plan_bidirectional_in(length, b) : plan_one_way(length, b);
    if (plans_.size() >= kPlansKept) plans_.clear();  // lengths that keep changing: plan anew
    plans_.emplace(key, planned);
    return planned;
  }

  Planned plan_one_way(std::int64_t length, int b) const {
    const StateSizes sizes = state_sizes(with_batch(b), sizeof(T));
    const double plain = static_cast<double>(sizes.plain_bptt_bytes(length));
    double budget = budget_ ? budget_->bytes(sizes, length) : plain;
    auto plan = std::make_shared<const Plan>(plan_in(length, b, budget, sizes));
    return Planned{std::move(plan), budget, plain, nullptr};
  }

  // A bidirectional stack: a plan per layer (exec/bidirectional.hpp); a share is of the stack's
  // chains' plain BPTT memory, the held sequences added whole (bidirectional_share_bytes), and, as
  // below, raised to the least that works.
  Planned plan_bidirectional_in(std::int64_t length, int b) const {
    const NetShape s = with_batch(b);
    const double plain = bidirectional_plain_bytes(s, length, sizeof(T));
    std::optional<double> budget;
    if (budget_) {
      budget = budget_->percent ? bidirectional_share_bytes(budget_->value, s, length, sizeof(T)) : budget_->value;
      if (budget_->percent)
        budget = std::max(*budget, bidirectional_least_bytes(policy_.value_or(Policy::Msm), s, length, sizeof(T)));
    }
    auto bi = std::make_shared<const BidirectionalPlans>(plan_bidirectional(policy_, s, length, budget, sizeof(T), beta_));
    return Planned{bi->layer[0], bi->budget_bytes, plain, bi};
  }

  // plan_for_bytes. A share is of this sequence's plain BPTT memory; where it falls below the least
  // that works (short sequences: the fixed workspace outweighs 5% of little), it is raised to that
  // least, so that a share never fails on a short batch; bytes are a limit and fail, naming it.
  Plan plan_in(std::int64_t length, int batch, double& budget, const StateSizes& sizes) const {
    if (budget_ && budget_->percent)
      budget = std::max(budget, least_bytes(policy_.value_or(Policy::Msm), length, sizes));
    try {
      return plan_for_bytes(policy_, length, budget, sizes, beta_);
    } catch (const PlanError& e) {
      if (!budget_ || !budget_->percent) throw;
      std::ostringstream os;
      os << "memory budget " << budget_->value << "% of plain BPTT's memory for " << length << " steps of a batch of "
         << batch << ": " << e.what();
      throw PlanError(os.str());
    }
  }

  NetShape shape_;
  std::optional<BudgetSpec> budget_;
  std::optional<Policy> policy_;
  double beta_;
  std::int64_t weight_count_ = 0;
  std::mutex mu_;
  Params<T> weights_, grads_;  // the caller's weights and the gradients, in the cells' layout
  std::map<std::pair<std::int64_t, int>, Planned> plans_;
  std::unique_ptr<Executor<T>> idle_;  // an executor no pass uses, with its arena
  std::shared_ptr<const Plan> idle_plan_;
  std::unique_ptr<BidirectionalStack<T>> idle_stack_;  // likewise, bidirectional
  std::shared_ptr<const BidirectionalPlans> idle_bi_;
  bool training_ = false;  // dropout on (membptt_rnn_set_dropout)
  std::uint64_t seed_ = 0;
  std::unique_ptr<RecurrentNet<T>> infer_net_;  // inference: one net and its carry
  backend::AlignedBuffer<T> carry_;
};

}  // namespace

struct membptt_rnn {
  std::variant<std::shared_ptr<Rnn<float>>, std::shared_ptr<Rnn<double>>> impl;
};

struct membptt_pass {
  std::variant<std::unique_ptr<PassOf<float>>, std::unique_ptr<PassOf<double>>> impl;
};

extern "C" {

void membptt_rnn_options_default(membptt_rnn_options* options) {
  if (options) *options = membptt_rnn_options{1, 0, 0, 0.0, "tanh"};
}

membptt_status membptt_rnn_create(const char* cell, int64_t input_size, int64_t hidden_size, int64_t num_layers,
                                  int32_t dtype, const char* memory, const char* policy, double beta, membptt_rnn** out) {
  return membptt_rnn_create_ex(cell, input_size, hidden_size, num_layers, nullptr, dtype, memory, policy, beta, out);
}

membptt_status membptt_rnn_create_ex(const char* cell, int64_t input_size, int64_t hidden_size, int64_t num_layers,
                                     const membptt_rnn_options* options, int32_t dtype, const char* memory,
                                     const char* policy, double beta, membptt_rnn** out) {
  return guarded([&] {
    require(out != nullptr, "out");
    *out = nullptr;
    require(cell != nullptr, "cell");
    NetShape shape;
    const std::string name(cell);
    if (name == "lstm") shape.cell = CellType::Lstm;
    else if (name == "gru") shape.cell = CellType::Gru;
    else if (name == "rnn") shape.cell = CellType::Rnn;
    else throw ArgumentError("cell '" + name + "' is not allowed: allowed are lstm, gru, rnn");
    shape.input_size = size_in(input_size, "input_size", 1 << 30);
    shape.hidden_size = size_in(hidden_size, "hidden_size", 1 << 30);
    shape.num_layers = size_in(num_layers, "num_layers", kMaxLayers);
    shape.output_size = 1;  // the executor's head is not used: one unit keeps it small
    membptt_rnn_options opt;
    membptt_rnn_options_default(&opt);
    if (options) opt = *options;
    if (opt.bias != 0 && opt.bias != 1)
      throw ArgumentError("bias " + std::to_string(opt.bias) + " is not allowed: use 1 (biases) or 0 (bias=False)");
    shape.bias = opt.bias == 1;
    const std::string nl = opt.nonlinearity ? opt.nonlinearity : "tanh";
    if (nl != "tanh" && nl != "relu")
      throw ArgumentError("nonlinearity '" + nl + "' is not allowed: allowed are tanh, relu");
    if (nl == "relu" && shape.cell != CellType::Rnn)
      throw ArgumentError("nonlinearity relu is not allowed for cell " + name + ": only rnn takes relu");
    shape.nonlinearity = nl == "relu" ? Nonlinearity::Relu : Nonlinearity::Tanh;
    if (opt.bidirectional != 0 && opt.bidirectional != 1)
      throw ArgumentError("bidirectional " + std::to_string(opt.bidirectional) +
                          " is not allowed: use 0 (forward in time) or 1 (both directions)");
    shape.bidirectional = opt.bidirectional == 1;
    if (opt.proj_size < 0 || opt.proj_size >= hidden_size)
      throw ArgumentError("proj_size " + std::to_string(opt.proj_size) + " is not allowed: allowed is 0 (none) or 1 to " +
                          std::to_string(hidden_size - 1) + " (below hidden_size)");
    if (opt.proj_size != 0 && shape.cell != CellType::Lstm)
      throw ArgumentError("proj_size " + std::to_string(opt.proj_size) + " is not allowed for cell " + name +
                          ": only lstm has projections");
    shape.proj_size = static_cast<int>(opt.proj_size);
    if (!(opt.dropout >= 0.0 && opt.dropout <= 1.0))
      throw ArgumentError("dropout " + std::to_string(opt.dropout) + " is not allowed: allowed is 0 to 1");
    shape.dropout = opt.dropout;
    try {
      validate(shape);
      (void)param_count(shape);
    } catch (const std::invalid_argument& e) {
      throw ArgumentError(e.what());
    }
    if (!std::isfinite(beta) || beta < 0 || beta > kMaxCostRatio)
      throw ArgumentError("beta " + std::to_string(beta) + " is not allowed: allowed is 0 to " + std::to_string(kMaxCostRatio));
    std::optional<BudgetSpec> budget;
    if (memory != nullptr) budget = parse_budget(memory);
    const std::optional<Policy> p = policy_of(policy);
    auto* h = new membptt_rnn;
    if (dtype == MEMBPTT_FLOAT32) h->impl = std::make_shared<Rnn<float>>(shape, budget, p, beta);
    else if (dtype == MEMBPTT_FLOAT64) h->impl = std::make_shared<Rnn<double>>(shape, budget, p, beta);
    else {
      delete h;
      throw ArgumentError("dtype " + std::to_string(dtype) + " is not allowed: use 0 (float32) or 1 (float64)");
    }
    *out = h;
  });
}

void membptt_rnn_free(membptt_rnn* rnn) { delete rnn; }

membptt_status membptt_rnn_set_dropout(membptt_rnn* rnn, int32_t training, uint64_t seed) {
  return guarded([&] {
    require(rnn != nullptr, "rnn");
    if (training != 0 && training != 1)
      throw ArgumentError("training " + std::to_string(training) + " is not allowed: use 1 (dropout on) or 0 (off)");
    std::visit([&](const auto& r) { r->set_dropout(training == 1, seed); }, rnn->impl);
  });
}

membptt_status membptt_dropout_keep(uint64_t seed, int64_t layer, int64_t step, int64_t count, double p, uint8_t* keep) {
  return guarded([&] {
    require(keep != nullptr || count == 0, "keep");
    if (count < 0 || layer < 0 || step < 0)
      throw ArgumentError("layer, step and count must be >= 0, got " + std::to_string(layer) + ", " +
                          std::to_string(step) + ", " + std::to_string(count));
    if (!(p >= 0.0 && p <= 1.0)) throw ArgumentError("dropout " + std::to_string(p) + " is not allowed: allowed is 0 to 1");
    const std::uint64_t thr = dropout_threshold(p);
    for (int64_t k = 0; k < count; ++k)
      keep[k] = p < 1 && dropout_bits(seed, static_cast<std::uint64_t>(layer), static_cast<std::uint64_t>(step),
                                      static_cast<std::uint64_t>(k)) >= thr;
  });
}

int64_t membptt_rnn_weight_count(const membptt_rnn* rnn) {
  return std::visit([](const auto& r) { return r->weight_count(); }, rnn->impl);
}

int64_t membptt_rnn_carry_count(const membptt_rnn* rnn, int64_t batch) {
  int64_t n = -1;
  (void)guarded([&] { n = std::visit([&](const auto& r) { return r->carry_count(batch); }, rnn->impl); });
  return n;
}

membptt_status membptt_rnn_plan(membptt_rnn* rnn, int64_t length, int64_t batch, membptt_plan** out, double* budget_bytes,
                                double* plain_bytes) {
  return guarded([&] {
    require(rnn != nullptr && out != nullptr, "rnn and out");
    *out = nullptr;
    const auto planned = std::visit([&](const auto& r) { return r->plan_for(length, batch); }, rnn->impl);
    if (budget_bytes) *budget_bytes = planned.budget_bytes;
    if (plain_bytes) *plain_bytes = planned.plain_bytes;
    *out = new membptt_plan{*planned.plan};
  });
}

membptt_status membptt_rnn_forward(membptt_rnn* rnn, int64_t length, int64_t batch, const void* weights, const void* input,
                                   const void* h0, void* output, void* final_carry, membptt_pass** pass) {
  return guarded([&] {
    require(rnn != nullptr && weights != nullptr && input != nullptr && output != nullptr, "rnn, weights, input and output");
    if (pass) *pass = nullptr;
    std::visit(
        [&](const auto& r) {
          using T = typename std::remove_reference_t<decltype(*r)>::Scalar;
          const auto* w = static_cast<const T*>(weights);
          const auto* x = static_cast<const T*>(input);
          if (pass == nullptr) {
            check_length(length);
            r->infer(length, batch, w, x, static_cast<const T*>(h0), static_cast<T*>(output), static_cast<T*>(final_carry));
            return;
          }
          auto p = r->forward(length, batch, w, x, static_cast<const T*>(h0), static_cast<T*>(output),
                              static_cast<T*>(final_carry));
          *pass = new membptt_pass{std::move(p)};
        },
        rnn->impl);
  });
}

membptt_status membptt_pass_backward(membptt_pass* pass, const void* weights, const void* doutput, const void* dfinal_carry,
                                     void* dinput, void* dh0, void* dweights) {
  return guarded([&] {
    require(pass != nullptr && weights != nullptr, "pass and weights");
    std::visit(
        [&](auto& p) {
          using T = typename std::remove_reference_t<decltype(*p)>::Scalar;
          p->rnn->backward(*p, static_cast<const T*>(weights), static_cast<const T*>(doutput),
                           static_cast<const T*>(dfinal_carry), static_cast<T*>(dinput), static_cast<T*>(dh0),
                           static_cast<T*>(dweights));
        },
        pass->impl);
  });
}

membptt_status membptt_pass_stats_get(const membptt_pass* pass, membptt_pass_stats* out) {
  return guarded([&] {
    require(pass != nullptr && out != nullptr, "pass and out");
    std::visit(
        [&](const auto& p) {
          const RunStats& s = p->stats;
          *out = membptt_pass_stats{s.forward_steps, s.backward_steps, p->planned_forward_steps(),
                                    static_cast<int64_t>(s.peak_arena_bytes), static_cast<int64_t>(p->arena_bytes()),
                                    static_cast<int64_t>(p->workspace_bytes()), p->budget_bytes};
        },
        pass->impl);
  });
}

void membptt_pass_free(membptt_pass* pass) {
  if (pass == nullptr) return;
  std::visit([](auto& p) { p->rnn->give_back(*p); }, pass->impl);
  delete pass;
}

int32_t membptt_num_threads(void) { return backend::gemm_threads(); }

membptt_status membptt_set_num_threads(int32_t n) {
  return guarded([&] {
    if (n < 1 || n > 4096)
      throw ArgumentError("number of threads " + std::to_string(n) + " is not allowed: allowed is 1 to 4096");
    backend::set_gemm_threads(n);
  });
}

}  // extern "C"
