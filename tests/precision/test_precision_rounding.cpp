// Every arithmetic operation rounds once, as IEEE 754 does: checked bit for bit against independent references
// (hardware float/double/_Float16, including under std::fesetround(FE_TOWARDZERO); bf16 by integer bit tricks;
// and binary128 round-to-odd for every other format and rounding mode).
#include <doctest/doctest.h>

#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <deltaproduct/precision/precision.hpp>

#include "reference_rounding.hpp"

using namespace deltaproduct;

namespace {

// Random operand pairs against the hardware: enough to meet every rounding case many times (ties included,
// thanks to the structured operands below), few enough for a sanitizer build (about 10 s there).
constexpr int random_cases = 1'000'000;
// Per format against binary128 (software arithmetic, slower): 28 formats and rounding modes.
constexpr int binary128_cases = 50'000;

/// Counts mismatches and remembers the first one.
struct Mismatches {
  long count = 0;
  std::string first;
  template <class... Values>
  void record(const char* what, Values... values) {
    if (count++ == 0) {
      std::ostringstream out;
      out.precision(17);
      out << what << ":";
      ((out << ' ' << std::hexfloat << static_cast<double>(values)), ...);
      first = out.str();
    }
  }
};

#define REQUIRE_NO_MISMATCH(m) \
  do {                         \
    INFO((m).first);           \
    CHECK((m).count == 0);     \
  } while (false)

float float_from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
double double_from_bits(std::uint64_t u) {
  double d;
  std::memcpy(&d, &u, 8);
  return d;
}
_Float16 half_from_bits(std::uint16_t u) {
  _Float16 h;
  std::memcpy(&h, &u, 2);
  return h;
}

/// Random float operands of three kinds, in turn: any bit pattern (every exponent, subnormals, inf, NaN); values
/// near 1 with a random number of trailing zero bits (so that sums and products hit ties and exact results);
/// values in the subnormal range and just above it.
float random_float(std::mt19937_64& rng, int kind) {
  const auto r = static_cast<std::uint32_t>(rng());
  if (kind == 0) return float_from_bits(r);
  const std::uint32_t sign = r & 0x80000000u;
  std::uint32_t fraction = r & 0x7FFFFFu;
  fraction &= ~((1u << (rng() % 24)) - 1u);
  const std::uint32_t exponent = kind == 1 ? 127u - 4u + static_cast<std::uint32_t>(rng() % 9)
                                           : static_cast<std::uint32_t>(rng() % 4);
  return float_from_bits(sign | (exponent << 23) | fraction);
}

double random_double(std::mt19937_64& rng, int kind) {
  const std::uint64_t r = rng();
  if (kind == 0) return double_from_bits(r);
  const std::uint64_t sign = r & 0x8000000000000000ull;
  std::uint64_t fraction = r & 0xFFFFFFFFFFFFFull;
  fraction &= ~((std::uint64_t{1} << (rng() % 53)) - 1);
  const std::uint64_t exponent = kind == 1 ? 1023u - 4u + rng() % 9 : rng() % 4;
  return double_from_bits(sign | (exponent << 52) | fraction);
}

/// Values that exercise the edges of float: zeros, subnormals, the normal boundary, ties around 1, the top.
std::vector<float> float_edge_cases() {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float tiny = std::numeric_limits<float>::denorm_min();
  const float small = std::numeric_limits<float>::min();
  const float big = std::numeric_limits<float>::max();
  const float eps = std::numeric_limits<float>::epsilon();
  std::vector<float> base = {0.0f,      tiny,          2 * tiny,    3 * tiny,        small - tiny, small,
                             small / 2, small * 1.5f,  1.0f,        1.0f + eps,      1.0f - eps / 2,
                             eps / 2,   eps / 4,       1.5f,        3.0f,            0.1f,
                             big,       big / 2,       2.0f / eps,  0.75f * eps,     inf,
                             nan,       65504.0f,      1e-40f,      1.0f + 2 * eps,  std::sqrt(2.0f)};
  std::vector<float> all;
  for (const float v : base) {
    all.push_back(v);
    all.push_back(-v);
  }
  return all;
}

}  // namespace

