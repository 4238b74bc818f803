// The layers around the recurrence in a small trainable model: parameters with gradients and Adam moments, and the
// forward and backward of the linear map, RMS normalisation, the GELU MLP's activation, the embedding and softmax
// cross-entropy. Activations are row-major matrices, one row per token (rows = batch x positions). Each backward
// takes what its forward produced and accumulates parameter gradients (+=), so one call per micro-batch sums.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "deltaproduct/core/error.hpp"

namespace deltaproduct {

/// Row-major dynamic matrix of the model's scalar: activations [rows, features] and weights [in, out].
template <class Scalar>
using ModelMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using ModelVector = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;

/// A trained tensor: its value, its gradient, and AdamW's first and second moments.
template <class Scalar>
struct Parameter {
  std::string name;
  ModelMatrix<Scalar> value, gradient, first_moment, second_moment;
  bool weight_decay = true;  ///< decoupled weight decay applies (matrices; not norm gains)

  Parameter(std::string parameter_name, Eigen::Index rows, Eigen::Index cols, bool decays)
      : name(std::move(parameter_name)),
        value(ModelMatrix<Scalar>::Zero(rows, cols)),
        gradient(ModelMatrix<Scalar>::Zero(rows, cols)),
        first_moment(ModelMatrix<Scalar>::Zero(rows, cols)),
        second_moment(ModelMatrix<Scalar>::Zero(rows, cols)),
        weight_decay(decays) {}
};

/// y = x W (no bias).
template <class Scalar>
void linear_forward(const ModelMatrix<Scalar>& x, const Parameter<Scalar>& w, ModelMatrix<Scalar>& y) {
  y.noalias() = x * w.value;
}

/// Given dL/dy: dW += x^T dy; dx = dy W^T (dx may be absent: nullptr).
template <class Scalar>
void linear_backward(const ModelMatrix<Scalar>& x, Parameter<Scalar>& w, const ModelMatrix<Scalar>& dy,
                     ModelMatrix<Scalar>* dx) {
  w.gradient.noalias() += x.transpose() * dy;
  if (dx != nullptr) dx->noalias() = dy * w.value.transpose();
}

/// RMS normalisation with a gain per feature: y = g o x / r, r = sqrt(mean(x^2) + eps). Keeps 1 / r per row.
template <class Scalar>
void rms_norm_forward(const ModelMatrix<Scalar>& x, const Parameter<Scalar>& gain, Scalar eps,
                      ModelMatrix<Scalar>& y, ModelVector<Scalar>& inverse_rms) {
  const auto n = static_cast<Scalar>(x.cols());
  inverse_rms.resize(x.rows());
  y.resize(x.rows(), x.cols());
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    inverse_rms(r) = Scalar(1) / std::sqrt(x.row(r).squaredNorm() / n + eps);
    y.row(r) = (x.row(r) * inverse_rms(r)).cwiseProduct(gain.value.row(0));
  }
}

/// With x_hat = x / r and dz = dy o g: dg += sum_rows dy o x_hat; dx = (dz - x_hat mean(dz o x_hat)) / r.
template <class Scalar>
void rms_norm_backward(const ModelMatrix<Scalar>& x, Parameter<Scalar>& gain, const ModelVector<Scalar>& inverse_rms,
                       const ModelMatrix<Scalar>& dy, ModelMatrix<Scalar>& dx) {
  const auto n = static_cast<Scalar>(x.cols());
  dx.resize(x.rows(), x.cols());
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const ModelVector<Scalar> x_hat = x.row(r) * inverse_rms(r);
    gain.gradient.row(0) += dy.row(r).cwiseProduct(x_hat);
    const ModelVector<Scalar> dz = dy.row(r).cwiseProduct(gain.value.row(0));
    dx.row(r) = (dz - x_hat * (dz.dot(x_hat) / n)) * inverse_rms(r);
  }
}

/// GELU, tanh form: 0.5 x (1 + tanh(c (x + 0.044715 x^3))), c = sqrt(2 / pi).
template <class Scalar>
Scalar gelu(Scalar x) {
  const Scalar c = Scalar(0.7978845608028654), inner = c * (x + Scalar(0.044715) * x * x * x);
  return Scalar(0.5) * x * (Scalar(1) + std::tanh(inner));
}
template <class Scalar>
Scalar gelu_derivative(Scalar x) {
  const Scalar c = Scalar(0.7978845608028654), inner = c * (x + Scalar(0.044715) * x * x * x);
  const Scalar t = std::tanh(inner);
  return Scalar(0.5) * (Scalar(1) + t) +
         Scalar(0.5) * x * (Scalar(1) - t * t) * c * (Scalar(1) + Scalar(3) * Scalar(0.044715) * x * x);
}

/// Rows of the embedding table for each token; tokens must lie in [0, table rows).
template <class Scalar>
void embedding_forward(std::span<const std::int32_t> tokens, const Parameter<Scalar>& table, ModelMatrix<Scalar>& x) {
  x.resize(static_cast<Eigen::Index>(tokens.size()), table.value.cols());
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= table.value.rows())
      detail::argument_error("tokens", "ids in [0, " + std::to_string(table.value.rows()) + ")",
                             std::to_string(tokens[i]) + " at " + std::to_string(i));
    x.row(static_cast<Eigen::Index>(i)) = table.value.row(tokens[i]);
  }
}

template <class Scalar>
void embedding_backward(std::span<const std::int32_t> tokens, Parameter<Scalar>& table,
                        const ModelMatrix<Scalar>& dx) {
  for (std::size_t i = 0; i < tokens.size(); ++i)
    table.gradient.row(tokens[i]) += dx.row(static_cast<Eigen::Index>(i));
}

/// Softmax cross-entropy summed over rows, with dL/dlogits = (softmax - onehot) * weight written to d_logits
/// (weight: the factor of each row in the loss, 1 / rows for a mean). Returns the summed loss and counts the rows
/// whose arg-max is the label.
template <class Scalar>
Scalar cross_entropy(const ModelMatrix<Scalar>& logits, std::span<const std::int32_t> labels, Scalar weight,
                     ModelMatrix<Scalar>& d_logits, std::int64_t& correct) {
  d_logits.resize(logits.rows(), logits.cols());
  Scalar loss = 0;
  for (Eigen::Index r = 0; r < logits.rows(); ++r) {
    const auto row = logits.row(r);
    Eigen::Index best = 0;
    const Scalar top = row.maxCoeff(&best);
    const ModelVector<Scalar> e = (row.array() - top).exp().matrix();
    const Scalar sum = e.sum();
    const std::int32_t label = labels[static_cast<std::size_t>(r)];
    loss += std::log(sum) - (row(label) - top);
    d_logits.row(r) = e * (weight / sum);
    d_logits(r, label) -= weight;
    if (best == label) ++correct;
  }
  return loss;
}

}  // namespace deltaproduct
