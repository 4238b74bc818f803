// The warp-specialised form of the tensor-core chunked forward (sm_90a only). The chunk algebra, precision and
// fragment layouts are chunked_kernel.cuh's; what changes is who does what, and when.
//
// In the one-role kernel every warp takes part in every phase of a chunk, so a chunk costs the sum of its phases:
// copying the inputs, the normalisers and gates, the Gram blocks and diagonal inverses, and the chain on the state.
// Only the last depends on the previous chunk. Here a producer warpgroup (128 threads after the V / 16 consumer warps)
// does everything that does not need the state, one chunk ahead of the consumers:
//   producer, chunk c: wait for c's inputs (cp.async, issued two chunks earlier); key and query normalisers and
//     cumulative gates; K K^T and Q K^T as two 64 x 64 wgmmas from shared memory, scaled and masked into -A, the
//     diagonal blocks (inverted in fp32 by the warp that owns them) and P; signal "chunk c ready"; wait until the
//     consumers are done with chunk c - 1; start copying chunk c + 1 into the stage c - 1 used.
//   consumers, chunk c: wait for "chunk c ready"; S^T K^T and S^T Q^T, R^T; write out chunk c - 1's output; the
//     block forward substitution, the output and the state update; signal "done with chunk c".
// A chunk then costs the longer of the two roles instead of their sum. The per-chunk tiles the producer writes come in
// two sets (chunk parity), the input stages in two. Synchronisation is by named barriers, one per set and direction
// (the consumer barrier and the producer barrier order each role's own phases): no block-wide barrier after the
// roles split. The producer gives registers back (setmaxnreg) so that the consumers keep the state and the
// chain's fragments without spilling.
#pragma once

#include <cstddef>
#include <cstdint>

#include "deltaproduct/cuda/chunked_kernel.cuh"

// Phase timestamps for studying the schedule: a translation unit may define DELTAPRODUCT_TRACE(role, event, chunk)
// (role 0: consumers, 1: producer) before including this header; by default it expands to nothing.
#ifndef DELTAPRODUCT_TRACE
#define DELTAPRODUCT_TRACE(role, event, chunk)
#endif

namespace deltaproduct::detail::cuda_chunked {

/// Shared-memory map of the warp-specialised kernel, in bytes: TileLayout's input stages, two sets of the per-chunk
/// tiles the producer writes, the producer's fp32 diagonal blocks, and the consumers' output staging tiles.
template <class T, int KD, int VD, int NH>
struct SpecializedLayout {
  using Tile = TileLayout<T, KD, VD, NH>;
  static constexpr int L = Tile::L, QR = Tile::query_rows;
  static constexpr int LP = Tile::step_pitch, VP = Tile::value_pitch, DP = Tile::diagonal_pitch;
  static constexpr int stages = 2;  ///< input stages (ChunkedKernel::stage_at's layout)
  static constexpr int consumer_warps = VD / 16, consumer_threads = 32 * consumer_warps;
  static constexpr int producer_threads = 128;  ///< one warpgroup: wgmma's unit
  static constexpr int threads = consumer_threads + producer_threads;

  // One set of per-chunk tiles; offsets within the set.
  static constexpr std::size_t negated_a = 0;                                                     ///< half [L][LP]
  static constexpr std::size_t diagonal_inverses = round_up(negated_a + 2 * L * LP, 128);        ///< half [4][16][DP]
  static constexpr std::size_t readout = round_up(diagonal_inverses + 2 * 4 * 16 * DP, 128);     ///< T [QR][LP]
  static constexpr std::size_t key_scales = round_up(readout + 2 * QR * LP, 128);                ///< float [L]
  static constexpr std::size_t query_scales = key_scales + sizeof(float) * L;                    ///< float [L]
  static constexpr std::size_t log2_gates = query_scales + sizeof(float) * L;                    ///< float [L]
  static constexpr std::size_t set_bytes = round_up(log2_gates + sizeof(float) * L, 128);

  static constexpr std::size_t sets = stages * Tile::stage_bytes;                      ///< two sets, set_bytes apart
  static constexpr std::size_t diagonal_blocks = sets + 2 * set_bytes;                 ///< float [4][16][17]
  static constexpr std::size_t output = round_up(diagonal_blocks + sizeof(float) * 4 * 16 * 17, 128);  ///< T [QR][VP]
  static constexpr std::size_t partial_output =
      round_up(output + 2 * QR * VP, 128);  ///< float4 [consumer warps][QR / 8][32]
  static constexpr std::size_t bytes = round_up(partial_output + 16 * consumer_warps * (QR / 8) * 32, 128);
};

template <class T, int KD, int VD, int NH, bool Gated>
struct SpecializedChunkedKernel {
  using Base = ChunkedKernel<T, KD, VD, NH, Gated>;
  using Layout = SpecializedLayout<T, KD, VD, NH>;
  using Stage = typename Base::Stage;
  using Tiles = typename Base::Tiles;
  using ChunkPart = typename Base::ChunkPart;
  using ChunkScratch = typename Base::ChunkScratch;
  using PendingScalar = typename Base::PendingScalar;
  static constexpr int L = Layout::L, QR = Layout::QR, C = Base::C, Stages = Layout::stages;
  static constexpr int consumers = Layout::consumer_threads, producers = Layout::producer_threads;
  static constexpr int all_threads = Layout::threads;

