// Mathematical properties of the recurrences, checked on the CPU backend. Where two computations perform the same
// operations in the same order the check is exact (bit for bit); otherwise the tolerance is stated.
#include <doctest/doctest.h>

#include <cmath>

#include "support/harness.hpp"

namespace dp = deltaproduct;
using dp::EigenvalueRange;
using dp::Gating;

namespace {

// Bit-for-bit identities hold for the token loop, the definition of the recurrence: pin it.
const dp::CpuBackend sequential{.algorithm = dp::CpuAlgorithm::sequential};

double frobenius_norm(const std::vector<double>& x, std::size_t begin, std::size_t count) {
  double ss = 0;
  for (std::size_t i = begin; i < begin + count; ++i) ss += x[i] * x[i];
  return std::sqrt(ss);
}

}  // namespace

TEST_CASE_TEMPLATE("beta = 0 leaves the state unchanged, bit for bit", T, float, double) {
  auto p = reference::random_problem(2, 23, 3, 7, 5, 2, false, 2.0, true, 1);
  for (double& b : p.beta) b = 0.0;
  const auto r = harness::run_delta<dp::DeltaProduct<T, 2>>(p, {}, sequential);
  const auto initial = harness::to_double(harness::cast_all<T>(p.initial_state));
  CHECK(r.final_state == initial);
}

TEST_CASE("a unit key with beta = 2 reflects the state and preserves its norm") {
  // v = 0 removes the input term: each step is the reflection I - 2 k k^T, an orthogonal map.
  auto p = reference::random_problem(1, 200, 2, 9, 4, 1, false, 2.0, true, 2);
  for (double& b : p.beta) b = 2.0;
  for (double& x : p.v) x = 0.0;
  const std::size_t block = static_cast<std::size_t>(p.K) * p.V;

  SUBCASE("exact L2 normalisation: the norm is kept to rounding error (200 reflections, ~1e-13 in double)") {
    const auto r = harness::run_delta<dp::DeltaNet<double>>(p, {}, sequential);
    for (int h = 0; h < p.H; ++h) {
      const double before = frobenius_norm(p.initial_state, h * block, block);
      const double after = frobenius_norm(r.final_state, h * block, block);
      CHECK(std::abs(after - before) <= 1e-12 * before);
    }
  }
  SUBCASE("flash-linear-attention's eps normalisation shrinks the state a little at every step") {
    p.key_norm = 2;
    p.eps = 1e-6;
    const auto r = harness::run_delta<dp::DeltaNet<double>>(p, {}, sequential);
    for (int h = 0; h < p.H; ++h) {
      const double before = frobenius_norm(p.initial_state, h * block, block);
      const double after = frobenius_norm(r.final_state, h * block, block);
      // |k|^2 = s/(s + eps) < 1, so the eigenvalue along k is -1 + 2 eps/(s + eps): strictly inside the unit disc.
      CHECK(after < before * (1.0 - 1e-7));
      CHECK(after > before * 0.99);
    }
  }
  SUBCASE("the single-token output is the reflected state read by q") {
    auto one = reference::random_problem(1, 1, 1, 4, 3, 1, false, 2.0, true, 3);
    one.beta[0] = 2.0;
    for (double& x : one.v) x = 0.0;
    const auto r = harness::run_delta<dp::DeltaNet<double>>(one, {}, sequential);
    CHECK(reference::relative_max_error(r.final_state, reference::delta_product(one).final_state) <= 1e-14);
  }
}

