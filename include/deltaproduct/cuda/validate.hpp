// Host-side argument checks of the CUDA backend: the shared contract (check_forward of core/contract.hpp) with the
// cu_seqlens values left in device memory, pointer alignment, and the workspace; plus the record in which the device
// reports value violations (beta, g, cu_seqlens, state indices) and check_status(), which turns it into the same
// ArgumentError as the CPU backend. Host code only; compiles with any C++20 compiler given the CUDA include path.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>

#include "deltaproduct/core/arguments.hpp"
#include "deltaproduct/core/config.hpp"
#include "deltaproduct/core/contract.hpp"
#include "deltaproduct/core/error.hpp"
#include "deltaproduct/core/view.hpp"
#include "deltaproduct/cuda/backend.hpp"
#include "deltaproduct/cuda/error.hpp"

namespace deltaproduct {

/// Sizes of a validated CUDA call. `sizes.cu_seqlens` stays absent even for packed sequences: the offsets live in
/// device memory (`cu_seqlens` below) and must never be read on the host, so `sizes.sequence(n)` is not for here.
struct CudaProblem {
  Problem sizes;                           ///< B, T, H, K, V, n_h, N (sequences) and the readout scale
  View<const std::int64_t, 1> cu_seqlens;  ///< device memory, [N + 1]; absent: sequence n is batch row n
};

/// Where the device records the first value violation of a call (the first cuda_status_bytes of the workspace).
/// Each violation field holds ~key (0: none), key = (flat index << 32) | payload, so that atomicMax over ~key keeps
/// the smallest index: the same element the CPU backend's row-major scan reports first.
struct ValueCheckRecord {
  std::uint32_t owner = 0;               ///< serial of the call whose inputs failed; 0: no violation recorded
  std::uint32_t signed_range = 0;        ///< that call's eigenvalue range: 1 for [-1, 1], 0 for [0, 1]
  unsigned long long beta = 0;           ///< payload: the value's fp32 bits
  unsigned long long g = 0;              ///< payload: the value's fp32 bits
  unsigned long long cu_seqlens = 0;     ///< payload: 0 first offset not 0, 1 decreasing, 2 last offset not T
  unsigned long long state_indices = 0;  ///< payload: the index's 32 bits
  std::int64_t beta_extents[3] = {};     ///< to turn a flat index back into [b, r, h]
  std::int64_t g_extents[3] = {};
  std::int64_t tokens = 0;       ///< T, for the cu_seqlens message
  std::int64_t cu_first = 0;     ///< cu_seqlens[0] when it is not 0
  std::int64_t cu_last = 0;      ///< cu_seqlens[N] when it is not T
  std::int64_t state_slots = 0;  ///< P, for the state_indices message
};
static_assert(sizeof(ValueCheckRecord) <= cuda_status_bytes, "the status record must fit in cuda_status_bytes");
static_assert(std::is_trivially_copyable_v<ValueCheckRecord>);

/// Clears the value-check status: once after allocating a workspace (cudaMalloc does not zero), asynchronously.
inline void reset_status(const CudaBackend& backend) {
  if (backend.workspace == nullptr || backend.workspace_bytes < cuda_status_bytes) return;
  DELTAPRODUCT_CUDA_CHECK(cudaMemsetAsync(backend.workspace, 0, sizeof(ValueCheckRecord), backend.stream));
}

namespace detail {

/// Name of an element type in error messages.
template <class T>
constexpr const char* element_name() {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return "bf16";
  else if constexpr (std::is_same_v<T, __half>)
    return "fp16";
  else if constexpr (std::is_same_v<T, float>)
    return "fp32";
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return "int64";
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return "int32";
  else
    return "element";
}

inline std::string address_text(const void* p) {
  char text[2 + 2 * sizeof(std::uintptr_t) + 1];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(p)));
  return text;
}

/// A device pointer must be aligned to its element type (the GPU faults on misaligned accesses).
template <class T, std::size_t R>
void check_aligned(const View<T, R>& view, const char* name) {
  using E = std::remove_cv_t<T>;
  if (view.data() == nullptr) return;
  const auto misalignment = reinterpret_cast<std::uintptr_t>(view.data()) % alignof(E);
  if (misalignment != 0)
    argument_error(name,
                   "data aligned to " + std::to_string(alignof(E)) + " bytes (" + element_name<E>() + " elements)",
                   "address " + address_text(view.data()) + ", " + std::to_string(misalignment) + " byte(s) past");
}

