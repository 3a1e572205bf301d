// Shared by the tests of the executor's module form (forward() then backward()) on the CPU
// (tests/nn) and on a device backend (tests/cuda): fixed output gradients, the scalar they stand
// for, and the packing of one pass into an Outcome that check_all_policies compares bit for bit.
#pragma once
#include <random>
#include <vector>

#include "policy_sweep.hpp"

namespace membptt::test {

// Output gradients for a problem: fixed random dL/dy [T x B x R] and dL/d(final carry).
template <class T>
struct OutputGrads {
  std::vector<T> dy, dfinal;
  OutputGrads(const Problem<T>& pr, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(-1, 1);
    dy.resize(static_cast<std::size_t>(pr.T_len * pr.shape.batch * output_width(pr.shape)));
    for (auto& v : dy) v = static_cast<T>(u(rng));
    dfinal.resize(carry_elems(pr.shape));
    for (auto& v : dfinal) v = static_cast<T>(u(rng));
  }
};

// One module-form pass as an Outcome: loss = L = sum(dy * y) + sum(dfinal * final carry) (the
// scalar the output gradients stand for), final_carry = the outputs then the final carry, dh0 =
// dL/dh_0 then dL/dx.
template <class T>
Outcome<T> module_outcome(const RunStats& stats, const OutputGrads<T>& g, const std::vector<T>& y,
                          const std::vector<T>& final_carry, const std::vector<T>& dh0, const std::vector<T>& dx,
                          std::vector<T> grads) {
  Outcome<T> out;
  out.stats = stats;
  double l = 0;
  for (std::size_t i = 0; i < y.size(); ++i) l += static_cast<double>(g.dy[i]) * static_cast<double>(y[i]);
  for (std::size_t i = 0; i < final_carry.size(); ++i)
    l += static_cast<double>(g.dfinal[i]) * static_cast<double>(final_carry[i]);
  out.stats.loss = l;
  out.grads = std::move(grads);
  out.final_carry = y;
  out.final_carry.insert(out.final_carry.end(), final_carry.begin(), final_carry.end());
  out.dh0 = dh0;
  out.dh0.insert(out.dh0.end(), dx.begin(), dx.end());
  return out;
}

}  // namespace membptt::test
