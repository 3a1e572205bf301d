// Cells: parameter layout, forward equations against a naive reference written from PyTorch's
// equations, float vs double, advance vs advance_record bitwise equality, in-place calls,
// run-to-run determinism of gradients, heads and their argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "membptt/backend/math.hpp"
#include "membptt/cells/head.hpp"
#include "membptt/cells/params.hpp"
#include "membptt/cells/recurrent_net.hpp"

namespace membptt {
namespace {

const CellType kCells[] = {CellType::Lstm, CellType::Gru, CellType::Rnn};

template <class T>
bool same_bits(const T* a, const T* b, std::size_t n) {
  return std::memcmp(a, b, n * sizeof(T)) == 0;
}

// ---------------------------------------------------------------------------------------------
// Layout and sizes

TEST(CellsLayout, NamesShapesOffsetsFollowPyTorchStateDict) {
  const NetShape s{CellType::Lstm, 4, 5, 2, 3, 7};
  Params<float> p(s);
  const auto& v = p.views();
  ASSERT_EQ(v.size(), 10u);
  const char* names[] = {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
                         "rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_ih_l1", "rnn.bias_hh_l1",
                         "head.weight",      "head.bias"};
  const std::vector<std::vector<std::int64_t>> shapes = {{20, 4}, {20, 5}, {20}, {20}, {20, 5},
                                                         {20, 5}, {20},    {20}, {7, 5}, {7}};
  std::size_t off = 0;
  for (std::size_t k = 0; k < v.size(); ++k) {
    EXPECT_EQ(v[k].name, names[k]);
    EXPECT_EQ(v[k].shape, shapes[k]) << names[k];
    EXPECT_EQ(v[k].offset, off) << names[k];
    off += v[k].size;
  }
  EXPECT_EQ(p.size(), off);
  EXPECT_EQ(param_count(s), off);
  EXPECT_EQ(p.view("head.bias").size(), 7u);
  EXPECT_EQ(p.view("head.bias").data(), p.data() + off - 7);
  EXPECT_EQ(p.find("rnn.weight_ih_l2"), nullptr);
  EXPECT_THROW(p.view("nope"), std::out_of_range);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p.data()) % 64, 0u);

  const NetShape g{CellType::Gru, 3, 6, 1, 2, 1};
  EXPECT_EQ(Params<double>(g).info("rnn.weight_hh_l0").shape, (std::vector<std::int64_t>{18, 6}));
  const NetShape r{CellType::Rnn, 3, 6, 1, 2, 1};
  EXPECT_EQ(Params<double>(r).info("rnn.weight_ih_l0").shape, (std::vector<std::int64_t>{6, 3}));
}

// bias=False: the same names and order without the rnn.bias_* views; relu only for the RNN.
TEST(CellsLayout, WithoutBiasesAndReluValidation) {
  const NetShape s{CellType::Gru, 4, 5, 2, 3, 7, false};
  Params<float> p(s);
  const auto& v = p.views();
  ASSERT_EQ(v.size(), 6u);
  const char* names[] = {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l1", "rnn.weight_hh_l1",
                         "head.weight", "head.bias"};
  std::size_t off = 0;
  for (std::size_t k = 0; k < v.size(); ++k) {
    EXPECT_EQ(v[k].name, names[k]);
    EXPECT_EQ(v[k].offset, off) << names[k];
    off += v[k].size;
  }
  EXPECT_EQ(param_count(s), 15u * 4 + 15u * 5 + 15u * 5 + 15u * 5 + 7u * 5 + 7u);
  EXPECT_EQ(p.find("rnn.bias_ih_l0"), nullptr);
  NetShape lstm_relu{CellType::Lstm, 4, 5, 1, 3, 7};
  lstm_relu.nonlinearity = Nonlinearity::Relu;
  try {
    validate(lstm_relu);
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "nonlinearity relu is not allowed for lstm: only the plain rnn cell takes relu");
  }
  lstm_relu.cell = CellType::Rnn;
  EXPECT_NO_THROW(validate(lstm_relu));
  EXPECT_EQ(parse_nonlinearity("relu"), Nonlinearity::Relu);
  EXPECT_THROW(parse_nonlinearity("gelu"), std::invalid_argument);
}

