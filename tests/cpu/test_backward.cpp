// The CPU backward pass against central finite differences of the independent double reference, for every variant
// and both algorithms; the chunked backward against the sequential one on larger problems; the checkpointing; and
// the contract's errors for gradient views.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <deltaproduct/precision/precision.hpp>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "support/finite_differences.hpp"
#include "support/harness.hpp"

namespace dp = deltaproduct;
using dp::EigenvalueRange;
using dp::Gating;

namespace {

// Central differences in double (step 1e-6 relative, support/finite_differences.hpp) err by about 1e-8 relative to
// the largest gradient entry (rounding of L over the step), and the backward in double by ~1e-15 (rounding, for
// problems of a few dozen steps); 1e-6 leaves a factor 100 for the curvature of the exp gates and normalisations
// while any wrong term (a missing factor, a transposed product, a wrong sign) errs by O(1).
constexpr double finite_difference_tolerance = 1e-6;

constexpr dp::CpuBackend sequential{.threads = 1, .algorithm = dp::CpuAlgorithm::sequential};

dp::CpuBackend chunked(int chunk_size, int threads = 1) {
  return {.threads = threads, .algorithm = dp::CpuAlgorithm::chunked, .chunk_size = chunk_size};
}

/// Gradient buffers of element type T in the inputs' layouts, pre-filled with NaN so a gradient that is not
/// written shows.
template <class T>
struct GradientBuffers {
  std::vector<T> q, k, v, beta, g, a, initial_state, output, final_state;

  GradientBuffers(const reference::Problem& p, const reference::LossWeights& w)
      : q(p.q.size(), nan()),
        k(p.k.size(), nan()),
        v(p.v.size(), nan()),
        beta(p.beta.size(), nan()),
        g(p.gated ? p.g.size() : 0, nan()),
        initial_state(static_cast<std::size_t>(p.sequences()) * p.H * p.K * p.V, nan()),
        output(harness::cast_all<T>(w.o)),
        final_state(harness::cast_all<T>(w.final_state)) {}

  static T nan() { return std::numeric_limits<T>::quiet_NaN(); }

  dp::OutputGradients<T> output_gradients(const reference::Problem& p) const {
    return {.o = dp::make_view(output.data(), {p.B, p.T, p.H, p.V}),
            .final_state = dp::make_view(final_state.data(), {p.sequences(), p.H, p.K, p.V})};
  }

  dp::DeltaGradients<T> delta(const reference::Problem& p) {
    const dp::index_t R = static_cast<dp::index_t>(p.T) * p.n_h;
    dp::DeltaGradients<T> d{.q = dp::make_view(q.data(), {p.B, p.T, p.H, p.K}),
                            .k = dp::make_view(k.data(), {p.B, R, p.H, p.K}),
                            .v = dp::make_view(v.data(), {p.B, R, p.H, p.V}),
                            .beta = dp::make_view(beta.data(), {p.B, R, p.H}),
                            .initial_state = dp::make_view(initial_state.data(), {p.sequences(), p.H, p.K, p.V})};
    if (p.gated) d.g = dp::make_view(g.data(), {p.B, p.T, p.H});
    return d;
  }

  dp::DiagonalGradients<T> diagonal(const reference::Problem& p) {
    a.assign(p.q.size(), nan());
    beta.clear();  // no beta or g in a diagonal LRNN
    g.clear();
    return {.q = dp::make_view(q.data(), {p.B, p.T, p.H, p.K}),
            .k = dp::make_view(k.data(), {p.B, p.T, p.H, p.K}),
            .v = dp::make_view(v.data(), {p.B, p.T, p.H, p.V}),
            .a = dp::make_view(a.data(), {p.B, p.T, p.H, p.K}),
            .initial_state = dp::make_view(initial_state.data(), {p.sequences(), p.H, p.K, p.V})};
  }

