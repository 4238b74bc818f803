// The CUDA backward (backward.cuh: the recurrent and the chunked forms) against the CPU backend's sequential backward in
// double (cuda/cpu_reference.hpp; itself checked against finite differences in tests/cpu/test_backward.cpp) on the
// same inputs rounded to the element type under test, and one case directly against central differences of the
// double reference forward: n_h 1..4, gated or not, K = V in {32, 64, 128}, K != V (with V not a multiple of 4:
// the scalar-column path), K = 200 (the largest tile), one token and 97, packed sequences with empty and one-token
// members, the normalisation options and scale, strided views, subsets of the gradient views, absent dL/d(final
// state) and initial state, bf16 and fp16 data, a long sequence with beta in [0, 2]; sequences split into runs of
// chunks (the reverse scan's summaries and their fix-up, with gates weakened so that a wrong chaining shows),
// alone and in a training step; kept preambles; the reverse scan's value rows split over two CTAs; the chunked
// backward reproducible bit for bit; value checks; host-side errors and workspace sizes.
//
// Tolerances. The kernels compute in fp32 from inputs the reference also reads. Every transition and its transpose
// is a contraction (unit keys, beta <= 2, gates <= 1), so rounding errors made along the T n_h steps add rather than
// grow, and each step's dot products over K (or V) add about K roundings: the forward's bound 16 (T n_h + K)
// eps_fp32, relative to each gradient's largest entry, holds for every gradient (dL/dg is a reverse cumulative sum
// over the sequence, which the kernel adds in double). Gradients of 16-bit data are then rounded once to the element
// type: u / 2 of an element (bf16: u = 2^-8, fp16: u = 2^-11), so the bound there is u + the fp32 bound. The RMS
// error must stay within half of each bound. Measured on an H200: see the MESSAGE lines (largest in fp32 about
// 1e-6 relative, well inside the bound of 4e-4 at T = 97; bf16 about 0.3 u).
// The chunked backward (chunked_backward_kernel.cuh) rounds its tensor-core operands to 16 bits: the kept tiles
// (S^T, u^T, dL/dS^T, dY^T) once, the factors of each product once more. A gradient is a sum of products each of
// which passes through at most about four such roundings of relative size u / 2 (bf16: u = 2^-8, fp16: u = 2^-11);
// as in the forward, the transitions are contractions, so the scan carries earlier chunks' errors without growth
// and the bound does not depend on T. We bound every gradient's error, relative to its largest entry, by 8 u and its
// relative RMS error by 4 u (the chunked forward's test bounds o by 4 u with half as many roundings).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <deltaproduct/cuda/backward.cuh>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
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
    return 0.0;  // fp32 gradients are not rounded again
}

/// The bound stated at the top of this file.
template <class T>
double tolerance_for(const reference::Problem& p) {
  return unit_roundoff<T>() +
         16.0 * (static_cast<double>(p.T) * p.n_h + std::max(p.K, p.V)) * std::numeric_limits<float>::epsilon();
}

/// The chunked backward's bound, stated at the top of this file.
template <class T>
double chunked_tolerance() {
  return 8.0 * unit_roundoff<T>();
}

using gpu_harness::compare;
using gpu_harness::Errors;
using gpu_harness::normalization_of;
using gpu_harness::rounded;

/// p and w with every value rounded to what the GPU reads: token data and dL/do to T, states to fp32.
template <class T>
void round_problem(reference::Problem& p, reference::LossWeights& w) {
  p.q = rounded<T>(p.q);
  p.k = rounded<T>(p.k);
  p.v = rounded<T>(p.v);
  p.beta = rounded<T>(p.beta);
  p.g = rounded<T>(p.g);
  p.initial_state = rounded<float>(p.initial_state);
  w.o = rounded<T>(w.o);
  w.final_state = rounded<float>(w.final_state);
}

/// Optional changes of the GPU call.
struct Call {
  int head_padding = 0;      ///< extra elements between heads in every [B, rows, H, D] view (strided views)
  bool every_view = true;    ///< false: only dL/dk, dL/dg and dL/d(initial state) are requested
  bool initial_state_gradient = true;
  dp::CudaAlgorithm algorithm = dp::CudaAlgorithm::recurrent;
  bool keep_forward_states = false;  ///< a training step: forward() keeps the states, backward() reads them
  bool warp_specialized = false;     ///< ... with the warp-specialised forward kernel (else the one-role kernel)
  int sequence_splits = 1;           ///< backend.sequence_splits of both calls (1: unsplit; 0: the automatic plan)
  bool keep_preambles = false;       ///< backend.keep_preambles of both calls
  int value_splits = 1;              ///< backend.backward_value_splits
  bool specialized_scan = true;      ///< backend.warp_specialized_backward (the reverse scan's form)
  int gradient_column_stride = 1;    ///< element stride of dL/dq, dL/dk and dL/dv along D (2: every other element)
  bool wgmma_gradients = dp::CudaBackend{}.wgmma_chunk_gradients;  ///< (the chunk-gradient pass's products)
};

struct GpuGradients {
  reference::Gradients d;        ///< empty vectors for the views not requested
  std::string rejected;          ///< the argument check_status() named, if it threw
  bool every_element_nan = true; ///< no gradient element was written (all still the NaN the buffers start with)
  int forward_splits = 1, backward_splits = 1;  ///< what forward_sequence_splits() and backward_sequence_splits() say
  bool preambles_written = false;  ///< keep_preambles, dense batch: the first kept preamble's key scales are set
  std::vector<double> o;         ///< o of the training step's forward (keep_forward_states), else empty
};