  static_assert(L == 64, "the producer's Gram products are 64 x 64 wgmmas: one row block of 16 per warp");
  static_assert(consumers % 128 == 0, "the consumers are whole warpgroups (V = 64 or 128)");

  // Named barrier ids (0 is __syncthreads()).
  static constexpr int consumer_barrier = 1, producer_barrier = 2;
  static constexpr int ready_barrier = 3;  ///< + set: the producer has filled set s (the chunk is ready)
  static constexpr int done_barrier = 5;   ///< + set: the consumers are done with the chunk of set s

  // Registers: at launch every thread of a 384-thread CTA gets 168 (65536 / 384, rounded down to a multiple of 8);
  // the producer gives back what it does not need and the consumers take exactly that (ptxas allocates each role's
  // code within its count: the consumers' chain needs ~190, the producer ~88 with its copy addresses kept local).
  static constexpr int launch_registers = 168, producer_registers = 88, consumer_registers = 208;
  static_assert(all_threads != 384 ||
                    producer_registers * producers + consumer_registers * consumers <= launch_registers * all_threads,
                "setmaxnreg.inc waits for registers that setmaxnreg.dec freed: the roles must fit the launch's");

  /// Where set `set` of the per-chunk tiles is.
  struct Set {
    __half* negated_a;
    __half* diagonal_inverses;
    T* readout;
    float* key_scales;
    float* query_scales;
    float* log2_gates;
  };
  static __device__ __forceinline__ Set set_at(unsigned char* base, int set) {
    unsigned char* s = base + Layout::sets + static_cast<std::size_t>(set) * Layout::set_bytes;
    return {reinterpret_cast<__half*>(s + Layout::negated_a), reinterpret_cast<__half*>(s + Layout::diagonal_inverses),
            reinterpret_cast<T*>(s + Layout::readout),        reinterpret_cast<float*>(s + Layout::key_scales),
            reinterpret_cast<float*>(s + Layout::query_scales), reinterpret_cast<float*>(s + Layout::log2_gates)};
  }
  /// Shared-space addresses of the tiles ldmatrix and wgmma read: inputs from stage `stage`, the rest from set `set`.
  static __device__ __forceinline__ Tiles tiles_at(std::uint32_t base, int stage, int set) {
    const std::uint32_t in = base + static_cast<std::uint32_t>(stage * Base::Layout::stage_bytes);
    const std::uint32_t s = base + static_cast<std::uint32_t>(Layout::sets + set * Layout::set_bytes);
    return {in + static_cast<std::uint32_t>(Base::Layout::keys),
            in + static_cast<std::uint32_t>(Base::Layout::values),
            in + static_cast<std::uint32_t>(Base::Layout::queries),
            s + static_cast<std::uint32_t>(Layout::negated_a),
            s + static_cast<std::uint32_t>(Layout::diagonal_inverses),
            s + static_cast<std::uint32_t>(Layout::readout)};
  }

  /// Starts copying chunk `chunk` into `stage` (three commit groups) and loads its betas and gates.
  static __device__ __forceinline__ PendingScalar start_chunk_copy(const ChunkedParams<T>& p, const SequenceSpan& span,
                                                                   int head, index_t chunk, const Stage& stage,
                                                                   int tid) {
    // Laundered: the copy's address arithmetic stays here instead of being hoisted across the chunk's Gram work.
    asm volatile("" : "+r"(tid));
    asm volatile("" : "+l"(chunk));
    Base::template copy_chunk_part<ChunkPart::keys, producers>(p, span, head, chunk, stage, tid);
    Base::template copy_chunk_part<ChunkPart::queries, producers>(p, span, head, chunk, stage, tid);
    Base::template copy_chunk_part<ChunkPart::values, producers>(p, span, head, chunk, stage, tid);
    return Base::load_scalars(p, span, head, chunk, tid);
  }

