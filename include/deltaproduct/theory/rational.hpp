// Exact arithmetic for the spectral checks of <deltaproduct/theory/spectral.hpp>: an arbitrary-precision integer, a
// rational number built on it, and small dense rational matrices (products, determinant and rank by exact Gaussian
// elimination, inverse, characteristic polynomial, principal minors).
//
// Nothing here rounds and nothing overflows: integers grow as needed, so every comparison the checks make (a principal
// minor >= 0, a discriminant < 0, g^T g == I) is decided exactly. The sizes are those of hand-sized linear algebra
// (matrices up to a few dozen rows); the algorithms are the textbook ones, not asymptotically fast ones.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "deltaproduct/core/error.hpp"

namespace deltaproduct {
namespace detail {

/// The magnitude of a big integer: base-2^32 digits, least significant first, without leading zero digits (so zero is
/// the empty vector).
using BigLimbs = std::vector<std::uint32_t>;

inline constexpr std::uint64_t big_limb_base = std::uint64_t{1} << 32;
inline constexpr std::uint64_t big_limb_mask = big_limb_base - 1;

inline void trim_limbs(BigLimbs& a) {
  while (!a.empty() && a.back() == 0) a.pop_back();
}

inline BigLimbs limbs_of(std::uint64_t value) {
  BigLimbs limbs;
  while (value != 0) {
    limbs.push_back(static_cast<std::uint32_t>(value & big_limb_mask));
    value >>= 32;
  }
  return limbs;
}

/// The value of a magnitude of at most two digits.
inline std::uint64_t limbs_value(const BigLimbs& a) {
  std::uint64_t value = 0;
  for (std::size_t i = a.size(); i-- > 0;) value = (value << 32) | a[i];
  return value;
}

/// -1, 0 or 1 as a < b, a == b, a > b.
inline int compare_limbs(const BigLimbs& a, const BigLimbs& b) {
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  for (std::size_t i = a.size(); i-- > 0;)
    if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}

inline BigLimbs add_limbs(const BigLimbs& a, const BigLimbs& b) {
  const BigLimbs& longer = a.size() >= b.size() ? a : b;
  const BigLimbs& shorter = a.size() >= b.size() ? b : a;
  BigLimbs sum(longer.size() + 1, 0);
  std::uint64_t carry = 0;
  for (std::size_t i = 0; i < longer.size(); ++i) {
    const std::uint64_t digit = std::uint64_t{longer[i]} + (i < shorter.size() ? shorter[i] : 0u) + carry;
    sum[i] = static_cast<std::uint32_t>(digit & big_limb_mask);
    carry = digit >> 32;
  }
  sum[longer.size()] = static_cast<std::uint32_t>(carry);
  trim_limbs(sum);
  return sum;
}

/// a - b for a >= b, in place.
inline void subtract_limbs_in_place(BigLimbs& a, const BigLimbs& b) {
  std::uint64_t borrow = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const std::uint64_t subtrahend = (i < b.size() ? b[i] : 0u) + borrow;
    if (i >= b.size() && borrow == 0) break;
    const std::uint64_t digit = a[i];
    borrow = digit < subtrahend ? 1 : 0;
    a[i] = static_cast<std::uint32_t>((digit + (borrow << 32) - subtrahend) & big_limb_mask);
  }
  trim_limbs(a);
}

inline BigLimbs subtract_limbs(const BigLimbs& a, const BigLimbs& b) {
  BigLimbs difference = a;
  subtract_limbs_in_place(difference, b);
  return difference;
}

inline BigLimbs multiply_limbs(const BigLimbs& a, const BigLimbs& b) {
  if (a.empty() || b.empty()) return {};
  BigLimbs product(a.size() + b.size(), 0);
  for (std::size_t i = 0; i < a.size(); ++i) {
    std::uint64_t carry = 0;
    for (std::size_t j = 0; j < b.size(); ++j) {
      // (2^32 - 1)^2 + 2 (2^32 - 1) = 2^64 - 1: the sum never overflows 64 bits.
      const std::uint64_t digit = std::uint64_t{a[i]} * b[j] + product[i + j] + carry;
      product[i + j] = static_cast<std::uint32_t>(digit & big_limb_mask);
      carry = digit >> 32;
    }
    product[i + b.size()] = static_cast<std::uint32_t>(carry);
  }
  trim_limbs(product);
  return product;
}

inline BigLimbs shift_limbs_left(const BigLimbs& a, std::size_t bits) {
  if (a.empty()) return {};
  const std::size_t whole = bits / 32;
  const unsigned part = static_cast<unsigned>(bits % 32);
  BigLimbs shifted(a.size() + whole + 1, 0);
  for (std::size_t i = 0; i < a.size(); ++i) {
    const std::uint64_t moved = std::uint64_t{a[i]} << part;
    shifted[i + whole] |= static_cast<std::uint32_t>(moved & big_limb_mask);
    shifted[i + whole + 1] |= static_cast<std::uint32_t>(moved >> 32);
  }
  trim_limbs(shifted);
  return shifted;
}

/// floor(a / 2^bits).
inline BigLimbs shift_limbs_right(const BigLimbs& a, std::size_t bits) {
  const std::size_t whole = bits / 32;
  if (whole >= a.size()) return {};
  const unsigned part = static_cast<unsigned>(bits % 32);
  BigLimbs shifted(a.size() - whole, 0);
  for (std::size_t i = 0; i < shifted.size(); ++i) {
    std::uint64_t window = a[i + whole];
    if (i + whole + 1 < a.size()) window |= std::uint64_t{a[i + whole + 1]} << 32;
    shifted[i] = static_cast<std::uint32_t>((window >> part) & big_limb_mask);
  }
  trim_limbs(shifted);
  return shifted;
}

inline std::size_t trailing_zero_bits(const BigLimbs& a) {
  std::size_t i = 0;
  while (a[i] == 0) ++i;
  return 32 * i + static_cast<std::size_t>(std::countr_zero(a[i]));
}

/// a / d in place for a one-digit d > 0; returns a mod d.
inline std::uint32_t divide_limbs_by_digit(BigLimbs& a, std::uint32_t d) {
  std::uint64_t remainder = 0;
  for (std::size_t i = a.size(); i-- > 0;) {
    const std::uint64_t current = (remainder << 32) | a[i];
    a[i] = static_cast<std::uint32_t>(current / d);
    remainder = current % d;
  }
  trim_limbs(a);
  return static_cast<std::uint32_t>(remainder);
}

/// Quotient and remainder of u / v for v != 0: schoolbook long division in base 2^32 (Knuth, TAOCP vol. 2, 4.3.1,
/// Algorithm D). After normalising v so that its top digit has its high bit set, the quotient digit estimated from the
/// top two digits of the running remainder is at most 2 too large; the test against the third digit removes almost
/// every overestimate and a final add-back corrects the rare one left.
inline void divide_limbs(const BigLimbs& u, const BigLimbs& v, BigLimbs& quotient, BigLimbs& remainder) {
  if (compare_limbs(u, v) < 0) {
    quotient.clear();
    remainder = u;
    return;
  }
  if (v.size() == 1) {
    quotient = u;
    remainder = limbs_of(divide_limbs_by_digit(quotient, v[0]));
    return;
  }
  const std::size_t n = v.size();
  const std::size_t m = u.size() - n;
  const auto shift = static_cast<std::size_t>(std::countl_zero(v.back()));
  BigLimbs vn = shift_limbs_left(v, shift);  // still n digits
  BigLimbs un = shift_limbs_left(u, shift);
  un.resize(u.size() + 1, 0);  // one more digit than u, possibly zero
  quotient.assign(m + 1, 0);
  const std::uint64_t top_divisor = vn[n - 1];
  const std::uint64_t next_divisor = vn[n - 2];
  for (std::size_t j = m + 1; j-- > 0;) {
    const std::uint64_t top = (std::uint64_t{un[j + n]} << 32) | un[j + n - 1];
    std::uint64_t estimate = top / top_divisor;
    std::uint64_t rest = top % top_divisor;
    while (estimate >= big_limb_base || estimate * next_divisor > ((rest << 32) | un[j + n - 2])) {
      --estimate;
      rest += top_divisor;
      if (rest >= big_limb_base) break;
    }
    // un[j .. j+n] -= estimate * vn.
    std::uint64_t carry = 0;
    std::uint64_t borrow = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t product = estimate * vn[i] + carry;
      carry = product >> 32;
      const std::uint64_t subtrahend = (product & big_limb_mask) + borrow;
      const std::uint64_t digit = un[i + j];
      borrow = digit < subtrahend ? 1 : 0;
      un[i + j] = static_cast<std::uint32_t>((digit + (borrow << 32) - subtrahend) & big_limb_mask);
    }
    const std::uint64_t subtrahend = carry + borrow;
    const std::uint64_t digit = un[j + n];
    borrow = digit < subtrahend ? 1 : 0;
    un[j + n] = static_cast<std::uint32_t>((digit + (borrow << 32) - subtrahend) & big_limb_mask);
    if (borrow != 0) {  // the estimate was one too large: add the divisor back (the carry out cancels the borrow)
      --estimate;
      std::uint64_t add_carry = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t sum = std::uint64_t{un[i + j]} + vn[i] + add_carry;
        un[i + j] = static_cast<std::uint32_t>(sum & big_limb_mask);
        add_carry = sum >> 32;
      }
      un[j + n] = static_cast<std::uint32_t>((un[j + n] + add_carry) & big_limb_mask);
    }
    quotient[j] = static_cast<std::uint32_t>(estimate);
  }
  trim_limbs(quotient);
  un.resize(n);
  trim_limbs(un);
  remainder = shift_limbs_right(un, shift);
}