namespace {
template <class T, bool Gated>
void check_interleaving() {
  const auto p = reference::random_problem(2, 19, 3, 6, 5, 2, Gated, 2.0, true, 4);
  const auto product = harness::run_delta<
      dp::DeltaProduct<T, 2, EigenvalueRange::signed_unit, Gated ? Gating::scalar_decay : Gating::none>>(
      p, {}, sequential);
  // DeltaNet over 2T tokens: token 2t+1 carries q_t and reads out; token 2t's gate is g_t, token 2t+1's is 0.
  reference::Problem net = p;
  net.T = 2 * p.T;
  net.n_h = 1;
  net.q.assign(static_cast<std::size_t>(p.B) * net.T * p.H * p.K, 0.0);
  if constexpr (Gated) net.g.assign(static_cast<std::size_t>(p.B) * net.T * p.H, 0.0);
  for (int b = 0; b < p.B; ++b)
    for (int t = 0; t < p.T; ++t)
      for (int h = 0; h < p.H; ++h) {
        const std::size_t src = (static_cast<std::size_t>(b) * p.T + t) * p.H + h;
        const std::size_t odd = (static_cast<std::size_t>(b) * net.T + 2 * t + 1) * p.H + h;
        const std::size_t even = (static_cast<std::size_t>(b) * net.T + 2 * t) * p.H + h;
        for (int i = 0; i < p.K; ++i) net.q[odd * p.K + i] = p.q[src * p.K + i];
        if constexpr (Gated) net.g[even] = p.g[src];
      }
  const auto deltanet = harness::run_delta<
      dp::DeltaProduct<T, 1, EigenvalueRange::signed_unit, Gated ? Gating::scalar_decay : Gating::none>>(
      net, {}, sequential);
  // exp(0) = 1 exactly and the micro-steps are the same operations: the two runs agree bit for bit.
  CHECK(deltanet.final_state == product.final_state);
  for (int b = 0; b < p.B; ++b)
    for (int t = 0; t < p.T; ++t)
      for (int h = 0; h < p.H; ++h)
        for (int j = 0; j < p.V; ++j) {
          const double a = product.o[((static_cast<std::size_t>(b) * p.T + t) * p.H + h) * p.V + j];
          const double d = deltanet.o[((static_cast<std::size_t>(b) * net.T + 2 * t + 1) * p.H + h) * p.V + j];
          REQUIRE(a == d);
        }
}
}  // namespace

TEST_CASE_TEMPLATE("n_h = 2 equals DeltaNet over the interleaved tokens with the readout skipped in between", T, float,
                   double) {
  check_interleaving<T, false>();
  check_interleaving<T, true>();
}

TEST_CASE_TEMPLATE("running T1 then T2 with the state carried equals running T1 + T2", T, float, double) {
  const auto whole = reference::random_problem(2, 31, 2, 8, 6, 3, true, 2.0, true, 5);
  const auto full = harness::run_delta<dp::GatedDeltaProduct<T, 3>>(whole, {}, sequential);

  const int T1 = 12, T2 = whole.T - T1;
  auto part = [&](int begin, int length, const std::vector<double>& initial) {
    reference::Problem s = whole;
    s.T = length;
    s.initial_state = initial;
    auto slice = [&](const std::vector<double>& x, int rows_per_token, int width) {
      std::vector<double> out;
      const std::size_t row = static_cast<std::size_t>(whole.H) * width;
      for (int b = 0; b < whole.B; ++b) {
        const auto first =
            x.begin() + static_cast<std::ptrdiff_t>((static_cast<std::size_t>(b) * whole.T * rows_per_token +
                                                     static_cast<std::size_t>(begin) * rows_per_token) *
                                                    row);
        out.insert(out.end(), first,
                   first + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(length) * rows_per_token * row));
      }
      return out;
    };
    s.q = slice(whole.q, 1, whole.K);
    s.g = slice(whole.g, 1, 1);
    s.k = slice(whole.k, whole.n_h, whole.K);
    s.v = slice(whole.v, whole.n_h, whole.V);
    s.beta = slice(whole.beta, whole.n_h, 1);
    return s;
  };
  // The carried state goes through T and back: exact for T = double, and for float because the library's state
  // is float too.
  const auto first = harness::run_delta<dp::GatedDeltaProduct<T, 3>>(part(0, T1, whole.initial_state), {}, sequential);
  const auto second = harness::run_delta<dp::GatedDeltaProduct<T, 3>>(part(T1, T2, first.final_state), {}, sequential);
  CHECK(second.final_state == full.final_state);
  for (int b = 0; b < whole.B; ++b) {
    const std::size_t row = static_cast<std::size_t>(whole.H) * whole.V;
    for (std::size_t i = 0; i < T1 * row; ++i) REQUIRE(first.o[b * T1 * row + i] == full.o[b * whole.T * row + i]);
    for (std::size_t i = 0; i < T2 * row; ++i)
      REQUIRE(second.o[b * T2 * row + i] == full.o[(b * whole.T + T1) * row + i]);
  }
}

