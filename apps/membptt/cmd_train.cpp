// Training commands: train, eval, sample, plot, demo. Compiled into each binary (DEVICE_SOURCES):
// in membptt-cuda (MEMBPTT_HAVE_CUDA) `train --device cuda[:N]` computes its gradients on a GPU.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli_common.hpp"
#include "commands.hpp"
#include "device_option.hpp"
#include "membptt/exec/calibrate.hpp"
#include "membptt/plan/planner.hpp"
#include "membptt/train/checkpoint.hpp"
#include "membptt/train/trainer.hpp"
#ifdef MEMBPTT_HAVE_CUDA
#include "membptt/cuda/device.hpp"
#include "membptt/cuda/gradient_pass.hpp"
#endif

namespace membptt::cli {
namespace {

namespace fs = std::filesystem;
using train::TrainConfig;
using train::TrainError;
using Clock = std::chrono::steady_clock;

constexpr const char* kDefaultCorpus = "data/verse.txt";
constexpr std::int64_t kMaxEvalSequences = std::int64_t{1} << 40;
constexpr std::int64_t kMaxSampleLength = std::int64_t{1} << 28;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string mib(double bytes) {
  if (bytes < 1024.0 * 1024.0) return fmt::format("{:.1f} KiB", bytes / 1024.0);
  return fmt::format("{:.2f} MiB", bytes / (1024.0 * 1024.0));
}

std::string duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<long long>(std::llround(s));
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

// Runs a library call, turning its user errors into UsageError (exit status 2).
template <class F>
auto user_errors(F&& f) {
  try {
    return f();
  } catch (const TrainError& e) {
    throw UsageError(e.what());
  }
}

// ---- signals ----

volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_signal(int s) { g_signal = s; }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // a second signal kills at once (the last checkpoint stays valid)
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// ---- the default corpus ----

// data/verse.txt next to the working directory, or above the executable (build/apps/membptt/membptt).
std::string find_default_corpus() {
  std::vector<fs::path> tried{fs::current_path() / kDefaultCorpus};
  std::error_code ec;
  fs::path dir = fs::read_symlink("/proc/self/exe", ec).parent_path();
  for (int up = 0; up < 5 && !ec && !dir.empty(); ++up, dir = dir.parent_path()) tried.push_back(dir / kDefaultCorpus);
  for (const fs::path& p : tried)
    if (fs::is_regular_file(p, ec)) return fs::canonical(p, ec).string();
  throw UsageError(fmt::format("--task text without --text: the default corpus {} was not found in the working "
                               "directory or above the executable; pass --text FILE",
                               kDefaultCorpus));
}

// ---- progress ----

struct Progress {
  bool tty = ::isatty(STDOUT_FILENO) != 0;
  std::int64_t first = 0, total = 0;
  Clock::time_point t0 = Clock::now(), last_print = Clock::now() - std::chrono::hours(1);
  std::int64_t every = 1;
  bool open_line = false;
  double baseline = 0;
  bool text = false;

  void start(std::int64_t first_step, std::int64_t total_steps) {
    first = first_step;
    total = total_steps;
    t0 = Clock::now();
    every = std::max<std::int64_t>(1, (total_steps - first_step) / 20);
  }
  void update(const train::StepResult& r, std::size_t plain_bytes) {
    const bool last = r.step == total;
    const double since_print = std::chrono::duration<double>(Clock::now() - last_print).count();
    if (tty) {
      if (!last && since_print < 0.1) return;
    } else if (!(last || r.step == first + 1 || (r.step - first) % every == 0 || since_print >= 30)) {
      return;
    }
    last_print = Clock::now();
    const double rate = static_cast<double>(r.step - first) / std::max(since(t0), 1e-9);
    const std::string loss =
        text ? fmt::format("{:.3f} bits/char (unigram baseline {:.3f})", r.loss / std::log(2.0), baseline / std::log(2.0))
             : fmt::format("loss {:.5f} (baseline {:.4g})", r.loss, baseline);
    const std::string graph = r.graph.kernels > 0 ? fmt::format(" + CUDA graph ({} kernels, {})", r.graph.kernels,
                                                                mib(static_cast<double>(r.graph.bytes)))
                                                  : "";
    const std::string line =
        fmt::format("step {}/{}  {}  {:.2f} steps/s  ETA {}  activation memory {} held{} (plain BPTT would need {})",
                    r.step, total, loss, rate, duration(static_cast<double>(total - r.step) / rate),
                    mib(static_cast<double>(r.held_bytes)), graph, mib(static_cast<double>(plain_bytes)));
    if (tty) {
      fmt::print("\r{}\x1b[K", line);
      open_line = true;
    } else {
      fmt::print("{}\n", line);
    }
    std::fflush(stdout);
  }
  void end_line() {
    if (open_line) fmt::print("\n");
    open_line = false;
    std::fflush(stdout);
  }
};

std::string plan_line(const train::TrainerBase& t) {
  const Plan& p = t.plan();
  const double held = static_cast<double>(t.planned_bytes()), plain = static_cast<double>(t.plain_bytes());
  // A bidirectional network: 2 x layers chains of T steps, each planned (layer 0's policy shown).
  const double chains = t.config().bidirectional ? 2.0 * t.config().layers : 1.0;
  const double per_step = static_cast<double>(t.planned_forward_steps()) / (chains * static_cast<double>(t.config().length));
  return fmt::format("plan: policy {}, {:.3f} forward steps per step{}, activation memory {} held vs {} for plain BPTT "
                     "({:.1f}%), predicted time {:.3f}x plain BPTT's",
                     policy_name(p.policy), per_step,
                     t.config().bidirectional ? fmt::format(" of each of {:.0f} chains (bidirectional)", chains) : "",
                     mib(held), mib(plain), 100.0 * held / plain, t.predicted_time_ratio());
}

std::string task_line(const train::TrainerBase& t) {
  const TrainConfig& c = t.config();
  std::string what = c.task;
  if (c.task == "copy") what += fmt::format(" (K={} symbols of A={})", c.copy_symbols, c.copy_alphabet);
  if (c.task == "text") what += " (" + c.text + ")";
  return fmt::format("task {}: length {}, batch {}, {}{} {}x{} ({} parameters, {} init), {}, {} lr {:g}, clip {:g}, seed {}; "
                     "baseline loss {:.4g} ({})",
                     what, c.length, c.batch, c.bidirectional ? "bidirectional " : "", c.cell, c.layers, c.hidden,
                     t.parameter_count(), c.init, c.dtype, c.optimizer, c.lr, c.clip,
                     c.seed, t.baseline(), t.baseline_name());
}

// ---- train ----

struct TrainOptions {
  TrainConfig c;
  std::string save, resume, log, device = "cpu";
  std::int64_t save_every = 100;
  std::int64_t eval_sequences = 1024;
  bool force = false, tf32 = false, bf16 = false, no_graphs = false, compare = false;
  std::map<std::string, CLI::Option*> opt;  // by long name, to see what was given
  bool given(const std::string& name) const {
    auto it = opt.find(name);
    return it != opt.end() && it->second->count() > 0;
  }
};

// The --log file: one JSON object per line, appended. Every write is checked, and a line that did
// not go in whole is cut off again, so the file holds whole lines only, even on a full disk.
struct LogFile {
  int fd = -1;
  std::string path;
  LogFile() = default;
  LogFile(const LogFile&) = delete;
  LogFile& operator=(const LogFile&) = delete;
  ~LogFile() {
    if (fd >= 0) ::close(fd);
  }
  void open(const std::string& file, bool truncate) {
    path = file;
    fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : O_APPEND), 0644);
    if (fd < 0) throw UsageError(fmt::format("--log {}: cannot open the file for appending: {}", file, std::strerror(errno)));
    if (!truncate) drop_partial_last_line();
  }
  // Appends one line; throws (naming the file and the reason) when it cannot be written whole.
  void write(const nlohmann::json& j) {
    if (fd < 0) return;
    const std::string line = j.dump() + "\n";
    const off_t before = ::lseek(fd, 0, SEEK_END);
    std::size_t done = 0;
    while (done < line.size()) {
      const ssize_t n = ::write(fd, line.data() + done, line.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : EIO;
        if (before >= 0 && ::ftruncate(fd, before) != 0) {
          // The cut failed too: the reader (plot) still skips an unfinished last line.
        }
        throw std::runtime_error(fmt::format("--log {}: cannot write the log: {}", path, std::strerror(err)));
      }
      done += static_cast<std::size_t>(n);
    }
  }