/// gcd of two magnitudes by the binary algorithm (only shifts and subtractions, in place), finishing in 64-bit
/// arithmetic as soon as both operands fit.
inline BigLimbs gcd_limbs(BigLimbs a, BigLimbs b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  const std::size_t common_twos = std::min(trailing_zero_bits(a), trailing_zero_bits(b));
  a = shift_limbs_right(a, trailing_zero_bits(a));
  while (!b.empty()) {
    if (a.size() <= 2 && b.size() <= 2) {
      a = limbs_of(std::gcd(limbs_value(a), limbs_value(b)));
      break;
    }
    b = shift_limbs_right(b, trailing_zero_bits(b));  // a and b are odd now
    if (compare_limbs(a, b) > 0) std::swap(a, b);
    subtract_limbs_in_place(b, a);  // gcd(a, b) = gcd(a, b - a), and b - a is even
  }
  return shift_limbs_left(a, common_twos);
}

}  // namespace detail

/// An integer of any size. Values in [-(2^63 - 1), 2^63 - 1] are held in one machine word and computed with
/// overflow-checked 64-bit arithmetic; a result outside that range moves to a digit vector, so no operation ever
/// overflows. Division truncates toward zero and the remainder takes the dividend's sign, as for built-in integers.
class BigInteger {
 public:
  BigInteger() noexcept = default;

  /// Every 64-bit integer converts exactly (implicitly, so integer literals mix with big integers).
  BigInteger(std::int64_t value) {  // NOLINT(google-explicit-constructor)
    if (value == std::numeric_limits<std::int64_t>::min()) {
      negative_ = true;
      limbs_ = detail::limbs_of(std::uint64_t{1} << 63);
    } else {
      small_ = value;
    }
  }

