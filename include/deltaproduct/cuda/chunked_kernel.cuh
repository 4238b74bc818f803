// The tensor-core chunked forward kernel for K = V in {64, 128} with 16-bit inputs (sm_90a: wgmma for the products
// with the state, mma.sync for the rest; other architectures from sm_80: mma.sync throughout). One CTA per
// (sequence, head) keeps the fp32 state on chip for the whole sequence, in registers; each warp owns 16 value rows of
// the transposed state S^T (V x K), each warpgroup 64.
//
// Per chunk of L = 64 Householder micro-steps (C = 64 / n_h tokens; micro-step r belongs to token t(r) = r / n_h),
// with G_t the chunk-local cumulative log-gate (the gate of a token applies before its first micro-step), kinv_r the
// key normaliser and b_r the betas (the WY / UT form of "Parallelizing Linear Transformers with the Delta Rule over
// Sequence Length", Yang et al. 2024, extended to gates and to n_h micro-steps per token as the README's Theory
// section states):
//   A_rs = b_r exp(G_t(r) - G_t(s)) kinv_r kinv_s (k_r . k_s) for s < r              (strictly lower, 64 x 64)
//   R_r  = b_r (v_r - exp(G_t(r)) kinv_r S^T k_r)                                    (fp32)
//   (I + A) N = R                                                                    (block forward substitution)
//   o_t  = scale qinv_t (exp(G_t) S^T q_t + sum_{s <= r_last(t)} exp(G_t - G_t(s)) kinv_s (q_t . k_s) N_s)
//   S   <- exp(G_last) S + sum_r exp(G_last - G_t(r)) kinv_r k_r N_r^T
// Transposed, every product has the value dimension as the M dimension, so S^T, R^T and N^T are A operands straight
// from their accumulators (chunked_common.cuh); K and Q (wgmma descriptors or ldmatrix), P = masked gated Q K^T, -A
// and the diagonal inverses (ldmatrix) are B operands in shared memory.
//
// Precision: the state is fp32 and every product accumulates in fp32. Tensor-core operands are rounded once to 16
// bits: S^T, P and N^T (for the output and the state update) to the input type T; the triangular solve runs in fp16
// (fp16 keeps 3 more mantissa bits than bf16 where the conditioning of I + A amplifies rounding), with R entering
// it in fp32 and the 16 x 16 diagonal blocks of (I + A)^-1 computed in fp32 by forward substitution. Corrected
// values |N| must stay below 65504 (fp16), which unit keys and beta <= 2 give for any sensible values. Gate factors
// are exp2 of differences of log2-unit cumulative gates (<= 1), on the special function unit (2^-22 relative).
//
// Schedule per chunk, 3 block barriers:
//   1. wait for the chunk; start copying the next one's keys (cp.async); key and query normalisers, cumulative gates;
//   2. Gram blocks spread over the warps (warps 0..3 first take a diagonal block and invert it); the next chunk's
//      queries; S^T K^T and S^T Q^T; R^T; the previous chunk's output to global memory;
//   3. the next chunk's values; per warp, no barrier: block forward substitution, output, state update.
#pragma once

// Experimental forward changes, off: timed on a GPU without a gain on their own (README, "Measured"), kept for
// combining with changes to come (bench/cuda/timeline_variant.sh builds the timeline with one on): the output staged
// by stmatrix.trans instead of one 16-bit store per element; the warp-specialised kernel's outputs written by the
// tensor memory accelerator from a swizzled staging tile (n_h = 1, 2, 4), which takes the write-out off the
// consumers' chain; its producer reading the key normalisers off K K^T for n_h = 1 too (gram_normalisers), which
// shortens the producer's.
#ifndef DELTAPRODUCT_EXPERIMENTAL_STMATRIX_OUTPUT
#define DELTAPRODUCT_EXPERIMENTAL_STMATRIX_OUTPUT 0
#endif
#ifndef DELTAPRODUCT_EXPERIMENTAL_TMA_OUTPUT
#define DELTAPRODUCT_EXPERIMENTAL_TMA_OUTPUT 0
#endif
#ifndef DELTAPRODUCT_EXPERIMENTAL_GRAM_NORMALISERS_NH1
#define DELTAPRODUCT_EXPERIMENTAL_GRAM_NORMALISERS_NH1 0
#endif
// Not yet timed: the warp-specialised producer loads each chunk's betas and gates one iteration ahead, straight into
// the registers it stores from, instead of two ahead through a rotation whose register copy waits for a load issued
// just before it (chunked_specialized_kernel.cuh, SpecializedChunkedKernel::scalars_one_ahead).
#ifndef DELTAPRODUCT_EXPERIMENTAL_SCALARS_ONE_AHEAD
#define DELTAPRODUCT_EXPERIMENTAL_SCALARS_ONE_AHEAD 0
#endif
// Not yet timed: the warp-specialised consumers give a stage back by mbarrier arrivals instead of a barrier of all of
// them (SpecializedChunkedKernel::stage_release_by_arrival); with the TMA output no consumer barrier is left mid-chunk.
#ifndef DELTAPRODUCT_EXPERIMENTAL_STAGE_RELEASE_BY_ARRIVAL
#define DELTAPRODUCT_EXPERIMENTAL_STAGE_RELEASE_BY_ARRIVAL 0
#endif
// Not yet timed: the forward's producer refills the key slots, so that the consumers' first warp no longer waits for
// all of them at the end of every chunk (SpecializedChunkedKernel::key_refill_by_producer).
#ifndef DELTAPRODUCT_EXPERIMENTAL_KEY_REFILL_BY_PRODUCER
#define DELTAPRODUCT_EXPERIMENTAL_KEY_REFILL_BY_PRODUCER 0
#endif
// Not yet timed: the fp32 diagonal blocks get 16-byte aligned rows (pitch 24 floats), written two entries at a time and
// read by the inversion four at a time: 39 broadcast loads a warp instead of 120
// (ChunkedKernel::invert_diagonal_block).
#ifndef DELTAPRODUCT_EXPERIMENTAL_VECTOR_INVERSE_LOADS
#define DELTAPRODUCT_EXPERIMENTAL_VECTOR_INVERSE_LOADS 0
#endif

// Phase timestamps for studying the schedule (bench/cuda/chunked_timeline.cu): a translation unit may define
// DELTAPRODUCT_TRACE(role, event, chunk) (role 0: consumer warps, 1: the warp-specialised kernel's producer) before
// including this header; by default it expands to nothing.
#ifndef DELTAPRODUCT_TRACE
#define DELTAPRODUCT_TRACE(role, event, chunk)
#endif

#include <cstddef>
#include <cstdint>

#include "deltaproduct/cuda/chunked_common.cuh"

namespace deltaproduct::detail::cuda_chunked {

constexpr int micro_steps_per_chunk = 64;  ///< L: the chunk's micro-steps, the GEMM tile of the chunk algebra

constexpr std::size_t round_up(std::size_t bytes, std::size_t alignment) {
  return (bytes + alignment - 1) / alignment * alignment;
}

/// Shared-memory map of the tensor-core kernel, in bytes. Tile rows are padded by 16 bytes so that ldmatrix's eight
/// 16-byte row reads fall in distinct banks.
template <class T, int KD, int VD, int NH>
struct TileLayout {
  static_assert(sizeof(T) == 2, "the tensor-core kernel takes 16-bit token data");
  static constexpr int L = micro_steps_per_chunk;
  static constexpr int C = L / NH;           ///< tokens per chunk
  static constexpr int valid_rows = C * NH;  ///< micro-step rows holding data (63 for n_h = 3)
  static constexpr int query_rows = (C + 15) / 16 * 16;
  static constexpr int value_pitch = VD + 8, step_pitch = L + 8, diagonal_pitch = 24;
  /// Floats per row of the fp32 diagonal blocks A_ii: 17 keeps the lanes' scalar stores in distinct banks; 24 makes
  /// rows 16-byte aligned for the inversion's vector loads, and the quads' 8-byte stores stay conflict-free.
  static constexpr int block_pitch = DELTAPRODUCT_EXPERIMENTAL_VECTOR_INVERSE_LOADS ? 24 : 17;
  static constexpr int warps = VD / 16;
  static constexpr int threads = 32 * warps;

  // One stage of chunk inputs; two stages alternate (the next chunk loads while this one is computed).
  static constexpr std::size_t keys = 0;                                   ///< T [L][KD], core-matrix blocked
  static constexpr std::size_t values = round_up(keys + 2 * L * KD, 128);  ///< T [L][value_pitch]
  static constexpr std::size_t queries = round_up(values + 2 * L * value_pitch, 128);  ///< T [query_rows][KD], blocked
  static constexpr std::size_t betas = round_up(queries + 2 * query_rows * KD, 128);   ///< float [L]
  static constexpr std::size_t gates = betas + sizeof(float) * L;                      ///< float [L]: g per token
  static constexpr std::size_t stage_bytes = round_up(gates + sizeof(float) * L, 128);

