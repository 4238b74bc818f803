// Sequence splitting for the chunked forward kernel: when B * H (sequence, head) pairs cannot fill the GPU, every
// sequence is cut into `splits` runs of chunks that run on separate multiprocessors. nvcc only.
//
// The state after a run of chunks is affine in the state before it: S_(i+1) = P_i S_i + C_i, with C_i the end state
// of run i started from zero and P_i (K x K, K = V) its end state started from the identity with the values taken as
// zero (the product of the run's gated Householder factors). So a split forward is three launches:
//   1. summarize (chunked kernel, SplitPass::summarize): C_i for runs 0 .. splits - 2 (run 0 from the initial state,
//      so C_0 = S_1) and P_i for runs 1 .. splits - 2, all in parallel;
//   2. fix-up (this file): S_0 = initial state, S_1 = C_0, S_(i+1) = P_i S_i + C_i, in fp32, per (sequence, head)
//      and block of value columns;
//   3. outputs (chunked kernel, SplitPass::outputs): every run again from S_i, writing o and, from the last run,
//      the final state.
// Runs 1 and 3 do about twice and once the work of the unsplit kernel, spread over `splits` times as many CTAs.
// plan_sequence_splits() picks the count from a model of that cost. The scratch (split_scratch_bytes) holds C_i and
// P_i, [N, H, splits, 2, K, V], then S_i, [N, H, splits, K, V], in fp32. The initial state is read only before the
// outputs pass, so the final state may be the initial state's memory.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <limits>

#include "deltaproduct/core/view.hpp"
#include "deltaproduct/cuda/chunked_common.cuh"
#include "deltaproduct/cuda/device_views.cuh"

namespace deltaproduct::detail::cuda_chunked {

/// Bytes of fp32 scratch a split forward needs: C_i, P_i and S_i for every (sequence, head, split).
inline std::size_t split_scratch_bytes(index_t sequences, index_t heads, index_t key_dim, index_t value_dim,
                                       int splits) {
  if (splits <= 1) return 0;
  return sizeof(float) * 3 * static_cast<std::size_t>(sequences) * heads * key_dim * value_dim * splits;
}

/// The split count with the least modelled time, among 1 .. max_splits, for `pairs` (sequence, head) pairs of
/// about `chunks` chunks each on `multiprocessors` (one CTA each). In units of one chunk's time on one CTA:
///   unsplit:   chunks * waves(pairs)
///   s splits:  ceil(chunks / s) * (waves(pairs (2 s - 3)) + waves(pairs s)) + fix-up (s - 2) / 4 + 1,
/// a fix-up step (one K x K by K x 16 product per CTA) costing about a quarter of a chunk and the two extra launches
/// about one.
inline int plan_sequence_splits(index_t pairs, index_t chunks, int multiprocessors, int max_splits) {
  if (pairs <= 0 || chunks <= 1 || multiprocessors <= 0) return 1;
  const auto waves = [&](index_t ctas) { return static_cast<double>((ctas + multiprocessors - 1) / multiprocessors); };
  double best_cost = static_cast<double>(chunks) * waves(pairs);
  int best = 1;
  const index_t limit = std::min<index_t>(max_splits, chunks);
  for (index_t s = 2; s <= limit; ++s) {
    const double run = static_cast<double>((chunks + s - 1) / s);
    const double cost = run * (waves(pairs * (2 * s - 3)) + waves(pairs * s)) + static_cast<double>(s - 2) / 4 + 1;
    if (cost < best_cost) best_cost = cost, best = static_cast<int>(s);
  }
  return best;
}

struct SplitFixupParams {
  DeviceView<const float, 4> initial_state;  ///< [N, H, K, V]; absent: zero
  const float* summaries = nullptr;          ///< [N, H, splits, 2, K, V]: C_i, and P_i transposed
  float* starts = nullptr;                   ///< [N, H, splits, K, V]: S_i (written)
  int splits = 2;
};

/// Value columns per fix-up CTA.
inline constexpr int fixup_columns = 16;

template <int KD>
constexpr std::size_t fixup_shared_bytes() {
  return sizeof(float) * (2 * static_cast<std::size_t>(KD) * KD + static_cast<std::size_t>(KD) * fixup_columns);
}

/// Grid: (N * H, V / 16); block: K threads, each computing a 4 x 4 block of S_(i+1) (rows 4 g .. 4 g + 3 for
/// g = thread % (K / 4), columns 4 c .. 4 c + 3 of the CTA's 16 for c = thread / (K / 4)). Shared memory: P_i^T
/// (the summarize pass stores the transition transposed, so that row k of P^T is column k of P) in two buffers, the
/// next one arriving by cp.async while the current step computes, and the CTA's 16 columns of S_i. A warp reads
/// consecutive rows of P^T (16 bytes a lane) and one broadcast row of S_i per k.
template <int KD, int VD>
__global__ void __launch_bounds__(KD) split_fixup_kernel(const SplitFixupParams p) {
  static_assert(KD == VD, "the transition P_i is K x K and acts on K x V states with K = V");
  extern __shared__ __align__(16) float fixup_shared[];
  float* const columns = fixup_shared + 2 * KD * KD;  // [k][c] = S_i[k][CTA's column c]
  const int tid = static_cast<int>(threadIdx.x);
  const int row_group = tid % (KD / 4), column_group = tid / (KD / 4);
  const index_t pair = blockIdx.x;  // sequence * H + head
  const int first_column = static_cast<int>(blockIdx.y) * fixup_columns + 4 * column_group;
  const auto matrix = [&](index_t split, int slot, int slots) {
    return (static_cast<index_t>(pair * p.splits + split) * slots + slot) * KD * VD;
  };
  const auto load_transition = [&](int split, int buffer) {
    const float* source = p.summaries + matrix(split, 1, 2);
    float* destination = fixup_shared + buffer * KD * KD;
    for (int x = tid; x < KD * KD / 4; x += KD) copy_async_16(destination + 4 * x, source + 4 * x, true);
    copy_async_commit();
  };
  const auto block_of = [&](const float* m, float (&x)[4][4]) {
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      const float4 v = load_float4(m + (4 * row_group + a) * VD + first_column);
      x[a][0] = v.x, x[a][1] = v.y, x[a][2] = v.z, x[a][3] = v.w;
    }
  };
  const auto store_block = [&](float* m, const float (&x)[4][4]) {
#pragma unroll
    for (int a = 0; a < 4; ++a)
      store_float4(m + (4 * row_group + a) * VD + first_column, make_float4(x[a][0], x[a][1], x[a][2], x[a][3]));
  };

