// A simulated signed fixed-point format Q(I.F): a two's complement word of 1 + I + F bits (sign, I integer bits,
// F fraction bits) holding k * 2^-F for integers k in [-2^(I+F), 2^(I+F) - 1], so the range is
// [-2^I, 2^I - 2^-F]. Every operation saturates on overflow (no wrap-around, no infinity, no NaN) and rounds once.
//
// Exactness: + - * / and sqrt are exact integer computations rounded once (64-bit intermediates; the word has at
// most 32 bits). exp is std::exp in double, rounded once (as FloatFormat's exp), and stochastic sqrt draws with a
// probability accurate to about 2^-50 (the fractional part of the square root comes from double arithmetic).
// Conventions where there is no IEEE rule: NaN converts to 0; +-inf and out-of-range values saturate; x / 0 gives
// max() or lowest() by the sign of x, and 0 / 0 gives 0; sqrt of a negative value gives 0. toward_zero truncates
// toward zero (not toward -inf, as an arithmetic right shift would).
#pragma once

#include <algorithm>
#include <cmath>
#include <compare>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>

#include <Eigen/Core>

#include "deltaproduct/core/error.hpp"
#include "deltaproduct/precision/rounding.hpp"

namespace deltaproduct {

/// Signed fixed point with IntegerBits integer and FractionBits fraction bits (plus a sign bit), saturating.
template <int IntegerBits, int FractionBits, Rounding RoundingMode = Rounding::nearest_even>
class FixedPoint {
  static_assert(IntegerBits >= 0 && FractionBits >= 0 && IntegerBits + FractionBits >= 1,
                "FixedPoint: IntegerBits and FractionBits count bits: use values >= 0, not both 0");
  static_assert(1 + IntegerBits + FractionBits <= 32,
                "FixedPoint: a word has at most 32 bits (1 sign + IntegerBits + FractionBits), so that products and "
                "quotients stay exact in 64-bit integers");

public:
  static constexpr int integer_bits = IntegerBits;
  static constexpr int fraction_bits = FractionBits;
  static constexpr int total_bits = 1 + IntegerBits + FractionBits;
  static constexpr Rounding rounding = RoundingMode;
  static constexpr std::int64_t max_raw = (std::int64_t{1} << (IntegerBits + FractionBits)) - 1;
  static constexpr std::int64_t min_raw = -(std::int64_t{1} << (IntegerBits + FractionBits));
  /// Number of values (every code is finite).
  static constexpr std::uint64_t finite_value_count = std::uint64_t{1} << total_bits;

  /// The same format with another rounding mode.
  template <Rounding OtherRounding>
  using with_rounding = FixedPoint<IntegerBits, FractionBits, OtherRounding>;

  /// Uninitialised, like an int; FixedPoint{} is 0.
  FixedPoint() = default;

  /// Rounds x once to the format, saturating.
  template <class A>
    requires std::is_arithmetic_v<A>
  explicit FixedPoint(A x) noexcept : raw_(narrow(from_arithmetic(x))) {}

  /// Rounds another simulated number once (its value is exactly a double).
  template <class Other>
    requires detail::is_simulated_scalar_v<Other>
  explicit FixedPoint(const Other& x) noexcept : raw_(narrow(from_arithmetic(static_cast<double>(x)))) {}

  /// The value (exact as a double), converted by static_cast to any arithmetic type.
  template <class A>
    requires std::is_arithmetic_v<A>
  explicit constexpr operator A() const noexcept {
    return static_cast<A>(to_double());
  }
  constexpr double to_double() const noexcept { return static_cast<double>(raw_) * detail::power_of_two(-FractionBits); }

  /// The integer k of the value k * 2^-FractionBits.
  constexpr std::int64_t raw() const noexcept { return raw_; }
  /// The value k * 2^-FractionBits; throws ArgumentError when k is outside [min_raw, max_raw].
  static FixedPoint from_raw(std::int64_t k) {
    if (k < min_raw || k > max_raw) {
      detail::argument_error("k", "an integer in [" + std::to_string(min_raw) + ", " + std::to_string(max_raw) + "]",
                             std::to_string(k));
    }
    return exact(k);
  }

  static constexpr FixedPoint resolution() noexcept { return exact(1); }  ///< 2^-FractionBits
  static constexpr FixedPoint epsilon() noexcept { return exact(1); }     ///< the resolution, 2^-FractionBits
  static constexpr FixedPoint max() noexcept { return exact(max_raw); }
  static constexpr FixedPoint lowest() noexcept { return exact(min_raw); }

