// The tensor-core chunked backward for K = V in {64, 128} with 16-bit inputs: the passes after the state pass.
// Notation of cpu/backward_chunked.hpp (which derives every term) and chunks of L = 64 micro-steps as in the forward
// kernel (chunked_kernel.cuh). Three passes, the first two sequential over a sequence's chunks, the third parallel:
//   1. state pass: the forward kernel keeps each chunk's start state S^T and its solved values u^T (= N^T), as T;
//   2. reverse scan (ReverseScanKernel, one CTA per sequence and head, or per run of chunks when sequences are split;
//      D^T = (dL/dS)^T in registers as the forward keeps S^T; on sm_90a SpecializedReverseScanKernel, whose producer
//      warpgroup copies and prepares each chunk one ahead as the warp-specialised forward's does): per chunk, last
//      first, it keeps D^T (the gradient at the chunk's end) and
//        du^T = D^T K^T diag(kinv c) + dO^T P,    dY^T = du^T (I + A)^-1   (block back substitution),
//        D^T <- exp(G_last) D^T - dY^T diag(b exp(G) kinv) K + dO^T diag(exp(G) qs) Q,
//      keeps dY^T, and ends with dL/d(initial state);
//   3. chunk gradients (ChunkGradientKernel, one CTA per chunk and head): from S_0^T, u^T, D^T, dY^T and the chunk's
//      inputs, the gradients of k, q, v, beta and g, as matrix products on the tensor cores:
//        H = dY u^T, dM = dO u^T, G = K K^T, Q K^T;  dK = diag(c) u D^T - diag(b Gamma) dY S_0^T + [Z + Z^T, P^T] [K; Q]
//        and dQ = diag(Gamma_q) dO S_0^T + P K, then through the normalisations.
// P is the forward's gated, scaled readout (rows: tokens), A its strictly lower matrix, c_r = exp(G_last - G_t(r)).
//
// Precision: as the forward's. Products take 16-bit operands and accumulate in fp32; the kept tiles (S^T, u^T, D^T,
// dY^T) are rounded to T once; the back substitution runs in fp16 with the forward's fp16 diagonal inverses. Every
// sum runs in a fixed order (no atomics), so the gradients are reproducible bit for bit.
#pragma once

#include <cuda.h>  // CUtensorMap (the type only: no driver API call here)

#include <cstddef>
#include <cstdint>

#include "deltaproduct/cuda/chunked_kernel.cuh"
#include "deltaproduct/cuda/chunked_specialized_kernel.cuh"

namespace deltaproduct::detail::cuda_chunked {

/// What the backward passes receive: the forward's parameters (inputs, options, the state pass's kept tiles) and the
/// gradients in and out.
template <class T>
struct ChunkedBackwardParams {
  ChunkedParams<T> forward;                       ///< o and final_state absent; chunk_states, chunk_solved_values set
  DeviceView<const T, 4> d_o;                     ///< [B, T, H, V], rows contiguous and 16-byte aligned
  DeviceView<const float, 4> d_final_state;       ///< [N, H, K, V]; absent: zero
  DeviceView<float, 4> d_initial_state;           ///< [N, H, K, V]; absent: not written
  T* chunk_adjoints = nullptr;                    ///< [tiles][V][K]: D^T at each chunk's end
  T* chunk_value_gradients = nullptr;             ///< [tiles][V][L]: dY^T
  DeviceView<T, 4> dq, dk, dv;                    ///< absent: not written
  DeviceView<T, 3> dbeta, dg;                     ///< absent: not written
};

/// ldmatrix_x4 lane offsets (bytes) in a padded row-major tile of 16-bit elements with `pitch` elements per row.
/// B fragments of two n tiles from a tile stored [k][n] (transposed load): matrices (k 0-7, n 0-7), (k 8-15, n 0-7),
/// (k 0-7, n 8-15), (k 8-15, n 8-15).
__device__ __forceinline__ std::uint32_t b_from_k_rows(int lane, int pitch) {
  return static_cast<std::uint32_t>(2 * ((lane % 8 + 8 * ((lane / 8) % 2)) * pitch + 8 * (lane / 16)));
}
/// An A fragment (16 x 16) from a tile stored [m][k] (plain load).
__device__ __forceinline__ std::uint32_t a_from_m_rows(int lane, int pitch) {
  return static_cast<std::uint32_t>(2 * ((lane % 16) * pitch + 8 * (lane / 16)));
}
/// An A fragment from a tile stored [k][m] (transposed load); the same offsets as the forward's columns_then_rows.
__device__ __forceinline__ std::uint32_t a_from_k_rows(int lane, int pitch) {
  return static_cast<std::uint32_t>(2 * ((lane % 8 + 8 * (lane / 16)) * pitch + 8 * ((lane / 8) % 2)));
}

/// a_from_k_rows in a 128-byte-swizzled tile of 64 columns (Swizzled128Tiling's layout): the A fragment of columns
/// (m) first .. first + 15 at k rows 0..15; the next k-step's rows are 16 * 128 bytes on (the swizzle repeats every
/// 8 rows).
__device__ __forceinline__ std::uint32_t a_from_swizzled_k_rows(int lane, int first) {
  const int row = lane % 8 + 8 * (lane / 16), piece = first / 8 + (lane / 8) % 2;
  return static_cast<std::uint32_t>(row * 128 + ((piece ^ (row % 8)) * 16));
}

/// acc (16 x 8 n) += A (16 x 16 k) B for the n tiles 2 nb, 2 nb + 1 of an ldmatrix_x4 B load.
template <class E, int Tiles>
__device__ __forceinline__ void mma_pair(float (&acc)[Tiles][4], int nb, const std::uint32_t (&a)[4],
                                         const std::uint32_t (&b)[4]) {
  mma_16x8x16<E>(acc[2 * nb], a, b[0], b[1]);
  mma_16x8x16<E>(acc[2 * nb + 1], a, b[2], b[3]);
}

/// A product operand in shared memory as ldmatrix_x4 reads it: this lane's address at k-step 0 (and n-block 0), and
/// the bytes from one k-step of 16 to the next and (B operands) from one n-block of 16 columns to the next.
struct OperandTile {
  std::uint32_t address, k_step, n_step = 0;
};

/// acc (16 rows x 8 Tiles columns) += A B over Steps k-steps of 16, A and B read with ldmatrix_x4 (transposed when
/// TransposeA / TransposeB).
template <class E, int Steps, bool TransposeA, bool TransposeB, int Tiles>
__device__ __forceinline__ void accumulate_product(float (&acc)[Tiles][4], const OperandTile& a,
                                                   const OperandTile& b) {
#pragma unroll
  for (int ks = 0; ks < Steps; ++ks) {
    std::uint32_t fa[4];
    if constexpr (TransposeA)
      ldmatrix_x4_trans(fa, a.address + ks * a.k_step);
    else
      ldmatrix_x4(fa, a.address + ks * a.k_step);
#pragma unroll
    for (int nb = 0; nb < Tiles / 2; ++nb) {
      std::uint32_t fb[4];
      if constexpr (TransposeB)
        ldmatrix_x4_trans(fb, b.address + ks * b.k_step + nb * b.n_step);
      else
        ldmatrix_x4(fb, b.address + ks * b.k_step + nb * b.n_step);
      mma_pair<E>(acc, nb, fa, fb);
    }
  }
}

/// The A fragments of Steps k-steps of 16 (this warp's 16 rows) from shared memory through ldmatrix_x4, as
/// accumulate_product reads them, for a wgmma product; zero where `rows_present` is false (the warp's rows lie past
/// the tile, and wgmma still needs every warp of the warpgroup: the caller then points `a` at rows inside the tile).
/// Masked, not branched around: wgmmas behind a divergent path are serialised.
template <int Steps, bool TransposeA>
__device__ __forceinline__ void load_a_fragments(std::uint32_t (&fa)[Steps][4], const OperandTile& a,
                                                 bool rows_present) {
  const std::uint32_t mask = rows_present ? 0xffffffffu : 0u;
#pragma unroll
  for (int ks = 0; ks < Steps; ++ks) {
    if constexpr (TransposeA)
      ldmatrix_x4_trans(fa[ks], a.address + ks * a.k_step);
    else
      ldmatrix_x4(fa[ks], a.address + ks * a.k_step);
#pragma unroll
    for (int i = 0; i < 4; ++i) fa[ks][i] &= mask;
  }
}

/// acc (a warpgroup's 64 rows x N columns, this warp's 16 rows 16 (warp % 4) ..) += A B over Steps k-steps of 16 on
/// sm_90a: A from the fragments `fa` (load_a_fragments; one per k-step, as wgmma reads them asynchronously), B by the
/// wgmma descriptor b_at(ks), N-major (TransB = 1) or K-major (0). Issued and committed, not waited for: the caller
/// runs wgmma_wait, then pin_registers, before it reads acc.
template <class E, int TransB = 1, int Steps, int Tiles, class Descriptor>
__device__ __forceinline__ void issue_wgmma_product(float (&acc)[Tiles][4], const std::uint32_t (&fa)[Steps][4],
                                                    Descriptor b_at) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  pin_registers(acc);
  wgmma_fence();
#pragma unroll
  for (int ks = 0; ks < Steps; ++ks) wgmma_async<E, TransB>(acc, fa[ks], b_at(ks));
  wgmma_commit();
#else
  (void)acc, (void)fa, (void)b_at;
  __trap();  // wgmma needs sm_90a; the host launches the kernels that call this only from an sm_90a build
#endif
}
/// load_a_fragments, then issue_wgmma_product.
template <class E, int Steps, bool TransposeA, int TransB = 1, int Tiles, class Descriptor>
__device__ __forceinline__ void issue_wgmma_product(float (&acc)[Tiles][4], const OperandTile& a, bool rows_present,
                                                    Descriptor b_at) {
  std::uint32_t fa[Steps][4];
  load_a_fragments<Steps, TransposeA>(fa, a, rows_present);
  issue_wgmma_product<E, TransB>(acc, fa, b_at);
}

/// Sum over the four lanes of a quad (the lanes that share a row of an accumulator tile).
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  x += __shfl_xor_sync(0xffffffffu, x, 2);
  return x;
}

/// Copies columns [first_column, first_column + VD) of the output gradients of chunk `chunk` (C token rows; QR rows,
/// zero past the chunk's tokens) into a padded row-major tile of `pitch` elements, as one commit group.
template <class T, int VD, int C, int QR, int Threads>
__device__ __forceinline__ void copy_output_gradients(const ChunkedBackwardParams<T>& p, const SequenceSpan& span,
                                                      int head, index_t chunk, T* tile, int pitch, int tid,
                                                      int first_column = 0) {
  constexpr int pieces = VD / 8;
  static_assert(Threads % pieces == 0, "a round of threads covers whole rows");
  const index_t first_token = chunk * C, length = span.end - span.begin;
  const T* const rows = &p.d_o(span.row, span.begin + first_token, head, first_column);
#pragma unroll
  for (int i = 0; i < (QR * pieces + Threads - 1) / Threads; ++i) {
    const int t = tid / pieces + i * (Threads / pieces), piece = tid % pieces;
    if (t >= QR) break;
    const bool valid = t < C && first_token + t < length;
    const T* source = valid ? rows + t * p.d_o.strides[1] + piece * 8 : p.d_o.data;
    copy_async_16(tile + t * pitch + piece * 8, source, valid);
  }
  copy_async_commit();
}

