// A small DeltaProduct language model for word problems, built on the library's CPU forward and backward: what the
// state-tracking experiments of DeltaProduct (Siems et al.) and of the negative-eigenvalue paper (Grazzi et al.)
// train, so that a user reruns them from C++ on any group.
//
//   x = E[token]                                                    (embedding, d = model_dim)
//   per layer:  n = RMSNorm(x)
//               q = n Wq,  k_j = n Wk_j,  v_j = n Wv_j,  beta_j = s sigmoid(n wb_j)   (j = 1..n_h, per head;
//                                                                   s = 2 for eigenvalues in [-1, 1], else 1)
//               x = x + DeltaProduct(q, k, v, beta) Wo            (keys and queries L2-normalised, scale 1/sqrt(K))
//               x = x + GELU(RMSNorm(x) W1) W2
//   logits = RMSNorm(x) Wc,  loss = mean cross-entropy over every position of every sequence.
// No biases, no gate, no convolution, no output gate: the configuration DeltaProduct's S_n runs use. The recurrence
// is the library's DeltaProduct<Scalar, n_h, Range> through forward() and backward() (chunked on the CPU for float
// and double); everything around it is here, with gradients checked against finite differences in the tests.
//
// train_batch() splits a batch over `threads` workers (data parallel), each with its own gradient copy, summed after.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "deltaproduct/core/arguments.hpp"
#include "deltaproduct/core/backend.hpp"
#include "deltaproduct/core/config.hpp"
#include "deltaproduct/core/error.hpp"
#include "deltaproduct/core/view.hpp"
#include "deltaproduct/cpu/backward.hpp"
#include "deltaproduct/cpu/forward.hpp"
#include "deltaproduct/model/config.hpp"
#include "deltaproduct/model/layers.hpp"

namespace deltaproduct {

namespace detail {

/// The recurrence of one layer on a worker's rows: forward (o from q, k, v, beta) or backward (their gradients from
/// do), dispatched from the run-time n_h and range to the library's compile-time models.
template <class Scalar>
struct MixerShapes {
  index_t batch, tokens, heads, head_dim, steps;
};

template <class Scalar, int NH, EigenvalueRange Range>
void mixer_recurrence(const MixerShapes<Scalar>& s, const ModelMatrix<Scalar>& q, const ModelMatrix<Scalar>& k,
                      const ModelMatrix<Scalar>& v, const ModelMatrix<Scalar>& beta, ModelMatrix<Scalar>& o,
                      const ModelMatrix<Scalar>* d_o, ModelMatrix<Scalar>* dq, ModelMatrix<Scalar>* dk,
                      ModelMatrix<Scalar>* dv, ModelMatrix<Scalar>* dbeta) {
  DeltaProduct<Scalar, NH, Range> model;
  model.options.key_normalization = Normalization::l2;
  model.options.query_normalization = Normalization::l2;
  model.options.validate_ranges = false;  // beta = s sigmoid(.) lies in range by construction
  const CpuBackend one_thread{.threads = 1};
  const index_t B = s.batch, T = s.tokens, H = s.heads, D = s.head_dim, R = T * NH;
  const DeltaInputs<Scalar> in{.q = make_view(q.data(), {B, T, H, D}),
                               .k = make_view(k.data(), {B, R, H, D}),
                               .v = make_view(v.data(), {B, R, H, D}),
                               .beta = make_view(beta.data(), {B, R, H})};
  if (d_o == nullptr) {
    o.resize(B * T, H * D);
    forward(one_thread, model, in, ForwardOutputs<Scalar>{.o = make_view(o.data(), {B, T, H, D})});
    return;
  }
  dq->resize(q.rows(), q.cols());
  dk->resize(k.rows(), k.cols());
  dv->resize(v.rows(), v.cols());
  dbeta->resize(beta.rows(), beta.cols());
  backward(one_thread, model, in, OutputGradients<Scalar>{.o = make_view(d_o->data(), {B, T, H, D})},
           DeltaGradients<Scalar>{.q = make_view(dq->data(), {B, T, H, D}),
                                  .k = make_view(dk->data(), {B, R, H, D}),
                                  .v = make_view(dv->data(), {B, R, H, D}),
                                  .beta = make_view(dbeta->data(), {B, R, H})});
}

template <class Scalar, int NH>
void mixer_recurrence_range(bool negative, const MixerShapes<Scalar>& s, const ModelMatrix<Scalar>& q,
                            const ModelMatrix<Scalar>& k, const ModelMatrix<Scalar>& v,
                            const ModelMatrix<Scalar>& beta, ModelMatrix<Scalar>& o, const ModelMatrix<Scalar>* d_o,
                            ModelMatrix<Scalar>* dq, ModelMatrix<Scalar>* dk, ModelMatrix<Scalar>* dv,
                            ModelMatrix<Scalar>* dbeta) {
  if (negative)
    mixer_recurrence<Scalar, NH, EigenvalueRange::signed_unit>(s, q, k, v, beta, o, d_o, dq, dk, dv, dbeta);
  else
    mixer_recurrence<Scalar, NH, EigenvalueRange::unit>(s, q, k, v, beta, o, d_o, dq, dk, dv, dbeta);
}

template <class Scalar>
void run_mixer_recurrence(const ModelConfig& c, const MixerShapes<Scalar>& s, const ModelMatrix<Scalar>& q,
                          const ModelMatrix<Scalar>& k, const ModelMatrix<Scalar>& v, const ModelMatrix<Scalar>& beta,
                          ModelMatrix<Scalar>& o, const ModelMatrix<Scalar>* d_o = nullptr,
                          ModelMatrix<Scalar>* dq = nullptr, ModelMatrix<Scalar>* dk = nullptr,
                          ModelMatrix<Scalar>* dv = nullptr, ModelMatrix<Scalar>* dbeta = nullptr) {
  const bool neg = c.negative_eigenvalues;
  switch (c.householder_steps) {
    case 1: return mixer_recurrence_range<Scalar, 1>(neg, s, q, k, v, beta, o, d_o, dq, dk, dv, dbeta);
    case 2: return mixer_recurrence_range<Scalar, 2>(neg, s, q, k, v, beta, o, d_o, dq, dk, dv, dbeta);
    case 3: return mixer_recurrence_range<Scalar, 3>(neg, s, q, k, v, beta, o, d_o, dq, dk, dv, dbeta);
    default: return mixer_recurrence_range<Scalar, 4>(neg, s, q, k, v, beta, o, d_o, dq, dk, dv, dbeta);
  }
}

}  // namespace detail

/// The model: parameters, initialisation, and a batch's loss with its gradients.
template <class Scalar>
class WordProblemModel {
 public:
  explicit WordProblemModel(const ModelConfig& config) : config_(config) {
    for (const ModelParameterShape& p : model_parameter_shapes(config))
      parameters_.emplace_back(p.name, static_cast<Eigen::Index>(p.rows), static_cast<Eigen::Index>(p.cols),
                               p.weight_decay);
  }