  /// Calls fn(value) for every value in increasing order.
  template <class Fn>
  static void for_each_finite_value(Fn&& fn) {
    for (std::int64_t k = min_raw; k <= max_raw; ++k) fn(exact(k));
  }

  friend FixedPoint operator+(FixedPoint a, FixedPoint b) noexcept { return saturated(a.raw() + b.raw()); }
  friend FixedPoint operator-(FixedPoint a, FixedPoint b) noexcept { return saturated(a.raw() - b.raw()); }
  friend FixedPoint operator-(FixedPoint a) noexcept { return saturated(-a.raw()); }
  friend constexpr FixedPoint operator+(FixedPoint a) noexcept { return a; }
  friend FixedPoint operator*(FixedPoint a, FixedPoint b) noexcept {
    // a b = ka kb 2^-2F: round ka kb / 2^F to an integer.
    const std::int64_t product = std::int64_t{a.raw()} * b.raw();
    constexpr std::int64_t unit = std::int64_t{1} << FractionBits;
    if constexpr (RoundingMode == Rounding::nearest_even && FractionBits > 0) {
      // floor((p + half - 1 + q's last bit) / 2^F) with q = floor(p / 2^F) is p / 2^F rounded to nearest, ties to
      // even (>> floors in C++20). No branch: loops over it vectorize.
      constexpr std::int64_t half = unit / 2;
      return saturated((product + (half - 1) + ((product >> FractionBits) & 1)) >> FractionBits);
    }
    const std::int64_t below = product >= 0 ? product / unit : -((-product + unit - 1) / unit);  // floor
    return saturated(round_floor_quotient(below, static_cast<std::uint64_t>(product - below * unit),
                                          static_cast<std::uint64_t>(unit)));
  }
  friend FixedPoint operator/(FixedPoint a, FixedPoint b) noexcept {
    if (b.raw() == 0) return a.raw() > 0 ? max() : (a.raw() < 0 ? lowest() : exact(0));
    // a / b = (ka 2^F / kb) 2^-F.
    std::int64_t numerator = a.raw() * (std::int64_t{1} << FractionBits);
    std::int64_t denominator = b.raw();
    if (denominator < 0) {
      numerator = -numerator;
      denominator = -denominator;
    }
    std::int64_t below = numerator / denominator;
    std::int64_t rem = numerator % denominator;
    if (rem < 0) {
      below -= 1;
      rem += denominator;
    }
    return saturated(
        round_floor_quotient(below, static_cast<std::uint64_t>(rem), static_cast<std::uint64_t>(denominator)));
  }
  FixedPoint& operator+=(FixedPoint b) noexcept { return *this = *this + b; }
  FixedPoint& operator-=(FixedPoint b) noexcept { return *this = *this - b; }
  FixedPoint& operator*=(FixedPoint b) noexcept { return *this = *this * b; }
  FixedPoint& operator/=(FixedPoint b) noexcept { return *this = *this / b; }

  friend constexpr bool operator==(FixedPoint a, FixedPoint b) noexcept { return a.raw_ == b.raw_; }
  friend constexpr std::strong_ordering operator<=>(FixedPoint a, FixedPoint b) noexcept { return a.raw_ <=> b.raw_; }