// ---------------------------------------------------------------------------------------------------------------
// Pass 2: the reverse scan.

/// VB: the value rows of D^T one CTA carries. Those rows evolve independently (every product acts on the right of
/// D^T), so VD / VB CTAs may share a (sequence, run), each with VB / 16 warps and the forward's map for VB columns,
/// loading or rebuilding the same preambles (CudaBackend::backward_value_splits).
template <class T, int KD, int VD, int NH, bool Gated, int VB = VD>
struct ReverseScanKernel {
  using Forward = ChunkedKernel<T, KD, VB, NH, Gated>;
  using Layout = typename Forward::Layout;
  using Stage = typename Forward::Stage;
  using Tiles = typename Forward::Tiles;
  static constexpr int L = Layout::L, C = Layout::C, NW = Layout::warps, QR = Layout::query_rows;
  static constexpr int VP = Layout::value_pitch, LP = Layout::step_pitch, DP = Layout::diagonal_pitch;
  using Preamble = PreambleLayout<NH>;
  static constexpr int value_blocks = VD / VB;
  static_assert(VD % VB == 0, "a CTA's value rows divide V");

  /// Dynamic shared memory: the forward's map (for VB value columns), and two kept preambles after it when the scan
  /// loads them (CudaBackend::keep_preambles), the next chunk's arriving while the current one is used.
  static constexpr std::size_t shared_bytes(bool loads_preambles) {
    return Layout::bytes + (loads_preambles ? 2 * Preamble::bytes : 0);
  }
  /// Copies kept preamble `tile` into `destination` (cp.async, one commit group).
  static __device__ __forceinline__ void copy_preamble(const ChunkedParams<T>& p, index_t tile,
                                                       unsigned char* destination) {
    const unsigned char* const source = p.chunk_preambles + tile * Preamble::bytes;
    for (int i = Forward::thread_index(); i < static_cast<int>(Preamble::bytes / 16); i += Layout::threads)
      copy_async_16(destination + 16 * i, source + 16 * i, true);
    copy_async_commit();
  }

  /// The one-role scan's tiles: keys and queries blocked, dL/do row-major with VP elements a row (the forward's).
  using Blocked = BlockedTiling<KD, VP>;

  /// work = D^T K^T (64 x L per warpgroup, inner dimension K), as the forward's S^T K^T. The mma.sync form (before
  /// sm_90a) reads blocked tiles.
  template <class Tiling>
  static __device__ __forceinline__ void adjoint_key_product(const float (&adjoint)[KD / 8][4], const Tiles& tiles,
                                                             float (&work)[L / 8][4]) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    std::uint32_t a[KD / 16][4];
#pragma unroll
    for (int kk = 0; kk < KD / 16; ++kk) Forward::state_fragment(adjoint, kk, a[kk]);
    pin_registers(work);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < KD / 16; ++kk) wgmma_async<T, 0>(work, a[kk], Tiling::k_major(tiles.keys, L, kk));
    wgmma_commit();
    wgmma_wait_all();
    pin_registers(work);
#else
    const std::uint32_t keys = tiles.keys + Forward::blocked_columns_then_rows();
#pragma unroll
    for (int kk = 0; kk < KD / 16; ++kk) {
      std::uint32_t a[4];
      Forward::state_fragment(adjoint, kk, a);
#pragma unroll
      for (int nb = 0; nb < L / 16; ++nb) {
        std::uint32_t b[4];
        ldmatrix_x4(b, keys + Forward::blocked(16 * nb, 2 * kk));
        mma_pair<T>(work, nb, a, b);
      }
    }
#endif
  }

  /// adjoint (V x K) += a (V x 16 Steps, 16-bit fragments) R, R the first 16 Steps rows of a key-width tile of
  /// `tile_rows` rows.
  template <class Tiling, int Steps>
  static __device__ __forceinline__ void add_row_products(float (&adjoint)[KD / 8][4], std::uint32_t rows,
                                                          int tile_rows, const std::uint32_t (&a)[Steps][4]) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    pin_registers(adjoint);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < Steps; ++ks) wgmma_async<T, 1>(adjoint, a[ks], Tiling::n_major(rows, tile_rows, ks));
    wgmma_commit();
    wgmma_wait_all();
    pin_registers(adjoint);
#else
    (void)tile_rows;
    const std::uint32_t base = rows + Forward::blocked_transposed_b();
#pragma unroll
    for (int nb = 0; nb < KD / 16; ++nb)
#pragma unroll
      for (int ks = 0; ks < Steps; ++ks) {
        std::uint32_t b[4];
        ldmatrix_x4_trans(b, base + Forward::blocked(16 * ks, 2 * nb));
        mma_pair<T>(adjoint, nb, a[ks], b);
      }
