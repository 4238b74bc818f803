// GPU benchmarks of the CUDA backend (Google Benchmark, times from CUDA events: UseManualTime). Each benchmark reports
// `bytes` (the bytes the call must move at least), `bytes_per_second`, and `fraction_of_roofline`: the time the call
// would take at the H200's measured ceilings divided by the measured time (1.0 = at the roofline).
//
//   ./bench_cuda --benchmark_format=json --benchmark_out=bench.json
//   ./bench_cuda --benchmark_filter=decode
//
// Decode: one token per sequence (step()), fp32 state read and written in place, bf16 token data. Chunked forward:
// the shapes of the performance anchors (forward() on long sequences; see the marked list at the end). Backward: the
// recurrent backward (backward()) on training shapes, every gradient requested.
#include <benchmark/benchmark.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <deltaproduct/cuda/backward.cuh>
#include <deltaproduct/cuda/chunked_forward.cuh>
#include <deltaproduct/cuda/decode.cuh>
#include <string>
#include <vector>

namespace dp = deltaproduct;
using bf16 = __nv_bfloat16;

namespace {

// Ceilings measured on an H200 (the project's performance anchors): device-to-device copy, counting bytes read and
// written, and dense bf16 matrix products on random data. The datasheet's 4.8 TB/s and 989 TFLOP/s are not reached.
constexpr double copy_bytes_per_second = 4.3e12;
constexpr double bf16_flops_per_second = 790e12;

bool device_present() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return count > 0;
}

/// Device memory freed at scope exit.
template <class T>
struct DeviceArray {
  T* data = nullptr;
  std::size_t size = 0;
  explicit DeviceArray(std::size_t n) : size(n) {
    DELTAPRODUCT_CUDA_CHECK(cudaMalloc(&data, std::max<std::size_t>(n, 1) * sizeof(T)));
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { (void)cudaFree(data); }
};

/// Deterministic pseudo-random fill in [lo, hi) (a hash of the index), so inputs look like a model's: no zeros, no
/// denormals, beta in [0, 2), g <= 0.
template <class T>
__global__ void fill_uniform(T* x, std::size_t n, float lo, float hi, std::uint32_t seed) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    std::uint32_t h = static_cast<std::uint32_t>(i) * 0x9E3779B1u ^ seed;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    const float u = static_cast<float>(h >> 8) * 0x1p-24f;
    if constexpr (std::is_same_v<T, float>)
      x[i] = lo + (hi - lo) * u;
    else
      x[i] = __float2bfloat16_rn(lo + (hi - lo) * u);
  }
}

template <class T>
void fill(DeviceArray<T>& a, float lo, float hi, std::uint32_t seed) {
  fill_uniform<<<1024, 256>>>(a.data, a.size, lo, hi, seed);
  DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
}

