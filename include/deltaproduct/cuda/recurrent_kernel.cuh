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

/// Loads of a key-indexed vector per lane: lane l holds x_(32a + l) in register a (coalesced; zero for i >= K).
template <class Tile>
inline constexpr int key_vector_loads = (Tile::max_key_dim + 31) / 32;

/// Issues the loads of a key-indexed vector as the warp reads it: lane l takes x_(32a + l).
template <class Tile, class T>
__device__ __forceinline__ void load_raw_key_vector(const T* first, index_t stride, index_t key_dim, int lane,
                                                    float (&raw)[key_vector_loads<Tile>]) {
#pragma unroll
  for (int a = 0; a < key_vector_loads<Tile>; ++a) {
    const index_t i = static_cast<index_t>(a) * 32 + lane;
    raw[a] = i < key_dim ? to_float(first[i * stride]) : 0.0f;
  }
}

/// A lane's entries x_i (i = m * row_lanes + row_lane) of a vector loaded by load_raw_key_vector, normalised as
/// asked: x / sqrt(|x|^2) (a zero vector stays zero) or x / sqrt(|x|^2 + eps). x_i sits in lane i % 32, register
/// i / 32, and is shuffled to the lanes that hold row i.
template <class Tile>
__device__ __forceinline__ void distribute_key_vector(const float (&raw)[key_vector_loads<Tile>], int lane,
                                                      NormCode mode, float eps, float (&x)[Tile::rows]) {
  float inverse_norm = 1.0f;
  if (mode != NormCode::none) {
    float sum_of_squares = 0.0f;
#pragma unroll
    for (int a = 0; a < key_vector_loads<Tile>; ++a) sum_of_squares = fmaf(raw[a], raw[a], sum_of_squares);
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

/// A lane's entries of a key-indexed vector, loaded and normalised (load_raw_key_vector, then
/// distribute_key_vector).
template <class Tile, class T>
__device__ __forceinline__ void load_key_vector(const T* first, index_t stride, index_t key_dim, int lane,
                                                NormCode mode, float eps, float (&x)[Tile::rows]) {
  float raw[key_vector_loads<Tile>];
  load_raw_key_vector<Tile>(first, stride, key_dim, lane, raw);
  distribute_key_vector<Tile>(raw, lane, mode, eps, x);
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

/// A token's data as loaded: the raw query (load_raw_key_vector's layout) and the gate exponent (0 without gating).
template <class Tile>
struct RecurrentTokenData {
  float query[key_vector_loads<Tile>];
  float gate;
};

/// One micro-step's data as loaded: the raw key, the lane's value columns and beta.
template <class Tile>
struct RecurrentStepData {
  float key[key_vector_loads<Tile>];
  float value[Tile::vec];
  float beta;
};

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

  // Token data is loaded one micro-step ahead of its use, and the first token's before the state: a decode step
  // (one token) then has all its loads in flight at once and waits for memory once, not once per dependent load.
  const index_t n_h = p.householder_steps;
  const auto load_token = [&](index_t t, RecurrentTokenData<Tile>& d) {
    load_raw_key_vector<Tile>(&p.q(batch_row, t, head, 0), p.q.strides[3], p.key_dim, lane, d.query);
    d.gate = p.g.present() ? to_float(p.g(batch_row, t, head)) : 0.0f;
  };
  const auto load_step = [&](index_t r, RecurrentStepData<Tile>& d) {
    load_raw_key_vector<Tile>(&p.k(batch_row, r, head, 0), p.k.strides[3], p.key_dim, lane, d.key);
    const T* value = &p.v(batch_row, r, head, 0) + (column_in_range ? column * p.v.strides[3] : 0);
#pragma unroll
    for (int c = 0; c < Tile::vec; ++c) d.value[c] = column_in_range ? to_float(value[c * p.v.strides[3]]) : 0.0f;
    d.beta = to_float(p.beta(batch_row, r, head));
  };
  RecurrentTokenData<Tile> next_token{};
  RecurrentStepData<Tile> next_step{};
  if (begin < end) {
    load_token(begin, next_token);
    load_step(begin * n_h, next_step);
  }

  // The lane's state rows i = m * row_lanes + row_lane (those below K: m < lane_rows) are row_step floats apart: one
  // address per lane, then constant steps (the views' general indexing costs more instructions than the loads).
  const int lane_rows =
      row_lane < p.key_dim ? static_cast<int>(min(index_t{Tile::rows}, ceil_div(p.key_dim - row_lane, Tile::row_lanes)))
                           : 0;
  float state[Tile::rows][Tile::vec];
  {
    const bool present = p.initial_state.present() && column_in_range;
    const index_t first = present ? p.initial_state.offset(slot, head, row_lane, column) : 0;
    const index_t row_step = Tile::row_lanes * p.initial_state.strides[2];
#pragma unroll
    for (int m = 0; m < Tile::rows; ++m) {
      const bool load = present && m < lane_rows;
      const float* row = p.initial_state.data + (first + m * row_step);
      if constexpr (Tile::vec == 4) {
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (load) x = load_float4(row);
        state[m][0] = x.x;
        state[m][1] = x.y;
        state[m][2] = x.z;
        state[m][3] = x.w;
      } else {
        state[m][0] = load ? *row : 0.0f;
      }
    }
  }
  // Issued after the state loads, so its latency overlaps theirs; it only guards the stores.
  const bool rejected = inputs_rejected(p.status);

  for (index_t t = begin; t < end; ++t) {
    const RecurrentTokenData<Tile> token = next_token;
    if (t + 1 < end) load_token(t + 1, next_token);
    if (p.g.present()) {
      const float gate = expf(token.gate);
#pragma unroll
      for (int m = 0; m < Tile::rows; ++m)
#pragma unroll
        for (int c = 0; c < Tile::vec; ++c) state[m][c] *= gate;
    }
    for (index_t j = 0; j < n_h; ++j) {
      const index_t r = t * n_h + j;
      const RecurrentStepData<Tile> step = next_step;
      if (r + 1 < end * n_h) load_step(r + 1, next_step);
      float key[Tile::rows];
      distribute_key_vector<Tile>(step.key, lane, p.key_norm, p.eps, key);
      // w = beta (v - S^T k); S <- S + k w^T
      float projection[Tile::vec];
      transposed_product<Tile>(state, key, projection);
#pragma unroll
      for (int c = 0; c < Tile::vec; ++c) {
        const float w = step.beta * (step.value[c] - projection[c]);
#pragma unroll
        for (int m = 0; m < Tile::rows; ++m) state[m][c] = fmaf(key[m], w, state[m][c]);
      }
    }
    // The query is distributed only now, so its registers are not held across the micro-steps.
    float query[Tile::rows];
    distribute_key_vector<Tile>(token.query, lane, p.query_norm, p.eps, query);
    float out[Tile::vec];
    transposed_product<Tile>(state, query, out);
    if (row_lane == 0 && column_in_range && !rejected) {
      T* o = &p.o(batch_row, t, head, 0) + column * p.o.strides[3];
#pragma unroll
      for (int c = 0; c < Tile::vec; ++c) o[c * p.o.strides[3]] = from_float<T>(p.scale * out[c]);
    }
  }

  if (!p.final_state.present() || rejected || !column_in_range) return;
  const index_t first = p.final_state.offset(slot, head, row_lane, column);
  const index_t row_step = Tile::row_lanes * p.final_state.strides[2];
#pragma unroll
  for (int m = 0; m < Tile::rows; ++m) {
    if (m >= lane_rows) continue;
    float* row = p.final_state.data + (first + m * row_step);
    if constexpr (Tile::vec == 4) {
      store_global_float4(row, make_float4(state[m][0], state[m][1], state[m][2], state[m][3]));
    } else {
      *row = state[m][0];
    }
  }
}

}  // namespace deltaproduct::detail