#endif
  }

  /// The chunk's scalars the chain reads: betas (stage), key and query normalisers and log2-unit gates (preamble).
  struct ChainScalars {
    const float *betas, *key_scales, *query_scales, *log2_gates;
  };

  /// The chain on D^T for one chunk, first part (it needs the chunk's keys and scales): keeps D^T (the gradient at
  /// the chunk's end) in kept tile `tile` when `keeps`, and starts du^T with D^T K^T diag(kinv c):
  /// work[j][e] at (v = value_row + 8 (e / 2), r = 8 j + 2 quad + e % 2). `Tiling` addresses the key, query and
  /// dL/do tiles (BlockedTiling in the one-role scan, Swizzled128Tiling in the warp-specialised one).
  template <class Tiling>
  static __device__ __forceinline__ void chain_start(const ChunkedBackwardParams<T>& bp, const Tiles& tiles,
                                                     const ChainScalars& scalars, bool keeps, index_t tile,
                                                     int value_offset, const float (&adjoint)[KD / 8][4],
                                                     float (&work)[L / 8][4]) {
    const int quad = Forward::quad();
    if (keeps)
      store_accumulators<T>(bp.chunk_adjoints + tile * (VD * KD), adjoint, value_offset + Forward::value_row(), quad,
                            KD);
#pragma unroll
    for (int j = 0; j < L / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) work[j][e] = 0.0f;
    adjoint_key_product<Tiling>(adjoint, tiles, work);
#pragma unroll
    for (int j = 0; j < L / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = 8 * j + 2 * quad + e % 2;
        work[j][e] *= scalars.key_scales[r] * Forward::gate_between(scalars.log2_gates, C - 1, r / NH);
      }
  }

  /// The chain's second part (it needs the chunk's -A, diagonal inverses and P, and dL/do unless `transition`):
  ///   du^T += dO^T P,  dY^T = du^T (I + A)^-1 (kept in tile `tile` when `keeps`),
  ///   D^T <- exp(G_last) D^T - dY^T diag(b exp(G) kinv) K + dO^T diag(exp(G) qs) Q.
  template <class Tiling>
  static __device__ __forceinline__ void chain_end(const ChunkedBackwardParams<T>& bp, const Tiles& tiles,
                                                   const ChainScalars& scalars, bool transition, bool keeps,
                                                   index_t tile, int value_offset, float (&adjoint)[KD / 8][4],
                                                   float (&work)[L / 8][4]) {
    const int warp = Forward::thread_index() / 32, lane = Forward::thread_index() % 32, quad = lane % 4;
    const float* const key_scales = scalars.key_scales;
    const float* const query_scales = scalars.query_scales;
    const float* const log2_gates = scalars.log2_gates;
    if (!transition) {
      const std::uint32_t readouts = tiles.readout + b_from_k_rows(lane, LP);
#pragma unroll
      for (int tb = 0; tb < QR / 16; ++tb) {
        std::uint32_t a[4];  // dO^T, rows v of the warp, columns t of block tb
        ldmatrix_x4_trans(a, tiles.values + Tiling::value_block(lane, tb, warp));
#pragma unroll
        for (int rb = 0; rb < L / 16; ++rb)
          if (readout_block_used<NH, C>(16 * tb, 16, 16 * rb)) {
            std::uint32_t b[4];
            ldmatrix_x4_trans(b, readouts + Forward::at(16 * tb, 16 * rb, LP));
            mma_pair<T>(work, rb, a, b);
          }
      }
    }

    // Block back substitution, last block first: dY^T_i = (du^T_i + sum_{m > i} dY^T_m (-A)_mi) (I + A_ii)^-1.
    {
      const std::uint32_t negated = tiles.negated_a + b_from_k_rows(lane, LP);
      const std::uint32_t inverses = tiles.diagonal_inverses + b_from_k_rows(lane, DP);
      std::uint32_t solved[L / 16][4];
#pragma unroll
      for (int i = L / 16 - 1; i >= 0; --i) {
#pragma unroll
        for (int m = i + 1; m < L / 16; ++m) {
          std::uint32_t b[4];
          ldmatrix_x4_trans(b, negated + Forward::at(16 * m, 16 * i, LP));
          mma_pair<__half>(work, i, solved[m], b);
        }
        std::uint32_t z[4], b[4];
        accumulators_to_fragment<__half>(work[2 * i], work[2 * i + 1], z);
        ldmatrix_x4_trans(b, inverses + Forward::at(16 * i, 0, DP));
#pragma unroll
        for (int e = 0; e < 4; ++e) work[2 * i][e] = work[2 * i + 1][e] = 0.0f;
        mma_pair<__half>(work, i, z, b);
        accumulators_to_fragment<__half>(work[2 * i], work[2 * i + 1], solved[i]);
      }
    }
    if (keeps)
      store_accumulators<T>(bp.chunk_value_gradients + tile * (VD * L), work, value_offset + Forward::value_row(),
                            quad, L);

    // D^T <- exp(G_last) D^T - dY^T diag(b exp(G) kinv) K + dO^T diag(exp(G) qs) Q.
    {
      std::uint32_t scaled[L / 16][4];
#pragma unroll
      for (int ks = 0; ks < L / 16; ++ks) {
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int r = 16 * ks + 8 * h + 2 * quad + e % 2;
            work[2 * ks + h][e] *= -scalars.betas[r] * key_scales[r] * Forward::gate_from_start(log2_gates, r / NH);
          }
        accumulators_to_fragment<T>(work[2 * ks], work[2 * ks + 1], scaled[ks]);
      }
      if constexpr (Gated) {
        const float last_gate = Forward::gate_from_start(log2_gates, C - 1);
#pragma unroll
        for (int j = 0; j < KD / 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) adjoint[j][e] *= last_gate;
      }
      add_row_products<Tiling, L / 16>(adjoint, tiles.keys, L, scaled);
    }
    if (!transition) {
      std::uint32_t scaled[QR / 16][4];
#pragma unroll
      for (int tb = 0; tb < QR / 16; ++tb) {
        ldmatrix_x4_trans(scaled[tb], tiles.values + Tiling::value_block(lane, tb, warp));
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int t = 16 * tb + 8 * (r / 2) + 2 * quad;
          const float2 pair = unpack2<T>(scaled[tb][r]);
          scaled[tb][r] = pack2<T>(pair.x * query_scales[t] * Forward::gate_from_start(log2_gates, t),
                                   pair.y * query_scales[t + 1] * Forward::gate_from_start(log2_gates, t + 1));
        }
      }
      add_row_products<Tiling, QR / 16>(adjoint, tiles.queries, QR, scaled);
    }
  }

  // Sequence splits (sequence_split.cuh): run i is the forward's run of chunks (ChunkedKernel::chunk_range), and the
  // gradient at its start is affine in the one at its end: D_start = P_i^T D_end + E_i, P_i the run's transition (the
  // forward's). So, by bp.forward.pass:
  //   whole:     the sequence's chunks from dL/d(final state), keeping D^T and dY^T per chunk;
  //   summarize: runs 1 .. s - 1 in parallel, keeping nothing: blockIdx.z = 0 from a zero end gradient (the last run
  //              from dL/d(final state)) gives E_i; blockIdx.z = 1 from the identity with dL/do taken as zero gives
  //              P_i^T, for runs 1 .. s - 2. Both go to split s - 1 - i of the summaries (P_i^T stored as the forward
  //              stores its transitions), so that split_fixup_kernel, started from dL/d(final state), chains them
  //              with time reversed: its S_r is the gradient at the end of run s - 1 - r;
  //   outputs:   every run from the gradient at its end, keeping D^T and dY^T; run 0 gives dL/d(initial state).

  /// The summarize pass's transition CTAs: identity end gradient, dL/do taken as zero.
  static __device__ __forceinline__ bool is_transition(const ChunkedParams<T>& p) {
    return p.pass == SplitPass::summarize && blockIdx.z == 1;
  }
  /// Summaries serve runs 1 .. s - 1 (run 0 ends the chain), transitions runs 1 .. s - 2.
  static __device__ __forceinline__ bool idle_summary(const ChunkedParams<T>& p, int split) {
    return p.pass == SplitPass::summarize && (split == 0 || (is_transition(p) && split == p.splits - 1));
  }

  /// Element (key, value) of slot `slot` of split `split` in a [N, H, splits, slots, K, V] split buffer.
  static __device__ __forceinline__ index_t split_index(const ChunkedParams<T>& p, index_t sequence, int head,
                                                        int split, int slot, int slots, int key, int value) {
    const index_t matrix = ((sequence * gridDim.y + head) * p.splits + split) * slots + slot;
    return (matrix * KD + key) * VD + value;
  }

  /// D^T at the end of the CTA's run, in the thread's accumulator fragments:
  /// adjoint[j][e] = D(key = 8 j + 2 quad + e % 2, v = value_offset + value_row + 8 (e / 2)), the forward's layout
  /// of S^T.
  static __device__ __forceinline__ void load_end_gradient(const ChunkedBackwardParams<T>& bp, index_t sequence,
                                                           int head, int split, int value_offset,
                                                           float (&adjoint)[KD / 8][4]) {
    const ChunkedParams<T>& p = bp.forward;
    if (p.pass == SplitPass::outputs)
      Forward::load_state_fragments(&p.starts[split_index(p, sequence, head, p.splits - 1 - split, 0, 1, 0, 0)], VD, 1,
                                    value_offset, adjoint);
    else if (split == p.splits - 1 && !is_transition(p) && bp.d_final_state.present())
      Forward::load_state_fragments(&bp.d_final_state(sequence, head, 0, 0), bp.d_final_state.strides[2],
                                    bp.d_final_state.strides[3], value_offset, adjoint);
    else  // K = V for a transition: the identity, so that the start gradient is P_i^T
      Forward::fill_state_fragments(is_transition(p), value_offset, adjoint);
  }

  /// The gradient at the run's start: a summary (E_i, or P_i^T stored transposed), or dL/d(initial state) of run 0.
  static __device__ __forceinline__ void store_start_gradient(const ChunkedBackwardParams<T>& bp, index_t sequence,
                                                              int head, int split, int value_offset,
                                                              const float (&adjoint)[KD / 8][4]) {
    const ChunkedParams<T>& p = bp.forward;
    const int reversed = p.splits - 1 - split;
    if (p.pass == SplitPass::summarize && blockIdx.z == 0)
      Forward::store_state_fragments(&p.summaries[split_index(p, sequence, head, reversed, 0, 2, 0, 0)], VD, 1,
                                     value_offset, adjoint);
    else if (p.pass == SplitPass::summarize)  // the layout in which split_fixup_kernel reads a transition
      Forward::store_state_fragments(&p.summaries[split_index(p, sequence, head, reversed, 1, 2, 0, 0)], 1, VD,
                                     value_offset, adjoint);
    else if (split == 0 && bp.d_initial_state.present())
      Forward::store_state_fragments(&bp.d_initial_state(sequence, head, 0, 0), bp.d_initial_state.strides[2],
                                     bp.d_initial_state.strides[3], value_offset, adjoint);
  }

  static __device__ __forceinline__ void run(const ChunkedBackwardParams<T>& bp) {
    extern __shared__ __align__(128) unsigned char smem[];
    const ChunkedParams<T>& p = bp.forward;
    if (inputs_rejected(p.status)) return;
    const int head = static_cast<int>(blockIdx.y);
    const index_t run_index = blockIdx.x / value_blocks;  // blockIdx.x: (sequence, split, value block)
    const int value_offset = VB * static_cast<int>(blockIdx.x % value_blocks);
    const index_t sequence = run_index / p.splits;
    const int split = static_cast<int>(run_index % p.splits);
    if (idle_summary(p, split)) return;
    const SequenceSpan span = sequence_span(p, sequence);
    const auto [first_chunk, end_chunk] = Forward::chunk_range(p, span, split);
    const bool transition = is_transition(p);               // dL/do is taken as zero: neither copied nor read
    const bool keeps = p.pass != SplitPass::summarize;      // D^T and dY^T of every chunk, for the gradient pass
    const bool loads_preambles = p.chunk_preambles != nullptr;  // else the preambles are rebuilt from the inputs
    const std::uint32_t smem_address = shared_address(smem);
    const auto preamble_tile = [&](index_t chunk) {
      return chunk_tile_index(p.cu_seqlens.present(), span, sequence, chunk, C, p.chunks_per_row, head, gridDim.y);
    };

    float adjoint[KD / 8][4];
    load_end_gradient(bp, sequence, head, split, value_offset, adjoint);

    typename Forward::PendingScalar next{T{}, false};
    if (first_chunk < end_chunk) {
      const Stage first = Forward::stage_at(smem, 0);
      Forward::template copy_chunk_part<Forward::ChunkPart::keys>(p, span, head, end_chunk - 1, first);
      Forward::template copy_chunk_part<Forward::ChunkPart::queries>(p, span, head, end_chunk - 1, first);
      if (!transition)
        copy_output_gradients<T, VB, C, QR, Layout::threads>(bp, span, head, end_chunk - 1, first.values, VP,
                                                            Forward::thread_index(), value_offset);
      Forward::store_scalars(first, Forward::load_scalars(p, span, head, end_chunk - 1));
      if (loads_preambles) copy_preamble(p, preamble_tile(end_chunk - 1), smem + Layout::bytes);
    }

    for (index_t chunk = end_chunk - 1; chunk >= first_chunk; --chunk) {
      const index_t step = end_chunk - 1 - chunk;
      const std::uint32_t base_address = opaque(smem_address);
      unsigned char* const base = shared_pointer<unsigned char>(base_address);
      const int stage_index = static_cast<int>(step % 2);
      // The chunk's preamble: kept (in buffer stage_index after the forward's map) or rebuilt (in the forward's map).
      const std::size_t preamble_at = Layout::bytes + static_cast<std::size_t>(stage_index) * Preamble::bytes;
      float* const diagonal_blocks = reinterpret_cast<float*>(base + Layout::diagonal_blocks);
      __half* const negated_a = reinterpret_cast<__half*>(base + Layout::negated_a);
      __half* const diagonal_inverses = reinterpret_cast<__half*>(base + Layout::diagonal_inverses);
      T* const readout = reinterpret_cast<T*>(base + Layout::readout);
      const std::size_t scales_at = loads_preambles ? preamble_at + Preamble::key_scales : Layout::key_scales;
      float* const key_scales = reinterpret_cast<float*>(base + scales_at);
      float* const query_scales = key_scales + L;  // both maps hold the three scale arrays back to back
      float* const log2_gates = query_scales + L;
      const Stage stage = Forward::stage_at(base, stage_index);
      Tiles tiles = Forward::tiles_at(base_address, stage_index);
      if (loads_preambles) {
        tiles.negated_a = base_address + static_cast<std::uint32_t>(preamble_at + Preamble::negated_a);
        tiles.diagonal_inverses = base_address + static_cast<std::uint32_t>(preamble_at + Preamble::diagonal_inverses);
        tiles.readout = base_address + static_cast<std::uint32_t>(preamble_at + Preamble::readout);
      }
      copy_async_wait_all();
      fence_proxy_async();  // the copies' writes are read by wgmma
      __syncthreads();      // (1) the chunk is in `stage`; every warp is done with the later chunk
      const bool more = chunk > first_chunk;
      const Stage next_stage = Forward::stage_at(base, 1 - stage_index);
      if (more) {
        next = Forward::load_scalars(p, span, head, chunk - 1);
        Forward::template copy_chunk_part<Forward::ChunkPart::keys>(p, span, head, chunk - 1, next_stage);
        // The other buffer held the later chunk's preamble, which every warp is done with (after (1)).
        if (loads_preambles)
          copy_preamble(p, preamble_tile(chunk - 1), base + Layout::bytes + (1 - stage_index) * Preamble::bytes);
      }
      if (loads_preambles) {
        // Query rows past the chunk's tokens: the warp-specialised forward built their scales and readout from what
        // its copy brought (a neighbouring sequence's tokens), where a rebuild reads zeros. Their dL/do rows are
        // zero; clearing them keeps a non-finite neighbour out of this sequence's gradients.
        const int valid_tokens = static_cast<int>(min(index_t{C}, span.end - span.begin - chunk * C));
        T* const kept_readout = reinterpret_cast<T*>(base + preamble_at + Preamble::readout);
        constexpr int pieces = L / 8;  // 16 bytes each
        for (int i = Forward::thread_index(); i < (QR - valid_tokens) * pieces; i += Layout::threads) {
          const int t = valid_tokens + i / pieces;
          *reinterpret_cast<uint4*>(kept_readout + t * LP + 8 * (i % pieces)) = make_uint4(0, 0, 0, 0);
          if (i % pieces == 0) query_scales[t] = 0.0f;
        }
      }
      if (!loads_preambles) Forward::prepare_scales(p, stage, key_scales, query_scales, log2_gates);
      __syncthreads();  // (2) scales and gates are ready

      if (!loads_preambles)
        Forward::gram_blocks(stage, tiles, diagonal_blocks, negated_a, readout, diagonal_inverses, key_scales,
                             query_scales, log2_gates);
      if (more) Forward::template copy_chunk_part<Forward::ChunkPart::queries>(p, span, head, chunk - 1, next_stage);

      // D^T at the chunk's end, kept for the chunk-gradient pass.
      const index_t tile = chunk_tile_index(p.cu_seqlens.present(), span, sequence, chunk, C, p.chunks_per_row, head,
                                            gridDim.y);
      const ChainScalars scalars{stage.betas, key_scales, query_scales, log2_gates};
      float work[L / 8][4];
      chain_start<Blocked>(bp, tiles, scalars, keeps, tile, value_offset, adjoint, work);
      __syncthreads();  // (3) -A, the diagonal inverses and P are complete
      if (more && !transition)
        copy_output_gradients<T, VB, C, QR, Layout::threads>(bp, span, head, chunk - 1, next_stage.values, VP,
                                                            Forward::thread_index(), value_offset);
      chain_end<Blocked>(bp, tiles, scalars, transition, keeps, tile, value_offset, adjoint, work);
      if (more) Forward::store_scalars(next_stage, next);
    }
    store_start_gradient(bp, sequence, head, split, value_offset, adjoint);
  }
};

