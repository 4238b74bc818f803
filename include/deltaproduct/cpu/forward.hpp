// The CPU backend's sequential forward pass and streaming step: the recurrence of core/recurrence.hpp run token by
// token, one (sequence, head) pair per work item, spread over the cores. The state lives in a K x V buffer of the
// model's scalar type for the whole sequence; inputs are converted to that scalar as they are read.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "deltaproduct/core/arguments.hpp"
#include "deltaproduct/core/backend.hpp"
#include "deltaproduct/core/config.hpp"
#include "deltaproduct/core/contract.hpp"
#include "deltaproduct/core/recurrence.hpp"
#include "deltaproduct/core/step.hpp"
#include "deltaproduct/cpu/parallel.hpp"

namespace deltaproduct {
namespace detail {

/// Reads x(fixed..., 0..n-1) into a row vector of the state scalar.
template <class Scalar, class T>
void load_row(const T* first, index_t stride, RowVector<Scalar>& dst) {
  for (Eigen::Index i = 0; i < dst.size(); ++i) dst(i) = convert_scalar<Scalar>(first[i * stride]);
}

template <class T, class Scalar>
void store_row(const RowVector<Scalar>& src, T* first, index_t stride) {
  for (Eigen::Index i = 0; i < src.size(); ++i) first[i * stride] = convert_scalar<T>(src(i));
}

template <class Scalar, class S>
void load_state(const View<const S, 4>& initial, index_t n, index_t h, StateMatrix<Scalar>& state) {
  if (initial.absent()) {
    state.setConstant(Scalar(0.0));
    return;
  }
  for (Eigen::Index i = 0; i < state.rows(); ++i)
    for (Eigen::Index j = 0; j < state.cols(); ++j) state(i, j) = convert_scalar<Scalar>(initial(n, h, i, j));
}

template <class Scalar, class S>
void store_state(const StateMatrix<Scalar>& state, const View<S, 4>& final_state, index_t n, index_t h) {
  if (final_state.absent()) return;
  for (Eigen::Index i = 0; i < state.rows(); ++i)
    for (Eigen::Index j = 0; j < state.cols(); ++j) final_state(n, h, i, j) = convert_scalar<S>(state(i, j));
}

/// Per-thread scratch: the state and the token vectors, allocated once per call.
template <class Scalar>
struct CpuScratch {
  StateMatrix<Scalar> state;
  TokenWorkspace<Scalar> token;

