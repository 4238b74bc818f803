// The chunked form of the CPU forward pass (cpu/chunked.hpp) against the independent double reference, against the
// token loop, and across the ways work is split over threads; plus the backend's algorithm choice and its errors.
#include <doctest/doctest.h>

#include <cmath>
#include <deltaproduct/precision/precision.hpp>
#include <random>
#include <string>

#include "support/harness.hpp"

namespace dp = deltaproduct;
using dp::CpuAlgorithm;
using dp::EigenvalueRange;
using dp::Gating;

namespace {

dp::CpuBackend chunked(int chunk_size, int threads = 0) {
  return dp::CpuBackend{.threads = threads, .algorithm = CpuAlgorithm::chunked, .chunk_size = chunk_size};
}

dp::CpuBackend sequential(int threads = 0) {
  return dp::CpuBackend{.threads = threads, .algorithm = CpuAlgorithm::sequential};
}

struct Shape {
  int B, T, H, K, V;
};

// T = 1, T prime (never a multiple of the chunk), K != V, K = 1, V = 1, several heads and batch rows.
constexpr Shape shapes[] = {{1, 1, 1, 4, 4}, {2, 37, 3, 8, 5}, {1, 13, 2, 1, 7}, {3, 5, 1, 6, 1}, {1, 70, 2, 16, 12}};
// One token per chunk, a few, the default, and longer than every sequence here.
constexpr int chunk_sizes[] = {1, 3, 64, 100};

template <class T, int NH, EigenvalueRange Range, Gating Gate>
void check_delta_against_reference(bool with_initial_state, std::uint64_t seed) {
  using Model = dp::DeltaProduct<T, NH, Range, Gate>;
  for (const Shape& s : shapes) {
    const auto p = reference::random_problem(s.B, s.T, s.H, s.K, s.V, NH, Gate == Gating::scalar_decay,
                                             dp::max_beta(Range), with_initial_state, seed++);
    const auto expected = reference::delta_product(p);
    // harness::tolerance: 16 (T n_h + K) eps, the token loop's bound. The chunked form rounds in sums of at most
    // L = C n_h and K terms per chunk, with every factor bounded by the non-expansive transitions (|T_rs| <= b_r b_s
    // for unit keys), so the same count of roundings bounds it.
    const double tol = harness::tolerance<T>(p);
    for (int chunk : chunk_sizes) {
      CAPTURE(s.B);
      CAPTURE(s.T);
      CAPTURE(s.H);
      CAPTURE(s.K);
      CAPTURE(s.V);
      CAPTURE(chunk);
      const auto actual = harness::run_delta<Model>(p, {}, chunked(chunk));
      CHECK(reference::relative_max_error(actual.o, expected.o) <= tol);
      CHECK(reference::relative_max_error(actual.final_state, expected.final_state) <= tol);
    }
  }
}

template <class T, int NH>
void check_delta_all_ranges_and_gates() {
  CAPTURE(NH);
  for (bool init : {false, true}) {
    CAPTURE(init);
    check_delta_against_reference<T, NH, EigenvalueRange::unit, Gating::none>(init, 100);
    check_delta_against_reference<T, NH, EigenvalueRange::signed_unit, Gating::none>(init, 200);
    check_delta_against_reference<T, NH, EigenvalueRange::unit, Gating::scalar_decay>(init, 300);
    check_delta_against_reference<T, NH, EigenvalueRange::signed_unit, Gating::scalar_decay>(init, 400);
  }
}

/// Random decays a [B, T, H, K] of a range, with exact zeros and (signed range) exact -1 and 1 mixed in.
std::vector<double> random_decays(const reference::Problem& p, EigenvalueRange range, std::uint64_t seed) {
  std::vector<double> a(static_cast<std::size_t>(p.B) * p.T * p.H * p.K);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = unit(rng);
    a[i] = range == EigenvalueRange::unit ? x : 2.0 * x - 1.0;
    if (i % 17 == 3) a[i] = 0.0;
    if (i % 23 == 5) a[i] = range == EigenvalueRange::unit ? 1.0 : -1.0;
  }
  return a;
}