TEST(CellsLayout, CarryAndRecordSizes) {
  for (CellType c : kCells) {
    const NetShape s{c, 3, 5, 2, 4, 2};
    const std::size_t LBH = 2 * 4 * 5;
    RecurrentNet<float> net(s);
    const std::size_t carry = c == CellType::Lstm ? 2 * LBH : LBH;
    const std::size_t record = c == CellType::Lstm ? 8 * LBH : c == CellType::Gru ? 6 * LBH : 2 * LBH;
    EXPECT_EQ(net.carry_elems(), carry) << cell_name(c);
    EXPECT_EQ(net.record_elems(), record) << cell_name(c);
    EXPECT_EQ(carry_elems(s), carry);
    EXPECT_EQ(record_elems(s), record);
    std::vector<float> buf(carry);
    EXPECT_EQ(net.top_hidden(static_cast<const float*>(buf.data())), buf.data() + 4 * 5);
  }
}

TEST(CellsLayout, InvalidShapeAndMismatchedParamsThrow) {
  EXPECT_THROW(RecurrentNet<float>(NetShape{CellType::Lstm, 0, 5, 1, 1, 1}), std::invalid_argument);
  EXPECT_THROW(Params<float>(NetShape{CellType::Gru, 2, 5, 0, 1, 1}), std::invalid_argument);
  EXPECT_THROW(parse_cell("transformer"), std::invalid_argument);
  EXPECT_EQ(parse_cell("gru"), CellType::Gru);
  RecurrentNet<float> net(NetShape{CellType::Lstm, 2, 3, 1, 1, 1});
  Params<float> other(NetShape{CellType::Lstm, 2, 4, 1, 1, 1});
  std::vector<float> x(2), c(net.carry_elems()), c2(net.carry_elems());
  EXPECT_THROW(net.advance(other, x.data(), c.data(), c2.data()), std::invalid_argument);
}

TEST(CellsInit, PyTorchDefaultBoundsAndReproducible) {
  const NetShape s{CellType::Gru, 6, 16, 2, 2, 5};
  Params<double> a(s), b(s);
  init_pytorch_default(a, 42);
  init_pytorch_default(b, 42);
  EXPECT_TRUE(same_bits(a.data(), b.data(), a.size()));
  const double bound = 1.0 / std::sqrt(16.0);
  double lo = 1, hi = -1;
  for (double w : a.all()) {
    lo = std::min(lo, w);
    hi = std::max(hi, w);
  }
  EXPECT_GE(lo, -bound);
  EXPECT_LE(hi, bound);
  EXPECT_LT(lo, -0.9 * bound);  // actually spread over the range
  EXPECT_GT(hi, 0.9 * bound);
  init_pytorch_default(b, 43);
  EXPECT_FALSE(same_bits(a.data(), b.data(), a.size()));
}

TEST(CellsMath, FastFloatActivationsAreAccurate) {
  double es = 0, et = 0;
  for (double x = -30; x <= 30; x += 1.0 / 1024) {
    const float xf = static_cast<float>(x);
    es = std::max(es, std::abs(backend::act_sigmoid(xf) - 1.0 / (1.0 + std::exp(-double(xf)))));
    et = std::max(et, std::abs(backend::act_tanh(xf) - std::tanh(double(xf))));
  }
  EXPECT_LT(es, 2e-7);
  EXPECT_LT(et, 2e-7);
  EXPECT_EQ(backend::act_tanh(1000.0f), 1.0f);
  EXPECT_EQ(backend::act_tanh(-1000.0f), -1.0f);
  EXPECT_EQ(backend::act_sigmoid(1000.0f), 1.0f);
  EXPECT_LT(backend::act_sigmoid(-1000.0f), 1e-30f);
  EXPECT_TRUE(std::isnan(backend::act_tanh(std::nanf(""))));
}

