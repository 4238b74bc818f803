// The CUDA chunked forward (chunked_forward.cuh) against the CPU backend's sequential forward in double
// (cuda/cpu_reference.hpp) on the same inputs rounded to the element type under test: every variant of the
// tensor-core kernel (n_h 1..4, gated or not, both eigenvalue ranges, K = V = 64 and 128, bf16 and fp16), lengths
// that are not multiples of a chunk, packed sequences with empty and one-token members, initial and final states,
// normalisation options and strides; sequences split into runs of chunks (summaries, fix-up, outputs: explicit counts
// from 2 to 13, packed sequences with empty runs, the final state in place, the automatic plan and its fallback
// without scratch); the shapes the tensor-core kernel leaves to the recurrent kernel; value checks.
//
// Tolerances. The reference runs on exactly the inputs the GPU reads, so the error comes from the kernel alone:
// tensor-core operands rounded once to 16 bits (the state S^T, the readout matrix P and the corrected values N in
// the input type; the triangular solve in fp16) with every product accumulated in fp32, and o rounded to the input
// type. Each rounding is a relative error of at most u (bf16: u = 2^-8; fp16: u = 2^-11) of one operand; the error
// of a dot product of rounded operands is about u times its magnitude, and the state carries earlier chunks' errors
// forward without growth (every transition is a contraction: unit keys, beta <= 2, gates <= 1), so the error does not
// grow with T. We bound the error of o and of the final state, relative to their largest entries, by 4 u
// (bf16: 1.6e-2; fp16: 2.0e-3) and their relative RMS error by 2 u. Measured on an H200 (every case below): at most
// 1.4 u (max) and 1.2 u (RMS) in bf16, 1.4 u and 1.2 u in fp16, the same at T = 4096 as at T = 97.
// The recurrent path computes in fp32: o is off by its final rounding to T (u / 2 of an element), and in fp32 the
// harness-style 16 (T n_h + K) eps_fp32 holds.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deltaproduct/cuda/chunked_forward.cuh>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cuda/cpu_reference.hpp"
#include "cuda/gpu_harness.cuh"

