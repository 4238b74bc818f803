// The CPU backend's chunked backward pass for DeltaNet / DeltaProduct: back-propagation through the chunked (UT)
// form of cpu/chunked.hpp, chunk by chunk in reverse, as matrix-matrix products. It builds each chunk's factors
// with the forward's own functions (load_delta_chunk, build_delta_chunk_factors).
//
// Forward form of one chunk (rows r = micro-steps, tokens t, S_0 the state before the chunk; cpu/chunked.hpp):
//   Gamma_r = exp(gamma_r), c_r = exp(gamma_L - gamma_r), E_rs = exp(gamma_r - gamma_s),
//   A_rs = b_r E_rs (k_r . k_s) for s < r,   Y = diag(b) (V - diag(Gamma) K S_0),   u = (I + A)^{-1} Y
//   S_L = Gamma_L S_0 + K^T diag(c) u
//   O = diag(Gamma_q) Q S_0 + M u,   M_ts = E_r(t)s (q_t . k_s) for s <= r(t)   (Q: scaled, normalised queries)
// Backward, given dO and D = dL/dS_L (dY: the gradient of Y; dA: of A, strictly lower):
//   du = M^T dO + diag(c) K D,   dY = (I + A)^{-T} du,   dA = -dY u^T,   dM = dO u^T
//   dV = diag(b) dY,   db_r = dY_r . (v_r - Gamma_r S_0^T k_r) + k_r . (H K)_r,   H = dA o E (strictly lower)
//   dQ = diag(Gamma_q) dO S_0^T + P K,   P = dM o E_causal
//   dK = P^T Q + diag(c) u D^T - diag(b Gamma) dY S_0^T + diag(b) H K + (diag(b) H)^T K
//   dS_0 = Gamma_L D + (diag(Gamma_q) Q)^T dO - (diag(Gamma) K)^T dV   (one product of stacked blocks)
//   dgamma: each exponent x gets dL/dx = (its factor's gradient) * (the factor), e.g. sum_s dM_ts M_ts for
//   gamma_r(t); dg_t sums dgamma over the rows of tokens t..end of the chunk (gamma is a cumulative sum of g).
//
// Memory: the reverse pass needs each chunk's start state and factors, last chunk first. A state pass runs the
// chunks forward and keeps, per chunk, what the reverse pass needs (KeptChunks: S_0, u, K, Q, A, M and a few
// vectors), so the reverse pass neither reloads nor rebuilds them. A sequence of at most
// BackwardLimits::max_checkpoints chunks keeps all its chunks: one state pass, then the reverse pass. A longer one
// first keeps only the states at the start of every segment of ceil(sqrt(chunks)) chunks (one extra state pass),
// then runs the state pass and the reverse pass segment by segment from there. Per worker that is at most
// max_checkpoints kept chunks, or for longer sequences ceil(sqrt(chunks)) kept chunks plus as many K x V
// checkpoints. A kept chunk holds K V + C n_h V + (C n_h + C) (K + C n_h) numbers: for K = V = 128, n_h = 1 and
// chunks of 64, about 3 K x V states (12 MB in float for 64 chunks). Nothing proportional to T is stored. Work
// items are (sequence, head) pairs.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
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

/// What the reverse pass needs of each chunk of a segment, kept by the state pass so that the reverse pass neither
/// reloads nor rebuilds it: the chunk-start state S_0, the pseudo-values u, the normalised keys, the scaled,
/// normalised queries (without the gates), the normalisations' divisors, A, M, the betas and the cumulative
/// log-gates. Stacked by slot: K rows (states), L = C n_h rows or C rows per slot.
template <class Scalar>
struct KeptChunks {
  StateMatrix<Scalar> states;           ///< (slots K) x V
  ChunkMatrix<Scalar> pseudo_values;    ///< (slots L) x V
  ChunkMatrix<Scalar> keys;             ///< (slots L) x K
  ChunkMatrix<Scalar> queries;          ///< (slots C) x K
  ChunkMatrix<Scalar> transition;       ///< (slots L) x L: A, strictly lower
  ChunkMatrix<Scalar> readout;          ///< (slots C) x L: M
  RowVector<Scalar> betas, log_decays;  ///< slots L
  RowVector<Scalar> key_divisors;       ///< slots L: n of each key (normalization_divisor)
  RowVector<Scalar> query_divisors;     ///< slots C: n of each query

