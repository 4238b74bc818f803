// The recurrent (token-by-token) kernel: the recurrence of core/recurrence.hpp with the state in registers, for
// decode (one token per call) and short sequences. nvcc only; the host entry points are in decode.cuh.
//
// Per sequence n and head h, for each token t (README, "The recurrence"):
//   S <- exp(g_t) S                                          (gated models)
//   for j = 1..n_h:  u = S^T k_j,  w = beta_j (v_j - u),  S <- S + k_j w^T
//   o_t = scale * S^T q_t
// with k_j and q_t L2-normalised when the options ask. The columns of S evolve independently given k, beta and g, so
// the K x V state is cut into slabs of columns, one warp per (sequence, head, slab), and the warp holds its slab for
// the whole call: every state element is read once and written once, as 16-byte accesses.
//
// Inside a warp, lane = row_lane * column_lanes + column_lane. A lane holds key rows i = m * row_lanes + row_lane
// (m < rows) and the `vec` consecutive columns column_lane * vec + [0, vec) of the slab. A load of one m by the warp
// covers row_lanes rows x (column_lanes * vec) contiguous floats. Sums over the key index (S^T k, S^T q, |k|^2) add a
// lane's rows, then butterfly shuffles across the row lanes (lane ^ column_lanes, ^ 2 column_lanes, ...), which
// leaves every lane with the full sum: no shared memory, no block barrier.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "deltaproduct/core/view.hpp"
#include "deltaproduct/cuda/device_views.cuh"
#include "deltaproduct/cuda/validate.hpp"
#include "deltaproduct/cuda/value_checks.cuh"