namespace {

namespace dp = deltaproduct;
using bf16 = __nv_bfloat16;
using fp16 = __half;
using gpu_harness::DeviceBuffer;

template <class T>
constexpr double unit_roundoff() {
  if constexpr (std::is_same_v<T, bf16>)
    return 1.0 / 256.0;
  else if constexpr (std::is_same_v<T, fp16>)
    return 1.0 / 2048.0;
  else
    return std::numeric_limits<float>::epsilon() / 2.0;
}

using gpu_harness::compare;
using gpu_harness::Errors;
using gpu_harness::normalization_of;
using gpu_harness::rounded;

/// p with every input rounded to what the GPU reads: token data to T, the initial state to fp32.
template <class T>
reference::Problem rounded_problem(reference::Problem p) {
  p.q = rounded<T>(p.q);
  p.k = rounded<T>(p.k);
  p.v = rounded<T>(p.v);
  p.beta = rounded<T>(p.beta);
  p.g = rounded<T>(p.g);
  p.initial_state = rounded<float>(p.initial_state);
  return p;
}

struct GpuResult {
  reference::Result result;
  bool chunked = false;      ///< the call took the tensor-core kernel
  bool specialized = false;  ///< ... in its warp-specialised form
  int splits = 1;        ///< runs of chunks per sequence (sequence_split.cuh)
};

/// Optional layout changes of the GPU call, to exercise strides and alignment.
struct Layout {
  int head_padding = 0;         ///< extra elements between heads in q, k, v, o (strided views)
  int misalign_queries = 0;     ///< q's data starts this many elements into its buffer
  bool state_in_place = false;  ///< final_state is the initial state's memory
  int sequence_splits = 1;      ///< backend.sequence_splits: 1 (never split) tests the one-pass kernel; 0 automatic
  bool minimal_workspace = false;  ///< only the value-check record, instead of forward_workspace_bytes()
  bool warp_specialized = false;   ///< backend.warp_specialized_forward (these tests default to the one-role kernel)
  int workspace_offset = 0;        ///< the workspace starts this many bytes into its allocation (misaligned if % 256)
};

/// forward() on the GPU for problem p (inputs already representable in T) with model type Model.
template <class Model, class T>
GpuResult run_gpu(const reference::Problem& p, dp::CudaAlgorithm algorithm = dp::CudaAlgorithm::chunked,
                  const Layout& layout = {}) {
  Model model;
  model.options.key_normalization = normalization_of(p.key_norm);
  model.options.query_normalization = normalization_of(p.query_norm);
  model.options.normalization_eps = p.eps;
  model.options.scale = p.scale;
  const dp::index_t B = p.B, T_ = p.T, H = p.H, K = p.K, V = p.V, R = T_ * p.n_h, N = p.sequences();

  // [B, rows, H, D] with heads `head_padding` elements apart beyond D: a strided view of a larger buffer.
  auto spread = [&](const std::vector<double>& dense, dp::index_t rows, dp::index_t D) {
    const dp::index_t head_stride = D + layout.head_padding;
    std::vector<T> out(static_cast<std::size_t>(B * rows * H * head_stride), gpu_harness::round_to<T>(0.0));
    for (dp::index_t i = 0; i < B * rows * H; ++i)
      for (dp::index_t d = 0; d < D; ++d)
        out[static_cast<std::size_t>(i * head_stride + d)] =
            gpu_harness::round_to<T>(dense[static_cast<std::size_t>(i * D + d)]);
    return out;
  };
  auto strides = [&](dp::index_t rows, dp::index_t D) {
    const dp::index_t hs = D + layout.head_padding;
    return std::array<dp::index_t, 4>{rows * H * hs, H * hs, hs, 1};
  };
  std::vector<T> q_host = spread(p.q, T_, K);
  q_host.insert(q_host.begin(), static_cast<std::size_t>(layout.misalign_queries), gpu_harness::round_to<T>(0.0));
  DeviceBuffer<T> q(q_host), k(spread(p.k, R, K)), v(spread(p.v, R, V));
  DeviceBuffer<T> beta(gpu_harness::round_all<T>(p.beta)), g(gpu_harness::round_all<T>(p.g));
  const std::vector<float> h0_host(p.initial_state.begin(), p.initial_state.end());
  DeviceBuffer<float> h0(h0_host);
  DeviceBuffer<std::int64_t> cu(p.cu_seqlens);
  DeviceBuffer<T> o(static_cast<std::size_t>(B * T_ * H * (V + layout.head_padding)));
  DeviceBuffer<float> ht(static_cast<std::size_t>(N * H * K * V));
  o.fill_bytes(0xff);  // NaN everywhere: an element the kernel does not write fails the comparison
  ht.fill_bytes(0xff);

  dp::DeltaInputs<T, float> in{
      .q = dp::View<const T, 4>(q.data() + layout.misalign_queries, {B, T_, H, K}, strides(T_, K)),
      .k = dp::View<const T, 4>(k.data(), {B, R, H, K}, strides(R, K)),
      .v = dp::View<const T, 4>(v.data(), {B, R, H, V}, strides(R, V)),
      .beta = dp::make_view(static_cast<const T*>(beta.data()), {B, R, H})};
  if (p.gated) in.g = dp::make_view(static_cast<const T*>(g.data()), {B, T_, H});
  if (!p.cu_seqlens.empty())
    in.cu_seqlens = dp::make_view(static_cast<const std::int64_t*>(cu.data()), {static_cast<dp::index_t>(cu.size())});
  dp::ForwardOutputs<T, float> out{.o = dp::View<T, 4>(o.data(), {B, T_, H, V}, strides(T_, V))};
  if (layout.state_in_place) {
    REQUIRE(!h0_host.empty());
    in.initial_state = dp::make_view(static_cast<const float*>(h0.data()), {N, H, K, V});
    out.final_state = dp::make_view(h0.data(), {N, H, K, V});
  } else {
    if (!h0_host.empty()) in.initial_state = dp::make_view(static_cast<const float*>(h0.data()), {N, H, K, V});
    out.final_state = dp::make_view(ht.data(), {N, H, K, V});
  }

  const dp::CudaBackend plan{.algorithm = algorithm, .sequence_splits = layout.sequence_splits};
  const std::size_t workspace_bytes =
      layout.minimal_workspace ? dp::cuda_status_bytes : dp::forward_workspace_bytes(plan, model, in, out);
  gpu_harness::Workspace workspace(workspace_bytes + layout.workspace_offset);
  workspace.backend.workspace = workspace.memory.data() + layout.workspace_offset;
  workspace.backend.workspace_bytes = workspace_bytes;
  workspace.backend.algorithm = algorithm;
  workspace.backend.sequence_splits = layout.sequence_splits;
  workspace.backend.warp_specialized_forward = layout.warp_specialized;
  GpuResult r;
  r.chunked = dp::chunked_forward_applies(workspace.backend, model, in, out);
  if constexpr (!std::is_same_v<T, float>) {
    constexpr int NH = Model::householder_steps;
    constexpr bool gated = Model::gating == dp::Gating::scalar_decay;
    r.specialized = r.chunked && (K == 64 ? dp::detail::takes_specialized_kernel<T, 64, NH, gated>(workspace.backend)
                                          : dp::detail::takes_specialized_kernel<T, 128, NH, gated>(workspace.backend));
  }
  r.splits = dp::forward_sequence_splits(workspace.backend, model, in, out);
  dp::forward(workspace.backend, model, in, out);
  gpu_harness::synchronize();
  dp::check_status(workspace.backend);

  const std::vector<T> o_host = o.download();
  r.result.o.resize(static_cast<std::size_t>(B * T_ * H * V));
  for (dp::index_t i = 0; i < B * T_ * H; ++i)
    for (dp::index_t d = 0; d < V; ++d)
      r.result.o[static_cast<std::size_t>(i * V + d)] =
          gpu_harness::widen(o_host[static_cast<std::size_t>(i * (V + layout.head_padding) + d)]);
  const std::vector<float> state = layout.state_in_place ? h0.download() : ht.download();
  r.result.final_state.assign(state.begin(), state.end());
  return r;
}

/// Whether the current GPU is a Hopper (compute capability 9.x), where the warp-specialised kernel runs.
bool on_hopper() {
  int device = 0, major = 0;
  REQUIRE(cudaGetDevice(&device) == cudaSuccess);
  REQUIRE(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess);
  return major == 9;
}

/// Runs p (rounded to T) on the GPU and the CPU reference and checks o and the final state within `tolerance`
/// (max relative error; the RMS error within half of it). Returns whether the tensor-core kernel ran; `splits`, when
/// given, receives the runs of chunks per sequence the call used.
template <class Model, class T>
bool check_against_reference(reference::Problem p, double tolerance, const std::string& what,
                             dp::CudaAlgorithm algorithm = dp::CudaAlgorithm::chunked, const Layout& layout = {},
                             int* splits = nullptr) {
  p = rounded_problem<T>(p);
  const GpuResult gpu = run_gpu<Model, T>(p, algorithm, layout);
  if (splits != nullptr) *splits = gpu.splits;
  const reference::Result ref = cuda_test::cpu_forward_double(p);
  const Errors eo = compare(gpu.result.o, ref.o), es = compare(gpu.result.final_state, ref.final_state);
  const std::string kind = gpu.specialized ? "chunked, warp-specialised" : "chunked";
  const std::string path = gpu.chunked ? (gpu.splits > 1 ? " [" + kind + ", " + std::to_string(gpu.splits) + " splits]"
                                                         : " [" + kind + "]")
                                       : std::string(" [recurrent]");
  if (layout.warp_specialized && gpu.chunked && on_hopper()) CHECK(gpu.specialized);  // the test builds for sm_90a
  MESSAGE(what << path << ": o max " << eo.max_relative << " rms " << eo.rms_relative << "; state max "
               << es.max_relative << " rms " << es.rms_relative);
  INFO(what);
  CHECK(eo.finite);
  CHECK(es.finite);
  CHECK(eo.max_relative <= tolerance);
  CHECK(eo.rms_relative <= tolerance / 2);
  CHECK(es.max_relative <= tolerance);
  CHECK(es.rms_relative <= tolerance / 2);
  return gpu.chunked;
}

template <class T>
double chunked_tolerance() {
  return 4.0 * unit_roundoff<T>();
}

double recurrent_tolerance(const reference::Problem& p) {
  return 16.0 * (static_cast<double>(p.T) * p.n_h + p.K) * std::numeric_limits<float>::epsilon();
}

template <int NH, bool Gated, dp::EigenvalueRange Range = dp::EigenvalueRange::signed_unit>
using ModelOf = dp::DeltaProduct<float, NH, Range, Gated ? dp::Gating::scalar_decay : dp::Gating::none>;

/// Packed sequences of the given lengths (B = 1), with an initial state per sequence.
reference::Problem packed_problem(const std::vector<int>& lengths, int H, int K, int V, int n_h, bool gated,
                                  std::uint64_t seed) {
  int total = 0;
  for (int n : lengths) total += n;
  reference::Problem p = reference::random_problem(1, total, H, K, V, n_h, gated, 2.0, false, seed);
  p.cu_seqlens.push_back(0);
  for (int n : lengths) p.cu_seqlens.push_back(p.cu_seqlens.back() + n);
  std::mt19937_64 rng(seed + 1);
  std::normal_distribution<double> normal(0.0, 1.0);
  p.initial_state.resize(lengths.size() * static_cast<std::size_t>(H * K * V));
  for (double& x : p.initial_state) x = normal(rng);
  return p;
}

template <int NH, bool Gated>
void check_lengths_and_sizes(const Layout& layout = {}) {
  using Model = ModelOf<NH, Gated>;
  const double tolerance = chunked_tolerance<bf16>();
  std::uint64_t seed = 100 * NH + (Gated ? 7 : 0);
  for (int D : {64, 128})
    for (int T : {1, 97, 200}) {  // one token; a prime; a length that is no multiple of any chunk (64 / n_h tokens)
      const reference::Problem p = reference::random_problem(2, T, 2, D, D, NH, Gated, 2.0, T != 1, ++seed);
      const std::string what = "n_h " + std::to_string(NH) + (Gated ? " gated" : "") + " K=V=" + std::to_string(D) +
                               " T=" + std::to_string(T);
      CHECK(check_against_reference<Model, bf16>(p, tolerance, what, dp::CudaAlgorithm::chunked, layout));
    }
}

}  // namespace

