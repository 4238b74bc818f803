// The CPU backend's chunked backward pass for DeltaNet / DeltaProduct: back-propagation through the chunked (UT)
// form of cpu/chunked.hpp, chunk by chunk in reverse, as matrix-matrix products. It builds each chunk's factors
// with the forward's own functions (load_delta_chunk, build_delta_chunk_factors, advance_delta_chunk).
//
// Forward form of one chunk (rows r = micro-steps, tokens t, S_0 the state before the chunk; cpu/chunked.hpp):
//   Gamma_r = exp(gamma_r), c_r = exp(gamma_L - gamma_r), E_rs = exp(gamma_r - gamma_s), G_rs = k_r . k_s,
//   A_rs = b_r E_rs G_rs for s < r,   Y = diag(b) W,  W = V - diag(Gamma) K S_0,   u = (I + A)^{-1} Y
//   S_L = Gamma_L S_0 + K^T diag(c) u
//   O = diag(Gamma_q) Q S_0 + M u,   M_ts = E_r(t)s (q_t . k_s) for s <= r(t)   (Q: scaled, normalised queries)
// Backward, given dO and D = dL/dS_L (dY: the gradient of Y; dA: of A, strictly lower):
//   du = diag(c) K D + M^T dO,   dY = (I + A)^{-T} du,   dA = -dY u^T,   dM = dO u^T
//   H = dA o E (strictly lower),  P = dM o E_causal,  Z = diag(b) H
//   dV = diag(b) dY,   db_r = dY_r . W_r + sum_s H_rs G_rs
//   dQ = diag(Gamma_q) dO S_0^T + P K
//   dK = diag(c) u D^T - diag(b Gamma) dY S_0^T + [Z + Z^T, P^T] [K; Q]
//   dS_0 = Gamma_L D + [K; Q]^T [-diag(Gamma) dV; diag(Gamma_q) dO]
//   dgamma: each exponent x gets dL/dx = (its factor's gradient) * (the factor), e.g. sum_s dM_ts M_ts for
//   gamma_r(t), b_r H_rs G_rs for gamma_r against gamma_s; dg_t sums dgamma over the rows of tokens t..end of the
//   chunk (gamma is a cumulative sum of g).
// The products that share an operand are stacked: [dY; dO] [S_0; u]^T gives dY S_0^T, dO S_0^T, dY u^T and
// dO u^T in one product, and [K; Q] (the forward's stacked rows) serves dK and dS_0 whole.
//
// Memory: the reverse pass needs each chunk's start state and factors, last chunk first. A state pass runs the
// chunks forward and keeps, per chunk, what the reverse pass needs (KeptChunks: S_0, u, K, Q, G, (I + A)^{-1}, M
// and a few vectors), so the reverse pass neither reloads nor rebuilds them. A sequence of at most
// BackwardLimits::max_checkpoints chunks keeps all its chunks: one state pass, then the reverse pass. A longer one
// is cut into segments of max(max_checkpoints, ceil(sqrt(chunks))) chunks: a first state pass keeps only each
// segment's start state, then the segments are taken last to first, each with its own state pass and reverse
// pass. The first pass stops where the last segment starts, so (chunks - segment) / chunks of one state pass is
// done twice. Per worker that is at most max(max_checkpoints, ceil(sqrt(chunks))) kept chunks plus
// (chunks / segment) K x V states. A kept chunk holds (K + L) V + (L + C) K + 2 L^2 + C L numbers: for
// K = V = 128, n_h = 1 and chunks of 32 tokens about 2 K x V states (8 MB in float for 64 chunks). Nothing
// proportional to T K V is stored. Work items are (sequence, head) pairs, split into blocks of value columns when
// they are fewer than threads; each block then writes its part of the gradients of k, q, beta and g to a buffer
// of their size, and the parts are added at the end (backward_chunked).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <vector>

