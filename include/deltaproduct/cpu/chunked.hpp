// The chunked form of the CPU forward pass: a sequence is cut into chunks of C tokens, and each chunk advances the
// state with a few matrix-matrix products (Eigen GEMM) instead of C n_h rank-1 updates. It computes the recurrence of
// core/recurrence.hpp in a different order, so it agrees with the token loop to rounding error, not bit for bit.
//
// DeltaProduct, one chunk (the compact WY / UT representation of a product of Householder matrices; "Parallelizing
// Linear Transformers with the Delta Rule over Sequence Length", Yang et al., 2024). Number the chunk's micro-steps
// r = 1..L (L = C n_h, rows t n_h + j of k, v and beta). The gate a_r is exp(g_t) at the first micro-step of token t
// (1 elsewhere, and everywhere without gating); gamma_r = sum_{p <= r} log a_p and Gamma_r = exp(gamma_r). The
// micro-step S_r = a_r S_{r-1} + b_r k_r (v_r - a_r S_{r-1}^T k_r)^T unrolls to
//   S_r = Gamma_r S_0 + sum_{s <= r} exp(gamma_r - gamma_s) k_s u_s^T,
// where the pseudo-values u_r = b_r (v_r - (a_r S_{r-1})^T k_r) solve the unit lower triangular system
//   (I + A) u = diag(b) (V - diag(Gamma) K S_0),   A_rs = b_r exp(gamma_r - gamma_s) (k_r . k_s) for s < r.
// With T = (I + A)^{-1} diag(b) (formed once per chunk), the chunk is
//   u = T (V - diag(Gamma) K S_0)
//   o_t = Gamma_r(t) scale S_0^T q_t + sum_{s <= r(t)} exp(gamma_r(t) - gamma_s) scale (q_t . k_s) u_s
//   S_L = Gamma_L S_0 + (diag(exp(gamma_L - gamma)) K)^T u,
// r(t) being the last micro-step of token t. Decays are exponentials of differences of gamma (never ratios of
// exponentials), so long decays underflow to 0 instead of overflowing. T is bounded: T_rs = -b_r k_r^T (product of
// the Householder factors between s and r) k_s b_s for s < r, and those factors are non-expansive.
//
// Diagonal LRNN, one chunk (per key channel i; a may be 0 or negative, so nothing is divided by a product of a):
// with P_t = a_1 ... a_t (running products from the chunk start) and D_ts = a_{s+1} ... a_t,
//   S_t = diag(P_t) S_0 + sum_{s <= t} diag(D_ts) k_s v_s^T,
//   o_t = scale (q_t o P_t)^T S_0 + sum_{s <= t} M_ts v_s,   M_ts = scale sum_i q_ti D_ts,i k_si,
// so the state and the outputs are matrix products; M is built from the keys propagated token by token through the
// decays (a C x K elementwise product per token), never from the K x V state.
//
// The pieces are separate functions of namespace detail (load a chunk, build its factors, apply them to state
// columns) so that the chunked backward pass builds on the same factors.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cstddef>
#include <type_traits>

#include "deltaproduct/core/arguments.hpp"
#include "deltaproduct/core/backend.hpp"
#include "deltaproduct/core/config.hpp"
#include "deltaproduct/core/contract.hpp"
#include "deltaproduct/core/recurrence.hpp"
#include "deltaproduct/core/scalar.hpp"
#include "deltaproduct/cpu/parallel.hpp"

