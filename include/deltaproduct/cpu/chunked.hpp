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
// With T = (I + A)^{-1} diag(b), the chunk is
//   u = T (V - diag(Gamma) K S_0)
//   o_t = Gamma_r(t) scale S_0^T q_t + sum_{s <= r(t)} exp(gamma_r(t) - gamma_s) scale (q_t . k_s) u_s
//   S_L = Gamma_L S_0 + (diag(exp(gamma_L - gamma)) K)^T u,
// r(t) being the last micro-step of token t. Decays are exponentials of differences of gamma (never ratios of
// exponentials), so long decays underflow to 0 instead of overflowing. T is bounded: T_rs = -b_r k_r^T (product of
// the Householder factors between s and r) k_s b_s for s < r, and those factors are non-expansive.
// Evaluation: the keys and the queries are stacked, so one product [K; Q] S_0 reads the state for both; diag(b)
// scales the rows of V - diag(Gamma) K S_0 and (I + A)^{-1} (kept, the backward reuses it) multiplies the result.
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
/// so their independent sums overlap instead of each waiting on its own chain of additions. With `divisors`, row j's
/// divisor is written to divisors[j] (0 where the row is left unchanged), for the backward's normalize_backward.
template <class Scalar>
void normalize_rows(ChunkBlock<Scalar> rows, Normalization mode, double eps, Scalar* divisors = nullptr) {
  if (mode == Normalization::none) {
    if (divisors != nullptr) std::fill(divisors, divisors + rows.rows(), Scalar(0.0));
    return;
  }
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
      const bool unchanged = !(Scalar(0.0) < sum_of_squares[j]);
      const Scalar norm = unchanged ? Scalar(0.0) : scalar_sqrt(sum_of_squares[j]);
      if (divisors != nullptr) divisors[first + j] = norm;
      if (unchanged) continue;
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
/// uses L = C n_h micro-steps. load_delta_chunk fills rows, betas, log_decays and norms; build_delta_chunk_factors
/// forms the rest. The queries sit right below the chunk's L keys, so [K; Q] is one block of `rows`.
template <class Scalar>
struct DeltaChunkFactors {
  index_t tokens = 0;                     ///< C: tokens in the chunk
  index_t steps = 0;                      ///< L = C n_h micro-steps
  ChunkMatrix<Scalar> rows;               ///< (L + C) x K: k_r normalised, then scale q_t normalised (no gates)
  RowVector<Scalar> betas;                ///< L: b_r
  RowVector<Scalar> log_decays;           ///< L: gamma_r (gated models)
  RowVector<Scalar> norms;                ///< L + C: each row's normalisation divisor (0: left unchanged)
  ChunkMatrix<Scalar> gram;               ///< L x L: k_r . k_s for s < r (above the diagonal: not meaningful)
  ChunkMatrix<Scalar> system;             ///< L x L: A_rs for s < r (I + A is what the chunk inverts)
  ChunkMatrix<Scalar> inverse;            ///< L x L: (I + A)^{-1}, unit lower triangular, zero above
  ChunkMatrix<Scalar> readout;            ///< C x L: M_ts, zero where s > r(t)
  RowVector<Scalar> gates;                ///< L: Gamma_r (gated models)
  ChunkMatrix<Scalar> keys_to_end;        ///< L x K: exp(gamma_L - gamma_r) k_r (gated models; else the keys serve)
  Scalar end_decay = Scalar(1.0);         ///< Gamma_L
  ChunkMatrix<Scalar> inversion_scratch;  ///< L x L

  DeltaChunkFactors(index_t max_tokens, int householder_steps, index_t key_dim, bool gated)
      : rows(max_tokens * (householder_steps + 1), key_dim),
        betas(max_tokens * householder_steps),
        log_decays(gated ? max_tokens * householder_steps : 0),
        norms(max_tokens * (householder_steps + 1)),
        gram(max_tokens * householder_steps, max_tokens * householder_steps),
        system(max_tokens * householder_steps, max_tokens * householder_steps),
        inverse(max_tokens * householder_steps, max_tokens * householder_steps),
        readout(max_tokens, max_tokens * householder_steps),
        gates(gated ? max_tokens * householder_steps : 0),
        keys_to_end(gated ? max_tokens * householder_steps : 0, key_dim),
        inversion_scratch(max_tokens * householder_steps, max_tokens * householder_steps) {}

  auto keys() const { return rows.topRows(steps); }
  auto queries() const { return rows.middleRows(steps, tokens); }
  /// The keys that carry the pseudo-values to the chunk's end state: exp(gamma_L - gamma_r) k_r.
  auto end_keys(bool gated) const { return gated ? keys_to_end.topRows(steps) : rows.topRows(steps); }
};

/// Reads chunk [first_token, first_token + tokens) of sequence row `row`, head h: normalised keys, betas, for gated
/// models the cumulative log-gates gamma, and (with_queries) the normalised, scaled queries. Keys and queries are
/// normalised exactly as in the token loop (normalize_rows equals `normalize` bit for bit).
template <int HouseholderSteps, bool Gated, class Scalar, class T, class S>
void load_delta_chunk(const Options& options, const Problem& p, const DeltaInputs<T, S>& in, index_t row,
                      index_t first_token, index_t tokens, index_t h, DeltaChunkFactors<Scalar>& f,
                      bool with_queries = true) {
  constexpr index_t n_h = HouseholderSteps;
  f.tokens = tokens;
  f.steps = tokens * n_h;
  const index_t L = f.steps, first_step = first_token * n_h;
  for (index_t r = 0; r < L; ++r) {
    load_converted<Scalar>(&in.k(row, first_step + r, h, 0), in.k.stride(3), f.rows.row(r));
    f.betas(r) = convert_scalar<Scalar>(in.beta(row, first_step + r, h));
  }
  normalize_rows<Scalar>(f.rows.topRows(L), options.key_normalization, options.normalization_eps, f.norms.data());
  if (with_queries) {
    auto queries = f.rows.middleRows(L, tokens);
    for (index_t t = 0; t < tokens; ++t)
      load_converted<Scalar>(&in.q(row, first_token + t, h, 0), in.q.stride(3), queries.row(t));
    normalize_rows<Scalar>(queries, options.query_normalization, options.normalization_eps, f.norms.data() + L);
    queries *= static_cast<Scalar>(p.scale);
  }
  if constexpr (Gated) {
    Scalar gamma = Scalar(0.0);
    for (index_t t = 0; t < tokens; ++t) {
      gamma = gamma + convert_scalar<Scalar>(in.g(row, first_token + t, h));
      for (index_t j = 0; j < n_h; ++j) f.log_decays(t * n_h + j) = gamma;
    }
  }
}

/// Builds G, A, (I + A)^{-1}, the gates and (with_readout) M from what load_delta_chunk read (see the header
/// comment). The key-key and query-key products skip most of what lies above the staircase: the key columns go in
/// panels, each multiplied by the rows that see it. G and M are separate products even when both are wanted, so the
/// Gram matrix, and with it the state, rounds the same with and without the readout.
template <int HouseholderSteps, bool Gated, class Scalar>
void build_delta_chunk_factors(DeltaChunkFactors<Scalar>& f, bool with_readout = true) {
  constexpr index_t n_h = HouseholderSteps;
  const index_t L = f.steps, C = f.tokens;
  const auto keys = f.keys();
  const auto queries = f.queries();
  auto gram = f.gram.topLeftCorner(L, L);
  auto readout = f.readout.topLeftCorner(C, L);

  constexpr index_t panel = 32;
  for (index_t first = 0; first < L; first += panel) {
    const index_t width = std::min(panel, L - first), first_query = first / n_h;
    const auto panel_keys = keys.middleRows(first, width).transpose();
    gram.block(first, first, L - first, width).noalias() = keys.bottomRows(L - first) * panel_keys;
    if (with_readout)
      readout.block(first_query, first, C - first_query, width).noalias() =
          queries.bottomRows(C - first_query) * panel_keys;
  }

  // A_rs = b_r exp(gamma_r - gamma_s) (k_r . k_s), s < r: only the strict lower part is read below.
  auto system = f.system.topLeftCorner(L, L);
  for (index_t r = 1; r < L; ++r) {
    auto a = system.row(r).head(r);
    a = f.betas(r) * gram.row(r).head(r);
    if constexpr (Gated) multiply_by_decay(a, f.log_decays(r), f.log_decays.head(r));
  }
  // M_ts = exp(gamma_r(t) - gamma_s) scale (q_t . k_s) for s <= r(t) = t n_h + n_h - 1, zero after.
  if (with_readout) {
    for (index_t t = 0; t < C; ++t) {
      const index_t visible = (t + 1) * n_h;
      auto m = readout.row(t);
      if constexpr (Gated) multiply_by_decay(m.head(visible), f.log_decays(visible - 1), f.log_decays.head(visible));
      m.tail(L - visible).setZero();
    }
  }

  invert_unit_lower_triangular<Scalar>(system, f.inverse.topLeftCorner(L, L), f.inversion_scratch.topLeftCorner(L, L));

  if constexpr (Gated) {
    const Scalar gamma_end = f.log_decays(L - 1);
    f.end_decay = scalar_exp(gamma_end);
    f.gates.head(L).setOnes();
    multiply_by_decay(f.gates.head(L), Scalar(0.0), -f.log_decays.head(L));  // exp(gamma_r)
    for (index_t r = 0; r < L; ++r) f.keys_to_end.row(r) = keys.row(r) * scalar_exp(gamma_end - f.log_decays(r));
  }
}

/// Advances state columns S_0 over one chunk, given V in `values` (overwritten) and K S_0 in `key_products`:
///   Y = diag(b) (V - diag(Gamma) K S_0),  u = (I + A)^{-1} Y,  S <- Gamma_L S_0 + (diag(c) K)^T u,
/// with u written to `pseudo_values`.
template <bool Gated, class Scalar>
void advance_delta_chunk(const DeltaChunkFactors<Scalar>& f, std::type_identity_t<ChunkBlock<Scalar>> values,
                         const std::type_identity_t<ConstChunkBlock<Scalar>>& key_products,
                         std::type_identity_t<ChunkBlock<Scalar>> pseudo_values, StateArg<Scalar> state) {
  const index_t L = f.steps;
  const auto betas = f.betas.head(L).transpose().array();
  if constexpr (Gated)
    values.array() = (values.array() - key_products.array().colwise() * f.gates.head(L).transpose().array())
                         .colwise() *
                     betas;
  else
    values.array() = (values.array() - key_products.array()).colwise() * betas;
  multiply_lower_staircase<Scalar>(f.inverse.topLeftCorner(L, L), 1, values, pseudo_values, false);
  if constexpr (Gated) state *= f.end_decay;
  state.noalias() += f.end_keys(Gated).transpose() * pseudo_values;
}

/// Per-value-block buffers of the chunked DeltaProduct.
template <class Scalar>
struct DeltaChunkColumns {
  ChunkMatrix<Scalar> values;         ///< L x W: v_r, then diag(b) (V - diag(Gamma) K S_0)
  ChunkMatrix<Scalar> pseudo_values;  ///< L x W: u
  ChunkMatrix<Scalar> products;       ///< (L + C) x W: [K; Q] S_0, then the outputs o_t in rows L..L+C-1

  DeltaChunkColumns(index_t max_tokens, int householder_steps, index_t width)
      : values(max_tokens * householder_steps, width),
        pseudo_values(max_tokens * householder_steps, width),
        products(max_tokens * (householder_steps + 1), width) {}

  auto outputs(index_t steps, index_t tokens, index_t width) { return products.block(steps, 0, tokens, width); }
};

/// Advances state columns S_0 (K x W) over one chunk and writes the chunk's outputs (c.outputs), given the values
/// in rows 0..L-1 of c.values (overwritten):
///   [X; O] = [K; Q] S_0,  u = (I + A)^{-1} diag(b) (V - diag(Gamma) X),  O <- diag(Gamma_q) O + M u,
///   S <- Gamma_L S_0 + (decayed K)^T u.
template <int HouseholderSteps, bool Gated, class Scalar>
void apply_delta_chunk(const DeltaChunkFactors<Scalar>& f, DeltaChunkColumns<Scalar>& c, StateArg<Scalar> state) {
  constexpr index_t n_h = HouseholderSteps;
  const index_t L = f.steps, C = f.tokens, W = state.cols();
  auto products = c.products.topLeftCorner(L + C, W);
  products.noalias() = f.rows.topRows(L + C) * state;
  auto outputs = c.outputs(L, C, W);
  if constexpr (Gated)
    for (index_t t = 0; t < C; ++t) outputs.row(t) *= f.gates(t * n_h + n_h - 1);
  advance_delta_chunk<Gated>(f, c.values.topLeftCorner(L, W), products.topRows(L),
                             c.pseudo_values.topLeftCorner(L, W), state);
  multiply_lower_staircase<Scalar>(f.readout.topLeftCorner(C, L), n_h, c.pseudo_values.topLeftCorner(L, W), outputs,
                                   true);
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
          const auto outputs = w.columns.outputs(tokens * n_h, tokens, W);
          for (index_t t = 0; t < tokens; ++t)
            store_converted<Scalar>(outputs.row(t), &out.o(seq.row, first + t, h, first_column), out.o.stride(3));
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
