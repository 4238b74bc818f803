// Training a WordProblemModel: AdamW ("Decoupled Weight Decay Regularization", Loshchilov & Hutter), a linear
// warm-up then cosine learning-rate schedule, and clipping of the global gradient norm.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <vector>

#include "deltaproduct/core/error.hpp"
#include "deltaproduct/model/layers.hpp"

namespace deltaproduct {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.01;  ///< decoupled: w <- w - lr wd w, on parameters with weight_decay set
};

/// One AdamW update per call; `step` counts the updates made (it is part of a checkpoint).
struct AdamW {
  AdamWOptions options;
  std::int64_t step = 0;

  template <class Scalar>
  void update(std::vector<Parameter<Scalar>>& parameters, double learning_rate) {
    ++step;
    const double correction1 = 1.0 - std::pow(options.beta1, static_cast<double>(step));
    const double correction2 = 1.0 - std::pow(options.beta2, static_cast<double>(step));
    const auto b1 = static_cast<Scalar>(options.beta1), b2 = static_cast<Scalar>(options.beta2);
    const auto step_size = static_cast<Scalar>(learning_rate / correction1);
    const auto root_correction2 = static_cast<Scalar>(std::sqrt(correction2));
    const auto eps = static_cast<Scalar>(options.eps);
    for (auto& p : parameters) {
      p.first_moment = b1 * p.first_moment + (Scalar(1) - b1) * p.gradient;
      p.second_moment = b2 * p.second_moment + (Scalar(1) - b2) * p.gradient.cwiseAbs2();
      if (p.weight_decay) p.value *= static_cast<Scalar>(1.0 - learning_rate * options.weight_decay);
      p.value.array() -=
          step_size * p.first_moment.array() / (p.second_moment.array().sqrt() / root_correction2 + eps);
    }
  }
};

/// Learning rate at update `step` (0-based) of `total`: linear from 0 over `warmup` steps to `peak`, then a cosine
/// down to `peak * final_fraction` at `total`.
inline double learning_rate_at(std::int64_t step, std::int64_t total, std::int64_t warmup, double peak,
                               double final_fraction = 0.1) {
  if (warmup > 0 && step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double span = static_cast<double>(std::max<std::int64_t>(total - warmup, 1));
  const double progress = std::clamp(static_cast<double>(step - warmup) / span, 0.0, 1.0);
  return peak * (final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
}

/// Scales every gradient so that their global L2 norm is at most `max_norm` (> 0); returns the norm before.
template <class Scalar>
double clip_gradient_norm(std::vector<Parameter<Scalar>>& parameters, double max_norm) {
  if (!(max_norm > 0)) detail::argument_error("max_norm", "> 0", std::to_string(max_norm));
  double sum = 0;
  for (const auto& p : parameters) sum += static_cast<double>(p.gradient.squaredNorm());
  const double norm = std::sqrt(sum);
  if (norm > max_norm)
    for (auto& p : parameters) p.gradient *= static_cast<Scalar>(max_norm / norm);
  return norm;
}

}  // namespace deltaproduct
