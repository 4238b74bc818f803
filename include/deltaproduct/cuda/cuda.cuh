// The CUDA backend in one include (nvcc only): the backend value and its errors, forward() (the chunked tensor-core
// kernel, with sequence splitting, and the recurrent kernel), step() for decode and state pools, backward() (the
// recurrent backward), check_status() and the size queries. backend.hpp states the conventions every entry point
// follows.
#pragma once

#include "deltaproduct/cuda/backend.hpp"
#include "deltaproduct/cuda/backward.cuh"
#include "deltaproduct/cuda/chunked_forward.cuh"
#include "deltaproduct/cuda/decode.cuh"
#include "deltaproduct/cuda/error.hpp"
#include "deltaproduct/cuda/validate.hpp"