// ---------------------------------------------------------------------------------------------
// Forward against a naive reference of PyTorch's equations (double).

double sig(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// One step of the whole stack, computed entry by entry from the named views.
std::vector<double> reference_step(const NetShape& s, const Params<double>& p, const double* x,
                                   const std::vector<double>& carry) {
  const int B = s.batch, H = s.hidden_size, L = s.num_layers, R = output_width(s);
  const std::size_t LBH = std::size_t(L) * B * R;  // where c starts
  std::vector<double> out(carry.size());
  std::vector<double> in(x, x + std::size_t(B) * s.input_size);
  for (int l = 0; l < L; ++l) {
    const int I = l == 0 ? s.input_size : R;
    const std::string sfx = "_l" + std::to_string(l);
    const double* Wi = p.view("rnn.weight_ih" + sfx).data();
    const double* Wh = p.view("rnn.weight_hh" + sfx).data();
    const double* bi = s.bias ? p.view("rnn.bias_ih" + sfx).data() : nullptr;
    const double* bh = s.bias ? p.view("rnn.bias_hh" + sfx).data() : nullptr;
    // gate row r of the input part and of the hidden part, for batch row b
    auto xi = [&](int b, int r) {
      double a = bi ? bi[r] : 0.0;
      for (int k = 0; k < I; ++k) a += Wi[std::size_t(r) * I + k] * in[std::size_t(b) * I + k];
      return a;
    };
    auto hh = [&](int b, int r) {
      double a = bh ? bh[r] : 0.0;
      for (int k = 0; k < R; ++k)
        a += Wh[std::size_t(r) * R + k] * carry[std::size_t(l) * B * R + std::size_t(b) * R + k];
      return a;
    };
    std::vector<double> hnew(std::size_t(B) * H), m(std::size_t(B) * H);
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < H; ++j) {
        const std::size_t at = std::size_t(l) * B * H + std::size_t(b) * H + j;  // c's index (and h's, R = H)
        const double h = s.cell == CellType::Lstm ? 0.0 : carry[at];
        double hn = 0;
        if (s.cell == CellType::Lstm) {
          const double i = sig(xi(b, j) + hh(b, j)), f = sig(xi(b, H + j) + hh(b, H + j));
          const double g = std::tanh(xi(b, 2 * H + j) + hh(b, 2 * H + j));
          const double o = sig(xi(b, 3 * H + j) + hh(b, 3 * H + j));
          const double c = f * carry[LBH + at] + i * g;
          out[LBH + at] = c;
          hn = o * std::tanh(c);
          m[std::size_t(b) * H + j] = hn;
          if (R != H) continue;  // h = W_hr m, below
        } else if (s.cell == CellType::Gru) {
          const double r = sig(xi(b, j) + hh(b, j)), z = sig(xi(b, H + j) + hh(b, H + j));
          const double n = std::tanh(xi(b, 2 * H + j) + r * hh(b, 2 * H + j));
          hn = (1 - z) * n + z * h;
        } else if (s.nonlinearity == Nonlinearity::Relu) {
          hn = std::max(0.0, xi(b, j) + hh(b, j));
        } else {
          hn = std::tanh(xi(b, j) + hh(b, j));
        }
        out[at] = hn;
        hnew[std::size_t(b) * H + j] = hn;
      }
    if (R != H) {  // projections: h = m W_hr^T, [B x P]
      const double* Wr = p.view("rnn.weight_hr" + sfx).data();
      hnew.assign(std::size_t(B) * R, 0.0);
      for (int b = 0; b < B; ++b)
        for (int q = 0; q < R; ++q) {
          double a = 0;
          for (int k = 0; k < H; ++k) a += Wr[std::size_t(q) * H + k] * m[std::size_t(b) * H + k];
          hnew[std::size_t(b) * R + q] = a;
          out[std::size_t(l) * B * R + std::size_t(b) * R + q] = a;
        }
    }
    in = hnew;
  }
  return out;
}