TEST_CASE("fp32 + - * / sqrt fma equal hardware float bit for bit") {
  std::mt19937_64 rng(20261123);
  Mismatches add, sub, mul, div, root, fused;
  auto check = [&](float a, float b, float c) {
    const fp32 x(a), y(b), z(c);
    if (!reference::same(static_cast<float>(x + y), a + b)) add.record("a + b", a, b);
    if (!reference::same(static_cast<float>(x - y), a - b)) sub.record("a - b", a, b);
    if (!reference::same(static_cast<float>(x * y), a * b)) mul.record("a * b", a, b);
    if (!reference::same(static_cast<float>(x / y), a / b)) div.record("a / b", a, b);
    if (!reference::same(static_cast<float>(sqrt(x)), std::sqrt(a))) root.record("sqrt(a)", a);
    if (!reference::same(static_cast<float>(fma(x, y, z)), std::fma(a, b, c))) fused.record("fma(a,b,c)", a, b, c);
  };
  for (int i = 0; i < random_cases; ++i) {
    check(random_float(rng, i % 3), random_float(rng, (i / 3) % 3), random_float(rng, (i / 9) % 3));
  }
  const std::vector<float> edges = float_edge_cases();
  for (const float a : edges) {
    for (const float b : edges) {
      for (const float c : {0.0f, -0.0f, 1.0f, -1.0f, edges[3], edges[7]}) check(a, b, c);
    }
  }
  REQUIRE_NO_MISMATCH(add);
  REQUIRE_NO_MISMATCH(sub);
  REQUIRE_NO_MISMATCH(mul);
  REQUIRE_NO_MISMATCH(div);
  REQUIRE_NO_MISMATCH(root);
  REQUIRE_NO_MISMATCH(fused);
}

TEST_CASE("fp32 NaN payloads propagate as on x86 (quieted, top payload bits kept)") {
  const float payload = float_from_bits(0x7FA12345u);  // signalling NaN with a payload
  const fp32 x(payload);
  CHECK(reference::bits_of(static_cast<float>(x)) == 0x7FE12345u);
  CHECK(reference::bits_of(static_cast<float>(x + fp32(1.0f))) == reference::bits_of(payload + 1.0f));
  // Operands through volatile: a NaN the compiler folds at compile time has another sign than x86's default NaN.
  const volatile float zero = 0.0f;
  const volatile float inf = std::numeric_limits<float>::infinity();
  const fp32 invalid = fp32(zero) * fp32(inf);
  CHECK(reference::bits_of(static_cast<float>(invalid)) == reference::bits_of(zero * inf));
}

TEST_CASE("fp32 rounds doubles to float as the hardware conversion does") {
  std::mt19937_64 rng(7);
  Mismatches conversion;
  for (int i = 0; i < random_cases; ++i) {
    const double d = i % 2 == 0 ? random_double(rng, 0) : std::ldexp(random_double(rng, 1), static_cast<int>(rng() % 300) - 160);
    if (!reference::same(static_cast<float>(fp32(d)), static_cast<float>(d))) conversion.record("fp32(d)", d);
  }
  REQUIRE_NO_MISMATCH(conversion);
}

