// The CPU forward pass against the independent double-precision reference, for every variant the templates
// describe and for odd sizes.
#include <doctest/doctest.h>

#include "support/harness.hpp"

namespace dp = deltaproduct;
using dp::EigenvalueRange;
using dp::Gating;

namespace {

struct Shape {
  int B, T, H, K, V;
};

// T = 1, T prime, K != V, K = 1, V = 1, several heads and batch rows.
constexpr Shape shapes[] = {{1, 1, 1, 4, 4}, {2, 37, 3, 8, 5}, {1, 13, 2, 1, 7}, {3, 5, 1, 6, 1}, {1, 64, 4, 16, 16}};

template <class T, int NH, EigenvalueRange Range, Gating Gate>
void check_against_reference(bool with_initial_state, std::uint64_t seed) {
  for (const Shape& s : shapes) {
    auto p = reference::random_problem(s.B, s.T, s.H, s.K, s.V, NH, Gate == Gating::scalar_decay, dp::max_beta(Range),
                                       with_initial_state, seed++);
    const auto expected = reference::delta_product(p);
    const auto actual = harness::run_delta<dp::DeltaProduct<T, NH, Range, Gate>>(p);
    const double tol = harness::tolerance<T>(p);
    CAPTURE(s.B);
    CAPTURE(s.T);
    CAPTURE(s.H);
    CAPTURE(s.K);
    CAPTURE(s.V);
    CHECK(reference::relative_max_error(actual.o, expected.o) <= tol);
    CHECK(reference::relative_max_error(actual.final_state, expected.final_state) <= tol);
  }
}

template <class T, int NH>
void check_all_ranges_and_gates() {
  for (bool init : {false, true}) {
    CAPTURE(NH);
    CAPTURE(init);
    check_against_reference<T, NH, EigenvalueRange::unit, Gating::none>(init, 100);
    check_against_reference<T, NH, EigenvalueRange::signed_unit, Gating::none>(init, 200);
    check_against_reference<T, NH, EigenvalueRange::unit, Gating::scalar_decay>(init, 300);
    check_against_reference<T, NH, EigenvalueRange::signed_unit, Gating::scalar_decay>(init, 400);
  }
}

}  // namespace

TEST_CASE_TEMPLATE("forward matches the double reference for DeltaNet and DeltaProduct, gated or not", T, float,
                   double) {
  check_all_ranges_and_gates<T, 1>();
  check_all_ranges_and_gates<T, 2>();
  check_all_ranges_and_gates<T, 3>();
}

TEST_CASE_TEMPLATE("key and query normalisation options match the reference", T, float, double) {
  for (int key_norm : {0, 1, 2})
    for (int query_norm : {0, 1, 2}) {
      auto p = reference::random_problem(2, 11, 2, 6, 4, 2, true, 2.0, true, 7);
      p.key_norm = key_norm;
      p.query_norm = query_norm;
      if (key_norm == 0)  // raw keys: keep beta |k|^2 <= 2 so the transitions stay non-expansive
        for (double& b : p.beta) b *= 0.25;
      CAPTURE(key_norm);
      CAPTURE(query_norm);
      const auto expected = reference::delta_product(p);
      const auto actual = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p);
      CHECK(reference::relative_max_error(actual.o, expected.o) <= harness::tolerance<T>(p));
      CHECK(reference::relative_max_error(actual.final_state, expected.final_state) <= harness::tolerance<T>(p));
    }
}

TEST_CASE("the default readout scale is 1/sqrt(K); an explicit scale replaces it") {
  auto p = reference::random_problem(1, 9, 2, 16, 3, 1, false, 2.0, true, 11);
  p.scale = 0.25;  // = 1/sqrt(16)
  const auto expected = reference::delta_product(p);

  dp::DeltaNet<double> model;  // options.scale left unset
  harness::Buffers<double> buffers(p);
  model.options.key_normalization = dp::Normalization::l2;
  dp::forward(dp::cpu, model, buffers.delta_inputs(p), buffers.outputs(p));
  CHECK(reference::relative_max_error(buffers.result().o, expected.o) <= 1e-12);

  p.scale = 3.0;
  const auto scaled = reference::delta_product(p);
  CHECK(reference::relative_max_error(harness::run_delta<dp::DeltaNet<double>>(p).o, scaled.o) <= 1e-12);
}

