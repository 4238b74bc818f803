// Pieces of the tensor-core chunked forward kernel (chunked_kernel.cuh): its parameters, and thin wrappers over the
// PTX instructions it uses (mma.sync m16n8k16, ldmatrix, cp.async). nvcc only.
//
// Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k16"), with group = lane / 4 and quad = lane % 4:
//   A (16 x 16, row-major), 4 registers of 2 elements: {row group, cols 2 quad + 0..1}, {row group + 8, same cols},
//     {row group, cols 8 + 2 quad + 0..1}, {row group + 8, cols 8 + 2 quad + 0..1};
//   B (16 x 8, k x n), 2 registers: {k 2 quad + 0..1, n group}, {k 8 + 2 quad + 0..1, n group};
//   C (16 x 8, fp32), 4 floats: (group, 2 quad + 0..1), (group + 8, 2 quad + 0..1).
// So two C tiles side by side (columns 0..7 and 8..15) hold exactly the elements of one A fragment: an fp32
// accumulator becomes the next product's A operand by packing pairs, with no data movement between threads.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "deltaproduct/core/view.hpp"
#include "deltaproduct/cuda/device_views.cuh"
#include "deltaproduct/cuda/recurrent_kernel.cuh"
#include "deltaproduct/cuda/validate.hpp"
#include "deltaproduct/cuda/value_checks.cuh"

namespace deltaproduct::detail::cuda_chunked {

/// The passes of a split sequence (chunked_forward.cuh): `whole` runs unsplit sequences; `summarize` computes each
/// split's state contribution C_i (blockIdx.z = 0: from a zero state, or from the initial state for split 0) and its
/// transition P_i (blockIdx.z = 1: from the identity, values taken as zero), so that S_(i+1) = P_i S_i + C_i;
/// `outputs` reruns every split from its true start state S_i and writes o (and, for the last split, the final state).
enum class SplitPass : int { whole = 0, summarize = 1, outputs = 2 };

/// What the tensor-core kernel receives: the contract's views as device views, and the options it needs.
template <class T>
struct ChunkedParams {
  DeviceView<const T, 4> q;                      ///< [B, T, H, K], rows contiguous and 16-byte aligned
  DeviceView<const T, 4> k;                      ///< [B, T*n_h, H, K], likewise
  DeviceView<const T, 4> v;                      ///< [B, T*n_h, H, V], likewise
  DeviceView<const T, 3> beta;                   ///< [B, T*n_h, H]
  DeviceView<const T, 3> g;                      ///< [B, T, H]; absent for ungated models
  DeviceView<const float, 4> initial_state;      ///< [N, H, K, V]; absent: zero
  DeviceView<float, 4> final_state;              ///< [N, H, K, V]; absent: not written
  DeviceView<T, 4> o;                            ///< [B, T, H, V], rows contiguous and 16-byte aligned
  DeviceView<const std::int64_t, 1> cu_seqlens;  ///< [N + 1]; absent: sequence n is batch row n
  index_t tokens = 0;                            ///< T: tokens per batch row (the packed length with cu_seqlens)
  float scale = 1.0f;
  NormCode key_norm = NormCode::none, query_norm = NormCode::none;
  float eps = 1e-6f;
  const ValueCheckRecord* status = nullptr;  ///< value-check record to honour; nullptr: not validated

  // Sequence splitting (chunked_forward.cuh says why and how): blockIdx.x = sequence * splits + split, and the CTA
  // runs the split-th of `splits` equal runs of its sequence's chunks. splits = 1 is the unsplit kernel.
  int splits = 1;
  SplitPass pass = SplitPass::whole;
  float* summaries = nullptr;     ///< [N, H, splits, 2, K, V]: C_i (slot 0), P_i^T (slot 1), written by summarize
  const float* starts = nullptr;  ///< [N, H, splits, K, V]: the state S_i at each split's start, read by outputs

