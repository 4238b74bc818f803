// The CPU backend's sequential forward pass and streaming step. Counters: tokens per second and FLOP per second,
// counting 4 K V FLOP per Householder step (S^T k and the rank-1 update) plus 2 K V for the readout.
// Run: ./bench/bench_cpu_forward --benchmark_format=json --benchmark_out=forward.json
#include <benchmark/benchmark.h>

#include <cmath>
#include <deltaproduct/deltaproduct.hpp>
#include <vector>

namespace dp = deltaproduct;

namespace {

template <int NH>
void sequential_forward(benchmark::State& state) {
  const int B = 1, T = static_cast<int>(state.range(0)), H = static_cast<int>(state.range(1));
  const int K = static_cast<int>(state.range(2)), V = K;
  std::vector<float> q(static_cast<std::size_t>(B) * T * H * K, 0.1f), k(q.size() * NH), v(k.size());
  std::vector<float> beta(static_cast<std::size_t>(B) * T * NH * H, 1.5f), o(q.size());
  for (std::size_t i = 0; i < k.size(); ++i)
    k[i] = std::sin(static_cast<float>(i)), v[i] = std::cos(static_cast<float>(i));
  dp::DeltaProduct<float, NH> model;
  model.options.key_normalization = dp::Normalization::l2;
  const dp::DeltaInputs<float> in{.q = dp::make_view(q.data(), {B, T, H, K}),
                                  .k = dp::make_view(k.data(), {B, T * NH, H, K}),
                                  .v = dp::make_view(v.data(), {B, T * NH, H, V}),
                                  .beta = dp::make_view(beta.data(), {B, T * NH, H})};
  const dp::ForwardOutputs<float> out{.o = dp::make_view(o.data(), {B, T, H, V})};
  for (auto _ : state) {
    dp::forward(dp::cpu, model, in, out);
    benchmark::DoNotOptimize(o.data());
    benchmark::ClobberMemory();
  }
  const double tokens = static_cast<double>(B) * T * H;
  const double flop = tokens * (4.0 * NH + 2.0) * K * V;
  state.counters["tokens_per_s"] = benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["FLOP_per_s"] = benchmark::Counter(flop, benchmark::Counter::kIsIterationInvariantRate);
}

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
  // The state is read and written once per step.
  state.counters["state_bytes_per_s"] = benchmark::Counter(2.0 * static_cast<double>(s.size()) * sizeof(float),
                                                           benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(sequential_forward<1>)
    ->ArgsProduct({{1024, 4096}, {8}, {64, 128}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(sequential_forward<2>)->ArgsProduct({{1024}, {8}, {64, 128}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(decode_step)->Arg(1)->Arg(64)->Unit(benchmark::kMicrosecond)->UseRealTime();