TEST_CASE("fp16 + - * / sqrt equal _Float16 bit for bit; fma equals one rounding from binary128") {
  std::mt19937_64 rng(11);
  Mismatches add, sub, mul, div, root, fused;
  auto check = [&](_Float16 a, _Float16 b, _Float16 c) {
    const fp16 x(static_cast<float>(a)), y(static_cast<float>(b)), z(static_cast<float>(c));
    auto h = [](fp16 v) { return static_cast<_Float16>(static_cast<float>(v)); };
    if (!reference::same(h(x + y), static_cast<_Float16>(a + b))) add.record("a + b", a, b);
    if (!reference::same(h(x - y), static_cast<_Float16>(a - b))) sub.record("a - b", a, b);
    if (!reference::same(h(x * y), static_cast<_Float16>(a * b))) mul.record("a * b", a, b);
    if (!reference::same(h(x / y), static_cast<_Float16>(a / b))) div.record("a / b", a, b);
    // sqrt in float then to half: double rounding is innocuous (24 >= 2 * 11 + 2).
    if (!reference::same(h(sqrt(x)), static_cast<_Float16>(std::sqrt(static_cast<float>(a))))) root.record("sqrt", a);
    // a b + c is exact in binary128 (at most 22 + 11 bits over a span below 113), then one conversion.
    const _Float16 expected_fma = static_cast<_Float16>(Quad(static_cast<double>(a)) * Quad(static_cast<double>(b)) +
                                                        Quad(static_cast<double>(c)));
    if (!reference::same(h(fma(x, y, z)), expected_fma)) fused.record("fma", a, b, c);
  };
  for (int i = 0; i < random_cases; ++i) {
    check(half_from_bits(static_cast<std::uint16_t>(rng())), half_from_bits(static_cast<std::uint16_t>(rng())),
          half_from_bits(static_cast<std::uint16_t>(rng())));
  }
  // Edge cases: every pairing of a few special codes.
  const std::uint16_t edges[] = {0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0x3C01, 0xBC00, 0x3BFF,
                                 0x1000, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x1400, 0x0200, 0x3555, 0x5BFF};
  for (const std::uint16_t a : edges) {
    for (const std::uint16_t b : edges) {
      for (const std::uint16_t c : edges) check(half_from_bits(a), half_from_bits(b), half_from_bits(c));
    }
  }
  REQUIRE_NO_MISMATCH(add);
  REQUIRE_NO_MISMATCH(sub);
  REQUIRE_NO_MISMATCH(mul);
  REQUIRE_NO_MISMATCH(div);
  REQUIRE_NO_MISMATCH(root);
  REQUIRE_NO_MISMATCH(fused);
}

TEST_CASE("fp16 rounds floats and doubles as the _Float16 conversion does") {
  Mismatches from_float;
  std::mt19937_64 rng(5);
  for (int i = 0; i < random_cases; ++i) {
    const float f = random_float(rng, i % 3 == 2 ? 0 : 1) * (i % 3 == 0 ? std::ldexp(1.0f, static_cast<int>(rng() % 40) - 20) : 1.0f);
    if (!reference::same(static_cast<_Float16>(static_cast<float>(fp16(f))), static_cast<_Float16>(f))) {
      from_float.record("fp16(f)", f);
    }
  }
  // Every midpoint between consecutive halves (exact in double) and its double neighbours.
  for (std::uint32_t code = 0; code < 0x7C00; ++code) {
    const double lower = static_cast<double>(half_from_bits(static_cast<std::uint16_t>(code)));
    const double upper = static_cast<double>(half_from_bits(static_cast<std::uint16_t>(code + 1)));
    const double mid = (lower + upper) / 2;
    for (const double d : {mid, std::nextafter(mid, 0.0), std::nextafter(mid, 1e9)}) {
      const _Float16 expected = static_cast<_Float16>(Quad(d));  // binary128 -> half: one rounding
      if (!reference::same(static_cast<_Float16>(static_cast<float>(fp16(d))), expected)) from_float.record("fp16(d)", d);
    }
  }
  REQUIRE_NO_MISMATCH(from_float);
}