/// Sets the counters from the total of the measured times.
void report(benchmark::State& state, double seconds_total, double bytes, double flops) {
  const double seconds = seconds_total / static_cast<double>(state.iterations());
  const double roofline_seconds = std::max(bytes / copy_bytes_per_second, flops / bf16_flops_per_second);
  state.counters["bytes"] = bytes;
  state.counters["bytes_per_second"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  if (flops > 0)
    state.counters["flops_per_second"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["fraction_of_roofline"] = roofline_seconds / seconds;
}

/// Times `launch` with CUDA events: `calls` back-to-back calls per iteration (so launch latency overlaps the previous
/// call, as in a decode loop), per-call time reported.
template <class Launch>
double time_calls(benchmark::State& state, int calls, Launch&& launch) {
  cudaEvent_t start, stop;
  DELTAPRODUCT_CUDA_CHECK(cudaEventCreate(&start));
  DELTAPRODUCT_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) launch();  // warm-up
  DELTAPRODUCT_CUDA_CHECK(cudaDeviceSynchronize());
  double total = 0;
  for (auto _ : state) {
    DELTAPRODUCT_CUDA_CHECK(cudaEventRecord(start));
    for (int c = 0; c < calls; ++c) launch();
    DELTAPRODUCT_CUDA_CHECK(cudaEventRecord(stop));
    DELTAPRODUCT_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    DELTAPRODUCT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    const double seconds = ms * 1e-3 / calls;
    state.SetIterationTime(seconds);
    total += seconds;
  }
  DELTAPRODUCT_CUDA_CHECK(cudaEventDestroy(start));
  DELTAPRODUCT_CUDA_CHECK(cudaEventDestroy(stop));
  return total;
}

// ---------------------------------------------------------------------------------------------------------------------
// Decode: step() at B sequences, H heads, K = V; args {B, H, K, validate}. decode_bound/ measures, in the same run,
// what the state's traffic alone costs on this device (the floor a decode step can approach).

/// Inputs of one decode step on device memory: random bf16 token data, an fp32 state [B, H, K, V].
template <int HouseholderSteps, dp::Gating Gate>
struct DecodeSetup {
  static constexpr dp::index_t n_h = HouseholderSteps;
  static constexpr bool gated = Gate == dp::Gating::scalar_decay;
  dp::index_t B, H, K, V;
  DeviceArray<bf16> q, k, v, beta, g, o;
  DeviceArray<float> states;
  DeviceArray<unsigned char> workspace;
  dp::DeltaProduct<float, HouseholderSteps, dp::EigenvalueRange::signed_unit, Gate> model;
  dp::CudaBackend backend;
  dp::DeltaStepInputs<bf16> in;

  DecodeSetup(dp::index_t batch, dp::index_t heads, dp::index_t key_dim, bool validate)
      : B(batch),
        H(heads),
        K(key_dim),
        V(key_dim),
        q(B * H * K),
        k(B * n_h * H * K),
        v(B * n_h * H * V),
        beta(B * n_h * H),
        g(B * H),
        o(B * H * V),
        states(B * H * K * V),
        workspace(dp::cuda_status_bytes) {
    fill(q, -1, 1, 1);
    fill(k, -1, 1, 2);
    fill(v, -1, 1, 3);
    fill(beta, 0, 2, 4);
    fill(g, -0.5f, 0, 5);
    fill(states, -0.1f, 0.1f, 6);
    DELTAPRODUCT_CUDA_CHECK(cudaMemset(workspace.data, 0, workspace.size));
    model.options.key_normalization = dp::Normalization::l2;
    model.options.query_normalization = dp::Normalization::l2;
    model.options.validate_ranges = validate;
    backend = dp::CudaBackend{.workspace = workspace.data, .workspace_bytes = workspace.size};
    in = dp::DeltaStepInputs<bf16>{.q = dp::make_view<const bf16>(q.data, {B, H, K}),
                                   .k = dp::make_view<const bf16>(k.data, {B, n_h, H, K}),
                                   .v = dp::make_view<const bf16>(v.data, {B, n_h, H, V}),
                                   .beta = dp::make_view<const bf16>(beta.data, {B, n_h, H})};
    if constexpr (gated) in.g = dp::make_view<const bf16>(g.data, {B, H});
  }
  dp::View<float, 4> state_view() const { return dp::make_view(states.data, {B, H, K, V}); }
  dp::View<bf16, 3> o_view() const { return dp::make_view(o.data, {B, H, V}); }

  /// The state is read and written once; token data read once, o written once.
  double bytes() const {
    const double state_bytes = 2.0 * static_cast<double>(B * H * K * V) * sizeof(float);
    return state_bytes + static_cast<double>(B * H * (K + n_h * (K + V + 1) + (gated ? 1 : 0) + V)) * sizeof(bf16);
  }
};

template <int HouseholderSteps, dp::Gating Gate>
void decode(benchmark::State& state) {
  if (!device_present()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  DecodeSetup<HouseholderSteps, Gate> d(state.range(0), state.range(1), state.range(2), state.range(3) != 0);
  const auto states = d.state_view();
  const auto o = d.o_view();
  const double seconds = time_calls(state, 20, [&] { dp::step(d.backend, d.model, d.in, states, o); });
  dp::check_status(d.backend);
  report(state, seconds, d.bytes(), 0.0);
}

/// One tile shape of the recurrent kernel launched directly (DeltaNet, no value checks): which lane layout moves the
/// state fastest. args {B, H, K}.
template <int RowLanes, int Rows>
void decode_tile(benchmark::State& state) {
  if (!device_present()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  using Tile = dp::detail::RecurrentTile<RowLanes, Rows, 4>;
  DecodeSetup<1, dp::Gating::none> d(state.range(0), state.range(1), state.range(2), false);
  if (d.K > Tile::max_key_dim) {
    state.SkipWithError("K above the tile's rows");
    return;
  }
  const auto states = d.state_view();
  const dp::DeltaInputs<bf16, float> in = dp::detail::step_as_forward(d.in, states);
  const dp::ForwardOutputs<bf16, float> out = dp::detail::step_outputs(d.o_view(), states);
  const dp::CudaProblem cp = dp::detail::check_forward_cuda(d.model, in, out);
  const auto params =
      dp::detail::recurrent_params(d.model, cp, in, out.o, in.initial_state, states, {}, cp.sizes.sequences, nullptr);
  const double seconds = time_calls(state, 20, [&] { dp::detail::launch_recurrent_tile<Tile>(d.backend, params); });
  report(state, seconds, d.bytes(), 0.0);
}

void decode_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "H", "K", "validate"});
  for (const int batch : {1, 64, 256}) b->Args({batch, 16, 128, 0});
  b->Args({64, 16, 128, 1});  // with the value-check kernel before each step
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK(decode<1, dp::Gating::none>)->Name("decode/DeltaNet")->Apply(decode_shapes);
BENCHMARK(decode<1, dp::Gating::scalar_decay>)->Name("decode/GatedDeltaNet")->Apply(decode_shapes);
BENCHMARK(decode<2, dp::Gating::scalar_decay>)->Name("decode/GatedDeltaProduct_nh2")->Apply(decode_shapes);

/// What a decode step's memory traffic costs with no arithmetic, on the same state: a device-to-device copy of the
/// states into a second buffer (cudaMemcpyAsync), and an in-place pass that reads and rewrites every float, 16 bytes
/// at a time (the access pattern of a perfect decode kernel). args {B, H, K}; kind 0 copy, 1 in place.
__global__ void scale_in_place(float4* x, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    float4 y = x[i];
    y.x *= 0.999f;
    y.y *= 0.999f;
    y.z *= 0.999f;
    y.w *= 0.999f;
    x[i] = y;
  }
}