  /// Parses an optional sign followed by decimal digits ("-12", "+7", "0"); nothing else (no spaces).
  static BigInteger parse(std::string_view text) {
    std::size_t position = 0;
    bool negative = false;
    if (!text.empty() && (text[0] == '-' || text[0] == '+')) {
      negative = text[0] == '-';
      position = 1;
    }
    if (position == text.size())
      detail::argument_error("text", "an integer: optional sign and decimal digits", "\"" + std::string(text) + "\"");
    BigInteger value;
    for (; position < text.size(); ++position) {
      const char c = text[position];
      if (c < '0' || c > '9')
        detail::argument_error("text", "an integer: optional sign and decimal digits", "\"" + std::string(text) + "\"");
      value = value * BigInteger(10) + BigInteger(c - '0');
    }
    return negative ? -value : value;
  }

  /// Decimal digits with a leading '-' for negative values.
  std::string to_string() const {
    if (is_small()) return std::to_string(small_);
    detail::BigLimbs rest = limbs_;
    std::vector<std::uint32_t> groups;  // base 10^9, least significant first
    while (!rest.empty()) groups.push_back(detail::divide_limbs_by_digit(rest, 1000000000u));
    std::string text = negative_ ? "-" : "";
    text += std::to_string(groups.back());
    for (std::size_t i = groups.size() - 1; i-- > 0;) {
      const std::string digits = std::to_string(groups[i]);
      text += std::string(9 - digits.size(), '0') + digits;
    }
    return text;
  }

  /// -1, 0 or 1.
  int sign() const noexcept {
    if (is_small()) return (small_ > 0) - (small_ < 0);
    return negative_ ? -1 : 1;
  }
  bool is_zero() const noexcept { return is_small() && small_ == 0; }
  bool is_negative() const noexcept { return sign() < 0; }

  /// True when the value fits in std::int64_t.
  bool fits_int64() const noexcept {
    return is_small() || (negative_ && limbs_ == detail::limbs_of(std::uint64_t{1} << 63));
  }
  /// The value as std::int64_t; throws deltaproduct::Error when it does not fit.
  std::int64_t to_int64() const {
    if (is_small()) return small_;
    if (fits_int64()) return std::numeric_limits<std::int64_t>::min();
    throw Error("deltaproduct: integer " + to_string() + " does not fit in 64 bits");
  }

  /// The nearest double, up to a few units in the last place (for printing); +-inf beyond the double range.
  double to_double() const {
    if (is_small()) return static_cast<double>(small_);
    double value = 0;
    for (std::size_t i = limbs_.size(); i-- > 0;) value = value * 4294967296.0 + static_cast<double>(limbs_[i]);
    return negative_ ? -value : value;
  }

  /// Number of bits of |value| (0 for zero).
  std::size_t bit_length() const {
    const detail::BigLimbs magnitude = magnitude_limbs();
    if (magnitude.empty()) return 0;
    return 32 * magnitude.size() - static_cast<std::size_t>(std::countl_zero(magnitude.back()));
  }

  BigInteger abs() const { return is_negative() ? -*this : *this; }

  /// value * 2^bits.
  BigInteger shifted_left(std::size_t bits) const {
    return from_magnitude(is_negative(), detail::shift_limbs_left(magnitude_limbs(), bits));
  }
  /// value / 2^bits, truncated toward zero.
  BigInteger shifted_right(std::size_t bits) const {
    return from_magnitude(is_negative(), detail::shift_limbs_right(magnitude_limbs(), bits));
  }

  BigInteger operator-() const {
    if (is_small()) return BigInteger(-small_);  // -small_ is in the small range too
    return from_magnitude(!negative_, limbs_);
  }

  friend BigInteger operator+(const BigInteger& a, const BigInteger& b) {
    if (a.is_small() && b.is_small()) {
      const std::int64_t x = a.small_;
      const std::int64_t y = b.small_;
      if ((y > 0 && x <= small_max - y) || (y <= 0 && x >= -small_max - y)) return BigInteger(x + y);
    }
    return add_signed(a.is_negative(), a.magnitude_limbs(), b.is_negative(), b.magnitude_limbs());
  }

  friend BigInteger operator-(const BigInteger& a, const BigInteger& b) {
    if (a.is_small() && b.is_small()) {
      const std::int64_t x = a.small_;
      const std::int64_t y = b.small_;
      if ((y < 0 && x <= small_max + y) || (y >= 0 && x >= -small_max + y)) return BigInteger(x - y);
    }
    return add_signed(a.is_negative(), a.magnitude_limbs(), !b.is_negative() && !b.is_zero(), b.magnitude_limbs());
  }

  friend BigInteger operator*(const BigInteger& a, const BigInteger& b) {
    if (a.is_small() && b.is_small()) {
      const std::uint64_t x = magnitude_of(a.small_);
      const std::uint64_t y = magnitude_of(b.small_);
      const bool negative = (a.small_ < 0) != (b.small_ < 0);
      if (x == 0 || y == 0) return BigInteger();
      constexpr std::uint64_t half_word = std::uint64_t{1} << 31;
      if ((x < half_word && y < half_word) || x <= static_cast<std::uint64_t>(small_max) / y) {
        const auto product = static_cast<std::int64_t>(x * y);
        return BigInteger(negative ? -product : product);
      }
    }
    return from_magnitude(a.is_negative() != b.is_negative(),
                          detail::multiply_limbs(a.magnitude_limbs(), b.magnitude_limbs()));
  }

  /// Quotient truncated toward zero; throws ArgumentError for a zero divisor.
  friend BigInteger operator/(const BigInteger& a, const BigInteger& b) {
    BigInteger quotient;
    BigInteger remainder;
    divide(a, b, quotient, remainder);
    return quotient;
  }
  /// Remainder with the dividend's sign: a == (a / b) * b + a % b.
  friend BigInteger operator%(const BigInteger& a, const BigInteger& b) {
    BigInteger quotient;
    BigInteger remainder;
    divide(a, b, quotient, remainder);
    return remainder;
  }

