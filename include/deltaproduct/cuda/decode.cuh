// Host entry points of the recurrent kernel (recurrent_kernel.cuh): step() for decode, the state-pool step() for
// serving, and detail::cuda_recurrent_forward() for short sequences, which forward() (chunked_forward.cuh) calls for
// CudaAlgorithm::recurrent. Arguments follow the CPU backend's contract on device memory (backend.hpp says how
// cu_seqlens and value checks work without synchronising). nvcc only.
//
// Speed: every state element is read once and written once, 16 bytes at a time, when the state has contiguous value
// columns (stride 1), V % 4 == 0 and rows aligned to 16 bytes; any other strides work at a lower speed. The state
// must not overlap q, k, v, beta, g or o. K <= 256.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "deltaproduct/core/arguments.hpp"
#include "deltaproduct/core/config.hpp"
#include "deltaproduct/core/contract.hpp"
#include "deltaproduct/core/step.hpp"
#include "deltaproduct/core/view.hpp"
#include "deltaproduct/cuda/backend.hpp"
#include "deltaproduct/cuda/device_views.cuh"
#include "deltaproduct/cuda/error.hpp"
#include "deltaproduct/cuda/recurrent_kernel.cuh"
#include "deltaproduct/cuda/validate.hpp"
#include "deltaproduct/cuda/value_checks.cuh"