// bias=False for every cell and the relu RNN (with and without biases) against the same reference.
TEST(CellsForward, NoBiasAndReluMatchReferenceEquations) {
  struct Variant {
    CellType c;
    bool bias;
    Nonlinearity nl;
    int proj = 0;
  };
  for (const Variant v : {Variant{CellType::Lstm, false, Nonlinearity::Tanh}, Variant{CellType::Gru, false, Nonlinearity::Tanh},
                          Variant{CellType::Rnn, false, Nonlinearity::Tanh}, Variant{CellType::Rnn, true, Nonlinearity::Relu},
                          Variant{CellType::Rnn, false, Nonlinearity::Relu}, Variant{CellType::Lstm, true, Nonlinearity::Tanh, 3},
                          Variant{CellType::Lstm, false, Nonlinearity::Tanh, 1}}) {
    const NetShape s{v.c, 3, 4, 2, 2, 2, v.bias, v.nl, v.proj};
    RecurrentNet<double> net(s);
    Params<double> p(s);
    fill_uniform<double>(p.all(), 0.7, 5);
    std::vector<double> x(3 * 6), carry(net.carry_elems()), next(net.carry_elems());
    fill_uniform<double>(x, 1.5, 6);
    fill_uniform<double>(carry, 0.9, 7);
    if (v.proj) {
      EXPECT_EQ(net.carry_elems(), std::size_t(2) * 2 * (v.proj + 4));
      EXPECT_EQ(p.info("rnn.weight_hr_l1").shape, (std::vector<std::int64_t>{v.proj, 4}));
      EXPECT_EQ(p.info("rnn.weight_hh_l1").shape, (std::vector<std::int64_t>{16, v.proj}));
      EXPECT_EQ(p.info("head.weight").shape, (std::vector<std::int64_t>{2, v.proj}));
    }
    int zeros = 0;
    for (int t = 0; t < 3; ++t) {
      const auto ref = reference_step(s, p, x.data() + t * 6, carry);
      net.advance(p, x.data() + t * 6, carry.data(), next.data());
      for (std::size_t k = 0; k < ref.size(); ++k) {
        ASSERT_NEAR(next[k], ref[k], 1e-13) << cell_name(v.c) << " bias " << v.bias << " t" << t << " k" << k;
        zeros += next[k] == 0.0;
      }
      carry = next;
    }
    if (v.nl == Nonlinearity::Relu) {
      EXPECT_GT(zeros, 0) << "relu never clipped: the test would not tell tanh from relu";
    }
  }
}

TEST(CellsForward, MatchesReferenceEquations) {
  for (CellType c : kCells)
    for (int L : {1, 3}) {
      const NetShape s{c, 3, 4, L, 2, 2};
      RecurrentNet<double> net(s);
      Params<double> p(s);
      fill_uniform<double>(p.all(), 0.7, 5);
      std::vector<double> x(3 * 6), carry(net.carry_elems()), next(net.carry_elems());
      fill_uniform<double>(x, 1.5, 6);
      fill_uniform<double>(carry, 0.9, 7);
      for (int t = 0; t < 3; ++t) {
        const auto ref = reference_step(s, p, x.data() + t * 6, carry);
        net.advance(p, x.data() + t * 6, carry.data(), next.data());
        for (std::size_t k = 0; k < ref.size(); ++k)
          ASSERT_NEAR(next[k], ref[k], 1e-13) << cell_name(c) << " L" << L << " t" << t << " k" << k;
        carry = next;
      }
    }
}

