// Spectral facts about products of generalized Householder matrices, checked in exact rational arithmetic
// (the README's Theory section). UST = Grazzi, Siems, Zela, Franke, Hutter, Pontil, "Unlocking State-Tracking in
// Linear RNNs Through Negative Eigenvalues", ICLR 2025.
//
// A factor is C = I - beta k k^T / (k^T k) for a nonzero rational key k: the same matrix as I - beta v v^T with the
// unit key v = k / |k|, but with rational entries even when |k| is irrational. Its eigenvalue along k is 1 - beta and
// it is the identity on k's orthogonal complement; beta = 2 is the reflection through k's hyperplane. Products follow
// the recurrence's order (the README's Theory section): for factors C_1, ..., C_m the product is C_m ... C_1, so C_1
// acts first.
//
// The checks (each returns a SpectralCheck or SpectralExampleSearch that a report prints):
//   check_spectral_norm_bound               UST Prop. 1.1: beta in [0, 2] => ||C_m ... C_1||_2 <= 1
//   find_spectral_norm_violation            ... and beta > 2 breaks it
//   check_two_factor_real_spectrum          UST Prop. 1.3: beta in [0, 1], at most 2 factors => eigenvalues real in [0,
//   1] check_nonreal_needs_both_betas_above_one  the README's Theory section: two factors, beta in [0, 2], either beta
//   <= 1 => real find_nonreal_two_factor_spectrum        ... and both betas > 1 admits non-real eigenvalues
//   check_reflection_decompositions         Cartan-Dieudonne count rank(g - I) on random rational orthogonal g
//   check_permutation_reflection_counts     rank(P - I) = n - cycles for every permutation matrix of S_n
//   check_cube_rotation_group               the 24 cube rotations: a group, orthogonal, det 1, max rank(g - I) = 2
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "deltaproduct/core/error.hpp"
#include "deltaproduct/theory/rational.hpp"