template <class T, EigenvalueRange Range>
void check_diagonal_against_reference(bool with_initial_state, std::uint64_t seed) {
  using Model = dp::DiagonalLrnn<T, Range>;
  for (const Shape& s : shapes) {
    auto p = reference::random_problem(s.B, s.T, s.H, s.K, s.V, 1, false, 1.0, with_initial_state, seed++);
    p.key_norm = 2;
    const auto a = random_decays(p, Range, seed++);
    const auto expected = reference::diagonal(p, a);
    // |a| <= 1: as for the token loop, rounding errors add up without growing; the intra-chunk weights M_ts are
    // K-term sums of products of at most C decays, each rounding once.
    const double tol = harness::tolerance<T>(p);
    for (int chunk : chunk_sizes) {
      CAPTURE(s.B);
      CAPTURE(s.T);
      CAPTURE(s.K);
      CAPTURE(s.V);
      CAPTURE(chunk);
      const auto actual = harness::run_diagonal<Model>(p, a, {}, chunked(chunk));
      CHECK(reference::relative_max_error(actual.o, expected.o) <= tol);
      CHECK(reference::relative_max_error(actual.final_state, expected.final_state) <= tol);
    }
  }
}

}  // namespace

TEST_CASE_TEMPLATE("chunked DeltaNet and DeltaProduct match the double reference, gated or not, both ranges", T, float,
                   double) {
  check_delta_all_ranges_and_gates<T, 1>();
  check_delta_all_ranges_and_gates<T, 2>();
  check_delta_all_ranges_and_gates<T, 3>();
  check_delta_all_ranges_and_gates<T, 4>();
}

TEST_CASE_TEMPLATE("chunked form: key and query normalisation options and the readout scale", T, float, double) {
  for (int key_norm : {0, 1, 2})
    for (int query_norm : {0, 1, 2}) {
      auto p = reference::random_problem(2, 11, 2, 6, 4, 2, true, 2.0, true, 7);
      p.key_norm = key_norm;
      p.query_norm = query_norm;
      p.scale = 0.7;
      if (key_norm == 0)  // raw keys: keep beta |k|^2 <= 2 so the transitions stay non-expansive
        for (double& b : p.beta) b *= 0.25;
      CAPTURE(key_norm);
      CAPTURE(query_norm);
      const auto expected = reference::delta_product(p);
      const auto actual = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p, {}, chunked(4));
      CHECK(reference::relative_max_error(actual.o, expected.o) <= harness::tolerance<T>(p));
      CHECK(reference::relative_max_error(actual.final_state, expected.final_state) <= harness::tolerance<T>(p));
    }
}

TEST_CASE_TEMPLATE("chunked form: variable-length batches with empty and one-token sequences", T, float, double) {
  auto p = reference::random_problem(1, 40, 3, 8, 6, 2, true, 2.0, true, 21);
  p.cu_seqlens = {0, 7, 7, 8, 29, 40};  // lengths 7, 0, 1, 21, 11
  p.initial_state.resize(static_cast<std::size_t>(5) * 3 * 8 * 6);
  for (std::size_t i = 0; i < p.initial_state.size(); ++i) p.initial_state[i] = std::cos(double(i));
  const auto expected = reference::delta_product(p);
  for (int chunk : chunk_sizes) {
    CAPTURE(chunk);
    const auto actual = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p, {}, chunked(chunk));
    CHECK(reference::relative_max_error(actual.o, expected.o) <= harness::tolerance<T>(p));
    CHECK(reference::relative_max_error(actual.final_state, expected.final_state) <= harness::tolerance<T>(p));
  }
  // Without an initial state the empty sequence's final state is zero.
  p.initial_state.clear();
  const auto zero_start = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p, {}, chunked(3));
  const std::size_t block = static_cast<std::size_t>(p.H) * p.K * p.V;
  for (std::size_t i = block; i < 2 * block; ++i) REQUIRE(zero_start.final_state[i] == 0.0);
}