/// backward() on the GPU for p (inputs and weights already representable in T) with model type Model.
template <class Model, class T>
GpuGradients run_gpu(const reference::Problem& p, const reference::LossWeights& w, const Call& call = {}) {
  Model model;
  model.options.key_normalization = normalization_of(p.key_norm);
  model.options.query_normalization = normalization_of(p.query_norm);
  model.options.normalization_eps = p.eps;
  model.options.scale = p.scale;
  const dp::index_t B = p.B, T_ = p.T, H = p.H, K = p.K, V = p.V, R = T_ * p.n_h, N = p.sequences();
  const dp::index_t pad = call.head_padding;

  auto spread = [&](const std::vector<double>& dense, dp::index_t rows, dp::index_t D) {
    std::vector<T> out(static_cast<std::size_t>(B * rows * H * (D + pad)), gpu_harness::round_to<T>(0.0));
    for (dp::index_t i = 0; i < B * rows * H; ++i)
      for (dp::index_t d = 0; d < D; ++d)
        out[static_cast<std::size_t>(i * (D + pad) + d)] =
            gpu_harness::round_to<T>(dense[static_cast<std::size_t>(i * D + d)]);
    return out;
  };
  auto gather = [&](const std::vector<T>& padded, dp::index_t rows, dp::index_t D) {
    std::vector<double> out(static_cast<std::size_t>(B * rows * H * D));
    for (dp::index_t i = 0; i < B * rows * H; ++i)
      for (dp::index_t d = 0; d < D; ++d)
        out[static_cast<std::size_t>(i * D + d)] = gpu_harness::widen(padded[static_cast<std::size_t>(i * (D + pad) + d)]);
    return out;
  };
  auto strides = [&](dp::index_t rows, dp::index_t D) {
    return std::array<dp::index_t, 4>{rows * H * (D + pad), H * (D + pad), D + pad, 1};
  };
  // The gradient views of q, k and v: the same rows, every column_stride-th element.
  const dp::index_t column_stride = call.gradient_column_stride;
  auto gradient_strides = [&](dp::index_t rows, dp::index_t D) {
    auto s = strides(rows, D);
    for (auto& x : s) x *= column_stride;
    return s;
  };
  auto gather_gradient = [&](const std::vector<T>& strided, dp::index_t rows, dp::index_t D) {
    std::vector<T> padded(static_cast<std::size_t>(B * rows * H * (D + pad)));
    for (std::size_t i = 0; i < padded.size(); ++i) padded[i] = strided[i * static_cast<std::size_t>(column_stride)];
    return gather(padded, rows, D);
  };
  const auto as_float = [](const std::vector<double>& x) { return std::vector<float>(x.begin(), x.end()); };

  DeviceBuffer<T> q(spread(p.q, T_, K)), k(spread(p.k, R, K)), v(spread(p.v, R, V));
  DeviceBuffer<T> beta(gpu_harness::round_all<T>(p.beta)), g(gpu_harness::round_all<T>(p.g));
  DeviceBuffer<float> h0(as_float(p.initial_state)), d_final(as_float(w.final_state));
  DeviceBuffer<std::int64_t> cu(p.cu_seqlens);
  DeviceBuffer<T> d_o(spread(w.o, T_, V));
  const auto strided_size = [&](std::size_t n) { return n * static_cast<std::size_t>(column_stride); };
  DeviceBuffer<T> dq(strided_size(q.size())), dk(strided_size(k.size())), dv(strided_size(v.size()));
  DeviceBuffer<T> dbeta(beta.size()), dg(g.size());
  DeviceBuffer<float> dh0(static_cast<std::size_t>(N * H * K * V));
  for (auto* buffer : {&dq, &dk, &dv, &dbeta, &dg}) buffer->fill_bytes(0xff);  // NaN: unwritten elements fail
  dh0.fill_bytes(0xff);

  dp::DeltaInputs<T, float> in{.q = dp::View<const T, 4>(q.data(), {B, T_, H, K}, strides(T_, K)),
                               .k = dp::View<const T, 4>(k.data(), {B, R, H, K}, strides(R, K)),
                               .v = dp::View<const T, 4>(v.data(), {B, R, H, V}, strides(R, V)),
                               .beta = dp::make_view(static_cast<const T*>(beta.data()), {B, R, H})};
  if (p.gated) in.g = dp::make_view(static_cast<const T*>(g.data()), {B, T_, H});
  if (!p.initial_state.empty()) in.initial_state = dp::make_view(static_cast<const float*>(h0.data()), {N, H, K, V});
  if (!p.cu_seqlens.empty())
    in.cu_seqlens = dp::make_view(static_cast<const std::int64_t*>(cu.data()), {static_cast<dp::index_t>(cu.size())});
  dp::OutputGradients<T, float> og{.o = dp::View<const T, 4>(d_o.data(), {B, T_, H, V}, strides(T_, V))};
  if (!w.final_state.empty()) og.final_state = dp::make_view(static_cast<const float*>(d_final.data()), {N, H, K, V});
  dp::DeltaGradients<T, float> grads{.k = dp::View<T, 4>(dk.data(), {B, R, H, K}, gradient_strides(R, K))};
  if (call.every_view) {
    grads.q = dp::View<T, 4>(dq.data(), {B, T_, H, K}, gradient_strides(T_, K));
    grads.v = dp::View<T, 4>(dv.data(), {B, R, H, V}, gradient_strides(R, V));
    grads.beta = dp::make_view(dbeta.data(), {B, R, H});
  }
  if (p.gated) grads.g = dp::make_view(dg.data(), {B, T_, H});
  if (call.initial_state_gradient) grads.initial_state = dp::make_view(dh0.data(), {N, H, K, V});

  DeviceBuffer<T> o(d_o.size());
  DeviceBuffer<float> final_state(static_cast<std::size_t>(N * H * K * V));
  const dp::ForwardOutputs<T, float> out{.o = dp::View<T, 4>(o.data(), {B, T_, H, V}, strides(T_, V)),
                                         .final_state = dp::make_view(final_state.data(), {N, H, K, V})};
  dp::CudaBackend sizing{.algorithm = call.algorithm,
                         .sequence_splits = call.sequence_splits,
                         .keep_forward_states = call.keep_forward_states,
                         .keep_preambles = call.keep_preambles};
  gpu_harness::Workspace workspace(std::max(dp::backward_workspace_bytes(sizing, model, in, og, grads),
                                            call.keep_forward_states
                                                ? dp::forward_workspace_bytes(sizing, model, in, out)
                                                : std::size_t{0}));
  workspace.backend.algorithm = call.algorithm;
  workspace.backend.sequence_splits = call.sequence_splits;
  workspace.backend.keep_forward_states = call.keep_forward_states;
  workspace.backend.warp_specialized_forward = call.warp_specialized;
  workspace.backend.keep_preambles = call.keep_preambles;
  workspace.backend.backward_value_splits = call.value_splits;
  workspace.backend.warp_specialized_backward = call.specialized_scan;
  workspace.backend.wgmma_chunk_gradients = call.wgmma_gradients;
  GpuGradients r;
  if (call.keep_forward_states) {
    if constexpr (!std::is_same_v<T, float>) {
      REQUIRE(dp::chunked_forward_applies(workspace.backend, model, in, out));
      REQUIRE(dp::chunked_backward_applies(workspace.backend, model, in, og, grads));
    }
    r.forward_splits = dp::forward_sequence_splits(workspace.backend, model, in, out);
    dp::forward(workspace.backend, model, in, out);
  }
  r.backward_splits = dp::backward_sequence_splits(workspace.backend, model, in, og, grads);
  dp::backward(workspace.backend, model, in, og, grads);
  gpu_harness::synchronize();
  if (call.keep_forward_states) r.o = gather(o.download(), T_, V);
  if constexpr (!std::is_same_v<T, float>) {
    if (call.keep_preambles && p.cu_seqlens.empty() && K == V) {
      // The first kept preamble (chunk 0 of sequence 0, head 0) follows four regions of per-chunk tiles (S^T, D^T:
      // V x K; u^T, dY^T: V x 64; each 256-byte aligned). Its key scales 1 / ||k|| are positive once written (the
      // workspace starts zeroed).
      const dp::index_t C = 64 / p.n_h, tiles = B * ((T_ + C - 1) / C) * H;
      const auto region = [&](dp::index_t columns) {
        return (static_cast<std::size_t>(tiles * V * columns) * sizeof(T) + 255) / 256 * 256;
      };
      const std::size_t offset = dp::cuda_status_bytes + 2 * region(K) + 2 * region(64) +
                                 dp::detail::cuda_chunked::PreambleLayout<Model::householder_steps>::key_scales;
      float first_scale = 0.0f;
      DELTAPRODUCT_CUDA_CHECK(
          cudaMemcpy(&first_scale, workspace.memory.data() + offset, sizeof(float), cudaMemcpyDeviceToHost));
      r.preambles_written = first_scale > 0.0f;
    }
  }

  const auto note_nan = [&](const std::vector<double>& x) {
    for (double e : x)
      if (!std::isnan(e)) r.every_element_nan = false;
  };
  r.d.k = gather_gradient(dk.download(), R, K);
  note_nan(r.d.k);
  if (call.every_view) {
    r.d.q = gather_gradient(dq.download(), T_, K);
    r.d.v = gather_gradient(dv.download(), R, V);
    r.d.beta = gpu_harness::widen_all(dbeta.download());
    note_nan(r.d.q);
    note_nan(r.d.v);
    note_nan(r.d.beta);
  }
  if (p.gated) {
    r.d.g = gpu_harness::widen_all(dg.download());
    note_nan(r.d.g);
  }
  if (call.initial_state_gradient) {
    const std::vector<float> s = dh0.download();
    r.d.initial_state.assign(s.begin(), s.end());
    note_nan(r.d.initial_state);
  }
  try {
    dp::check_status(workspace.backend);
  } catch (const dp::ArgumentError& e) {
    r.rejected = e.argument();
  }
  return r;
}

double largest_magnitude(const std::vector<double>& x) {
  double m = 0.0;
  for (double e : x) m = std::max(m, std::abs(e));
  return m;
}

/// `zero_scale` measures a gradient whose reference is exactly zero (dL/dg at T = 1 without an initial state: the gate
/// scales a zero state). It has no scale of its own, and the GPU forms it as a sum of cancelling terms (the top of
/// recurrent_backward_kernel.cuh), so its error is taken relative to the problem's largest other gradient.
void check_one(const std::string& name, const std::vector<double>& gpu, const std::vector<double>& ref,
               double tolerance, double& worst, double zero_scale = 0.0) {
  if (gpu.empty()) return;  // not requested
  Errors e = compare(gpu, ref);
  if (largest_magnitude(ref) == 0.0 && zero_scale > 0.0) {
    double squares = 0.0;
    for (double x : gpu) squares += x * x;
    e.max_relative = largest_magnitude(gpu) / zero_scale;
    e.rms_relative = std::sqrt(squares / static_cast<double>(gpu.size())) / zero_scale;
  }
  worst = std::max(worst, e.max_relative);
  INFO(name << ": max " << e.max_relative << " rms " << e.rms_relative << " (bound " << tolerance << ")");
  CHECK(e.finite);
  CHECK(e.max_relative <= tolerance);
  CHECK(e.rms_relative <= tolerance / 2);
}

/// Runs p and w (rounded to T) on the GPU and the CPU reference and checks every requested gradient; returns what the
/// GPU gave.
template <class Model, class T>
GpuGradients check_against_reference(reference::Problem p, reference::LossWeights w, const std::string& what,
                             const Call& call = {}) {
  round_problem<T>(p, w);
  const GpuGradients gpu = run_gpu<Model, T>(p, w, call);
  const reference::Gradients ref = cuda_test::cpu_backward_double(p, w);
  const double tolerance =
      call.algorithm == dp::CudaAlgorithm::chunked ? chunked_tolerance<T>() : tolerance_for<T>(p);
  INFO(what);
  CHECK(gpu.rejected.empty());
  double worst = 0.0;
  check_one("dq", gpu.d.q, ref.q, tolerance, worst);
  check_one("dk", gpu.d.k, ref.k, tolerance, worst);
  check_one("dv", gpu.d.v, ref.v, tolerance, worst);
  check_one("dbeta", gpu.d.beta, ref.beta, tolerance, worst);
  const double other_scale = std::max({largest_magnitude(ref.q), largest_magnitude(ref.k), largest_magnitude(ref.v),
                                       largest_magnitude(ref.beta)});
  check_one("dg", gpu.d.g, ref.g, tolerance, worst, other_scale);
  check_one("d initial state", gpu.d.initial_state, ref.initial_state, tolerance, worst);
  // A training step's forward writes o as forward() does: the chunked forward's bound, 4 u (test_cuda_chunked_forward).
  if (!gpu.o.empty()) check_one("o of the forward", gpu.o, cuda_test::cpu_forward_double(p).o, tolerance / 2, worst);
  MESSAGE(what << ": largest relative error " << worst << " (bound " << tolerance << ")");
  return gpu;
}