  // Per-chunk work tiles.
  static constexpr std::size_t diagonal_blocks = 2 * stage_bytes;  ///< float [4][16][block_pitch]: A_ii, strictly lower
  static constexpr std::size_t negated_a =
      round_up(diagonal_blocks + sizeof(float) * 4 * 16 * block_pitch, 128);  ///< half [L][step_pitch]
  static constexpr std::size_t diagonal_inverses = round_up(negated_a + 2 * L * step_pitch, 128);  ///< half [4][16][24]
  static constexpr std::size_t readout =
      round_up(diagonal_inverses + 2 * 4 * 16 * diagonal_pitch, 128);  ///< T [query_rows][step_pitch]
  static constexpr std::size_t output =
      round_up(readout + 2 * query_rows * step_pitch, 128);  ///< T [query_rows][value_pitch]
  static constexpr std::size_t partial_output =
      round_up(output + 2 * query_rows * value_pitch, 128);  ///< float4 [warps][query_rows / 8][32]: S^T Q^T per thread
  static constexpr std::size_t key_scales =
      round_up(partial_output + 16 * warps * (query_rows / 8) * 32, 128);      ///< float [L]
  static constexpr std::size_t query_scales = key_scales + sizeof(float) * L;  ///< float [L]
  static constexpr std::size_t log2_gates = query_scales + sizeof(float) * L;  ///< float [L]: G_t log2(e)
  static constexpr std::size_t bytes = round_up(log2_gates + sizeof(float) * L, 128);
};

/// One chunk's preamble, everything the chain on the state reads besides the chunk's inputs: -A below the diagonal
/// blocks, the diagonal inverses, the readout P, then the key and query scales and the log2-unit cumulative gates.
/// The warp-specialised kernel's per-chunk sets have this layout; the one-role kernel holds the tiles at the same
/// distances from TileLayout::negated_a and the scales at TileLayout::key_scales. The chunked backward may keep one
/// per chunk (CudaBackend::keep_preambles) so that its reverse scan loads it instead of rebuilding it.
template <int NH>
struct PreambleLayout {
  static constexpr int L = micro_steps_per_chunk, QR = (L / NH + 15) / 16 * 16, LP = L + 8, DP = 24;
  static constexpr std::size_t negated_a = 0;                                                 ///< half [L][LP]
  static constexpr std::size_t diagonal_inverses = round_up(negated_a + 2 * L * LP, 128);     ///< half [4][16][DP]
  static constexpr std::size_t readout = round_up(diagonal_inverses + 2 * 4 * 16 * DP, 128);  ///< 16-bit [QR][LP]
  static constexpr std::size_t key_scales = round_up(readout + 2 * QR * LP, 128);             ///< float [L]
  static constexpr std::size_t query_scales = key_scales + sizeof(float) * L;                 ///< float [L]
  static constexpr std::size_t log2_gates = query_scales + sizeof(float) * L;                 ///< float [L]
  static constexpr std::size_t bytes = round_up(log2_gates + sizeof(float) * L, 128);
};

/// Bytes of one kept preamble for n_h Householder steps per token (1..4).
inline constexpr std::size_t preamble_bytes(int householder_steps) {
  switch (householder_steps) {
    case 1: return PreambleLayout<1>::bytes;
    case 2: return PreambleLayout<2>::bytes;
    case 3: return PreambleLayout<3>::bytes;
    default: return PreambleLayout<4>::bytes;
  }
}

/// Last micro-step of token t: the output of t is read after it.
template <int NH>
__host__ __device__ constexpr int last_step_of(int token) {
  return (token + 1) * NH - 1;
}

/// Whether any (token, step) pair of the token rows [first_token, first_token + rows) x steps [first_step, +16)
/// is causal (step <= last_step_of(token)) for a chunk of C tokens.
template <int NH, int C>
__host__ __device__ constexpr bool readout_block_used(int first_token, int rows, int first_step) {
  if (first_token >= C) return false;
  const int last_token = first_token + rows - 1 < C - 1 ? first_token + rows - 1 : C - 1;
  return first_step <= last_step_of<NH>(last_token);
}

/// The warp that computes Gram job `job` (jobs 0..3 are the diagonal blocks of warps 0..3): the least loaded one so
/// far, counting a diagonal block with its inversion as two jobs. Warps 4.. first catch up by two jobs each, then
/// all take turns.
template <int NW>
__host__ __device__ constexpr int gram_job_owner(int job) {
  if (job < 4) return job;
  const int extra = job - 4, catch_up = 2 * (NW - 4);
  if constexpr (NW == 4)
    return extra % NW;
  else
    return extra < catch_up ? 4 + extra % (NW - 4) : (extra - catch_up) % NW;
}

/// How the chunk's key, query and value tiles lie in shared memory, for the code that addresses them. This kernel's
/// own: keys and queries as core matrices row block after row block (ChunkedKernel::blocked), values row-major with
/// `VP` elements per row. `rows` is the tile's row count (L for keys, the query rows for queries).
template <int KD, int VP>
struct BlockedTiling {
  /// Lanes that share a row where a row is read whole (4: neighbouring lanes read neighbouring pieces, no conflicts).
  static constexpr int lanes_per_row = 4;
  /// Byte offset of the 16-byte piece `piece` (elements 8 piece .. 8 piece + 7) of row `row`.
  __host__ __device__ static constexpr std::uint32_t piece(int /*rows*/, int row, int piece) {
    return static_cast<std::uint32_t>(((row / 8) * (KD / 8) + piece) * 128 + (row % 8) * 16);
  }
  /// wgmma descriptor of k step kk (elements 16 kk .. 16 kk + 15) of a key or query tile read K-major.
  __device__ static std::uint64_t k_major(std::uint32_t tile, int rows, int kk) {
    return wgmma_descriptor(tile + piece(rows, 0, 2 * kk), 128, KD * 16);
  }
  /// wgmma descriptor of the rows 16 ks .. 16 ks + 15 of a key tile read N-major (k = row, n = key).
  __device__ static std::uint64_t n_major(std::uint32_t tile, int rows, int ks) {
    return wgmma_descriptor(tile + piece(rows, 16 * ks, 0), KD * 16, 128);
  }
  /// Lane `lane`'s ldmatrix row address (byte offset) for the 16 x 16 value block at rows 16 rb, columns 16 cb.
  __device__ static std::uint32_t value_block(int lane, int rb, int cb) {
    const int row = 16 * rb + lane % 8 + 8 * (lane / 16), column = 16 * cb + 8 * ((lane / 8) % 2);
    return static_cast<std::uint32_t>(2 * (row * VP + column));
  }
};

/// What prepare_scales() makes: every key and query normaliser and the gates, or (the warp-specialised producer, which
/// takes the key normalisers from K K^T's diagonal) the query normalisers and the gates.
enum class ScaleRows { all, queries_and_gates };

/// A hook that does nothing (the default of ChunkedKernel::chunk_solve_and_update's).
struct NoStep {
  __device__ __forceinline__ void operator()() const {}
};

template <class T, int KD, int VD, int NH, bool Gated>
struct ChunkedKernel {
  using Layout = TileLayout<T, KD, VD, NH>;
  static constexpr int L = Layout::L, C = Layout::C, NW = Layout::warps;
  static constexpr int VP = Layout::value_pitch, LP = Layout::step_pitch;
  static constexpr int DP = Layout::diagonal_pitch, QR = Layout::query_rows;
  static constexpr float log2e = 1.4426950408889634f;

  static_assert(KD == 64 || KD == 128, "the tensor-core kernel takes K in {64, 128}");
  static_assert(VD == 64 || VD == 128, "the tensor-core kernel takes V in {64, 128}");
  static_assert(NH >= 1 && C >= 1, "the tensor-core kernel needs n_h <= 64");
  static_assert(NW >= 4, "the four diagonal blocks go to four warps");

  /// One stage of chunk inputs: generic pointers for ordinary accesses.
  struct Stage {
    T* keys;
    T* values;
    T* queries;
    float* betas;
    float* gates;
  };

  /// Shared-space byte addresses (ldmatrix operands) of the tiles a chunk reads, derived from an opaque base.
  struct Tiles {
    std::uint32_t keys, values, queries, negated_a, diagonal_inverses, readout;
  };

  /// threadIdx.x, laundered so that the compiler recomputes what derives from it where it is used instead of
  /// hoisting one register per derived value out of the chunk loop (registers are what this kernel is short of).
  static __device__ __forceinline__ int thread_index() {
    unsigned int tid = threadIdx.x;
    asm volatile("" : "+r"(tid));
    return static_cast<int>(tid);
  }

  /// The lane's position in mma fragments: quad = lane % 4 picks columns 2 quad + 0..1 of a C tile; rows
  /// value_row and value_row + 8 of S^T are the thread's.
  static __device__ __forceinline__ int quad() { return thread_index() % 4; }
  static __device__ __forceinline__ int value_row() { return 16 * (thread_index() / 32) + thread_index() % 32 / 4; }

