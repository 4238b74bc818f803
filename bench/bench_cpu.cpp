// The CPU backend against this machine's own ceiling: sequential and chunked forward, forward + backward, and the
// streaming step, with the peak FMA throughput measured in the same binary so every result reads as a fraction of it.
//
// Run (Release, -march=native; 2 threads on the development machine). The machine is shared and noisy: take
// medians of repetitions, interleaved so that every benchmark sees the same noise, and compare within one run.
//   cmake --preset release && ninja -C build/release bench_cpu
//   ./build/release/bench/bench_cpu --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
//       --benchmark_format=json --benchmark_out=bench_cpu.json        (one command line)
//   python3 bench/plot_cpu.py bench_cpu.json bench/results/cpu_benchmark.png
// (--benchmark_filter='fma_peak|/4096/128/8' runs the peak and the headline shape alone.)
//
// Counters:
//   FLOP_per_s        the algorithm's own arithmetic per second (the counts are below, per token and head);
//   fraction_of_peak  FLOP_per_s / the FMA peak of the scalar type measured at start-up on the same threads;
//   tokens_per_s      tokens (all heads) per second.
// FLOP counts (a multiply-add is 2 FLOP), per token and head, L = C n_h micro-steps per chunk of C tokens:
//   sequential: (4 n_h + 2) K V     (S^T k and the rank-1 update per micro-step; the readout S^T q)
//   chunked:    n_h (2 K V  [K S_0]  + 2 K V  [K^T u]) + 2 K V  [Q S_0]
//               + n_h (L K [K K^T] + L^2 / 3 [(I + A)^{-1}] + L V [(I + A)^{-1} Y]) + L K [Q K^T] + L V [M u]
//   (the triangular products counted at half their full size, their nonzero part; the code evaluates some of
//   them as full blocks, so this is the least arithmetic the chunked form can do).
// The backward pass is reported by time; bench/plot_cpu.py divides forward + backward by forward.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#include <deltaproduct/deltaproduct.hpp>

namespace dp = deltaproduct;

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Peak FMA throughput: independent FMA chains in the widest vectors the build targets, on every hardware thread.

/// Runs `iterations` rounds of `chains` independent vector FMAs per thread; returns FLOP done per thread.
template <class Scalar>
double fma_chains(long iterations, Scalar* sink) {
  constexpr int chains = 12;  // enough independent chains to cover FMA latency x issue width
#if defined(__AVX512F__)
  if constexpr (sizeof(Scalar) == 4) {
    __m512 acc[chains];
    for (int c = 0; c < chains; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c) * 1e-3f);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < iterations; ++i)
      for (int c = 0; c < chains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    __m512 sum = acc[0];
    for (int c = 1; c < chains; ++c) sum = _mm512_add_ps(sum, acc[c]);
    alignas(64) float lanes[16];  // summed by hand: GCC 12 warns inside _mm512_reduce_add_ps
    _mm512_store_ps(lanes, sum);
    *sink = 0;
    for (float lane : lanes) *sink += lane;
    return 2.0 * 16 * chains * static_cast<double>(iterations);
  } else {
    __m512d acc[chains];
    for (int c = 0; c < chains; ++c) acc[c] = _mm512_set1_pd(static_cast<double>(c) * 1e-3);
    const __m512d a = _mm512_set1_pd(0.999999), b = _mm512_set1_pd(1e-7);
    for (long i = 0; i < iterations; ++i)
      for (int c = 0; c < chains; ++c) acc[c] = _mm512_fmadd_pd(acc[c], a, b);
    __m512d sum = acc[0];
    for (int c = 1; c < chains; ++c) sum = _mm512_add_pd(sum, acc[c]);
    alignas(64) double lanes[8];
    _mm512_store_pd(lanes, sum);
    *sink = 0;
    for (double lane : lanes) *sink += static_cast<Scalar>(lane);
    return 2.0 * 8 * chains * static_cast<double>(iterations);
  }
