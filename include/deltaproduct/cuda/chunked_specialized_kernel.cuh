// The warp-specialised form of the tensor-core chunked forward (sm_90a only). The chunk algebra, precision and
// fragment layouts are chunked_kernel.cuh's; what changes is who does what, and when.
//
// In the one-role kernel every warp takes part in every phase of a chunk, so a chunk costs the sum of its phases:
// copying the inputs, the normalisers and gates, the Gram blocks and diagonal inverses, and the chain on the state.
// Only the last depends on the previous chunk. Here a producer warpgroup (128 threads after the V / 16 consumer warps)
// does everything that does not need the state, one chunk ahead of the consumers:
//   producer, chunk c: wait for c's inputs (copied by the tensor memory accelerator, TMA); key and query normalisers
//     and cumulative gates; K K^T and K Q^T as two 64 x 64 wgmmas from shared memory, scaled and masked into -A, the
//     diagonal blocks (inverted in fp32 by the warp that owns them) and P; signal "chunk c ready"; wait until the
//     consumers are done with chunk c - 1 (its set is c + 1's); start loading chunk c + 2's betas and gates.
//   consumers, chunk c: wait for "chunk c ready"; S^T K^T and S^T Q^T, R^T; then, once every consumer is there, the
//     first consumer warp starts copying chunk c + 2's values and queries into c's stage; write out chunk c - 1's
//     output; the block forward substitution, the output (staged once every consumer has written c - 1's out) and
//     the state update; signal "done with chunk c"; once every consumer is, the first warp starts copying chunk
//     c + 3's keys into c's key slot.
// A chunk then costs the longer of the two roles instead of their sum. The per-chunk tiles the producer writes come in
// two sets (chunk parity), the value and query stages in two, the key tiles in three (the state update at the end of
// a chunk reads them). The roles hand sets over through mbarriers, one per set and direction, and order their own
// phases with named barriers: no block-wide barrier after the roles split. The producer gives registers back
// (setmaxnreg) so that the consumers keep the state and the chain's fragments without spilling.
//
// Copies: per chunk, one warp issues one TMA box per 64-column half of the key, value and query tiles (64 elements x
// the tile's rows, 128-byte swizzled), counted on the key slot's and the stage's mbarriers. The consumers issue them
// as soon as they release a slot or a stage, so that a chunk's copies have more than a whole chunk to land: issued by
// the producer after its Gram products, or as the consumers finished a chunk with two stages of everything, they
// landed just as the producer needed them (with the memory system loaded, a chunk's 48 KB take ~1.5 us to land). The
// betas and gates, plain loads, are issued two chunks ahead for the same reason. wgmma reads the swizzled layout
// natively and ldmatrix reads it without bank conflicts (Swizzled128Tiling). The copies cost the multiprocessor's
// load/store path nothing: issued per thread with cp.async, the same bytes stalled the copying warps for thousands of
// cycles per chunk and slowed the consumers' shared-memory traffic beside them; and boxes of 16-byte rows (one per 8
// columns) kept the copy engine busy for as long.
#pragma once

#include <cuda.h>  // CUtensorMap (the type only: no driver API call here)

#include <cstddef>
#include <cstdint>

#include "deltaproduct/cuda/chunked_kernel.cuh"

namespace deltaproduct::detail::cuda_chunked {

/// Tile addressing of the warp-specialised kernel's input stages, as the TMA boxes write them with 128-byte swizzling:
/// a tile of `rows` rows is one or two halves of 64 columns (128 bytes a row), rows * 128 bytes apart; in a half, row
/// r's 16-byte piece c (of 8) sits at r * 128 + ((c ^ (r % 8)) * 16). wgmma reads this layout natively; ldmatrix's
/// eight rows of one piece fall in eight different bank groups; tile halves are 1024-byte aligned.
template <int L>
struct Swizzled128Tiling {
  /// One lane per row: a warp reads one piece of 32 consecutive rows without bank conflicts.
  static constexpr int lanes_per_row = 1;
  static constexpr std::uint64_t swizzle_128 = 1;
  __host__ __device__ static constexpr std::uint32_t piece(int rows, int row, int piece) {
    return static_cast<std::uint32_t>((piece / 8) * rows * 128 + row * 128 + (((piece % 8) ^ (row % 8)) * 16));
  }
  /// K-major: k step kk is 32 bytes into its half's 128-byte rows; 8-row groups 1024 bytes apart (leading unused).
  __device__ static std::uint64_t k_major(std::uint32_t tile, int rows, int kk) {
    const std::uint32_t start = tile + static_cast<std::uint32_t>((kk / 4) * rows * 128 + (kk % 4) * 32);
    return wgmma_descriptor(start, 16, 1024, swizzle_128);
  }
  /// N-major (k = row, n = key): k step ks starts 16 rows in; the halves (64 keys each) rows * 128 bytes apart
  /// (leading, along N), 8-row groups 1024 bytes apart (stride, along K).
  __device__ static std::uint64_t n_major(std::uint32_t tile, int rows, int ks) {
    return wgmma_descriptor(tile + static_cast<std::uint32_t>(ks * 16 * 128), static_cast<std::uint32_t>(rows * 128),
                            1024, swizzle_128);
  }
  __device__ static std::uint32_t value_block(int lane, int rb, int cb) {
    const int row = 16 * rb + lane % 8 + 8 * (lane / 16), column = 16 * cb + 8 * ((lane / 8) % 2);
    return piece(L, row, column / 8);
  }
};

/// The TMA descriptors of q, k and v (4-dimensional: elements, heads, rows, batch), kernel parameters; with
/// DELTAPRODUCT_EXPERIMENTAL_TMA_OUTPUT also o's, where `output` says the driver took it.
struct SpecializedMaps {
  CUtensorMap q, k, v, o;
  bool output = false;
};

/// Shared-memory map of the warp-specialised kernel, in bytes: its input stages (swizzled tiles), two sets of the
/// per-chunk tiles the producer writes, the producer's fp32 diagonal blocks, the consumers' output staging tiles and
/// the stages' mbarriers.
template <class T, int KD, int VD, int NH>
struct SpecializedLayout {
  using Tile = TileLayout<T, KD, VD, NH>;
  static constexpr int L = Tile::L, QR = Tile::query_rows;
  static constexpr int LP = Tile::step_pitch, VP = Tile::value_pitch, DP = Tile::diagonal_pitch;
  static constexpr int stages = 2;     ///< value and query stages
  static constexpr int key_slots = 3;  ///< key tiles: keys are read to the end of a chunk, so one more slot
  static constexpr int consumer_warps = VD / 16, consumer_threads = 32 * consumer_warps;
  static constexpr int producer_threads = 128;  ///< one warpgroup: wgmma's unit
  static constexpr int threads = consumer_threads + producer_threads;
  /// Whether a chunk's output may leave by TMA boxes of its C tokens from a swizzled staging tile: with
  /// DELTAPRODUCT_EXPERIMENTAL_TMA_OUTPUT where a chunk's tokens fill the tile's rows (n_h = 1, 2, 4).
  static constexpr bool output_by_tma = DELTAPRODUCT_EXPERIMENTAL_TMA_OUTPUT != 0 && QR * NH == L;