TEST_CASE_TEMPLATE("chunked diagonal LRNN matches the reference, with zero and negative decays", T, float, double) {
  for (bool init : {false, true}) {
    CAPTURE(init);
    check_diagonal_against_reference<T, EigenvalueRange::unit>(init, 500);
    check_diagonal_against_reference<T, EigenvalueRange::signed_unit>(init, 600);
  }
  SUBCASE("variable-length sequences") {
    auto p = reference::random_problem(1, 30, 2, 5, 4, 1, false, 1.0, true, 61);
    p.cu_seqlens = {0, 11, 11, 12, 30};
    p.initial_state.resize(static_cast<std::size_t>(4) * 2 * 5 * 4, 0.5);
    const auto a = random_decays(p, EigenvalueRange::signed_unit, 62);
    const auto expected = reference::diagonal(p, a);
    for (int chunk : chunk_sizes) {
      CAPTURE(chunk);
      const auto actual = harness::run_diagonal<dp::DiagonalLrnn<T>>(p, a, {}, chunked(chunk));
      CHECK(reference::relative_max_error(actual.o, expected.o) <= harness::tolerance<T>(p));
      CHECK(reference::relative_max_error(actual.final_state, expected.final_state) <= harness::tolerance<T>(p));
    }
  }
}

TEST_CASE("chunked diagonal LRNN: decay -1 flips the sign across chunk boundaries (parity), exactly") {
  // K = V = 1, q = 1, k = v = 0: h_t = (-1)^(ones so far) h_0. Products of +-1 are exact in any order.
  const std::vector<int> bits{1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0};
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
  dp::forward(chunked(4), model, in,
              dp::ForwardOutputs<double>{.o = dp::make_view(o.data(), {1, T, 1, 1}),
                                         .final_state = dp::make_view(hT.data(), {1, 1, 1, 1})});
  int ones = 0;
  for (int t = 0; t < T; ++t) {
    ones += bits[t];
    CHECK(o[t] == (ones % 2 ? -1.0 : 1.0));
  }
  CHECK(hT[0] == (ones % 2 ? -1.0 : 1.0));
}

TEST_CASE_TEMPLATE("chunked and sequential forms agree on the same inputs", T, float, double) {
  const auto p = reference::random_problem(2, 200, 3, 16, 24, 2, true, 2.0, true, 71);
  const auto token_loop = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p, {}, sequential());
  const auto chunk_form = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p, {}, chunked(64));
  // Both are within 16 (T n_h + K) eps of the exact result, so within twice that of each other.
  CHECK(reference::relative_max_error(chunk_form.o, token_loop.o) <= 2 * harness::tolerance<T>(p));
  CHECK(reference::relative_max_error(chunk_form.final_state, token_loop.final_state) <= 2 * harness::tolerance<T>(p));
}

TEST_CASE("value columns are split into blocks only when (sequence, head) pairs are fewer than workers") {
  const auto one = dp::detail::value_column_blocks(8, 2, 128);
  CHECK(one.count == 1);
  CHECK(one.width == 128);
  const auto two = dp::detail::value_column_blocks(1, 2, 128);
  CHECK(two.count == 2);
  CHECK(two.width == 64);
  // 3 blocks of 40 columns: 14, 14 and 12.
  const auto odd = dp::detail::value_column_blocks(1, 3, 40);
  CHECK(odd.count == 3);
  CHECK(odd.block(1).begin == 14);
  CHECK(odd.block(2).begin == 28);
  CHECK(odd.block(2).end == 40);
  // 5 pairs on 8 workers: 2 blocks each.
  CHECK(dp::detail::value_column_blocks(5, 8, 64).count == 2);
  const auto narrow = dp::detail::value_column_blocks(1, 8, 3);
  CHECK(narrow.count == 3);
  CHECK(narrow.width == 1);
  CHECK(dp::detail::value_column_blocks(1, 8, 1).count == 1);
}