  /// One Gram product of the producer warpgroup: acc = X K^T (64 x 64, X = K or Q, inner dimension K) from shared
  /// memory, both operands K-major in the blocked layout.
  static __device__ __forceinline__ void gram_product(std::uint32_t rows, std::uint32_t keys, float (&acc)[8][4]) {
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[j][e] = 0.0f;
    pin_registers(acc);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < KD / 16; ++kk)
      wgmma_shared_64x64<T>(acc, wgmma_descriptor(rows + Base::blocked(0, 2 * kk), 128, KD * 16),
                            wgmma_descriptor(keys + Base::blocked(0, 2 * kk), 128, KD * 16));
    wgmma_commit();
    wgmma_wait_all();
    pin_registers(acc);
  }

  /// The producer's Gram blocks of the chunk in `stage`: warp w (0..3) owns row block w of K K^T and of Q K^T. It
  /// stores -A left of the diagonal, writes and inverts its diagonal block, and stores P's causal blocks.
  static __device__ __forceinline__ void producer_gram(const Stage& stage, const Tiles& tiles, const Set& set,
                                                       float* diagonal_blocks, int warp) {
    float acc[8][4];
    gram_product(tiles.keys, tiles.keys, acc);
#pragma unroll
    for (int cb = 0; cb < 4; ++cb)
      if (cb <= warp)
        Base::template store_gram_tiles<false, 2>(&acc[2 * cb], stage, warp, cb, diagonal_blocks, set.negated_a,
                                                  set.readout, set.key_scales, set.query_scales, set.log2_gates);
    __syncwarp();
    Base::invert_diagonal_block(warp, diagonal_blocks, set.diagonal_inverses);

    // Rows past QR read beyond the query tile (still shared memory); their results are dropped.
    gram_product(tiles.queries, tiles.keys, acc);
    if (16 * warp < QR) {
#pragma unroll
      for (int cb = 0; cb < 4; ++cb)
        if (readout_block_used<NH, C>(16 * warp, 16, 16 * cb))
          Base::template store_gram_tiles<true, 2>(&acc[2 * cb], stage, warp, cb, diagonal_blocks, set.negated_a,
                                                   set.readout, set.key_scales, set.query_scales, set.log2_gates);
    }
  }

  /// The producer warpgroup's loop over the CTA's chunks [first, end).
  static __device__ __forceinline__ void produce(const ChunkedParams<T>& p, const SequenceSpan& span, int head,
                                                 index_t first, index_t end, std::uint32_t smem_address) {
    const int tid = Base::thread_index() - consumers, warp = tid / 32;
    // The first Stages - 1 chunks start copying at once.
    PendingScalar pending{T{}, false};
    int pending_stage = -1;
#pragma unroll
    for (int s = 0; s + 1 < Stages; ++s)
      if (first + s < end) {
        const Stage stage = Base::stage_at(shared_pointer<unsigned char>(smem_address), s);
        Base::store_scalars(stage, start_chunk_copy(p, span, head, first + s, stage, tid), tid);
      }
    for (index_t chunk = first; chunk < end; ++chunk) {
      const std::uint32_t base_address = opaque(smem_address);
      unsigned char* const base = shared_pointer<unsigned char>(base_address);
      const index_t i = chunk - first;
      const int stage_index = static_cast<int>(i % Stages), set_index = static_cast<int>(i % 2);
      const Stage stage = Base::stage_at(base, stage_index);
      const Set set = set_at(base, set_index);
      const Tiles tiles = tiles_at(base_address, stage_index, set_index);
      DELTAPRODUCT_TRACE(1, 0, i);
      if (pending_stage >= 0) Base::store_scalars(Base::stage_at(base, pending_stage), pending, tid);
      // This chunk's copies are the oldest in flight.
      if constexpr (Stages == 3) {
        if (chunk + 1 < end)
          copy_async_wait<3>();
        else
          copy_async_wait_all();
      } else {
        copy_async_wait_all();
      }
      DELTAPRODUCT_TRACE(1, 1, i);
      fence_proxy_async();  // the copies' writes, made through the generic proxy, are read by wgmma
      named_barrier_sync(producer_barrier, producers);  // the chunk, its betas and gates are in `stage`
      DELTAPRODUCT_TRACE(1, 2, i);
      Base::template prepare_scales<producers>(p, stage, set.key_scales, set.query_scales, set.log2_gates, tid);
      named_barrier_sync(producer_barrier, producers);  // scales and gates are ready
      DELTAPRODUCT_TRACE(1, 3, i);
      producer_gram(stage, tiles, set, reinterpret_cast<float*>(base + Layout::diagonal_blocks), warp);
      DELTAPRODUCT_TRACE(1, 5, i);
      named_barrier_arrive(ready_barrier + set_index, all_threads);

      // Chunk chunk + Stages - 1 goes into the stage chunk - 1 used; set (chunk + 1) % 2 is chunk - 1's too.
      if (chunk + 1 < end && chunk > first) named_barrier_sync(done_barrier + 1 - set_index, all_threads);
      DELTAPRODUCT_TRACE(1, 6, i);
      const index_t refill = chunk + Stages - 1;
      pending_stage = -1;
      if (refill < end) {
        pending_stage = static_cast<int>((i + Stages - 1) % Stages);
        pending = start_chunk_copy(p, span, head, refill, Base::stage_at(base, pending_stage), tid);
      }
    }
  }

