// Cost of simulated formats in the recurrence's inner loop, against native float measured in the same run.
//
// One DeltaNet micro-step on a K x V state (row-major, so rows are contiguous):
//   u = S^T k, accumulated row by row (u += k_i * S.row(i)),   w = beta (v - u),   S.row(i) += k_i * w.
// That is 4 K V + 2 V scalar operations, each one rounding in a simulated format. Counters:
//   simulated_ops/s   scalar operations per second;
//   vs_native_float   time per step divided by native float's time per step, both measured in this benchmark
//                     (float first, then the format), so machine noise affects both alike.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <Eigen/Core>

#include <deltaproduct/precision/precision.hpp>

namespace {

using namespace deltaproduct;

template <class T>
struct DeltaStep {
  using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vector = Eigen::Matrix<T, 1, Eigen::Dynamic>;
  Matrix s;
  Vector k, v, u, w;
  T beta;

  explicit DeltaStep(Eigen::Index size) : s(size, size), k(size), v(size), u(size), w(size), beta(0.5) {
    std::mt19937_64 rng(1);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<double> key(static_cast<std::size_t>(size));
    double norm = 0;
    for (double& x : key) {
      x = normal(rng);
      norm += x * x;
    }
    for (Eigen::Index i = 0; i < size; ++i) {
      k(i) = T(key[static_cast<std::size_t>(i)] / std::sqrt(norm));  // a unit key: the step contracts
      v(i) = T(normal(rng));
      for (Eigen::Index j = 0; j < size; ++j) s(i, j) = T(0.1 * normal(rng));
    }
  }

  void run() {
    u.setZero();
    for (Eigen::Index i = 0; i < s.rows(); ++i) u += k(i) * s.row(i);
    w = beta * (v - u);
    for (Eigen::Index i = 0; i < s.rows(); ++i) s.row(i) += k(i) * w;
    benchmark::DoNotOptimize(s.data());
    benchmark::ClobberMemory();
  }
};

/// Seconds per step of native float, measured over at least 0.2 s.
double native_float_seconds_per_step(Eigen::Index size) {
  DeltaStep<float> step(size);
  std::int64_t steps = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  do {
    for (int i = 0; i < 64; ++i) step.run();
    steps += 64;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < 0.2);
  return elapsed / static_cast<double>(steps);
}

template <class T>
void BM_delta_step(benchmark::State& state) {
  const Eigen::Index size = state.range(0);
  const double float_seconds = native_float_seconds_per_step(size);
  DeltaStep<T> step(size);
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) step.run();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double ops_per_step = 4.0 * static_cast<double>(size * size) + 2.0 * static_cast<double>(size);
  const auto steps = static_cast<double>(state.iterations());
  state.SetItemsProcessed(static_cast<std::int64_t>(ops_per_step * steps));
  state.counters["simulated_ops/s"] = benchmark::Counter(ops_per_step * steps, benchmark::Counter::kIsRate);
  state.counters["vs_native_float"] = seconds / steps / float_seconds;
}

/// Rounding doubles to a format (what exhaustive searches do per candidate value): roundings per second.
template <class T>
void BM_round_double(benchmark::State& state) {
  std::mt19937_64 rng(2);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> in(4096);
  for (double& x : in) x = normal(rng);
  std::vector<T> out(in.size());
  for (auto _ : state) {
    for (std::size_t i = 0; i < in.size(); ++i) out[i] = T(in[i]);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(in.size()));
}

using bf16_stochastic = with_rounding<bf16, Rounding::stochastic>;
using fp16_toward_zero = with_rounding<fp16, Rounding::toward_zero>;

}  // namespace

BENCHMARK(BM_delta_step<float>)->Arg(64)->Arg(128);
BENCHMARK(BM_delta_step<double>)->Arg(64)->Arg(128);
BENCHMARK(BM_delta_step<fp64>)->Arg(64)->Arg(128);
BENCHMARK(BM_delta_step<fp32>)->Arg(64)->Arg(128);
BENCHMARK(BM_delta_step<bf16>)->Arg(64)->Arg(128);
BENCHMARK(BM_delta_step<fp16>)->Arg(64)->Arg(128);
BENCHMARK(BM_delta_step<fp8_e4m3>)->Arg(64)->Arg(128);
BENCHMARK(BM_delta_step<fp16_toward_zero>)->Arg(64)->Arg(128);
BENCHMARK(BM_delta_step<bf16_stochastic>)->Arg(64)->Arg(128);
BENCHMARK(BM_delta_step<q3_12>)->Arg(64)->Arg(128);
BENCHMARK(BM_round_double<fp16>);
BENCHMARK(BM_round_double<bf16>);
BENCHMARK(BM_round_double<fp8_e4m3>);
BENCHMARK(BM_round_double<bf16_stochastic>);
