// The CUDA recurrent kernel (decode.cuh): step(), the state-pool step() and detail::cuda_recurrent_forward() equal
// the CPU backend's sequential forward pass in double on the same rounded inputs, for every model variant; value
// violations are reported through check_status() with nothing written; bad arguments throw before any launch.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deltaproduct/cuda/decode.cuh>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cuda/cpu_reference.hpp"
#include "cuda/gpu_harness.cuh"
#include "support/reference.hpp"

namespace dp = deltaproduct;
using gpu_harness::DeviceBuffer;

namespace {

using bf16 = __nv_bfloat16;
using fp16 = __half;
constexpr auto signed_unit = dp::EigenvalueRange::signed_unit;
constexpr auto unit = dp::EigenvalueRange::unit;
constexpr auto gated = dp::Gating::scalar_decay;
constexpr auto ungated = dp::Gating::none;

/// Unit roundoff of the output element type: o is computed in fp32 and rounded once to T.
template <class T>
constexpr double output_roundoff() {
  if constexpr (std::is_same_v<T, bf16>)
    return 0x1p-8;  // 8 significant bits
  else if constexpr (std::is_same_v<T, fp16>)
    return 0x1p-11;  // 11 significant bits
  else
    return 0x1p-24;
}

/// The fp32 arithmetic's bound, as the CPU tests state it: every transition has spectral norm <= 1 (unit keys,
/// beta in [0, 2], gate <= 1), so rounding errors add up rather than grow; each of the T*n_h micro-steps and each
/// K-term sum contributes a few ulps (fused multiply-adds and shuffle-tree sums order them differently from the
/// CPU's). 16 (T n_h + K) eps_fp32 is a loose multiple of that count, relative to the largest reference entry.
inline double fp32_bound(const reference::Problem& p) {
  return 16.0 * (static_cast<double>(p.T) * p.n_h + p.K) * 0x1p-23;
}

/// Rounds a problem's token data to T and its initial state to fp32, in place: the reference then runs on exactly the
/// values the GPU reads.
template <class T>
void round_inputs(reference::Problem& p) {
  gpu_harness::round_in_place<T>(p.q);
  gpu_harness::round_in_place<T>(p.k);
  gpu_harness::round_in_place<T>(p.v);
  gpu_harness::round_in_place<T>(p.beta);
  gpu_harness::round_in_place<T>(p.g);
  gpu_harness::round_in_place<float>(p.initial_state);
}

template <class Model>
void configure(Model& model, const reference::Problem& p) {
  auto mode = [](int m) {
    return m == 0 ? dp::Normalization::none : m == 1 ? dp::Normalization::l2 : dp::Normalization::l2_eps;
  };
  model.options.key_normalization = mode(p.key_norm);
  model.options.query_normalization = mode(p.query_norm);
  model.options.normalization_eps = p.eps;
  model.options.scale = p.scale;
}

/// Device copies of a problem's inputs in element type T.
template <class T>
struct DeviceInputs {
  DeviceBuffer<T> q, k, v, beta, g;
  DeviceBuffer<float> initial_state;
  DeviceBuffer<std::int64_t> cu_seqlens;

