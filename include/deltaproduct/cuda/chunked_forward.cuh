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
// With backend.warp_specialized_forward on a Hopper GPU (sm_90a build), the same algebra runs in the warp-specialised
// kernel (chunked_specialized_kernel.cuh): a producer warpgroup one chunk ahead of the state chain.
// chunked_forward_applies() says which path a call takes. CudaAlgorithm::automatic takes the tensor-core kernel when
// it applies and sequences average at least 16 tokens; CudaAlgorithm::chunked whenever it applies.
//
// Long sequences that leave multiprocessors idle (B * H small) are split into runs of chunks on separate CTAs and
// joined by a fix-up (sequence_split.cuh); the split scratch lives in the caller's workspace, after the value-check
// record: forward_workspace_bytes() says how much the call would use, and with less the call splits less. Nothing
// is allocated and nothing synchronises.
#pragma once

#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "deltaproduct/core/arguments.hpp"
#include "deltaproduct/core/config.hpp"
#include "deltaproduct/core/contract.hpp"
#include "deltaproduct/core/view.hpp"
#include "deltaproduct/cuda/backend.hpp"
#include "deltaproduct/cuda/chunked_kernel.cuh"
#include "deltaproduct/cuda/chunked_specialized_kernel.cuh"
#include "deltaproduct/cuda/decode.cuh"
#include "deltaproduct/cuda/device_views.cuh"
#include "deltaproduct/cuda/error.hpp"
#include "deltaproduct/cuda/precompiled.cuh"
#include "deltaproduct/cuda/sequence_split.cuh"
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

/// Largest n_h the chunked backward is instantiated for.
inline constexpr int chunked_backward_max_householder_steps = 4;

template <class Model, class T>
inline constexpr bool chunked_backward_exists =
    !std::is_same_v<T, float> && Model::householder_steps <= chunked_backward_max_householder_steps;

/// Offsets (bytes, 256-aligned) of the chunked backward's per-chunk tiles in the workspace scratch, and its size:
/// for every chunk slot and head, S^T and D^T (V x K) and u^T and dY^T (V x L), in the element type, and the chunk's
/// preamble (PreambleLayout) when `preambles` (CudaBackend::keep_preambles).
struct ChunkedBackwardLayout {
  index_t chunks_per_row = 0, tiles = 0;
  std::size_t states = 0, solved = 0, adjoints = 0, value_gradients = 0, preambles = 0, bytes = 0;

  ChunkedBackwardLayout(const Problem& p, bool packed, std::size_t element_bytes, bool with_preambles) {
    const index_t chunk_tokens = cuda_chunked::micro_steps_per_chunk / p.householder_steps;
    chunks_per_row = ceil_div(p.tokens, chunk_tokens);
    tiles = (p.batch * chunks_per_row + (packed ? p.sequences : 0)) * p.heads;
    const auto tile_bytes = [&](index_t columns) {
      return (static_cast<std::size_t>(tiles * p.value_dim * columns) * element_bytes + 255) / 256 * 256;
    };
    states = 0;
    adjoints = states + tile_bytes(p.key_dim);
    solved = adjoints + tile_bytes(p.key_dim);
    value_gradients = solved + tile_bytes(cuda_chunked::micro_steps_per_chunk);
    preambles = value_gradients + tile_bytes(cuda_chunked::micro_steps_per_chunk);
    bytes = preambles;
    if (with_preambles)
      bytes += (static_cast<std::size_t>(tiles) * cuda_chunked::preamble_bytes(p.householder_steps) + 255) / 256 * 256;
  }
};

