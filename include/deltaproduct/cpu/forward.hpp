// The CPU backend's forward pass and streaming step. forward() runs one of two algorithms (CpuBackend::algorithm):
//   sequential: the recurrence of core/recurrence.hpp token by token, exactly its arithmetic (the definition; the
//               simulated number formats and every bit-for-bit property rely on it);
//   chunked:    the chunked matrix form of cpu/chunked.hpp (Eigen GEMM), equal to it up to rounding;
//   automatic:  chunked when the model's scalar is float or double and some sequence spans more than one chunk.
// Both spread (sequence, head) pairs, and blocks of value columns when pairs are fewer than threads, over the cores
// (cpu/parallel.hpp). The state lives in a K x V buffer of the model's scalar type for the whole sequence; inputs are
// converted to that scalar as they are read. step() is always sequential.
#pragma once

#include <algorithm>
#include <string>
#include <type_traits>

#include "deltaproduct/core/arguments.hpp"
#include "deltaproduct/core/backend.hpp"
#include "deltaproduct/core/config.hpp"
#include "deltaproduct/core/contract.hpp"
#include "deltaproduct/core/error.hpp"
#include "deltaproduct/core/recurrence.hpp"
#include "deltaproduct/core/step.hpp"
#include "deltaproduct/cpu/chunked.hpp"
#include "deltaproduct/cpu/parallel.hpp"