template <int NH, bool Gated, dp::EigenvalueRange Range = dp::EigenvalueRange::signed_unit>
using ModelOf = dp::DeltaProduct<float, NH, Range, Gated ? dp::Gating::scalar_decay : dp::Gating::none>;

template <int NH, bool Gated>
void check_sizes() {
  std::uint64_t seed = 1000 * NH + (Gated ? 500 : 0);
  for (int D : {32, 64, 128})
    for (int T : {1, 97}) {
      const reference::Problem p = reference::random_problem(2, T, 2, D, D, NH, Gated, 2.0, T != 1, ++seed);
      const std::string what = "n_h " + std::to_string(NH) + (Gated ? " gated" : "") + " K=V=" + std::to_string(D) +
                               " T=" + std::to_string(T);
      check_against_reference<ModelOf<NH, Gated>, float>(p, reference::random_loss_weights(p, seed + 7), what);
    }
}

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

}  // namespace

TEST_CASE("backward: DeltaNet and DeltaProduct n_h 1..4, gated or not, fp32, K = V in {32, 64, 128}") {
  check_sizes<1, false>();
  check_sizes<1, true>();
  check_sizes<2, false>();
  check_sizes<2, true>();
  check_sizes<3, false>();
  check_sizes<3, true>();
  check_sizes<4, false>();
  check_sizes<4, true>();
}

TEST_CASE("backward: matches central differences of the double reference forward") {
  // Independent of the CPU backward: dL/dx by (L(x + h) - L(x - h)) / 2h on the plain-loop reference (h = 1e-5 gives
  // a truncation error ~1e-10 and cancellation ~1e-11 relative); the GPU's fp32 error dominates (bound 1e-4).
  reference::Problem p = reference::random_problem(1, 6, 1, 8, 8, 2, true, 2.0, true, 4242);
  reference::LossWeights w = reference::random_loss_weights(p, 4243);
  round_problem<float>(p, w);
  const GpuGradients gpu = run_gpu<ModelOf<2, true>, float>(p, w);
  const reference::Gradients fd = reference::delta_product_gradients(p, w);
  double worst = 0.0;
  check_one("dq", gpu.d.q, fd.q, 1e-4, worst);
  check_one("dk", gpu.d.k, fd.k, 1e-4, worst);
  check_one("dv", gpu.d.v, fd.v, 1e-4, worst);
  check_one("dbeta", gpu.d.beta, fd.beta, 1e-4, worst);
  check_one("dg", gpu.d.g, fd.g, 1e-4, worst);
  check_one("d initial state", gpu.d.initial_state, fd.initial_state, 1e-4, worst);
  MESSAGE("against finite differences: largest relative error " << worst);
}

TEST_CASE("backward: bf16 and fp16 data") {
  for (int D : {64, 128}) {
    const reference::Problem p = reference::random_problem(2, 97, 2, D, D, 2, true, 2.0, true, 77 + D);
    const reference::LossWeights w = reference::random_loss_weights(p, 78 + D);
    check_against_reference<ModelOf<2, true>, bf16>(p, w, "bf16 n_h 2 gated K=V=" + std::to_string(D));
    check_against_reference<ModelOf<2, true>, fp16>(p, w, "fp16 n_h 2 gated K=V=" + std::to_string(D));
    const reference::Problem net = reference::random_problem(2, 97, 2, D, D, 1, false, 2.0, true, 79 + D);
    reference::LossWeights only_outputs = reference::random_loss_weights(net, 80 + D);
    only_outputs.final_state.clear();
    check_against_reference<ModelOf<1, false>, bf16>(net, only_outputs,
                                                     "bf16 DeltaNet K=V=" + std::to_string(D) + " (dL/do only)");
  }
}

TEST_CASE("backward: K != V, V not a multiple of 4 (scalar columns), K = 200 (the largest tile)") {
  const std::array<std::array<int, 2>, 5> shapes{{{48, 80}, {64, 37}, {200, 64}, {17, 5}, {128, 256}}};
  std::uint64_t seed = 300;
  for (const auto& [K, V] : shapes) {
    const reference::Problem p = reference::random_problem(1, 41, 3, K, V, 2, true, 2.0, true, ++seed);
    check_against_reference<ModelOf<2, true>, float>(p, reference::random_loss_weights(p, seed + 50),
                                                     "K=" + std::to_string(K) + " V=" + std::to_string(V));
  }
}

TEST_CASE("backward: packed sequences with empty and one-token members") {
  const reference::Problem p = packed_problem({0, 1, 50, 0, 33, 7}, 2, 64, 64, 2, true, 911);
  check_against_reference<ModelOf<2, true>, float>(p, reference::random_loss_weights(p, 912), "packed gated n_h 2");
  const reference::Problem q = packed_problem({5, 0, 40}, 1, 128, 128, 1, false, 913);
  check_against_reference<ModelOf<1, false>, bf16>(q, reference::random_loss_weights(q, 914), "packed bf16 DeltaNet");
}

TEST_CASE("backward: normalisation options and scale") {
  std::uint64_t seed = 600;
  for (int key_norm : {0, 1, 2})
    for (int query_norm : {0, 1, 2}) {
      reference::Problem p = reference::random_problem(1, 30, 2, 64, 64, 2, false, 2.0, true, ++seed);
      p.key_norm = key_norm;
      p.query_norm = query_norm;
      p.eps = 0.5;  // large enough to change the gradient visibly
      p.scale = 0.7;
      if (key_norm == 0)  // raw keys must keep every transition a contraction: |k|^2 beta <= 2
        for (std::size_t i = 0; i < p.k.size(); ++i) p.k[i] /= 8.0 * std::sqrt(2.0);
      check_against_reference<ModelOf<2, false>, float>(
          p, reference::random_loss_weights(p, seed + 9),
          "key norm " + std::to_string(key_norm) + " query norm " + std::to_string(query_norm));
    }
}

TEST_CASE("backward: strided views, a subset of the gradients, no dL/d(final state), no initial state") {
  reference::Problem p = reference::random_problem(2, 60, 2, 64, 64, 3, true, 2.0, true, 1201);
  reference::LossWeights w = reference::random_loss_weights(p, 1202);
  check_against_reference<ModelOf<3, true>, bf16>(p, w, "head padding 8", Call{.head_padding = 8});
  check_against_reference<ModelOf<3, true>, float>(p, w, "only dk, dg, d initial state", Call{.every_view = false});
  reference::LossWeights no_final = w;
  no_final.final_state.clear();
  check_against_reference<ModelOf<3, true>, float>(p, no_final, "no dL/d(final state)");
  reference::Problem fresh = p;
  fresh.initial_state.clear();
  check_against_reference<ModelOf<3, true>, float>(fresh, w, "no initial state");
  check_against_reference<ModelOf<3, true>, float>(fresh, no_final, "neither, no d initial state",
                                                   Call{.initial_state_gradient = false});
}

TEST_CASE("backward: eigenvalues in [0, 1] and a long sequence with reflections (beta in [0, 2])") {
  const reference::Problem p = reference::random_problem(1, 80, 2, 64, 64, 1, true, 1.0, true, 1301);
  check_against_reference<ModelOf<1, true, dp::EigenvalueRange::unit>, float>(
      p, reference::random_loss_weights(p, 1302), "[0, 1] gated DeltaNet");
  const reference::Problem long_p = reference::random_problem(1, 2048, 1, 64, 64, 2, true, 2.0, true, 1303);
  check_against_reference<ModelOf<2, true>, float>(long_p, reference::random_loss_weights(long_p, 1304),
                                                   "T = 2048 n_h 2 gated");
}

TEST_CASE("backward: a beta out of range is reported by check_status() and no gradient is written") {
  reference::Problem p = reference::random_problem(1, 40, 2, 64, 64, 1, true, 2.0, true, 1401);
  reference::LossWeights w = reference::random_loss_weights(p, 1402);
  round_problem<float>(p, w);
  p.beta[17] = 2.5;  // signed_unit allows [0, 2]
  const GpuGradients gpu = run_gpu<ModelOf<1, true>, float>(p, w);
  CHECK(gpu.rejected == "beta");
  CHECK(gpu.every_element_nan);
}