  /// Byte offset of lane l's row address for ldmatrix_x4 in a padded row-major tile of 16-bit elements with row pitch
  /// `pitch`, reading matrices (rows 0-7, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols 0-7), (8-15, 8-15): the
  /// B fragments of two n tiles from a tile whose rows are n (columns k), or, transposed, a 16 x 16 tile in the
  /// accumulator layout (V^T).
  static __device__ __forceinline__ std::uint32_t columns_then_rows(int pitch) {
    const int lane = thread_index() % 32;
    return static_cast<std::uint32_t>(2 * ((lane % 8 + 8 * (lane / 16)) * pitch + 8 * ((lane / 8) % 2)));
  }
  /// Keys and queries are stored as core matrices (8 rows x 8 elements, 128 contiguous bytes), row block after row
  /// block: the layout wgmma reads without swizzling, and one where ldmatrix's eight 16-byte rows never share a bank.
  /// Byte offset of the 16-byte piece `piece` (elements 8 piece .. 8 piece + 7) of row `row`:
  __host__ __device__ static constexpr std::uint32_t blocked(int row, int piece) {
    return static_cast<std::uint32_t>(((row / 8) * (KD / 8) + piece) * 128 + (row % 8) * 16);
  }
  /// Lane l's ldmatrix_x4 row address in a blocked tile: a 16 x 16 A fragment from rows (matrices rows 0-7 / 8-15 x
  /// pieces 0 / 1, rows first); the B fragments of two n tiles from rows n (as columns_then_rows); transposed, the B
  /// fragments of two n tiles from rows k.
  static __device__ __forceinline__ std::uint32_t blocked_rows_then_columns() {
    const int lane = thread_index() % 32;
    return blocked(lane % 16, lane / 16);
  }
  static __device__ __forceinline__ std::uint32_t blocked_columns_then_rows() {
    const int lane = thread_index() % 32;
    return blocked(lane % 8 + 8 * (lane / 16), (lane / 8) % 2);
  }
  static __device__ __forceinline__ std::uint32_t blocked_transposed_b() {
    const int lane = thread_index() % 32;
    return blocked(lane % 8 + 8 * ((lane / 8) % 2), lane / 16);
  }

  /// Byte offset of element (row, column) in a tile of 16-bit elements.
  __host__ __device__ static constexpr std::uint32_t at(int row, int column, int pitch) {
    return static_cast<std::uint32_t>(2 * (row * pitch + column));
  }

  static __device__ __forceinline__ Stage stage_at(unsigned char* smem, int index) {
    unsigned char* base = smem + static_cast<std::size_t>(index) * Layout::stage_bytes;
    return {reinterpret_cast<T*>(base + Layout::keys), reinterpret_cast<T*>(base + Layout::values),
            reinterpret_cast<T*>(base + Layout::queries), reinterpret_cast<float*>(base + Layout::betas),
            reinterpret_cast<float*>(base + Layout::gates)};
  }

  static __device__ __forceinline__ Tiles tiles_at(std::uint32_t base, int stage_index) {
    const std::uint32_t stage = base + static_cast<std::uint32_t>(stage_index * Layout::stage_bytes);
    return {stage + static_cast<std::uint32_t>(Layout::keys),
            stage + static_cast<std::uint32_t>(Layout::values),
            stage + static_cast<std::uint32_t>(Layout::queries),
            base + static_cast<std::uint32_t>(Layout::negated_a),
            base + static_cast<std::uint32_t>(Layout::diagonal_inverses),
            base + static_cast<std::uint32_t>(Layout::readout)};
  }

  /// The beta or gate of a thread for the next chunk, in flight from global memory. It stays raw until it is stored,
  /// so that no instruction waits for the load before the end of the current chunk.
  struct PendingScalar {
    T raw;
    bool valid;
  };

  /// The parts of a chunk's token data, copied at different points of the previous chunk: issuing a copy stalls
  /// once the memory system is saturated, so a whole chunk issued at once would hold every warp for thousands of
  /// cycles, while the same bytes spread over the chunk's phases are absorbed.
  enum class ChunkPart { keys, queries, values };

  /// Starts the asynchronous copy of one part of chunk `chunk` into `stage` (rows past the sequence are zero-filled)
  /// as its own commit group, spread over `Threads` threads of which this is number `tid`.
  template <ChunkPart Part, int Threads = Layout::threads>
  static __device__ __forceinline__ void copy_chunk_part(const ChunkedParams<T>& p, const SequenceSpan& span, int head,
                                                         index_t chunk, const Stage& stage, int tid = thread_index()) {
    const index_t first_token = chunk * C, length = span.end - span.begin;
    const index_t first_step = first_token * NH, steps = length * NH;
    const index_t step_base = span.begin * NH;
    constexpr int key_pieces = KD / 8, value_pieces = VD / 8;  // 16-byte pieces per row
    static_assert(Threads % key_pieces == 0 && Threads % value_pieces == 0, "a round of threads covers whole rows");
    // The chunk's first rows (always inside the sequence); rows then follow at the views' token strides.
    if constexpr (Part == ChunkPart::keys) {
      const T* const key_rows = &p.k(span.row, step_base + first_step, head, 0);
#pragma unroll
      for (int i = 0; i < (L * key_pieces + Threads - 1) / Threads; ++i) {
        const int r = tid / key_pieces + i * (Threads / key_pieces), piece = tid % key_pieces;  // whole rows a round
        if (r >= L) break;
        const bool valid = r < Layout::valid_rows && first_step + r < steps;
        const T* source = valid ? key_rows + r * p.k.strides[1] + piece * 8 : p.k.data;
        copy_async_16(reinterpret_cast<unsigned char*>(stage.keys) + blocked(r, piece), source, valid);
      }
    } else if constexpr (Part == ChunkPart::values) {
      const T* const value_rows = &p.v(span.row, step_base + first_step, head, 0);
#pragma unroll
      for (int i = 0; i < (L * value_pieces + Threads - 1) / Threads; ++i) {
        const int r = tid / value_pieces + i * (Threads / value_pieces), piece = tid % value_pieces;  // whole rows a round
        if (r >= L) break;
        const bool valid = r < Layout::valid_rows && first_step + r < steps;
        const T* source = valid ? value_rows + r * p.v.strides[1] + piece * 8 : p.v.data;
        copy_async_16(stage.values + r * VP + piece * 8, source, valid);
      }
    } else {
      const T* const query_rows = &p.q(span.row, span.begin + first_token, head, 0);
#pragma unroll
      for (int i = 0; i < (QR * key_pieces + Threads - 1) / Threads; ++i) {
        const int t = tid / key_pieces + i * (Threads / key_pieces), piece = tid % key_pieces;  // whole rows a round
        if (t >= QR) break;
        const bool valid = t < C && first_token + t < length;
        const T* source = valid ? query_rows + t * p.q.strides[1] + piece * 8 : p.q.data;
        copy_async_16(reinterpret_cast<unsigned char*>(stage.queries) + blocked(t, piece), source, valid);
      }
    }
    copy_async_commit();
  }

  /// The load of chunk `chunk`'s betas (threads 0..L-1) and gates (threads L..2L-1); store_scalars() puts them in
  /// its stage once the stage is free.
  static __device__ __forceinline__ PendingScalar load_scalars(const ChunkedParams<T>& p, const SequenceSpan& span,
                                                               int head, index_t chunk, int tid = thread_index()) {
    const index_t first_token = chunk * C, length = span.end - span.begin;
    const index_t first_step = first_token * NH, steps = length * NH;
    const index_t step_base = span.begin * NH;
    PendingScalar next{T{}, false};
    if (tid < L) {
      next.valid = tid < Layout::valid_rows && first_step + tid < steps;
      // Invalid slots read the first element (present whenever a chunk is) and are stored as 0.
      next.raw = *(next.valid ? &p.beta(span.row, step_base + first_step + tid, head) : p.beta.data);
    } else if constexpr (Gated) {
      if (tid < 2 * L) {
        const int t = tid - L;
        next.valid = t < C && first_token + t < length;
        next.raw = *(next.valid ? &p.g(span.row, span.begin + first_token + t, head) : p.g.data);
      }
    }
    return next;
  }

  /// Stores the betas and gates of load_scalars() into `stage` (zero past the chunk's data).
  static __device__ __forceinline__ void store_scalars(const Stage& stage, const PendingScalar& next,
                                                       int tid = thread_index()) {
    const float value = next.valid ? to_float(next.raw) : 0.0f;
    if (tid < L)
      stage.betas[tid] = value;
    else if (tid < 2 * L)
      stage.gates[tid - L] = value;
  }