/// The reverse scan warp-specialised as the forward is (chunked_specialized_kernel.cuh; sm_90a, one CTA per sequence
/// and head, or per run of chunks and pass as ReverseScanKernel splits them). The forward's producer warpgroup runs
/// over the chunks last to first: it copies each chunk's keys, queries and dL/do (in the value tiles, by token) by
/// TMA and builds its normalisers, gates, -A, diagonal inverses and P one chunk ahead, as the forward's producer
/// does, while the consumer warps run ReverseScanKernel's chain on D^T (chain_start, chain_end) on the swizzled
/// tiles. In the one-role scan every warp rebuilds the preamble between two links of the chain and copies the next
/// chunk with cp.async; here the chain waits for neither.
template <class T, int KD, int NH, bool Gated>
struct SpecializedReverseScanKernel {
  using Specialized = SpecializedChunkedKernel<T, KD, KD, NH, Gated>;
  using Scan = ReverseScanKernel<T, KD, KD, NH, Gated>;
  using Base = typename Specialized::Base;
  using Layout = typename Specialized::Layout;
  using Tiling = typename Specialized::Tiling;
  static constexpr int L = Layout::L, C = Base::C, consumers = Specialized::consumers;
  static constexpr int Stages = Layout::stages, KeySlots = Layout::key_slots;

  /// The consumers' loop: chunk end - 1 - i at step i. Once every consumer is done with a chunk (its done barrier),
  /// the first warp refills its key slot and its stage (read to the chunk's end here) with the chunks KeySlots and
  /// Stages steps later.
  static __device__ __forceinline__ void consume(const ChunkedBackwardParams<T>& bp, const SpecializedMaps& maps,
                                                 const SequenceSpan& span, index_t sequence, int head, index_t first,
                                                 index_t end, std::uint32_t smem_address,
                                                 float (&adjoint)[KD / 8][4]) {
    const ChunkedParams<T>& p = bp.forward;
    const bool lead_warp = Base::thread_index() < 32;
    const bool transition = Scan::is_transition(p);     // dL/do is taken as zero
    const bool keeps = p.pass != SplitPass::summarize;  // D^T and dY^T of every chunk
    const index_t count = end - first;
    for (index_t i = 0; i < count; ++i) {
      const index_t chunk = end - 1 - i;
      const auto at = Specialized::place_of(smem_address, i);
      mbarrier_wait(Specialized::ready_barrier(at.base_address, at.set_index), Specialized::set_parity(i));
      // Already complete (the producer waited for them): make the boxes' writes visible to these threads too.
      mbarrier_wait(Specialized::key_barrier(at.base_address, at.key_slot), Specialized::key_parity(i));
      mbarrier_wait(Specialized::copy_barrier(at.base_address, at.stage_index), Specialized::copy_parity(i));
      const index_t tile =
          chunk_tile_index(p.cu_seqlens.present(), span, sequence, chunk, C, p.chunks_per_row, head, gridDim.y);
      const typename Scan::ChainScalars scalars{at.stage.betas, at.set.key_scales, at.set.query_scales,
                                                at.set.log2_gates};
      float work[L / 8][4];
      Scan::template chain_start<Tiling>(bp, at.tiles, scalars, keeps, tile, 0, adjoint, work);
      Scan::template chain_end<Tiling>(bp, at.tiles, scalars, transition, keeps, tile, 0, adjoint, work);
      mbarrier_arrive(Specialized::done_barrier(at.base_address, at.set_index));
      if (lead_warp && (i + Stages < count || i + KeySlots < count)) {
        mbarrier_wait(Specialized::done_barrier(at.base_address, at.set_index), Specialized::set_parity(i));
        if (i + Stages < count)
          Specialized::template start_stage_copy<true>(maps, span, head, end - 1 - (i + Stages), at.base_address,
                                                       at.stage_index, Base::thread_index());
        if (i + KeySlots < count)
          Specialized::start_key_copy(maps, span, head, end - 1 - (i + KeySlots), at.base_address, at.key_slot,
                                      Base::thread_index());
      }
    }
  }

  static __device__ __forceinline__ void run(const ChunkedBackwardParams<T>& bp, const SpecializedMaps& maps) {
    extern __shared__ __align__(128) unsigned char smem[];
    const ChunkedParams<T>& p = bp.forward;
    if (inputs_rejected(p.status)) return;
    const int head = static_cast<int>(blockIdx.y);
    const index_t sequence = blockIdx.x / p.splits;  // split runs as ReverseScanKernel's (blockIdx.z: the summaries)
    const int split = static_cast<int>(blockIdx.x % p.splits);
    if (Scan::idle_summary(p, split)) return;
    const SequenceSpan span = sequence_span(p, sequence);
    const auto range = Base::chunk_range(p, span, split);
    const std::uint32_t smem_address = Specialized::aligned_map(smem);
    Specialized::init_barriers(smem_address);

    if (Base::thread_index() >= consumers) {
      if constexpr (Specialized::all_threads == 384)
        set_register_count<Specialized::producer_registers, false>();
      Specialized::template produce<true>(p, maps, span, sequence, head, range.first, range.end, smem_address);
      return;
    }
    if constexpr (Specialized::all_threads == 384) set_register_count<Specialized::consumer_registers, true>();
    float adjoint[KD / 8][4];
    Scan::load_end_gradient(bp, sequence, head, split, 0, adjoint);
    consume(bp, maps, span, sequence, head, range.first, range.end, smem_address, adjoint);
    Scan::store_start_gradient(bp, sequence, head, split, 0, adjoint);
  }
};

// ---------------------------------------------------------------------------------------------------------------
// Pass 3: the chunk gradients.

/// The TMA descriptors of the chunk-gradient kernel's row-major tiles (a kernel parameter; sm_90): dL/do and v as
/// their 4-D views (elements, heads, rows, batch), the kept tiles as 2-D [tiles * V][width]. Each box is as wide as
/// the padded shared tile (the columns past the data read as zero) and a whole tile high, so that one copy brings a
/// tile: copies of single rows kept the copy engine busy longer than cp.async took. `present` is false where the
/// descriptors could not be made; the kernel then copies with cp.async.
struct GradientMaps {
  CUtensorMap d_out, values, states, adjoints, solved, value_gradients;
  bool present = false;
};

/// Shared-memory map of the chunk-gradient kernel, in bytes. Keys and queries are blocked as in the forward (its
/// copies and normalisers serve); the other tiles are row-major with rows padded by 16 bytes.
template <class T, int KD, int VD, int NH>
struct GradientLayout {
  static constexpr int L = micro_steps_per_chunk, C = L / NH, QR = (C + 15) / 16 * 16;
  static constexpr int VP = VD + 8, KP = KD + 8, LP = L + 8, MP = L + QR + 8;
  static constexpr int warps = VD / 16, threads = 32 * warps;
  static constexpr std::size_t keys = 0;                                     ///< T [L][KD], blocked
  static constexpr std::size_t queries = keys + 2 * L * KD;                  ///< T [QR][KD], blocked
  static constexpr std::size_t values = round_up(queries + 2 * QR * KD, 128);  ///< T [L][VP]
  static constexpr std::size_t d_out = values + 2 * L * VP;                  ///< T [QR][VP]
  /// T [VD][KP]: S_0^T; in the wgmma kernel, two 128-byte-swizzled halves [2][VD][64] (1024-byte aligned atoms).
  static constexpr std::size_t states = round_up(d_out + 2 * QR * VP, 1024);
  static constexpr std::size_t adjoints = states + 2 * VD * KP;  ///< T [VD][KP]: D^T, laid out as S_0^T
  static_assert(2 * VD * KP % 1024 == 0, "D^T's swizzled halves stay 1024-byte aligned");
  /// T [VD][LP]: u^T; in the wgmma kernel [VD][64], 128-byte swizzled.
  static constexpr std::size_t solved = adjoints + 2 * VD * KP;
  static constexpr std::size_t value_gradients = solved + 2 * VD * LP;       ///< T [VD][LP]: dY^T
  static constexpr std::size_t mix = value_gradients + 2 * VD * LP;          ///< T [L][MP]: [Z + Z^T, P^T] scaled
  static constexpr std::size_t readout = mix + 2 * L * MP;                   ///< T [QR][LP]: P diag(kinv)
  static constexpr std::size_t betas = round_up(readout + 2 * QR * LP, 16);  ///< float [L]
  static constexpr std::size_t gates = betas + 4 * L;                        ///< float [L]: g per token
  static constexpr std::size_t key_scales = gates + 4 * L;                   ///< float [L]
  static constexpr std::size_t query_scales = key_scales + 4 * L;            ///< float [L]
  static constexpr std::size_t log2_gates = query_scales + 4 * L;            ///< float [L]
  static constexpr std::size_t beta_gradients = log2_gates + 4 * L;          ///< float [L]
  static constexpr std::size_t gamma_gradients = beta_gradients + 4 * L;     ///< float [L]: dL/dG per micro-step
  static constexpr std::size_t row_partials = gamma_gradients + 4 * L;      ///< float [2][L]: a column half's db terms
  static constexpr std::size_t norm_partials = row_partials + 8 * L;        ///< float2 [2][L + QR]: its row sums
  /// float: the terms of dL/dG (gated), each written once by the unit or warp that computes it and summed in a fixed
  /// order at the end, so that dL/dg is reproducible bit for bit: [L / 16 + QR / 16][L] the column terms of each
  /// 16-row block, [2 phases][2 halves][L] those at micro-step rows, [2][2][QR] those at token rows, and the chunk's
  /// last micro-step's from each warp (phase 2) and each micro-step unit (phase 3).
  static constexpr int gate_column_blocks = L / 16 + QR / 16, gate_last_terms = warps + 2 * (L / 16);
  static constexpr std::size_t gate_terms = norm_partials + 16 * (L + QR);
  static constexpr std::size_t gate_term_count = gate_column_blocks * L + 4 * L + 4 * QR + gate_last_terms;
  /// Two mbarriers: the chunk-gradient kernel's two waves of bulk copies.
  static constexpr std::size_t barriers = round_up(gate_terms + 4 * gate_term_count, 8);
  static constexpr std::size_t map_end = round_up(barriers + 16, 128);
  /// T [L + QR][KP]: dK's rows, then dQ's, staged for coalesced stores. Where one round of the chunk-gradient
  /// kernel's units covers the micro-step rows (V = 128), in D^T's place: no product reads D^T after that round's
  /// products; else (two rounds read D^T) after the map.
  static constexpr bool staging_in_adjoints = 2 * (L / 16) == warps;
  static constexpr std::size_t output_staging = staging_in_adjoints ? adjoints : map_end;
  static constexpr std::size_t bytes = staging_in_adjoints ? map_end : map_end + 2 * (L + QR) * KP;
  /// The wgmma kernel's: the map from the first 1024-byte boundary of dynamic shared memory.
  static constexpr std::size_t wgmma_bytes = bytes + 1024;
  static_assert(!staging_in_adjoints || (L + QR) <= VD, "dK and dQ fit in D^T's rows");
  /// T [L][VP]: dv's rows, staged in u^T's place (no product reads u^T after phase 3).
  static constexpr std::size_t value_staging = solved;
  static_assert(L * VP <= VD * LP, "dv's rows fit in u^T's place");
  static_assert(QR <= L, "query rows fit the L-sized scale arrays");
};