  reference::Gradients result() const {
    return {harness::to_double(q),
            harness::to_double(k),
            harness::to_double(v),
            harness::to_double(beta),
            harness::to_double(g),
            harness::to_double(a),
            harness::to_double(initial_state)};
  }
};

/// backward() of a DeltaNet / DeltaProduct model with element type T on problem p and loss weights w.
template <class Model, class T = typename Model::scalar_type>
reference::Gradients delta_backward(const reference::Problem& p, const reference::LossWeights& w,
                                    dp::CpuBackend backend, dp::detail::BackwardLimits limits = {}) {
  Model model;
  harness::configure(model.options, p);
  harness::Buffers<T> inputs(p);
  GradientBuffers<T> gradients(p, w);
  dp::detail::backward_with_limits(backend, model, inputs.delta_inputs(p), gradients.output_gradients(p),
                                   gradients.delta(p), limits);
  return gradients.result();
}

/// backward() of a diagonal LRNN with element type T on problem p, decays a and loss weights w.
template <class Model, class T = typename Model::scalar_type>
reference::Gradients diagonal_backward(const reference::Problem& p, const std::vector<double>& a,
                                       const reference::LossWeights& w, dp::CpuBackend backend,
                                       dp::detail::BackwardLimits limits = {}) {
  Model model;
  harness::configure(model.options, p);
  harness::Buffers<T> inputs(p, a);
  GradientBuffers<T> gradients(p, w);
  dp::detail::backward_with_limits(backend, model, inputs.diagonal_inputs(p), gradients.output_gradients(p),
                                   gradients.diagonal(p), limits);
  return gradients.result();
}

/// Every gradient of `actual` within `tolerance` of `expected`, relative to the largest entry of each.
void check_gradients(const reference::Gradients& actual, const reference::Gradients& expected, double tolerance) {
  CHECK(reference::relative_max_error(actual.q, expected.q) <= tolerance);
  CHECK(reference::relative_max_error(actual.k, expected.k) <= tolerance);
  CHECK(reference::relative_max_error(actual.v, expected.v) <= tolerance);
  CHECK(reference::relative_max_error(actual.initial_state, expected.initial_state) <= tolerance);
  if (!expected.beta.empty()) CHECK(reference::relative_max_error(actual.beta, expected.beta) <= tolerance);
  if (!expected.g.empty()) CHECK(reference::relative_max_error(actual.g, expected.g) <= tolerance);
  if (!expected.a.empty()) CHECK(reference::relative_max_error(actual.a, expected.a) <= tolerance);
}

/// Packs the batch rows of p into one row with cu_seqlens `offsets` (which must end at B * T), and gives each of
/// the N sequences an initial state of its own.
reference::Problem as_varlen(reference::Problem p, const std::vector<std::int64_t>& offsets, std::uint64_t seed) {
  p.T *= p.B;
  p.B = 1;
  p.cu_seqlens = offsets;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  p.initial_state.resize(static_cast<std::size_t>(p.sequences()) * p.H * p.K * p.V);
  for (double& x : p.initial_state) x = normal(rng);
  return p;
}

/// A small problem for finite differences (B = 2, T = 7, H = 2, K = 4 != V = 3), with beta at both ends of its
/// range somewhere, a readout scale other than the default, l2 keys and l2_eps queries (eps large enough to matter).
reference::Problem small_problem(int n_h, bool gated, double beta_max, std::uint64_t seed) {
  auto p = reference::random_problem(2, 7, 2, 4, 3, n_h, gated, beta_max, true, seed);
  p.beta[1] = beta_max;
  p.beta[4] = 0.0;
  p.scale = 0.7;
  p.key_norm = 1;
  p.query_norm = 2;
  p.eps = 0.5;
  return p;
}

/// Finite differences against the sequential backward and the chunked one (chunks of 3: 7 tokens give 3, 3, 1;
/// chunks of 1; one chunk longer than the sequence).
template <class Model>
void check_delta_against_finite_differences(const reference::Problem& p, std::uint64_t seed) {
  const auto weights = reference::random_loss_weights(p, seed);
  const auto expected = reference::delta_product_gradients(p, weights);
  for (const dp::CpuBackend backend : {sequential, chunked(3), chunked(1), chunked(64)}) {
    CAPTURE(static_cast<int>(backend.algorithm));
    CAPTURE(backend.chunk_size);
    check_gradients(delta_backward<Model>(p, weights, backend), expected, finite_difference_tolerance);
  }
}

template <int NH, EigenvalueRange Range, Gating Gate>
void check_variant(std::uint64_t seed) {
  CAPTURE(NH);
  CAPTURE(static_cast<int>(Range));
  CAPTURE(static_cast<int>(Gate));
  const auto p = small_problem(NH, Gate == Gating::scalar_decay, dp::max_beta(Range), seed);
  check_delta_against_finite_differences<dp::DeltaProduct<double, NH, Range, Gate>>(p, seed + 1);
}

template <int NH>
void check_all_ranges_and_gates(std::uint64_t seed) {
  check_variant<NH, EigenvalueRange::unit, Gating::none>(seed);
  check_variant<NH, EigenvalueRange::signed_unit, Gating::none>(seed + 10);
  check_variant<NH, EigenvalueRange::unit, Gating::scalar_decay>(seed + 20);
  check_variant<NH, EigenvalueRange::signed_unit, Gating::scalar_decay>(seed + 30);
}

}  // namespace