template <int Kind>
void decode_memory_bound(benchmark::State& state) {
  if (!device_present()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const dp::index_t B = state.range(0), H = state.range(1), K = state.range(2);
  const std::size_t floats = static_cast<std::size_t>(B * H * K * K);
  DeviceArray<float> states(floats), copy(Kind == 0 ? floats : 1);
  fill(states, -0.1f, 0.1f, 6);
  int sms = 0;
  DELTAPRODUCT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const double seconds = time_calls(state, 20, [&] {
    if constexpr (Kind == 0) {
      DELTAPRODUCT_CUDA_CHECK(cudaMemcpyAsync(copy.data, states.data, floats * sizeof(float), cudaMemcpyDeviceToDevice));
    } else {
      scale_in_place<<<8 * sms, 256>>>(reinterpret_cast<float4*>(states.data), floats / 4);
      DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
    }
  });
  report(state, seconds, 2.0 * static_cast<double>(floats) * sizeof(float), 0.0);
}

void bound_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "H", "K"})->Args({64, 16, 128})->Args({256, 16, 128});
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
}
BENCHMARK(decode_memory_bound<0>)->Name("decode_bound/copy")->Apply(bound_shapes);
BENCHMARK(decode_memory_bound<1>)->Name("decode_bound/in_place")->Apply(bound_shapes);