TEST_CASE("bf16 equals round-to-nearest-even truncation of float, and float arithmetic then that rounding") {
  std::mt19937_64 rng(13);
  Mismatches conversion, add, sub, mul;
  for (int i = 0; i < 2 * random_cases; ++i) {
    const float f = random_float(rng, i % 3);
    if (!reference::same(static_cast<float>(bf16(f)), reference::bf16_round_nearest_even(f))) {
      conversion.record("bf16(f)", f);
    }
  }
  for (int i = 0; i < random_cases; ++i) {
    // Operands are bf16 values: float bits with the low 16 zero.
    const float a = float_from_bits(static_cast<std::uint32_t>(rng()) & 0xFFFF0000u);
    const float b = i % 2 == 0 ? float_from_bits(static_cast<std::uint32_t>(rng()) & 0xFFFF0000u)
                               : float_from_bits((reference::bits_of(a) & 0xFF800000u) ^
                                                 (static_cast<std::uint32_t>(rng()) & 0x807F0000u));
    const bf16 x(a), y(b);
    // Float arithmetic rounds once at 24 bits; rounding again at 8 is innocuous (24 >= 2 * 8 + 2).
    if (!reference::same(static_cast<float>(x + y), reference::bf16_round_nearest_even(a + b))) add.record("a+b", a, b);
    if (!reference::same(static_cast<float>(x - y), reference::bf16_round_nearest_even(a - b))) sub.record("a-b", a, b);
    if (!reference::same(static_cast<float>(x * y), reference::bf16_round_nearest_even(a * b))) mul.record("a*b", a, b);
  }
  REQUIRE_NO_MISMATCH(conversion);
  REQUIRE_NO_MISMATCH(add);
  REQUIRE_NO_MISMATCH(sub);
  REQUIRE_NO_MISMATCH(mul);
}

