// The CPU backend's sequential backward pass: the gradient of the token loop of core/recurrence.hpp, walked token
// by token in reverse, for any state scalar. It also holds what the chunked backward shares with it: the gradient
// of the L2 normalisation, the checkpointed reverse walk, and the reading and writing of token rows.
//
// Gradient of one generalized Householder step S' = S + k w^T, w = b u, u = v - S^T k, given D = dL/dS':
//   dv = b D^T k,  db = (D^T k) . u,  dk = D w - S dv,  dL/dS = D - k dv^T.
// Gate S' = exp(g) S:  dg = <D, S'>,  dL/dS = exp(g) D.
// Readout o = scale S^T q_hat:  dL/dS += scale q_hat do^T,  dq_hat = scale S do.
// Diagonal step S' = diag(a) S + k v^T:  da_i = sum_j D_ij S_ij,  dk = D v,  dv = D^T k,  dL/dS = diag(a) D.
//
// Memory: the backward needs the state before every step, in reverse order, and never stores it for the whole
// sequence. A first pass runs the recurrence from the initial state and keeps the state at the start of every
// segment of `segment` tokens but the last (about sqrt(T) tokens per segment: about sqrt(T) checkpoints). The
// segments are then taken last to first: the states before each Householder step (before each token for the
// diagonal LRNN) of one segment are recomputed from its checkpoint into a segment buffer, and the segment is
// walked backwards. Per worker that is (checkpoints + segment * n_h) K x V states, O(sqrt(T) K V).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "deltaproduct/core/arguments.hpp"
#include "deltaproduct/core/backend.hpp"
#include "deltaproduct/core/config.hpp"
#include "deltaproduct/core/contract.hpp"
#include "deltaproduct/core/recurrence.hpp"
#include "deltaproduct/cpu/parallel.hpp"

namespace deltaproduct::detail {

/// Limits of the backward's memory, in states kept per worker. Tests shrink them to exercise the checkpointing on
/// small problems; the public backward() uses the defaults.
struct BackwardLimits {
  index_t segment_tokens = 0;    ///< tokens per segment of the sequential backward; 0: ceil(sqrt(longest sequence))
  index_t max_checkpoints = 64;  ///< chunk-start states the chunked backward keeps before it recomputes instead
};

/// The divisor n = sqrt(|x|^2 [+ eps]) by which `normalize` divides x; 0 where it leaves x unchanged
/// (Normalization::none, or a zero vector under l2).
template <class Raw>
auto normalization_divisor(const Raw& raw, Normalization mode, double eps) {
  using Scalar = typename std::remove_cvref_t<Raw>::Scalar;
  if (mode == Normalization::none) return Scalar(0.0);
  Scalar sum_of_squares = raw.dot(raw);
  if (mode == Normalization::l2_eps) sum_of_squares = sum_of_squares + static_cast<Scalar>(eps);
  if (!(Scalar(0.0) < sum_of_squares)) return Scalar(0.0);
  return scalar_sqrt(sum_of_squares);
}

/// Gradient of x_hat = x / n (`normalize`; n from normalization_divisor):
///   dx = dx_hat / n - x (x . dx_hat) / n^3 = (dx_hat - x_hat (x_hat . dx_hat)) / n,
/// with and without eps. `gradient` (a row vector or a row of a matrix) holds dx_hat on entry and dx on return;
/// where n = 0 (x was left unchanged) it passes through.
template <class Normalized, class Scalar, class Gradient>
void normalize_backward(const Normalized& normalized, const Scalar& divisor, Gradient&& gradient) {
  if (!(Scalar(0.0) < divisor)) return;
  const Scalar along = normalized.dot(gradient);
  gradient = (gradient - along * normalized) / divisor;
}

/// A key or query row: its raw value (kept for the normalisation's gradient) and its normalised value.
template <class Scalar>
struct NormalizedRow {
  RowVector<Scalar> raw, value;

  explicit NormalizedRow(index_t size) : raw(size), value(size) {}

