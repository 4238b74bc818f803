// The recurrent (token-by-token) backward kernels: gradients of the recurrence of core/recurrence.hpp with the state
// in registers and no per-token state stored anywhere. nvcc only; the host entry points are in backward.cuh.
//
// Per step, with S' = S + k w^T, w = beta u, u = v - S^T k and D = dL/dS' (cpu/backward_sequential.hpp derives it):
//   dv = beta D^T k,  dbeta = (D^T k) . u,  dk = D w - S dv,  dL/dS = D - k dv^T;
// gate S' = exp(g) S: dL/dS = exp(g) D; readout o = scale S^T q: dL/dS += scale q do^T, dq = scale S do.
// Three sweeps over the sequence, each holding one K x V matrix per warp slab, as the forward kernel does:
//   1. forward:  the states again; stores u of every step (a V-vector, as v) and adds dq = scale S do;
//   2. reverse:  D from dL/dS_T back to dL/dS_0 with the u of sweep 1: dv, dbeta and the D w part of dk; writes
//                dL/d(initial state);
//   3. forward:  the states once more, for the - S dv part of dk (dv from sweep 2).
// The states are never needed in reverse, which is what lets them stay in registers: the one term of the reverse
// sweep that would need them, dg = <dL/dS', S'> of the gate, follows from per-token quantities instead. With
// Phi(X) = <dL/dX, X> for any state X of the chain: a gate keeps Phi (dL/dS = exp(g) D, S' = exp(g) S), a
// Householder step lowers it by v . dv (<(I - beta k k^T) D, S> = <D, S' - beta k v^T>), a readout adds o . do. So
//   dg_t = <dL/dS_T, S_T> + sum_{s >= t} (o_s . do_s - sum_j v_sj . dv_sj),
// a reverse cumulative sum over the sequence (finished in double by gate_gradient_kernel).
//
// Column slabs are independent in the state updates but not in the sums over value columns (dq, dk, dbeta, the
// terms of dg): each warp adds its slab's share to fp32 scratch with atomics, and the finishing kernels convert the
// sums (through the normalisation's gradient for q and k) into the caller's gradient views. The order of those
// additions varies between runs: results agree to fp32 rounding, not bit for bit.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "deltaproduct/core/view.hpp"
#include "deltaproduct/cuda/device_views.cuh"
#include "deltaproduct/cuda/recurrent_kernel.cuh"
#include "deltaproduct/cuda/validate.hpp"
#include "deltaproduct/cuda/value_checks.cuh"