namespace deltaproduct::detail {

/// Row-major chunk-sized matrices: allocated once per call at the largest chunk, then used through blocks.
template <class Scalar>
using ChunkMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using ChunkBlock = Eigen::Ref<ChunkMatrix<Scalar>, 0, Eigen::OuterStride<>>;
template <class Scalar>
using ConstChunkBlock = Eigen::Ref<const ChunkMatrix<Scalar>, 0, Eigen::OuterStride<>>;

/// dst(i) = x(fixed..., i) for i < dst.size(), converted to the state scalar; a plain copy when the types agree and
/// the elements are contiguous.
template <class Scalar, class T, class Row>
void load_converted(const T* first, index_t stride, Row&& dst) {
  if constexpr (std::is_same_v<T, Scalar>) {
    if (stride == 1) {
      dst = Eigen::Map<const RowVector<Scalar>>(first, dst.size());
      return;
    }
  }
  for (Eigen::Index i = 0; i < dst.size(); ++i) dst(i) = convert_scalar<Scalar>(first[i * stride]);
}

template <class Scalar, class T, class Row>
void store_converted(const Row& src, T* first, index_t stride) {
  if constexpr (std::is_same_v<T, Scalar>) {
    if (stride == 1) {
      Eigen::Map<RowVector<Scalar>>(first, src.size()) = src;
      return;
    }
  }
  for (Eigen::Index i = 0; i < src.size(); ++i) first[i * stride] = convert_scalar<T>(src(i));
}

/// normalize() of core/recurrence.hpp applied to every row of a block. Each row's sum of squares runs over i in the
/// same order with the same operations (x_0 x_0, then + x_i x_i, then + eps), and each element is divided by the
/// same square root, so every row equals normalize(row) bit for bit (tested). Eight rows are summed side by side,
/// so their independent sums overlap instead of each waiting on its own chain of additions.
template <class Scalar>
void normalize_rows(ChunkBlock<Scalar> rows, Normalization mode, double eps) {
  if (mode == Normalization::none) return;
  constexpr Eigen::Index group = 8;
  for (Eigen::Index first = 0; first < rows.rows(); first += group) {
    const Eigen::Index count = std::min(group, rows.rows() - first);
    std::array<Scalar, group> sum_of_squares;
    for (Eigen::Index j = 0; j < count; ++j) sum_of_squares[j] = rows(first + j, 0) * rows(first + j, 0);
    for (Eigen::Index i = 1; i < rows.cols(); ++i)
      for (Eigen::Index j = 0; j < count; ++j)
        sum_of_squares[j] = sum_of_squares[j] + rows(first + j, i) * rows(first + j, i);
    for (Eigen::Index j = 0; j < count; ++j) {
      if (mode == Normalization::l2_eps) sum_of_squares[j] = sum_of_squares[j] + static_cast<Scalar>(eps);
      if (!(Scalar(0.0) < sum_of_squares[j])) continue;
      const Scalar norm = scalar_sqrt(sum_of_squares[j]);
      auto row = rows.row(first + j);
      for (Eigen::Index i = 0; i < rows.cols(); ++i) row(i) = row(i) / norm;
    }
  }
}

/// x_s <- x_s exp(reference - gamma_s): the decay from micro-step s to a later reference micro-step, the exponential
/// of a difference of cumulative log-gates. Vectorised for float and double; scalar_exp otherwise.
template <class Scalar, class Row, class Gamma>
void multiply_by_decay(Row&& x, const Scalar& reference, const Gamma& gamma) {
  if constexpr (std::is_floating_point_v<Scalar>) {
    x.array() *= (reference - gamma.array()).exp();
  } else {
    for (Eigen::Index s = 0; s < x.size(); ++s) x(s) = x(s) * scalar_exp(reference - gamma(s));
  }
}

/// product (=, or += when `accumulate`) lower * rhs, for a `lower` whose row i is zero after column
/// (i + 1) * columns_per_row - 1 (lower triangular for 1; the readout's staircase for n_h). Rows go in blocks of 16,
/// each multiplied only by the columns it sees, which skips most of the zeros.
template <class Scalar, class Lower, class Rhs, class Product>
void multiply_lower_staircase(const Lower& lower, index_t columns_per_row, const Rhs& rhs, Product&& product,
                              bool accumulate) {
  constexpr index_t block_rows = 16;
  for (index_t first = 0; first < lower.rows(); first += block_rows) {
    const index_t rows = std::min(block_rows, lower.rows() - first);
    const index_t seen = std::min((first + rows) * columns_per_row, lower.cols());
    auto block = product.middleRows(first, rows);
    if (accumulate)
      block.noalias() += lower.block(first, 0, rows, seen) * rhs.topRows(seen);
    else
      block.noalias() = lower.block(first, 0, rows, seen) * rhs.topRows(seen);
  }
}

/// T = (I + A)^{-1} for A strictly lower triangular (its diagonal and upper part are never read). T is unit lower
/// triangular and written with zeros above the diagonal. Block recursion, so that the work is matrix products:
///   [[I + A11, 0], [A21, I + A22]]^{-1} = [[T11, 0], [-T22 A21 T11, T22]],
/// with forward substitution (row r of T = e_r - A_r,<r T_<r) on blocks of at most 16 rows. `scratch` is n x n.
template <class Scalar>
void invert_unit_lower_triangular(const ConstChunkBlock<Scalar>& A, ChunkBlock<Scalar> T, ChunkBlock<Scalar> scratch) {
  const Eigen::Index n = A.rows();
  constexpr Eigen::Index substitution_rows = 16;
  if (n <= substitution_rows) {
    for (Eigen::Index r = 0; r < n; ++r) {
      T.row(r).setZero();
      if (r > 0) T.row(r).head(r).noalias() -= A.row(r).head(r) * T.topLeftCorner(r, r);  // row starts at 0
      T(r, r) = Scalar(1.0);
    }
    return;
  }
  const Eigen::Index top = (n / 2 + 7) / 8 * 8, bottom = n - top;  // split on a multiple of 8 rows
  invert_unit_lower_triangular<Scalar>(A.topLeftCorner(top, top), T.topLeftCorner(top, top), scratch);
  invert_unit_lower_triangular<Scalar>(A.bottomRightCorner(bottom, bottom), T.bottomRightCorner(bottom, bottom),
                                       scratch);
  T.topRightCorner(top, bottom).setZero();
  auto product = scratch.topLeftCorner(bottom, top);
  product.noalias() = A.bottomLeftCorner(bottom, top) * T.topLeftCorner(top, top);
  T.bottomLeftCorner(bottom, top).setZero();
  T.bottomLeftCorner(bottom, top).noalias() -= T.bottomRightCorner(bottom, bottom) * product;
}

// ---------------------------------------------------------------------------------------------------------------
// DeltaProduct
// ---------------------------------------------------------------------------------------------------------------

/// One chunk's factors: everything that depends on the keys, queries, betas and gates but not on the state or the
/// values, so one build serves every block of value columns. Sized once for the largest chunk; a chunk of C tokens
/// uses the leading L = C n_h rows. load_delta_chunk fills keys, betas, log_decays and queries (normalised and
/// scaled); build_delta_chunk_factors forms the rest and applies the gates to the queries.
template <class Scalar>
struct DeltaChunkFactors {
  index_t tokens = 0;                     ///< C: tokens in the chunk
  index_t steps = 0;                      ///< L = C n_h micro-steps
  ChunkMatrix<Scalar> keys;               ///< L x K: k_r after the key normalisation
  RowVector<Scalar> betas;                ///< L: b_r
  RowVector<Scalar> log_decays;           ///< L: gamma_r (gated models)
  ChunkMatrix<Scalar> queries;            ///< C x K: Gamma_r(t) scale q_t (scale q_t before the build)
  ChunkMatrix<Scalar> transition;         ///< L x L: A_rs in the strict lower part (I + A is what the chunk inverts)
  ChunkMatrix<Scalar> solve;              ///< L x L: T = (I + A)^{-1} diag(b), zero above the diagonal
  ChunkMatrix<Scalar> readout;            ///< C x L: M_ts, zero where s > r(t)
  ChunkMatrix<Scalar> keys_from_start;    ///< L x K: Gamma_r k_r (gated models; else `keys` serves)
  ChunkMatrix<Scalar> keys_to_end;        ///< L x K: exp(gamma_L - gamma_r) k_r (gated models; else `keys` serves)
  Scalar end_decay = Scalar(1.0);         ///< Gamma_L
  ChunkMatrix<Scalar> inversion_scratch;  ///< L x L

