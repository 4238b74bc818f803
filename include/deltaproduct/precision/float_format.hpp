// A simulated binary floating-point format: 1 sign bit, ExponentBits exponent bits (bias 2^(E-1) - 1), MantissaBits
// fraction bits, subnormals, IEEE infinities/NaN or saturation, and a rounding mode. Every operation rounds once
// from the exact result, as IEEE 754 does, so fp32 and fp16 agree bit for bit with float and _Float16.
//
// Values are stored in a double: every value of a format with E <= 11 and M <= 52 is exactly a double.
//
// How each operation gets its exact result rounded once (p = M + 1 bits of precision):
// - E <= 9 and M <= 24: + - * / sqrt are computed in double and rounded once more. Double rounding is innocuous
//   for these when 53 >= 2p + 2 (Figueroa, "When is double rounding innocuous?", 1995) and no intermediate under-
//   or overflows (E <= 9 keeps every intermediate a normal double). Where the second rounding needs to know on
//   which side of the double the exact result lies (a tie, round-toward-zero at a representable double, the
//   stochastic probability, results in the subnormal range), the exact error of the double operation is computed
//   (TwoSum; products of p <= 26 bits are exact; the remainder fma(-q, b, a) for division and sqrt).
// - M > 24 (E <= 9): the same, with the error always consulted (TwoProd through std::fma for products).
// - E >= 10 (other than fp64 itself): operands are first scaled to [1/2, 1) so that no error term under- or
//   overflows, and the result is rounded at the scaled exponent. Slower; exact.
// - fma(a, b, c): the exact a*b + c as a double plus an error term of exact sign, then one rounding.
// - exp: std::exp's double result rounded once. Correctly rounded unless std::exp's result falls within one
//   double ulp of a rounding boundary of the format (probability about 2^(p-53) per call) or std::exp itself is
//   off (glibc's exp is accurate to < 1 ulp); an argument whose exp overflows double counts as an overflow, and
//   one whose exp underflows double gives 0.
// - FloatFormat<11, 52> with Overflow::ieee and round-to-nearest-even is IEEE double: native double operations.
//
// Speed: round-to-nearest-even of a double that needs no error term (conversions; + - * with M <= 24; / and sqrt
// with normal results), for E <= 10 and M <= 50, is branch-free (see round_nearest_even_branchless), so compilers
// vectorize loops of such operations (GCC at -O3 with SSE4.2, AVX2 or AVX-512). Everything else rounds by integer
// arithmetic on the double's bits, with a branch to a general routine for rare cases.
//
// Floating-point contraction (-ffp-contract=fast, GCC's default, fuses x * y + z into an fma on targets that have
// one): every product here that may be inexact also feeds an explicit std::fma(a, b, -p), which compilers do not
// fuse, so no error-free transform sees a fused sum; products that can be fused are exact (2p <= 53), where fusing
// changes nothing.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <compare>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <type_traits>

#include <Eigen/Core>

#include "deltaproduct/core/error.hpp"
#include "deltaproduct/precision/rounding.hpp"

namespace deltaproduct {

template <int ExponentBits, int MantissaBits, Overflow OverflowMode = Overflow::ieee,
          Rounding RoundingMode = Rounding::nearest_even>
class FloatFormat;

namespace detail {

/// The rounding engine of one format: rounds exact results, given as a double plus an error term, to the format.
template <int E, int M, Overflow O, Rounding R>
struct FloatRounding {
  static constexpr int bias = (1 << (E - 1)) - 1;
  static constexpr int min_exponent = 1 - bias;  ///< the smallest normal value is 2^min_exponent
  /// The exponent of the largest finite binade: the saturating layout also uses the top exponent code.
  static constexpr int max_exponent = O == Overflow::ieee ? bias : bias + 1;
  /// The largest finite value is max_significand * 2^(max_exponent - M): all ones, or all ones but the last bit
  /// when the all-ones code is NaN (saturating layout).
  static constexpr std::uint64_t max_significand =
      (std::uint64_t{2} << M) - (O == Overflow::ieee ? std::uint64_t{1} : std::uint64_t{2});
  static constexpr double max_value = static_cast<double>(max_significand) * power_of_two(max_exponent - M);
  static constexpr double min_normal = power_of_two(min_exponent);
  static constexpr double denorm_min = power_of_two(min_exponent - M);
  static constexpr bool saturating = O == Overflow::saturate;
  static constexpr double overflow_value = (saturating || R == Rounding::toward_zero)
                                               ? max_value
                                               : std::numeric_limits<double>::infinity();

  static constexpr bool native_double = E == 11 && M == 52 && O == Overflow::ieee && R == Rounding::nearest_even;
  /// Operations whose error terms could under- or overflow in double: scale the operands first.
  static constexpr bool scaled_operations = E >= 10 && !native_double;
  /// RN53 followed by round-to-nearest-even at p bits equals one rounding, for + - * / sqrt (53 >= 2p + 2).
  static constexpr bool double_rounding_innocuous = !scaled_operations && M <= 24;
  /// Products of two format values are exact in double (2p <= 53).
  static constexpr bool exact_products = !scaled_operations && M <= 25;