#elif defined(__FMA__)
  if constexpr (sizeof(Scalar) == 4) {
    __m256 acc[chains];
    for (int c = 0; c < chains; ++c) acc[c] = _mm256_set1_ps(static_cast<float>(c) * 1e-3f);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iterations; ++i)
      for (int c = 0; c < chains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    alignas(32) float lanes[8];
    __m256 sum = acc[0];
    for (int c = 1; c < chains; ++c) sum = _mm256_add_ps(sum, acc[c]);
    _mm256_store_ps(lanes, sum);
    *sink = lanes[0];
    return 2.0 * 8 * chains * static_cast<double>(iterations);
  } else {
    __m256d acc[chains];
    for (int c = 0; c < chains; ++c) acc[c] = _mm256_set1_pd(static_cast<double>(c) * 1e-3);
    const __m256d a = _mm256_set1_pd(0.999999), b = _mm256_set1_pd(1e-7);
    for (long i = 0; i < iterations; ++i)
      for (int c = 0; c < chains; ++c) acc[c] = _mm256_fmadd_pd(acc[c], a, b);
    alignas(32) double lanes[4];
    __m256d sum = acc[0];
    for (int c = 1; c < chains; ++c) sum = _mm256_add_pd(sum, acc[c]);
    _mm256_store_pd(lanes, sum);
    *sink = lanes[0];
    return 2.0 * 4 * chains * static_cast<double>(iterations);
  }
#else
  // No vector FMA in this build (not -march=native): the scalar peak, which the library's code cannot beat either.
  Scalar acc[chains];
  for (int c = 0; c < chains; ++c) acc[c] = static_cast<Scalar>(c) * Scalar(1e-3);
  for (long i = 0; i < iterations; ++i)
    for (int c = 0; c < chains; ++c) acc[c] = std::fma(acc[c], Scalar(0.999999), Scalar(1e-7));
  Scalar sum = 0;
  for (int c = 0; c < chains; ++c) sum += acc[c];
  *sink = sum;
  return 2.0 * chains * static_cast<double>(iterations);
#endif
}

/// FLOP per second of fma_chains on `threads` threads at once: each thread runs `rounds` rounds of `iterations`
/// and keeps its best round, and the threads' best rates add up. A thread the (shared) machine deschedules for a
/// while loses that round only, so this estimates what the cores can do rather than what one moment gave.
template <class Scalar>
double run_fma_peak(int threads, long iterations, int rounds = 8) {
  std::vector<Scalar> sinks(static_cast<std::size_t>(threads));
  std::vector<double> best(static_cast<std::size_t>(threads), 0.0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      const auto i = static_cast<std::size_t>(t);
      for (int round = 0; round < rounds; ++round) {
        const auto start = std::chrono::steady_clock::now();
        const double flop = fma_chains<Scalar>(iterations, &sinks[i]);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        best[i] = std::max(best[i], flop / seconds);
      }
    });
  for (auto& th : pool) th.join();
  benchmark::DoNotOptimize(sinks.data());
  double total = 0;
  for (double rate : best) total += rate;
  return total;
}

