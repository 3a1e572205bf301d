// The training tasks: where batches come from, what the trivial baseline scores, and how a model
// is judged on held-out data.
//
//   adding  (Hochreiter & Schmidhuber 1997; the variant of Le et al. 2015): 2 input channels per
//           step, a value drawn from U[0,1) and a marker that is 1 at exactly two steps (one in the
//           first half, one in the second) and 0 elsewhere; the target, read at the last step, is
//           the sum of the two marked values. Loss: mse_last, 1 output. Always answering the mean
//           (1) scores the variance of the sum, 2/12 = 0.1667.
//   copy    (the memory problem): K symbols from an alphabet of A, blanks, a delimiter K+1 steps
//           before the end, then K blanks during which the net must output the K symbols in order.
//           Inputs one-hot over A+2 (symbols, blank, delimiter); outputs A+1 classes (symbols,
//           blank); the target is blank everywhere else. Loss: per-step cross-entropy, mean over
//           T*B. A memoryless net scores K ln(A) / T (blank, then a uniform guess) and 1/A of the
//           copied symbols.
//   text    character-level language model on a UTF-8 file: vocabulary = the distinct code points
//           of the training part (first 90%), plus one class for characters outside it; held-out =
//           the last 10%. Truncated BPTT: the training part is cut into B parallel streams, read in
//           windows of T steps, the hidden state carried from one window to the next and reset to
//           zero when the streams wrap around. Loss: cross-entropy per character (nats); reported
//           also in bits per character. Baseline: the unigram frequencies of the training part.
//
// Synthetic data come from std::mt19937_64 with hand-built 53-bit uniforms, so the same seed gives
// the same data on every platform; the training stream and the held-out set use separate seeds.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "membptt/cells/params.hpp"
#include "membptt/exec/executor.hpp"
#include "membptt/train/config.hpp"

namespace membptt::train {

// A uniform double in [0, 1) from the top 53 bits.
double unit_double(std::mt19937_64& g);
// A uniform integer in [0, n), unbiased (rejection), n >= 1.
std::uint64_t uniform_below(std::mt19937_64& g, std::uint64_t n);
// The generator's whole state as text (the standard's stream format) and back; restore throws
// TrainError when the text is not such a state.
std::string rng_state(const std::mt19937_64& g);
void set_rng_state(std::mt19937_64& g, const std::string& text);
// Seeds derived from the user's seed, one per purpose (training data, held-out data, ...).
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t purpose);

inline constexpr std::uint64_t kFnvOffset = 14695981039346656037ull;
std::uint64_t fnv1a64(std::span<const std::byte> bytes, std::uint64_t h = kFnvOffset);

// ---- text ----

struct Corpus {
  std::string source;                 // the file, for messages
  std::uint64_t hash = 0;             // FNV-1a 64 of the file's bytes
  std::vector<char32_t> vocab;        // sorted; class i = vocab[i]; class vocab.size() = unknown
  std::vector<std::int32_t> train;    // the first 90% of the characters, as classes
  std::vector<std::int32_t> heldout;  // the last 10%
  int classes() const { return static_cast<int>(vocab.size()) + 1; }
  std::int32_t unknown_class() const { return static_cast<std::int32_t>(vocab.size()); }

  // Vocabulary from the training part. Throws TrainError for an empty text, invalid UTF-8, or a
  // text of fewer than 2 characters.
  static Corpus from_bytes(std::string_view bytes, std::string source);
  // With a trained model's vocabulary: characters outside it become the unknown class.
  static Corpus from_bytes(std::string_view bytes, std::string source, std::vector<char32_t> vocab);
  static Corpus load(const std::filesystem::path& path);
  static Corpus load(const std::filesystem::path& path, std::vector<char32_t> vocab);
};

// The code points that the unknown class of a vocabulary of `vocab_size` stands for (every Unicode
// scalar value outside it). Held-out scoring spreads the unknown class's probability evenly over
// them, so an unseen character costs -log2 p(unknown) + log2(this) bits.
double unknown_code_points(std::size_t vocab_size);

// The class of a code point in a sorted vocabulary; vocab.size() (unknown) when absent.
std::int32_t class_of(const std::vector<char32_t>& vocab, char32_t cp);

