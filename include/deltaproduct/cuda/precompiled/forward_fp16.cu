// deltaproduct::cuda_kernels: the chunked forward's launchers for fp16 inputs (precompiled.cuh says why).
#include "deltaproduct/cuda/chunked_forward.cuh"

namespace deltaproduct::detail {
#define DELTAPRODUCT_CUDA_DEFINE_FORWARD(T, KD, NH, Gated)                         \
  template bool takes_specialized_kernel<T, KD, NH, Gated>(const CudaBackend&); \
  DELTAPRODUCT_CUDA_CHUNKED_FORWARD_INSTANCE(template, T, KD, NH, Gated)
DELTAPRODUCT_CUDA_FOR_EACH_PRECOMPILED_CHUNKED(DELTAPRODUCT_CUDA_DEFINE_FORWARD, __half)
}  // namespace deltaproduct::detail