  DeltaChunkFactors(index_t max_tokens, int householder_steps, index_t key_dim, bool gated)
      : keys(max_tokens * householder_steps, key_dim),
        betas(max_tokens * householder_steps),
        log_decays(gated ? max_tokens * householder_steps : 0),
        queries(max_tokens, key_dim),
        transition(max_tokens * householder_steps, max_tokens * householder_steps),
        solve(max_tokens * householder_steps, max_tokens * householder_steps),
        readout(max_tokens, max_tokens * householder_steps),
        keys_from_start(gated ? max_tokens * householder_steps : 0, key_dim),
        keys_to_end(gated ? max_tokens * householder_steps : 0, key_dim),
        inversion_scratch(max_tokens * householder_steps, max_tokens * householder_steps) {}

  /// The keys that read the chunk's initial state: Gamma_r k_r.
  auto start_keys(bool gated) const { return gated ? keys_from_start.topRows(steps) : keys.topRows(steps); }
  /// The keys that carry the pseudo-values to the chunk's end state: exp(gamma_L - gamma_r) k_r.
  auto end_keys(bool gated) const { return gated ? keys_to_end.topRows(steps) : keys.topRows(steps); }
};

/// Reads chunk [first_token, first_token + tokens) of sequence row `row`, head h: normalised keys, betas, normalised
/// and scaled queries, and for gated models the cumulative log-gates gamma. Keys and queries are normalised exactly
/// as in the token loop (normalize_rows equals `normalize` bit for bit).
template <int HouseholderSteps, bool Gated, class Scalar, class T, class S>
void load_delta_chunk(const Options& options, const Problem& p, const DeltaInputs<T, S>& in, index_t row,
                      index_t first_token, index_t tokens, index_t h, DeltaChunkFactors<Scalar>& f) {
  constexpr index_t n_h = HouseholderSteps;
  f.tokens = tokens;
  f.steps = tokens * n_h;
  const index_t first_step = first_token * n_h;
  for (index_t r = 0; r < f.steps; ++r) {
    load_converted<Scalar>(&in.k(row, first_step + r, h, 0), in.k.stride(3), f.keys.row(r));
    f.betas(r) = convert_scalar<Scalar>(in.beta(row, first_step + r, h));
  }
  normalize_rows<Scalar>(f.keys.topRows(f.steps), options.key_normalization, options.normalization_eps);
  auto queries = f.queries.topRows(tokens);
  for (index_t t = 0; t < tokens; ++t)
    load_converted<Scalar>(&in.q(row, first_token + t, h, 0), in.q.stride(3), queries.row(t));
  normalize_rows<Scalar>(queries, options.query_normalization, options.normalization_eps);
  queries *= static_cast<Scalar>(p.scale);
  if constexpr (Gated) {
    Scalar gamma = Scalar(0.0);
    for (index_t t = 0; t < tokens; ++t) {
      gamma = gamma + convert_scalar<Scalar>(in.g(row, first_token + t, h));
      for (index_t j = 0; j < n_h; ++j) f.log_decays(t * n_h + j) = gamma;
    }
  }
}

/// Builds A, T, M and the decayed keys and queries from what load_delta_chunk read (see the header comment).
template <int HouseholderSteps, bool Gated, class Scalar>
void build_delta_chunk_factors(DeltaChunkFactors<Scalar>& f) {
  constexpr index_t n_h = HouseholderSteps;
  const index_t L = f.steps, C = f.tokens;
  auto keys = f.keys.topRows(L);
  auto queries = f.queries.topRows(C);
  auto transition = f.transition.topLeftCorner(L, L);
  auto readout = f.readout.topLeftCorner(C, L);

  // Key-key products k_r . k_s (s < r) and query-key products q_t . k_s (s <= r(t)). Only the lower staircase is
  // needed: the key columns go in panels, each multiplied by the rows that see it.
  constexpr index_t panel = 32;
  for (index_t first = 0; first < L; first += panel) {
    const index_t width = std::min(panel, L - first), first_query = first / n_h;
    const auto panel_keys = keys.middleRows(first, width).transpose();
    transition.block(first, first, L - first, width).noalias() = keys.bottomRows(L - first) * panel_keys;
    readout.block(first_query, first, C - first_query, width).noalias() =
        queries.bottomRows(C - first_query) * panel_keys;
  }

  // A_rs = b_r exp(gamma_r - gamma_s) (k_r . k_s), s < r: only the strict lower part is read below.
  for (index_t r = 1; r < L; ++r) {
    auto a = transition.row(r).head(r);
    if constexpr (Gated) multiply_by_decay(a, f.log_decays(r), f.log_decays.head(r));
    a *= f.betas(r);
  }
  // M_ts = exp(gamma_r(t) - gamma_s) scale (q_t . k_s) for s <= r(t) = t n_h + n_h - 1, zero after.
  for (index_t t = 0; t < C; ++t) {
    const index_t visible = (t + 1) * n_h;
    auto m = readout.row(t);
    if constexpr (Gated) multiply_by_decay(m.head(visible), f.log_decays(visible - 1), f.log_decays.head(visible));
    m.tail(L - visible).setZero();
  }

  auto solve = f.solve.topLeftCorner(L, L);
  invert_unit_lower_triangular<Scalar>(transition, solve, f.inversion_scratch.topLeftCorner(L, L));
  solve.array().rowwise() *= f.betas.head(L).array();  // T = (I + A)^{-1} diag(b)

  if constexpr (Gated) {
    const Scalar gamma_end = f.log_decays(L - 1);
    f.end_decay = scalar_exp(gamma_end);
    for (index_t r = 0; r < L; ++r) {
      const Scalar gamma = f.log_decays(r);
      f.keys_from_start.row(r) = keys.row(r) * scalar_exp(gamma);
      f.keys_to_end.row(r) = keys.row(r) * scalar_exp(gamma_end - gamma);
    }
    for (index_t t = 0; t < C; ++t) queries.row(t) *= scalar_exp(f.log_decays(t * n_h + n_h - 1));
  }
}

/// Per-value-block buffers of the chunked DeltaProduct.
template <class Scalar>
struct DeltaChunkColumns {
  ChunkMatrix<Scalar> values;         ///< L x W: v_r, then V - diag(Gamma) K S_0
  ChunkMatrix<Scalar> pseudo_values;  ///< L x W: u
  ChunkMatrix<Scalar> outputs;        ///< C x W: o_t

