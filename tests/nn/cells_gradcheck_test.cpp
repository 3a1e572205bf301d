// Central finite-difference checks (float64, 5-point stencil) of every parameter of every named tensor and of the
// initial carry (h0, c0), for LSTM / GRU / RNN (tanh and relu), with and without biases, 1 and 2
// layers, both heads, through a plain BPTT
// loop written here: advance_record all T steps, then backward T..1 calling the head at each step.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "membptt/cells/head.hpp"
#include "membptt/cells/params.hpp"
#include "membptt/cells/recurrent_net.hpp"

namespace membptt {
namespace {

enum class Loss { Xent, Mse };

struct Case {
  CellType cell;
  int layers;
  Loss loss;
  bool bias = true;
  Nonlinearity nonlinearity = Nonlinearity::Tanh;
  int proj = 0;  // LSTM proj_size
};

std::string case_name(const testing::TestParamInfo<Case>& info) {
  return std::string(cell_name(info.param.cell)) + "_L" + std::to_string(info.param.layers) +
         (info.param.loss == Loss::Xent ? "_xent" : "_mse") + (info.param.bias ? "" : "_nobias") +
         (info.param.nonlinearity == Nonlinearity::Relu ? "_relu" : "") +
         (info.param.proj ? "_proj" + std::to_string(info.param.proj) : "");
}

constexpr int kT = 5;

class GradCheck : public testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const Case c = GetParam();
    shape = NetShape{c.cell, 4, 5, c.layers, 3, 3, c.bias, c.nonlinearity, c.proj};
    net = std::make_unique<RecurrentNet<double>>(shape);
    head = std::make_unique<Head<double>>(shape);
    params = std::make_unique<Params<double>>(shape);
    init_pytorch_default(*params, 11);
    const std::size_t B = 3, I = 4, O = 3;
    x.resize(kT * B * I);
    fill_uniform<double>(x, 1.0, 12);
    carry0.resize(net->carry_elems());
    fill_uniform<double>(carry0, 0.8, 13);
    y.resize(B * O);
    fill_uniform<double>(y, 1.0, 14);
    targets.resize(kT * B);
    for (std::size_t k = 0; k < targets.size(); ++k) targets[k] = static_cast<std::int64_t>((k * 7 + 1) % O);
  }

  const double* x_at(int t) const { return x.data() + static_cast<std::size_t>(t) * 3 * 4; }

  // Loss with forward-only calls (advance, *_loss).
  double loss(const Params<double>& p, const std::vector<double>& c0) {
    std::vector<double> a(c0), b(c0.size());
    double l = 0;
    const double scale = 1.0 / (kT * shape.batch);
    for (int t = 0; t < kT; ++t) {
      net->advance(p, x_at(t), a.data(), b.data());
      std::swap(a, b);
      if (GetParam().loss == Loss::Xent)
        l += head->step_xent_loss(p, net->top_hidden(a.data()), targets.data() + t * shape.batch, scale);
    }
    if (GetParam().loss == Loss::Mse) l = head->last_mse_loss(p, net->top_hidden(a.data()), y.data());
    return l;
  }

  // Plain BPTT: returns the loss, fills grads and dc0 = dL/dcarry0.
  double bptt(const Params<double>& p, Params<double>& grads, std::vector<double>& dc0,
              bool in_place) {
    const std::size_t R = net->record_elems(), C = net->carry_elems();
    std::vector<double> rec(R * kT);
    const double* cur = carry0.data();
    for (int t = 0; t < kT; ++t) {
      net->advance_record(p, x_at(t), cur, rec.data() + R * t);
      cur = net->record_carry_out(rec.data() + R * t);
    }
    grads.zero();
    std::vector<double> dA(C, 0.0), dB(C, 0.0);
    double l = 0;
    const double scale = 1.0 / (kT * shape.batch);
    for (int t = kT - 1; t >= 0; --t) {
      const double* r = rec.data() + R * t;
      const double* htop = net->top_hidden(net->record_carry_out(r));
      if (GetParam().loss == Loss::Xent)
        l += head->step_xent(p, htop, targets.data() + t * shape.batch, scale,
                             net->top_hidden(dA.data()), grads);
      else if (t == kT - 1)
        l = head->last_mse(p, htop, y.data(), net->top_hidden(dA.data()), grads);
      if (in_place) {
        net->backward(p, x_at(t), r, dA.data(), dA.data(), grads);
      } else {
        net->backward(p, x_at(t), r, dA.data(), dB.data(), grads);
        std::swap(dA, dB);
      }
    }
    dc0 = dA;
    return l;
  }

  NetShape shape;
  std::unique_ptr<RecurrentNet<double>> net;
  std::unique_ptr<Head<double>> head;
  std::unique_ptr<Params<double>> params;
  std::vector<double> x, carry0, y;
  std::vector<std::int64_t> targets;
};

