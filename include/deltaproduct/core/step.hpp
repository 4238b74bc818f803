// A streaming step is a forward pass over one token whose initial and final state are the same memory. These
// helpers express step arguments as forward arguments (inserting a unit token dimension, no copies), so every
// backend implements step() through its forward() and shares its contract.
#pragma once

#include "deltaproduct/core/arguments.hpp"
#include "deltaproduct/core/contract.hpp"
#include "deltaproduct/core/view.hpp"

namespace deltaproduct::detail {

/// [B, X...] viewed as [B, 1, X...]; the new unit dimension's stride never multiplies a non-zero index.
template <class T, std::size_t R>
View<T, R + 1> insert_unit_token_dim(const View<T, R>& view) {
  std::array<index_t, R + 1> extents{}, strides{};
  extents[0] = view.extent(0);
  strides[0] = view.stride(0);
  extents[1] = 1;
  strides[1] = 0;
  for (std::size_t d = 1; d < R; ++d) {
    extents[d + 1] = view.extent(d);
    strides[d + 1] = view.stride(d);
  }
  return View<T, R + 1>(view.data(), extents, strides);
}

template <class S>
void check_step_state(const View<S, 4>& state) {
  check_present(state, "state", "[B, H, K, V]");
}

template <class T, class S>
DeltaInputs<T, S> step_as_forward(const DeltaStepInputs<T>& in, const View<S, 4>& state) {
  check_present(in.q, "q", "[B, H, K]");
  check_present(in.k, "k", "[B, n_h, H, K]");
  check_present(in.v, "v", "[B, n_h, H, V]");
  check_present(in.beta, "beta", "[B, n_h, H]");
  check_step_state(state);
  DeltaInputs<T, S> forward_in{.q = insert_unit_token_dim(in.q), .k = in.k, .v = in.v, .beta = in.beta};
  if (!in.g.absent()) forward_in.g = insert_unit_token_dim(in.g);
  forward_in.initial_state = state;
  return forward_in;
}

template <class T, class S>
DiagonalInputs<T, S> step_as_forward(const DiagonalStepInputs<T>& in, const View<S, 4>& state) {
  check_present(in.q, "q", "[B, H, K]");
  check_present(in.k, "k", "[B, H, K]");
  check_present(in.v, "v", "[B, H, V]");
  check_present(in.a, "a", "[B, H, K]");
  check_step_state(state);
  return DiagonalInputs<T, S>{.q = insert_unit_token_dim(in.q),
                              .k = insert_unit_token_dim(in.k),
                              .v = insert_unit_token_dim(in.v),
                              .a = insert_unit_token_dim(in.a),
                              .initial_state = state};
}

template <class T, class S>
ForwardOutputs<T, S> step_outputs(const View<T, 3>& o, const View<S, 4>& state) {
  check_present(o, "o", "[B, H, V]");
  return ForwardOutputs<T, S>{.o = insert_unit_token_dim(o), .final_state = state};
}

}  // namespace deltaproduct::detail