TEST(CellsForward, FloatTracksDouble) {
  for (CellType c : kCells) {
    const NetShape s{c, 13, 37, 2, 5, 3};
    RecurrentNet<double> nd(s);
    RecurrentNet<float> nf(s);
    Params<double> pd(s);
    Params<float> pf(s);
    init_pytorch_default(pd, 3);
    init_pytorch_default(pf, 3);
    std::vector<double> xd(13 * 5);
    fill_uniform<double>(xd, 2.0, 4);
    const std::vector<float> xf(xd.begin(), xd.end());
    std::vector<double> cd(nd.carry_elems(), 0.0), cd2(cd);
    std::vector<float> cf(nf.carry_elems(), 0.0f), cf2(cf);
    double worst = 0;
    for (int t = 0; t < 20; ++t) {
      nd.advance(pd, xd.data(), cd.data(), cd2.data());
      nf.advance(pf, xf.data(), cf.data(), cf2.data());
      std::swap(cd, cd2);
      std::swap(cf, cf2);
      for (std::size_t k = 0; k < cd.size(); ++k) worst = std::max(worst, std::abs(cd[k] - double(cf[k])));
    }
    EXPECT_LT(worst, 2e-5) << cell_name(c);
  }
}

// ---------------------------------------------------------------------------------------------
// advance vs advance_record: bitwise equal carries, also at odd sizes and misaligned buffers.

template <class T>
void check_advance_vs_record(CellType c, int B, int I, int H, int L, std::size_t misalign) {
  const NetShape s{c, I, H, L, B, 2};
  RecurrentNet<T> net(s);
  Params<T> p(s);
  init_pytorch_default(p, 17);
  const int steps = 4;
  std::vector<T> x(std::size_t(steps) * B * I);
  fill_uniform<T>(x, T(1.5), 18);
  const std::size_t C = net.carry_elems(), R = net.record_elems();
  std::vector<T> c0(C);
  fill_uniform<T>(c0, T(0.5), 19);
  // plain chain, in separate buffers, with a misaligned output
  std::vector<T> a(c0), bbuf(C + misalign), inplace(c0);
  std::vector<T> recs(std::size_t(steps) * R + misalign);
  const T* cur = c0.data();
  for (int t = 0; t < steps; ++t) {
    const T* xt = x.data() + std::size_t(t) * B * I;
    T* rec = recs.data() + misalign + std::size_t(t) * R;
    net.advance_record(p, xt, cur, rec);
    cur = net.record_carry_out(rec);
    net.advance(p, xt, a.data(), bbuf.data() + misalign);
    std::copy_n(bbuf.data() + misalign, C, a.data());
    net.advance(p, xt, inplace.data(), inplace.data());
    ASSERT_TRUE(same_bits(cur, a.data(), C)) << cell_name(c) << " step " << t;
    ASSERT_TRUE(same_bits(cur, inplace.data(), C)) << cell_name(c) << " in place, step " << t;
    ASSERT_TRUE(same_bits(net.record_carry_in(rec), t == 0 ? c0.data() : net.record_carry_out(rec - R), C));
  }
}

TEST(CellsBitwise, AdvanceEqualsAdvanceRecordFloat) {
  for (CellType c : kCells) {
    check_advance_vs_record<float>(c, 3, 4, 5, 1, 0);
    check_advance_vs_record<float>(c, 7, 13, 37, 2, 1);
    check_advance_vs_record<float>(c, 4, 16, 64, 2, 3);
  }
}

TEST(CellsBitwise, AdvanceEqualsAdvanceRecordDouble) {
  for (CellType c : kCells) {
    check_advance_vs_record<double>(c, 3, 4, 5, 1, 0);
    check_advance_vs_record<double>(c, 7, 13, 37, 2, 1);
    check_advance_vs_record<double>(c, 4, 16, 64, 2, 3);
  }
}