  // The chunked backward's state pass (chunked_backward_kernel.cuh): when set, every chunk's start state S^T and its
  // solved values N^T are kept, rounded to T, in the tile chunk_tile_index() gives; o may then be absent.
  T* chunk_states = nullptr;         ///< [tiles][V][K]
  T* chunk_solved_values = nullptr;  ///< [tiles][V][L]
  unsigned char* chunk_preambles = nullptr;  ///< [tiles][PreambleLayout::bytes]; null: not kept
  index_t chunks_per_row = 0;        ///< ceil(T / C): chunk slots per batch row
};

/// Where one sequence lies: its batch row and its token range [begin, end).
struct SequenceSpan {
  index_t row, begin, end;
};

/// Offsets are clamped into [0, T] so that bad cu_seqlens never read out of bounds (the value checks report them).
template <class T>
__device__ __forceinline__ SequenceSpan sequence_span(const ChunkedParams<T>& p, index_t sequence) {
  if (!p.cu_seqlens.present()) return {sequence, 0, p.tokens};
  const index_t begin = min(max(p.cu_seqlens(sequence), index_t{0}), p.tokens);
  const index_t end = min(max(p.cu_seqlens(sequence + 1), begin), p.tokens);
  return {0, begin, end};
}

/// The tile of the backward's per-chunk scratch that holds chunk `chunk` of sequence `sequence` for one head: slots
/// run along each batch row (chunks_per_row of them); a packed sequence starts at slot begin / C + sequence, so that
/// sequences sharing a chunk-sized stretch of the row never share a slot (B * chunks_per_row + N slots in all).
__host__ __device__ __forceinline__ index_t chunk_tile_index(bool packed, const SequenceSpan& span, index_t sequence,
                                                             index_t chunk, int chunk_tokens, index_t chunks_per_row,
                                                             int head, index_t heads) {
  const index_t slot = span.row * chunks_per_row + span.begin / chunk_tokens + (packed ? sequence : 0) + chunk;
  return slot * heads + head;
}

/// The factor core/recurrence.hpp's normalize() divides by, as a product: 1 / ||x|| for l2 (1 for a zero vector,
/// which stays zero), 1 / sqrt(||x||^2 + eps) for l2_eps, 1 for none.
__device__ __forceinline__ float inverse_norm(float sum_of_squares, NormCode mode, float eps) {
  if (mode == NormCode::none) return 1.0f;
  if (mode == NormCode::l2_eps) sum_of_squares += eps;
  return sum_of_squares > 0.0f ? 1.0f / sqrtf(sum_of_squares) : 1.0f;
}

/// 2^x by the special function unit (relative error below 2^-22; results below 2^-126 flush to zero).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

/// Two floats rounded to the 16-bit type T and packed, the first in the low half (the lower column of a fragment).
template <class T>
__device__ __forceinline__ std::uint32_t pack2(float lo, float hi) {
  std::uint32_t bits;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
    std::memcpy(&bits, &pair, sizeof bits);
  } else {
    static_assert(std::is_same_v<T, __half>, "pack2: T must be __nv_bfloat16 or __half");
    const __half2 pair = __floats2half2_rn(lo, hi);
    std::memcpy(&bits, &pair, sizeof bits);
  }
  return bits;
}

template <class T>
__device__ __forceinline__ float2 unpack2(std::uint32_t bits) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    __nv_bfloat162 pair;
    std::memcpy(&pair, &bits, sizeof bits);
    return __bfloat1622float2(pair);
  } else {
    __half2 pair;
    std::memcpy(&pair, &bits, sizeof bits);
    return __half22float2(pair);
  }
}

/// The A fragment (16 x 16) made of two fp32 accumulator tiles: columns 0..7 from `left`, 8..15 from `right`.
template <class T>
__device__ __forceinline__ void accumulators_to_fragment(const float (&left)[4], const float (&right)[4],
                                                         std::uint32_t (&a)[4]) {
  a[0] = pack2<T>(left[0], left[1]);
  a[1] = pack2<T>(left[2], left[3]);
  a[2] = pack2<T>(right[0], right[1]);
  a[3] = pack2<T>(right[2], right[3]);
}