 private:
  // A run killed in the middle of a write (or an older membptt on a full disk) may have left an
  // unfinished line: appending after it would glue two records into one bad line.
  void drop_partial_last_line() {
    const off_t size = ::lseek(fd, 0, SEEK_END);
    if (size <= 0) return;
    std::string tail;
    off_t keep = 0;
    for (off_t end = size; end > 0;) {
      const off_t start = std::max<off_t>(0, end - 4096);
      tail.resize(static_cast<std::size_t>(end - start));
      if (::pread(fd, tail.data(), tail.size(), start) != static_cast<ssize_t>(tail.size())) return;  // unreadable: leave it
      if (end == size && tail.back() == '\n') return;
      const auto nl = tail.rfind('\n');
      if (nl != std::string::npos) {
        keep = start + static_cast<off_t>(nl) + 1;
        break;
      }
      end = start;
    }
    if (::ftruncate(fd, keep) != 0)
      throw std::runtime_error(fmt::format("--log {}: cannot cut off its unfinished last line: {}", path, std::strerror(errno)));
    fmt::print(stderr, "note: --log {} ended in an unfinished line ({} bytes, from a run that stopped in the middle of "
                       "a write); it was cut off\n",
               path, static_cast<long long>(size - keep));
  }
};

nlohmann::json step_record(const train::TrainerBase& t, const train::StepResult& r, double seconds) {
  nlohmann::json j{{"step", r.step},
                   {"loss", r.loss},
                   {"baseline", t.baseline()},
                   {"grad_norm", r.grad_norm},
                   {"seconds", seconds},
                   {"step_seconds", r.seconds},
                   {"forward_steps", r.stats.forward_steps},
                   {"backward_steps", r.stats.backward_steps},
                   {"peak_bytes", r.held_bytes},
                   {"plain_bptt_bytes", t.plain_bytes()},
                   {"policy", std::string(policy_name(t.plan().policy))}};
  if (t.config().task == "text") j["bits_per_char"] = r.loss / std::log(2.0);
  if (r.graph.kernels > 0) {
    j["graph_kernels"] = r.graph.kernels;
    j["graph_bytes"] = r.graph.bytes;
  }
  return j;
}

struct RunOutcome {
  int status = 0;
  std::int64_t last_saved = -1;  // the step this run last saved, -1: none yet
};

// The checkpoint that the save directory held when this run started, so that a run that stops
// says which run and step the surviving file comes from.
struct EarlierCheckpoint {
  bool exists = false;
  bool resumed = false;    // this run resumed from it
  std::int64_t step = -1;  // -1: not readable as a checkpoint
};

EarlierCheckpoint earlier_checkpoint(const fs::path& ck, const std::optional<train::ModelSource>& resumed_from) {
  EarlierCheckpoint e;
  std::error_code ec;
  if (ck.empty() || !fs::exists(ck, ec)) return e;
  e.exists = true;
  if (resumed_from && fs::equivalent(ck, resumed_from->file, ec)) {
    e.resumed = true;
    e.step = resumed_from->step;
    return e;
  }
  try {
    e.step = train::open_checkpoint(ck.string()).step;
  } catch (const std::exception&) {
  }
  return e;
}

