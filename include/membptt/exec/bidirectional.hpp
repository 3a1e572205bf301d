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
// that works does too (the error says so). A budget is split evenly over the 2L chains after them.
// The top layer's output and dL/d(input) are the caller's.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "membptt/backend/buffer.hpp"
#include "membptt/cells/params.hpp"
#include "membptt/exec/budget.hpp"
#include "membptt/exec/executor.hpp"

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

// Memory one stack holds besides its chains' plans: the held sequences and per chain two carries
// (its h_0, and h_n / dh_0 staged between PyTorch's layout and the chain's).
double bidirectional_held_bytes(const NetShape& s, std::int64_t length, std::size_t scalar_bytes);
// The least budget in bytes in which `policy` runs every chain of the stack.
double bidirectional_least_bytes(Policy policy, const NetShape& s, std::int64_t length, std::size_t scalar_bytes);
// Plans every chain in budget_bytes (nullopt: plain BPTT's memory, every chain plain BPTT). Throws
// PlanError naming the budget, the least that works and how much of it grows with T.
BidirectionalPlans plan_bidirectional(std::optional<Policy> policy, const NetShape& s, std::int64_t length,
                                      std::optional<double> budget_bytes, std::size_t scalar_bytes, double beta);
// Plain BPTT's memory for the stack (the base of a budget given as a share).
double bidirectional_plain_bytes(const NetShape& s, std::int64_t length, std::size_t scalar_bytes);
// A budget given as `percent` of plain BPTT's memory, in bytes: that share of the chains' plain
// memory, plus the held sequences and fixed_bytes (held besides the stack, e.g. a head's outputs)
// whole. Plain BPTT holds those sequences too; the plans cannot shrink them, and a share taken of
// everything would leave a two-layer stack's chains at 5% the least that works (quadratic
// recomputation: 38x its plain BPTT time at T = 200, measured). So for one layer a share is about
// that share of plain BPTT's memory, and for two or more layers it is more.
double bidirectional_share_bytes(double percent, const NetShape& s, std::int64_t length, std::size_t scalar_bytes,
                                 double fixed_bytes = 0);

// The module form over a bidirectional stack: x [T x B x I] -> y [T x B x 2R]; carries in
// PyTorch's layout, h [2L x B x R] then (LSTM) c [2L x B x H] (carry_elems(s)). Weights: the rnn.*
// part of param_layout(s) (a head after them is ignored); dweights likewise, overwritten.
template <class T>
class BidirectionalStack {
 public:
  BidirectionalStack(const NetShape& s, const BidirectionalPlans& plans);

  const NetShape& shape() const { return s_; }
  std::int64_t length() const { return length_; }
  // Dropout between layers for the passes that follow (s.dropout > 0 and two layers or more).
  void set_dropout(bool on, std::uint64_t seed);

  // As BasicExecutor::forward / backward (the forward keeps x, h0 and what the plans store until
  // backward; each once). Stats: the sums over the chains.
  RunStats forward(const T* weights, const T* x, std::int64_t length, const T* h0, T* y, T* hn);
  RunStats backward(const T* weights, const T* dy, const T* dhn, T* dx, T* dh0, T* dweights);
  bool waiting() const { return waiting_; }

  // Bytes of the chains' arenas, of their workspaces, and held besides (sequences, carries).
  std::size_t arena_bytes() const;
  std::size_t workspace_bytes() const;
  std::size_t held_bytes() const;
  // The chains' planned forward steps, summed.
  std::int64_t planned_forward_steps() const;

 private:
  struct Chain {
    NetShape shape;
    std::unique_ptr<Executor<T>> exec;
    Params<T> weights, grads;
    std::size_t offset = 0, count = 0;  // its rnn.* tensors inside the stack's flat weights
    backend::AlignedBuffer<T> h0, carry;  // its h_0 (kept for backward) and a staging carry
  };
  void load(const T* weights);
  // Multiplies layer l's input rows (the output of layer l-1, [T x B x 2R]) by its dropout masks.
  void drop(T* seq, int layer) const;

  NetShape s_;
  std::int64_t length_ = 0;
  std::vector<Chain> chains_;
  std::vector<backend::AlignedBuffer<T>> outputs_;  // layers 0 .. L-2: [T x B x 2R]
  backend::AlignedBuffer<T> doutput_;               // L >= 2: dL/d(layer L-2's output)
  bool drop_on_ = false, waiting_ = false;
  std::uint64_t seed_ = 0;
};

// Inference through a bidirectional stack: nothing kept (the inner outputs are allocated per call).
template <class T>
void bidirectional_infer(const NetShape& s, const T* weights, const T* x, std::int64_t length, const T* h0, T* y,
                         T* hn, bool dropout_on, std::uint64_t seed);

extern template class BidirectionalStack<float>;
extern template class BidirectionalStack<double>;

}  // namespace membptt