  explicit DeviceInputs(const reference::Problem& p)
      : q(gpu_harness::round_all<T>(p.q)),
        k(gpu_harness::round_all<T>(p.k)),
        v(gpu_harness::round_all<T>(p.v)),
        beta(gpu_harness::round_all<T>(p.beta)),
        g(gpu_harness::round_all<T>(p.g)),
        initial_state(gpu_harness::round_all<float>(p.initial_state)),
        cu_seqlens(p.cu_seqlens) {}
};

/// The GPU's answer as doubles.
struct GpuResult {
  std::vector<double> o, final_state;
};

/// T calls of step() on a state advanced in place; token t's inputs addressed by strides into [B, T, ...] buffers.
template <class Model, class T>
GpuResult gpu_steps(const reference::Problem& p, Model model, const dp::CudaBackend& backend) {
  configure(model, p);
  DeviceInputs<T> d(p);
  DeviceBuffer<float> state(gpu_harness::round_all<float>(p.initial_state));
  DeviceBuffer<T> o(static_cast<std::size_t>(p.B) * p.T * p.H * p.V);
  const dp::index_t n_h = p.n_h, R = static_cast<dp::index_t>(p.T) * n_h, H = p.H, K = p.K, V = p.V;
  for (int t = 0; t < p.T; ++t) {
    dp::DeltaStepInputs<T> in{
        .q = dp::make_view<const T>(d.q.data() + t * H * K, {p.B, H, K}, {p.T * H * K, K, 1}),
        .k = dp::make_view<const T>(d.k.data() + t * n_h * H * K, {p.B, n_h, H, K}, {R * H * K, H * K, K, 1}),
        .v = dp::make_view<const T>(d.v.data() + t * n_h * H * V, {p.B, n_h, H, V}, {R * H * V, H * V, V, 1}),
        .beta = dp::make_view<const T>(d.beta.data() + t * n_h * H, {p.B, n_h, H}, {R * H, H, 1})};
    if (p.gated) in.g = dp::make_view<const T>(d.g.data() + t * H, {p.B, H}, {p.T * H, 1});
    dp::step(backend, model, in, dp::make_view(state.data(), {p.B, H, K, V}),
             dp::make_view(o.data() + t * H * V, {p.B, H, V}, {p.T * H * V, V, 1}));
  }
  gpu_harness::synchronize();
  return {gpu_harness::widen_all(o.download()), gpu_harness::widen_all(state.download())};
}

/// detail::cuda_recurrent_forward over the whole problem (cu_seqlens, initial state when the problem has them).
template <class Model, class T>
GpuResult gpu_forward(const reference::Problem& p, Model model, const dp::CudaBackend& backend) {
  configure(model, p);
  DeviceInputs<T> d(p);
  const dp::index_t R = static_cast<dp::index_t>(p.T) * p.n_h, N = p.sequences();
  DeviceBuffer<T> o(static_cast<std::size_t>(p.B) * p.T * p.H * p.V);
  DeviceBuffer<float> final_state(static_cast<std::size_t>(N) * p.H * p.K * p.V);
  dp::DeltaInputs<T, float> in{.q = dp::make_view<const T>(d.q.data(), {p.B, p.T, p.H, p.K}),
                               .k = dp::make_view<const T>(d.k.data(), {p.B, R, p.H, p.K}),
                               .v = dp::make_view<const T>(d.v.data(), {p.B, R, p.H, p.V}),
                               .beta = dp::make_view<const T>(d.beta.data(), {p.B, R, p.H})};
  if (p.gated) in.g = dp::make_view<const T>(d.g.data(), {p.B, p.T, p.H});
  if (!p.initial_state.empty())
    in.initial_state = dp::make_view<const float>(d.initial_state.data(), {N, p.H, p.K, p.V});
  if (!p.cu_seqlens.empty()) in.cu_seqlens = dp::make_view<const std::int64_t>(d.cu_seqlens.data(), {N + 1});
  const dp::ForwardOutputs<T, float> out{.o = dp::make_view(o.data(), {p.B, p.T, p.H, p.V}),
                                         .final_state = dp::make_view(final_state.data(), {N, p.H, p.K, p.V})};
  dp::detail::cuda_recurrent_forward(backend, model, in, out);
  gpu_harness::synchronize();
  return {gpu_harness::widen_all(o.download()), gpu_harness::widen_all(final_state.download())};
}

/// Compares a GPU result with the CPU backend in double on the same (rounded) inputs.
template <class T>
void check_against_cpu(const reference::Problem& p, const GpuResult& gpu) {
  const reference::Result cpu = cuda_test::cpu_forward_double(p);
  const double state_tolerance = fp32_bound(p);
  const double o_tolerance = output_roundoff<T>() + fp32_bound(p);
  CAPTURE(p.B);
  CAPTURE(p.T);
  CAPTURE(p.H);
  CAPTURE(p.K);
  CAPTURE(p.V);
  CAPTURE(p.n_h);
  CAPTURE(p.gated);
  CHECK(reference::relative_max_error(gpu.o, cpu.o) <= o_tolerance);
  CHECK(reference::relative_max_error(gpu.final_state, cpu.final_state) <= state_tolerance);
}

/// A random problem (keys L2-normalised by the model, beta in [0, beta_max], g in [-0.5, 0]) rounded to T.
template <class T>
reference::Problem rounded_problem(int B, int T_, int H, int K, int V, int n_h, bool is_gated, double beta_max,
                                   std::uint64_t seed) {
  reference::Problem p = reference::random_problem(B, T_, H, K, V, n_h, is_gated, beta_max, true, seed);
  round_inputs<T>(p);
  return p;
}

template <int N, dp::Gating G, dp::EigenvalueRange R, class T>
void check_steps(std::uint64_t seed) {
  gpu_harness::Workspace ws;
  const double beta_max = R == unit ? 1.0 : 2.0;
  const auto p = rounded_problem<T>(3, 3, 2, 128, 128, N, G == gated, beta_max, seed);
  check_against_cpu<T>(p, gpu_steps<dp::DeltaProduct<float, N, R, G>, T>(p, {}, ws.backend));
  dp::check_status(ws.backend);  // no violation recorded
}

}  // namespace