void tile_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "H", "K"})->Args({64, 16, 128})->Args({256, 16, 128});
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
}
// The default for K <= 128 is 8 row lanes x 16 rows (16 columns per warp, 64-byte row segments).
BENCHMARK(decode_tile<8, 16>)->Name("decode_tile/row_lanes_8_rows_16")->Apply(tile_shapes);
BENCHMARK(decode_tile<16, 8>)->Name("decode_tile/row_lanes_16_rows_8")->Apply(tile_shapes);
BENCHMARK(decode_tile<32, 4>)->Name("decode_tile/row_lanes_32_rows_4")->Apply(tile_shapes);

// ---------------------------------------------------------------------------------------------------------------------
// Chunked forward (training / prefill): forward() of chunked_forward.cuh on the anchors' shapes; args {B, T, H, K,
// splits}: splits = backend.sequence_splits (0: the automatic plan, with the workspace forward_workspace_bytes()
// asks for; 1: sequences never split), so that the split and unsplit kernels are measured in the same run.
// This list is the place for the chunked kernel's shapes: add registrations at the end of this section.

/// FLOPs of the chunked algorithm with chunks of C = 64 micro-steps, per micro-step and head (the anchors' count,
/// about 180 kFLOP at K = V = 128): 3 C K (K K^T, Q K^T, W = T K) + 3 K V (Q S, K S, state update) + 2 C V (T U, P N)
/// multiply-adds.
double chunked_flops_per_micro_step(double K, double V) {
  constexpr double C = 64;
  return 2.0 * (3 * C * K + 3 * K * V + 2 * C * V);
}

template <int HouseholderSteps, dp::Gating Gate, bool WarpSpecialized = false>
void chunked_forward(benchmark::State& state) {
  if (!device_present()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const dp::index_t B = state.range(0), T = state.range(1), H = state.range(2), K = state.range(3), V = K;
  const int splits_asked = static_cast<int>(state.range(4));
  constexpr dp::index_t n_h = HouseholderSteps;
  constexpr bool gated = Gate == dp::Gating::scalar_decay;
  const dp::index_t R = T * n_h;
  DeviceArray<bf16> q(B * T * H * K), k(B * R * H * K), v(B * R * H * V), beta(B * R * H), g(B * T * H),
      o(B * T * H * V);
  DeviceArray<float> final_state(B * H * K * V);
  fill(q, -1, 1, 11);
  fill(k, -1, 1, 12);
  fill(v, -1, 1, 13);
  fill(beta, 0, 2, 14);
  fill(g, -0.5f, 0, 15);

  dp::DeltaProduct<float, HouseholderSteps, dp::EigenvalueRange::signed_unit, Gate> model;
  model.options.key_normalization = dp::Normalization::l2;
  model.options.validate_ranges = false;
  dp::CudaBackend backend{.algorithm = dp::CudaAlgorithm::chunked,
                          .sequence_splits = splits_asked,
                          .warp_specialized_forward = WarpSpecialized};
  dp::DeltaInputs<bf16, float> in{.q = dp::make_view<const bf16>(q.data, {B, T, H, K}),
                                  .k = dp::make_view<const bf16>(k.data, {B, R, H, K}),
                                  .v = dp::make_view<const bf16>(v.data, {B, R, H, V}),
                                  .beta = dp::make_view<const bf16>(beta.data, {B, R, H})};
  if constexpr (gated) in.g = dp::make_view<const bf16>(g.data, {B, T, H});
  const dp::ForwardOutputs<bf16, float> out{.o = dp::make_view(o.data, {B, T, H, V}),
                                            .final_state = dp::make_view(final_state.data, {B, H, K, V})};
  if (!dp::chunked_forward_applies(backend, model, in, out)) {
    state.SkipWithError("the chunked kernel does not take this shape");
    return;
  }
  DeviceArray<unsigned char> workspace(dp::forward_workspace_bytes(backend, model, in, out));
  backend.workspace = workspace.data;
  backend.workspace_bytes = workspace.size;
  state.counters["splits"] = dp::forward_sequence_splits(backend, model, in, out);
  state.counters["warp_specialized"] =
      K == 64 ? dp::detail::takes_specialized_kernel<bf16, 64, HouseholderSteps, gated>(backend)
              : dp::detail::takes_specialized_kernel<bf16, 128, HouseholderSteps, gated>(backend);
  const double seconds = time_calls(state, 1, [&] { dp::forward(backend, model, in, out); });
  // q, o once per token; k, v, beta once per micro-step; g once per token; the final state written once.
  const double bytes =
      static_cast<double>(B * T * H * (K + V + (gated ? 1 : 0)) + B * R * H * (K + V + 1)) * sizeof(bf16) +
      static_cast<double>(B * H * K * V) * sizeof(float);
  const double flops =
      static_cast<double>(B * R * H) * chunked_flops_per_micro_step(static_cast<double>(K), static_cast<double>(V));
  report(state, seconds, bytes, flops);
}

/// The chunked forward table of the performance anchors.
void chunked_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "H", "K", "splits"});
  b->Args({8, 4096, 16, 128, 0});
  for (int splits : {0, 1}) {
    b->Args({1, 16384, 8, 128, splits});
    b->Args({4, 2048, 8, 128, splits});
    b->Args({4, 2048, 8, 64, splits});
  }
  b->UseManualTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(chunked_forward<1, dp::Gating::none>)->Name("chunked/DeltaNet")->Apply(chunked_shapes);