TEST_CASE_TEMPLATE("a variable-length batch equals its sequences run one by one", T, float, double) {
  auto packed = reference::random_problem(1, 30, 2, 5, 4, 2, true, 2.0, true, 6);
  packed.cu_seqlens = {0, 11, 11, 12, 30};
  packed.initial_state.resize(static_cast<std::size_t>(4) * 2 * 5 * 4, 0.25);
  for (std::size_t i = 0; i < packed.initial_state.size(); ++i) packed.initial_state[i] = std::sin(double(i));
  const auto together = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(packed, {}, sequential);

  const std::size_t state_block = static_cast<std::size_t>(packed.H) * packed.K * packed.V;
  for (int n = 0; n < 4; ++n) {
    const int begin = static_cast<int>(packed.cu_seqlens[n]), end = static_cast<int>(packed.cu_seqlens[n + 1]);
    CAPTURE(n);
    reference::Problem alone = packed;
    alone.cu_seqlens.clear();
    alone.T = end - begin;
    auto cut = [&](const std::vector<double>& x, int rows_per_token, int width) {
      const std::size_t row = static_cast<std::size_t>(packed.H) * width * rows_per_token;
      return std::vector<double>(x.begin() + static_cast<std::ptrdiff_t>(begin * row),
                                 x.begin() + static_cast<std::ptrdiff_t>(end * row));
    };
    alone.q = cut(packed.q, 1, packed.K);
    alone.g = cut(packed.g, 1, 1);
    alone.k = cut(packed.k, 2, packed.K);
    alone.v = cut(packed.v, 2, packed.V);
    alone.beta = cut(packed.beta, 2, 1);
    alone.initial_state.assign(packed.initial_state.begin() + static_cast<std::ptrdiff_t>(n * state_block),
                               packed.initial_state.begin() + static_cast<std::ptrdiff_t>((n + 1) * state_block));
    const auto single = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(alone, {}, sequential);
    for (std::size_t i = 0; i < state_block; ++i)
      REQUIRE(single.final_state[i] == together.final_state[n * state_block + i]);
    const std::size_t row = static_cast<std::size_t>(packed.H) * packed.V;
    for (std::size_t i = 0; i < single.o.size(); ++i) REQUIRE(single.o[i] == together.o[begin * row + i]);
  }
}

TEST_CASE_TEMPLATE("gating with g = 0 equals no gating, bit for bit", T, float, double) {
  auto p = reference::random_problem(2, 17, 2, 6, 6, 2, true, 2.0, true, 7);
  for (double& x : p.g) x = 0.0;
  const auto gated = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p, {}, sequential);
  p.gated = false;
  const auto plain = harness::run_delta<dp::DeltaProduct<T, 2>>(p, {}, sequential);
  CHECK(gated.o == plain.o);
  CHECK(gated.final_state == plain.final_state);
}

TEST_CASE("a diagonal LRNN with decay -1 flips the sign of the state: parity in one channel") {
  // K = V = 1, q = 1, k = 0 after the first token: h_t = (-1)^(number of ones so far) h_0 (UST Thm 1's construction).
  const std::vector<int> bits{1, 0, 1, 1, 0, 0, 1, 0, 1, 1};
  const int T = static_cast<int>(bits.size());
  std::vector<double> q(T, 1.0), k(T, 0.0), v(T, 0.0), a(T), h0{1.0}, o(T), hT(1);
  for (int t = 0; t < T; ++t) a[t] = bits[t] ? -1.0 : 1.0;
  dp::DiagonalLrnn<double, EigenvalueRange::signed_unit> model;
  model.options.scale = 1.0;
  const dp::DiagonalInputs<double> in{.q = dp::make_view(q.data(), {1, T, 1, 1}),
                                      .k = dp::make_view(k.data(), {1, T, 1, 1}),
                                      .v = dp::make_view(v.data(), {1, T, 1, 1}),
                                      .a = dp::make_view(a.data(), {1, T, 1, 1}),
                                      .initial_state = dp::make_view(h0.data(), {1, 1, 1, 1})};
  dp::forward(dp::cpu, model, in,
              dp::ForwardOutputs<double>{.o = dp::make_view(o.data(), {1, T, 1, 1}),
                                         .final_state = dp::make_view(hT.data(), {1, 1, 1, 1})});
  int ones = 0;
  for (int t = 0; t < T; ++t) {
    ones += bits[t];
    CHECK(o[t] == (ones % 2 ? -1.0 : 1.0));
  }
}