TEST_CASE_TEMPLATE("step() equals the CPU backend in double for n_h 1..3, gated or not, both ranges", T, bf16, fp16,
                   float) {
  SUBCASE("n_h = 1") {
    check_steps<1, ungated, signed_unit, T>(11);
    check_steps<1, gated, signed_unit, T>(12);
    check_steps<1, ungated, unit, T>(13);
    check_steps<1, gated, unit, T>(14);
  }
  SUBCASE("n_h = 2") {
    check_steps<2, ungated, signed_unit, T>(21);
    check_steps<2, gated, signed_unit, T>(22);
    check_steps<2, gated, unit, T>(23);
  }
  SUBCASE("n_h = 3") {
    check_steps<3, ungated, signed_unit, T>(31);
    check_steps<3, gated, signed_unit, T>(32);
    check_steps<3, ungated, unit, T>(33);
  }
}

TEST_CASE("step() with every key and query normalisation and a custom scale") {
  gpu_harness::Workspace ws;
  for (int key_norm = 0; key_norm < 3; ++key_norm)
    for (int query_norm = 0; query_norm < 3; ++query_norm) {
      auto p = reference::random_problem(2, 2, 3, 64, 64, 2, true, 2.0, true, 40 + 3 * key_norm + query_norm);
      if (key_norm == 0)
        p.k = [&] {  // unnormalised keys must be unit already, or the recurrence is not contractive
          reference::Problem unit_keys = p;
          for (std::size_t r = 0; r < p.k.size() / p.K; ++r) {
            const auto first = p.k.begin() + static_cast<std::ptrdiff_t>(r * p.K);
            std::vector<double> row(first, first + p.K);
            row = reference::normalized(row, 1, 0.0);
            std::copy(row.begin(), row.end(), unit_keys.k.begin() + static_cast<std::ptrdiff_t>(r * p.K));
          }
          return unit_keys.k;
        }();
      p.key_norm = key_norm;
      p.query_norm = query_norm;
      p.eps = 1e-3;  // large enough that l2_eps differs from l2 visibly in fp32
      p.scale = 0.3;
      round_inputs<float>(p);
      CAPTURE(key_norm);
      CAPTURE(query_norm);
      check_against_cpu<float>(p, gpu_steps<dp::GatedDeltaProduct<float, 2>, float>(p, {}, ws.backend));
    }
}

TEST_CASE("step() for K != V, small and odd sizes, K = 256, and V not a multiple of 4") {
  gpu_harness::Workspace ws;
  struct Shape {
    int K, V;
  };
  for (const Shape s : {Shape{64, 32}, Shape{32, 128}, Shape{32, 32}, Shape{48, 48}, Shape{128, 40}, Shape{256, 64},
                        Shape{100, 36}, Shape{16, 5}, Shape{7, 3}}) {
    CAPTURE(s.K);
    CAPTURE(s.V);
    const auto p = rounded_problem<bf16>(2, 2, 3, s.K, s.V, 2, true, 2.0, 50 + static_cast<std::uint64_t>(s.K + s.V));
    check_against_cpu<bf16>(p, gpu_steps<dp::GatedDeltaProduct<float, 2>, bf16>(p, {}, ws.backend));
  }
}

