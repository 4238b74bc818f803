// The shape of a word-problem model and what a batch reports, shared by the CPU model (word_problem_model.hpp) and
// the GPU one (cuda_model.cuh). No Eigen and no CUDA here, so that both sides include it.
#pragma once

#include <cstdint>
#include <string>

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

}  // namespace deltaproduct
