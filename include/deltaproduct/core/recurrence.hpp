// The one definition of the recurrences' math, for any state scalar (float, double, simulated formats). Backends
// may reorganise the work for speed (chunked forms, GPU kernels); tests prove them equal to these functions.
//
// The state S of one sequence and head is K x V, row-major. Every reduction below runs over the key index i in the
// fixed order 0, 1, ..., K-1 and is vectorised across the value index j, so vectorised and scalar evaluation round
// identically: with a simulated format each + and * rounds once, in the order written here.
#pragma once

#include <type_traits>

#include <Eigen/Core>

#include "deltaproduct/core/config.hpp"
#include "deltaproduct/core/scalar.hpp"

namespace deltaproduct {

template <class Scalar>
using StateMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using RowVector = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;
/// A K x V state in memory someone else owns (a StateMatrix, or rows of a caller's state tensor), rows contiguous.
template <class Scalar>
using StateRef = Eigen::Ref<StateMatrix<Scalar>, 0, Eigen::OuterStride<>>;
/// A StateRef parameter that does not take part in template argument deduction (Scalar comes from the vectors).
template <class Scalar>
using StateArg = std::type_identity_t<StateRef<Scalar>>;

/// out = x^T S, i.e. out_j = sum_i x_i S_ij, summed over i in order.
template <class Scalar>
void transposed_product(const StateArg<Scalar>& S, const RowVector<Scalar>& x, RowVector<Scalar>& out) {
  out.noalias() = x(0) * S.row(0);
  for (Eigen::Index i = 1; i < S.rows(); ++i) out.noalias() += x(i) * S.row(i);
}

/// One generalized Householder step, S <- (I - beta k k^T) S + beta k v^T, computed as
/// w = beta (v - S^T k), S <- S + k w^T: a gradient step of size beta on ||S^T k - v||^2 / 2.
/// `work` is scratch of length V.
template <class Scalar>
void householder_step(StateArg<Scalar> S, const RowVector<Scalar>& k, const RowVector<Scalar>& v,
                      const Scalar& beta, RowVector<Scalar>& work) {
  transposed_product(S, k, work);
  work = beta * (v - work);
  for (Eigen::Index i = 0; i < S.rows(); ++i) S.row(i) += k(i) * work;
}

/// The gate of the gated variants: S <- exp(g) S, with g <= 0 the log-decay of the token.
template <class Scalar>
void apply_decay(StateArg<Scalar> S, const Scalar& log_decay) {
  S *= scalar_exp(log_decay);
}

/// One diagonal LRNN step: S <- diag(a) S + k v^T, i.e. S_ij <- a_i S_ij + k_i v_j.
template <class Scalar>
void diagonal_step(StateArg<Scalar> S, const RowVector<Scalar>& a, const RowVector<Scalar>& k,
                   const RowVector<Scalar>& v) {
  for (Eigen::Index i = 0; i < S.rows(); ++i) S.row(i) = a(i) * S.row(i) + k(i) * v;
}

/// L2 normalisation in the scalar's own arithmetic: x / sqrt(sum_i x_i^2 [+ eps]). A zero vector stays zero
/// under Normalization::l2 (there is no direction to keep).
template <class Scalar>
void normalize(RowVector<Scalar>& x, Normalization mode, double eps) {
  if (mode == Normalization::none) return;
  Scalar sum_of_squares = x(0) * x(0);
  for (Eigen::Index i = 1; i < x.size(); ++i) sum_of_squares = sum_of_squares + x(i) * x(i);
  if (mode == Normalization::l2_eps) sum_of_squares = sum_of_squares + static_cast<Scalar>(eps);
  if (!(Scalar(0.0) < sum_of_squares)) return;
  const Scalar norm = scalar_sqrt(sum_of_squares);
  for (Eigen::Index i = 0; i < x.size(); ++i) x(i) = x(i) / norm;
}

/// Scratch vectors for one (sequence, head) worker, allocated once per call, never per token.
template <class Scalar>
struct TokenWorkspace {
  RowVector<Scalar> key, value, query, decay, work, output;

  TokenWorkspace(Eigen::Index key_dim, Eigen::Index value_dim)
      : key(key_dim), value(value_dim), query(key_dim), decay(key_dim), work(value_dim), output(value_dim) {}
};

}  // namespace deltaproduct