  // The bit patterns of the fast path, which rounds normal results by integer arithmetic on the double's bits.
  static constexpr int shift = 52 - M;  ///< double fraction bits below the format's last bit
  static constexpr std::uint64_t low_mask = (std::uint64_t{1} << shift) - 1;
  static constexpr std::uint64_t half = shift > 0 ? std::uint64_t{1} << (shift - 1) : 0;
  static constexpr std::uint64_t min_normal_bits = std::bit_cast<std::uint64_t>(min_normal);
  /// Bits of 2^(max_exponent + 1): the end of the largest binade (+inf's bits when that is 2^1024).
  static constexpr std::uint64_t binade_end_bits = static_cast<std::uint64_t>(max_exponent + 1 + 1023) << 52;
  static constexpr std::uint64_t max_bits = std::bit_cast<std::uint64_t>(max_value);
  static constexpr std::uint64_t overflow_bits = std::bit_cast<std::uint64_t>(overflow_value);
  static constexpr std::uint64_t exponent_mask = 0x7FF0000000000000ull;
  /// Added to the bits of 2^b, gives the bits of c = 1.5 * 2^(b + 52 - M).
  static constexpr std::uint64_t magic_offset = (std::uint64_t{52 - M} << 52) | (std::uint64_t{1} << 51);
  static constexpr double overflow_scale = power_of_two(1023 - max_exponent);
  /// 2^(max_exponent + 1), the end of the largest binade (+inf when that is 2^1024).
  static constexpr double binade_end = std::bit_cast<double>(binade_end_bits);
  static constexpr std::int64_t signed_max_bits = static_cast<std::int64_t>(max_bits);
  static constexpr std::int64_t signed_infinity_bits = 0x7FF0000000000000ll;
  /// The branch-free rounding applies: nearest-even, a grid coarser than double's by 2 bits, and
  /// c = 1.5 * 2^(max_exponent + 1 + 52 - M) finite (E <= 10).
  static constexpr bool branchless_nearest =
      R == Rounding::nearest_even && M <= 50 && max_exponent + 1 + 52 - M <= 1022;
  /// IEEE binary32 with nearest-even: rounding a double is the hardware's double -> float conversion (default
  /// floating-point environment, as the branch-free rounding needs too; float must be binary32).
  static constexpr bool ieee_binary32 = E == 8 && M == 23 && O == Overflow::ieee && R == Rounding::nearest_even &&
                                        std::numeric_limits<float>::is_iec559;

  /// Round-to-nearest-even of a double without branches, so that loops over it vectorize. With 2^b the binade of
  /// |x| clamped to [min_normal, 2^(max_exponent+1)] and c = 1.5 * 2^(b + 52 - M), the sum x + c lies in c's binade
  /// (|x| < 2^(b+1) <= c/3 when M <= 50), where the double spacing is the format's last bit at |x|: the hardware
  /// rounds the sum once, to nearest even (c is an even multiple of the spacing), and subtracting c is exact.
  /// The lower clamp gives the subnormal range its fixed spacing; the upper one keeps c finite, so larger |x| and
  /// inf come out beyond max_value. Overflow, IEEE layout: scaling by 2^(1023 - max_exponent) reaches inf exactly
  /// when the rounded value reaches 2^(max_exponent+1), and scaling back is exact; saturating layout: x is first
  /// clamped to +-max_value (NaN's exponent gives a meaningless c, and NaN + c is NaN). The sign is or-ed back for
  /// zeros. NaN stays NaN (low payload bits left as they are). Needs the default rounding mode. The binade
  /// clamps compare powers of two as doubles (never NaN), which leaves the compiler free to pick an integer or a
  /// floating-point select; the same clamps written on 64-bit integers ran 10-40% slower with AVX2 and SSE2, which
  /// lack a (fast) 64-bit integer compare (bench_precision). The saturating pre-clamp compares integer bit
  /// patterns (signed: every pattern is below 2^63).
  /// `OperationResult`: x is the double result of + - * / on two format values (E <= 9 here, so |x| < 2^(512 + M)),
  /// whose binade never needs the upper clamp: c stays finite, and the overflow scaling alone sends values past
  /// the format's range to inf (the saturating layout clamps after rounding). Conversions of arbitrary doubles keep
  /// the clamps. Each clamp saved is a tenth of the rounding's instructions.
  template <bool OperationResult = false>
  static double round_nearest_even_branchless(double x) noexcept {
    static_assert(branchless_nearest, "round_nearest_even_branchless: needs M <= 50 and E <= 10");
    static_assert(!OperationResult || !scaled_operations, "operation results are bounded only for E <= 9");
    if constexpr (ieee_binary32) {
      // The hardware's own conversion is this rounding (subnormals, overflow to inf, NaN quieted with its top
      // payload bits), in two instructions instead of ten.
      return static_cast<double>(static_cast<float>(x));
    }
    std::uint64_t bits = std::bit_cast<std::uint64_t>(x);
    if constexpr (saturating && !OperationResult) {
      // Rounding is monotone and max_value is a format value: saturating first is saturating after.
      const std::uint64_t sign = bits & double_sign_bit;
      auto magnitude = static_cast<std::int64_t>(bits ^ sign);
      const bool beyond = (magnitude > signed_max_bits) & (magnitude <= signed_infinity_bits);  // not NaN
      magnitude = beyond ? signed_max_bits : magnitude;
      bits = static_cast<std::uint64_t>(magnitude) | sign;
      x = std::bit_cast<double>(bits);
    }
    // 2^b as a double (+inf for inf and NaN): on such values the order of doubles is that of their bit patterns.
    double power = std::bit_cast<double>(bits & exponent_mask);
    power = power > min_normal ? power : min_normal;
    if constexpr (!saturating && !OperationResult) power = power < binade_end ? power : binade_end;
    // For inf and NaN the sum wraps, harmlessly: c is then finite (inf + c - c is inf) or NaN + c is NaN.
    const double c = std::bit_cast<double>(std::bit_cast<std::uint64_t>(power) + magic_offset);
    double r = (x + c) - c;
    if constexpr (!saturating) {
      r = (r * overflow_scale) * (1.0 / overflow_scale);
    } else if constexpr (OperationResult) {
      // Saturating after rounding instead: |r| above max_value (inf too) becomes max_value; NaN stays, as the
      // comparison is false.
      const double magnitude = std::fabs(r);
      r = max_value < magnitude ? max_value : magnitude;
    }
    return std::bit_cast<double>(std::bit_cast<std::uint64_t>(r) | (bits & double_sign_bit));
  }

  /// The format's NaN for a NaN double: the sign and the top M payload bits, quieted (as x86 converts double NaNs
  /// to float), or the one NaN of the saturating layout.
  static double nan_of(double x) noexcept {
    const std::uint64_t bits = std::bit_cast<std::uint64_t>(x);
    if constexpr (saturating) {
      const std::uint64_t all_ones = ((std::uint64_t{1} << M) - 1) << shift;
      return std::bit_cast<double>((bits & double_sign_bit) | (std::uint64_t{0x7FF} << 52) | all_ones);
    } else {
      return std::bit_cast<double>((bits | double_quiet_bit) & ~low_mask);
    }
  }

