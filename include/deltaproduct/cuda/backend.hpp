// The CUDA backend value: forward(CudaBackend{stream, workspace, bytes}, model, inputs, outputs) runs the same
// contract as the CPU backend on device pointers, asynchronously on `stream`. Host code only.
#pragma once

#include <cstddef>

#include <cuda_runtime.h>

namespace deltaproduct {

/// The CUDA backend: which stream to run on and scratch memory the caller owns (the backend never allocates).
/// workspace_size(...) of each algorithm says how many bytes a call needs; 0 means none.
struct CudaBackend {
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;        ///< device memory, 256-byte aligned
  std::size_t workspace_bytes = 0;  ///< size of `workspace`
};

}  // namespace deltaproduct
