// The trainable word-problem model (model/): its gradients against central finite differences of its loss, in
// double, for every parameter of every layer (both eigenvalue ranges, n_h 1 and 2, the sequential and the chunked
// recurrence); its layers' forward values against plain loops; data-parallel gradients against one worker; a few
// AdamW steps lowering the loss; and checkpoints that round-trip bit for bit and resume training exactly.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deltaproduct/model/model.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace dp = deltaproduct;

namespace {

struct Batch {
  std::vector<std::int32_t> inputs, labels;
  int batch = 0, tokens = 0;
};

/// Random words over `vocabulary` letters with the running sum mod `classes` as labels (a cyclic word problem).
Batch random_batch(int batch, int tokens, int vocabulary, int classes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> letter(0, vocabulary - 1);
  Batch b;
  b.batch = batch, b.tokens = tokens;
  for (int s = 0; s < batch; ++s) {
    int sum = 0;
    for (int t = 0; t < tokens; ++t) {
      const int x = letter(rng);
      sum = (sum + x) % classes;
      b.inputs.push_back(x);
      b.labels.push_back(sum);
    }
  }
  return b;
}

dp::ModelConfig tiny_config(int steps, bool negative) {
  dp::ModelConfig c;
  c.vocabulary = 5;
  c.classes = 5;
  c.layers = 2;
  c.heads = 2;
  c.head_dim = 4;
  c.model_dim = 8;
  c.mlp_dim = 12;
  c.householder_steps = steps;
  c.negative_eigenvalues = negative;
  return c;
}

/// Every parameter's gradient against (L(w + h) - L(w - h)) / 2h, h = 1e-6 max(1, |w|). In double the quotient errs
/// by about h^2 |L'''| + eps |L| / h ~ 1e-10 relative to the gradients here (L ~ log 5); 1e-6 of each tensor's
/// largest entry leaves a wide margin and still catches any wrong term (those are of the gradient's own size).
void check_gradients_against_finite_differences(const dp::ModelConfig& config, int tokens, std::uint64_t seed) {
  dp::WordProblemModel<double> model(config);
  model.initialize(seed);
  // Larger weights than the initialisation's, so that every nonlinearity is exercised away from its linear part.
  std::mt19937_64 rng(seed + 1);
  std::normal_distribution<double> normal(0.0, 0.4);
  for (auto& p : model.parameters())
    for (Eigen::Index i = 0; i < p.value.size(); ++i) p.value.data()[i] += normal(rng);
  const Batch b = random_batch(2, tokens, static_cast<int>(config.vocabulary), static_cast<int>(config.classes), seed);
  model.zero_gradients();
  (void)model.train_batch(b.inputs, b.labels, b.batch, b.tokens, true);
  const auto loss = [&] { return model.train_batch(b.inputs, b.labels, b.batch, b.tokens, false).loss; };
  for (auto& p : model.parameters()) {
    double largest = 0, worst = 0;
    for (Eigen::Index i = 0; i < p.value.size(); ++i) {
      double& w = p.value.data()[i];
      const double saved = w, h = 1e-6 * std::max(1.0, std::abs(saved));
      w = saved + h;
      const double up = loss();
      w = saved - h;
      const double down = loss();
      w = saved;
      const double numeric = (up - down) / (2 * h), analytic = p.gradient.data()[i];
      largest = std::max(largest, std::abs(numeric));
      worst = std::max(worst, std::abs(numeric - analytic));
    }
    INFO(p.name << ": largest gradient " << largest << ", worst difference " << worst);
    CHECK(largest > 0);
    CHECK(worst <= 1e-6 * largest);
  }
}

}  // namespace

TEST_CASE("every parameter's gradient matches finite differences, n_h 1 and 2, both eigenvalue ranges") {
  for (int steps : {1, 2})
    for (bool negative : {true, false}) {
      INFO("n_h " << steps << (negative ? " [-1, 1]" : " [0, 1]"));
      check_gradients_against_finite_differences(tiny_config(steps, negative), 6, 11u + static_cast<unsigned>(steps));
    }
}

TEST_CASE("gradients match finite differences through the chunked recurrence (sequences longer than a chunk)") {
  dp::ModelConfig c = tiny_config(2, true);
  c.layers = 1;
  check_gradients_against_finite_differences(c, 40, 21);
}