TEST_CASE_TEMPLATE("splitting value columns over threads gives the token loop's bits exactly", T, float, double) {
  // One sequence and one head, large enough (T n_h K V >= 2^17) that the call uses threads: 2 and 3 workers split V.
  auto p = reference::random_problem(1, 300, 1, 16, 40, 2, true, 2.0, true, 72);
  const auto whole = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p, {}, sequential(1));
  for (int threads : {2, 3}) {
    CAPTURE(threads);
    const auto split = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p, {}, sequential(threads));
    CHECK(split.o == whole.o);
    CHECK(split.final_state == whole.final_state);
  }
  std::vector<double> a(static_cast<std::size_t>(p.T) * p.K);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::cos(0.1 * double(i));
  const auto diagonal_whole = harness::run_diagonal<dp::DiagonalLrnn<T>>(p, a, {}, sequential(1));
  const auto diagonal_split = harness::run_diagonal<dp::DiagonalLrnn<T>>(p, a, {}, sequential(2));
  CHECK(diagonal_split.o == diagonal_whole.o);
  CHECK(diagonal_split.final_state == diagonal_whole.final_state);
}

TEST_CASE_TEMPLATE("splitting value columns over threads: the chunked form agrees with itself", T, float, double) {
  auto p = reference::random_problem(1, 300, 1, 16, 40, 2, true, 2.0, true, 73);
  const auto whole = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p, {}, chunked(32, 1));
  // Each block repeats the same operations on its columns; only the blocking of Eigen's products may differ.
  const double tol = 8.0 * static_cast<double>(std::numeric_limits<T>::epsilon()) * p.K;
  for (int threads : {2, 3}) {
    CAPTURE(threads);
    const auto split = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p, {}, chunked(32, threads));
    CHECK(reference::relative_max_error(split.o, whole.o) <= tol);
    CHECK(reference::relative_max_error(split.final_state, whole.final_state) <= tol);
  }
  std::vector<double> a(static_cast<std::size_t>(p.T) * p.K);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::cos(0.1 * double(i));
  const auto diagonal_whole = harness::run_diagonal<dp::DiagonalLrnn<T>>(p, a, {}, chunked(32, 1));
  const auto diagonal_split = harness::run_diagonal<dp::DiagonalLrnn<T>>(p, a, {}, chunked(32, 2));
  CHECK(reference::relative_max_error(diagonal_split.o, diagonal_whole.o) <= tol);
  CHECK(reference::relative_max_error(diagonal_split.final_state, diagonal_whole.final_state) <= tol);
}

TEST_CASE("the result of the chunked form does not depend on the number of threads across pairs") {
  const auto p = reference::random_problem(3, 33, 5, 16, 16, 2, true, 2.0, true, 31);
  const auto one = harness::run_delta<dp::GatedDeltaProduct<float, 2>>(p, {}, chunked(8, 1));
  for (int threads : {2, 4}) {
    const auto many = harness::run_delta<dp::GatedDeltaProduct<float, 2>>(p, {}, chunked(8, threads));
    CHECK(many.o == one.o);
    CHECK(many.final_state == one.final_state);
  }
}

TEST_CASE("automatic: chunked for float and double when a sequence spans more than one chunk, else sequential") {
  const auto p = reference::random_problem(1, 40, 2, 8, 8, 1, false, 2.0, true, 74);
  const auto token_loop = harness::run_delta<dp::DeltaNet<float>>(p, {}, sequential());
  const auto chunk_form = harness::run_delta<dp::DeltaNet<float>>(p, {}, chunked(16));
  REQUIRE(chunk_form.o != token_loop.o);  // the two orders of rounding differ on this input
  const dp::CpuBackend longer_than_chunk{.chunk_size = 16}, one_chunk{.chunk_size = 40};
  CHECK(harness::run_delta<dp::DeltaNet<float>>(p, {}, longer_than_chunk).o == chunk_form.o);
  CHECK(harness::run_delta<dp::DeltaNet<float>>(p, {}, one_chunk).o == token_loop.o);
  // Simulated formats keep the token loop, whose every operation rounds once in the format.
  const auto bf16_loop = harness::run_delta<dp::DeltaNet<dp::bf16>, double>(p, {}, sequential());
  CHECK(harness::run_delta<dp::DeltaNet<dp::bf16>, double>(p, {}, longer_than_chunk).o == bf16_loop.o);
  // Variable-length batches: the longest sequence decides.
  auto varlen = p;
  varlen.cu_seqlens = {0, 10, 40};
  varlen.initial_state.resize(static_cast<std::size_t>(2) * 2 * 8 * 8, 0.1);
  const auto varlen_chunked = harness::run_delta<dp::DeltaNet<float>>(varlen, {}, chunked(16));
  CHECK(harness::run_delta<dp::DeltaNet<float>>(varlen, {}, longer_than_chunk).o == varlen_chunked.o);
  const auto varlen_loop = harness::run_delta<dp::DeltaNet<float>>(varlen, {}, sequential());
  CHECK(harness::run_delta<dp::DeltaNet<float>>(varlen, {}, dp::CpuBackend{.chunk_size = 30}).o == varlen_loop.o);
}