  DeltaChunkColumns(index_t max_tokens, int householder_steps, index_t width)
      : values(max_tokens * householder_steps, width),
        pseudo_values(max_tokens * householder_steps, width),
        outputs(max_tokens, width) {}
};

/// Advances state columns S_0 (K x W) over one chunk and writes the chunk's outputs (rows 0..C-1 of c.outputs),
/// given the values in rows 0..L-1 of c.values (overwritten):
///   u = T (V - diag(Gamma) K S_0),  O = diag(Gamma) scale Q S_0 + M u,  S <- Gamma_L S_0 + (decayed K)^T u.
/// The pseudo-values u stay in c.pseudo_values.
template <int HouseholderSteps, bool Gated, class Scalar>
void apply_delta_chunk(const DeltaChunkFactors<Scalar>& f, DeltaChunkColumns<Scalar>& c, StateArg<Scalar> state) {
  const index_t L = f.steps, C = f.tokens, W = state.cols();
  auto values = c.values.topLeftCorner(L, W);
  auto u = c.pseudo_values.topLeftCorner(L, W);
  auto outputs = c.outputs.topLeftCorner(C, W);
  values.noalias() -= f.start_keys(Gated) * state;
  multiply_lower_staircase<Scalar>(f.solve.topLeftCorner(L, L), 1, values, u, false);
  outputs.noalias() = f.queries.topRows(C) * state;
  multiply_lower_staircase<Scalar>(f.readout.topLeftCorner(C, L), HouseholderSteps, u, outputs, true);
  if constexpr (Gated) state *= f.end_decay;
  state.noalias() += f.end_keys(Gated).transpose() * u;
}

/// Workspace of one worker of the chunked DeltaProduct forward pass.
template <class Scalar>
struct DeltaChunkWorkspace {
  DeltaChunkFactors<Scalar> factors;
  DeltaChunkColumns<Scalar> columns;