  const ModelConfig& config() const noexcept { return config_; }
  std::vector<Parameter<Scalar>>& parameters() noexcept { return parameters_; }
  const std::vector<Parameter<Scalar>>& parameters() const noexcept { return parameters_; }
  std::int64_t parameter_count() const {
    std::int64_t n = 0;
    for (const auto& p : parameters_) n += p.value.size();
    return n;
  }

  /// Gains 1; matrices normal(0, 0.02), the two that write into the residual stream (output, mlp_out) scaled by
  /// 1 / sqrt(2 layers) so that the stream's variance does not grow with depth. Reproducible from `seed`.
  void initialize(std::uint64_t seed) {
    std::mt19937_64 engine(seed);
    std::normal_distribution<double> normal(0.0, 0.02);
    const double residual_scale = 1.0 / std::sqrt(2.0 * config_.layers);
    for (auto& p : parameters_) {
      const bool gain = p.name.ends_with("norm");
      const bool residual = p.name.ends_with(".output") || p.name.ends_with(".mlp_out");
      for (Eigen::Index i = 0; i < p.value.size(); ++i)
        p.value.data()[i] =
            gain ? Scalar(1) : static_cast<Scalar>(normal(engine) * (residual ? residual_scale : 1.0));
      p.first_moment.setZero();
      p.second_moment.setZero();
      p.gradient.setZero();
    }
  }

  void zero_gradients() {
    for (auto& p : parameters_) p.gradient.setZero();
  }