TEST_CASE("step() stays sequential whatever the backend's algorithm") {
  const auto p = reference::random_problem(2, 1, 2, 6, 5, 2, true, 2.0, true, 75);
  const auto full = harness::run_delta<dp::GatedDeltaProduct<float, 2>>(p, {}, sequential());
  dp::GatedDeltaProduct<float, 2> model;
  harness::configure(model.options, p);
  harness::Buffers<float> b(p);
  std::vector<float> state = b.initial_state, o(static_cast<std::size_t>(p.B) * p.H * p.V);
  const dp::DeltaStepInputs<float> in{.q = dp::make_view(b.q.data(), {p.B, p.H, p.K}),
                                      .k = dp::make_view(b.k.data(), {p.B, 2, p.H, p.K}),
                                      .v = dp::make_view(b.v.data(), {p.B, 2, p.H, p.V}),
                                      .beta = dp::make_view(b.beta.data(), {p.B, 2, p.H}),
                                      .g = dp::make_view(b.g.data(), {p.B, p.H})};
  dp::step(chunked(1), model, in, dp::make_view(state.data(), {p.B, p.H, p.K, p.V}),
           dp::make_view(o.data(), {p.B, p.H, p.V}));
  CHECK(harness::to_double(o) == full.o);
  CHECK(harness::to_double(state) == full.final_state);
}

TEST_CASE("a chunk size below 1 is an ArgumentError naming backend.chunk_size") {
  const auto p = reference::random_problem(1, 4, 1, 2, 2, 1, false, 2.0, false, 76);
  for (int bad : {0, -3}) {
    CAPTURE(bad);
    for (auto algorithm : {CpuAlgorithm::automatic, CpuAlgorithm::sequential, CpuAlgorithm::chunked}) {
      try {
        (void)harness::run_delta<dp::DeltaNet<double>>(p, {},
                                                       dp::CpuBackend{.algorithm = algorithm, .chunk_size = bad});
        FAIL("no ArgumentError");
      } catch (const dp::ArgumentError& e) {
        CHECK(e.argument() == "backend.chunk_size");
        CHECK(std::string(e.what()).find(std::to_string(bad)) != std::string::npos);
      }
    }
  }
}

TEST_CASE_TEMPLATE("chunked form: the final state may be the initial state's memory", T, float, double) {
  const auto p = reference::random_problem(2, 45, 2, 6, 7, 2, true, 2.0, true, 77);
  const auto separate = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p, {}, chunked(8));
  dp::GatedDeltaProduct<T, 2> model;
  harness::configure(model.options, p);
  SUBCASE("state in the model's scalar: updated in place") {
    harness::Buffers<T> b(p);
    auto in = b.delta_inputs(p);
    auto out = b.outputs(p);
    out.final_state = dp::make_view(b.initial_state.data(), {p.B, p.H, p.K, p.V});
    dp::forward(chunked(8), model, in, out);
    CHECK(harness::to_double(b.initial_state) == separate.final_state);
    CHECK(harness::to_double(b.o) == separate.o);
  }
  SUBCASE("state in double, model in T: converted through a per-thread buffer") {
    harness::Buffers<T> b(p);
    std::vector<double> state = p.initial_state;
    for (double& x : state) x = static_cast<double>(static_cast<T>(x));
    const dp::DeltaInputs<T, double> in{.q = dp::make_view(b.q.data(), {p.B, p.T, p.H, p.K}),
                                        .k = dp::make_view(b.k.data(), {p.B, p.T * 2, p.H, p.K}),
                                        .v = dp::make_view(b.v.data(), {p.B, p.T * 2, p.H, p.V}),
                                        .beta = dp::make_view(b.beta.data(), {p.B, p.T * 2, p.H}),
                                        .g = dp::make_view(b.g.data(), {p.B, p.T, p.H}),
                                        .initial_state = dp::make_view(state.data(), {p.B, p.H, p.K, p.V})};
    dp::forward(chunked(8), model, in,
                dp::ForwardOutputs<T, double>{.o = dp::make_view(b.o.data(), {p.B, p.T, p.H, p.V}),
                                              .final_state = dp::make_view(state.data(), {p.B, p.H, p.K, p.V})});
    CHECK(state == separate.final_state);  // the state is T inside; converting T -> double -> T is exact
    CHECK(harness::to_double(b.o) == separate.o);
  }
}

