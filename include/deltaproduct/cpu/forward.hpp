// The CPU backend's sequential forward pass and streaming step: the recurrence of core/recurrence.hpp run token by
// token, one (sequence, head) pair per work item, spread over the cores. The state lives in a K x V buffer of the
// model's scalar type for the whole sequence; inputs are converted to that scalar as they are read.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>
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

/// Copies the (n, h) block of a [N, H, K, V] state into `state` (zero when absent), a row at a time.
template <class Scalar, class S>
void load_state(const View<const S, 4>& initial, index_t n, index_t h, StateArg<Scalar> state) {
  if (initial.absent()) {
    state.setConstant(Scalar(0.0));
    return;
  }
  for (Eigen::Index i = 0; i < state.rows(); ++i) {
    const S* row = &initial(n, h, i, 0);
    for (Eigen::Index j = 0; j < state.cols(); ++j) state(i, j) = convert_scalar<Scalar>(row[j * initial.stride(3)]);
  }
}

template <class Scalar, class S>
void store_state(const StateArg<Scalar>& state, const View<S, 4>& final_state, index_t n, index_t h) {
  if (final_state.absent()) return;
  for (Eigen::Index i = 0; i < state.rows(); ++i) {
    S* row = &final_state(n, h, i, 0);
    for (Eigen::Index j = 0; j < state.cols(); ++j) row[j * final_state.stride(3)] = convert_scalar<S>(state(i, j));
  }
}

/// Per-thread scratch: token vectors, and a state buffer used only when the caller's state memory cannot be
/// worked on directly. Allocated once per call, never per token.
template <class Scalar>
struct CpuScratch {
  StateMatrix<Scalar> state;
  TokenWorkspace<Scalar> token;

  CpuScratch(index_t key_dim, index_t value_dim) : token(key_dim, value_dim) {}
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

template <class S, std::size_t R>
bool same_memory(const View<const S, R>& a, const View<S, R>& b) {
  return a.data() == b.data() && a.extents() == b.extents() && a.strides() == b.strides();
}

/// Runs body(state, workspace, n, h) for every (sequence, head) pair on the backend's threads. The state starts as
/// the initial state (or zero) and is stored as the final state afterwards. When the final state holds the model's
/// scalar with contiguous rows, the recurrence works directly in the caller's memory (in place for step()), with
/// no copy in or out; otherwise it works in a per-thread buffer.
template <class Scalar, class S, class Body>
void for_each_sequence_head(const CpuBackend& backend, const Problem& p, const View<const S, 4>& initial_state,
                            const View<S, 4>& final_state, Body&& body) {
  const index_t items = p.sequences * p.heads;
  const int workers = std::max(cpu_threads_for(backend, p, items), 1);
  std::vector<CpuScratch<Scalar>> scratch;
  scratch.reserve(static_cast<std::size_t>(workers));
  for (int w = 0; w < workers; ++w) scratch.emplace_back(p.key_dim, p.value_dim);

  bool direct = false;
  if constexpr (std::is_same_v<Scalar, S>)
    direct = !final_state.absent() && final_state.stride(3) == 1 && final_state.stride(2) >= p.value_dim;
  const bool in_place = direct && same_memory(initial_state, final_state);

  parallel_for(items, workers, [&](index_t item, int worker) {
    CpuScratch<Scalar>& s = scratch[static_cast<std::size_t>(worker)];
    const index_t n = item / p.heads, h = item % p.heads;
    if constexpr (std::is_same_v<Scalar, S>) {
      if (direct) {
        Eigen::Map<StateMatrix<Scalar>, 0, Eigen::OuterStride<>> state(&final_state(n, h, 0, 0), p.key_dim,
                                                                         p.value_dim,
                                                                         Eigen::OuterStride<>(final_state.stride(2)));
        if (!in_place) load_state<Scalar>(initial_state, n, h, state);
        body(StateRef<Scalar>(state), s.token, n, h);
        return;
      }
    }
    s.state.resize(p.key_dim, p.value_dim);
    load_state<Scalar>(initial_state, n, h, s.state);
    body(StateRef<Scalar>(s.state), s.token, n, h);
    store_state<Scalar>(s.state, final_state, n, h);
  });
}

/// o_t = scale * S^T normalize(q_t), written to o(row, t, h, :).
template <class Scalar, class T>
void read_out(const Options& options, const Problem& p, const View<const T, 4>& q, const View<T, 4>& o, index_t row,
              index_t t, index_t h, const StateRef<Scalar>& state, TokenWorkspace<Scalar>& w) {
  load_row(&q(row, t, h, 0), q.stride(3), w.query);
  normalize(w.query, options.query_normalization, options.normalization_eps);
  w.query *= static_cast<Scalar>(p.scale);
  transposed_product<Scalar>(state, w.query, w.output);
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

  detail::for_each_sequence_head<Scalar>(backend, p, in.initial_state, out.final_state,
                                         [&](StateRef<Scalar> state, TokenWorkspace<Scalar>& w, index_t n, index_t h) {
    const auto seq = p.sequence(n);
    for (index_t t = seq.begin; t < seq.end; ++t) {
      if constexpr (Model::gating == Gating::scalar_decay)
        apply_decay<Scalar>(state, convert_scalar<Scalar>(in.g(seq.row, t, h)));
      for (int j = 0; j < n_h; ++j) {
        const index_t r = t * n_h + j;
        detail::load_row(&in.k(seq.row, r, h, 0), in.k.stride(3), w.key);
        normalize(w.key, options.key_normalization, options.normalization_eps);
        detail::load_row(&in.v(seq.row, r, h, 0), in.v.stride(3), w.value);
        householder_step<Scalar>(state, w.key, w.value, convert_scalar<Scalar>(in.beta(seq.row, r, h)), w.work);
      }
      detail::read_out<Scalar>(options, p, in.q, out.o, seq.row, t, h, state, w);
    }
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

  detail::for_each_sequence_head<Scalar>(backend, p, in.initial_state, out.final_state,
                                         [&](StateRef<Scalar> state, TokenWorkspace<Scalar>& w, index_t n, index_t h) {
    const auto seq = p.sequence(n);
    for (index_t t = seq.begin; t < seq.end; ++t) {
      detail::load_row(&in.a(seq.row, t, h, 0), in.a.stride(3), w.decay);
      detail::load_row(&in.k(seq.row, t, h, 0), in.k.stride(3), w.key);
      normalize(w.key, options.key_normalization, options.normalization_eps);
      detail::load_row(&in.v(seq.row, t, h, 0), in.v.stride(3), w.value);
      diagonal_step<Scalar>(state, w.decay, w.key, w.value);
      detail::read_out<Scalar>(options, p, in.q, out.o, seq.row, t, h, state, w);
    }
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