std::string surviving_checkpoint(const fs::path& ck, const RunOutcome& out, const EarlierCheckpoint& earlier) {
  if (ck.empty()) return "no checkpoint was being saved (--save)";
  if (out.last_saved >= 0) return fmt::format("the last good checkpoint, {} (this run's step {}), is kept", ck.string(), out.last_saved);
  if (!earlier.exists) return "this run had saved no checkpoint yet";
  if (earlier.resumed)
    return fmt::format("this run had saved no checkpoint yet; {} still holds step {}, the one this run resumed from", ck.string(),
                       earlier.step);
  if (earlier.step >= 0)
    return fmt::format("this run had saved no checkpoint yet; {} still holds an earlier run's step {}, not this run's (--force "
                       "replaces it at this run's first save)",
                       ck.string(), earlier.step);
  return fmt::format("this run had saved no checkpoint yet; {} is an earlier file, left as it was", ck.string());
}

// The training loop shared by `train` and `demo`: steps, progress, log, checkpoints, signals.
RunOutcome train_loop(train::TrainerBase& t, const fs::path& save_dir, std::int64_t save_every, LogFile& log,
                      double elapsed_before, Progress& progress, const EarlierCheckpoint& earlier = {}) {
  const TrainConfig& c = t.config();
  const fs::path ck = save_dir.empty() ? fs::path() : save_dir / train::kCheckpointName;
  RunOutcome out;
  const auto t0 = Clock::now();
  auto save = [&] {
    t.save_checkpoint(ck, elapsed_before + since(t0));
    out.last_saved = t.step_count();
  };
  progress.start(t.step_count(), c.steps);
  while (t.step_count() < c.steps) {
    train::StepResult r;
    try {
      r = t.step();
    } catch (const train::Diverged& d) {
      progress.end_line();
      throw std::runtime_error(fmt::format("{}: training stopped (try a smaller --lr or --clip); {}", d.what(),
                                           surviving_checkpoint(ck, out, earlier)));
    }
    const nlohmann::json record = step_record(t, r, elapsed_before + since(t0));
    try {
      log.write(record);
    } catch (const std::runtime_error& e) {
      // The step itself is good: keep it, and its log line, in the checkpoint if one is being
      // saved (the resumed run writes the line first), then stop.
      progress.end_line();
      std::string kept = fmt::format("step {}'s line (loss {:.6g}) is missing from the log; nothing saved (no --save)",
                                     t.step_count(), r.loss);
      if (!ck.empty()) {
        try {
          t.save_checkpoint(ck, elapsed_before + since(t0), record.dump());
          out.last_saved = t.step_count();
          kept = fmt::format("step {} saved to {} with its log line, which a run resumed with --log {} writes first; free "
                             "space and continue with: membptt train --resume {} --log {}",
                             t.step_count(), ck.string(), log.path, save_dir.string(), log.path);
        } catch (const std::exception& se) {
          kept = fmt::format("the checkpoint could not be saved either ({}); {}", se.what(), surviving_checkpoint(ck, out, earlier));
        }
      }
      throw std::runtime_error(fmt::format("{}; training stopped after step {} (the log holds whole lines only); {}",
                                           e.what(), t.step_count(), kept));
    }
    progress.update(r, t.plain_bytes());
    if (!ck.empty() && (r.step % save_every == 0 || r.step == c.steps)) save();
    if (g_signal) {
      const int sig = g_signal;
      progress.end_line();
      if (!ck.empty()) {
        if (out.last_saved != t.step_count()) save();
        fmt::print(stderr, "membptt: stopped by {} after step {}; checkpoint saved to {}; continue with: membptt train "
                           "--resume {}\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM", t.step_count(), ck.string(), save_dir.string());
      } else {
        fmt::print(stderr, "membptt: stopped by {} after step {}; nothing saved (no --save)\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM", t.step_count());
      }
      out.status = 128 + sig;
      return out;
    }
  }
  progress.end_line();
  return out;
}

// Where the gradients are computed: nullptr for the CPU. A CUDA device is selected first of all, so
// that a missing GPU is the first and only error.
std::shared_ptr<const train::GradientDevice> train_device(const TrainOptions& o) {
  const cuda::DeviceSpec dev = device_of(o.device);
  if (o.tf32 && !dev.cuda) throw UsageError("--tf32 is allowed only with --device cuda (TF32 is a GPU's GEMM mode)");
  if (o.bf16 && !dev.cuda) throw UsageError("--bf16 is allowed only with --device cuda (bf16 GEMMs are a GPU's mode)");
  if (o.tf32 && o.bf16) throw UsageError("--tf32 and --bf16 are not allowed together: choose one GEMM mode");
  if (o.no_graphs && !dev.cuda) throw UsageError("--no-graphs is allowed only with --device cuda (CUDA graphs)");
#ifdef MEMBPTT_HAVE_CUDA
  if (dev.cuda) {
    cuda::Options opts = cuda::options();
    opts.tf32 = o.tf32;
    opts.bf16 = o.bf16;
    opts.graphs = !o.no_graphs;
    cuda::set_options(opts);
    return cuda::cuda_gradient_device(dev.index);
  }
#endif
  return nullptr;
}