BENCHMARK(chunked_forward<1, dp::Gating::scalar_decay>)->Name("chunked/GatedDeltaNet")->Apply(chunked_shapes);
BENCHMARK(chunked_forward<2, dp::Gating::scalar_decay>)->Name("chunked/GatedDeltaProduct_nh2")->Apply(chunked_shapes);
BENCHMARK(chunked_forward<3, dp::Gating::scalar_decay>)->Name("chunked/GatedDeltaProduct_nh3")->Apply(chunked_shapes);
// The warp-specialised kernel (backend.warp_specialized_forward) on the same shapes.
BENCHMARK(chunked_forward<1, dp::Gating::none, true>)->Name("chunked_specialized/DeltaNet")->Apply(chunked_shapes);
BENCHMARK(chunked_forward<1, dp::Gating::scalar_decay, true>)
    ->Name("chunked_specialized/GatedDeltaNet")
    ->Apply(chunked_shapes);
BENCHMARK(chunked_forward<2, dp::Gating::scalar_decay, true>)
    ->Name("chunked_specialized/GatedDeltaProduct_nh2")
    ->Apply(chunked_shapes);
BENCHMARK(chunked_forward<3, dp::Gating::scalar_decay, true>)
    ->Name("chunked_specialized/GatedDeltaProduct_nh3")
    ->Apply(chunked_shapes);
// (chunked kernel shapes: add registrations above this line)