  /// Rounds the exact value (hi + lo) * 2^scale, where hi is a double and lo a correction with the exact sign of
  /// the remainder and |lo| below one unit in the last place of hi (on lo's side). Handles every input: zeros,
  /// subnormal results, overflow, infinities and NaN. Integer arithmetic on hi's significand.
  static double round_general(double hi, double lo, int scale) noexcept {
    if (std::isnan(hi)) return nan_of(hi);
    if (std::isinf(hi)) return saturating ? std::copysign(max_value, hi) : hi;
    if (hi == 0.0) return hi;
    const std::uint64_t bits = std::bit_cast<std::uint64_t>(hi);
    const bool negative = (bits & double_sign_bit) != 0;
    int field = static_cast<int>((bits >> 52) & 0x7FF);
    std::uint64_t significand = bits & double_fraction_mask;
    if (field != 0) {
      significand |= double_implicit_bit;
    } else {
      field = 1;
    }
    int unit = field - 1075;  // |hi| = significand * 2^unit
    const double below = negative ? -lo : lo;  // the exact magnitude is |hi| + below
    UnitFraction tail;
    if (below < 0.0) {
      // The exact value lies just under |hi|: one unit lower, plus the fraction 1 - |below| / unit. Under a power
      // of two the unit is half as large.
      if (significand == double_implicit_bit && field > 1) {
        significand <<= 1;
        --unit;
      }
      significand -= 1;
      tail = UnitFraction::of(below, unit, true);
    } else if (below > 0.0) {
      tail = UnitFraction::of(below, unit, false);
    }
    const int exponent = unit + scale;  // the exact magnitude is (significand + tail) * 2^exponent
    const int top = significand == 0 ? exponent - 1 : exponent + static_cast<int>(std::bit_width(significand)) - 1;
    const int quantum = std::max(top, min_exponent) - M;  // the format's last-bit exponent at this magnitude
    const int s = quantum - exponent;                      // >= 0
    std::uint64_t q = 0;
    std::uint64_t rem = significand;
    if (s < 64) {
      q = significand >> s;
      rem = significand & ((std::uint64_t{1} << s) - 1);
    }
    if (rounds_up<R>(rem, s, (q & 1) != 0, tail)) ++q;
    double result = std::ldexp(static_cast<double>(q), quantum);  // exact: a format value, or 2^(max_exponent+1)
    if (result > max_value) result = overflow_value;
    return negative ? -result : result;
  }

  /// Rounds the exact result of an operation: hi = RN53(exact) and lo_fn() the error (exact - hi, or a correction
  /// of exact sign), called only when the decision needs it and only for finite nonzero hi. `Innocuous`: the
  /// operation is one for which rounding hi to nearest even is already correct.
  template <bool Innocuous, bool OperationResult = false, class LoFn>
  static double round_result(double hi, LoFn&& lo_fn) noexcept {
    if constexpr (Innocuous && branchless_nearest) {
      return round_nearest_even_branchless<OperationResult>(hi);
    }
    const std::uint64_t bits = std::bit_cast<std::uint64_t>(hi);
    const std::uint64_t sign = bits & double_sign_bit;
    const std::uint64_t magnitude = bits ^ sign;
    if (magnitude - min_normal_bits < binade_end_bits - min_normal_bits) [[likely]] {
      // A normal result of the format: round the double's bits at `shift`; carries move into the exponent.
      std::uint64_t rounded;
      if constexpr (R == Rounding::nearest_even) {
        if constexpr (shift == 0) {
          // The format's grid is the double grid here: hi is the answer when it is RN53(exact), which only the
          // innocuous operations guarantee; otherwise the error decides against half a unit.
          rounded = magnitude;
          if constexpr (!Innocuous) {
            const double lo = lo_fn();
            if (lo != 0.0) return round_general(hi, lo, 0);
          }
        } else {
          rounded = (magnitude + (half - 1) + ((magnitude >> shift) & 1)) & ~low_mask;
          if constexpr (!Innocuous) {
            if ((magnitude & low_mask) == half) {  // hi is a midpoint: the exact value decides
              const double lo = lo_fn();
              if (lo != 0.0) rounded = (magnitude & ~low_mask) + (((lo > 0.0) != (sign != 0)) ? low_mask + 1 : 0);
            }
          }
        }
      } else if constexpr (R == Rounding::toward_zero) {
        rounded = magnitude & ~low_mask;
        if ((magnitude & low_mask) == 0) {  // hi is representable: is the exact value just under it?
          const double lo = lo_fn();
          if (lo != 0.0 && (lo < 0.0) != (sign != 0)) {
            if (magnitude == min_normal_bits) return round_general(hi, lo, 0);
            rounded = (magnitude - 1) & ~low_mask;
          }
        }
      } else {
        const double lo = lo_fn();
        std::uint64_t base = magnitude;
        UnitFraction tail;
        if (lo != 0.0) {
          if ((lo < 0.0) != (sign != 0)) {  // just under |hi|: one double step down, fraction 1 - |lo| / step
            if (magnitude == min_normal_bits) return round_general(hi, lo, 0);
            base = magnitude - 1;
            tail = UnitFraction::of(lo, static_cast<int>(base >> 52) - 1075, true);
          } else {
            tail = UnitFraction::of(lo, static_cast<int>(base >> 52) - 1075, false);
          }
        }
        const bool up = rounds_up<R>(base & low_mask, shift, false, tail);
        rounded = (base & ~low_mask) + (up ? low_mask + 1 : 0);
      }
      if (rounded > max_bits) rounded = overflow_bits;
      return std::bit_cast<double>(rounded | sign);
    }
    return round_general(hi, (std::isfinite(hi) && hi != 0.0) ? lo_fn() : 0.0, 0);
  }