int run_train(TrainOptions& o) {
  const std::shared_ptr<const train::GradientDevice> device = train_device(o);
  TrainConfig c = o.c;
  std::optional<train::ModelSource> ck;
  fs::path save_dir = o.save;
  if (!o.resume.empty()) {
    ck = user_errors([&] { return train::open_checkpoint(o.resume); });
    const TrainConfig saved = *ck->config;
    // Options that decide the result must agree with the checkpoint; the others may change.
    TrainConfig merged = saved;
    if (o.given("--task")) merged.task = c.task;
    if (o.given("--cell")) merged.cell = c.cell;
    if (o.given("--hidden")) merged.hidden = c.hidden;
    if (o.given("--layers")) merged.layers = c.layers;
    if (o.given("--no-bias")) merged.bias = c.bias;
    if (o.given("--nonlinearity")) merged.nonlinearity = c.nonlinearity;
    if (o.given("--proj-size")) merged.proj_size = c.proj_size;
    if (o.given("--bidirectional")) merged.bidirectional = c.bidirectional;
    if (o.given("--dropout")) merged.dropout = c.dropout;
    if (o.given("--batch")) merged.batch = c.batch;
    if (o.given("--length")) merged.length = c.length;
    if (o.given("--optimizer")) merged.optimizer = c.optimizer;
    if (o.given("--lr")) merged.lr = c.lr;
    if (o.given("--clip")) merged.clip = c.clip;
    if (o.given("--seed")) merged.seed = c.seed;
    if (o.given("--init")) merged.init = c.init;
    if (o.given("--dtype")) merged.dtype = c.dtype;
    if (o.given("--copy-symbols")) merged.copy_symbols = c.copy_symbols;
    if (o.given("--copy-alphabet")) merged.copy_alphabet = c.copy_alphabet;
    const std::string diff = train::result_difference(saved, merged);
    if (!diff.empty()) throw UsageError(diff);
    if (o.given("--text") && fs::weakly_canonical(o.c.text) != fs::weakly_canonical(saved.text))
      throw UsageError(fmt::format("--text {} differs from the checkpoint's {}: a resumed run reads the same text",
                                   o.c.text, saved.text));
    if (o.given("--steps")) merged.steps = c.steps;
    if (o.given("--memory")) merged.memory = c.memory;
    if (o.given("--policy")) merged.policy = c.policy;
    c = merged;
    if (save_dir.empty()) save_dir = fs::is_directory(o.resume) ? fs::path(o.resume) : fs::path(o.resume).parent_path();
    if (save_dir.empty()) save_dir = ".";
  } else {
    if (c.task == "text") c.text = c.text.empty() ? find_default_corpus() : fs::absolute(c.text).string();
  }
  if (o.save_every < 1) throw UsageError(fmt::format("--save-every {} is not allowed: allowed is 1 or more", o.save_every));
  if (o.eval_sequences < 1)
    throw UsageError(fmt::format("--eval-sequences {} is not allowed: allowed is 1 or more", o.eval_sequences));
  if (!save_dir.empty()) {
    std::error_code ec;
    if (fs::exists(save_dir, ec) && !fs::is_directory(save_dir, ec))
      throw UsageError(fmt::format("--save {} is a file: allowed is a directory", save_dir.string()));
    const fs::path existing = save_dir / train::kCheckpointName;
    const bool same_as_resumed = ck && fs::equivalent(existing, ck->file, ec);
    if (fs::exists(existing, ec) && !same_as_resumed && !o.force)
      throw UsageError(fmt::format("--save {} already holds a checkpoint: continue it with --resume {}, or pass --force "
                                   "to replace it",
                                   save_dir.string(), save_dir.string()));
  }

  auto corpus = user_errors([&] { return train::load_corpus(c); });
  std::unique_ptr<train::TrainerBase> t = user_errors([&] { return train::make_trainer(c, corpus, device); });
  if (ck) user_errors([&] { t->restore(*ck); return 0; });
  if (!save_dir.empty()) fs::create_directories(save_dir);
  LogFile log;
  if (!o.log.empty()) log.open(o.log, false);
  if (ck && !ck->pending_log.empty()) {
    // The line of the checkpoint's last step, which the earlier run's log could not take.
    if (o.log.empty())
      fmt::print(stderr, "note: {} holds step {}'s log line, which the earlier run could not write; pass --log to write it\n",
                 ck->file.string(), ck->step);
    else if (const auto line = nlohmann::json::parse(ck->pending_log, nullptr, false); line.is_object())
      log.write(line);
  }

  Progress progress;
  progress.baseline = t->baseline();
  progress.text = c.task == "text";
  fmt::print("{}\n", task_line(*t));
  fmt::print("device: {}{}\n", t->device(), o.bf16 ? ", bf16 GEMMs" : o.tf32 ? ", TF32 GEMMs" : "");
  if (ck) fmt::print("resuming from {} at step {} of {}\n", ck->file.string(), ck->step, c.steps);
  fmt::print("{}\n", plan_line(*t));
  std::fflush(stdout);
  if (o.compare) {
    const train::PlainComparison pc = t->compare_with_plain(3);
    fmt::print("check batch: plain BPTT {:.3f} ms, {} {:.3f} ms ({:.3f}x), {} vs {} forward steps, activation memory "
               "held {} vs {}; gradients vs plain BPTT: {}\n",
               1e3 * pc.plain_seconds, policy_name(t->plan().policy), 1e3 * pc.chosen_seconds,
               pc.chosen_seconds / pc.plain_seconds, pc.plain_forward_steps, pc.chosen_forward_steps,
               mib(static_cast<double>(pc.plain_held_bytes)), mib(static_cast<double>(pc.chosen_held_bytes)),
               pc.bitwise_equal ? "identical, bit for bit" : "DIFFERENT");
    std::fflush(stdout);
    if (!pc.bitwise_equal)
      throw std::runtime_error(fmt::format("the {} plan's gradients differ from plain BPTT's on the check batch ({})",
                                           policy_name(t->plan().policy), t->device()));
  }
  install_signal_handlers();
  const EarlierCheckpoint earlier =
      earlier_checkpoint(save_dir.empty() ? fs::path() : save_dir / train::kCheckpointName, ck);
  const RunOutcome out = train_loop(*t, save_dir, o.save_every, log, ck ? ck->elapsed_seconds : 0.0, progress, earlier);
  if (out.status != 0) return out.status;
  const train::EvalResult ev = t->evaluate(o.eval_sequences);
  fmt::print("{}\n", ev.summary());
  if (!save_dir.empty()) {
    t->write_model(save_dir / train::kModelName);
    fmt::print("saved {} and {}\n", (save_dir / train::kCheckpointName).string(), (save_dir / train::kModelName).string());
  }
  return 0;
}

// ---- eval, sample ----

struct EvalCli {
  std::string model, task, text;
  std::int64_t length = 0, sequences = 1024;
  int batch = 0;
  std::uint64_t seed = 0;
  bool json = false;
};

// Notes on how a model file was read (a PyTorch state dict in bf16: computed in float32), once.
void print_notes(const train::ModelSource& m) {
  for (const std::string& n : m.notes) fmt::print(stderr, "{}\n", n);
}