  // One value and query stage; offsets within the stage (swizzled TMA destinations are 1024-byte aligned).
  static constexpr std::size_t values = 0;                                    ///< T [VD / 64][L][64], swizzled
  static constexpr std::size_t queries = values + 2 * L * VD;                 ///< T [KD / 64][QR][64], swizzled
  static constexpr std::size_t betas = round_up(queries + 2 * QR * KD, 128);  ///< float [L]
  static constexpr std::size_t gates = betas + sizeof(float) * L;             ///< float [L]: g per token
  static constexpr std::size_t stage_bytes = round_up(gates + sizeof(float) * L, 1024);
  static constexpr std::uint32_t stage_copy_bytes = 2 * (L * VD + QR * KD);  ///< what a stage's TMA boxes bring
  /// One key slot: T [KD / 64][L][64], swizzled (a multiple of 1024 bytes).
  static constexpr std::size_t key_bytes = 2 * L * KD;
  static constexpr std::uint32_t key_copy_bytes = 2 * L * KD;
  static constexpr std::size_t key_tiles = stages * stage_bytes;  ///< the key slots, key_bytes apart

  // One set of per-chunk tiles, laid out as a kept preamble (the backward may copy it out whole); offsets within it.
  using Preamble = PreambleLayout<NH>;
  static constexpr std::size_t negated_a = Preamble::negated_a;                  ///< half [L][LP]
  static constexpr std::size_t diagonal_inverses = Preamble::diagonal_inverses;  ///< half [4][16][DP]
  static constexpr std::size_t readout = Preamble::readout;                      ///< T [QR][LP]
  static constexpr std::size_t key_scales = Preamble::key_scales;                ///< float [L]
  static constexpr std::size_t query_scales = Preamble::query_scales;            ///< float [L]
  static constexpr std::size_t log2_gates = Preamble::log2_gates;                ///< float [L]
  static constexpr std::size_t set_bytes = Preamble::bytes;
  static_assert(Preamble::QR == QR && Preamble::LP == LP && Preamble::DP == DP, "a set is a preamble");

  static constexpr std::size_t sets = key_tiles + key_slots * key_bytes;  ///< two sets, set_bytes apart
  static constexpr std::size_t diagonal_blocks = sets + 2 * set_bytes;    ///< float [4][16][Tile::block_pitch]
  static_assert(diagonal_blocks % 16 == 0, "the inversion reads the diagonal blocks' rows 16 bytes at a time");
  /// The output staging tile, T [QR][VP]: a chunk's output is staged there at the end of the chunk and written out
  /// in the next one, after the consumers' first barrier. With output_by_tma it holds two swizzled TMA boxes (64
  /// values x QR tokens each, ChunkedKernel::output_piece<true>), sent out by TMA at the chunk's end.
  static constexpr std::size_t output =
      round_up(diagonal_blocks + sizeof(float) * 4 * 16 * Tile::block_pitch, output_by_tma ? 1024 : 128);
  static constexpr std::size_t partial_output =
      output + round_up(2 * QR * VP, 128);  ///< float4 [consumer warps][QR / 8][32]
  static constexpr std::size_t copy_barriers =
      round_up(partial_output + 16 * consumer_warps * (QR / 8) * 32, 128);     ///< uint64 [stages]: mbarriers
  static constexpr std::size_t key_barriers = copy_barriers + 8 * stages;      ///< uint64 [key_slots]
  static constexpr std::size_t ready_barriers = key_barriers + 8 * key_slots;  ///< uint64 [2]: a set is filled
  static constexpr std::size_t done_barriers = ready_barriers + 8 * 2;         ///< uint64 [2]: a set is read
  static constexpr std::size_t stage_free_barriers = done_barriers + 8 * 2;    ///< uint64 [stages]: a stage is read
  /// Dynamic shared memory to ask for: the map, and room to align its start to 1024 bytes.
  static constexpr std::size_t bytes = round_up(stage_free_barriers + 8 * stages, 128) + 1024;
};

template <class T, int KD, int VD, int NH, bool Gated>
struct SpecializedChunkedKernel {
  using Base = ChunkedKernel<T, KD, VD, NH, Gated>;
  using Layout = SpecializedLayout<T, KD, VD, NH>;
  using Tiling = Swizzled128Tiling<Layout::L>;
  using Stage = typename Base::Stage;
  using Tiles = typename Base::Tiles;
  using ChunkScratch = typename Base::ChunkScratch;
  using PendingScalar = typename Base::PendingScalar;
  static constexpr int L = Layout::L, QR = Layout::QR, C = Base::C, Stages = Layout::stages;
  static constexpr int consumers = Layout::consumer_threads, producers = Layout::producer_threads;
  static constexpr int all_threads = Layout::threads;