  /// Rounds a double (exact input).
  static double round(double x) noexcept {
    if constexpr (native_double) {
      return x;
    } else {
      return round_result<true>(x, [] { return 0.0; });
    }
  }

  /// Rounds any arithmetic value once, exactly: long double and 64-bit integers are split into two doubles.
  template <class A>
  static double from_arithmetic(A x) noexcept {
    if constexpr (native_double || (std::is_floating_point_v<A> && std::numeric_limits<A>::digits <= 53) ||
                  (std::is_integral_v<A> && std::numeric_limits<A>::digits <= 53)) {
      return round(static_cast<double>(x));
    } else if constexpr (std::is_floating_point_v<A>) {
      static_assert(std::numeric_limits<A>::digits <= 106,
                    "FloatFormat: convert this floating-point type to double or long double first");
      double hi = static_cast<double>(x);
      if (std::isnan(hi)) return round(hi);
      int scale = 0;
      A rest = x;
      if (std::isinf(hi) && !std::isinf(x)) {  // beyond double's range: halve, exactly, then round at scale 1
        rest = x / 2;
        hi = static_cast<double>(rest);
        scale = 1;
      }
      const double lo = std::isinf(hi) ? 0.0 : static_cast<double>(rest - static_cast<A>(hi));
      if (scale != 0) return round_general(hi, lo, scale);
      return round_result<false>(hi, [lo] { return lo; });
    } else {
      static_assert(std::numeric_limits<A>::digits <= 64,
                    "FloatFormat: integers wider than 64 bits are not supported; convert through double");
      // x = high * 2^32 + low with |low| < 2^32: both parts are exact doubles and so is their TwoSum.
      const A high_part = static_cast<A>(x / static_cast<A>(4294967296.0));
      const A low_part = static_cast<A>(x - high_part * static_cast<A>(4294967296.0));
      const double high = static_cast<double>(high_part) * 4294967296.0;
      const double low = static_cast<double>(low_part);
      const double hi = high + low;
      return round_result<false>(hi, [=] { return two_sum_error(high, low, hi); });
    }
  }

  static double add(double a, double b) noexcept {
    const double hi = a + b;
    if constexpr (native_double) {
      return hi;
    } else if constexpr (scaled_operations) {
      if (std::isfinite(hi)) return round_result<false>(hi, [=] { return two_sum_error(a, b, hi); });
      if (std::isfinite(a) && std::isfinite(b)) {  // overflowed double: both are >= 2^970, so halving is exact
        const double ha = a * 0.5;
        const double hb = b * 0.5;
        const double h = ha + hb;
        return round_general(h, two_sum_error(ha, hb, h), 1);
      }
      return round_general(hi, 0.0, 0);
    } else {
      return round_result<double_rounding_innocuous, true>(hi, [=] { return two_sum_error(a, b, hi); });
    }
  }

  static double multiply(double a, double b) noexcept {
    const double hi = a * b;
    if constexpr (native_double) {
      return hi;
    } else if constexpr (scaled_operations) {
      if (!(std::isfinite(a) && std::isfinite(b)) || a == 0.0 || b == 0.0) return round_general(hi, 0.0, 0);
      // TwoProd's error is exact when |a b| >= 2^-968 (ulp(a) ulp(b) >= |a b| 2^-106 >= 2^-1074).
      if (std::isfinite(hi) && std::fabs(hi) >= 0x1p-968) {
        return round_result<false>(hi, [=] { return std::fma(a, b, -hi); });
      }
      int ea = 0;
      int eb = 0;
      const double ma = std::frexp(a, &ea);
      const double mb = std::frexp(b, &eb);
      const double h = ma * mb;
      return round_general(h, std::fma(ma, mb, -h), ea + eb);
    } else if constexpr (exact_products) {
      return round_result<true, true>(hi, [] { return 0.0; });
    } else {
      return round_result<false>(hi, [=] { return std::fma(a, b, -hi); });
    }
  }

  static double divide(double a, double b) noexcept {
    const double hi = a / b;
    if constexpr (native_double) {
      return hi;
    } else if constexpr (scaled_operations) {
      // Infinities, zeros and x/0 are exact (x/0 = inf is not an overflow, in every rounding mode).
      if (!(std::isfinite(a) && std::isfinite(b)) || a == 0.0 || b == 0.0) return round_general(hi, 0.0, 0);
      int ea = 0;
      int eb = 0;
      const double ma = std::frexp(a, &ea);
      const double mb = std::frexp(b, &eb);
      const double q = ma / mb;
      return round_general(q, quotient_error(std::fma(-q, mb, ma), mb), ea - eb);  // ma - q mb is exact
    } else if constexpr (double_rounding_innocuous && branchless_nearest) {
      // Innocuous for normal results; a subnormal one is rounded on a fixed grid, where the exact side of a
      // midpoint can need the remainder.
      if (std::fabs(hi) >= min_normal) [[likely]] return round_nearest_even_branchless<true>(hi);
      return round_general(hi, std::isfinite(hi) && hi != 0.0 ? quotient_error(std::fma(-hi, b, a), b) : 0.0, 0);
    } else {
      return round_result<double_rounding_innocuous>(hi, [=] { return quotient_error(std::fma(-hi, b, a), b); });
    }
  }

  static double square_root(double a) noexcept {
    const double hi = std::sqrt(a);
    if constexpr (native_double) {
      return hi;
    } else if constexpr (scaled_operations) {
      if (!(a > 0.0) || !std::isfinite(a)) return round_general(hi, 0.0, 0);
      int e = 0;
      double m = std::frexp(a, &e);
      if ((e & 1) != 0) {
        m *= 2.0;
        --e;
      }
      const double s = std::sqrt(m);
      return round_general(s, square_root_error(std::fma(-s, s, m), s), e / 2);
    } else if constexpr (double_rounding_innocuous && branchless_nearest) {
      if (std::fabs(hi) >= min_normal) [[likely]] return round_nearest_even_branchless(hi);  // as in divide
      return round_general(hi, std::isfinite(hi) && hi > 0.0 ? square_root_error(std::fma(-hi, hi, a), hi) : 0.0, 0);
    } else {
      return round_result<double_rounding_innocuous>(hi, [=] { return square_root_error(std::fma(-hi, hi, a), hi); });
    }
  }

