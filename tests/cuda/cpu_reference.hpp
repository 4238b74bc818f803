// The reference of the GPU tests: the CPU backend's sequential forward pass in double on a reference::Problem
// (tests/support/reference.hpp layouts). Compiled by the C++ compiler (cpu_reference.cpp), callable from .cu files.
#pragma once

#include "support/reference.hpp"

namespace cuda_test {

/// deltaproduct::forward(CpuBackend{sequential}, DeltaProduct<double, p.n_h, signed_unit, gated?>, ...) on p's inputs
/// (n_h in 1..4): o [B,T,H,V] and the final state [N,H,K,V]. The eigenvalue range does not change the arithmetic,
/// only the value checks, which are off here.
reference::Result cpu_forward_double(const reference::Problem& p);

}  // namespace cuda_test