/// Whether the chunked backward keeps chunk preambles on this call (CudaBackend::keep_preambles): asked for, and the
/// reverse scan's shared memory holds two of them beside the forward's map on this GPU.
template <class T, int NH>
bool keeps_preambles(const CudaBackend& backend, index_t key_dim) {
  if (!backend.keep_preambles) return false;
  const std::size_t needed = key_dim == 64 ? cuda_chunked::TileLayout<T, 64, 64, NH>::bytes
                                           : cuda_chunked::TileLayout<T, 128, 128, NH>::bytes;
  int device = 0, shared_optin = 0;
  DELTAPRODUCT_CUDA_CHECK(cudaGetDevice(&device));
  DELTAPRODUCT_CUDA_CHECK(cudaDeviceGetAttribute(&shared_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return static_cast<std::size_t>(shared_optin) >= needed + 2 * cuda_chunked::PreambleLayout<NH>::bytes;
}

/// Whether a forward() on the chunked path keeps the backward's states (backend.keep_forward_states, for a model the
/// chunked backward exists for).
template <class Model, class T>
bool keeps_forward_states(const CudaBackend& backend) {
  return backend.keep_forward_states && chunked_backward_exists<Model, T>;
}

/// Largest sequence split count the automatic plan considers (the fix-up is sequential in it).
inline constexpr int chunked_max_sequence_splits = 32;

/// Whether `kernel`, an sm_90a-only kernel taking `shared_bytes` of dynamic shared memory, can run here: the GPU is a
/// Hopper (compute capability 9.x) with that much shared memory a block, and this build holds the kernel's sm_90 code.
template <class Kernel>
bool hopper_runs(Kernel* kernel, std::size_t shared_bytes) {
  int device = 0, major = 0, shared_optin = 0;
  DELTAPRODUCT_CUDA_CHECK(cudaGetDevice(&device));
  DELTAPRODUCT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  DELTAPRODUCT_CUDA_CHECK(cudaDeviceGetAttribute(&shared_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (major != 9 || static_cast<std::size_t>(shared_optin) < shared_bytes) return false;
  cudaFuncAttributes attributes{};
  DELTAPRODUCT_CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel));
  return attributes.binaryVersion == 90;
}

/// Whether the warp-specialised kernel (chunked_specialized_kernel.cuh) may run this call:
/// backend.warp_specialized_forward asks for it, the GPU is a Hopper (compute capability 9.x) with its shared memory,
/// and this build holds the kernel's sm_90 code (from CMAKE_CUDA_ARCHITECTURES=90a). It then runs unless the driver
/// refuses the TMA descriptors of q, k or v (the one-role kernel runs instead).
template <class T, int KD, int NH, bool Gated>
bool takes_specialized_kernel(const CudaBackend& backend) {
  return backend.warp_specialized_forward &&
         hopper_runs(cuda_chunked::specialized_chunked_forward_kernel<T, KD, KD, NH, Gated>,
                     cuda_chunked::SpecializedLayout<T, KD, KD, NH>::bytes);
}

/// The driver's cuTensorMapEncodeTiled, found through the runtime (no link to libcuda); null if the driver lacks it.
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* function = nullptr;
    cudaDriverEntryPointQueryResult found{};
    DELTAPRODUCT_CUDA_CHECK(
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &function, 12000, cudaEnableDefault, &found));
    return found == cudaDriverEntryPointSuccess ? reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(function)
                                                : nullptr;
  }();
  return encode;
}