int run_eval(const EvalCli& o) {
  // A PyTorch state dict carries no loss: the task says it (adding: MSE of the last step; else
  // per-step cross-entropy).
  ModelLoadOptions load;
  if (!o.task.empty()) load.loss = o.task == "adding" ? "mse_last" : "xent";
  load.loss_hint = "pass --task adding, copy or text (a state dict holds neither the task nor the loss)";
  const train::ModelSource m = user_errors([&] { return train::open_model(o.model, load); });
  print_notes(m);
  train::EvalOptions eo;
  eo.task = o.task;
  eo.text = o.text.empty() ? "" : fs::absolute(o.text).string();
  if (eo.text.empty() && (o.task == "text" || (o.task.empty() && m.config && m.config->task == "text")) &&
      (!m.config || m.config->text.empty()))
    eo.text = find_default_corpus();
  eo.length = o.length;
  eo.batch = o.batch;
  eo.sequences = o.sequences;
  eo.seed = o.seed;
  const train::EvalResult r = user_errors([&] { return train::evaluate_model(m, eo); });
  if (o.json)
    fmt::print("{}\n", r.to_json().dump());
  else
    fmt::print("{}\n", r.summary());
  return 0;
}

struct SampleCli {
  std::string model, prime;
  std::int64_t length = 500;
  double temperature = 1.0;
  std::uint64_t seed = 1;
};

int run_sample(const SampleCli& o) {
  const train::ModelSource m = user_errors([&] { return train::open_model(o.model); });
  print_notes(m);
  const std::string s = user_errors([&] { return train::sample_model(m, o.prime, o.length, o.temperature, o.seed); });
  fmt::print("{}{}\n", o.prime, s);
  return 0;
}

// ---- plot ----

std::string esc(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '<') out += "&lt;";
    else if (ch == '>') out += "&gt;";
    else if (ch == '&') out += "&amp;";
    else if (ch == '"') out += "&quot;";
    else out += ch;
  }
  return out;
}

// Round tick spacing: 1, 2 or 5 times a power of ten, about n ticks over [0, span].
double tick_step(double span, int n) {
  if (!(span > 0)) return 1;
  const double raw = span / n, p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (m * p >= raw) return m * p;
  return 10 * p;
}

// The loss against the step on linear axes: every step (light), a moving average (dark), and the
// baseline (dashed) when the log records one.
std::string loss_svg(const std::vector<double>& x, const std::vector<double>& y, double baseline,
                     const std::string& title) {
  const double W = 820, H = 480, L = 70, R = 20, T = 46, B = 50;
  const double x0 = x.front(), x1 = std::max(x.back(), x.front() + 1);
  // The top: the 99th percentile of the losses (an early spike would flatten the rest), and room for
  // the baseline; anything higher is drawn at the top edge.
  std::vector<double> sorted = y;
  std::sort(sorted.begin(), sorted.end());
  double ymax = sorted[static_cast<std::size_t>(0.99 * static_cast<double>(sorted.size() - 1))];
  if (baseline > 0) ymax = std::max(ymax, 1.3 * baseline);
  if (!(ymax > 0) || !std::isfinite(ymax)) ymax = 1;
  ymax *= 1.05;
  auto X = [&](double v) { return L + (v - x0) / (x1 - x0) * (W - L - R); };
  auto Y = [&](double v) { return H - B - std::clamp(v, 0.0, ymax) / ymax * (H - T - B); };
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"24\" font-size=\"15\">{3}</text>\n",
      W, H, L, esc(title));
  const double xs = tick_step(x1 - x0, 8), ys = tick_step(ymax, 6);
  for (double v = std::ceil(x0 / xs) * xs; v <= x1 + 1e-9; v += xs)
    s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#eee\"/><text x=\"{0:.1f}\" "
                     "y=\"{3}\" text-anchor=\"middle\">{4:g}</text>\n",
                     X(v), T, H - B, H - B + 16, v);
  for (double v = 0; v <= ymax + 1e-12; v += ys)
    s += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#eee\"/><text x=\"{3}\" "
                     "y=\"{4:.1f}\" text-anchor=\"end\">{5:g}</text>\n",
                     L, Y(v), W - R, L - 6, Y(v) + 4, v);
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", L, T, W - L - R,
                   H - T - B);
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n", (L + W - R) / 2, H - 12);
  s += fmt::format("<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {0})\">loss</text>\n",
                   (T + H - B) / 2);
  // At most ~2000 points per line: bucket means.
  auto polyline = [&](const std::vector<double>& ys_, const char* colour, double width) {
    const std::size_t n = ys_.size(), per = std::max<std::size_t>(1, n / 2000);
    std::string pts;
    for (std::size_t i = 0; i < n; i += per) {
      double sx = 0, sy = 0;
      std::size_t k = 0;
      for (; k < per && i + k < n; ++k) sx += x[i + k], sy += ys_[i + k];
      pts += fmt::format("{:.1f},{:.1f} ", X(sx / static_cast<double>(k)), Y(sy / static_cast<double>(k)));
    }
    return fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" points=\"{}\"/>\n", colour, width, pts);
  };
  s += polyline(y, "#9ecae1", 1);
  const std::size_t win = std::max<std::size_t>(1, y.size() / 50);
  std::vector<double> avg(y.size());
  double acc = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    acc += y[i];
    if (i >= win) acc -= y[i - win];
    avg[i] = acc / static_cast<double>(std::min(i + 1, win));
  }
  s += polyline(avg, "#08519c", 2);
  std::string legend = fmt::format("loss per step (light), mean of the last {} steps (dark)", win);
  if (baseline > 0) {
    s += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#d62728\" "
                     "stroke-dasharray=\"6 4\"/>\n",
                     L, Y(baseline), W - R);
    legend += fmt::format(", trivial baseline {:.4g} (dashed)", baseline);
  }
  s += fmt::format("<text x=\"{}\" y=\"40\" fill=\"#555\">{}</text>\n</svg>\n", L, esc(legend));
  return s;
}

struct PlotCli {
  std::string log, svg, title;
};