#include "deltaproduct/core/arguments.hpp"
#include "deltaproduct/core/backend.hpp"
#include "deltaproduct/core/config.hpp"
#include "deltaproduct/core/contract.hpp"
#include "deltaproduct/core/recurrence.hpp"
#include "deltaproduct/cpu/backward_sequential.hpp"
#include "deltaproduct/cpu/chunked.hpp"
#include "deltaproduct/cpu/parallel.hpp"

namespace deltaproduct::detail {

/// What the reverse pass needs of each chunk of a segment, kept by the state pass at a slot: [S_0; u] (K + L rows
/// of V), [K; Q] as DeltaChunkFactors::rows holds them (L + C rows of K), G, (I + A)^{-1}, M, the betas, the
/// cumulative log-gates and the normalisations' divisors. Slots are sized for a full chunk; a partial chunk uses
/// the leading rows of its slot.
template <class Scalar>
struct KeptChunks {
  index_t key_dim, max_steps, max_tokens;
  StateMatrix<Scalar> states;      ///< slots (K + L) x V
  ChunkMatrix<Scalar> rows;        ///< slots (L + C) x K
  ChunkMatrix<Scalar> gram;        ///< slots L x L
  ChunkMatrix<Scalar> inverse;     ///< slots L x L
  ChunkMatrix<Scalar> readout;     ///< slots C x L
  RowVector<Scalar> betas;         ///< slots L
  RowVector<Scalar> log_decays;    ///< slots L (gated models)
  RowVector<Scalar> norms;         ///< slots (L + C)

  KeptChunks(const Problem& p, index_t chunk, bool gated, index_t slots, index_t width)
      : key_dim(p.key_dim),
        max_steps(chunk * p.householder_steps),
        max_tokens(chunk),
        states(slots * (p.key_dim + max_steps), width),
        rows(slots * (max_steps + max_tokens), p.key_dim),
        gram(slots * max_steps, max_steps),
        inverse(slots * max_steps, max_steps),
        readout(slots * max_tokens, max_steps),
        betas(slots * max_steps),
        log_decays(gated ? slots * max_steps : 0),
        norms(slots * (max_steps + max_tokens)) {}

  auto state_rows(index_t slot, index_t steps) { return states.middleRows(slot * (key_dim + max_steps), key_dim + steps); }
  auto factor_rows(index_t slot, index_t steps, index_t tokens) {
    return rows.middleRows(slot * (max_steps + max_tokens), steps + tokens);
  }
};

/// Per-thread scratch of the chunked backward, sized for a full chunk (partial chunks use the leading rows) and for
/// a block of `width` value columns, allocated once per call. L = chunk tokens * n_h rows, C = chunk tokens.
template <class Scalar>
struct ChunkedBackwardScratch {
  DeltaChunkFactors<Scalar> factors;  ///< the state pass's chunk factors (cpu/chunked.hpp)
  KeptChunks<Scalar> kept;
  StateMatrix<Scalar> checkpoints;      ///< segment-start states, stacked
  ChunkMatrix<Scalar> values;           ///< L x V: V, then Y (state pass); V (reverse pass)
  ChunkMatrix<Scalar> key_products;     ///< L x V: K S_0 (state pass)
  ChunkMatrix<Scalar> pseudo_values;    ///< L x V: u of the first pass, which keeps nothing
  ChunkMatrix<Scalar> gradients;        ///< (L + C) x V: [dY; dO], then [-diag(Gamma) dV; diag(Gamma_q) dO]
  ChunkMatrix<Scalar> pseudo_gradient;  ///< L x V: du
  ChunkMatrix<Scalar> cross;            ///< (L + C) x (K + L): [dY; dO] [S_0; u]^T, then P and H in place
  ChunkMatrix<Scalar> carried;          ///< L x K: u D^T
  ChunkMatrix<Scalar> row_gradients;    ///< (L + C) x K: [dK; dQ] (of the normalised, scaled rows)
  ChunkMatrix<Scalar> mix;              ///< L x (L + C): [Z + Z^T, P^T]
  RowVector<Scalar> gate, carry;        ///< L: Gamma_r, c_r
  RowVector<Scalar> beta_gradient, gamma_gradient;       ///< L
  StateMatrix<Scalar> state, adjoint, initial_gradient;  ///< K x V

