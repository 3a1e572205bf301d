// Bidirectional stacks (PyTorch's bidirectional=True) on the CPU, run layer by layer.
//
// Layer l's reverse direction at step t depends on every input from t to T, and layer l+1 at step
// t needs both directions of layer l at t: no step of the whole stack can run before the layer
// below has finished its sequence. So the stack runs layer by layer. Each (layer l, direction d)
// is a chain of T steps of a one-layer, one-direction net (chain_shape()) with its own plan, run by
// an Executor in the module form (basic_executor.hpp); chain c = 2l + d, PyTorch's order of
// h_n / c_n. Direction 1 reads its input and writes its output from position T-1 down to 0
// (SequenceLayout::reverse), into columns [R, 2R) of the layer's output rows; both directions add
// their dL/d input into the same rows. Every policy runs each chain's kernels in plain BPTT's order,
// so the gradients are plain BPTT's bits.
//
// Memory (what the budget covers; bidirectional_sizes()):
//   - every chain's plan: its arena and workspace, held from forward() to backward(), as the
//     one-direction module holds its one plan (so no step is run twice more than the plan says);
//   - the outputs of the layers below the top, [T x B x 2R] each, held from forward() to
//     backward(): layer l+1's chains recompute their steps from them; with dropout they are held
//     dropped (the masks of layer l+1's input, drawn once, cells/dropout.hpp);
//   - one sequence more, [T x B x 2R], for dL/d(a layer's output) while the layer above computes
//     it (the next one reuses the storage of the output already consumed).
// The last two are (L-1) + 1 sequences for L >= 2 layers: they grow with T, so the least budget
// that works does too (the error says so). A budget is split over the 2L chains after them: each gets the least its plan needs and a share of
// the rest in proportion to what it needs more for plain BPTT (layer 0's chains and those above
// differ: their inputs are I and 2R wide), so every chain is plain BPTT exactly when the whole is.
// The top layer's output and dL/d(input) are the caller's.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "membptt/backend/buffer.hpp"
#include "membptt/cells/params.hpp"
#include "membptt/exec/budget.hpp"
#include "membptt/exec/executor.hpp"
#include "membptt/exec/basic_executor.hpp"

namespace membptt {

// The one-layer, one-direction net of layer l's chains: input I (l = 0) or 2R, no dropout, a
// one-unit head (unused).
NetShape chain_shape(const NetShape& s, int layer);

// Plans and memory of a bidirectional stack for `length` steps (s.batch sequences).
struct BidirectionalPlans {
  std::vector<std::shared_ptr<const Plan>> layer;  // layer[l]: both directions' plan
  double held_bytes = 0;   // the held sequences and the chains' carry buffers (the fixed part)
  double plain_bytes = 0;  // plain BPTT's memory: held_bytes + every chain's plain BPTT memory
  double budget_bytes = 0; // what the plans were made for (plain_bytes when no budget)
};

// What a device's executor needs for a chain (state sizes: one hidden state, one internal state, its
// workspace); empty: the CPU's, state_sizes(chain, scalar_bytes).
using ChainSizes = std::function<StateSizes(const NetShape& chain)>;

// Memory one stack holds besides its chains' plans: the held sequences, per chain two carries
// (its h_0, and h_n / dh_0 staged between PyTorch's layout and the chain's), and per reverse chain
// one step of dL/dx (added to what the forward chain wrote).
double bidirectional_held_bytes(const NetShape& s, std::int64_t length, std::size_t scalar_bytes);
// The least budget in bytes in which `policy` runs every chain of the stack.
double bidirectional_least_bytes(Policy policy, const NetShape& s, std::int64_t length, std::size_t scalar_bytes,
                                 const ChainSizes& sizes = {});
// Plans every chain in budget_bytes (nullopt: plain BPTT's memory, every chain plain BPTT). Throws
// PlanError naming the budget, the least that works and how much of it grows with T.
BidirectionalPlans plan_bidirectional(std::optional<Policy> policy, const NetShape& s, std::int64_t length,
                                      std::optional<double> budget_bytes, std::size_t scalar_bytes, double beta,
                                      const ChainSizes& sizes = {});
// Plain BPTT's memory for the stack (the base of a budget given as a share).
double bidirectional_plain_bytes(const NetShape& s, std::int64_t length, std::size_t scalar_bytes,
                                 const ChainSizes& sizes = {});
// A budget given as `percent` of plain BPTT's memory, in bytes: that share of the chains' plain
// memory, plus the held sequences and fixed_bytes (held besides the stack, e.g. a head's outputs)
// whole. Plain BPTT holds those sequences too; the plans cannot shrink them, and a share taken of
// everything would leave a two-layer stack's chains at 5% the least that works (quadratic
// recomputation: 38x its plain BPTT time at T = 200, measured). So for one layer a share is about
// that share of plain BPTT's memory, and for two or more layers it is more.
double bidirectional_share_bytes(double percent, const NetShape& s, std::int64_t length, std::size_t scalar_bytes,
                                 double fixed_bytes = 0, const ChainSizes& sizes = {});

// The module form over a bidirectional stack: x [T x B x I] -> y [T x B x 2R]; carries in
// PyTorch's layout, h [2L x B x R] then (LSTM) c [2L x B x H] (carry_elems(s)). Weights: the rnn.*
// part of param_layout(s) (a head after them is ignored); dweights likewise, overwritten. Written
// once over a Backend (the executor's, basic_executor.hpp, with BufferOf, upload and
// dropout_steps: CpuBackend, and the device's, cuda_backend.hpp); every pointer lives where the
// Backend computes.
template <class Backend>
class BasicBidirectionalStack {
 public:
  using T = typename Backend::Scalar;