TEST_CASE("backward(): argument errors are reported before any device work" * doctest::test_suite("host")) {
  // Host memory stands in for device memory: every error below is raised before a pointer is used.
  std::vector<float> buffer(2 * 8 * 2 * 64, 0.0f);
  const float* data = buffer.data();
  float* out = buffer.data();
  const ModelOf<2, true> model;
  const dp::DeltaInputs<float, float> in{.q = dp::make_view(data, {2, 4, 2, 64}),
                                         .k = dp::make_view(data, {2, 8, 2, 64}),
                                         .v = dp::make_view(data, {2, 8, 2, 64}),
                                         .beta = dp::make_view(data, {2, 8, 2}),
                                         .g = dp::make_view(data, {2, 4, 2})};
  const dp::OutputGradients<float, float> og{.o = dp::make_view(data, {2, 4, 2, 64})};
  dp::DeltaGradients<float, float> grads{.k = dp::make_view(out, {2, 4, 2, 64})};  // T rows instead of T * n_h
  CHECK_THROWS_WITH_AS(
      dp::backward(dp::CudaBackend{}, model, in, og, grads),
      "deltaproduct: argument 'gradients.k': expected shape [B, T*n_h, H, K] = [2, 8, 2, 64], got [2, 4, 2, 64]",
      dp::ArgumentError);
  grads.k = dp::make_view(out, {2, 8, 2, 64});

  // The exact workspace: the value-check record and 4 (2 R V + T K + R K + R + T) bytes per (batch row, head),
  // each region padded to 256 bytes.
  const std::size_t rows = 2 * 8 * 2, tokens = 2 * 4 * 2, K = 64, V = 64;  // B * T * n_h * H, B * T * H
  const auto padded = [](std::size_t floats) { return (floats + 63) / 64 * 64 * 4; };
  const std::size_t expected = dp::cuda_status_bytes + 2 * padded(rows * V) + padded(tokens * K) +
                               padded(rows * K) + padded(rows) + padded(tokens) + padded(2 * 2);
  CHECK(dp::backward_workspace_bytes(model, in, og, grads) == expected);

  const auto argument_of = [&](const dp::CudaBackend& backend, const dp::DeltaGradients<float, float>& g) {
    try {
      dp::backward(backend, model, in, og, g);
    } catch (const dp::ArgumentError& e) {
      return e.argument();
    }
    return std::string("(no error)");
  };
  CHECK(argument_of(dp::CudaBackend{}, grads) == "backend.workspace_bytes");
  // The recurrent form has no reverse scan to split, but a count other than 1 or 2 is still an error.
  CHECK(argument_of(dp::CudaBackend{.backward_value_splits = 3}, grads) == "backend.backward_value_splits");
  CHECK(argument_of(dp::CudaBackend{.backward_value_splits = 2}, grads) == "backend.workspace_bytes");
  CHECK(argument_of(dp::CudaBackend{.algorithm = dp::CudaAlgorithm::chunked}, grads) == "backend.algorithm");
  dp::DeltaGradients<float, float> misaligned = grads;
  misaligned.v = dp::make_view(reinterpret_cast<float*>(reinterpret_cast<char*>(out) + 2), {2, 8, 2, 64});
  CHECK(argument_of(dp::CudaBackend{}, misaligned) == "gradients.v");

  // Packed sequences (cu_seqlens): B = 1, at least one sequence, and every state shaped [N, H, K, V] with
  // N = len(cu_seqlens) - 1 = 3 here.
  std::vector<std::int64_t> offsets{0, 1, 3, 4};
  const auto packed_argument = [&](dp::DeltaInputs<float, float> packed_in, dp::OutputGradients<float, float> packed_og,
                                   dp::DeltaGradients<float, float> packed_grads) {
    try {
      dp::backward(dp::CudaBackend{}, model, packed_in, packed_og, packed_grads);
    } catch (const dp::ArgumentError& e) {
      return e.argument();
    }
    return std::string("(no error)");
  };
  dp::DeltaInputs<float, float> packed{.q = dp::make_view(data, {1, 4, 2, 64}),
                                       .k = dp::make_view(data, {1, 8, 2, 64}),
                                       .v = dp::make_view(data, {1, 8, 2, 64}),
                                       .beta = dp::make_view(data, {1, 8, 2}),
                                       .g = dp::make_view(data, {1, 4, 2}),
                                       .cu_seqlens = dp::make_view<const std::int64_t>(offsets.data(), {4})};
  const dp::OutputGradients<float, float> packed_og{.o = dp::make_view(data, {1, 4, 2, 64})};
  const dp::DeltaGradients<float, float> packed_grads{.k = dp::make_view(out, {1, 8, 2, 64})};
  auto two_rows = in;
  two_rows.cu_seqlens = packed.cu_seqlens;
  CHECK(packed_argument(two_rows, og, grads) == "q");  // B = 2
  auto one_offset = packed;
  one_offset.cu_seqlens = dp::make_view<const std::int64_t>(offsets.data(), {1});
  CHECK(packed_argument(one_offset, packed_og, packed_grads) == "cu_seqlens");
  auto wrong_initial = packed;
  wrong_initial.initial_state = dp::make_view(data, {2, 2, 64, 64});  // N = 2, not 3
  CHECK(packed_argument(wrong_initial, packed_og, packed_grads) == "initial_state");
  auto wrong_final = packed_og;
  wrong_final.final_state = dp::make_view(data, {4, 2, 64, 64});
  CHECK(packed_argument(packed, wrong_final, packed_grads) == "output_gradients.final_state");
  auto wrong_gradient = packed_grads;
  wrong_gradient.initial_state = dp::make_view(out, {1, 2, 64, 64});
  CHECK(packed_argument(packed, packed_og, wrong_gradient) == "gradients.initial_state");

  // bf16 data with K = V = 32: the chunked backward does not take it (K = V in {64, 128}), so asking for it is an
  // error and the automatic choice is the recurrent form.
  std::vector<bf16> small_buffer(2 * 8 * 2 * 32);
  const bf16* small = small_buffer.data();
  bf16* small_out = small_buffer.data();
  const dp::DeltaInputs<bf16, float> small_in{.q = dp::make_view(small, {2, 4, 2, 32}),
                                              .k = dp::make_view(small, {2, 8, 2, 32}),
                                              .v = dp::make_view(small, {2, 8, 2, 32}),
                                              .beta = dp::make_view(small, {2, 8, 2}),
                                              .g = dp::make_view(small, {2, 4, 2})};
  const dp::OutputGradients<bf16, float> small_og{.o = dp::make_view(small, {2, 4, 2, 32})};
  const dp::DeltaGradients<bf16, float> small_grads{.k = dp::make_view(small_out, {2, 8, 2, 32})};
  CHECK_FALSE(dp::chunked_backward_applies(dp::CudaBackend{}, model, small_in, small_og, small_grads));
  try {
    dp::backward(dp::CudaBackend{.algorithm = dp::CudaAlgorithm::chunked}, model, small_in, small_og, small_grads);
    FAIL("the chunked backward accepted K = 32");
  } catch (const dp::ArgumentError& e) {
    CHECK(e.argument() == "backend.algorithm");
    CHECK(std::string(e.what()).find("K = V in {64, 128}") != std::string::npos);
  }

  // bf16 data, B = 1, T = 256, H = 2, K = V = 64, n_h = 1: the chunked backward keeps, per chunk slot (4 of 64
  // tokens) and head, S^T and D^T (K V each) and u^T and dY^T (V x 64 each) in bf16; 32 splits add their fp32
  // scratch (C_i, P_i, S_i: 3 K V per run and pair), which is then larger than the recurrent form's scratch.
  {
    const ModelOf<1, true> net;
    std::vector<bf16> net_tokens(256 * 2 * 64);
    const bf16* x = net_tokens.data();
    bf16* dx = net_tokens.data();
    const dp::DeltaInputs<bf16, float> net_in{.q = dp::make_view(x, {1, 256, 2, 64}),
                                              .k = dp::make_view(x, {1, 256, 2, 64}),
                                              .v = dp::make_view(x, {1, 256, 2, 64}),
                                              .beta = dp::make_view(x, {1, 256, 2}),
                                              .g = dp::make_view(x, {1, 256, 2})};
    const dp::OutputGradients<bf16, float> net_og{.o = dp::make_view(x, {1, 256, 2, 64})};
    const dp::DeltaGradients<bf16, float> net_grads{.k = dp::make_view(dx, {1, 256, 2, 64})};
    const std::size_t slots = 4 * 2, kept = 2 * slots * (2 * 64 * 64 + 2 * 64 * 64);  // each region a multiple of 256
    const std::size_t split = 4 * 3 * 2 * 64 * 64 * 32;
    const std::size_t r = 256 * 2;  // rows = tokens here (n_h = 1)
    const std::size_t recurrent = 2 * padded(r * 64) + padded(r * 64) + padded(r * 64) + padded(r) + padded(r) +
                                  padded(2);
    // (The automatic plan, CudaBackend{}, sizes for the split count it picks on the device: a GPU test checks it.)
    CHECK(dp::backward_workspace_bytes(dp::CudaBackend{.sequence_splits = 1}, net, net_in, net_og, net_grads) ==
          dp::cuda_status_bytes + std::max(kept, recurrent));
    CHECK(dp::backward_workspace_bytes(dp::CudaBackend{.sequence_splits = 32}, net, net_in, net_og, net_grads) ==
          dp::cuda_status_bytes + std::max(kept + split, recurrent));
    CHECK(kept + split > recurrent);
  }

  const ModelOf<2, true> wide_model;
  std::vector<float> wide(8 * 300, 0.0f);
  const dp::DeltaInputs<float, float> wide_in{.q = dp::make_view(static_cast<const float*>(wide.data()), {1, 4, 1, 300}),
                                              .k = dp::make_view(static_cast<const float*>(wide.data()), {1, 8, 1, 300}),
                                              .v = dp::make_view(static_cast<const float*>(wide.data()), {1, 8, 1, 4}),
                                              .beta = dp::make_view(static_cast<const float*>(wide.data()), {1, 8, 1}),
                                              .g = dp::make_view(static_cast<const float*>(wide.data()), {1, 4, 1})};
  const dp::OutputGradients<float, float> wide_og{.o = dp::make_view(static_cast<const float*>(wide.data()), {1, 4, 1, 4})};
  try {
    dp::backward(dp::CudaBackend{}, wide_model, wide_in, wide_og, dp::DeltaGradients<float, float>{});
    FAIL("K = 300 was accepted");
  } catch (const dp::ArgumentError& e) {
    CHECK(e.argument() == "q");
    CHECK(std::string(e.what()).find("K = 300") != std::string::npos);
  }
}