/// The 16 bytes of one row that a quad (the 4 lanes of equal lane / 4) stores after exchanging its pieces:
/// pieces[g] holds the lane's 4 bytes of 8-column group g (columns 8 g + 2 quad, +1) of its row. Two butterfly
/// rounds (lane ^ 1, lane ^ 2) transpose the quad's 4 x 4 pieces, so lane `quad` ends with all of group `quad`
/// (columns 8 quad + 0..7) and stores them at row + 8 quad: one 16-byte store instead of four 4-byte ones, and a
/// quad writes 64 contiguous bytes, two whole sectors, instead of four 16-byte halves of sectors.
template <class T>
__device__ __forceinline__ void store_row_pieces(T* row, std::uint32_t (&pieces)[4], int quad) {
  static_assert(sizeof(T) == 2, "store_row_pieces: 16-bit elements, two per piece");
#pragma unroll
  for (int bit = 1; bit <= 2; bit <<= 1) {
    const bool upper = (quad & bit) != 0;
    // Pairs (g, g ^ bit): the lane keeps the member whose bit matches its own and trades the other.
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      if (g & bit) continue;
      const std::uint32_t sent = upper ? pieces[g] : pieces[g | bit];
      const std::uint32_t received = __shfl_xor_sync(0xffffffffu, sent, bit);
      if (upper)
        pieces[g] = received;
      else
        pieces[g | bit] = received;
    }
  }
  store_global_16_bytes(row + 8 * quad, make_uint4(pieces[0], pieces[1], pieces[2], pieces[3]));
}

/// Stores fp32 accumulator tiles acc[j] (the C layout of mma.sync: element e at row `first_row` + 8 (e / 2), column
/// 8 j + 2 quad + e % 2) rounded to T into a row-major tile in global memory with `pitch` elements, 16 bytes per
/// lane (store_row_pieces). The whole warp calls it; the tile's rows must be 16-byte aligned.
template <class T, int Tiles>
__device__ __forceinline__ void store_accumulators(T* tile, const float (&acc)[Tiles][4], int first_row, int quad,
                                                   index_t pitch) {
  static_assert(Tiles % 4 == 0, "store_accumulators: whole groups of 32 columns");
#pragma unroll
  for (int j0 = 0; j0 < Tiles; j0 += 4)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      std::uint32_t pieces[4];
#pragma unroll
      for (int g = 0; g < 4; ++g) pieces[g] = pack2<T>(acc[j0 + g][2 * h], acc[j0 + g][2 * h + 1]);
      store_row_pieces(tile + (first_row + 8 * h) * pitch + 8 * j0, pieces, quad);
    }
}

/// Stores 16-bit A fragments a[i] (rows `first_row` + 0..15, columns 16 i + 0..15; chunked_common's fragment layout)
/// into a row-major tile in global memory with `pitch` elements, 16 bytes per lane (store_row_pieces). The whole
/// warp calls it; the tile's rows must be 16-byte aligned.
template <int Fragments, class T>
__device__ __forceinline__ void store_fragments(T* tile, const std::uint32_t (&a)[Fragments][4], int first_row,
                                                int quad, index_t pitch) {
  static_assert(Fragments % 2 == 0, "store_fragments: whole groups of 32 columns");
#pragma unroll
  for (int i0 = 0; i0 < Fragments; i0 += 2)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      // Register r of fragment i holds row first_row + 8 (r % 2), column group 2 i + r / 2.
      std::uint32_t pieces[4] = {a[i0][h], a[i0][h + 2], a[i0 + 1][h], a[i0 + 1][h + 2]};
      store_row_pieces(tile + (first_row + 8 * h) * pitch + 16 * i0, pieces, quad);
    }
}