  /// Key and query normalisers (the readout scale folded into the latter) and the gates' chunk-local cumulative
  /// sums, in log2 units, of the chunk in `stage`. Tiling::lanes_per_row lanes share a row (16-byte reads, then
  /// shuffles), so all rows are summed at once instead of one after the other; `Threads` threads take part, this one
  /// is number `tid`; `Rows` says which rows.
  template <int Threads = Layout::threads, class Tiling = BlockedTiling<KD, Layout::value_pitch>,
            ScaleRows Rows = ScaleRows::all>
  static __device__ __forceinline__ void prepare_scales(const ChunkedParams<T>& p, const Stage& stage,
                                                        float* key_scales, float* query_scales, float* log2_gates,
                                                        int tid = thread_index()) {
    static_assert(Threads % 32 == 0 && Threads >= 64, "prepare_scales runs on whole warps, at least two");
    const int warp = tid / 32, lane = tid % 32;
    constexpr int lanes_per_row = Tiling::lanes_per_row, pieces = KD / 8 / lanes_per_row;  // 16-byte pieces per lane
    constexpr int rows_per_pass = Threads / lanes_per_row;
    constexpr int first_row = Rows == ScaleRows::all ? 0 : L;  // rows: keys (0 .. L - 1), then queries
    constexpr int passes = (L + QR - first_row + rows_per_pass - 1) / rows_per_pass;
    const bool normalize_keys = p.key_norm != NormCode::none, normalize_queries = p.query_norm != NormCode::none;
#pragma unroll
    for (int pass = 0; pass < passes; ++pass) {
      const int row = first_row + pass * rows_per_pass + tid / lanes_per_row;  // keys, then queries
      const bool is_key = row < L, in_range = row < L + QR;
      const unsigned char* data = reinterpret_cast<const unsigned char*>(is_key ? stage.keys : stage.queries);
      const int tile_row = is_key ? row : row - L, tile_rows = is_key ? L : QR;
      // Eight partial sums, one per element of a piece: a single one made the row's sum a chain of KD / 2 dependent
      // adds on the producer's path to its Gram epilogue.
      float partial[8] = {};
      if (in_range && (is_key ? normalize_keys : normalize_queries)) {
#pragma unroll
        for (int i = 0; i < pieces; ++i) {
          // Piece lane + lanes_per_row i of the row.
          const uint4 raw = *reinterpret_cast<const uint4*>(
              data + Tiling::piece(tile_rows, tile_row, tid % lanes_per_row + lanes_per_row * i));
          const std::uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
          for (int w = 0; w < 4; ++w) {
            const float2 pair = unpack2<T>(words[w]);
            partial[2 * w] = fmaf(pair.x, pair.x, partial[2 * w]);
            partial[2 * w + 1] = fmaf(pair.y, pair.y, partial[2 * w + 1]);
          }
        }
      }
      float sum_of_squares = ((partial[0] + partial[1]) + (partial[2] + partial[3])) +
                             ((partial[4] + partial[5]) + (partial[6] + partial[7]));
#pragma unroll
      for (int offset = 1; offset < lanes_per_row; offset *= 2)
        sum_of_squares += __shfl_xor_sync(0xffffffffu, sum_of_squares, offset);
      if (in_range && tid % lanes_per_row == 0) {
        if (is_key)
          key_scales[row] = inverse_norm(sum_of_squares, p.key_norm, p.eps);
        else
          query_scales[row - L] = p.scale * inverse_norm(sum_of_squares, p.query_norm, p.eps);
      }
    }
    if constexpr (Gated) {
      // Inclusive scan of the L gate slots (zero past the chunk's tokens), two consecutive tokens per lane.
      if (warp == Threads / 32 - 1) {
        const float first = stage.gates[2 * lane], second = stage.gates[2 * lane + 1];
        const float pair = first + second;
        float inclusive = pair;
#pragma unroll
        for (int offset = 1; offset < 32; offset *= 2) {
          const float y = __shfl_up_sync(0xffffffffu, inclusive, offset);
          if (lane >= offset) inclusive += y;
        }
        const float exclusive = inclusive - pair;
        log2_gates[2 * lane] = (exclusive + first) * log2e;
        log2_gates[2 * lane + 1] = inclusive * log2e;
      }
    }
  }

  /// exp(G_a - G_b) from the log2-unit cumulative gates (<= 1 for a >= b: never a ratio of exponentials).
  static __device__ __forceinline__ float gate_between(const float* log2_gates, int token_a, int token_b) {
    if constexpr (Gated)
      return fast_exp2(log2_gates[token_a] - log2_gates[token_b]);
    else
      return 1.0f;
  }
  /// exp(G_a): the decay from the chunk's start to token a.
  static __device__ __forceinline__ float gate_from_start(const float* log2_gates, int token) {
    if constexpr (Gated)
      return fast_exp2(log2_gates[token]);
    else
      return 1.0f;
  }

  /// `Blocks` (1 or 2) neighbouring 16 x 16 blocks of K K^T (Query = false; rows and columns are micro-steps) or
  /// Q K^T (Query = true; rows are tokens), columns from 16 col_block, inner dimension K, with their epilogue: the
  /// strictly lower, gated, beta- and norm-scaled A (fp32 for diagonal blocks, negated fp16 below them), or the
  /// causal, gated, scaled readout matrix P (type T). Two blocks share the row fragments, and their four independent
  /// accumulator chains fill the tensor pipe where one block's two would wait on each other.
  template <bool Query, int Blocks = 1>
  static __device__ __forceinline__ void gram_block(const Stage& stage, const Tiles& tiles, int row_block,
                                                    int col_block, float* diagonal_blocks, __half* negated_a,
                                                    T* readout, const float* key_scales, const float* query_scales,
                                                    const float* log2_gates) {
    static_assert(Blocks == 1 || Blocks == 2, "a Gram job covers one or two blocks");
    const std::uint32_t rows =
        (Query ? tiles.queries : tiles.keys) + blocked_rows_then_columns() + blocked(16 * row_block, 0);
    const std::uint32_t cols = tiles.keys + blocked_columns_then_rows() + blocked(16 * col_block, 0);
    float acc[2 * Blocks][4] = {};
#pragma unroll
    for (int kk = 0; kk < KD / 16; ++kk) {
      std::uint32_t a[4];
      ldmatrix_x4(a, rows + blocked(0, 2 * kk));
#pragma unroll
      for (int blk = 0; blk < Blocks; ++blk) {
        std::uint32_t b[4];
        ldmatrix_x4(b, cols + blocked(16 * blk, 2 * kk));
        mma_16x8x16<T>(acc[2 * blk], a, b[0], b[1]);
        mma_16x8x16<T>(acc[2 * blk + 1], a, b[2], b[3]);
      }
    }
    store_gram_tiles<Query, 2 * Blocks>(acc, stage, row_block, col_block, diagonal_blocks, negated_a, readout,
                                        key_scales, query_scales, log2_gates);
  }

  /// The epilogue of a Gram job: `Tiles` accumulator tiles (mma.sync's C layout; tile n holds columns 16 col_block +
  /// 8 n .. + 7 of row block `row_block`) scaled, masked and stored as gram_block() says. A diagonal block goes to
  /// `diagonal_blocks` only when Tiles == 2.
  template <bool Query, int Tiles>
  static __device__ __forceinline__ void store_gram_tiles(const float (*acc)[4], const Stage& stage, int row_block,
                                                          int col_block, float* diagonal_blocks, __half* negated_a,
                                                          T* readout, const float* key_scales,
                                                          const float* query_scales, const float* log2_gates) {
    const int lane = thread_index() % 32, group = lane / 4, quad = lane % 4;
    // Every factor is loaded before the first store (stores to shared memory would otherwise make the compiler
    // reload them): per row the beta and key normaliser (or the query scale) and the cumulative gate, per column the
    // key normaliser and the cumulative gate.
    float row_factor[2], row_gate[2] = {}, column_factor[Tiles][2], column_gate[Tiles][2] = {};
#pragma unroll
    for (int half_row = 0; half_row < 2; ++half_row) {
      const int row = 16 * row_block + group + 8 * half_row;
      if constexpr (Query) {
        row_factor[half_row] = row < C ? query_scales[row] : 0.0f;
        if constexpr (Gated) row_gate[half_row] = log2_gates[row];
      } else {
        row_factor[half_row] = stage.betas[row] * key_scales[row];
        if constexpr (Gated) row_gate[half_row] = log2_gates[row / NH];
      }
    }
#pragma unroll
    for (int n = 0; n < Tiles; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int s = 16 * col_block + 8 * n + 2 * quad + e;
        column_factor[n][e] = key_scales[s];
        if constexpr (Gated) column_gate[n][e] = log2_gates[s / NH];
      }
#pragma unroll
    for (int n = 0; n < Tiles; ++n)
#pragma unroll
      for (int half_row = 0; half_row < 2; ++half_row) {
        const int row = 16 * row_block + group + 8 * half_row;
        const int col = 16 * col_block + 8 * n + 2 * quad;
        float value[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int s = col + e;
          const bool kept = Query ? row < C && s <= last_step_of<NH>(row) : s < row;
          // exp(G_row - G_s) <= 1 where kept: a difference of cumulative gates, never a ratio of exponentials.
          const float gate = Gated ? fast_exp2(row_gate[half_row] - column_gate[n][e]) : 1.0f;
          value[e] = kept ? row_factor[half_row] * column_factor[n][e] * gate * acc[n][2 * half_row + e] : 0.0f;
        }
        if constexpr (Query) {
          *reinterpret_cast<std::uint32_t*>(readout + row * LP + col) = pack2<T>(value[0], value[1]);
        } else if (Tiles == 2 && row_block == col_block) {
          if constexpr (Layout::block_pitch % 2 == 0) {
            constexpr int BP = Layout::block_pitch;
            *reinterpret_cast<float2*>(diagonal_blocks + (row_block * 16 + group + 8 * half_row) * BP + 8 * n +
                                       2 * quad) = make_float2(value[0], value[1]);
          } else {
            float* block = diagonal_blocks + row_block * 16 * 17 + (group + 8 * half_row) * 17 + 8 * n + 2 * quad;
            block[0] = value[0];
            block[1] = value[1];
          }
        } else {
          *reinterpret_cast<std::uint32_t*>(negated_a + row * LP + col) = pack2<__half>(-value[0], -value[1]);
        }
      }
  }