  /// hi + lo = t1 + t2 + t3 up to the last addition, where t2 is the exact low part of t1 (|t2| <= ulp(t1)/2):
  /// every step but the last is error-free (TwoSum), and the last rounds to odd, so lo has the exact sign of the
  /// remainder and stays on its side of +-half a unit of hi.
  static void sum_of_three(double t1, double t2, double t3, double& hi, double& lo) noexcept {
    const double s = t1 + t3;
    const double e = two_sum_error(t1, t3, s);  // t1 + t3 = s + e
    const double u = e + t2;
    const double v = two_sum_error(e, t2, u);  // e + t2 = u + v
    const double h = s + u;
    const double w = two_sum_error(s, u, h);  // exact = h + w + v
    const double l1 = w + v;
    const double l2 = two_sum_error(w, v, l1);  // exact = h + l1 + l2
    hi = h + l1;
    const double l3 = two_sum_error(h, l1, hi);  // exact = hi + l3 + l2, |l2| < |l3| unless l3 = 0
    lo = l3 != 0.0 ? odd_sum(l3, l2) : l2;
  }

  /// The error of a quotient q = RN(a / b) from its exact remainder r = a - q b: r / b, rounded to odd when M = 52
  /// so that it stays on the exact side of half a unit (a quotient is never exactly a 54-bit midpoint).
  static double quotient_error(double r, double b) noexcept {
    if constexpr (M == 52) {
      return odd_quotient(r, b);
    } else {
      return r / b;
    }
  }

  /// The error of s = RN(sqrt(a)) from r = a - s^2: r / (sqrt(a) + s), approximated by r / (2 s) (slightly too
  /// large). s is correctly rounded and sqrt(a) is never a 54-bit midpoint, so the exact error lies strictly inside
  /// half a unit on its side; when M = 52 the approximation is kept there.
  static double square_root_error(double r, double s) noexcept {
    const double lo = r / (2.0 * s);
    if constexpr (M == 52) {
      const std::uint64_t bits = std::bit_cast<std::uint64_t>(s);
      const double half_unit = std::ldexp(1.0, static_cast<int>(bits >> 52) - 1076);
      const bool power_of_two = (bits & double_fraction_mask) == 0;
      const double half_unit_below = power_of_two ? half_unit / 2 : half_unit;
      if (lo >= half_unit) return std::nextafter(half_unit, 0.0);
      if (lo <= -half_unit_below) return -std::nextafter(half_unit_below, 0.0);
    }
    return lo;
  }

  static double fused_multiply_add(double a, double b, double c) noexcept {
    if constexpr (native_double) {
      return std::fma(a, b, c);
    } else {
      if (!(std::isfinite(a) && std::isfinite(b) && std::isfinite(c)) || a == 0.0 || b == 0.0) {
        return round_general(std::fma(a, b, c), 0.0, 0);  // exact: special values, or c (+-0 by IEEE's rule)
      }
      if (c == 0.0) return multiply(a, b);  // a b != 0, so a b + 0 = a b
      if constexpr (scaled_operations) {
        int ea = 0;
        int eb = 0;
        int ec = 0;
        const double ma = std::frexp(a, &ea);
        const double mb = std::frexp(b, &eb);
        const double mc = std::frexp(c, &ec);
        const double ph = ma * mb;
        const double pl = std::fma(ma, mb, -ph);  // a b = (ph + pl) 2^(ea + eb)
        const int ep = ea + eb;
        const int scale = std::max(ep, ec);
        // The smaller part is brought to the common scale exactly when it stays above 2^-1002. Further down it
        // only breaks ties and sets directions (the larger part has no bits below 2^-110), so a stand-in of the
        // same sign, 2^-1000, keeps every decision; stochastic probabilities move by less than 2^-890.
        double t1 = ph;
        double t2 = pl;
        double t3 = mc;
        if (ep < scale) {
          if (ep - scale >= -900) {
            t1 = std::ldexp(ph, ep - scale);
            t2 = std::ldexp(pl, ep - scale);
          } else {
            t1 = std::copysign(0x1p-1000, ph);
            t2 = 0.0;
          }
        } else if (ec < scale) {
          t3 = ec - scale >= -900 ? std::ldexp(mc, ec - scale) : std::copysign(0x1p-1000, mc);
        }
        double hi = 0.0;
        double lo = 0.0;
        sum_of_three(t1, t2, t3, hi, lo);
        return round_general(hi, lo, scale);
      } else if constexpr (exact_products) {
        const double p = a * b;
        const double hi = p + c;
        return round_result<false>(hi, [=] { return two_sum_error(p, c, hi); });
      } else {
        const double p = a * b;
        double hi = 0.0;
        double lo = 0.0;
        sum_of_three(p, std::fma(a, b, -p), c, hi, lo);
        return round_result<false>(hi, [lo] { return lo; });
      }
    }
  }

  static double exponential(double a) noexcept {
    const double hi = std::exp(a);
    if constexpr (native_double) {
      return hi;
    } else {
      if (std::isinf(hi) && std::isfinite(a)) return round_general(0x1p1023, 0.0, 2);  // exp(a) > 2^1024: overflow
      return round_result<false>(hi, [] { return 0.0; });
    }
  }
};

}  // namespace detail

/// A binary floating-point number with ExponentBits exponent bits and MantissaBits fraction bits (precision
/// MantissaBits + 1), subnormals, the given overflow behaviour and rounding. Arithmetic (+ - * / unary -, sqrt,
/// fma, exp) rounds once from the exact result; comparisons follow IEEE 754 (NaN unordered, -0 == +0).
/// Construction from a number rounds it once; conversion to double is exact.
template <int ExponentBits, int MantissaBits, Overflow OverflowMode, Rounding RoundingMode>
class FloatFormat {
  static_assert(ExponentBits >= 2 && ExponentBits <= 11,
                "FloatFormat: choose 2 to 11 exponent bits (values are stored in a double, whose exponent has 11)");
  static_assert(MantissaBits >= 1 && MantissaBits <= 52,
                "FloatFormat: choose 1 to 52 mantissa (fraction) bits (values are stored in a double, which has 52)");
  static_assert(ExponentBits <= 10 || OverflowMode == Overflow::ieee,
                "FloatFormat: with 11 exponent bits use Overflow::ieee: a saturating layout's top binade would exceed "
                "double's range");

