// Wide layers (W_hh of 2^20 elements and more, where a step's products no longer fit in cache): the
// gradient matches central finite differences inside a pass and outside one, parameters changed
// in place between passes give a fresh net's bits (nothing derived from them outlives a pass),
// and every policy keeps plain BPTT's bits. A transposed copy of W_hh for the backward was tried
// here and dropped (docs/benchmarks.md, issue 18); these tests guard any such cache.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "membptt/cells/head.hpp"
#include "membptt/cells/recurrent_net.hpp"
#include "membptt/exec/budget.hpp"
#include "policy_sweep.hpp"

namespace membptt {
namespace {

constexpr int kT = 3;

// LSTM with H = 512 (W_hh 2048 x 512; one layer and two) and a tanh RNN with H = 1024
// (1024 x 1024): 2^20 elements of W_hh each. B = 2, I = 3, 3 classes.
NetShape lstm512() { return NetShape{CellType::Lstm, 3, 512, 1, 2, 3}; }
NetShape rnn1024() { return NetShape{CellType::Rnn, 3, 1024, 1, 2, 3}; }
NetShape lstm512x2() { return NetShape{CellType::Lstm, 3, 512, 2, 2, 3}; }  // each layer its own copy

struct Sequence {
  NetShape shape;
  std::vector<double> x, y, carry0;
  explicit Sequence(const NetShape& s) : shape(s) {
    x.resize(static_cast<std::size_t>(kT * s.batch * s.input_size));
    fill_uniform<double>(x, 1.0, 21);
    y.resize(static_cast<std::size_t>(s.batch * s.output_size));
    fill_uniform<double>(y, 1.0, 22);
    carry0.resize(carry_elems(s));
    fill_uniform<double>(carry0, 0.8, 23);
  }
  const double* x_at(int t) const { return x.data() + static_cast<std::size_t>(t * shape.batch * shape.input_size); }

  // MSE of the last step's head, forward only.
  double loss(RecurrentNet<double>& net, Head<double>& head, const Params<double>& p, const std::vector<double>& c0) const {
    std::vector<double> a(c0), b(c0.size());
    for (int t = 0; t < kT; ++t) {
      net.advance(p, x_at(t), a.data(), b.data());
      std::swap(a, b);
    }
    return head.last_mse_loss(p, net.top_hidden(a.data()), y.data());
  }
  // Plain BPTT, inside a pass (begin_pass) or not; returns dL/dcarry0 followed by the gradients.
  std::vector<double> bptt(RecurrentNet<double>& net, Head<double>& head, const Params<double>& p, bool in_pass) const {
    const std::size_t R = net.record_elems(), C = net.carry_elems();
    std::vector<double> rec(R * kT), d(C, 0.0);
    Params<double> g(shape);
    if (in_pass) net.begin_pass(x.data(), kT);
    const double* cur = carry0.data();
    for (int t = 0; t < kT; ++t) {
      net.advance_record(p, x_at(t), cur, rec.data() + R * t);
      cur = net.record_carry_out(rec.data() + R * t);
    }
    for (int t = kT - 1; t >= 0; --t) {
      const double* r = rec.data() + R * t;
      if (t == kT - 1) head.last_mse(p, net.top_hidden(net.record_carry_out(r)), y.data(), net.top_hidden(d.data()), g);
      net.backward(p, x_at(t), r, d.data(), d.data(), g);
    }
    net.flush();
    if (in_pass) net.begin_pass(nullptr, 0);
    d.insert(d.end(), g.data(), g.data() + g.size());
    return d;
  }
};

// A network of shape s with its head, PyTorch's initialisation from `seed`, and a sequence.
struct Wide {
  RecurrentNet<double> net;
  Head<double> head;
  Params<double> p;
  Sequence seq;
  Wide(const NetShape& s, std::uint64_t seed) : net(s), head(s), p(s), seq(s) { init_pytorch_default(p, seed); }
};

std::string name_of(const NetShape& s) { return std::string(cell_name(s.cell)) + " L=" + std::to_string(s.num_layers); }

TEST(CellsWideLayers, GradientsMatchFiniteDifferences) {
  for (const NetShape& s : {lstm512(), rnn1024(), lstm512x2()}) {
    SCOPED_TRACE(name_of(s));
    Wide w(s, 5);
    auto& [net, head, p, seq] = w;
    for (bool in_pass : {true, false}) {  // as the executor runs it, and as a caller without begin_pass
      SCOPED_TRACE(in_pass ? "in a pass" : "outside any pass");
      const std::vector<double> got = seq.bptt(net, head, p, in_pass);
      // dL/dcarry0 (h0: reached through W_hh alone at the first step) at spread coordinates.
      std::vector<double> c(seq.carry0);
      double checked = 0;
      for (std::size_t k = 0; k < c.size(); k += c.size() / 16 + 1) {
        const double h = 1e-4, c0 = c[k];
        auto at = [&](double dv) {
          c[k] = c0 + dv;
          const double l = seq.loss(net, head, p, c);
          c[k] = c0;
          return l;
        };
        const double num = (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h);
        EXPECT_NEAR(got[k], num, 1e-7 * std::max(std::abs(num), 1e-3)) << "carry0[" << k << "]";
        checked = std::max(checked, std::abs(got[k]));
      }
      EXPECT_GT(checked, 1e-6);  // the check saw gradients, not zeros
    }
  }
}

TEST(CellsWideLayers, NothingDerivedFromTheParametersOutlivesAPass) {
  for (const NetShape& s : {lstm512(), rnn1024(), lstm512x2()}) {
    SCOPED_TRACE(name_of(s));
    Wide w(s, 6);
    auto& [net, head, p, seq] = w;
    const std::vector<double> first = seq.bptt(net, head, p, true);
    for (std::size_t k = 0; k < p.size(); ++k) p.data()[k] *= 0.75;  // in place: the same pointer
    for (bool in_pass : {true, false}) {
      SCOPED_TRACE(in_pass ? "a new pass" : "outside any pass");
      RecurrentNet<double> fresh(s);
      const std::vector<double> want = seq.bptt(fresh, head, p, in_pass);
      EXPECT_EQ(seq.bptt(net, head, p, in_pass), want);
      EXPECT_NE(want, first);
    }
  }
}

TEST(CellsWideLayers, EveryPolicyKeepsPlainBpttsBits) {
  const NetShape s{CellType::Lstm, 3, 512, 1, 2, 3};
  test::Problem<double> pr(s, LossKind::Xent, 12, 7);
  test::check_all_policies(pr, state_sizes(s, sizeof(double)), test::run_cpu<double>);
}

}  // namespace
}  // namespace membptt