  static_assert(L == 64, "the producer's Gram products are 64 x 64 wgmmas: one row block of 16 per warp");
  static_assert(consumers % 128 == 0, "the consumers are whole warpgroups (V = 64 or 128)");
  static constexpr int KeySlots = Layout::key_slots;
  /// Whether the producer reads the key normalisers off K K^T's diagonal (no pass over the keys), sums the query
  /// normalisers and gates while K K^T and K Q^T run, and shares K K^T's lower blocks evenly between its warps. Chosen
  /// where it measured faster on an H100: 1-4% for n_h >= 2 at K = 128; 0-3% slower for n_h = 1 (the query pass,
  /// 64 rows, then outlasts the products) and 8-16% slower at K = 64 (their products are half as long).
  static constexpr bool gram_normalisers =
      KD == 128 && (NH >= 2 || DELTAPRODUCT_EXPERIMENTAL_GRAM_NORMALISERS_NH1 != 0);
  /// Whether the producer loads a chunk's betas and gates one iteration before it stores them, into the registers it
  /// stores from (a whole chunk, thousands of cycles, for the load to land). Two ahead, the loads of chunk i + 2 are
  /// issued at the end of iteration i and moved into the stored registers at the start of iteration i + 1: that
  /// register copy waits for the load (the compiler emits it as a PRMT of the load's destination), one memory latency
  /// (~330 cycles on an H200, ~500 on an H100: the "betas and gates stored" stamp) at the start of every iteration.
  static constexpr bool scalars_one_ahead = DELTAPRODUCT_EXPERIMENTAL_SCALARS_ONE_AHEAD != 0;
  /// Whether the consumers give a stage back by arriving at its stage-free mbarrier, which only the warp that refills
  /// it waits for, instead of a barrier of all consumers mid-chunk. The barrier stays where the threads write the
  /// previous chunk's output out of the staging tile (each reads rows other warps staged).
  static constexpr bool stage_release_by_arrival = DELTAPRODUCT_EXPERIMENTAL_STAGE_RELEASE_BY_ARRIVAL != 0;
  /// Whether the forward's producer refills a key slot (it waits for the chunk that used it to be done anyway, at the
  /// end of its next iteration) instead of the consumers' first warp, which then waits for every consumer at the end
  /// of each chunk only where it sends the output by TMA. The reverse scan's consumers keep refilling their slots.
  static constexpr bool key_refill_by_producer = DELTAPRODUCT_EXPERIMENTAL_KEY_REFILL_BY_PRODUCER != 0;

  // Named barriers order each role's own phases (ids; 0 is __syncthreads()). The hand-offs between the roles are
  // mbarriers, each thread arriving with release semantics: ready[s] (every producer thread has written set s),
  // done[s] (every consumer thread is done with the chunk of set s and its keys).
  static constexpr int consumer_barrier = 1, producer_barrier = 2;
  /// SpecializedLayout::output_by_tma: the staging tile is swizzled, and a chunk whose tokens all belong to the
  /// sequence leaves by two TMA boxes, issued by the first consumer thread once every consumer has staged it.
  static constexpr bool output_by_tma = Layout::output_by_tma;

  // Registers: at launch every thread of a 384-thread CTA gets 168 (65536 / 384, rounded down to a multiple of 8);
  // the producer gives back what it does not need and the consumers take exactly that (ptxas allocates each role's
  // code within its count: the consumers' chain needs ~190, the producer ~100 with both Gram products in flight).
  static constexpr int launch_registers = 168, producer_registers = 104, consumer_registers = 200;
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
    return {
        reinterpret_cast<__half*>(s + Layout::negated_a),   reinterpret_cast<__half*>(s + Layout::diagonal_inverses),
        reinterpret_cast<T*>(s + Layout::readout),          reinterpret_cast<float*>(s + Layout::key_scales),
        reinterpret_cast<float*>(s + Layout::query_scales), reinterpret_cast<float*>(s + Layout::log2_gates)};
  }
  /// The chunk's inputs: keys from key slot `slot`, the rest from stage `stage`.
  static __device__ __forceinline__ Stage stage_at(unsigned char* base, int stage, int slot) {
    unsigned char* s = base + static_cast<std::size_t>(stage) * Layout::stage_bytes;
    return {reinterpret_cast<T*>(base + Layout::key_tiles + static_cast<std::size_t>(slot) * Layout::key_bytes),
            reinterpret_cast<T*>(s + Layout::values), reinterpret_cast<T*>(s + Layout::queries),
            reinterpret_cast<float*>(s + Layout::betas), reinterpret_cast<float*>(s + Layout::gates)};
  }
  /// Shared-space addresses of the tiles ldmatrix and wgmma read: inputs from stage `stage` and key slot `slot`, the
  /// rest from set `set`.
  static __device__ __forceinline__ Tiles tiles_at(std::uint32_t base, int stage, int slot, int set) {
    const std::uint32_t in = base + static_cast<std::uint32_t>(stage * Layout::stage_bytes);
    const std::uint32_t s = base + static_cast<std::uint32_t>(Layout::sets + set * Layout::set_bytes);
    return {base + static_cast<std::uint32_t>(Layout::key_tiles + slot * Layout::key_bytes),
            in + static_cast<std::uint32_t>(Layout::values),
            in + static_cast<std::uint32_t>(Layout::queries),
            s + static_cast<std::uint32_t>(Layout::negated_a),
            s + static_cast<std::uint32_t>(Layout::diagonal_inverses),
            s + static_cast<std::uint32_t>(Layout::readout)};
  }
  /// Where the chunk `index` chunks after the CTA's first finds its input stage, key slot and set of per-chunk tiles.
  /// The base address is laundered in every iteration: hoisted out of the loop, each derived address would hold a
  /// register.
  struct Place {
    std::uint32_t base_address;
    unsigned char* base;
    int stage_index, key_slot, set_index;
    Stage stage;
    Set set;
    Tiles tiles;
  };
  static __device__ __forceinline__ Place place_of(std::uint32_t smem_address, index_t index) {
    const std::uint32_t base_address = opaque(smem_address);
    unsigned char* const base = shared_pointer<unsigned char>(base_address);
    const int n = static_cast<int>(index);  // a CTA runs far fewer than 2^31 chunks
    const int stage_index = n % Stages, key_slot = n % KeySlots, set_index = n % 2;
    return {base_address,
            base,
            stage_index,
            key_slot,
            set_index,
            stage_at(base, stage_index, key_slot),
            set_at(base, set_index),
            tiles_at(base_address, stage_index, key_slot, set_index)};
  }