  /// sqrt(k 2^-F) = sqrt(k 2^F) 2^-F: the integer square root of n = k 2^F, rounded.
  friend FixedPoint sqrt(FixedPoint a) noexcept {
    if (a.raw() <= 0) return exact(0);
    const std::uint64_t n = static_cast<std::uint64_t>(a.raw()) << FractionBits;  // < 2^62
    auto root = static_cast<std::uint64_t>(std::sqrt(static_cast<double>(n)));
    while (root * root > n) --root;
    while ((root + 1) * (root + 1) <= n) ++root;
    const std::uint64_t rem = n - root * root;  // in [0, 2 root]
    bool up = false;
    if constexpr (RoundingMode == Rounding::nearest_even) {
      up = rem > root;  // n > (root + 1/2)^2 = root^2 + root + 1/4; never a tie
    } else if constexpr (RoundingMode == Rounding::stochastic) {
      // sqrt(n) - root = rem / (sqrt(n) + root).
      up = rem != 0 && detail::bernoulli(static_cast<double>(rem) / (std::sqrt(static_cast<double>(n)) +
                                                                    static_cast<double>(root)));
    }
    return saturated(static_cast<std::int64_t>(root + (up ? 1 : 0)));
  }
  friend FixedPoint exp(FixedPoint a) noexcept { return FixedPoint(std::exp(a.to_double())); }
  friend FixedPoint abs(FixedPoint a) noexcept { return a.raw() < 0 ? -a : a; }
  friend FixedPoint fabs(FixedPoint a) noexcept { return abs(a); }
  friend FixedPoint abs2(FixedPoint a) noexcept { return a * a; }
  friend constexpr FixedPoint conj(FixedPoint a) noexcept { return a; }
  friend constexpr FixedPoint real(FixedPoint a) noexcept { return a; }
  friend constexpr FixedPoint imag(FixedPoint) noexcept { return exact(0); }
  friend constexpr bool isfinite(FixedPoint) noexcept { return true; }
  friend constexpr bool isnan(FixedPoint) noexcept { return false; }
  friend constexpr bool isinf(FixedPoint) noexcept { return false; }
  friend constexpr bool signbit(FixedPoint a) noexcept { return a.raw_ < 0; }
  friend constexpr FixedPoint min(FixedPoint a, FixedPoint b) noexcept { return b.raw_ < a.raw_ ? b : a; }
  friend constexpr FixedPoint max(FixedPoint a, FixedPoint b) noexcept { return a.raw_ < b.raw_ ? b : a; }
  /// a * b + c with one rounding (the exact product and sum are integers of at most 63 bits).
  friend FixedPoint fma(FixedPoint a, FixedPoint b, FixedPoint c) noexcept {
    constexpr std::int64_t unit = std::int64_t{1} << FractionBits;
    const std::int64_t total = a.raw() * b.raw() + c.raw() * unit;  // |.| < 2^62 + 2^62
    const std::int64_t below = total >= 0 ? total / unit : -((-total + unit - 1) / unit);
    return saturated(round_floor_quotient(below, static_cast<std::uint64_t>(total - below * unit),
                                          static_cast<std::uint64_t>(unit)));
  }
  friend FixedPoint next_up(FixedPoint a) noexcept { return a.raw_ == max_raw ? a : exact(a.raw_ + 1); }
  friend FixedPoint next_down(FixedPoint a) noexcept { return a.raw_ == min_raw ? a : exact(a.raw_ - 1); }

  friend std::ostream& operator<<(std::ostream& out, FixedPoint a) { return out << a.to_double(); }

private:
  static constexpr FixedPoint exact(std::int64_t k) noexcept {
    FixedPoint result;
    result.raw_ = static_cast<std::int32_t>(k);
    return result;
  }
  static constexpr std::int64_t clamp_raw(std::int64_t k) noexcept { return std::clamp(k, min_raw, max_raw); }
  static constexpr FixedPoint saturated(std::int64_t k) noexcept { return exact(clamp_raw(k)); }
  static constexpr std::int32_t narrow(std::int64_t k) noexcept { return static_cast<std::int32_t>(clamp_raw(k)); }

  /// Rounds below + rem / divisor (0 <= rem < divisor) to an integer.
  static std::int64_t round_floor_quotient(std::int64_t below, std::uint64_t rem, std::uint64_t divisor) noexcept {
    if (rem == 0) return below;
    bool up = false;
    if constexpr (RoundingMode == Rounding::nearest_even) {
      up = 2 * rem > divisor || (2 * rem == divisor && (below & 1) != 0);
    } else if constexpr (RoundingMode == Rounding::toward_zero) {
      up = below < 0;  // the value lies in (below, below + 1): toward zero is below + 1 when negative
    } else {
      up = detail::uniform_below(divisor) < rem;
    }
    return below + (up ? 1 : 0);
  }

  /// x 2^F rounded to an integer and clamped to [min_raw - 1, max_raw + 1] (enough to saturate later).
  template <class A>
  static std::int64_t from_arithmetic(A x) noexcept {
    if constexpr (std::is_integral_v<A>) {
      const auto promoted = +x;  // bool and character types to int: std::cmp_* take standard integers only
      if (std::cmp_less(promoted, min_raw >> FractionBits)) return min_raw - 1;  // below -2^IntegerBits
      if (std::cmp_greater(promoted, max_raw >> FractionBits)) return max_raw + 1;
      return static_cast<std::int64_t>(promoted) * (std::int64_t{1} << FractionBits);
    } else {
      if (std::isnan(x)) return 0;
      const A scaled = x * static_cast<A>(std::int64_t{1} << FractionBits);  // exact
      if (scaled >= static_cast<A>(max_raw)) return max_raw + (scaled > static_cast<A>(max_raw) ? 1 : 0);
      if (scaled <= static_cast<A>(min_raw)) return min_raw - (scaled < static_cast<A>(min_raw) ? 1 : 0);
      const A floor = std::floor(scaled);
      const A fraction = scaled - floor;  // exact
      const auto below = static_cast<std::int64_t>(floor);
      if (fraction == 0) return below;
      bool up = false;
      if constexpr (RoundingMode == Rounding::nearest_even) {
        up = fraction > static_cast<A>(0.5) || (fraction == static_cast<A>(0.5) && (below & 1) != 0);
      } else if constexpr (RoundingMode == Rounding::toward_zero) {
        up = below < 0;
      } else {
        up = detail::bernoulli(static_cast<double>(fraction));  // exact for float and double
      }
      return below + (up ? 1 : 0);
    }
  }

