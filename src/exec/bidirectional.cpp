#include "membptt/exec/bidirectional.hpp"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>

#include "membptt/cells/recurrent_net.hpp"

namespace membptt {
namespace {

std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }

// Elements of one layer's output sequence [T x B x 2R].
std::size_t sequence_elems(const NetShape& s, std::int64_t length) {
  return sz(length) * sz(s.batch) * 2 * sz(output_width(s));
}

// Held sequences: the outputs of layers 0 .. L-2, and one for a gradient when L >= 2.
std::size_t held_sequences(const NetShape& s) { return s.num_layers >= 2 ? sz(s.num_layers) : 0; }

// Layer l's chains' state sizes: the device's, or the CPU's.
StateSizes sizes_of(const NetShape& s, int layer, std::size_t scalar_bytes, const ChainSizes& sizes) {
  const NetShape c = chain_shape(s, layer);
  return sizes ? sizes(c) : state_sizes(c, scalar_bytes);
}

void require_bidirectional(const NetShape& s) {
  validate(s);
  if (!s.bidirectional) throw std::invalid_argument("BidirectionalStack: the shape is not bidirectional");
}

// Chain c's carry (h [B x R], then LSTM c [B x H]) from / to PyTorch's layout of the stack's:
// h [2L x B x R], then c [2L x B x H].
template <class T>
void gather_carry(const NetShape& s, const T* full, int c, T* chain) {
  const std::size_t br = sz(s.batch) * sz(output_width(s)), bh = sz(s.batch) * sz(s.hidden_size);
  std::memcpy(chain, full + sz(c) * br, br * sizeof(T));
  if (s.cell == CellType::Lstm) std::memcpy(chain + br, full + 2 * sz(s.num_layers) * br + sz(c) * bh, bh * sizeof(T));
}

template <class T>
void scatter_carry(const NetShape& s, const T* chain, int c, T* full) {
  const std::size_t br = sz(s.batch) * sz(output_width(s)), bh = sz(s.batch) * sz(s.hidden_size);
  std::memcpy(full + sz(c) * br, chain, br * sizeof(T));
  if (s.cell == CellType::Lstm) std::memcpy(full + 2 * sz(s.num_layers) * br + sz(c) * bh, chain + br, bh * sizeof(T));
}

}  // namespace

std::pair<std::size_t, std::size_t> chain_weights(const NetShape& s, int c) {
  const auto views = param_layout(s);
  const std::size_t per = (s.bias ? 4 : 2) + (s.proj_size > 0 ? 1 : 0);
  const ParamView& first = views[per * sz(c)];
  const ParamView& last = views[per * sz(c) + per - 1];
  return {first.offset, last.offset + last.size - first.offset};
}

NetShape chain_shape(const NetShape& s, int layer) {
  NetShape c = s;
  c.num_layers = 1;
  c.bidirectional = false;
  c.dropout = 0;
  c.output_size = 1;
  c.input_size = layer == 0 ? s.input_size : 2 * output_width(s);
  return c;
}

double bidirectional_held_bytes(const NetShape& s, std::int64_t length, std::size_t scalar_bytes) {
  require_bidirectional(s);
  const double chains = 2.0 * s.num_layers;
  // Each reverse chain's one step of dL/dx, added to what the forward chain wrote (its executor's).
  double dx_steps = 0;
  for (int l = 0; l < s.num_layers; ++l) dx_steps += static_cast<double>(s.batch) * chain_shape(s, l).input_size;
  return (static_cast<double>(held_sequences(s)) * static_cast<double>(sequence_elems(s, length)) +
          chains * 2.0 * static_cast<double>(carry_elems(chain_shape(s, 0))) + dx_steps) *
         static_cast<double>(scalar_bytes);
}

double bidirectional_plain_bytes(const NetShape& s, std::int64_t length, std::size_t scalar_bytes,
                                 const ChainSizes& sizes) {
  // Layer 0's chains, then the layers above (all alike), two chains each.
  const auto chain_plain = [&](int l) {
    return 2.0 * static_cast<double>(sizes_of(s, l, scalar_bytes, sizes).plain_bptt_bytes(length));
  };
  return bidirectional_held_bytes(s, length, scalar_bytes) + chain_plain(0) +
         (s.num_layers > 1 ? (s.num_layers - 1) * chain_plain(1) : 0.0);
}

double bidirectional_share_bytes(double percent, const NetShape& s, std::int64_t length, std::size_t scalar_bytes,
                                 double fixed_bytes, const ChainSizes& sizes) {
  const double held = bidirectional_held_bytes(s, length, scalar_bytes);
  const double chains = bidirectional_plain_bytes(s, length, scalar_bytes, sizes) - held;
  return fixed_bytes + held + percent / 100.0 * chains;
}

namespace {
// The chains' budgets: layer 0's two chains and the 2(L-1) alike chains above may differ in size
// (their inputs differ: I against 2R), so each gets the least its plan needs plus a share of what
// the budget leaves over, in proportion to what it needs more for plain BPTT: every chain reaches
// its plain BPTT exactly when the whole budget does.
struct ChainBudgets {
  double count[2] = {2, 0}, least[2] = {0, 0}, plain[2] = {0, 0};
  double least_total() const { return count[0] * least[0] + count[1] * least[1]; }
  double budget(int l, double chains_budget) const {
    const double surplus = chains_budget - least_total();
    const double spread = count[0] * (plain[0] - least[0]) + count[1] * (plain[1] - least[1]);
    return least[l] + (spread > 0 ? surplus * (plain[l] - least[l]) / spread : surplus / (count[0] + count[1]));
  }
};

ChainBudgets chain_budgets(Policy policy, const NetShape& s, std::int64_t length, std::size_t scalar_bytes,
                           const ChainSizes& sizes) {
  ChainBudgets c;
  c.count[1] = 2.0 * (s.num_layers - 1);
  for (int l = 0; l < std::min(2, s.num_layers); ++l) {
    const StateSizes chain = sizes_of(s, l, scalar_bytes, sizes);
    c.least[l] = least_bytes(policy, length, chain);
    c.plain[l] = static_cast<double>(chain.plain_bptt_bytes(length));
  }
  return c;
}
}  // namespace