TEST_CASE("chunked kernel: DeltaNet and DeltaProduct n_h 1..4, gated or not, bf16, K = V in {64, 128}") {
  check_lengths_and_sizes<1, false>();
  check_lengths_and_sizes<1, true>();
  check_lengths_and_sizes<2, false>();
  check_lengths_and_sizes<2, true>();
  check_lengths_and_sizes<3, false>();
  check_lengths_and_sizes<3, true>();
  check_lengths_and_sizes<4, false>();
  check_lengths_and_sizes<4, true>();
}

TEST_CASE("warp-specialised chunked kernel: n_h 1..4, gated or not, K = V in {64, 128}, odd lengths") {
  const Layout specialized{.warp_specialized = true};
  check_lengths_and_sizes<1, false>(specialized);
  check_lengths_and_sizes<1, true>(specialized);
  check_lengths_and_sizes<2, false>(specialized);
  check_lengths_and_sizes<2, true>(specialized);
  check_lengths_and_sizes<3, true>(specialized);
  check_lengths_and_sizes<4, false>(specialized);
}

TEST_CASE("warp-specialised chunked kernel: long and packed sequences, fp16, split sequences") {
  const Layout specialized{.warp_specialized = true};
  const double tolerance = chunked_tolerance<bf16>();
  const auto chunked = dp::CudaAlgorithm::chunked;
  CHECK(check_against_reference<ModelOf<1, true>, bf16>(reference::random_problem(1, 4096, 2, 128, 128, 1, true, 2.0,
                                                                                  true, 32),
                                                        tolerance, "gated DeltaNet T=4096", chunked, specialized));
  CHECK(check_against_reference<ModelOf<2, false>, bf16>(reference::random_problem(1, 2048, 2, 128, 128, 2, false,
                                                                                   2.0, true, 33),
                                                         tolerance, "DeltaProduct n_h 2 T=2048", chunked, specialized));
  CHECK(check_against_reference<ModelOf<1, true>, fp16>(reference::random_problem(2, 150, 2, 128, 128, 1, true, 2.0,
                                                                                  true, 11),
                                                        chunked_tolerance<fp16>(), "fp16 gated DeltaNet", chunked,
                                                        specialized));
  CHECK(check_against_reference<ModelOf<1, true>, bf16>(packed_problem({0, 1, 70, 0, 129, 1, 64, 3}, 2, 128, 128, 1,
                                                                       true, 51),
                                                        tolerance, "packed, gated DeltaNet", chunked, specialized));
  CHECK(check_against_reference<ModelOf<2, false>, bf16>(
      reference::random_problem(1, 700, 2, 64, 64, 2, false, 2.0, true, 1002), tolerance, "split into 4 runs",
      chunked, Layout{.sequence_splits = 4, .warp_specialized = true}));
  CHECK(check_against_reference<ModelOf<1, true>, bf16>(
      reference::random_problem(1, 1000, 2, 128, 128, 1, true, 2.0, true, 1003), tolerance, "split into 3 runs",
      chunked, Layout{.sequence_splits = 3, .warp_specialized = true}));
}