  BigInteger& operator+=(const BigInteger& b) { return *this = *this + b; }
  BigInteger& operator-=(const BigInteger& b) { return *this = *this - b; }
  BigInteger& operator*=(const BigInteger& b) { return *this = *this * b; }
  BigInteger& operator/=(const BigInteger& b) { return *this = *this / b; }
  BigInteger& operator%=(const BigInteger& b) { return *this = *this % b; }

  /// Both quotient (truncated toward zero) and remainder of a / b.
  static void divide(const BigInteger& a, const BigInteger& b, BigInteger& quotient, BigInteger& remainder) {
    if (b.is_zero()) detail::argument_error("divisor", "a nonzero integer", "0");
    if (a.is_small() && b.is_small()) {  // no overflow: the small range excludes INT64_MIN
      quotient = BigInteger(a.small_ / b.small_);
      remainder = BigInteger(a.small_ % b.small_);
      return;
    }
    detail::BigLimbs q;
    detail::BigLimbs r;
    detail::divide_limbs(a.magnitude_limbs(), b.magnitude_limbs(), q, r);
    quotient = from_magnitude(a.is_negative() != b.is_negative(), std::move(q));
    remainder = from_magnitude(a.is_negative(), std::move(r));
  }

  /// The greatest common divisor, >= 0 (gcd(0, 0) = 0).
  friend BigInteger gcd(const BigInteger& a, const BigInteger& b) {
    if (a.is_small() && b.is_small())
      return BigInteger(static_cast<std::int64_t>(std::gcd(magnitude_of(a.small_), magnitude_of(b.small_))));
    return from_magnitude(false, detail::gcd_limbs(a.magnitude_limbs(), b.magnitude_limbs()));
  }

  friend bool operator==(const BigInteger& a, const BigInteger& b) noexcept {
    return a.small_ == b.small_ && a.negative_ == b.negative_ && a.limbs_ == b.limbs_;  // the form is canonical
  }
  friend std::strong_ordering operator<=>(const BigInteger& a, const BigInteger& b) {
    if (a.is_small() && b.is_small()) return a.small_ <=> b.small_;
    const int sign_a = a.sign();
    const int sign_b = b.sign();
    if (sign_a != sign_b) return sign_a <=> sign_b;
    const int by_magnitude = detail::compare_limbs(a.magnitude_limbs(), b.magnitude_limbs());
    return (sign_a < 0 ? -by_magnitude : by_magnitude) <=> 0;
  }

  friend std::ostream& operator<<(std::ostream& out, const BigInteger& value) { return out << value.to_string(); }

 private:
  static constexpr std::int64_t small_max = std::numeric_limits<std::int64_t>::max();

  bool is_small() const noexcept { return limbs_.empty(); }

  static std::uint64_t magnitude_of(std::int64_t value) noexcept {
    return value < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(value) : static_cast<std::uint64_t>(value);
  }

  detail::BigLimbs magnitude_limbs() const { return is_small() ? detail::limbs_of(magnitude_of(small_)) : limbs_; }

  /// The canonical form of +-magnitude: small when |value| <= 2^63 - 1.
  static BigInteger from_magnitude(bool negative, detail::BigLimbs magnitude) {
    detail::trim_limbs(magnitude);
    BigInteger result;
    if (magnitude.size() <= 2 && detail::limbs_value(magnitude) <= static_cast<std::uint64_t>(small_max)) {
      const auto value = static_cast<std::int64_t>(detail::limbs_value(magnitude));
      result.small_ = negative ? -value : value;
    } else {
      result.negative_ = negative;
      result.limbs_ = std::move(magnitude);
    }
    return result;
  }

  /// (+-a) + (+-b) on magnitudes.
  static BigInteger add_signed(bool a_negative, const detail::BigLimbs& a, bool b_negative, const detail::BigLimbs& b) {
    if (a_negative == b_negative) return from_magnitude(a_negative, detail::add_limbs(a, b));
    const int by_magnitude = detail::compare_limbs(a, b);
    if (by_magnitude == 0) return BigInteger();
    if (by_magnitude > 0) return from_magnitude(a_negative, detail::subtract_limbs(a, b));
    return from_magnitude(b_negative, detail::subtract_limbs(b, a));
  }

  std::int64_t small_ = 0;  // the value, while limbs_ is empty
  bool negative_ = false;   // the sign of a value held in limbs_
  detail::BigLimbs limbs_;  // |value| when it exceeds 2^63 - 1; empty otherwise
};

/// An exact rational number p/q: always reduced (gcd(p, q) = 1) with q > 0, so equal numbers have equal
/// representations. Arithmetic never rounds; division by zero throws ArgumentError.
class Rational {
 public:
  Rational() = default;

  /// Integers convert exactly and implicitly, so matrices can be written with integer literals.
  Rational(std::int64_t value) : numerator_(value) {}           // NOLINT(google-explicit-constructor)
  Rational(BigInteger value) : numerator_(std::move(value)) {}  // NOLINT(google-explicit-constructor)

  /// numerator / denominator, reduced; throws ArgumentError for a zero denominator.
  Rational(BigInteger numerator, BigInteger denominator)
      : numerator_(std::move(numerator)), denominator_(std::move(denominator)) {
    if (denominator_.is_zero()) detail::argument_error("denominator", "a nonzero integer", "0");
    normalize();
  }
  Rational(std::int64_t numerator, std::int64_t denominator)
      : Rational(BigInteger(numerator), BigInteger(denominator)) {}