  KeptChunks(const Problem& p, index_t chunk, bool gated, index_t slots)
      : states(slots * p.key_dim, p.value_dim),
        pseudo_values(slots * chunk * p.householder_steps, p.value_dim),
        keys(slots * chunk * p.householder_steps, p.key_dim),
        queries(slots * chunk, p.key_dim),
        transition(slots * chunk * p.householder_steps, chunk * p.householder_steps),
        readout(slots * chunk, chunk * p.householder_steps),
        betas(slots * chunk * p.householder_steps),
        log_decays(gated ? slots * chunk * p.householder_steps : 0),
        key_divisors(slots * chunk * p.householder_steps),
        query_divisors(slots * chunk) {}
};

/// Per-thread scratch of the chunked backward, sized for a full chunk (partial chunks use the leading rows) and
/// allocated once per call. L = chunk tokens * n_h rows, C = chunk tokens.
template <class Scalar>
struct ChunkedBackwardScratch {
  DeltaChunkFactors<Scalar> factors;  ///< the state pass's chunk factors (cpu/chunked.hpp)
  KeptChunks<Scalar> kept;
  StateMatrix<Scalar> checkpoints;  ///< segment-start states, stacked
  // Reverse pass.
  ChunkMatrix<Scalar> values;                       ///< L x V: V (reverse pass), V - diag(Gamma) K S_0 (state pass)
  ChunkMatrix<Scalar> pseudo_values;                ///< L x V: u of the first pass, which keeps nothing
  ChunkMatrix<Scalar> value_work;                   ///< L x V: du
  ChunkMatrix<Scalar> value_gradients;              ///< (C + L) x V: [dO; dY], then [dO; dV]
  ChunkMatrix<Scalar> state_products;               ///< (C + L) x K: [dO; dY] S_0^T
  ChunkMatrix<Scalar> inverse, inversion_scratch;   ///< L x L: (I + A)^{-1}
  ChunkMatrix<Scalar> end_keys;                     ///< L x K: diag(c) K (gated models)
  ChunkMatrix<Scalar> state_readers;                ///< (C + L) x K: [diag(Gamma_q) Q; -diag(Gamma) K]
  ChunkMatrix<Scalar> score_gradient;               ///< C x L: dM, then P
  ChunkMatrix<Scalar> system_gradient;              ///< L x L: dA, then H, then diag(b) H
  ChunkMatrix<Scalar> key_gradient, key_work;       ///< L x K
  ChunkMatrix<Scalar> query_gradient;               ///< C x K
  RowVector<Scalar> gate, carry;                    ///< L: Gamma_r, c_r
  RowVector<Scalar> beta_gradient, gamma_gradient;  ///< L
  StateMatrix<Scalar> state, adjoint, initial_gradient;  ///< K x V
  RowVector<Scalar> raw_row;                             ///< K: a raw key or query

