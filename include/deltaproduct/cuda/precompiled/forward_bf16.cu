// deltaproduct::cuda_kernels: the chunked forward's launchers for bf16 inputs (precompiled.cuh says why).
#include "deltaproduct/cuda/chunked_forward.cuh"

namespace deltaproduct::detail {
DELTAPRODUCT_CUDA_FOR_EACH_PRECOMPILED_CHUNKED(DELTAPRODUCT_CUDA_DEFINE_FORWARD, __nv_bfloat16)
}  // namespace deltaproduct::detail