  DeltaChunkWorkspace(index_t max_tokens, int householder_steps, index_t key_dim, index_t width, bool gated)
      : factors(max_tokens, householder_steps, key_dim, gated), columns(max_tokens, householder_steps, width) {}
};

/// The chunk length a call uses: the backend's, but never longer than the longest sequence (so scratch stays small).
inline index_t chunk_tokens(const CpuBackend& backend, const Problem& p) {
  return std::max<index_t>(std::min<index_t>(backend.chunk_size, longest_sequence(p)), 1);
}

/// The chunked DeltaProduct forward pass (the call is already checked).
template <DeltaProductModel Model, class T, class S>
void forward_chunked(const CpuBackend& backend, const Model& model, const Problem& p, const DeltaInputs<T, S>& in,
                     const ForwardOutputs<T, S>& out) {
  using Scalar = typename Model::scalar_type;
  constexpr int n_h = Model::householder_steps;
  constexpr bool gated = Model::gating == Gating::scalar_decay;
  const Options& options = model.options;
  const index_t chunk = chunk_tokens(backend, p);

  for_each_work_item<Scalar>(
      backend, p, in.initial_state, out.final_state,
      [&](index_t width) { return DeltaChunkWorkspace<Scalar>(chunk, n_h, p.key_dim, width, gated); },
      [&](StateRef<Scalar> state, DeltaChunkWorkspace<Scalar>& w, const WorkItem& item) {
        const auto seq = p.sequence(item.sequence);
        const index_t h = item.head, first_column = item.columns.begin, W = item.columns.size();
        for (index_t first = seq.begin; first < seq.end; first += chunk) {
          const index_t tokens = std::min(chunk, seq.end - first);
          load_delta_chunk<n_h, gated>(options, p, in, seq.row, first, tokens, h, w.factors);
          build_delta_chunk_factors<n_h, gated>(w.factors);
          for (index_t r = 0; r < tokens * n_h; ++r)
            load_converted<Scalar>(&in.v(seq.row, first * n_h + r, h, first_column), in.v.stride(3),
                                   w.columns.values.row(r).head(W));
          apply_delta_chunk<n_h, gated>(w.factors, w.columns, state);
          for (index_t t = 0; t < tokens; ++t)
            store_converted<Scalar>(w.columns.outputs.row(t).head(W), &out.o(seq.row, first + t, h, first_column),
                                    out.o.stride(3));
        }
      });
}

// ---------------------------------------------------------------------------------------------------------------
// Diagonal LRNN
// ---------------------------------------------------------------------------------------------------------------

/// One chunk's factors of the diagonal LRNN (C tokens; sized once for the largest chunk). Inputs (filled by
/// load_diagonal_chunk): keys, decays, and the normalised, scaled queries in state_readers.
template <class Scalar>
struct DiagonalChunkFactors {
  index_t tokens = 0;                 ///< C
  ChunkMatrix<Scalar> keys;           ///< C x K: k_t after the key normalisation
  ChunkMatrix<Scalar> decays;         ///< C x K: a_t
  ChunkMatrix<Scalar> state_readers;  ///< C x K: scale q_t o P_t
  ChunkMatrix<Scalar> readout;        ///< C x C: M_ts for s <= t, zero above
  ChunkMatrix<Scalar> keys_to_end;    ///< C x K: k_s o D_Cs
  RowVector<Scalar> end_decay;        ///< K: P_C

