// backward() of the CUDA backend: gradients of a scalar loss with respect to every input of forward(), given dL/do
// and dL/d(final state), on device memory, asynchronous on backend.stream. The same call and layouts as the CPU
// backend's backward() (cpu/backward.hpp), with the CUDA conventions of backend.hpp (cu_seqlens in device memory,
// value checks recorded on the device and reported by check_status()). nvcc only.
//
//   const std::size_t bytes = deltaproduct::backward_workspace_bytes(model, inputs, output_gradients);
//   deltaproduct::backward(deltaproduct::CudaBackend{stream, workspace, bytes}, model, inputs, output_gradients,
//                          gradients);
//
// Two forms, chosen as forward() chooses (backend.algorithm; chunked_backward_applies() says which a call takes):
//   - the chunked tensor-core backward (chunked_backward_kernel.cuh) for bf16 / fp16 data, n_h <= 4, K = V in
//     {64, 128} and rows of q, k, v and dL/do contiguous and 16-byte aligned: a state pass (forward()'s kernels,
//     warp-specialised as there, keeping each chunk's start state and solved values), a reverse scan of dL/dS over
//     the chunks (warp-specialised likewise where backend.warp_specialized_backward applies), and the gradients of
//     every chunk in parallel. CudaAlgorithm::automatic takes it when it applies
//     and sequences average at least 16 tokens. With backend.backward_value_splits = 2 (V = 128) the reverse scan
//     runs on two CTAs per sequence (or run), 64 value rows of dL/dS^T each.
//   - the recurrent backward (recurrent_backward_kernel.cuh) for everything else: three sweeps over each sequence
//     with the state in registers, cut into column slabs over many warps. Its cost grows with T without parallelism
//     over tokens, so it serves short sequences, fine-tuning at decode time, fp32 data and checking.
//
// Memory. Chunked: per chunk slot (ceil(T / C) per batch row, plus one per packed sequence; C = 64 / n_h tokens)
// and head, the state S^T and dL/dS^T at the chunk's boundaries (K x V each) and the solved values u^T and dL/dY^T
// of its 64 micro-steps (V x 64 each), in the element type: 2 (2 K V + 128 V) bytes per chunk and head, 805 MB at
// B = 8, T = 4096, H = 16, K = V = 128. These per-chunk states are the only term proportional to T K V; storing them
// is what lets the gradients of all chunks run in parallel instead of a second sequential pass. With
// backend.sequence_splits = N >= 2 the state pass and the reverse scan cut each sequence into N runs of chunks on
// separate CTAs (ReverseScanKernel says how), with 12 K V bytes of fp32 scratch per run and (sequence, head) after
// the per-chunk tiles; the automatic plan (0) splits as forward()'s does. backend.keep_preambles adds each
// chunk's preamble (PreambleLayout: 22,272 bytes per chunk and head at n_h = 1), which the reverse scan then loads
// instead of rebuilding. Recurrent: no state
// is stored, neither per token nor per chunk; the workspace holds, after the value-check record, fp32 vectors per
// step and token: u and dv ([B, T*n_h, H, V] each), dL/dq and dL/dk before the normalisation's gradient
// ([B, T, H, K], [B, T*n_h, H, K]), dL/dbeta, and for gated models the terms of dL/dg: 4 (2 R V + T K + R K + R + T)
// bytes per batch row and head (R = T * n_h). backward_workspace_bytes() gives the larger of the two needs.
// Gradients are written, not accumulated; absent gradient views are not written. Gradient views must not overlap
// the inputs. The recurrent form agrees with the CPU backend to fp32 rounding; the chunked one to the rounding of
// its 16-bit tensor-core operands (chunked_backward_kernel.cuh). The chunked form is reproducible bit for bit (its
// sums run in a fixed order); the recurrent one is not (atomics).
#pragma once

#include <cuda_runtime.h>

#include <array>
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
#include "deltaproduct/cuda/chunked_backward_kernel.cuh"
#include "deltaproduct/cuda/chunked_forward.cuh"
#include "deltaproduct/cuda/decode.cuh"
#include "deltaproduct/cuda/device_views.cuh"
#include "deltaproduct/cuda/error.hpp"
#include "deltaproduct/cuda/precompiled.cuh"
#include "deltaproduct/cuda/recurrent_backward_kernel.cuh"
#include "deltaproduct/cuda/validate.hpp"
#include "deltaproduct/cuda/value_checks.cuh"