  ChunkedBackwardScratch(const Problem& p, index_t chunk, bool gated, index_t checkpoint_states, index_t kept_chunks,
                         index_t width)
      : factors(chunk, p.householder_steps, p.key_dim, gated),
        kept(p, chunk, gated, kept_chunks, width),
        checkpoints(checkpoint_states * p.key_dim, width),
        values(chunk * p.householder_steps, width),
        key_products(chunk * p.householder_steps, width),
        pseudo_values(chunk * p.householder_steps, width),
        gradients(chunk * (p.householder_steps + 1), width),
        pseudo_gradient(chunk * p.householder_steps, width),
        cross(chunk * (p.householder_steps + 1), p.key_dim + chunk * p.householder_steps),
        carried(chunk * p.householder_steps, p.key_dim),
        row_gradients(chunk * (p.householder_steps + 1), p.key_dim),
        mix(chunk * p.householder_steps, chunk * (p.householder_steps + 1)),
        gate(chunk * p.householder_steps),
        carry(chunk * p.householder_steps),
        beta_gradient(chunk * p.householder_steps),
        gamma_gradient(chunk * p.householder_steps),
        state(p.key_dim, width),
        adjoint(p.key_dim, width),
        initial_gradient(p.key_dim, width) {}

  /// Gives every value-column buffer `width` columns (a work item's block; reallocates only when it changes).
  void fit_value_columns(index_t width) {
    for (auto* m : {&kept.states, &checkpoints, &values, &key_products, &pseudo_values, &gradients, &pseudo_gradient,
                    &state, &adjoint, &initial_gradient})
      if (m->cols() != width) m->resize(m->rows(), width);
  }
};

/// Where one chunk lies: batch row, first token, number of tokens.
struct ChunkSpan {
  index_t row = 0, first = 0, tokens = 0;
};

/// One chunk of the state pass: S <- Gamma_L S + (diag(c) K)^T u with u = (I + A)^{-1} diag(b) (V - diag(Gamma) K S),
/// the chunk's factors built by cpu/chunked.hpp. With slot >= 0, what the reverse pass needs is kept at that slot;
/// without, the queries are not read (the state does not depend on them).
template <class Model, class Scalar, class T, class S>
void state_pass_chunk(const Model& model, const Problem& p, const DeltaInputs<T, S>& in, index_t h, const ChunkSpan& c,
                      index_t first_column, StateArg<Scalar> state, ChunkedBackwardScratch<Scalar>& s, index_t slot) {
  constexpr int n_h = Model::householder_steps;
  constexpr bool gated = Model::gating == Gating::scalar_decay;
  DeltaChunkFactors<Scalar>& f = s.factors;
  KeptChunks<Scalar>& kept = s.kept;
  const bool keep = slot >= 0;
  const index_t L = c.tokens * n_h, C = c.tokens, max_L = kept.max_steps, max_C = kept.max_tokens;
  load_delta_chunk<n_h, gated>(model.options, p, in, c.row, c.first, c.tokens, h, f, keep);
  build_delta_chunk_factors<n_h, gated>(f, keep);
  auto values = s.values.topRows(L);
  for (index_t r = 0; r < L; ++r)
    load_converted<Scalar>(&in.v(c.row, c.first * n_h + r, h, first_column), in.v.stride(3), values.row(r));
  auto key_products = s.key_products.topRows(L);
  key_products.noalias() = f.keys() * state;
  if (keep) {
    auto kept_states = kept.state_rows(slot, L);
    kept_states.topRows(p.key_dim) = state;
    advance_delta_chunk<gated>(f, values, key_products, kept_states.bottomRows(L), state);
    kept.factor_rows(slot, L, C) = f.rows.topRows(L + C);
    kept.gram.block(slot * max_L, 0, L, L) = f.gram.topLeftCorner(L, L);
    kept.inverse.block(slot * max_L, 0, L, L) = f.inverse.topLeftCorner(L, L);
    kept.readout.block(slot * max_C, 0, C, L) = f.readout.topLeftCorner(C, L);
    kept.betas.segment(slot * max_L, L) = f.betas.head(L);
    kept.norms.segment(slot * (max_L + max_C), L + C) = f.norms.head(L + C);
    if constexpr (gated) kept.log_decays.segment(slot * max_L, L) = f.log_decays.head(L);
  } else {
    advance_delta_chunk<gated>(f, values, key_products, s.pseudo_values.topRows(L), state);
  }
}

/// The backward of one chunk (see the file comment) for the value columns [first_column, first_column + W) of
/// s.adjoint, from what the state pass kept at `slot`: reads D = dL/dS_L from s.adjoint and leaves dL/dS_0 there;
/// writes dv to grad and the gradients of k, q, beta and g (each a sum over the value columns) to row_grad.
template <class Model, class Scalar, class T, class S, class RowGradients>
void reverse_chunk(const Problem& p, const DeltaInputs<T, S>& in, const OutputGradients<T, S>& out_grad,
                   const DeltaGradients<T, S>& grad, const RowGradients& row_grad, index_t h, const ChunkSpan& c,
                   index_t first_column, index_t slot, ChunkedBackwardScratch<Scalar>& s) {
  constexpr int n_h = Model::householder_steps;
  constexpr bool gated = Model::gating == Gating::scalar_decay;
  KeptChunks<Scalar>& kept = s.kept;
  const index_t K = p.key_dim, L = c.tokens * n_h, C = c.tokens, max_L = kept.max_steps, max_C = kept.max_tokens;
  const auto start_and_pseudo_values = kept.state_rows(slot, L);  // [S_0; u]
  const auto start = start_and_pseudo_values.topRows(K);
  const auto u = start_and_pseudo_values.bottomRows(L);
  const auto rows = kept.factor_rows(slot, L, C);                 // [K; Q]
  const auto keys = rows.topRows(L);
  const auto queries = rows.bottomRows(C);                        // scale * normalised, without the gates
  const auto gram = kept.gram.block(slot * max_L, 0, L, L);       // G, strictly lower
  const auto inverse = kept.inverse.block(slot * max_L, 0, L, L);
  const auto readout = kept.readout.block(slot * max_C, 0, C, L);  // M, zero above the staircase
  const auto betas = kept.betas.segment(slot * max_L, L);
  const auto norms = kept.norms.segment(slot * (max_L + max_C), L + C);
  auto last_row = [](index_t t) { return t * n_h + n_h - 1; };  // r(t): the row whose state token t reads out

  // Gates Gamma_r = exp(gamma_r) and carries c_r = exp(gamma_L - gamma_r).
  auto gate = s.gate.head(L);
  auto carry = s.carry.head(L);
  Scalar end_decay(1.0);
  gate.setOnes();
  carry.setOnes();
  if constexpr (gated) {
    const auto log_decays = kept.log_decays.segment(slot * max_L, L);
    multiply_by_decay(gate, Scalar(0.0), -log_decays);
    multiply_by_decay(carry, log_decays(L - 1), log_decays);
    end_decay = gate(L - 1);
  }

  const StateMatrix<Scalar>& D = s.adjoint;
  auto gradients = s.gradients.topRows(L + C);
  auto dY = gradients.topRows(L);
  auto dO = gradients.bottomRows(C);
  for (index_t t = 0; t < C; ++t)
    load_converted<Scalar>(&out_grad.o(c.row, c.first + t, h, first_column), out_grad.o.stride(3), dO.row(t));

  // du = diag(c) K D + M^T dO;  dY = (I + A)^{-T} du.
  auto du = s.pseudo_gradient.topRows(L);
  du.noalias() = keys * D;
  if constexpr (gated) du.array().colwise() *= carry.transpose().array();
  du.noalias() += readout.transpose() * dO;
  dY.noalias() = inverse.transpose() * du;

  // [dY; dO] [S_0; u]^T: dY S_0^T, dO S_0^T (left K columns), dY u^T, dO u^T (right L columns).
  auto cross = s.cross.topLeftCorner(L + C, K + L);
  cross.noalias() = gradients * start_and_pseudo_values.transpose();
  const auto keys_state = cross.topLeftCorner(L, K);        // dY S_0^T
  const auto readout_state = cross.bottomLeftCorner(C, K);  // dO S_0^T
  auto H = cross.topRightCorner(L, L);                      // dY u^T, then H
  auto P = cross.bottomRightCorner(C, L);                   // dM = dO u^T, then P
  auto carried = s.carried.topRows(L);
  carried.noalias() = u * D.transpose();

  auto gamma_gradient = s.gamma_gradient.head(L);
  auto beta_gradient = s.beta_gradient.head(L);
  gamma_gradient.setZero();

  // P = dM o E_causal; gamma_r(t) and gamma_s get +-dM_ts M_ts.
  for (index_t t = 0; t < C; ++t) {
    const index_t visible = last_row(t) + 1;
    auto row = P.row(t);
    row.tail(L - visible).setZero();
    if constexpr (gated) {
      const auto log_decays = kept.log_decays.segment(slot * max_L, L);
      for (index_t col = 0; col < visible; ++col) {
        const Scalar through_decay = row(col) * readout(t, col);
        gamma_gradient(last_row(t)) += through_decay;
        gamma_gradient(col) -= through_decay;
      }
      multiply_by_decay(row.head(visible), log_decays(last_row(t)), log_decays.head(visible));
    }
  }
  // H = dA o E with dA = -dY u^T (strictly lower); db_r gets sum_s H_rs G_rs, and gamma_r, gamma_s +-b_r H_rs G_rs.
  for (index_t r = 0; r < L; ++r) {
    auto row = H.row(r);
    row.tail(L - r).setZero();
    row.head(r) = -row.head(r);
    if constexpr (gated) {
      const auto log_decays = kept.log_decays.segment(slot * max_L, L);
      multiply_by_decay(row.head(r), log_decays(r), log_decays.head(r));
    }
    beta_gradient(r) = row.head(r).dot(gram.row(r).head(r));
    if constexpr (gated) {
      gamma_gradient(r) += betas(r) * beta_gradient(r);
      gamma_gradient.head(r) -= betas(r) * row.head(r).cwiseProduct(gram.row(r).head(r));
    }
  }

  // dK = diag(c) u D^T - diag(b Gamma) dY S_0^T + ...;  db_r += dY_r . (v_r - Gamma_r S_0^T k_r).
  auto values = s.values.topRows(L);
  for (index_t r = 0; r < L; ++r)
    load_converted<Scalar>(&in.v(c.row, c.first * n_h + r, h, first_column), in.v.stride(3), values.row(r));
  auto dK = s.row_gradients.topRows(L);
  auto dQ = s.row_gradients.middleRows(L, C);
  for (index_t r = 0; r < L; ++r) {
    const Scalar along_key = keys_state.row(r).dot(keys.row(r));  // dY_r . (S_0^T k_r)
    beta_gradient(r) += Scalar(dY.row(r).dot(values.row(r))) - gate(r) * along_key;
    const Scalar weight = betas(r) * gate(r);
    if constexpr (gated) {
      const Scalar through_carry = carry(r) * Scalar(carried.row(r).dot(keys.row(r)));
      gamma_gradient(L - 1) += through_carry;
      gamma_gradient(r) -= through_carry + weight * along_key;
      dK.row(r) = carry(r) * carried.row(r) - weight * keys_state.row(r);
    } else {
      dK.row(r) = carried.row(r) - weight * keys_state.row(r);
    }
  }
  if constexpr (gated) gamma_gradient(L - 1) += end_decay * Scalar(D.cwiseProduct(start).sum());
  // dQ = diag(Gamma_q) dO S_0^T + ...
  for (index_t t = 0; t < C; ++t) {
    if constexpr (gated) {
      const Scalar query_gate = gate(last_row(t));
      gamma_gradient(last_row(t)) += query_gate * Scalar(queries.row(t).dot(readout_state.row(t)));
      dQ.row(t) = query_gate * readout_state.row(t);
    } else {
      dQ.row(t) = readout_state.row(t);
    }
  }

  // dK += [Z + Z^T, P^T] [K; Q] with Z = diag(b) H;  dQ += P K.
  auto mix = s.mix.topLeftCorner(L, L + C);
  for (index_t r = 0; r < L; ++r) {
    mix.row(r).head(r) = betas(r) * H.row(r).head(r);
    mix(r, r) = Scalar(0.0);
  }
  for (index_t r = 0; r < L; ++r)
    for (index_t col = r + 1; col < L; ++col) mix(r, col) = mix(col, r);
  mix.rightCols(C) = P.transpose();
  dK.noalias() += mix * rows;
  dQ.noalias() += P * keys;

  // dV = diag(b) dY;  dS_0 = Gamma_L D + [K; Q]^T [-diag(Gamma) dV; diag(Gamma_q) dO].
  for (index_t r = 0; r < L; ++r) {
    auto row = dY.row(r);
    row *= betas(r);
    if (!grad.v.absent())
      store_converted<Scalar>(row, &grad.v(c.row, c.first * n_h + r, h, first_column), grad.v.stride(3));
    row *= -gate(r);
  }
  if constexpr (gated)
    for (index_t t = 0; t < C; ++t) dO.row(t) *= gate(last_row(t));
  auto& initial_gradient = s.initial_gradient;
  if constexpr (gated)
    initial_gradient = end_decay * D;
  else
    initial_gradient = D;
  initial_gradient.noalias() += rows.transpose() * gradients;
  s.adjoint.swap(initial_gradient);

  // Write dk (through the key normalisation) and db per row; dq (through the scale and the query normalisation)
  // and dg per token; dg_t = sum of dgamma over the rows of tokens t..C-1.
  for (index_t r = 0; r < L; ++r) {
    const index_t input_row = c.first * n_h + r;
    store_gradient(row_grad.beta, beta_gradient(r), c.row, input_row, h);
    if (!row_grad.k.absent()) {
      normalize_backward(keys.row(r), norms(r), dK.row(r));
      store_converted<Scalar>(dK.row(r), &row_grad.k(c.row, input_row, h, 0), row_grad.k.stride(3));
    }
  }
  if (!row_grad.q.absent()) {
    // dq = J^T (scale dQ); the kept queries are scale * q_hat, so q_hat = queries / scale (dq = 0 when scale = 0).
    const Scalar scale = static_cast<Scalar>(p.scale);
    dQ *= scale;
    for (index_t t = 0; t < C; ++t) {
      if (Scalar(0.0) < scale || scale < Scalar(0.0))
        normalize_backward(queries.row(t) / scale, norms(L + t), dQ.row(t));
      store_converted<Scalar>(dQ.row(t), &row_grad.q(c.row, c.first + t, h, 0), row_grad.q.stride(3));
    }
  }
  if constexpr (gated) {
    Scalar later(0.0);
    for (index_t t = C; t-- > 0;) {
      for (int j = 0; j < n_h; ++j) later += gamma_gradient(t * n_h + j);
      store_gradient(row_grad.g, later, c.row, c.first + t, h);
    }
  }
}

/// Chunks per segment of a sequence of `chunks` chunks: all of them when they fit in max_checkpoints kept chunks;
/// else max(max_checkpoints, ceil(sqrt(chunks))), the longest segment the memory bound allows, so that the first
/// pass (which stops where the last segment starts) recomputes as little as it can.
inline index_t chunked_segment_length(index_t chunks, index_t max_checkpoints) {
  return chunks <= max_checkpoints ? chunks : std::max(max_checkpoints, ceil_sqrt(chunks));
}

/// Per-block parts of the gradients of k, q, beta and g when a pair's value columns are split over threads: each
/// block writes its part here (dense, in the model's scalar) and backward_chunked adds the parts in block order.
template <class Scalar>
struct RowGradientParts {
  std::vector<Scalar> k, q, beta, g;
  DeltaGradients<Scalar> views;