  template <class T>
  void load(const T* first, index_t stride, Normalization mode, double eps) {
    load_row(first, stride, raw);
    value = raw;
    normalize(value, mode, eps);
  }
};

/// Writes one element of a gradient view that the caller asked for.
template <class T, class Scalar, class... Indices>
void store_gradient(const View<T, sizeof...(Indices)>& gradient, const Scalar& value, Indices... indices) {
  if (!gradient.absent()) gradient(indices...) = convert_scalar<T>(value);
}

/// Segments of a checkpointed reverse walk over `units` steps (tokens or chunks), `length` units each.
struct SegmentPlan {
  index_t length = 1;
  index_t count = 0;

  SegmentPlan(index_t units, index_t segment_length)
      : length(std::max<index_t>(segment_length, 1)), count((units + length - 1) / length) {}
};

/// ceil(sqrt(n)), at least 1: the segment length that balances checkpoints against the segment buffer.
inline index_t ceil_sqrt(index_t n) {
  index_t r = static_cast<index_t>(std::sqrt(static_cast<double>(std::max<index_t>(n, 1))));
  while (r * r < n) ++r;
  while (r > 1 && (r - 1) * (r - 1) >= n) --r;
  return std::max<index_t>(r, 1);
}

/// The K x V state number `slot` of a stack of states (a (slots*K) x V row-major matrix).
template <class Scalar>
auto state_slot(StateMatrix<Scalar>& stack, index_t slot, index_t key_dim) {
  return stack.middleRows(slot * key_dim, key_dim);
}

/// Checkpointed reverse walk over `units` steps of a recurrence (see the file comment). `state` holds the state
/// before unit 0 on entry and is scratch afterwards; `checkpoints` must hold plan.count - 1 states.
///   advance(state, unit):        one step forward, keeping nothing (the first pass);
///   record(state, unit, slot):   one step forward, keeping what unit's backward needs at `slot` of the segment;
///   reverse(unit, slot):         the backward of unit, walking units last to first.
template <class Scalar, class Advance, class Record, class Reverse>
void reverse_with_checkpoints(const SegmentPlan& plan, index_t units, StateArg<Scalar> state,
                              StateMatrix<Scalar>& checkpoints, Advance&& advance, Record&& record, Reverse&& reverse) {
  const index_t key_dim = state.rows();
  for (index_t segment = 0; segment + 1 < plan.count; ++segment) {
    state_slot(checkpoints, segment, key_dim) = state;
    for (index_t unit = segment * plan.length; unit < (segment + 1) * plan.length; ++unit) advance(state, unit);
  }
  for (index_t segment = plan.count; segment-- > 0;) {
    const index_t first = segment * plan.length, last = std::min(first + plan.length, units);
    if (segment + 1 < plan.count) state = state_slot(checkpoints, segment, key_dim);
    for (index_t unit = first; unit < last; ++unit) record(state, unit, unit - first);
    for (index_t unit = last; unit-- > first;) reverse(unit, unit - first);
  }
}

/// Per-thread scratch of the sequential backward, allocated once per call.
template <class Scalar>
struct SequentialBackwardScratch {
  StateMatrix<Scalar> adjoint;      ///< K x V: dL/dS at the current point of the reverse walk
  StateMatrix<Scalar> state;        ///< K x V: the state the passes advance
  StateMatrix<Scalar> checkpoints;  ///< segment-start states, stacked
  StateMatrix<Scalar> segment;      ///< the states before every step of one segment, stacked
  TokenWorkspace<Scalar> token;
  NormalizedRow<Scalar> key, query;
  RowVector<Scalar> residual;         ///< u = v - S^T k
  RowVector<Scalar> update;           ///< w = b u
  RowVector<Scalar> output_gradient;  ///< do
  RowVector<Scalar> value_gradient;   ///< dv, or D^T k
  RowVector<Scalar> key_gradient;     ///< dk_hat, then dk
  RowVector<Scalar> query_gradient;   ///< dq_hat, then dq