// ---------------------------------------------------------------------------------------------------------------------
// Backward: backward() with every gradient (q, k, v, beta, g, initial state) from dL/do and dL/d(final state), bf16
// token data; args {B, T, H, K = V, splits}. The recurrent form (three sweeps over each sequence,
// recurrent_backward_kernel.cuh) and the chunked one (state pass, reverse scan, chunk gradients;
// chunked_backward_kernel.cuh); "training" times forward() and backward() together, as a training step runs them
// (the forward keeping its states for the backward: CudaBackend::keep_forward_states). `splits` is
// CudaBackend::sequence_splits of both calls (1: unsplit; a count >= 2 cuts every sequence into that many runs of
// chunks; the recurrent form skips split counts), and the workspace is sized for it; the counters `backward_splits`
// and, for "training", `forward_splits` say how many runs each pass cut each sequence into. `options` switches the
// chunked backward's CudaBackend fields: 2 keep_preambles (the reverse scan loads each chunk's preamble instead of
// rebuilding it), 4 backward_value_splits = 2 (the reverse scan on two CTAs per sequence or run, 64 value rows each;
// K = 128), 6 both; adding 8 runs the one-role reverse scan (CudaBackend::warp_specialized_backward = false), adding
// 16 the chunk-gradient pass on mma.sync (CudaBackend::wgmma_chunk_gradients = false; it runs on wgmma by default at
// K = 128 on sm_90a).

enum class Timed { backward, forward_and_backward };