TEST_CASE("DeltaNet and DeltaProduct gradients match finite differences, gated or not, for both ranges") {
  check_all_ranges_and_gates<1>(1000);
  check_all_ranges_and_gates<2>(2000);
  check_all_ranges_and_gates<3>(3000);
}

TEST_CASE("gradients through every key and query normalisation match finite differences") {
  for (int key_norm : {0, 1, 2})
    for (int query_norm : {0, 1, 2}) {
      CAPTURE(key_norm);
      CAPTURE(query_norm);
      auto p = small_problem(2, true, 2.0, 40 + 3 * key_norm + query_norm);
      p.key_norm = key_norm;
      p.query_norm = query_norm;
      if (key_norm == 0)  // raw keys: |k|^2 ~ 1, so beta |k|^2 stays near [0, 2] and the states stay moderate
        for (double& x : p.k) x *= 0.5;
      check_delta_against_finite_differences<dp::GatedDeltaProduct<double, 2>>(p, 50);
    }
}

TEST_CASE("gradients with the default scale, without an initial state, and of variable-length sequences") {
  SUBCASE("default scale 1/sqrt(K) and a zero initial state") {
    auto p = small_problem(1, true, 2.0, 60);
    p.scale = 1.0 / std::sqrt(static_cast<double>(p.K));
    p.initial_state.clear();
    check_delta_against_finite_differences<dp::GatedDeltaNet<double>>(p, 61);
  }
  SUBCASE("cu_seqlens with an empty sequence, a one-token sequence, and sequences across chunk boundaries") {
    // 14 packed tokens: lengths 3, 0, 5, 1, 5.
    const auto p = as_varlen(small_problem(2, true, 2.0, 70), {0, 3, 3, 8, 9, 14}, 71);
    check_delta_against_finite_differences<dp::GatedDeltaProduct<double, 2>>(p, 72);
    const auto q = as_varlen(small_problem(3, false, 1.0, 73), {0, 0, 7, 14}, 74);
    check_delta_against_finite_differences<dp::DeltaProduct<double, 3, EigenvalueRange::unit>>(q, 75);
  }
}

TEST_CASE("diagonal LRNN gradients match finite differences") {
  for (const bool signed_range : {false, true}) {
    CAPTURE(signed_range);
    auto p = small_problem(1, false, 1.0, 80 + signed_range);
    std::mt19937_64 rng(81);
    std::uniform_real_distribution<double> decay(signed_range ? -1.0 : 0.0, 1.0);
    std::vector<double> a(p.q.size());
    for (double& x : a) x = decay(rng);
    a[2] = 0.0;  // a reset channel
    a[5] = signed_range ? -1.0 : 1.0;
    const auto weights = reference::random_loss_weights(p, 82);
    const auto expected = reference::diagonal_gradients(p, a, weights);
    const auto varlen = as_varlen(p, {0, 4, 4, 14}, 83);
    const auto varlen_weights = reference::random_loss_weights(varlen, 84);
    const auto varlen_expected = reference::diagonal_gradients(varlen, a, varlen_weights);
    for (const dp::CpuBackend backend : {sequential, chunked(3)}) {
      CAPTURE(static_cast<int>(backend.algorithm));
      if (signed_range) {
        check_gradients(diagonal_backward<dp::DiagonalLrnn<double>>(p, a, weights, backend), expected,
                        finite_difference_tolerance);
        check_gradients(diagonal_backward<dp::DiagonalLrnn<double>>(varlen, a, varlen_weights, backend),
                        varlen_expected, finite_difference_tolerance);
      } else {
        using Model = dp::DiagonalLrnn<double, EigenvalueRange::unit>;
        check_gradients(diagonal_backward<Model>(p, a, weights, backend), expected, finite_difference_tolerance);
        check_gradients(diagonal_backward<Model>(varlen, a, varlen_weights, backend), varlen_expected,
                        finite_difference_tolerance);
      }
    }
  }
}