  /// (I + A_ii)^-1 for the strictly lower 16 x 16 block i, by forward substitution in fp32, one column per lane;
  /// stored in fp16 as a B operand. Called by the warp that just wrote the block.
  static __device__ __forceinline__ void invert_diagonal_block(int block, const float* diagonal_blocks,
                                                               __half* diagonal_inverses) {
    const int lane = thread_index() % 32;
    if (lane >= 16) return;
    // Forward substitution, one row of the lane's column at a time. Row r + 1's entries of A are loaded while row r
    // is summed (their latency hides behind its products), and no further ahead: the compiler would otherwise load
    // all 120 entries into registers at once. Four partial sums shorten each row's dependent chain.
    float x[16];
    x[0] = lane == 0 ? 1.0f : 0.0f;
    if constexpr (Layout::block_pitch % 4 == 0) {
      // 16-byte rows: the entries come four at a time (every lane reads the same ones: one broadcast a load), 39
      // loads instead of 120; a row's last load may bring its diagonal and zeros above it, never used.
      constexpr int BP = Layout::block_pitch;
      const float* a = diagonal_blocks + block * 16 * BP;
      float row[16], next[16];
      const auto load_row = [&](int r) {  // entries 0 .. r - 1 of row r into next
#pragma unroll
        for (int q = 0; q < (r + 3) / 4; ++q) {
          const float4 four = *reinterpret_cast<const float4*>(a + r * BP + 4 * q);
          next[4 * q] = four.x, next[4 * q + 1] = four.y, next[4 * q + 2] = four.z, next[4 * q + 3] = four.w;
        }
      };
      load_row(1);
#pragma unroll
      for (int r = 1; r < 16; ++r) {
#pragma unroll
        for (int s = 0; s < r; ++s) row[s] = next[s];
        if (r + 1 < 16) load_row(r + 1);
        asm volatile("" ::: "memory");
        float partial[4] = {r == lane ? 1.0f : 0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int s = 0; s < r; ++s) partial[s % 4] -= row[s] * x[s];
        x[r] = (partial[0] + partial[1]) + (partial[2] + partial[3]);
      }
    } else {
      const float* a = diagonal_blocks + block * 16 * 17;
      float row[15], next[15];
      next[0] = a[17];
#pragma unroll
      for (int r = 1; r < 16; ++r) {
#pragma unroll
        for (int s = 0; s < r; ++s) row[s] = next[s];
        if (r + 1 < 16) {
#pragma unroll
          for (int s = 0; s <= r; ++s) next[s] = a[(r + 1) * 17 + s];
        }
        asm volatile("" ::: "memory");
        float partial[4] = {r == lane ? 1.0f : 0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int s = 0; s < r; ++s) partial[s % 4] -= row[s] * x[s];
        x[r] = (partial[0] + partial[1]) + (partial[2] + partial[3]);
      }
    }
    __half* inverse = diagonal_inverses + block * 16 * DP;
#pragma unroll
    for (int r = 0; r < 16; ++r) inverse[r * DP + lane] = __float2half_rn(x[r]);
  }

  /// The warps share the Gram blocks: first the 4 diagonal blocks of K K^T (warps 0..3, each inverting its block
  /// right away), then the 6 blocks below them and the causal blocks of Q K^T, in pairs, each to the least loaded
  /// warp.
  static __device__ __forceinline__ void gram_blocks(const Stage& stage, const Tiles& tiles, float* diagonal_blocks,
                                                     __half* negated_a, T* readout, __half* diagonal_inverses,
                                                     const float* key_scales, const float* query_scales,
                                                     const float* log2_gates) {
    const int warp = thread_index() / 32;
    if (warp < 4) {
      gram_block<false>(stage, tiles, warp, warp, diagonal_blocks, negated_a, readout, key_scales, query_scales,
                        log2_gates);
      __syncwarp();
      invert_diagonal_block(warp, diagonal_blocks, diagonal_inverses);
      __syncwarp();
    }
    // Below the diagonal and in P, neighbouring blocks of a row go in pairs.
    int job = 4;
#pragma unroll
    for (int i = 1; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < i; j += 2) {
        if (gram_job_owner<NW>(job) == warp) {
          if (j + 1 < i)
            gram_block<false, 2>(stage, tiles, i, j, diagonal_blocks, negated_a, readout, key_scales, query_scales,
                                 log2_gates);
          else
            gram_block<false, 1>(stage, tiles, i, j, diagonal_blocks, negated_a, readout, key_scales, query_scales,
                                 log2_gates);
        }
        ++job;
      }
#pragma unroll
    for (int tb = 0; tb < QR / 16; ++tb)
#pragma unroll
      for (int sb = 0; sb < 4; sb += 2)
        if (readout_block_used<NH, C>(16 * tb, 16, 16 * sb)) {  // causal: a used block's left neighbours are used
          if (gram_job_owner<NW>(job) == warp) {
            if (readout_block_used<NH, C>(16 * tb, 16, 16 * (sb + 1)))
              gram_block<true, 2>(stage, tiles, tb, sb, diagonal_blocks, negated_a, readout, key_scales, query_scales,
                                  log2_gates);
            else
              gram_block<true, 1>(stage, tiles, tb, sb, diagonal_blocks, negated_a, readout, key_scales, query_scales,
                                  log2_gates);
          }
          ++job;
        }
  }

  /// S^T for key block kk as a 16-bit A fragment.
  static __device__ __forceinline__ void state_fragment(const float (&state)[KD / 8][4], int kk,
                                                        std::uint32_t (&a)[4]) {
    accumulators_to_fragment<T>(state[2 * kk], state[2 * kk + 1], a);
  }

  /// work = S^T K^T and out = S^T Q^T (64 x L and 64 x QR per warpgroup, inner dimension K): wgmma with the state
  /// as the register operand where the build targets sm_90a, mma.sync otherwise.
  template <class Tiling = BlockedTiling<KD, Layout::value_pitch>>
  static __device__ __forceinline__ void state_products(const float (&state)[KD / 8][4], const Tiles& tiles,
                                                        float (&work)[L / 8][4], float (&out)[QR / 8][4]) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    // One register fragment per k step: wgmma reads them asynchronously, so none may be overwritten before the wait
    // (with one reused fragment the assembler would serialise the wgmmas).
    std::uint32_t a[KD / 16][4];
#pragma unroll
    for (int kk = 0; kk < KD / 16; ++kk) state_fragment(state, kk, a[kk]);
    pin_registers(work);
    pin_registers(out);
    wgmma_fence();
    // One group: waiting for S^T K^T alone would keep the 32 registers of `a` in flight through R^T, and the consumers
    // would spill.
#pragma unroll
    for (int kk = 0; kk < KD / 16; ++kk) {
      // K-major B: 16-byte pieces 2 kk, 2 kk + 1 of every row.
      wgmma_async<T, 0>(work, a[kk], Tiling::k_major(tiles.keys, L, kk));
      wgmma_async<T, 0>(out, a[kk], Tiling::k_major(tiles.queries, QR, kk));
    }
    wgmma_commit();
    wgmma_wait_all();
    pin_registers(work);
    pin_registers(out);
#else
    const std::uint32_t keys = tiles.keys + blocked_columns_then_rows();
    const std::uint32_t queries = tiles.queries + blocked_columns_then_rows();
#pragma unroll
    for (int kk = 0; kk < KD / 16; ++kk) {
      std::uint32_t a[4];
      state_fragment(state, kk, a);
#pragma unroll
      for (int nb = 0; nb < L / 16; ++nb) {
        std::uint32_t b[4];
        ldmatrix_x4(b, keys + blocked(16 * nb, 2 * kk));
        mma_16x8x16<T>(work[2 * nb], a, b[0], b[1]);
        mma_16x8x16<T>(work[2 * nb + 1], a, b[2], b[3]);
      }
#pragma unroll
      for (int qb = 0; qb < QR / 16; ++qb) {
        std::uint32_t b[4];
        ldmatrix_x4(b, queries + blocked(16 * qb, 2 * kk));
        mma_16x8x16<T>(out[2 * qb], a, b[0], b[1]);
        mma_16x8x16<T>(out[2 * qb + 1], a, b[2], b[3]);
      }
    }
#endif
  }