namespace deltaproduct::detail {

/// fp32 scratch of the recurrent backward, dense, in the caller's workspace. R = T * n_h rows per batch row.
struct RecurrentBackwardScratch {
  float* u = nullptr;            ///< [B*R, H, V]  u = v - S^T k of every step (sweep 1 -> sweep 2)
  float* dv = nullptr;           ///< [B*R, H, V]  dL/dv (sweep 2 -> sweep 3 and the caller's view)
  float* dq = nullptr;           ///< [B*T, H, K]  dL/dq_hat, summed over slabs (zeroed before the call)
  float* dk = nullptr;           ///< [B*R, H, K]  dL/dk_hat (zeroed)
  float* dbeta = nullptr;        ///< [B*R, H]     (zeroed)
  float* token_terms = nullptr;  ///< [B*T, H]     o . do - sum_j v_j . dv_j, gated models (zeroed)
  float* phi = nullptr;          ///< [N, H]       <dL/dS_T, S_T>, gated models (zeroed)
};

template <class T>
struct RecurrentBackwardParams {
  DeviceView<const T, 4> q, k, v;
  DeviceView<const T, 3> beta, g;                 ///< g absent for ungated models
  DeviceView<const float, 4> initial_state;       ///< absent: zero
  DeviceView<const T, 4> d_o;                     ///< [B, T, H, V]
  DeviceView<const float, 4> d_final_state;       ///< absent: zero
  DeviceView<float, 4> d_initial_state;           ///< absent: not written
  DeviceView<const std::int64_t, 1> cu_seqlens;   ///< absent: sequence n is batch row n
  RecurrentBackwardScratch scratch;
  index_t tokens = 0, heads = 0, key_dim = 0, value_dim = 0;
  index_t column_blocks = 0, work_items = 0;
  int householder_steps = 1;
  NormCode key_norm = NormCode::none, query_norm = NormCode::none;
  float eps = 1e-6f, scale = 1.0f;
  const ValueCheckRecord* status = nullptr;
};

/// Sum over the warp's column lanes (every lane of a row gets its row's total).
template <class Tile>
__device__ __forceinline__ float sum_over_column_lanes(float x) {
#pragma unroll
  for (int offset = 1; offset < Tile::column_lanes; offset <<= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

/// Where one warp of a backward sweep works: its (sequence, head, slab), the sequence's tokens and its columns.
struct SlabPosition {
  index_t sequence, head, batch_row, begin, end, column;
  int row_lane, column_lane;
  bool column_in_range;
};

template <class Tile, class P>
__device__ __forceinline__ SlabPosition slab_position(const P& p, index_t warp, int lane) {
  SlabPosition s;
  s.row_lane = lane / Tile::column_lanes;
  s.column_lane = lane % Tile::column_lanes;
  const index_t slab = warp % p.column_blocks;
  s.head = (warp / p.column_blocks) % p.heads;
  s.sequence = warp / (p.column_blocks * p.heads);
  s.column = slab * Tile::columns + static_cast<index_t>(s.column_lane) * Tile::vec;
  s.column_in_range = s.column < p.value_dim;
  s.batch_row = s.sequence;
  s.begin = 0;
  s.end = p.tokens;
  if (p.cu_seqlens.present()) {  // clamped: bad offsets (reported by the value checks) never read out of bounds
    s.batch_row = 0;
    s.begin = min(max(p.cu_seqlens(s.sequence), index_t{0}), p.tokens);
    s.end = min(max(p.cu_seqlens(s.sequence + 1), s.begin), p.tokens);
  }
  return s;
}

/// The warp's slab of a [N, H, K, V] fp32 state (zero where absent or beyond K, V).
template <class Tile>
__device__ __forceinline__ void load_state_slab(const DeviceView<const float, 4>& state, const SlabPosition& s,
                                                index_t key_dim, float (&x)[Tile::rows][Tile::vec]) {
#pragma unroll
  for (int m = 0; m < Tile::rows; ++m) {
    const index_t i = static_cast<index_t>(m) * Tile::row_lanes + s.row_lane;
    const bool present = state.present() && i < key_dim && s.column_in_range;
    if constexpr (Tile::vec == 4) {
      float4 e = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (present) e = load_float4(&state(s.sequence, s.head, i, s.column));
      x[m][0] = e.x;
      x[m][1] = e.y;
      x[m][2] = e.z;
      x[m][3] = e.w;
    } else {
      x[m][0] = present ? state(s.sequence, s.head, i, s.column) : 0.0f;
    }
  }
}

/// The lane's `vec` columns of a token row of a [B, rows, H, V] view (zero beyond V).
template <class Tile, class T>
__device__ __forceinline__ void load_columns(const DeviceView<const T, 4>& view, const SlabPosition& s, index_t row,
                                             float (&x)[Tile::vec]) {
#pragma unroll
  for (int c = 0; c < Tile::vec; ++c)
    x[c] = s.column_in_range ? to_float(view(s.batch_row, row, s.head, s.column + c)) : 0.0f;
}

/// Adds scale * sum_c A_ic y_c over the warp's slab to out[i] (a K-vector of fp32 scratch), for every row i of the
/// lane: the per-row halves of dq = scale S do and dk = D w - S dv.
template <class Tile>
__device__ __forceinline__ void add_row_products(const float (&A)[Tile::rows][Tile::vec], const float (&y)[Tile::vec],
                                                 float scale, const SlabPosition& s, index_t key_dim, float* out) {
#pragma unroll
  for (int m = 0; m < Tile::rows; ++m) {
    float partial = 0.0f;
#pragma unroll
    for (int c = 0; c < Tile::vec; ++c) partial = fmaf(A[m][c], y[c], partial);
    partial = sum_over_column_lanes<Tile>(partial);
    const index_t i = static_cast<index_t>(m) * Tile::row_lanes + s.row_lane;
    if (s.column_lane == 0 && i < key_dim) atomicAdd(out + i, scale * partial);
  }
}

/// Sum over the slab's columns of x_c y_c, valid in every lane (each column is held by one column lane, every row
/// lane holds the same copy).
template <class Tile>
__device__ __forceinline__ float column_dot(const float (&x)[Tile::vec], const float (&y)[Tile::vec]) {
  float partial = 0.0f;
#pragma unroll
  for (int c = 0; c < Tile::vec; ++c) partial = fmaf(x[c], y[c], partial);
  return sum_over_column_lanes<Tile>(partial);
}

__device__ __forceinline__ index_t scratch_row(index_t batch_row, index_t rows, index_t row, index_t heads,
                                               index_t head) {
  return (batch_row * rows + row) * heads + head;
}

/// Sweep 1: the forward recurrence again; stores u per step, adds dq = scale S_t do_t, the o . do terms of dg and
/// <dL/dS_T, S_T>.
template <class Tile, class T>
__global__ void __launch_bounds__(recurrent_max_threads, recurrent_min_blocks)
    backward_forward_sweep_kernel(const RecurrentBackwardParams<T> p) {
  const index_t warp = (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (warp >= p.work_items) return;
  if (inputs_rejected(p.status)) return;  // scratch only; the finishing kernels then write nothing either
  const int lane = static_cast<int>(threadIdx.x % 32);
  const SlabPosition s = slab_position<Tile>(p, warp, lane);
  const bool gated = p.g.present();
  const index_t n_h = p.householder_steps, R = p.tokens * n_h;

  float state[Tile::rows][Tile::vec];
  load_state_slab<Tile>(p.initial_state, s, p.key_dim, state);
  for (index_t t = s.begin; t < s.end; ++t) {
    if (gated) {
      const float gate = expf(to_float(p.g(s.batch_row, t, s.head)));
#pragma unroll
      for (int m = 0; m < Tile::rows; ++m)
#pragma unroll
        for (int c = 0; c < Tile::vec; ++c) state[m][c] *= gate;
    }
    for (index_t j = 0; j < n_h; ++j) {
      const index_t r = t * n_h + j;
      float key[Tile::rows];
      load_key_vector<Tile>(&p.k(s.batch_row, r, s.head, 0), p.k.strides[3], p.key_dim, lane, p.key_norm, p.eps,
                            key);
      const float beta = to_float(p.beta(s.batch_row, r, s.head));
      float value[Tile::vec], projection[Tile::vec];
      load_columns<Tile>(p.v, s, r, value);
      transposed_product<Tile>(state, key, projection);
      float* u_row = p.scratch.u + scratch_row(s.batch_row, R, r, p.heads, s.head) * p.value_dim + s.column;
#pragma unroll
      for (int c = 0; c < Tile::vec; ++c) {
        const float u = value[c] - projection[c];
        if (s.row_lane == 0 && s.column_in_range) u_row[c] = u;
        const float w = beta * u;
#pragma unroll
        for (int m = 0; m < Tile::rows; ++m) state[m][c] = fmaf(key[m], w, state[m][c]);
      }
    }
    float d_out[Tile::vec];
    load_columns<Tile>(p.d_o, s, t, d_out);
    const index_t token = scratch_row(s.batch_row, p.tokens, t, p.heads, s.head);
    add_row_products<Tile>(state, d_out, p.scale, s, p.key_dim, p.scratch.dq + token * p.key_dim);
    if (gated) {
      float query[Tile::rows], out[Tile::vec];
      load_key_vector<Tile>(&p.q(s.batch_row, t, s.head, 0), p.q.strides[3], p.key_dim, lane, p.query_norm, p.eps,
                            query);
      transposed_product<Tile>(state, query, out);
      const float o_dot_do = p.scale * column_dot<Tile>(out, d_out);
      if (lane == 0) atomicAdd(p.scratch.token_terms + token, o_dot_do);
    }
  }
  if (gated && p.d_final_state.present()) {
    float d_final[Tile::rows][Tile::vec];
    load_state_slab<Tile>(p.d_final_state, s, p.key_dim, d_final);
    float partial = 0.0f;
#pragma unroll
    for (int m = 0; m < Tile::rows; ++m)
#pragma unroll
      for (int c = 0; c < Tile::vec; ++c) partial = fmaf(d_final[m][c], state[m][c], partial);
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) partial += __shfl_xor_sync(0xffffffffu, partial, offset);
    if (lane == 0) atomicAdd(p.scratch.phi + s.sequence * p.heads + s.head, partial);
  }
}

/// Sweep 2: D = dL/dS from the end back to the start: dv, dbeta, the D w half of dk, the v . dv terms of dg, and
/// dL/d(initial state).
template <class Tile, class T>
__global__ void __launch_bounds__(recurrent_max_threads, recurrent_min_blocks)
    backward_reverse_sweep_kernel(const RecurrentBackwardParams<T> p) {
  const index_t warp = (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (warp >= p.work_items) return;
  if (inputs_rejected(p.status)) return;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const SlabPosition s = slab_position<Tile>(p, warp, lane);
  const bool gated = p.g.present();
  const index_t n_h = p.householder_steps, R = p.tokens * n_h;

  float D[Tile::rows][Tile::vec];
  load_state_slab<Tile>(p.d_final_state, s, p.key_dim, D);
  for (index_t t = s.end - 1; t >= s.begin; --t) {
    float query[Tile::rows], d_out[Tile::vec];
    load_key_vector<Tile>(&p.q(s.batch_row, t, s.head, 0), p.q.strides[3], p.key_dim, lane, p.query_norm, p.eps,
                          query);
    load_columns<Tile>(p.d_o, s, t, d_out);
#pragma unroll
    for (int m = 0; m < Tile::rows; ++m)
#pragma unroll
      for (int c = 0; c < Tile::vec; ++c) D[m][c] = fmaf(p.scale * query[m], d_out[c], D[m][c]);
    float v_dot_dv = 0.0f;
    for (index_t j = n_h - 1; j >= 0; --j) {
      const index_t r = t * n_h + j;
      float key[Tile::rows];
      load_key_vector<Tile>(&p.k(s.batch_row, r, s.head, 0), p.k.strides[3], p.key_dim, lane, p.key_norm, p.eps,
                            key);
      const float beta = to_float(p.beta(s.batch_row, r, s.head));
      const index_t row = scratch_row(s.batch_row, R, r, p.heads, s.head);
      const float* u_row = p.scratch.u + row * p.value_dim + s.column;
      float u[Tile::vec], w[Tile::vec], x[Tile::vec], dv[Tile::vec];
#pragma unroll
      for (int c = 0; c < Tile::vec; ++c) {
        u[c] = s.column_in_range ? u_row[c] : 0.0f;
        w[c] = beta * u[c];
      }
      transposed_product<Tile>(D, key, x);  // D^T k
#pragma unroll
      for (int c = 0; c < Tile::vec; ++c) dv[c] = beta * x[c];
      if (s.row_lane == 0 && s.column_in_range) {
        float* dv_row = p.scratch.dv + row * p.value_dim + s.column;
#pragma unroll
        for (int c = 0; c < Tile::vec; ++c) dv_row[c] = dv[c];
      }
      const float d_beta = column_dot<Tile>(x, u);
      if (lane == 0) atomicAdd(p.scratch.dbeta + row, d_beta);
      add_row_products<Tile>(D, w, 1.0f, s, p.key_dim, p.scratch.dk + row * p.key_dim);
      if (gated) {
        float value[Tile::vec];
        load_columns<Tile>(p.v, s, r, value);
        v_dot_dv += column_dot<Tile>(value, dv);
      }
#pragma unroll
      for (int m = 0; m < Tile::rows; ++m)
#pragma unroll
        for (int c = 0; c < Tile::vec; ++c) D[m][c] = fmaf(-key[m], dv[c], D[m][c]);
    }
    if (gated) {
      if (lane == 0) atomicAdd(p.scratch.token_terms + scratch_row(s.batch_row, p.tokens, t, p.heads, s.head), -v_dot_dv);
      const float gate = expf(to_float(p.g(s.batch_row, t, s.head)));
#pragma unroll
      for (int m = 0; m < Tile::rows; ++m)
#pragma unroll
        for (int c = 0; c < Tile::vec; ++c) D[m][c] *= gate;
    }
  }
  if (!p.d_initial_state.present()) return;
#pragma unroll
  for (int m = 0; m < Tile::rows; ++m) {
    const index_t i = static_cast<index_t>(m) * Tile::row_lanes + s.row_lane;
    if (i >= p.key_dim || !s.column_in_range) continue;
    if constexpr (Tile::vec == 4) {
      store_float4(&p.d_initial_state(s.sequence, s.head, i, s.column), make_float4(D[m][0], D[m][1], D[m][2], D[m][3]));
    } else {
      p.d_initial_state(s.sequence, s.head, i, s.column) = D[m][0];
    }
  }
}

/// Sweep 3: the forward recurrence once more, adding the - S dv half of dk (S the state before the step).
template <class Tile, class T>
__global__ void __launch_bounds__(recurrent_max_threads, recurrent_min_blocks)
    backward_key_sweep_kernel(const RecurrentBackwardParams<T> p) {
  const index_t warp = (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (warp >= p.work_items) return;
  if (inputs_rejected(p.status)) return;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const SlabPosition s = slab_position<Tile>(p, warp, lane);
  const index_t n_h = p.householder_steps, R = p.tokens * n_h;

  float state[Tile::rows][Tile::vec];
  load_state_slab<Tile>(p.initial_state, s, p.key_dim, state);
  for (index_t t = s.begin; t < s.end; ++t) {
    if (p.g.present()) {
      const float gate = expf(to_float(p.g(s.batch_row, t, s.head)));
#pragma unroll
      for (int m = 0; m < Tile::rows; ++m)
#pragma unroll
        for (int c = 0; c < Tile::vec; ++c) state[m][c] *= gate;
    }
    for (index_t j = 0; j < n_h; ++j) {
      const index_t r = t * n_h + j;
      float key[Tile::rows];
      load_key_vector<Tile>(&p.k(s.batch_row, r, s.head, 0), p.k.strides[3], p.key_dim, lane, p.key_norm, p.eps,
                            key);
      const float beta = to_float(p.beta(s.batch_row, r, s.head));
      const index_t row = scratch_row(s.batch_row, R, r, p.heads, s.head);
      const float* dv_row = p.scratch.dv + row * p.value_dim + s.column;
      float value[Tile::vec], projection[Tile::vec], dv[Tile::vec];
#pragma unroll
      for (int c = 0; c < Tile::vec; ++c) dv[c] = s.column_in_range ? dv_row[c] : 0.0f;
      add_row_products<Tile>(state, dv, -1.0f, s, p.key_dim, p.scratch.dk + row * p.key_dim);
      load_columns<Tile>(p.v, s, r, value);
      transposed_product<Tile>(state, key, projection);
#pragma unroll
      for (int c = 0; c < Tile::vec; ++c) {
        const float w = beta * (value[c] - projection[c]);
#pragma unroll
        for (int m = 0; m < Tile::rows; ++m) state[m][c] = fmaf(key[m], w, state[m][c]);
      }
    }
  }
}

/// Largest key dimension a lane of the finishing kernels holds in registers (32 lanes x 8).
inline constexpr index_t backward_rows_max_key_dim = 256;

/// dL/dx of raw key or query rows from dL/dx_hat (x_hat = x / n, n = sqrt(|x|^2 [+ eps])):
///   dx = (dx_hat - x_hat (x_hat . dx_hat)) / n, passed through where n = 0 or without normalisation.
/// One warp per row of a [B, rows, H, K] view; `hat_gradient` is the dense [B*rows, H, K] scratch.
template <class T>
__global__ void normalized_rows_gradient_kernel(const float* hat_gradient, const DeviceView<const T, 4> x,
                                                const DeviceView<T, 4> dx, NormCode mode, float eps,
                                                const ValueCheckRecord* status) {
  if (inputs_rejected(status)) return;
  constexpr int per_lane = static_cast<int>(backward_rows_max_key_dim / 32);
  const index_t rows = x.extents[1], heads = x.extents[2], K = x.extents[3];
  const index_t total = x.extents[0] * rows * heads;
  const int lane = static_cast<int>(threadIdx.x % 32);
  for (index_t item = (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; item < total;
       item += static_cast<index_t>(gridDim.x) * blockDim.x / 32) {
    const index_t h = item % heads, r = (item / heads) % rows, b = item / (heads * rows);
    float raw[per_lane], grad[per_lane];
    float sum_of_squares = 0.0f;
#pragma unroll
    for (int a = 0; a < per_lane; ++a) {
      const index_t i = static_cast<index_t>(a) * 32 + lane;
      raw[a] = i < K ? to_float(x(b, r, h, i)) : 0.0f;
      grad[a] = i < K ? hat_gradient[item * K + i] : 0.0f;
      sum_of_squares = fmaf(raw[a], raw[a], sum_of_squares);
    }
    if (mode != NormCode::none) {
#pragma unroll
      for (int offset = 16; offset > 0; offset >>= 1)
        sum_of_squares += __shfl_xor_sync(0xffffffffu, sum_of_squares, offset);
      if (mode == NormCode::l2_eps) sum_of_squares += eps;
      if (sum_of_squares > 0.0f) {  // the same divisor as load_key_vector
        const float inverse_norm = 1.0f / sqrtf(sum_of_squares);
        float along = 0.0f;
#pragma unroll
        for (int a = 0; a < per_lane; ++a) along = fmaf(raw[a] * inverse_norm, grad[a], along);
#pragma unroll
        for (int offset = 16; offset > 0; offset >>= 1) along += __shfl_xor_sync(0xffffffffu, along, offset);
#pragma unroll
        for (int a = 0; a < per_lane; ++a) grad[a] = (grad[a] - raw[a] * inverse_norm * along) * inverse_norm;
      }
    }
#pragma unroll
    for (int a = 0; a < per_lane; ++a) {
      const index_t i = static_cast<index_t>(a) * 32 + lane;
      if (i < K) dx(b, r, h, i) = from_float<T>(grad[a]);
    }
  }
}

/// Copies dense fp32 scratch [B*rows, H, D] (D = 1 for betas) into a caller's strided view, converting to T.
template <class T, int Rank>
__global__ void scratch_to_view_kernel(const float* scratch, const DeviceView<T, Rank> out,
                                       const ValueCheckRecord* status) {
  if (inputs_rejected(status)) return;
  index_t total = 1;
  for (int d = 0; d < Rank; ++d) total *= out.extents[d];
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<index_t>(gridDim.x) * blockDim.x) {
    if constexpr (Rank == 4) {
      const index_t c = e % out.extents[3], h = (e / out.extents[3]) % out.extents[2];
      const index_t rest = e / (out.extents[3] * out.extents[2]);
      out(rest / out.extents[1], rest % out.extents[1], h, c) = from_float<T>(scratch[e]);
    } else {
      const index_t h = e % out.extents[2], rest = e / out.extents[2];
      out(rest / out.extents[1], rest % out.extents[1], h) = from_float<T>(scratch[e]);
    }
  }
}

struct GateGradientParams {
  const float* token_terms = nullptr;  ///< [B*T, H]
  const float* phi = nullptr;          ///< [N, H]
  DeviceView<const std::int64_t, 1> cu_seqlens;
  index_t tokens = 0, heads = 0, sequences = 0;
  const ValueCheckRecord* status = nullptr;
};

/// dg_t = phi + sum_{s >= t} token_terms_s over each sequence (the identity at the top of this file), summed in
/// double: a warp per (sequence, head) takes 32 tokens at a time, last to first, with a shuffle scan.
template <class T>
__global__ void gate_gradient_kernel(const GateGradientParams p, const DeviceView<T, 3> dg) {
  if (inputs_rejected(p.status)) return;
  const index_t item = (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (item >= p.sequences * p.heads) return;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const index_t head = item % p.heads, sequence = item / p.heads;
  index_t batch_row = sequence, begin = 0, end = p.tokens;
  if (p.cu_seqlens.present()) {
    batch_row = 0;
    begin = min(max(p.cu_seqlens(sequence), index_t{0}), p.tokens);
    end = min(max(p.cu_seqlens(sequence + 1), begin), p.tokens);
  }
  double carry = p.phi[sequence * p.heads + head];
  for (index_t last = end - 1; last >= begin; last -= 32) {
    const index_t t = last - lane;  // lane 0 takes the latest token of the group
    double x = t >= begin ? static_cast<double>(p.token_terms[(batch_row * p.tokens + t) * p.heads + head]) : 0.0;
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {  // inclusive scan from lane 0 upwards
      const double y = __shfl_up_sync(0xffffffffu, x, offset);
      if (lane >= offset) x += y;
    }
    if (t >= begin) dg(batch_row, t, head) = from_float<T>(static_cast<float>(carry + x));
    carry += __shfl_sync(0xffffffffu, x, 31);
  }
}

}  // namespace deltaproduct::detail