// |a - n| <= 1e-6 * max(|a|, |n|) + 1e-11: relative error < 1e-6 wherever the gradient is not ~0
// (the 1e-11 floor is above the 5-point central difference's own error, ~1e-13 here).
void expect_close(double analytic, double numeric, const std::string& what, double& worst) {
  const double err = std::abs(analytic - numeric);
  const double mag = std::max(std::abs(analytic), std::abs(numeric));
  if (mag > 1e-7) worst = std::max(worst, err / mag);
  EXPECT_LE(err, 1e-6 * mag + 1e-11) << what << ": analytic " << analytic << " numeric " << numeric;
}

// d/dv f(v) by the 5-point central difference (error O(h^4) + roundoff ~1e-16 / h).
template <class F>
double derivative(F&& f, double& v) {
  const double h = 1e-3, v0 = v;
  auto at = [&](double d) {
    v = v0 + d;
    const double r = f();
    v = v0;
    return r;
  };
  return (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h);
}

TEST_P(GradCheck, EveryParameterAndInitialCarry) {
  Params<double> grads(shape);
  std::vector<double> dc0;
  const double l0 = bptt(*params, grads, dc0, false);
  EXPECT_NEAR(l0, loss(*params, carry0), 1e-12) << "BPTT loss differs from the forward-only loss";

  double worst = 0;
  Params<double> p(*params);
  for (const ParamView& v : p.views()) {
    // All entries of small tensors; at most 60 spread over a larger one.
    const std::size_t n = v.size, stride = n <= 60 ? 1 : n / 60 + 1;
    bool nonzero = false;
    for (std::size_t k = 0; k < n; k += stride) {
      const double num = derivative([&] { return loss(p, carry0); }, p.data()[v.offset + k]);
      const double ana = grads.data()[v.offset + k];
      nonzero |= ana != 0.0;
      expect_close(ana, num, v.name + "[" + std::to_string(k) + "]", worst);
    }
    EXPECT_TRUE(nonzero) << v.name << " got no gradient at all";
  }
  std::vector<double> c(carry0);
  for (std::size_t k = 0; k < c.size(); ++k) {
    const double num = derivative([&] { return loss(*params, c); }, c[k]);
    expect_close(dc0[k], num, "carry0[" + std::to_string(k) + "]", worst);
  }
  EXPECT_LT(worst, 1e-6);
  RecordProperty("worst_relative_error", std::to_string(worst));
  std::printf("worst relative error (|grad| > 1e-7): %.3g\n", worst);
}

TEST_P(GradCheck, InPlaceBackwardMatchesBitwise) {
  Params<double> g1(shape), g2(shape);
  std::vector<double> d1, d2;
  bptt(*params, g1, d1, false);
  bptt(*params, g2, d2, true);
  EXPECT_TRUE(std::equal(g1.all().begin(), g1.all().end(), g2.all().begin()));
  EXPECT_EQ(d1, d2);
}

INSTANTIATE_TEST_SUITE_P(Cells, GradCheck,
                         testing::Values(Case{CellType::Lstm, 1, Loss::Xent},
                                         Case{CellType::Lstm, 2, Loss::Xent},
                                         Case{CellType::Lstm, 1, Loss::Mse},
                                         Case{CellType::Lstm, 2, Loss::Mse},
                                         Case{CellType::Gru, 1, Loss::Xent},
                                         Case{CellType::Gru, 2, Loss::Xent},
                                         Case{CellType::Gru, 1, Loss::Mse},
                                         Case{CellType::Gru, 2, Loss::Mse},
                                         Case{CellType::Rnn, 1, Loss::Xent},
                                         Case{CellType::Rnn, 2, Loss::Xent},
                                         Case{CellType::Rnn, 1, Loss::Mse},
                                         Case{CellType::Rnn, 2, Loss::Mse},
                                         Case{CellType::Lstm, 2, Loss::Xent, false},
                                         Case{CellType::Gru, 2, Loss::Mse, false},
                                         Case{CellType::Rnn, 2, Loss::Xent, false},
                                         Case{CellType::Rnn, 1, Loss::Xent, true, Nonlinearity::Relu},
                                         Case{CellType::Rnn, 2, Loss::Xent, true, Nonlinearity::Relu},
                                         Case{CellType::Rnn, 2, Loss::Mse, true, Nonlinearity::Relu},
                                         Case{CellType::Rnn, 2, Loss::Xent, false, Nonlinearity::Relu},
                                         Case{CellType::Lstm, 1, Loss::Xent, true, Nonlinearity::Tanh, 3},
                                         Case{CellType::Lstm, 2, Loss::Xent, true, Nonlinearity::Tanh, 3},
                                         Case{CellType::Lstm, 2, Loss::Mse, false, Nonlinearity::Tanh, 2}),
                         case_name);

}  // namespace
}  // namespace membptt