// ---- PTX wrappers ----

/// d += a b on the tensor cores: m16n8k16, 16-bit operands of type T, fp32 accumulation.
template <class T>
__device__ __forceinline__ void mma_16x8x16(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                            std::uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    static_assert(std::is_same_v<T, __half>, "mma_16x8x16: T must be __nv_bfloat16 or __half");
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

__device__ __forceinline__ std::uint32_t shared_address(const void* pointer) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(pointer));
}

/// Four 8 x 8 matrices of 16-bit elements from shared memory; lanes 8m..8m+7 give the row addresses of matrix m,
/// and lane l receives element (row l / 4, columns 2 (l % 4) + 0..1) of matrix m in r[m].
__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t row_address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(row_address)
               : "memory");
}

/// As ldmatrix_x4, transposed: lane l receives element (rows 2 (l % 4) + 0..1, column l / 4) of matrix m.
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], std::uint32_t row_address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(row_address)
               : "memory");
}

/// Stores four 8 x 8 matrices of 16-bit elements held as mma fragments (r[m]: row l / 4, columns 2 (l % 4) + 0..1
/// of matrix m), transposed: lane l gives the shared address of memory row l % 8 of matrix l / 8, which receives
/// column l % 8 of the fragment. sm_90 and later.
__device__ __forceinline__ void stmatrix_x4_trans(std::uint32_t row_address, const std::uint32_t (&r)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1,%2,%3,%4};\n" ::"r"(row_address), "r"(r[0]),
               "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
#else
  (void)row_address, (void)r;
  __trap();  // callers take this path only on sm_90 and later
#endif
}

/// A value the compiler must treat as unknown from here on: applied to a loop's shared-memory base address, it keeps
/// the compiler from hoisting one register per distinct constant offset out of the loop (the offsets then stay
/// immediates of the load instructions).
__device__ __forceinline__ std::uint32_t opaque(std::uint32_t x) {
  asm volatile("" : "+r"(x));
  return x;
}
/// The shared memory at `address` (a shared-space byte address) as a pointer the compiler knows is shared.
template <class E>
__device__ __forceinline__ E* shared_pointer(std::uint32_t address) {
  return static_cast<E*>(__cvta_shared_to_generic(address));
}

/// 16 bytes from global to shared memory without passing through registers; zero-fills when !valid (the source
/// is then not read).
__device__ __forceinline__ void copy_async_16(void* shared_destination, const void* global_source, bool valid) {
  const int source_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared_destination)),
               "l"(global_source), "r"(source_bytes)
               : "memory");
}

/// Orders this thread's earlier shared-memory writes (generic proxy, cp.async included) before later reads by the
/// async proxy (wgmma); a barrier then extends the order to the other threads.
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

/// Bulk copy of `bytes` (a multiple of 16, both addresses 16-byte aligned) from shared to global memory, in the
/// executing thread's current bulk group.
__device__ __forceinline__ void bulk_store(void* global_destination, std::uint32_t shared_source, std::uint32_t bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(global_destination),
               "r"(shared_source), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
/// Waits until at most `Pending` of this thread's latest bulk groups still read their shared-memory source.
template <int Pending>
__device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(Pending) : "memory");
}
/// Waits until every bulk group of this thread is complete (its writes performed).
__device__ __forceinline__ void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void copy_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
/// Waits until at most `Pending` of this thread's most recent commit groups are still in flight.
template <int Pending>
__device__ __forceinline__ void copy_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
}

// ---- wgmma (sm_90a): a warpgroup's D (64 x N, fp32, registers) += A (64 x 16, registers) B (16 x N, shared) ----
// The register fragments of A and D are those of mma.sync m16n8k16 above, warp w of the warpgroup holding rows
// 16 w .. 16 w + 15 and D's n8 tiles in order; B is described by a shared-memory matrix descriptor (PTX ISA, "Matrix
// Descriptor Format"). TransB = 0: B is K-major (k contiguous in each 16-byte row of a core matrix), 1: N-major.