/// The TMA descriptor of a [B, rows, H, D] view of 16-bit elements (rows contiguous, 16-byte aligned) whose boxes
/// are 64 elements of `box_rows` consecutive rows of one head, 128-byte swizzled; false if the driver refuses it.
template <class Element>
bool encode_row_pieces(CUtensorMap& map, const DeviceView<Element, 4>& view, int box_rows) {
  using T = std::remove_const_t<Element>;
  const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
  if (encode == nullptr) return false;
  // Dimensions innermost first: elements, heads, rows, batch. A stride of an extent-1 dimension is never used;
  // TMA still wants it a non-zero multiple of 16 bytes.
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(view.extents[3]), static_cast<cuuint64_t>(view.extents[2]),
                              static_cast<cuuint64_t>(view.extents[1]), static_cast<cuuint64_t>(view.extents[0])};
  const auto stride_bytes = [&](int d) {
    return view.extents[d] > 1 ? static_cast<cuuint64_t>(view.strides[d]) * sizeof(T) : cuuint64_t{16};
  };
  const cuuint64_t strides[3] = {stride_bytes(2), stride_bytes(1), stride_bytes(0)};
  const cuuint32_t box[4] = {64, 1, static_cast<cuuint32_t>(box_rows), 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  const CUtensorMapDataType type =
      std::is_same_v<T, __half> ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  return encode(&map, type, 4, const_cast<T*>(view.data), dims, strides, box, element_strides,
                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/// The fix-up of split runs (sequence_split.cuh) for `pairs` (sequence, head) pairs.
template <int KD>
void launch_split_fixup(const CudaBackend& backend, const cuda_chunked::SplitFixupParams& fixup, index_t pairs) {
  using namespace cuda_chunked;
  const auto fixup_kernel = split_fixup_kernel<KD, KD>;
  constexpr std::size_t fixup_bytes = fixup_shared_bytes<KD>();
  DELTAPRODUCT_CUDA_CHECK(
      cudaFuncSetAttribute(fixup_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(fixup_bytes)));
  fixup_kernel<<<dim3(static_cast<unsigned>(pairs), KD / fixup_columns), KD, fixup_bytes, backend.stream>>>(fixup);
  DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
}

template <class T, int KD, int NH, bool Gated>
void launch_chunked(const CudaBackend& backend, cuda_chunked::ChunkedParams<T> params, index_t sequences,
                    index_t heads) {
  using namespace cuda_chunked;
  using Specialized = SpecializedLayout<T, KD, KD, NH>;
  SpecializedMaps maps{};
  const bool specialized = takes_specialized_kernel<T, KD, NH, Gated>(backend) && params.tokens > 0 &&
                           encode_row_pieces(maps.q, params.q, Specialized::QR) &&
                           encode_row_pieces(maps.k, params.k, Specialized::L) &&
                           encode_row_pieces(maps.v, params.v, Specialized::L);
  if constexpr (Specialized::output_by_tma)  // refused: the consumers write the output themselves
    maps.output = specialized && params.o.present() && encode_row_pieces(maps.o, params.o, Specialized::QR);
  const int threads = specialized ? Specialized::threads : TileLayout<T, KD, KD, NH>::threads;
  const std::size_t bytes = specialized ? Specialized::bytes : TileLayout<T, KD, KD, NH>::bytes;
  if (specialized)
    DELTAPRODUCT_CUDA_CHECK(cudaFuncSetAttribute(specialized_chunked_forward_kernel<T, KD, KD, NH, Gated>,
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  else
    DELTAPRODUCT_CUDA_CHECK(cudaFuncSetAttribute(chunked_forward_kernel<T, KD, KD, NH, Gated>,
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  const auto launch = [&](dim3 grid) {
    if (specialized)
      specialized_chunked_forward_kernel<T, KD, KD, NH, Gated><<<grid, threads, bytes, backend.stream>>>(params, maps);
    else
      chunked_forward_kernel<T, KD, KD, NH, Gated><<<grid, threads, bytes, backend.stream>>>(params);
    DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
  };
  const unsigned split_ctas = static_cast<unsigned>(sequences * params.splits);
  if (params.splits == 1) {
    params.pass = SplitPass::whole;
    launch(dim3(split_ctas, static_cast<unsigned>(heads)));
    return;
  }
  // sequence_split.cuh: summaries of the runs, the fix-up of their start states, then every run from its start.
  params.pass = SplitPass::summarize;
  launch(dim3(split_ctas, static_cast<unsigned>(heads), 2));

  launch_split_fixup<KD>(backend, {params.initial_state, params.summaries, const_cast<float*>(params.starts),
                                   params.splits},
                         sequences * heads);
  params.pass = SplitPass::outputs;
  launch(dim3(split_ctas, static_cast<unsigned>(heads)));
}

#if defined(DELTAPRODUCT_CUDA_PRECOMPILED)
// deltaproduct::cuda_kernels holds these (precompiled.cuh): their kernels are not compiled here.
DELTAPRODUCT_CUDA_FOR_EACH_PRECOMPILED_CHUNKED(DELTAPRODUCT_CUDA_EXTERN_FORWARD, __nv_bfloat16)
DELTAPRODUCT_CUDA_FOR_EACH_PRECOMPILED_CHUNKED(DELTAPRODUCT_CUDA_EXTERN_FORWARD, __half)
#endif

/// The split count a validated call that takes the tensor-core kernel uses: backend.sequence_splits when set (the
/// workspace must then hold its scratch), else the modelled best that fits the workspace's scratch. A huge
/// workspace (`scratch_bytes` = max) gives the count forward_workspace_bytes() sizes for. `scratch_bytes` is what
/// is left for the split scratch after `reserved_bytes` of other scratch (the kept states of a training step).
inline int chunked_sequence_splits(const CudaBackend& backend, const Problem& p, std::size_t scratch_bytes,
                                   std::size_t reserved_bytes = 0) {
  const auto scratch = [&](int splits) {
    return cuda_chunked::split_scratch_bytes(p.sequences, p.heads, p.key_dim, p.value_dim, splits);
  };
  if (backend.sequence_splits < 0)
    argument_error("backend.sequence_splits", "0 (automatic) or a split count >= 1",
                   std::to_string(backend.sequence_splits));
  if (backend.sequence_splits >= 1) {
    const int splits = backend.sequence_splits;
    if (scratch(splits) > scratch_bytes)
      argument_error("backend.workspace_bytes",
                     "at least " + std::to_string(cuda_status_bytes + reserved_bytes + scratch(splits)) +
                         " bytes for backend.sequence_splits = " + std::to_string(splits) +
                         " (forward_workspace_bytes() and backward_workspace_bytes() give the size)",
                     std::to_string(backend.workspace_bytes));
    return splits;
  }
  if (p.sequences == 0 || p.heads == 0) return 1;
  // Chunks per sequence: exact for a dense batch, the average for packed sequences (their lengths stay on the device).
  const index_t chunk_tokens = cuda_chunked::micro_steps_per_chunk / p.householder_steps;
  const index_t tokens_per_sequence = p.batch * p.tokens / p.sequences;
  const index_t chunks = (tokens_per_sequence + chunk_tokens - 1) / chunk_tokens;
  int splits = cuda_chunked::plan_sequence_splits(p.sequences * p.heads, chunks, multiprocessor_count(),
                                                  chunked_max_sequence_splits);
  while (splits > 1 && scratch(splits) > scratch_bytes) --splits;
  return splits;
}

/// The split count of a training step's chunked passes: a forward() that keeps its states and the chunked
/// backward(). As forward()'s (chunked_sequence_splits), with the split scratch after the kept tiles
/// (`reserved_bytes`): the same plan serves, since a split backward costs its unsplit form about as a split forward
/// costs its own (a summary pass over all runs, a fix-up, every run again). Measured on an H200 at B = 1, T = 16384,
/// H = 8, K = V = 128: a DeltaNet training step 4.13 ms unsplit, 1.29 ms in 8 runs, 1.19 ms in 16 (the plan's count).
inline int training_sequence_splits(const CudaBackend& backend, const Problem& p, std::size_t scratch_bytes,
                                    std::size_t reserved_bytes) {
  return chunked_sequence_splits(backend, p, scratch_bytes, reserved_bytes);
}

/// Points params' split scratch (split_scratch_bytes() at `scratch`, 16-byte aligned) at its two parts: the runs'
/// summaries, [N, H, splits, 2, K, V], then their starts, [N, H, splits, K, V].
template <class T>
void place_split_scratch(cuda_chunked::ChunkedParams<T>& params, void* scratch, const Problem& p) {
  auto* const summaries = static_cast<float*>(scratch);
  params.summaries = summaries;
  params.starts = summaries + 2 * static_cast<std::size_t>(p.sequences * p.heads * p.key_dim * p.value_dim) *
                                  static_cast<std::size_t>(params.splits);
}

/// The tensor-core kernel's parameters for a validated call: inputs and options (outputs and scratch left unset).
template <DeltaProductModel Model, class T>
cuda_chunked::ChunkedParams<T> chunked_params(const Model& model, const CudaProblem& cp,
                                              const DeltaInputs<T, float>& in, const ValueCheckRecord* status) {
  cuda_chunked::ChunkedParams<T> params;
  params.q = device_view(in.q);
  params.k = device_view(in.k);
  params.v = device_view(in.v);
  params.beta = device_view(in.beta);
  if constexpr (Model::gating == Gating::scalar_decay) params.g = device_view(in.g);
  params.initial_state = device_view(in.initial_state);
  params.cu_seqlens = device_view(cp.cu_seqlens);
  params.tokens = cp.sizes.tokens;
  params.scale = static_cast<float>(cp.sizes.scale);
  params.key_norm = norm_code(model.options.key_normalization);
  params.query_norm = norm_code(model.options.query_normalization);
  params.eps = static_cast<float>(model.options.normalization_eps);
  params.status = status;
  return params;
}

/// The tensor-core kernel on a validated call that chunked_kernel_takes().
template <DeltaProductModel Model, class T>
void run_chunked(const CudaBackend& backend, const Model& model, const CudaProblem& cp, const DeltaInputs<T, float>& in,
                 const ForwardOutputs<T, float>& out) {
  const Problem& p = cp.sizes;
  ValueCheckRecord* status = status_record(backend, model.options.validate_ranges);
  launch_value_checks(backend, status, model, in, cp);
  if (p.sequences == 0 || p.heads == 0) return;

  cuda_chunked::ChunkedParams<T> params = chunked_params(model, cp, in, status);
  params.final_state = device_view(out.final_state);
  params.o = device_view(out.o);

  const Scratch scratch = algorithm_scratch(backend);
  if (scratch.bytes > 0) check_workspace_aligned(backend);  // kept tiles and split scratch: 16-byte stores
  std::size_t split_offset = 0;  // the split scratch's place in the scratch (after the kept tiles)
  if (keeps_forward_states<Model, T>(backend)) {
    // The backward's state pass, done here: each chunk's start state and solved values, where backward() reads them.
    const ChunkedBackwardLayout layout(p, !in.cu_seqlens.absent(), sizeof(T), backend.keep_preambles);
    if (scratch.bytes < layout.bytes)
      argument_error("backend.workspace_bytes",
                     "at least " + std::to_string(cuda_status_bytes + layout.bytes) +
                         " bytes to keep the forward states (forward_workspace_bytes() gives the size)",
                     std::to_string(backend.workspace_bytes) + " bytes");
    auto* base = static_cast<unsigned char*>(scratch.data);
    params.chunk_states = reinterpret_cast<T*>(base + layout.states);
    params.chunk_solved_values = reinterpret_cast<T*>(base + layout.solved);
    if (keeps_preambles<T, Model::householder_steps>(backend, p.key_dim))
      params.chunk_preambles = base + layout.preambles;
    params.chunks_per_row = layout.chunks_per_row;
    split_offset = layout.bytes;
    params.splits = training_sequence_splits(backend, p, scratch.bytes - layout.bytes, layout.bytes);
  } else {
    params.splits = chunked_sequence_splits(backend, p, scratch.bytes);
  }
  if (params.splits > 1) place_split_scratch(params, static_cast<unsigned char*>(scratch.data) + split_offset, p);

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

/// Device workspace bytes forward() uses on these arguments: the value-check record, and the sequence-split scratch
/// when the tensor-core kernel splits sequences (backend.sequence_splits, or the automatic plan given unlimited
/// scratch). With a smaller workspace the automatic plan splits less, or not at all: it never fails for want of
/// scratch; an explicit backend.sequence_splits does.
template <DeltaProductModel Model, CudaElement T>
std::size_t forward_workspace_bytes(const CudaBackend& backend, const Model& model, const DeltaInputs<T, float>& in,
                                    const ForwardOutputs<T, float>& out) {
  detail::check_cuda_call<Model, T>();
  const CudaProblem cp = detail::check_forward_cuda(model, in, out);
  if (!detail::takes_chunked_path<Model>(backend, cp, in, out)) return cuda_status_bytes;
  const Problem& p = cp.sizes;
  if (detail::keeps_forward_states<Model, T>(backend)) {
    const std::size_t kept =
        detail::ChunkedBackwardLayout(p, !in.cu_seqlens.absent(), sizeof(T), backend.keep_preambles).bytes;
    const int splits = detail::training_sequence_splits(backend, p, std::numeric_limits<std::size_t>::max(), kept);
    return cuda_status_bytes + kept +
           detail::cuda_chunked::split_scratch_bytes(p.sequences, p.heads, p.key_dim, p.value_dim, splits);
  }
  const int splits = detail::chunked_sequence_splits(backend, p, std::numeric_limits<std::size_t>::max());
  return cuda_status_bytes +
         detail::cuda_chunked::split_scratch_bytes(p.sequences, p.heads, p.key_dim, p.value_dim, splits);
}

/// How many runs of chunks forward() splits each sequence into on these arguments and this workspace: 1 when it does
/// not split, or when the call takes the recurrent kernel.
template <DeltaProductModel Model, CudaElement T>
int forward_sequence_splits(const CudaBackend& backend, const Model& model, const DeltaInputs<T, float>& in,
                            const ForwardOutputs<T, float>& out) {
  detail::check_cuda_call<Model, T>();
  const CudaProblem cp = detail::check_forward_cuda(model, in, out);
  if (!detail::takes_chunked_path<Model>(backend, cp, in, out)) return 1;
  const std::size_t scratch = detail::algorithm_scratch(backend).bytes;
  if (detail::keeps_forward_states<Model, T>(backend)) {
    const std::size_t kept =
        detail::ChunkedBackwardLayout(cp.sizes, !in.cu_seqlens.absent(), sizeof(T), backend.keep_preambles).bytes;
    return detail::training_sequence_splits(backend, cp.sizes, scratch > kept ? scratch - kept : 0, kept);
  }
  return detail::chunked_sequence_splits(backend, cp.sizes, scratch);
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
