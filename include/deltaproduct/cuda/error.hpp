// CUDA errors surfaced as the library's exception, naming the runtime call that failed. Host code only.
#pragma once

#include <string>
#include <utility>

#include <cuda_runtime.h>

#include "deltaproduct/core/error.hpp"

namespace deltaproduct {

/// A CUDA runtime call (or a kernel launch) failed.
class CudaError : public Error {
public:
  CudaError(std::string call, cudaError_t code)
      : Error("deltaproduct: CUDA call '" + call + "' failed: " + cudaGetErrorName(code) + " (" +
              cudaGetErrorString(code) + ")"),
        call_(std::move(call)), code_(code) {}

  const std::string& call() const noexcept { return call_; }
  cudaError_t code() const noexcept { return code_; }

private:
  std::string call_;
  cudaError_t code_;
};

namespace detail {

inline void cuda_check(cudaError_t code, const char* call) {
  if (code != cudaSuccess) throw CudaError(call, code);
}

}  // namespace detail
}  // namespace deltaproduct

/// Checks a CUDA runtime call; throws deltaproduct::CudaError naming the call's text on failure.
#define DELTAPRODUCT_CUDA_CHECK(call) ::deltaproduct::detail::cuda_check((call), #call)