/// Descriptor of a no-swizzle (interleaved) shared-memory operand: core matrices of 8 rows x 16 bytes, each 128
/// contiguous bytes; `leading` and `stride` are the byte offsets between core matrices along the two dimensions as the
/// PTX ISA's canonical layouts define them (K-major: leading along K, stride along N; N-major: leading along K,
/// stride along N too, with the core matrix's rows running along K).
/// `swizzle` selects another layout (1: 128-byte swizzle, where K-major leading is unused and MN-major leading runs
/// along MN; the tile's 1024-byte atoms must be 1024-byte aligned).
__device__ __forceinline__ std::uint64_t wgmma_descriptor(std::uint32_t address, std::uint32_t leading,
                                                          std::uint32_t stride, std::uint64_t swizzle = 0) {
  return static_cast<std::uint64_t>((address & 0x3FFFF) >> 4) |
         (static_cast<std::uint64_t>((leading & 0x3FFFF) >> 4) << 16) |
         (static_cast<std::uint64_t>((stride & 0x3FFFF) >> 4) << 32) | (swizzle << 62);
}

/// Orders the registers' earlier writes before the warpgroup's next wgmma reads them.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
/// Waits for all committed wgmma groups of the warpgroup.
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
/// Waits until at most `Pending` of the warpgroup's committed wgmma groups are still running (the oldest complete
/// first).
template <int Pending>
__device__ __forceinline__ void wgmma_wait() {
  static_assert(Pending >= 0 && Pending <= 7, "wgmma.wait_group takes 0 to 7 pending groups");
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
}

/// Ties accumulator registers to this point of the program: the compiler may not move their reads or writes across
/// it (wgmma writes them asynchronously, out of the compiler's sight).
template <int Tiles>
__device__ __forceinline__ void pin_registers(float (&d)[Tiles][4]) {
#pragma unroll
  for (int j = 0; j < Tiles; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[j][e])::"memory");
}

// The bf16 and fp16 forms of each wgmma differ only in the operand type the instruction names: one asm body per
// shape, TYPE spliced into its string.
#define DELTAPRODUCT_WGMMA_M64N16(TYPE)                                                                          \
  asm volatile(                                                                                                  \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %14, 0;\n"                                                               \
      "wgmma.mma_async.sync.aligned.m64n16k16.f32." TYPE "." TYPE                                                \
      " {%0,%1,%2,%3,%4,%5,%6,%7}, "                                                                             \
      "{%8,%9,%10,%11}, %12, p, 1, 1, %13;\n}\n"                                                                 \
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), \
        "+f"(d[1][3])                                                                                            \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(TransB), "r"(accumulate)                         \
      : "memory")
template <class T, int TransB>
__device__ __forceinline__ void wgmma_async(float (&d)[2][4], const std::uint32_t (&a)[4], std::uint64_t b) {
  static_assert(TransB == 0 || TransB == 1);
  constexpr int accumulate = 1;  // D += A B
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>,
                "wgmma_async: T must be __nv_bfloat16 or __half");
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    DELTAPRODUCT_WGMMA_M64N16("bf16");
  else
    DELTAPRODUCT_WGMMA_M64N16("f16");
}
#undef DELTAPRODUCT_WGMMA_M64N16

#define DELTAPRODUCT_WGMMA_M64N32(TYPE)                                                                          \
  asm volatile(                                                                                                  \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %22, 0;\n"                                                               \
      "wgmma.mma_async.sync.aligned.m64n32k16.f32." TYPE "." TYPE                                                \
      " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, "                                               \
      "{%16,%17,%18,%19}, %20, p, 1, 1, %21;\n}\n"                                                               \
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), \
        "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), \
        "+f"(d[3][2]), "+f"(d[3][3])                                                                             \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(TransB), "r"(accumulate)                         \
      : "memory")
