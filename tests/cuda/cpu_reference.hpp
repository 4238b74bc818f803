// The reference of the GPU tests: the CPU backend's sequential forward pass in double on a reference::Problem
// (tests/support/reference.hpp layouts), and its backward pass. Compiled by the C++ compiler (cpu_reference.cpp), callable from .cu files.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "deltaproduct/model/config.hpp"
#include "support/finite_differences.hpp"
#include "support/reference.hpp"

namespace cuda_test {

/// deltaproduct::forward(CpuBackend{sequential}, DeltaProduct<double, p.n_h, signed_unit, gated?>, ...) on p's inputs
/// (n_h in 1..4): o [B,T,H,V] and the final state [N,H,K,V]. The eigenvalue range does not change the arithmetic,
/// only the value checks, which are off here.
reference::Result cpu_forward_double(const reference::Problem& p);

/// deltaproduct::backward(CpuBackend{sequential}, the same model, ...) in double: the gradients of
/// L = <o, w.o> + <final_state, w.final_state> with respect to q, k, v, beta, g (gated) and the initial state
/// (zero-length w.final_state: dL/d(final state) absent). The CPU backward is itself checked against finite
/// differences (tests/cpu/test_backward.cpp).
reference::Gradients cpu_backward_double(const reference::Problem& p, const reference::LossWeights& w);

/// The CPU word-problem model's parameter values after WordProblemModel<float>::initialize(seed), in its order.
std::vector<std::vector<float>> cpu_model_initial_values(const deltaproduct::ModelConfig& config, std::uint64_t seed);

/// WordProblemModel<double> with these values on one batch: mean loss, accuracy, the gradients of the mean loss (in
/// parameter order) and the correct labels per position. Its gradients are checked against finite differences in
/// tests/model/test_model.cpp.
struct ModelRun {
  double loss = 0, accuracy = 0;
  std::vector<std::vector<double>> gradients;
  std::vector<std::int64_t> correct_per_position;
};
ModelRun cpu_model_run(const deltaproduct::ModelConfig& config, const std::vector<std::vector<float>>& values,
                       std::span<const std::int32_t> inputs, std::span<const std::int32_t> labels, int batch,
                       int tokens);

}  // namespace cuda_test