TEST_CASE("step() on a strided state (padded rows, no 16-byte path) equals step() on a dense one") {
  gpu_harness::Workspace ws;
  const auto p = rounded_problem<float>(2, 1, 2, 32, 32, 1, false, 2.0, 60);
  const int B = p.B, H = p.H, K = p.K, V = p.V, row_stride = V + 3;  // rows padded by 3 floats: misaligned rows
  std::vector<float> padded(static_cast<std::size_t>(B) * H * K * row_stride, -7.0f);
  for (int i = 0; i < B * H * K; ++i)
    for (int c = 0; c < V; ++c)
      padded[static_cast<std::size_t>(i) * row_stride + c] = static_cast<float>(p.initial_state[i * V + c]);
  DeviceBuffer<float> state(padded);
  DeviceInputs<float> d(p);
  DeviceBuffer<float> o(static_cast<std::size_t>(B) * H * V);
  const dp::DeltaStepInputs<float> in{.q = dp::make_view<const float>(d.q.data(), {B, H, K}),
                                      .k = dp::make_view<const float>(d.k.data(), {B, 1, H, K}),
                                      .v = dp::make_view<const float>(d.v.data(), {B, 1, H, V}),
                                      .beta = dp::make_view<const float>(d.beta.data(), {B, 1, H})};
  dp::DeltaNet<float> model;
  configure(model, p);
  dp::step(ws.backend, model, in,
           dp::make_view(state.data(), {B, H, K, V}, {H * K * row_stride, K * row_stride, row_stride, 1}),
           dp::make_view(o.data(), {B, H, V}));
  gpu_harness::synchronize();
  const std::vector<float> after = state.download();
  std::vector<double> dense(static_cast<std::size_t>(B) * H * K * V);
  for (int i = 0; i < B * H * K; ++i) {
    for (int c = 0; c < V; ++c)
      dense[static_cast<std::size_t>(i) * V + c] = after[static_cast<std::size_t>(i) * row_stride + c];
    for (int c = V; c < row_stride; ++c)
      REQUIRE(after[static_cast<std::size_t>(i) * row_stride + c] == -7.0f);  // padding untouched
  }
  check_against_cpu<float>(p, GpuResult{gpu_harness::widen_all(o.download()), dense});
}

TEST_CASE_TEMPLATE("the recurrent forward over several tokens, with and without an initial state", T, bf16, float) {
  gpu_harness::Workspace ws;
  auto p = rounded_problem<T>(2, 7, 3, 64, 48, 2, true, 2.0, 70);
  check_against_cpu<T>(p, gpu_forward<dp::GatedDeltaProduct<float, 2>, T>(p, {}, ws.backend));
  p.initial_state.clear();  // absent: zero
  check_against_cpu<T>(p, gpu_forward<dp::GatedDeltaProduct<float, 2>, T>(p, {}, ws.backend));
  auto q = rounded_problem<T>(1, 5, 2, 128, 128, 3, false, 2.0, 71);
  check_against_cpu<T>(q, gpu_forward<dp::DeltaProduct<float, 3>, T>(q, {}, ws.backend));
}

TEST_CASE("the recurrent forward on packed sequences (cu_seqlens in device memory), empty and one-token ones too") {
  gpu_harness::Workspace ws;
  const std::vector<std::int64_t> offsets{0, 3, 3, 4, 9, 9};  // lengths 3, 0, 1, 5, 0
  auto p = reference::random_problem(1, 9, 2, 32, 64, 2, true, 2.0, false, 80);
  p.cu_seqlens = offsets;
  std::mt19937_64 rng(81);
  std::normal_distribution<double> normal(0.0, 1.0);
  p.initial_state.resize(static_cast<std::size_t>(p.sequences()) * p.H * p.K * p.V);
  for (double& x : p.initial_state) x = normal(rng);
  round_inputs<bf16>(p);
  check_against_cpu<bf16>(p, gpu_forward<dp::GatedDeltaProduct<float, 2>, bf16>(p, {}, ws.backend));
}

