// Independent references for the precision tests: nothing here uses the library's rounding code.
//
// - The exact result of + - * / sqrt fma on doubles, rounded to odd at binary128's 113 bits (RO113): computed with
//   binary128 arithmetic and error-free transforms (TwoSum; the exact remainder of / and sqrt with fmaf128).
//   Rounding to odd at q bits keeps every rounding decision at p <= q - 2 bits (Boldo and Melquiond, "Emulation of
//   FMA and correctly rounded sums: proved algorithms using rounding to odd", IEEE TC 2008), so rounding RO113(x)
//   to any format with at most 54 bits of precision gives the correct rounding of x.
// - The rounding of a binary128 value to a format (E, M), by integer arithmetic on its 128-bit encoding.
// - Hardware references under another rounding mode (float, double, _Float16 under std::fesetround).
// - bf16 from float by integer bit tricks.
#pragma once

#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>

__extension__ typedef __float128 Quad;
__extension__ typedef unsigned __int128 Uint128;

extern "C" Quad fmaf128(Quad, Quad, Quad);
extern "C" Quad sqrtf128(Quad);

namespace reference {

enum class Mode { nearest_even, toward_zero, away_from_zero };

struct Format {
  int exponent_bits;
  int mantissa_bits;
  bool saturate;  // OCP "fn" layout: top exponent code finite except all ones, no infinities