  /// S^T += (scaled N^T) K, inner dimension L: wgmma on sm_90a (K read N-major), mma.sync otherwise. On sm_90a the
  /// wgmmas are only issued: state and update_values stay in flight until finish_state_update().
  template <class Tiling = BlockedTiling<KD, Layout::value_pitch>>
  static __device__ __forceinline__ void update_state(float (&state)[KD / 8][4], const Tiles& tiles,
                                                      const std::uint32_t (&update_values)[L / 16][4]) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    pin_registers(state);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < L / 16; ++ks)
      // N-major B (k = micro-step, n = key).
      wgmma_async<T, 1>(state, update_values[ks], Tiling::n_major(tiles.keys, L, ks));
    wgmma_commit();
#else
    const std::uint32_t keys = tiles.keys + blocked_transposed_b();
#pragma unroll
    for (int nb = 0; nb < KD / 16; ++nb)
#pragma unroll
      for (int ks = 0; ks < L / 16; ++ks) {
        std::uint32_t b[4];
        ldmatrix_x4_trans(b, keys + blocked(16 * ks, 2 * nb));
        mma_16x8x16<T>(state[2 * nb], update_values[ks], b[0], b[1]);
        mma_16x8x16<T>(state[2 * nb + 1], update_values[ks], b[2], b[3]);
      }
#endif
  }
  /// Waits for update_state()'s wgmmas (sm_90a; mma.sync has none in flight).
  static __device__ __forceinline__ void finish_state_update(float (&state)[KD / 8][4]) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    wgmma_wait<0>();
    pin_registers(state);
#else
    (void)state;
