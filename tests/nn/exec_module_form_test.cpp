// The executor's module form (forward() then backward(), what membptt.torch runs): every policy at
// a grid of budgets gives plain BPTT's outputs, final carry, dL/dx, dL/dh_0 and parameter gradients
// bit for bit, in the plan's forward steps; dL/dx matches central differences in double.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "../support/module_form.hpp"

namespace membptt::test {
namespace {

// One module-form pass on the CPU (module_outcome says what the Outcome holds).
template <class T>
Outcome<T> run_module(const Problem<T>& pr, const Plan& plan, const OutputGrads<T>& g) {
  Executor<T> ex(pr.shape, pr.loss, plan);
  const std::size_t carry = ex.net().carry_elems();
  std::vector<T> y(g.dy.size()), final_carry(carry), dh0(carry), dx(pr.x.size());
  Params<T> grads(pr.shape);
  const RunStats fwd = ex.forward(pr.params, pr.x.data(), pr.T_len, pr.h0.data(), y.data(), final_carry.data());
  EXPECT_EQ(fwd.backward_steps, 0);
  EXPECT_TRUE(ex.waiting());
  const RunStats stats = ex.backward(pr.params, g.dy.data(), g.dfinal.data(), dx.data(), dh0.data(), grads);
  EXPECT_FALSE(ex.waiting());
  Outcome<T> out = module_outcome(stats, g, y, final_carry, dh0, dx, std::vector<T>(grads.data(), grads.data() + grads.size()));
  out.arena_bytes = ex.arena_bytes();
  out.workspace_bytes = ex.workspace_bytes();
  return out;
}

class ModuleForm : public ::testing::TestWithParam<CellType> {};

TEST_P(ModuleForm, EveryPolicyEqualsPlainBpttBitwise) {
  const NetShape shape{GetParam(), 3, 4, 2, 2, 1};
  const Problem<double> pr(shape, LossKind::Xent, 23, 17);
  const OutputGrads<double> g(pr, 5);
  const StateSizes sizes = state_sizes(shape, sizeof(double));
  check_all_policies(pr, sizes, [&](const Problem<double>& p, const Plan& plan) { return run_module(p, plan, g); });
  const Problem<float> pf = pr.as<float>();
  const OutputGrads<float> gf(pf, 5);
  check_all_policies(pf, state_sizes(shape, sizeof(float)),
                     [&](const Problem<float>& p, const Plan& plan) { return run_module(p, plan, gf); });
}

TEST_P(ModuleForm, InputGradientMatchesCentralDifferences) {
  const NetShape shape{GetParam(), 3, 4, 2, 2, 1};
  Problem<double> pr(shape, LossKind::Xent, 9, 3);
  const OutputGrads<double> g(pr, 8);
  const CostModel model{state_sizes(shape, sizeof(double)).alpha(), 2.0};
  const Plan plan = make_plan(Policy::Msm, pr.T_len, least_budget(Policy::Msm, pr.T_len, model) + 1, model);
  const Outcome<double> base = run_module(pr, plan, g);
  const std::size_t carry = carry_elems(shape);
  for (std::size_t i = 0; i < pr.x.size(); i += 5) {
    const double keep = pr.x[i], h = 1e-6;
    pr.x[i] = keep + h;
    const double up = run_module(pr, plan, g).stats.loss;
    pr.x[i] = keep - h;
    const double down = run_module(pr, plan, g).stats.loss;
    pr.x[i] = keep;
    EXPECT_NEAR(base.dh0[carry + i], (up - down) / (2 * h), 1e-7) << "x[" << i << "]";
  }
}

// PyTorch's options in the module form: outputs of width P (proj_size), no biases, relu.
TEST(ModuleFormOptions, ProjNoBiasReluEveryPolicyEqualsPlainBpttBitwise) {
  for (const NetShape shape : {NetShape{CellType::Lstm, 3, 6, 2, 2, 1, true, Nonlinearity::Tanh, 2},  // alpha 5
                               NetShape{CellType::Lstm, 3, 6, 2, 2, 1, false, Nonlinearity::Tanh, 2},
                               NetShape{CellType::Rnn, 3, 4, 2, 2, 1, false, Nonlinearity::Relu}}) {
    const Problem<double> pr(shape, LossKind::Xent, 23, 17);
    const OutputGrads<double> g(pr, 5);
    EXPECT_EQ(g.dy.size(), std::size_t(23) * 2 * output_width(shape));
    check_all_policies(pr, state_sizes(shape, sizeof(double)),
                       [&](const Problem<double>& p, const Plan& plan) { return run_module(p, plan, g); });
  }
}

TEST(ModuleFormErrors, BackwardNeedsAForward) {
  const NetShape shape{CellType::Lstm, 2, 3, 1, 1, 1};
  const CostModel model{4, 2.0};
  Executor<double> ex(shape, LossKind::Xent, make_plan(Policy::Full, 4, plain_bptt_units(4, model), model));
  Params<double> p(shape), grads(shape);
  EXPECT_THROW(ex.backward(p, nullptr, nullptr, nullptr, nullptr, grads), std::logic_error);
  std::vector<double> x(3 * 2), y(3 * 3);
  EXPECT_THROW(ex.forward(p, x.data(), 3, nullptr, y.data(), nullptr), std::invalid_argument);  // plan is for 4 steps
}

INSTANTIATE_TEST_SUITE_P(Cells, ModuleForm, ::testing::Values(CellType::Lstm, CellType::Gru, CellType::Rnn),
                         [](const auto& info) { return std::string(cell_name(info.param)); });

}  // namespace
}  // namespace membptt::test