  template <class T, class S>
  RowGradientParts(const Problem& p, const DeltaGradients<T, S>& grad) {
    const index_t B = p.batch, T_ = p.tokens, H = p.heads, R = p.tokens * p.householder_steps, K = p.key_dim;
    auto part = [](std::vector<Scalar>& buffer, bool wanted, const auto& extents) {
      using Part = View<Scalar, std::tuple_size_v<std::remove_cvref_t<decltype(extents)>>>;
      if (!wanted) return Part{};
      index_t size = 1;
      for (index_t e : extents) size *= e;
      buffer.assign(static_cast<std::size_t>(size), Scalar(0.0));
      return Part(buffer.data(), extents);
    };
    views.k = part(k, !grad.k.absent(), std::array<index_t, 4>{B, R, H, K});
    views.q = part(q, !grad.q.absent(), std::array<index_t, 4>{B, T_, H, K});
    views.beta = part(beta, !grad.beta.absent(), std::array<index_t, 3>{B, R, H});
    views.g = part(g, !grad.g.absent(), std::array<index_t, 3>{B, T_, H});
  }
};

/// out = sum over blocks of parts[b] (in block order), converted to out's element type.
template <class Scalar, class T, std::size_t Rank, class Part>
void add_row_gradient_parts(const std::vector<RowGradientParts<Scalar>>& parts, Part part, const View<T, Rank>& out) {
  if (out.absent()) return;
  const auto& extents = out.extents();
  const index_t inner = extents[Rank - 1];
  index_t outer = 1;
  for (std::size_t d = 0; d + 1 < Rank; ++d) outer *= extents[d];
  std::array<index_t, Rank> index{};
  for (index_t o = 0; o < outer; ++o) {
    index_t rest = o;
    for (std::size_t d = Rank - 1; d-- > 0;) {
      index[d] = rest % extents[d];
      rest /= extents[d];
    }
    for (index_t i = 0; i < inner; ++i) {
      index[Rank - 1] = i;
      const std::size_t flat = static_cast<std::size_t>(o * inner + i);
      Scalar sum = part(parts[0])[flat];
      for (std::size_t b = 1; b < parts.size(); ++b) sum = sum + part(parts[b])[flat];
      std::apply([&](auto... at) { out(at...) = convert_scalar<T>(sum); }, index);
    }
  }
}

/// Chunked DeltaNet / DeltaProduct backward (see the file comment). Work items are (sequence, head) pairs; when
/// they are fewer than threads, each pair's value columns are split into blocks as in the forward
/// (cpu/parallel.hpp): the state, u, dY, dV and dS_0 are column by column, while the gradients of k, q, beta and g
/// are sums over the columns, so each block computes its part and the parts are added afterwards (in a fixed
/// order: the result depends on the number of blocks at rounding level only).
template <DeltaProductModel Model, class T, class S>
void backward_chunked(const CpuBackend& backend, const Model& model, const Problem& p, const DeltaInputs<T, S>& in,
                      const OutputGradients<T, S>& out_grad, const DeltaGradients<T, S>& grad,
                      const BackwardLimits& limits) {
  using Scalar = typename Model::scalar_type;
  constexpr bool gated = Model::gating == Gating::scalar_decay;
  const index_t pairs = p.sequences * p.heads;
  if (pairs <= 0) return;
  const index_t chunk = chunk_tokens(backend, p);
  const index_t max_checkpoints = std::max<index_t>(limits.max_checkpoints, 1);
  const index_t longest_chunks = (longest_sequence(p) + chunk - 1) / chunk;
  const SegmentPlan longest_plan(longest_chunks, chunked_segment_length(longest_chunks, max_checkpoints));
  const index_t checkpoint_states = std::max<index_t>(longest_plan.count - 1, 0);
  const index_t kept_chunks = std::max<index_t>(std::min(longest_plan.length, longest_chunks), 1);
  const int wanted = cpu_threads_for(backend, p);
  const ValueColumnBlocks blocks = value_column_blocks(pairs, wanted, p.value_dim);
  const index_t items = pairs * blocks.count;
  const int workers = static_cast<int>(std::min<index_t>(wanted, items));

  std::vector<ChunkedBackwardScratch<Scalar>> scratch;
  scratch.reserve(static_cast<std::size_t>(workers));
  for (int w = 0; w < workers; ++w)
    scratch.emplace_back(p, chunk, gated, checkpoint_states, kept_chunks, blocks.width);
  std::vector<RowGradientParts<Scalar>> parts;
  if (blocks.count > 1)
    for (index_t b = 0; b < blocks.count; ++b) parts.emplace_back(p, grad);

  auto run = [&](ChunkedBackwardScratch<Scalar>& s, index_t n, index_t h, const ColumnRange& columns,
                 const auto& row_grad) {
    const auto seq = p.sequence(n);
    const index_t tokens = seq.end - seq.begin, first_column = columns.begin;
    s.fit_value_columns(columns.size());
    load_state<Scalar>(out_grad.final_state, n, h, first_column, s.adjoint);
    load_state<Scalar>(in.initial_state, n, h, first_column, s.state);
    auto span = [&](index_t unit) {
      const index_t first = seq.begin + unit * chunk;
      return ChunkSpan{seq.row, first, std::min(chunk, seq.end - first)};
    };
    if (tokens > 0) {
      const index_t chunks = (tokens + chunk - 1) / chunk;
      const SegmentPlan plan(chunks, chunked_segment_length(chunks, max_checkpoints));
      reverse_with_checkpoints<Scalar>(
          plan, chunks, s.state, s.checkpoints,
          [&](StateArg<Scalar> state, index_t unit) {
            state_pass_chunk(model, p, in, h, span(unit), first_column, state, s, -1);
          },
          [&](StateArg<Scalar> state, index_t unit, index_t slot) {
            state_pass_chunk(model, p, in, h, span(unit), first_column, state, s, slot);
          },
          [&](index_t unit, index_t slot) {
            reverse_chunk<Model>(p, in, out_grad, grad, row_grad, h, span(unit), first_column, slot, s);
          });
    }
    store_state<Scalar>(s.adjoint, grad.initial_state, n, h, first_column);
  };

  parallel_for(items, workers, [&](index_t item, int worker) {
    const index_t pair = item / blocks.count, block = item % blocks.count;
    ChunkedBackwardScratch<Scalar>& s = scratch[static_cast<std::size_t>(worker)];
    if (parts.empty())
      run(s, pair / p.heads, pair % p.heads, blocks.block(block), grad);
    else
      run(s, pair / p.heads, pair % p.heads, blocks.block(block), parts[static_cast<std::size_t>(block)].views);
  });

  if (!parts.empty()) {
    add_row_gradient_parts(parts, [](const RowGradientParts<Scalar>& x) { return x.k.data(); }, grad.k);
    add_row_gradient_parts(parts, [](const RowGradientParts<Scalar>& x) { return x.q.data(); }, grad.q);
    add_row_gradient_parts(parts, [](const RowGradientParts<Scalar>& x) { return x.beta.data(); }, grad.beta);
    add_row_gradient_parts(parts, [](const RowGradientParts<Scalar>& x) { return x.g.data(); }, grad.g);
  }
}

}  // namespace deltaproduct::detail
