// chunked_timeline: where a chunk's cycles go in the warp-specialised chunked forward (chunked_specialized_kernel.cuh).
// It defines the kernels' DELTAPRODUCT_TRACE hook so that CTA (0, 0)'s first consumer thread and first producer
// thread stamp clock64() at each phase of every chunk, runs forward() at B=8, T=4096, H=16, K=V=128 for DeltaNet,
// gated DeltaNet and gated DeltaProduct n_h=2, and prints, per role, when each phase ends (average cycles after the
// iteration's start over chunks 1..62) and the chunk period, beside the call's time (CUDA events, 20 calls) and the
// one-role kernel's, and the same phases' ends for each consumer warp (their skew); then, from every CTA's global-timer
// stamps, how far apart the CTAs start, how long their chunk loops take and how long each CTA spends before its first
// chunk and after its last (and on which steps), and the multiprocessor clock the cycle counts were taken at; then the
// same call with q, k, v and o head-major in memory, and with one sequence (16 CTAs). The stamps cost a few cycles
// each: read the phases, take times from bench_cuda.
//
//   ./build/bench/cuda/chunked_timeline
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

// Stamps of CTA (0, 0): [role][event][chunk]; role 0: consumer thread 0, role 1: producer thread 0 (the block's
// last 128 threads are the producer). Events 14 and 15 (chunk 0): the CTA's start and end; 11, 12, 13: its barriers
// initialised, the consumers' registers taken, the start state loaded; 16, 17: past the barrier after the last chunk,
// the last output written. The producer's 11 and 12 are per chunk: its betas and gates stored, its keys landed.
constexpr int timeline_events = 18, timeline_chunks = 64;
__device__ long long chunked_timeline_stamps[2][timeline_events][timeline_chunks];
// The same stamps from every warp's first lane ([role][warp of the role][event][chunk]): how far apart a role's warps
// run, which decides what each of its barriers costs (the slowest warp sets it).
constexpr int timeline_warps = 8;
__device__ long long chunked_timeline_warp_stamps[2][timeline_warps][timeline_events][timeline_chunks];
__device__ __forceinline__ void chunked_timeline_warp_stamp(int role, int event, long long chunk) {
  const int first = role == 0 ? 0 : static_cast<int>(blockDim.x) - 128;  // the producer: the last 128 threads
  const int thread = static_cast<int>(threadIdx.x) - first;
  if (blockIdx.x != 0 || blockIdx.y != 0 || thread < 0 || thread >= 32 * timeline_warps || thread % 32 != 0 ||
      chunk < 0 || chunk >= timeline_chunks)
    return;
  chunked_timeline_warp_stamps[role][thread / 32][event][chunk] = clock64();
}
// Every CTA's first consumer thread: the global timer (ns) [0] as it starts its first chunk, [1] as it ends each
// chunk (the last one stays), [2] at the CTA's start, [3] at its end, [4..8] at events 11, 12, 13, 16 and 17;
// [..][blockIdx.y * gridDim.x + blockIdx.x].
constexpr int timeline_ctas = 256, timeline_slots = 9;
__device__ unsigned long long chunked_timeline_cta_ns[timeline_slots][timeline_ctas];
__device__ __forceinline__ void chunked_timeline_cta_stamp(int role, int event, long long chunk) {
  const unsigned cta = blockIdx.y * gridDim.x + blockIdx.x;
  const int slot = event == 0 && chunk == 0     ? 0
                   : event == 4                 ? 1
                   : event == 14                ? 2
                   : event == 15                ? 3
                   : event >= 11 && event <= 13 ? event - 7
                   : event == 16 || event == 17 ? event - 9
                                                : -1;
  if (role != 0 || threadIdx.x != 0 || cta >= timeline_ctas || slot < 0) return;
  unsigned long long ns;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(ns));
  chunked_timeline_cta_ns[slot][cta] = ns;
}
#define DELTAPRODUCT_TRACE(role, event, chunk)                                                                         \
  do {                                                                                                                 \
    chunked_timeline_cta_stamp(role, event, chunk);                                                                    \
    if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == ((role) == 0 ? 0u : blockDim.x - 128u) && (chunk) >= 0 && \
        (chunk) < timeline_chunks)                                                                                     \
      chunked_timeline_stamps[role][event][chunk] = clock64();                                                         \
    chunked_timeline_warp_stamp(role, event, chunk);                                                                   \
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
  check(cudaEventDestroy(start), "cudaEventDestroy");
  check(cudaEventDestroy(stop), "cudaEventDestroy");
  check(cudaFree(workspace), "cudaFree");
  return milliseconds / 20;
}