  BasicBidirectionalStack(const NetShape& s, const BidirectionalPlans& plans);

  const NetShape& shape() const { return s_; }
  std::int64_t length() const { return length_; }
  // Dropout between layers for the passes that follow (s.dropout > 0 and two layers or more).
  void set_dropout(bool on, std::uint64_t seed) {
    drop_on_ = on && s_.dropout > 0 && s_.num_layers > 1;
    Backend::upload(seed_.data(), &seed, 1);
  }

  // As BasicExecutor::forward / backward (the forward keeps x, h0 and what the plans store until
  // backward; each once). Stats: the sums over the chains.
  RunStats forward(const T* weights, const T* x, std::int64_t length, const T* h0, T* y, T* hn);
  RunStats backward(const T* weights, const T* dy, const T* dhn, T* dx, T* dh0, T* dweights);
  bool waiting() const { return waiting_; }

  // Bytes of the chains' arenas, of their workspaces, and held besides (sequences, carries).
  std::size_t arena_bytes() const {
    std::size_t n = 0;
    for (const auto& ch : chains_) n += ch->exec.arena_bytes();
    return n;
  }
  std::size_t workspace_bytes() const {
    std::size_t n = 0;
    for (const auto& ch : chains_) n += ch->exec.workspace_bytes();
    return n;
  }
  std::size_t held_bytes() const {
    std::size_t n = doutput_.size();
    for (const auto& o : outputs_) n += o.size();
    for (const auto& ch : chains_) n += ch->h0.size() + ch->carry.size();
    return n * sizeof(T);
  }
  // The chains' planned forward steps, summed.
  std::int64_t planned_forward_steps() const {
    std::int64_t n = 0;
    for (const auto& ch : chains_) n += ch->exec.plan().forward_steps;
    return n;
  }