namespace deltaproduct {
namespace detail {

/// Shape checks of a backward pass whose cu_seqlens (if any) lives in device memory: the shared check_backward for
/// everything but the offsets' values, then the [N, H, K, V] state shapes once N is known, and every alignment.
template <DeltaProductModel Model, class T>
CudaProblem check_backward_cuda(const Model& model, const DeltaInputs<T, float>& in,
                                const OutputGradients<T, float>& output_gradients,
                                const DeltaGradients<T, float>& gradients) {
  const bool packed = !in.cu_seqlens.absent();
  DeltaInputs<T, float> host_in = in;
  OutputGradients<T, float> host_og = output_gradients;
  DeltaGradients<T, float> host_grads = gradients;
  host_in.cu_seqlens = {};
  if (packed) {  // N = len(cu_seqlens) - 1: the state shapes are checked below
    host_in.initial_state = {};
    host_og.final_state = {};
    host_grads.initial_state = {};
  }
  CudaProblem cp{check_backward(model, host_in, host_og, host_grads), {}};
  if (packed) {
    const auto state_shape = take_packed_sequences(cp, in);
    check_optional_shape(output_gradients.final_state, "output_gradients.final_state", "[N, H, K, V]", state_shape);
    check_gradient_shape(gradients.initial_state, "gradients.initial_state", "[N, H, K, V]", state_shape);
  }
  check_inputs_aligned(in);
  check_aligned(output_gradients.o, "output_gradients.o");
  check_aligned(output_gradients.final_state, "output_gradients.final_state");
  check_aligned(gradients.q, "gradients.q");
  check_aligned(gradients.k, "gradients.k");
  check_aligned(gradients.v, "gradients.v");
  check_aligned(gradients.beta, "gradients.beta");
  check_aligned(gradients.g, "gradients.g");
  check_aligned(gradients.initial_state, "gradients.initial_state");
  return cp;
}

/// Offsets (in floats, each 256-byte aligned) of the recurrent backward's scratch, and its size.
struct RecurrentBackwardLayout {
  std::size_t u = 0, dv = 0, zeroed = 0, dq = 0, dk = 0, dbeta = 0, token_terms = 0, phi = 0, floats = 0;

  RecurrentBackwardLayout(const Problem& p, bool gated) {
    const auto rows = static_cast<std::size_t>(p.batch * p.tokens * p.householder_steps * p.heads);
    const auto tokens = static_cast<std::size_t>(p.batch * p.tokens * p.heads);
    std::size_t at = 0;
    const auto take = [&](std::size_t n) {
      const std::size_t offset = at;
      at += (n + 63) / 64 * 64;
      return offset;
    };
    u = take(rows * static_cast<std::size_t>(p.value_dim));
    dv = take(rows * static_cast<std::size_t>(p.value_dim));
    zeroed = at;  // everything from here on receives atomic additions
    dq = take(tokens * static_cast<std::size_t>(p.key_dim));
    dk = take(rows * static_cast<std::size_t>(p.key_dim));
    dbeta = take(rows);
    if (gated) {
      token_terms = take(tokens);
      phi = take(static_cast<std::size_t>(p.sequences * p.heads));
    }
    floats = at;
  }