template <class T, int TransB>
__device__ __forceinline__ void wgmma_async(float (&d)[4][4], const std::uint32_t (&a)[4], std::uint64_t b) {
  static_assert(TransB == 0 || TransB == 1);
  constexpr int accumulate = 1;  // D += A B
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>,
                "wgmma_async: T must be __nv_bfloat16 or __half");
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    DELTAPRODUCT_WGMMA_M64N32("bf16");
  else
    DELTAPRODUCT_WGMMA_M64N32("f16");
}
#undef DELTAPRODUCT_WGMMA_M64N32

#define DELTAPRODUCT_WGMMA_M64N64(TYPE)                                                                          \
  asm volatile(                                                                                                  \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %38, 0;\n"                                                               \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE                                                \
      " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"                                                 \
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, "                                       \
      "{%32,%33,%34,%35}, %36, p, 1, 1, %37;\n}\n"                                                               \
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), \
        "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), \
        "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), \
        "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), \
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])                                               \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(TransB), "r"(accumulate)                         \
      : "memory")
template <class T, int TransB>
__device__ __forceinline__ void wgmma_async(float (&d)[8][4], const std::uint32_t (&a)[4], std::uint64_t b) {
  static_assert(TransB == 0 || TransB == 1);
  constexpr int accumulate = 1;  // D += A B
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>,
                "wgmma_async: T must be __nv_bfloat16 or __half");
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    DELTAPRODUCT_WGMMA_M64N64("bf16");
  else
    DELTAPRODUCT_WGMMA_M64N64("f16");
}
#undef DELTAPRODUCT_WGMMA_M64N64

#define DELTAPRODUCT_WGMMA_M64N128(TYPE)                                                                           \
  asm volatile(                                                                                                    \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %70, 0;\n"                                                                 \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE                                                 \
      " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"                                                   \
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"                                           \
      "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"                                           \
      "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, "                                         \
      "{%64,%65,%66,%67}, %68, p, 1, 1, %69;\n}\n"                                                                 \
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),   \
        "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),   \
        "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),   \
        "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),   \
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]),   \
        "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), \
        "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),            \
        "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]),            \
        "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]),            \
        "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])                                             \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(TransB), "r"(accumulate)                           \
      : "memory")
template <class T, int TransB>
__device__ __forceinline__ void wgmma_async(float (&d)[16][4], const std::uint32_t (&a)[4], std::uint64_t b) {
  static_assert(TransB == 0 || TransB == 1);
  constexpr int accumulate = 1;  // D += A B
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>,
                "wgmma_async: T must be __nv_bfloat16 or __half");
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    DELTAPRODUCT_WGMMA_M64N128("bf16");
  else
    DELTAPRODUCT_WGMMA_M64N128("f16");
}
#undef DELTAPRODUCT_WGMMA_M64N128

#define DELTAPRODUCT_WGMMA_SS_M64N64(TYPE)                                                                       \
  asm volatile(                                                                                                  \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                                               \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE                                                \
      " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"                                                 \
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, "                                       \
      "%32, %33, p, 1, 1, 0, 0;\n}\n"                                                                            \
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), \
        "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), \
        "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), \
        "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), \
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])                                               \
      : "l"(a), "l"(b), "r"(accumulate)                                                                          \
      : "memory")
/// D (64 x 64, fp32) += A (64 x 16, shared, K-major) B (16 x 64, shared, K-major) for one warpgroup: both operands by
/// descriptor (wgmma_descriptor), D in the register fragments of wgmma_async's m64n64k16 form.
template <class T>
__device__ __forceinline__ void wgmma_shared_64x64(float (&d)[8][4], std::uint64_t a, std::uint64_t b) {
  constexpr int accumulate = 1;
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>,
                "wgmma_shared_64x64: T must be __nv_bfloat16 or __half");
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    DELTAPRODUCT_WGMMA_SS_M64N64("bf16");
  else
    DELTAPRODUCT_WGMMA_SS_M64N64("f16");
}
#undef DELTAPRODUCT_WGMMA_SS_M64N64