  ChunkedBackwardScratch(const Problem& p, index_t chunk, bool gated, index_t checkpoint_states, index_t kept_chunks)
      : factors(chunk, p.householder_steps, p.key_dim, gated),
        kept(p, chunk, gated, kept_chunks),
        checkpoints(checkpoint_states * p.key_dim, p.value_dim),
        values(chunk * p.householder_steps, p.value_dim),
        pseudo_values(chunk * p.householder_steps, p.value_dim),
        value_work(chunk * p.householder_steps, p.value_dim),
        value_gradients(chunk * (p.householder_steps + 1), p.value_dim),
        state_products(chunk * (p.householder_steps + 1), p.key_dim),
        inverse(chunk * p.householder_steps, chunk * p.householder_steps),
        inversion_scratch(chunk * p.householder_steps, chunk * p.householder_steps),
        end_keys(gated ? chunk * p.householder_steps : 0, p.key_dim),
        state_readers(chunk * (p.householder_steps + 1), p.key_dim),
        score_gradient(chunk, chunk * p.householder_steps),
        system_gradient(chunk * p.householder_steps, chunk * p.householder_steps),
        key_gradient(chunk * p.householder_steps, p.key_dim),
        key_work(chunk * p.householder_steps, p.key_dim),
        query_gradient(chunk, p.key_dim),
        gate(chunk * p.householder_steps),
        carry(chunk * p.householder_steps),
        beta_gradient(chunk * p.householder_steps),
        gamma_gradient(chunk * p.householder_steps),
        state(p.key_dim, p.value_dim),
        adjoint(p.key_dim, p.value_dim),
        initial_gradient(p.key_dim, p.value_dim),
        raw_row(p.key_dim) {}
};

/// Where one chunk lies: batch row, first token, number of tokens.
struct ChunkSpan {
  index_t row = 0, first = 0, tokens = 0;
};

/// One chunk of the state pass: S <- Gamma_L S + (diag(c) K)^T u with u = T (V - diag(Gamma) K S), the chunk's
/// factors built by cpu/chunked.hpp. With slot >= 0, what the reverse pass needs is kept at that slot.
template <class Model, class Scalar, class T, class S>
void state_pass_chunk(const Model& model, const Problem& p, const DeltaInputs<T, S>& in, index_t h, const ChunkSpan& c,
                      StateArg<Scalar> state, ChunkedBackwardScratch<Scalar>& s, index_t slot) {
  constexpr int n_h = Model::householder_steps;
  constexpr bool gated = Model::gating == Gating::scalar_decay;
  DeltaChunkFactors<Scalar>& f = s.factors;
  KeptChunks<Scalar>& kept = s.kept;
  const index_t L = c.tokens * n_h, C = c.tokens, max_L = s.values.rows(), max_C = s.query_gradient.rows();
  const Options& options = model.options;
  load_delta_chunk<n_h, gated>(options, p, in, c.row, c.first, c.tokens, h, f);
  if (slot >= 0) {
    state_slot(kept.states, slot, p.key_dim) = state;
    kept.queries.middleRows(slot * max_C, C) = f.queries.topRows(C);  // before the build applies the gates
    // The divisors of the normalisations, from the raw rows load_delta_chunk has just read (still in cache).
    RowVector<Scalar>& raw = s.raw_row;
    for (index_t r = 0; r < L; ++r) {
      load_converted<Scalar>(&in.k(c.row, c.first * n_h + r, h, 0), in.k.stride(3), raw);
      kept.key_divisors(slot * max_L + r) =
          normalization_divisor(raw, options.key_normalization, options.normalization_eps);
    }
    for (index_t t = 0; t < C; ++t) {
      load_converted<Scalar>(&in.q(c.row, c.first + t, h, 0), in.q.stride(3), raw);
      kept.query_divisors(slot * max_C + t) =
          normalization_divisor(raw, options.query_normalization, options.normalization_eps);
    }
  }
  build_delta_chunk_factors<n_h, gated>(f);
  auto work = s.values.topRows(L);
  for (index_t r = 0; r < L; ++r)
    load_converted<Scalar>(&in.v(c.row, c.first * n_h + r, h, 0), in.v.stride(3), work.row(r));
  work.noalias() -= f.start_keys(gated) * state;
  auto u = slot >= 0 ? kept.pseudo_values.middleRows(slot * max_L, L) : s.pseudo_values.topRows(L);
  multiply_lower_staircase<Scalar>(f.solve.topLeftCorner(L, L), 1, work, u, false);
  if constexpr (gated) state *= f.end_decay;
  state.noalias() += f.end_keys(gated).transpose() * u;
  if (slot >= 0) {
    kept.keys.middleRows(slot * max_L, L) = f.keys.topRows(L);
    kept.transition.block(slot * max_L, 0, L, L) = f.transition.topLeftCorner(L, L);
    kept.readout.block(slot * max_C, 0, C, L) = f.readout.topLeftCorner(C, L);
    kept.betas.segment(slot * max_L, L) = f.betas.head(L);
    if constexpr (gated) kept.log_decays.segment(slot * max_L, L) = f.log_decays.head(L);
  }
}