  std::int32_t raw_;
};

namespace detail {
template <int I, int F, Rounding R>
struct is_simulated_scalar<FixedPoint<I, F, R>> : std::true_type {};
}  // namespace detail

}  // namespace deltaproduct

namespace std {
/// std::numeric_limits for fixed point: bounded, exact, no infinity or NaN; min() is the resolution.
template <int I, int F, deltaproduct::Rounding R>
struct numeric_limits<deltaproduct::FixedPoint<I, F, R>> {
private:
  using T = deltaproduct::FixedPoint<I, F, R>;

public:
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = true;
  static constexpr bool is_integer = false;
  static constexpr bool is_exact = true;
  static constexpr bool has_infinity = false;
  static constexpr bool has_quiet_NaN = false;
  static constexpr bool has_signaling_NaN = false;
  static constexpr std::float_denorm_style has_denorm = std::denorm_absent;
  static constexpr bool has_denorm_loss = false;
  static constexpr std::float_round_style round_style =
      R == deltaproduct::Rounding::nearest_even  ? std::round_to_nearest
      : R == deltaproduct::Rounding::toward_zero ? std::round_toward_zero
                                                 : std::round_indeterminate;
  static constexpr bool is_iec559 = false;
  static constexpr bool is_bounded = true;
  static constexpr bool is_modulo = false;
  static constexpr int digits = I + F;
  static constexpr int digits10 = (I + F - 1) * 30103 / 100000;
  static constexpr int max_digits10 = 0;
  static constexpr int radix = 2;
  static constexpr int min_exponent = 0;
  static constexpr int min_exponent10 = 0;
  static constexpr int max_exponent = 0;
  static constexpr int max_exponent10 = 0;
  static constexpr bool traps = false;
  static constexpr bool tinyness_before = false;

  static constexpr T min() noexcept { return T::resolution(); }
  static constexpr T max() noexcept { return T::max(); }
  static constexpr T lowest() noexcept { return T::lowest(); }
  static constexpr T epsilon() noexcept { return T::epsilon(); }
  static T round_error() noexcept { return T(R == deltaproduct::Rounding::nearest_even ? 0.5 : 1.0); }
  static constexpr T infinity() noexcept { return T::max(); }
  static constexpr T quiet_NaN() noexcept { return T{}; }
  static constexpr T signaling_NaN() noexcept { return T{}; }
  static constexpr T denorm_min() noexcept { return T::resolution(); }
};
}  // namespace std

namespace Eigen {

/// Eigen's view of fixed point: a real, signed, non-integer scalar (division rounds to the format, not to integers).
template <int I, int F, deltaproduct::Rounding R>
struct NumTraits<deltaproduct::FixedPoint<I, F, R>> : GenericNumTraits<deltaproduct::FixedPoint<I, F, R>> {
  using Self = deltaproduct::FixedPoint<I, F, R>;
  using Real = Self;
  using NonInteger = Self;
  using Literal = Self;
  using Nested = Self;
  enum { IsComplex = 0, IsInteger = 0, IsSigned = 1, RequireInitialization = 0, ReadCost = 1, AddCost = 2, MulCost = 4 };
  static inline Real epsilon() { return Self::epsilon(); }
  /// 16 resolutions, at most 1/4: fixed point has an absolute, not a relative, resolution.
  static inline Real dummy_precision() { return Self(std::min(16.0 * Self::epsilon().to_double(), 0.25)); }
  static inline Real highest() { return Self::max(); }
  static inline Real lowest() { return Self::lowest(); }
  static inline Real infinity() { return Self::max(); }
  static inline Real quiet_NaN() { return Self{}; }
  static inline int digits10() { return std::numeric_limits<Self>::digits10; }
  static inline int max_digits10() { return 2 + (I + F) * 30103 / 100000; }
  static inline int digits() { return I + F; }
};

}  // namespace Eigen