  /// Parses "p" or "p/q": p an integer with optional sign, q decimal digits (nonzero); no spaces. "-6/4" gives -3/2.
  static Rational parse(std::string_view text) {
    const std::size_t slash = text.find('/');
    if (slash == std::string_view::npos) return Rational(BigInteger::parse(text));
    const std::string_view denominator_text = text.substr(slash + 1);
    if (denominator_text.empty() || denominator_text[0] == '-' || denominator_text[0] == '+')
      detail::argument_error("text", "a rational \"p\" or \"p/q\" with q decimal digits",
                             "\"" + std::string(text) + "\"");
    const BigInteger denominator = BigInteger::parse(denominator_text);
    if (denominator.is_zero())
      detail::argument_error("text", "a rational with a nonzero denominator", "\"" + std::string(text) + "\"");
    return Rational(BigInteger::parse(text.substr(0, slash)), denominator);
  }

  const BigInteger& numerator() const noexcept { return numerator_; }
  /// Always > 0.
  const BigInteger& denominator() const noexcept { return denominator_; }

  int sign() const noexcept { return numerator_.sign(); }
  bool is_zero() const noexcept { return numerator_.is_zero(); }
  bool is_integer() const noexcept { return denominator_ == BigInteger(1); }

  Rational abs() const { return is_negative() ? -*this : *this; }
  bool is_negative() const noexcept { return numerator_.is_negative(); }

  /// The value as a double, correct to a few units in the last place (for printing and plotting, never for decisions);
  /// scaled through the bit lengths, so it works for numerators and denominators far beyond the double range.
  double to_double() const {
    if (is_zero()) return 0.0;
    constexpr std::int64_t exact_limit = std::int64_t{1} << 53;
    if (numerator_.fits_int64() && denominator_.fits_int64()) {
      const std::int64_t p = numerator_.to_int64();
      const std::int64_t q = denominator_.to_int64();
      if (p > -exact_limit && p < exact_limit && q < exact_limit)  // both exact: one rounding of the quotient
        return static_cast<double>(p) / static_cast<double>(q);
    }
    // |p/q| = floor(|p| 2^s / q) 2^-s with s chosen so the integer quotient has 64 or 65 bits.
    const BigInteger p = numerator_.abs();
    const auto exponent =
        static_cast<std::int64_t>(p.bit_length()) - static_cast<std::int64_t>(denominator_.bit_length());
    const std::int64_t shift = 64 - exponent;
    const BigInteger quotient = shift >= 0 ? p.shifted_left(static_cast<std::size_t>(shift)) / denominator_
                                           : p / denominator_.shifted_left(static_cast<std::size_t>(-shift));
    const double magnitude = std::ldexp(quotient.to_double(), static_cast<int>(-shift));
    return is_negative() ? -magnitude : magnitude;
  }
  explicit operator double() const { return to_double(); }

  /// "p" for integers, "p/q" otherwise ("-3/2").
  std::string to_string() const {
    if (is_integer()) return numerator_.to_string();
    return numerator_.to_string() + "/" + denominator_.to_string();
  }

  Rational operator-() const {
    Rational negated = *this;
    negated.numerator_ = -negated.numerator_;
    return negated;
  }

  // a/b + c/d with g = gcd(b, d): (a (d/g) + c (b/g)) / (b/g * d), then only gcd(numerator, g) can remain
  // (Knuth, TAOCP vol. 2, 4.5.1), which keeps the intermediate numbers small.
  friend Rational operator+(const Rational& x, const Rational& y) { return add(x, y.numerator_, y.denominator_); }
  friend Rational operator-(const Rational& x, const Rational& y) { return add(x, -y.numerator_, y.denominator_); }

  // (a/b)(c/d) = ((a/g1)(c/g2)) / ((b/g2)(d/g1)) with g1 = gcd(a, d), g2 = gcd(c, b): already reduced.
  friend Rational operator*(const Rational& x, const Rational& y) {
    if (x.is_zero() || y.is_zero()) return Rational();
    return multiply(x.numerator_, x.denominator_, y.numerator_, y.denominator_);
  }
  friend Rational operator/(const Rational& x, const Rational& y) {
    if (y.is_zero()) detail::argument_error("divisor", "a nonzero rational", "0");
    if (x.is_zero()) return Rational();
    // x / (c/d) = x * (d/c), with the sign moved to the numerator.
    return y.is_negative() ? multiply(x.numerator_, x.denominator_, -y.denominator_, -y.numerator_)
                           : multiply(x.numerator_, x.denominator_, y.denominator_, y.numerator_);
  }

  Rational& operator+=(const Rational& y) { return *this = *this + y; }
  Rational& operator-=(const Rational& y) { return *this = *this - y; }
  Rational& operator*=(const Rational& y) { return *this = *this * y; }
  Rational& operator/=(const Rational& y) { return *this = *this / y; }

  friend bool operator==(const Rational& x, const Rational& y) noexcept {
    return x.numerator_ == y.numerator_ && x.denominator_ == y.denominator_;
  }
  // a/b <=> c/d  iff  a d <=> c b, since b, d > 0.
  friend std::strong_ordering operator<=>(const Rational& x, const Rational& y) {
    if (x.denominator_ == y.denominator_) return x.numerator_ <=> y.numerator_;
    if (x.sign() != y.sign()) return x.sign() <=> y.sign();
    return x.numerator_ * y.denominator_ <=> y.numerator_ * x.denominator_;
  }

  friend std::ostream& operator<<(std::ostream& out, const Rational& value) { return out << value.to_string(); }

 private:
  void normalize() {
    if (denominator_.is_negative()) {
      numerator_ = -numerator_;
      denominator_ = -denominator_;
    }
    const BigInteger divisor = gcd(numerator_, denominator_);
    if (divisor != BigInteger(1)) {
      numerator_ /= divisor;
      denominator_ /= divisor;
    }
  }