  int bias() const { return (1 << (exponent_bits - 1)) - 1; }
  int min_exponent() const { return 1 - bias(); }
  int max_exponent() const { return saturate ? bias() + 1 : bias(); }
  double max_value() const {
    const double top_significand = saturate ? 2.0 - std::ldexp(1.0, 1 - mantissa_bits) : 2.0 - std::ldexp(1.0, -mantissa_bits);
    return std::ldexp(top_significand, max_exponent());
  }
};

inline Uint128 quad_bits(Quad x) {
  Uint128 bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}
inline Quad quad_from_bits(Uint128 bits) {
  Quad x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

/// Makes s = RN113(x) into RO113(x) given the sign of x - s (+1, 0, -1).
inline Quad to_odd(Quad s, int direction) {
  if (direction == 0) return s;
  Uint128 bits = quad_bits(s);
  if ((bits & 1) != 0) return s;  // already odd
  const bool negative = (bits >> 127) != 0;
  const bool magnitude_up = (direction > 0) != negative;
  bits = magnitude_up ? bits + 1 : bits - 1;
  return quad_from_bits(bits);
}

inline int sign_of(Quad x) { return x > 0 ? 1 : (x < 0 ? -1 : 0); }

inline Quad two_sum_error(Quad a, Quad b, Quad s) {
  const Quad bv = s - a;
  const Quad av = s - bv;
  return (a - av) + (b - bv);
}

/// RO113 of the exact a + b, a * b, a / b, sqrt(a), a * b + c (finite operands, nonzero exact result).
inline Quad exact_sum(double a, double b) {
  const Quad s = Quad(a) + Quad(b);
  return to_odd(s, sign_of(two_sum_error(Quad(a), Quad(b), s)));
}
inline Quad exact_product(double a, double b) { return Quad(a) * Quad(b); }  // 106 bits: exact
inline Quad exact_quotient(double a, double b) {
  const Quad q = Quad(a) / Quad(b);
  const Quad remainder = fmaf128(-q, Quad(b), Quad(a));  // a - q b, exact
  return to_odd(q, sign_of(remainder) * (b > 0 ? 1 : -1));
}
inline Quad exact_sqrt(double a) {
  const Quad s = sqrtf128(Quad(a));
  return to_odd(s, sign_of(fmaf128(-s, s, Quad(a))));
}
inline Quad exact_fma(double a, double b, double c) {
  const Quad p = Quad(a) * Quad(b);
  const Quad s = p + Quad(c);
  return to_odd(s, sign_of(two_sum_error(p, Quad(c), s)));
}

/// Rounds a binary128 value (finite, nonzero, normal in binary128) to the format.
inline double round_quad(Quad y, const Format& f, Mode mode) {
  const Uint128 bits = quad_bits(y);
  const bool negative = (bits >> 127) != 0;
  const int field = static_cast<int>((bits >> 112) & 0x7FFF);
  const Uint128 significand = (bits & ((Uint128(1) << 112) - 1)) | (Uint128(1) << 112);
  const int e = field - 16383;  // |y| = significand * 2^(e - 112)
  const int quantum = (e > f.min_exponent() ? e : f.min_exponent()) - f.mantissa_bits;
  const int drop = quantum - (e - 112);
  Uint128 q = 0;
  Uint128 rem = significand;
  Uint128 half = 0;
  bool half_exceeds = true;  // 2^(drop-1) is beyond any 113-bit remainder
  if (drop <= 0) {
    q = significand << -drop;
    rem = 0;
  } else if (drop < 128) {
    q = significand >> drop;
    rem = significand & ((Uint128(1) << drop) - 1);
    half = Uint128(1) << (drop - 1);
    half_exceeds = false;
  }
  bool up = false;
  if (mode == Mode::nearest_even) {
    up = !half_exceeds && (rem > half || (rem == half && (q & 1) != 0));
  } else if (mode == Mode::away_from_zero) {
    up = rem != 0;
  }
  if (up) ++q;
  double result = std::ldexp(static_cast<double>(static_cast<std::uint64_t>(q)), quantum);
  if (result > f.max_value()) {
    const bool to_max = f.saturate || mode == Mode::toward_zero;
    result = to_max ? f.max_value() : std::numeric_limits<double>::infinity();
  }
  return negative ? -result : result;
}

/// The correctly rounded result of an operation whose special cases (non-finite operands, exact zero) the caller
/// has already handled with hardware double arithmetic.
inline double round_exact(Quad exact, const Format& f, Mode mode) { return round_quad(exact, f, mode); }

/// Maps a hardware double result (inf, NaN, zero: exact special values) to the format's convention.
inline double special_value(double x, const Format& f) {
  if (std::isinf(x) && f.saturate) return std::copysign(f.max_value(), x);
  return x;
}

/// A uniformly random encoding of the format, decoded by the IEEE formula (NaN codes skipped).
template <class Rng>
double random_value(Rng& rng, const Format& f, bool allow_special) {
  const int total = 1 + f.exponent_bits + f.mantissa_bits;
  for (;;) {
    const std::uint64_t code = total == 64 ? rng() : rng() & ((std::uint64_t{1} << total) - 1);
    const std::uint64_t fraction = code & ((std::uint64_t{1} << f.mantissa_bits) - 1);
    const int field = static_cast<int>((code >> f.mantissa_bits) & ((1u << f.exponent_bits) - 1));
    const bool negative = ((code >> (f.exponent_bits + f.mantissa_bits)) & 1) != 0;
    const int all_ones = (1 << f.exponent_bits) - 1;
    double magnitude = 0;
    if (field == all_ones && (!f.saturate || fraction == (std::uint64_t{1} << f.mantissa_bits) - 1)) {
      if (!allow_special) continue;
      if (f.saturate || fraction != 0) return std::numeric_limits<double>::quiet_NaN();
      magnitude = std::numeric_limits<double>::infinity();
    } else if (field == 0) {
      magnitude = std::ldexp(static_cast<double>(fraction), f.min_exponent() - f.mantissa_bits);
    } else {
      magnitude = std::ldexp(1.0 + std::ldexp(static_cast<double>(fraction), -f.mantissa_bits), field - f.bias());
    }
    return negative ? -magnitude : magnitude;
  }
}

/// Runs fn() with the hardware rounding mode set; operands must reach fn through volatile variables so that the
/// compiler neither folds nor moves the arithmetic across the mode switch.
template <class Fn>
auto under_rounding_mode(int mode, Fn fn) {
  const int saved = std::fegetround();
  std::fesetround(mode);
  const auto result = fn();
  std::fesetround(saved);
  return result;
}

/// float -> bf16 with round-to-nearest-even, by integer arithmetic on the float's bits (NaN quieted).
inline float bf16_round_nearest_even(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
    u = (u | 0x00400000u) & 0xFFFF0000u;
  } else {
    u += 0x7FFFu + ((u >> 16) & 1u);  // carries into the exponent, up to infinity
    u &= 0xFFFF0000u;
  }
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

/// float -> bf16 toward zero: drop the low 16 bits.
inline float bf16_round_toward_zero(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) u |= 0x00400000u;
  u &= 0xFFFF0000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

template <class T>
auto bits_of(T x) {
  if constexpr (sizeof(T) == 2) {
    std::uint16_t u;
    std::memcpy(&u, &x, 2);
    return u;
  } else if constexpr (sizeof(T) == 4) {
    std::uint32_t u;
    std::memcpy(&u, &x, 4);
    return u;
  } else {
    std::uint64_t u;
    std::memcpy(&u, &x, 8);
    return u;
  }
}

/// Equal bits, or both NaN.
template <class T>
bool same(T a, T b) {
  if (a != a && b != b) return true;
  return bits_of(a) == bits_of(b);
}

}  // namespace reference