/// `Wgmma` (sm_90a, K = V = 128, tensor maps present): phase 3's products run as wgmmas of the two warpgroups, B
/// read from shared memory by descriptor (S_0^T and D^T 128-byte swizzled by their tensor copies, the keys and
/// queries blocked) instead of mma.sync with ldmatrix; CudaBackend::wgmma_chunk_gradients.
template <class T, int KD, int VD, int NH, bool Gated, bool Wgmma = false>
struct ChunkGradientKernel {
  using Forward = ChunkedKernel<T, KD, VD, NH, Gated>;
  using Layout = GradientLayout<T, KD, VD, NH>;
  static constexpr int L = Layout::L, C = Layout::C, QR = Layout::QR, NW = Layout::warps;
  static constexpr int VP = Layout::VP, KP = Layout::KP, LP = Layout::LP, MP = Layout::MP;
  static constexpr int threads = Layout::threads;
  /// Phases 1 and 3 split each block of 16 rows between two warps, each taking half of its columns: units 2 i and
  /// 2 i + 1 are the halves of micro-step row block i, then come the token row blocks'. Warp w takes units w, w + NW,
  /// ..., so each round of NW units is all micro-step rows or all token rows: every warp of the CTA runs the same code
  /// at the same time. The code is long and straight (unrolled products and epilogues); warps running different
  /// parts of it at once stall on instruction fetch.
  static constexpr int step_units = 2 * (L / 16), units = step_units + 2 * (QR / 16);
  static constexpr int unit_rounds = (units + NW - 1) / NW;
  static_assert(step_units % NW == 0, "a round of units holds micro-step rows only or token rows only");
  static_assert(Layout::threads == Forward::Layout::threads, "the forward's copies and normalisers serve");
  static_assert(!Wgmma || (KD == 128 && VD == 128),
                "the wgmma chunk-gradient kernel takes K = V = 128 (two warpgroups, one 64-column half each)");
  /// The unit warp `warp` takes in round `round` of phase 3. wgmma gives a warpgroup's warps the row blocks 0..3 of
  /// one product, so there warpgroup g takes column half g and its warp w % 4 row block w % 4.
  static __device__ __forceinline__ int phase3_unit(int warp, int round) {
    if constexpr (Wgmma)
      return 2 * (warp % 4) + warp / 4 + round * NW;
    else
      return warp + round * NW;
  }

  /// Elements (row, 8 j + 2 quad + 0..1) of a blocked key-width tile as floats.
  static __device__ __forceinline__ float2 blocked_pair(const unsigned char* tile, int row, int j, int quad) {
    return unpack2<T>(*reinterpret_cast<const std::uint32_t*>(tile + Forward::blocked(row, j) + 4 * quad));
  }

  /// Copies a [VD][width] tile of the backward's scratch into a padded row-major tile (one commit group).
  template <int Width, int Pitch>
  static __device__ __forceinline__ void copy_kept_tile(const T* source, T* tile, int tid) {
    constexpr int pieces = Width / 8;
    static_assert(threads % pieces == 0 && VD * pieces % threads == 0, "rounds of threads cover whole rows");
    // Row and piece from tid once; each round moves threads / pieces rows on (constant offsets).
    const int row = tid / pieces, piece = tid % pieces;
#pragma unroll
    for (int i = 0; i < VD * pieces / threads; ++i) {
      const int r = row + i * (threads / pieces);
      copy_async_16(tile + r * Pitch + piece * 8, source + r * Width + piece * 8, true);
    }
  }