#endif
  }

  /// The summarize pass's transition CTAs (blockIdx.z = 1): identity start, values taken as zero, no output.
  static __device__ __forceinline__ bool is_transition(const ChunkedParams<T>& p) {
    return p.pass == SplitPass::summarize && blockIdx.z == 1;
  }
  static __device__ __forceinline__ bool writes_outputs(const ChunkedParams<T>& p) {
    return p.pass != SplitPass::summarize && p.o.present();
  }
  /// Whether the chunk tiles of the backward's state pass are kept: by the passes that run from the true state (a
  /// summary starts from zero or from the identity).
  static __device__ __forceinline__ bool keeps_chunks(const ChunkedParams<T>& p) {
    return p.chunk_states != nullptr && p.pass != SplitPass::summarize;
  }
  /// Whether the chunk preambles are kept too (CudaBackend::keep_preambles).
  static __device__ __forceinline__ bool keeps_preambles(const ChunkedParams<T>& p) {
    return keeps_chunks(p) && p.chunk_preambles != nullptr;
  }

  using Preamble = PreambleLayout<NH>;
  static_assert(Layout::diagonal_inverses - Layout::negated_a == Preamble::diagonal_inverses &&
                    Layout::readout - Layout::negated_a == Preamble::readout &&
                    Layout::query_scales - Layout::key_scales == Preamble::query_scales - Preamble::key_scales &&
                    Layout::log2_gates - Layout::key_scales == Preamble::log2_gates - Preamble::key_scales &&
                    Layout::negated_a % 16 == 0 && Layout::key_scales % 16 == 0,
                "the one-role kernel's per-chunk tiles sit as in a kept preamble");
  /// Copies the chunk's preamble from the one-role layout at `base` to kept tile `tile` (16 bytes per store).
  static __device__ __forceinline__ void store_preamble(const ChunkedParams<T>& p, index_t tile,
                                                        const unsigned char* base) {
    auto* const record = reinterpret_cast<uint4*>(p.chunk_preambles + tile * Preamble::bytes);
    const auto* const tiles = reinterpret_cast<const uint4*>(base + Layout::negated_a);
    const auto* const scales = reinterpret_cast<const uint4*>(base + Layout::key_scales);
    constexpr int tile_pieces = static_cast<int>(Preamble::key_scales / 16);
    constexpr int scale_pieces = static_cast<int>((Preamble::bytes - Preamble::key_scales) / 16);
    for (int i = thread_index(); i < tile_pieces + scale_pieces; i += Layout::threads)
      record[i] = i < tile_pieces ? tiles[i] : scales[i - tile_pieces];
  }

  /// Element (key, value) of slot `slot` of split `split` in a [N, H, splits, slots, K, V] split buffer.
  static __device__ __forceinline__ index_t split_index(const ChunkedParams<T>& p, index_t sequence, int head,
                                                        int split, int slot, int slots, int key, int value) {
    const index_t matrix = ((sequence * gridDim.y + head) * p.splits + split) * slots + slot;
    return (matrix * KD + key) * VD + value;
  }

  /// The chunks [first, end) a CTA runs: the split-th of `splits` equal runs of its sequence's chunks (a sequence of
  /// few chunks leaves later splits empty).
  struct ChunkRange {
    index_t first, end;
  };
  static __device__ __forceinline__ ChunkRange chunk_range(const ChunkedParams<T>& p, const SequenceSpan& span,
                                                           int split) {
    const index_t length = span.end - span.begin;
    const index_t all_chunks = (length + C - 1) / C, per_split = (all_chunks + p.splits - 1) / p.splits;
    const index_t first = min(split * per_split, all_chunks);
    return {first, min(first + per_split, all_chunks)};
  }
  /// Whether this CTA has nothing to do in the summarize pass: summaries serve splits 0 .. splits - 2, and split 0
  /// starts from the initial state, so it needs no transition.
  static __device__ __forceinline__ bool idle_summary(const ChunkedParams<T>& p, int split) {
    return p.pass == SplitPass::summarize && (split == p.splits - 1 || (is_transition(p) && split == 0));
  }

  /// The thread's S^T fragments from a K x V fp32 matrix in global memory, element (key, value) at
  /// matrix[key * key_stride + value * value_stride], the fragments' values from `value_offset` on (see
  /// load_start_state for the layout). Each source of a start or end state gets its own compact loop: a choice of
  /// source per element put every source's code (~4,000 instructions) in the way of each CTA's first and last chunk.
  static __device__ __forceinline__ void load_state_fragments(const float* matrix, index_t key_stride,
                                                              index_t value_stride, int value_offset,
                                                              float (&state)[KD / 8][4]) {
    const float* const own = matrix + (2 * quad()) * key_stride + (value_offset + value_row()) * value_stride;
#pragma unroll
    for (int j = 0; j < KD / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) state[j][e] = own[(8 * j + e % 2) * key_stride + 8 * (e / 2) * value_stride];
  }
  /// The thread's S^T fragments into such a matrix.
  static __device__ __forceinline__ void store_state_fragments(float* matrix, index_t key_stride, index_t value_stride,
                                                               int value_offset, const float (&state)[KD / 8][4]) {
    float* const own = matrix + (2 * quad()) * key_stride + (value_offset + value_row()) * value_stride;
#pragma unroll
    for (int j = 0; j < KD / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) own[(8 * j + e % 2) * key_stride + 8 * (e / 2) * value_stride] = state[j][e];
  }
  /// Fragments of the identity (K = V), or of zero.
  static __device__ __forceinline__ void fill_state_fragments(bool identity, int value_offset,
                                                              float (&state)[KD / 8][4]) {
#pragma unroll
    for (int j = 0; j < KD / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        state[j][e] = identity && 8 * j + 2 * quad() + e % 2 == value_offset + value_row() + 8 * (e / 2) ? 1.0f : 0.0f;
  }

  /// The state S^T at the CTA's first chunk, in the thread's accumulator fragments:
  /// state[j][e] = S(key = 8 j + 2 quad + e % 2, v = value_row + 8 (e / 2)), the C layout of S^T (v x key).
  static __device__ __forceinline__ void load_start_state(const ChunkedParams<T>& p, index_t sequence, int head,
                                                          int split, float (&state)[KD / 8][4]) {
    if (p.pass == SplitPass::outputs)
      load_state_fragments(&p.starts[split_index(p, sequence, head, split, 0, 1, 0, 0)], VD, 1, 0, state);
    else if (split == 0 && !is_transition(p) && p.initial_state.present())
      load_state_fragments(&p.initial_state(sequence, head, 0, 0), p.initial_state.strides[2],
                           p.initial_state.strides[3], 0, state);
    else  // K = V for a transition: the identity, so that the final state is P_i
      fill_state_fragments(is_transition(p), 0, state);
  }

  /// The end state: C_i or P_i of a summary, or the final state (of the last split).
  static __device__ __forceinline__ void store_end_state(const ChunkedParams<T>& p, index_t sequence, int head,
                                                         int split, const float (&state)[KD / 8][4]) {
    if (p.pass == SplitPass::summarize && blockIdx.z == 0)
      store_state_fragments(&p.summaries[split_index(p, sequence, head, split, 0, 2, 0, 0)], VD, 1, 0, state);
    else if (p.pass == SplitPass::summarize)  // P_i transposed, the layout the fix-up reads (sequence_split.cuh)
      store_state_fragments(&p.summaries[split_index(p, sequence, head, split, 1, 2, 0, 0)], 1, VD, 0, state);
    else if (split == p.splits - 1 && p.final_state.present())
      store_state_fragments(&p.final_state(sequence, head, 0, 0), p.final_state.strides[2], p.final_state.strides[3], 0,
                            state);
  }

  /// Where a chunk's per-chunk tiles are: the chunk's scales and gates (generic pointers; the shared-space addresses
  /// of the tiles ldmatrix and wgmma read are in Tiles), the output staging tile and this thread's partial outputs.
  struct ChunkScratch {
    const float* key_scales;
    const float* query_scales;
    const float* log2_gates;
    T* output;
    float4* partial_output;
    index_t index = 0;  ///< the chunk's place in the CTA's range, for DELTAPRODUCT_TRACE
  };

  /// The first half of a chunk on the state, which needs the chunk's scales and gates but none of its Gram blocks:
  /// keeps S^T for the backward (returns the kept tile), then work = R^T = b (V^T - exp(G) kinv S^T K^T) and the
  /// partial outputs S^T Q^T diag(scale qinv exp(G)).
  template <class Tiling = BlockedTiling<KD, Layout::value_pitch>>
  static __device__ __forceinline__ index_t chunk_residuals(const ChunkedParams<T>& p, const SequenceSpan& span,
                                                            index_t sequence, int head, index_t chunk,
                                                            const Stage& stage, const Tiles& tiles,
                                                            const ChunkScratch& scratch,
                                                            const float (&state)[KD / 8][4], float (&work)[L / 8][4]) {
    const int warp = thread_index() / 32, quad = thread_index() % 4, value_row = ChunkedKernel::value_row();
    const float* const key_scales = scratch.key_scales;
    const float* const query_scales = scratch.query_scales;
    const float* const log2_gates = scratch.log2_gates;
    index_t kept_tile = 0;
    if (keeps_chunks(p)) {  // the state pass of the backward: S^T at the chunk's start
      kept_tile = chunk_tile_index(p.cu_seqlens.present(), span, sequence, chunk, C, p.chunks_per_row, head, gridDim.y);
      store_accumulators<T>(p.chunk_states + kept_tile * (VD * KD), state, value_row, quad, KD);
    }

    // work[j][e]: (S^T K^T)(v = value_row + 8 (e / 2), r = 8 j + 2 quad + e % 2), then R^T, then N^T;
    // out: S^T Q^T, the output's part from the state at the chunk's start.
    float out[QR / 8][4] = {};
#pragma unroll
    for (int j = 0; j < L / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) work[j][e] = 0.0f;
    state_products<Tiling>(state, tiles, work, out);
    DELTAPRODUCT_TRACE(0, 6, scratch.index);
    // R^T = b (V^T - exp(G) kinv S^T K^T); V^T arrives in the accumulator layout through ldmatrix.trans.
    {
      const int lane = thread_index() % 32;
#pragma unroll
      for (int rb = 0; rb < L / 16; ++rb) {
        std::uint32_t vv[4];
        ldmatrix_x4_trans(vv, tiles.values + Tiling::value_block(lane, rb, warp));
#pragma unroll
        for (int half_tile = 0; half_tile < 2; ++half_tile)
#pragma unroll
          for (int half_row = 0; half_row < 2; ++half_row) {
            const float2 pair = unpack2<T>(vv[2 * half_tile + half_row]);
            const int j = 2 * rb + half_tile;
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int r = 8 * j + 2 * quad + e;
              const float decayed_scale = gate_from_start(log2_gates, r / NH) * key_scales[r];
              float& x = work[j][2 * half_row + e];
              const float value = is_transition(p) ? 0.0f : (e == 0 ? pair.x : pair.y);
              x = stage.betas[r] * (value - decayed_scale * x);
            }
          }
      }
    }
    // S^T Q^T diag(scale qinv exp(G)): each thread keeps its fp32 fragments in shared memory until N is known (fewer
    // live registers).
    if (writes_outputs(p)) {
#pragma unroll
      for (int j = 0; j < QR / 8; ++j) {
        const int t = 8 * j + 2 * quad;
        const float scale0 = query_scales[t] * gate_from_start(log2_gates, t);
        const float scale1 = query_scales[t + 1] * gate_from_start(log2_gates, t + 1);
        scratch.partial_output[j * 32] =
            make_float4(out[j][0] * scale0, out[j][1] * scale1, out[j][2] * scale0, out[j][3] * scale1);
      }
    }
    return kept_tile;
  }

  /// Where the output staging tile holds token t's 16-byte piece `piece` (values 8 piece .. + 7), in elements: rows
  /// of VP elements, or (`Swizzled`) the layout of a 128-byte swizzled TMA box of 64 values by QR tokens per half.
  template <bool Swizzled>
  static __device__ __forceinline__ int output_piece(int t, int piece) {
    if constexpr (Swizzled)
      return (piece / 8) * QR * 64 + t * 64 + ((piece % 8) ^ (t % 8)) * 8;
    else
      return t * VP + piece * 8;
  }

  /// The second half of a chunk, once the Gram blocks are complete: the block forward substitution N^T, the output
  /// staged in scratch.output, and the state update.
  /// `before_staging` runs on every thread right before the output goes into scratch.output (when outputs are
  /// written): a caller that reads the previous output from the same tile waits there. `SwizzledOutput`: the tile
  /// has output_piece<true>'s layout.
  template <class Tiling = BlockedTiling<KD, Layout::value_pitch>, class BeforeStaging = NoStep,
            bool SwizzledOutput = false>
  static __device__ __forceinline__ void chunk_solve_and_update(const ChunkedParams<T>& p, const Tiles& tiles,
                                                                const ChunkScratch& scratch, index_t kept_tile,
                                                                float (&state)[KD / 8][4], float (&work)[L / 8][4],
                                                                BeforeStaging before_staging = {}) {
    const int quad = thread_index() % 4, value_row = ChunkedKernel::value_row();
    const float* const key_scales = scratch.key_scales;
    const float* const log2_gates = scratch.log2_gates;
    // Block forward substitution, 16 micro-steps at a time: N_i = (I + A_ii)^-1 (R_i - sum_{m < i} A_im N_m).
    {
      const std::uint32_t negated = tiles.negated_a + columns_then_rows(LP);
      const std::uint32_t inverses = tiles.diagonal_inverses + columns_then_rows(DP);
      std::uint32_t solved[L / 16][4];
#pragma unroll
      for (int i = 0; i < L / 16; ++i) {
#pragma unroll
        for (int m = 0; m < i; ++m) {
          std::uint32_t b[4];
          ldmatrix_x4(b, negated + at(16 * i, 16 * m, LP));
          mma_16x8x16<__half>(work[2 * i], solved[m], b[0], b[1]);
          mma_16x8x16<__half>(work[2 * i + 1], solved[m], b[2], b[3]);
        }
        std::uint32_t z[4], b[4];
        accumulators_to_fragment<__half>(work[2 * i], work[2 * i + 1], z);
        ldmatrix_x4(b, inverses + at(16 * i, 0, DP));
#pragma unroll
        for (int e = 0; e < 4; ++e) work[2 * i][e] = work[2 * i + 1][e] = 0.0f;
        mma_16x8x16<__half>(work[2 * i], z, b[0], b[1]);
        mma_16x8x16<__half>(work[2 * i + 1], z, b[2], b[3]);
        accumulators_to_fragment<__half>(work[2 * i], work[2 * i + 1], solved[i]);
      }
    }

    DELTAPRODUCT_TRACE(0, 7, scratch.index);
    // N^T as 16-bit A fragments: as it is for the output, scaled by exp(G_last - G) kinv for the state update.
    std::uint32_t solved_values[L / 16][4], update_values[L / 16][4];
#pragma unroll
    for (int ks = 0; ks < L / 16; ++ks) {
      accumulators_to_fragment<T>(work[2 * ks], work[2 * ks + 1], solved_values[ks]);
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = 16 * ks + 8 * h + 2 * quad + e % 2;
          work[2 * ks + h][e] *= key_scales[r] * gate_between(log2_gates, C - 1, r / NH);
        }
      accumulators_to_fragment<T>(work[2 * ks], work[2 * ks + 1], update_values[ks]);
    }
    // State update: S^T <- exp(G_last) S^T + (N^T diag(exp(G_last - G) kinv)) K, issued before the output so that
    // on sm_90a its wgmmas run while the output's products and stores do (the output reads neither operand).
    if constexpr (Gated) {
      const float last_gate = gate_from_start(log2_gates, C - 1);
#pragma unroll
      for (int j = 0; j < KD / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) state[j][e] *= last_gate;
    }
    update_state<Tiling>(state, tiles, update_values);
    DELTAPRODUCT_TRACE(0, 8, scratch.index);

    if (keeps_chunks(p))
      store_fragments(p.chunk_solved_values + kept_tile * (VD * L), solved_values, value_row, quad, L);

    // Output: O^T = (S^T Q^T diag(...) from above) + N^T P^T, staged in shared memory for coalesced stores.
    if (writes_outputs(p)) before_staging();
    DELTAPRODUCT_TRACE(0, 9, scratch.index);