TEST_CASE("the state-pool step() advances the indexed slots, skips padding and leaves other slots alone") {
  gpu_harness::Workspace ws;
  const int B = 4, P = 6, H = 2, K = 64, V = 64;
  auto p = rounded_problem<bf16>(B, 1, H, K, V, 2, true, 2.0, 90);
  const std::vector<std::int32_t> indices{4, -1, 0, 2};  // sequence 1 is padding
  std::mt19937_64 rng(91);
  std::normal_distribution<double> normal(0.0, 1.0);
  const std::size_t slot_size = static_cast<std::size_t>(H) * K * V;
  std::vector<float> pool(P * slot_size);
  for (float& x : pool) x = static_cast<float>(normal(rng));
  for (int b = 0; b < B; ++b)  // the reference's initial state of sequence b is its slot's state
    for (std::size_t e = 0; e < slot_size; ++e)
      p.initial_state[b * slot_size + e] = indices[b] >= 0 ? pool[indices[b] * slot_size + e] : 0.0;

  DeviceInputs<bf16> d(p);
  DeviceBuffer<float> device_pool(pool);
  DeviceBuffer<std::int32_t> device_indices(indices);
  const bf16 sentinel = __float2bfloat16(123.0f);
  DeviceBuffer<bf16> o(std::vector<bf16>(static_cast<std::size_t>(B) * H * V, sentinel));
  const dp::DeltaStepInputs<bf16> in{.q = dp::make_view<const bf16>(d.q.data(), {B, H, K}),
                                     .k = dp::make_view<const bf16>(d.k.data(), {B, 2, H, K}),
                                     .v = dp::make_view<const bf16>(d.v.data(), {B, 2, H, V}),
                                     .beta = dp::make_view<const bf16>(d.beta.data(), {B, 2, H}),
                                     .g = dp::make_view<const bf16>(d.g.data(), {B, H})};
  dp::GatedDeltaProduct<float, 2> model;
  configure(model, p);
  dp::step(ws.backend, model, in, dp::make_view(device_pool.data(), {P, H, K, V}),
           dp::make_view<const std::int32_t>(device_indices.data(), {B}), dp::make_view(o.data(), {B, H, V}));
  dp::check_status(ws.backend);
  const std::vector<float> pool_after = device_pool.download();
  const std::vector<bf16> o_after = o.download();

  const reference::Result cpu = cuda_test::cpu_forward_double(p);
  for (int b = 0; b < B; ++b) {
    CAPTURE(b);
    const std::vector<bf16> o_slice(o_after.begin() + b * H * V, o_after.begin() + (b + 1) * H * V);
    if (indices[b] < 0) {
      for (const bf16 x : o_slice) REQUIRE(gpu_harness::widen(x) == 123.0);  // padding: o untouched
      continue;
    }
    const std::vector<double> o_ref(cpu.o.begin() + b * H * V, cpu.o.begin() + (b + 1) * H * V);
    const std::vector<double> state_ref(cpu.final_state.begin() + static_cast<std::ptrdiff_t>(b * slot_size),
                                        cpu.final_state.begin() + static_cast<std::ptrdiff_t>((b + 1) * slot_size));
    const std::vector<float> slot(pool_after.begin() + static_cast<std::ptrdiff_t>(indices[b] * slot_size),
                                  pool_after.begin() + static_cast<std::ptrdiff_t>((indices[b] + 1) * slot_size));
    CHECK(reference::relative_max_error(gpu_harness::widen_all(o_slice), o_ref) <=
          output_roundoff<bf16>() + fp32_bound(p));
    CHECK(reference::relative_max_error(gpu_harness::widen_all(slot), state_ref) <= fp32_bound(p));
  }
  for (const int untouched : {1, 3, 5})
    for (std::size_t e = 0; e < slot_size; ++e)
      REQUIRE(pool_after[untouched * slot_size + e] == pool[untouched * slot_size + e]);
}