namespace {
void check_identical(const reference::Gradients& a, const reference::Gradients& b) {
  CHECK(a.q == b.q);
  CHECK(a.k == b.k);
  CHECK(a.v == b.v);
  CHECK(a.beta == b.beta);
  CHECK(a.g == b.g);
  CHECK(a.a == b.a);
  CHECK(a.initial_state == b.initial_state);
}
}  // namespace

TEST_CASE("segment checkpointing gives the gradients of the uncheckpointed walk, bit for bit") {
  // 53 tokens in segments of 4: 14 segments (13 checkpoints), the last one partial. Recomputed states use the
  // forward's own arithmetic, so the gradients must not change in any bit.
  const auto p = reference::random_problem(2, 53, 2, 5, 3, 2, true, 2.0, true, 90);
  const auto w = reference::random_loss_weights(p, 91);
  using Model = dp::GatedDeltaProduct<double, 2>;
  const auto whole = delta_backward<Model>(p, w, sequential, {.segment_tokens = 1000});
  const auto segmented = delta_backward<Model>(p, w, sequential, {.segment_tokens = 4});
  const auto default_segments = delta_backward<Model>(p, w, sequential);  // ceil(sqrt(53)) = 8 tokens
  check_identical(segmented, whole);
  check_identical(default_segments, whole);
  const auto d = reference::random_problem(2, 53, 2, 5, 3, 1, false, 1.0, true, 92);
  std::vector<double> a(d.q.size(), 0.5);
  for (std::size_t i = 0; i < a.size(); i += 3) a[i] = -0.75;
  const auto wd = reference::random_loss_weights(d, 93);
  using Diagonal = dp::DiagonalLrnn<double>;
  const auto whole_diagonal = diagonal_backward<Diagonal>(d, a, wd, sequential, {.segment_tokens = 1000});
  const auto segmented_diagonal = diagonal_backward<Diagonal>(d, a, wd, sequential, {.segment_tokens = 4});
  check_identical(segmented_diagonal, whole_diagonal);
}

TEST_CASE("chunk-start checkpointing gives the gradients of keeping every chunk-start state, bit for bit") {
  // 300 tokens in chunks of 4: 75 chunks. With at most 8 kept chunks the backward keeps the start of every 9th
  // chunk (ceil(sqrt(75)) > 8), with at most 30 the start of every 30th (segments of 30, 30 and 15), and
  // recomputes the rest with the same arithmetic, so no bit may change.
  auto p = reference::random_problem(2, 300, 2, 6, 5, 2, true, 2.0, true, 120);
  const auto w = reference::random_loss_weights(p, 121);
  using Model = dp::GatedDeltaProduct<double, 2>;
  const auto all_kept = delta_backward<Model>(p, w, chunked(4), {.max_checkpoints = 1000});
  check_identical(delta_backward<Model>(p, w, chunked(4), {.max_checkpoints = 8}), all_kept);
  check_identical(delta_backward<Model>(p, w, chunked(4), {.max_checkpoints = 30}), all_kept);
  const auto varlen = as_varlen(p, {0, 7, 7, 151, 600}, 122);
  const auto varlen_weights = reference::random_loss_weights(varlen, 123);
  check_identical(delta_backward<Model>(varlen, varlen_weights, chunked(4), {.max_checkpoints = 3}),
                  delta_backward<Model>(varlen, varlen_weights, chunked(4), {.max_checkpoints = 1000}));
}

TEST_CASE("threads do not change the gradients") {
  const auto p = reference::random_problem(3, 200, 3, 8, 6, 2, true, 2.0, true, 95);
  const auto w = reference::random_loss_weights(p, 96);
  using Model = dp::GatedDeltaProduct<double, 2>;
  check_identical(delta_backward<Model>(p, w, {.threads = 4, .algorithm = dp::CpuAlgorithm::sequential}),
                  delta_backward<Model>(p, w, sequential));
  check_identical(delta_backward<Model>(p, w, chunked(16, 4)), delta_backward<Model>(p, w, chunked(16)));
}