  using Engine = detail::FloatRounding<ExponentBits, MantissaBits, OverflowMode, RoundingMode>;

public:
  static constexpr int exponent_bits = ExponentBits;
  static constexpr int mantissa_bits = MantissaBits;
  static constexpr int precision = MantissaBits + 1;  ///< significant bits of a normal value
  static constexpr int total_bits = 1 + ExponentBits + MantissaBits;
  static constexpr int exponent_bias = Engine::bias;
  static constexpr int min_exponent = Engine::min_exponent;  ///< min_normal() = 2^min_exponent
  static constexpr int max_exponent = Engine::max_exponent;  ///< max() lies in [2^max_exponent, 2^(max_exponent+1))
  static constexpr Overflow overflow = OverflowMode;
  static constexpr Rounding rounding = RoundingMode;
  /// Number of finite values, counting -0 and +0 once.
  static constexpr std::uint64_t finite_value_count =
      2 * ((static_cast<std::uint64_t>(Engine::max_exponent + Engine::bias) << MantissaBits) |
           (Engine::max_significand & ((std::uint64_t{1} << MantissaBits) - 1))) +
      1;

  /// The same format with another rounding mode.
  template <Rounding OtherRounding>
  using with_rounding = FloatFormat<ExponentBits, MantissaBits, OverflowMode, OtherRounding>;

  /// Uninitialised, like float; FloatFormat{} is +0.
  FloatFormat() = default;

  /// Rounds x once to the format.
  template <class A>
    requires std::is_arithmetic_v<A>
  explicit FloatFormat(A x) noexcept : value_(Engine::from_arithmetic(x)) {}

  /// Rounds another simulated number once to this format (its value is exactly a double).
  template <class Other>
    requires detail::is_simulated_scalar_v<Other>
  explicit FloatFormat(const Other& x) noexcept : value_(Engine::round(static_cast<double>(x))) {}

  /// The value, exactly (to double), or converted by static_cast from double to any arithmetic type.
  template <class A>
    requires std::is_arithmetic_v<A>
  explicit constexpr operator A() const noexcept {
    return static_cast<A>(value_);
  }
  constexpr double to_double() const noexcept { return value_; }

  // Limits of the format.
  static constexpr FloatFormat epsilon() noexcept { return exact(detail::power_of_two(-MantissaBits)); }
  static constexpr FloatFormat min_normal() noexcept { return exact(Engine::min_normal); }
  static constexpr FloatFormat denorm_min() noexcept { return exact(Engine::denorm_min); }
  static constexpr FloatFormat max() noexcept { return exact(Engine::max_value); }
  static constexpr FloatFormat lowest() noexcept { return exact(-Engine::max_value); }
  static constexpr FloatFormat infinity() noexcept {
    static_assert(OverflowMode == Overflow::ieee, "FloatFormat::infinity(): a saturating format has no infinity; "
                                                  "use max()");
    return exact(std::numeric_limits<double>::infinity());
  }
  static FloatFormat quiet_NaN() noexcept { return exact(Engine::nan_of(std::numeric_limits<double>::quiet_NaN())); }

  /// The format's encoding: sign, exponent field (biased), fraction field, in the low total_bits bits.
  /// A NaN keeps the top MantissaBits bits of its double payload (ieee) or is the all-ones code (saturate).
  std::uint64_t to_bits() const noexcept {
    const std::uint64_t bits = std::bit_cast<std::uint64_t>(value_);
    const std::uint64_t sign = (bits >> 63) << (ExponentBits + MantissaBits);
    constexpr std::uint64_t exponent_ones = (std::uint64_t{1} << ExponentBits) - 1;
    constexpr std::uint64_t fraction_ones = (std::uint64_t{1} << MantissaBits) - 1;
    if (std::isnan(value_)) {
      const std::uint64_t fraction =
          OverflowMode == Overflow::saturate ? fraction_ones : (bits & detail::double_fraction_mask) >> Engine::shift;
      return sign | (exponent_ones << MantissaBits) | fraction;
    }
    if (std::isinf(value_)) return sign | (exponent_ones << MantissaBits);
    const double magnitude = std::fabs(value_);
    if (magnitude < Engine::min_normal) {
      return sign | static_cast<std::uint64_t>(std::ldexp(magnitude, MantissaBits - min_exponent));
    }
    const std::uint64_t field = ((bits >> 52) & 0x7FF) - 1023 + static_cast<std::uint64_t>(Engine::bias);
    return sign | (field << MantissaBits) | ((bits & detail::double_fraction_mask) >> Engine::shift);
  }