namespace {

const Call chunked_call{.algorithm = dp::CudaAlgorithm::chunked};

template <int NH, bool Gated>
void check_chunked_sizes(std::uint64_t seed) {
  for (int D : {64, 128}) {
    const reference::Problem p = reference::random_problem(2, 97, 2, D, D, NH, Gated, 2.0, true, ++seed);
    const std::string what = "chunked bf16 n_h " + std::to_string(NH) + (Gated ? " gated" : "") +
                             " K=V=" + std::to_string(D) + " T=97";
    check_against_reference<ModelOf<NH, Gated>, bf16>(p, reference::random_loss_weights(p, seed + 7), what,
                                                      chunked_call);
  }
}

}  // namespace

TEST_CASE("chunked backward: n_h 1..4, gated or not, K = V in {64, 128}, bf16, T not a multiple of a chunk") {
  check_chunked_sizes<1, false>(2000);
  check_chunked_sizes<1, true>(2100);
  check_chunked_sizes<2, false>(2200);
  check_chunked_sizes<2, true>(2300);
  check_chunked_sizes<3, false>(2400);
  check_chunked_sizes<3, true>(2500);
  check_chunked_sizes<4, false>(2600);
  check_chunked_sizes<4, true>(2700);
}

TEST_CASE("chunked backward: fp16, one token, [0, 1], packed sequences, normalisation options, strided views") {
  const reference::Problem p = reference::random_problem(2, 150, 2, 128, 128, 1, true, 2.0, true, 2801);
  check_against_reference<ModelOf<1, true>, fp16>(p, reference::random_loss_weights(p, 2802), "chunked fp16 gated",
                                                  chunked_call);
  const reference::Problem one = reference::random_problem(3, 1, 2, 64, 64, 2, true, 2.0, true, 2803);
  check_against_reference<ModelOf<2, true>, bf16>(one, reference::random_loss_weights(one, 2804),
                                                  "chunked T=1 n_h 2 gated", chunked_call);
  const reference::Problem unit = reference::random_problem(1, 80, 2, 64, 64, 2, true, 1.0, true, 2805);
  check_against_reference<ModelOf<2, true, dp::EigenvalueRange::unit>, bf16>(
      unit, reference::random_loss_weights(unit, 2806), "chunked [0, 1] gated n_h 2", chunked_call);
  const reference::Problem packed = packed_problem({0, 1, 70, 0, 33, 130}, 2, 64, 64, 2, true, 2807);
  check_against_reference<ModelOf<2, true>, bf16>(packed, reference::random_loss_weights(packed, 2808),
                                                  "chunked packed gated n_h 2", chunked_call);
  const reference::Problem packed_net = packed_problem({5, 0, 140}, 1, 128, 128, 1, false, 2809);
  check_against_reference<ModelOf<1, false>, bf16>(packed_net, reference::random_loss_weights(packed_net, 2810),
                                                   "chunked packed DeltaNet", chunked_call);
  std::uint64_t seed = 2900;
  for (int key_norm : {0, 1, 2})
    for (int query_norm : {0, 1, 2}) {
      reference::Problem n = reference::random_problem(1, 70, 2, 64, 64, 1, true, 2.0, true, ++seed);
      n.key_norm = key_norm;
      n.query_norm = query_norm;
      n.eps = 0.5;
      n.scale = 0.7;
      if (key_norm == 0)
        for (std::size_t i = 0; i < n.k.size(); ++i) n.k[i] /= 8.0 * std::sqrt(2.0);
      check_against_reference<ModelOf<1, true>, bf16>(
          n, reference::random_loss_weights(n, seed + 9),
          "chunked key norm " + std::to_string(key_norm) + " query norm " + std::to_string(query_norm), chunked_call);
    }
  reference::Problem s = reference::random_problem(2, 60, 2, 64, 64, 3, true, 2.0, true, 2950);
  reference::LossWeights w = reference::random_loss_weights(s, 2951);
  check_against_reference<ModelOf<3, true>, bf16>(s, w, "chunked head padding 8",
                                                  Call{.head_padding = 8, .algorithm = dp::CudaAlgorithm::chunked});
  // Gradient views with a column stride of 2: the chunk-gradient kernel's element-by-element stores.
  check_against_reference<ModelOf<3, true>, bf16>(
      s, w, "chunked gradient column stride 2",
      Call{.algorithm = dp::CudaAlgorithm::chunked, .gradient_column_stride = 2});
  const reference::Problem wide = reference::random_problem(2, 150, 2, 128, 128, 1, true, 2.0, true, 2952);
  check_against_reference<ModelOf<1, true>, bf16>(
      wide, reference::random_loss_weights(wide, 2953), "chunked K=V=128, gradient column stride 2",
      Call{.head_padding = 8, .algorithm = dp::CudaAlgorithm::chunked, .gradient_column_stride = 2});
  reference::LossWeights no_final = w;
  no_final.final_state.clear();
  s.initial_state.clear();
  check_against_reference<ModelOf<3, true>, bf16>(
      s, no_final, "chunked subset, no states",
      Call{.every_view = false, .initial_state_gradient = false, .algorithm = dp::CudaAlgorithm::chunked});
}

TEST_CASE("chunked backward: the one-role and the warp-specialised reverse scan both match the reference") {
  // The tests above take the warp-specialised scan where it applies (sm_90a, unsplit, no kept preambles or value
  // splits); here both forms run on the same inputs: every n_h at both widths, gated or not, packed sequences with
  // empty and one-token members, T not a multiple of a chunk.
  for (const bool specialized : {false, true}) {
    Call call = chunked_call;
    call.specialized_scan = specialized;
    const std::string form = specialized ? "warp-specialised scan, " : "one-role scan, ";
    const reference::Problem one = reference::random_problem(2, 200, 2, 128, 128, 1, true, 2.0, true, 3401);
    check_against_reference<ModelOf<1, true>, bf16>(one, reference::random_loss_weights(one, 3402),
                                                    form + "gated DeltaNet K=V=128", call);
    const reference::Problem two = packed_problem({0, 1, 90, 0, 150}, 2, 64, 64, 2, true, 3403);
    check_against_reference<ModelOf<2, true>, bf16>(two, reference::random_loss_weights(two, 3404),
                                                    form + "packed gated n_h 2 K=V=64", call);
    const reference::Problem three = reference::random_problem(1, 97, 2, 128, 128, 3, false, 2.0, true, 3405);
    check_against_reference<ModelOf<3, false>, bf16>(three, reference::random_loss_weights(three, 3406),
                                                     form + "n_h 3 K=V=128", call);
    const reference::Problem four = reference::random_problem(2, 70, 1, 64, 64, 4, true, 2.0, true, 3407);
    check_against_reference<ModelOf<4, true>, fp16>(four, reference::random_loss_weights(four, 3408),
                                                    form + "fp16 gated n_h 4 K=V=64", call);
    const reference::Problem net = packed_problem({1, 0, 64, 129}, 2, 128, 128, 1, false, 3409);
    check_against_reference<ModelOf<1, false>, bf16>(net, reference::random_loss_weights(net, 3410),
                                                     form + "packed DeltaNet K=V=128", call);
  }
}

namespace {

/// The chunk-gradient pass's checks at K = V = 128 in one form (Call::wgmma_gradients), `form` naming it.
void check_gradient_pass_form(const Call& call, const std::string& form) {
  std::uint64_t seed = 3500;
  const auto both = [&]<int NH>(std::integral_constant<int, NH>) {
    for (const bool gated : {false, true}) {
      const reference::Problem p = reference::random_problem(2, 97, 2, 128, 128, NH, gated, 2.0, true, ++seed);
      const std::string what = form + " n_h " + std::to_string(NH) + (gated ? " gated" : "") + " T=97";
      if (gated)
        check_against_reference<ModelOf<NH, true>, bf16>(p, reference::random_loss_weights(p, ++seed), what, call);
      else
        check_against_reference<ModelOf<NH, false>, bf16>(p, reference::random_loss_weights(p, ++seed), what, call);
    }
  };
  both(std::integral_constant<int, 1>{});
  both(std::integral_constant<int, 2>{});
  both(std::integral_constant<int, 3>{});
  both(std::integral_constant<int, 4>{});
  const reference::Problem fp16_problem = reference::random_problem(2, 150, 2, 128, 128, 1, true, 2.0, true, 3551);
  check_against_reference<ModelOf<1, true>, fp16>(fp16_problem, reference::random_loss_weights(fp16_problem, 3552),
                                                  form + " fp16 gated", call);
  const reference::Problem packed = packed_problem({0, 1, 70, 0, 33, 130}, 2, 128, 128, 2, true, 3553);
  check_against_reference<ModelOf<2, true>, bf16>(packed, reference::random_loss_weights(packed, 3554),
                                                  form + " packed gated n_h 2", call);
  for (int norm : {0, 2}) {
    reference::Problem n = reference::random_problem(1, 70, 2, 128, 128, 1, true, 2.0, true, 3560 + norm);
    n.key_norm = norm;
    n.query_norm = 2 - norm;
    n.eps = 0.5;
    n.scale = 0.7;
    if (norm == 0)
      for (std::size_t i = 0; i < n.k.size(); ++i) n.k[i] /= 8.0 * std::sqrt(2.0);
    check_against_reference<ModelOf<1, true>, bf16>(n, reference::random_loss_weights(n, 3570 + norm),
                                                    form + " key norm " + std::to_string(norm), call);
  }
  const reference::Problem strided = reference::random_problem(2, 150, 2, 128, 128, 3, true, 2.0, true, 3580);
  Call strided_call = call;
  strided_call.head_padding = 8;
  strided_call.gradient_column_stride = 2;
  check_against_reference<ModelOf<3, true>, bf16>(strided, reference::random_loss_weights(strided, 3581),
                                                  form + " n_h 3, head padding 8, column stride 2", strided_call);
}

}  // namespace