  SequentialBackwardScratch(const Problem& p, index_t checkpoint_states, index_t segment_states)
      : adjoint(p.key_dim, p.value_dim),
        state(p.key_dim, p.value_dim),
        checkpoints(checkpoint_states * p.key_dim, p.value_dim),
        segment(segment_states * p.key_dim, p.value_dim),
        token(p.key_dim, p.value_dim),
        key(p.key_dim),
        query(p.key_dim),
        residual(p.value_dim),
        update(p.value_dim),
        output_gradient(p.value_dim),
        value_gradient(p.value_dim),
        key_gradient(p.key_dim),
        query_gradient(p.key_dim) {}
};

/// Runs body(scratch, n, h) for every (sequence, head) pair on the backend's threads, with per-thread scratch.
template <class Scratch, class Make, class Body>
void for_each_backward_item(const CpuBackend& backend, const Problem& p, Make&& make_scratch, Body&& body) {
  const index_t items = p.sequences * p.heads;
  const int workers = std::max(cpu_threads_for(backend, p, items), 1);
  std::vector<Scratch> scratch;
  scratch.reserve(static_cast<std::size_t>(workers));
  for (int w = 0; w < workers; ++w) scratch.push_back(make_scratch());
  parallel_for(items, workers, [&](index_t item, int worker) {
    body(scratch[static_cast<std::size_t>(worker)], item / p.heads, item % p.heads);
  });
}

/// Tokens per segment of the sequential backward.
inline index_t sequential_segment_tokens(const BackwardLimits& limits, index_t longest) {
  return limits.segment_tokens > 0 ? limits.segment_tokens : ceil_sqrt(longest);
}

/// dq = J^T (scale dq_hat) through the query normalisation, written to gradients.q(row, t, h, :). `gradient` holds
/// dq_hat on entry (the gradient with respect to the scaled, normalised query's direction S do).
template <class Scalar, class T>
void store_query_gradient(const Options& options, const Problem& p, NormalizedRow<Scalar>& query,
                          RowVector<Scalar>& gradient, const View<T, 4>& out, index_t row, index_t t, index_t h) {
  gradient *= static_cast<Scalar>(p.scale);
  normalize_backward(
      query.value, normalization_divisor(query.raw, options.query_normalization, options.normalization_eps), gradient);
  store_row(gradient, &out(row, t, h, 0), out.stride(3));
}

/// Sequential DeltaNet / DeltaProduct backward (see the file comment).
template <DeltaProductModel Model, class T, class S>
void backward_sequential(const CpuBackend& backend, const Model& model, const Problem& p, const DeltaInputs<T, S>& in,
                         const OutputGradients<T, S>& out_grad, const DeltaGradients<T, S>& grad,
                         const BackwardLimits& limits) {
  using Scalar = typename Model::scalar_type;
  constexpr int n_h = Model::householder_steps;
  constexpr bool gated = Model::gating == Gating::scalar_decay;
  const Options& options = model.options;
  const index_t longest = longest_sequence(p);
  const SegmentPlan longest_plan(longest, sequential_segment_tokens(limits, longest));
  const index_t checkpoint_states = std::max<index_t>(longest_plan.count - 1, 0);
  const index_t segment_states = std::min(longest_plan.length, std::max<index_t>(longest, 1)) * n_h;

  for_each_backward_item<SequentialBackwardScratch<Scalar>>(
      backend, p, [&] { return SequentialBackwardScratch<Scalar>(p, checkpoint_states, segment_states); },
      [&](SequentialBackwardScratch<Scalar>& s, index_t n, index_t h) {
        const auto seq = p.sequence(n);
        const index_t row = seq.row, begin = seq.begin, tokens = seq.end - seq.begin;
        load_state<Scalar>(out_grad.final_state, n, h, s.adjoint);
        load_state<Scalar>(in.initial_state, n, h, s.state);
        RowVector<Scalar>& value = s.token.value;
        RowVector<Scalar>& work = s.token.work;

        // The forward's token update; with a segment slot, the state before each Householder step is kept there.
        auto advance = [&](StateArg<Scalar> state, index_t unit, index_t slot) {
          const index_t t = begin + unit;
          if constexpr (gated) apply_decay<Scalar>(state, convert_scalar<Scalar>(in.g(row, t, h)));
          for (int j = 0; j < n_h; ++j) {
            const index_t r = t * n_h + j;
            if (slot >= 0) state_slot(s.segment, slot * n_h + j, p.key_dim) = state;
            load_row(&in.k(row, r, h, 0), in.k.stride(3), s.token.key);
            normalize(s.token.key, options.key_normalization, options.normalization_eps);
            load_row(&in.v(row, r, h, 0), in.v.stride(3), value);
            householder_step<Scalar>(state, s.token.key, value, convert_scalar<Scalar>(in.beta(row, r, h)), work);
          }
        };

        auto reverse = [&](index_t unit, index_t slot) {
          const index_t t = begin + unit;
          load_row(&out_grad.o(row, t, h, 0), out_grad.o.stride(3), s.output_gradient);
          s.query.load(&in.q(row, t, h, 0), in.q.stride(3), options.query_normalization, options.normalization_eps);
          for (int j = n_h - 1; j >= 0; --j) {
            const index_t r = t * n_h + j;
            const auto before = state_slot(s.segment, slot * n_h + j, p.key_dim);  // S before this step
            s.key.load(&in.k(row, r, h, 0), in.k.stride(3), options.key_normalization, options.normalization_eps);
            const RowVector<Scalar>& key = s.key.value;
            load_row(&in.v(row, r, h, 0), in.v.stride(3), value);
            const Scalar beta = convert_scalar<Scalar>(in.beta(row, r, h));
            transposed_product<Scalar>(before, key, work);
            s.residual = value - work;
            s.update = beta * s.residual;
            if (j == n_h - 1) {
              // Readout of S_t = before + k w^T: dq_hat = scale S_t do, dL/dS_t += scale q_hat do^T.
              if (!grad.q.absent()) {
                s.query_gradient.noalias() = s.output_gradient * before.transpose();
                s.query_gradient += s.update.dot(s.output_gradient) * key;
                store_query_gradient(options, p, s.query, s.query_gradient, grad.q, row, t, h);
              }
              const Scalar scale = static_cast<Scalar>(p.scale);
              for (Eigen::Index i = 0; i < p.key_dim; ++i)
                s.adjoint.row(i) += (scale * s.query.value(i)) * s.output_gradient;
            }
            transposed_product<Scalar>(s.adjoint, key, s.value_gradient);  // D^T k
            store_gradient(grad.beta, s.value_gradient.dot(s.residual), row, r, h);
            s.value_gradient *= beta;
            if (!grad.k.absent()) {
              s.key_gradient.noalias() = s.update * s.adjoint.transpose();
              s.key_gradient.noalias() -= s.value_gradient * before.transpose();
              normalize_backward(key,
                                 normalization_divisor(s.key.raw, options.key_normalization, options.normalization_eps),
                                 s.key_gradient);
              store_row(s.key_gradient, &grad.k(row, r, h, 0), grad.k.stride(3));
            }
            if (!grad.v.absent()) store_row(s.value_gradient, &grad.v(row, r, h, 0), grad.v.stride(3));
            for (Eigen::Index i = 0; i < p.key_dim; ++i) s.adjoint.row(i) -= key(i) * s.value_gradient;
          }
          if constexpr (gated) {
            const auto gated_state = state_slot(s.segment, slot * n_h, p.key_dim);  // exp(g) S_{t-1}
            store_gradient(grad.g, s.adjoint.cwiseProduct(gated_state).sum(), row, t, h);
            s.adjoint *= scalar_exp(convert_scalar<Scalar>(in.g(row, t, h)));
          }
        };

        if (tokens > 0) {
          const SegmentPlan plan(tokens, longest_plan.length);
          reverse_with_checkpoints<Scalar>(
              plan, tokens, s.state, s.checkpoints,
              [&](StateArg<Scalar> state, index_t unit) { advance(state, unit, -1); },
              [&](StateArg<Scalar> state, index_t unit, index_t slot) { advance(state, unit, slot); }, reverse);
        }
        store_state<Scalar>(s.adjoint, grad.initial_state, n, h);
      });
}

/// Sequential diagonal LRNN backward (see the file comment).
template <DiagonalModel Model, class T, class S>
void backward_sequential(const CpuBackend& backend, const Model& model, const Problem& p,
                         const DiagonalInputs<T, S>& in, const OutputGradients<T, S>& out_grad,
                         const DiagonalGradients<T, S>& grad, const BackwardLimits& limits) {
  using Scalar = typename Model::scalar_type;
  const Options& options = model.options;
  const index_t longest = longest_sequence(p);
  const SegmentPlan longest_plan(longest, sequential_segment_tokens(limits, longest));
  const index_t checkpoint_states = std::max<index_t>(longest_plan.count - 1, 0);
  const index_t segment_states = std::min(longest_plan.length, std::max<index_t>(longest, 1));

  for_each_backward_item<SequentialBackwardScratch<Scalar>>(
      backend, p, [&] { return SequentialBackwardScratch<Scalar>(p, checkpoint_states, segment_states); },
      [&](SequentialBackwardScratch<Scalar>& s, index_t n, index_t h) {
        const auto seq = p.sequence(n);
        const index_t row = seq.row, begin = seq.begin, tokens = seq.end - seq.begin;
        load_state<Scalar>(out_grad.final_state, n, h, s.adjoint);
        load_state<Scalar>(in.initial_state, n, h, s.state);
        RowVector<Scalar>& decay = s.token.decay;
        RowVector<Scalar>& value = s.token.value;

        auto advance = [&](StateArg<Scalar> state, index_t unit, index_t slot) {
          const index_t t = begin + unit;
          if (slot >= 0) state_slot(s.segment, slot, p.key_dim) = state;
          load_row(&in.a(row, t, h, 0), in.a.stride(3), decay);
          load_row(&in.k(row, t, h, 0), in.k.stride(3), s.token.key);
          normalize(s.token.key, options.key_normalization, options.normalization_eps);
          load_row(&in.v(row, t, h, 0), in.v.stride(3), value);
          diagonal_step<Scalar>(state, decay, s.token.key, value);
        };

        auto reverse = [&](index_t unit, index_t slot) {
          const index_t t = begin + unit;
          const auto before = state_slot(s.segment, slot, p.key_dim);  // S_{t-1}
          load_row(&in.a(row, t, h, 0), in.a.stride(3), decay);
          s.key.load(&in.k(row, t, h, 0), in.k.stride(3), options.key_normalization, options.normalization_eps);
          const RowVector<Scalar>& key = s.key.value;
          load_row(&in.v(row, t, h, 0), in.v.stride(3), value);
          load_row(&out_grad.o(row, t, h, 0), out_grad.o.stride(3), s.output_gradient);
          s.query.load(&in.q(row, t, h, 0), in.q.stride(3), options.query_normalization, options.normalization_eps);
          // Readout of S_t = diag(a) S_{t-1} + k v^T: dq_hat = scale S_t do, dL/dS_t += scale q_hat do^T.
          if (!grad.q.absent()) {
            s.query_gradient.noalias() = s.output_gradient * before.transpose();
            s.query_gradient = s.query_gradient.cwiseProduct(decay) + value.dot(s.output_gradient) * key;
            store_query_gradient(options, p, s.query, s.query_gradient, grad.q, row, t, h);
          }
          const Scalar scale = static_cast<Scalar>(p.scale);
          for (Eigen::Index i = 0; i < p.key_dim; ++i)
            s.adjoint.row(i) += (scale * s.query.value(i)) * s.output_gradient;
          if (!grad.a.absent()) {
            for (Eigen::Index i = 0; i < p.key_dim; ++i)
              grad.a(row, t, h, i) = convert_scalar<T>(Scalar(s.adjoint.row(i).dot(before.row(i))));
          }
          if (!grad.k.absent()) {
            s.key_gradient.noalias() = value * s.adjoint.transpose();
            normalize_backward(key,
                               normalization_divisor(s.key.raw, options.key_normalization, options.normalization_eps),
                               s.key_gradient);
            store_row(s.key_gradient, &grad.k(row, t, h, 0), grad.k.stride(3));
          }
          if (!grad.v.absent()) {
            transposed_product<Scalar>(s.adjoint, key, s.value_gradient);
            store_row(s.value_gradient, &grad.v(row, t, h, 0), grad.v.stride(3));
          }
          for (Eigen::Index i = 0; i < p.key_dim; ++i) s.adjoint.row(i) *= decay(i);
        };

        if (tokens > 0) {
          const SegmentPlan plan(tokens, longest_plan.length);
          reverse_with_checkpoints<Scalar>(
              plan, tokens, s.state, s.checkpoints,
              [&](StateArg<Scalar> state, index_t unit) { advance(state, unit, -1); },
              [&](StateArg<Scalar> state, index_t unit, index_t slot) { advance(state, unit, slot); }, reverse);
        }
        store_state<Scalar>(s.adjoint, grad.initial_state, n, h);
      });
}

}  // namespace deltaproduct::detail