  /// x + c/d for d > 0 and gcd(c, d) = 1.
  static Rational add(const Rational& x, const BigInteger& c, const BigInteger& d) {
    const BigInteger& a = x.numerator_;
    const BigInteger& b = x.denominator_;
    Rational sum;
    const BigInteger g = gcd(b, d);
    if (g == BigInteger(1)) {  // gcd(a d + c b, b d) = 1 already
      sum.numerator_ = a * d + c * b;
      sum.denominator_ = b * d;
      return sum;
    }
    const BigInteger t = a * (d / g) + c * (b / g);
    const BigInteger g2 = gcd(t, g);
    if (g2 == BigInteger(1)) {
      sum.numerator_ = t;
      sum.denominator_ = (b / g) * d;
    } else {
      sum.numerator_ = t / g2;
      sum.denominator_ = (b / g) * (d / g2);
    }
    if (sum.numerator_.is_zero()) sum.denominator_ = BigInteger(1);
    return sum;
  }

  /// (a/b)(c/d) for reduced a/b, c/d with b, d > 0.
  static Rational multiply(const BigInteger& a, const BigInteger& b, const BigInteger& c, const BigInteger& d) {
    const BigInteger g1 = gcd(a, d);
    const BigInteger g2 = gcd(c, b);
    Rational product;
    product.numerator_ = (a / g1) * (c / g2);
    product.denominator_ = (b / g2) * (d / g1);
    return product;
  }

  BigInteger numerator_;
  BigInteger denominator_{1};
};

/// A rational column vector.
using RationalVector = std::vector<Rational>;

/// "(1, -1/2, 0)".
inline std::string to_string(const RationalVector& v) {
  std::string text = "(";
  for (std::size_t i = 0; i < v.size(); ++i) text += (i == 0 ? "" : ", ") + v[i].to_string();
  return text + ")";
}

/// u^T v; throws ArgumentError for different lengths.
inline Rational dot(const RationalVector& u, const RationalVector& v) {
  if (u.size() != v.size())
    detail::argument_error("v", "a vector of length " + std::to_string(u.size()), "length " + std::to_string(v.size()));
  Rational sum;
  for (std::size_t i = 0; i < u.size(); ++i)
    if (!u[i].is_zero() && !v[i].is_zero()) sum += u[i] * v[i];
  return sum;
}

/// A dense rows x cols matrix of rationals, row-major. Sized for hand-sized exact linear algebra.
class RationalMatrix {
 public:
  RationalMatrix() = default;

  /// The rows x cols zero matrix.
  RationalMatrix(std::size_t rows, std::size_t cols) : rows_(rows), cols_(cols), entries_(rows * cols) {}

  /// From rows, e.g. {{1, 0}, {Rational(1, 2), 1}}; throws ArgumentError for rows of different lengths.
  RationalMatrix(std::initializer_list<std::initializer_list<Rational>> rows) {
    rows_ = rows.size();
    cols_ = rows_ == 0 ? 0 : rows.begin()->size();
    entries_.reserve(rows_ * cols_);
    for (const auto& row : rows) {
      if (row.size() != cols_)
        detail::argument_error("rows", "rows of equal length " + std::to_string(cols_),
                               "a row of length " + std::to_string(row.size()));
      entries_.insert(entries_.end(), row.begin(), row.end());
    }
  }

  static RationalMatrix identity(std::size_t n) {
    RationalMatrix m(n, n);
    for (std::size_t i = 0; i < n; ++i) m(i, i) = Rational(1);
    return m;
  }

  /// The matrix whose columns are the given vectors (all of one length).
  static RationalMatrix from_columns(const std::vector<RationalVector>& columns) {
    if (columns.empty()) return RationalMatrix();
    RationalMatrix m(columns[0].size(), columns.size());
    for (std::size_t c = 0; c < columns.size(); ++c) {
      if (columns[c].size() != m.rows_)
        detail::argument_error("columns", "columns of equal length " + std::to_string(m.rows_),
                               "column " + std::to_string(c) + " of length " + std::to_string(columns[c].size()));
      for (std::size_t r = 0; r < m.rows_; ++r) m(r, c) = columns[c][r];
    }
    return m;
  }

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  bool is_square() const noexcept { return rows_ == cols_; }

  /// Unchecked element access (r < rows(), c < cols()).
  Rational& operator()(std::size_t r, std::size_t c) { return entries_[r * cols_ + c]; }
  const Rational& operator()(std::size_t r, std::size_t c) const { return entries_[r * cols_ + c]; }

  RationalVector column(std::size_t c) const {
    RationalVector v(rows_);
    for (std::size_t r = 0; r < rows_; ++r) v[r] = (*this)(r, c);
    return v;
  }

  /// "[[1, 0], [0, 1/2]]".
  std::string to_string() const {
    std::string text = "[";
    for (std::size_t r = 0; r < rows_; ++r) {
      text += r == 0 ? "[" : ", [";
      for (std::size_t c = 0; c < cols_; ++c) text += (c == 0 ? "" : ", ") + (*this)(r, c).to_string();
      text += "]";
    }
    return text + "]";
  }

  friend bool operator==(const RationalMatrix& a, const RationalMatrix& b) {
    return a.rows_ == b.rows_ && a.cols_ == b.cols_ && a.entries_ == b.entries_;
  }

  friend std::ostream& operator<<(std::ostream& out, const RationalMatrix& m) { return out << m.to_string(); }

 private:
  std::size_t rows_ = 0;
  std::size_t cols_ = 0;
  std::vector<Rational> entries_;
};

namespace detail {

inline std::string matrix_shape(const RationalMatrix& m) {
  return std::to_string(m.rows()) + " x " + std::to_string(m.cols());
}

inline void require_square(const char* argument, const RationalMatrix& m) {
  if (!m.is_square()) argument_error(argument, "a square matrix", "a " + matrix_shape(m) + " matrix");
}

inline void require_same_shape(const RationalMatrix& a, const RationalMatrix& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols())
    argument_error("b", "a " + matrix_shape(a) + " matrix", "a " + matrix_shape(b) + " matrix");
}