namespace deltaproduct::detail {

/// How a warp covers its slab of the state. `Rows` key rows per lane are held in registers, so they are a
/// compile-time size: the key dimension may be anything up to RowLanes * Rows (rows beyond K are zero).
template <int RowLanes, int Rows, int Vec>
struct RecurrentTile {
  static_assert(RowLanes >= 1 && 32 % RowLanes == 0, "row lanes must divide the warp");
  static_assert(Vec == 1 || Vec == 4, "lanes hold 1 column (any layout) or 4 (16-byte accesses)");
  static constexpr int row_lanes = RowLanes;
  static constexpr int column_lanes = 32 / RowLanes;
  static constexpr int rows = Rows;
  static constexpr int vec = Vec;
  static constexpr int max_key_dim = RowLanes * Rows;
  static constexpr int columns = column_lanes * Vec;  ///< value columns per warp
};

/// Threads per block of the recurrent kernel (blocks may be launched smaller), and blocks per multiprocessor the
/// register budget must allow: 3 x 128 threads caps a lane at 170 registers, which holds the K = 128 tile's
/// 64 state floats without spilling and keeps 12 warps (96 KB of state loads) in flight per multiprocessor.
inline constexpr int recurrent_max_threads = 128;
inline constexpr int recurrent_min_blocks = 3;

enum class NormCode : int { none = 0, l2 = 1, l2_eps = 2 };

/// Everything a launch needs. States are [slots, H, K, V]; without a state pool, slot n holds sequence n.
template <class T>
struct RecurrentParams {
  DeviceView<const T, 4> q;                         ///< [B, T, H, K]
  DeviceView<const T, 4> k;                         ///< [B, T*n_h, H, K]
  DeviceView<const T, 4> v;                         ///< [B, T*n_h, H, V]
  DeviceView<const T, 3> beta;                      ///< [B, T*n_h, H]
  DeviceView<const T, 3> g;                         ///< [B, T, H]; absent for ungated models
  DeviceView<const float, 4> initial_state;         ///< absent: zero
  DeviceView<float, 4> final_state;                 ///< absent: not written
  DeviceView<T, 4> o;                               ///< [B, T, H, V]
  DeviceView<const std::int64_t, 1> cu_seqlens;     ///< absent: sequence n is batch row n, tokens [0, T)
  DeviceView<const std::int32_t, 1> state_indices;  ///< absent: slot n; negative: padding, skipped
  index_t tokens = 0, heads = 0, key_dim = 0, value_dim = 0;
  index_t state_slots = 0;    ///< first extent of the state tensors (bound for state_indices)
  index_t column_blocks = 0;  ///< slabs per (sequence, head): ceil(V / Tile::columns)
  index_t work_items = 0;     ///< sequences * heads * column_blocks: one warp each
  int householder_steps = 1;
  NormCode key_norm = NormCode::none, query_norm = NormCode::none;
  float eps = 1e-6f, scale = 1.0f;
  const ValueCheckRecord* status = nullptr;  ///< value-check record to honour; nullptr: not validated
};

/// Sum over the warp's row lanes (all lanes get the total).
template <class Tile>
__device__ __forceinline__ float sum_over_row_lanes(float x) {
#pragma unroll
  for (int offset = Tile::column_lanes; offset < 32; offset <<= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

/// A lane's entries x_i (i = m * row_lanes + row_lane, zero for i >= K) of a key-indexed vector, normalised as asked:
/// x / sqrt(|x|^2) (a zero vector stays zero) or x / sqrt(|x|^2 + eps). The warp reads the vector once, coalesced
/// (lane l reads x_(32a + l)), and shuffles each lane its entries: x_i sits in lane i % 32, register i / 32.
template <class Tile, class T>
__device__ __forceinline__ void load_key_vector(const T* first, index_t stride, index_t key_dim, int lane,
                                                NormCode mode, float eps, float (&x)[Tile::rows]) {
  constexpr int loads = (Tile::max_key_dim + 31) / 32;
  float raw[loads];
  float sum_of_squares = 0.0f;
#pragma unroll
  for (int a = 0; a < loads; ++a) {
    const index_t i = static_cast<index_t>(a) * 32 + lane;
    raw[a] = i < key_dim ? to_float(first[i * stride]) : 0.0f;
    sum_of_squares = fmaf(raw[a], raw[a], sum_of_squares);
  }
  float inverse_norm = 1.0f;
  if (mode != NormCode::none) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
      sum_of_squares += __shfl_xor_sync(0xffffffffu, sum_of_squares, offset);
    if (mode == NormCode::l2_eps) sum_of_squares += eps;
    if (sum_of_squares > 0.0f) inverse_norm = 1.0f / sqrtf(sum_of_squares);
  }
  // i = m * row_lanes + row_lane with row_lanes dividing 32: i / 32 depends on m alone.
  constexpr int rows_per_register = 32 / Tile::row_lanes;
  const int row_lane = lane / Tile::column_lanes;
#pragma unroll
  for (int m = 0; m < Tile::rows; ++m)
    x[m] = inverse_norm *
           __shfl_sync(0xffffffffu, raw[m / rows_per_register], (m % rows_per_register) * Tile::row_lanes + row_lane);
}

/// out_c = sum_i x_i S_ic over the whole key dimension, for the lane's columns.
template <class Tile>
__device__ __forceinline__ void transposed_product(const float (&state)[Tile::rows][Tile::vec],
                                                   const float (&x)[Tile::rows], float (&out)[Tile::vec]) {
#pragma unroll
  for (int c = 0; c < Tile::vec; ++c) {
    float partial = 0.0f;
#pragma unroll
    for (int m = 0; m < Tile::rows; ++m) partial = fmaf(x[m], state[m][c], partial);
    out[c] = sum_over_row_lanes<Tile>(partial);
  }
}

template <class Tile, class T>
__global__ void __launch_bounds__(recurrent_max_threads, recurrent_min_blocks)
    recurrent_kernel(const RecurrentParams<T> p) {
  const index_t warp = (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (warp >= p.work_items) return;  // whole warps leave: the shuffles below always see 32 lanes
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int row_lane = lane / Tile::column_lanes;
  const int column_lane = lane % Tile::column_lanes;

  // Consecutive warps take consecutive slabs of one head: neighbouring warps touch neighbouring memory.
  const index_t slab = warp % p.column_blocks;
  const index_t head = (warp / p.column_blocks) % p.heads;
  const index_t sequence = warp / (p.column_blocks * p.heads);
  const index_t column = slab * Tile::columns + static_cast<index_t>(column_lane) * Tile::vec;
  const bool column_in_range = column < p.value_dim;  // Vec = 4 is used only when V % 4 == 0

  // The sequence's tokens, clamped into [0, T] so that offsets never read out of bounds (bad values are reported by
  // the value checks).
  index_t batch_row = sequence, begin = 0, end = p.tokens;
  if (p.cu_seqlens.present()) {
    batch_row = 0;
    begin = min(max(p.cu_seqlens(sequence), index_t{0}), p.tokens);
    end = min(max(p.cu_seqlens(sequence + 1), begin), p.tokens);
  }
  index_t slot = sequence;
  if (p.state_indices.present()) {
    slot = p.state_indices(sequence);
    if (slot < 0 || slot >= p.state_slots) return;  // padding (negative) or out of range (reported when validated)
  }

  float state[Tile::rows][Tile::vec];
#pragma unroll
  for (int m = 0; m < Tile::rows; ++m) {
    const index_t i = static_cast<index_t>(m) * Tile::row_lanes + row_lane;
    const bool present = p.initial_state.present() && i < p.key_dim && column_in_range;
    if constexpr (Tile::vec == 4) {
      float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (present) x = load_float4(&p.initial_state(slot, head, i, column));
      state[m][0] = x.x;
      state[m][1] = x.y;
      state[m][2] = x.z;
      state[m][3] = x.w;
    } else {
      state[m][0] = present ? p.initial_state(slot, head, i, column) : 0.0f;
    }
  }
  // Issued after the state loads, so its latency overlaps theirs; it only guards the stores.
  const bool rejected = inputs_rejected(p.status);

  const index_t n_h = p.householder_steps;
  for (index_t t = begin; t < end; ++t) {
    float query[Tile::rows];
    load_key_vector<Tile>(&p.q(batch_row, t, head, 0), p.q.strides[3], p.key_dim, lane, p.query_norm, p.eps, query);
    if (p.g.present()) {
      const float gate = expf(to_float(p.g(batch_row, t, head)));
#pragma unroll
      for (int m = 0; m < Tile::rows; ++m)
#pragma unroll
        for (int c = 0; c < Tile::vec; ++c) state[m][c] *= gate;
    }
    for (index_t j = 0; j < n_h; ++j) {
      const index_t r = t * n_h + j;
      float key[Tile::rows];
      load_key_vector<Tile>(&p.k(batch_row, r, head, 0), p.k.strides[3], p.key_dim, lane, p.key_norm, p.eps, key);
      const float beta = to_float(p.beta(batch_row, r, head));
      float value[Tile::vec];
#pragma unroll
      for (int c = 0; c < Tile::vec; ++c)
        value[c] = column_in_range ? to_float(p.v(batch_row, r, head, column + c)) : 0.0f;
      // w = beta (v - S^T k); S <- S + k w^T
      float projection[Tile::vec];
      transposed_product<Tile>(state, key, projection);
#pragma unroll
      for (int c = 0; c < Tile::vec; ++c) {
        const float w = beta * (value[c] - projection[c]);
#pragma unroll
        for (int m = 0; m < Tile::rows; ++m) state[m][c] = fmaf(key[m], w, state[m][c]);
      }
    }
    float out[Tile::vec];
    transposed_product<Tile>(state, query, out);
    if (row_lane == 0 && column_in_range && !rejected) {
#pragma unroll
      for (int c = 0; c < Tile::vec; ++c) p.o(batch_row, t, head, column + c) = from_float<T>(p.scale * out[c]);
    }
  }

  if (!p.final_state.present() || rejected) return;
#pragma unroll
  for (int m = 0; m < Tile::rows; ++m) {
    const index_t i = static_cast<index_t>(m) * Tile::row_lanes + row_lane;
    if (i >= p.key_dim || !column_in_range) continue;
    if constexpr (Tile::vec == 4) {
      store_float4(&p.final_state(slot, head, i, column),
                   make_float4(state[m][0], state[m][1], state[m][2], state[m][3]));
    } else {
      p.final_state(slot, head, i, column) = state[m][0];
    }
  }
}

}  // namespace deltaproduct::detail
