// The trainer: a network, its optimizer, a task and an executor that runs the planner's schedule
// for the memory budget; one call of step() is one optimizer step on one batch (a window, for the
// text task, carrying the hidden state from the last one).
//
// A run is a deterministic function of its configuration and its device: same seed, same bits,
// whatever the memory budget or policy (the executor's gradients are bitwise those of plain BPTT),
// and a run restored from the checkpoint of step k on the same device continues exactly as if it
// had not stopped. The device (gradient_pass.hpp) is not part of the configuration: the CPU and a
// GPU compute the same gradients to rounding, not to the bit, so a run resumed on another device
// continues correctly but with other bits.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include "membptt/exec/budget.hpp"
#include "membptt/exec/executor.hpp"
#include "membptt/train/checkpoint.hpp"
#include "membptt/train/config.hpp"
#include "membptt/train/gradient_pass.hpp"
#include "membptt/train/tasks.hpp"

namespace membptt::train {

// The loss or the gradient norm of a step was nan or inf, or an update made a parameter so.
struct Diverged : std::runtime_error {
  Diverged(std::int64_t step_, const std::string& what) : std::runtime_error(what), step(step_) {}
  std::int64_t step;
};

struct StepResult {
  std::int64_t step = 0;    // 1-based: the step just taken
  double loss = 0;
  double grad_norm = 0;     // before clipping
  RunStats stats;           // the executor's: forward steps run, peak arena bytes
  std::size_t held_bytes = 0;  // activation memory held: workspace + the arena's peak (measured)
  GraphUse graph;              // the CUDA graph the pass was replayed from (zeros without one)
  double seconds = 0;       // wall time of the step
};

// Plain BPTT against the chosen plan on one check batch (not from the training stream).
struct PlainComparison {
  bool bitwise_equal = false;           // loss and every gradient, memcmp
  double plain_seconds = 0;             // forward + backward, the fastest of the repeats
  double chosen_seconds = 0;
  std::size_t plain_held_bytes = 0;     // measured: workspace + the arena's peak
  std::size_t chosen_held_bytes = 0;
  std::int64_t plain_forward_steps = 0;
  std::int64_t chosen_forward_steps = 0;
};

class TrainerBase {
 public:
  virtual ~TrainerBase() = default;
  virtual const TrainConfig& config() const = 0;
  virtual const Plan& plan() const = 0;
  virtual const StateSizes& sizes() const = 0;
  // What the plan holds: workspace + peak units * hidden bytes; and plain BPTT's activation memory.
  // (A bidirectional network: its chains' plans, the held sequences and the top outputs y, dy;
  // sizes() is then that of layer 0's chains.)
  virtual std::size_t planned_bytes() const;
  virtual std::size_t plain_bytes() const { return sizes().plain_bptt_bytes(config().length); }
  // Forward steps per optimizer step the plan(s) run (bidirectional: summed over the chains), and
  // the predicted time against plain BPTT's.
  virtual std::int64_t planned_forward_steps() const { return plan().forward_steps; }
  virtual double predicted_time_ratio() const { return plan().time_ratio(); }
  virtual std::int64_t step_count() const = 0;
  virtual std::size_t parameter_count() const = 0;
  // Where the gradient passes run: GradientDevice::name() ("cpu", "cuda:0 (NVIDIA ...)").
  virtual std::string device() const = 0;
  // One optimizer step. Throws Diverged (nothing is updated when the loss or the norm is bad).
  virtual StepResult step() = 0;
  // Re-plans for another budget (does not change the results).
  virtual void set_budget(const std::string& memory, const std::string& policy) = 0;
  virtual double baseline() const = 0;
  virtual std::string baseline_name() const = 0;
  virtual EvalResult evaluate(std::int64_t sequences) const = 0;
  // True when every parameter is finite.
  virtual bool params_finite() const = 0;
  // `pending_log_line`: the --log line of the last step when the log could not take it (a full
  // disk); kept in the checkpoint (metadata pending_log) so that the resumed run writes it first.
  virtual void save_checkpoint(const std::filesystem::path& file, double elapsed_seconds,
                               const std::string& pending_log_line = {}) const = 0;
  virtual void write_model(const std::filesystem::path& file) const = 0;
  // Restores the state of a checkpoint whose config equals this trainer's in everything that
  // decides the result. Throws TrainError when its tensors do not fit.
  virtual void restore(const ModelSource& ck) = 0;
  // Plain BPTT and the chosen plan on one check batch, on the trainer's device, `repeats` timed runs
  // each (the passes alone: a device's transfers are not timed).
  virtual PlainComparison compare_with_plain(int repeats) = 0;
};

// The corpus of a text configuration (c.text must name the file); nullptr for other tasks.
std::shared_ptr<const Corpus> load_corpus(const TrainConfig& c);

// Validates the configuration, initialises the parameters (PyTorch's default, from the seed) and
// plans for the budget, with the state sizes of `device` (nullptr: the CPU), whose passes then
// compute the gradients. Throws TrainError or PlanError (budget too small: names the least).
std::unique_ptr<TrainerBase> make_trainer(const TrainConfig& c, std::shared_ptr<const Corpus> corpus,
                                          std::shared_ptr<const GradientDevice> device = nullptr);

// The first field that decides the result and differs ("lr 0.001 in the checkpoint, 0.01 given"),
// or "" when none does.
std::string result_difference(const TrainConfig& saved, const TrainConfig& given);

// ---- using a trained model ----

struct EvalOptions {
  std::string task;           // "" : the model's config
  std::string text;           // "" : the model's config
  std::int64_t length = 0;    // 0 : the model's config
  int batch = 0;              // 0 : the model's config
  std::int64_t sequences = 1024;
  std::uint64_t seed = 0;     // 0 : the model's config
};
EvalResult evaluate_model(const ModelSource& m, const EvalOptions& o);

// Feeds `prime` (UTF-8; every character must be in the model's vocabulary) and returns `length`
// characters drawn at `temperature`.
std::string sample_model(const ModelSource& m, const std::string& prime, std::int64_t length, double temperature,
                         std::uint64_t seed);

}  // namespace membptt::train
