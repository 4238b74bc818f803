// The arguments of forward() and step(), laid out as flash-linear-attention lays them out so tensors move between the
// two without copies. Token data has element type T (float, double, ...); states have element type S (fp32 on GPUs).
#pragma once

#include <cstdint>

#include "deltaproduct/core/view.hpp"

namespace deltaproduct {

/// Inputs of a DeltaNet / DeltaProduct forward pass. Keys, values and betas of token t sit at rows t*n_h + j.
template <class T, class S = T>
struct DeltaInputs {
  View<const T, 4> q;                          ///< [B, T, H, K]
  View<const T, 4> k;                          ///< [B, T*n_h, H, K]
  View<const T, 4> v;                          ///< [B, T*n_h, H, V]
  View<const T, 3> beta;                       ///< [B, T*n_h, H]
  View<const T, 3> g = {};                     ///< [B, T, H], log-decay <= 0; gated models only
  View<const S, 4> initial_state = {};         ///< [N, H, K, V]; absent means zero
  View<const std::int64_t, 1> cu_seqlens = {};  ///< [N + 1] sequence offsets into T (then B = 1); absent: N = B
};

/// Inputs of a diagonal LRNN forward pass.
template <class T, class S = T>
struct DiagonalInputs {
  View<const T, 4> q;                          ///< [B, T, H, K]
  View<const T, 4> k;                          ///< [B, T, H, K]
  View<const T, 4> v;                          ///< [B, T, H, V]
  View<const T, 4> a;                          ///< [B, T, H, K] decay per key channel (stride 0 broadcasts)
  View<const S, 4> initial_state = {};         ///< [N, H, K, V]
  View<const std::int64_t, 1> cu_seqlens = {};  ///< [N + 1]
};

/// Outputs of a forward pass.
template <class T, class S = T>
struct ForwardOutputs {
  View<T, 4> o;                   ///< [B, T, H, V]
  View<S, 4> final_state = {};    ///< [N, H, K, V]; absent means not wanted (may alias initial_state)
};

/// Gradients of a scalar loss L with respect to a forward pass's outputs: what backward() is given.
template <class T, class S = T>
struct OutputGradients {
  View<const T, 4> o;                   ///< [B, T, H, V] dL/do
  View<const S, 4> final_state = {};    ///< [N, H, K, V] dL/d(final state); absent means zero
};

/// Gradients of L with respect to a DeltaNet / DeltaProduct's inputs, in the inputs' layouts: what backward()
/// writes. An absent view is not computed. Gradients of k and q are with respect to the raw (unnormalised) inputs.
template <class T, class S = T>
struct DeltaGradients {
  View<T, 4> q = {};              ///< [B, T, H, K]
  View<T, 4> k = {};              ///< [B, T*n_h, H, K]
  View<T, 4> v = {};              ///< [B, T*n_h, H, V]
  View<T, 3> beta = {};           ///< [B, T*n_h, H]
  View<T, 3> g = {};              ///< [B, T, H]; gated models only
  View<S, 4> initial_state = {};  ///< [N, H, K, V]
};

/// Gradients of L with respect to a diagonal LRNN's inputs.
template <class T, class S = T>
struct DiagonalGradients {
  View<T, 4> q = {};              ///< [B, T, H, K]
  View<T, 4> k = {};              ///< [B, T, H, K]
  View<T, 4> v = {};              ///< [B, T, H, V]
  View<T, 4> a = {};              ///< [B, T, H, K]
  View<S, 4> initial_state = {};  ///< [N, H, K, V]
};

/// Inputs of one streaming step of a DeltaNet / DeltaProduct (one token per sequence).
template <class T>
struct DeltaStepInputs {
  View<const T, 3> q;       ///< [B, H, K]
  View<const T, 4> k;       ///< [B, n_h, H, K]
  View<const T, 4> v;       ///< [B, n_h, H, V]
  View<const T, 3> beta;    ///< [B, n_h, H]
  View<const T, 2> g = {};  ///< [B, H], gated models only
};

/// Inputs of one streaming step of a diagonal LRNN.
template <class T>
struct DiagonalStepInputs {
  View<const T, 3> q;  ///< [B, H, K]
  View<const T, 3> k;  ///< [B, H, K]
  View<const T, 3> v;  ///< [B, H, V]
  View<const T, 3> a;  ///< [B, H, K]
};

}  // namespace deltaproduct