/// The model types the CUDA backend runs: fp32 arithmetic, fp32 state.
template <class Model>
constexpr void check_cuda_model() {
  static_assert(std::is_same_v<typename Model::scalar_type, float>,
                "deltaproduct: the CUDA backend computes in fp32 with an fp32 state: use a model with Scalar = float, "
                "e.g. DeltaProduct<float, n_h>; simulated formats and double run on the CPU backend");
}

/// For a call with cu_seqlens (in device memory): checks its shape and B = 1, sets the problem's sequence count
/// N = len(cu_seqlens) - 1 and its offsets, checks the initial state's shape, and returns the state shape
/// [N, H, K, V] for the caller's other states. Forward and backward share it.
template <class T>
std::array<index_t, 4> take_packed_sequences(CudaProblem& cp, const DeltaInputs<T, float>& in) {
  check_present(in.cu_seqlens, "cu_seqlens", "[N + 1]");
  if (cp.sizes.batch != 1)
    argument_error("q", "batch size B = 1 when cu_seqlens is given (sequences packed along T)",
                   "B = " + std::to_string(cp.sizes.batch));
  if (in.cu_seqlens.extent(0) < 2)
    argument_error("cu_seqlens", "at least 2 offsets (one sequence)", std::to_string(in.cu_seqlens.extent(0)));
  cp.sizes.sequences = in.cu_seqlens.extent(0) - 1;
  cp.cu_seqlens = in.cu_seqlens;
  const std::array<index_t, 4> state_shape{cp.sizes.sequences, cp.sizes.heads, cp.sizes.key_dim, cp.sizes.value_dim};
  check_optional_shape(in.initial_state, "initial_state", "[N, H, K, V]", state_shape);
  return state_shape;
}

/// Every input pointer aligned to its element type.
template <class T>
void check_inputs_aligned(const DeltaInputs<T, float>& in) {
  check_aligned(in.q, "q");
  check_aligned(in.k, "k");
  check_aligned(in.v, "v");
  check_aligned(in.beta, "beta");
  check_aligned(in.g, "g");
  check_aligned(in.initial_state, "initial_state");
  check_aligned(in.cu_seqlens, "cu_seqlens");
}

/// Shape checks of a forward pass whose cu_seqlens (if any) lives in device memory: the CPU backend's
/// check_forward for everything but the offsets' values, then cu_seqlens' own shape and the state shapes [N, H, K, V].
template <DeltaProductModel Model, class T>
CudaProblem check_forward_cuda(const Model& model, const DeltaInputs<T, float>& in,
                               const ForwardOutputs<T, float>& out) {
  const bool packed = !in.cu_seqlens.absent();
  DeltaInputs<T, float> host_checked = in;
  ForwardOutputs<T, float> host_checked_out = out;
  host_checked.cu_seqlens = {};
  if (packed) {
    // State shapes depend on N = len(cu_seqlens) - 1: checked below, once N is known.
    host_checked.initial_state = {};
    host_checked_out.final_state = {};
  }
  CudaProblem cp{check_forward(model, host_checked, host_checked_out), {}};
  if (packed) {
    const auto state_shape = take_packed_sequences(cp, in);
    check_optional_shape(out.final_state, "final_state", "[N, H, K, V]", state_shape);
  }
  check_inputs_aligned(in);
  check_aligned(out.o, "o");
  check_aligned(out.final_state, "final_state");
  return cp;
}

/// The workspace's alignment, which its status record and every algorithm's scratch (16-byte stores, bulk copies)
/// rely on.
inline void check_workspace_aligned(const CudaBackend& backend) {
  if (reinterpret_cast<std::uintptr_t>(backend.workspace) % 256 != 0)
    argument_error("backend.workspace", "256-byte aligned device memory (as cudaMalloc returns)",
                   "address " + address_text(backend.workspace));
}

/// The status record in the workspace when the call validates values; nullptr when it does not.
inline ValueCheckRecord* status_record(const CudaBackend& backend, bool validate_ranges) {
  if (!validate_ranges) return nullptr;
  if (backend.workspace == nullptr || backend.workspace_bytes < cuda_status_bytes)
    argument_error("backend.workspace",
                   "at least " + std::to_string(cuda_status_bytes) +
                       " bytes of zeroed device memory for the value checks (options.validate_ranges = true; "
                       "allocate it and call reset_status() once, or set validate_ranges = false)",
                   backend.workspace == nullptr ? std::string("no workspace")
                                                : std::to_string(backend.workspace_bytes) + " bytes");
  check_workspace_aligned(backend);
  return static_cast<ValueCheckRecord*>(backend.workspace);
}

