#include "membptt/train/config.hpp"

#include <cmath>
#include <limits>
#include <type_traits>
#include <optional>

#include <fmt/format.h>

#include "membptt/exec/budget.hpp"
#include "membptt/plan/policy.hpp"

namespace membptt::train {
namespace {

void need_range(const char* option, std::int64_t v, std::int64_t lo, std::int64_t hi) {
  if (v < lo || v > hi) throw TrainError(fmt::format("{} {} is not allowed: allowed is {} to {}", option, v, lo, hi));
}

template <class V>
V get(const nlohmann::json& j, const char* key, const std::string& what) {
  if (!j.contains(key)) throw TrainError(fmt::format("{}: the config has no field '{}'", what, key));
  const nlohmann::json& v = j.at(key);
  if constexpr (std::is_integral_v<V>) {
    // nlohmann's get<int> would truncate 1e12 silently: check the range first.
    const bool fits = v.is_number_unsigned() ? v.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<V>::max())
                      : v.is_number_integer() ? v.get<std::int64_t>() >= static_cast<std::int64_t>(std::numeric_limits<V>::min()) &&
                                                    (std::is_unsigned_v<V> || v.get<std::int64_t>() <= static_cast<std::int64_t>(std::numeric_limits<V>::max()))
                                              : false;
    if (!fits)
      throw TrainError(fmt::format("{}: config field '{}' = {} is not allowed: allowed is an integer from {} to {}", what, key,
                                   v.dump(), std::numeric_limits<V>::min(), std::numeric_limits<V>::max()));
  }
  try {
    return v.get<V>();
  } catch (const nlohmann::json::exception&) {
    throw TrainError(fmt::format("{}: config field '{}' = {} has the wrong type", what, key, j.at(key).dump()));
  }
}

}  // namespace

void validate(const TrainConfig& c) {
  if (c.task != "adding" && c.task != "copy" && c.task != "text")
    throw TrainError(fmt::format("--task '{}' is not allowed: allowed are adding, copy, text", c.task));
  if (c.cell != "lstm" && c.cell != "gru" && c.cell != "rnn")
    throw TrainError(fmt::format("--cell '{}' is not allowed: allowed are lstm, gru, rnn", c.cell));
  if (c.nonlinearity != "tanh" && c.nonlinearity != "relu")
    throw TrainError(fmt::format("--nonlinearity '{}' is not allowed: allowed are tanh, relu", c.nonlinearity));
  if (c.nonlinearity == "relu" && c.cell != "rnn")
    throw TrainError(fmt::format("--nonlinearity relu is not allowed with --cell {}: only --cell rnn takes relu", c.cell));
  // The text task predicts each next character: a reverse direction would read it (and its carried
  // state would cross windows from the wrong end). The adding and copy tasks' answers lie behind.
  if (c.bidirectional && c.task == "text")
    throw TrainError("--task text is not allowed with --bidirectional: the reverse direction would read the next "
                     "character it must predict; use --task adding or copy, or one direction");
  need_range("--hidden", c.hidden, 1, kMaxSize);
  if (!(c.dropout >= 0 && c.dropout < 1))
    throw TrainError(fmt::format("--dropout {} is not allowed: allowed is 0 (none) to below 1", c.dropout));
  if (c.proj_size != 0 && (c.cell != "lstm" || c.proj_size < 1 || c.proj_size >= c.hidden))
    throw TrainError(fmt::format("--proj-size {} is not allowed: allowed is 0 (none), or with --cell lstm 1 to --hidden - 1 "
                                 "({})",
                                 c.proj_size, c.hidden - 1));
  need_range("--layers", c.layers, 1, kMaxLayers);
  need_range("--batch", c.batch, 1, kMaxSize);
  need_range("--length", c.length, 1, kMaxLength);
  need_range("--steps", c.steps, 1, kMaxSteps);
  if (c.optimizer != "adam" && c.optimizer != "sgd")
    throw TrainError(fmt::format("--optimizer '{}' is not allowed: allowed are adam, sgd", c.optimizer));
  if (!std::isfinite(c.lr) || c.lr <= 0)
    throw TrainError(fmt::format("--lr {} is not allowed: allowed is a finite number > 0", c.lr));
  if (!std::isfinite(c.clip) || c.clip < 0)
    throw TrainError(fmt::format("--clip {} is not allowed: allowed is a finite number >= 0 (0: no clipping)", c.clip));
  if (c.init != "pytorch" && c.init != "chrono")
    throw TrainError(fmt::format("--init '{}' is not allowed: allowed are pytorch, chrono", c.init));
  if (c.init == "chrono" && c.cell != "lstm")
    throw TrainError(fmt::format("--init chrono is not allowed with --cell {}: it sets LSTM gate biases (allowed: --cell lstm)", c.cell));
  if (c.init == "chrono" && !c.bias)
    throw TrainError("--init chrono is not allowed with --no-bias: it sets LSTM gate biases (allowed: --init pytorch)");
  if (c.dtype != "float32" && c.dtype != "float64")
    throw TrainError(fmt::format("--dtype '{}' is not allowed: allowed are float32, float64", c.dtype));
  need_range("--copy-symbols", c.copy_symbols, 1, kMaxSize);
  need_range("--copy-alphabet", c.copy_alphabet, 2, kMaxSize);
  if (c.task == "text" && c.text.empty()) throw TrainError("--task text needs a text file (--text FILE)");
  if (c.policy != "auto" && !parse_policy(c.policy)) {
    std::string list = "auto";
    for (Policy p : kAllPolicies) list += ", " + std::string(policy_name(p));
    throw TrainError(fmt::format("--policy '{}' is not allowed: allowed are {}", c.policy, list));
  }
  try {
    (void)parse_budget(c.memory);
  } catch (const std::exception& e) {
    throw TrainError(fmt::format("--memory: {}", e.what()));
  }
}