/// Gaussian elimination to row echelon form in place, choosing the first nonzero pivot of each column; returns the
/// pivot columns and sets swaps to the number of row exchanges.
inline std::vector<std::size_t> row_echelon_form(RationalMatrix& m, std::size_t& swaps) {
  std::vector<std::size_t> pivot_columns;
  swaps = 0;
  std::size_t pivot_row = 0;
  for (std::size_t c = 0; c < m.cols() && pivot_row < m.rows(); ++c) {
    std::size_t found = pivot_row;
    while (found < m.rows() && m(found, c).is_zero()) ++found;
    if (found == m.rows()) continue;
    if (found != pivot_row) {
      for (std::size_t k = c; k < m.cols(); ++k) std::swap(m(found, k), m(pivot_row, k));
      ++swaps;
    }
    for (std::size_t r = pivot_row + 1; r < m.rows(); ++r) {
      if (m(r, c).is_zero()) continue;
      const Rational factor = m(r, c) / m(pivot_row, c);
      m(r, c) = Rational();
      for (std::size_t k = c + 1; k < m.cols(); ++k)
        if (!m(pivot_row, k).is_zero()) m(r, k) -= factor * m(pivot_row, k);
    }
    pivot_columns.push_back(c);
    ++pivot_row;
  }
  return pivot_columns;
}

}  // namespace detail

inline RationalMatrix transpose(const RationalMatrix& m) {
  RationalMatrix t(m.cols(), m.rows());
  for (std::size_t r = 0; r < m.rows(); ++r)
    for (std::size_t c = 0; c < m.cols(); ++c) t(c, r) = m(r, c);
  return t;
}

inline RationalMatrix operator+(const RationalMatrix& a, const RationalMatrix& b) {
  detail::require_same_shape(a, b);
  RationalMatrix sum = a;
  for (std::size_t r = 0; r < a.rows(); ++r)
    for (std::size_t c = 0; c < a.cols(); ++c) sum(r, c) += b(r, c);
  return sum;
}

inline RationalMatrix operator-(const RationalMatrix& a, const RationalMatrix& b) {
  detail::require_same_shape(a, b);
  RationalMatrix difference = a;
  for (std::size_t r = 0; r < a.rows(); ++r)
    for (std::size_t c = 0; c < a.cols(); ++c) difference(r, c) -= b(r, c);
  return difference;
}

inline RationalMatrix operator*(const Rational& s, const RationalMatrix& m) {
  RationalMatrix scaled = m;
  for (std::size_t r = 0; r < m.rows(); ++r)
    for (std::size_t c = 0; c < m.cols(); ++c) scaled(r, c) *= s;
  return scaled;
}

/// The matrix product; throws ArgumentError when a.cols() != b.rows().
inline RationalMatrix operator*(const RationalMatrix& a, const RationalMatrix& b) {
  if (a.cols() != b.rows())
    detail::argument_error("b", "a matrix with " + std::to_string(a.cols()) + " rows",
                           "a " + detail::matrix_shape(b) + " matrix");
  RationalMatrix product(a.rows(), b.cols());
  for (std::size_t r = 0; r < a.rows(); ++r)
    for (std::size_t k = 0; k < a.cols(); ++k) {
      if (a(r, k).is_zero()) continue;
      for (std::size_t c = 0; c < b.cols(); ++c)
        if (!b(k, c).is_zero()) product(r, c) += a(r, k) * b(k, c);
    }
  return product;
}

/// The matrix-vector product m v.
inline RationalVector operator*(const RationalMatrix& m, const RationalVector& v) {
  if (m.cols() != v.size())
    detail::argument_error("v", "a vector of length " + std::to_string(m.cols()), "length " + std::to_string(v.size()));
  RationalVector product(m.rows());
  for (std::size_t r = 0; r < m.rows(); ++r)
    for (std::size_t c = 0; c < m.cols(); ++c)
      if (!m(r, c).is_zero() && !v[c].is_zero()) product[r] += m(r, c) * v[c];
  return product;
}

/// The outer product u v^T.
inline RationalMatrix outer_product(const RationalVector& u, const RationalVector& v) {
  RationalMatrix m(u.size(), v.size());
  for (std::size_t r = 0; r < u.size(); ++r)
    for (std::size_t c = 0; c < v.size(); ++c) m(r, c) = u[r] * v[c];
  return m;
}

inline Rational trace(const RationalMatrix& m) {
  detail::require_square("m", m);
  Rational sum;
  for (std::size_t i = 0; i < m.rows(); ++i) sum += m(i, i);
  return sum;
}

inline bool is_symmetric(const RationalMatrix& m) { return m == transpose(m); }

/// The determinant by exact Gaussian elimination: the product of the pivots, negated once per row exchange.
inline Rational determinant(const RationalMatrix& m) {
  detail::require_square("m", m);
  RationalMatrix echelon = m;
  std::size_t swaps = 0;
  const std::vector<std::size_t> pivots = detail::row_echelon_form(echelon, swaps);
  if (pivots.size() < m.rows()) return Rational();
  Rational product(1);
  for (std::size_t i = 0; i < m.rows(); ++i) product *= echelon(i, i);
  return swaps % 2 == 0 ? product : -product;
}

/// The rank: the number of pivots of an exact row echelon form.
inline std::size_t matrix_rank(const RationalMatrix& m) {
  RationalMatrix echelon = m;
  std::size_t swaps = 0;
  return detail::row_echelon_form(echelon, swaps).size();
}