  /// Mean cross-entropy and accuracy over `batch` sequences of `tokens` positions (inputs and labels row-major
  /// [batch, tokens]); with `accumulate_gradients` the gradients of that mean are added to the parameters'.
  BatchResult train_batch(std::span<const std::int32_t> inputs, std::span<const std::int32_t> labels, int batch,
                          int tokens, bool accumulate_gradients, int threads = 1) {
    check_word_problem_batch(config_, inputs, labels, batch, tokens);
    const int workers = std::max(1, std::min(threads, batch));
    const Scalar weight = Scalar(1) / static_cast<Scalar>(static_cast<double>(batch) * tokens);
    std::vector<WorkerResult> results(static_cast<std::size_t>(workers));
    std::vector<std::vector<Parameter<Scalar>>> gradients;
    if (accumulate_gradients && workers > 1) gradients.assign(static_cast<std::size_t>(workers - 1), parameters_);
    const auto run = [&](int w) {
      const int first = batch * w / workers, last = batch * (w + 1) / workers;
      const std::size_t begin = static_cast<std::size_t>(first) * tokens, count = static_cast<std::size_t>(last - first) * tokens;
      std::vector<Parameter<Scalar>>& target = (w == 0 || !accumulate_gradients) ? parameters_
                                                                                 : gradients[static_cast<std::size_t>(w - 1)];
      if (w > 0 && accumulate_gradients)
        for (auto& p : target) p.gradient.setZero();
      results[static_cast<std::size_t>(w)] = run_rows(inputs.subspan(begin, count), labels.subspan(begin, count),
                                                      last - first, tokens, weight, accumulate_gradients, target,
                                                      nullptr);
    };
    run_workers(workers, run);
    for (const auto& g : gradients)
      for (std::size_t i = 0; i < parameters_.size(); ++i) parameters_[i].gradient += g[i].gradient;
    BatchResult r;
    std::int64_t correct = 0;
    for (const auto& w : results) r.loss += w.loss, correct += w.correct;
    r.loss /= static_cast<double>(batch) * tokens;
    r.accuracy = static_cast<double>(correct) / (static_cast<double>(batch) * tokens);
    return r;
  }

  /// Adds, per position, how many of the `batch` sequences the model labels correctly (correct_per_position has
  /// `tokens` entries); returns the batch's mean loss. No gradients.
  double evaluate(std::span<const std::int32_t> inputs, std::span<const std::int32_t> labels, int batch, int tokens,
                  std::span<std::int64_t> correct_per_position, int threads = 1) {
    check_word_problem_batch(config_, inputs, labels, batch, tokens);
    if (static_cast<int>(correct_per_position.size()) != tokens)
      detail::argument_error("correct_per_position", std::to_string(tokens) + " entries",
                             std::to_string(correct_per_position.size()));
    const int workers = std::max(1, std::min(threads, batch));
    std::vector<WorkerResult> results(static_cast<std::size_t>(workers));
    std::vector<std::vector<std::int64_t>> counts(static_cast<std::size_t>(workers),
                                                  std::vector<std::int64_t>(static_cast<std::size_t>(tokens), 0));
    run_workers(workers, [&](int w) {
      const int first = batch * w / workers, last = batch * (w + 1) / workers;
      const std::size_t begin = static_cast<std::size_t>(first) * tokens, count = static_cast<std::size_t>(last - first) * tokens;
      results[static_cast<std::size_t>(w)] =
          run_rows(inputs.subspan(begin, count), labels.subspan(begin, count), last - first, tokens, Scalar(1), false,
                   parameters_, &counts[static_cast<std::size_t>(w)]);
    });
    double loss = 0;
    for (int w = 0; w < workers; ++w) {
      loss += results[static_cast<std::size_t>(w)].loss;
      for (int t = 0; t < tokens; ++t)
        correct_per_position[static_cast<std::size_t>(t)] += counts[static_cast<std::size_t>(w)][static_cast<std::size_t>(t)];
    }
    return loss / (static_cast<double>(batch) * tokens);
  }

 private:
  struct WorkerResult {
    double loss = 0;
    std::int64_t correct = 0;
  };

  /// What one layer's forward keeps for its backward.
  struct LayerCache {
    ModelMatrix<Scalar> x, n1, q, k, v, beta, o, h, n2, a, g;
    ModelVector<Scalar> inverse_rms1, inverse_rms2;
  };

  template <class Body>
  static void run_workers(int workers, Body&& body) {
    if (workers == 1) return body(0);
    std::vector<std::thread> pool;
    for (int w = 1; w < workers; ++w) pool.emplace_back(body, w);
    body(0);
    for (auto& t : pool) t.join();
  }