TEST_CASE("round toward zero equals the hardware under FE_TOWARDZERO (fp32, fp16, bf16, fp64)") {
  using fp32_rz = with_rounding<fp32, Rounding::toward_zero>;
  using fp16_rz = with_rounding<fp16, Rounding::toward_zero>;
  using bf16_rz = with_rounding<bf16, Rounding::toward_zero>;
  using fp64_rz = with_rounding<fp64, Rounding::toward_zero>;
  std::mt19937_64 rng(17);
  Mismatches f32, f16, b16, f64;
  for (int i = 0; i < random_cases / 2; ++i) {
    const volatile float a = random_float(rng, i % 3);
    const volatile float b = random_float(rng, (i / 3) % 3);
    const volatile float c = random_float(rng, (i / 9) % 3);
    struct Results {
      float sum, difference, product, quotient, root, fused;
    };
    const Results hw = reference::under_rounding_mode(FE_TOWARDZERO, [&] {
      const volatile Results r{a + b, a - b, a * b, a / b, std::sqrt(a), std::fma(a, b, c)};
      return Results{r.sum, r.difference, r.product, r.quotient, r.root, r.fused};
    });
    const fp32_rz x(a), y(b), z(c);
    if (!reference::same(static_cast<float>(x + y), hw.sum)) f32.record("a+b", a, b);
    if (!reference::same(static_cast<float>(x - y), hw.difference)) f32.record("a-b", a, b);
    if (!reference::same(static_cast<float>(x * y), hw.product)) f32.record("a*b", a, b);
    if (!reference::same(static_cast<float>(x / y), hw.quotient)) f32.record("a/b", a, b);
    if (!reference::same(static_cast<float>(sqrt(x)), hw.root)) f32.record("sqrt", a);
    if (!reference::same(static_cast<float>(fma(x, y, z)), hw.fused)) f32.record("fma", a, b, c);

    // bf16: float arithmetic toward zero, then truncation (toward zero twice is toward zero once).
    const volatile float ab = float_from_bits(reference::bits_of(static_cast<float>(a)) & 0xFFFF0000u);
    const volatile float bb = float_from_bits(reference::bits_of(static_cast<float>(b)) & 0xFFFF0000u);
    const Results hb = reference::under_rounding_mode(FE_TOWARDZERO, [&] {
      const volatile Results r{ab + bb, ab - bb, ab * bb, ab / bb, std::sqrt(ab), 0.0f};
      return Results{r.sum, r.difference, r.product, r.quotient, r.root, r.fused};
    });
    const bf16_rz xb(static_cast<float>(ab)), yb(static_cast<float>(bb));
    if (!reference::same(static_cast<float>(xb + yb), reference::bf16_round_toward_zero(hb.sum))) b16.record("+", ab, bb);
    if (!reference::same(static_cast<float>(xb - yb), reference::bf16_round_toward_zero(hb.difference))) b16.record("-", ab, bb);
    if (!reference::same(static_cast<float>(xb * yb), reference::bf16_round_toward_zero(hb.product))) b16.record("*", ab, bb);
    if (!reference::same(static_cast<float>(xb / yb), reference::bf16_round_toward_zero(hb.quotient))) b16.record("/", ab, bb);
    if (!reference::same(static_cast<float>(sqrt(xb)), reference::bf16_round_toward_zero(hb.root))) b16.record("sqrt", ab);

    // fp16: float arithmetic toward zero, then the _Float16 conversion toward zero.
    const volatile _Float16 ah = half_from_bits(static_cast<std::uint16_t>(rng()));
    const volatile _Float16 bh = half_from_bits(static_cast<std::uint16_t>(rng()));
    struct HalfResults {
      _Float16 sum, difference, product, quotient, root;
    };
    const HalfResults hh = reference::under_rounding_mode(FE_TOWARDZERO, [&] {
      const volatile HalfResults r{static_cast<_Float16>(ah + bh), static_cast<_Float16>(ah - bh),
                                   static_cast<_Float16>(ah * bh), static_cast<_Float16>(ah / bh),
                                   static_cast<_Float16>(std::sqrt(static_cast<float>(ah)))};
      return HalfResults{r.sum, r.difference, r.product, r.quotient, r.root};
    });
    const fp16_rz xh(static_cast<float>(ah)), yh(static_cast<float>(bh));
    auto h = [](fp16_rz v) { return static_cast<_Float16>(static_cast<float>(v)); };
    if (!reference::same(h(xh + yh), hh.sum)) f16.record("+", ah, bh);
    if (!reference::same(h(xh - yh), hh.difference)) f16.record("-", ah, bh);
    if (!reference::same(h(xh * yh), hh.product)) f16.record("*", ah, bh);
    if (!reference::same(h(xh / yh), hh.quotient)) f16.record("/", ah, bh);
    if (!reference::same(h(sqrt(xh)), hh.root)) f16.record("sqrt", ah);

    // fp64 (the scaled path: subnormal results, overflow to the largest finite value).
    const volatile double ad = random_double(rng, i % 3);
    const volatile double bd = random_double(rng, (i / 3) % 3);
    const volatile double cd = random_double(rng, (i / 9) % 3);
    struct DoubleResults {
      double sum, difference, product, quotient, root, fused;
    };
    const DoubleResults hd = reference::under_rounding_mode(FE_TOWARDZERO, [&] {
      const volatile DoubleResults r{ad + bd, ad - bd, ad * bd, ad / bd, std::sqrt(ad), std::fma(ad, bd, cd)};
      return DoubleResults{r.sum, r.difference, r.product, r.quotient, r.root, r.fused};
    });
    const fp64_rz xd(ad), yd(bd), zd(cd);
    if (!reference::same(static_cast<double>(xd + yd), hd.sum)) f64.record("+", ad, bd);
    if (!reference::same(static_cast<double>(xd - yd), hd.difference)) f64.record("-", ad, bd);
    if (!reference::same(static_cast<double>(xd * yd), hd.product)) f64.record("*", ad, bd);
    if (!reference::same(static_cast<double>(xd / yd), hd.quotient)) f64.record("/", ad, bd);
    if (!reference::same(static_cast<double>(sqrt(xd)), hd.root)) f64.record("sqrt", ad);
    if (!reference::same(static_cast<double>(fma(xd, yd, zd)), hd.fused)) f64.record("fma", ad, bd, cd);
  }
  REQUIRE_NO_MISMATCH(f32);
  REQUIRE_NO_MISMATCH(b16);
  REQUIRE_NO_MISMATCH(f16);
  REQUIRE_NO_MISMATCH(f64);
}