TEST_CASE_TEMPLATE("with fewer pairs than threads the chunked backward splits value columns and agrees with one thread",
                   T, float, double) {
  // One sequence and head, V = 13 over 4 threads: blocks of 4, 4, 4 and 1 value columns. The gradients of k, q,
  // beta and g are then sums of per-block parts added in a fixed order, so they agree with one thread to rounding
  // (the forward's bound), and every gradient is written (the buffers start as NaN). Then two packed sequences of
  // different lengths (2 pairs, 2 blocks each).
  auto p = reference::random_problem(1, 700, 1, 16, 13, 2, true, 2.0, true, 150);
  p.query_norm = 1;
  using Model = dp::GatedDeltaProduct<T, 2>;
  const auto w = reference::random_loss_weights(p, 151);
  check_gradients(delta_backward<Model>(p, w, chunked(32, 4)), delta_backward<Model>(p, w, chunked(32)),
                  harness::tolerance<T>(p));
  const auto varlen = as_varlen(reference::random_problem(2, 350, 1, 16, 13, 2, true, 2.0, true, 152), {0, 290, 700},
                                153);
  const auto varlen_weights = reference::random_loss_weights(varlen, 154);
  check_gradients(delta_backward<Model>(varlen, varlen_weights, chunked(32, 4)),
                  delta_backward<Model>(varlen, varlen_weights, chunked(32)), harness::tolerance<T>(varlen));
}

namespace {

template <class T, class Model, class DoubleModel>
void check_chunked_against_sequential(const reference::Problem& p, std::uint64_t seed) {
  const auto w = reference::random_loss_weights(p, seed);
  const auto expected = delta_backward<DoubleModel>(p, w, sequential);
  // The transitions are non-expansive (l2 keys, beta in [0, 2], gates <= 1), so both forms' rounding errors add up
  // over the T n_h steps and K-term sums rather than grow: the forward's bound harness::tolerance<T> applies.
  const double tolerance = harness::tolerance<T>(p);
  check_gradients(delta_backward<Model>(p, w, chunked(32)), expected, tolerance);
  if constexpr (!std::is_same_v<T, double>)
    check_gradients(delta_backward<Model>(p, w, sequential), expected, tolerance);
}

}  // namespace

TEST_CASE_TEMPLATE("chunked and sequential gradients agree on longer problems", T, float, double) {
  // T = 300 with chunks of 32 (a partial last chunk), K = 16 != V = 12, l2 queries; a varlen packing with an empty
  // sequence and lengths that are not multiples of the chunk.
  auto p = reference::random_problem(2, 300, 2, 16, 12, 1, true, 2.0, true, 130);
  p.query_norm = 1;
  check_chunked_against_sequential<T, dp::GatedDeltaNet<T>, dp::GatedDeltaNet<double>>(p, 131);
  auto product = reference::random_problem(2, 150, 2, 16, 12, 2, true, 2.0, true, 132);
  product.query_norm = 2;
  check_chunked_against_sequential<T, dp::GatedDeltaProduct<T, 2>, dp::GatedDeltaProduct<double, 2>>(
      as_varlen(product, {0, 45, 45, 300}, 133), 134);
  auto ungated = reference::random_problem(1, 200, 3, 16, 12, 3, false, 1.0, false, 135);
  using Unit = dp::DeltaProduct<T, 3, EigenvalueRange::unit>;
  check_chunked_against_sequential<T, Unit, dp::DeltaProduct<double, 3, EigenvalueRange::unit>>(ungated, 136);
}

TEST_CASE("automatic runs chunked for float and double beyond one chunk, sequential otherwise") {
  const auto p = reference::random_problem(1, 100, 1, 8, 8, 1, true, 2.0, true, 140);
  const auto w = reference::random_loss_weights(p, 141);
  using Model = dp::GatedDeltaNet<double>;
  const dp::CpuBackend automatic{.threads = 1, .chunk_size = 16};
  check_identical(delta_backward<Model>(p, w, automatic), delta_backward<Model>(p, w, chunked(16)));
  const dp::CpuBackend one_chunk{.threads = 1, .chunk_size = 100};
  check_identical(delta_backward<Model>(p, w, one_chunk), delta_backward<Model>(p, w, sequential));
}