TEST_CASE("chunked backward: the chunk-gradient pass on wgmma and on mma.sync both match the reference (K = V = 128)") {
  // CudaBackend::wgmma_chunk_gradients: sm_90a runs the pass's products as wgmmas (elsewhere the call takes the
  // mma.sync kernel, and these checks hold all the same); the tests above take the default. Both forms here: every
  // n_h, gated or not, T not a multiple of a chunk (token rows past the data), fp16, packed sequences with empty and
  // one-token members, the normalisation options and strided views, against the same reference and tolerances.
  int device = 0, major = 0;
  REQUIRE(cudaGetDevice(&device) == cudaSuccess);
  REQUIRE(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess);
  const dp::CudaBackend asks{.wgmma_chunk_gradients = true};
  if (major == 9) {  // the project builds sm_90a: the kernel must not fall back silently
    CHECK(dp::detail::takes_wgmma_gradient_kernel<bf16, 128, 1, true>(asks));
    CHECK(dp::detail::takes_wgmma_gradient_kernel<fp16, 128, 4, false>(asks));
  } else {
    MESSAGE("compute capability " << major << ": the chunk-gradient pass runs on mma.sync");
  }
  CHECK_FALSE(dp::detail::takes_wgmma_gradient_kernel<bf16, 64, 1, true>(asks));
  CHECK_FALSE(
      dp::detail::takes_wgmma_gradient_kernel<bf16, 128, 1, true>(dp::CudaBackend{.wgmma_chunk_gradients = false}));
  for (const bool wgmma : {false, true}) {
    Call call = chunked_call;
    call.wgmma_gradients = wgmma;
    check_gradient_pass_form(call, wgmma ? "wgmma gradient pass" : "mma.sync gradient pass");
  }
}

TEST_CASE("chunked backward: a long sequence keeps the error bounded (T = 4096, beta in [0, 2])") {
  const reference::Problem p = reference::random_problem(1, 4096, 2, 128, 128, 1, true, 2.0, true, 3001);
  check_against_reference<ModelOf<1, true>, bf16>(p, reference::random_loss_weights(p, 3002),
                                                  "chunked gated DeltaNet T=4096", chunked_call);
  const reference::Problem q = reference::random_problem(1, 2048, 1, 128, 128, 2, false, 2.0, true, 3003);
  check_against_reference<ModelOf<2, false>, bf16>(q, reference::random_loss_weights(q, 3004),
                                                   "chunked DeltaProduct n_h 2 T=2048", chunked_call);
}

TEST_CASE("chunked backward: a training step keeps the forward's states and the backward reuses them") {
  const Call keep{.algorithm = dp::CudaAlgorithm::chunked, .keep_forward_states = true};
  const reference::Problem p = reference::random_problem(2, 200, 2, 128, 128, 1, true, 2.0, true, 3201);
  check_against_reference<ModelOf<1, true>, bf16>(p, reference::random_loss_weights(p, 3202), "kept, gated DeltaNet",
                                                  keep);
  const reference::Problem q = packed_problem({0, 90, 1, 150}, 2, 64, 64, 3, false, 3203);
  check_against_reference<ModelOf<3, false>, bf16>(q, reference::random_loss_weights(q, 3204),
                                                   "kept, packed n_h 3", keep);
  // The warp-specialised forward keeps the same states.
  Call specialized = keep;
  specialized.warp_specialized = true;
  check_against_reference<ModelOf<1, true>, bf16>(p, reference::random_loss_weights(p, 3202),
                                                  "kept by the warp-specialised forward, gated DeltaNet", specialized);
  check_against_reference<ModelOf<3, false>, bf16>(q, reference::random_loss_weights(q, 3204),
                                                   "kept by the warp-specialised forward, packed n_h 3", specialized);
  // Without kept states, the backward's own state pass runs the same kernels (warp-specialised here), o not written.
  const Call own_pass{.algorithm = dp::CudaAlgorithm::chunked, .warp_specialized = true};
  check_against_reference<ModelOf<1, true>, bf16>(p, reference::random_loss_weights(p, 3202),
                                                  "state pass by the warp-specialised kernel, gated DeltaNet",
                                                  own_pass);
  check_against_reference<ModelOf<3, false>, bf16>(q, reference::random_loss_weights(q, 3204),
                                                   "state pass by the warp-specialised kernel, packed n_h 3", own_pass);
}

namespace {

/// p with its gates 100 times weaker: a 64-token chunk then keeps about 85% of the state instead of about e^-16, so
/// that what crosses a run boundary (the split backward's fix-up) stays far above the bound. The betas keep their
/// full range: near-identity transitions would be nearly symmetric, and a transposed one would pass.
reference::Problem with_weak_gates(reference::Problem p) {
  for (double& g : p.g) g *= 0.01;
  return p;
}

/// The chunked backward with `splits` runs per sequence against the reference, and the count it used.
template <class Model, class T>
void check_split_backward(const reference::Problem& p, std::uint64_t seed, int splits, const std::string& what,
                          Call call = chunked_call) {
  call.sequence_splits = splits;
  const GpuGradients gpu = check_against_reference<Model, T>(p, reference::random_loss_weights(p, seed),
                                                             what + ", " + std::to_string(splits) + " runs", call);
  CHECK(gpu.backward_splits == splits);
  if (call.keep_forward_states) CHECK(gpu.forward_splits == splits);
}

}  // namespace

TEST_CASE("chunked backward: sequences split into runs (reverse summaries, fix-up with time reversed, every run)") {
  // 10 chunks: runs of unequal length; 12 runs leave some empty.
  const reference::Problem net = reference::random_problem(2, 9 * 64 + 5, 2, 64, 64, 1, false, 2.0, true, 3301);
  for (int splits : {2, 3, 5, 9, 12})
    check_split_backward<ModelOf<1, false>, bf16>(net, 3302, splits, "split DeltaNet K=V=64");
  // The state pass of a split backward runs the forward's split passes, here through the warp-specialised kernel.
  const Call specialized{.algorithm = dp::CudaAlgorithm::chunked, .warp_specialized = true};
  check_split_backward<ModelOf<1, false>, bf16>(net, 3303, 4, "split DeltaNet, warp-specialised state pass",
                                                specialized);

  const reference::Problem gated =
      with_weak_gates(reference::random_problem(1, 7 * 64 + 30, 2, 128, 128, 1, true, 2.0, true, 3304));
  check_split_backward<ModelOf<1, true>, bf16>(gated, 3305, 3, "split gated DeltaNet K=V=128, weak gates");
  const reference::Problem product =
      with_weak_gates(reference::random_problem(2, 6 * 32 + 7, 1, 64, 64, 2, true, 2.0, true, 3306));
  check_split_backward<ModelOf<2, true>, bf16>(product, 3307, 4, "split gated n_h 2, weak gates");
  const reference::Problem three = reference::random_problem(1, 5 * 21 + 3, 2, 128, 128, 3, false, 2.0, true, 3308);
  check_split_backward<ModelOf<3, false>, bf16>(three, 3309, 2, "split n_h 3 K=V=128");

  // fp16, eigenvalues in [0, 1], n_h = 4, without states (no initial state, no dL/d(final state)).
  const reference::Problem bare =
      with_weak_gates(reference::random_problem(1, 8 * 16 + 9, 2, 64, 64, 4, true, 1.0, false, 3310));
  {
    reference::LossWeights w = reference::random_loss_weights(bare, 3311);
    w.final_state.clear();
    Call call = chunked_call;
    call.sequence_splits = 3;
    call.initial_state_gradient = false;
    const GpuGradients gpu = check_against_reference<ModelOf<4, true, dp::EigenvalueRange::unit>, fp16>(
        bare, w, "split fp16 [0, 1] n_h 4, no states", call);
    CHECK(gpu.backward_splits == 3);
  }

  // Packed sequences with empty and one-token members: runs past a short member's chunks are empty.
  const reference::Problem packed = with_weak_gates(packed_problem({0, 1, 300, 0, 70, 129}, 2, 64, 64, 1, true, 3312));
  check_split_backward<ModelOf<1, true>, bf16>(packed, 3313, 4, "split packed gated");
}