  /// sm_90 with `maps`: the chunk's row-major tiles by six tensor copies from thread 0, in two waves, each counted on
  /// its mbarrier: the output gradients, u^T and dY^T (phase 1 reads them), then the values, S_0^T and D^T (phase 2
  /// on). In the wgmma kernel u^T is one swizzled box, S_0^T and D^T two each. Rows past the chunk's data are zeroed
  /// after the waits (zero_rows_past_data).
  static __device__ __forceinline__ void copy_tiles_by_tma(const GradientMaps& maps, const SequenceSpan& span,
                                                           int head, index_t chunk, index_t tile, unsigned char* smem,
                                                           std::uint32_t first_wave, std::uint32_t second_wave) {
    const std::uint32_t base = shared_address(smem);
    // The swizzled boxes hold no padding.
    constexpr int kept_width = Wgmma ? KD : KP, solved_width = Wgmma ? L : LP;
    constexpr std::uint32_t first_bytes = 2 * (QR * VP + VD * LP + VD * solved_width),
                            second_bytes = 2 * (L * VP + 2 * VD * kept_width);
    const int first_token = static_cast<int>(span.begin + chunk * C), row = static_cast<int>(span.row);
    const int kept_row = static_cast<int>(tile * VD);
    mbarrier_init(first_wave, 1);
    mbarrier_init(second_wave, 1);
    fence_mbarrier_init();
    mbarrier_arrive_expect_bytes(first_wave, first_bytes);
    tma_load_4d(base + Layout::d_out, &maps.d_out, first_wave, 0, head, first_token, row);
    tma_load_2d(base + Layout::solved, &maps.solved, first_wave, 0, kept_row);
    tma_load_2d(base + Layout::value_gradients, &maps.value_gradients, first_wave, 0, kept_row);
    mbarrier_arrive_expect_bytes(second_wave, second_bytes);
    tma_load_4d(base + Layout::values, &maps.values, second_wave, 0, head, first_token * NH, row);
    if constexpr (Wgmma) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {  // boxes of 64 columns, VD * 128 bytes each
        tma_load_2d(base + Layout::states + half * VD * 128, &maps.states, second_wave, 64 * half, kept_row);
        tma_load_2d(base + Layout::adjoints + half * VD * 128, &maps.adjoints, second_wave, 64 * half, kept_row);
      }
    } else {
      tma_load_2d(base + Layout::states, &maps.states, second_wave, 0, kept_row);
      tma_load_2d(base + Layout::adjoints, &maps.adjoints, second_wave, 0, kept_row);
    }
  }
  /// Zeroes the rows [first, Rows) of a padded tile of `Pitch` elements a row: the copies by tensor map read the next
  /// chunk's or sequence's rows there.
  template <int Rows, int Pitch>
  static __device__ __forceinline__ void zero_rows_past_data(T* tile, int first, int tid) {
    constexpr int pieces = Pitch / 8;  // 16-byte pieces a row
    for (int i = first * pieces + tid; i < Rows * pieces; i += threads)
      reinterpret_cast<uint4*>(tile)[i] = make_uint4(0, 0, 0, 0);
  }

  /// Sum over row h of this unit's columns of x o acc, whole in every lane of the quad.
  static __device__ __forceinline__ float row_dot(const float (&acc)[KD / 16][4], const float (&x)[KD / 16][4], int h) {
    float dot = 0.0f;
#pragma unroll
    for (int j = 0; j < KD / 16; ++j) dot += x[j][2 * h] * acc[j][2 * h] + x[j][2 * h + 1] * acc[j][2 * h + 1];
    return quad_sum(dot);
  }
  /// Through a normalisation x_hat = inv x (inv = 1 / ||x|| or 1 / sqrt(||x||^2 + eps)): dx = inv (dx_hat - x_hat
  /// (x_hat . dx_hat)); `x` holds the raw row's elements as the accumulators hold dx_hat, and `dot` is x . dx_hat
  /// over the whole row (both halves).
  static __device__ __forceinline__ void normalize_backward(float (&acc)[KD / 16][4], const float (&x)[KD / 16][4],
                                                            int h, float inv, float dot) {
    const float along = dot * inv * inv;
#pragma unroll
    for (int j = 0; j < KD / 16; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) acc[j][2 * h + e] = inv * (acc[j][2 * h + e] - x[j][2 * h + e] * along);
  }

  /// Writes row h of this unit's accumulator tiles (columns first_column + 8 j + 2 quad + 0..1) as row `row` of a
  /// staging tile of KP elements a row.
  static __device__ __forceinline__ void stage_row(T* staging, int row, int first_column,
                                                   const float (&acc)[KD / 16][4], int h, int quad) {
    T* const base = staging + row * KP + first_column + 2 * quad;
#pragma unroll
    for (int j = 0; j < KD / 16; ++j)
      *reinterpret_cast<std::uint32_t*>(base + 8 * j) = pack2<T>(acc[j][2 * h], acc[j][2 * h + 1]);
  }

  /// Copies the first `valid_rows` of `Rows` staged rows (D elements, `pitch` apart) to rows first_row.. of a
  /// [B, rows, H, D] gradient view: 16-byte pieces, whole rows per group of lanes, when the view's rows are
  /// contiguous and 16-byte aligned, else element by element.
  template <int D, int Rows>
  static __device__ __forceinline__ void store_staged_rows(const DeviceView<T, 4>& view, index_t batch_row,
                                                           index_t first_row, int head, const T* staged, int pitch,
                                                           index_t valid_rows, int tid) {
    if (!view.present()) return;
    T* const base = &view(batch_row, first_row, head, 0);
    const index_t row_stride = view.strides[1];
    constexpr int pieces = D / 8;
    static_assert(threads % pieces == 0, "a round of threads covers whole rows");
    if (view.strides[3] == 1 && reinterpret_cast<std::uintptr_t>(base) % 16 == 0 && row_stride % 8 == 0) {
#pragma unroll
      for (int i = 0; i < (Rows * pieces + threads - 1) / threads; ++i) {
        const int row = tid / pieces + i * (threads / pieces), piece = tid % pieces;
        if (row < Rows && row < valid_rows)
          *reinterpret_cast<uint4*>(base + row * row_stride + 8 * piece) =
              *reinterpret_cast<const uint4*>(staged + row * pitch + 8 * piece);
      }
    } else {
#pragma unroll 1
      for (int index = tid; index < Rows * D; index += threads) {
        const int row = index / D, column = index % D;
        if (row < valid_rows) base[row * row_stride + column * view.strides[3]] = staged[row * pitch + column];
      }
    }
  }

  struct SequenceChunk {
    index_t sequence, chunk;
  };
  /// The chunk CTA `block` computes. Dense batches: chunks_per_row CTAs per sequence. Packed sequences: one CTA per
  /// chunk slot (chunk_tile_index's numbering, ceil(T / C) + N of them): the sequence is the last one whose first
  /// slot, begin / C + sequence, is at or before the block (a binary search over cu_seqlens).
  static __device__ __forceinline__ SequenceChunk sequence_and_chunk(const ChunkedParams<T>& p, index_t block) {
    if (!p.cu_seqlens.present()) return {block / p.chunks_per_row, block % p.chunks_per_row};
    const auto first_slot = [&](index_t n) { return sequence_span(p, n).begin / C + n; };
    index_t low = 0, high = p.cu_seqlens.extents[0] - 2;  // sequences 0 .. N - 1
    while (low < high) {
      const index_t middle = (low + high + 1) / 2;
      if (first_slot(middle) <= block)
        low = middle;
      else
        high = middle - 1;
    }
    return {low, block - first_slot(low)};
  }

  static __device__ __forceinline__ void run(const ChunkedBackwardParams<T>& bp, const GradientMaps& maps) {
    extern __shared__ __align__(128) unsigned char dynamic_smem[];
    // The wgmma kernel's swizzled tiles need 1024-byte aligned atoms: its map starts at the first such boundary.
    unsigned char* const smem =
        Wgmma ? dynamic_smem + ((1024u - shared_address(dynamic_smem) % 1024u) % 1024u) : dynamic_smem;
    const ChunkedParams<T>& p = bp.forward;
    if (inputs_rejected(p.status)) return;
    const int head = static_cast<int>(blockIdx.y);
    const auto [sequence, chunk] = sequence_and_chunk(p, blockIdx.x);
    const SequenceSpan span = sequence_span(p, sequence);
    const index_t length = span.end - span.begin;
    if (chunk < 0 || chunk * C >= length) return;  // an empty sequence's slot, or offsets the checks would reject
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, group = lane / 4, quad = lane % 4;

    T* const keys = reinterpret_cast<T*>(smem + Layout::keys);
    T* const queries = reinterpret_cast<T*>(smem + Layout::queries);
    T* const values = reinterpret_cast<T*>(smem + Layout::values);
    T* const d_out = reinterpret_cast<T*>(smem + Layout::d_out);
    T* const states = reinterpret_cast<T*>(smem + Layout::states);
    T* const adjoints = reinterpret_cast<T*>(smem + Layout::adjoints);
    T* const solved = reinterpret_cast<T*>(smem + Layout::solved);
    T* const value_gradients = reinterpret_cast<T*>(smem + Layout::value_gradients);
    T* const mix = reinterpret_cast<T*>(smem + Layout::mix);
    T* const readout = reinterpret_cast<T*>(smem + Layout::readout);
    float* const betas = reinterpret_cast<float*>(smem + Layout::betas);
    float* const key_scales = reinterpret_cast<float*>(smem + Layout::key_scales);
    float* const query_scales = reinterpret_cast<float*>(smem + Layout::query_scales);
    float* const log2_gates = reinterpret_cast<float*>(smem + Layout::log2_gates);
    float* const beta_gradients = reinterpret_cast<float*>(smem + Layout::beta_gradients);
    float* const gamma_gradients = reinterpret_cast<float*>(smem + Layout::gamma_gradients);
    float* const row_partials = reinterpret_cast<float*>(smem + Layout::row_partials);
    float2* const norm_partials = reinterpret_cast<float2*>(smem + Layout::norm_partials);
    T* const output_staging = reinterpret_cast<T*>(smem + Layout::output_staging);  // dK rows, then dQ rows
    // The terms of dL/dG (GradientLayout::gate_terms).
    float* const gate_columns = reinterpret_cast<float*>(smem + Layout::gate_terms);
    float* const gate_step_rows = gate_columns + Layout::gate_column_blocks * L;  // [phase 1, 3][half][L]
    float* const gate_token_rows = gate_step_rows + 4 * L;                       // [phase 1, 3][half][QR]
    float* const gate_last = gate_token_rows + 4 * QR;  // [warps] (phase 2), then [micro-step units] (phase 3)
    const typename Forward::Stage stage{keys, values, queries, betas, reinterpret_cast<float*>(smem + Layout::gates)};
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const bool by_tma = Wgmma || maps.present;  // copy_tiles_by_tma; the host runs the wgmma kernel with maps only
#else
    constexpr bool by_tma = false;
#endif

    // Inputs of the chunk and its kept tiles, in two waves: what phase 1 reads first, then the values and the states,
    // which land while phase 1 computes. The betas and gates are loaded first: a plain load issued behind the tiles'
    // copies waits for them.
    const auto scalars = Forward::load_scalars(p, span, head, chunk);
    Forward::template copy_chunk_part<Forward::ChunkPart::keys>(p, span, head, chunk, stage);
    Forward::template copy_chunk_part<Forward::ChunkPart::queries>(p, span, head, chunk, stage);
    const index_t tile = chunk_tile_index(p.cu_seqlens.present(), span, sequence, chunk, C, p.chunks_per_row, head,
                                          gridDim.y);
    [[maybe_unused]] const std::uint32_t first_wave = shared_address(smem + Layout::barriers),
                                         second_wave = first_wave + 8;
    if (by_tma) {
      if (tid == 0) copy_tiles_by_tma(maps, span, head, chunk, tile, smem, first_wave, second_wave);
    } else {
      copy_output_gradients<T, VD, C, QR, threads>(bp, span, head, chunk, d_out, VP, tid);
      copy_kept_tile<L, LP>(p.chunk_solved_values + tile * (VD * L), solved, tid);
      copy_kept_tile<L, LP>(bp.chunk_value_gradients + tile * (VD * L), value_gradients, tid);
      copy_async_commit();
      Forward::template copy_chunk_part<Forward::ChunkPart::values>(p, span, head, chunk, stage);
      copy_kept_tile<KD, KP>(p.chunk_states + tile * (VD * KD), states, tid);
      copy_kept_tile<KD, KP>(bp.chunk_adjoints + tile * (VD * KD), adjoints, tid);
      copy_async_commit();
    }
    Forward::store_scalars(stage, scalars);
    if (by_tma)
      copy_async_wait_all();  // the keys and queries
    else
      copy_async_wait<2>();
    if constexpr (Wgmma) fence_proxy_async();  // the keys and queries, written by cp.async, are read by wgmma
    __syncthreads();
    Forward::prepare_scales(p, stage, key_scales, query_scales, log2_gates);
    if (by_tma) {
      mbarrier_wait(first_wave, 0);
      zero_rows_past_data<QR, VP>(d_out, static_cast<int>(min(index_t{C}, length - chunk * C)), tid);
    }
    __syncthreads();

    const unsigned char* const key_bytes = reinterpret_cast<const unsigned char*>(keys);
    const unsigned char* const query_bytes = reinterpret_cast<const unsigned char*>(queries);
    const std::uint32_t keys_address = shared_address(keys), queries_address = shared_address(queries);

    // Phase 1, per unit (a block of 16 rows, half of its L columns): H = dY u^T and G = K K^T (micro-step rows r),
    // or dM = dO u^T and Q K^T (token rows t); their epilogues write the mix [Z + Z^T, P^T] (Z = diag(b) H, with
    // dA = -H) and P, and give the beta and gate terms they carry (a half's share of the db term in row_partials).
    // The wgmma kernel: one unit per warp, all L columns; warpgroup 0 takes the micro-step rows and warpgroup 1 the
    // token rows (warp w % 4 the row block w % 4; with fewer than 64 token rows the warps past them take part in
    // the products with zero rows and skip the epilogue). The halves' slots of column half 1 then hold zero.
    constexpr int phase1_column_tiles = Wgmma ? L / 8 : L / 16;  // n8 tiles of a unit
#pragma unroll 1
    for (int unit = Wgmma ? 0 : warp; unit < (Wgmma ? 1 : units); unit += NW) {
      const bool step_rows = Wgmma ? warp < 4 : unit < step_units;
      const int half = Wgmma ? 0 : unit % 2;
      const int first = Wgmma ? 16 * (warp % 4) : 16 * ((step_rows ? unit : unit - step_units) / 2);
      const bool active = step_rows || first < QR;
      const int a_first = active ? first : 0;  // the A operands' rows: inside the tiles even where they are masked
      const int first_column = half * (L / 2);
      float upper[phase1_column_tiles][4] = {}, gram[phase1_column_tiles][4] = {};
      const OperandTile value_gradient_a{
          shared_address(value_gradients) + a_from_k_rows(lane, LP) + Forward::at(0, a_first, LP), 32 * LP};
      const OperandTile d_out_a{shared_address(d_out) + a_from_m_rows(lane, VP) + Forward::at(a_first, 0, VP), 32};
      // Blocked tiles: 16-byte pieces 2 kk, 2 kk + 1 (256 bytes a k-step); 16 rows apart, 32 KD bytes.
      const OperandTile rows_a{(step_rows ? keys_address : queries_address) + Forward::blocked_rows_then_columns() +
                                   Forward::blocked(a_first, 0),
                               256};
      if constexpr (Wgmma) {
        const auto u_b = [=](int ks) { return Swizzled128Tiling<L>::n_major(shared_address(solved), VD, ks); };
        const auto key_b = [=](int kk) { return BlockedTiling<KD, VP>::k_major(keys_address, L, kk); };
        std::uint32_t fa[VD / 16][4];
        if (step_rows)
          load_a_fragments<VD / 16, true>(fa, value_gradient_a, true);
        else
          load_a_fragments<VD / 16, false>(fa, d_out_a, active);
        issue_wgmma_product<T>(upper, fa, u_b);
        issue_wgmma_product<T, KD / 16, false, 0>(gram, rows_a, active, key_b);
        wgmma_wait<0>();
        pin_registers(upper);
        pin_registers(gram);
        if (!active) continue;
      } else {
        const OperandTile u_b{shared_address(solved) + b_from_k_rows(lane, LP) + Forward::at(0, first_column, LP),
                              32 * LP, 32};
        if (step_rows)
          accumulate_product<T, VD / 16, true, true>(upper, value_gradient_a, u_b);
        else
          accumulate_product<T, VD / 16, false, true>(upper, d_out_a, u_b);
        accumulate_product<T, KD / 16, false, false>(
            gram, rows_a,
            {keys_address + Forward::blocked_columns_then_rows() + Forward::blocked(first_column, 0), 256, 32 * KD});
      }
      // Column terms of dG (gated), summed over the warp's 16 rows before they meet in shared memory.
      float column_terms[phase1_column_tiles][2] = {};
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = first + group + 8 * h;
        // The row's scalars, loaded once: as far as the compiler knows, the stores below may change them.
        const float row_scale = step_rows ? key_scales[row] : query_scales[row];
        const float row_beta = step_rows ? betas[row] : 0.0f;
        float row_gate = 0.0f;
        if constexpr (Gated) row_gate = log2_gates[step_rows ? row / NH : row];
        float row_sum = 0.0f;  // sum_s H_rs G_rs (step rows) or the gate term of dM o M at r_last(t) (token rows)
#pragma unroll
        for (int n = 0; n < phase1_column_tiles; ++n) {
          // The columns' scalars, two adjacent micro-steps a load.
          const int first_step_column = first_column + 8 * n + 2 * quad;
          const float2 column_scales = *reinterpret_cast<const float2*>(key_scales + first_step_column);
          float2 column_gates = make_float2(0.0f, 0.0f);
          if constexpr (Gated && NH == 1)
            column_gates = *reinterpret_cast<const float2*>(log2_gates + first_step_column);
          else if constexpr (Gated)
            column_gates = make_float2(log2_gates[first_step_column / NH], log2_gates[(first_step_column + 1) / NH]);
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int s = first_step_column + e;
            const float column_scale = e == 0 ? column_scales.x : column_scales.y;
            float decay = 1.0f;  // exp(G_row - G_s), as Forward::gate_between
            if constexpr (Gated) decay = fast_exp2(row_gate - (e == 0 ? column_gates.x : column_gates.y));
            const float dot = gram[n][2 * h + e], product = upper[n][2 * h + e];
            if (step_rows) {
              // Z = diag(b) H is strictly lower, so Z + Z^T holds Z_rs at (r, s) and at (s, r): both written here.
              float h_rs = 0.0f;
              if (s < row) h_rs = -product * decay;
              const float hg = h_rs * dot * row_scale * column_scale;
              row_sum += hg;
              if constexpr (Gated) column_terms[n][e] -= row_beta * hg;
              const float z_rs = row_beta * h_rs;
              if (s <= row) mix[row * MP + s] = from_float<T>(z_rs * column_scale);
              if (s < row) mix[s * MP + row] = from_float<T>(z_rs * row_scale);
            } else {
              const bool causal = row < C && s <= last_step_of<NH>(row);
              const float p_ts = causal ? product * decay : 0.0f;
              if constexpr (Gated) {
                if (causal) {
                  const float through = product * row_scale * column_scale * decay * dot;
                  row_sum += through;
                  column_terms[n][e] -= through;
                }
              }
              readout[row * LP + s] = from_float<T>(p_ts * column_scale);
              mix[s * MP + L + row] = from_float<T>(p_ts * row_scale);
            }
          }
        }
        row_sum = quad_sum(row_sum);
        if (quad == 0) {
          if (step_rows) {
            row_partials[half * L + row] = row_sum;
            if constexpr (Wgmma) row_partials[L + row] = 0.0f;
            if constexpr (Gated) gate_step_rows[half * L + row] = row_beta * row_sum;
            if constexpr (Gated && Wgmma) gate_step_rows[L + row] = 0.0f;
          } else if constexpr (Gated) {
            gate_token_rows[half * QR + row] = row_sum;  // at micro-step last_step_of(row); rows >= C unread
            if constexpr (Wgmma) gate_token_rows[QR + row] = 0.0f;
          }
        }
      }
      if constexpr (Gated) {
#pragma unroll
        for (int n = 0; n < phase1_column_tiles; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            float x = column_terms[n][e];
#pragma unroll
            for (int offset = 4; offset < 32; offset *= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
            if (group == 0)
              gate_columns[(step_rows ? first / 16 : L / 16 + first / 16) * L + first_column + 8 * n + 2 * quad + e] =
                  x;
          }
      }
    }
    if (by_tma) {
      mbarrier_wait(second_wave, 0);
      zero_rows_past_data<L, VP>(
          values, static_cast<int>(min(index_t{Forward::Layout::valid_rows}, (length - chunk * C) * NH)), tid);
    } else {
      copy_async_wait_all();
    }
    __syncthreads();

    // Phase 2: db_r gets dY_r . v_r; dG_last gets exp(G_last) sum(D o S_0).
    {
      constexpr int lanes_per_row = threads / L;  // 2 or 4
      const int r = tid / lanes_per_row, part = tid % lanes_per_row;
      float dot = 0.0f;
      for (int v = part; v < VD; v += lanes_per_row)
        dot += to_float(value_gradients[v * LP + r]) * to_float(values[r * VP + v]);
#pragma unroll
      for (int offset = 1; offset < lanes_per_row; offset *= 2) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
      if (part == 0) beta_gradients[r] = (row_partials[r] + row_partials[L + r]) + dot;
    }
    if constexpr (Gated) {
      float sum = 0.0f;  // over 16-byte pieces of the two tiles (the same permutation of both when swizzled)
      for (int index = tid; index < VD * KD / 8; index += threads) {
        const int v = index / (KD / 8), piece = index % (KD / 8);
        const int offset = Wgmma ? 8 * index : v * KP + 8 * piece;
        const uint4 a = *reinterpret_cast<const uint4*>(adjoints + offset);
        const uint4 b = *reinterpret_cast<const uint4*>(states + offset);
        const std::uint32_t a_words[4] = {a.x, a.y, a.z, a.w}, b_words[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
        for (int w = 0; w < 4; ++w) {
          const float2 x = unpack2<T>(a_words[w]), y = unpack2<T>(b_words[w]);
          sum += x.x * y.x + x.y * y.y;
        }
      }
      sum = warp_sum(sum);
      if (lane == 0) gate_last[warp] = Forward::gate_from_start(log2_gates, C - 1) * sum;
    }
    __syncthreads();

    // Phase 3, per unit (a block of 16 rows, half of its K columns), in rounds of NW units: dK = diag(c) u D^T -
    // diag(b Gamma) dY S_0^T + mix [K; Q] (micro-step rows), or dQ = diag(Gamma_q) dO S_0^T + P K (token rows); then
    // through the normalisations, whose row sums the two halves exchange through shared memory, and out.
    const index_t first_token = chunk * C, first_step = first_token * NH;
    const index_t step_base = span.begin * NH, steps = length * NH;
    constexpr int normalized_rows = L + QR;  // norm_partials: [half][micro-step rows, then token rows]
#pragma unroll 1
    for (int round = 0; round < unit_rounds; ++round) {
      // A warp without a unit this round (token rows, n_h >= 2) takes the last one's place, writing nothing (and,
      // in the wgmma kernel, gives its warpgroup's products zero rows).
      const bool active = phase3_unit(warp, round) < units;
      const int unit = active ? phase3_unit(warp, round) : units - 1;
      const bool step_rows = unit < step_units;  // the same in every warp
      const int half = unit % 2, first = 16 * ((step_rows ? unit : unit - step_units) / 2);
      const int first_column = half * (KD / 2), first_piece = half * (KD / 16);
      const OperandTile state_b{shared_address(states) + b_from_k_rows(lane, KP) + Forward::at(0, first_column, KP),
                                32 * KP, 32};
      // Blocked B tiles of this half's columns: 16 rows (32 KD bytes) a k-step, pieces 2 nb, 2 nb + 1 a block.
      const std::uint32_t key_columns =
          keys_address + Forward::blocked_transposed_b() + Forward::blocked(0, first_piece);
      // wgmma B operands of the warpgroup's column half: S_0^T or D^T (swizzled, N-major), K or Q (blocked, N-major).
      [[maybe_unused]] const auto kept_b = [&](std::uint32_t tile) {
        return [=](int ks) { return Swizzled128Tiling<L>::n_major(tile + (warp / 4) * VD * 128, VD, ks); };
      };
      [[maybe_unused]] const auto blocked_b = [&](std::uint32_t tile) {
        return
            [=](int ks) { return BlockedTiling<KD, VP>::n_major(tile + Forward::blocked(0, 8 * (warp / 4)), L, ks); };
      };
      float acc[KD / 16][4] = {};
      float x[KD / 16][4];  // the row's raw key or query elements in this half
#pragma unroll
      for (int j = 0; j < KD / 16; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float2 pair =
              blocked_pair(step_rows ? key_bytes : query_bytes, first + group + 8 * h, first_piece + j, quad);
          x[j][2 * h] = pair.x;
          x[j][2 * h + 1] = pair.y;
        }
      if (step_rows) {  // every unit of the round is active: step_units is a multiple of NW
        // u D^T, scaled by c_r; the gate term through c.
        const OperandTile u_a =
            Wgmma ? OperandTile{shared_address(solved) + a_from_swizzled_k_rows(lane, first), 16 * 128}
                  : OperandTile{shared_address(solved) + a_from_k_rows(lane, LP) + Forward::at(0, first, LP), 32 * LP};
        const OperandTile value_gradient_a{
            shared_address(value_gradients) + a_from_k_rows(lane, LP) + Forward::at(0, first, LP), 32 * LP};
        float carry[KD / 16][4] = {};
        if constexpr (Wgmma) {
          issue_wgmma_product<T, VD / 16, true>(acc, u_a, true, kept_b(shared_address(adjoints)));
          issue_wgmma_product<T, VD / 16, true>(carry, value_gradient_a, true, kept_b(shared_address(states)));
          wgmma_wait<0>();
          pin_registers(acc);
          pin_registers(carry);
        } else {
          accumulate_product<T, VD / 16, true, true>(
              acc, u_a,
              {shared_address(adjoints) + b_from_k_rows(lane, KP) + Forward::at(0, first_column, KP), 32 * KP, 32});
          accumulate_product<T, VD / 16, true, true>(carry, value_gradient_a, state_b);
        }
        // carry now holds dY S_0^T.
        float carried_sum = 0.0f;  // this unit's share of dG_last (gate_last)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int r = first + group + 8 * h;
          const float kinv = key_scales[r], b_r = betas[r];
          const float gamma_r = Forward::gate_from_start(log2_gates, r / NH);
          const float c_r = Forward::gate_between(log2_gates, C - 1, r / NH);
          const float carried = row_dot(acc, x, h) * kinv * c_r, along_key = row_dot(carry, x, h) * kinv;
          carried_sum += carried;
          if (quad == 0) {
            row_partials[half * L + r] = gamma_r * along_key;
            if constexpr (Gated) gate_step_rows[(2 + half) * L + r] = -carried - b_r * gamma_r * along_key;
          }
          const float weight = b_r * gamma_r;
#pragma unroll
          for (int j = 0; j < KD / 16; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) acc[j][2 * h + e] = c_r * acc[j][2 * h + e] - weight * carry[j][2 * h + e];
        }
        if constexpr (Gated) {
          // carried_sum is the same in a quad's lanes: sum over the eight row groups.
#pragma unroll
          for (int offset = 4; offset < 32; offset *= 2) carried_sum += __shfl_xor_sync(0xffffffffu, carried_sum, offset);
          if (lane == 0) gate_last[NW + unit] = carried_sum;
        }
        // + mix [K; Q].
        const std::uint32_t mix_a = shared_address(mix) + a_from_m_rows(lane, MP) + Forward::at(first, 0, MP);
        if constexpr (Wgmma) {
          issue_wgmma_product<T, L / 16, false>(acc, {mix_a, 32}, true, blocked_b(keys_address));
          issue_wgmma_product<T, QR / 16, false>(acc, {mix_a + Forward::at(0, L, MP), 32}, true,
                                                 blocked_b(queries_address));
          wgmma_wait<0>();
          pin_registers(acc);
        } else {
          accumulate_product<T, L / 16, false, true>(acc, {mix_a, 32}, {key_columns, 32 * KD, 256});
          accumulate_product<T, QR / 16, false, true>(
              acc, {mix_a + Forward::at(0, L, MP), 32},
              {queries_address + Forward::blocked_transposed_b() + Forward::blocked(0, first_piece), 32 * KD, 256});
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float dot = row_dot(acc, x, h);
          if (quad == 0) norm_partials[half * normalized_rows + first + group + 8 * h] = make_float2(dot, 0.0f);
        }
        __syncthreads();  // the other half's row sums
        // Through the key normalisation, then out.
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int r = first + group + 8 * h;
          if (p.key_norm != NormCode::none)
            normalize_backward(acc, x, h, key_scales[r],
                               norm_partials[r].x + norm_partials[normalized_rows + r].x);
          stage_row(output_staging, r, first_column, acc, h, quad);
        }
      } else {
        // dO S_0^T, scaled by exp(G_t); the gate term through it.
        const OperandTile d_out_a{shared_address(d_out) + a_from_m_rows(lane, VP) + Forward::at(first, 0, VP), 32};
        const OperandTile readout_a{shared_address(readout) + a_from_m_rows(lane, LP) + Forward::at(first, 0, LP), 32};
        if constexpr (Wgmma) {
          issue_wgmma_product<T, VD / 16, false>(acc, d_out_a, active, kept_b(shared_address(states)));
          wgmma_wait<0>();
          pin_registers(acc);
        } else if (active) {
          accumulate_product<T, VD / 16, false, true>(acc, d_out_a, state_b);
        }
        if (active) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int t = first + group + 8 * h;
            const float gamma_t = Forward::gate_from_start(log2_gates, t);
            if constexpr (Gated) {
              const float dot = row_dot(acc, x, h) * query_scales[t] * gamma_t;
              if (quad == 0) gate_token_rows[(2 + half) * QR + t] = dot;  // rows >= C unread
#pragma unroll
              for (int j = 0; j < KD / 16; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e) acc[j][2 * h + e] *= gamma_t;
            }
          }
        }
        // + P K
        if constexpr (Wgmma) {
          issue_wgmma_product<T, L / 16, false>(acc, readout_a, active, blocked_b(keys_address));
          wgmma_wait<0>();
          pin_registers(acc);
        } else if (active) {
          accumulate_product<T, L / 16, false, true>(acc, readout_a, {key_columns, 32 * KD, 256});
        }
        if (active) {
          // dq = scale J^T dQ: through the scale, then (below) the query normalisation.
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            float sum_of_squares = 0.0f;
#pragma unroll
            for (int j = 0; j < KD / 16; ++j) {
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                sum_of_squares += x[j][2 * h + e] * x[j][2 * h + e];
                acc[j][2 * h + e] *= p.scale;
              }
            }
            const float dot = row_dot(acc, x, h);
            sum_of_squares = quad_sum(sum_of_squares);
            if (quad == 0)
              norm_partials[half * normalized_rows + L + first + group + 8 * h] = make_float2(dot, sum_of_squares);
          }
        }
        __syncthreads();  // the other half's row sums (every warp arrives, units or not)
        if (active) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int t = first + group + 8 * h;
            const float2 left = norm_partials[L + t], right = norm_partials[normalized_rows + L + t];
            if (p.query_norm != NormCode::none)
              normalize_backward(acc, x, h, inverse_norm(left.y + right.y, p.query_norm, p.eps), left.x + right.x);
            stage_row(output_staging, L + t, first_column, acc, h, quad);
          }
        }
      }
    }
    __syncthreads();

    // Phase 4: dv = diag(b) dY (dY^T's 16 x 16 blocks read transposed, scaled and staged as rows), then dk, dq and
    // dv out from their staging tiles; db, and dg_t = the sum of dG over the micro-steps of tokens t.. to the chunk's
    // end.
    T* const value_staging = reinterpret_cast<T*>(smem + Layout::value_staging);
    if (bp.dv.present()) {
#pragma unroll 1
      for (int block = warp; block < (L / 16) * (VD / 16); block += NW) {
        const int first_row = 16 * (block % (L / 16)), first_value = 16 * (block / (L / 16));
        std::uint32_t fragment[4];  // rows first_row + group (+ 8), value pairs first_value + 2 quad (+ 8)
        ldmatrix_x4_trans(fragment, shared_address(value_gradients) + a_from_k_rows(lane, LP) +
                                        Forward::at(first_value, first_row, LP));
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int r = first_row + group + 8 * (i % 2), v = first_value + 2 * quad + 8 * (i / 2);
          const float2 pair = unpack2<T>(fragment[i]);
          *reinterpret_cast<std::uint32_t*>(value_staging + r * VP + v) =
              pack2<T>(betas[r] * pair.x, betas[r] * pair.y);
        }
      }
    }
    __syncthreads();
    const index_t valid_steps = min(index_t{C * NH}, steps - first_step);
    store_staged_rows<KD, L>(bp.dk, span.row, step_base + first_step, head, output_staging, KP, valid_steps, tid);
    store_staged_rows<KD, QR>(bp.dq, span.row, span.begin + first_token, head, output_staging + L * KP, KP,
                              min(index_t{C}, length - first_token), tid);
    store_staged_rows<VD, L>(bp.dv, span.row, step_base + first_step, head, value_staging, VP, valid_steps, tid);
    if (bp.dbeta.present() && tid < C * NH && first_step + tid < steps)
      bp.dbeta(span.row, step_base + first_step + tid, head) =
          from_float<T>(beta_gradients[tid] - (row_partials[tid] + row_partials[L + tid]));
    if constexpr (Gated) {
      if (warp == 0) {
        // dL/dG at micro-steps 2 lane and 2 lane + 1: their terms summed in a fixed order.
        float terms[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int s = 2 * lane + e;
          float sum = 0.0f;
#pragma unroll
          for (int block = 0; block < Layout::gate_column_blocks; ++block) sum += gate_columns[block * L + s];
          sum += (gate_step_rows[s] + gate_step_rows[L + s]) + (gate_step_rows[2 * L + s] + gate_step_rows[3 * L + s]);
          if ((s + 1) % NH == 0 && s / NH < C) {  // s = last_step_of(t)
            const int t = s / NH;
            sum += (gate_token_rows[t] + gate_token_rows[QR + t]) +
                   (gate_token_rows[2 * QR + t] + gate_token_rows[3 * QR + t]);
          }
          if (s == L - 1)
#pragma unroll
            for (int i = 0; i < Layout::gate_last_terms; ++i) sum += gate_last[i];
          terms[e] = sum;
        }
        // Suffix sums over the 64 micro-steps, two per lane.
        const float first_value = terms[0], second_value = terms[1];
        const float pair = first_value + second_value;
        float suffix = pair;  // sum over lanes >= lane
#pragma unroll
        for (int offset = 1; offset < 32; offset *= 2) {
          const float y = __shfl_down_sync(0xffffffffu, suffix, offset);
          if (lane + offset < 32) suffix += y;
        }
        gamma_gradients[2 * lane] = suffix;
        gamma_gradients[2 * lane + 1] = suffix - first_value;
        __syncwarp();
        if (bp.dg.present())
          for (int t = lane; t < C; t += 32)
            if (first_token + t < length)
              bp.dg(span.row, span.begin + first_token + t, head) = from_float<T>(gamma_gradients[t * NH]);
      }
    }
  }
};