TEST_CASE("chunked kernel: fp16 inputs") {
  const double tolerance = chunked_tolerance<fp16>();
  CHECK(check_against_reference<ModelOf<1, true>, fp16>(
      reference::random_problem(2, 150, 2, 128, 128, 1, true, 2.0, true, 11), tolerance, "fp16 gated DeltaNet"));
  CHECK(check_against_reference<ModelOf<2, false>, fp16>(
      reference::random_problem(1, 77, 3, 64, 64, 2, false, 2.0, true, 12), tolerance, "fp16 DeltaProduct n_h 2"));
}

TEST_CASE("chunked kernel: eigenvalues in [0, 1] (beta in [0, 1])") {
  const reference::Problem p = reference::random_problem(2, 130, 2, 128, 128, 2, true, 1.0, true, 21);
  CHECK(check_against_reference<ModelOf<2, true, dp::EigenvalueRange::unit>, bf16>(p, chunked_tolerance<bf16>(),
                                                                                   "unit range, n_h 2 gated"));
}

TEST_CASE("chunked kernel: long sequences keep the error bounded (64 chunks, beta in [0, 2])") {
  const double tolerance = chunked_tolerance<bf16>();
  CHECK(check_against_reference<ModelOf<1, false>, bf16>(
      reference::random_problem(1, 4096, 2, 128, 128, 1, false, 2.0, true, 31), tolerance, "DeltaNet T=4096"));
  CHECK(check_against_reference<ModelOf<1, true>, bf16>(
      reference::random_problem(1, 4096, 2, 128, 128, 1, true, 2.0, true, 32), tolerance, "gated DeltaNet T=4096"));
  CHECK(check_against_reference<ModelOf<2, true>, bf16>(
      reference::random_problem(1, 2048, 2, 128, 128, 2, true, 2.0, true, 33), tolerance,
      "gated DeltaProduct n_h 2 T=2048"));
}