TEST_CASE("value violations are reported by check_status() with the CPU backend's message, and nothing is written") {
  gpu_harness::Workspace ws;
  const int B = 2, H = 3, K = 32, V = 32;
  auto p = rounded_problem<float>(B, 1, H, K, V, 2, true, 2.0, 100);
  std::vector<float> state_before(p.initial_state.begin(), p.initial_state.end());
  auto run = [&](const reference::Problem& problem, auto model) {
    DeviceInputs<float> d(problem);
    DeviceBuffer<float> state(state_before);
    DeviceBuffer<float> o(std::vector<float>(static_cast<std::size_t>(B) * H * V, 5.0f));
    const dp::DeltaStepInputs<float> in{.q = dp::make_view<const float>(d.q.data(), {B, H, K}),
                                        .k = dp::make_view<const float>(d.k.data(), {B, 2, H, K}),
                                        .v = dp::make_view<const float>(d.v.data(), {B, 2, H, V}),
                                        .beta = dp::make_view<const float>(d.beta.data(), {B, 2, H}),
                                        .g = dp::make_view<const float>(d.g.data(), {B, H})};
    dp::step(ws.backend, model, in, dp::make_view(state.data(), {B, H, K, V}), dp::make_view(o.data(), {B, H, V}));
    gpu_harness::synchronize();
    const bool untouched = state.download() == state_before && o.download() == std::vector<float>(o.size(), 5.0f);
    return untouched;
  };

  SUBCASE("beta above the range") {
    auto bad = p;
    bad.beta[(1 * 2 + 0) * H + 1] = 2.5;  // [b = 1, j = 0, h = 1]
    bad.beta[(1 * 2 + 1) * H + 2] = 3.0;  // a later one: the first in row-major order is reported
    CHECK(run(bad, dp::GatedDeltaProduct<float, 2>{}));
    try {
      dp::check_status(ws.backend);
      FAIL("check_status() did not throw");
    } catch (const dp::ArgumentError& e) {
      CHECK(e.argument() == "beta");
      CHECK(e.expected() == "values in [0, 2] (EigenvalueRange::signed_unit)");
      CHECK(e.actual() == "2.5 at [1, 0, 1]");
    }
    CHECK_NOTHROW(dp::check_status(ws.backend));  // reported once, then cleared
  }
  SUBCASE("beta above 1 for EigenvalueRange::unit") {
    auto bad = p;
    bad.beta[3] = 1.5;  // fine for [-1, 1], not for [0, 1]
    CHECK(run(bad, dp::GatedDeltaProduct<float, 2, unit>{}));
    try {
      dp::check_status(ws.backend);
      FAIL("check_status() did not throw");
    } catch (const dp::ArgumentError& e) {
      CHECK(e.expected() == "values in [0, 1] (EigenvalueRange::unit)");
    }
  }
  SUBCASE("a positive or NaN log-decay") {
    auto bad = p;
    bad.g[1 * H + 2] = 0.25;  // [b = 1, t = 0, h = 2]
    CHECK(run(bad, dp::GatedDeltaProduct<float, 2>{}));
    try {
      dp::check_status(ws.backend);
      FAIL("check_status() did not throw");
    } catch (const dp::ArgumentError& e) {
      CHECK(e.argument() == "g");
      CHECK(e.actual() == "0.25 at [1, 0, 2]");
    }
    bad.g[1 * H + 2] = std::numeric_limits<double>::quiet_NaN();
    CHECK(run(bad, dp::GatedDeltaProduct<float, 2>{}));
    CHECK_THROWS_AS(dp::check_status(ws.backend), dp::ArgumentError);
  }
  SUBCASE("a violation is sticky: later valid calls write nothing until check_status()") {
    auto bad = p;
    bad.beta[0] = -1.0;
    CHECK(run(bad, dp::GatedDeltaProduct<float, 2>{}));
    CHECK(run(p, dp::GatedDeltaProduct<float, 2>{}));  // valid, but the earlier violation is pending
    CHECK_THROWS_AS(dp::check_status(ws.backend), dp::ArgumentError);
    CHECK_FALSE(run(p, dp::GatedDeltaProduct<float, 2>{}));  // cleared: this one runs
    CHECK_NOTHROW(dp::check_status(ws.backend));
  }
  SUBCASE("validate_ranges = false runs without a workspace and does not check") {
    auto bad = p;
    bad.beta[0] = 2.5;
    dp::GatedDeltaProduct<float, 2> model;
    model.options.validate_ranges = false;
    const dp::CudaBackend no_workspace{};
    DeviceInputs<float> d(bad);
    DeviceBuffer<float> state(state_before);
    DeviceBuffer<float> o(static_cast<std::size_t>(B) * H * V);
    const dp::DeltaStepInputs<float> in{.q = dp::make_view<const float>(d.q.data(), {B, H, K}),
                                        .k = dp::make_view<const float>(d.k.data(), {B, 2, H, K}),
                                        .v = dp::make_view<const float>(d.v.data(), {B, 2, H, V}),
                                        .beta = dp::make_view<const float>(d.beta.data(), {B, 2, H}),
                                        .g = dp::make_view<const float>(d.g.data(), {B, H})};
    dp::step(no_workspace, model, in, dp::make_view(state.data(), {B, H, K, V}), dp::make_view(o.data(), {B, H, V}));
    gpu_harness::synchronize();
    CHECK(state.download() != state_before);
  }
}