int run_plot(const PlotCli& o) {
  std::ifstream in(o.log);
  if (!in) throw UsageError(fmt::format("cannot read log file {}", o.log));
  std::vector<double> x, y;
  double baseline = 0;
  std::string line;
  for (std::int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const bool unfinished = in.eof();  // the last line, with no newline after it
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      if (unfinished) {
        // What a run that died in the middle of a write leaves: the steps before it still plot.
        fmt::print(stderr, "note: log file {} has an unfinished last line (line {}); it is left out\n", o.log, n);
        break;
      }
      throw UsageError(fmt::format("log file {} line {} is not JSON: allowed is one JSON object per line", o.log, n));
    }
    if (!j.is_object() || !j.contains("step") || !j.contains("loss") || !j["step"].is_number() || !j["loss"].is_number())
      throw UsageError(fmt::format("log file {} line {} has no numeric 'step' and 'loss'", o.log, n));
    x.push_back(j["step"].get<double>());
    y.push_back(j["loss"].get<double>());
    if (j.contains("baseline") && j["baseline"].is_number()) baseline = j["baseline"].get<double>();
  }
  if (x.empty()) throw UsageError(fmt::format("log file {} has no steps to plot", o.log));
  // A log appended across resumed runs may repeat steps: keep the order of the file, sorted by step.
  std::vector<std::size_t> idx(x.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
  std::vector<double> xs, ys;
  for (std::size_t i : idx) xs.push_back(x[i]), ys.push_back(y[i]);
  write_file_atomic(o.svg, loss_svg(xs, ys, baseline, o.title.empty() ? "training loss: " + o.log : o.title));
  fmt::print("wrote {} ({} steps)\n", o.svg, xs.size());
  return 0;
}


// ---- demo ----

struct DemoCli {
  std::string out = "out";
  std::int64_t steps = 2000, length = 1000;
  int hidden = 32, batch = 16;
  std::string memory = "5%";
  std::uint64_t seed = 1;
};

int run_demo(const DemoCli& o) {
  TrainConfig c;
  c.task = "adding";
  c.cell = "lstm";
  c.init = "chrono";
  c.hidden = o.hidden;
  c.batch = o.batch;
  c.length = o.length;
  c.steps = o.steps;
  c.lr = 0.01;
  c.clip = 1.0;
  c.seed = o.seed;
  c.memory = o.memory;
  const auto t_start = Clock::now();
  auto t = user_errors([&] { return train::make_trainer(c, nullptr); });
  const fs::path out = o.out;
  fs::create_directories(out);
  fmt::print("membptt demo: an LSTM learns the adding problem over {} steps, holding {} of plain BPTT's activation "
             "memory\n\n",
             c.length, c.memory);
  fmt::print("{}\n{}\n\n", task_line(*t), plan_line(*t));

  // Plain BPTT against the chosen plan on one check batch: bits and time. Three sets of runs: the
  // table shows the set with the median ratio, and the sets' spread says how far a shared machine
  // moved the measurement.
  constexpr int kSets = 3, kRuns = 5;
  fmt::print("measuring plain BPTT and the {} plan on a check batch ({} sets of {} runs each)...\n",
             policy_name(t->plan().policy), kSets, kRuns);
  std::fflush(stdout);
  std::vector<train::PlainComparison> sets;
  for (int i = 0; i < kSets; ++i) sets.push_back(t->compare_with_plain(kRuns));
  auto ratio_of = [](const train::PlainComparison& x) { return x.chosen_seconds / x.plain_seconds; };
  std::sort(sets.begin(), sets.end(), [&](const auto& a, const auto& b) { return ratio_of(a) < ratio_of(b); });
  const train::PlainComparison pc = sets[kSets / 2];
  const double measured = ratio_of(pc), spread = ratio_of(sets.back()) / ratio_of(sets.front()) - 1.0;
  const bool all_equal = std::all_of(sets.begin(), sets.end(), [](const auto& x) { return x.bitwise_equal; });
  // Step costs timed as the passes run them (exec/calibrate.hpp): chains of T steps, plain BPTT's
  // records streamed, the plan's recording and backward steps timed again inside its arena.
  const NetShape shape{CellType::Lstm, 2, c.hidden, c.layers, c.batch, 1};
  const auto arena_bytes = static_cast<std::size_t>(t->plan().peak_units * static_cast<double>(t->sizes().hidden_bytes));
  const StepTimes steps = time_steps<float>(shape, LossKind::MseLast, 11, c.length, arena_bytes);
  const CostModel calibrated = cost_model_from(steps, t->sizes().alpha());
  const double predicted = t->plan().time_ratio();
  const double predicted_cal = predicted_time_ratio(steps, t->plan().forward_steps, c.length);
  const double arena_saving = 1.0 - (steps.record_in_arena + steps.backward_in_arena) / (steps.record + steps.backward);

  // Train.
  fmt::print("\ntraining {} steps (the trivial baseline, always answering the mean, scores {:.4f})\n", c.steps,
             t->baseline());
  LogFile log;
  const fs::path log_path = out / "demo-log.jsonl";
  log.open(log_path.string(), true);
  Progress progress;
  progress.baseline = t->baseline();
  install_signal_handlers();
  const auto t_train = Clock::now();
  const RunOutcome ro = train_loop(*t, {}, 1, log, 0.0, progress);
  if (ro.status != 0) return ro.status;
  const double train_seconds = since(t_train);
  const train::EvalResult ev = t->evaluate(1024);
  t->write_model(out / "demo-model.safetensors");

  // The loss curve from the log.
  std::vector<double> xs, ys;
  {
    std::ifstream in(log_path);
    std::string line;
    while (std::getline(in, line)) {
      const auto j = nlohmann::json::parse(line);
      xs.push_back(j["step"].get<double>());
      ys.push_back(j["loss"].get<double>());
    }
  }
  write_file_atomic((out / "demo-loss.svg").string(),
                    loss_svg(xs, ys, t->baseline(), fmt::format("adding problem, T = {}, LSTM {} units, {} of plain "
                                                                "BPTT's activation memory", c.length, c.hidden, c.memory)));
  const std::size_t w = std::min<std::size_t>(100, ys.size());
  double first = 0, last = 0;
  for (std::size_t i = 0; i < w; ++i) first += ys[i], last += ys[ys.size() - 1 - i];
  first /= static_cast<double>(w);
  last /= static_cast<double>(w);

  fmt::print("\n{}\n", ev.summary());
  fmt::print("training loss: {:.5f} (mean of the first {} steps) -> {:.5f} (mean of the last {}); {} steps in {:.1f} s\n\n",
             first, w, last, w, c.steps, train_seconds);
  const std::string chosen = fmt::format("{} at {}", policy_name(t->plan().policy), c.memory);
  const double share = 100.0 * static_cast<double>(pc.chosen_held_bytes) / static_cast<double>(pc.plain_held_bytes);
  fmt::print("{:<34}{:>16}{:>24}\n", "measured on one batch", "plain BPTT", chosen);
  fmt::print("{:<34}{:>16}{:>24}\n", "activation memory held", mib(static_cast<double>(pc.plain_held_bytes)),
             fmt::format("{} ({:.1f}%)", mib(static_cast<double>(pc.chosen_held_bytes)), share));
  fmt::print("{:<34}{:>16}{:>24}\n", "forward steps per sequence", pc.plain_forward_steps, pc.chosen_forward_steps);
  fmt::print("{:<34}{:>16}{:>24}\n", "time per batch, forward + backward", fmt::format("{:.2f} ms", 1e3 * pc.plain_seconds),
             fmt::format("{:.2f} ms", 1e3 * pc.chosen_seconds));
  fmt::print("{:<34}{:>16}{:>24}\n", "time ratio, measured", "1", fmt::format("{:.3f}x", measured));
  fmt::print("{:<34}{:>16}{:>24}\n", "time ratio, planner's prediction", "1", fmt::format("{:.3f}x", predicted));
  fmt::print("{:<34}{:>16}{:>24}\n", "  with measured step costs", "1", fmt::format("{:.3f}x", predicted_cal));
  fmt::print("{:<34}{:>16}{:>24}\n", "gradients vs plain BPTT", "-",
             all_equal ? "identical, bit for bit" : "DIFFERENT");
  fmt::print("\n(measured: the median of {} sets of {} runs each; their ratios spread over {:.1f}%.\n"
             " The planner assumes a backward step costs {} forward steps and a recording step {}. Timed as the\n"
             " passes run them (chains of {} steps, their {} of records streamed as plain BPTT's are),\n"
             " they cost {:.2f} and {:.2f}; inside the plan's {} arena its recording and backward steps\n"
             " cost {:.3f}x plain BPTT's.)\n",
             kSets, kRuns, 100.0 * spread, t->plan().model.beta, t->plan().model.record, steps.steps,
             mib(static_cast<double>(t->sizes().internal_bytes) * static_cast<double>(steps.steps)), calibrated.beta,
             calibrated.record, mib(static_cast<double>(arena_bytes)), 1.0 - arena_saving);
  const double miss = predicted_cal / measured - 1.0;
  if (spread > 0.10)
    fmt::print("(not to be trusted to 10%: the sets' ratios differ by more than that; the machine's speed\n"
               " moved between sets (another process, or a shared virtual machine): run the demo again on\n"
               " an idle machine)\n");
  else if (std::abs(miss) > 0.10)
    fmt::print("(the prediction from measured step costs is {:+.1f}% from the measured ratio, although the sets\n"
               " agree: a cost the step timings miss at this size, or a load that changed between the two)\n",
               100.0 * miss);
  fmt::print("wrote {}, {} and {}; whole demo {:.1f} s\n", (out / "demo-loss.svg").string(), log_path.string(),
             (out / "demo-model.safetensors").string(), since(t_start));
  return all_equal ? 0 : 1;
}

}  // namespace