TEST_CASE("chunked kernel: hard inputs: reflections (beta = 2), correlated keys, strong and zero gates") {
  reference::Problem p = reference::random_problem(1, 300, 2, 128, 128, 2, true, 2.0, true, 41);
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  // Keys share a direction (cosine ~0.5 after normalisation); a third of the betas are exactly 2.
  const std::size_t rows = p.k.size() / static_cast<std::size_t>(p.K);
  for (std::size_t r = 0; r < rows; ++r)
    for (int d = 0; d < p.K; ++d)
      p.k[r * static_cast<std::size_t>(p.K) + static_cast<std::size_t>(d)] += d < 8 ? 2.0 : 0.0;
  for (std::size_t i = 0; i < p.beta.size(); i += 3) p.beta[i] = 2.0;
  // Gates: runs of zeros (no decay) and strong decays down to -8.
  for (std::size_t i = 0; i < p.g.size(); ++i) p.g[i] = (i / 20) % 2 == 0 ? 0.0 : -8.0 * unit(rng);
  CHECK(check_against_reference<ModelOf<2, true>, bf16>(p, chunked_tolerance<bf16>(), "hard inputs, n_h 2 gated"));
}

TEST_CASE("chunked kernel: packed sequences with empty and one-token members, initial and final states") {
  const std::vector<int> lengths{0, 1, 70, 0, 129, 1, 64, 3};
  CHECK(check_against_reference<ModelOf<1, true>, bf16>(packed_problem(lengths, 2, 128, 128, 1, true, 51),
                                                        chunked_tolerance<bf16>(), "packed, gated DeltaNet"));
  CHECK(check_against_reference<ModelOf<2, false>, bf16>(packed_problem(lengths, 2, 64, 64, 2, false, 52),
                                                         chunked_tolerance<bf16>(), "packed, DeltaProduct n_h 2"));
  CHECK(check_against_reference<ModelOf<3, true>, bf16>(packed_problem({5, 0, 44}, 1, 128, 128, 3, true, 53),
                                                        chunked_tolerance<bf16>(), "packed, gated n_h 3"));
}

