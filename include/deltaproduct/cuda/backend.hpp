// The CUDA backend value: step(CudaBackend{stream, workspace, bytes}, model, inputs, state, o) and forward(...) run the
// same contract as the CPU backend on device pointers, asynchronously on `stream`. Host code only.
//
// How the CUDA backend is put together (include/deltaproduct/cuda/):
//   backend.hpp        this value: stream, caller-owned workspace, algorithm choice
//   error.hpp          CudaError and DELTAPRODUCT_CUDA_CHECK (every runtime call and launch is checked)
//   validate.hpp       host-side checks: the shared contract (check_forward) with cu_seqlens left in device memory,
//                      alignment of every pointer, the workspace; the value-check status record and check_status()
//   device_views.cuh   DeviceView (pointer + extents + strides, what a kernel receives instead of a View), the
//                      element types bf16 / fp16 / fp32, conversions to and from fp32, 4-wide vector loads
//   value_checks.cuh   the kernel that checks beta, g, cu_seqlens and state indices on the device (no host sync)
//   recurrent_kernel.cuh, decode.cuh
//                      the recurrent (token-by-token) kernel and its host entry points: step() for decode, the
//                      state-pool step() for serving, and detail::cuda_recurrent_forward() for short sequences
//   chunked_forward.cuh the chunked (tensor-core) forward for long sequences; it defines forward() and may call
//                      detail::cuda_recurrent_forward() (CudaAlgorithm::recurrent, or short sequences)
//   chunked_kernel.cuh, chunked_common.cuh
//                      the tensor-core kernel and the PTX wrappers it uses (mma.sync, ldmatrix, cp.async, wgmma)
//   chunked_specialized_kernel.cuh
//                      the same kernel with a producer warpgroup ahead of the state chain (sm_90a, opt-in)
//   sequence_split.cuh splitting long sequences across CTAs: the plan, the scratch, the fix-up kernel
//   backward.cuh, recurrent_backward_kernel.cuh
//                      backward(): gradients of every input in three recurrent sweeps (no stored states), and
//                      backward_workspace_bytes()
//   cuda.cuh           all of the above in one include
//
// Conventions every CUDA entry point follows:
//   - Views hold device memory. Token data q, k, v, beta, g and o have element type T = __nv_bfloat16, __half or
//     float; states are float. The model's scalar is float (computation in fp32).
//   - cu_seqlens is a view of DEVICE memory (as a PyTorch cuda tensor is): the host checks its shape only, never its
//     values, so no call synchronises. Its values (0 first, non-decreasing, T last) are checked on the device with
//     beta and g; kernels clamp offsets, so bad offsets never cause an out-of-bounds access.
//   - Value checks (options.validate_ranges, on by default) run as a small kernel before the main one and record the
//     first violation in the first cuda_status_bytes of the workspace; the main kernel then writes nothing. The
//     caller sees the error (the same ArgumentError text as the CPU backend) when it calls check_status(backend),
//     which synchronises the stream: the one documented synchronisation. A recorded violation is sticky: every later
//     call on that workspace writes nothing until check_status() reports and clears it. The workspace must start
//     zeroed: call reset_status(backend) once after allocating it.
//   - Algorithms that need scratch use the workspace after the status record (detail::algorithm_scratch()).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace deltaproduct {

/// How forward() evaluates a sequence on the GPU.
enum class CudaAlgorithm {
  automatic,  ///< chunked for long sequences, recurrent for short ones
  recurrent,  ///< token by token, the state in registers (decode and short sequences)
  chunked,    ///< chunks in WY / UT form on tensor cores
};