  /// The value of an encoding (see to_bits). Throws ArgumentError when code has bits above total_bits.
  static FloatFormat from_bits(std::uint64_t code) {
    if (total_bits < 64 && (code >> (total_bits % 64)) != 0) {
      detail::argument_error("code", "an encoding of " + std::to_string(total_bits) + " bits",
                             detail::to_text(code));
    }
    const bool negative = ((code >> (ExponentBits + MantissaBits)) & 1) != 0;
    const std::uint64_t field = (code >> MantissaBits) & ((std::uint64_t{1} << ExponentBits) - 1);
    const std::uint64_t fraction = code & ((std::uint64_t{1} << MantissaBits) - 1);
    constexpr std::uint64_t exponent_ones = (std::uint64_t{1} << ExponentBits) - 1;
    constexpr std::uint64_t fraction_ones = (std::uint64_t{1} << MantissaBits) - 1;
    double magnitude = 0.0;
    if (field == exponent_ones && (OverflowMode == Overflow::ieee || fraction == fraction_ones)) {
      if (OverflowMode == Overflow::ieee && fraction == 0) {
        magnitude = std::numeric_limits<double>::infinity();
      } else {
        const std::uint64_t nan_bits = (std::uint64_t{0x7FF} << 52) | (fraction << Engine::shift);
        const double nan = std::bit_cast<double>(nan_bits);
        return exact(negative ? -nan : nan);
      }
    } else if (field == 0) {
      magnitude = std::ldexp(static_cast<double>(fraction), min_exponent - MantissaBits);
    } else {
      magnitude = std::ldexp(static_cast<double>((std::uint64_t{1} << MantissaBits) | fraction),
                             static_cast<int>(field) - Engine::bias - MantissaBits);
    }
    return exact(negative ? -magnitude : magnitude);
  }

  /// Calls fn(value) for every finite value in increasing order, -max() ... +max(), with a single zero (+0).
  template <class Fn>
  static void for_each_finite_value(Fn&& fn) {
    constexpr std::uint64_t top = (finite_value_count - 1) / 2;  // magnitude code of max()
    constexpr std::uint64_t sign = std::uint64_t{1} << (ExponentBits + MantissaBits);
    for (std::uint64_t code = top; code >= 1; --code) fn(from_bits(sign | code));
    for (std::uint64_t code = 0; code <= top; ++code) fn(from_bits(code));
  }

  // Arithmetic: one rounding each.
  friend FloatFormat operator+(FloatFormat a, FloatFormat b) noexcept { return exact(Engine::add(a.value_, b.value_)); }
  friend FloatFormat operator-(FloatFormat a, FloatFormat b) noexcept {
    return exact(Engine::add(a.value_, -b.value_));
  }
  friend FloatFormat operator*(FloatFormat a, FloatFormat b) noexcept {
    return exact(Engine::multiply(a.value_, b.value_));
  }
  friend FloatFormat operator/(FloatFormat a, FloatFormat b) noexcept {
    return exact(Engine::divide(a.value_, b.value_));
  }
  friend constexpr FloatFormat operator-(FloatFormat a) noexcept { return exact(-a.value_); }
  friend constexpr FloatFormat operator+(FloatFormat a) noexcept { return a; }
  FloatFormat& operator+=(FloatFormat b) noexcept { return *this = *this + b; }
  FloatFormat& operator-=(FloatFormat b) noexcept { return *this = *this - b; }
  FloatFormat& operator*=(FloatFormat b) noexcept { return *this = *this * b; }
  FloatFormat& operator/=(FloatFormat b) noexcept { return *this = *this / b; }

  // Comparisons of the values (IEEE 754: NaN is unordered, -0 == +0).
  friend constexpr bool operator==(FloatFormat a, FloatFormat b) noexcept { return a.value_ == b.value_; }
  friend constexpr std::partial_ordering operator<=>(FloatFormat a, FloatFormat b) noexcept {
    return a.value_ <=> b.value_;
  }

  // Functions found by argument-dependent lookup (Eigen and the recurrence templates call them unqualified).
  friend FloatFormat sqrt(FloatFormat a) noexcept { return exact(Engine::square_root(a.value_)); }
  friend FloatFormat exp(FloatFormat a) noexcept { return exact(Engine::exponential(a.value_)); }
  /// a * b + c with one rounding.
  friend FloatFormat fma(FloatFormat a, FloatFormat b, FloatFormat c) noexcept {
    return exact(Engine::fused_multiply_add(a.value_, b.value_, c.value_));
  }
  friend FloatFormat abs(FloatFormat a) noexcept { return exact(std::fabs(a.value_)); }
  friend FloatFormat fabs(FloatFormat a) noexcept { return exact(std::fabs(a.value_)); }
  friend FloatFormat abs2(FloatFormat a) noexcept { return a * a; }
  friend constexpr FloatFormat conj(FloatFormat a) noexcept { return a; }
  friend constexpr FloatFormat real(FloatFormat a) noexcept { return a; }
  friend constexpr FloatFormat imag(FloatFormat) noexcept { return exact(0.0); }
  friend bool isfinite(FloatFormat a) noexcept { return std::isfinite(a.value_); }
  friend bool isnan(FloatFormat a) noexcept { return std::isnan(a.value_); }
  friend bool isinf(FloatFormat a) noexcept { return std::isinf(a.value_); }
  friend bool signbit(FloatFormat a) noexcept { return std::signbit(a.value_); }
  /// IEEE 754 minNum/maxNum (std::fmin/fmax): a NaN operand is ignored.
  friend FloatFormat min(FloatFormat a, FloatFormat b) noexcept { return exact(std::fmin(a.value_, b.value_)); }
  friend FloatFormat max(FloatFormat a, FloatFormat b) noexcept { return exact(std::fmax(a.value_, b.value_)); }
  /// The least value greater than a (IEEE 754 nextUp); max() stays max() in a saturating format.
  friend FloatFormat next_up(FloatFormat a) noexcept {
    if (std::isnan(a.value_) || a.value_ == std::numeric_limits<double>::infinity()) return a;
    if (a.value_ == 0.0) return denorm_min();
    if (a.value_ == Engine::max_value) {
      return exact(Engine::saturating ? Engine::max_value : std::numeric_limits<double>::infinity());
    }
    if (a.value_ == -std::numeric_limits<double>::infinity()) return lowest();
    const std::uint64_t code = a.to_bits();
    return from_bits(a.value_ > 0.0 ? code + 1 : code - 1);
  }
  /// The greatest value less than a (IEEE 754 nextDown).
  friend FloatFormat next_down(FloatFormat a) noexcept { return -next_up(-a); }

  friend std::ostream& operator<<(std::ostream& out, FloatFormat a) { return out << a.value_; }

private:
  /// A value known to be in the format (no rounding).
  static constexpr FloatFormat exact(double value) noexcept {
    FloatFormat result;
    result.value_ = value;
    return result;
  }