TEST_CASE("fp64 is IEEE double bit for bit") {
  std::mt19937_64 rng(19);
  Mismatches m;
  for (int i = 0; i < random_cases / 4; ++i) {
    const double a = random_double(rng, i % 3);
    const double b = random_double(rng, (i / 3) % 3);
    const double c = random_double(rng, (i / 9) % 3);
    const fp64 x(a), y(b), z(c);
    if (!reference::same(static_cast<double>(x + y), a + b)) m.record("+", a, b);
    if (!reference::same(static_cast<double>(x * y), a * b)) m.record("*", a, b);
    if (!reference::same(static_cast<double>(x / y), a / b)) m.record("/", a, b);
    if (!reference::same(static_cast<double>(sqrt(x)), std::sqrt(a))) m.record("sqrt", a);
    if (!reference::same(static_cast<double>(fma(x, y, z)), std::fma(a, b, c))) m.record("fma", a, b, c);
    if (!reference::same(static_cast<double>(exp(x)), std::exp(a))) m.record("exp", a);
  }
  REQUIRE_NO_MISMATCH(m);
}

namespace {

/// Random operand pairs and triples of a format, checked against binary128 round-to-odd then one rounding.
template <class Format>
void check_against_binary128(std::uint64_t seed, int count) {
  const reference::Format f{Format::exponent_bits, Format::mantissa_bits, Format::overflow == Overflow::saturate};
  const reference::Mode mode =
      Format::rounding == Rounding::nearest_even ? reference::Mode::nearest_even : reference::Mode::toward_zero;
  std::mt19937_64 rng(seed);
  // Operands: any encoding, or (every other draw) one whose exponent is near the other's and whose fraction has
  // trailing zeros, so that sums cancel, ties occur and products are exact.
  auto draw = [&](double near) {
    const double v = reference::random_value(rng, f, true);
    if (rng() % 2 == 0 || !std::isfinite(near) || near == 0.0 || !std::isfinite(v) || v == 0.0) return v;
    int ev = 0;
    int en = 0;
    const double mv = std::frexp(v, &ev);
    std::frexp(near, &en);
    // v's significand with its trailing bits cleared, at an exponent within 2 of near's (cancellation, ties) or
    // up to p + 4 below or above it (sums whose exact value needs more than 53 bits: double rounding's hard case),
    // then made a format value.
    // Or a significand next to a power of two (1/2 + 2^-j, 1 - 2^-j), which puts sums and products exactly on,
    // or one low bit away from, a midpoint.
    const int kept = 1 + static_cast<int>(rng() % static_cast<std::uint64_t>(f.mantissa_bits + 1));
    double significand = std::ldexp(std::trunc(std::ldexp(mv, kept)), -kept);
    if (rng() % 3 == 0) {
      const int j = 2 + static_cast<int>(rng() % static_cast<std::uint64_t>(f.mantissa_bits));
      significand = rng() % 2 == 0 ? 0.5 + std::ldexp(1.0, -j) : 1.0 - std::ldexp(1.0, -j);
      if (mv < 0) significand = -significand;
    }
    const int spread = rng() % 2 == 0 ? 2 : f.mantissa_bits + 5;
    const int shift = static_cast<int>(rng() % static_cast<std::uint64_t>(2 * spread + 1)) - spread;
    const double candidate = std::ldexp(significand, en + shift);
    if (candidate == 0.0 || !std::isfinite(candidate)) return v;
    const double rounded = reference::round_quad(Quad(candidate), f, reference::Mode::toward_zero);
    return std::isfinite(rounded) && rounded != 0.0 ? rounded : v;
  };
  Mismatches add, mul, div, root, fused, conversion;
  auto expect = [&](Quad exact) { return reference::round_exact(exact, f, mode); };
  for (int i = 0; i < count; ++i) {
    const double a = reference::random_value(rng, f, true);
    const double b = draw(a);
    const double c = draw(a * b);
    const Format x(a), y(b), z(c);
    const bool finite = std::isfinite(a) && std::isfinite(b);
    {
      const double e = !finite || a == -b ? reference::special_value(a + b, f) : expect(reference::exact_sum(a, b));
      if (!reference::same(static_cast<double>(x + y), e)) add.record("a + b", a, b);
    }
    {
      const double e = !finite || a == 0 || b == 0 ? reference::special_value(a * b, f)
                                                    : expect(reference::exact_product(a, b));
      if (!reference::same(static_cast<double>(x * y), e)) mul.record("a * b", a, b);
    }
    {
      const double e = !finite || a == 0 || b == 0 ? reference::special_value(a / b, f)
                                                    : expect(reference::exact_quotient(a, b));
      if (!reference::same(static_cast<double>(x / y), e)) div.record("a / b", a, b);
    }
    {
      const double e = !(a > 0) || std::isinf(a) ? reference::special_value(std::sqrt(a), f)
                                                  : expect(reference::exact_sqrt(a));
      if (!reference::same(static_cast<double>(sqrt(x)), e)) root.record("sqrt(a)", a);
    }
    {
      double e = 0;
      if (!finite || !std::isfinite(c) || a == 0 || b == 0) {
        e = reference::special_value(std::fma(a, b, c), f);
      } else {
        const Quad exact = reference::exact_fma(a, b, c);
        e = exact == 0 ? std::fma(a, b, c) : expect(exact);
      }
      if (!reference::same(static_cast<double>(fma(x, y, z)), e)) fused.record("fma(a, b, c)", a, b, c);
    }
    {
      // Conversion of a double with more bits than the format.
      const double d = a * (1.0 + std::ldexp(static_cast<double>(rng() >> 12), -52));
      const double e = !std::isfinite(d) || d == 0 ? reference::special_value(d, f) : expect(Quad(d));
      if (!reference::same(static_cast<double>(Format(d)), e)) conversion.record("Format(d)", d);
    }
  }
  INFO("format E=" << Format::exponent_bits << " M=" << Format::mantissa_bits
                   << " saturate=" << (Format::overflow == Overflow::saturate)
                   << " toward_zero=" << (Format::rounding == Rounding::toward_zero));
  REQUIRE_NO_MISMATCH(add);
  REQUIRE_NO_MISMATCH(mul);
  REQUIRE_NO_MISMATCH(div);
  REQUIRE_NO_MISMATCH(root);
  REQUIRE_NO_MISMATCH(fused);
  REQUIRE_NO_MISMATCH(conversion);
}

}  // namespace