  /// Forward over `batch` sequences; with `backward`, gradients of (weight x summed loss) into `grads` (a parameter
  /// list with this model's values). Counts correct labels per position into `per_position` when given.
  WorkerResult run_rows(std::span<const std::int32_t> inputs, std::span<const std::int32_t> labels, int batch,
                        int tokens, Scalar weight, bool backward, std::vector<Parameter<Scalar>>& grads,
                        std::vector<std::int64_t>* per_position) const {
    const ModelConfig& c = config_;
    const Scalar eps = static_cast<Scalar>(c.norm_eps);
    const Scalar beta_scale = c.negative_eigenvalues ? Scalar(2) : Scalar(1);
    const detail::MixerShapes<Scalar> shapes{batch, tokens, c.heads, c.head_dim, c.householder_steps};
    const auto& P = parameters_;
    constexpr std::size_t per_layer = 9;
    const auto at = [](int layer, std::size_t offset) { return 1 + per_layer * static_cast<std::size_t>(layer) + offset; };
    const std::size_t final_norm = 1 + per_layer * static_cast<std::size_t>(c.layers), classifier = final_norm + 1;

    std::vector<LayerCache> cache(static_cast<std::size_t>(c.layers));
    ModelMatrix<Scalar> x, y;
    embedding_forward(inputs, P[0], x);
    for (int l = 0; l < c.layers; ++l) {
      LayerCache& L = cache[static_cast<std::size_t>(l)];
      L.x = x;
      rms_norm_forward(L.x, P[at(l, 0)], eps, L.n1, L.inverse_rms1);
      linear_forward(L.n1, P[at(l, 1)], L.q);
      linear_forward(L.n1, P[at(l, 2)], L.k);
      linear_forward(L.n1, P[at(l, 3)], L.v);
      linear_forward(L.n1, P[at(l, 4)], L.beta);
      L.beta = (beta_scale / (Scalar(1) + (-L.beta.array()).exp())).matrix();  // s sigmoid(logit)
      detail::run_mixer_recurrence(c, shapes, L.q, L.k, L.v, L.beta, L.o);
      linear_forward(L.o, P[at(l, 5)], y);
      L.h = L.x + y;
      rms_norm_forward(L.h, P[at(l, 6)], eps, L.n2, L.inverse_rms2);
      linear_forward(L.n2, P[at(l, 7)], L.a);
      L.g = L.a.unaryExpr([](Scalar z) { return gelu(z); });
      linear_forward(L.g, P[at(l, 8)], y);
      x = L.h + y;
    }
    ModelMatrix<Scalar> nf, logits, d_logits;
    ModelVector<Scalar> inverse_rms_final;
    rms_norm_forward(x, P[final_norm], eps, nf, inverse_rms_final);
    linear_forward(nf, P[classifier], logits);
    WorkerResult r;  // the summed (unweighted) loss; d_logits carries the weight
    r.loss = static_cast<double>(cross_entropy(logits, labels, weight, d_logits, r.correct));
    if (per_position != nullptr)
      for (Eigen::Index row = 0; row < logits.rows(); ++row) {
        Eigen::Index best = 0;
        logits.row(row).maxCoeff(&best);
        if (best == labels[static_cast<std::size_t>(row)]) ++(*per_position)[static_cast<std::size_t>(row % tokens)];
      }
    if (!backward) return r;

    ModelMatrix<Scalar> d_nf, dx, d_tmp, dq, dk, dv, dbeta, d_n, d_o;
    linear_backward(nf, grads[classifier], d_logits, &d_nf);
    rms_norm_backward(x, grads[final_norm], inverse_rms_final, d_nf, dx);
    for (int l = c.layers - 1; l >= 0; --l) {
      LayerCache& L = cache[static_cast<std::size_t>(l)];
      // x_out = h + GELU(n2 W1) W2
      ModelMatrix<Scalar> dg, dh = dx;
      linear_backward(L.g, grads[at(l, 8)], dx, &dg);
      const ModelMatrix<Scalar> da = dg.cwiseProduct(L.a.unaryExpr([](Scalar z) { return gelu_derivative(z); }));
      linear_backward(L.n2, grads[at(l, 7)], da, &d_n);
      rms_norm_backward(L.h, grads[at(l, 6)], L.inverse_rms2, d_n, d_tmp);
      dh += d_tmp;
      // h = x + DeltaProduct(q, k, v, beta) Wo
      linear_backward(L.o, grads[at(l, 5)], dh, &d_o);
      detail::run_mixer_recurrence(c, shapes, L.q, L.k, L.v, L.beta, L.o, &d_o, &dq, &dk, &dv, &dbeta);
      // beta = s sigmoid(z): dbeta/dz = beta (1 - beta / s)
      const ModelMatrix<Scalar> d_logit =
          dbeta.cwiseProduct((L.beta.array() * (Scalar(1) - L.beta.array() / beta_scale)).matrix());
      linear_backward(L.n1, grads[at(l, 1)], dq, &d_n);
      linear_backward(L.n1, grads[at(l, 2)], dk, &d_tmp);
      d_n += d_tmp;
      linear_backward(L.n1, grads[at(l, 3)], dv, &d_tmp);
      d_n += d_tmp;
      linear_backward(L.n1, grads[at(l, 4)], d_logit, &d_tmp);
      d_n += d_tmp;
      rms_norm_backward(L.x, grads[at(l, 0)], L.inverse_rms1, d_n, d_tmp);
      dx = dh + d_tmp;
    }
    embedding_backward(inputs, grads[0], dx);
    return r;
  }

  ModelConfig config_;
  std::vector<Parameter<Scalar>> parameters_;
};

}  // namespace deltaproduct
