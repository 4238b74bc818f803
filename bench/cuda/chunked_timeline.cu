// chunked_timeline: where a chunk's cycles go in the warp-specialised chunked forward (chunked_specialized_kernel.cuh).
// It defines the kernel's DELTAPRODUCT_TRACE hook so that CTA (0, 0)'s first consumer thread and first producer
// thread stamp clock64() at each phase of every chunk, runs forward() at B=8, T=4096, H=16, K=V=128 for DeltaNet,
// gated DeltaNet and gated DeltaProduct n_h=2, and prints the average cycles per phase over chunks 1..62, beside the
// call's time (CUDA events, 20 calls) and the one-role kernel's; then, from every CTA's global-timer stamps, how far
// apart the CTAs start and how long their chunk loops take; then the same call with q, k, v and o head-major in
// memory, and with one sequence (16 CTAs). The stamps cost a few cycles each: read the phases, take times from
// bench_cuda.
//
//   ./build/bench/cuda/chunked_timeline
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

// Stamps of CTA (0, 0): [role][event][chunk]; role 0: consumer thread 0, role 1: producer thread 0.
__device__ long long chunked_timeline_stamps[2][8][64];
// Every CTA's first consumer thread: the global timer (ns) as it starts its first chunk and as it ends each chunk
// (the last one stays), [start, end][blockIdx.y * gridDim.x + blockIdx.x].
constexpr int timeline_ctas = 256;
__device__ unsigned long long chunked_timeline_cta_ns[2][timeline_ctas];
__device__ __forceinline__ void chunked_timeline_cta_stamp(int role, int event, long long chunk) {
  const unsigned cta = blockIdx.y * gridDim.x + blockIdx.x;
  if (role != 0 || threadIdx.x != 0 || cta >= timeline_ctas || !((event == 0 && chunk == 0) || event == 4)) return;
  unsigned long long ns;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(ns));
  chunked_timeline_cta_ns[event == 0 ? 0 : 1][cta] = ns;
}
#define DELTAPRODUCT_TRACE(role, event, chunk)                                                               \
  do {                                                                                                       \
    chunked_timeline_cta_stamp(role, event, chunk);                                                          \
    if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == ((role) == 0 ? 0 : Layout::consumer_threads) && \
        (chunk) < 64)                                                                                        \
      chunked_timeline_stamps[role][event][chunk] = clock64();                                               \
  } while (0)

#include <deltaproduct/cuda/chunked_forward.cuh>

namespace dp = deltaproduct;
using bf16 = __nv_bfloat16;

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    std::fprintf(stderr, "chunked_timeline: %s: %s\n", what, cudaGetErrorString(status));
    std::exit(1);
  }
}

/// Milliseconds per call of the chunked forward (the warp-specialised kernel or the one-role one), 20 calls after 3
/// warm-up calls.
template <class Model, class In, class Out>
float forward_ms(const Model& model, const In& in, const Out& out, bool warp_specialised = true) {
  dp::CudaBackend backend{
      .algorithm = dp::CudaAlgorithm::chunked, .sequence_splits = 1, .warp_specialized_forward = warp_specialised};
  void* workspace = nullptr;
  const std::size_t bytes = dp::forward_workspace_bytes(backend, model, in, out);
  check(cudaMalloc(&workspace, bytes), "cudaMalloc");
  check(cudaMemset(workspace, 0, bytes), "cudaMemset");
  backend.workspace = workspace;
  backend.workspace_bytes = bytes;
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; i < 3; ++i) dp::forward(backend, model, in, out);
  check(cudaEventRecord(start), "cudaEventRecord");
  for (int i = 0; i < 20; ++i) dp::forward(backend, model, in, out);
  check(cudaEventRecord(stop), "cudaEventRecord");
  check(cudaEventSynchronize(stop), "cudaEventSynchronize");
  float milliseconds = 0.0f;
  check(cudaEventElapsedTime(&milliseconds, start, stop), "cudaEventElapsedTime");
  check(cudaFree(workspace), "cudaFree");
  return milliseconds / 20;
}

