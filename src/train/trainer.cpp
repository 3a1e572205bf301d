#include "membptt/train/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <new>
#include <random>
#include <stdexcept>

#include <fmt/format.h>

#include "membptt/cells/recurrent_net.hpp"
#include "membptt/io/params_io.hpp"
#include "membptt/train/optim.hpp"
#include "membptt/train/utf8.hpp"

namespace membptt::train {

std::size_t TrainerBase::planned_bytes() const {
  return sizes().workspace_at(plan().length) +
         static_cast<std::size_t>(std::llround(plan().peak_units * static_cast<double>(sizes().hidden_bytes)));
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

const char* nonfinite_word(double v) { return std::isnan(v) ? "nan" : "inf"; }

ModelSpec spec_of(const TrainConfig& c, const TaskInfo& info) {
  ModelSpec s;
  s.cell = c.cell;
  s.input_size = info.input_size;
  s.hidden_size = c.hidden;
  s.num_layers = c.layers;
  s.bias = c.bias;
  s.nonlinearity = c.nonlinearity;
  s.proj_size = c.proj_size;
  s.bidirectional = c.bidirectional;
  s.output_size = info.output_size;
  s.loss = info.loss == LossKind::Xent ? "xent" : "mse_last";
  s.dtype = c.dtype;
  return s;
}

std::string vocab_json(const std::vector<char32_t>& vocab) {
  nlohmann::json v = nlohmann::json::array();
  for (char32_t c : vocab) v.push_back(static_cast<std::uint32_t>(c));
  return v.dump();
}

template <class T>
bool all_finite(const Params<T>& p) {
  for (const T x : p.all())
    if (!std::isfinite(x)) return false;
  return true;
}

// Tallec & Ollivier 2018, "Can recurrent neural networks warp time?": LSTM forget-gate bias log(u),
// input-gate bias -log(u), u ~ U[1, T_max - 1]; PyTorch has two bias vectors, so the value goes into
// bias_ih and the bias_hh entries of those gates are zeroed. Gate rows are in the order i, f, g, o.
template <class T>
void chrono_init(Params<T>& p, std::int64_t t_max, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  const int H = p.shape().hidden_size;
  const double hi = std::max<double>(2.0, static_cast<double>(t_max) - 1.0);
  for (int c = 0; c < directions(p.shape()) * p.shape().num_layers; ++c) {
    const int l = c / directions(p.shape());
    const char* sfx = c % directions(p.shape()) == 1 ? "_reverse" : "";
    std::span<T> bih = p.view(fmt::format("rnn.bias_ih_l{}{}", l, sfx)), bhh = p.view(fmt::format("rnn.bias_hh_l{}{}", l, sfx));
    for (int j = 0; j < H; ++j) {
      const double b = std::log(1.0 + unit_double(g) * (hi - 1.0));
      const auto i = static_cast<std::size_t>(j), f = static_cast<std::size_t>(H + j);
      bih[f] = static_cast<T>(b);
      bih[i] = static_cast<T>(-b);
      bhh[f] = T(0);
      bhh[i] = T(0);
    }
  }
}

template <class T>
std::vector<T> read_floats(const SafeTensors& st, const std::string& name, const std::vector<std::int64_t>& shape) {
  const DType want = sizeof(T) == sizeof(float) ? DType::F32 : DType::F64;
  if (!st.contains(name)) throw TrainError(fmt::format("{}: missing tensor '{}'", st.source(), name));
  const TensorInfo& info = st.info(name);
  if (info.dtype != want || info.shape != shape)
    throw TrainError(fmt::format("{}: tensor '{}' is {} {}, expected {} {}", st.source(), name, dtype_name(info.dtype),
                                 shape_string(info.shape), dtype_name(want), shape_string(shape)));
  if constexpr (sizeof(T) == sizeof(float))
    return st.read_f32(name);
  else
    return st.read_f64(name);
}

template <class T>
class Trainer final : public TrainerBase {
 public:
  Trainer(const TrainConfig& c, std::shared_ptr<const Corpus> corpus, std::shared_ptr<const GradientDevice> device)
      : cfg_(c),
        device_(std::move(device)),
        corpus_(std::move(corpus)),
        info_(task_info(c, corpus_.get())),
        shape_{parse_cell(c.cell), info_.input_size, c.hidden,  c.layers,
               c.batch,            info_.output_size, c.bias, parse_nonlinearity(c.nonlinearity), c.proj_size,
               c.dropout,          c.bidirectional},
        task_(make_task<T>(c, corpus_)),
        params_(shape_),
        grads_(shape_),
        opt_(make_optimizer<T>(c.optimizer, shape_, c.lr)),
        sizes_(device_->sizes(shape_.bidirectional ? chain_shape(shape_, 0) : shape_, sizeof(T))) {
    init_pytorch_default(params_, c.seed);
    if (c.init == "chrono") chrono_init(params_, c.length, derive_seed(c.seed, 4));
    const std::size_t carry = carry_elems(shape_);
    carry_ = backend::AlignedBuffer<T>(carry);
    next_carry_ = backend::AlignedBuffer<T>(carry);
    // The batch's buffers now, not at the first step, so that a run too large for the machine
    // fails here, where make_trainer names what it needed.
    if (static_cast<double>(c.length) * c.batch * info_.input_size > 1e18) throw std::length_error("the batch's inputs");
    const auto steps = static_cast<std::size_t>(c.length), B = static_cast<std::size_t>(c.batch);
    batch_.inputs.reserve(steps * B * static_cast<std::size_t>(info_.input_size));
    if (info_.loss == LossKind::Xent) batch_.classes.reserve(steps * B);
    set_budget(c.memory, c.policy);
  }

  const TrainConfig& config() const override { return cfg_; }
  const Plan& plan() const override { return pass_->plan(); }
  std::size_t planned_bytes() const override {
    if (!bi_plans_) return TrainerBase::planned_bytes();
    return static_cast<std::size_t>(std::llround(bidirectional_pass_planned_bytes(shape_, *bi_plans_, sizeof(T), device_.get())));
  }
  std::size_t plain_bytes() const override {
    if (!bi_plans_) return TrainerBase::plain_bytes();
    return static_cast<std::size_t>(std::llround(bidirectional_pass_plain_bytes(shape_, cfg_.length, sizeof(T), device_.get())));
  }
  std::int64_t planned_forward_steps() const override { return pass_->planned_forward_steps(); }
  double predicted_time_ratio() const override {
    return bi_plans_ ? bidirectional_time_ratio(*bi_plans_) : pass_->plan().time_ratio();
  }
  // The dropout masks' seed of optimizer step k.
  std::uint64_t dropout_seed(std::int64_t k) const {
    return derive_seed(derive_seed(cfg_.seed, 5), static_cast<std::uint64_t>(k));
  }
  const StateSizes& sizes() const override { return sizes_; }
  std::int64_t step_count() const override { return step_; }
  std::size_t parameter_count() const override { return params_.size(); }
  std::string device() const override { return device_->name(); }
  double baseline() const override { return task_->baseline(); }
  std::string baseline_name() const override { return task_->baseline_name(); }
  bool params_finite() const override { return all_finite(params_); }

  void set_budget(const std::string& memory, const std::string& policy) override {
    std::optional<Policy> pol;
    if (policy != "auto") {
      pol = parse_policy(policy);
      if (!pol) throw TrainError(fmt::format("--policy '{}' is not allowed", policy));
    }
    if (shape_.bidirectional) {  // a plan per layer (exec/bidirectional.hpp)
      const double bytes =
          bidirectional_pass_budget_bytes(parse_budget(memory), shape_, cfg_.length, sizeof(T), device_.get());
      bi_plans_ = plan_bidirectional_pass(pol, shape_, cfg_.length, bytes, sizeof(T), 2.0, device_.get());
      pass_ = device_->make_bidirectional_pass<T>(shape_, info_.loss, *bi_plans_);
    } else {
      const double bytes = parse_budget(memory).bytes(sizes_, cfg_.length);
      Plan plan = plan_for_bytes(pol, cfg_.length, bytes, sizes_, 2.0);
      pass_ = device_->make_pass<T>(shape_, info_.loss, std::move(plan));
    }
    cfg_.memory = memory;
    cfg_.policy = policy;
  }

  StepResult step() override {
    const auto t0 = Clock::now();
    const std::int64_t k = step_ + 1;
    task_->next_batch(batch_);
    const T* h0 = batch_.continues ? carry_.data() : nullptr;
    StepResult r;
    r.step = k;
    if (cfg_.dropout > 0) pass_->set_dropout(true, dropout_seed(k));  // a function of --seed and the step: resumable
    r.stats = pass_->run(params_, batch_.view(cfg_.length, h0), grads_, next_carry_.data());  // grads_ overwritten
    r.loss = r.stats.loss;
    if (!std::isfinite(r.loss)) throw Diverged(k, fmt::format("the loss is {} at step {}", nonfinite_word(r.loss), k));
    r.grad_norm = clip_global_norm(grads_, cfg_.clip);
    if (!std::isfinite(r.grad_norm))
      throw Diverged(k, fmt::format("the gradient norm is {} at step {}", nonfinite_word(r.grad_norm), k));
    opt_->step(params_, grads_);
    if (!all_finite(params_))
      throw Diverged(k, fmt::format("the update of step {} made a parameter nan or inf", k));
    carry_.swap(next_carry_);
    step_ = k;
    r.held_bytes = pass_->workspace_bytes() + r.stats.peak_arena_bytes;
    r.graph = pass_->graph();
    r.seconds = seconds_since(t0);
    return r;
  }

  EvalResult evaluate(std::int64_t sequences) const override { return task_->evaluate(params_, shape_, sequences); }

  void add_model(CheckedWriter& w) const {
    for (const auto& [k, v] : model_spec_metadata(spec_of(cfg_, info_))) w.set_metadata(k, v);
    w.set_metadata("config", to_json(cfg_).dump());
    if (corpus_) w.set_metadata("vocab", vocab_json(corpus_->vocab));
    for (const ParamView& v : params_.views()) w.add(v.name, v.shape, params_.data() + v.offset, v.size);
  }

  void save_checkpoint(const std::filesystem::path& file, double elapsed_seconds,
                       const std::string& pending_log_line = {}) const override {
    if (!all_finite(params_)) throw TrainError("refusing to save a checkpoint with non-finite parameters");
    CheckedWriter w;
    add_model(w);
    w.set_metadata("format", kCheckpointFormat);
    w.set_metadata("step", std::to_string(step_));
    w.set_metadata("optimizer_step", std::to_string(opt_->steps()));
    w.set_metadata("data", task_->state().dump());
    w.set_metadata("elapsed_seconds", fmt::format("{:.3f}", elapsed_seconds));
    if (!pending_log_line.empty()) w.set_metadata("pending_log", pending_log_line);
    const auto P = static_cast<std::int64_t>(params_.size());
    if (Params<T>* m = opt_->exp_avg()) w.add("optimizer.exp_avg", {P}, m->data(), m->size());
    if (Params<T>* v = opt_->exp_avg_sq()) w.add("optimizer.exp_avg_sq", {P}, v->data(), v->size());
    if (corpus_) {
      w.set_metadata("text_hash", hex64(corpus_->hash));
      w.add("state.carry", carry_shape(), carry_.data(), carry_.size());
    }
    w.write(file);
  }

  void write_model(const std::filesystem::path& file) const override {
    CheckedWriter w;
    add_model(w);
    w.write(file);
  }

  void restore(const ModelSource& ck) override {
    const std::string prefix = ck.file.string();
    if (!ck.is_checkpoint || !ck.config) throw TrainError(fmt::format("{} is not a checkpoint", prefix));
    const std::string diff = result_difference(*ck.config, cfg_);
    if (!diff.empty()) throw TrainError(fmt::format("{}: {}", prefix, diff));
    if (ck.spec.input_size != shape_.input_size || ck.spec.output_size != shape_.output_size)
      throw TrainError(fmt::format("{}: input_size {} and output_size {} do not fit the task's {} and {}", prefix,
                                   ck.spec.input_size, ck.spec.output_size, shape_.input_size, shape_.output_size));
    if (corpus_) {
      if (ck.text_hash != hex64(corpus_->hash))
        throw TrainError(fmt::format("{}: the text file {} changed since the checkpoint was written (hash {} there, {} now)",
                                     prefix, corpus_->source, ck.text_hash, hex64(corpus_->hash)));
      if (ck.vocab != corpus_->vocab) throw TrainError(fmt::format("{}: the vocabulary differs from the text's", prefix));
    }
    if (ck.step > cfg_.steps)
      throw TrainError(fmt::format("--steps {} is less than the {} steps the checkpoint has done: allowed is {} or more",
                                   cfg_.steps, ck.step, ck.step));
    load_params(ck.tensors, params_);
    const auto P = static_cast<std::int64_t>(params_.size());
    if (Params<T>* m = opt_->exp_avg()) {
      const auto mv = read_floats<T>(ck.tensors, "optimizer.exp_avg", {P});
      const auto vv = read_floats<T>(ck.tensors, "optimizer.exp_avg_sq", {P});
      std::copy(mv.begin(), mv.end(), m->data());
      std::copy(vv.begin(), vv.end(), opt_->exp_avg_sq()->data());
    }
    opt_->set_steps(ck.optimizer_step);
    task_->restore(ck.data);
    if (corpus_) {
      const auto cv = read_floats<T>(ck.tensors, "state.carry", carry_shape());
      std::copy(cv.begin(), cv.end(), carry_.data());
    }
    step_ = ck.step;
  }

  PlainComparison compare_with_plain(int repeats) override {
    // The check batch: the first of a fresh data stream (the training stream is left alone).
    auto fresh = make_task<T>(cfg_, corpus_);
    Batch<T> b;
    fresh->next_batch(b);
    const SequenceBatch<T> view = b.view(cfg_.length, nullptr);
    // On the trainer's device: a second pass with plain BPTT's plan beside the chosen one.
    const auto full =
        bi_plans_ ? device_->make_bidirectional_pass<T>(
                        shape_, info_.loss,
                        plan_bidirectional_pass(Policy::Full, shape_, cfg_.length, std::nullopt, sizeof(T), 2.0,
                                                device_.get()))
                  : device_->make_pass<T>(shape_, info_.loss,
                                          plan_for_bytes(Policy::Full, cfg_.length, static_cast<double>(plain_bytes()),
                                                         sizes_, 2.0));
    Params<T> g_full(shape_), g_chosen(shape_);
    const std::size_t carry = carry_elems(shape_);
    std::vector<T> c_full(carry), c_chosen(carry);
    if (cfg_.dropout > 0) {  // the same masks for both
      full->set_dropout(true, dropout_seed(step_ + 1));
      pass_->set_dropout(true, dropout_seed(step_ + 1));
    }
    const RunStats s_full = full->run(params_, view, g_full, c_full.data());
    const RunStats s_chosen = pass_->run(params_, view, g_chosen, c_chosen.data());
    PlainComparison pc;
    pc.bitwise_equal = std::memcmp(g_full.data(), g_chosen.data(), g_full.size() * sizeof(T)) == 0 &&
                       std::memcmp(c_full.data(), c_chosen.data(), carry * sizeof(T)) == 0 &&
                       std::memcmp(&s_full.loss, &s_chosen.loss, sizeof(double)) == 0;
    pc.plain_held_bytes = full->workspace_bytes() + s_full.peak_arena_bytes;
    pc.chosen_held_bytes = pass_->workspace_bytes() + s_chosen.peak_arena_bytes;
    pc.plain_forward_steps = s_full.forward_steps;
    pc.chosen_forward_steps = s_chosen.forward_steps;
    std::vector<double> tf, tc;
    for (int r = 0; r < repeats; ++r) {  // the passes alone, without transfers to or from a device
      tf.push_back(full->time_again());
      tc.push_back(pass_->time_again());
    }
    auto median = [](std::vector<double> v) {
      if (v.empty()) return 0.0;
      std::sort(v.begin(), v.end());
      return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
    };
    pc.plain_seconds = median(tf);
    pc.chosen_seconds = median(tc);
    return pc;
  }

 private:
  std::vector<std::int64_t> carry_shape() const {
    if (shape_.proj_size > 0) return {static_cast<std::int64_t>(carry_.size())};  // h [DL,B,P] then c [DL,B,H], flat
    return {shape_.cell == CellType::Lstm ? 2 : 1, directions(shape_) * shape_.num_layers, shape_.batch,
            shape_.hidden_size};
  }

  TrainConfig cfg_;
  std::shared_ptr<const GradientDevice> device_;
  std::shared_ptr<const Corpus> corpus_;
  TaskInfo info_;
  NetShape shape_;
  std::unique_ptr<Task<T>> task_;
  Params<T> params_, grads_;
  std::unique_ptr<Optimizer<T>> opt_;
  StateSizes sizes_;
  std::unique_ptr<GradientPass<T>> pass_;
  std::optional<BidirectionalPlans> bi_plans_;  // a bidirectional network's plans
  backend::AlignedBuffer<T> carry_, next_carry_;
  Batch<T> batch_;
  std::int64_t step_ = 0;
};

template <class T>
EvalResult evaluate_typed(const ModelSource& m, const TrainConfig& c, std::shared_ptr<const Corpus> corpus,
                          const NetShape& shape, std::int64_t sequences) {
  Params<T> p(shape);
  load_params(m.tensors, p);
  return make_task<T>(c, std::move(corpus))->evaluate(p, shape, sequences);
}

template <class T>
std::vector<std::int32_t> sample_typed(const ModelSource& m, const NetShape& shape, const std::vector<std::int32_t>& prime,
                                       std::int64_t length, double temperature, std::uint64_t seed) {
  Params<T> p(shape);
  load_params(m.tensors, p);
  return sample_classes(p, shape, static_cast<int>(m.vocab.size()), prime, length, temperature, seed);
}

}  // namespace

std::shared_ptr<const Corpus> load_corpus(const TrainConfig& c) {
  if (c.task != "text") return nullptr;
  if (c.text.empty()) throw TrainError("--task text needs a text file (--text FILE)");
  return std::make_shared<const Corpus>(Corpus::load(c.text));
}

namespace {

// What a run holds, in bytes (double: the products of the allowed ranges pass 2^64), for the
// message of a run too large to allocate.
std::string run_memory_text(const TrainConfig& c, const TaskInfo& info) {
  const double scalar = c.dtype == "float64" ? 8 : 4, GiB = 1024.0 * 1024 * 1024, I = info.input_size;
  const double params = static_cast<double>(
      param_count(NetShape{parse_cell(c.cell), info.input_size, c.hidden, c.layers, c.batch, info.output_size, c.bias,
                           parse_nonlinearity(c.nonlinearity), c.proj_size, 0, c.bidirectional}));
  const double state = params * scalar * (c.optimizer == "adam" ? 4 : 2);
  const double batch = static_cast<double>(c.length) * c.batch * (I * scalar + (info.loss == LossKind::Xent ? 8 : 0));
  return fmt::format("about {:.2f} GiB for {:.4g} parameters with their gradients{} and {:.2f} GiB for a batch of {} x {} "
                     "steps of {} inputs, before the activation memory (--memory)",
                     state / GiB, params, c.optimizer == "adam" ? " and Adam's moments" : "", batch / GiB, c.batch, c.length,
                     info.input_size);
}

}  // namespace

std::unique_ptr<TrainerBase> make_trainer(const TrainConfig& c, std::shared_ptr<const Corpus> corpus,
                                          std::shared_ptr<const GradientDevice> device) {
  validate(c);
  if (!device) device = cpu_device();
  try {
    if (c.dtype == "float64") return std::make_unique<Trainer<double>>(c, corpus, std::move(device));
    return std::make_unique<Trainer<float>>(c, corpus, std::move(device));
  } catch (const std::bad_alloc&) {
    throw TrainError(fmt::format("not enough memory for this run: it needs {}", run_memory_text(c, task_info(c, corpus.get()))));
  } catch (const std::length_error&) {
    throw TrainError(fmt::format("this run is too large to represent: it needs {}", run_memory_text(c, task_info(c, corpus.get()))));
  } catch (const backend::AllocationError& e) {
    throw TrainError(fmt::format("not enough memory for this run ({}): it needs {}", e.what(),
                                 run_memory_text(c, task_info(c, corpus.get()))));
  }
}

std::string result_difference(const TrainConfig& a, const TrainConfig& b) {
  auto differ = [](const char* name, const auto& x, const auto& y) -> std::string {
    if (x == y) return "";
    return fmt::format("--{} {} in the checkpoint, {} given: a resumed run keeps every setting that decides the result "
                       "(it may change --steps, --memory, --policy, --save, --save-every, --log)",
                       name, x, y);
  };
  for (const std::string& d :
       {differ("task", a.task, b.task), differ("cell", a.cell, b.cell), differ("hidden", a.hidden, b.hidden),
        differ("layers", a.layers, b.layers), differ("no-bias", !a.bias, !b.bias),
        differ("nonlinearity", a.nonlinearity, b.nonlinearity), differ("proj-size", a.proj_size, b.proj_size),
        differ("bidirectional", a.bidirectional, b.bidirectional),
        differ("dropout", a.dropout, b.dropout),
        differ("batch", a.batch, b.batch),
        differ("length", a.length, b.length),
        differ("optimizer", a.optimizer, b.optimizer), differ("lr", a.lr, b.lr), differ("clip", a.clip, b.clip),
        differ("seed", a.seed, b.seed), differ("init", a.init, b.init), differ("dtype", a.dtype, b.dtype),
        differ("copy-symbols", a.copy_symbols, b.copy_symbols), differ("copy-alphabet", a.copy_alphabet, b.copy_alphabet)})
    if (!d.empty()) return d;
  return "";
}

EvalResult evaluate_model(const ModelSource& m, const EvalOptions& o) {
  if (!m.config && o.task.empty())
    throw TrainError(fmt::format("{} has no training config (metadata 'config'): pass --task", m.file.string()));
  TrainConfig c = m.config.value_or(TrainConfig{});
  if (!o.task.empty()) c.task = o.task;
  if (!o.text.empty()) c.text = o.text;
  if (o.length > 0) c.length = o.length;
  if (o.batch > 0) c.batch = o.batch;
  if (o.seed > 0) c.seed = o.seed;
  c.cell = m.spec.cell;
  c.hidden = m.spec.hidden_size;
  c.layers = m.spec.num_layers;
  c.bias = m.spec.bias;
  c.nonlinearity = m.spec.nonlinearity;
  c.proj_size = m.spec.proj_size;
  c.bidirectional = m.spec.bidirectional;
  c.dtype = m.spec.dtype;
  validate(c);
  if (o.sequences < 1) throw TrainError(fmt::format("--sequences {} is not allowed: allowed is 1 or more", o.sequences));
  if (c.task == "text" && o.length > 0)
    throw TrainError(fmt::format("--length {} is not allowed for a text model: eval reads the held-out part straight through "
                                 "(--length is for adding and copy)",
                                 o.length));
  std::shared_ptr<const Corpus> corpus;
  if (c.task == "text") {
    if (m.vocab.empty())
      throw TrainError(fmt::format("{} has no vocabulary (metadata 'vocab'): use a text model written by membptt train",
                                   m.file.string()));
    corpus = std::make_shared<const Corpus>(Corpus::load(c.text, m.vocab));
  }
  const TaskInfo info = task_info(c, corpus.get());
  const std::string loss = info.loss == LossKind::Xent ? "xent" : "mse_last";
  // (A state dict's loss is the one --task gave it: only its sizes can disagree.)
  const bool own_loss = m.loss_from_file;
  if (m.spec.input_size != info.input_size || m.spec.output_size != info.output_size || m.spec.loss != loss)
    throw TrainError(own_loss ? fmt::format("{} has input_size {}, output_size {}, loss {}; --task {} needs {}, {}, {}",
                                            m.file.string(), m.spec.input_size, m.spec.output_size, m.spec.loss, c.task,
                                            info.input_size, info.output_size, loss)
                              : fmt::format("{} has input_size {} and output_size {}; --task {} needs {} and {}",
                                            m.file.string(), m.spec.input_size, m.spec.output_size, c.task,
                                            info.input_size, info.output_size));
  const NetShape shape = net_shape(m.spec, c.batch);
  if (c.dtype == "float64") return evaluate_typed<double>(m, c, corpus, shape, o.sequences);
  return evaluate_typed<float>(m, c, corpus, shape, o.sequences);
}

std::string sample_model(const ModelSource& m, const std::string& prime, std::int64_t length, double temperature,
                         std::uint64_t seed) {
  if (m.spec.bidirectional)
    throw TrainError(fmt::format("{} is a bidirectional model: it reads the future of every step, so it cannot generate "
                                 "text left to right (sample needs a model trained without --bidirectional)",
                                 m.file.string()));
  if (m.vocab.empty() || (m.config && m.config->task != "text"))
    throw TrainError(fmt::format("{} is not a character-level text model (no vocabulary): sample needs a model trained "
                                 "with --task text",
                                 m.file.string()));
  if (m.spec.input_size != static_cast<int>(m.vocab.size()) + 1 || m.spec.output_size != m.spec.input_size)
    throw TrainError(fmt::format("{}: input_size {} and output_size {} do not fit a vocabulary of {} characters",
                                 m.file.string(), m.spec.input_size, m.spec.output_size, m.vocab.size()));
  if (length < 1) throw TrainError(fmt::format("--length {} is not allowed: allowed is 1 or more", length));
  if (!std::isfinite(temperature) || temperature < 0)
    throw TrainError(fmt::format("--temperature {} is not allowed: allowed is a finite number >= 0 (0: most likely)",
                                 temperature));
  std::vector<std::int32_t> prime_classes;
  for (char32_t cp : decode_utf8(prime, "--prime")) {
    const std::int32_t k = class_of(m.vocab, cp);
    if (k == static_cast<std::int32_t>(m.vocab.size()))
      throw TrainError(fmt::format("--prime character {} is not in the model's vocabulary of {} characters",
                                   describe_code_point(cp), m.vocab.size()));
    prime_classes.push_back(k);
  }
  const NetShape shape = net_shape(m.spec, 1);
  const std::vector<std::int32_t> out =
      m.spec.dtype == "float64" ? sample_typed<double>(m, shape, prime_classes, length, temperature, seed)
                                : sample_typed<float>(m, shape, prime_classes, length, temperature, seed);
  std::string s;
  for (auto k : out) append_utf8(s, k < static_cast<std::int32_t>(m.vocab.size()) ? m.vocab[static_cast<std::size_t>(k)] : U'\uFFFD');
  return s;
}

}  // namespace membptt::train