  /// The consumer warps' loop: the chain on the state, chunk after chunk, as ChunkedKernel::run's.
  static __device__ __forceinline__ void consume(const ChunkedParams<T>& p, const SequenceSpan& span,
                                                 index_t sequence, int head, index_t first, index_t end,
                                                 std::uint32_t smem_address, float (&state)[KD / 8][4]) {
    for (index_t chunk = first; chunk < end; ++chunk) {
      const std::uint32_t base_address = opaque(smem_address);
      unsigned char* const base = shared_pointer<unsigned char>(base_address);
      const index_t i = chunk - first;
      const int stage_index = static_cast<int>(i % Stages), set_index = static_cast<int>(i % 2);
      const Stage stage = Base::stage_at(base, stage_index);
      const Set set = set_at(base, set_index);
      const Tiles tiles = tiles_at(base_address, stage_index, set_index);
      const ChunkScratch scratch{set.key_scales, set.query_scales, set.log2_gates,
                                 reinterpret_cast<T*>(base + Layout::output),
                                 reinterpret_cast<float4*>(base + Layout::partial_output) +
                                     Base::thread_index() / 32 * (QR / 8) * 32 + Base::thread_index() % 32};
      DELTAPRODUCT_TRACE(0, 0, i);
      named_barrier_sync(ready_barrier + set_index, all_threads);  // the producer has filled the chunk's set
      DELTAPRODUCT_TRACE(0, 1, i);

      float work[L / 8][4];
      const index_t kept_tile =
          Base::chunk_residuals(p, span, sequence, head, chunk, stage, tiles, scratch, state, work);
      // Every consumer is past the previous chunk (they all waited above); its output leaves the staging tile
      // before this chunk's overwrites it.
      if (chunk > first && Base::writes_outputs(p)) Base::write_output(p, span, head, chunk - 1, scratch.output);
      DELTAPRODUCT_TRACE(0, 2, i);
      named_barrier_sync(consumer_barrier, consumers);
      DELTAPRODUCT_TRACE(0, 3, i);
      Base::chunk_solve_and_update(p, tiles, scratch, kept_tile, state, work);
      DELTAPRODUCT_TRACE(0, 4, i);
      // The producer waits for this only where it reuses the chunk's stage or set.
      if (chunk + 2 < end) named_barrier_arrive(done_barrier + set_index, all_threads);
    }
    if (first < end && Base::writes_outputs(p)) {
      named_barrier_sync(consumer_barrier, consumers);
      Base::write_output(p, span, head, end - 1,
                         reinterpret_cast<const T*>(shared_pointer<unsigned char>(smem_address) + Layout::output));
    }
  }

  static __device__ __forceinline__ void run(const ChunkedParams<T>& p) {
    extern __shared__ __align__(128) unsigned char smem[];
    if (inputs_rejected(p.status)) return;  // a value check failed: write nothing
    const int head = static_cast<int>(blockIdx.y);
    const index_t sequence = blockIdx.x / p.splits;
    const int split = static_cast<int>(blockIdx.x % p.splits);
    if (Base::idle_summary(p, split)) return;
    const SequenceSpan span = sequence_span(p, sequence);
    const auto range = Base::chunk_range(p, span, split);
    const std::uint32_t smem_address = shared_address(smem);

    if (Base::thread_index() >= consumers) {
      if constexpr (all_threads == 384) set_register_count<producer_registers, false>();
      produce(p, span, head, range.first, range.end, smem_address);
      return;
    }
    if constexpr (all_threads == 384) set_register_count<consumer_registers, true>();
    float state[KD / 8][4];
    Base::load_start_state(p, sequence, head, split, state);
    consume(p, span, sequence, head, range.first, range.end, smem_address, state);
    Base::store_end_state(p, sequence, head, split, state);
  }
};

/// Grid as chunked_forward_kernel's; block: SpecializedLayout::threads; dynamic shared memory: SpecializedLayout::bytes.
template <class T, int KD, int VD, int NH, bool Gated>
__global__ void __launch_bounds__(SpecializedLayout<T, KD, VD, NH>::threads, 1)
    specialized_chunked_forward_kernel(const ChunkedParams<T> p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  SpecializedChunkedKernel<T, KD, VD, NH, Gated>::run(p);
#else
  __trap();  // wgmma and setmaxnreg need sm_90a; the host launches this kernel only from an sm_90a build
#endif
}

}  // namespace deltaproduct::detail::cuda_chunked