/// The peak, measured once per scalar type.
template <class Scalar>
double measured_peak() {
  static const double peak = run_fma_peak<Scalar>(dp::cpu.resolved_threads(), 200'000, 40);
  return peak;
}

template <class Scalar>
void fma_peak(benchmark::State& state) {
  const int threads = dp::cpu.resolved_threads();
  double flop_per_s = 0;
  for (auto _ : state) flop_per_s = std::max(flop_per_s, run_fma_peak<Scalar>(threads, 200'000, 40));
  state.counters["FLOP_per_s"] = flop_per_s;
  state.counters["threads"] = threads;
  state.counters["fraction_of_peak"] = flop_per_s / measured_peak<Scalar>();
}

// ---------------------------------------------------------------------------------------------------------------
// The recurrences.

enum class Direction { forward, forward_backward };

using dp::CpuAlgorithm;
constexpr auto seq = CpuAlgorithm::sequential;
constexpr auto chunk = CpuAlgorithm::chunked;
constexpr auto fwd = Direction::forward;
constexpr auto fwd_bwd = Direction::forward_backward;

double sequential_flop_per_token(int n_h, double K, double V) { return (4.0 * n_h + 2.0) * K * V; }

double chunked_flop_per_token(int n_h, double K, double V, double chunk_tokens) {
  const double L = chunk_tokens * n_h;
  return n_h * 4.0 * K * V + 2.0 * K * V + n_h * (L * K + L * L / 3.0 + L * V) + L * K + L * V;
}

/// Random inputs of one shape: keys L2-normalised by the model, beta in [0, 2), log-decays in [-0.1, 0].
template <class Scalar>
struct Problem {
  int B, T, H, K, V, n_h;
  std::vector<Scalar> q, k, v, beta, g, o, d_o, dq, dk, dv, dbeta, dg;

  Problem(int batch, int tokens, int heads, int key_dim, int value_dim, int steps)
      : B(batch), T(tokens), H(heads), K(key_dim), V(value_dim), n_h(steps) {
    std::mt19937 rng(7);
    std::normal_distribution<double> normal;
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    const auto fill = [&](std::vector<Scalar>& x, std::size_t n, auto draw) {
      x.resize(n);
      for (auto& e : x) e = static_cast<Scalar>(draw());
    };
    const std::size_t tokens_heads = static_cast<std::size_t>(B) * T * H, rows = tokens_heads * n_h;
    fill(q, tokens_heads * K, [&] { return normal(rng); });
    fill(k, rows * K, [&] { return normal(rng); });
    fill(v, rows * V, [&] { return normal(rng); });
    fill(beta, rows, [&] { return 2.0 * uniform(rng) * 0.999; });
    fill(g, tokens_heads, [&] { return -0.1 * uniform(rng); });
    fill(d_o, tokens_heads * V, [&] { return normal(rng); });
    o.assign(tokens_heads * V, Scalar(0));
    dq.assign(q.size(), Scalar(0)), dk.assign(k.size(), Scalar(0)), dv.assign(v.size(), Scalar(0));
    dbeta.assign(beta.size(), Scalar(0)), dg.assign(g.size(), Scalar(0));
  }

  dp::DeltaInputs<Scalar> inputs(bool gated) const {
    const dp::index_t R = static_cast<dp::index_t>(T) * n_h;
    dp::DeltaInputs<Scalar> in{.q = dp::make_view(q.data(), {B, T, H, K}),
                               .k = dp::make_view(k.data(), {B, R, H, K}),
                               .v = dp::make_view(v.data(), {B, R, H, V}),
                               .beta = dp::make_view(beta.data(), {B, R, H})};
    if (gated) in.g = dp::make_view(g.data(), {B, T, H});
    return in;
  }
  dp::ForwardOutputs<Scalar> outputs() { return {.o = dp::make_view(o.data(), {B, T, H, V})}; }
  dp::OutputGradients<Scalar> output_gradients() const { return {.o = dp::make_view(d_o.data(), {B, T, H, V})}; }
  dp::DeltaGradients<Scalar> gradients(bool gated) {
    const dp::index_t R = static_cast<dp::index_t>(T) * n_h;
    dp::DeltaGradients<Scalar> d{.q = dp::make_view(dq.data(), {B, T, H, K}),
                                 .k = dp::make_view(dk.data(), {B, R, H, K}),
                                 .v = dp::make_view(dv.data(), {B, R, H, V}),
                                 .beta = dp::make_view(dbeta.data(), {B, R, H})};
    if (gated) d.g = dp::make_view(dg.data(), {B, T, H});
    return d;
  }
};

/// Args: T, K (= V), H. B = 1.
template <class Scalar, int NH, dp::CpuAlgorithm Algorithm, Direction Dir, dp::Gating Gate = dp::Gating::none>
void delta_product(benchmark::State& state) {
  const int T = static_cast<int>(state.range(0)), K = static_cast<int>(state.range(1));
  const int H = static_cast<int>(state.range(2));
  Problem<Scalar> p(1, T, H, K, K, NH);
  constexpr bool gated = Gate == dp::Gating::scalar_decay;
  dp::DeltaProduct<Scalar, NH, dp::EigenvalueRange::signed_unit, Gate> model;
  model.options.key_normalization = dp::Normalization::l2;
  model.options.query_normalization = dp::Normalization::l2;
  const dp::CpuBackend backend{.algorithm = Algorithm};
  const auto in = p.inputs(gated);
  const auto out = p.outputs();
  const auto d_out = p.output_gradients();
  const auto grads = p.gradients(gated);
  for (auto _ : state) {
    dp::forward(backend, model, in, out);
    if constexpr (Dir == Direction::forward_backward) dp::backward(backend, model, in, d_out, grads);
    benchmark::DoNotOptimize(p.o.data());
    benchmark::ClobberMemory();
  }
  const double tokens = static_cast<double>(T) * H;
  state.counters["tokens_per_s"] = benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
  if constexpr (Dir == Direction::forward) {
    const double per_token = Algorithm == dp::CpuAlgorithm::sequential
                                 ? sequential_flop_per_token(NH, K, K)
                                 : chunked_flop_per_token(NH, K, K, std::min(backend.chunk_size, T));
    const double flop = tokens * per_token;
    state.counters["FLOP_per_s"] = benchmark::Counter(flop, benchmark::Counter::kIsIterationInvariantRate);
    // fraction_of_peak = (flop / seconds per iteration) / peak, written as an iteration-invariant rate.
    state.counters["fraction_of_peak"] =
        benchmark::Counter(flop / measured_peak<Scalar>(), benchmark::Counter::kIsIterationInvariantRate);
  }
  state.counters["T"] = T, state.counters["K"] = K, state.counters["H"] = H, state.counters["n_h"] = NH;
}

/// The headline comparisons measured side by side: every iteration times the FMA peak (briefly), the sequential
/// forward, the chunked forward and the chunked forward + backward back to back, so all four see the same machine
/// (this machine is shared: separate benchmarks see different loads). Counters are medians over iterations of the
/// per-iteration times and ratios; the peak is the best of the iterations. Args: T, K (= V), H; B = 1.
template <class Scalar, int NH, dp::Gating Gate = dp::Gating::none, bool WithSequential = true>
void side_by_side(benchmark::State& state) {
  const int T = static_cast<int>(state.range(0)), K = static_cast<int>(state.range(1));
  const int H = static_cast<int>(state.range(2));
  Problem<Scalar> p(1, T, H, K, K, NH);
  constexpr bool gated = Gate == dp::Gating::scalar_decay;
  dp::DeltaProduct<Scalar, NH, dp::EigenvalueRange::signed_unit, Gate> model;
  model.options.key_normalization = dp::Normalization::l2;
  model.options.query_normalization = dp::Normalization::l2;
  const dp::CpuBackend sequential{.algorithm = seq}, chunked{.algorithm = chunk};
  const auto in = p.inputs(gated);
  const auto out = p.outputs();
  const auto d_out = p.output_gradients();
  const auto grads = p.gradients(gated);
  const int threads = dp::cpu.resolved_threads();
  auto seconds = [](auto&& work) {
    const auto start = std::chrono::steady_clock::now();
    work();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::vector<double> t_seq, t_fwd, t_fwd_bwd;
  double peak = 0;
  for (auto _ : state) {
    peak = std::max(peak, run_fma_peak<Scalar>(threads, 100'000));
    if constexpr (WithSequential) t_seq.push_back(seconds([&] { dp::forward(sequential, model, in, out); }));
    t_fwd.push_back(seconds([&] { dp::forward(chunked, model, in, out); }));
    t_fwd_bwd.push_back(seconds([&] {
      dp::forward(chunked, model, in, out);
      dp::backward(chunked, model, in, d_out, grads);
    }));
    state.SetIterationTime(t_fwd_bwd.back());
    benchmark::DoNotOptimize(p.o.data());
    benchmark::ClobberMemory();
  }
  auto median = [](std::vector<double> x) {
    std::sort(x.begin(), x.end());
    const std::size_t n = x.size();
    return n % 2 == 1 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
  };
  std::vector<double> speedup, backward_ratio;
  for (std::size_t i = 0; i < t_fwd.size(); ++i) {
    if constexpr (WithSequential) speedup.push_back(t_seq[i] / t_fwd[i]);
    backward_ratio.push_back(t_fwd_bwd[i] / t_fwd[i]);
  }
  const double tokens = static_cast<double>(T) * H;
  const double chunk_flop = tokens * chunked_flop_per_token(NH, K, K, std::min(chunked.chunk_size, T));
  const double seq_flop = tokens * sequential_flop_per_token(NH, K, K);
  state.counters["peak_FLOP_per_s"] = peak;
  state.counters["chunked_ms"] = 1e3 * median(t_fwd);
  state.counters["chunked_fwd_bwd_ms"] = 1e3 * median(t_fwd_bwd);
  state.counters["fwd_bwd_over_fwd"] = median(backward_ratio);
  state.counters["chunked_fraction_of_peak"] = chunk_flop / median(t_fwd) / peak;
  if constexpr (WithSequential) {
    state.counters["sequential_ms"] = 1e3 * median(t_seq);
    state.counters["chunked_speedup"] = median(speedup);
    state.counters["sequential_fraction_of_peak"] = seq_flop / median(t_seq) / peak;
  }
  state.counters["T"] = T, state.counters["K"] = K, state.counters["H"] = H, state.counters["n_h"] = NH;
}

/// Streaming inference: one token per sequence, gated DeltaNet, H = 16, K = V = 128; the state is read and written once.
void decode_step(benchmark::State& state) {
  const int B = static_cast<int>(state.range(0)), H = 16, K = 128, V = 128;
  std::vector<float> q(static_cast<std::size_t>(B) * H * K, 0.05f), k(q.size(), 0.08f), v(q.size(), 0.1f);
  std::vector<float> beta(static_cast<std::size_t>(B) * H, 1.0f), g(beta.size(), -0.01f), o(q.size());
  std::vector<float> s(static_cast<std::size_t>(B) * H * K * V, 0.01f);
  const dp::GatedDeltaNet<float> model;
  const dp::DeltaStepInputs<float> in{.q = dp::make_view(q.data(), {B, H, K}),
                                      .k = dp::make_view(k.data(), {B, 1, H, K}),
                                      .v = dp::make_view(v.data(), {B, 1, H, V}),
                                      .beta = dp::make_view(beta.data(), {B, 1, H}),
                                      .g = dp::make_view(g.data(), {B, H})};
  for (auto _ : state) {
    dp::step(dp::cpu, model, in, dp::make_view(s.data(), {B, H, K, V}), dp::make_view(o.data(), {B, H, V}));
    benchmark::ClobberMemory();
  }
  state.counters["state_bytes_per_s"] = benchmark::Counter(2.0 * static_cast<double>(s.size()) * sizeof(float),
                                                           benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(fma_peak<float>)->Iterations(3)->UseRealTime();
BENCHMARK(fma_peak<double>)->Iterations(3)->UseRealTime();

// The headline shape side by side (bench/plot_cpu.py's table comes from these).
#define DP_SIDE_BY_SIDE(...) \
  BENCHMARK(__VA_ARGS__)->Args({4096, 128, 8})->Iterations(9)->UseManualTime()->Unit(benchmark::kMillisecond)
DP_SIDE_BY_SIDE(side_by_side<float, 1>);
DP_SIDE_BY_SIDE(side_by_side<float, 1, dp::Gating::scalar_decay>);
DP_SIDE_BY_SIDE(side_by_side<double, 1>);
// (forward + backward) / forward over T, side by side (float, K = V = 128, H = 8), without the token loop.
#define DP_SIDE_BY_SIDE_T(T, ITERATIONS)                                                                    \
  BENCHMARK(side_by_side<float, 1, dp::Gating::none, false>)->Args({T, 128, 8})->Iterations(ITERATIONS)->UseManualTime() \
      ->Unit(benchmark::kMillisecond)
DP_SIDE_BY_SIDE_T(256, 9);
DP_SIDE_BY_SIDE_T(1024, 9);
DP_SIDE_BY_SIDE_T(16384, 5);
DP_SIDE_BY_SIDE_T(65536, 3);

// The headline shape: B = 1, H = 8, T = 4096, K = V = 128, float. Every shape below appears once; the sweeps leave
// out the point the headline already measures, and bench/plot_cpu.py joins them.
#define DP_HEADLINE(...) BENCHMARK(__VA_ARGS__)->Args({4096, 128, 8})->Unit(benchmark::kMillisecond)->UseRealTime()
DP_HEADLINE(delta_product<float, 1, seq, fwd>);
DP_HEADLINE(delta_product<float, 1, chunk, fwd>);
DP_HEADLINE(delta_product<float, 1, chunk, fwd_bwd>);
DP_HEADLINE(delta_product<float, 1, seq, fwd_bwd>);
DP_HEADLINE(delta_product<float, 1, chunk, fwd, dp::Gating::scalar_decay>);
DP_HEADLINE(delta_product<float, 1, chunk, fwd_bwd, dp::Gating::scalar_decay>);
DP_HEADLINE(delta_product<double, 1, seq, fwd>);
DP_HEADLINE(delta_product<double, 1, chunk, fwd>);
DP_HEADLINE(delta_product<double, 1, chunk, fwd_bwd>);

// Length sweep (K = V = 128, H = 8). The sequential form stops at 16384 tokens (its backward at 1024, double at
// 1024) and double's chunked form at 16384 to keep the run short.
#define DP_SWEEP_T(LIST, ...) \
  BENCHMARK(__VA_ARGS__)->ArgsProduct({LIST, {128}, {8}})->Unit(benchmark::kMillisecond)->UseRealTime()
DP_SWEEP_T(std::vector<int64_t>({256, 1024, 16384, 65536}), delta_product<float, 1, chunk, fwd>);
DP_SWEEP_T(std::vector<int64_t>({256, 1024, 16384, 65536}), delta_product<float, 1, chunk, fwd_bwd>);
DP_SWEEP_T(std::vector<int64_t>({256, 1024, 16384}), delta_product<float, 1, seq, fwd>);
DP_SWEEP_T(std::vector<int64_t>({256, 1024}), delta_product<float, 1, seq, fwd_bwd>);
DP_SWEEP_T(std::vector<int64_t>({256, 1024, 16384}), delta_product<double, 1, chunk, fwd>);
DP_SWEEP_T(std::vector<int64_t>({256, 1024, 16384}), delta_product<double, 1, chunk, fwd_bwd>);
DP_SWEEP_T(std::vector<int64_t>({256, 1024}), delta_product<double, 1, seq, fwd>);

// Head-size sweep (T = 4096, H = 8).
#define DP_SWEEP_K(...) \
  BENCHMARK(__VA_ARGS__)->ArgsProduct({{4096}, {32, 64, 256}, {8}})->Unit(benchmark::kMillisecond)->UseRealTime()
DP_SWEEP_K(delta_product<float, 1, chunk, fwd>);
DP_SWEEP_K(delta_product<float, 1, seq, fwd>);
DP_SWEEP_K(delta_product<float, 1, chunk, fwd_bwd>);

// Householder steps per token (T = 1024, K = V = 128, H = 8; n_h = 1 is in the length sweep).
#define DP_SWEEP_NH(NH)                                                                                        \
  BENCHMARK(delta_product<float, NH, chunk, fwd>)->Args({1024, 128, 8})->Unit(benchmark::kMillisecond)->UseRealTime(); \
  BENCHMARK(delta_product<float, NH, seq, fwd>)->Args({1024, 128, 8})->Unit(benchmark::kMillisecond)->UseRealTime();   \
  BENCHMARK(delta_product<float, NH, chunk, fwd_bwd>)->Args({1024, 128, 8})->Unit(benchmark::kMillisecond)->UseRealTime()
DP_SWEEP_NH(2);
DP_SWEEP_NH(3);
DP_SWEEP_NH(4);

BENCHMARK(decode_step)->Arg(1)->Arg(64)->Unit(benchmark::kMicrosecond)->UseRealTime();