nlohmann::json to_json(const TrainConfig& c) {
  nlohmann::json j{{"task", c.task},
                        {"cell", c.cell},
                        {"hidden", c.hidden},
                        {"layers", c.layers},
                        {"batch", c.batch},
                        {"length", c.length},
                        {"steps", c.steps},
                        {"optimizer", c.optimizer},
                        {"lr", c.lr},
                        {"clip", c.clip},
                        {"seed", c.seed},
                        {"init", c.init},
                        {"dtype", c.dtype},
                        {"text", c.text},
                        {"copy_symbols", c.copy_symbols},
                        {"copy_alphabet", c.copy_alphabet},
                        {"memory", c.memory},
                        {"policy", c.policy}};
  // Written only when not the default, so that older readers and files keep their bytes.
  if (!c.bias) j["bias"] = false;
  if (c.nonlinearity != "tanh") j["nonlinearity"] = c.nonlinearity;
  if (c.proj_size != 0) j["proj_size"] = c.proj_size;
  if (c.bidirectional) j["bidirectional"] = true;
  if (c.dropout != 0) j["dropout"] = c.dropout;
  return j;
}

TrainConfig config_from_json(const nlohmann::json& j, const std::string& what) {
  if (!j.is_object()) throw TrainError(what + ": the config is not a JSON object");
  TrainConfig c;
  c.task = get<std::string>(j, "task", what);
  c.cell = get<std::string>(j, "cell", what);
  c.hidden = get<int>(j, "hidden", what);
  c.layers = get<int>(j, "layers", what);
  if (j.contains("bias") && !j.at("bias").is_boolean())
    throw TrainError(fmt::format("{}: config field 'bias' = {} has the wrong type", what, j.at("bias").dump()));
  c.bias = j.contains("bias") ? j.at("bias").get<bool>() : true;
  c.nonlinearity = j.contains("nonlinearity") ? get<std::string>(j, "nonlinearity", what) : "tanh";
  c.proj_size = j.contains("proj_size") ? get<int>(j, "proj_size", what) : 0;
  if (j.contains("bidirectional") && !j.at("bidirectional").is_boolean())
    throw TrainError(fmt::format("{}: config field 'bidirectional' = {} has the wrong type", what,
                                 j.at("bidirectional").dump()));
  c.bidirectional = j.contains("bidirectional") && j.at("bidirectional").get<bool>();
  c.dropout = j.contains("dropout") ? get<double>(j, "dropout", what) : 0.0;
  c.batch = get<int>(j, "batch", what);
  c.length = get<std::int64_t>(j, "length", what);
  c.steps = get<std::int64_t>(j, "steps", what);
  c.optimizer = get<std::string>(j, "optimizer", what);
  c.lr = get<double>(j, "lr", what);
  c.clip = get<double>(j, "clip", what);
  c.seed = get<std::uint64_t>(j, "seed", what);
  c.init = j.contains("init") ? get<std::string>(j, "init", what) : "pytorch";
  c.dtype = get<std::string>(j, "dtype", what);
  c.text = get<std::string>(j, "text", what);
  c.copy_symbols = get<int>(j, "copy_symbols", what);
  c.copy_alphabet = get<int>(j, "copy_alphabet", what);
  c.memory = get<std::string>(j, "memory", what);
  c.policy = get<std::string>(j, "policy", what);
  try {
    validate(c);
  } catch (const TrainError& e) {
    throw TrainError(fmt::format("{}: its config is not valid: {}", what, e.what()));
  }
  return c;
}

}  // namespace membptt::train