TEST_CASE("chunked form: strided views give the same bits as dense ones") {
  auto p = reference::random_problem(2, 17, 3, 5, 4, 1, false, 2.0, true, 41);
  const auto dense = harness::run_delta<dp::DeltaNet<double>>(p, {}, chunked(4));

  // Token data stored head-major ([B, H, T, X]) and passed with strides; the state with padded rows, and the
  // outputs with every element two apart.
  const int B = p.B, T = p.T, H = p.H, K = p.K, V = p.V, pad = 3;
  std::vector<double> q(p.q.size()), k(p.k.size()), v(p.v.size()), beta(p.beta.size());
  std::vector<double> o(2 * dense.o.size(), 0.0), initial(static_cast<std::size_t>(B) * H * K * (V + pad), 0.0),
      final_state(initial.size(), 0.0);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h) {
        const std::size_t src = (static_cast<std::size_t>(b) * T + t) * H + h;
        const std::size_t dst = (static_cast<std::size_t>(b) * H + h) * T + t;
        for (int i = 0; i < K; ++i) q[dst * K + i] = p.q[src * K + i], k[dst * K + i] = p.k[src * K + i];
        for (int i = 0; i < V; ++i) v[dst * V + i] = p.v[src * V + i];
        beta[dst] = p.beta[src];
      }
  for (std::size_t row = 0; row < static_cast<std::size_t>(B) * H * K; ++row)
    for (int j = 0; j < V; ++j) initial[row * (V + pad) + j] = p.initial_state[row * V + j];
  dp::DeltaNet<double> model;
  harness::configure(model.options, p);
  const dp::index_t state_strides[] = {H * K * (V + pad), K * (V + pad), V + pad, 1};
  const dp::DeltaInputs<double> in{
      .q = dp::make_view(q.data(), {B, T, H, K}, {H * T * K, K, T * K, 1}),
      .k = dp::make_view(k.data(), {B, T, H, K}, {H * T * K, K, T * K, 1}),
      .v = dp::make_view(v.data(), {B, T, H, V}, {H * T * V, V, T * V, 1}),
      .beta = dp::make_view(beta.data(), {B, T, H}, {H * T, 1, T}),
      .initial_state = dp::make_view(initial.data(), {B, H, K, V},
                                     {state_strides[0], state_strides[1], state_strides[2], state_strides[3]})};
  dp::forward(chunked(4), model, in,
              dp::ForwardOutputs<double>{
                  .o = dp::make_view(o.data(), {B, T, H, V}, {2 * T * H * V, 2 * H * V, 2 * V, 2}),
                  .final_state = dp::make_view(final_state.data(), {B, H, K, V},
                                               {state_strides[0], state_strides[1], state_strides[2], 1})});
  for (std::size_t i = 0; i < dense.o.size(); ++i) REQUIRE(o[2 * i] == dense.o[i]);
  for (std::size_t row = 0; row < static_cast<std::size_t>(B) * H * K; ++row)
    for (int j = 0; j < V; ++j) REQUIRE(final_state[row * (V + pad) + j] == dense.final_state[row * V + j]);
}