TEST_CASE_TEMPLATE("variable-length batches match the reference, including empty sequences", T, float, double) {
  auto p = reference::random_problem(1, 40, 3, 8, 6, 2, true, 2.0, true, 21);
  p.cu_seqlens = {0, 7, 7, 8, 29, 40};  // lengths 7, 0, 1, 21, 11
  p.initial_state.resize(static_cast<std::size_t>(5) * 3 * 8 * 6, 0.5);
  const auto expected = reference::delta_product(p);
  const auto actual = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p);
  CHECK(reference::relative_max_error(actual.o, expected.o) <= harness::tolerance<T>(p));
  CHECK(reference::relative_max_error(actual.final_state, expected.final_state) <= harness::tolerance<T>(p));
}

TEST_CASE("the state scalar may differ from the element type: float data, double state") {
  auto p = reference::random_problem(1, 50, 2, 8, 8, 2, false, 2.0, true, 5);
  // Round the inputs to float first: the reference then sees exactly what the library reads.
  for (auto* x : {&p.q, &p.k, &p.v, &p.beta, &p.initial_state})
    for (double& e : *x) e = static_cast<double>(static_cast<float>(e));
  const auto expected = reference::delta_product(p);
  const auto actual = harness::run_delta<dp::DeltaProduct<double, 2>, float>(p);
  // Only the final conversion of each output to float rounds: half an ulp of float, relative to the largest entry.
  CHECK(reference::relative_max_error(actual.o, expected.o) <= 1e-6);
  CHECK(reference::relative_max_error(actual.final_state, expected.final_state) <= 1e-6);
}

TEST_CASE_TEMPLATE("the result does not depend on the number of threads", T, float, double) {
  auto p = reference::random_problem(3, 33, 5, 16, 16, 2, true, 2.0, true, 31);
  const auto one = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p, {}, dp::CpuBackend{1});
  for (int threads : {2, 3, 8}) {
    const auto many = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p, {}, dp::CpuBackend{threads});
    CHECK(many.o == one.o);
    CHECK(many.final_state == one.final_state);
  }
}

TEST_CASE("strided views (a [B, H, T, K] buffer seen as [B, T, H, K]) give the same bits as dense ones") {
  auto p = reference::random_problem(2, 17, 3, 5, 4, 1, false, 2.0, false, 41);
  const auto dense = harness::run_delta<dp::DeltaNet<double>>(p);

  // Store q, k, v, beta head-major and pass strides instead.
  const int B = p.B, T = p.T, H = p.H, K = p.K, V = p.V;
  std::vector<double> q(p.q.size()), k(p.k.size()), v(p.v.size()), beta(p.beta.size()), o(dense.o.size(), 0.0);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h) {
        const std::size_t src = (static_cast<std::size_t>(b) * T + t) * H + h;
        const std::size_t dst = (static_cast<std::size_t>(b) * H + h) * T + t;
        for (int i = 0; i < K; ++i) q[dst * K + i] = p.q[src * K + i], k[dst * K + i] = p.k[src * K + i];
        for (int i = 0; i < V; ++i) v[dst * V + i] = p.v[src * V + i];
        beta[dst] = p.beta[src];
      }
  dp::DeltaNet<double> model;
  harness::configure(model.options, p);
  const dp::DeltaInputs<double> in{.q = dp::make_view(q.data(), {B, T, H, K}, {H * T * K, K, T * K, 1}),
                                   .k = dp::make_view(k.data(), {B, T, H, K}, {H * T * K, K, T * K, 1}),
                                   .v = dp::make_view(v.data(), {B, T, H, V}, {H * T * V, V, T * V, 1}),
                                   .beta = dp::make_view(beta.data(), {B, T, H}, {H * T, 1, T})};
  dp::forward(dp::cpu, model, in, dp::ForwardOutputs<double>{.o = dp::make_view(o.data(), {B, T, H, V})});
  CHECK(o == dense.o);
}