TEST_CASE("chunked backward: a training step splits its forward and backward, keeping the states of every run") {
  Call keep{.algorithm = dp::CudaAlgorithm::chunked, .keep_forward_states = true};
  const reference::Problem p =
      with_weak_gates(reference::random_problem(1, 9 * 64 + 17, 2, 128, 128, 1, true, 2.0, true, 3401));
  check_split_backward<ModelOf<1, true>, bf16>(p, 3402, 3, "kept, split gated DeltaNet", keep);
  const reference::Problem q = packed_problem({0, 90, 1, 350}, 2, 64, 64, 3, false, 3403);
  check_split_backward<ModelOf<3, false>, bf16>(q, 3404, 5, "kept, split packed n_h 3", keep);
  keep.warp_specialized = true;
  check_split_backward<ModelOf<1, true>, bf16>(p, 3402, 3, "kept by the warp-specialised forward, split", keep);
  check_split_backward<ModelOf<3, false>, bf16>(q, 3404, 5, "kept by the warp-specialised forward, split n_h 3",
                                                keep);
}

TEST_CASE("chunked backward: the automatic plan splits as the forward's does; an explicit count needs its scratch") {
  // One sequence of 16 chunks and 2 heads leave most multiprocessors idle: the forward's plan splits it (8 runs on
  // 132 multiprocessors), and a training step with it, both calls the same.
  const reference::Problem p = reference::random_problem(1, 1000, 2, 64, 64, 1, false, 2.0, true, 3501);
  Call automatic_call = chunked_call;
  automatic_call.sequence_splits = 0;
  const GpuGradients automatic = check_against_reference<ModelOf<1, false>, bf16>(
      p, reference::random_loss_weights(p, 3502), "automatic plan, one long sequence", automatic_call);
  const int planned = dp::detail::cuda_chunked::plan_sequence_splits(
      2, 16, dp::detail::multiprocessor_count(), dp::detail::chunked_max_sequence_splits);
  CHECK(planned > 1);
  CHECK(automatic.backward_splits == planned);
  automatic_call.keep_forward_states = true;
  const GpuGradients step = check_against_reference<ModelOf<1, false>, bf16>(
      p, reference::random_loss_weights(p, 3502), "automatic plan, a training step", automatic_call);
  CHECK(step.forward_splits == planned);
  CHECK(step.backward_splits == planned);

  // A workspace sized for the automatic plan's runs lacks the scratch of 32 (12 K V bytes per run and pair, 3 MB
  // here): backward() names the workspace.
  const ModelOf<1, false> model;
  const dp::index_t T_ = p.T, H = p.H, K = p.K;
  DeviceBuffer<bf16> tokens(std::vector<bf16>(static_cast<std::size_t>(T_ * H * K), gpu_harness::round_to<bf16>(0.1)));
  DeviceBuffer<bf16> betas(std::vector<bf16>(static_cast<std::size_t>(T_ * H), gpu_harness::round_to<bf16>(0.5)));
  DeviceBuffer<bf16> gradient(static_cast<std::size_t>(T_ * H * K));
  const dp::DeltaInputs<bf16, float> in{.q = dp::make_view<const bf16>(tokens.data(), {1, T_, H, K}),
                                        .k = dp::make_view<const bf16>(tokens.data(), {1, T_, H, K}),
                                        .v = dp::make_view<const bf16>(tokens.data(), {1, T_, H, K}),
                                        .beta = dp::make_view<const bf16>(betas.data(), {1, T_, H})};
  const dp::OutputGradients<bf16, float> og{.o = dp::make_view<const bf16>(tokens.data(), {1, T_, H, K})};
  const dp::DeltaGradients<bf16, float> grads{.k = dp::make_view(gradient.data(), {1, T_, H, K})};
  gpu_harness::Workspace workspace(dp::backward_workspace_bytes(model, in, og, grads));
  workspace.backend.algorithm = dp::CudaAlgorithm::chunked;
  workspace.backend.sequence_splits = 32;
  CHECK(dp::backward_workspace_bytes(workspace.backend, model, in, og, grads) > workspace.backend.workspace_bytes);
  try {
    dp::backward(workspace.backend, model, in, og, grads);
    FAIL("a split count without its scratch was accepted");
  } catch (const dp::ArgumentError& e) {
    CHECK(e.argument() == "backend.workspace_bytes");
    CHECK(std::string(e.what()).find("sequence_splits = 32") != std::string::npos);
  }
}

namespace {

/// Every gradient is the same bit for bit (the chunked backward sums each term in a fixed order, dL/dg's included).
void check_same_gradients(const GpuGradients& a, const GpuGradients& b, const std::string& what) {
  INFO(what);
  CHECK(a.d.q == b.d.q);
  CHECK(a.d.k == b.d.k);
  CHECK(a.d.v == b.d.v);
  CHECK(a.d.beta == b.d.beta);
  CHECK(a.d.g == b.d.g);
  CHECK(a.d.initial_state == b.d.initial_state);
}

/// The same chunked call twice gives the same gradients bit for bit.
template <class Model, class T>
void check_reproducible(reference::Problem p, std::uint64_t seed, const std::string& what, const Call& call) {
  reference::LossWeights w = reference::random_loss_weights(p, seed);
  round_problem<T>(p, w);
  const GpuGradients first = run_gpu<Model, T>(p, w, call);
  const GpuGradients second = run_gpu<Model, T>(p, w, call);
  CHECK_MESSAGE((!first.d.g.empty() || !p.gated), what);
  check_same_gradients(first, second, what);
}

/// The same call with and without kept preambles, with the one-role kernels (the kept preamble is then what the
/// one-role reverse scan would rebuild, bit for bit): the gradients agree exactly, and the preambles were written.
template <class Model, class T>
void check_preambles_bitwise(reference::Problem p, std::uint64_t seed, const std::string& what, Call call) {
  reference::LossWeights w = reference::random_loss_weights(p, seed);
  round_problem<T>(p, w);
  call.specialized_scan = false;  // its producer builds P as (K Q^T)^T: the same values, not the same bits
  call.keep_preambles = false;
  const GpuGradients rebuilt = run_gpu<Model, T>(p, w, call);
  call.keep_preambles = true;
  const GpuGradients kept = run_gpu<Model, T>(p, w, call);
  CHECK_MESSAGE(kept.preambles_written, what);
  check_same_gradients(kept, rebuilt, what);
}

}  // namespace

TEST_CASE("chunked backward: kept preambles give the rebuilt ones' gradients bit for bit (one-role kernels)") {
  const reference::Problem net = reference::random_problem(2, 200, 2, 128, 128, 1, true, 2.0, true, 3801);
  check_preambles_bitwise<ModelOf<1, true>, bf16>(net, 3802, "state pass, gated DeltaNet", chunked_call);
  const reference::Problem three = reference::random_problem(1, 130, 2, 64, 64, 3, false, 2.0, true, 3803);
  check_preambles_bitwise<ModelOf<3, false>, bf16>(three, 3804, "state pass, n_h 3", chunked_call);
  Call keep = chunked_call;
  keep.keep_forward_states = true;
  check_preambles_bitwise<ModelOf<1, true>, bf16>(net, 3802, "training step, gated DeltaNet", keep);
  keep.sequence_splits = 3;
  check_preambles_bitwise<ModelOf<3, false>, bf16>(three, 3804, "training step split 3, n_h 3", keep);
}

TEST_CASE("chunked backward: the reverse scan loads the preambles the state pass kept") {
  Call call = chunked_call;
  call.keep_preambles = true;
  // The backward's own state pass (one-role kernel) keeps them: every n_h, both widths, packed sequences.
  const reference::Problem net = reference::random_problem(2, 200, 2, 128, 128, 1, true, 2.0, true, 3701);
  check_against_reference<ModelOf<1, true>, bf16>(net, reference::random_loss_weights(net, 3702),
                                                  "preambles, gated DeltaNet K=V=128", call);
  const reference::Problem two = packed_problem({0, 1, 90, 0, 150}, 2, 64, 64, 2, true, 3703);
  check_against_reference<ModelOf<2, true>, bf16>(two, reference::random_loss_weights(two, 3704),
                                                  "preambles, packed gated n_h 2 K=V=64", call);
  const reference::Problem three = reference::random_problem(1, 97, 2, 128, 128, 3, false, 2.0, true, 3705);
  check_against_reference<ModelOf<3, false>, bf16>(three, reference::random_loss_weights(three, 3706),
                                                   "preambles, n_h 3 K=V=128", call);
  const reference::Problem four = reference::random_problem(2, 70, 1, 64, 64, 4, true, 2.0, true, 3707);
  check_against_reference<ModelOf<4, true>, fp16>(four, reference::random_loss_weights(four, 3708),
                                                  "preambles, fp16 gated n_h 4 K=V=64", call);
  // A training step: the forward keeps them, by the one-role and by the warp-specialised kernel (a bulk copy of
  // the producer's per-chunk set).
  call.keep_forward_states = true;
  check_against_reference<ModelOf<1, true>, bf16>(net, reference::random_loss_weights(net, 3702),
                                                  "preambles kept by the one-role forward", call);
  call.warp_specialized = true;
  CHECK(check_against_reference<ModelOf<1, true>, bf16>(net, reference::random_loss_weights(net, 3702),
                                                        "preambles kept by the warp-specialised forward", call)
            .preambles_written);
  check_against_reference<ModelOf<2, true>, bf16>(two, reference::random_loss_weights(two, 3704),
                                                  "preambles kept by the warp-specialised forward, packed n_h 2", call);
  // Split runs: the summaries load them too.
  const reference::Problem split = with_weak_gates(
      reference::random_problem(1, 9 * 64 + 17, 2, 128, 128, 1, true, 2.0, true, 3709));
  check_split_backward<ModelOf<1, true>, bf16>(split, 3710, 3, "preambles, kept, warp-specialised", call);
  call.keep_forward_states = false;
  check_split_backward<ModelOf<1, true>, bf16>(split, 3710, 4, "preambles, split state pass", call);
}