TEST_CASE("only the requested gradients are computed, through strided views and mixed element types") {
  const auto p = reference::random_problem(2, 40, 2, 6, 5, 2, true, 2.0, true, 150);
  const auto w = reference::random_loss_weights(p, 151);
  using Model = dp::GatedDeltaProduct<double, 2>;
  for (const dp::CpuBackend backend : {sequential, chunked(8)}) {
    CAPTURE(static_cast<int>(backend.algorithm));
    const auto full = delta_backward<Model>(p, w, backend);
    Model model;
    harness::configure(model.options, p);
    harness::Buffers<double> inputs(p);
    GradientBuffers<double> g(p, w);
    // dk in a padded layout: rows of K + 3 elements, so the key dimension is strided by one and rows by K + 3.
    const dp::index_t R = static_cast<dp::index_t>(p.T) * p.n_h;
    std::vector<double> padded(static_cast<std::size_t>(p.B) * R * p.H * (p.K + 3), -1.0);
    const dp::index_t pitch = p.K + 3;
    dp::DeltaGradients<double> only{
        .k = dp::make_view(padded.data(), {p.B, R, p.H, p.K}, {R * p.H * pitch, p.H * pitch, pitch, 1}),
        .g = dp::make_view(g.g.data(), {p.B, p.T, p.H})};
    dp::detail::backward_with_limits(backend, model, inputs.delta_inputs(p), g.output_gradients(p), only, {});
    std::vector<double> k(full.k.size());
    for (std::size_t row = 0; row < k.size() / p.K; ++row)
      for (int i = 0; i < p.K; ++i) k[row * p.K + i] = padded[row * pitch + i];
    CHECK(k == full.k);
    CHECK(harness::to_double(g.g) == full.g);
    CHECK(std::isnan(g.q[0]));  // not requested, not written
    for (std::size_t row = 0; row < k.size() / p.K; ++row) CHECK(padded[row * pitch + p.K] == -1.0);  // padding kept
  }
  // float token data and gradients with double states and a double model: the gradients are the double model's,
  // rounded once to float on the way in (inputs) and out (gradients): a few float ulps.
  auto rounded = p;
  for (auto* x : {&rounded.q, &rounded.k, &rounded.v, &rounded.beta, &rounded.g})
    for (double& e : *x) e = static_cast<float>(e);
  auto rounded_weights = w;
  for (double& e : rounded_weights.o) e = static_cast<float>(e);
  const auto expected = delta_backward<Model>(rounded, rounded_weights, sequential);
  Model model;
  harness::configure(model.options, rounded);
  harness::Buffers<float> token_data(rounded);
  const auto in = token_data.delta_inputs(rounded);
  std::vector<double> initial_state = p.initial_state, state_gradient(p.initial_state.size()),
                      final_gradient = w.final_state;
  const std::vector<float> output_gradient = harness::cast_all<float>(w.o);
  GradientBuffers<float> g(rounded, w);
  const dp::index_t R = static_cast<dp::index_t>(p.T) * p.n_h;
  dp::DeltaInputs<float, double> mixed{.q = in.q,
                                       .k = in.k,
                                       .v = in.v,
                                       .beta = in.beta,
                                       .g = in.g,
                                       .initial_state = dp::make_view(initial_state.data(), {p.B, p.H, p.K, p.V})};
  dp::backward(
      sequential, model, mixed,
      dp::OutputGradients<float, double>{.o = dp::make_view(output_gradient.data(), {p.B, p.T, p.H, p.V}),
                                         .final_state = dp::make_view(final_gradient.data(), {p.B, p.H, p.K, p.V})},
      dp::DeltaGradients<float, double>{.k = dp::make_view(g.k.data(), {p.B, R, p.H, p.K}),
                                        .initial_state = dp::make_view(state_gradient.data(), {p.B, p.H, p.K, p.V})});
  constexpr double float_rounding = 4 * std::numeric_limits<float>::epsilon();  // one rounding to float, with margin
  CHECK(reference::relative_max_error(harness::to_double(g.k), expected.k) <= float_rounding);
  CHECK(state_gradient == expected.initial_state);  // computed and stored in double
}