TEST_CASE("a broadcast view (stride 0) feeds one beta to every head") {
  auto p = reference::random_problem(1, 6, 4, 3, 3, 1, false, 2.0, false, 43);
  std::vector<double> shared_beta(static_cast<std::size_t>(p.T));
  for (int t = 0; t < p.T; ++t) {
    shared_beta[t] = 0.3 * t;
    for (int h = 0; h < p.H; ++h) p.beta[static_cast<std::size_t>(t) * p.H + h] = shared_beta[t];
  }
  const auto expected = reference::delta_product(p);
  harness::Buffers<double> buffers(p);
  auto in = buffers.delta_inputs(p);
  in.beta = dp::make_view(shared_beta.data(), {1, p.T, p.H}, {p.T, 1, 0});
  dp::DeltaNet<double> model;
  harness::configure(model.options, p);
  dp::forward(dp::cpu, model, in, buffers.outputs(p));
  CHECK(reference::relative_max_error(buffers.result().o, expected.o) <= 1e-12);
}

TEST_CASE_TEMPLATE("diagonal LRNN matches the reference in both eigenvalue ranges", T, float, double) {
  for (auto range : {EigenvalueRange::unit, EigenvalueRange::signed_unit}) {
    auto p = reference::random_problem(2, 29, 2, 5, 3, 1, false, 1.0, true, 51);
    p.key_norm = 2;
    std::vector<double> a(static_cast<std::size_t>(p.B) * p.T * p.H * p.K);
    std::mt19937_64 rng(52);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    for (double& x : a) x = range == EigenvalueRange::unit ? unit(rng) : 2.0 * unit(rng) - 1.0;
    const auto expected = reference::diagonal(p, a);
    const auto actual = range == EigenvalueRange::unit
                            ? harness::run_diagonal<dp::DiagonalLrnn<T, EigenvalueRange::unit>>(p, a)
                            : harness::run_diagonal<dp::DiagonalLrnn<T, EigenvalueRange::signed_unit>>(p, a);
    // The input term k v^T keeps adding: errors are relative to a state that grows like 1/(1 - |a|), still bounded.
    CHECK(reference::relative_max_error(actual.o, expected.o) <= harness::tolerance<T>(p));
    CHECK(reference::relative_max_error(actual.final_state, expected.final_state) <= harness::tolerance<T>(p));
  }
}

TEST_CASE("beta and decay maps: sigmoid for [0,1], 2 sigmoid for [-1,1]; exp and 2 exp - 1 for decays") {
  CHECK(dp::beta_from_logit<EigenvalueRange::unit>(0.0) == doctest::Approx(0.5));
  CHECK(dp::beta_from_logit<EigenvalueRange::signed_unit>(0.0) == doctest::Approx(1.0));
  CHECK(dp::beta_from_logit<EigenvalueRange::signed_unit>(40.0) == doctest::Approx(2.0));
  CHECK(dp::beta_from_logit<EigenvalueRange::unit>(-40.0) == doctest::Approx(0.0));
  CHECK(dp::decay_from_log<EigenvalueRange::unit>(0.0) == 1.0);
  CHECK(dp::decay_from_log<EigenvalueRange::signed_unit>(0.0) == 1.0);
  CHECK(dp::decay_from_log<EigenvalueRange::signed_unit>(-1000.0) == -1.0);
  CHECK(dp::decay_from_log<EigenvalueRange::unit>(std::log(0.25)) == doctest::Approx(0.25));
  CHECK(dp::max_beta(EigenvalueRange::unit) == 1.0);
  CHECK(dp::max_beta(EigenvalueRange::signed_unit) == 2.0);
}