TEST_CASE("chunked kernel: normalisation options and scale") {
  reference::Problem p = reference::random_problem(2, 90, 2, 128, 128, 1, true, 2.0, true, 61);
  p.key_norm = 2;  // l2 with eps
  p.query_norm = 1;
  p.eps = 1e-3;
  p.scale = 0.3;
  CHECK(check_against_reference<ModelOf<1, true>, bf16>(p, chunked_tolerance<bf16>(), "keys l2_eps, queries l2"));
  // No normalisation in the kernel: keys arrive unit-norm (then rounded to bf16, so only nearly unit).
  reference::Problem raw = reference::random_problem(2, 90, 2, 64, 64, 2, false, 2.0, true, 62);
  const std::size_t rows = raw.k.size() / static_cast<std::size_t>(raw.K);
  for (std::size_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int d = 0; d < raw.K; ++d)
      ss += raw.k[r * static_cast<std::size_t>(raw.K) + static_cast<std::size_t>(d)] *
            raw.k[r * static_cast<std::size_t>(raw.K) + static_cast<std::size_t>(d)];
    for (int d = 0; d < raw.K; ++d)
      raw.k[r * static_cast<std::size_t>(raw.K) + static_cast<std::size_t>(d)] /= std::sqrt(ss);
  }
  raw.key_norm = 0;
  raw.query_norm = 2;
  CHECK(check_against_reference<ModelOf<2, false>, bf16>(raw, chunked_tolerance<bf16>(), "no key normalisation"));
}

TEST_CASE("chunked kernel: strided views, in-place state, misaligned rows (recurrent path)") {
  const reference::Problem p = reference::random_problem(2, 80, 2, 128, 128, 1, true, 2.0, true, 71);
  CHECK(check_against_reference<ModelOf<1, true>, bf16>(p, chunked_tolerance<bf16>(), "heads 8 elements apart",
                                                        dp::CudaAlgorithm::chunked, Layout{.head_padding = 8}));
  CHECK(check_against_reference<ModelOf<1, true>, bf16>(p, chunked_tolerance<bf16>(), "final state in place",
                                                        dp::CudaAlgorithm::chunked, Layout{.state_in_place = true}));
  // q starting 2 bytes past a 16-byte boundary: the tensor-core kernel cannot copy its rows, the recurrent one runs.
  CHECK_FALSE(check_against_reference<ModelOf<1, true>, bf16>(
      p, chunked_tolerance<bf16>(), "misaligned q", dp::CudaAlgorithm::chunked, Layout{.misalign_queries = 1}));
}

TEST_CASE("forward(): shapes and types the tensor-core kernel leaves to the recurrent kernel") {
  // K != V, K = 32, fp32 inputs: correct through the recurrent kernel, to fp32 accuracy.
  const reference::Problem kv = reference::random_problem(2, 50, 2, 128, 64, 2, true, 2.0, true, 81);
  CHECK_FALSE(check_against_reference<ModelOf<2, true>, bf16>(kv, chunked_tolerance<bf16>(), "K=128, V=64"));
  const reference::Problem small = reference::random_problem(2, 70, 2, 32, 32, 1, false, 2.0, true, 82);
  CHECK_FALSE(check_against_reference<ModelOf<1, false>, bf16>(small, chunked_tolerance<bf16>(), "K=V=32"));
  const reference::Problem fp32 = reference::random_problem(1, 100, 2, 128, 128, 1, true, 2.0, true, 83);
  CHECK_FALSE(check_against_reference<ModelOf<1, true>, float>(fp32, recurrent_tolerance(fp32), "fp32 inputs"));
  // CudaAlgorithm::recurrent on a shape the tensor-core kernel takes; automatic on a long one takes it.
  const reference::Problem both = reference::random_problem(1, 100, 2, 64, 64, 1, true, 2.0, true, 84);
  CHECK_FALSE(check_against_reference<ModelOf<1, true>, bf16>(both, chunked_tolerance<bf16>(), "recurrent asked",
                                                              dp::CudaAlgorithm::recurrent));
  CHECK(check_against_reference<ModelOf<1, true>, bf16>(both, chunked_tolerance<bf16>(), "automatic",
                                                        dp::CudaAlgorithm::automatic));
}

