// Shared pieces of the GPU tests: device buffers (RAII), copies, rounding inputs to the element type under test, a
// zeroed workspace, error measures against a reference, and the test main that skips without a device.
//
// A test file:
//   #define DOCTEST_CONFIG_IMPLEMENT
//   #include <doctest/doctest.h>
//   #include "cuda/gpu_harness.cuh"
//   TEST_CASE("needs a GPU") { ... }
//   TEST_CASE("argument checks" * doctest::test_suite("host")) { ... }   // runs without a device too
//   int main(int argc, char** argv) { return gpu_harness::run_tests(argc, argv); }
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deltaproduct/core/config.hpp>
#include <deltaproduct/cuda/backend.hpp>
#include <deltaproduct/cuda/error.hpp>
#include <deltaproduct/cuda/validate.hpp>
#include <string>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

namespace gpu_harness {

namespace dp = deltaproduct;

/// True when the runtime sees at least one CUDA device.
inline bool device_present() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device / no driver" error
    return false;
  }
  return count > 0;
}

/// Runs the doctest cases. Without a device only the test suite "host" runs, and a pass exits with 77 (CTest: skipped),
/// since the GPU cases did not run.
inline int run_tests(int argc, char** argv) {
  doctest::Context context(argc, argv);
  if (device_present()) return context.run();
  context.addFilter("test-suite", "host");
  const int host_result = context.run();
  if (host_result != 0 || context.shouldExit()) return host_result;
  std::printf("no CUDA device: skipped (the host-only argument checks passed)\n");
  return 77;
}

/// Device memory for n elements of T, freed on destruction.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n) : size_(n) {
    if (n > 0) DELTAPRODUCT_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), n * sizeof(T)));
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  ~DeviceBuffer() {
    if (data_ != nullptr) (void)cudaFree(data_);
  }

  T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }

  void upload(const std::vector<T>& host) {
    REQUIRE(host.size() == size_);
    if (size_ > 0) DELTAPRODUCT_CUDA_CHECK(cudaMemcpy(data_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> host(size_);
    if (size_ > 0) DELTAPRODUCT_CUDA_CHECK(cudaMemcpy(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  void fill_bytes(int byte) {
    if (size_ > 0) DELTAPRODUCT_CUDA_CHECK(cudaMemset(data_, byte, size_ * sizeof(T)));
  }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

/// x rounded to T (round to nearest even), and back.
template <class T>
T round_to(double x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __double2bfloat16(x);
  else if constexpr (std::is_same_v<T, __half>)
    return __double2half(x);
  else
    return static_cast<T>(x);
}
template <class T>
double widen(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return static_cast<double>(__bfloat162float(x));
  else if constexpr (std::is_same_v<T, __half>)
    return static_cast<double>(__half2float(x));
  else
    return static_cast<double>(x);
}
template <class T>
std::vector<T> round_all(const std::vector<double>& x) {
  std::vector<T> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = round_to<T>(x[i]);
  return out;
}
template <class T>
std::vector<double> widen_all(const std::vector<T>& x) {
  std::vector<double> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = widen(x[i]);
  return out;
}
/// x replaced by its value rounded to T: the reference then runs on exactly the inputs the GPU reads.
template <class T>
void round_in_place(std::vector<double>& x) {
  for (double& e : x) e = widen(round_to<T>(e));
}

/// A zeroed workspace of `bytes` (at least the value-check status) and a backend on the default stream using it.
struct Workspace {
  DeviceBuffer<unsigned char> memory;
  dp::CudaBackend backend;

  explicit Workspace(std::size_t bytes = dp::cuda_status_bytes) : memory(bytes) {
    memory.fill_bytes(0);
    backend.workspace = memory.data();
    backend.workspace_bytes = bytes;
  }
};

/// Waits for the device and surfaces any asynchronous error as a CudaError.
inline void synchronize() { DELTAPRODUCT_CUDA_CHECK(cudaDeviceSynchronize()); }

/// Errors of a GPU result a against its reference b.
struct Errors {
  double max_relative = 0.0;  ///< max |a - b| / max |b|
  double rms_relative = 0.0;  ///< ||a - b||_2 / ||b||_2
  bool finite = true;
};

inline Errors compare(const std::vector<double>& a, const std::vector<double>& b) {
  Errors e;
  if (a.size() != b.size())
    return {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity(), false};
  double diff_max = 0, ref_max = std::numeric_limits<double>::min(), diff_sq = 0,
         ref_sq = std::numeric_limits<double>::min();
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) e.finite = false;
    const double d = std::abs(a[i] - b[i]);
    diff_max = std::max(diff_max, d);
    ref_max = std::max(ref_max, std::abs(b[i]));
    diff_sq += d * d;
    ref_sq += b[i] * b[i];
  }
  e.max_relative = diff_max / ref_max;
  e.rms_relative = std::sqrt(diff_sq / ref_sq);
  return e;
}

/// Normalisation options by index: 0 none, 1 l2, 2 l2_eps.
inline dp::Normalization normalization_of(int mode) {
  return mode == 0 ? dp::Normalization::none : mode == 1 ? dp::Normalization::l2 : dp::Normalization::l2_eps;
}

/// x rounded to what the GPU reads as T.
template <class T>
std::vector<double> rounded(std::vector<double> x) {
  round_in_place<T>(x);
  return x;
}

}  // namespace gpu_harness