/// The CUDA backend: which stream to run on and scratch memory the caller owns (the backend never allocates).
/// workspace_size(...) of each algorithm says how many bytes a call needs; 0 means none.
struct CudaBackend {
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;        ///< device memory, 256-byte aligned, zeroed once (reset_status)
  std::size_t workspace_bytes = 0;  ///< size of `workspace`
  CudaAlgorithm algorithm = CudaAlgorithm::automatic;
  /// Chunked forward and backward: cut every sequence into this many runs of chunks, computed on separate
  /// multiprocessors and joined by a fix-up (for when B * H cannot fill the GPU). 0: chosen from the shape and the
  /// workspace (the same plan for forward() and backward(); a workspace too small for its scratch splits less). 1:
  /// never.
  int sequence_splits = 0;
  /// Training steps: forward() also keeps in the workspace what the chunked backward needs (each chunk's start
  /// state and solved values), and backward() reads them instead of running the forward kernel again. Set it on
  /// both calls of a step, with the same workspace and inputs left unchanged in between; it applies when both calls
  /// take the chunked form (chunked_forward_applies(), chunked_backward_applies()). forward_workspace_bytes() then
  /// counts the kept states (and the split scratch after them when sequence_splits asks for a count).
  bool keep_forward_states = false;
  /// Chunked forward on Hopper (an sm_90a build): a producer warpgroup copies each chunk (TMA) and computes what does
  /// not depend on the state (normalisers, gates, Gram blocks, diagonal inverses) while the other warps run the chain
  /// on the state (chunked_specialized_kernel.cuh); 1.3-1.7x faster than the one-role kernel, the same algebra and
  /// precision. Ignored on other GPUs and builds; false runs the one-role kernel.
  bool warp_specialized_forward = true;
  /// Chunked backward: its state pass, or a forward() that keeps its states, also keeps each chunk's preamble (the
  /// normalisers, gates, triangular factors and readout the chain on the state reads: 22,272 bytes per chunk and
  /// head at n_h = 1, 17,664 at n_h = 2 or 3, 15,360 at n_h = 4), and the reverse scan loads it instead of rebuilding
  /// it. Set it like keep_forward_states, on both calls of a step. It applies where the reverse scan's shared memory
  /// takes two preambles more (Hopper), and runs the one-role reverse scan there: off by default, as the
  /// warp-specialised scan (warp_specialized_backward) rebuilds the preambles off its chain and is faster.
  bool keep_preambles = false;
  /// Chunked backward at V = 128: its reverse scan (the pass over dL/dS, sequential in the chunks) runs each
  /// sequence, or each run of one when sequences are split, on this many CTAs, each carrying V / n of the value rows
  /// of dL/dS^T (which evolve independently): 1, or 2 (64 rows each). 2 doubles the CTAs of that pass when
  /// B * H * sequence_splits leaves multiprocessors idle, at the price of each CTA loading (keep_preambles) or
  /// rebuilding every chunk's preamble. The results are the same either way; the recurrent backward ignores it. 1 by
  /// default until it has been measured on a GPU.
  int backward_value_splits = 1;
  /// Chunked backward on Hopper (an sm_90a build): the reverse scan runs warp-specialised as the forward does, a
  /// producer warpgroup copying each chunk (TMA) and building its normalisers, gates, triangular factors and readout
  /// one chunk ahead of the warps that run the chain on dL/dS (chunked_backward_kernel.cuh,
  /// SpecializedReverseScanKernel). It applies without kept preambles or value splits, split runs included; false
  /// runs the one-role scan (same algebra and precision).
  bool warp_specialized_backward = true;
  /// Chunked backward at K = V = 128 on Hopper (an sm_90a build): the chunk-gradient pass (the products that give dk
  /// and dq from the kept states, dL/dS and the chunk's inputs) runs its products as wgmmas of its two warpgroups,
  /// with S, dL/dS and the solved values copied into 128-byte-swizzled tiles, instead of mma.sync: 4-9% faster
  /// training steps on an H100 (README). The same algebra and the same rounding of every operand; the sums run in
  /// another order. Ignored elsewhere; false runs the mma.sync kernel.
  bool wgmma_chunk_gradients = true;
};

/// Workspace bytes the value-check status record takes at the start of the workspace (when options.validate_ranges).
inline constexpr std::size_t cuda_status_bytes = 256;

}  // namespace deltaproduct