namespace deltaproduct {

// ---------------------------------------------------------------------------------------------------------------
// Generalized Householder factors and their products
// ---------------------------------------------------------------------------------------------------------------

/// One factor I - beta k k^T / (k^T k): a nonzero key k and a step size beta (eigenvalue 1 - beta along k). Exact
/// counterpart of the floating-point HouseholderFactor of <deltaproduct/theory/construction.hpp>.
struct RationalHouseholderFactor {
  RationalVector key;
  Rational beta;
};

namespace detail {

inline void require_nonzero_key(const RationalVector& key) {
  if (key.empty()) argument_error("key", "a vector of length >= 1", "an empty vector");
  if (std::all_of(key.begin(), key.end(), [](const Rational& x) { return x.is_zero(); }))
    argument_error("key", "a nonzero vector", to_string(key));
}

/// m <- (I - beta k k^T / k^T k) m = m - (beta / k^T k) k (k^T m), in O(n^2) rather than a full matrix product.
inline void apply_householder_factor(const RationalVector& key, const Rational& beta, RationalMatrix& m) {
  const Rational scale = beta / dot(key, key);
  if (scale.is_zero()) return;
  for (std::size_t c = 0; c < m.cols(); ++c) {
    Rational projection;  // k^T (column c of m)
    for (std::size_t r = 0; r < m.rows(); ++r)
      if (!key[r].is_zero() && !m(r, c).is_zero()) projection += key[r] * m(r, c);
    if (projection.is_zero()) continue;
    const Rational coefficient = scale * projection;
    for (std::size_t r = 0; r < m.rows(); ++r)
      if (!key[r].is_zero()) m(r, c) -= coefficient * key[r];
  }
}

inline std::string describe_factors(const std::vector<RationalHouseholderFactor>& factors) {
  std::string text =
      "n = " + std::to_string(factors.empty() ? 0 : factors[0].key.size()) + ", factors in acting order [";
  for (std::size_t i = 0; i < factors.size(); ++i)
    text += (i == 0 ? "" : "; ") + std::string("k = ") + to_string(factors[i].key) +
            ", beta = " + factors[i].beta.to_string();
  return text + "]";
}

}  // namespace detail

/// I - beta k k^T / (k^T k) for a nonzero key k; throws ArgumentError for an empty or zero key.
inline RationalMatrix householder_matrix(const RationalVector& key, const Rational& beta) {
  detail::require_nonzero_key(key);
  RationalMatrix m = RationalMatrix::identity(key.size());
  detail::apply_householder_factor(key, beta, m);
  return m;
}

inline RationalMatrix householder_matrix(const RationalHouseholderFactor& factor) {
  return householder_matrix(factor.key, factor.beta);
}

/// The reflection I - 2 u u^T / (u^T u) through the hyperplane orthogonal to a nonzero u.
inline RationalMatrix reflection_matrix(const RationalVector& u) { return householder_matrix(u, Rational(2)); }

/// C_m ... C_1 for factors = {C_1, ..., C_m} (C_1 acts first, as in the recurrence). Throws ArgumentError for an empty
/// list, a zero key, or keys of different lengths.
inline RationalMatrix householder_product(const std::vector<RationalHouseholderFactor>& factors) {
  if (factors.empty()) detail::argument_error("factors", "at least one factor", "none");
  const std::size_t n = factors[0].key.size();
  RationalMatrix product = RationalMatrix::identity(n);
  for (std::size_t i = 0; i < factors.size(); ++i) {
    detail::require_nonzero_key(factors[i].key);
    if (factors[i].key.size() != n)
      detail::argument_error("factors", "keys of one length " + std::to_string(n),
                             "key " + std::to_string(i) + " of length " + std::to_string(factors[i].key.size()));
    detail::apply_householder_factor(factors[i].key, factors[i].beta, product);
  }
  return product;
}

/// R(u_r) ... R(u_1) for reflections R(u) = I - 2 u u^T / u^T u listed in acting order (u_1 acts first): the inverse of
/// decompose_into_reflections. The identity of size n for an empty list.
inline RationalMatrix reflection_product(const std::vector<RationalVector>& acting_order, std::size_t n) {
  RationalMatrix product = RationalMatrix::identity(n);
  for (std::size_t i = 0; i < acting_order.size(); ++i) {
    detail::require_nonzero_key(acting_order[i]);
    if (acting_order[i].size() != n)
      detail::argument_error("acting_order", "vectors of length " + std::to_string(n),
                             "vector " + std::to_string(i) + " of length " + std::to_string(acting_order[i].size()));
    detail::apply_householder_factor(acting_order[i], Rational(2), product);
  }
  return product;
}

// ---------------------------------------------------------------------------------------------------------------
// Exact spectral tests
// ---------------------------------------------------------------------------------------------------------------

/// ||m||_2 <= 1, decided exactly: ||m||_2^2 is the largest eigenvalue of m^T m, so ||m||_2 <= 1 iff I - m^T m is
/// positive semidefinite, iff all its principal minors are >= 0. When the bound fails and first_negative is given, it
/// receives the first negative principal minor of I - m^T m. (m may be rectangular; its columns must be at most
/// max_principal_minor_dimension.)
inline bool spectral_norm_at_most_one(const RationalMatrix& m, PrincipalMinor* first_negative = nullptr) {
  return is_positive_semidefinite(RationalMatrix::identity(m.cols()) - transpose(m) * m, first_negative);
}

/// The matrix B with m K = K B, for the columns of K (n x r, full column rank) spanning an m-invariant subspace:
/// B = (K^T K)^{-1} K^T m K, the restriction of m to span(K) in the basis K. Throws ArgumentError for mismatched shapes
/// or dependent columns, and Error when the span is not invariant (m K != K B).
inline RationalMatrix restrict_to_invariant_subspace(const RationalMatrix& m, const RationalMatrix& basis) {
  detail::require_square("m", m);
  if (basis.rows() != m.rows())
    detail::argument_error("basis", "a matrix with " + std::to_string(m.rows()) + " rows",
                           "a " + detail::matrix_shape(basis) + " matrix");
  if (matrix_rank(basis) != basis.cols())
    detail::argument_error("basis", "linearly independent columns", "dependent columns " + basis.to_string());
  const RationalMatrix basis_t = transpose(basis);
  const RationalMatrix image = m * basis;
  const RationalMatrix block = inverse(basis_t * basis) * (basis_t * image);
  if (image != basis * block)
    throw Error("deltaproduct: restrict_to_invariant_subspace: the span of " + basis.to_string() +
                " is not invariant under " + m.to_string());
  return block;
}

/// The spectrum of a product of one or two factors, from the 1 x 1 or 2 x 2 block on the span of the keys.
///
/// Why a block suffices: each factor is the identity on its key's orthogonal complement, so C_2 C_1 is the identity on
/// span(k_1, k_2)^perp and maps span(k_1, k_2) into itself. Hence det(xI - C_2 C_1) = (x - 1)^(n - r) det(xI - B) with
/// r = dim span(k_1, k_2) and B the restriction to the span (in the basis k_1, or k_1, k_2 when independent): the
/// eigenvalues are 1 (n - r times) and those of B. For r = 2 they are the roots of p(x) = x^2 - t x + d (t = tr B,
/// d = det B): real iff t^2 - 4 d >= 0, and both in [0, 1] iff moreover p(0) = d >= 0, p(1) = 1 - t + d >= 0 and the
/// vertex t / 2 lies in [0, 1].
struct KeySpanSpectrum {
  std::size_t dimension = 0;     ///< n, the key length
  std::size_t span_rank = 0;     ///< r = dim span(keys): 1 or 2
  RationalMatrix product;        ///< the n x n product C_m ... C_1
  RationalMatrix block;          ///< r x r: the product restricted to span(keys), in the basis of independent keys
  Rational trace;                ///< tr B
  Rational determinant;          ///< det B
  Rational discriminant;         ///< t^2 - 4 d for r = 2; 0 for r = 1
  bool real = true;              ///< every eigenvalue of the product is real
  bool in_unit_interval = true;  ///< every eigenvalue of the product is real and in [0, 1]
};

/// The KeySpanSpectrum of the product of factors = {C_1} or {C_1, C_2} (C_1 acts first). Throws ArgumentError for
/// another number of factors or invalid keys.
inline KeySpanSpectrum key_span_spectrum(const std::vector<RationalHouseholderFactor>& factors) {
  if (factors.empty() || factors.size() > 2)
    detail::argument_error("factors", "one or two factors", std::to_string(factors.size()) + " factors");
  KeySpanSpectrum spectrum;
  spectrum.product = householder_product(factors);
  spectrum.dimension = spectrum.product.rows();
  std::vector<RationalVector> basis{factors[0].key};
  if (factors.size() == 2 && matrix_rank(RationalMatrix::from_columns({factors[0].key, factors[1].key})) == 2)
    basis.push_back(factors[1].key);
  spectrum.span_rank = basis.size();
  spectrum.block = restrict_to_invariant_subspace(spectrum.product, RationalMatrix::from_columns(basis));
  spectrum.trace = deltaproduct::trace(spectrum.block);
  spectrum.determinant = deltaproduct::determinant(spectrum.block);
  if (spectrum.span_rank == 1) {
    const Rational& eigenvalue = spectrum.block(0, 0);
    spectrum.real = true;
    spectrum.in_unit_interval = !eigenvalue.is_negative() && eigenvalue <= Rational(1);
  } else {
    const Rational& t = spectrum.trace;
    const Rational& d = spectrum.determinant;
    spectrum.discriminant = t * t - Rational(4) * d;
    spectrum.real = !spectrum.discriminant.is_negative();
    spectrum.in_unit_interval = spectrum.real && !d.is_negative() && !(Rational(1) - t + d).is_negative() &&
                                !t.is_negative() && t <= Rational(2);
  }
  return spectrum;
}

// ---------------------------------------------------------------------------------------------------------------
// Result records
// ---------------------------------------------------------------------------------------------------------------

/// The outcome of checking a universal statement over many exact cases. `holds` is true when no case violated it;
/// `counterexample` then is empty, otherwise it describes the first violating case (keys, betas, the failing quantity).
struct SpectralCheck {
  std::string statement;          ///< what is checked, under which hypotheses, and its source
  std::string cases_description;  ///< how the cases were chosen
  std::int64_t cases = 0;         ///< number of cases checked
  bool holds = true;              ///< no case violated the statement
  std::string counterexample;     ///< the first violating case; empty when holds
  std::string notes;              ///< extra counts worth reporting (may be empty)
};

/// The outcome of searching for cases that show a statement fails outside its hypotheses. `found` is true when at
/// least one case was an example; `example` then describes the first one.
struct SpectralExampleSearch {
  std::string statement;          ///< what an example shows, and the statement it delimits
  std::string cases_description;  ///< how the cases were chosen
  std::int64_t cases = 0;         ///< number of cases examined
  std::int64_t hits = 0;          ///< how many of them were examples
  bool found = false;             ///< hits > 0
  std::string example;            ///< the first example; empty when none was found
};

/// Several lines: verdict and counts, statement, cases, notes, counterexample.
inline std::string to_string(const SpectralCheck& check) {
  std::string text = std::string(check.holds ? "holds" : "FAILS") + " on " + std::to_string(check.cases) +
                     " cases: " + check.statement + "\n  cases: " + check.cases_description;
  if (!check.notes.empty()) text += "\n  notes: " + check.notes;
  if (!check.counterexample.empty()) text += "\n  counterexample: " + check.counterexample;
  return text;
}

inline std::string to_string(const SpectralExampleSearch& search) {
  std::string text = std::string(search.found ? "found" : "NOT FOUND") + " (" + std::to_string(search.hits) + " of " +
                     std::to_string(search.cases) + " cases): " + search.statement +
                     "\n  cases: " + search.cases_description;
  if (!search.example.empty()) text += "\n  first example: " + search.example;
  return text;
}

// ---------------------------------------------------------------------------------------------------------------
// Random cases
// ---------------------------------------------------------------------------------------------------------------

namespace detail {

inline constexpr const char* ust_source =
    "Grazzi et al., \"Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues\", ICLR 2025";

/// Engine of the random cases: std::mt19937_64, whose output for a seed is fixed by the C++ standard.
using SpectralEngine = std::mt19937_64;

/// A uniform integer in [low, high] (low <= high, small spans), exactly unbiased: 64-bit draws below 2^64 mod span
/// are rejected, so the accepted range is a whole number of copies of the span (std::uniform_int_distribution is not
/// used: its output is implementation-defined).
inline std::int64_t spectral_draw(SpectralEngine& engine, std::int64_t low, std::int64_t high) {
  const auto span = static_cast<std::uint64_t>(high - low) + 1;
  const std::uint64_t rejected = (std::uint64_t{0} - span) % span;
  while (true) {
    const std::uint64_t x = engine();
    if (x >= rejected) return low + static_cast<std::int64_t>(x % span);
  }
}

/// A nonzero key of length n with integer entries in [-max_entry, max_entry].
inline RationalVector random_integer_key(SpectralEngine& engine, std::size_t n, std::int64_t max_entry) {
  while (true) {
    RationalVector key(n);
    bool nonzero = false;
    for (Rational& x : key) {
      x = Rational(spectral_draw(engine, -max_entry, max_entry));
      nonzero = nonzero || !x.is_zero();
    }
    if (nonzero) return key;
  }
}

/// A rational beta = p / q in [low, high] (or (low, high] when low_open) with 1 <= q <= max_denominator; with
/// probability 3/8 instead one of the listed special values (endpoints, so the boundary cases are well covered).
inline Rational random_beta(SpectralEngine& engine, std::int64_t low, bool low_open, std::int64_t high,
                            std::int64_t max_denominator, const std::vector<Rational>& special) {
  if (!special.empty() && spectral_draw(engine, 0, 7) < 3)
    return special[static_cast<std::size_t>(spectral_draw(engine, 0, static_cast<std::int64_t>(special.size()) - 1))];
  const std::int64_t q = spectral_draw(engine, 1, max_denominator);
  const std::int64_t p = spectral_draw(engine, low * q + (low_open ? 1 : 0), high * q);
  return Rational(p, q);
}

/// "{0, 2}".
inline std::string indices_text(const std::vector<std::size_t>& indices) {
  std::string text = "{";
  for (std::size_t i = 0; i < indices.size(); ++i) text += (i == 0 ? "" : ", ") + std::to_string(indices[i]);
  return text + "}";
}

inline constexpr std::int64_t spectral_max_key_entry = 3;
inline constexpr std::int64_t spectral_max_denominator = 8;

}  // namespace detail

// ---------------------------------------------------------------------------------------------------------------
// UST Prop. 1.1: the spectral norm bound
// ---------------------------------------------------------------------------------------------------------------

/// UST Prop. 1.1: every product of factors I - beta k k^T / k^T k with beta in [0, 2] (1 - beta in [-1, 1]) has
/// spectral norm <= 1. Checked exactly (all principal minors of I - M^T M >= 0) on `cases` random products: dimension
/// 2..4, 1..4 factors, integer key entries in [-3, 3], beta = p/q in [0, 2] with q <= 8, the endpoints 0, 1, 2 drawn
/// often. Throws ArgumentError for cases < 0.
inline SpectralCheck check_spectral_norm_bound(std::uint64_t seed, std::int64_t cases) {
  if (cases < 0) detail::argument_error("cases", "cases >= 0", std::to_string(cases));
  SpectralCheck check;
  check.statement = std::string("UST Prop. 1.1 (") + detail::ust_source +
                    "): every product of generalized Householder factors I - beta k k^T/(k^T k) with beta in [0, 2] "
                    "has spectral norm <= 1 (exact: every principal minor of I - M^T M is >= 0)";
  check.cases_description = "random products, seed " + std::to_string(seed) +
                            ": dimension 2..4, 1..4 factors, integer key entries in [-3, 3], beta = p/q in [0, 2] with "
                            "q <= 8 (0, 1, 2 drawn with probability 3/8)";
  detail::SpectralEngine engine(seed);
  const std::vector<Rational> endpoints{Rational(0), Rational(1), Rational(2)};
  std::int64_t norm_exactly_one = 0;
  for (std::int64_t c = 0; c < cases; ++c) {
    const auto n = static_cast<std::size_t>(detail::spectral_draw(engine, 2, 4));
    const auto count = static_cast<std::size_t>(detail::spectral_draw(engine, 1, 4));
    std::vector<RationalHouseholderFactor> factors;
    for (std::size_t i = 0; i < count; ++i)
      factors.push_back({detail::random_integer_key(engine, n, detail::spectral_max_key_entry),
                         detail::random_beta(engine, 0, false, 2, detail::spectral_max_denominator, endpoints)});
    const RationalMatrix product = householder_product(factors);
    const RationalMatrix gram_gap = RationalMatrix::identity(n) - transpose(product) * product;  // I - M^T M
    PrincipalMinor negative;
    ++check.cases;
    if (!is_positive_semidefinite(gram_gap, &negative)) {
      if (check.holds)
        check.counterexample = detail::describe_factors(factors) + ": principal minor of I - M^T M on rows " +
                               detail::indices_text(negative.indices) + " = " + negative.value.to_string();
      check.holds = false;
    } else if (deltaproduct::determinant(gram_gap).is_zero()) {
      ++norm_exactly_one;
    }
  }
  check.notes = std::to_string(norm_exactly_one) + " of the products have norm exactly 1 (I - M^T M singular)";
  return check;
}

/// The bound of UST Prop. 1.1 fails beyond its hypothesis: products in which one factor has beta in (2, 3] (the others
/// in [0, 2]) whose spectral norm exceeds 1. A single such factor always does (its eigenvalue 1 - beta < -1); with
/// more factors the search reports how often. Same case distribution as check_spectral_norm_bound otherwise.
inline SpectralExampleSearch find_spectral_norm_violation(std::uint64_t seed, std::int64_t cases) {
  if (cases < 0) detail::argument_error("cases", "cases >= 0", std::to_string(cases));
  SpectralExampleSearch search;
  search.statement = std::string("beta > 2 breaks UST Prop. 1.1 (") + detail::ust_source +
                     "): a product with one factor of beta in (2, 3] and spectral norm > 1";
  search.cases_description = "random products, seed " + std::to_string(seed) +
                             ": dimension 2..4, 1..4 factors, integer key entries in [-3, 3], one factor with beta = "
                             "p/q in (2, 3], the others in [0, 2], q <= 8";
  detail::SpectralEngine engine(seed);
  const std::vector<Rational> endpoints{Rational(0), Rational(1), Rational(2)};
  const std::vector<Rational> beyond{Rational(3)};
  for (std::int64_t c = 0; c < cases; ++c) {
    const auto n = static_cast<std::size_t>(detail::spectral_draw(engine, 2, 4));
    const auto count = static_cast<std::size_t>(detail::spectral_draw(engine, 1, 4));
    const auto large = static_cast<std::size_t>(detail::spectral_draw(engine, 0, static_cast<std::int64_t>(count) - 1));
    std::vector<RationalHouseholderFactor> factors;
    for (std::size_t i = 0; i < count; ++i) {
      RationalVector key = detail::random_integer_key(engine, n, detail::spectral_max_key_entry);
      const Rational beta = i == large
                                ? detail::random_beta(engine, 2, true, 3, detail::spectral_max_denominator, beyond)
                                : detail::random_beta(engine, 0, false, 2, detail::spectral_max_denominator, endpoints);
      factors.push_back({std::move(key), beta});
    }
    PrincipalMinor negative;
    ++search.cases;
    if (!spectral_norm_at_most_one(householder_product(factors), &negative)) {
      if (!search.found)
        search.example = detail::describe_factors(factors) + ": principal minor of I - M^T M on rows " +
                         detail::indices_text(negative.indices) + " = " + negative.value.to_string();
      search.found = true;
      ++search.hits;
    }
  }
  return search;
}

// ---------------------------------------------------------------------------------------------------------------
// UST Prop. 1.3 and the two-factor refinement
// ---------------------------------------------------------------------------------------------------------------

namespace detail {

/// Empty when the characteristic polynomial of the product equals (x - 1)^(n - r) times that of the block (so the
/// block carries every eigenvalue other than the complement's 1s); a description of the mismatch otherwise.
inline std::string key_span_consistency_error(const KeySpanSpectrum& spectrum) {
  std::vector<Rational> expected = characteristic_polynomial(spectrum.block);
  for (std::size_t i = spectrum.span_rank; i < spectrum.dimension; ++i)
    expected = multiply_polynomials(expected, {Rational(-1), Rational(1)});
  if (characteristic_polynomial(spectrum.product) == expected) return {};
  return "the characteristic polynomial of the product is not (x - 1)^(n - r) det(x I - B) for B = " +
         spectrum.block.to_string();
}

inline std::string describe_block(const KeySpanSpectrum& spectrum) {
  std::string text = "block on the key span B = " + spectrum.block.to_string();
  if (spectrum.span_rank == 2)
    text += ", trace " + spectrum.trace.to_string() + ", determinant " + spectrum.determinant.to_string() +
            ", discriminant " + spectrum.discriminant.to_string();
  return text;
}

/// Two random keys of one random length in 2..4.
inline std::pair<RationalVector, RationalVector> random_key_pair(SpectralEngine& engine) {
  const auto n = static_cast<std::size_t>(spectral_draw(engine, 2, 4));
  RationalVector first = random_integer_key(engine, n, spectral_max_key_entry);
  RationalVector second = random_integer_key(engine, n, spectral_max_key_entry);
  return {std::move(first), std::move(second)};
}

}  // namespace detail

/// UST Prop. 1.3 (second part): with beta in [0, 1] and at most two factors, every eigenvalue of the product is real
/// and in [0, 1]. Checked exactly through the block on the key span (see KeySpanSpectrum), cross-checked against the
/// full characteristic polynomial, on `cases` random products: dimension 2..4, one factor (probability 1/4) or two,
/// integer key entries in [-3, 3], beta = p/q in [0, 1] with q <= 8, the values 0, 1/2, 1 drawn often.
inline SpectralCheck check_two_factor_real_spectrum(std::uint64_t seed, std::int64_t cases) {
  if (cases < 0) detail::argument_error("cases", "cases >= 0", std::to_string(cases));
  SpectralCheck check;
  check.statement = std::string("UST Prop. 1.3 (") + detail::ust_source +
                    "): a product of at most 2 generalized Householder factors with beta in [0, 1] has only real "
                    "eigenvalues, all in [0, 1] (exact: discriminant, p(0), p(1) and vertex of the key-span block's "
                    "characteristic polynomial)";
  check.cases_description = "random products, seed " + std::to_string(seed) +
                            ": dimension 2..4, 1 factor (probability 1/4) or 2, integer key entries in [-3, 3], beta = "
                            "p/q in [0, 1] with q <= 8 (0, 1/2, 1 drawn with probability 3/8)";
  detail::SpectralEngine engine(seed);
  const std::vector<Rational> specials{Rational(0), Rational(1, 2), Rational(1)};
  std::int64_t dependent_keys = 0;
  for (std::int64_t c = 0; c < cases; ++c) {
    auto [first, second] = detail::random_key_pair(engine);
    const bool two = detail::spectral_draw(engine, 0, 3) != 0;
    std::vector<RationalHouseholderFactor> factors{
        {std::move(first), detail::random_beta(engine, 0, false, 1, detail::spectral_max_denominator, specials)}};
    if (two)
      factors.push_back(
          {std::move(second), detail::random_beta(engine, 0, false, 1, detail::spectral_max_denominator, specials)});
    const KeySpanSpectrum spectrum = key_span_spectrum(factors);
    if (two && spectrum.span_rank == 1) ++dependent_keys;
    const std::string inconsistency = detail::key_span_consistency_error(spectrum);
    ++check.cases;
    if (!spectrum.in_unit_interval || !inconsistency.empty()) {
      if (check.holds)
        check.counterexample = detail::describe_factors(factors) + ": " +
                               (inconsistency.empty() ? detail::describe_block(spectrum) : inconsistency);
      check.holds = false;
    }
  }
  check.notes = std::to_string(dependent_keys) + " two-factor cases had parallel keys (a 1 x 1 block)";
  return check;
}

/// Refinement of UST Prop. 1.3 derived in the README's Theory section ([D], section 3): a product of two factors with
/// beta_1, beta_2 in [0, 2] has real spectrum as soon as either beta <= 1, so non-real eigenvalues need both betas > 1.
/// (Proof: if beta_1 <= 1, C_1 = S^2 with S symmetric PSD, and C_2 S S has the eigenvalues of the symmetric S C_2 S;
/// likewise for beta_2 <= 1 via C_2 C_1 ~ C_1 C_2.) Checked exhaustively over the grid beta in {0, 1/d, ..., 2}^2 (d =
/// beta_denominator) for each of `key_pairs` random key pairs (dimension 2..4, integer entries in [-3, 3]); `cases`
/// counts grid points times key pairs, and the notes count the non-real spectra found (all with both betas > 1).
inline SpectralCheck check_nonreal_needs_both_betas_above_one(std::uint64_t seed, std::int64_t key_pairs,
                                                              std::int64_t beta_denominator = 8) {
  if (key_pairs < 0) detail::argument_error("key_pairs", "key_pairs >= 0", std::to_string(key_pairs));
  if (beta_denominator < 1 || beta_denominator > 64)
    detail::argument_error("beta_denominator", "1 <= beta_denominator <= 64", std::to_string(beta_denominator));
  SpectralCheck check;
  check.statement = std::string("refinement of UST Prop. 1.3 (") + detail::ust_source +
                    ") derived in the README's Theory section: two generalized Householder factors with beta_1, beta_2 "
                    "in [0, 2] have "
                    "only real eigenvalues when beta_1 <= 1 or beta_2 <= 1; non-real eigenvalues need both betas > 1";
  check.cases_description = "every beta pair in {0, 1/" + std::to_string(beta_denominator) +
                            ", ..., 2}^2 for each of " + std::to_string(key_pairs) + " random key pairs, seed " +
                            std::to_string(seed) + ": dimension 2..4, integer key entries in [-3, 3]";
  detail::SpectralEngine engine(seed);
  std::int64_t nonreal = 0;
  std::int64_t both_above_one = 0;
  for (std::int64_t pair = 0; pair < key_pairs; ++pair) {
    const auto [first, second] = detail::random_key_pair(engine);
    for (std::int64_t i = 0; i <= 2 * beta_denominator; ++i)
      for (std::int64_t j = 0; j <= 2 * beta_denominator; ++j) {
        const Rational beta_1(i, beta_denominator);
        const Rational beta_2(j, beta_denominator);
        const std::vector<RationalHouseholderFactor> factors{{first, beta_1}, {second, beta_2}};
        const KeySpanSpectrum spectrum = key_span_spectrum(factors);
        const bool either_at_most_one = beta_1 <= Rational(1) || beta_2 <= Rational(1);
        if (!either_at_most_one) ++both_above_one;
        ++check.cases;
        if (spectrum.real) continue;
        ++nonreal;
        if (either_at_most_one) {
          if (check.holds)
            check.counterexample = detail::describe_factors(factors) + ": " + detail::describe_block(spectrum);
          check.holds = false;
        }
      }
  }
  check.notes = std::to_string(nonreal) + " cases had non-real eigenvalues, of " + std::to_string(both_above_one) +
                " cases with both betas > 1";
  return check;
}

/// Both betas > 1 do admit non-real eigenvalues (so the refinement is sharp and n_h = 2 with beta in [0, 2] can
/// rotate): random key pairs (dimension 2..4, integer entries in [-3, 3]) with beta_1, beta_2 = p/q in (1, 2], q <= 8
/// (2 drawn often: two reflections at a generic angle compose to a rotation). Counts the products with a negative
/// discriminant.
inline SpectralExampleSearch find_nonreal_two_factor_spectrum(std::uint64_t seed, std::int64_t cases) {
  if (cases < 0) detail::argument_error("cases", "cases >= 0", std::to_string(cases));
  SpectralExampleSearch search;
  search.statement = std::string(
                         "two generalized Householder factors with both betas > 1 can have non-real "
                         "eigenvalues (the refinement of UST Prop. 1.3 is sharp; ") +
                     detail::ust_source + ")";
  search.cases_description = "random key pairs, seed " + std::to_string(seed) +
                             ": dimension 2..4, integer key entries in [-3, 3], beta_1, beta_2 = p/q in (1, 2] with "
                             "q <= 8 (2 drawn with probability 3/8)";
  detail::SpectralEngine engine(seed);
  const std::vector<Rational> reflection{Rational(2)};
  for (std::int64_t c = 0; c < cases; ++c) {
    auto [first, second] = detail::random_key_pair(engine);
    const Rational beta_1 = detail::random_beta(engine, 1, true, 2, detail::spectral_max_denominator, reflection);
    const Rational beta_2 = detail::random_beta(engine, 1, true, 2, detail::spectral_max_denominator, reflection);
    const std::vector<RationalHouseholderFactor> factors{{std::move(first), beta_1}, {std::move(second), beta_2}};
    const KeySpanSpectrum spectrum = key_span_spectrum(factors);
    ++search.cases;
    if (!spectrum.real) {
      if (!search.found) search.example = detail::describe_factors(factors) + ": " + detail::describe_block(spectrum);
      search.found = true;
      ++search.hits;
    }
  }
  return search;
}

// ---------------------------------------------------------------------------------------------------------------
// Orthogonal matrices as products of reflections (Cartan-Dieudonne), UST Prop. 1.2
// ---------------------------------------------------------------------------------------------------------------

/// g^T g == I exactly (g square).
inline bool is_orthogonal(const RationalMatrix& g) {
  return g.is_square() && transpose(g) * g == RationalMatrix::identity(g.rows());
}

namespace detail {
inline void require_orthogonal(const RationalMatrix& g) {
  if (!is_orthogonal(g)) argument_error("g", "an orthogonal matrix (g^T g = I exactly)", g.to_string());
}
}  // namespace detail

/// The least number of reflections whose product is the orthogonal matrix g: rank(g - I). (A product of k reflections
/// fixes the intersection of k hyperplanes pointwise, so k >= n - dim ker(g - I) = rank(g - I); and
/// decompose_into_reflections attains it. UST Prop. 1.2 states the bound n, Cartan-Dieudonne.) This is the n_h a
/// DeltaProduct layer needs to realise g as one transition with beta = 2. Throws ArgumentError when g is not
/// orthogonal.
inline std::size_t minimal_reflections(const RationalMatrix& g) {
  detail::require_orthogonal(g);
  return matrix_rank(g - RationalMatrix::identity(g.rows()));
}

/// The permutation matrix of a one-line permutation p of {0, ..., n-1} (p[x] is the image of x): column x is e_{p[x]},
/// so M(p) e_x = e_{p(x)} and M(p) M(q) = M(p o q) (the README's Theory section). Throws ArgumentError unless p holds
/// each of 0, ..., n-1 once.
inline RationalMatrix rational_permutation_matrix(const std::vector<int>& p) {
  std::vector<char> seen(p.size(), 0);
  for (const int x : p) {
    if (x < 0 || static_cast<std::size_t>(x) >= p.size() || seen[static_cast<std::size_t>(x)] != 0) {
      std::string text = "(";
      for (std::size_t i = 0; i < p.size(); ++i) text += (i == 0 ? "" : ", ") + std::to_string(p[i]);
      detail::argument_error("p", "a permutation of 0, ..., " + std::to_string(p.size()) + " - 1 in one-line form",
                             text + ")");
    }
    seen[static_cast<std::size_t>(x)] = 1;
  }
  RationalMatrix m(p.size(), p.size());
  for (std::size_t x = 0; x < p.size(); ++x) m(static_cast<std::size_t>(p[x]), x) = Rational(1);
  return m;
}

/// minimal_reflections of the permutation matrix of p: n - (number of cycles of p, fixed points included), i.e. the
/// number of swaps in UST Prop. 1.2 / Thm 3's construction.
inline std::size_t minimal_reflections_of_permutation(const std::vector<int>& p) {
  return minimal_reflections(rational_permutation_matrix(p));
}

/// Writes the orthogonal rational g as a product of rank(g - I) reflections with rational vectors, returned in acting
/// order: g = R(u_r) ... R(u_1) with R(u) = I - 2 u u^T / u^T u, u_1 acting first (so the list can be used directly as
/// the keys C_1, ..., C_r of one DeltaProduct step, each with beta = 2). Construction (the standard proof of
/// Cartan-Dieudonne): while h != I, take the first basis vector x = e_j with h x != x and u = h x - x; since |h x| =
/// |x|, R(u) swaps h x and x, so R(u) h fixes x and every vector h fixes (u is orthogonal to them), and rank(h - I)
/// drops by exactly one. For a permutation matrix every u is e_i - e_j: a swap. The result is verified by multiplying
/// back. Throws ArgumentError when g is not orthogonal.
inline std::vector<RationalVector> decompose_into_reflections(const RationalMatrix& g) {
  detail::require_orthogonal(g);
  const std::size_t n = g.rows();
  std::vector<RationalVector> peeled;  // u with R(u_k) ... R(u_1) g = h, u_1 first
  RationalMatrix h = g;
  for (std::size_t j = 0; j < n; ++j) {
    RationalVector u = h.column(j);
    u[j] -= Rational(1);  // h e_j - e_j
    if (std::all_of(u.begin(), u.end(), [](const Rational& x) { return x.is_zero(); })) continue;
    detail::apply_householder_factor(u, Rational(2), h);  // now h e_j = e_j, and e_0 .. e_{j-1} stay fixed
    peeled.push_back(std::move(u));
  }
  if (h != RationalMatrix::identity(n))
    throw Error("deltaproduct: decompose_into_reflections: internal error, residual " + h.to_string());
  // R(u_r) ... R(u_1) g = I  =>  g = R(u_1) ... R(u_r): u_r acts first.
  std::reverse(peeled.begin(), peeled.end());
  if (reflection_product(peeled, n) != g)
    throw Error("deltaproduct: decompose_into_reflections: internal error, the product does not give back " +
                g.to_string());
  return peeled;
}

/// The n_h a one-layer DeltaProduct needs for a group given by orthogonal matrices (one per element): the most
/// reflections any element needs, max_g rank(g - I) (the README's Theory section, DP results [D]). 0 for an empty list.
/// Throws ArgumentError when some matrix is not orthogonal.
inline std::size_t required_reflections_per_step(const std::vector<RationalMatrix>& representation) {
  std::size_t most = 0;
  for (const RationalMatrix& g : representation) most = std::max(most, minimal_reflections(g));
  return most;
}

/// The rotation group of the cube (isomorphic to S4): the 24 signed 3 x 3 permutation matrices of determinant +1,
/// ordered by permutation (lexicographic one-line form), then by sign pattern (bit i of 0..7 negates column i). The
/// first is the identity.
inline std::vector<RationalMatrix> cube_rotations() {
  std::vector<RationalMatrix> rotations;
  std::vector<int> p{0, 1, 2};
  do {
    for (unsigned signs = 0; signs < 8; ++signs) {
      RationalMatrix m(3, 3);
      for (std::size_t x = 0; x < 3; ++x)
        m(static_cast<std::size_t>(p[x]), x) = Rational(((signs >> x) & 1u) != 0 ? -1 : 1);
      if (deltaproduct::determinant(m) == Rational(1)) rotations.push_back(std::move(m));
    }
  } while (std::next_permutation(p.begin(), p.end()));
  return rotations;
}

/// The permutation matrices of all n! elements of S_n (1 <= n <= 7), in lexicographic order of the one-line forms
/// (index 0 is the identity), as rational_permutation_matrix builds them.
inline std::vector<RationalMatrix> symmetric_group_matrices(int n) {
  if (n < 1 || n > 7) detail::argument_error("n", "1 <= n <= 7", std::to_string(n));
  std::vector<int> p(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) p[static_cast<std::size_t>(i)] = i;
  std::vector<RationalMatrix> matrices;
  do matrices.push_back(rational_permutation_matrix(p));
  while (std::next_permutation(p.begin(), p.end()));
  return matrices;
}

namespace detail {

/// Empty when decompose_into_reflections(g) has rank(g - I) vectors and multiplies back to g; the problem otherwise.
inline std::string reflection_decomposition_error(const RationalMatrix& g, const std::vector<RationalVector>& factors) {
  const std::size_t expected = minimal_reflections(g);
  if (factors.size() != expected)
    return std::to_string(factors.size()) + " reflections for rank(g - I) = " + std::to_string(expected);
  if (reflection_product(factors, g.rows()) != g) return "the reflections do not multiply back to g";
  return {};
}

/// Nonzero entries of v.
inline std::size_t nonzero_entries(const RationalVector& v) {
  return static_cast<std::size_t>(std::count_if(v.begin(), v.end(), [](const Rational& x) { return !x.is_zero(); }));
}

}  // namespace detail

/// Cartan-Dieudonne in its sharp form (UST Prop. 1.2 with the count rank(g - I), the README's Theory section) on random
/// rational orthogonal matrices g = R(w_m) ... R(w_1), m = 0..n+1 random reflections with integer vectors w (entries in
/// [-2, 2]), n = 1..4: decompose_into_reflections returns r = rank(g - I) reflections that multiply back to g exactly,
/// r <= m (no product needs more than the minimum), and m - r is even (det g = (-1)^m = (-1)^r).
inline SpectralCheck check_reflection_decompositions(std::uint64_t seed, std::int64_t cases) {
  if (cases < 0) detail::argument_error("cases", "cases >= 0", std::to_string(cases));
  SpectralCheck check;
  check.statement = std::string("Cartan-Dieudonne, sharp count (UST Prop. 1.2, ") + detail::ust_source +
                    "; count rank(g - I) from the README's Theory section): every orthogonal g is a product of rank(g "
                    "- I) reflections, "
                    "constructed exactly; a product of m reflections has rank(g - I) <= m and of the same parity";
  check.cases_description = "g = product of m = 0..n+1 random reflections, seed " + std::to_string(seed) +
                            ", n = 1..4, integer vectors with entries in [-2, 2]";
  detail::SpectralEngine engine(seed);
  std::int64_t fewer = 0;
  for (std::int64_t c = 0; c < cases; ++c) {
    const auto n = static_cast<std::size_t>(detail::spectral_draw(engine, 1, 4));
    const auto m = static_cast<std::size_t>(detail::spectral_draw(engine, 0, static_cast<std::int64_t>(n) + 1));
    std::vector<RationalVector> drawn;
    for (std::size_t i = 0; i < m; ++i) drawn.push_back(detail::random_integer_key(engine, n, 2));
    const RationalMatrix g = reflection_product(drawn, n);
    const std::vector<RationalVector> factors = decompose_into_reflections(g);
    std::string problem = detail::reflection_decomposition_error(g, factors);
    if (problem.empty() && (factors.size() > m || (m - factors.size()) % 2 != 0))
      problem = std::to_string(factors.size()) + " reflections for a product of " + std::to_string(m);
    if (factors.size() < m) ++fewer;
    ++check.cases;
    if (!problem.empty()) {
      if (check.holds) check.counterexample = "g = " + g.to_string() + ": " + problem;
      check.holds = false;
    }
  }
  check.notes = std::to_string(fewer) + " of the products needed fewer reflections than were multiplied";
  return check;
}

/// For every permutation p of S_n (1 <= n <= 7): minimal_reflections_of_permutation(p) = n - (cycles of p, counted
/// here by walking the cycles), and decompose_into_reflections gives that many swaps u = e_i - e_j (one entry 1, one
/// entry -1) multiplying back to the permutation matrix (UST Prop. 1.2: a permutation is a product of n - 1 swaps at
/// most; UST Thm 3's construction).
inline SpectralCheck check_permutation_reflection_counts(int n) {
  if (n < 1 || n > 7) detail::argument_error("n", "1 <= n <= 7", std::to_string(n));
  SpectralCheck check;
  check.statement = std::string("UST Prop. 1.2 / Thm 3 (") + detail::ust_source +
                    "): the permutation matrix of p is a product of n - cycles(p) swaps I - 2 u u^T/(u^T u), "
                    "u = e_i - e_j, and no fewer reflections (rank(P - I) = n - cycles(p))";
  check.cases_description = "every permutation of S_" + std::to_string(n);
  std::vector<int> p(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) p[static_cast<std::size_t>(i)] = i;
  std::size_t most = 0;
  do {
    std::vector<char> visited(p.size(), 0);
    std::size_t cycles = 0;
    for (std::size_t start = 0; start < p.size(); ++start) {
      if (visited[start] != 0) continue;
      ++cycles;
      for (std::size_t x = start; visited[x] == 0; x = static_cast<std::size_t>(p[x])) visited[x] = 1;
    }
    const RationalMatrix g = rational_permutation_matrix(p);
    const std::vector<RationalVector> swaps = decompose_into_reflections(g);
    std::string problem = detail::reflection_decomposition_error(g, swaps);
    if (problem.empty() && minimal_reflections_of_permutation(p) != p.size() - cycles)
      problem = "rank(P - I) = " + std::to_string(minimal_reflections_of_permutation(p)) +
                " but n - cycles = " + std::to_string(p.size() - cycles);
    for (const RationalVector& u : swaps) {
      const bool is_swap = detail::nonzero_entries(u) == 2 && std::count(u.begin(), u.end(), Rational(1)) == 1 &&
                           std::count(u.begin(), u.end(), Rational(-1)) == 1;
      if (problem.empty() && !is_swap) problem = "the reflection vector " + to_string(u) + " is not e_i - e_j";
    }
    most = std::max(most, swaps.size());
    ++check.cases;
    if (!problem.empty()) {
      if (check.holds) check.counterexample = "P = " + g.to_string() + ": " + problem;
      check.holds = false;
    }
  } while (std::next_permutation(p.begin(), p.end()));
  check.notes =
      "the most swaps any element needs: " + std::to_string(most) + " (n - 1 = " + std::to_string(n - 1) + ")";
  return check;
}

/// The cube rotation group as a representation of S4 for one DeltaProduct layer (the README's Theory section, DP
/// results; section 4): cube_rotations() holds 24 distinct matrices, closed under multiplication, each orthogonal with
/// det 1; the most reflections an element needs, max rank(g - I), is 2 (so n_h = 2 suffices); and every decomposition
/// uses vectors proportional to e_i or e_i +- e_j (the keys the README's Theory section lists: e_i with beta' = 2, e_i
/// +- e_j with beta' = 1).
inline SpectralCheck check_cube_rotation_group() {
  SpectralCheck check;
  check.statement =
      "the 24 rotations of the cube (S4) form a group of orthogonal det-1 matrices needing at most "
      "max rank(g - I) = 2 reflections each, with keys proportional to e_i or e_i +- e_j (the README's Theory section "
      "section 3 [D]: n_h = 2 suffices for S4 in one layer)";
  check.cases_description = "all 24 cube rotations, their 576 products and 276 pairs";
  const std::vector<RationalMatrix> rotations = cube_rotations();
  auto fail = [&check](const std::string& problem) {
    if (check.holds) check.counterexample = problem;
    check.holds = false;
  };
  if (rotations.size() != 24) fail(std::to_string(rotations.size()) + " rotations instead of 24");
  std::size_t most = 0;
  for (std::size_t a = 0; a < rotations.size(); ++a) {
    const RationalMatrix& g = rotations[a];
    ++check.cases;
    if (!is_orthogonal(g) || deltaproduct::determinant(g) != Rational(1)) {
      fail(g.to_string() + " is not a rotation");
      continue;
    }
    const std::vector<RationalVector> factors = decompose_into_reflections(g);
    const std::string problem = detail::reflection_decomposition_error(g, factors);
    if (!problem.empty()) fail(g.to_string() + ": " + problem);
    for (const RationalVector& u : factors) {
      const std::size_t nonzero = detail::nonzero_entries(u);
      bool cube_key = nonzero == 1;
      if (nonzero == 2) {  // e_i +- e_j up to scale: two nonzero entries of equal magnitude
        std::vector<Rational> magnitudes;
        for (const Rational& x : u)
          if (!x.is_zero()) magnitudes.push_back(x.abs());
        cube_key = magnitudes[0] == magnitudes[1];
      }
      if (!cube_key) fail(g.to_string() + ": the reflection vector " + to_string(u) + " is not e_i or e_i +- e_j");
    }
    most = std::max(most, factors.size());
    for (std::size_t b = 0; b < rotations.size(); ++b) {
      ++check.cases;
      const RationalMatrix product = g * rotations[b];
      if (std::find(rotations.begin(), rotations.end(), product) == rotations.end())
        fail("the product of rotations " + std::to_string(a) + " and " + std::to_string(b) + " is not a rotation");
      if (b > a) {
        ++check.cases;
        if (g == rotations[b]) fail("rotations " + std::to_string(a) + " and " + std::to_string(b) + " are equal");
      }
    }
  }
  if (most != 2 || required_reflections_per_step(rotations) != 2)
    fail("the most reflections an element needs is " + std::to_string(most) + ", not 2");
  check.notes = "max rank(g - I) = " + std::to_string(required_reflections_per_step(rotations));
  return check;
}

}  // namespace deltaproduct