/// Grid: (sequences x splits x V / VB, heads, 2 for the summarize pass, else 1); block: VB / 16 warps; dynamic shared
/// memory: ReverseScanKernel::shared_bytes().
template <class T, int KD, int VD, int NH, bool Gated, int VB = VD>
__global__ void __launch_bounds__(VB / 16 * 32, 1) chunked_reverse_scan_kernel(const ChunkedBackwardParams<T> p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  ReverseScanKernel<T, KD, VD, NH, Gated, VB>::run(p);
#endif
}

/// Grid: as chunked_reverse_scan_kernel's with one value block; block: SpecializedLayout::threads; dynamic shared memory:
/// SpecializedLayout::bytes; maps: q, k and dL/do (in v's place), as the warp-specialised forward's.
template <class T, int KD, int NH, bool Gated>
__global__ void __launch_bounds__(SpecializedLayout<T, KD, KD, NH>::threads, 1)
    specialized_reverse_scan_kernel(const ChunkedBackwardParams<T> p, const __grid_constant__ SpecializedMaps maps) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  SpecializedReverseScanKernel<T, KD, NH, Gated>::run(p, maps);
#else
  (void)maps;
  __trap();  // wgmma, TMA and setmaxnreg need sm_90a; the host launches this kernel only from an sm_90a build