  if (p.splits > 2) load_transition(1, 0);
  float s[4][4];
  // S_0: the initial state (zero when absent), read here so that the outputs pass never reads the caller's memory.
  const int heads = static_cast<int>(p.initial_state.present() ? p.initial_state.extents[1] : 1);
#pragma unroll
  for (int a = 0; a < 4; ++a)
#pragma unroll
    for (int b = 0; b < 4; ++b)
      s[a][b] = p.initial_state.present()
                    ? p.initial_state(pair / heads, pair % heads, 4 * row_group + a, first_column + b)
                    : 0.0f;
  store_block(p.starts + matrix(0, 0, 1), s);
  // S_1 = C_0: the first run started from the initial state.
  block_of(p.summaries + matrix(0, 0, 2), s);
  store_block(p.starts + matrix(1, 0, 1), s);

  for (int i = 1; i + 1 < p.splits; ++i) {
    float next[4][4];
    block_of(p.summaries + matrix(i, 0, 2), next);  // C_i, in flight during the wait
    copy_async_wait_all();
    __syncthreads();  // P_i^T is in its buffer; every thread is done with step i - 1's buffer and columns
    if (i + 2 < p.splits) load_transition(i + 1, i % 2);
#pragma unroll
    for (int a = 0; a < 4; ++a)
      store_float4(columns + (4 * row_group + a) * fixup_columns + 4 * column_group,
                   make_float4(s[a][0], s[a][1], s[a][2], s[a][3]));
    __syncthreads();
    const float* transposed = fixup_shared + ((i - 1) % 2) * KD * KD;
#pragma unroll 4
    for (int k = 0; k < KD; ++k) {
      const float4 column_of_p = load_float4(transposed + k * KD + 4 * row_group);  // P[4 g + a][k]
      const float4 row_of_s = load_float4(columns + k * fixup_columns + 4 * column_group);
      const float pk[4] = {column_of_p.x, column_of_p.y, column_of_p.z, column_of_p.w};
      const float sk[4] = {row_of_s.x, row_of_s.y, row_of_s.z, row_of_s.w};
#pragma unroll
      for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int b = 0; b < 4; ++b) next[a][b] += pk[a] * sk[b];
    }
#pragma unroll
    for (int a = 0; a < 4; ++a)
#pragma unroll
      for (int b = 0; b < 4; ++b) s[a][b] = next[a][b];
    store_block(p.starts + matrix(i + 1, 0, 1), s);
  }
}

}  // namespace deltaproduct::detail::cuda_chunked