template <int NH, dp::Gating Gate>
void timeline(const char* name) {
  constexpr dp::index_t B = 8, T = 4096, H = 16, K = 128, V = 128, R = T * NH;
  bf16 *q, *k, *v, *beta, *g, *o;
  float* final_state;
  check(cudaMalloc(&q, B * T * H * K * sizeof(bf16)), "cudaMalloc");
  check(cudaMalloc(&k, B * R * H * K * sizeof(bf16)), "cudaMalloc");
  check(cudaMalloc(&v, B * R * H * V * sizeof(bf16)), "cudaMalloc");
  check(cudaMalloc(&beta, B * R * H * sizeof(bf16)), "cudaMalloc");
  check(cudaMalloc(&g, B * T * H * sizeof(bf16)), "cudaMalloc");
  check(cudaMalloc(&o, B * T * H * V * sizeof(bf16)), "cudaMalloc");
  check(cudaMalloc(&final_state, B * H * K * V * sizeof(float)), "cudaMalloc");
  // Every bf16 0x3c3c (~0.0115): keys normalise to unit length, betas lie in [0, 2]; g is its negative.
  check(cudaMemset(q, 0x3c, B * T * H * K * sizeof(bf16)), "cudaMemset");
  check(cudaMemset(k, 0x3c, B * R * H * K * sizeof(bf16)), "cudaMemset");
  check(cudaMemset(v, 0x3c, B * R * H * V * sizeof(bf16)), "cudaMemset");
  check(cudaMemset(beta, 0x3c, B * R * H * sizeof(bf16)), "cudaMemset");
  check(cudaMemset(g, 0xbc, B * T * H * sizeof(bf16)), "cudaMemset");

  dp::DeltaProduct<float, NH, dp::EigenvalueRange::signed_unit, Gate> model;
  model.options.key_normalization = dp::Normalization::l2;
  model.options.validate_ranges = false;
  dp::DeltaInputs<bf16, float> in{.q = dp::make_view<const bf16>(q, {B, T, H, K}),
                                  .k = dp::make_view<const bf16>(k, {B, R, H, K}),
                                  .v = dp::make_view<const bf16>(v, {B, R, H, V}),
                                  .beta = dp::make_view<const bf16>(beta, {B, R, H})};
  if constexpr (Gate == dp::Gating::scalar_decay) in.g = dp::make_view<const bf16>(g, {B, T, H});
  const dp::ForwardOutputs<bf16, float> out{.o = dp::make_view(o, {B, T, H, V}),
                                            .final_state = dp::make_view(final_state, {B, H, K, V})};

  // The one-role kernel first: the stamps read below are the warp-specialised kernel's last call's.
  float milliseconds[2] = {};
  for (const bool specialized : {false, true}) milliseconds[specialized] = forward_ms(model, in, out, specialized);

  long long t[2][8][64];
  check(cudaMemcpyFromSymbol(t, chunked_timeline_stamps, sizeof t), "cudaMemcpyFromSymbol");
  // Producer: 0 iteration start, 1 copies landed, 2 past the producer barrier, 3 normalisers done, 4 K K^T's
  // epilogue and the diagonal inverses done, 5 P done (ready), 6 past the wait for the consumers, 7 the betas and
  // gates two chunks ahead issued. Consumers: 0 before the ready wait, 1 ready, 2 residuals done, 3 past the consumer
  // barrier, 4 previous output written, solve, output, update done.
  const struct {
    const char* label;
    int role_to, event_to, role_from, event_from, next;
  } phases[] = {{"P copy wait", 1, 1, 1, 0, 0},      {"P normalisers", 1, 3, 1, 1, 0},
                {"P K K^T+inverses", 1, 4, 1, 3, 0}, {"P readout tile", 1, 5, 1, 4, 0},
                {"P release wait", 1, 6, 1, 5, 0},   {"P scalar loads", 1, 7, 1, 6, 0},
                {"C ready wait", 0, 1, 0, 0, 0},     {"C residuals", 0, 2, 0, 1, 0},
                {"C solve+update", 0, 4, 0, 3, 0},   {"chunk period", 0, 0, 0, 0, 1}};
  std::printf("%s: warp-specialised %.3f ms, one-role %.3f ms; cycles per chunk (CTA 0, chunks 1..62):\n", name,
              milliseconds[1], milliseconds[0]);
  for (const auto& phase : phases) {
    long long sum = 0;
    for (int c = 1; c < 63; ++c)
      sum += t[phase.role_to][phase.event_to][c + phase.next] - t[phase.role_from][phase.event_from][c];
    std::printf("  %-16s %7lld\n", phase.label, sum / 62);
  }
  // The spread over CTAs of the last call: when each started and how long each took.
  unsigned long long ns[2][timeline_ctas];
  check(cudaMemcpyFromSymbol(ns, chunked_timeline_cta_ns, sizeof ns), "cudaMemcpyFromSymbol");
  constexpr int ctas = static_cast<int>(B * H);
  static_assert(ctas <= timeline_ctas, "one stamp pair per CTA");
  unsigned long long first_start = ns[0][0], last_end = ns[1][0];
  std::vector<double> starts, durations;
  for (int c = 0; c < ctas; ++c) {
    first_start = std::min(first_start, ns[0][c]);
    last_end = std::max(last_end, ns[1][c]);
  }
  for (int c = 0; c < ctas; ++c) {
    starts.push_back(static_cast<double>(ns[0][c] - first_start) * 1e-3);
    durations.push_back(static_cast<double>(ns[1][c] - ns[0][c]) * 1e-3);
  }
  std::sort(starts.begin(), starts.end());
  std::sort(durations.begin(), durations.end());
  std::printf(
      "  CTAs (us): first start to last end %.1f; start offsets median %.1f max %.1f; chunk loops min %.1f "
      "median %.1f max %.1f; CTA (0, 0) %.1f\n",
      static_cast<double>(last_end - first_start) * 1e-3, starts[ctas / 2], starts.back(), durations.front(),
      durations[ctas / 2], durations.back(), static_cast<double>(ns[1][0] - ns[0][0]) * 1e-3);
  // The same call with q, k, v and o head-major in memory ([B, H, T, K], strided views): how much the token-major
  // layout (each head's 256-byte rows 4 KB apart) costs the copies.
  {
    const auto head_major = [](const bf16* data, dp::index_t rows, dp::index_t width) {
      return dp::make_view<const bf16>(data, {B, rows, H, width}, {H * rows * width, width, rows * width, 1});
    };
    dp::DeltaInputs<bf16, float> strided = in;
    strided.q = head_major(q, T, K);
    strided.k = head_major(k, R, K);
    strided.v = head_major(v, R, V);
    const dp::ForwardOutputs<bf16, float> strided_out{.o = dp::make_view(o, {B, T, H, V}, {H * T * V, V, T * V, 1}),
                                                      .final_state = out.final_state};
    const float head_major_ms = forward_ms(model, strided, strided_out);
    check(cudaMemcpyFromSymbol(ns, chunked_timeline_cta_ns, sizeof ns), "cudaMemcpyFromSymbol");
    unsigned long long begin = ns[0][0], end = ns[1][0];
    for (int c = 0; c < ctas; ++c) begin = std::min(begin, ns[0][c]), end = std::max(end, ns[1][c]);
    std::printf("  head-major q, k, v, o: warp-specialised %.3f ms; CTAs first start to last end %.1f us\n",
                head_major_ms, static_cast<double>(end - begin) * 1e-3);
  }
  // One sequence (H = 16 CTAs instead of B H = 128): whether the full grid slows each CTA's chunks down.
  {
    dp::DeltaInputs<bf16, float> one = in;
    one.q = dp::make_view<const bf16>(q, {1, T, H, K});
    one.k = dp::make_view<const bf16>(k, {1, R, H, K});
    one.v = dp::make_view<const bf16>(v, {1, R, H, V});
    one.beta = dp::make_view<const bf16>(beta, {1, R, H});
    if constexpr (Gate == dp::Gating::scalar_decay) one.g = dp::make_view<const bf16>(g, {1, T, H});
    const dp::ForwardOutputs<bf16, float> one_out{.o = dp::make_view(o, {1, T, H, V}),
                                                  .final_state = dp::make_view(final_state, {1, H, K, V})};
    const float one_ms = forward_ms(model, one, one_out);
    check(cudaMemcpyFromSymbol(ns, chunked_timeline_cta_ns, sizeof ns), "cudaMemcpyFromSymbol");
    unsigned long long begin = ns[0][0], end = ns[1][0];
    for (int c = 0; c < static_cast<int>(H); ++c) begin = std::min(begin, ns[0][c]), end = std::max(end, ns[1][c]);
    std::printf("  B = 1 (16 CTAs): warp-specialised %.3f ms; CTAs first start to last end %.1f us\n", one_ms,
                static_cast<double>(end - begin) * 1e-3);
  }
  for (void* p : {static_cast<void*>(q), static_cast<void*>(k), static_cast<void*>(v), static_cast<void*>(beta),
                  static_cast<void*>(g), static_cast<void*>(o), static_cast<void*>(final_state)})
    check(cudaFree(p), "cudaFree");
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("chunked_timeline: no CUDA device\n");
    return 0;
  }
  timeline<1, dp::Gating::none>("DeltaNet");
  timeline<1, dp::Gating::scalar_decay>("gated DeltaNet");
  timeline<2, dp::Gating::scalar_decay>("gated DeltaProduct n_h=2");
}
