// The shape of a word-problem model and what a batch reports, shared by the CPU model (word_problem_model.hpp) and
// the GPU one (cuda_model.cuh). No Eigen and no CUDA here, so that both sides include it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "deltaproduct/core/error.hpp"

namespace deltaproduct {

/// The shape of a WordProblemModel.
struct ModelConfig {
  std::int64_t vocabulary = 6;    ///< input token ids [0, vocabulary)
  std::int64_t classes = 6;       ///< label ids [0, classes)
  int layers = 1;
  int heads = 4;
  int head_dim = 32;              ///< K = V per head
  int model_dim = 128;
  int mlp_dim = 512;
  int householder_steps = 2;      ///< n_h, 1 .. 4
  bool negative_eigenvalues = true;  ///< beta in [0, 2] (eigenvalues in [-1, 1]); false: [0, 1]
  double norm_eps = 1e-6;
};

/// Throws ArgumentError naming the first field out of range.
inline void check_model_config(const ModelConfig& c) {
  const auto at_least = [](std::int64_t value, std::int64_t low, const char* name) {
    if (value < low) detail::argument_error(name, ">= " + std::to_string(low), std::to_string(value));
  };
  at_least(c.vocabulary, 1, "config.vocabulary");
  at_least(c.classes, 1, "config.classes");
  at_least(c.layers, 1, "config.layers");
  at_least(c.heads, 1, "config.heads");
  at_least(c.head_dim, 1, "config.head_dim");
  at_least(c.model_dim, 1, "config.model_dim");
  at_least(c.mlp_dim, 1, "config.mlp_dim");
  if (c.householder_steps < 1 || c.householder_steps > 4)
    detail::argument_error("config.householder_steps", "n_h in 1 .. 4", std::to_string(c.householder_steps));
  if (!(c.norm_eps > 0)) detail::argument_error("config.norm_eps", "> 0", std::to_string(c.norm_eps));
}

/// Mean loss and accuracy of one batch, over every position.
struct BatchResult {
  double loss = 0;
  double accuracy = 0;
};

/// Name and shape of one of the model's parameters (a row-major [rows, cols] matrix; gains are [1, d]).
struct ModelParameterShape {
  std::string name;
  std::int64_t rows = 0, cols = 0;
  bool weight_decay = true;  ///< AdamW's decoupled decay applies (matrices; not the norms' gains)
};

/// The model's parameters in order: the embedding; per layer the mixer's norm gain, the query, key, value and beta
/// projections (n_h keys, values and betas per token and head), the output projection, the MLP's norm gain, input
/// and output matrices; the final norm gain and the classifier. The CPU and GPU models, checkpoints and the trainer
/// all use this order.
inline std::vector<ModelParameterShape> model_parameter_shapes(const ModelConfig& c) {
  check_model_config(c);
  const std::int64_t d = c.model_dim, hd = static_cast<std::int64_t>(c.heads) * c.head_dim, nh = c.householder_steps;
  std::vector<ModelParameterShape> shapes{{"embedding", c.vocabulary, d, false}};
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "layer" + std::to_string(l) + ".";
    shapes.push_back({p + "mixer_norm", 1, d, false});
    shapes.push_back({p + "query", d, hd, true});
    shapes.push_back({p + "key", d, nh * hd, true});
    shapes.push_back({p + "value", d, nh * hd, true});
    shapes.push_back({p + "beta", d, nh * c.heads, true});
    shapes.push_back({p + "output", hd, d, true});
    shapes.push_back({p + "mlp_norm", 1, d, false});
    shapes.push_back({p + "mlp_in", d, c.mlp_dim, true});
    shapes.push_back({p + "mlp_out", c.mlp_dim, d, true});
  }
  shapes.push_back({"final_norm", 1, d, false});
  shapes.push_back({"classifier", d, c.classes, true});
  return shapes;
}

/// Throws ArgumentError naming the first of batch, tokens, inputs and labels that does not fit the model: sizes
/// batch x tokens, input ids in [0, vocabulary), labels in [0, classes).
inline void check_word_problem_batch(const ModelConfig& c, std::span<const std::int32_t> inputs,
                                     std::span<const std::int32_t> labels, int batch, int tokens) {
  if (batch < 1) detail::argument_error("batch", ">= 1", std::to_string(batch));
  if (tokens < 1) detail::argument_error("tokens", ">= 1", std::to_string(tokens));
  const std::size_t expected = static_cast<std::size_t>(batch) * static_cast<std::size_t>(tokens);
  if (inputs.size() != expected)
    detail::argument_error("inputs", std::to_string(expected) + " ids (batch x tokens)", std::to_string(inputs.size()));
  if (labels.size() != expected)
    detail::argument_error("labels", std::to_string(expected) + " ids (batch x tokens)", std::to_string(labels.size()));
  for (std::size_t i = 0; i < expected; ++i) {
    if (inputs[i] < 0 || inputs[i] >= c.vocabulary)
      detail::argument_error("inputs", "ids in [0, " + std::to_string(c.vocabulary) + ")",
                             std::to_string(inputs[i]) + " at " + std::to_string(i));
    if (labels[i] < 0 || labels[i] >= c.classes)
      detail::argument_error("labels", "ids in [0, " + std::to_string(c.classes) + ")",
                             std::to_string(labels[i]) + " at " + std::to_string(i));
  }
}

}  // namespace deltaproduct