  std::size_t bytes() const { return floats * sizeof(float); }
};

template <DeltaProductModel Model, class T>
constexpr void check_cuda_backward_call() {
  check_cuda_model<Model>();
  static_assert(CudaElement<T>,
                "deltaproduct: CUDA token data (q, k, v, beta, g, o and their gradients) must be __nv_bfloat16, "
                "__half or float");
}

template <class Tile, class T>
void launch_backward_sweeps(const CudaBackend& backend, RecurrentBackwardParams<T> p, bool after_value_checks) {
  p.column_blocks = ceil_div(p.value_dim, Tile::columns);
  p.work_items = p.work_items * p.column_blocks;
  if (p.work_items == 0) return;
  const int warps_per_block = recurrent_warps_per_block(p.work_items);
  const dim3 grid(static_cast<unsigned>(ceil_div(p.work_items, warps_per_block)));
  const dim3 block(static_cast<unsigned>(warps_per_block * 32));
  launch_after_value_checks(after_value_checks, backward_forward_sweep_kernel<Tile, T>, grid, block, backend.stream,
                            p);
  backward_reverse_sweep_kernel<Tile, T><<<grid, block, 0, backend.stream>>>(p);
  DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
  backward_key_sweep_kernel<Tile, T><<<grid, block, 0, backend.stream>>>(p);
  DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
}

/// The tile for K, as the forward's recurrent kernel picks it (decode.cuh).
template <class T>
void launch_backward_tile(const CudaBackend& backend, const RecurrentBackwardParams<T>& p, bool float4_state,
                          bool after_value_checks) {
  with_recurrent_tile(p.key_dim, float4_state,
                      [&]<class Tile>() { launch_backward_sweeps<Tile>(backend, p, after_value_checks); });
}

inline unsigned grid_stride_blocks(index_t work, int threads) {
  constexpr index_t max_blocks = 4096;
  const index_t blocks = ceil_div(work > 0 ? work : 1, threads);
  return static_cast<unsigned>(blocks < max_blocks ? blocks : max_blocks);
}

template <class T>
void launch_key_gradient(const CudaBackend& backend, const float* hat_gradient, const View<const T, 4>& x,
                         const View<T, 4>& dx, NormCode mode, float eps, const ValueCheckRecord* status) {
  if (dx.absent() || dx.size() == 0) return;
  constexpr int threads = 256;
  const index_t rows = x.extent(0) * x.extent(1) * x.extent(2);
  normalized_rows_gradient_kernel<T><<<grid_stride_blocks(rows * 32, threads), threads, 0, backend.stream>>>(
      hat_gradient, device_view(x), device_view(dx), mode, eps, status);
  DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
}

template <class T, std::size_t Rank>
void launch_scratch_copy(const CudaBackend& backend, const float* scratch, const View<T, Rank>& out,
                         const ValueCheckRecord* status) {
  if (out.absent() || out.size() == 0) return;
  constexpr int threads = 256;
  scratch_to_view_kernel<T, static_cast<int>(Rank)>
      <<<grid_stride_blocks(out.size(), threads), threads, 0, backend.stream>>>(scratch, device_view(out), status);
  DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
}

/// The scratch after the value-check record, checked to hold `needed` bytes and to be 256-byte aligned.
inline Scratch backward_scratch(const CudaBackend& backend, std::size_t needed) {
  const Scratch scratch = algorithm_scratch(backend);
  if (backend.workspace == nullptr || scratch.bytes < needed)
    argument_error("backend.workspace_bytes",
                   "at least " + std::to_string(cuda_status_bytes + needed) +
                       " bytes for this backward (backward_workspace_bytes() gives the size)",
                   backend.workspace == nullptr ? std::string("no workspace")
                                                : std::to_string(backend.workspace_bytes) + " bytes");
  check_workspace_aligned(backend);
  return scratch;
}

/// Whether the chunked backward takes a validated call: the forward kernel's conditions (chunked_forward.cuh), with
/// dL/do in place of o, n_h <= 4, and the passes' shared memory.
template <DeltaProductModel Model, class T>
bool chunked_backward_takes(const Problem& p, const DeltaInputs<T, float>& in,
                            const OutputGradients<T, float>& output_gradients) {
  if constexpr (!chunked_backward_exists<Model, T>) {
    return false;
  } else {
    constexpr int NH = Model::householder_steps;
    if (p.key_dim != p.value_dim || (p.key_dim != 64 && p.key_dim != 128)) return false;
    if (p.heads > 65535) return false;
    if (!rows_copyable_16_bytes(in.q) || !rows_copyable_16_bytes(in.k) || !rows_copyable_16_bytes(in.v) ||
        !rows_copyable_16_bytes(output_gradients.o))
      return false;
    if (!device_takes_chunked_kernel<T, NH>(p.key_dim)) return false;
    int device = 0, shared_optin = 0;
    DELTAPRODUCT_CUDA_CHECK(cudaGetDevice(&device));
    DELTAPRODUCT_CUDA_CHECK(cudaDeviceGetAttribute(&shared_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    const std::size_t gradient_bytes = p.key_dim == 64 ? cuda_chunked::GradientLayout<T, 64, 64, NH>::bytes
                                                       : cuda_chunked::GradientLayout<T, 128, 128, NH>::bytes;
    return static_cast<std::size_t>(shared_optin) >= gradient_bytes;
  }
}

/// The path backward() takes on a validated call: true for the chunked backward.
template <DeltaProductModel Model, class T>
bool takes_chunked_backward(const CudaBackend& backend, const CudaProblem& cp, const DeltaInputs<T, float>& in,
                            const OutputGradients<T, float>& output_gradients) {
  if (backend.algorithm == CudaAlgorithm::recurrent) return false;
  if (!chunked_backward_takes<Model>(cp.sizes, in, output_gradients)) return false;
  if (backend.algorithm == CudaAlgorithm::chunked) return true;
  const index_t sequences = cp.sizes.sequences > 0 ? cp.sizes.sequences : 1;
  return cp.sizes.batch * cp.sizes.tokens / sequences >= chunked_min_average_tokens;
}

/// One pass of the reverse scan with VB value rows per CTA (ReverseScanKernel): `depth` CTAs deep (2 for the
/// summarize pass of split runs).
template <class T, int KD, int NH, bool Gated, int VB>
void launch_reverse_scan_pass(const CudaBackend& backend, const cuda_chunked::ChunkedBackwardParams<T>& params,
                              index_t sequences, index_t heads, unsigned depth) {
  using namespace cuda_chunked;
  using Scan = ReverseScanKernel<T, KD, KD, NH, Gated, VB>;
  const auto kernel = chunked_reverse_scan_kernel<T, KD, KD, NH, Gated, VB>;
  const std::size_t bytes = Scan::shared_bytes(params.forward.chunk_preambles != nullptr);
  DELTAPRODUCT_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  const dim3 grid(static_cast<unsigned>(sequences * params.forward.splits * Scan::value_blocks),
                  static_cast<unsigned>(heads), depth);
  kernel<<<grid, Scan::Layout::threads, bytes, backend.stream>>>(params);
  DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
}

/// Whether the warp-specialised reverse scan (SpecializedReverseScanKernel) may run this pass: asked for, without
/// kept preambles or value splits, on a Hopper GPU with its shared memory, from an sm_90a build.
template <class T, int KD, int NH, bool Gated>
bool takes_specialized_reverse_scan(const CudaBackend& backend, const cuda_chunked::ChunkedBackwardParams<T>& params) {
  return backend.warp_specialized_backward && params.forward.chunk_preambles == nullptr &&
         backend.backward_value_splits == 1 && params.forward.tokens > 0 &&
         hopper_runs(cuda_chunked::specialized_reverse_scan_kernel<T, KD, NH, Gated>,
                     cuda_chunked::SpecializedLayout<T, KD, KD, NH>::bytes);
}

/// The reverse scan's pass with backend.backward_value_splits CTAs per (sequence, run) (check_value_splits() has
/// checked it), warp-specialised where takes_specialized_reverse_scan() and the driver makes its descriptors.
template <class T, int KD, int NH, bool Gated>
void launch_reverse_scan(const CudaBackend& backend, const cuda_chunked::ChunkedBackwardParams<T>& params,
                         index_t sequences, index_t heads, unsigned depth = 1) {
  using namespace cuda_chunked;
  using Specialized = SpecializedLayout<T, KD, KD, NH>;
  SpecializedMaps maps{};  // q, k, and dL/do in v's place
  if (takes_specialized_reverse_scan<T, KD, NH, Gated>(backend, params) &&
      encode_row_pieces(maps.q, params.forward.q, Specialized::QR) &&
      encode_row_pieces(maps.k, params.forward.k, Specialized::L) &&
      encode_row_pieces(maps.v, params.d_o, Specialized::L)) {
    const auto kernel = specialized_reverse_scan_kernel<T, KD, NH, Gated>;
    DELTAPRODUCT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(Specialized::bytes)));
    const dim3 grid(static_cast<unsigned>(sequences * params.forward.splits), static_cast<unsigned>(heads), depth);
    kernel<<<grid, Specialized::threads, Specialized::bytes, backend.stream>>>(params, maps);
    DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
    return;
  }
  if constexpr (KD == 128) {
    if (backend.backward_value_splits == 2)
      return launch_reverse_scan_pass<T, KD, NH, Gated, 64>(backend, params, sequences, heads, depth);
  }
  launch_reverse_scan_pass<T, KD, NH, Gated, KD>(backend, params, sequences, heads, depth);
}

/// Checks backend.backward_value_splits: 1 or 2 on every call, and 2 only at V = 128 where the chunked backward runs
/// (`chunked`; the recurrent form has no reverse scan to split).
inline void check_value_splits(const CudaBackend& backend, index_t value_dim, bool chunked) {
  const int n = backend.backward_value_splits;
  if (n == 1 || (n == 2 && (value_dim == 128 || !chunked))) return;
  argument_error("backend.backward_value_splits",
                 "1, or 2 when V = 128 (a reverse-scan CTA carries 64 or 128 value rows)",
                 std::to_string(n) + " with V = " + std::to_string(value_dim));
}

/// An unswizzled TMA descriptor of 16-bit elements whose boxes land in shared memory as padded tiles: box[0]
/// elements a row where the tensor has dims[0] (the columns past it read as zero). Dimensions innermost first;
/// coordinates are 32-bit, so every extent must fit in one. False if the driver refuses it.
template <class T, std::size_t Rank>
bool encode_padded_tiles(CUtensorMap& map, const T* data, const std::array<cuuint64_t, Rank>& dims,
                         const std::array<cuuint64_t, Rank - 1>& strides, const std::array<cuuint32_t, Rank>& box,
                         CUtensorMapSwizzle swizzle = CU_TENSOR_MAP_SWIZZLE_NONE) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
  if (encode == nullptr) return false;
  for (const cuuint64_t extent : dims)
    if (extent > static_cast<cuuint64_t>(std::numeric_limits<int>::max())) return false;
  std::array<cuuint32_t, Rank> element_strides;
  element_strides.fill(1);
  const CUtensorMapDataType type =
      std::is_same_v<T, __half> ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  return encode(&map, type, static_cast<cuuint32_t>(Rank), const_cast<T*>(data), dims.data(), strides.data(),
                box.data(), element_strides.data(), CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/// A [B, rows, H, D] view (rows contiguous, 16-byte aligned) in boxes of `box_rows` rows of one head, `pitch`
/// elements a row.
template <class T>
bool encode_padded_rows(CUtensorMap& map, const DeviceView<const T, 4>& view, int pitch, int box_rows) {
  if (view.strides[3] != 1) return false;  // a box row is contiguous elements (the chunked path requires it anyway)
  const auto stride_bytes = [&](int d) {  // TMA wants even an unused stride a non-zero multiple of 16 bytes
    return view.extents[d] > 1 ? static_cast<cuuint64_t>(view.strides[d]) * sizeof(T) : cuuint64_t{16};
  };
  return encode_padded_tiles<T, 4>(
      map, view.data,
      {static_cast<cuuint64_t>(view.extents[3]), static_cast<cuuint64_t>(view.extents[2]),
       static_cast<cuuint64_t>(view.extents[1]), static_cast<cuuint64_t>(view.extents[0])},
      {stride_bytes(2), stride_bytes(1), stride_bytes(0)},
      {static_cast<cuuint32_t>(pitch), 1, static_cast<cuuint32_t>(box_rows), 1});
}

/// The chunk-gradient kernel's descriptors (GradientMaps) for `tiles` kept tiles of each kind; absent (present =
/// false, the kernel copies with cp.async) before sm_90 or where the driver refuses one. `swizzled_states`: S_0^T,
/// D^T and u^T in 128-byte-swizzled boxes of 64 columns, as the wgmma kernel reads them.
template <class T, int KD, int NH>
cuda_chunked::GradientMaps gradient_maps(const cuda_chunked::ChunkedBackwardParams<T>& params, index_t tiles,
                                         bool swizzled_states = false) {
  using Layout = cuda_chunked::GradientLayout<T, KD, KD, NH>;
  cuda_chunked::GradientMaps maps{};
  int device = 0, major = 0;
  DELTAPRODUCT_CUDA_CHECK(cudaGetDevice(&device));
  DELTAPRODUCT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  if (major < 9) return maps;
  const auto kept = [&](CUtensorMap& map, const T* data, int width, int pitch) {
    return encode_padded_tiles<T, 2>(map, data,
                                     {static_cast<cuuint64_t>(width), static_cast<cuuint64_t>(tiles * KD)},
                                     {static_cast<cuuint64_t>(width) * sizeof(T)},
                                     {static_cast<cuuint32_t>(pitch), static_cast<cuuint32_t>(KD)});
  };
  // Swizzled: boxes of 64 columns, 128 bytes a row.
  const auto kept_wgmma = [&](CUtensorMap& map, const T* data, int width, int pitch) {
    if (!swizzled_states) return kept(map, data, width, pitch);
    return encode_padded_tiles<T, 2>(map, data, {static_cast<cuuint64_t>(width), static_cast<cuuint64_t>(tiles * KD)},
                                     {static_cast<cuuint64_t>(width) * sizeof(T)}, {64, static_cast<cuuint32_t>(KD)},
                                     CU_TENSOR_MAP_SWIZZLE_128B);
  };
  constexpr int L = Layout::L;
  maps.present = encode_padded_rows(maps.d_out, params.d_o, Layout::VP, Layout::QR) &&
                 encode_padded_rows(maps.values, params.forward.v, Layout::VP, L) &&
                 kept_wgmma(maps.states, params.forward.chunk_states, KD, Layout::KP) &&
                 kept_wgmma(maps.adjoints, params.chunk_adjoints, KD, Layout::KP) &&
                 kept_wgmma(maps.solved, params.forward.chunk_solved_values, L, Layout::LP) &&
                 kept(maps.value_gradients, params.chunk_value_gradients, L, Layout::LP);
  return maps;
}

/// Whether the chunk-gradient pass runs its wgmma kernel (wgmma_chunk_gradient_kernel): backend.wgmma_chunk_gradients
/// asks for it, K = V = 128, the GPU is a Hopper with its shared memory and this build holds the kernel's sm_90a code.
/// It then runs unless the driver refuses its tensor maps (the mma.sync kernel runs instead).
template <class T, int KD, int NH, bool Gated>
bool takes_wgmma_gradient_kernel(const CudaBackend& backend) {
  if constexpr (KD != 128) {
    return false;
  } else {
    return backend.wgmma_chunk_gradients && hopper_runs(cuda_chunked::wgmma_chunk_gradient_kernel<T, KD, KD, NH, Gated>,
                                                        cuda_chunked::GradientLayout<T, KD, KD, NH>::wgmma_bytes);
  }
}

template <class T, int KD, int NH, bool Gated>
void launch_chunked_backward(const CudaBackend& backend, cuda_chunked::ChunkedBackwardParams<T> params,
                             index_t sequences, index_t heads, index_t tiles) {
  using namespace cuda_chunked;
  using Gradients = GradientLayout<T, KD, KD, NH>;
  const auto gradient_kernel = chunked_gradient_kernel<T, KD, KD, NH, Gated>;
  DELTAPRODUCT_CUDA_CHECK(cudaFuncSetAttribute(gradient_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(Gradients::bytes)));
  const int splits = params.forward.splits;
  // The state pass: forward()'s kernels (warp-specialised where backend.warp_specialized_forward applies) keep each
  // chunk's states without writing o, unless forward() kept them already.
  if (!backend.keep_forward_states) launch_chunked<T, KD, NH, Gated>(backend, params.forward, sequences, heads);
  if (splits == 1) {
    launch_reverse_scan<T, KD, NH, Gated>(backend, params, sequences, heads);
  } else {
    // Split runs (sequence_split.cuh; the reverse passes in ReverseScanKernel): the state pass ran the forward's three
    // passes, then come the reverse scan's summaries, their fix-up with time reversed (it starts from dL/d(final
    // state)) and every run again from the gradient at its end. Both use the same split scratch, one after the other.
    params.forward.pass = SplitPass::summarize;
    launch_reverse_scan<T, KD, NH, Gated>(backend, params, sequences, heads, 2);
    launch_split_fixup<KD>(
        backend, {params.d_final_state, params.forward.summaries, const_cast<float*>(params.forward.starts), splits},
        sequences * heads);
    params.forward.pass = SplitPass::outputs;
    launch_reverse_scan<T, KD, NH, Gated>(backend, params, sequences, heads);
  }
  // Packed sequences: one CTA per chunk slot, not chunks_per_row per sequence (most of which would have no chunk).
  const index_t chunk_ctas = params.forward.cu_seqlens.present() ? params.forward.chunks_per_row + sequences
                                                                 : sequences * params.forward.chunks_per_row;
  const dim3 per_chunk(static_cast<unsigned>(chunk_ctas), static_cast<unsigned>(heads));
  if constexpr (KD == 128) {
    // The wgmma kernel where it applies and the driver makes its maps.
    if (takes_wgmma_gradient_kernel<T, KD, NH, Gated>(backend)) {
      const auto wgmma_kernel = wgmma_chunk_gradient_kernel<T, KD, KD, NH, Gated>;
      const GradientMaps maps = gradient_maps<T, KD, NH>(params, tiles, true);
      if (maps.present) {
        DELTAPRODUCT_CUDA_CHECK(cudaFuncSetAttribute(wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                     static_cast<int>(Gradients::wgmma_bytes)));
        wgmma_kernel<<<per_chunk, Gradients::threads, Gradients::wgmma_bytes, backend.stream>>>(params, maps);
        DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
        return;
      }
    }
  }
  gradient_kernel<<<per_chunk, Gradients::threads, Gradients::bytes, backend.stream>>>(
      params, gradient_maps<T, KD, NH>(params, tiles));
  DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
}

#if defined(DELTAPRODUCT_CUDA_PRECOMPILED)
// deltaproduct::cuda_kernels holds these (precompiled.cuh): their kernels are not compiled here.
DELTAPRODUCT_CUDA_FOR_EACH_PRECOMPILED_CHUNKED(DELTAPRODUCT_CUDA_EXTERN_BACKWARD, __nv_bfloat16)
DELTAPRODUCT_CUDA_FOR_EACH_PRECOMPILED_CHUNKED(DELTAPRODUCT_CUDA_EXTERN_BACKWARD, __half)
#endif

/// The chunked backward on a validated call that chunked_backward_takes() (chunked_backward_kernel.cuh).
template <DeltaProductModel Model, class T>
void run_chunked_backward(const CudaBackend& backend, const Model& model, const CudaProblem& cp,
                          const DeltaInputs<T, float>& in, const OutputGradients<T, float>& output_gradients,
                          const DeltaGradients<T, float>& gradients) {
  const Problem& p = cp.sizes;
  constexpr bool gated = Model::gating == Gating::scalar_decay;
  const ChunkedBackwardLayout layout(p, !in.cu_seqlens.absent(), sizeof(T), backend.keep_preambles);
  const Scratch scratch = backward_scratch(backend, layout.bytes);
  const int splits = training_sequence_splits(backend, p, scratch.bytes - layout.bytes, layout.bytes);
  check_value_splits(backend, p.value_dim, true);
  ValueCheckRecord* status = status_record(backend, model.options.validate_ranges);
  launch_value_checks(backend, status, model, in, cp);
  if (p.sequences == 0 || p.heads == 0) return;

  auto* base = static_cast<unsigned char*>(scratch.data);
  cuda_chunked::ChunkedBackwardParams<T> params;
  cuda_chunked::ChunkedParams<T>& f = params.forward;
  f = chunked_params(model, cp, in, status);
  f.chunk_states = reinterpret_cast<T*>(base + layout.states);
  f.chunk_solved_values = reinterpret_cast<T*>(base + layout.solved);
  if (keeps_preambles<T, Model::householder_steps>(backend, p.key_dim)) f.chunk_preambles = base + layout.preambles;
  f.chunks_per_row = layout.chunks_per_row;
  f.splits = splits;
  // After the kept tiles: the forward's summaries and starts, then the reverse scan's (E_i, P_i^T; the runs' ends).
  if (splits > 1) place_split_scratch(f, base + layout.bytes, p);
  params.d_o = device_view(output_gradients.o);
  params.d_final_state = device_view(output_gradients.final_state);
  params.d_initial_state = device_view(gradients.initial_state);
  params.chunk_adjoints = reinterpret_cast<T*>(base + layout.adjoints);
  params.chunk_value_gradients = reinterpret_cast<T*>(base + layout.value_gradients);
  params.dq = device_view(gradients.q);
  params.dk = device_view(gradients.k);
  params.dv = device_view(gradients.v);
  params.dbeta = device_view(gradients.beta);
  if constexpr (gated) params.dg = device_view(gradients.g);

  constexpr int NH = Model::householder_steps;
  if (p.key_dim == 64)
    launch_chunked_backward<T, 64, NH, gated>(backend, params, p.sequences, p.heads, layout.tiles);
  else
    launch_chunked_backward<T, 128, NH, gated>(backend, params, p.sequences, p.heads, layout.tiles);
}

/// The recurrent backward on validated arguments.
template <DeltaProductModel Model, class T>
void run_recurrent_backward(const CudaBackend& backend, const Model& model, const CudaProblem& cp,
                            const DeltaInputs<T, float>& in, const OutputGradients<T, float>& output_gradients,
                            const DeltaGradients<T, float>& gradients) {
  const Problem& p = cp.sizes;
  constexpr bool gated = Model::gating == Gating::scalar_decay;
  if (p.key_dim > recurrent_max_key_dim)
    argument_error("q",
                   "key dimension K <= " + std::to_string(recurrent_max_key_dim) +
                       " for the CUDA recurrent backward (a lane keeps K/16 state rows in registers)",
                   "K = " + std::to_string(p.key_dim));
  if (backend.algorithm == CudaAlgorithm::chunked)
    argument_error("backend.algorithm",
                   "CudaAlgorithm::automatic or CudaAlgorithm::recurrent: the chunked backward takes bf16 or fp16 "
                   "data, n_h <= 4, K = V in {64, 128} and rows of q, k, v and dL/do contiguous and 16-byte aligned",
                   "CudaAlgorithm::chunked");
  check_value_splits(backend, p.value_dim, false);
  const RecurrentBackwardLayout layout(p, gated);
  const Scratch scratch = backward_scratch(backend, layout.bytes());

  ValueCheckRecord* status = status_record(backend, model.options.validate_ranges);
  auto* base = static_cast<float*>(scratch.data);
  DELTAPRODUCT_CUDA_CHECK(cudaMemsetAsync(base + layout.zeroed, 0, (layout.floats - layout.zeroed) * sizeof(float),
                                          backend.stream));
  const bool checked = launch_value_checks(backend, status, model, in, cp);

  RecurrentBackwardParams<T> params;
  params.q = device_view(in.q);
  params.k = device_view(in.k);
  params.v = device_view(in.v);
  params.beta = device_view(in.beta);
  if constexpr (gated) params.g = device_view(in.g);
  params.initial_state = device_view(in.initial_state);
  params.d_o = device_view(output_gradients.o);
  params.d_final_state = device_view(output_gradients.final_state);
  params.d_initial_state = device_view(gradients.initial_state);
  params.cu_seqlens = device_view(cp.cu_seqlens);
  params.scratch.u = base + layout.u;
  params.scratch.dv = base + layout.dv;
  params.scratch.dq = base + layout.dq;
  params.scratch.dk = base + layout.dk;
  params.scratch.dbeta = base + layout.dbeta;
  if constexpr (gated) {
    params.scratch.token_terms = base + layout.token_terms;
    params.scratch.phi = base + layout.phi;
  }
  params.tokens = p.tokens;
  params.heads = p.heads;
  params.key_dim = p.key_dim;
  params.value_dim = p.value_dim;
  params.work_items = p.sequences * p.heads;
  params.householder_steps = Model::householder_steps;
  params.key_norm = norm_code(model.options.key_normalization);
  params.query_norm = norm_code(model.options.query_normalization);
  params.eps = static_cast<float>(model.options.normalization_eps);
  params.scale = static_cast<float>(p.scale);
  params.status = status;
  const bool float4_state = state_allows_float4(in.initial_state, p.value_dim) &&
                            state_allows_float4(output_gradients.final_state, p.value_dim) &&
                            state_allows_float4(View<const float, 4>(gradients.initial_state), p.value_dim);
  launch_backward_tile(backend, params, float4_state, checked);

  launch_key_gradient(backend, params.scratch.dq, in.q, gradients.q, params.query_norm, params.eps, status);
  launch_key_gradient(backend, params.scratch.dk, in.k, gradients.k, params.key_norm, params.eps, status);
  launch_scratch_copy(backend, params.scratch.dv, gradients.v, status);
  launch_scratch_copy(backend, params.scratch.dbeta, gradients.beta, status);
  if constexpr (gated) {
    if (!gradients.g.absent() && gradients.g.size() > 0) {
      GateGradientParams gp;
      gp.token_terms = params.scratch.token_terms;
      gp.phi = params.scratch.phi;
      gp.cu_seqlens = params.cu_seqlens;
      gp.tokens = p.tokens;
      gp.heads = p.heads;
      gp.sequences = p.sequences;
      gp.status = status;
      constexpr int threads = 128;
      const index_t warps = p.sequences * p.heads;
      if (warps > 0) {
        gate_gradient_kernel<T><<<static_cast<unsigned>(ceil_div(warps * 32, threads)), threads, 0, backend.stream>>>(
            gp, device_view(gradients.g));
        DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
      }
    }
  }
}

}  // namespace detail

/// Device workspace bytes backward() with `backend` needs on these arguments: the value-check record, then the larger
/// of the recurrent backward's fp32 scratch and the chunked backward's per-chunk tiles, with the split scratch after
/// them when backend.sequence_splits asks for a count (see the top of this file). Checks the shapes as backward()
/// does.
template <DeltaProductModel Model, CudaElement T>
std::size_t backward_workspace_bytes(const CudaBackend& backend, const Model& model, const DeltaInputs<T, float>& in,
                                     const OutputGradients<T, float>& output_gradients,
                                     const DeltaGradients<T, float>& gradients = {}) {
  detail::check_cuda_backward_call<Model, T>();
  const CudaProblem cp = detail::check_backward_cuda(model, in, output_gradients, gradients);
  const Problem& p = cp.sizes;
  const std::size_t recurrent = detail::RecurrentBackwardLayout(p, Model::gating == Gating::scalar_decay).bytes();
  if constexpr (detail::chunked_backward_exists<Model, T>) {
    const std::size_t kept =
        detail::ChunkedBackwardLayout(p, !in.cu_seqlens.absent(), sizeof(T), backend.keep_preambles).bytes;
    const int splits = detail::training_sequence_splits(backend, p, std::numeric_limits<std::size_t>::max(), kept);
    const std::size_t chunked =
        kept + detail::cuda_chunked::split_scratch_bytes(p.sequences, p.heads, p.key_dim, p.value_dim, splits);
    return cuda_status_bytes + (chunked > recurrent ? chunked : recurrent);
  }
  return cuda_status_bytes + recurrent;
}

/// backward_workspace_bytes() for the default backend (CudaBackend{}: the automatic split plan).
template <DeltaProductModel Model, CudaElement T>
std::size_t backward_workspace_bytes(const Model& model, const DeltaInputs<T, float>& in,
                                     const OutputGradients<T, float>& output_gradients,
                                     const DeltaGradients<T, float>& gradients = {}) {
  return backward_workspace_bytes(CudaBackend{}, model, in, output_gradients, gradients);
}

/// DeltaNet / DeltaProduct backward pass on the GPU: dL/dq, dL/dk, dL/dv, dL/dbeta, dL/dg (gated models) and
/// dL/d(initial state), for the gradient views present, from the forward's inputs and dL/do, dL/d(final state), all
/// in device memory. Gradients of q and k are with respect to the raw inputs (through the normalisation options).
/// Asynchronous; the workspace must hold backward_workspace_bytes().
template <DeltaProductModel Model, CudaElement T>
void backward(const CudaBackend& backend, const Model& model, const DeltaInputs<T, float>& in,
              const OutputGradients<T, float>& output_gradients, const DeltaGradients<T, float>& gradients) {
  detail::check_cuda_backward_call<Model, T>();
  const CudaProblem cp = detail::check_backward_cuda(model, in, output_gradients, gradients);
  if constexpr (detail::chunked_backward_exists<Model, T>) {
    if (detail::takes_chunked_backward<Model>(backend, cp, in, output_gradients))
      return detail::run_chunked_backward(backend, model, cp, in, output_gradients, gradients);
  }
  detail::run_recurrent_backward(backend, model, cp, in, output_gradients, gradients);
}

/// How many runs of chunks backward() splits each sequence into on these arguments and this workspace: the explicit
/// backend.sequence_splits, or the automatic plan's count for this workspace; 1 when it does not split, or when the
/// call takes the recurrent form. An explicit count whose scratch the workspace lacks is an error, as in backward().
template <DeltaProductModel Model, CudaElement T>
int backward_sequence_splits(const CudaBackend& backend, const Model& model, const DeltaInputs<T, float>& in,
                             const OutputGradients<T, float>& output_gradients,
                             const DeltaGradients<T, float>& gradients = {}) {
  detail::check_cuda_backward_call<Model, T>();
  const CudaProblem cp = detail::check_backward_cuda(model, in, output_gradients, gradients);
  if constexpr (detail::chunked_backward_exists<Model, T>) {
    if (detail::takes_chunked_backward<Model>(backend, cp, in, output_gradients)) {
      const std::size_t kept =
          detail::ChunkedBackwardLayout(cp.sizes, !in.cu_seqlens.absent(), sizeof(T), backend.keep_preambles).bytes;
      const std::size_t scratch = detail::algorithm_scratch(backend).bytes;
      return detail::training_sequence_splits(backend, cp.sizes, scratch > kept ? scratch - kept : 0, kept);
    }
  }
  return 1;
}

/// Whether backward() with `backend.algorithm` runs the chunked tensor-core backward on these arguments (true) or
/// the recurrent one (false). Checks the arguments' shapes as backward() does.
template <DeltaProductModel Model, CudaElement T>
bool chunked_backward_applies(const CudaBackend& backend, const Model& model, const DeltaInputs<T, float>& in,
                              const OutputGradients<T, float>& output_gradients,
                              const DeltaGradients<T, float>& gradients = {}) {
  detail::check_cuda_backward_call<Model, T>();
  const CudaProblem cp = detail::check_backward_cuda(model, in, output_gradients, gradients);
  return detail::takes_chunked_backward<Model>(backend, cp, in, output_gradients);
}

}  // namespace deltaproduct
