#include "membptt/train/tasks.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <sstream>

#include <fmt/format.h>

#include "membptt/cells/head.hpp"
#include "membptt/cells/recurrent_net.hpp"
#include "membptt/exec/bidirectional.hpp"
#include "membptt/train/utf8.hpp"

namespace membptt::train {

// ---- random numbers ----

double unit_double(std::mt19937_64& g) { return static_cast<double>(g() >> 11) * 0x1.0p-53; }

std::uint64_t uniform_below(std::mt19937_64& g, std::uint64_t n) {
  // Rejection: accept x below the largest multiple of n.
  const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % n;
  for (;;) {
    const std::uint64_t x = g();
    if (x < limit) return x % n;
  }
}

std::string rng_state(const std::mt19937_64& g) {
  std::ostringstream os;
  os << g;
  return os.str();
}

void set_rng_state(std::mt19937_64& g, const std::string& text) {
  std::istringstream is(text);
  std::mt19937_64 r;
  is >> r;
  if (is.fail()) throw TrainError("the random generator state is not a std::mt19937_64 state");
  is >> std::ws;
  if (!is.eof()) throw TrainError("the random generator state has text after the state");
  g = r;
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t purpose) {
  // splitmix64 of seed and purpose.
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (purpose + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::uint64_t fnv1a64(std::span<const std::byte> bytes, std::uint64_t h) {
  for (std::byte b : bytes) {
    h ^= static_cast<std::uint64_t>(b);
    h *= 1099511628211ull;
  }
  return h;
}

// ---- text ----

namespace {

constexpr std::uint64_t kPurposeTrain = 1, kPurposeHeldOut = 2;

std::string read_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw TrainError(fmt::format("text file {} is a directory: allowed is a UTF-8 text file", path.string()));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw TrainError(fmt::format("cannot read text file {}: no such file or not readable", path.string()));
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw TrainError(fmt::format("cannot read text file {}", path.string()));
  return s;
}

std::vector<char32_t> checked_text(std::string_view bytes, const std::string& source) {
  if (bytes.empty()) throw TrainError(fmt::format("text file {} is empty: allowed is a UTF-8 text of 2 or more characters", source));
  std::vector<char32_t> cps = decode_utf8(bytes, "text file " + source);
  if (cps.size() < 2)
    throw TrainError(fmt::format("text file {} has {} character: allowed is a UTF-8 text of 2 or more characters", source,
                                 cps.size()));
  return cps;
}

Corpus build(std::string_view bytes, std::string source, const std::vector<char32_t>* fixed_vocab) {
  const std::vector<char32_t> cps = checked_text(bytes, source);
  Corpus c;
  c.source = std::move(source);
  c.hash = fnv1a64(std::as_bytes(std::span(bytes.data(), bytes.size())));
  const std::size_t n_train = cps.size() - cps.size() / 10;  // held-out: the last 10% (rounded down)
  if (fixed_vocab) {
    c.vocab = *fixed_vocab;
  } else {
    c.vocab.assign(cps.begin(), cps.begin() + static_cast<std::ptrdiff_t>(n_train));
    std::sort(c.vocab.begin(), c.vocab.end());
    c.vocab.erase(std::unique(c.vocab.begin(), c.vocab.end()), c.vocab.end());
  }
  c.train.reserve(n_train);
  for (std::size_t i = 0; i < cps.size(); ++i) {
    auto& dst = i < n_train ? c.train : c.heldout;
    dst.push_back(class_of(c.vocab, cps[i]));
  }
  return c;
}

}  // namespace

double unknown_code_points(std::size_t vocab_size) {
  // Unicode scalar values: 0 to 0x10FFFF less the 2048 surrogates.
  constexpr double kScalarValues = 0x110000 - 0x800;
  return std::max(1.0, kScalarValues - static_cast<double>(vocab_size));
}

std::int32_t class_of(const std::vector<char32_t>& vocab, char32_t cp) {
  const auto it = std::lower_bound(vocab.begin(), vocab.end(), cp);
  if (it == vocab.end() || *it != cp) return static_cast<std::int32_t>(vocab.size());
  return static_cast<std::int32_t>(it - vocab.begin());
}

Corpus Corpus::from_bytes(std::string_view bytes, std::string source) { return build(bytes, std::move(source), nullptr); }
Corpus Corpus::from_bytes(std::string_view bytes, std::string source, std::vector<char32_t> vocab) {
  return build(bytes, std::move(source), &vocab);
}
Corpus Corpus::load(const std::filesystem::path& path) { return from_bytes(read_file(path), path.string()); }
Corpus Corpus::load(const std::filesystem::path& path, std::vector<char32_t> vocab) {
  return from_bytes(read_file(path), path.string(), std::move(vocab));
}

StreamLayout stream_layout(std::int64_t n, std::int64_t streams, std::int64_t window, const std::string& what) {
  StreamLayout l;
  l.streams = streams;
  l.window = window;
  l.stream_len = streams > 0 ? n / streams : 0;
  l.windows = l.stream_len >= 1 ? (l.stream_len - 1) / window : 0;
  if (l.stream_len < 2)
    throw TrainError(fmt::format("--batch {} is too large for {} ({} characters): each of the {} streams needs 2 or more "
                                 "characters; allowed is --batch 1 to {}",
                                 streams, what, n, streams, std::max<std::int64_t>(n / 2, 1)));
  if (l.windows < 1)
    throw TrainError(fmt::format("--length {} is longer than the data: {} ({} characters) in {} stream(s) of {} characters "
                                 "gives windows of at most {} steps; allowed is --length 1 to {} (or a smaller --batch)",
                                 window, what, n, streams, l.stream_len, l.stream_len - 1, l.stream_len - 1));
  return l;
}

// ---- evaluation results ----

double EvalResult::bits_per_char() const { return loss / std::log(2.0); }
double EvalResult::baseline_bits_per_char() const { return baseline / std::log(2.0); }

std::string EvalResult::summary() const {
  if (task == "adding")
    return fmt::format("held-out MSE {:.5g} on {} sequences (always answering the mean, 1: {:.5g})", loss, items,
                       baseline);
  if (task == "copy")
    return fmt::format("held-out: {:.1f}% of copied symbols right (chance {:.1f}%), loss {:.5g} per step "
                       "(memoryless baseline {:.5g}) on {} sequences",
                       100 * accuracy, 100 * chance_accuracy, loss, baseline, items);
  if (items == 0) return "held-out: the held-out part is too short to evaluate (fewer than 2 characters)";
  std::string s = fmt::format("held-out: {:.4f} bits per character on {} characters (unigram baseline {:.4f}), {:.1f}% of next "
                              "characters right (most frequent character: {:.1f}%)",
                              bits_per_char(), items, baseline_bits_per_char(), 100 * accuracy, 100 * chance_accuracy);
  if (unknown > 0)
    s += fmt::format("; {} of them ({:.1f}%) are outside the training vocabulary: counted wrong, each costing -log2 "
                     "p(unknown) + {:.1f} bits",
                     unknown, 100.0 * static_cast<double>(unknown) / static_cast<double>(items),
                     std::log2(unknown_code_points(vocab_size)));
  return s;
}

nlohmann::json EvalResult::to_json() const {
  nlohmann::json j{{"task", task}, {"loss", loss}, {"baseline", baseline}, {"items", items}};
  if (accuracy >= 0) j["accuracy"] = accuracy;
  if (chance_accuracy >= 0) j["chance_accuracy"] = chance_accuracy;
  if (task == "text") {
    j["unknown"] = unknown;
    j["bits_per_char"] = bits_per_char();
    j["baseline_bits_per_char"] = baseline_bits_per_char();
  }
  return j;
}

// ---- tasks ----

namespace {

// Runs a network forward only, one step at a time, from a zero carry. A bidirectional network
// reads the whole sequence first (begin(): its reverse direction starts from the end); step() then
// hands out its top outputs [B x 2R] in order.
template <class T>
struct Forward {
  NetShape shape;
  std::optional<RecurrentNet<T>> net;  // one direction
  Head<T> head;
  backend::AlignedBuffer<T> carry;
  std::vector<T> outputs;  // bidirectional: [T x B x 2R]
  std::size_t next = 0;
  explicit Forward(const NetShape& s) : shape(s), head(s) {
    if (s.bidirectional) return;
    net.emplace(s);
    carry = backend::AlignedBuffer<T>(net->carry_elems());
  }
  void reset() {
    if (net) carry.zero();
  }
  // The whole sequence xs [length x B x I] (bidirectional; nothing to do otherwise).
  void begin(const Params<T>& p, const T* xs, std::int64_t length) {
    if (net) return;
    outputs.assign(static_cast<std::size_t>(length) * row(), T(0));
    bidirectional_infer(shape, p.data(), xs, length, static_cast<const T*>(nullptr), outputs.data(),
                        static_cast<T*>(nullptr), false, 0);
    next = 0;
  }
  const T* step(const Params<T>& p, const T* x) {
    if (!net) return outputs.data() + (next++) * row();
    net->advance(p, x, carry.data(), carry.data());
    return net->top_hidden(carry.data());
  }
  std::size_t row() const {
    return static_cast<std::size_t>(shape.batch) * 2 * static_cast<std::size_t>(output_width(shape));
  }
};

// A synthetic task: its whole data state is one random generator, drawn from the seed.
template <class T>
class GeneratedTask : public Task<T> {
 public:
  explicit GeneratedTask(const TrainConfig& c) : c_(c), rng_(derive_seed(c.seed, kPurposeTrain)) {}
  nlohmann::json state() const override { return {{"rng", rng_state(rng_)}}; }
  void restore(const nlohmann::json& j) override {
    if (!j.is_object() || !j.contains("rng") || !j["rng"].is_string())
      throw TrainError("the data state has no random generator state 'rng'");
    set_rng_state(rng_, j["rng"].get<std::string>());
  }

 protected:
  TrainConfig c_;
  std::mt19937_64 rng_;
};

template <class T>
class AddingTask final : public GeneratedTask<T> {
  using GeneratedTask<T>::c_;
  using GeneratedTask<T>::rng_;

 public:
  explicit AddingTask(const TrainConfig& c) : GeneratedTask<T>(c) {
    if (c.length < 2)
      throw TrainError(fmt::format("--length {} is not allowed for --task adding: allowed is 2 or more (two marked steps)",
                                   c.length));
  }
  TaskInfo info() const override { return {2, 1, LossKind::MseLast}; }
  void next_batch(Batch<T>& b) override { fill(rng_, c_.length, c_.batch, b); }
  double baseline() const override { return 1.0 / 6.0; }
  std::string baseline_name() const override { return "always answering the mean, 1: variance of the sum 2/12"; }
  EvalResult evaluate(const Params<T>& p, const NetShape& shape, std::int64_t sequences) const override {
    std::mt19937_64 g(derive_seed(c_.seed, kPurposeHeldOut));
    Forward<T> fw(shape);
    Batch<T> b;
    double se = 0, se_base = 0;
    std::int64_t n = 0;
    const std::size_t step_elems = static_cast<std::size_t>(shape.batch) * 2;
    while (n < sequences) {
      fill(g, c_.length, shape.batch, b);
      fw.reset();
      fw.begin(p, b.inputs.data(), c_.length);
      const T* top = nullptr;
      for (std::int64_t t = 0; t < c_.length; ++t) top = fw.step(p, b.inputs.data() + static_cast<std::size_t>(t) * step_elems);
      const T* y = fw.head.forward(p, top);
      for (int i = 0; i < shape.batch; ++i) {
        const double d = static_cast<double>(y[i]) - static_cast<double>(b.values[i]);
        const double d0 = 1.0 - static_cast<double>(b.values[i]);
        se += d * d;
        se_base += d0 * d0;
      }
      n += shape.batch;
    }
    EvalResult r;
    r.task = "adding";
    r.items = n;
    r.loss = se / static_cast<double>(n);
    r.baseline = se_base / static_cast<double>(n);
    return r;
  }

  static void fill(std::mt19937_64& g, std::int64_t len, int B, Batch<T>& b) {
    b.inputs.assign(static_cast<std::size_t>(len) * static_cast<std::size_t>(B) * 2, T(0));
    b.values.assign(static_cast<std::size_t>(B), T(0));
    b.classes.clear();
    b.continues = false;
    const std::int64_t half = len / 2;
    for (int i = 0; i < B; ++i) {
      const auto p1 = static_cast<std::int64_t>(uniform_below(g, static_cast<std::uint64_t>(half)));
      const auto p2 = half + static_cast<std::int64_t>(uniform_below(g, static_cast<std::uint64_t>(len - half)));
      double sum = 0;
      for (std::int64_t t = 0; t < len; ++t) {
        T* x = b.inputs.data() + (static_cast<std::size_t>(t) * static_cast<std::size_t>(B) + static_cast<std::size_t>(i)) * 2;
        x[0] = static_cast<T>(unit_double(g));
        if (t == p1 || t == p2) {
          x[1] = T(1);
          sum += static_cast<double>(x[0]);
        }
      }
      b.values[static_cast<std::size_t>(i)] = static_cast<T>(sum);
    }
  }

};

template <class T>
class CopyTask final : public GeneratedTask<T> {
  using GeneratedTask<T>::c_;
  using GeneratedTask<T>::rng_;

 public:
  explicit CopyTask(const TrainConfig& c) : GeneratedTask<T>(c) {
    const std::int64_t least = 2 * std::int64_t{c.copy_symbols} + 1;
    if (c.length < least)
      throw TrainError(fmt::format("--length {} is too short for --task copy with --copy-symbols {}: allowed is {} or more "
                                   "(the symbols, a delimiter, the answers)",
                                   c.length, c.copy_symbols, least));
  }
  TaskInfo info() const override { return {c_.copy_alphabet + 2, c_.copy_alphabet + 1, LossKind::Xent}; }
  void next_batch(Batch<T>& b) override { fill(rng_, c_, c_.batch, b); }
  double baseline() const override {
    return static_cast<double>(c_.copy_symbols) * std::log(static_cast<double>(c_.copy_alphabet)) /
           static_cast<double>(c_.length);
  }
  std::string baseline_name() const override { return "memoryless: blank, then a uniform guess; K ln(A) / T"; }
  EvalResult evaluate(const Params<T>& p, const NetShape& shape, std::int64_t sequences) const override {
    std::mt19937_64 g(derive_seed(c_.seed, kPurposeHeldOut));
    Forward<T> fw(shape);
    Batch<T> b;
    const std::int64_t T_len = c_.length, K = c_.copy_symbols;
    const std::size_t step_elems = static_cast<std::size_t>(shape.batch) * static_cast<std::size_t>(shape.input_size);
    double ce = 0;
    std::int64_t correct = 0, n = 0;
    while (n < sequences) {
      fill(g, c_, shape.batch, b);
      fw.reset();
      fw.begin(p, b.inputs.data(), T_len);
      for (std::int64_t t = 0; t < T_len; ++t) {
        const T* top = fw.step(p, b.inputs.data() + static_cast<std::size_t>(t) * step_elems);
        const std::int64_t* tg = b.classes.data() + static_cast<std::size_t>(t) * static_cast<std::size_t>(shape.batch);
        ce += static_cast<double>(fw.head.step_xent_loss(p, top, tg, T(1), t >= T_len - K ? &correct : nullptr));
      }
      n += shape.batch;
    }
    EvalResult r;
    r.task = "copy";
    r.items = n;
    r.loss = ce / static_cast<double>(n * T_len);
    r.baseline = baseline();
    r.accuracy = static_cast<double>(correct) / static_cast<double>(n * K);
    r.chance_accuracy = 1.0 / static_cast<double>(c_.copy_alphabet);
    return r;
  }

  static void fill(std::mt19937_64& g, const TrainConfig& c, int B, Batch<T>& b) {
    const std::int64_t len = c.length, K = c.copy_symbols, A = c.copy_alphabet, I = A + 2;
    b.inputs.assign(static_cast<std::size_t>(len * B * I), T(0));
    b.classes.assign(static_cast<std::size_t>(len * B), A);  // blank
    b.values.clear();
    b.continues = false;
    std::vector<std::int64_t> sym(static_cast<std::size_t>(K));
    for (int i = 0; i < B; ++i) {
      for (auto& s : sym) s = static_cast<std::int64_t>(uniform_below(g, static_cast<std::uint64_t>(A)));
      for (std::int64_t t = 0; t < len; ++t) {
        std::int64_t ch = A;  // blank
        if (t < K) ch = sym[static_cast<std::size_t>(t)];
        if (t == len - K - 1) ch = A + 1;  // delimiter
        b.inputs[static_cast<std::size_t>((t * B + i) * I + ch)] = T(1);
        if (t >= len - K) b.classes[static_cast<std::size_t>(t * B + i)] = sym[static_cast<std::size_t>(t - (len - K))];
      }
    }
  }

};

template <class T>
class TextTask final : public Task<T> {
 public:
  TextTask(const TrainConfig& c, std::shared_ptr<const Corpus> corpus)
      : c_(c),
        corpus_(std::move(corpus)),
        layout_(stream_layout(static_cast<std::int64_t>(corpus_->train.size()), c.batch, c.length,
                              "the training part of " + corpus_->source)) {
    // Unigram model of the training part, add-one smoothed over every class.
    const int V = corpus_->classes();
    std::vector<double> count(static_cast<std::size_t>(V), 1.0);
    for (auto k : corpus_->train) count[static_cast<std::size_t>(k)] += 1;
    const double total = static_cast<double>(corpus_->train.size()) + V;
    logp_.resize(count.size());
    for (std::size_t k = 0; k < count.size(); ++k) logp_[k] = std::log(count[k] / total);
    mode_ = static_cast<std::int32_t>(std::max_element(count.begin(), count.end()) - count.begin());
    double h = 0;
    for (auto k : corpus_->train) h -= logp_[static_cast<std::size_t>(k)];
    train_baseline_ = h / static_cast<double>(corpus_->train.size());
  }
  TaskInfo info() const override { return {corpus_->classes(), corpus_->classes(), LossKind::Xent}; }
  void next_batch(Batch<T>& b) override {
    if (window_ == layout_.windows) {
      window_ = 0;
      ++epoch_;
    }
    const std::int64_t T_len = c_.length, B = c_.batch, V = corpus_->classes();
    b.inputs.assign(static_cast<std::size_t>(T_len * B * V), T(0));
    b.classes.resize(static_cast<std::size_t>(T_len * B));
    b.values.clear();
    b.continues = window_ != 0;
    for (std::int64_t t = 0; t < T_len; ++t) {
      for (std::int64_t i = 0; i < B; ++i) {
        const auto at = static_cast<std::size_t>(layout_.input_index(i, window_, t));
        b.inputs[static_cast<std::size_t>((t * B + i) * V + corpus_->train[at])] = T(1);
        b.classes[static_cast<std::size_t>(t * B + i)] = corpus_->train[at + 1];
      }
    }
    ++window_;
  }
  double baseline() const override { return train_baseline_; }
  std::string baseline_name() const override { return "unigram frequencies of the training part"; }
  nlohmann::json state() const override { return {{"window", window_}, {"epoch", epoch_}}; }
  void restore(const nlohmann::json& j) override {
    if (!j.is_object() || !j.contains("window") || !j.contains("epoch") || !j["window"].is_number_integer() ||
        !j["epoch"].is_number_integer())
      throw TrainError("the data state has no integer 'window' and 'epoch'");
    const auto w = j["window"].get<std::int64_t>();
    if (w < 0 || w > layout_.windows)
      throw TrainError(fmt::format("the data state's window {} is outside 0 to {} (the text or --length changed?)", w,
                                   layout_.windows));
    window_ = w;
    epoch_ = j["epoch"].get<std::int64_t>();
  }
  EvalResult evaluate(const Params<T>& p, const NetShape& train_shape, std::int64_t) const override {
    EvalResult r;
    r.task = "text";
    const auto& held = corpus_->heldout;
    const auto n = static_cast<std::int64_t>(held.size());
    if (n < 2) return r;
    // Forward only, so no windows: B streams of at least ~1000 characters, each read straight through.
    const std::int64_t B = std::clamp<std::int64_t>(n / 1000, 1, train_shape.batch);
    NetShape shape = train_shape;
    shape.batch = static_cast<int>(B);
    Forward<T> fw(shape);
    const std::int64_t S = n / B, V = corpus_->classes();
    std::vector<T> x(static_cast<std::size_t>(B * V));
    std::vector<std::int64_t> tg(static_cast<std::size_t>(B));
    // A target outside the training vocabulary is never predicted right, whatever the model says:
    // the unknown class stands for every code point outside the vocabulary, so its probability is
    // spread evenly over them (a proper distribution over all of Unicode, hence an honest code
    // length): such a target costs -ln p(unknown) + ln(code points outside the vocabulary).
    const std::int32_t unk = corpus_->unknown_class();
    const double unk_share = std::log(unknown_code_points(corpus_->vocab.size()));
    double ce = 0, ce_base = 0;
    std::int64_t correct = 0, mode_hits = 0, unknown = 0;
    if (shape.bidirectional) {  // each stream straight through, read whole first
      std::vector<T> xs(static_cast<std::size_t>((S - 1) * B * V), T(0));
      for (std::int64_t t = 0; t + 1 < S; ++t)
        for (std::int64_t i = 0; i < B; ++i)
          xs[static_cast<std::size_t>((t * B + i) * V + held[static_cast<std::size_t>(i * S + t)])] = T(1);
      fw.begin(p, xs.data(), S - 1);
    }
    for (std::int64_t t = 0; t + 1 < S; ++t) {
      std::fill(x.begin(), x.end(), T(0));
      for (std::int64_t i = 0; i < B; ++i) {
        const auto at = static_cast<std::size_t>(i * S + t);
        x[static_cast<std::size_t>(i * V + held[at])] = T(1);
        const std::int32_t target = held[at + 1];
        tg[static_cast<std::size_t>(i)] = target;
        ce_base -= logp_[static_cast<std::size_t>(target)];
        if (target == unk) {
          ++unknown;
          ce_base += unk_share;
        } else {
          mode_hits += target == mode_;
        }
      }
      const T* top = fw.step(p, x.data());
      const T* z = fw.head.forward(p, top);
      for (std::int64_t i = 0; i < B; ++i) {
        const T* zr = z + i * V;
        const T* best = std::max_element(zr, zr + V);  // the first maximum, as the head's own count
        double sum = 0;
        for (std::int64_t k = 0; k < V; ++k) sum += std::exp(static_cast<double>(zr[k] - *best));
        const std::int64_t target = tg[static_cast<std::size_t>(i)];
        ce += std::log(sum) - static_cast<double>(zr[target] - *best);
        if (target == unk)
          ce += unk_share;
        else
          correct += (best - zr) == target;
      }
    }
    r.items = B * (S - 1);
    r.unknown = unknown;
    r.vocab_size = corpus_->vocab.size();
    r.loss = ce / static_cast<double>(r.items);
    r.baseline = ce_base / static_cast<double>(r.items);
    r.accuracy = static_cast<double>(correct) / static_cast<double>(r.items);
    r.chance_accuracy = static_cast<double>(mode_hits) / static_cast<double>(r.items);
    return r;
  }

 private:
  TrainConfig c_;
  std::shared_ptr<const Corpus> corpus_;
  StreamLayout layout_;
  std::int64_t window_ = 0, epoch_ = 0;
  std::vector<double> logp_;
  std::int32_t mode_ = 0;
  double train_baseline_ = 0;
};

}  // namespace

TaskInfo task_info(const TrainConfig& c, const Corpus* corpus) {
  if (c.task == "adding") return {2, 1, LossKind::MseLast};
  if (c.task == "copy") return {c.copy_alphabet + 2, c.copy_alphabet + 1, LossKind::Xent};
  if (c.task == "text") {
    if (!corpus) throw TrainError("--task text needs a text file (--text FILE)");
    return {corpus->classes(), corpus->classes(), LossKind::Xent};
  }
  throw TrainError(fmt::format("--task '{}' is not allowed: allowed are adding, copy, text", c.task));
}

template <class T>
std::unique_ptr<Task<T>> make_task(const TrainConfig& c, std::shared_ptr<const Corpus> corpus) {
  if (c.task == "adding") return std::make_unique<AddingTask<T>>(c);
  if (c.task == "copy") return std::make_unique<CopyTask<T>>(c);
  if (c.task == "text") {
    if (!corpus) throw TrainError("--task text needs a text file (--text FILE)");
    return std::make_unique<TextTask<T>>(c, std::move(corpus));
  }
  throw TrainError(fmt::format("--task '{}' is not allowed: allowed are adding, copy, text", c.task));
}

template <class T>
std::vector<std::int32_t> sample_classes(const Params<T>& p, const NetShape& shape_in, int unknown_class,
                                         const std::vector<std::int32_t>& prime, std::int64_t length,
                                         double temperature, std::uint64_t seed) {
  NetShape shape = shape_in;
  shape.batch = 1;
  Forward<T> fw(shape);
  const int V = shape.input_size;
  std::vector<T> x(static_cast<std::size_t>(V));
  const T* top = nullptr;
  auto feed = [&](std::int32_t k) {
    std::fill(x.begin(), x.end(), T(0));
    x[static_cast<std::size_t>(k)] = T(1);
    top = fw.step(p, x.data());
  };
  for (auto k : prime) feed(k);
  std::vector<T> zero(static_cast<std::size_t>(output_width(shape)), T(0));
  if (!top) top = zero.data();  // no prime: the first character comes from the zero state
  std::mt19937_64 g(seed);
  std::vector<double> w(static_cast<std::size_t>(shape.output_size));
  std::vector<std::int32_t> out;
  out.reserve(static_cast<std::size_t>(length));
  for (std::int64_t i = 0; i < length; ++i) {
    const T* logits = fw.head.forward(p, top);
    std::int32_t pick = -1;
    if (temperature <= 0) {
      for (int k = 0; k < shape.output_size; ++k)
        if (k != unknown_class && (pick < 0 || logits[k] > logits[pick])) pick = k;
    } else {
      // (logit - max) / temperature <= 0: a tiny temperature gives 0 or 1, never inf - inf.
      double m = -std::numeric_limits<double>::infinity();
      for (int k = 0; k < shape.output_size; ++k)
        if (k != unknown_class) m = std::max(m, static_cast<double>(logits[k]));
      double sum = 0;
      for (int k = 0; k < shape.output_size; ++k) {
        w[static_cast<std::size_t>(k)] =
            k == unknown_class ? 0.0 : std::exp((static_cast<double>(logits[k]) - m) / temperature);
        sum += w[static_cast<std::size_t>(k)];
      }
      double u = unit_double(g) * sum;
      for (int k = 0; k < shape.output_size; ++k) {
        if (k == unknown_class) continue;
        pick = k;
        u -= w[static_cast<std::size_t>(k)];
        if (u < 0) break;
      }
    }
    out.push_back(pick);
    if (pick >= V) break;  // cannot feed it back (output and input sizes differ): not a text model
    feed(pick);
  }
  return out;
}

template std::unique_ptr<Task<float>> make_task<float>(const TrainConfig&, std::shared_ptr<const Corpus>);
template std::unique_ptr<Task<double>> make_task<double>(const TrainConfig&, std::shared_ptr<const Corpus>);
template std::vector<std::int32_t> sample_classes<float>(const Params<float>&, const NetShape&, int,
                                                         const std::vector<std::int32_t>&, std::int64_t, double,
                                                         std::uint64_t);
template std::vector<std::int32_t> sample_classes<double>(const Params<double>&, const NetShape&, int,
                                                          const std::vector<std::int32_t>&, std::int64_t, double,
                                                          std::uint64_t);

}  // namespace membptt::train