/// Calls body(first, width, first_token) for the column panels [first, first + width) of a chunk's L micro-steps.
/// In the causal products only rows r >= first (tokens t >= first_token = first / n_h) meet a panel's columns, so
/// the products skip the zero part above the diagonal.
template <class Body>
void for_each_causal_panel(index_t steps, int householder_steps, Body&& body) {
  constexpr index_t panel = 32;
  for (index_t first = 0; first < steps; first += panel)
    body(first, std::min(panel, steps - first), first / householder_steps);
}

/// The rows of a gated model's scratch matrix, or for an ungated model the matrix they would equal (`plain`).
template <bool Gated, class Scalar, class Plain>
ConstChunkBlock<Scalar> gated_rows(ChunkMatrix<Scalar>& scratch, index_t rows, const Plain& plain) {
  if constexpr (Gated)
    return scratch.topRows(rows);
  else
    return plain;
}

/// The backward of one chunk (see the file comment), from what the state pass kept at `slot`: reads D = dL/dS_L
/// from s.adjoint and leaves dL/dS_0 there; writes the chunk's gradients.
template <class Model, class Scalar, class T, class S>
void reverse_chunk(const Problem& p, const DeltaInputs<T, S>& in, const OutputGradients<T, S>& out_grad,
                   const DeltaGradients<T, S>& grad, index_t h, const ChunkSpan& c, index_t slot,
                   ChunkedBackwardScratch<Scalar>& s) {
  constexpr int n_h = Model::householder_steps;
  constexpr bool gated = Model::gating == Gating::scalar_decay;
  KeptChunks<Scalar>& kept = s.kept;
  const index_t L = c.tokens * n_h, C = c.tokens, max_L = s.values.rows(), max_C = s.query_gradient.rows();
  const auto start = state_slot(kept.states, slot, p.key_dim);  // S_0
  const auto u = kept.pseudo_values.middleRows(slot * max_L, L);
  const auto keys = kept.keys.middleRows(slot * max_L, L);
  const auto queries = kept.queries.middleRows(slot * max_C, C);     // scale * normalised, without the gates
  const auto system = kept.transition.block(slot * max_L, 0, L, L);  // A, strictly lower
  const auto readout = kept.readout.block(slot * max_C, 0, C, L);    // M, zero above the staircase
  const auto betas = kept.betas.segment(slot * max_L, L);
  auto last_row = [](index_t t) { return t * n_h + n_h - 1; };  // r(t): the row whose state token t reads out
  auto panels = [&](auto&& body) { for_each_causal_panel(L, n_h, body); };

  // Gates Gamma_r = exp(gamma_r), carries c_r = exp(gamma_L - gamma_r), the carried keys diag(c) K, and the rows
  // [diag(Gamma_q) Q; -diag(Gamma) K] that read S_0 (for dS_0 in one product).
  s.gate.head(L).setOnes();
  s.carry.head(L).setOnes();
  if constexpr (gated) {
    const auto log_decays = kept.log_decays.segment(slot * max_L, L);
    multiply_by_decay(s.gate.head(L), Scalar(0.0), -log_decays);
    multiply_by_decay(s.carry.head(L), log_decays(L - 1), log_decays);
    s.end_keys.topRows(L) = s.carry.head(L).asDiagonal() * keys;
  }
  const ConstChunkBlock<Scalar> end_keys = gated_rows<gated>(s.end_keys, L, keys);
  auto decayed_queries = s.state_readers.topRows(C);
  for (index_t t = 0; t < C; ++t) decayed_queries.row(t) = s.gate(last_row(t)) * queries.row(t);
  s.state_readers.middleRows(C, L) = -(s.gate.head(L).asDiagonal() * keys);
  const Scalar end_decay = s.gate(L - 1);

  auto values = s.values.topRows(L);
  for (index_t r = 0; r < L; ++r)
    load_converted<Scalar>(&in.v(c.row, c.first * n_h + r, h, 0), in.v.stride(3), values.row(r));
  const StateMatrix<Scalar>& D = s.adjoint;
  auto dO = s.value_gradients.topRows(C);
  auto dY = s.value_gradients.middleRows(C, L);
  for (index_t t = 0; t < C; ++t)
    load_converted<Scalar>(&out_grad.o(c.row, c.first + t, h, 0), out_grad.o.stride(3), dO.row(t));
  auto gamma_gradient = s.gamma_gradient.head(L);
  gamma_gradient.setZero();

  // du = M^T dO + diag(c) K D;  dY = (I + A)^{-T} du.
  auto du = s.value_work.topRows(L);
  du.noalias() = end_keys * D;
  panels([&](index_t first, index_t width, index_t first_token) {
    du.middleRows(first, width).noalias() +=
        readout.block(first_token, first, C - first_token, width).transpose() * dO.bottomRows(C - first_token);
  });
  auto inverse = s.inverse.topLeftCorner(L, L);
  invert_unit_lower_triangular<Scalar>(system, inverse, s.inversion_scratch.topLeftCorner(L, L));
  panels([&](index_t first, index_t width, index_t) {
    dY.middleRows(first, width).noalias() =
        inverse.block(first, first, L - first, width).transpose() * du.bottomRows(L - first);
  });
  // [dO; dY] S_0^T in one product.
  s.state_products.topRows(C + L).noalias() = s.value_gradients.topRows(C + L) * start.transpose();
  const auto readout_state = s.state_products.topRows(C);     // dO S_0^T
  const auto keys_state = s.state_products.middleRows(C, L);  // dY S_0^T

  // P = dM o E_causal with dM = dO u^T; gamma_r(t) and gamma_s get +-dM_ts M_ts.
  auto P = s.score_gradient.topLeftCorner(C, L);
  panels([&](index_t first, index_t width, index_t first_token) {
    P.block(first_token, first, C - first_token, width).noalias() =
        dO.bottomRows(C - first_token) * u.middleRows(first, width).transpose();
  });
  for (index_t t = 0; t < C; ++t) {
    const index_t visible = last_row(t) + 1;
    auto row = P.row(t);
    row.tail(L - visible).setZero();
    if constexpr (gated) {
      for (index_t col = 0; col < visible; ++col) {
        const Scalar through_decay = row(col) * readout(t, col);
        gamma_gradient(last_row(t)) += through_decay;
        gamma_gradient(col) -= through_decay;
      }
      multiply_by_decay(row.head(visible), kept.log_decays(slot * max_L + last_row(t)),
                        kept.log_decays.segment(slot * max_L, visible));
    }
  }

  // dQ = diag(Gamma_q) dO S_0^T + P K;  dK = P^T Q + ...
  auto dQ = s.query_gradient.topRows(C);
  auto dK = s.key_gradient.topRows(L);
  for (index_t t = 0; t < C; ++t) {
    if constexpr (gated) gamma_gradient(last_row(t)) += decayed_queries.row(t).dot(readout_state.row(t));
    dQ.row(t) = s.gate(last_row(t)) * readout_state.row(t);
  }
  panels([&](index_t first, index_t width, index_t first_token) {
    const auto block = P.block(first_token, first, C - first_token, width);
    dQ.bottomRows(C - first_token).noalias() += block * keys.middleRows(first, width);
    dK.middleRows(first, width).noalias() = block.transpose() * queries.bottomRows(C - first_token);
  });

  // dK += diag(c) u D^T - diag(b Gamma) dY S_0^T;  db_r = dY_r . (v_r - Gamma_r S_0^T k_r) + ...
  auto key_work = s.key_work.topRows(L);
  key_work.noalias() = u * D.transpose();
  for (index_t r = 0; r < L; ++r) {
    if constexpr (gated) {
      const Scalar through_carry = s.carry(r) * Scalar(key_work.row(r).dot(keys.row(r)));
      gamma_gradient(L - 1) += through_carry;
      gamma_gradient(r) -= through_carry;
    }
    dK.row(r) += s.carry(r) * key_work.row(r);
  }
  if constexpr (gated) gamma_gradient(L - 1) += end_decay * Scalar(D.cwiseProduct(start).sum());
  auto beta_gradient = s.beta_gradient.head(L);
  for (index_t r = 0; r < L; ++r) {
    const Scalar along_key = keys_state.row(r).dot(keys.row(r));  // dY_r . (S_0^T k_r)
    const Scalar weight = betas(r) * s.gate(r);
    if constexpr (gated) gamma_gradient(r) -= weight * along_key;
    dK.row(r) -= weight * keys_state.row(r);
    beta_gradient(r) = Scalar(dY.row(r).dot(values.row(r))) - s.gate(r) * along_key;
  }

  // dA = -dY u^T (strictly lower); gamma_r and gamma_s get +-dA_rs A_rs; H = dA o E;
  // db_r += k_r . (H K)_r;  dK += diag(b) H K + (diag(b) H)^T K.
  auto H = s.system_gradient.topLeftCorner(L, L);
  panels([&](index_t first, index_t width, index_t) {
    H.block(first, first, L - first, width).noalias() =
        dY.bottomRows(L - first) * u.middleRows(first, width).transpose();
  });
  for (index_t r = 0; r < L; ++r) {
    auto row = H.row(r);
    row.tail(L - r).setZero();
    row.head(r) = -row.head(r);
    if constexpr (gated) {
      for (index_t col = 0; col < r; ++col) {
        const Scalar through_decay = row(col) * system(r, col);
        gamma_gradient(r) += through_decay;
        gamma_gradient(col) -= through_decay;
      }
      multiply_by_decay(row.head(r), kept.log_decays(slot * max_L + r), kept.log_decays.segment(slot * max_L, r));
    }
  }
  key_work.setZero();
  panels([&](index_t first, index_t width, index_t) {
    key_work.bottomRows(L - first).noalias() += H.block(first, first, L - first, width) * keys.middleRows(first, width);
  });
  for (index_t r = 0; r < L; ++r) {
    beta_gradient(r) += key_work.row(r).dot(keys.row(r));
    dK.row(r) += betas(r) * key_work.row(r);
    H.row(r) *= betas(r);
  }
  panels([&](index_t first, index_t width, index_t) {
    dK.middleRows(first, width).noalias() +=
        H.block(first, first, L - first, width).transpose() * keys.bottomRows(L - first);
  });

  // dS_0 = Gamma_L D + [diag(Gamma_q) Q; -diag(Gamma) K]^T [dO; dV], with dV = diag(b) dY (in place).
  auto dV = dY;
  for (index_t r = 0; r < L; ++r) dV.row(r) *= betas(r);
  auto& initial_gradient = s.initial_gradient;
  if constexpr (gated)
    initial_gradient = end_decay * D;
  else
    initial_gradient = D;
  initial_gradient.noalias() += s.state_readers.topRows(C + L).transpose() * s.value_gradients.topRows(C + L);
  s.adjoint.swap(initial_gradient);

  // Write dk (through the key normalisation), dv, db per row; dq (through the scale and the query normalisation)
  // and dg per token; dg_t = sum of dgamma over the rows of tokens t..C-1.
  for (index_t r = 0; r < L; ++r) {
    const index_t input_row = c.first * n_h + r;
    store_gradient(grad.beta, beta_gradient(r), c.row, input_row, h);
    if (!grad.v.absent()) store_converted<Scalar>(dV.row(r), &grad.v(c.row, input_row, h, 0), grad.v.stride(3));
    if (!grad.k.absent()) {
      normalize_backward(keys.row(r), kept.key_divisors(slot * max_L + r), dK.row(r));
      store_converted<Scalar>(dK.row(r), &grad.k(c.row, input_row, h, 0), grad.k.stride(3));
    }
  }
  if (!grad.q.absent()) {
    // dq = J^T (scale dQ); the kept queries are scale * q_hat, so q_hat = queries / scale (dq = 0 when scale = 0).
    const Scalar scale = static_cast<Scalar>(p.scale);
    dQ *= scale;
    for (index_t t = 0; t < C; ++t) {
      if (Scalar(0.0) < scale || scale < Scalar(0.0))
        normalize_backward(queries.row(t) / scale, kept.query_divisors(slot * max_C + t), dQ.row(t));
      store_converted<Scalar>(dQ.row(t), &grad.q(c.row, c.first + t, h, 0), grad.q.stride(3));
    }
  }
  if constexpr (gated) {
    Scalar later(0.0);
    for (index_t t = C; t-- > 0;) {
      for (int j = 0; j < n_h; ++j) later += gamma_gradient(t * n_h + j);
      store_gradient(grad.g, later, c.row, c.first + t, h);
    }
  }
}