#pragma unroll
    for (int half = 0; half < (QR + 31) / 32; ++half) {
      if (!writes_outputs(p)) break;
      constexpr int blocks = QR >= 32 ? 2 : 1;
      float out[2 * blocks][4];
#pragma unroll
      for (int j = 0; j < 2 * blocks; ++j) {
        const float4 partial = scratch.partial_output[(2 * blocks * half + j) * 32];
        out[j][0] = partial.x;
        out[j][1] = partial.y;
        out[j][2] = partial.z;
        out[j][3] = partial.w;
      }
      const std::uint32_t readouts = tiles.readout + columns_then_rows(LP);
#pragma unroll
      for (int ks = 0; ks < L / 16; ++ks)
#pragma unroll
        for (int qb = 0; qb < blocks; ++qb)
          if (readout_block_used<NH, C>(16 * (blocks * half + qb), 16, 16 * ks)) {
            std::uint32_t b[4];
            ldmatrix_x4(b, readouts + at(16 * (blocks * half + qb), 16 * ks, LP));
            mma_16x8x16<T>(out[2 * qb], solved_values[ks], b[0], b[1]);
            mma_16x8x16<T>(out[2 * qb + 1], solved_values[ks], b[2], b[3]);
          }
#if DELTAPRODUCT_EXPERIMENTAL_STMATRIX_OUTPUT && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      // Tiles j, j + 1 transposed by stmatrix: matrix m = 2 (j' - j) + h holds tokens 8 j' .. 8 j' + 7 (its columns)
      // of values value_row - group + 8 h .. + 7 (its rows); lane l addresses token row l % 8 of matrix l / 8 (one
      // 16-byte piece: in the swizzled tile too, the eight rows of a matrix fall in eight bank groups).
      const int lane = thread_index() % 32, matrix = lane / 8;
      const std::uint32_t staging = shared_address(scratch.output);
#pragma unroll
      for (int j = 0; j < 2 * blocks; j += 2) {
        const std::uint32_t fragments[4] = {pack2<T>(out[j][0], out[j][1]), pack2<T>(out[j][2], out[j][3]),
                                            pack2<T>(out[j + 1][0], out[j + 1][1]),
                                            pack2<T>(out[j + 1][2], out[j + 1][3])};
        const int token = 16 * blocks * half + 8 * (j + matrix / 2) + lane % 8;
        const int value = 16 * (thread_index() / 32) + 8 * (matrix % 2);
        stmatrix_x4_trans(staging + static_cast<std::uint32_t>(2 * output_piece<SwizzledOutput>(token, value / 8)),
                          fragments);
      }
#else
#pragma unroll
      for (int j = 0; j < 2 * blocks; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int t = 16 * blocks * half + 8 * j + 2 * quad + e % 2, v = value_row + 8 * (e / 2);
          scratch.output[output_piece<SwizzledOutput>(t, v / 8) + v % 8] = from_float<T>(out[j][e]);
        }
#endif
    }

    DELTAPRODUCT_TRACE(0, 10, scratch.index);
    finish_state_update(state);
  }

  static __device__ __forceinline__ void run(const ChunkedParams<T>& p) {
    extern __shared__ __align__(128) unsigned char smem[];
    if (inputs_rejected(p.status)) return;  // a value check failed: write nothing
    const int head = static_cast<int>(blockIdx.y);
    const index_t sequence = blockIdx.x / p.splits;
    const int split = static_cast<int>(blockIdx.x % p.splits);
    if (idle_summary(p, split)) return;
    const SequenceSpan span = sequence_span(p, sequence);
    const auto [first_chunk, end_chunk] = chunk_range(p, span, split);

    const std::uint32_t smem_address = shared_address(smem);
    float state[KD / 8][4];
    load_start_state(p, sequence, head, split, state);

    PendingScalar next{T{}, false};
    if (first_chunk < end_chunk) {
      const Stage first = stage_at(smem, 0);
      copy_chunk_part<ChunkPart::keys>(p, span, head, first_chunk, first);
      copy_chunk_part<ChunkPart::queries>(p, span, head, first_chunk, first);
      copy_chunk_part<ChunkPart::values>(p, span, head, first_chunk, first);
      store_scalars(first, load_scalars(p, span, head, first_chunk));
    }

    for (index_t chunk = first_chunk; chunk < end_chunk; ++chunk) {
      // Addresses derive from opaque bases inside the loop: hoisted out of it, each would hold a register.
      const std::uint32_t base_address = opaque(smem_address);
      unsigned char* const base = shared_pointer<unsigned char>(base_address);
      float* const diagonal_blocks = reinterpret_cast<float*>(base + Layout::diagonal_blocks);
      __half* const negated_a = reinterpret_cast<__half*>(base + Layout::negated_a);
      __half* const diagonal_inverses = reinterpret_cast<__half*>(base + Layout::diagonal_inverses);
      T* const readout = reinterpret_cast<T*>(base + Layout::readout);
      float* const key_scales = reinterpret_cast<float*>(base + Layout::key_scales);
      float* const query_scales = reinterpret_cast<float*>(base + Layout::query_scales);
      float* const log2_gates = reinterpret_cast<float*>(base + Layout::log2_gates);
      const ChunkScratch scratch{key_scales,
                                 query_scales,
                                 log2_gates,
                                 reinterpret_cast<T*>(base + Layout::output),
                                 reinterpret_cast<float4*>(base + Layout::partial_output) +
                                     thread_index() / 32 * (QR / 8) * 32 + thread_index() % 32,
                                 chunk - first_chunk};
      const int stage_index = static_cast<int>((chunk - first_chunk) % 2);
      const Stage stage = stage_at(base, stage_index);
      const Tiles tiles = tiles_at(base_address, stage_index);
      copy_async_wait_all();
      fence_proxy_async();  // the copies' writes, made through the generic proxy, are read by wgmma
      __syncthreads();      // (1) the chunk is in `stage`; every warp is done with the previous chunk
      const bool more = chunk + 1 < end_chunk;
      const Stage next_stage = stage_at(base, 1 - stage_index);
      if (more) {
        next = load_scalars(p, span, head, chunk + 1);
        copy_chunk_part<ChunkPart::keys>(p, span, head, chunk + 1, next_stage);
      }
      prepare_scales(p, stage, key_scales, query_scales, log2_gates);
      __syncthreads();  // (2) scales and gates are ready

      gram_blocks(stage, tiles, diagonal_blocks, negated_a, readout, diagonal_inverses, key_scales, query_scales,
                  log2_gates);
      if (more) copy_chunk_part<ChunkPart::queries>(p, span, head, chunk + 1, next_stage);

      float work[L / 8][4];
      const index_t kept_tile = chunk_residuals(p, span, sequence, head, chunk, stage, tiles, scratch, state, work);

      // The previous chunk's output leaves its staging tile before this chunk's output overwrites it (after (3)).
      if (chunk > first_chunk && writes_outputs(p)) write_output(p, span, head, chunk - 1, scratch.output);
      __syncthreads();  // (3) -A below the diagonal blocks, the diagonal inverses and P are complete
      if (more) copy_chunk_part<ChunkPart::values>(p, span, head, chunk + 1, next_stage);
      if (keeps_preambles(p)) store_preamble(p, kept_tile, base);

      chunk_solve_and_update(p, tiles, scratch, kept_tile, state, work);
      if (more) store_scalars(next_stage, next);
    }

    if (first_chunk < end_chunk && writes_outputs(p)) {
      __syncthreads();
      write_output(p, span, head, end_chunk - 1, reinterpret_cast<const T*>(smem + Layout::output));
    }
    store_end_state(p, sequence, head, split, state);
  }

  /// Copies the staged output rows of chunk `chunk` to o, 16 bytes per thread and store.
  template <bool Swizzled = false>
  static __device__ __forceinline__ void write_output(const ChunkedParams<T>& p, const SequenceSpan& span, int head,
                                                      index_t chunk, const T* output) {
    constexpr int pieces = VD / 8;
    const index_t first_token = chunk * C, length = span.end - span.begin;
    T* const rows = &p.o(span.row, span.begin + first_token, head, 0);
#pragma unroll
    for (int i = 0; i < (C * pieces + Layout::threads - 1) / Layout::threads; ++i) {
      const int index = thread_index() + i * Layout::threads, t = index / pieces, piece = index % pieces;
      if (index >= C * pieces || first_token + t >= length) continue;
      *reinterpret_cast<uint4*>(rows + t * p.o.strides[1] + piece * 8) =
          *reinterpret_cast<const uint4*>(output + output_piece<Swizzled>(t, piece));
    }
  }
};

/// Grid: (sequences x splits, heads, 2 for the summarize pass, else 1); block: V / 16 warps; dynamic shared memory:
/// TileLayout::bytes.
template <class T, int KD, int VD, int NH, bool Gated>
__global__ void __launch_bounds__(VD / 16 * 32, 1) chunked_forward_kernel(const ChunkedParams<T> p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // mma.sync with bf16 needs sm_80; the host never launches this kernel there
#else
  ChunkedKernel<T, KD, VD, NH, Gated>::run(p);
#endif
}

}  // namespace deltaproduct::detail::cuda_chunked