  DiagonalChunkFactors(index_t max_tokens, index_t key_dim)
      : keys(max_tokens, key_dim),
        decays(max_tokens, key_dim),
        state_readers(max_tokens, key_dim),
        readout(max_tokens, max_tokens),
        keys_to_end(max_tokens, key_dim),
        end_decay(key_dim) {}
};

template <class Scalar, class T, class S>
void load_diagonal_chunk(const Options& options, const Problem& p, const DiagonalInputs<T, S>& in, index_t row,
                         index_t first_token, index_t tokens, index_t h, DiagonalChunkFactors<Scalar>& f) {
  f.tokens = tokens;
  for (index_t t = 0; t < tokens; ++t) {
    load_converted<Scalar>(&in.k(row, first_token + t, h, 0), in.k.stride(3), f.keys.row(t));
    load_converted<Scalar>(&in.q(row, first_token + t, h, 0), in.q.stride(3), f.state_readers.row(t));
    load_converted<Scalar>(&in.a(row, first_token + t, h, 0), in.a.stride(3), f.decays.row(t));
  }
  normalize_rows<Scalar>(f.keys.topRows(tokens), options.key_normalization, options.normalization_eps);
  auto queries = f.state_readers.topRows(tokens);
  normalize_rows<Scalar>(queries, options.query_normalization, options.normalization_eps);
  queries *= static_cast<Scalar>(p.scale);
}

/// Builds M, P and the keys carried to the chunk's end. Token t propagates the earlier keys through a_t
/// (keys_to_end rows < t hold k_s o D_ts), so M_t,s = (scale q_t) . (k_s o D_ts) is one matrix-vector product.
template <class Scalar>
void build_diagonal_chunk_factors(DiagonalChunkFactors<Scalar>& f) {
  const index_t C = f.tokens;
  for (index_t t = 0; t < C; ++t) {
    const auto a = f.decays.row(t);
    if (t > 0) f.keys_to_end.topRows(t).array().rowwise() *= a.array();
    f.keys_to_end.row(t) = f.keys.row(t);
    f.readout.row(t).head(t + 1).noalias() = f.state_readers.row(t) * f.keys_to_end.topRows(t + 1).transpose();
    f.readout.row(t).segment(t + 1, C - t - 1).setZero();
    if (t == 0)
      f.end_decay = a;
    else
      f.end_decay.array() *= a.array();
    f.state_readers.row(t).array() *= f.end_decay.array();
  }
}

template <class Scalar>
struct DiagonalChunkColumns {
  ChunkMatrix<Scalar> values;   ///< C x W
  ChunkMatrix<Scalar> outputs;  ///< C x W