TEST_CASE("the layers' forward values equal plain loops") {
  dp::Parameter<double> gain("gain", 1, 3, false);
  gain.value << 0.5, -2.0, 1.5;
  dp::ModelMatrix<double> x(2, 3), y;
  x << 1, 2, 3, -4, 0.5, 0;
  dp::ModelVector<double> inverse_rms;
  dp::rms_norm_forward(x, gain, 1e-6, y, inverse_rms);
  for (int r = 0; r < 2; ++r) {
    const double rms = std::sqrt((x(r, 0) * x(r, 0) + x(r, 1) * x(r, 1) + x(r, 2) * x(r, 2)) / 3 + 1e-6);
    for (int c = 0; c < 3; ++c) CHECK(y(r, c) == doctest::Approx(gain.value(0, c) * x(r, c) / rms).epsilon(1e-14));
  }
  // GELU (tanh form) at a few points, and its derivative against a central difference.
  for (double z : {-3.0, -0.5, 0.0, 0.7, 2.5}) {
    const double expected = 0.5 * z * (1 + std::tanh(std::sqrt(2 / 3.141592653589793) * (z + 0.044715 * z * z * z)));
    CHECK(dp::gelu(z) == doctest::Approx(expected).epsilon(1e-14));
    CHECK(dp::gelu_derivative(z) == doctest::Approx((dp::gelu(z + 1e-6) - dp::gelu(z - 1e-6)) / 2e-6).epsilon(1e-8));
  }
  // Cross-entropy: log-sum-exp minus the label's logit; the arg-max counted.
  dp::ModelMatrix<double> logits(2, 3), d_logits;
  logits << 1, 2, 3, 0, -1, 5;
  const std::vector<std::int32_t> labels{1, 2};
  std::int64_t correct = 0;
  const double loss = dp::cross_entropy<double>(logits, labels, 0.5, d_logits, correct);
  const double expected = std::log(std::exp(1) + std::exp(2) + std::exp(3)) - 2 +
                          std::log(std::exp(0) + std::exp(-1) + std::exp(5)) - 5;
  CHECK(loss == doctest::Approx(expected).epsilon(1e-14));
  CHECK(correct == 1);
  CHECK(d_logits(0, 1) == doctest::Approx(0.5 * (std::exp(2) / (std::exp(1) + std::exp(2) + std::exp(3)) - 1)));
}

TEST_CASE("two data-parallel workers give one worker's loss and gradients (to the rounding of their sum)") {
  dp::WordProblemModel<double> one(tiny_config(2, true)), two(tiny_config(2, true));
  one.initialize(5);
  two.initialize(5);
  const Batch b = random_batch(5, 9, 5, 5, 6);
  one.zero_gradients();
  two.zero_gradients();
  const auto r1 = one.train_batch(b.inputs, b.labels, b.batch, b.tokens, true, 1);
  const auto r2 = two.train_batch(b.inputs, b.labels, b.batch, b.tokens, true, 2);
  CHECK(r1.loss == doctest::Approx(r2.loss).epsilon(1e-14));
  CHECK(r1.accuracy == r2.accuracy);
  for (std::size_t i = 0; i < one.parameters().size(); ++i) {
    const auto& g1 = one.parameters()[i].gradient;
    const auto& g2 = two.parameters()[i].gradient;
    INFO(one.parameters()[i].name);
    CHECK((g1 - g2).cwiseAbs().maxCoeff() <= 1e-14 * std::max(1.0, g1.cwiseAbs().maxCoeff()));
  }
}

TEST_CASE("a few AdamW steps lower the loss on a small cyclic word problem") {
  dp::ModelConfig c = tiny_config(2, true);
  c.model_dim = 16, c.mlp_dim = 32, c.head_dim = 8, c.layers = 1;
  dp::WordProblemModel<float> model(c);
  model.initialize(1);
  dp::AdamW optimizer;
  const Batch b = random_batch(8, 12, 5, 5, 2);
  double first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    model.zero_gradients();
    const auto r = model.train_batch(b.inputs, b.labels, b.batch, b.tokens, true, 2);
    if (step == 0) first = r.loss;
    last = r.loss;
    (void)dp::clip_gradient_norm(model.parameters(), 1.0);
    optimizer.update(model.parameters(), dp::learning_rate_at(step, 40, 5, 1e-2));
  }
  MESSAGE("loss " << first << " -> " << last);
  CHECK(first > 1.4);  // about log 5 at initialisation
  CHECK(last < 0.8 * first);
}