  CpuScratch(index_t key_dim, index_t value_dim) : state(key_dim, value_dim), token(key_dim, value_dim) {}
};

/// Threads worth starting: below this many state-element updates a call runs on the calling thread, since starting
/// threads would cost more than the work.
inline int cpu_threads_for(const CpuBackend& backend, const Problem& p, index_t items) {
  const double updates = static_cast<double>(p.batch) * static_cast<double>(p.tokens) *
                         static_cast<double>(p.heads) * p.householder_steps * static_cast<double>(p.key_dim) *
                         static_cast<double>(p.value_dim);
  constexpr double min_updates_for_threads = 1 << 17;
  if (updates < min_updates_for_threads) return 1;
  return static_cast<int>(std::min<index_t>(backend.resolved_threads(), items));
}

/// Runs body(scratch, n, h) for every (sequence, head) pair on the backend's threads.
template <class Scalar, class Body>
void for_each_sequence_head(const CpuBackend& backend, const Problem& p, Body&& body) {
  const index_t items = p.sequences * p.heads;
  const int workers = cpu_threads_for(backend, p, items);
  std::vector<CpuScratch<Scalar>> scratch;
  scratch.reserve(static_cast<std::size_t>(std::max(workers, 1)));
  for (int w = 0; w < std::max(workers, 1); ++w) scratch.emplace_back(p.key_dim, p.value_dim);
  parallel_for(items, workers, [&](index_t item, int worker) {
    body(scratch[static_cast<std::size_t>(worker)], item / p.heads, item % p.heads);
  });
}

/// o_t = scale * S^T normalize(q_t), written to o(row, t, h, :).
template <class Scalar, class T>
void read_out(const Options& options, const Problem& p, const View<const T, 4>& q, const View<T, 4>& o,
              index_t row, index_t t, index_t h, CpuScratch<Scalar>& s) {
  auto& w = s.token;
  load_row(&q(row, t, h, 0), q.stride(3), w.query);
  normalize(w.query, options.query_normalization, options.normalization_eps);
  w.query *= static_cast<Scalar>(p.scale);
  transposed_product(s.state, w.query, w.output);
  store_row(w.output, &o(row, t, h, 0), o.stride(3));
}

}  // namespace detail

/// DeltaNet / DeltaProduct forward pass on the CPU: o and (optionally) the final state from q, k, v, beta,
/// g (gated models) and an optional initial state. See DeltaInputs for the layouts.
template <DeltaProductModel Model, class T, class S>
void forward(const CpuBackend& backend, const Model& model, const DeltaInputs<T, S>& in,
             const ForwardOutputs<T, S>& out) {
  using Scalar = typename Model::scalar_type;
  constexpr int n_h = Model::householder_steps;
  const Problem p = check_forward(model, in, out);
  check_values(model, p, in);
  const Options& options = model.options;

  detail::for_each_sequence_head<Scalar>(backend, p, [&](detail::CpuScratch<Scalar>& s, index_t n, index_t h) {
    const auto seq = p.sequence(n);
    auto& w = s.token;
    detail::load_state(in.initial_state, n, h, s.state);
    for (index_t t = seq.begin; t < seq.end; ++t) {
      if constexpr (Model::gating == Gating::scalar_decay)
        apply_decay(s.state, convert_scalar<Scalar>(in.g(seq.row, t, h)));
      for (int j = 0; j < n_h; ++j) {
        const index_t r = t * n_h + j;
        detail::load_row(&in.k(seq.row, r, h, 0), in.k.stride(3), w.key);
        normalize(w.key, options.key_normalization, options.normalization_eps);
        detail::load_row(&in.v(seq.row, r, h, 0), in.v.stride(3), w.value);
        householder_step(s.state, w.key, w.value, convert_scalar<Scalar>(in.beta(seq.row, r, h)), w.work);
      }
      detail::read_out(options, p, in.q, out.o, seq.row, t, h, s);
    }
    detail::store_state(s.state, out.final_state, n, h);
  });
}

/// Diagonal LRNN forward pass on the CPU.
template <DiagonalModel Model, class T, class S>
void forward(const CpuBackend& backend, const Model& model, const DiagonalInputs<T, S>& in,
             const ForwardOutputs<T, S>& out) {
  using Scalar = typename Model::scalar_type;
  const Problem p = check_forward(model, in, out);
  check_values(model, p, in);
  const Options& options = model.options;

  detail::for_each_sequence_head<Scalar>(backend, p, [&](detail::CpuScratch<Scalar>& s, index_t n, index_t h) {
    const auto seq = p.sequence(n);
    auto& w = s.token;
    detail::load_state(in.initial_state, n, h, s.state);
    for (index_t t = seq.begin; t < seq.end; ++t) {
      detail::load_row(&in.a(seq.row, t, h, 0), in.a.stride(3), w.decay);
      detail::load_row(&in.k(seq.row, t, h, 0), in.k.stride(3), w.key);
      normalize(w.key, options.key_normalization, options.normalization_eps);
      detail::load_row(&in.v(seq.row, t, h, 0), in.v.stride(3), w.value);
      diagonal_step(s.state, w.decay, w.key, w.value);
      detail::read_out(options, p, in.q, out.o, seq.row, t, h, s);
    }
    detail::store_state(s.state, out.final_state, n, h);
  });
}

/// Advances `state` [B, H, K, V] by one token per sequence in place and writes o [B, H, V]: streaming inference.
template <DeltaProductModel Model, class T, class S>
void step(const CpuBackend& backend, const Model& model, const DeltaStepInputs<T>& in, const View<S, 4>& state,
          const View<T, 3>& o) {
  forward(backend, model, detail::step_as_forward(in, state), detail::step_outputs(o, state));
}

template <DiagonalModel Model, class T, class S>
void step(const CpuBackend& backend, const Model& model, const DiagonalStepInputs<T>& in, const View<S, 4>& state,
          const View<T, 3>& o) {
  forward(backend, model, detail::step_as_forward(in, state), detail::step_outputs(o, state));
}

}  // namespace deltaproduct
