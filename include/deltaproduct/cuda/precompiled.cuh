// Kernels compiled once. The chunked kernels are most of the CUDA backend's compile time: every translation unit that
// calls forward() or backward() on 16-bit data otherwise compiles them for each (K, n_h, gating) its models reach.
// With DELTAPRODUCT_CUDA_PRECOMPILED defined, the launchers of the chunked forward and backward for bf16 and fp16,
// K = V in {64, 128}, n_h 1 to 4, gated or not, are declared extern (by chunked_forward.cuh and backward.cuh, with
// the macros below); the objects of deltaproduct/cuda/precompiled/*.cu define them. The CMake target
// deltaproduct::cuda_kernels compiles those sources and sets the macro for whoever links it; a project that does not
// use CMake compiles the same files with the macro defined. Other launches (n_h above 4 in the forward, the recurrent
// kernels) still compile where they are used. nvcc only; included by chunked_forward.cuh and backward.cuh.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

/// Calls X(T, KD, NH, Gated) for every chunked launcher deltaproduct::cuda_kernels holds for the element type T and
/// the width KD.
#define DELTAPRODUCT_CUDA_FOR_EACH_PRECOMPILED_CHUNKED_WIDTH(X, T, KD) \
  X(T, KD, 1, false) X(T, KD, 1, true) X(T, KD, 2, false) X(T, KD, 2, true) \
  X(T, KD, 3, false) X(T, KD, 3, true) X(T, KD, 4, false) X(T, KD, 4, true)
/// ... and for both widths.
#define DELTAPRODUCT_CUDA_FOR_EACH_PRECOMPILED_CHUNKED(X, T)    \
  DELTAPRODUCT_CUDA_FOR_EACH_PRECOMPILED_CHUNKED_WIDTH(X, T, 64) \
  DELTAPRODUCT_CUDA_FOR_EACH_PRECOMPILED_CHUNKED_WIDTH(X, T, 128)

/// The chunked forward's launcher (chunked_forward.cuh) and its Hopper check (which names the warp-specialised kernel),
/// declared (Kind = extern template) or defined (Kind = template) for one combination.
#define DELTAPRODUCT_CUDA_CHUNKED_FORWARD_INSTANCE(Kind, T, KD, NH, Gated)   \
  Kind bool takes_specialized_kernel<T, KD, NH, Gated>(const CudaBackend&); \
  Kind void launch_chunked<T, KD, NH, Gated>(const CudaBackend&, cuda_chunked::ChunkedParams<T>, index_t, index_t);
/// The chunked backward's launcher (backward.cuh) and its check for the wgmma chunk-gradient kernel, likewise.
#define DELTAPRODUCT_CUDA_CHUNKED_BACKWARD_INSTANCE(Kind, T, KD, NH, Gated)                                       \
  Kind bool takes_wgmma_gradient_kernel<T, KD, NH, Gated>(const CudaBackend&);                                    \
  Kind void launch_chunked_backward<T, KD, NH, Gated>(const CudaBackend&, cuda_chunked::ChunkedBackwardParams<T>, \
                                                      index_t, index_t, index_t);
/// One combination declared extern (in the headers, under DELTAPRODUCT_CUDA_PRECOMPILED) or defined (in
/// precompiled/*.cu); arguments of DELTAPRODUCT_CUDA_FOR_EACH_PRECOMPILED_CHUNKED.
#define DELTAPRODUCT_CUDA_EXTERN_FORWARD(T, KD, NH, Gated) \
  DELTAPRODUCT_CUDA_CHUNKED_FORWARD_INSTANCE(extern template, T, KD, NH, Gated)
#define DELTAPRODUCT_CUDA_DEFINE_FORWARD(T, KD, NH, Gated) \
  DELTAPRODUCT_CUDA_CHUNKED_FORWARD_INSTANCE(template, T, KD, NH, Gated)
#define DELTAPRODUCT_CUDA_EXTERN_BACKWARD(T, KD, NH, Gated) \
  DELTAPRODUCT_CUDA_CHUNKED_BACKWARD_INSTANCE(extern template, T, KD, NH, Gated)
#define DELTAPRODUCT_CUDA_DEFINE_BACKWARD(T, KD, NH, Gated) \
  DELTAPRODUCT_CUDA_CHUNKED_BACKWARD_INSTANCE(template, T, KD, NH, Gated)