// ---------------------------------------------------------------------------------------------
// Run-to-run determinism of a whole BPTT pass (fresh objects each time).

template <class T>
struct BpttResult {
  std::vector<T> grads, dcarry0;
  T loss = 0;
};

template <class T>
BpttResult<T> run_bptt(const NetShape& s, int steps) {
  RecurrentNet<T> net(s);
  Head<T> head(s);
  Params<T> p(s), g(s);
  init_pytorch_default(p, 99);
  std::vector<T> x(std::size_t(steps) * s.batch * s.input_size), c0(net.carry_elems());
  fill_uniform<T>(x, T(1), 100);
  fill_uniform<T>(c0, T(0.5), 101);
  std::vector<std::int64_t> tg(std::size_t(steps) * s.batch);
  for (std::size_t k = 0; k < tg.size(); ++k) tg[k] = std::int64_t((k * 5 + 3) % s.output_size);
  const std::size_t R = net.record_elems(), C = net.carry_elems();
  std::vector<T> rec(R * steps), d(C, T(0)), d2(C);
  const T* cur = c0.data();
  auto xt = [&](int t) { return x.data() + std::size_t(t) * s.batch * s.input_size; };
  for (int t = 0; t < steps; ++t) {
    net.advance_record(p, xt(t), cur, rec.data() + R * t);
    cur = net.record_carry_out(rec.data() + R * t);
  }
  BpttResult<T> r;
  const T scale = T(1) / T(steps * s.batch);
  for (int t = steps - 1; t >= 0; --t) {
    const T* rt = rec.data() + R * t;
    r.loss += head.step_xent(p, net.top_hidden(net.record_carry_out(rt)), tg.data() + t * s.batch,
                             scale, net.top_hidden(d.data()), g);
    net.backward(p, xt(t), rt, d.data(), d2.data(), g);
    std::swap(d, d2);
  }
  r.grads.assign(g.data(), g.data() + g.size());
  r.dcarry0 = d;
  return r;
}

template <class T>
void check_determinism() {
  for (CellType c : kCells) {
    const NetShape s{c, 24, 64, 2, 16, 10};
    const auto a = run_bptt<T>(s, 6);
    const auto b = run_bptt<T>(s, 6);
    ASSERT_EQ(a.grads.size(), b.grads.size());
    EXPECT_TRUE(same_bits(a.grads.data(), b.grads.data(), a.grads.size())) << cell_name(c);
    EXPECT_TRUE(same_bits(a.dcarry0.data(), b.dcarry0.data(), a.dcarry0.size())) << cell_name(c);
    EXPECT_TRUE(same_bits(&a.loss, &b.loss, 1)) << cell_name(c);
    double norm = 0;
    for (T v : a.grads) norm += double(v) * double(v);
    EXPECT_GT(norm, 0.0);
  }
}

TEST(CellsBitwise, GradientsIdenticalRunToRunFloat) { check_determinism<float>(); }
TEST(CellsBitwise, GradientsIdenticalRunToRunDouble) { check_determinism<double>(); }

// ---------------------------------------------------------------------------------------------
// Heads

TEST(CellsHead, TargetOutOfRangeThrowsAndWritesNothing) {
  const NetShape s{CellType::Lstm, 2, 4, 1, 3, 5};
  Head<double> head(s);
  Params<double> p(s), g(s);
  init_pytorch_default(p, 1);
  std::vector<double> h(12, 0.25), dh(12, 0.0);
  for (std::int64_t bad : {std::int64_t{5}, std::int64_t{-1}, std::int64_t{1} << 40}) {
    const std::int64_t tg[3] = {0, bad, 4};
    try {
      head.step_xent(p, h.data(), tg, 1.0, dh.data(), g);
      ADD_FAILURE() << "no throw for target " << bad;
    } catch (const std::invalid_argument& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("target " + std::to_string(bad)), std::string::npos) << m;
      EXPECT_NE(m.find("[0, 5)"), std::string::npos) << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    }
    EXPECT_THROW(head.step_xent_loss(p, h.data(), tg, 1.0), std::invalid_argument);
  }
  for (double v : dh) EXPECT_EQ(v, 0.0);
  for (double v : g.all()) EXPECT_EQ(v, 0.0);
}