 private:
  using Buffer = typename Backend::Buffer;
  using ParamsT = typename Backend::Params;
  struct Chain {  // not movable (a device's Params are not): held by pointer
    Chain(const NetShape& cs, const Plan& plan, std::size_t off, std::size_t n)
        : exec(cs, LossKind::Xent, plan), weights(cs), grads(cs), offset(off), count(n),
          h0(carry_elems(cs)), carry(carry_elems(cs)) {}
    BasicExecutor<Backend> exec;
    ParamsT weights, grads;
    std::size_t offset, count;  // its rnn.* tensors inside the stack's flat weights
    Buffer h0, carry;           // its h_0 (kept for backward) and a staging carry
  };
  void load(const T* weights) {
    for (auto& ch : chains_) Backend::copy(ch->weights.data(), weights + ch->offset, ch->count);
  }
  // Chain c's carry (h [B x R], then LSTM c [B x H]) from / to PyTorch's layout of the stack's.
  void gather_carry(const T* full, int c, T* chain) const;
  void scatter_carry(const T* chain, int c, T* full) const;
  // Multiplies layer l's input rows (the output of layer l-1, [T x B x 2R]) by its dropout masks.
  void drop(T* seq, int layer) const {
    Backend::dropout_steps(seq, length_, s_.batch, 2 * output_width(s_), seed_.data(), layer, s_.dropout);
  }