template <int HouseholderSteps, dp::Gating Gate, dp::CudaAlgorithm Algorithm, Timed What = Timed::backward>
void backward_pass(benchmark::State& state) {
  if (!device_present()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const dp::index_t B = state.range(0), T = state.range(1), H = state.range(2), K = state.range(3), V = K;
  const int splits = static_cast<int>(state.range(4));
  const bool preambles = (state.range(5) & 2) != 0;
  const int value_splits = (state.range(5) & 4) != 0 ? 2 : 1;
  const bool specialized_scan = (state.range(5) & 8) == 0;
  const bool wgmma_gradients = (state.range(5) & 16) == 0;
  if ((state.range(5) & ~30) != 0) {
    state.SkipWithError(
        "options takes 2 (kept preambles), 4 (value splits), 6 (both), plus 8 (one-role scan), plus 16 (mma.sync "
        "chunk gradients)");
    return;
  }
  if (Algorithm == dp::CudaAlgorithm::recurrent && (splits != 1 || state.range(5) != 0)) {
    state.SkipWithError("the recurrent backward takes no split count and no chunked options");
    return;
  }
  constexpr dp::index_t n_h = HouseholderSteps;
  constexpr bool gated = Gate == dp::Gating::scalar_decay;
  const dp::index_t R = T * n_h;
  DeviceArray<bf16> q(B * T * H * K), k(B * R * H * K), v(B * R * H * V), beta(B * R * H), g(B * T * H),
      d_o(B * T * H * V), dq(B * T * H * K), dk(B * R * H * K), dv(B * R * H * V), dbeta(B * R * H), dg(B * T * H),
      o(B * T * H * V);
  DeviceArray<float> h0(B * H * K * V), d_final(B * H * K * V), dh0(B * H * K * V), final_state(B * H * K * V);
  fill(q, -1, 1, 21);
  fill(k, -1, 1, 22);
  fill(v, -1, 1, 23);
  fill(beta, 0, 2, 24);
  fill(g, -0.5f, 0, 25);
  fill(d_o, -1, 1, 26);
  fill(h0, -1, 1, 27);
  fill(d_final, -1, 1, 28);

  dp::DeltaProduct<float, HouseholderSteps, dp::EigenvalueRange::signed_unit, Gate> model;
  model.options.key_normalization = dp::Normalization::l2;
  model.options.validate_ranges = false;
  dp::DeltaInputs<bf16, float> in{.q = dp::make_view<const bf16>(q.data, {B, T, H, K}),
                                  .k = dp::make_view<const bf16>(k.data, {B, R, H, K}),
                                  .v = dp::make_view<const bf16>(v.data, {B, R, H, V}),
                                  .beta = dp::make_view<const bf16>(beta.data, {B, R, H}),
                                  .initial_state = dp::make_view<const float>(h0.data, {B, H, K, V})};
  if constexpr (gated) in.g = dp::make_view<const bf16>(g.data, {B, T, H});
  const dp::OutputGradients<bf16, float> og{.o = dp::make_view<const bf16>(d_o.data, {B, T, H, V}),
                                            .final_state = dp::make_view<const float>(d_final.data, {B, H, K, V})};
  dp::DeltaGradients<bf16, float> grads{.q = dp::make_view(dq.data, {B, T, H, K}),
                                        .k = dp::make_view(dk.data, {B, R, H, K}),
                                        .v = dp::make_view(dv.data, {B, R, H, V}),
                                        .beta = dp::make_view(dbeta.data, {B, R, H}),
                                        .initial_state = dp::make_view(dh0.data, {B, H, K, V})};
  if constexpr (gated) grads.g = dp::make_view(dg.data, {B, T, H});
  const dp::ForwardOutputs<bf16, float> out{.o = dp::make_view(o.data, {B, T, H, V}),
                                            .final_state = dp::make_view(final_state.data, {B, H, K, V})};
  // One workspace serves both calls (they run one after the other on the stream), sized for the split scratch of
  // `splits` as well. A training step keeps the forward's states for the backward (CudaBackend::keep_forward_states).
  constexpr bool keep = What == Timed::forward_and_backward;
  const dp::CudaBackend backward_query{
      .algorithm = Algorithm, .sequence_splits = splits, .keep_forward_states = keep, .keep_preambles = preambles};
  const dp::CudaBackend forward_query{.algorithm = dp::CudaAlgorithm::chunked,
                                      .sequence_splits = splits,
                                      .keep_forward_states = keep,
                                      .keep_preambles = preambles};
  DeviceArray<unsigned char> workspace(std::max(dp::backward_workspace_bytes(backward_query, model, in, og, grads),
                                                dp::forward_workspace_bytes(forward_query, model, in, out)));
  DELTAPRODUCT_CUDA_CHECK(cudaMemset(workspace.data, 0, workspace.size));  // the value-check record starts zeroed
  const dp::CudaBackend backend{.workspace = workspace.data,
                                .workspace_bytes = workspace.size,
                                .algorithm = Algorithm,
                                .sequence_splits = splits,
                                .keep_forward_states = keep,
                                .keep_preambles = preambles,
                                .backward_value_splits = value_splits,
                                .warp_specialized_backward = specialized_scan,
                                .wgmma_chunk_gradients = wgmma_gradients};
  if ((Algorithm == dp::CudaAlgorithm::chunked) != dp::chunked_backward_applies(backend, model, in, og, grads)) {
    state.SkipWithError("the requested backward does not take this shape");
    return;
  }
  const dp::CudaBackend forward_backend{.workspace = workspace.data,
                                        .workspace_bytes = workspace.size,
                                        .algorithm = dp::CudaAlgorithm::chunked,
                                        .sequence_splits = splits,
                                        .keep_forward_states = keep,
                                        .keep_preambles = preambles};
  state.counters["workspace_bytes"] = static_cast<double>(workspace.size);
  state.counters["backward_splits"] = dp::backward_sequence_splits(backend, model, in, og, grads);
  if constexpr (What == Timed::forward_and_backward)
    state.counters["forward_splits"] = dp::forward_sequence_splits(forward_backend, model, in, out);
  const double seconds = time_calls(state, 1, [&] {
    if constexpr (What == Timed::forward_and_backward) dp::forward(forward_backend, model, in, out);
    dp::backward(backend, model, in, og, grads);
  });
  // Token data and dL/do read, their gradients written (bf16); states and their gradients once (fp32).
  const double token_bytes = static_cast<double>(B * T * H * (2 * K + V + (gated ? 2 : 0)) + B * R * H * 2 * (K + V + 1));
  const double bytes = token_bytes * sizeof(bf16) + 3.0 * static_cast<double>(B * H * K * V) * sizeof(float);
  report(state, seconds, bytes, 0.0);
}

void backward_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "H", "K", "splits", "options"});
  b->Args({8, 4096, 16, 128, 1, 0});
  b->Args({1, 16384, 8, 128, 1, 0});
  b->Args({4, 2048, 8, 64, 1, 0});
  b->Args({8, 512, 16, 128, 1, 0});
  // Sequences split across multiprocessors (CudaBackend::sequence_splits), where B * H leaves most of them idle.
  b->Args({1, 16384, 8, 128, 8, 0});
  b->Args({1, 16384, 8, 128, 16, 0});
  b->Args({4, 2048, 8, 128, 3, 0});
  // Kept preambles (2) beside the rows above.
  b->Args({8, 4096, 16, 128, 1, 2});
  b->Args({4, 2048, 8, 64, 1, 2});
  b->Args({8, 512, 16, 128, 1, 2});
  b->Args({1, 16384, 8, 128, 16, 2});
  // The reverse scan's value rows on two CTAs (4), with kept preambles (6), unsplit and split, where B * H * splits
  // leaves multiprocessors idle.
  for (int options : {4, 6}) {
    b->Args({1, 16384, 8, 128, 1, options});
    b->Args({1, 16384, 8, 128, 8, options});
    b->Args({4, 2048, 8, 128, 3, options});
  }
  b->Args({8, 4096, 16, 128, 1, 6});
  // The one-role reverse scan (8) beside the warp-specialised one of the rows above.
  b->Args({8, 4096, 16, 128, 1, 8});
  b->Args({4, 2048, 8, 64, 1, 8});
  b->Args({8, 512, 16, 128, 1, 8});
  // The chunk-gradient pass on mma.sync (16) beside the wgmma one of the rows above (K = 128).
  b->Args({8, 4096, 16, 128, 1, 16});
  b->Args({8, 512, 16, 128, 1, 16});
  b->Args({1, 16384, 8, 128, 16, 16});
  b->Args({4, 2048, 8, 128, 3, 16});
  b->UseManualTime()->Unit(benchmark::kMillisecond);
}

