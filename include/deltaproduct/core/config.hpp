// The recurrences the library implements, described at compile time: state scalar, Householder steps per token,
// eigenvalue range and gating. A model type is a small value (it carries the run-time options) passed to forward().
//
// DeltaProduct (Siems et al., "DeltaProduct: Improving State-Tracking in Linear RNNs via Householder Products"):
//   per token t, S <- exp(g_t) S, then for j = 1..n_h: S <- (I - beta_j k_j k_j^T) S + beta_j k_j v_j^T,
//   then o_t = scale * S^T q_t. DeltaNet is n_h = 1.
// Diagonal LRNN (Mamba family, widened as in Grazzi et al., "Unlocking State-Tracking in Linear RNNs Through
//   Negative Eigenvalues"): S <- diag(a_t) S + k_t v_t^T, o_t = scale * S^T q_t.
#pragma once

#include <cmath>
#include <optional>
#include <type_traits>

#include "deltaproduct/core/scalar.hpp"

namespace deltaproduct {

/// Where the eigenvalues of each token's transition lie.
enum class EigenvalueRange {
  unit,         ///< [0, 1]: beta in [0, 1], diagonal decay a in [0, 1]
  signed_unit,  ///< [-1, 1]: beta in [0, 2], diagonal decay a in [-1, 1] (what state tracking needs)
};

/// Whether the state is scaled by exp(g_t) (g_t <= 0, one per token and head) before the Householder steps.
enum class Gating {
  none,
  scalar_decay,  ///< Gated DeltaNet / Gated DeltaProduct
};

/// L2 normalisation of keys or queries, as done inside the reference kernels.
enum class Normalization {
  none,
  l2,      ///< x / ||x||: unit keys, so beta = 2 is an exact reflection (up to rounding)
  l2_eps,  ///< x / sqrt(||x||^2 + eps), flash-linear-attention's l2norm (eps = 1e-6 there): never exactly unit
};

/// Largest beta of a range: 1 for [0,1], 2 for [-1,1].
constexpr double max_beta(EigenvalueRange range) { return range == EigenvalueRange::unit ? 1.0 : 2.0; }
/// Smallest diagonal decay of a range: 0 for [0,1], -1 for [-1,1].
constexpr double min_decay(EigenvalueRange range) { return range == EigenvalueRange::unit ? 0.0 : -1.0; }

/// beta from a raw logit: sigmoid(x) for [0,1], 2 * sigmoid(x) for [-1,1].
template <EigenvalueRange Range, class T>
T beta_from_logit(T logit) {
  using std::exp;
  const T sigmoid = T(1) / (T(1) + exp(-logit));
  return Range == EigenvalueRange::unit ? sigmoid : T(2) * sigmoid;
}

/// Diagonal decay from a log-decay x <= 0 (Mamba's delta * A): exp(x) for [0,1], 2 * exp(x) - 1 for [-1,1],
/// the widening applied after the exponential as in the negative-eigenvalue paper.
template <EigenvalueRange Range, class T>
T decay_from_log(T log_decay) {
  using std::exp;
  const T a = exp(log_decay);
  return Range == EigenvalueRange::unit ? a : T(2) * a - T(1);
}

/// Run-time options shared by every model.
struct Options {
  Normalization key_normalization = Normalization::none;
  Normalization query_normalization = Normalization::none;
  double normalization_eps = 1e-6;  ///< used by Normalization::l2_eps
  std::optional<double> scale;      ///< readout scale; default 1/sqrt(K), as the chunked reference kernels
  bool validate_ranges = true;      ///< check beta, g and a against the eigenvalue range before running
};

/// DeltaProduct with `HouseholderSteps` generalized Householder steps per token (n_h).
template <class Scalar, int HouseholderSteps, EigenvalueRange Range = EigenvalueRange::signed_unit,
          Gating Gate = Gating::none>
struct DeltaProduct {
  static_assert(StateScalar<Scalar>,
                "deltaproduct: the state scalar must support + - * /, comparison, conversion from and to double, "
                "and exp/sqrt (std:: or found by argument-dependent lookup); use float, double or a "
                "deltaproduct::precision format");
  static_assert(HouseholderSteps >= 1,
                "deltaproduct: HouseholderSteps (n_h) must be at least 1; DeltaNet is DeltaProduct<Scalar, 1>");

  using scalar_type = Scalar;
  static constexpr int householder_steps = HouseholderSteps;
  static constexpr EigenvalueRange eigenvalue_range = Range;
  static constexpr Gating gating = Gate;

  Options options{};
};

template <class Scalar, EigenvalueRange Range = EigenvalueRange::signed_unit>
using DeltaNet = DeltaProduct<Scalar, 1, Range, Gating::none>;
template <class Scalar, EigenvalueRange Range = EigenvalueRange::signed_unit>
using GatedDeltaNet = DeltaProduct<Scalar, 1, Range, Gating::scalar_decay>;
template <class Scalar, int HouseholderSteps, EigenvalueRange Range = EigenvalueRange::signed_unit>
using GatedDeltaProduct = DeltaProduct<Scalar, HouseholderSteps, Range, Gating::scalar_decay>;

/// Diagonal linear RNN with a per-channel decay a_t in [0,1] or [-1,1] along the key dimension.
template <class Scalar, EigenvalueRange Range = EigenvalueRange::signed_unit>
struct DiagonalLrnn {
  static_assert(StateScalar<Scalar>,
                "deltaproduct: the state scalar must support + - * /, comparison, conversion from and to double, "
                "and exp/sqrt (std:: or found by argument-dependent lookup); use float, double or a "
                "deltaproduct::precision format");

  using scalar_type = Scalar;
  static constexpr EigenvalueRange eigenvalue_range = Range;

  Options options{};
};

namespace detail {
template <class M>
struct is_delta_product : std::false_type {};
template <class S, int N, EigenvalueRange R, Gating G>
struct is_delta_product<DeltaProduct<S, N, R, G>> : std::true_type {};
template <class M>
struct is_diagonal_lrnn : std::false_type {};
template <class S, EigenvalueRange R>
struct is_diagonal_lrnn<DiagonalLrnn<S, R>> : std::true_type {};
}  // namespace detail

/// A DeltaNet / DeltaProduct model type (gated or not).
template <class M>
concept DeltaProductModel = detail::is_delta_product<std::remove_cvref_t<M>>::value;
/// A diagonal LRNN model type.
template <class M>
concept DiagonalModel = detail::is_diagonal_lrnn<std::remove_cvref_t<M>>::value;
/// Any recurrence the backends run.
template <class M>
concept RecurrenceModel = DeltaProductModel<M> || DiagonalModel<M>;

}  // namespace deltaproduct
