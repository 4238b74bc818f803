// The word-problem model on the GPU (model/cuda_model.cuh) against the CPU model in double (cuda/cpu_reference.hpp;
// its gradients are checked against finite differences in tests/model/test_model.cpp): the loss, the accuracy, every
// parameter's gradient and the correct labels per position, for n_h 1..3, one and two layers, both eigenvalue
// ranges; AdamW and gradient clipping against plain loops; a few training steps lower the loss.
//
// Tolerance. The GPU computes in fp32 (cuBLAS without TF32, the recurrence's fp32 kernels), the reference in double
// from the same fp32 parameters. Each product sums at most 64 terms and the backward pass chains about a dozen
// operations, so relative errors stay near 64 * 12 * 2^-24 ~ 5e-5 of each array's largest entry; the bound is 4e-4.
// The tiny models here keep the logits of different classes apart by far more than that, so arg-max counts agree
// exactly.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deltaproduct/model/cuda_model.cuh>
#include <random>
#include <string>
#include <vector>

#include "cuda/cpu_reference.hpp"
#include "cuda/gpu_harness.cuh"

namespace {

namespace dp = deltaproduct;

constexpr double tolerance = 4e-4;

dp::ModelConfig tiny_config(int layers, int householder_steps, bool negative) {
  dp::ModelConfig c;
  c.vocabulary = 6;
  c.classes = 6;
  c.layers = layers;
  c.heads = 2;
  c.head_dim = 8;
  c.model_dim = 16;
  c.mlp_dim = 24;
  c.householder_steps = householder_steps;
  c.negative_eigenvalues = negative;
  return c;
}

/// Z_6 word problems: random letters, labels the running sum mod 6 (the group's prefix products).
void word_problems(int batch, int tokens, std::uint64_t seed, std::vector<std::int32_t>& inputs,
                   std::vector<std::int32_t>& labels) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> letter(0, 5);
  inputs.resize(static_cast<std::size_t>(batch) * tokens);
  labels.resize(inputs.size());
  for (int b = 0; b < batch; ++b) {
    int sum = 0;
    for (int t = 0; t < tokens; ++t) {
      const std::size_t i = static_cast<std::size_t>(b) * tokens + t;
      inputs[i] = letter(rng);
      sum = (sum + inputs[i]) % 6;
      labels[i] = sum;
    }
  }
}

void upload(dp::CudaWordProblemModel& gpu, const std::vector<std::vector<float>>& values) {
  REQUIRE(gpu.parameter_count() == values.size());
  for (std::size_t i = 0; i < values.size(); ++i) gpu.set_parameter(i, values[i]);
}

double relative_error(const std::vector<float>& gpu, const std::vector<double>& ref) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(gpu[i]) - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

void check_against_cpu(const dp::ModelConfig& config, const std::string& what) {
  INFO(what);
  const int batch = 3, tokens = 9;
  std::vector<std::int32_t> inputs, labels;
  word_problems(batch, tokens, 17, inputs, labels);
  const auto values = cuda_test::cpu_model_initial_values(config, 5);
  const cuda_test::ModelRun ref = cuda_test::cpu_model_run(config, values, inputs, labels, batch, tokens);

  dp::CudaWordProblemModel gpu(config);
  upload(gpu, values);
  const dp::BatchResult r = gpu.train_batch(inputs, labels, batch, tokens);
  CHECK(std::abs(r.loss - ref.loss) <= tolerance * ref.loss);
  CHECK(r.accuracy == doctest::Approx(ref.accuracy).epsilon(1e-12));
  double worst = 0;
  for (std::size_t i = 0; i < gpu.parameter_count(); ++i) {
    const dp::ModelParameterShape shape = gpu.parameter_shape(i);
    std::vector<float> value(static_cast<std::size_t>(shape.rows * shape.cols)), gradient(value.size());
    gpu.get_parameter(i, value, gradient);
    const double e = relative_error(gradient, ref.gradients[i]);
    worst = std::max(worst, e);
    INFO(shape.name << ": gradient relative error " << e);
    CHECK(e <= tolerance);
    CHECK(std::equal(value.begin(), value.end(), values[i].begin()));  // the values did not move
  }
  std::vector<std::int64_t> correct(tokens, 0);
  const double eval_loss = gpu.evaluate(inputs, labels, batch, tokens, correct);
  CHECK(std::abs(eval_loss - ref.loss) <= tolerance * ref.loss);
  CHECK(correct == ref.correct_per_position);
  MESSAGE(what << ": loss " << r.loss << " (CPU " << ref.loss << "), largest gradient error " << worst);
}

}  // namespace

TEST_CASE("GPU model: loss, accuracy and every gradient match the CPU model in double") {
  check_against_cpu(tiny_config(1, 1, true), "1 layer, n_h 1, [-1, 1]");
  check_against_cpu(tiny_config(2, 2, true), "2 layers, n_h 2, [-1, 1]");
  check_against_cpu(tiny_config(1, 3, false), "1 layer, n_h 3, [0, 1]");
}

