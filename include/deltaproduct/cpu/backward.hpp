// The CPU backend's backward pass: gradients of a scalar loss L with respect to every input of forward(), given
// dL/do and dL/d(final state). There is no tape: the caller passes the forward's inputs again and the backward
// recomputes the states it needs (cpu/backward_sequential.hpp and cpu/backward_chunked.hpp say what each form
// keeps). Gradients are written, not accumulated; absent gradient views are not computed. The gradient views must
// not overlap the inputs. CpuBackend::algorithm chooses the form as for forward(): chunked for float and double
// when a sequence is longer than one chunk; the diagonal LRNN's backward is always sequential.
#pragma once

#include "deltaproduct/core/arguments.hpp"
#include "deltaproduct/core/backend.hpp"
#include "deltaproduct/core/config.hpp"
#include "deltaproduct/core/contract.hpp"
#include "deltaproduct/cpu/backward_chunked.hpp"
#include "deltaproduct/cpu/backward_sequential.hpp"
#include "deltaproduct/cpu/forward.hpp"

namespace deltaproduct {
namespace detail {

template <DeltaProductModel Model, class T, class S>
void backward_with_limits(const CpuBackend& backend, const Model& model, const DeltaInputs<T, S>& in,
                          const OutputGradients<T, S>& output_gradients, const DeltaGradients<T, S>& gradients,
                          const BackwardLimits& limits) {
  check_backend(backend);
  const Problem p = check_backward(model, in, output_gradients, gradients);
  check_values(model, p, in);
  if (use_chunked<typename Model::scalar_type>(backend, p))
    backward_chunked(backend, model, p, in, output_gradients, gradients, limits);
  else
    backward_sequential(backend, model, p, in, output_gradients, gradients, limits);
}

template <DiagonalModel Model, class T, class S>
void backward_with_limits(const CpuBackend& backend, const Model& model, const DiagonalInputs<T, S>& in,
                          const OutputGradients<T, S>& output_gradients, const DiagonalGradients<T, S>& gradients,
                          const BackwardLimits& limits) {
  check_backend(backend);
  const Problem p = check_backward(model, in, output_gradients, gradients);
  check_values(model, p, in);
  backward_sequential(backend, model, p, in, output_gradients, gradients, limits);
}

}  // namespace detail

/// DeltaNet / DeltaProduct backward pass on the CPU: dL/dq, dL/dk, dL/dv, dL/dbeta, dL/dg (gated models) and
/// dL/d(initial state), for the gradient views present, from the forward's inputs and dL/do, dL/d(final state).
/// Gradients of q and k are with respect to the raw inputs (through the normalisation options and the scale).
template <DeltaProductModel Model, class T, class S>
void backward(const CpuBackend& backend, const Model& model, const DeltaInputs<T, S>& in,
              const OutputGradients<T, S>& output_gradients, const DeltaGradients<T, S>& gradients) {
  detail::backward_with_limits(backend, model, in, output_gradients, gradients, detail::BackwardLimits{});
}

/// Diagonal LRNN backward pass on the CPU: dL/dq, dL/dk, dL/dv, dL/da and dL/d(initial state).
template <DiagonalModel Model, class T, class S>
void backward(const CpuBackend& backend, const Model& model, const DiagonalInputs<T, S>& in,
              const OutputGradients<T, S>& output_gradients, const DiagonalGradients<T, S>& gradients) {
  detail::backward_with_limits(backend, model, in, output_gradients, gradients, detail::BackwardLimits{});
}

}  // namespace deltaproduct