  DiagonalChunkColumns(index_t max_tokens, index_t width) : values(max_tokens, width), outputs(max_tokens, width) {}
};

/// O = (scale Q o P) S_0 + M V;  S <- diag(P_C) S_0 + (keys carried to the end)^T V.
template <class Scalar>
void apply_diagonal_chunk(const DiagonalChunkFactors<Scalar>& f, DiagonalChunkColumns<Scalar>& c,
                          StateArg<Scalar> state) {
  const index_t C = f.tokens, W = state.cols();
  auto values = c.values.topLeftCorner(C, W);
  auto outputs = c.outputs.topLeftCorner(C, W);
  outputs.noalias() = f.state_readers.topRows(C) * state;
  multiply_lower_staircase<Scalar>(f.readout.topLeftCorner(C, C), 1, values, outputs, true);
  state.array().colwise() *= f.end_decay.transpose().array();
  state.noalias() += f.keys_to_end.topRows(C).transpose() * values;
}

template <class Scalar>
struct DiagonalChunkWorkspace {
  DiagonalChunkFactors<Scalar> factors;
  DiagonalChunkColumns<Scalar> columns;

  DiagonalChunkWorkspace(index_t max_tokens, index_t key_dim, index_t width)
      : factors(max_tokens, key_dim), columns(max_tokens, width) {}
};

/// The chunked diagonal LRNN forward pass (the call is already checked).
template <DiagonalModel Model, class T, class S>
void forward_chunked(const CpuBackend& backend, const Model& model, const Problem& p, const DiagonalInputs<T, S>& in,
                     const ForwardOutputs<T, S>& out) {
  using Scalar = typename Model::scalar_type;
  const Options& options = model.options;
  const index_t chunk = chunk_tokens(backend, p);

  for_each_work_item<Scalar>(
      backend, p, in.initial_state, out.final_state,
      [&](index_t width) { return DiagonalChunkWorkspace<Scalar>(chunk, p.key_dim, width); },
      [&](StateRef<Scalar> state, DiagonalChunkWorkspace<Scalar>& w, const WorkItem& item) {
        const auto seq = p.sequence(item.sequence);
        const index_t h = item.head, first_column = item.columns.begin, W = item.columns.size();
        for (index_t first = seq.begin; first < seq.end; first += chunk) {
          const index_t tokens = std::min(chunk, seq.end - first);
          load_diagonal_chunk(options, p, in, seq.row, first, tokens, h, w.factors);
          build_diagonal_chunk_factors(w.factors);
          for (index_t t = 0; t < tokens; ++t)
            load_converted<Scalar>(&in.v(seq.row, first + t, h, first_column), in.v.stride(3),
                                   w.columns.values.row(t).head(W));
          apply_diagonal_chunk(w.factors, w.columns, state);
          for (index_t t = 0; t < tokens; ++t)
            store_converted<Scalar>(w.columns.outputs.row(t).head(W), &out.o(seq.row, first + t, h, first_column),
                                    out.o.stride(3));
        }
      });
}

}  // namespace deltaproduct::detail
