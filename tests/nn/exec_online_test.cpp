// The executor's online mode (exec/online_executor.hpp): steps pushed one at a time, the length
// known only at finish(). Outputs, final carry, dL/dx, dL/dh_0 and parameter gradients equal plain
// BPTT's (the module form's Policy::Full) bit for bit, for every cell, both precisions, lengths
// 1..130 and budgets from the least up; forward steps are the online policy's cost; bytes held
// never pass the budget; push() allocates nothing.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "../support/module_form.hpp"
#include "membptt/exec/online_executor.hpp"

// Counts operator new while a test asks (push() must allocate nothing).
namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocs{0};
}  // namespace
void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
// The nothrow form too (std::stable_sort's buffer, for one), so that every plain delete below frees
// what malloc gave: left to the runtime, AddressSanitizer sees its new paired with our free.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
// (GCC cannot see that this operator new is malloc's: the pairing is ours and right.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace membptt::test {
namespace {

template <class T>
using OnlineCpu = OnlineExecutor<CpuBackend<T>>;

template <class T>
struct OnlineOutcome {
  Outcome<T> out;
  std::int64_t planned = 0;
  std::size_t peak_total = 0;  // workspace + the most the arena held
  std::size_t arena_and_workspace = 0;
  long push_allocs = 0;
};

template <class T>
OnlineOutcome<T> run_online(OnlineCpu<T>& ex, const Problem<T>& pr, const OutputGrads<T>& g) {
  const std::size_t carry = ex.net().carry_elems();
  const std::size_t xs = static_cast<std::size_t>(pr.shape.batch * pr.shape.input_size);
  const std::size_t ys = static_cast<std::size_t>(pr.shape.batch * output_width(pr.shape));
  std::vector<T> y(g.dy.size()), final_carry(carry), dh0(carry), dx(pr.x.size());
  Params<T> grads(pr.shape);
  OnlineOutcome<T> r;
  ex.begin(pr.h0.data());
  g_allocs = 0;
  g_counting = true;
  for (std::int64_t t = 1; t < pr.T_len; ++t)
    ex.push(pr.params, pr.x.data() + static_cast<std::size_t>(t - 1) * xs, y.data() + static_cast<std::size_t>(t - 1) * ys);
  g_counting = false;
  r.push_allocs = g_allocs;
  const std::size_t last = static_cast<std::size_t>(pr.T_len - 1);
  const RunStats fwd = ex.finish(pr.params, pr.x.data() + last * xs, y.data() + last * ys, final_carry.data());
  EXPECT_EQ(fwd.backward_steps, 0);
  EXPECT_TRUE(ex.waiting());
  const RunStats stats = ex.backward(pr.params, g.dy.data(), g.dfinal.data(), dx.data(), dh0.data(), grads);
  EXPECT_FALSE(ex.waiting());
  r.out = module_outcome(stats, g, y, final_carry, dh0, dx, std::vector<T>(grads.data(), grads.data() + grads.size()));
  r.planned = ex.schedule().cost();
  r.peak_total = stats.peak_arena_bytes + ex.workspace_bytes();
  r.arena_and_workspace = ex.arena_bytes() + ex.workspace_bytes();
  return r;
}

template <class T>
Outcome<T> run_plain(const Problem<T>& pr, const OutputGrads<T>& g) {
  const CostModel model{state_sizes(pr.shape, sizeof(T)).alpha(), 2.0};
  Executor<T> ex(pr.shape, pr.loss, make_plan(Policy::Full, pr.T_len, plain_bptt_units(pr.T_len, model), model));
  const std::size_t carry = ex.net().carry_elems();
  std::vector<T> y(g.dy.size()), final_carry(carry), dh0(carry), dx(pr.x.size());
  Params<T> grads(pr.shape);
  ex.forward(pr.params, pr.x.data(), pr.T_len, pr.h0.data(), y.data(), final_carry.data());
  const RunStats stats = ex.backward(pr.params, g.dy.data(), g.dfinal.data(), dx.data(), dh0.data(), grads);
  return module_outcome(stats, g, y, final_carry, dh0, dx, std::vector<T>(grads.data(), grads.data() + grads.size()));
}

template <class T>
void check_lengths(const NetShape& shape) {
  const StateSizes sizes = state_sizes(shape, sizeof(T));
  for (std::int64_t len : {1, 2, 3, 7, 20, 57, 130}) {
    const Problem<T> pr = Problem<double>(shape, LossKind::Xent, len, 41 + static_cast<std::uint64_t>(len)).template as<T>();
    const OutputGrads<T> g(pr, 7);
    const Outcome<T> plain = run_plain(pr, g);
    // From the least (workspace + one record) to room for every state.
    OnlineCpu<T> probe(shape, 1e12, 1);
    const double least = static_cast<double>(probe.workspace_bytes() + sizes.internal_bytes);
    for (double carries : {0.0, 1.0, 2.0, 3.0, 5.0, 9.0, 2.0 * static_cast<double>(len)}) {
      const double budget = least + carries * static_cast<double>(sizes.hidden_bytes);
      SCOPED_TRACE("T=" + std::to_string(len) + " budget " + std::to_string(budget));
      OnlineCpu<T> ex(shape, budget, 200);
      const OnlineOutcome<T> got = run_online(ex, pr, g);
      EXPECT_EQ(got.out.stats.forward_steps, got.planned);
      EXPECT_EQ(got.planned, online_cost(len, ex.schedule().budget_units(), ex.schedule().alpha()));
      EXPECT_EQ(got.out.stats.backward_steps, len);
      EXPECT_LE(static_cast<double>(got.peak_total), budget);
      EXPECT_LE(static_cast<double>(got.arena_and_workspace), budget);
      EXPECT_EQ(got.push_allocs, 0);
      EXPECT_TRUE(same_bits(got.out.grads, plain.grads));
      EXPECT_TRUE(same_bits(got.out.dh0, plain.dh0));            // dL/dh_0 then dL/dx
      EXPECT_TRUE(same_bits(got.out.final_carry, plain.final_carry));  // outputs then final carry
      // The same executor again (begin() starts over): the same bits.
      const OnlineOutcome<T> again = run_online(ex, pr, g);
      EXPECT_TRUE(same_bits(again.out.grads, plain.grads));
    }
  }
}

class Online : public ::testing::TestWithParam<CellType> {};

TEST_P(Online, EqualsPlainBpttBitwise) {
  const NetShape shape{GetParam(), 3, 4, 2, 2, 1};
  check_lengths<double>(shape);
  check_lengths<float>(shape);
}

INSTANTIATE_TEST_SUITE_P(Cells, Online, ::testing::Values(CellType::Lstm, CellType::Gru, CellType::Rnn),
                         [](const auto& info) { return std::string(cell_name(info.param)); });

// PyTorch's options: outputs of width P (proj_size), no biases, relu.
TEST(OnlineOptions, ProjNoBiasReluEqualPlainBpttBitwise) {
  for (const NetShape shape : {NetShape{CellType::Lstm, 3, 6, 2, 2, 1, true, Nonlinearity::Tanh, 2},
                               NetShape{CellType::Lstm, 3, 6, 2, 2, 1, false, Nonlinearity::Tanh, 2},
                               NetShape{CellType::Rnn, 3, 4, 2, 2, 1, false, Nonlinearity::Relu}})
    check_lengths<double>(shape);
}

TEST(OnlineErrors, OneLineEach) {
  const NetShape shape{CellType::Lstm, 2, 3, 1, 1, 1};
  try {
    OnlineCpu<double> ex(shape, 100, 10);
    FAIL();
  } catch (const PlanError& e) {
    EXPECT_NE(std::string(e.what()).find("memory budget 100 bytes is below the least in which online checkpointing runs"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(OnlineCpu<double>(shape, 1e6, 0), std::invalid_argument);
  OnlineCpu<double> ex(shape, 1e6, 2);
  Params<double> p(shape), grads(shape);
  std::vector<double> x(2), y(3);
  EXPECT_THROW(ex.backward(p, nullptr, nullptr, nullptr, nullptr, grads), std::logic_error);
  ex.push(p, x.data(), y.data());
  ex.push(p, x.data(), y.data());
  EXPECT_THROW(ex.push(p, x.data(), y.data()), std::length_error);  // a third step: past max_length
}

}  // namespace
}  // namespace membptt::test