TEST_CASE("bad cu_seqlens values and pool indices are reported on the device, never read out of bounds") {
  gpu_harness::Workspace ws;
  SUBCASE("decreasing offsets") {
    auto p = rounded_problem<float>(1, 6, 2, 32, 32, 1, false, 2.0, 110);
    p.initial_state.clear();
    p.cu_seqlens = {0, 4, 2, 6};
    gpu_forward<dp::DeltaNet<float>, float>(p, {}, ws.backend);  // asynchronous: nothing thrown here
    try {
      dp::check_status(ws.backend);
      FAIL("check_status() did not throw");
    } catch (const dp::ArgumentError& e) {
      CHECK(e.argument() == "cu_seqlens");
      CHECK(e.actual() == "cu_seqlens[2] < cu_seqlens[1]");
    }
  }
  SUBCASE("the last offset is not T, and validation is off: the kernel clamps") {
    auto p = rounded_problem<float>(1, 6, 2, 32, 32, 1, false, 2.0, 111);
    p.initial_state.clear();
    p.cu_seqlens = {0, 4, 1000};
    dp::DeltaNet<float> model;
    model.options.validate_ranges = false;
    CHECK_NOTHROW(gpu_forward<dp::DeltaNet<float>, float>(p, model, ws.backend));
  }
}

