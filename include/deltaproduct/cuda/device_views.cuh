// What a kernel receives instead of a View: DeviceView, a pointer with extents and strides (in elements), trivially
// copyable so it travels as a kernel parameter. Token data comes as bf16 (__nv_bfloat16), fp16 (__half) or fp32;
// kernels compute in fp32: to_float() on every read, from_float<T>() on every write. nvcc only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "deltaproduct/core/view.hpp"

namespace deltaproduct {

/// An element type of token data the CUDA backend reads and writes.
template <class T>
concept CudaElement = std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;

namespace detail {

/// A strided view of device memory as a kernel parameter. An absent View becomes data == nullptr.
template <class T, int Rank>
struct DeviceView {
  T* data = nullptr;
  index_t extents[Rank] = {};
  index_t strides[Rank] = {};

  __host__ __device__ bool present() const { return data != nullptr; }

  /// Offset of element (i0, i1, ...) in elements; 64-bit, since pools and long sequences pass 2^31 elements.
  template <class... Indices>
  __host__ __device__ index_t offset(Indices... indices) const {
    static_assert(sizeof...(Indices) == Rank, "deltaproduct::detail::DeviceView: one index per dimension");
    const index_t idx[Rank] = {static_cast<index_t>(indices)...};
    index_t off = 0;
    for (int d = 0; d < Rank; ++d) off += idx[d] * strides[d];
    return off;
  }

  template <class... Indices>
  __host__ __device__ T& operator()(Indices... indices) const {
    return data[offset(indices...)];
  }
};

/// The kernel-side form of a view (host code).
template <class T, std::size_t Rank>
DeviceView<T, static_cast<int>(Rank)> device_view(const View<T, Rank>& view) {
  DeviceView<T, static_cast<int>(Rank)> d;
  d.data = view.data();
  for (std::size_t i = 0; i < Rank; ++i) {
    d.extents[i] = view.extent(i);
    d.strides[i] = view.stride(i);
  }
  return d;
}

__host__ __device__ constexpr index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

// Conversions between token element types and the fp32 the kernels compute in (round to nearest even on writes).
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

template <class T>
__device__ __forceinline__ T from_float(float x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __float2bfloat16_rn(x);
  else if constexpr (std::is_same_v<T, __half>)
    return __float2half_rn(x);
  else
    return x;
}

/// Four consecutive fp32 values from memory aligned to 16 bytes: one 128-bit access (global or shared memory).
__device__ __forceinline__ float4 load_float4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ void store_float4(float* p, float4 x) { *reinterpret_cast<float4*>(p) = x; }

/// 16 bytes to global memory aligned to 16 bytes, as one st.global.v4: the optimiser splits a plain 16-byte
/// assignment into 4-byte stores when it cannot see the address's alignment (a pointer advanced by a runtime
/// stride), and four partial stores cost four times the instructions and L2 traffic of one.
__device__ __forceinline__ void store_global_16_bytes(void* p, uint4 x) {
  asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(x.x), "r"(x.y), "r"(x.z), "r"(x.w)
               : "memory");
}
__device__ __forceinline__ void store_global_float4(float* p, float4 x) {
  store_global_16_bytes(p, make_uint4(__float_as_uint(x.x), __float_as_uint(x.y), __float_as_uint(x.z),
                                      __float_as_uint(x.w)));
}

}  // namespace detail
}  // namespace deltaproduct