  double value_;
};

namespace detail {
template <int E, int M, Overflow O, Rounding R>
struct is_simulated_scalar<FloatFormat<E, M, O, R>> : std::true_type {};

/// Decimal digits guaranteed to survive a round trip through a format of `precision` bits: floor((p-1) log10 2).
constexpr int digits10_of(int precision) { return (precision - 1) * 30103 / 100000; }
/// Decimal digits needed to write any value exactly enough to read it back: ceil(1 + p log10 2).
constexpr int max_digits10_of(int precision) { return 2 + precision * 30103 / 100000; }
/// The least k with 10^k >= x (x > 0), or the greatest k with 10^k <= x when `floor`.
constexpr int decimal_exponent(double x, bool floor) {
  int k = 0;
  double p = 1.0;
  if (x >= 1.0) {
    while (p <= x / 10.0) {
      p *= 10.0;
      ++k;
    }
    return floor || p == x ? k : k + 1;
  }
  while (p > x) {
    p /= 10.0;
    --k;
  }
  return floor || p == x ? k : k + 1;
}
}  // namespace detail

}  // namespace deltaproduct

namespace std {
/// std::numeric_limits for the simulated formats, so generic code (and Eigen's defaults) see the right limits.
template <int E, int M, deltaproduct::Overflow O, deltaproduct::Rounding R>
struct numeric_limits<deltaproduct::FloatFormat<E, M, O, R>> {
private:
  using T = deltaproduct::FloatFormat<E, M, O, R>;

public:
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = true;
  static constexpr bool is_integer = false;
  static constexpr bool is_exact = false;
  static constexpr bool has_infinity = O == deltaproduct::Overflow::ieee;
  static constexpr bool has_quiet_NaN = true;
  static constexpr bool has_signaling_NaN = O == deltaproduct::Overflow::ieee;
  static constexpr std::float_denorm_style has_denorm = std::denorm_present;
  static constexpr bool has_denorm_loss = false;
  static constexpr std::float_round_style round_style =
      R == deltaproduct::Rounding::nearest_even  ? std::round_to_nearest
      : R == deltaproduct::Rounding::toward_zero ? std::round_toward_zero
                                                 : std::round_indeterminate;
  /// The IEEE 754 interchange formats binary16/32/64 with their default rounding.
  static constexpr bool is_iec559 = O == deltaproduct::Overflow::ieee && R == deltaproduct::Rounding::nearest_even &&
                                    ((E == 5 && M == 10) || (E == 8 && M == 23) || (E == 11 && M == 52));
  static constexpr bool is_bounded = true;
  static constexpr bool is_modulo = false;
  static constexpr int digits = M + 1;
  static constexpr int digits10 = deltaproduct::detail::digits10_of(M + 1);
  static constexpr int max_digits10 = deltaproduct::detail::max_digits10_of(M + 1);
  static constexpr int radix = 2;
  static constexpr int min_exponent = T::min_exponent + 1;  // C++ counts significands in [1/2, 1)
  static constexpr int min_exponent10 = deltaproduct::detail::decimal_exponent(T::min_normal().to_double(), false);
  static constexpr int max_exponent = T::max_exponent + 1;
  static constexpr int max_exponent10 = deltaproduct::detail::decimal_exponent(T::max().to_double(), true);
  static constexpr bool traps = false;
  static constexpr bool tinyness_before = false;

  static constexpr T min() noexcept { return T::min_normal(); }
  static constexpr T max() noexcept { return T::max(); }
  static constexpr T lowest() noexcept { return T::lowest(); }
  static constexpr T epsilon() noexcept { return T::epsilon(); }
  static T round_error() noexcept { return T(R == deltaproduct::Rounding::nearest_even ? 0.5 : 1.0); }
  /// +inf, or max() for a saturating format (which has no infinity).
  static T infinity() noexcept {
    if constexpr (O == deltaproduct::Overflow::ieee) {
      return T::infinity();
    } else {
      return T::max();
    }
  }
  static T quiet_NaN() noexcept { return T::quiet_NaN(); }
  static T signaling_NaN() noexcept { return T::quiet_NaN(); }
  static constexpr T denorm_min() noexcept { return T::denorm_min(); }
};
}  // namespace std

namespace Eigen {

/// Eigen's view of a simulated format: a real, signed, non-integer scalar; every operation is one of ours.
template <int E, int M, deltaproduct::Overflow O, deltaproduct::Rounding R>
struct NumTraits<deltaproduct::FloatFormat<E, M, O, R>> : GenericNumTraits<deltaproduct::FloatFormat<E, M, O, R>> {
  using Self = deltaproduct::FloatFormat<E, M, O, R>;
  using Real = Self;
  using NonInteger = Self;
  using Literal = Self;
  using Nested = Self;
  enum {
    IsComplex = 0,
    IsInteger = 0,
    IsSigned = 1,
    RequireInitialization = 0,
    ReadCost = 1,
    AddCost = 4,  // an operation plus its rounding
    MulCost = 4
  };
  static inline Real epsilon() { return Self::epsilon(); }
  /// Eigen's default tolerance for isApprox and friends: 32 epsilons, at most 1/4 (fp8 has epsilon 1/8).
  static inline Real dummy_precision() { return Self(std::min(32.0 * Self::epsilon().to_double(), 0.25)); }
  static inline Real highest() { return Self::max(); }
  static inline Real lowest() { return Self::lowest(); }
  static inline Real infinity() { return std::numeric_limits<Self>::infinity(); }
  static inline Real quiet_NaN() { return Self::quiet_NaN(); }
  static inline int digits10() { return std::numeric_limits<Self>::digits10; }
  static inline int max_digits10() { return std::numeric_limits<Self>::max_digits10; }
  static inline int digits() { return M + 1; }
  static inline int min_exponent() { return std::numeric_limits<Self>::min_exponent; }
  static inline int max_exponent() { return std::numeric_limits<Self>::max_exponent; }
};

}  // namespace Eigen