TEST_CASE("a long float run (T = 65536, beta in [0, 2], unit keys) stays close to the double token loop") {
  // One head, K = V = 16. Every transition is non-expansive and random betas make them contract on average, so
  // rounding errors of old chunks fade instead of adding up: the float error stays at the level of a few chunks'
  // roundings (about 6e-7, 5 float eps, relative to the largest entry). 1e-4 leaves two orders of magnitude of
  // margin; errors that grew along the sequence or through the triangular solve would exceed it by far.
  auto p = reference::random_problem(1, 65536, 1, 16, 16, 1, false, 2.0, true, 78);
  const auto exact = harness::run_delta<dp::DeltaNet<double>>(p, {}, sequential());
  const auto fast = harness::run_delta<dp::DeltaNet<float>>(p, {}, chunked(64));
  const double error_o = reference::relative_max_error(fast.o, exact.o);
  const double error_state = reference::relative_max_error(fast.final_state, exact.final_state);
  MESSAGE("T = 65536 float chunked vs double: o " << error_o << ", final state " << error_state);
  CHECK(error_o <= 1e-4);
  CHECK(error_state <= 1e-4);
}

TEST_CASE("a simulated format runs the chunked form: bf16 stays within bf16 precision of double") {
  auto p = reference::random_problem(1, 24, 2, 8, 6, 2, true, 2.0, true, 79);
  const auto expected = reference::delta_product(p);
  const auto bf16 = harness::run_delta<dp::GatedDeltaProduct<dp::bf16, 2>, double>(p, {}, chunked(5));
  // bf16 keeps 8 significant bits (eps = 2^-8 = 0.4%). T = 24 tokens in 5 chunks, each rounding in sums of up to
  // L = 10 and K = 8 terms: about 1.5% of the largest entry is measured; 5% allows for that count of roundings,
  // while a wrong formula is off by O(1).
  const double error_o = reference::relative_max_error(bf16.o, expected.o);
  const double error_state = reference::relative_max_error(bf16.final_state, expected.final_state);
  MESSAGE("bf16 chunked vs double reference: o " << error_o << ", final state " << error_state);
  CHECK(error_o <= 0.05);
  CHECK(error_state <= 0.05);

  std::vector<double> a(static_cast<std::size_t>(p.T) * p.H * p.K);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::cos(0.3 * double(i));
  const auto diagonal_expected = reference::diagonal(p, a);
  const auto diagonal_bf16 = harness::run_diagonal<dp::DiagonalLrnn<dp::bf16>, double>(p, a, {}, chunked(5));
  CHECK(reference::relative_max_error(diagonal_bf16.o, diagonal_expected.o) <= 0.05);
  CHECK(reference::relative_max_error(diagonal_bf16.final_state, diagonal_expected.final_state) <= 0.05);
}

TEST_CASE_TEMPLATE("normalize_rows equals normalize row by row, bit for bit", T, float, double, dp::bf16) {
  std::mt19937_64 rng(80);
  std::normal_distribution<double> normal(0.0, 3.0);
  const Eigen::Index rows = 37, cols = 21;
  dp::detail::ChunkMatrix<T> block(rows, cols);
  for (auto mode : {dp::Normalization::none, dp::Normalization::l2, dp::Normalization::l2_eps}) {
    for (Eigen::Index r = 0; r < rows; ++r)
      for (Eigen::Index i = 0; i < cols; ++i) block(r, i) = static_cast<T>(r == 5 ? 0.0 : normal(rng));
    dp::detail::ChunkMatrix<T> expected = block;
    for (Eigen::Index r = 0; r < rows; ++r) {
      dp::RowVector<T> row = expected.row(r);
      dp::normalize(row, mode, 1e-3);
      expected.row(r) = row;
    }
    dp::detail::normalize_rows<T>(block, mode, 1e-3);
    for (Eigen::Index r = 0; r < rows; ++r)
      for (Eigen::Index i = 0; i < cols; ++i)
        REQUIRE(static_cast<double>(block(r, i)) == static_cast<double>(expected(r, i)));
  }
}