namespace {

/// The same call with the reverse scan on one CTA per (sequence, run) and with its value rows split over two: each
/// value row of dL/dS^T goes through the same operations either way, so with kept preambles (the same preamble in
/// both CTAs) every gradient but dL/dg (summed through atomics) agrees exactly.
template <class Model, class T>
void check_value_splits_bitwise(reference::Problem p, std::uint64_t seed, const std::string& what, Call call) {
  reference::LossWeights w = reference::random_loss_weights(p, seed);
  round_problem<T>(p, w);
  call.keep_preambles = true;
  call.value_splits = 1;
  const GpuGradients whole = run_gpu<Model, T>(p, w, call);
  call.value_splits = 2;
  check_same_gradients(run_gpu<Model, T>(p, w, call), whole, what);
}

}  // namespace

TEST_CASE("chunked backward: the reverse scan splits its value rows over two CTAs (V = 128)") {
  Call call = chunked_call;
  call.value_splits = 2;
  // Against the reference, rebuilding the preambles (two CTAs build the same one) and loading them.
  const reference::Problem net = reference::random_problem(2, 200, 2, 128, 128, 1, true, 2.0, true, 3901);
  check_against_reference<ModelOf<1, true>, bf16>(net, reference::random_loss_weights(net, 3902),
                                                  "value splits, gated DeltaNet", call);
  const reference::Problem three = packed_problem({0, 1, 90, 0, 150}, 2, 128, 128, 3, false, 3903);
  check_against_reference<ModelOf<3, false>, fp16>(three, reference::random_loss_weights(three, 3904),
                                                   "value splits, packed fp16 n_h 3", call);
  call.keep_preambles = true;
  const reference::Problem two = reference::random_problem(1, 130, 2, 128, 128, 2, true, 2.0, true, 3905);
  check_against_reference<ModelOf<2, true>, bf16>(two, reference::random_loss_weights(two, 3906),
                                                  "value splits, kept preambles, gated n_h 2", call);
  // With split runs: the summaries' end gradients (E_i from zero or dL/d(final state), P_i^T from the identity)
  // and the runs' ends are read and written at the CTA's value rows.
  const reference::Problem split =
      with_weak_gates(reference::random_problem(1, 9 * 64 + 17, 2, 128, 128, 1, true, 2.0, true, 3907));
  check_split_backward<ModelOf<1, true>, bf16>(split, 3908, 3, "value splits, kept preambles", call);
  call.keep_forward_states = true;
  call.warp_specialized = true;
  check_split_backward<ModelOf<1, true>, bf16>(split, 3908, 4, "value splits, a training step", call);

  // Bit for bit against one CTA per run.
  check_value_splits_bitwise<ModelOf<1, true>, bf16>(net, 3909, "gated DeltaNet", chunked_call);
  Call keep = chunked_call;
  keep.keep_forward_states = true;
  keep.sequence_splits = 3;
  check_value_splits_bitwise<ModelOf<4, false>, bf16>(
      reference::random_problem(1, 300, 2, 128, 128, 4, false, 2.0, true, 3910), 3911, "training step, 3 runs, n_h 4",
      keep);

  // V = 64 has no value split (a CTA carries at least 64 rows), and 0 and 3 are no counts at V = 128 either: the
  // call names the option.
  for (const auto& [n, D] : {std::pair{2, 64}, std::pair{3, 64}, std::pair{0, 128}, std::pair{3, 128}}) {
    const reference::Problem refused_problem = reference::random_problem(1, 100, 1, D, D, 1, false, 2.0, true, 3912);
    Call refused = chunked_call;
    refused.value_splits = n;
    try {
      run_gpu<ModelOf<1, false>, bf16>(refused_problem, reference::random_loss_weights(refused_problem, 3913),
                                       refused);
      FAIL("backward_value_splits = " << n << " was accepted at V = " << D);
    } catch (const dp::ArgumentError& e) {
      CHECK(e.argument() == "backend.backward_value_splits");
      CHECK(std::string(e.what()).find(std::to_string(n) + " with V = " + std::to_string(D)) != std::string::npos);
    }
  }
}

TEST_CASE("chunked backward: the same call gives the same gradients bit for bit, dL/dg included") {
  // Many chunk CTAs per head, so that the order in which CTAs and warps run differs from call to call.
  check_reproducible<ModelOf<1, true>, bf16>(reference::random_problem(4, 2000, 4, 128, 128, 1, true, 2.0, true, 4001),
                                             4002, "gated DeltaNet, K = V = 128", chunked_call);
  check_reproducible<ModelOf<2, true>, bf16>(reference::random_problem(3, 700, 2, 64, 64, 2, true, 2.0, true, 4003),
                                             4004, "gated n_h 2, K = V = 64", chunked_call);
  Call step = chunked_call;
  step.keep_forward_states = true;
  step.sequence_splits = 3;
  check_reproducible<ModelOf<3, true>, bf16>(reference::random_problem(2, 900, 2, 128, 128, 3, true, 2.0, true, 4005),
                                             4006, "training step, 3 runs, gated n_h 3", step);
}

TEST_CASE("chunked backward: on sm_90 the gradient pass copies its tiles by tensor map, within 32-bit coordinates") {
  // The fast path must not fall back silently: every descriptor is made for a dense and a strided call, and a kept
  // tile count past 32-bit row coordinates is refused (the kernel then copies with cp.async).
  int device = 0, major = 0;
  REQUIRE(cudaGetDevice(&device) == cudaSuccess);
  REQUIRE(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess);
  if (major < 9) {
    MESSAGE("compute capability " << major << ": the gradient pass copies with cp.async");
    return;
  }
  constexpr dp::index_t batch = 2, tokens = 100, heads = 3, dim = 128, tiles = batch * 2 * heads;
  bf16* buffer = nullptr;
  REQUIRE(cudaMalloc(&buffer, sizeof(bf16) * batch * tokens * heads * dim * 2) == cudaSuccess);
  const auto view = [&](dp::index_t row_stride) {
    dp::detail::DeviceView<const bf16, 4> v;
    v.data = buffer;
    const dp::index_t extents[4] = {batch, tokens, heads, dim}, strides[4] = {tokens * row_stride, row_stride, dim, 1};
    std::copy(extents, extents + 4, v.extents);
    std::copy(strides, strides + 4, v.strides);
    return v;
  };
  dp::detail::cuda_chunked::ChunkedBackwardParams<bf16> params;
  params.forward.chunk_states = params.forward.chunk_solved_values = buffer;
  params.chunk_adjoints = params.chunk_value_gradients = buffer;
  for (const dp::index_t row_stride : {heads * dim, 2 * heads * dim}) {
    CAPTURE(row_stride);
    params.d_o = params.forward.v = view(row_stride);
    CHECK(dp::detail::gradient_maps<bf16, 128, 1>(params, tiles).present);
    CHECK(dp::detail::gradient_maps<bf16, 128, 3>(params, tiles).present);  // 32 query rows a box
    CHECK(dp::detail::gradient_maps<bf16, 128, 1>(params, tiles, true).present);  // swizzled S_0^T and D^T
    CHECK_FALSE(dp::detail::gradient_maps<bf16, 128, 1>(params, dp::index_t{1} << 24).present);  // 2^31 rows
  }
  params.d_o.strides[3] = 2;  // elements two apart: no box describes such a row
  params.d_o.extents[3] = dim / 2;
  CHECK_FALSE(dp::detail::gradient_maps<bf16, 128, 1>(params, tiles).present);
  REQUIRE(cudaFree(buffer) == cudaSuccess);
}

TEST_CASE("chunked backward: a rejected beta writes nothing") {
  reference::Problem p = reference::random_problem(1, 64, 2, 64, 64, 1, true, 2.0, true, 3101);
  reference::LossWeights w = reference::random_loss_weights(p, 3102);
  round_problem<bf16>(p, w);
  p.beta[17] = 2.5;
  const GpuGradients gpu = run_gpu<ModelOf<1, true>, bf16>(p, w, chunked_call);
  CHECK(gpu.rejected == "beta");
  CHECK(gpu.every_element_nan);
}

int main(int argc, char** argv) { return gpu_harness::run_tests(argc, argv); }