  static __device__ __forceinline__ std::uint32_t copy_barrier(std::uint32_t base, int stage) {
    return base + static_cast<std::uint32_t>(Layout::copy_barriers + 8 * stage);
  }
  /// Parity of the copy barrier's phase that brings the values and queries of the chunk `index` chunks after the
  /// CTA's first.
  static __device__ __forceinline__ std::uint32_t copy_parity(index_t index) {
    return static_cast<std::uint32_t>((index / Stages) % 2);
  }
  static __device__ __forceinline__ std::uint32_t key_barrier(std::uint32_t base, int slot) {
    return base + static_cast<std::uint32_t>(Layout::key_barriers + 8 * slot);
  }
  static __device__ __forceinline__ std::uint32_t key_parity(index_t index) {
    return static_cast<std::uint32_t>((static_cast<int>(index) / KeySlots) % 2);
  }
  static __device__ __forceinline__ std::uint32_t ready_barrier(std::uint32_t base, int set) {
    return base + static_cast<std::uint32_t>(Layout::ready_barriers + 8 * set);
  }
  static __device__ __forceinline__ std::uint32_t done_barrier(std::uint32_t base, int set) {
    return base + static_cast<std::uint32_t>(Layout::done_barriers + 8 * set);
  }
  /// Every consumer is done with stage `stage`'s values, queries and betas (phase parity: copy_parity()).
  static __device__ __forceinline__ std::uint32_t stage_free_barrier(std::uint32_t base, int stage) {
    return base + static_cast<std::uint32_t>(Layout::stage_free_barriers + 8 * stage);
  }
  /// Parity of a set barrier's phase for the chunk `index` chunks after the CTA's first (a set serves every other
  /// chunk).
  static __device__ __forceinline__ std::uint32_t set_parity(index_t index) {
    return static_cast<std::uint32_t>((index / 2) % 2);
  }

  /// Starts copying chunk `chunk`'s value and query tiles into stage `stage` (start_key_copy: its key tile into key
  /// slot `slot`): lane h of the calling warp issues column half h (64 elements) of each tile (rows past the tensor
  /// read as zero, rows past the sequence are cleared by clear_past_sequence()). Lane 0's arrival carries the byte
  /// count: the phase cannot complete before it, whatever order the boxes land in. `ValuesByToken`: maps.v holds
  /// token rows (the reverse scan's dL/do in the value tile), its box starts at the chunk's first token.
  template <bool ValuesByToken = false>
  static __device__ __forceinline__ void start_stage_copy(const SpecializedMaps& maps, const SequenceSpan& span,
                                                          int head, index_t chunk, std::uint32_t base, int stage,
                                                          int lane) {
    const std::uint32_t barrier = copy_barrier(base, stage);
    const std::uint32_t tiles = base + static_cast<std::uint32_t>(stage * Layout::stage_bytes);
    if (lane == 0) mbarrier_arrive_expect_bytes(barrier, Layout::stage_copy_bytes);
    const int batch = static_cast<int>(span.row);
    const int step_row = static_cast<int>((span.begin + chunk * C) * NH);
    const int token_row = static_cast<int>(span.begin + chunk * C);
    const int half = lane;
    if (half < KD / 64)
      tma_load_4d(tiles + static_cast<std::uint32_t>(Layout::queries + half * QR * 128), &maps.q, barrier, 64 * half,
                  head, token_row, batch);
    if (half < VD / 64)
      tma_load_4d(tiles + static_cast<std::uint32_t>(Layout::values + half * L * 128), &maps.v, barrier, 64 * half,
                  head, ValuesByToken ? token_row : step_row, batch);
  }
  static __device__ __forceinline__ void start_key_copy(const SpecializedMaps& maps, const SequenceSpan& span, int head,
                                                        index_t chunk, std::uint32_t base, int slot, int lane) {
    const std::uint32_t barrier = key_barrier(base, slot);
    const std::uint32_t tile = base + static_cast<std::uint32_t>(Layout::key_tiles + slot * Layout::key_bytes);
    if (lane == 0) mbarrier_arrive_expect_bytes(barrier, Layout::key_copy_bytes);
    const int step_row = static_cast<int>((span.begin + chunk * C) * NH);
    if (lane < KD / 64)
      tma_load_4d(tile + static_cast<std::uint32_t>(lane * L * 128), &maps.k, barrier, 64 * lane, head, step_row,
                  static_cast<int>(span.row));
  }

  /// Zeroes the key and value rows of `stage` past the chunk's micro-steps: the boxes bring the next sequence's rows
  /// (or the next token's for n_h = 3) there, and a zero beta alone would not cancel a non-finite value in them.
  /// `TokenRows` (the reverse scan, whose value tile holds dL/do by token): also the query rows and value rows past
  /// the chunk's tokens, so that P and the scan's products see zeros there as a rebuild from zero-filled copies does.
  template <bool TokenRows = false>
  static __device__ __forceinline__ void clear_past_sequence(const SequenceSpan& span, index_t chunk,
                                                             const Stage& stage, int tid) {
    if constexpr (TokenRows) {
      const index_t tokens_left = (span.end - span.begin) - chunk * C;
      const int valid = static_cast<int>(tokens_left < C ? tokens_left : C);
      const int query_rows = QR - valid, value_rows = L - valid;
      for (int index = tid; index < query_rows * (KD / 8) + value_rows * (VD / 8); index += producers) {
        const bool query = index < query_rows * (KD / 8);
        const int i = query ? index : index - query_rows * (KD / 8), rows = query ? query_rows : value_rows;
        unsigned char* tile = reinterpret_cast<unsigned char*>(query ? stage.queries : stage.values);
        *reinterpret_cast<uint4*>(tile + Tiling::piece(query ? QR : L, valid + i % rows, i / rows)) =
            make_uint4(0, 0, 0, 0);
      }
    }
    const index_t first_step = chunk * C * NH, steps = (span.end - span.begin) * NH;
    const index_t left = steps - first_step;
    const int valid = static_cast<int>(left < Base::Layout::valid_rows ? left : Base::Layout::valid_rows);
    if (valid >= L) return;
    const int rows = L - valid;
    for (int index = tid; index < rows * (KD / 8 + VD / 8); index += producers) {
      const int row = valid + index % rows, piece = index / rows;
      unsigned char* tile = reinterpret_cast<unsigned char*>(piece < KD / 8 ? stage.keys : stage.values);
      *reinterpret_cast<uint4*>(tile + Tiling::piece(L, row, piece < KD / 8 ? piece : piece - KD / 8)) =
          make_uint4(0, 0, 0, 0);
    }
  }