constexpr auto recurrent = dp::CudaAlgorithm::recurrent;
constexpr auto chunked = dp::CudaAlgorithm::chunked;
constexpr auto none = dp::Gating::none;
constexpr auto decay = dp::Gating::scalar_decay;
BENCHMARK(backward_pass<1, none, recurrent>)->Name("backward/DeltaNet")->Apply(backward_shapes);
BENCHMARK(backward_pass<1, decay, recurrent>)->Name("backward/GatedDeltaNet")->Apply(backward_shapes);
BENCHMARK(backward_pass<2, decay, recurrent>)->Name("backward/GatedDeltaProduct_nh2")->Apply(backward_shapes);
BENCHMARK(backward_pass<1, none, chunked>)->Name("backward_chunked/DeltaNet")->Apply(backward_shapes);
BENCHMARK(backward_pass<1, decay, chunked>)->Name("backward_chunked/GatedDeltaNet")->Apply(backward_shapes);
BENCHMARK(backward_pass<2, decay, chunked>)->Name("backward_chunked/GatedDeltaProduct_nh2")->Apply(backward_shapes);
BENCHMARK(backward_pass<3, decay, chunked>)->Name("backward_chunked/GatedDeltaProduct_nh3")->Apply(backward_shapes);
constexpr auto both = Timed::forward_and_backward;
BENCHMARK(backward_pass<1, none, chunked, both>)->Name("training/DeltaNet")->Apply(backward_shapes);
BENCHMARK(backward_pass<1, decay, chunked, both>)->Name("training/GatedDeltaNet")->Apply(backward_shapes);
BENCHMARK(backward_pass<2, decay, chunked, both>)->Name("training/GatedDeltaProduct_nh2")->Apply(backward_shapes);
BENCHMARK(backward_pass<3, decay, chunked, both>)->Name("training/GatedDeltaProduct_nh3")->Apply(backward_shapes);

}  // namespace