TEST_CASE("a checkpoint round-trips bit for bit, and training resumed from it continues exactly") {
  const dp::ModelConfig c = tiny_config(2, false);
  dp::WordProblemModel<float> model(c);
  model.initialize(3);
  dp::AdamW optimizer;
  optimizer.options.weight_decay = 0.05;
  const Batch b = random_batch(4, 10, 5, 5, 4);
  const auto train_step = [&](dp::WordProblemModel<float>& m, dp::AdamW& o) {
    m.zero_gradients();
    const auto r = m.train_batch(b.inputs, b.labels, b.batch, b.tokens, true, 1);
    o.update(m.parameters(), 3e-3);
    return r.loss;
  };
  for (int i = 0; i < 3; ++i) (void)train_step(model, optimizer);
  std::mt19937_64 order(99);
  (void)order();
  std::ostringstream order_text;
  order_text << order;
  const std::string path = (std::filesystem::temp_directory_path() / "deltaproduct_test_checkpoint.bin").string();
  dp::save_checkpoint(path, model, optimizer, dp::TrainingProgress{.epochs_done = 7, .data_order = order_text.str()});

  auto loaded = dp::load_checkpoint<float>(path);
  CHECK(loaded.progress.epochs_done == 7);
  CHECK(loaded.progress.data_order == order_text.str());
  CHECK(loaded.optimizer.step == optimizer.step);
  CHECK(loaded.optimizer.options.weight_decay == optimizer.options.weight_decay);
  CHECK(loaded.model.config().householder_steps == c.householder_steps);
  CHECK(loaded.model.config().negative_eigenvalues == c.negative_eigenvalues);
  for (std::size_t i = 0; i < model.parameters().size(); ++i) {
    const auto& a = model.parameters()[i];
    const auto& r = loaded.model.parameters()[i];
    INFO(a.name);
    CHECK(a.value == r.value);
    CHECK(a.first_moment == r.first_moment);
    CHECK(a.second_moment == r.second_moment);
  }
  const double continued = train_step(model, optimizer), resumed = train_step(loaded.model, loaded.optimizer);
  CHECK(continued == resumed);
  for (std::size_t i = 0; i < model.parameters().size(); ++i)
    CHECK(model.parameters()[i].value == loaded.model.parameters()[i].value);

  // A truncated file is an error naming the checkpoint, never a silent partial load.
  {
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  CHECK_THROWS_WITH_AS((void)dp::load_checkpoint<float>(path), doctest::Contains("deltaproduct_test_checkpoint.bin"),
                       dp::Error);
  CHECK_THROWS_WITH_AS((void)dp::load_checkpoint<double>(path), doctest::Contains("4-byte scalars"), dp::Error);
  std::filesystem::remove(path);
}

TEST_CASE("bad configurations and batches name the argument") {
  dp::ModelConfig c = tiny_config(5, true);
  CHECK_THROWS_WITH_AS(dp::WordProblemModel<float>{c}, doctest::Contains("config.householder_steps"),
                       dp::ArgumentError);
  c = tiny_config(1, true);
  c.heads = 0;
  CHECK_THROWS_WITH_AS(dp::WordProblemModel<float>{c}, doctest::Contains("config.heads"), dp::ArgumentError);
  dp::WordProblemModel<float> model(tiny_config(1, true));
  Batch b = random_batch(2, 3, 5, 5, 1);
  b.labels[4] = 5;
  CHECK_THROWS_WITH_AS((void)model.train_batch(b.inputs, b.labels, 2, 3, false), doctest::Contains("'labels'"),
                       dp::ArgumentError);
  b = random_batch(2, 3, 5, 5, 1);
  b.inputs[2] = -1;
  CHECK_THROWS_WITH_AS((void)model.train_batch(b.inputs, b.labels, 2, 3, false), doctest::Contains("'inputs'"),
                       dp::ArgumentError);
  CHECK_THROWS_WITH_AS((void)model.train_batch(b.inputs, b.labels, 3, 3, false), doctest::Contains("'inputs'"),
                       dp::ArgumentError);
}
