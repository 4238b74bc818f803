// The reference of the GPU tests: the CPU backend's sequential forward pass in double on a reference::Problem
// (tests/support/reference.hpp layouts), and its backward pass. Compiled by the C++ compiler (cpu_reference.cpp), callable from .cu files.
#pragma once

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

}  // namespace cuda_test