TEST_CASE_TEMPLATE("every format and rounding agrees with binary128 round-to-odd then one rounding", Format,
                   tiny_e2m1, tiny_e3m2, fp8_e4m3, fp8_e5m2, FloatFormat<4, 3>, bf16, tf32, fp16, fp32,
                   FloatFormat<6, 24>, FloatFormat<8, 30>, FloatFormat<8, 45>, FloatFormat<9, 52>,
                   FloatFormat<9, 51>, FloatFormat<10, 20>, FloatFormat<10, 52>, FloatFormat<11, 40>,
                   FloatFormat<10, 12, Overflow::saturate>, with_rounding<tiny_e3m2, Rounding::toward_zero>,
                   with_rounding<fp8_e4m3, Rounding::toward_zero>, with_rounding<fp8_e5m2, Rounding::toward_zero>,
                   with_rounding<bf16, Rounding::toward_zero>, with_rounding<fp16, Rounding::toward_zero>,
                   with_rounding<FloatFormat<8, 30>, Rounding::toward_zero>,
                   with_rounding<FloatFormat<9, 52>, Rounding::toward_zero>,
                   with_rounding<FloatFormat<10, 20>, Rounding::toward_zero>,
                   with_rounding<FloatFormat<11, 40>, Rounding::toward_zero>,
                   with_rounding<fp64, Rounding::toward_zero>) {
  check_against_binary128<Format>(23 + Format::exponent_bits * 100 + Format::mantissa_bits, binary128_cases);
}

