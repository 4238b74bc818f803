// The papers' model of finite precision (UST Thms 1, 2; the README's Theory section): a finite sorted set D of reals and
// cast(x) = the nearest element of D, ties to the SMALLER element, saturating beyond the ends (no inf, no NaN).
// A recurrence is evaluated there by taking products exactly, casting each term, summing exactly and casting the
// sum: ExactSum holds such a sum without rounding and CastModel::cast(const ExactSum&) casts it.
//
// Every comparison is exact (error-free transforms), so ties are found exactly even when the midpoint of two
// elements is not a double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "deltaproduct/core/error.hpp"
#include "deltaproduct/precision/rounding.hpp"

namespace deltaproduct {

/// An exact sum of doubles, as a nonoverlapping expansion (Shewchuk, "Adaptive precision floating-point arithmetic
/// and fast robust geometric predicates", 1997): components of increasing magnitude whose sum is the exact value.
class ExactSum {
public:
  ExactSum() = default;

  /// Adds x exactly. Throws ArgumentError for a non-finite x or when a partial sum would overflow double.
  void add(double x) {
    if (!std::isfinite(x)) detail::argument_error("x", "a finite number", detail::to_text(x));
    std::vector<double> grown;
    grown.reserve(components_.size() + 1);
    double carry = x;
    for (const double component : components_) {  // Grow-Expansion with zero elimination
      const double sum = carry + component;
      if (!std::isfinite(sum)) {
        detail::argument_error("x", "terms whose partial sums stay within double's range", detail::to_text(x));
      }
      const double error = detail::two_sum_error(carry, component, sum);
      if (error != 0.0) grown.push_back(error);
      carry = sum;
    }
    if (carry != 0.0) grown.push_back(carry);
    components_ = std::move(grown);
  }

  /// Adds a * b exactly (TwoProd). Throws ArgumentError when the product's error term could underflow
  /// (0 < |a b| < 2^-968) or the product overflows.
  void add_product(double a, double b) {
    const double product = a * b;
    if (!std::isfinite(product)) {
      detail::argument_error("a * b", "a finite product", detail::to_text(a) + " * " + detail::to_text(b));
    }
    if (product == 0.0) {
      if (a != 0.0 && b != 0.0) {
        detail::argument_error("a * b", "no underflow", detail::to_text(a) + " * " + detail::to_text(b));
      }
      return;
    }
    if (std::fabs(product) < 0x1p-968) {
      detail::argument_error("a * b", "|a * b| >= 2^-968 (so that the product is exact as two doubles)",
                             detail::to_text(a) + " * " + detail::to_text(b));
    }
    add(std::fma(a, b, -product));
    add(product);
  }

  /// The exact sign of the sum: -1, 0 or +1 (the largest component dominates the others).
  int sign() const noexcept {
    if (components_.empty()) return 0;
    return components_.back() > 0.0 ? 1 : -1;
  }

  /// The sign of (sum - x), exactly.
  int compare(double x) const {
    ExactSum difference = *this;
    difference.add(-x);
    return difference.sign();
  }

  /// The sum rounded to double (approximately: components added from the smallest).
  double approximate() const noexcept {
    double total = 0.0;
    for (const double component : components_) total += component;
    return total;
  }

  /// The components, nonoverlapping, of increasing magnitude, none zero.
  const std::vector<double>& components() const noexcept { return components_; }

private:
  std::vector<double> components_;
};

/// cast(x) onto a finite set of reals: nearest element, ties to the smaller, saturation at both ends.
class CastModel {
public:
  /// D = the given values (sorted, duplicates and -0/+0 merged). Throws ArgumentError when empty or not finite.
  explicit CastModel(std::vector<double> values) : values_(std::move(values)) {
    if (values_.empty()) detail::argument_error("values", "at least one value", "an empty set");
    for (double& v : values_) {
      if (!std::isfinite(v)) detail::argument_error("values", "finite values", detail::to_text(v));
      if (v == 0.0) v = 0.0;  // one zero
    }
    std::sort(values_.begin(), values_.end());
    values_.erase(std::unique(values_.begin(), values_.end()), values_.end());
  }