/// Scratch memory of an algorithm: the workspace after the status record (which is always reserved, so the layout
/// does not depend on options.validate_ranges).
struct Scratch {
  void* data = nullptr;
  std::size_t bytes = 0;
};

inline Scratch algorithm_scratch(const CudaBackend& backend) {
  if (backend.workspace == nullptr || backend.workspace_bytes <= cuda_status_bytes) return {};
  return {static_cast<unsigned char*>(backend.workspace) + cuda_status_bytes,
          backend.workspace_bytes - cuda_status_bytes};
}

/// A non-zero number per call, so that the device keeps the violation of the first failing call only.
inline std::uint32_t next_call_serial() {
  static std::atomic<std::uint32_t> counter{0};
  std::uint32_t serial;
  do {
    serial = counter.fetch_add(1, std::memory_order_relaxed) + 1;
  } while (serial == 0);
  return serial;
}

inline std::string index_text(std::int64_t flat, const std::int64_t (&extents)[3]) {
  const std::int64_t e1 = extents[1] > 0 ? extents[1] : 1, e2 = extents[2] > 0 ? extents[2] : 1;
  return "[" + std::to_string(flat / (e1 * e2)) + ", " + std::to_string((flat / e2) % e1) + ", " +
         std::to_string(flat % e2) + "]";
}

inline double payload_float(unsigned long long key) {
  const auto bits = static_cast<std::uint32_t>(key & 0xffffffffull);
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return static_cast<double>(x);
}

/// Throws the ArgumentError for the violation in `r` (r.owner != 0), worded as the CPU backend words it.
[[noreturn]] inline void throw_recorded_violation(const ValueCheckRecord& r) {
  if (r.cu_seqlens != 0) {
    const unsigned long long key = ~r.cu_seqlens;
    const auto i = static_cast<std::int64_t>(key >> 32);
    const auto rule = key & 0xffffffffull;
    if (rule == 0) argument_error("cu_seqlens", "cu_seqlens[0] = 0", std::to_string(r.cu_first));
    if (rule == 1)
      argument_error("cu_seqlens", "non-decreasing offsets",
                     "cu_seqlens[" + std::to_string(i) + "] < cu_seqlens[" + std::to_string(i - 1) + "]");
    argument_error("cu_seqlens", "last offset = T = " + std::to_string(r.tokens) + " (the length of q)",
                   std::to_string(r.cu_last));
  }
  if (r.state_indices != 0) {
    const unsigned long long key = ~r.state_indices;
    const auto index = static_cast<std::int32_t>(static_cast<std::uint32_t>(key & 0xffffffffull));
    argument_error("state_indices",
                   "slots in [0, P) = [0, " + std::to_string(r.state_slots) + "), or negative for padding",
                   std::to_string(index) + " at [" + std::to_string(key >> 32) + "]");
  }
  if (r.beta != 0) {
    const unsigned long long key = ~r.beta;
    const char* range = r.signed_range ? "[0, 2] (EigenvalueRange::signed_unit)" : "[0, 1] (EigenvalueRange::unit)";
    argument_error(
        "beta", std::string("values in ") + range,
        to_text(payload_float(key)) + " at " + index_text(static_cast<std::int64_t>(key >> 32), r.beta_extents));
  }
  const unsigned long long key = ~r.g;
  argument_error("g", "finite log-decays <= 0 (the gate exp(g) must lie in (0, 1])",
                 to_text(payload_float(key)) + " at " + index_text(static_cast<std::int64_t>(key >> 32), r.g_extents));
}

}  // namespace detail

/// Reports the value violation the device recorded since the last check (options.validate_ranges): throws the
/// ArgumentError the CPU backend would have thrown, and clears the record. Synchronises `backend.stream`: call it
/// where a synchronisation is acceptable (after a batch of steps, before using outputs). Does nothing without a
/// workspace.
inline void check_status(const CudaBackend& backend) {
  if (backend.workspace == nullptr || backend.workspace_bytes < cuda_status_bytes) return;
  ValueCheckRecord record;
  DELTAPRODUCT_CUDA_CHECK(
      cudaMemcpyAsync(&record, backend.workspace, sizeof record, cudaMemcpyDeviceToHost, backend.stream));
  DELTAPRODUCT_CUDA_CHECK(cudaStreamSynchronize(backend.stream));
  if (record.owner == 0) return;
  reset_status(backend);
  detail::throw_recorded_violation(record);
}

}  // namespace deltaproduct