TEST_CASE("argument errors are thrown on the host before any launch" * doctest::test_suite("host")) {
  // Host memory stands in for device memory: nothing is dereferenced or launched before the checks throw.
  std::vector<float> memory(1 << 16);
  float* m = memory.data();
  const dp::CudaBackend backend{};
  dp::GatedDeltaProduct<float, 2> model;
  model.options.validate_ranges = false;
  const int B = 2, H = 3, K = 32, V = 16;
  const dp::DeltaStepInputs<float> good{.q = dp::make_view<const float>(m, {B, H, K}),
                                        .k = dp::make_view<const float>(m, {B, 2, H, K}),
                                        .v = dp::make_view<const float>(m, {B, 2, H, V}),
                                        .beta = dp::make_view<const float>(m, {B, 2, H}),
                                        .g = dp::make_view<const float>(m, {B, H})};
  const auto state = dp::make_view(m, {B, H, K, V});
  const auto o = dp::make_view(m, {B, H, V});
  auto argument_of = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const dp::ArgumentError& e) {
      return e.argument();
    }
    return "no error";
  };

  SUBCASE("shapes") {
    auto bad = good;
    bad.k = dp::make_view<const float>(m, {B, 1, H, K});  // n_h = 1 rows for an n_h = 2 model
    CHECK(argument_of([&] { dp::step(backend, model, bad, state, o); }) == "k");
    CHECK(argument_of([&] {
            dp::step(backend, model, good, dp::make_view(m, {B, H, K, V + 1}), o);
          }) == "initial_state");
    CHECK(argument_of([&] { dp::step(backend, model, good, state, dp::make_view(m, {B, H, V - 1})); }) == "o");
    auto ungated_call = good;
    ungated_call.g = {};
    CHECK(argument_of([&] { dp::step(backend, model, ungated_call, state, o); }) == "g");
  }
  SUBCASE("null and misaligned pointers") {
    auto bad = good;
    bad.q = dp::make_view<const float>(nullptr, {B, H, K});
    CHECK(argument_of([&] { dp::step(backend, model, bad, state, o); }) == "q");
    const auto misaligned = reinterpret_cast<const float*>(reinterpret_cast<const char*>(m) + 2);
    bad = good;
    bad.v = dp::make_view(misaligned, {B, 2, H, V});
    try {
      dp::step(backend, model, bad, state, o);
      FAIL("no error");
    } catch (const dp::ArgumentError& e) {
      CHECK(e.argument() == "v");
      CHECK(e.expected() == "data aligned to 4 bytes (fp32 elements)");
    }
    std::vector<__nv_bfloat16> halves(4096);
    const dp::DeltaStepInputs<__nv_bfloat16> bf{
        .q = dp::make_view<const __nv_bfloat16>(halves.data() + 1, {1, 1, 8}),  // 2-byte aligned: fine
        .k = dp::make_view<const __nv_bfloat16>(halves.data(), {1, 2, 1, 8}),
        .v = dp::make_view<const __nv_bfloat16>(halves.data(), {1, 2, 1, 8}),
        .beta = dp::make_view<const __nv_bfloat16>(halves.data(), {1, 2, 1}),
        .g = dp::make_view<const __nv_bfloat16>(halves.data(), {1, 1})};
    auto misaligned_state = dp::make_view(reinterpret_cast<float*>(reinterpret_cast<char*>(m) + 1), {1, 1, 8, 8});
    CHECK(argument_of([&] {
            dp::step(backend, model, bf, misaligned_state, dp::make_view(halves.data(), {1, 1, 8}));
          }) == "initial_state");
  }
  SUBCASE("key dimension above 256") {
    const int big = 300;
    const dp::DeltaStepInputs<float> wide{.q = dp::make_view<const float>(m, {1, 1, big}),
                                          .k = dp::make_view<const float>(m, {1, 2, 1, big}),
                                          .v = dp::make_view<const float>(m, {1, 2, 1, 4}),
                                          .beta = dp::make_view<const float>(m, {1, 2, 1}),
                                          .g = dp::make_view<const float>(m, {1, 1})};
    CHECK(argument_of([&] {
            dp::step(backend, model, wide, dp::make_view(m, {1, 1, big, 4}), dp::make_view(m, {1, 1, 4}));
          }) == "q");
  }
  SUBCASE("value checks need a workspace") {
    dp::GatedDeltaProduct<float, 2> validating;
    CHECK(argument_of([&] { dp::step(backend, validating, good, state, o); }) == "backend.workspace");
  }
  SUBCASE("state pool and indices") {
    std::vector<std::int32_t> index_memory(16);
    const auto indices = dp::make_view<const std::int32_t>(index_memory.data(), {B});
    CHECK(argument_of([&] {
            dp::step(backend, model, good, dp::make_view(m, {5, H, K + 1, V}), indices, o);
          }) == "state_pool");
    CHECK(argument_of([&] {
            dp::step(backend, model, good, dp::make_view(m, {5, H, K, V}),
                     dp::make_view<const std::int32_t>(index_memory.data(), {B + 1}), o);
          }) == "state_indices");
  }
  SUBCASE("cu_seqlens needs B = 1") {
    std::vector<std::int64_t> offsets{0, 1, 2};
    const dp::DeltaInputs<float, float> in{.q = dp::make_view<const float>(m, {2, 2, H, K}),
                                           .k = dp::make_view<const float>(m, {2, 4, H, K}),
                                           .v = dp::make_view<const float>(m, {2, 4, H, V}),
                                           .beta = dp::make_view<const float>(m, {2, 4, H}),
                                           .g = dp::make_view<const float>(m, {2, 2, H}),
                                           .cu_seqlens = dp::make_view<const std::int64_t>(offsets.data(), {3})};
    const dp::ForwardOutputs<float, float> out{.o = dp::make_view(m, {2, 2, H, V})};
    CHECK(argument_of([&] { dp::detail::cuda_recurrent_forward(backend, model, in, out); }) == "q");
  }
}

int main(int argc, char** argv) { return gpu_harness::run_tests(argc, argv); }