double bidirectional_least_bytes(Policy policy, const NetShape& s, std::int64_t length, std::size_t scalar_bytes,
                                 const ChainSizes& sizes) {
  return bidirectional_held_bytes(s, length, scalar_bytes) +
         chain_budgets(policy, s, length, scalar_bytes, sizes).least_total();
}

BidirectionalPlans plan_bidirectional(std::optional<Policy> policy, const NetShape& s, std::int64_t length,
                                      std::optional<double> budget_bytes, std::size_t scalar_bytes, double beta,
                                      const ChainSizes& sizes) {
  BidirectionalPlans out;
  out.held_bytes = bidirectional_held_bytes(s, length, scalar_bytes);
  out.plain_bytes = bidirectional_plain_bytes(s, length, scalar_bytes, sizes);
  out.budget_bytes = budget_bytes.value_or(out.plain_bytes);
  const double chains = 2.0 * s.num_layers;
  const ChainBudgets split = chain_budgets(policy.value_or(Policy::Msm), s, length, scalar_bytes, sizes);
  const double least = out.held_bytes + split.least_total();
  if (budget_bytes && !(*budget_bytes >= least)) {
    std::ostringstream os;
    os << "memory budget " << bytes_text(*budget_bytes) << " is below the least in which policy "
       << policy_name(policy.value_or(Policy::Msm)) << " runs a bidirectional stack of " << s.num_layers
       << " layer(s) over " << length << " steps: " << bytes_text(least) << ", of which " << bytes_text(out.held_bytes)
       << (s.num_layers > 1 ? " hold the inner layers' outputs and a gradient (growing with the length)"
                            : " hold the chains' carries")
       << " and the rest the " << static_cast<int>(chains) << " chains' plans; plain BPTT needs "
       << bytes_text(out.plain_bytes);
    throw PlanError(os.str());
  }
  for (int l = 0; l < s.num_layers; ++l) {
    if (l >= 2) {  // layers above the first are alike
      out.layer.push_back(out.layer[1]);
      continue;
    }
    const StateSizes chain = sizes_of(s, l, scalar_bytes, sizes);
    const double chain_budget = budget_bytes ? split.budget(l, *budget_bytes - out.held_bytes)
                                             : static_cast<double>(chain.plain_bptt_bytes(length));
    out.layer.push_back(std::make_shared<const Plan>(plan_for_bytes(policy, length, chain_budget, chain, beta)));
  }
  return out;
}

template <class T>
void bidirectional_infer(const NetShape& s, const T* weights, const T* x, std::int64_t length, const T* h0, T* y,
                         T* hn, bool dropout_on, std::uint64_t seed) {
  require_bidirectional(s);
  const int L = s.num_layers, R = output_width(s);
  const std::size_t row = sz(s.batch) * 2 * sz(R);
  std::vector<T> below, above;  // layer l-1's and layer l's outputs
  for (int l = 0; l < L; ++l) {
    const NetShape cs = chain_shape(s, l);
    RecurrentNet<T> net(cs);
    Params<T> w(cs);
    backend::AlignedBuffer<T> carry(net.carry_elems());
    const std::size_t in_row = sz(s.batch) * sz(cs.input_size);
    const T* in = l == 0 ? x : below.data();
    T* out = y;
    if (l + 1 < L) {
      above.assign(sz(length) * row, T(0));
      out = above.data();
    }
    for (int d = 0; d < 2; ++d) {
      const int c = 2 * l + d;
      const auto [offset, count] = chain_weights(s, c);
      std::memcpy(w.data(), weights + offset, count * sizeof(T));
      if (h0) gather_carry(s, h0, c, carry.data()); else carry.zero();
      for (std::int64_t t = 0; t < length; ++t) {
        const std::size_t pos = sz(d == 0 ? t : length - 1 - t);
        net.advance(w, in + pos * in_row, carry.data(), carry.data());
        const T* h = net.top_hidden(carry.data());
        for (int b = 0; b < s.batch; ++b)
          std::memcpy(out + pos * row + sz(b) * 2 * sz(R) + sz(d) * sz(R), h + sz(b) * sz(R), sz(R) * sizeof(T));
      }
      if (hn) scatter_carry(s, carry.data(), c, hn);
    }
    if (l + 1 < L) {
      if (dropout_on && s.dropout > 0)  // the masks the stack draws (cells/dropout.hpp)
        CpuBackend<T>::dropout_steps(above.data(), length, s.batch, 2 * R, &seed, l + 1, s.dropout);
      below.swap(above);
    }
  }
}

template class BasicBidirectionalStack<CpuBackend<float>>;
template class BasicBidirectionalStack<CpuBackend<double>>;
template void bidirectional_infer<float>(const NetShape&, const float*, const float*, std::int64_t, const float*,
                                         float*, float*, bool, std::uint64_t);
template void bidirectional_infer<double>(const NetShape&, const double*, const double*, std::int64_t, const double*,
                                          double*, double*, bool, std::uint64_t);

}  // namespace membptt