/// Chunked DeltaNet / DeltaProduct backward (see the file comment).
template <DeltaProductModel Model, class T, class S>
void backward_chunked(const CpuBackend& backend, const Model& model, const Problem& p, const DeltaInputs<T, S>& in,
                      const OutputGradients<T, S>& out_grad, const DeltaGradients<T, S>& grad,
                      const BackwardLimits& limits) {
  using Scalar = typename Model::scalar_type;
  constexpr bool gated = Model::gating == Gating::scalar_decay;
  const index_t chunk = chunk_tokens(backend, p);
  const index_t max_checkpoints = std::max<index_t>(limits.max_checkpoints, 1);
  // Chunks per segment: all of a sequence's chunks when they fit in max_checkpoints, else ceil(sqrt(chunks)).
  auto segment_chunks = [&](index_t chunks) { return chunks <= max_checkpoints ? chunks : ceil_sqrt(chunks); };
  const index_t longest_chunks = (longest_sequence(p) + chunk - 1) / chunk;
  const SegmentPlan longest_plan(longest_chunks, segment_chunks(longest_chunks));
  const index_t checkpoint_states = std::max<index_t>(longest_plan.count - 1, 0);
  const index_t kept_chunks = std::max<index_t>(std::min(longest_plan.length, longest_chunks), 1);

  for_each_backward_item<ChunkedBackwardScratch<Scalar>>(
      backend, p, [&] { return ChunkedBackwardScratch<Scalar>(p, chunk, gated, checkpoint_states, kept_chunks); },
      [&](ChunkedBackwardScratch<Scalar>& s, index_t n, index_t h) {
        const auto seq = p.sequence(n);
        const index_t tokens = seq.end - seq.begin;
        load_state<Scalar>(out_grad.final_state, n, h, s.adjoint);
        load_state<Scalar>(in.initial_state, n, h, s.state);
        auto span = [&](index_t unit) {
          const index_t first = seq.begin + unit * chunk;
          return ChunkSpan{seq.row, first, std::min(chunk, seq.end - first)};
        };
        if (tokens > 0) {
          const index_t chunks = (tokens + chunk - 1) / chunk;
          const SegmentPlan plan(chunks, segment_chunks(chunks));
          reverse_with_checkpoints<Scalar>(
              plan, chunks, s.state, s.checkpoints,
              [&](StateArg<Scalar> state, index_t unit) {
                state_pass_chunk(model, p, in, h, span(unit), state, s, -1);
              },
              [&](StateArg<Scalar> state, index_t unit, index_t slot) {
                state_pass_chunk(model, p, in, h, span(unit), state, s, slot);
              },
              [&](index_t unit, index_t slot) { reverse_chunk<Model>(p, in, out_grad, grad, h, span(unit), slot, s); });
        }
        store_state<Scalar>(s.adjoint, grad.initial_state, n, h);
      });
}

}  // namespace deltaproduct::detail