namespace {

// Runs `call`, which must throw ArgumentError for `argument` with every fragment in its message.
template <class Call>
void expect_argument_error(Call&& call, const std::string& argument, std::initializer_list<std::string> fragments) {
  try {
    call();
    FAIL("no ArgumentError for '" << argument << "'");
  } catch (const dp::ArgumentError& e) {
    const std::string message = e.what();
    CAPTURE(message);
    CHECK(e.argument() == argument);
    for (const auto& fragment : fragments) CHECK(message.find(fragment) != std::string::npos);
  }
}

// A valid gated DeltaProduct backward call (B=2, T=5, H=3, K=4, V=6, n_h=2) that each test breaks in one way.
struct BackwardCall {
  reference::Problem p = reference::random_problem(2, 5, 3, 4, 6, 2, true, 2.0, true, 99);
  reference::LossWeights w = reference::random_loss_weights(p, 98);
  harness::Buffers<float> b{p};
  GradientBuffers<float> g{p, w};
  dp::GatedDeltaProduct<float, 2> model;
  dp::DeltaInputs<float> in = b.delta_inputs(p);
  dp::OutputGradients<float> out = g.output_gradients(p);
  dp::DeltaGradients<float> grads = g.delta(p);
  dp::CpuBackend backend = dp::cpu;

  void run() { dp::backward(backend, model, in, out, grads); }
};

}  // namespace

TEST_CASE("the baseline backward call is valid and writes every gradient") {
  BackwardCall c;
  CHECK_NOTHROW(c.run());
  for (const auto* x : {&c.g.q, &c.g.k, &c.g.v, &c.g.beta, &c.g.g, &c.g.initial_state})
    for (float e : *x) CHECK(std::isfinite(e));
}

TEST_CASE("gradient views of the wrong shape name the gradient, the expected layout and the actual extents") {
  SUBCASE("gradients.k with T rows instead of T * n_h") {
    BackwardCall c;
    c.grads.k = dp::make_view(c.g.k.data(), {2, 5, 3, 4});
    expect_argument_error([&] { c.run(); }, "gradients.k", {"[B, T*n_h, H, K] = [2, 10, 3, 4]", "[2, 5, 3, 4]"});
  }
  SUBCASE("gradients.q with another key dimension") {
    BackwardCall c;
    c.grads.q = dp::make_view(c.g.q.data(), {2, 5, 3, 3});
    expect_argument_error([&] { c.run(); }, "gradients.q", {"[B, T, H, K] = [2, 5, 3, 4]", "[2, 5, 3, 3]"});
  }
  SUBCASE("gradients.v with another value dimension") {
    BackwardCall c;
    c.grads.v = dp::make_view(c.g.v.data(), {2, 10, 3, 5});
    expect_argument_error([&] { c.run(); }, "gradients.v", {"[2, 10, 3, 6]", "[2, 10, 3, 5]"});
  }
  SUBCASE("gradients.beta with T rows") {
    BackwardCall c;
    c.grads.beta = dp::make_view(c.g.beta.data(), {2, 5, 3});
    expect_argument_error([&] { c.run(); }, "gradients.beta", {"[B, T*n_h, H] = [2, 10, 3]", "[2, 5, 3]"});
  }
  SUBCASE("gradients.g of the wrong length") {
    BackwardCall c;
    c.grads.g = dp::make_view(c.g.g.data(), {2, 4, 3});
    expect_argument_error([&] { c.run(); }, "gradients.g", {"[B, T, H] = [2, 5, 3]", "[2, 4, 3]"});
  }
  SUBCASE("gradients.g for an ungated model") {
    BackwardCall c;
    c.in.g = {};
    dp::DeltaProduct<float, 2> ungated;
    expect_argument_error([&] { dp::backward(dp::cpu, ungated, c.in, c.out, c.grads); }, "gradients.g",
                          {"Gating::none", "[2, 5, 3]"});
  }
  SUBCASE("gradients.initial_state with the wrong number of sequences") {
    BackwardCall c;
    c.grads.initial_state = dp::make_view(c.g.initial_state.data(), {1, 3, 4, 6});
    expect_argument_error([&] { c.run(); }, "gradients.initial_state", {"[N, H, K, V] = [2, 3, 4, 6]", "[1, 3, 4, 6]"});
  }
  SUBCASE("output_gradients.o of the wrong shape, or absent") {
    BackwardCall c;
    c.out.o = dp::make_view(c.g.output.data(), {2, 5, 3, 5});
    expect_argument_error([&] { c.run(); }, "output_gradients.o", {"[B, T, H, V] = [2, 5, 3, 6]", "[2, 5, 3, 5]"});
    c.out.o = {};
    expect_argument_error([&] { c.run(); }, "output_gradients.o", {"absent"});
  }
  SUBCASE("output_gradients.final_state of the wrong shape") {
    BackwardCall c;
    c.out.final_state = dp::make_view(c.g.final_state.data(), {2, 3, 6, 4});
    expect_argument_error([&] { c.run(); }, "output_gradients.final_state", {"[2, 3, 4, 6]", "[2, 3, 6, 4]"});
  }
  SUBCASE("a broadcast (zero-stride) gradient view") {
    BackwardCall c;
    c.grads.v = dp::make_view(c.g.v.data(), {2, 10, 3, 6}, {180, 0, 6, 1});
    expect_argument_error([&] { c.run(); }, "gradients.v", {"non-zero strides", "stride 0 in dimension 1"});
  }
  SUBCASE("a null gradient view with extents") {
    BackwardCall c;
    c.grads.q = dp::View<float, 4>(nullptr, {2, 5, 3, 4});
    expect_argument_error([&] { c.run(); }, "gradients.q", {"null data"});
  }
  SUBCASE("nothing is written before a rejected call returns") {
    BackwardCall c;
    c.grads.initial_state = dp::make_view(c.g.initial_state.data(), {1, 3, 4, 6});
    CHECK_THROWS_AS(c.run(), dp::ArgumentError);
    for (const auto* x : {&c.g.q, &c.g.k, &c.g.v, &c.g.beta, &c.g.g})
      for (float e : *x) CHECK(std::isnan(e));
  }
}

