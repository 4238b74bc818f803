// forward() of the CUDA backend: the chunked tensor-core kernel (chunked_kernel.cuh) for training and prefill, and
// the recurrent kernel (decode.cuh) for what the tensor-core kernel does not take. Same contract and layouts as the
// CPU backend, on device memory, asynchronous on backend.stream (backend.hpp states the conventions: cu_seqlens in
// device memory, value checks recorded on the device and reported by check_status()). nvcc only.
//
//   deltaproduct::forward(deltaproduct::CudaBackend{stream, workspace, bytes}, model, inputs, outputs);
//
// The tensor-core kernel runs when all of these hold, otherwise the recurrent kernel does (K <= 256 there):
//   - token data in bf16 (__nv_bfloat16) or fp16 (__half): fp32 inputs keep full precision on the recurrent path;
//   - K = V, 64 or 128;
//   - q, k, v and o have contiguous rows (last stride 1), 16-byte aligned (data and the other strides);
//   - n_h <= 8, H <= 65535, and a GPU of compute capability >= 8.0 with the kernel's shared memory (~180 KB);
//     built for sm_90a (Hopper) the products with the state run on wgmma, elsewhere on mma.sync.
// chunked_forward_applies() says which path a call takes. CudaAlgorithm::automatic takes the tensor-core kernel when
// it applies and sequences average at least 16 tokens; CudaAlgorithm::chunked whenever it applies.
//
// The kernel needs no workspace beyond the value-check record, allocates nothing and never synchronises.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "deltaproduct/core/arguments.hpp"
#include "deltaproduct/core/config.hpp"
#include "deltaproduct/core/contract.hpp"
#include "deltaproduct/core/view.hpp"
#include "deltaproduct/cuda/backend.hpp"
#include "deltaproduct/cuda/chunked_kernel.cuh"
#include "deltaproduct/cuda/decode.cuh"
#include "deltaproduct/cuda/device_views.cuh"
#include "deltaproduct/cuda/error.hpp"
#include "deltaproduct/cuda/validate.hpp"
#include "deltaproduct/cuda/value_checks.cuh"