  NetShape s_;
  std::int64_t length_ = 0;
  std::vector<std::unique_ptr<Chain>> chains_;
  std::vector<Buffer> outputs_;  // layers 0 .. L-2: [T x B x 2R]
  Buffer doutput_;               // L >= 2: dL/d(layer L-2's output)
  typename Backend::template BufferOf<std::uint64_t> seed_{1};  // dropout's seed, where the Backend reads it
  bool drop_on_ = false, waiting_ = false;
};

// The CPU's.
template <class T>
using BidirectionalStack = BasicBidirectionalStack<CpuBackend<T>>;

// Inference through a bidirectional stack: nothing kept (the inner outputs are allocated per call).
template <class T>
void bidirectional_infer(const NetShape& s, const T* weights, const T* x, std::int64_t length, const T* h0, T* y,
                         T* hn, bool dropout_on, std::uint64_t seed);

// Chain c's rnn.* tensors: the first element and the count inside the stack's flat weights.
std::pair<std::size_t, std::size_t> chain_weights(const NetShape& s, int c);

template <class Backend>
BasicBidirectionalStack<Backend>::BasicBidirectionalStack(const NetShape& s, const BidirectionalPlans& plans) : s_(s) {
  validate(s);
  if (!s.bidirectional) throw std::invalid_argument("BidirectionalStack: the shape is not bidirectional");
  if (plans.layer.size() != static_cast<std::size_t>(s.num_layers))
    throw std::invalid_argument("BidirectionalStack: " + std::to_string(plans.layer.size()) + " plans for " +
                                std::to_string(s.num_layers) + " layers");
  length_ = plans.layer[0]->length;
  for (int c = 0; c < 2 * s.num_layers; ++c) {
    const Plan& plan = *plans.layer[static_cast<std::size_t>(c / 2)];
    if (plan.length != length_) throw std::invalid_argument("BidirectionalStack: the plans' lengths differ");
    const auto [offset, count] = chain_weights(s, c);
    chains_.push_back(std::make_unique<Chain>(chain_shape(s, c / 2), plan, offset, count));
  }
  const std::size_t seq =
      static_cast<std::size_t>(length_) * static_cast<std::size_t>(s.batch) * 2 * static_cast<std::size_t>(output_width(s));
  for (int l = 0; l + 1 < s.num_layers; ++l) outputs_.emplace_back(seq);
  if (s.num_layers >= 2) doutput_ = Buffer(seq);
  set_dropout(false, 0);
}

template <class Backend>
void BasicBidirectionalStack<Backend>::gather_carry(const T* full, int c, T* chain) const {
  const std::size_t br = static_cast<std::size_t>(s_.batch) * static_cast<std::size_t>(output_width(s_)),
                    bh = static_cast<std::size_t>(s_.batch) * static_cast<std::size_t>(s_.hidden_size),
                    uc = static_cast<std::size_t>(c);
  Backend::copy(chain, full + uc * br, br);
  if (s_.cell == CellType::Lstm)
    Backend::copy(chain + br, full + 2 * static_cast<std::size_t>(s_.num_layers) * br + uc * bh, bh);
}

template <class Backend>
void BasicBidirectionalStack<Backend>::scatter_carry(const T* chain, int c, T* full) const {
  const std::size_t br = static_cast<std::size_t>(s_.batch) * static_cast<std::size_t>(output_width(s_)),
                    bh = static_cast<std::size_t>(s_.batch) * static_cast<std::size_t>(s_.hidden_size),
                    uc = static_cast<std::size_t>(c);
  Backend::copy(full + uc * br, chain, br);
  if (s_.cell == CellType::Lstm)
    Backend::copy(full + 2 * static_cast<std::size_t>(s_.num_layers) * br + uc * bh, chain + br, bh);
}

template <class Backend>
RunStats BasicBidirectionalStack<Backend>::forward(const T* weights, const T* x, std::int64_t length, const T* h0, T* y,
                                                   T* hn) {
  if (length != length_)
    throw std::invalid_argument("sequence length " + std::to_string(length) + " does not match the plan's " +
                                std::to_string(length_));
  load(weights);
  const int L = s_.num_layers, R = output_width(s_);
  RunStats total;
  for (int l = 0; l < L; ++l) {
    const T* in = l == 0 ? x : outputs_[static_cast<std::size_t>(l - 1)].data();
    T* out = l == L - 1 ? y : outputs_[static_cast<std::size_t>(l)].data();
    for (int d = 0; d < 2; ++d) {
      const int c = 2 * l + d;
      Chain& ch = *chains_[static_cast<std::size_t>(c)];
      if (h0) gather_carry(h0, c, ch.h0.data()); else Backend::zero(ch.h0.data(), ch.h0.size());
      const SequenceLayout layout{d == 1, 2 * R, d * R, d == 1};
      const RunStats st = ch.exec.forward(ch.weights, in, length, ch.h0.data(), out, hn ? ch.carry.data() : nullptr, layout);
      if (hn) scatter_carry(ch.carry.data(), c, hn);
      total.forward_steps += st.forward_steps;
      total.peak_arena_bytes += st.peak_arena_bytes;
    }
    if (l + 1 < L && drop_on_) drop(out, l + 1);  // held as layer l+1 reads it
  }
  waiting_ = true;
  return total;
}

template <class Backend>
RunStats BasicBidirectionalStack<Backend>::backward(const T* weights, const T* dy, const T* dhn, T* dx, T* dh0,
                                                    T* dweights) {
  if (!waiting_) throw std::logic_error("membptt: backward() without a forward() waiting for it");
  load(weights);
  const int L = s_.num_layers;
  RunStats total;
  for (int l = L - 1; l >= 0; --l) {
    // dL/d(layer l's output), and where dL/d(its input) goes: the caller's at the ends; between
    // layers doutput_, then the storage of an output the layer above has consumed.
    const T* dout = l == L - 1 ? dy : l == L - 2 ? doutput_.data() : outputs_[static_cast<std::size_t>(l + 1)].data();
    T* din = l == 0 ? dx : l == L - 1 ? doutput_.data() : outputs_[static_cast<std::size_t>(l)].data();
    for (int d = 0; d < 2; ++d) {
      const int c = 2 * l + d;
      Chain& ch = *chains_[static_cast<std::size_t>(c)];
      if (dhn) gather_carry(dhn, c, ch.carry.data());
      ch.grads.zero();
      const RunStats st = ch.exec.backward(ch.weights, dout, dhn ? ch.carry.data() : nullptr, din,
                                           dh0 ? ch.carry.data() : nullptr, ch.grads);
      if (dh0) scatter_carry(ch.carry.data(), c, dh0);
      if (dweights) Backend::copy(dweights + ch.offset, ch.grads.data(), ch.count);
      total.forward_steps += st.forward_steps;
      total.backward_steps += st.backward_steps;
      total.peak_arena_bytes += st.peak_arena_bytes;
    }
    if (l > 0 && drop_on_) drop(din, l);  // dL/d(undropped output) = dL/d(dropped) * mask / (1 - p)
  }
  waiting_ = false;
  return total;
}

extern template class BasicBidirectionalStack<CpuBackend<float>>;
extern template class BasicBidirectionalStack<CpuBackend<double>>;

}  // namespace membptt