namespace deltaproduct {
namespace detail {

/// Largest key dimension of the recurrent kernel: 16 row lanes x 16 rows in registers.
inline constexpr index_t recurrent_max_key_dim = 256;

inline NormCode norm_code(Normalization mode) {
  return mode == Normalization::l2 ? NormCode::l2 : mode == Normalization::l2_eps ? NormCode::l2_eps : NormCode::none;
}

/// True when a state view allows 16-byte accesses of 4 value columns: contiguous columns, V % 4 == 0, every other
/// stride a multiple of 4 floats and the data 16-byte aligned.
inline bool state_allows_float4(const View<const float, 4>& state, index_t value_dim) {
  if (state.absent()) return true;
  if (value_dim % 4 != 0 || state.stride(3) != 1) return false;
  if (reinterpret_cast<std::uintptr_t>(state.data()) % 16 != 0) return false;
  for (std::size_t d = 0; d < 3; ++d)
    if (state.extent(d) > 1 && state.stride(d) % 4 != 0) return false;
  return true;
}

inline int multiprocessor_count() {
  int device = 0, count = 0;
  DELTAPRODUCT_CUDA_CHECK(cudaGetDevice(&device));
  DELTAPRODUCT_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count > 0 ? count : 1;
}

/// Warps per block of the recurrent kernels (one warp per work item): fewer for small batches, whose blocks then
/// spread over more multiprocessors.
inline int recurrent_warps_per_block(index_t work_items) {
  const index_t sms = multiprocessor_count();
  return work_items >= 8 * sms ? recurrent_max_threads / 32 : work_items >= 2 * sms ? 2 : 1;
}

/// Calls `launch.template operator()<Tile>()` with the recurrent kernels' tile for K (rows a lane holds in registers)
/// and access width (4 columns, 16-byte accesses, where the state allows them). The forward, decode and backward
/// kernels all take the tile from here.
template <class Launch>
void with_recurrent_tile(index_t key_dim, bool float4_state, Launch&& launch) {
  if (float4_state) {
    if (key_dim <= 32) return launch.template operator()<RecurrentTile<4, 8, 4>>();
    if (key_dim <= 64) return launch.template operator()<RecurrentTile<8, 8, 4>>();
    if (key_dim <= 128) return launch.template operator()<RecurrentTile<8, 16, 4>>();
    return launch.template operator()<RecurrentTile<16, 16, 4>>();
  }
  if (key_dim <= 32) return launch.template operator()<RecurrentTile<4, 8, 1>>();
  if (key_dim <= 64) return launch.template operator()<RecurrentTile<8, 8, 1>>();
  if (key_dim <= 128) return launch.template operator()<RecurrentTile<8, 16, 1>>();
  return launch.template operator()<RecurrentTile<16, 16, 1>>();
}

template <class Tile, class T>
void launch_recurrent_tile(const CudaBackend& backend, RecurrentParams<T> p, bool after_value_checks = false) {
  p.column_blocks = ceil_div(p.value_dim, Tile::columns);
  p.work_items = p.work_items * p.column_blocks;
  if (p.work_items == 0) return;
  const int warps_per_block = recurrent_warps_per_block(p.work_items);
  const index_t blocks = ceil_div(p.work_items, warps_per_block);
  launch_after_value_checks(after_value_checks, recurrent_kernel<Tile, T>, dim3(static_cast<unsigned>(blocks)),
                            dim3(static_cast<unsigned>(warps_per_block * 32)), backend.stream, p);
}

template <class T>
void launch_recurrent(const CudaBackend& backend, const RecurrentParams<T>& p, bool float4_state,
                      bool after_value_checks) {
  with_recurrent_tile(p.key_dim, float4_state,
                      [&]<class Tile>() { launch_recurrent_tile<Tile>(backend, p, after_value_checks); });
}

/// The recurrent kernel's parameters for validated arguments (work_items counts (sequence, head) pairs until a tile
/// multiplies in its column slabs). States are [slots, H, K, V]; `state_indices` (optional, [N]) maps sequences to
/// slots.
template <DeltaProductModel Model, class T>
RecurrentParams<T> recurrent_params(const Model& model, const CudaProblem& cp, const DeltaInputs<T, float>& in,
                                    const View<T, 4>& o, const View<const float, 4>& initial_state,
                                    const View<float, 4>& final_state, const View<const std::int32_t, 1>& state_indices,
                                    index_t state_slots, const ValueCheckRecord* status) {
  const Problem& p = cp.sizes;
  RecurrentParams<T> params;
  params.q = device_view(in.q);
  params.k = device_view(in.k);
  params.v = device_view(in.v);
  params.beta = device_view(in.beta);
  if constexpr (Model::gating == Gating::scalar_decay) params.g = device_view(in.g);
  params.initial_state = device_view(initial_state);
  params.final_state = device_view(final_state);
  params.o = device_view(o);
  params.cu_seqlens = device_view(cp.cu_seqlens);
  params.state_indices = device_view(state_indices);
  params.tokens = p.tokens;
  params.heads = p.heads;
  params.key_dim = p.key_dim;
  params.value_dim = p.value_dim;
  params.state_slots = state_slots;
  params.work_items = p.sequences * p.heads;
  params.householder_steps = Model::householder_steps;
  params.key_norm = norm_code(model.options.key_normalization);
  params.query_norm = norm_code(model.options.query_normalization);
  params.eps = static_cast<float>(model.options.normalization_eps);
  params.scale = static_cast<float>(p.scale);
  params.status = status;
  return params;
}

/// The recurrent kernel on validated arguments, after the value checks when the options ask for them.
template <DeltaProductModel Model, class T>
void run_recurrent(const CudaBackend& backend, const Model& model, const CudaProblem& cp,
                   const DeltaInputs<T, float>& in, const View<T, 4>& o, const View<const float, 4>& initial_state,
                   const View<float, 4>& final_state, const View<const std::int32_t, 1>& state_indices,
                   index_t state_slots) {
  const Problem& p = cp.sizes;
  if (p.key_dim > recurrent_max_key_dim)
    argument_error("q",
                   "key dimension K <= " + std::to_string(recurrent_max_key_dim) +
                       " for the CUDA recurrent kernel (a lane keeps K/16 state rows in registers)",
                   "K = " + std::to_string(p.key_dim));
  ValueCheckRecord* status = status_record(backend, model.options.validate_ranges);
  const bool checked = launch_value_checks(backend, status, model, in, cp, state_indices, state_slots);
  const bool float4_state = state_allows_float4(initial_state, p.value_dim) &&
                            state_allows_float4(View<const float, 4>(final_state), p.value_dim);
  launch_recurrent(backend,
                   recurrent_params(model, cp, in, o, initial_state, final_state, state_indices, state_slots, status),
                   float4_state, checked);
}

template <DeltaProductModel Model, class T>
constexpr void check_cuda_call() {
  check_cuda_model<Model>();
  static_assert(CudaElement<T>,
                "deltaproduct: CUDA token data (q, k, v, beta, g, o) must be __nv_bfloat16, __half or float");
}

/// The recurrent form of forward(): token by token, each (sequence, head) state in registers for the whole call.
/// Cost grows with T without parallelism over tokens; for long sequences use the chunked form (forward()).
template <DeltaProductModel Model, class T>
void cuda_recurrent_forward(const CudaBackend& backend, const Model& model, const DeltaInputs<T, float>& in,
                            const ForwardOutputs<T, float>& out) {
  check_cuda_call<Model, T>();
  const CudaProblem cp = check_forward_cuda(model, in, out);
  run_recurrent(backend, model, cp, in, out.o, in.initial_state, out.final_state, {}, cp.sizes.sequences);
}

}  // namespace detail

/// Advances `state` [B, H, K, V] (device memory, fp32) by one token per sequence in place and writes o [B, H, V]:
/// streaming inference, the same call as the CPU backend's step(). Asynchronous on backend.stream.
template <DeltaProductModel Model, CudaElement T>
void step(const CudaBackend& backend, const Model& model, const DeltaStepInputs<T>& in, const View<float, 4>& state,
          const View<T, 3>& o) {
  detail::check_cuda_call<Model, T>();
  const DeltaInputs<T, float> forward_in = detail::step_as_forward(in, state);
  const ForwardOutputs<T, float> forward_out = detail::step_outputs(o, state);
  const CudaProblem cp = detail::check_forward_cuda(model, forward_in, forward_out);
  detail::run_recurrent(backend, model, cp, forward_in, forward_out.o, forward_in.initial_state, state, {},
                        cp.sizes.sequences);
}

/// Serving: advances the states of a pool [P, H, K, V] (device memory, fp32) in place, sequence b using slot
/// state_indices[b] ([B], int32, device memory), and writes o [B, H, V]. A negative index marks padding: that
/// sequence is skipped and its o left untouched. Slots must be distinct (two sequences on one slot race);
/// indices >= P are reported by the value checks and skipped.
template <DeltaProductModel Model, CudaElement T>
void step(const CudaBackend& backend, const Model& model, const DeltaStepInputs<T>& in,
          const View<float, 4>& state_pool, const View<const std::int32_t, 1>& state_indices, const View<T, 3>& o) {
  detail::check_cuda_call<Model, T>();
  detail::check_present(in.q, "q", "[B, H, K]");
  detail::check_present(in.k, "k", "[B, n_h, H, K]");
  detail::check_present(in.v, "v", "[B, n_h, H, V]");
  detail::check_present(in.beta, "beta", "[B, n_h, H]");
  detail::check_present(o, "o", "[B, H, V]");
  DeltaInputs<T, float> forward_in{.q = detail::insert_unit_token_dim(in.q), .k = in.k, .v = in.v, .beta = in.beta};
  if (!in.g.absent()) forward_in.g = detail::insert_unit_token_dim(in.g);
  const ForwardOutputs<T, float> forward_out{.o = detail::insert_unit_token_dim(o)};
  const CudaProblem cp = detail::check_forward_cuda(model, forward_in, forward_out);
  const Problem& p = cp.sizes;

  detail::check_present(state_pool, "state_pool", "[P, H, K, V]");
  if (state_pool.extent(1) != p.heads || state_pool.extent(2) != p.key_dim || state_pool.extent(3) != p.value_dim)
    detail::argument_error("state_pool",
                           "shape [P, H, K, V] = [P, " + std::to_string(p.heads) + ", " + std::to_string(p.key_dim) +
                               ", " + std::to_string(p.value_dim) + "]",
                           detail::dims_text(state_pool.extents().data(), 4));
  detail::check_shape(state_indices, "state_indices", "[B]", {p.batch});
  detail::check_aligned(state_pool, "state_pool");
  detail::check_aligned(state_indices, "state_indices");
  detail::run_recurrent(backend, model, cp, forward_in, forward_out.o, View<const float, 4>(state_pool), state_pool,
                        state_indices, state_pool.extent(0));
}

}  // namespace deltaproduct