namespace deltaproduct {
namespace detail {

/// Largest n_h the tensor-core kernel is instantiated for (a chunk then holds 64 / n_h tokens).
inline constexpr int chunked_max_householder_steps = 8;
/// Average tokens per sequence from which CudaAlgorithm::automatic prefers the tensor-core kernel.
inline constexpr index_t chunked_min_average_tokens = 16;

/// Rows of 16-bit elements the kernel copies 16 bytes at a time: contiguous rows, every row start 16-byte aligned.
template <class T, std::size_t R>
bool rows_copyable_16_bytes(const View<T, R>& view) {
  if (view.stride(R - 1) != 1) return false;
  if (reinterpret_cast<std::uintptr_t>(view.data()) % 16 != 0) return false;
  constexpr index_t elements_per_16_bytes = 16 / sizeof(T);
  for (std::size_t d = 0; d + 1 < R; ++d)
    if (view.extent(d) > 1 && view.stride(d) % elements_per_16_bytes != 0) return false;
  return true;
}

template <class T, int KD, int NH>
std::size_t chunked_shared_bytes() {
  return cuda_chunked::TileLayout<T, KD, KD, NH>::bytes;
}

/// Whether the device can run the kernel: mma.sync bf16 (compute capability 8.0) and the kernel's shared memory.
template <class T, int NH>
bool device_takes_chunked_kernel(index_t key_dim) {
  int device = 0, major = 0, shared_optin = 0;
  DELTAPRODUCT_CUDA_CHECK(cudaGetDevice(&device));
  DELTAPRODUCT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  DELTAPRODUCT_CUDA_CHECK(cudaDeviceGetAttribute(&shared_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const std::size_t needed = key_dim == 64 ? chunked_shared_bytes<T, 64, NH>() : chunked_shared_bytes<T, 128, NH>();
  return major >= 8 && static_cast<std::size_t>(shared_optin) >= needed;
}

/// Whether the tensor-core kernel exists for this model and element type (16-bit data, n_h <= 8).
template <class Model, class T>
inline constexpr bool chunked_kernel_exists =
    !std::is_same_v<T, float> && Model::householder_steps <= chunked_max_householder_steps;

/// Whether the tensor-core kernel takes a validated call (see the list at the top of this file).
template <DeltaProductModel Model, class T>
bool chunked_kernel_takes(const Problem& p, const DeltaInputs<T, float>& in, const ForwardOutputs<T, float>& out) {
  constexpr int NH = Model::householder_steps;
  if constexpr (!chunked_kernel_exists<Model, T>) {
    return false;
  } else {
    if (p.key_dim != p.value_dim || (p.key_dim != 64 && p.key_dim != 128)) return false;
    if (p.heads > 65535) return false;
    if (!rows_copyable_16_bytes(in.q) || !rows_copyable_16_bytes(in.k) || !rows_copyable_16_bytes(in.v) ||
        !rows_copyable_16_bytes(out.o))
      return false;
    return device_takes_chunked_kernel<T, NH>(p.key_dim);
  }
}

template <class T, int KD, int NH, bool Gated>
void launch_chunked(const CudaBackend& backend, const cuda_chunked::ChunkedParams<T>& params, index_t sequences,
                    index_t heads) {
  using Layout = cuda_chunked::TileLayout<T, KD, KD, NH>;
  const auto kernel = cuda_chunked::chunked_forward_kernel<T, KD, KD, NH, Gated>;
  DELTAPRODUCT_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(Layout::bytes)));
  const dim3 grid(static_cast<unsigned>(sequences), static_cast<unsigned>(heads));
  kernel<<<grid, Layout::threads, Layout::bytes, backend.stream>>>(params);
  DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
}

/// The tensor-core kernel on a validated call that chunked_kernel_takes().
template <DeltaProductModel Model, class T>
void run_chunked(const CudaBackend& backend, const Model& model, const CudaProblem& cp, const DeltaInputs<T, float>& in,
                 const ForwardOutputs<T, float>& out) {
  const Problem& p = cp.sizes;
  ValueCheckRecord* status = status_record(backend, model.options.validate_ranges);
  launch_value_checks(backend, status, model, in, cp);
  if (p.sequences == 0 || p.heads == 0) return;

  cuda_chunked::ChunkedParams<T> params;
  params.q = device_view(in.q);
  params.k = device_view(in.k);
  params.v = device_view(in.v);
  params.beta = device_view(in.beta);
  if constexpr (Model::gating == Gating::scalar_decay) params.g = device_view(in.g);
  params.initial_state = device_view(in.initial_state);
  params.final_state = device_view(out.final_state);
  params.o = device_view(out.o);
  params.cu_seqlens = device_view(cp.cu_seqlens);
  params.tokens = p.tokens;
  params.scale = static_cast<float>(p.scale);
  params.key_norm = norm_code(model.options.key_normalization);
  params.query_norm = norm_code(model.options.query_normalization);
  params.eps = static_cast<float>(model.options.normalization_eps);
  params.status = status;

  constexpr int NH = Model::householder_steps;
  constexpr bool gated = Model::gating == Gating::scalar_decay;
  if (p.key_dim == 64)
    launch_chunked<T, 64, NH, gated>(backend, params, p.sequences, p.heads);
  else
    launch_chunked<T, 128, NH, gated>(backend, params, p.sequences, p.heads);
}

/// The path forward() takes on a validated call: true for the tensor-core kernel.
template <DeltaProductModel Model, class T>
bool takes_chunked_path(const CudaBackend& backend, const CudaProblem& cp, const DeltaInputs<T, float>& in,
                        const ForwardOutputs<T, float>& out) {
  if (backend.algorithm == CudaAlgorithm::recurrent) return false;
  if (!chunked_kernel_takes<Model>(cp.sizes, in, out)) return false;
  if (backend.algorithm == CudaAlgorithm::chunked) return true;
  const index_t sequences = cp.sizes.sequences > 0 ? cp.sizes.sequences : 1;
  return cp.sizes.batch * cp.sizes.tokens / sequences >= chunked_min_average_tokens;
}

}  // namespace detail

/// Whether forward() with `backend.algorithm` runs the chunked tensor-core kernel on these arguments (true) or the
/// recurrent kernel (false). Checks the arguments' shapes as forward() does.
template <DeltaProductModel Model, CudaElement T>
bool chunked_forward_applies(const CudaBackend& backend, const Model& model, const DeltaInputs<T, float>& in,
                             const ForwardOutputs<T, float>& out) {
  detail::check_cuda_call<Model, T>();
  return detail::takes_chunked_path<Model>(backend, detail::check_forward_cuda(model, in, out), in, out);
}

/// DeltaNet / DeltaProduct forward pass on the GPU: o and (optionally) the final state from q, k, v, beta, g (gated
/// models) and an optional initial state, all in device memory (DeltaInputs gives the layouts). Asynchronous.
template <DeltaProductModel Model, CudaElement T>
void forward(const CudaBackend& backend, const Model& model, const DeltaInputs<T, float>& in,
             const ForwardOutputs<T, float>& out) {
  detail::check_cuda_call<Model, T>();
  const CudaProblem cp = detail::check_forward_cuda(model, in, out);
  if constexpr (detail::chunked_kernel_exists<Model, T>) {
    if (detail::takes_chunked_path<Model>(backend, cp, in, out))
      return detail::run_chunked(backend, model, cp, in, out);
  }
  detail::run_recurrent(backend, model, cp, in, out.o, in.initial_state, out.final_state, {}, cp.sizes.sequences);
}

}  // namespace deltaproduct