TEST(CellsHead, KnownValues) {
  const NetShape s{CellType::Gru, 2, 4, 1, 3, 5};
  Head<double> head(s);
  Params<double> p(s), g(s);  // zero weights: logits = bias
  std::vector<double> h(12, 0.3), dh(12, 0.0);
  const std::int64_t tg[3] = {0, 1, 4};
  const double l = head.step_xent(p, h.data(), tg, 0.5, dh.data(), g);
  EXPECT_NEAR(l, 0.5 * 3 * std::log(5.0), 1e-14);
  // d/dbias_k = scale * sum_b (1/5 - [k == t_b])
  const auto gb = g.view("head.bias");
  EXPECT_NEAR(gb[0], 0.5 * (3 * 0.2 - 1), 1e-15);
  EXPECT_NEAR(gb[2], 0.5 * 3 * 0.2, 1e-15);
  std::int64_t correct = 0;
  auto bias = p.view("head.bias");
  bias[4] = 1.0;  // every row predicts class 4
  head.step_xent_loss(p, h.data(), tg, 1.0, &correct);
  EXPECT_EQ(correct, 1);
  // MSE: prediction = bias
  std::vector<double> y(15, 0.0);
  EXPECT_NEAR(head.last_mse_loss(p, h.data(), y.data()), 3.0 / 15.0, 1e-15);
  Params<double> g2(s);
  EXPECT_NEAR(head.last_mse(p, h.data(), y.data(), dh.data(), g2), 3.0 / 15.0, 1e-15);
  EXPECT_NEAR(g2.view("head.bias")[4], 3 * 2.0 / 15.0, 1e-15);
  for (double v : g2.view("rnn.weight_ih_l0")) EXPECT_EQ(v, 0.0);
}

// The logits are b + h W^T on both of the head's paths: OpenBLAS for a tiny head (B 2, H 4, 5
// classes), transposes on libxsmm from 16384 multiply-adds on (B 8, H 512, 7 classes; B 16, H 600,
// 2 classes); its scratch is what the planners predict.
TEST(CellsHead, LogitsAreBiasPlusHiddenTimesWeightsOnBothPaths) {
  for (const NetShape& s : {NetShape{CellType::Lstm, 2, 4, 1, 3, 5}, NetShape{CellType::Lstm, 2, 512, 1, 8, 7},
                            NetShape{CellType::Gru, 2, 600, 1, 16, 2}}) {
    Head<double> head(s);
    EXPECT_EQ(head.scratch_bytes(), Head<double>::scratch_bytes_for(s)) << "H " << s.hidden_size;
    Params<double> p(s);
    init_pytorch_default(p, 7);
    const auto w = p.view("head.weight");
    const auto b = p.view("head.bias");
    std::vector<double> h(static_cast<std::size_t>(s.batch) * s.hidden_size);
    fill_uniform<double>(h, 1.0, 8);
    const double* out = head.forward(p, h.data());
    for (int r = 0; r < s.batch; ++r)
      for (int o = 0; o < s.output_size; ++o) {
        double want = b[static_cast<std::size_t>(o)];
        for (int k = 0; k < s.hidden_size; ++k)
          want += h[static_cast<std::size_t>(r) * s.hidden_size + k] * w[static_cast<std::size_t>(o) * s.hidden_size + k];
        ASSERT_NEAR(out[static_cast<std::size_t>(r) * s.output_size + o], want, 1e-12)
            << "H " << s.hidden_size << " row " << r << " class " << o;
      }
  }
}

}  // namespace
}  // namespace membptt