TEST_CASE("the backward checks the forward's inputs, values and backend as forward does") {
  SUBCASE("k with T rows") {
    BackwardCall c;
    c.in.k = dp::make_view(c.b.k.data(), {2, 5, 3, 4});
    expect_argument_error([&] { c.run(); }, "k", {"[B, T*n_h, H, K] = [2, 10, 3, 4]"});
  }
  SUBCASE("beta outside the range") {
    BackwardCall c;
    c.b.beta[7] = 2.5f;
    expect_argument_error([&] { c.run(); }, "beta", {"[0, 2]", "2.5"});
  }
  SUBCASE("positive g") {
    BackwardCall c;
    c.b.g[3] = 0.5f;
    expect_argument_error([&] { c.run(); }, "g", {"<= 0", "0.5"});
  }
  SUBCASE("a chunk size of 0") {
    BackwardCall c;
    c.backend.chunk_size = 0;
    expect_argument_error([&] { c.run(); }, "backend.chunk_size", {">= 1", "0"});
  }
  SUBCASE("diagonal: gradients.a of the wrong shape, and a outside the range") {
    const auto p = reference::random_problem(1, 3, 1, 2, 2, 1, false, 1.0, false, 97);
    std::vector<double> a(6, 0.5);
    const auto w = reference::random_loss_weights(p, 96);
    harness::Buffers<double> b(p, a);
    GradientBuffers<double> g(p, w);
    auto grads = g.diagonal(p);
    grads.a = dp::make_view(g.a.data(), {1, 3, 1, 1});
    dp::DiagonalLrnn<double> model;
    expect_argument_error([&] { dp::backward(dp::cpu, model, b.diagonal_inputs(p), g.output_gradients(p), grads); },
                          "gradients.a", {"[B, T, H, K] = [1, 3, 1, 2]", "[1, 3, 1, 1]"});
    b.a[5] = -1.5;
    expect_argument_error(
        [&] { dp::backward(dp::cpu, model, b.diagonal_inputs(p), g.output_gradients(p), g.diagonal(p)); }, "a",
        {"[-1, 1]", "-1.5"});
  }
}

TEST_CASE("the backward runs in a simulated number format, sequential and chunked") {
  // bfloat16 (eps = 2^-8 = 0.39%) for every operation of the backward: the gradients of this 20-token problem land
  // within a few percent of double's (about 1-2.5% observed). 20 eps = 7.8% still catches any wrong term, which
  // errs by O(1).
  auto p = reference::random_problem(1, 20, 2, 4, 3, 2, true, 2.0, true, 160);
  const auto w = reference::random_loss_weights(p, 161);
  const auto expected = delta_backward<dp::GatedDeltaProduct<double, 2>>(p, w, sequential);
  constexpr double bf16_tolerance = 20.0 / 256.0;
  using Model = dp::GatedDeltaProduct<dp::bf16, 2>;
  for (const dp::CpuBackend backend : {sequential, chunked(8)}) {
    CAPTURE(static_cast<int>(backend.algorithm));
    check_gradients(delta_backward<Model, double>(p, w, backend), expected, bf16_tolerance);
  }
}