  /// D = every finite value of a simulated format (FloatFormat or FixedPoint), one zero.
  template <class Format>
  static CastModel of_format() {
    static_assert(Format::finite_value_count <= (std::uint64_t{1} << 26),
                  "CastModel::of_format: this format has more than 2^26 values; build the model from the values you "
                  "need instead");
    std::vector<double> values;
    values.reserve(static_cast<std::size_t>(Format::finite_value_count));
    Format::for_each_finite_value([&values](const Format& v) { values.push_back(static_cast<double>(v)); });
    return CastModel(std::move(values));
  }

  /// The index in values() of cast(x). Throws ArgumentError for NaN (the model has no NaN); +-inf saturate.
  std::size_t cast_index(double x) const {
    if (std::isnan(x)) detail::argument_error("x", "a number (the cast model has no NaN)", "NaN");
    if (x <= values_.front()) return 0;
    if (x >= values_.back()) return values_.size() - 1;
    const std::size_t upper =
        static_cast<std::size_t>(std::upper_bound(values_.begin(), values_.end(), x) - values_.begin());
    const std::size_t lower = upper - 1;  // values_[lower] <= x < values_[upper]
    if (values_[lower] == x) return lower;
    return closer_to_upper(x, values_[lower], values_[upper]) ? upper : lower;
  }

  /// The nearest element of D to x; ties go to the smaller element; beyond the ends, the end.
  double cast(double x) const { return values_[cast_index(x)]; }

  /// The index of cast(sum), for an exact sum.
  std::size_t cast_index(const ExactSum& sum) const {
    if (sum.compare(values_.front()) <= 0) return 0;
    if (sum.compare(values_.back()) >= 0) return values_.size() - 1;
    // Start from the double approximation, then fix the bracket exactly: values_[i] <= sum < values_[i + 1].
    const double guess = sum.approximate();
    std::size_t i = static_cast<std::size_t>(std::upper_bound(values_.begin(), values_.end(), guess) - values_.begin());
    i = std::min(std::max<std::size_t>(i, 1), values_.size() - 1) - 1;
    while (i > 0 && sum.compare(values_[i]) < 0) --i;
    while (i + 1 < values_.size() - 1 && sum.compare(values_[i + 1]) >= 0) ++i;
    if (sum.compare(values_[i]) == 0) return i;
    // Compare the distances: the sign of 2 sum - lower - upper.
    ExactSum twice_minus_ends;
    for (const double component : sum.components()) {
      twice_minus_ends.add(component);
      twice_minus_ends.add(component);
    }
    twice_minus_ends.add(-values_[i]);
    twice_minus_ends.add(-values_[i + 1]);
    return twice_minus_ends.sign() > 0 ? i + 1 : i;
  }

  /// cast of an exact sum.
  double cast(const ExactSum& sum) const { return values_[cast_index(sum)]; }

  /// cast(sum of the terms), the terms summed exactly.
  double cast_sum(std::span<const double> terms) const {
    ExactSum sum;
    for (const double t : terms) sum.add(t);
    return cast(sum);
  }

  bool contains(double x) const { return std::binary_search(values_.begin(), values_.end(), x); }
  const std::vector<double>& values() const noexcept { return values_; }
  std::size_t size() const noexcept { return values_.size(); }
  double lowest() const noexcept { return values_.front(); }
  double highest() const noexcept { return values_.back(); }

private:
  /// Whether upper - x < x - lower exactly, for lower < x < upper: compare the two differences as exact
  /// double-double values (rounded difference, then its TwoSum error).
  static bool closer_to_upper(double x, double lower, double upper) noexcept {
    const double below = x - lower;
    const double above = upper - x;
    // At most one difference overflows (both would need upper - lower > 2 * DBL_MAX); that one is the larger.
    if (std::isinf(below)) return true;
    if (std::isinf(above)) return false;
    if (above != below) return above < below;
    return detail::two_sum_error(upper, -x, above) < detail::two_sum_error(x, -lower, below);
  }

  std::vector<double> values_;
};

}  // namespace deltaproduct