TEST_CASE("GPU model: AdamW and gradient clipping match plain loops") {
  const dp::ModelConfig config = tiny_config(1, 2, true);
  std::vector<std::int32_t> inputs, labels;
  word_problems(4, 8, 23, inputs, labels);
  const auto values = cuda_test::cpu_model_initial_values(config, 9);
  dp::CudaWordProblemModel gpu(config);
  upload(gpu, values);
  (void)gpu.train_batch(inputs, labels, 4, 8);

  std::vector<std::vector<float>> gradients;
  double squares = 0;
  for (std::size_t i = 0; i < gpu.parameter_count(); ++i) {
    const dp::ModelParameterShape shape = gpu.parameter_shape(i);
    std::vector<float> value(static_cast<std::size_t>(shape.rows * shape.cols)), gradient(value.size());
    gpu.get_parameter(i, value, gradient);
    for (float g : gradient) squares += static_cast<double>(g) * g;
    gradients.push_back(gradient);
  }
  const double norm = std::sqrt(squares), max_norm = norm / 4;
  CHECK(gpu.clip_gradient_norm(max_norm) == doctest::Approx(norm).epsilon(1e-6));

  // Two updates from zero moments, as optimizer.hpp's AdamW makes them, in double.
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01, lr = 3e-3;
  gpu.adamw_update(b1, b2, eps, wd, 1, lr);
  gpu.adamw_update(b1, b2, eps, wd, 2, lr);
  for (std::size_t i = 0; i < gpu.parameter_count(); ++i) {
    const dp::ModelParameterShape shape = gpu.parameter_shape(i);
    std::vector<float> value(values[i].size()), m(value.size()), v(value.size());
    gpu.get_parameter(i, value, {}, m, v);
    double worst = 0;
    for (std::size_t e = 0; e < value.size(); ++e) {
      const double g = gradients[i][e] * (max_norm / norm);
      double w = values[i][e], mo = 0, se = 0;
      for (int step = 1; step <= 2; ++step) {
        mo = b1 * mo + (1 - b1) * g;
        se = b2 * se + (1 - b2) * g * g;
        if (shape.weight_decay) w *= 1 - lr * wd;
        w -= lr / (1 - std::pow(b1, step)) * mo / (std::sqrt(se) / std::sqrt(1 - std::pow(b2, step)) + eps);
      }
      // fp32 rounding of w (|w| <~ 1) and of the step (lr-sized): a few ulps of 1 and of lr.
      worst = std::max(worst, std::abs(value[e] - w));
      CHECK(m[e] == doctest::Approx(mo).epsilon(1e-5).scale(1e-12));
    }
    INFO(shape.name);
    CHECK(worst <= 1e-6);
  }
}

TEST_CASE("GPU model: a few training steps lower the loss on Z6 word problems") {
  const dp::ModelConfig config = tiny_config(1, 2, true);
  const auto values = cuda_test::cpu_model_initial_values(config, 3);
  dp::CudaWordProblemModel gpu(config);
  upload(gpu, values);
  std::vector<std::int32_t> inputs, labels;
  word_problems(16, 12, 99, inputs, labels);
  const double first = gpu.train_batch(inputs, labels, 16, 12).loss;
  double last = first;
  for (int step = 1; step <= 30; ++step) {
    (void)gpu.clip_gradient_norm(1.0);
    gpu.adamw_update(0.9, 0.999, 1e-8, 0.01, step, 1e-2);
    last = gpu.train_batch(inputs, labels, 16, 12).loss;
  }
  MESSAGE("loss " << first << " -> " << last << " after 30 steps");
  CHECK(last < 0.8 * first);
}

TEST_CASE("GPU model: bad arguments name the argument") {
  dp::CudaWordProblemModel gpu(tiny_config(1, 1, true));
  std::vector<float> wrong(5);
  CHECK_THROWS_WITH_AS(gpu.set_parameter(0, wrong), doctest::Contains("value of embedding"), dp::ArgumentError);
  std::vector<std::int32_t> inputs(6, 0), labels(6, 7);
  CHECK_THROWS_WITH_AS((void)gpu.train_batch(inputs, labels, 2, 3), doctest::Contains("labels"), dp::ArgumentError);
  CHECK_THROWS_WITH_AS((void)gpu.train_batch(inputs, labels, 2, 4), doctest::Contains("inputs"), dp::ArgumentError);
  CHECK_THROWS_WITH_AS(gpu.clip_gradient_norm(0.0), doctest::Contains("max_norm"), dp::ArgumentError);
}

int main(int argc, char** argv) { return gpu_harness::run_tests(argc, argv); }