  /// One Gram product of the producer warpgroup: acc = X Y^T (64 x 64; X, Y = K or Q with `rows`, `y_rows` rows;
  /// inner dimension K) from shared memory, both operands K-major.
  static __device__ __forceinline__ void issue_gram_product(std::uint32_t x, int rows, std::uint32_t y, int y_rows,
                                                            float (&acc)[8][4]) {
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[j][e] = 0.0f;
    pin_registers(acc);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < KD / 16; ++kk)
      wgmma_shared_64x64<T>(acc, Tiling::k_major(x, rows, kk), Tiling::k_major(y, y_rows, kk));
    wgmma_commit();
  }

  /// The producer's Gram blocks of the chunk in `stage`: warp w (0..3) owns row block w of K K^T and of K Q^T. It
  /// stores -A left of the diagonal, writes and inverts its diagonal block, and stores P's causal blocks. K K^T
  /// (`gram`) was issued by the caller before the scales, which it needs only here; K Q^T is issued now and runs on
  /// the tensor cores while K K^T's epilogue and the inversion run. With gram_normalisers the caller has not summed
  /// the scales: the query normalisers and the gates are summed here while both products run, and the key
  /// normalisers are read off K K^T's diagonal.
  static __device__ __forceinline__ void producer_gram(const ChunkedParams<T>& p, const Stage& stage,
                                                       const Tiles& tiles, const Set& set, float* diagonal_blocks,
                                                       int warp, index_t index, float (&gram)[8][4]) {
    (void)index;  // the chunk's place in the CTA's range, for DELTAPRODUCT_TRACE
    float readout[8][4];
    // P^T = K Q^T rather than Q K^T: warp w then owns micro-step block w and the causal blocks right of it (4 - w of
    // them for n_h = 1), which balances the triangle of K K^T below (w + 1 blocks). With fewer than 64 query rows,
    // columns past QR read beyond the query tile (still shared memory); they are dropped.
    issue_gram_product(tiles.keys, L, tiles.queries, QR, readout);
    if constexpr (gram_normalisers)  // the query normalisers and the gates while both products run
      Base::template prepare_scales<producers, Tiling, ScaleRows::queries_and_gates>(
          p, stage, set.key_scales, set.query_scales, set.log2_gates, Base::thread_index() - consumers);
    wgmma_wait<1>();  // K K^T is complete
    pin_registers(gram);
    DELTAPRODUCT_TRACE(1, 8, index);
    if constexpr (gram_normalisers) {
      store_key_scales(p, gram, warp, set.key_scales);
      named_barrier_sync(producer_barrier, producers);  // every normaliser and the gates are in the set
      DELTAPRODUCT_TRACE(1, 3, index);
    }
#pragma unroll
    for (int cb = 0; cb < 4; ++cb) {
      if (stores_block(warp, cb))
        Base::template store_gram_tiles<false, 2>(&gram[2 * cb], stage, warp, cb, diagonal_blocks, set.negated_a,
                                                  set.readout, set.key_scales, set.query_scales, set.log2_gates);
      else if (stores_block_transposed(warp, cb))
        store_key_gram_transposed(&gram[2 * cb], stage, warp, cb, set);
    }
    __syncwarp();
    DELTAPRODUCT_TRACE(1, 9, index);
    Base::invert_diagonal_block(warp, diagonal_blocks, set.diagonal_inverses);
    DELTAPRODUCT_TRACE(1, 4, index);

    wgmma_wait<0>();
    pin_registers(readout);
    DELTAPRODUCT_TRACE(1, 10, index);
#pragma unroll
    for (int tb = 0; tb < QR / 16; ++tb)
      if (readout_block_used<NH, C>(16 * tb, 16, 16 * warp)) store_readout_transposed(&readout[2 * tb], warp, tb, set);
  }

  /// K K^T is symmetric: -A's lower block (i, j), i > j, is in warp i's tiles and, transposed, in warp j's. Warp i
  /// stores it, or with gram_normalisers the warp lower_block_owner() names: then every warp stores its diagonal
  /// block and at most two others (two each for warps 0 and 1, one each for warps 2 and 3) instead of warp 3's four.
  static __device__ __forceinline__ constexpr int lower_block_owner(int i, int j) {
    return !gram_normalisers ? i : i == 3 && j == 0 ? 3 : j;
  }
  /// Whether warp `warp` stores its block (warp, cb) of K K^T as it is (the diagonal block or a lower block of -A).
  static __device__ __forceinline__ constexpr bool stores_block(int warp, int cb) {
    return cb == warp || (cb < warp && lower_block_owner(warp, cb) == warp);
  }
  /// Whether it stores its block (warp, cb), transposed, as -A's lower block (cb, warp).
  static __device__ __forceinline__ constexpr bool stores_block_transposed(int warp, int cb) {
    return cb > warp && lower_block_owner(cb, warp) == warp;
  }
  /// Block (row_block, col_block) of K K^T, col_block > row_block, stored as -A's lower block (col_block, row_block):
  /// the accumulator's columns are that block's rows. Each entry gets the factors store_gram_tiles() gives it, in the
  /// same order, so -A is the same whichever warp stores it. Each entry is stored as soon as it is formed: forming the
  /// block's eight first and storing them after (one helper for this and P, with 16-bit stores or stmatrix) measured
  /// 3-4% slower for n_h = 2 on an H100.
  static __device__ __forceinline__ void store_key_gram_transposed(const float (*acc)[4], const Stage& stage,
                                                                   int row_block, int col_block, const Set& set) {
    const int lane = Base::thread_index() % 32, group = lane / 4, quad = lane % 4;
    float row_factor[2][2], row_gate[2][2] = {}, column_factor[2], column_gate[2] = {};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int s = 16 * row_block + group + 8 * h;  // a column of -A
      column_factor[h] = set.key_scales[s];
      if constexpr (Gated) column_gate[h] = set.log2_gates[s / NH];
    }
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int r = 16 * col_block + 8 * n + 2 * quad + e;  // a row of -A
        row_factor[n][e] = stage.betas[r] * set.key_scales[r];
        if constexpr (Gated) row_gate[n][e] = set.log2_gates[r / NH];
      }
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int r = 16 * col_block + 8 * n + 2 * quad + e, s = 16 * row_block + group + 8 * h;
          const float gate = Gated ? fast_exp2(row_gate[n][e] - column_gate[h]) : 1.0f;
          const float value = row_factor[n][e] * column_factor[h] * gate * acc[n][2 * h + e];
          set.negated_a[r * Layout::LP + s] = __float2half_rn(-value);
        }
  }
  /// The key normalisers from K K^T's diagonal (each key's sum of squares, in fp32 from its bf16 or fp16 elements, as
  /// prepare_scales() sums them but in the tensor cores' order): warp w holds rows 16 w .. 16 w + 15, and the lanes
  /// with quad == group / 2 hold their diagonal entries, in n-tile 2 w + h (h: the row's half).
  static __device__ __forceinline__ void store_key_scales(const ChunkedParams<T>& p, const float (&gram)[8][4],
                                                          int warp, float* key_scales) {
    const int lane = Base::thread_index() % 32, group = lane / 4, quad = lane % 4;
    // Tiles 2 w and 2 w + 1, picked with the warp index known in each branch: a register array indexed at run time
    // would go to local memory.
    const auto diagonal = [&](const float(&tile)[4], int h) { return group % 2 ? tile[2 * h + 1] : tile[2 * h]; };
    float sums[2];
    switch (warp) {
      case 0:
        sums[0] = diagonal(gram[0], 0), sums[1] = diagonal(gram[1], 1);
        break;
      case 1:
        sums[0] = diagonal(gram[2], 0), sums[1] = diagonal(gram[3], 1);
        break;
      case 2:
        sums[0] = diagonal(gram[4], 0), sums[1] = diagonal(gram[5], 1);
        break;
      default:
        sums[0] = diagonal(gram[6], 0), sums[1] = diagonal(gram[7], 1);
        break;
    }
    if (quad == group / 2) {
#pragma unroll
      for (int h = 0; h < 2; ++h) key_scales[16 * warp + group + 8 * h] = inverse_norm(sums[h], p.key_norm, p.eps);
    }
  }
  /// Two accumulator tiles of K Q^T (rows: micro-steps of block `step_block`; columns: the 16 tokens of block
  /// `token_block`) scaled, gated and masked into P (readout[token][step], type T), as store_gram_tiles() does for
  /// Q K^T.
  static __device__ __forceinline__ void store_readout_transposed(const float (*acc)[4], int step_block,
                                                                  int token_block, const Set& set) {
    const int lane = Base::thread_index() % 32, group = lane / 4, quad = lane % 4;
    float step_factor[2], step_gate[2] = {}, token_factor[2][2], token_gate[2][2] = {};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int s = 16 * step_block + group + 8 * h;
      step_factor[h] = set.key_scales[s];
      if constexpr (Gated) step_gate[h] = set.log2_gates[s / NH];
    }
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int t = 16 * token_block + 8 * n + 2 * quad + e;
        token_factor[n][e] = t < C ? set.query_scales[t] : 0.0f;
        if constexpr (Gated) token_gate[n][e] = set.log2_gates[t];
      }
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int s = 16 * step_block + group + 8 * h, t = 16 * token_block + 8 * n + 2 * quad + e;
          const bool causal = t < C && s <= last_step_of<NH>(t);
          const float gate = Gated ? fast_exp2(token_gate[n][e] - step_gate[h]) : 1.0f;
          const float value = causal ? token_factor[n][e] * step_factor[h] * gate * acc[n][2 * h + e] : 0.0f;
          set.readout[t * Layout::LP + s] = from_float<T>(value);
        }
  }

  /// The producer warpgroup's loop over the CTA's chunks [first, end): first to last, or last to first for the
  /// backward's reverse scan (`Reverse`, whose value tiles hold dL/do by token).
  template <bool Reverse = false>
  static __device__ __forceinline__ void produce(const ChunkedParams<T>& p, const SpecializedMaps& maps,
                                                 const SequenceSpan& span, index_t sequence, int head, index_t first,
                                                 index_t end, std::uint32_t smem_address) {
    const bool keeps_preambles = Base::keeps_preambles(p);
    const int tid = Base::thread_index() - consumers, warp = tid / 32;
    const index_t count = end - first;  // the i-th chunk the CTA computes is chunk_at(i)
    const auto chunk_at = [&](index_t i) { return Reverse ? end - 1 - i : first + i; };
    const auto scalars_at = [&](index_t i) {
      return i < count ? Base::load_scalars(p, span, head, chunk_at(i), tid) : PendingScalar{T{}, false};
    };
    if (tid == 0) {
      prefetch_tensor_map(&maps.q);
      prefetch_tensor_map(&maps.k);
      prefetch_tensor_map(&maps.v);
    }
    // Every stage and key slot starts copying at once (the consumers refill each one as they release it). The first
    // chunk's betas and gates are stored at once; each later chunk's are loaded two iterations before they are stored.
    if (tid < 32) {
#pragma unroll
      for (int s = 0; s < Stages; ++s)
        if (s < count) start_stage_copy<Reverse>(maps, span, head, chunk_at(s), smem_address, s, tid);
#pragma unroll
      for (int s = 0; s < KeySlots; ++s)
        if (s < count) start_key_copy(maps, span, head, chunk_at(s), smem_address, s, tid);
    }
    Base::store_scalars(stage_at(shared_pointer<unsigned char>(smem_address), 0, 0), scalars_at(0), tid);
    PendingScalar pending = scalars_at(1);  // the next chunk's
    PendingScalar ahead{T{}, false};        // the one after (unless scalars_one_ahead)
    for (index_t i = 0; i < count; ++i) {
      const index_t chunk = chunk_at(i);
      const Place at = place_of(smem_address, i);
      DELTAPRODUCT_TRACE(1, 0, i);
      if (i > 0) {  // the stage's previous chunk, i - 2, is done (waited for at the end of the last iteration)
        Base::store_scalars(at.stage, pending, tid);
        pending = scalars_one_ahead ? scalars_at(i + 1) : ahead;
      }
      DELTAPRODUCT_TRACE(1, 11, i);
      mbarrier_wait(key_barrier(at.base_address, at.key_slot), key_parity(i));  // the chunk's boxes have landed
      DELTAPRODUCT_TRACE(1, 12, i);
      mbarrier_wait(copy_barrier(at.base_address, at.stage_index), copy_parity(i));
      DELTAPRODUCT_TRACE(1, 1, i);
      // The set's previous chunk, i - 2, went out by bulk copy: it must be read before the set is written again.
      if (keeps_preambles && tid == 0) bulk_wait_read<1>();
      clear_past_sequence<Reverse>(span, chunk, at.stage, tid);
      fence_proxy_async();  // the cleared rows, written through the generic proxy, are read by wgmma
      named_barrier_sync(producer_barrier, producers);  // the chunk, its betas and gates are in its stage
      DELTAPRODUCT_TRACE(1, 2, i);
      float gram[8][4];
      issue_gram_product(at.tiles.keys, L, at.tiles.keys, L, gram);
      if constexpr (!gram_normalisers) {  // the normalisers and gates while K K^T runs
        Base::template prepare_scales<producers, Tiling>(p, at.stage, at.set.key_scales, at.set.query_scales,
                                                         at.set.log2_gates, tid);
        named_barrier_sync(producer_barrier, producers);  // scales and gates are ready
        DELTAPRODUCT_TRACE(1, 3, i);
      }
      producer_gram(p, at.stage, at.tiles, at.set, reinterpret_cast<float*>(at.base + Layout::diagonal_blocks), warp, i,
                    gram);
      if (keeps_preambles) {  // the backward keeps the set: one bulk copy, read out while the consumers use it
        fence_proxy_async();  // every producer's writes to the set, made through the generic proxy, before the copy
        named_barrier_sync(producer_barrier, producers);
        if (tid == 0) {
          const index_t tile = chunk_tile_index(p.cu_seqlens.present(), span, sequence, chunk, C, p.chunks_per_row,
                                                head, gridDim.y);
          bulk_store(p.chunk_preambles + tile * Layout::set_bytes,
                     at.base_address + static_cast<std::uint32_t>(Layout::sets + at.set_index * Layout::set_bytes),
                     static_cast<std::uint32_t>(Layout::set_bytes));
          bulk_commit();
        }
      }
      DELTAPRODUCT_TRACE(1, 5, i);
      mbarrier_arrive(ready_barrier(at.base_address, at.set_index));

      // The next chunk takes the set and (for its betas and gates) the stage the previous one used.
      if (i + 1 < count && i > 0) mbarrier_wait(done_barrier(at.base_address, 1 - at.set_index), set_parity(i - 1));
      // Chunk i - 1 is done with its keys: its slot takes chunk i + 2.
      if constexpr (key_refill_by_producer && !Reverse)
        if (i > 0 && i + 2 < count && tid < 32)
          start_key_copy(maps, span, head, chunk_at(i + 2), at.base_address, static_cast<int>((i - 1) % KeySlots), tid);
      DELTAPRODUCT_TRACE(1, 6, i);
      if constexpr (!scalars_one_ahead) {
        ahead = scalars_at(i + 2);
        DELTAPRODUCT_TRACE(1, 7, i);
      }
    }
    if (keeps_preambles && tid == 0) bulk_wait_all();  // the shared memory stays until the copies have read it
  }

  /// Whether chunk `chunk`'s output leaves by TMA (output_by_tma, the driver took o's map, all its tokens are the
  /// sequence's: the box would write a partial chunk's rows past the sequence).
  static __device__ __forceinline__ bool output_leaves_by_tma(const ChunkedParams<T>& p, const SpecializedMaps& maps,
                                                              const SequenceSpan& span, index_t chunk) {
    return output_by_tma && maps.output && Base::writes_outputs(p) && (chunk + 1) * C <= span.end - span.begin;
  }
  /// The staged output of chunk `chunk` to o by two TMA boxes (64 values x C tokens each) in one bulk group of the
  /// calling thread.
  static __device__ __forceinline__ void store_output(const SpecializedMaps& maps, const SequenceSpan& span, int head,
                                                      index_t chunk, std::uint32_t base) {
    const std::uint32_t tile = base + static_cast<std::uint32_t>(Layout::output);
#pragma unroll
    for (int half = 0; half < Layout::consumer_warps * 16 / 64; ++half)
      tma_store_4d(&maps.o, tile + static_cast<std::uint32_t>(half * QR * 128), 64 * half, head,
                   static_cast<int>(span.begin + chunk * C), static_cast<int>(span.row));
    bulk_commit();
  }

  /// The consumer warps' loop: the chain on the state, chunk after chunk, as ChunkedKernel::run's.
  static __device__ __forceinline__ void consume(const ChunkedParams<T>& p, const SpecializedMaps& maps,
                                                 const SequenceSpan& span, index_t sequence, int head, index_t first,
                                                 index_t end, std::uint32_t smem_address, float (&state)[KD / 8][4]) {
    const bool lead_warp = Base::thread_index() < 32;  // issues the refills
    for (index_t chunk = first; chunk < end; ++chunk) {
      const index_t i = chunk - first;
      const Place at = place_of(smem_address, i);
      const std::uint32_t base_address = at.base_address;
      unsigned char* const base = at.base;
      const int set_index = at.set_index;
      const Set& set = at.set;
      const ChunkScratch scratch{set.key_scales,
                                 set.query_scales,
                                 set.log2_gates,
                                 reinterpret_cast<T*>(base + Layout::output),
                                 reinterpret_cast<float4*>(base + Layout::partial_output) +
                                     Base::thread_index() / 32 * (QR / 8) * 32 + Base::thread_index() % 32,
                                 i};
      DELTAPRODUCT_TRACE(0, 0, i);
      mbarrier_wait(ready_barrier(base_address, set_index), set_parity(i));  // the producer has filled the set
      // Already complete (the producer waited for them): make the boxes' writes visible to these threads too.
      mbarrier_wait(key_barrier(base_address, at.key_slot), key_parity(i));
      mbarrier_wait(copy_barrier(base_address, at.stage_index), copy_parity(i));
      DELTAPRODUCT_TRACE(0, 1, i);

      float work[L / 8][4];
      const index_t kept_tile = Base::template chunk_residuals<Tiling>(p, span, sequence, head, chunk, at.stage,
                                                                       at.tiles, scratch, state, work);
      DELTAPRODUCT_TRACE(0, 2, i);
      // Every consumer is done with the chunk's values, queries and betas: the stage takes chunk chunk + 2 (the
      // producer read it before signalling "ready").
      if constexpr (stage_release_by_arrival) {
        mbarrier_arrive(stage_free_barrier(base_address, at.stage_index));
        if (chunk > first && Base::writes_outputs(p) && !output_leaves_by_tma(p, maps, span, chunk - 1))
          named_barrier_sync(consumer_barrier, consumers);  // the previous output, staged by every warp, goes out
      } else {
        named_barrier_sync(consumer_barrier, consumers);
      }
      if (chunk + Stages < end && lead_warp) {
        if constexpr (stage_release_by_arrival)
          mbarrier_wait(stage_free_barrier(base_address, at.stage_index), copy_parity(i));
        start_stage_copy(maps, span, head, chunk + Stages, base_address, at.stage_index, Base::thread_index());
      }
      DELTAPRODUCT_TRACE(0, 3, i);
      // The previous chunk's output leaves its staging tile now (unless it left by TMA); every consumer has written
      // it out by the barrier before this chunk's staging.
      if (chunk > first && Base::writes_outputs(p) && !output_leaves_by_tma(p, maps, span, chunk - 1))
        Base::template write_output<output_by_tma>(p, span, head, chunk - 1,
                                                   reinterpret_cast<const T*>(base + Layout::output));
      DELTAPRODUCT_TRACE(0, 5, i);
      const auto before_staging = [] {
        // The previous chunk's TMA boxes have read the tile (issued a chunk ago: no wait in practice).
        if constexpr (output_by_tma)
          if (Base::thread_index() == 0) bulk_wait_read<0>();
        named_barrier_sync(consumer_barrier, consumers);
      };
      Base::template chunk_solve_and_update<Tiling, decltype(before_staging), output_by_tma>(
          p, at.tiles, scratch, kept_tile, state, work, before_staging);
      DELTAPRODUCT_TRACE(0, 4, i);
      if constexpr (output_by_tma) fence_proxy_async();  // the staged output, written by this thread, is read by TMA
      // The producer waits for this where it reuses the chunk's set (it never falls a phase behind: it fills this set
      // again only after waiting).
      mbarrier_arrive(done_barrier(base_address, set_index));
      // Once every consumer is done with the chunk's keys (and has staged its output), the first warp refills their
      // slot with chunk chunk + 3 and sends the output out by TMA. The other warps go on to the next chunk meanwhile.
      const bool output_by_boxes = output_leaves_by_tma(p, maps, span, chunk);
      if (((!key_refill_by_producer && chunk + KeySlots < end) || output_by_boxes) && lead_warp) {
        mbarrier_wait(done_barrier(base_address, set_index), set_parity(i));
        if (!key_refill_by_producer && chunk + KeySlots < end)
          start_key_copy(maps, span, head, chunk + KeySlots, base_address, at.key_slot, Base::thread_index());
        if (output_by_boxes && Base::thread_index() == 0) store_output(maps, span, head, chunk, base_address);
      }
    }
    if (first < end && Base::writes_outputs(p) && !output_leaves_by_tma(p, maps, span, end - 1)) {
      named_barrier_sync(consumer_barrier, consumers);
      DELTAPRODUCT_TRACE(0, 16, 0);
      Base::template write_output<output_by_tma>(
          p, span, head, end - 1,
          reinterpret_cast<const T*>(shared_pointer<unsigned char>(smem_address) + Layout::output));
    } else {
      DELTAPRODUCT_TRACE(0, 16, 0);  // the last output left by TMA in the loop (or there is none to write)
    }
    if constexpr (output_by_tma)
      if (Base::thread_index() == 0) bulk_wait_all();  // the boxes have read the tile and written o
    DELTAPRODUCT_TRACE(0, 17, 0);
  }

  /// The map's start in dynamic shared memory: aligned to 1024 bytes, the swizzle atoms' alignment.
  static __device__ __forceinline__ std::uint32_t aligned_map(unsigned char* smem) {
    return (shared_address(smem) + 1023u) & ~1023u;
  }
  /// Thread 0 initialises the copy, key, ready and done barriers; then the CTA's last block-wide barrier.
  static __device__ __forceinline__ void init_barriers(std::uint32_t smem_address) {
    if (Base::thread_index() == 0) {
#pragma unroll
      for (int s = 0; s < Stages; ++s) mbarrier_init(copy_barrier(smem_address, s), 1);
#pragma unroll
      for (int s = 0; s < KeySlots; ++s) mbarrier_init(key_barrier(smem_address, s), 1);
      for (int s = 0; s < 2; ++s) {
        mbarrier_init(ready_barrier(smem_address, s), producers);
        mbarrier_init(done_barrier(smem_address, s), consumers);
      }
      if constexpr (stage_release_by_arrival)
        for (int s = 0; s < Stages; ++s) mbarrier_init(stage_free_barrier(smem_address, s), consumers);
      fence_mbarrier_init();
    }
    __syncthreads();
  }

  static __device__ __forceinline__ void run(const ChunkedParams<T>& p, const SpecializedMaps& maps) {
    extern __shared__ __align__(128) unsigned char smem[];
    if (inputs_rejected(p.status)) return;  // a value check failed: write nothing
    const int head = static_cast<int>(blockIdx.y);
    const index_t sequence = blockIdx.x / p.splits;
    const int split = static_cast<int>(blockIdx.x % p.splits);
    if (Base::idle_summary(p, split)) return;
    const SequenceSpan span = sequence_span(p, sequence);
    const auto range = Base::chunk_range(p, span, split);
    const std::uint32_t smem_address = aligned_map(smem);
    DELTAPRODUCT_TRACE(0, 14, 0);  // the CTA's start
    init_barriers(smem_address);
    DELTAPRODUCT_TRACE(0, 11, 0);

    if (Base::thread_index() >= consumers) {
      if constexpr (all_threads == 384) set_register_count<producer_registers, false>();
      produce(p, maps, span, sequence, head, range.first, range.end, smem_address);
      return;
    }
    if constexpr (all_threads == 384) set_register_count<consumer_registers, true>();
    DELTAPRODUCT_TRACE(0, 12, 0);
    float state[KD / 8][4];
    Base::load_start_state(p, sequence, head, split, state);
    DELTAPRODUCT_TRACE(0, 13, 0);
    consume(p, maps, span, sequence, head, range.first, range.end, smem_address, state);
    Base::store_end_state(p, sequence, head, split, state);
    DELTAPRODUCT_TRACE(0, 15, 0);  // the CTA's end (its consumers')
  }
};

/// Grid as chunked_forward_kernel's; block: SpecializedLayout::threads; dynamic shared memory:
/// SpecializedLayout::bytes.
template <class T, int KD, int VD, int NH, bool Gated>
__global__ void __launch_bounds__(SpecializedLayout<T, KD, VD, NH>::threads, 1)
    specialized_chunked_forward_kernel(const ChunkedParams<T> p, const __grid_constant__ SpecializedMaps maps) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  SpecializedChunkedKernel<T, KD, VD, NH, Gated>::run(p, maps);
#else
  (void)maps;
  __trap();  // wgmma, TMA and setmaxnreg need sm_90a; the host launches this kernel only from an sm_90a build
#endif
}

}  // namespace deltaproduct::detail::cuda_chunked