namespace deltaproduct {
namespace detail {

inline void check_backend(const CpuBackend& backend) {
  if (backend.chunk_size < 1)
    argument_error("backend.chunk_size", "a chunk length >= 1 (tokens per chunk of the chunked form)",
                   std::to_string(backend.chunk_size));
  switch (backend.algorithm) {
    case CpuAlgorithm::automatic:
    case CpuAlgorithm::sequential:
    case CpuAlgorithm::chunked:
      return;
  }
  argument_error("backend.algorithm", "CpuAlgorithm::automatic, sequential or chunked",
                 std::to_string(static_cast<int>(backend.algorithm)));
}

/// Whether a checked call runs the chunked form.
template <class Scalar>
bool use_chunked(const CpuBackend& backend, const Problem& p) {
  switch (backend.algorithm) {
    case CpuAlgorithm::sequential:
      return false;
    case CpuAlgorithm::chunked:
      return true;
    case CpuAlgorithm::automatic:
      break;
  }
  constexpr bool native = std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>;
  return native && longest_sequence(p) > backend.chunk_size;
}

/// Token vectors of the value dimension sized to a block's width (reallocated only when the width changes).
template <class Scalar>
void fit_value_columns(TokenWorkspace<Scalar>& w, index_t width) {
  w.value.resize(width);
  w.work.resize(width);
  w.output.resize(width);
}

/// o_t = scale * S^T normalize(q_t), written to o(row, t, h, first_column..) for the state's columns.
template <class Scalar, class T>
void read_out(const Options& options, const Problem& p, const View<const T, 4>& q, const View<T, 4>& o, index_t row,
              index_t t, index_t h, const StateRef<Scalar>& state, TokenWorkspace<Scalar>& w,
              index_t first_column = 0) {
  load_row(&q(row, t, h, 0), q.stride(3), w.query);
  normalize(w.query, options.query_normalization, options.normalization_eps);
  w.query *= static_cast<Scalar>(p.scale);
  transposed_product<Scalar>(state, w.query, w.output);
  store_row(w.output, &o(row, t, h, first_column), o.stride(3));
}

/// The token loop of a DeltaNet / DeltaProduct (the call is already checked).
template <DeltaProductModel Model, class T, class S>
void forward_sequential(const CpuBackend& backend, const Model& model, const Problem& p, const DeltaInputs<T, S>& in,
                        const ForwardOutputs<T, S>& out) {
  using Scalar = typename Model::scalar_type;
  constexpr int n_h = Model::householder_steps;
  const Options& options = model.options;
  for_each_work_item<Scalar>(
      backend, p, in.initial_state, out.final_state,
      [&](index_t width) { return TokenWorkspace<Scalar>(p.key_dim, width); },
      [&](StateRef<Scalar> state, TokenWorkspace<Scalar>& w, const WorkItem& item) {
        const auto seq = p.sequence(item.sequence);
        const index_t h = item.head, c = item.columns.begin;
        fit_value_columns(w, item.columns.size());
        for (index_t t = seq.begin; t < seq.end; ++t) {
          if constexpr (Model::gating == Gating::scalar_decay)
            apply_decay<Scalar>(state, convert_scalar<Scalar>(in.g(seq.row, t, h)));
          for (int j = 0; j < n_h; ++j) {
            const index_t r = t * n_h + j;
            load_row(&in.k(seq.row, r, h, 0), in.k.stride(3), w.key);
            normalize(w.key, options.key_normalization, options.normalization_eps);
            load_row(&in.v(seq.row, r, h, c), in.v.stride(3), w.value);
            householder_step<Scalar>(state, w.key, w.value, convert_scalar<Scalar>(in.beta(seq.row, r, h)), w.work);
          }
          read_out<Scalar>(options, p, in.q, out.o, seq.row, t, h, state, w, c);
        }
      });
}

/// The token loop of a diagonal LRNN (the call is already checked).
template <DiagonalModel Model, class T, class S>
void forward_sequential(const CpuBackend& backend, const Model& model, const Problem& p, const DiagonalInputs<T, S>& in,
                        const ForwardOutputs<T, S>& out) {
  using Scalar = typename Model::scalar_type;
  const Options& options = model.options;
  for_each_work_item<Scalar>(
      backend, p, in.initial_state, out.final_state,
      [&](index_t width) { return TokenWorkspace<Scalar>(p.key_dim, width); },
      [&](StateRef<Scalar> state, TokenWorkspace<Scalar>& w, const WorkItem& item) {
        const auto seq = p.sequence(item.sequence);
        const index_t h = item.head, c = item.columns.begin;
        fit_value_columns(w, item.columns.size());
        for (index_t t = seq.begin; t < seq.end; ++t) {
          load_row(&in.a(seq.row, t, h, 0), in.a.stride(3), w.decay);
          load_row(&in.k(seq.row, t, h, 0), in.k.stride(3), w.key);
          normalize(w.key, options.key_normalization, options.normalization_eps);
          load_row(&in.v(seq.row, t, h, c), in.v.stride(3), w.value);
          diagonal_step<Scalar>(state, w.decay, w.key, w.value);
          read_out<Scalar>(options, p, in.q, out.o, seq.row, t, h, state, w, c);
        }
      });
}

/// A copy of the backend that runs the token loop (for step()).
inline CpuBackend sequential_backend(const CpuBackend& backend) {
  CpuBackend sequential = backend;
  sequential.algorithm = CpuAlgorithm::sequential;
  return sequential;
}

}  // namespace detail

/// DeltaNet / DeltaProduct forward pass on the CPU: o and (optionally) the final state from q, k, v, beta,
/// g (gated models) and an optional initial state. See DeltaInputs for the layouts and CpuBackend for the algorithm.
template <DeltaProductModel Model, class T, class S>
void forward(const CpuBackend& backend, const Model& model, const DeltaInputs<T, S>& in,
             const ForwardOutputs<T, S>& out) {
  detail::check_backend(backend);
  const Problem p = check_forward(model, in, out);
  check_values(model, p, in);
  if (detail::use_chunked<typename Model::scalar_type>(backend, p))
    detail::forward_chunked(backend, model, p, in, out);
  else
    detail::forward_sequential(backend, model, p, in, out);
}

/// Diagonal LRNN forward pass on the CPU.
template <DiagonalModel Model, class T, class S>
void forward(const CpuBackend& backend, const Model& model, const DiagonalInputs<T, S>& in,
             const ForwardOutputs<T, S>& out) {
  detail::check_backend(backend);
  const Problem p = check_forward(model, in, out);
  check_values(model, p, in);
  if (detail::use_chunked<typename Model::scalar_type>(backend, p))
    detail::forward_chunked(backend, model, p, in, out);
  else
    detail::forward_sequential(backend, model, p, in, out);
}

/// Advances `state` [B, H, K, V] by one token per sequence in place and writes o [B, H, V]: streaming inference.
/// Always the token loop, whatever the backend's algorithm.
template <DeltaProductModel Model, class T, class S>
void step(const CpuBackend& backend, const Model& model, const DeltaStepInputs<T>& in, const View<S, 4>& state,
          const View<T, 3>& o) {
  forward(detail::sequential_backend(backend), model, detail::step_as_forward(in, state),
          detail::step_outputs(o, state));
}

template <DiagonalModel Model, class T, class S>
void step(const CpuBackend& backend, const Model& model, const DiagonalStepInputs<T>& in, const View<S, 4>& state,
          const View<T, 3>& o) {
  forward(detail::sequential_backend(backend), model, detail::step_as_forward(in, state),
          detail::step_outputs(o, state));
}

}  // namespace deltaproduct
