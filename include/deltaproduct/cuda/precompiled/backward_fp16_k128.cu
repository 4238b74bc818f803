// deltaproduct::cuda_kernels: the chunked backward's launchers for fp16 inputs, K = V = 128 (precompiled.cuh says why).
#include "deltaproduct/cuda/backward.cuh"

namespace deltaproduct::detail {
DELTAPRODUCT_CUDA_FOR_EACH_PRECOMPILED_CHUNKED_WIDTH(DELTAPRODUCT_CUDA_DEFINE_BACKWARD, __half, 128)
}  // namespace deltaproduct::detail