template <int NH, bool Gated>
void check_split_sequences() {
  using Model = ModelOf<NH, Gated>;
  std::uint64_t seed = 1000 + 10 * NH + (Gated ? 5 : 0);
  for (int D : {64, 128})
    for (int splits : {2, 3, 7}) {
      // 9 or 10 chunks: runs of unequal length, and with 7 splits some runs of one chunk and an empty one.
      const int T = 9 * (64 / NH) + 5;
      const reference::Problem p = reference::random_problem(2, T, 2, D, D, NH, Gated, 2.0, true, ++seed);
      const std::string what = "split " + std::to_string(splits) + ", n_h " + std::to_string(NH) +
                               (Gated ? " gated" : "") + " K=V=" + std::to_string(D);
      int used = 0;
      CHECK(check_against_reference<Model, bf16>(p, chunked_tolerance<bf16>(), what, dp::CudaAlgorithm::chunked,
                                                 Layout{.sequence_splits = splits}, &used));
      CHECK(used == splits);
    }
}

TEST_CASE("chunked kernel: sequences split into runs of chunks match the reference (summaries, fix-up, outputs)") {
  check_split_sequences<1, false>();
  check_split_sequences<1, true>();
  check_split_sequences<2, true>();
  check_split_sequences<3, false>();
}

TEST_CASE("chunked kernel: split packed sequences, empty runs, the final state in place, beta = 2") {
  const std::vector<int> lengths{0, 1, 70, 0, 300, 1, 64, 3};
  int used = 0;
  CHECK(check_against_reference<ModelOf<1, true>, bf16>(packed_problem(lengths, 2, 128, 128, 1, true, 151),
                                                        chunked_tolerance<bf16>(), "packed, split 4",
                                                        dp::CudaAlgorithm::chunked, Layout{.sequence_splits = 4},
                                                        &used));
  CHECK(used == 4);
  CHECK(check_against_reference<ModelOf<3, true>, bf16>(packed_problem({5, 0, 900, 44}, 1, 64, 64, 3, true, 153),
                                                        chunked_tolerance<bf16>(), "packed, automatic plan",
                                                        dp::CudaAlgorithm::chunked, Layout{.sequence_splits = 0},
                                                        &used));
  CHECK(used > 1);
  reference::Problem p = reference::random_problem(1, 700, 2, 128, 128, 2, true, 2.0, true, 152);
  for (std::size_t i = 0; i < p.beta.size(); i += 2) p.beta[i] = 2.0;  // half the steps exact reflections
  CHECK(check_against_reference<ModelOf<2, true>, bf16>(
      p, chunked_tolerance<bf16>(), "in place, split 5", dp::CudaAlgorithm::chunked,
      Layout{.state_in_place = true, .sequence_splits = 5}, &used));
  CHECK(used == 5);
}

TEST_CASE("chunked kernel: the automatic plan splits a lone long sequence, and splits less with less workspace") {
  const reference::Problem p = reference::random_problem(1, 4096, 2, 128, 128, 1, true, 2.0, true, 161);
  int used = 0;
  CHECK(check_against_reference<ModelOf<1, true>, bf16>(p, chunked_tolerance<bf16>(), "automatic plan, T=4096",
                                                        dp::CudaAlgorithm::chunked, Layout{.sequence_splits = 0},
                                                        &used));
  CHECK(used > 1);
  CHECK(check_against_reference<ModelOf<1, true>, bf16>(
      p, chunked_tolerance<bf16>(), "no scratch, T=4096", dp::CudaAlgorithm::chunked,
      Layout{.sequence_splits = 0, .minimal_workspace = true}, &used));
  CHECK(used == 1);
}

TEST_CASE("chunked kernel: an explicit split count needs its scratch; a negative one is refused") {
  const reference::Problem p = rounded_problem<bf16>(reference::random_problem(1, 200, 1, 64, 64, 1, false, 2.0,
                                                                               true, 171));
  try {
    (void)run_gpu<ModelOf<1, false>, bf16>(p, dp::CudaAlgorithm::chunked,
                                          Layout{.sequence_splits = 3, .minimal_workspace = true});
    FAIL("a split count without its scratch was accepted");
  } catch (const dp::ArgumentError& e) {
    CHECK(e.argument() == "backend.workspace_bytes");
  }
  try {
    (void)run_gpu<ModelOf<1, false>, bf16>(p, dp::CudaAlgorithm::chunked, Layout{.sequence_splits = -1});
    FAIL("a negative split count was accepted");
  } catch (const dp::ArgumentError& e) {
    CHECK(e.argument() == "backend.sequence_splits");
  }
}