#endif
}

/// Grid: (sequences * chunks_per_row, or chunks_per_row + sequences when packed; heads); block: V / 16 warps; dynamic
/// shared memory: GradientLayout::bytes.
template <class T, int KD, int VD, int NH, bool Gated>
__global__ void __launch_bounds__(VD / 16 * 32, 1)
    chunked_gradient_kernel(const ChunkedBackwardParams<T> p, const __grid_constant__ GradientMaps maps) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  ChunkGradientKernel<T, KD, VD, NH, Gated>::run(p, maps);
#endif
}

/// The chunk-gradient kernel with phase 3 on wgmma (ChunkGradientKernel's `Wgmma`; K = V = 128): the grid and block
/// of chunked_gradient_kernel, dynamic shared memory GradientLayout::wgmma_bytes, maps with S_0^T and D^T in
/// 128-byte-swizzled boxes of 64 columns.
template <class T, int KD, int VD, int NH, bool Gated>
__global__ void __launch_bounds__(VD / 16 * 32, 1)
    wgmma_chunk_gradient_kernel(const ChunkedBackwardParams<T> p, const __grid_constant__ GradientMaps maps) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  ChunkGradientKernel<T, KD, VD, NH, Gated, true>::run(p, maps);
#else
  (void)p, (void)maps;
  __trap();  // wgmma and TMA need sm_90a; the host launches this kernel only from an sm_90a build
#endif
}

}  // namespace deltaproduct::detail::cuda_chunked