void add_train_commands(CLI::App& app, std::function<int()>& action) {
  // train
  static TrainOptions to;
  auto* tr = app.add_subcommand("train", "train a recurrent network inside a memory budget");
  TrainConfig& c = to.c;
  auto add = [&](const std::string& name, auto& var, const std::string& help) {
    CLI::Option* opt = tr->add_option(name, var, help)->capture_default_str();
    to.opt[name] = opt;
    return opt;
  };
  add("--task", c.task, "adding | copy | text");
  add("--cell", c.cell, "lstm | gru | rnn");
  add("--hidden", c.hidden, "hidden units per layer")->transform(integer_in(1, train::kMaxSize));
  add("--layers", c.layers, "recurrent layers")->transform(integer_in(1, train::kMaxLayers));
  to.opt["--no-bias"] = tr->add_flag("--no-bias{false}", c.bias, "recurrent layers without biases (PyTorch's bias=False)");
  add("--nonlinearity", c.nonlinearity, "tanh | relu (relu: --cell rnn only)");
  add("--proj-size", c.proj_size, "--cell lstm: projections of h to this width (PyTorch's proj_size; 0: none)")
      ->transform(integer_in(0, train::kMaxSize));
  to.opt["--bidirectional"] = tr->add_flag(
      "--bidirectional", c.bidirectional,
      "every layer also reads the sequence backwards (PyTorch's bidirectional=True; not for sample)");
  add("--dropout", c.dropout, "dropout between layers, 0 to below 1 (masks from --seed and the step)")
      ->transform(number_in(0, 1));
  add("--batch", c.batch, "sequences (text: parallel streams) per step")->transform(integer_in(1, train::kMaxSize));
  add("--length", c.length, "sequence length T (text: window length for truncated BPTT)")
      ->transform(integer_in(1, train::kMaxLength));
  add("--memory", c.memory, "activation memory budget: bytes (64MiB, 500KB, 1e6) or a percentage of plain BPTT's (5%)");
  add("--policy", c.policy, "auto | msm | hsm | ism | full | revolve | chen-sqrt | chen-recursive | quadratic");
  add("--steps", c.steps, "optimizer steps in all")->transform(integer_in(1, train::kMaxSteps));
  add("--lr", c.lr, "learning rate (> 0)")->transform(number_in(0, std::numeric_limits<double>::max(), true));
  add("--optimizer", c.optimizer, "adam | sgd");
  add("--clip", c.clip, "clip the global gradient norm to this (0: off)")->transform(number_in(0, std::numeric_limits<double>::max()));
  add("--seed", c.seed, "seed of the initial weights and the data")->transform(unsigned64());
  add("--init", c.init, "initial weights: pytorch (PyTorch's default) | chrono (LSTM: Tallec & Ollivier's gate biases for memories of ~length steps)");
  add("--dtype", c.dtype, "float32 | float64");
  add("--text", c.text, "text task: a UTF-8 file (default: data/verse.txt)");
  add("--copy-symbols", c.copy_symbols, "copy task: symbols to remember")->transform(integer_in(1, train::kMaxSize));
  add("--copy-alphabet", c.copy_alphabet, "copy task: distinct symbols")->transform(integer_in(2, train::kMaxSize));
  add("--save", to.save, "directory for checkpoint.safetensors (and model.safetensors at the end)");
  add("--save-every", to.save_every, "checkpoint every K steps (and on SIGINT/SIGTERM)")
      ->transform(integer_in(1, train::kMaxSteps));
  add("--resume", to.resume, "continue from a checkpoint (directory or file)");
  add("--log", to.log, "append one JSON object per step to this file");
  add("--eval-sequences", to.eval_sequences, "held-out sequences for the final evaluation (adding, copy)")
      ->transform(integer_in(1, kMaxEvalSequences));
  tr->add_flag("--force", to.force, "replace a checkpoint already in --save");
  tr->add_option("--device", to.device,
                 "where the gradients are computed: cpu, cuda or cuda:N (CUDA builds; the parameters, optimizer and "
                 "data stay on the host; not a setting of the checkpoint)")
      ->capture_default_str();
  tr->add_flag("--tf32", to.tf32, "with --device cuda and float32: TF32 tensor-core GEMMs (faster, other bits)");
  tr->add_flag("--bf16", to.bf16, "with --device cuda and float32: bf16 tensor-core GEMMs (float32 storage and sums)");
  tr->add_flag("--no-graphs", to.no_graphs,
               "with --device cuda: issue every kernel instead of replaying the step's pass from a CUDA graph "
               "(slower; saves the graph's device memory, 14-15 KiB per cell step)");
  tr->add_flag("--compare", to.compare,
               "before training, run plain BPTT and the chosen plan on one check batch on the device; stop (exit 1) "
               "unless their gradients are identical bit for bit");
  tr->callback([&action] { action = [] { return run_train(to); }; });

  // eval
  static EvalCli eo;
  auto* ev = app.add_subcommand("eval", "evaluate a trained model on held-out data");
  ev->add_option("--model", eo.model, "model directory, checkpoint or model file")->required();
  ev->add_option("--task", eo.task, "adding | copy | text (default: the model's)");
  ev->add_option("--text", eo.text, "text task: the file whose last 10% is evaluated (default: the model's)");
  ev->add_option("--length", eo.length, "sequence length (adding, copy; default: the model's)")
      ->transform(integer_in(1, train::kMaxLength));
  ev->add_option("--batch", eo.batch, "sequences per batch (default: the model's)")->transform(integer_in(1, train::kMaxSize));
  ev->add_option("--sequences", eo.sequences, "held-out sequences (adding, copy)")
      ->capture_default_str()
      ->transform(integer_in(1, kMaxEvalSequences));
  ev->add_option("--seed", eo.seed, "seed of the held-out data (default: the model's)")->transform(unsigned64());
  ev->add_flag("--json", eo.json, "print one JSON object");
  ev->callback([&action] { action = [] { return run_eval(eo); }; });

  // sample
  static SampleCli so;
  auto* sa = app.add_subcommand("sample", "draw text from a character-level language model");
  sa->add_option("--model", so.model, "model directory, checkpoint or model file")->required();
  sa->add_option("--length", so.length, "characters to draw")->capture_default_str()->transform(integer_in(1, kMaxSampleLength));
  sa->add_option("--temperature", so.temperature, "softmax temperature (0: the most likely character)")
      ->capture_default_str()
      ->transform(number_in(0, 1e6));
  sa->add_option("--prime", so.prime, "text fed to the model first (printed before the sample)");
  sa->add_option("--seed", so.seed, "seed of the draws")->capture_default_str()->transform(unsigned64());
  sa->callback([&action] { action = [] { return run_sample(so); }; });

  // plot
  static PlotCli po;
  auto* pl = app.add_subcommand("plot", "draw the loss curve of a --log file as SVG");
  pl->add_option("log", po.log, "the JSONL log of membptt train --log")->required();
  pl->add_option("--svg", po.svg, "output SVG file")->required();
  pl->add_option("--title", po.title, "chart title");
  pl->callback([&action] { action = [] { return run_plot(po); }; });

  // demo
  static DemoCli dm;
  auto* de = app.add_subcommand(
      "demo", "train an LSTM on a long adding problem in 5% of plain BPTT's memory, and compare (on the CPU only)");
  de->add_option("--out", dm.out, "directory for the log, the loss curve and the model")->capture_default_str();
  de->add_option("--steps", dm.steps, "training steps")->capture_default_str()->transform(integer_in(1, train::kMaxSteps));
  de->add_option("--length", dm.length, "sequence length")->capture_default_str()->transform(integer_in(1, train::kMaxLength));
  de->add_option("--hidden", dm.hidden, "LSTM units")->capture_default_str()->transform(integer_in(1, train::kMaxSize));
  de->add_option("--batch", dm.batch, "sequences per step")->capture_default_str()->transform(integer_in(1, train::kMaxSize));
  de->add_option("--memory", dm.memory, "activation memory budget")->capture_default_str();
  de->add_option("--seed", dm.seed, "seed")->capture_default_str()->transform(unsigned64());
  de->callback([&action] { action = [] { return run_demo(dm); }; });
}

}  // namespace membptt::cli
