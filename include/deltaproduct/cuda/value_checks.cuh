// The contract's value checks on the device (options.validate_ranges): beta within the eigenvalue range, g finite and
// <= 0, cu_seqlens starting at 0, non-decreasing and ending at T, state indices below the pool size. A small kernel
// runs before the main one and records the first violation in the workspace's ValueCheckRecord; main kernels call
// inputs_rejected() and then write nothing. No host synchronisation: check_status() (validate.hpp) reads the record.
// nvcc only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "deltaproduct/core/arguments.hpp"
#include "deltaproduct/core/config.hpp"
#include "deltaproduct/cuda/backend.hpp"
#include "deltaproduct/cuda/device_views.cuh"
#include "deltaproduct/cuda/error.hpp"
#include "deltaproduct/cuda/validate.hpp"

namespace deltaproduct::detail {

/// Programmatic dependent launch (sm_90): a kernel launched with launch_after_value_checks() starts while the check
/// kernel still runs, issues its loads, and waits here, before reading the record, for the check kernel to finish
/// and its writes to be visible. A no-op for kernels launched the ordinary way.
__device__ __forceinline__ void wait_for_prerequisite_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/// Lets the dependent kernel launch now; it still waits for this grid to complete before reading the record.
__device__ __forceinline__ void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

/// True when a violation is recorded (by this call's check kernel, or an earlier call's not yet reported): the
/// caller's outputs and states must then stay untouched. Read it after issuing the loads it does not guard, so its
/// latency overlaps theirs.
__device__ __forceinline__ bool inputs_rejected(const ValueCheckRecord* record) {
  if (record == nullptr) return false;
  wait_for_prerequisite_grid();
  return *static_cast<const volatile std::uint32_t*>(&record->owner) != 0;
}

template <class T>
struct ValueCheckParams {
  DeviceView<const T, 3> beta;                      ///< [B, R, H]
  DeviceView<const T, 3> g;                         ///< [B, T, H]; absent for ungated models
  DeviceView<const std::int64_t, 1> cu_seqlens;     ///< [N + 1]; absent without packing
  DeviceView<const std::int32_t, 1> state_indices;  ///< [B]; absent without a state pool
  index_t tokens = 0;                               ///< T: the last offset of cu_seqlens
  index_t state_slots = 0;                          ///< P: state indices must lie below it
  float beta_max = 2.0f;
  std::uint32_t signed_range = 1;
  std::uint32_t serial = 1;
  ValueCheckRecord* record = nullptr;
};

/// Records a violation of `field` at `key` for call `serial`, unless an earlier call's violation is pending.
__device__ inline bool claim_record(ValueCheckRecord* record, std::uint32_t serial) {
  const std::uint32_t owner = atomicCAS(&record->owner, 0u, serial);
  return owner == 0u || owner == serial;
}

__device__ inline unsigned long long violation_key(index_t index, std::uint32_t payload) {
  // Flat indices beyond 2^32 - 2 share the last key; the kernels never read out of bounds either way.
  const auto capped = static_cast<unsigned long long>(index < 0xfffffffeLL ? index : 0xfffffffeLL);
  return ~((capped << 32) | payload);
}

template <class T>
__global__ void value_check_kernel(const ValueCheckParams<T> p) {
  allow_dependent_launch();
  const index_t beta_count = p.beta.extents[0] * p.beta.extents[1] * p.beta.extents[2];
  const index_t g_count = p.g.present() ? p.g.extents[0] * p.g.extents[1] * p.g.extents[2] : 0;
  const index_t offsets = p.cu_seqlens.present() ? p.cu_seqlens.extents[0] : 0;
  const index_t slots = p.state_indices.present() ? p.state_indices.extents[0] : 0;
  const index_t total = beta_count + g_count + offsets + slots;
  ValueCheckRecord* r = p.record;
  for (index_t item = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; item < total;
       item += static_cast<index_t>(gridDim.x) * blockDim.x) {
    if (item < beta_count) {
      const index_t e1 = p.beta.extents[1], e2 = p.beta.extents[2];
      const float x = to_float(p.beta(item / (e1 * e2), (item / e2) % e1, item % e2));
      if (!(x >= 0.0f && x <= p.beta_max) && claim_record(r, p.serial)) {
        r->signed_range = p.signed_range;
        for (int d = 0; d < 3; ++d) r->beta_extents[d] = p.beta.extents[d];
        atomicMax(&r->beta, violation_key(item, __float_as_uint(x)));
      }
      continue;
    }
    index_t i = item - beta_count;
    if (i < g_count) {
      const index_t e1 = p.g.extents[1], e2 = p.g.extents[2];
      const float x = to_float(p.g(i / (e1 * e2), (i / e2) % e1, i % e2));
      if (!(x <= 0.0f && isfinite(x)) && claim_record(r, p.serial)) {
        for (int d = 0; d < 3; ++d) r->g_extents[d] = p.g.extents[d];
        atomicMax(&r->g, violation_key(i, __float_as_uint(x)));
      }
      continue;
    }
    i -= g_count;
    if (i < offsets) {
      const std::int64_t value = p.cu_seqlens(i);
      std::uint32_t rule = 3;  // 3: fine
      if (i == 0 && value != 0)
        rule = 0;
      else if (i > 0 && value < p.cu_seqlens(i - 1))
        rule = 1;
      else if (i == offsets - 1 && value != p.tokens)
        rule = 2;
      if (rule != 3 && claim_record(r, p.serial)) {
        r->tokens = p.tokens;
        if (rule == 0) r->cu_first = value;
        if (rule == 2) r->cu_last = value;
        atomicMax(&r->cu_seqlens, violation_key(i, rule));
      }
      continue;
    }
    i -= offsets;
    const std::int32_t slot = p.state_indices(i);
    if (slot >= p.state_slots && claim_record(r, p.serial)) {
      r->state_slots = p.state_slots;
      atomicMax(&r->state_indices, violation_key(i, static_cast<std::uint32_t>(slot)));
    }
  }
}

/// Launches the value checks of a call on `backend.stream` when `record` is not null (options.validate_ranges) and
/// there is something to check; returns whether it launched. `in` is in forward form ([B, T*n_h, H] betas,
/// [B, T, H] gates).
template <DeltaProductModel Model, class T>
bool launch_value_checks(const CudaBackend& backend, ValueCheckRecord* record, const Model&,
                         const DeltaInputs<T, float>& in, const CudaProblem& problem,
                         const View<const std::int32_t, 1>& state_indices = {}, index_t state_slots = 0) {
  if (record == nullptr) return false;
  ValueCheckParams<T> p;
  p.beta = device_view(in.beta);
  if constexpr (Model::gating == Gating::scalar_decay) p.g = device_view(in.g);
  p.cu_seqlens = device_view(problem.cu_seqlens);
  p.state_indices = device_view(state_indices);
  p.tokens = problem.sizes.tokens;
  p.state_slots = state_slots;
  p.beta_max = static_cast<float>(max_beta(Model::eigenvalue_range));
  p.signed_range = Model::eigenvalue_range == EigenvalueRange::signed_unit ? 1u : 0u;
  p.serial = next_call_serial();
  p.record = record;
  const index_t total = in.beta.size() + (p.g.present() ? in.g.size() : 0) +
                        (p.cu_seqlens.present() ? problem.cu_seqlens.extent(0) : 0) +
                        (p.state_indices.present() ? state_indices.extent(0) : 0);
  if (total == 0) return false;
  constexpr int threads = 256;
  constexpr index_t max_blocks = 1024;  // grid-stride beyond: the check is a small fraction of any call
  const index_t blocks = ceil_div(total, threads) < max_blocks ? ceil_div(total, threads) : max_blocks;
  value_check_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, backend.stream>>>(p);
  DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
  return true;
}

/// Launches `kernel` as a programmatic dependent launch of the value-check kernel when that was the last launch on
/// the stream (`after_checks`: launch_value_checks() returned true): the kernel's blocks may start before the checks
/// finish, and must call inputs_rejected() (which waits for them) before any store and must not read memory the
/// checks write. Otherwise an ordinary launch.
template <class... Parameters, class... Arguments>
void launch_after_value_checks(bool after_checks, void (*kernel)(Parameters...), dim3 grid, dim3 block,
                               cudaStream_t stream, Arguments&&... arguments) {
  if (!after_checks) {
    kernel<<<grid, block, 0, stream>>>(std::forward<Arguments>(arguments)...);
  } else {
    cudaLaunchAttribute attribute{};
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = 0;
    config.stream = stream;
    config.attrs = &attribute;
    config.numAttrs = 1;
    DELTAPRODUCT_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Arguments>(arguments)...));
  }
  DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace deltaproduct::detail