TEST_CASE("chunked kernel: a workspace off its 256-byte alignment is refused when the split scratch is used") {
  const reference::Problem p = rounded_problem<bf16>(reference::random_problem(1, 200, 1, 64, 64, 1, false, 2.0,
                                                                               true, 173));
  // The split scratch takes 16-byte stores; 16 bytes off is aligned for them but not for the documented contract,
  // and 8 bytes off would fault. Both are refused before any kernel runs.
  for (const int offset : {8, 16}) {
    try {
      (void)run_gpu<ModelOf<1, false>, bf16>(p, dp::CudaAlgorithm::chunked,
                                            Layout{.sequence_splits = 3, .workspace_offset = offset});
      FAIL("a workspace " << offset << " bytes off its alignment was accepted");
    } catch (const dp::ArgumentError& e) {
      CHECK(e.argument() == "backend.workspace");
      CHECK(std::string(e.what()).find("256-byte aligned") != std::string::npos);
    }
  }
  // The same call on an aligned workspace runs and is right (the refusal above is about the address alone).
  int used = 0;
  CHECK(check_against_reference<ModelOf<1, false>, bf16>(p, chunked_tolerance<bf16>(), "workspace 256 bytes in",
                                                         dp::CudaAlgorithm::chunked,
                                                         Layout{.sequence_splits = 3, .workspace_offset = 256}, &used));
  CHECK(used == 3);
}

TEST_CASE("the split plan: none when the pairs fill the GPU, many for a lone long sequence" *
          doctest::test_suite("host")) {
  using dp::detail::cuda_chunked::plan_sequence_splits;
  CHECK(plan_sequence_splits(128, 64, 132, 32) == 1);   // B = 8, H = 16: one CTA per multiprocessor already
  CHECK(plan_sequence_splits(8, 256, 132, 32) >= 8);    // B = 1, H = 8, T = 16384
  CHECK(plan_sequence_splits(8, 1, 132, 32) == 1);      // one chunk: nothing to split
  CHECK(plan_sequence_splits(1, 3, 132, 32) <= 3);      // never more runs than chunks
  CHECK(dp::detail::cuda_chunked::split_scratch_bytes(2, 3, 64, 64, 4) == 4 * 3 * 2 * 3 * 64 * 64 * 4);
  CHECK(dp::detail::cuda_chunked::split_scratch_bytes(2, 3, 64, 64, 1) == 0);
}

TEST_CASE("chunked kernel: a beta out of range is reported by check_status()") {
  reference::Problem p = reference::random_problem(1, 40, 2, 128, 128, 1, false, 2.0, true, 91);
  p = rounded_problem<bf16>(p);
  p.beta[17] = 2.5;  // signed_unit allows [0, 2]
  bool threw = false;
  try {
    (void)run_gpu<ModelOf<1, false>, bf16>(p);
  } catch (const dp::ArgumentError& e) {
    threw = true;
    CHECK(e.argument() == "beta");
  }
  CHECK(threw);
}

TEST_CASE("forward(): shape errors are reported before any device work" * doctest::test_suite("host")) {
  std::vector<bf16> buffer(2 * 8 * 2 * 64);
  const bf16* data = buffer.data();
  bf16* out_data = buffer.data();
  const ModelOf<2, false> model;
  dp::DeltaInputs<bf16, float> in{.q = dp::make_view(data, {2, 4, 2, 64}),
                                  .k = dp::make_view(data, {2, 4, 2, 64}),  // T rows instead of T * n_h
                                  .v = dp::make_view(data, {2, 8, 2, 64}),
                                  .beta = dp::make_view(data, {2, 8, 2})};
  const dp::ForwardOutputs<bf16, float> out{.o = dp::make_view(out_data, {2, 4, 2, 64})};
  CHECK_THROWS_WITH_AS(dp::forward(dp::CudaBackend{}, model, in, out),
                       "deltaproduct: argument 'k': expected shape [B, T*n_h, H, K] = [2, 8, 2, 64], got [2, 4, 2, 64]",
                       dp::ArgumentError);
  in.k = dp::make_view(data, {2, 8, 2, 64});
  in.g = dp::make_view(data, {2, 4, 2});  // the model is not gated
  CHECK_THROWS_AS(dp::forward(dp::CudaBackend{}, model, in, out), dp::ArgumentError);
}

int main(int argc, char** argv) { return gpu_harness::run_tests(argc, argv); }