// ---- Named barriers and register reallocation (warp-specialised kernels) ----
// Barrier 0 is __syncthreads(); ids 1..15 are free. `threads` counts every thread that waits, a multiple of 32.

/// Waits until `threads` threads have arrived at barrier `id` (this one included).
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

/// Lowers (Increase = false) or raises the warpgroup's per-thread register allocation to `Registers` (a multiple of 8
/// in 24..256); every warp of the warpgroup executes it. sm_90a only.
template <int Registers, bool Increase>
__device__ __forceinline__ void set_register_count() {
  static_assert(Registers % 8 == 0 && Registers >= 24 && Registers <= 256,
                "setmaxnreg takes a multiple of 8 between 24 and 256");
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (Increase)
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Registers));
  else
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Registers));
#endif
}

// ---- mbarriers and the tensor memory accelerator (sm_90) ----

/// Initialises the mbarrier at shared address `barrier` to expect `arrivals` arrivals per phase.
__device__ __forceinline__ void mbarrier_init(std::uint32_t barrier, int arrivals) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(barrier), "r"(arrivals) : "memory");
#endif
}
/// Makes initialised mbarriers visible to the tensor memory accelerator (then a block barrier, to the threads).
__device__ __forceinline__ void fence_mbarrier_init() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}
/// Arrives at the mbarrier and adds `bytes` to the transaction count its phase waits for.
__device__ __forceinline__ void mbarrier_arrive_expect_bytes(std::uint32_t barrier, std::uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(barrier), "r"(bytes) : "memory");
#endif
}
/// Arrives at the mbarrier (release: this thread's earlier memory accesses are visible to the threads its phase
/// completion releases).
__device__ __forceinline__ void mbarrier_arrive(std::uint32_t barrier) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(barrier) : "memory");
#endif
}
/// Waits until the mbarrier's phase with parity `parity` has completed.
__device__ __forceinline__ void mbarrier_wait(std::uint32_t barrier, std::uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "{\n.reg .pred done;\n"
      "wait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n}\n" ::"r"(barrier),
      "r"(parity)
      : "memory");
#endif
}
/// Brings the TMA descriptor `map` (a __grid_constant__ parameter) into the descriptor cache ahead of its first use.
__device__ __forceinline__ void prefetch_tensor_map(const void* map) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(map) : "memory");
#endif
}
/// Copies the box at coordinates (c0, c1, c2, c3) of the 4-dimensional tensor map `map` (a __grid_constant__
/// parameter) to shared memory at `destination` (128-byte aligned); the bytes count on `barrier`'s transactions.
/// Coordinates past the tensor's extents read as zero.
__device__ __forceinline__ void tma_load_4d(std::uint32_t destination, const void* map, std::uint32_t barrier, int c0,
                                            int c1, int c2, int c3) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
      "[%6];\n" ::"r"(destination),
      "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(barrier)
      : "memory");
#endif
}

/// Copies shared memory at `source` (128-byte aligned, laid out as the map's box) to the box at coordinates
/// (c0, c1, c2, c3) of the 4-dimensional tensor map `map`, in the executing thread's current bulk group; coordinates
/// past the tensor's extents are not written.
__device__ __forceinline__ void tma_store_4d(const void* map, std::uint32_t source, int c0, int c1, int c2, int c3) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n" ::"l"(map),
               "r"(source), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
               : "memory");
#endif
}

/// Copies the box at coordinates (c0, c1) of the 2-dimensional tensor map `map` as tma_load_4d does.
__device__ __forceinline__ void tma_load_2d(std::uint32_t destination, const void* map, std::uint32_t barrier, int c0,
                                            int c1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          destination),
      "l"(map), "r"(c0), "r"(c1), "r"(barrier)
      : "memory");
#endif
}

}  // namespace deltaproduct::detail::cuda_chunked