/// The inverse by Gauss-Jordan elimination on [m | I]; throws ArgumentError for a singular or non-square m.
inline RationalMatrix inverse(const RationalMatrix& m) {
  detail::require_square("m", m);
  const std::size_t n = m.rows();
  if (n == 0) return m;
  RationalMatrix augmented(n, 2 * n);
  for (std::size_t r = 0; r < n; ++r) {
    for (std::size_t c = 0; c < n; ++c) augmented(r, c) = m(r, c);
    augmented(r, n + r) = Rational(1);
  }
  std::size_t swaps = 0;
  const std::vector<std::size_t> pivots = detail::row_echelon_form(augmented, swaps);
  if (pivots.size() < n || pivots[n - 1] != n - 1)
    detail::argument_error("m", "an invertible matrix", "a singular " + detail::matrix_shape(m) + " matrix");
  for (std::size_t p = n; p-- > 0;) {  // back substitution: scale each pivot row to 1, clear the column above it
    const Rational pivot = augmented(p, p);
    for (std::size_t c = p; c < 2 * n; ++c) augmented(p, c) /= pivot;
    for (std::size_t r = 0; r < p; ++r) {
      const Rational factor = augmented(r, p);
      if (factor.is_zero()) continue;
      for (std::size_t c = p; c < 2 * n; ++c) augmented(r, c) -= factor * augmented(p, c);
    }
  }
  RationalMatrix result(n, n);
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t c = 0; c < n; ++c) result(r, c) = augmented(r, n + c);
  return result;
}

/// Coefficients c_0, ..., c_n (lowest degree first, c_n = 1) of the characteristic polynomial det(x I - m), by the
/// Faddeev-LeVerrier recursion: N_1 = I, c_{n-k} = -tr(m N_k) / k, N_{k+1} = m N_k + c_{n-k} I (exact over the
/// rationals, where dividing by k is allowed).
inline std::vector<Rational> characteristic_polynomial(const RationalMatrix& m) {
  detail::require_square("m", m);
  const std::size_t n = m.rows();
  std::vector<Rational> coefficients(n + 1);
  coefficients[n] = Rational(1);
  RationalMatrix accumulated = RationalMatrix::identity(n);
  for (std::size_t k = 1; k <= n; ++k) {
    const RationalMatrix product = m * accumulated;
    coefficients[n - k] = -trace(product) / Rational(static_cast<std::int64_t>(k));
    accumulated = product;
    for (std::size_t i = 0; i < n; ++i) accumulated(i, i) += coefficients[n - k];
  }
  return coefficients;
}

/// The value of the polynomial with coefficients c_0, c_1, ... (lowest degree first) at x, by Horner's rule.
inline Rational evaluate_polynomial(const std::vector<Rational>& coefficients, const Rational& x) {
  Rational value;
  for (std::size_t i = coefficients.size(); i-- > 0;) value = value * x + coefficients[i];
  return value;
}

/// The product of two polynomials given lowest degree first.
inline std::vector<Rational> multiply_polynomials(const std::vector<Rational>& p, const std::vector<Rational>& q) {
  if (p.empty() || q.empty()) return {};
  std::vector<Rational> product(p.size() + q.size() - 1);
  for (std::size_t i = 0; i < p.size(); ++i)
    for (std::size_t j = 0; j < q.size(); ++j) product[i + j] += p[i] * q[j];
  return product;
}

/// The square submatrix of m on the given rows and columns (indices into m, in the order given).
inline RationalMatrix submatrix(const RationalMatrix& m, const std::vector<std::size_t>& rows,
                                const std::vector<std::size_t>& cols) {
  RationalMatrix sub(rows.size(), cols.size());
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t c = 0; c < cols.size(); ++c) {
      if (rows[r] >= m.rows() || cols[c] >= m.cols())
        detail::argument_error("rows, cols", "indices inside the " + detail::matrix_shape(m) + " matrix",
                               std::to_string(rows[r]) + ", " + std::to_string(cols[c]));
      sub(r, c) = m(rows[r], cols[c]);
    }
  return sub;
}

/// One principal minor: the determinant of m restricted to the rows and columns in indices (increasing).
struct PrincipalMinor {
  std::vector<std::size_t> indices;
  Rational value;
};

/// The largest matrix whose 2^n - 1 principal minors principal_minors enumerates.
inline constexpr std::size_t max_principal_minor_dimension = 16;

/// All 2^n - 1 principal minors of a square m (n <= max_principal_minor_dimension), ordered by the bit mask of their
/// index set (mask 1 = {0}, mask 2 = {1}, mask 3 = {0, 1}, ...).
inline std::vector<PrincipalMinor> principal_minors(const RationalMatrix& m) {
  detail::require_square("m", m);
  const std::size_t n = m.rows();
  if (n > max_principal_minor_dimension)
    detail::argument_error("m", "at most " + std::to_string(max_principal_minor_dimension) + " rows",
                           std::to_string(n) + " rows");
  std::vector<PrincipalMinor> minors;
  minors.reserve((std::size_t{1} << n) - 1);
  for (std::size_t mask = 1; mask < (std::size_t{1} << n); ++mask) {
    PrincipalMinor minor;
    for (std::size_t i = 0; i < n; ++i)
      if ((mask >> i) & 1u) minor.indices.push_back(i);
    minor.value = determinant(submatrix(m, minor.indices, minor.indices));
    minors.push_back(std::move(minor));
  }
  return minors;
}

/// True for a symmetric m all of whose principal minors are >= 0 — the exact criterion for positive semidefiniteness
/// (the leading minors alone do not suffice: diag(0, -1) has leading minors 0, 0). Throws ArgumentError when m is not
/// symmetric. When first_negative is given and m is not PSD, it receives the first negative minor in mask order.
inline bool is_positive_semidefinite(const RationalMatrix& m, PrincipalMinor* first_negative = nullptr) {
  detail::require_square("m", m);
  if (!is_symmetric(m)) detail::argument_error("m", "a symmetric matrix", "a non-symmetric matrix " + m.to_string());
  for (PrincipalMinor& minor : principal_minors(m))
    if (minor.value.is_negative()) {
      if (first_negative != nullptr) *first_negative = std::move(minor);
      return false;
    }
  return true;
}

}  // namespace deltaproduct