/// The last call's per-CTA global-timer stamps (chunked_timeline_cta_ns) for its first `ctas` CTAs.
struct CtaTimes {
  std::vector<unsigned long long> ns[timeline_slots];
  explicit CtaTimes(int ctas) {
    static unsigned long long all[timeline_slots][timeline_ctas];
    check(cudaMemcpyFromSymbol(all, chunked_timeline_cta_ns, sizeof all), "cudaMemcpyFromSymbol");
    for (int slot = 0; slot < timeline_slots; ++slot) ns[slot].assign(all[slot], all[slot] + ctas);
  }
  /// Microseconds from the first CTA's start to the last CTA's end (of the kernels' whole run, or of their chunk
  /// loops).
  double span_us(bool whole_kernel) const {
    const auto& first = ns[whole_kernel ? 2 : 0];
    const auto& last = ns[whole_kernel ? 3 : 1];
    return static_cast<double>(*std::max_element(last.begin(), last.end()) -
                               *std::min_element(first.begin(), first.end())) *
           1e-3;
  }
  /// The sorted per-CTA microseconds from stamp slot `from` to slot `to`.
  std::vector<double> sorted_us(int from, int to) const {
    std::vector<double> us;
    for (std::size_t c = 0; c < ns[0].size(); ++c) us.push_back(static_cast<double>(ns[to][c] - ns[from][c]) * 1e-3);
    std::sort(us.begin(), us.end());
    return us;
  }
};

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

  static long long t[2][timeline_events][timeline_chunks];
  check(cudaMemcpyFromSymbol(t, chunked_timeline_stamps, sizeof t), "cudaMemcpyFromSymbol");
  // When each phase of a role's iteration ends, in cycles after the iteration's start (event 0), averaged over chunks
  // 1..62, in the order the phases ran (the order of some differs between the models).
  const char* const labels[2][timeline_events] = {
      {"iteration start (before the ready wait)", "ready: the set is filled", "residuals done",
       "past the barrier, stage refill issued", "update done: chunk done", "previous output written out",
       "S^T K^T and S^T Q^T done", "solve done", "update issued", "past the staging barrier", "output staged"},
      {"iteration start", "copies landed", "past the producer barrier", "normalisers and gates in the set",
       "diagonal inverses done", "P done: ready", "past the release wait",
       DELTAPRODUCT_EXPERIMENTAL_SCALARS_ONE_AHEAD ? nullptr : "betas and gates two ahead loaded",
       "K K^T done (wgmma wait)", "-A and diagonal blocks stored", "K Q^T done (wgmma wait)", "betas and gates stored",
       "key copy landed"}};
  std::printf(
      "%s: warp-specialised %.3f ms, one-role %.3f ms; CTA (0, 0), cycles after each iteration's start "
      "(chunks 1..62):\n",
      name, milliseconds[1], milliseconds[0]);
  for (int role = 0; role < 2; ++role) {
    std::vector<std::pair<long long, int>> ends;
    for (int event = 1; event < timeline_events; ++event) {
      if (labels[role][event] == nullptr || t[role][event][1] == 0) continue;  // not stamped in this build
      long long sum = 0;
      for (int c = 1; c < 63; ++c) sum += t[role][event][c] - t[role][0][c];
      ends.emplace_back(sum / 62, event);
    }
    std::sort(ends.begin(), ends.end());
    long long period = 0;
    for (int c = 1; c < 63; ++c) period += t[role][0][c + 1] - t[role][0][c];
    std::printf("  %s (chunk period %lld):\n", role == 0 ? "consumers" : "producer", period / 62);
    long long previous = 0;
    for (const auto& [end, event] : ends) {
      std::printf("    %7lld  (+%5lld)  %s\n", end, end - previous, labels[role][event]);
      previous = end;
    }
  }
  // Per warp of each role: when it ends each phase, after warp 0's iteration start (the same chunks), in warp 0's
  // order.
  static long long warps[2][timeline_warps][timeline_events][timeline_chunks];
  check(cudaMemcpyFromSymbol(warps, chunked_timeline_warp_stamps, sizeof warps), "cudaMemcpyFromSymbol");
  for (int role = 0; role < 2; ++role) {
    const auto& w = warps[role];
    const int role_warps = role == 0 ? timeline_warps : 4;
    std::vector<std::pair<long long, int>> order;
    for (int event = 0; event < timeline_events; ++event) {
      if (event != 0 && (labels[role][event] == nullptr || w[0][event][1] == 0)) continue;  // not stamped
      long long sum = 0;
      for (int c = 1; c < 63; ++c) sum += w[0][event][c] - w[0][0][c];
      order.emplace_back(sum / 62, event);
    }
    std::sort(order.begin(), order.end());
    std::printf("  %s warps 0..%d, cycles after warp 0's iteration start (chunks 1..62):\n",
                role == 0 ? "consumer" : "producer", role_warps - 1);
    for (const auto& [ignored, event] : order) {
      std::printf("   ");
      for (int warp = 0; warp < role_warps; ++warp) {
        long long sum = 0;
        for (int c = 1; c < 63; ++c) sum += w[warp][event][c] - w[0][0][c];
        std::printf(" %6lld", sum / 62);
      }
      std::printf("  %s\n", event == 0 ? "iteration start" : labels[role][event]);
    }
  }
  // The spread over CTAs of the last call: when each started and how long each took.
  constexpr int ctas = static_cast<int>(B * H);
  static_assert(ctas <= timeline_ctas, "one set of stamps per CTA");
  const CtaTimes cta(ctas);
  const auto loops = cta.sorted_us(0, 1), before = cta.sorted_us(2, 0), after = cta.sorted_us(1, 3);
  std::vector<double> starts;
  const unsigned long long first_entry = *std::min_element(cta.ns[2].begin(), cta.ns[2].end());
  for (int c = 0; c < ctas; ++c) starts.push_back(static_cast<double>(cta.ns[2][c] - first_entry) * 1e-3);
  std::sort(starts.begin(), starts.end());
  std::printf(
      "  CTAs (us): kernel (first CTA start to last CTA end) %.1f, chunk loops %.1f; CTA starts after the first: "
      "median %.1f, max %.1f\n"
      "    per CTA: start to first chunk min %.1f median %.1f max %.1f; chunk loop min %.1f median %.1f max %.1f; "
      "last chunk to end min %.1f median %.1f max %.1f\n",
      cta.span_us(true), cta.span_us(false), starts[ctas / 2], starts.back(), before.front(), before[ctas / 2],
      before.back(), loops.front(), loops[ctas / 2], loops.back(), after.front(), after[ctas / 2], after.back());
  // Where the time before the first chunk and after the last goes: the median over CTAs of each step.
  {
    const auto median = [&](int from, int to) { return cta.sorted_us(from, to)[ctas / 2]; };
    std::printf(
        "    before the first chunk (median us): barriers initialised %.2f, registers taken %.2f, start state %.2f, "
        "to the loop %.2f\n"
        "    after the last chunk (median us): barrier %.2f, last output written %.2f, end state stored %.2f\n",
        median(2, 4), median(4, 5), median(5, 6), median(6, 0), median(1, 7), median(7, 8), median(8, 3));
  }
  // The multiprocessor clock during CTA (0, 0)'s run: its clock64() and global-timer stamps at start and end.
  const double cycles = static_cast<double>(t[0][15][0] - t[0][14][0]);
  const double nanoseconds = static_cast<double>(cta.ns[3][0] - cta.ns[2][0]);
  std::printf("  CTA (0, 0): %.0f cycles in %.1f us: %.0f MHz\n", cycles, nanoseconds * 1e-3,
              cycles / nanoseconds * 1e3);
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
    const CtaTimes strided_cta(ctas);
    std::printf("  head-major q, k, v, o: warp-specialised %.3f ms; kernel %.1f us, chunk loops %.1f us\n",
                head_major_ms, strided_cta.span_us(true), strided_cta.span_us(false));
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
    const CtaTimes one_cta(static_cast<int>(H));
    std::printf("  B = 1 (16 CTAs): warp-specialised %.3f ms; kernel %.1f us, chunk loops %.1f us\n", one_ms,
                one_cta.span_us(true), one_cta.span_us(false));
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