TEST_CASE("exp rounds std::exp once; overflow follows the format's rules") {
  CHECK(static_cast<double>(exp(fp16(0.0))) == 1.0);
  CHECK(static_cast<float>(exp(fp32(1.0f))) == static_cast<float>(std::exp(1.0)));
  CHECK(static_cast<double>(exp(bf16(-1.0))) == static_cast<double>(bf16(std::exp(-1.0))));
  CHECK(isinf(exp(fp16(12.0))));                                           // e^12 > 65504
  CHECK(static_cast<double>(exp(with_rounding<fp16, Rounding::toward_zero>(12.0))) == 65504.0);
  CHECK(static_cast<double>(exp(fp8_e4m3(8.0))) == 448.0);                // saturates
  CHECK(static_cast<double>(exp(with_rounding<fp64, Rounding::toward_zero>(1000.0))) ==
        std::numeric_limits<double>::max());                              // exp overflows double: still an overflow
  CHECK(static_cast<double>(exp(fp16(-20.0))) == 0.0);                    // below half of fp16's denorm_min
  CHECK(isnan(exp(fp16::quiet_NaN())));
}

TEST_CASE("array loops (which compilers vectorize at -O3) round exactly as the hardware does") {
  // Conversions and u + k * s over arrays: with -O3 and SSE4.2/AVX2/AVX-512 these loops run the branch-free
  // rounding in vector registers; the results must still match float, _Float16 and bf16 bit for bit.
  std::mt19937_64 rng(29);
  constexpr std::size_t n = 1 << 16;
  std::vector<float> in(n), k(n), s(n);
  for (std::size_t i = 0; i < n; ++i) {
    in[i] = random_float(rng, static_cast<int>(i % 3));
    k[i] = random_float(rng, 1);
    s[i] = random_float(rng, static_cast<int>((i / 3) % 3));
  }
  std::vector<fp32> f32(n), f32_axpy(n);
  std::vector<fp16> f16(n);
  std::vector<bf16> b16(n);
  std::vector<fp8_e4m3> e4m3(n);
  const fp32 scalar(0.7f);
  for (std::size_t i = 0; i < n; ++i) f32[i] = fp32(in[i]);
  for (std::size_t i = 0; i < n; ++i) f16[i] = fp16(in[i]);
  for (std::size_t i = 0; i < n; ++i) b16[i] = bf16(in[i]);
  for (std::size_t i = 0; i < n; ++i) e4m3[i] = fp8_e4m3(in[i]);
  for (std::size_t i = 0; i < n; ++i) f32_axpy[i] = f32[i] + scalar * fp32(s[i]);
  Mismatches m;
  const reference::Format e4m3_format{4, 3, true};
  for (std::size_t i = 0; i < n; ++i) {
    const float x = in[i];
    if (!reference::same(static_cast<float>(f32[i]), x)) m.record("fp32", x);
    if (!reference::same(static_cast<_Float16>(static_cast<float>(f16[i])), static_cast<_Float16>(x))) m.record("fp16", x);
    if (!reference::same(static_cast<float>(b16[i]), reference::bf16_round_nearest_even(x))) m.record("bf16", x);
    const double e = std::isnan(x) || x == 0 ? reference::special_value(static_cast<double>(x), e4m3_format)
                     : std::isinf(x)         ? std::copysign(448.0, x)
                                             : reference::round_quad(Quad(static_cast<double>(x)), e4m3_format,
                                                                     reference::Mode::nearest_even);
    if (!reference::same(static_cast<double>(e4m3[i]), e)) m.record("e4m3", x);
    // The product through a volatile: otherwise -ffp-contract=fast (GCC's default) may fuse the reference into
    // an fma when the target has one.
    const volatile float product = 0.7f * s[i];
    if (!reference::same(static_cast<float>(f32_axpy[i]), x + product)) m.record("axpy", x, s[i]);
  }
  REQUIRE_NO_MISMATCH(m);
}