// B parallel streams over n characters: stream b holds characters [b*S, (b+1)*S), S = n / B; window
// w of T steps reads inputs at b*S + w*T + t and targets one character later, t in [0, T).
struct StreamLayout {
  std::int64_t streams = 0;     // B
  std::int64_t stream_len = 0;  // S
  std::int64_t window = 0;      // T
  std::int64_t windows = 0;     // windows per pass: (S - 1) / T
  std::int64_t input_index(std::int64_t b, std::int64_t w, std::int64_t t) const { return b * stream_len + w * window + t; }
};
// Throws TrainError when not one window fits: "--length T is longer than the data: ...".
StreamLayout stream_layout(std::int64_t n, std::int64_t streams, std::int64_t window, const std::string& what);

// ---- tasks ----

struct TaskInfo {
  int input_size = 0;
  int output_size = 0;
  LossKind loss = LossKind::MseLast;
};

// One training batch, time-major, in the executor's layout.
template <class T>
struct Batch {
  std::vector<T> inputs;                // [T x B x I]
  std::vector<std::int64_t> classes;    // xent: [T x B]
  std::vector<T> values;                // mse_last: [B x O]
  bool continues = false;               // text: the window continues the last one (carry the state)
  SequenceBatch<T> view(std::int64_t length, const T* h0) const {
    return {length, inputs.data(), classes.empty() ? nullptr : classes.data(),
            values.empty() ? nullptr : values.data(), h0};
  }
};

struct EvalResult {
  std::string task;
  double loss = 0;               // held-out: MSE (adding) or mean cross-entropy in nats (copy, text)
  double baseline = 0;           // the trivial predictor's loss on the same data
  double accuracy = -1;          // copy: copied symbols right; text: next characters right; else -1
  double chance_accuracy = -1;   // the trivial predictor's accuracy
  std::int64_t items = 0;        // sequences (adding, copy) or predicted characters (text)
  std::int64_t unknown = 0;      // text: predicted characters outside the training vocabulary
                                 // (counted wrong; see unknown_code_points for their cost)
  std::size_t vocab_size = 0;    // text: characters of the training vocabulary
  double bits_per_char() const;  // text: loss / ln 2
  double baseline_bits_per_char() const;
  std::string summary() const;   // one line
  nlohmann::json to_json() const;
};

template <class T>
class Task {
 public:
  virtual ~Task() = default;
  virtual TaskInfo info() const = 0;
  // Fills the next training batch and advances the data position.
  virtual void next_batch(Batch<T>& b) = 0;
  // The trivial predictor's expected training loss, and what it is.
  virtual double baseline() const = 0;
  virtual std::string baseline_name() const = 0;
  // The data position and random state (json), to save and restore.
  virtual nlohmann::json state() const = 0;
  virtual void restore(const nlohmann::json& j) = 0;
  // Forward only, on held-out data: `sequences` fresh sequences (adding, copy; rounded up to whole
  // batches) or the held-out text in B streams.
  virtual EvalResult evaluate(const Params<T>& p, const NetShape& shape, std::int64_t sequences) const = 0;
};

// Input/output sizes and the loss of a configuration (text: from the corpus's vocabulary).
TaskInfo task_info(const TrainConfig& c, const Corpus* corpus);

// Throws TrainError for a length the task cannot use (copy: T < 2K + 1; text: no window fits).
template <class T>
std::unique_ptr<Task<T>> make_task(const TrainConfig& c, std::shared_ptr<const Corpus> corpus);

// Character-level sampling from a text model: feeds `prime` (classes), then draws `length`
// characters at `temperature` (0: the most likely one) from std::mt19937_64(seed); the unknown
// class is never drawn. Returns the drawn classes.
template <class T>
std::vector<std::int32_t> sample_classes(const Params<T>& p, const NetShape& shape, int unknown_class,
                                         const std::vector<std::int32_t>& prime, std::int64_t length,
                                         double temperature, std::uint64_t seed);

extern template std::unique_ptr<Task<float>> make_task<float>(const TrainConfig&, std::shared_ptr<const Corpus>);
extern template std::unique_ptr<Task<double>> make_task<double>(const TrainConfig&, std::shared_ptr<const Corpus>);

}  // namespace membptt::train
