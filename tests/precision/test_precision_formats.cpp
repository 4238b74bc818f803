// The formats' values: limits, encodings, enumeration in order, exhaustive rounding of tiny formats, saturation,
// signed zeros and NaN, conversions. References are hardware types, published constants and the IEEE decoding
// formula written out here.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <deltaproduct/core/error.hpp>
#include <deltaproduct/core/scalar.hpp>
#include <deltaproduct/precision/precision.hpp>

#include "reference_rounding.hpp"

using namespace deltaproduct;

static_assert(StateScalar<fp64> && StateScalar<fp32> && StateScalar<tf32> && StateScalar<bf16> &&
              StateScalar<fp16> && StateScalar<fp8_e4m3> && StateScalar<fp8_e5m2> && StateScalar<tiny_e3m2> &&
              StateScalar<tiny_e2m1> && StateScalar<q1_14> && StateScalar<q15_16> &&
              StateScalar<with_rounding<bf16, Rounding::stochastic>>);
static_assert(std::is_trivially_copyable_v<fp16> && sizeof(fp16) == sizeof(double));
static_assert(std::is_trivially_default_constructible_v<fp16>);

namespace {

/// The IEEE decoding of an encoding, written independently of the library.
double decode(std::uint64_t code, int e_bits, int m_bits, bool saturate) {
  const reference::Format f{e_bits, m_bits, saturate};
  const bool negative = ((code >> (e_bits + m_bits)) & 1) != 0;
  const auto fraction = static_cast<double>(code & ((std::uint64_t{1} << m_bits) - 1));
  const int field = static_cast<int>((code >> m_bits) & ((std::uint64_t{1} << e_bits) - 1));
  double magnitude = 0;
  if (field == (1 << e_bits) - 1 && (!saturate || fraction == std::ldexp(1.0, m_bits) - 1)) {
    magnitude = !saturate && fraction == 0 ? std::numeric_limits<double>::infinity()
                                           : std::numeric_limits<double>::quiet_NaN();
  } else if (field == 0) {
    magnitude = std::ldexp(fraction, f.min_exponent() - m_bits);
  } else {
    magnitude = std::ldexp(1.0 + std::ldexp(fraction, -m_bits), field - f.bias());
  }
  return negative ? -magnitude : magnitude;
}

template <class Format>
void check_every_encoding() {
  const bool saturate = Format::overflow == Overflow::saturate;
  for (std::uint64_t code = 0; code < (std::uint64_t{1} << Format::total_bits); ++code) {
    const double expected = decode(code, Format::exponent_bits, Format::mantissa_bits, saturate);
    const Format value = Format::from_bits(code);
    INFO("code " << code);
    if (std::isnan(expected)) {
      REQUIRE(isnan(value));
    } else {
      REQUIRE(static_cast<double>(value) == expected);
      REQUIRE(std::signbit(static_cast<double>(value)) == std::signbit(expected));
      REQUIRE(value.to_bits() == code);          // round trip of the encoding
      REQUIRE(Format(expected).to_bits() == code);  // rounding a value of the format leaves it unchanged
    }
  }
}

}  // namespace

TEST_CASE("limits of the named formats match their specifications") {
  CHECK(static_cast<float>(fp32::max()) == std::numeric_limits<float>::max());
  CHECK(static_cast<float>(fp32::min_normal()) == std::numeric_limits<float>::min());
  CHECK(static_cast<float>(fp32::denorm_min()) == std::numeric_limits<float>::denorm_min());
  CHECK(static_cast<float>(fp32::epsilon()) == std::numeric_limits<float>::epsilon());
  CHECK(static_cast<float>(fp32::lowest()) == std::numeric_limits<float>::lowest());
  CHECK(static_cast<double>(fp64::max()) == std::numeric_limits<double>::max());
  CHECK(static_cast<double>(fp64::denorm_min()) == std::numeric_limits<double>::denorm_min());
  CHECK(static_cast<double>(fp64::epsilon()) == std::numeric_limits<double>::epsilon());

  CHECK(static_cast<double>(fp16::max()) == 65504.0);
  CHECK(static_cast<double>(fp16::min_normal()) == 0x1p-14);
  CHECK(static_cast<double>(fp16::denorm_min()) == 0x1p-24);
  CHECK(static_cast<double>(fp16::epsilon()) == 0x1p-10);

  CHECK(static_cast<double>(bf16::max()) == 0x1.FEp127);  // 0x7F7F
  CHECK(static_cast<double>(bf16::min_normal()) == 0x1p-126);
  CHECK(static_cast<double>(bf16::denorm_min()) == 0x1p-133);
  CHECK(static_cast<double>(bf16::epsilon()) == 0x1p-7);

  CHECK(static_cast<double>(tf32::max()) == 0x1.FFCp127);
  CHECK(static_cast<double>(tf32::epsilon()) == 0x1p-10);
  CHECK(static_cast<double>(tf32::denorm_min()) == 0x1p-136);

  // OCP FP8: E4M3 (FN layout) and E5M2.
  CHECK(static_cast<double>(fp8_e4m3::max()) == 448.0);
  CHECK(static_cast<double>(fp8_e4m3::min_normal()) == 0x1p-6);
  CHECK(static_cast<double>(fp8_e4m3::denorm_min()) == 0x1p-9);
  CHECK(static_cast<double>(fp8_e4m3::epsilon()) == 0.125);
  CHECK(static_cast<double>(fp8_e5m2::max()) == 57344.0);
  CHECK(static_cast<double>(fp8_e5m2::min_normal()) == 0x1p-14);
  CHECK(static_cast<double>(fp8_e5m2::denorm_min()) == 0x1p-16);
  CHECK(static_cast<double>(fp8_e5m2::epsilon()) == 0.25);

  CHECK(static_cast<double>(tiny_e3m2::max()) == 14.0);
  CHECK(static_cast<double>(tiny_e3m2::min_normal()) == 0.25);
  CHECK(static_cast<double>(tiny_e3m2::denorm_min()) == 0.0625);
  CHECK(static_cast<double>(tiny_e2m1::max()) == 3.0);
  CHECK(static_cast<double>(tiny_e2m1::denorm_min()) == 0.5);
}

TEST_CASE("std::numeric_limits of the formats agree with float's and double's where they coincide") {
  using F = std::numeric_limits<fp32>;
  using H = std::numeric_limits<float>;
  CHECK(F::is_specialized);
  CHECK(F::digits == H::digits);
  CHECK(F::digits10 == H::digits10);
  CHECK(F::max_digits10 == H::max_digits10);
  CHECK(F::min_exponent == H::min_exponent);
  CHECK(F::max_exponent == H::max_exponent);
  CHECK(F::min_exponent10 == H::min_exponent10);
  CHECK(F::max_exponent10 == H::max_exponent10);
  CHECK(F::is_iec559);
  CHECK(F::has_infinity);
  CHECK(F::round_style == std::round_to_nearest);
  using D = std::numeric_limits<fp64>;
  using G = std::numeric_limits<double>;
  CHECK(D::digits10 == G::digits10);
  CHECK(D::max_digits10 == G::max_digits10);
  CHECK(D::min_exponent10 == G::min_exponent10);
  CHECK(D::max_exponent10 == G::max_exponent10);
  CHECK(D::min_exponent == G::min_exponent);
  CHECK(D::max_exponent == G::max_exponent);
  CHECK_FALSE(std::numeric_limits<fp8_e4m3>::has_infinity);
  CHECK_FALSE(std::numeric_limits<bf16>::is_iec559);
  CHECK(std::numeric_limits<with_rounding<bf16, Rounding::toward_zero>>::round_style == std::round_toward_zero);
  CHECK(std::numeric_limits<fp16>::max_exponent10 == 4);   // 65504
  CHECK(std::numeric_limits<fp16>::min_exponent10 == -4);  // 6.1e-5
}

TEST_CASE("every encoding of the small formats decodes by the IEEE formula and round-trips") {
  check_every_encoding<tiny_e2m1>();
  check_every_encoding<tiny_e3m2>();
  check_every_encoding<fp8_e4m3>();
  check_every_encoding<fp8_e5m2>();
  check_every_encoding<FloatFormat<3, 4, Overflow::saturate>>();
  check_every_encoding<fp16>();
  check_every_encoding<bf16>();
}

TEST_CASE("fp16 and bf16 encodings are _Float16's and the top half of float's") {
  for (std::uint32_t code = 0; code < 0x10000; ++code) {
    _Float16 h;
    const auto code16 = static_cast<std::uint16_t>(code);
    std::memcpy(&h, &code16, 2);
    const float hf = static_cast<float>(h);
    if (std::isnan(hf)) {
      CHECK(isnan(fp16::from_bits(code)));
    } else {
      REQUIRE(fp16(hf).to_bits() == code);
    }
    const std::uint32_t wide = code << 16;
    float bf;
    std::memcpy(&bf, &wide, 4);
    if (!std::isnan(bf)) REQUIRE(bf16(bf).to_bits() == code);
  }
  std::mt19937_64 rng(3);
  for (int i = 0; i < 100000; ++i) {
    const auto code = static_cast<std::uint32_t>(rng());
    float f;
    std::memcpy(&f, &code, 4);
    // NaNs keep their payload and are quieted, as x86's conversions do.
    REQUIRE(fp32(f).to_bits() == (std::isnan(f) ? code | 0x400000u : code));
    if (!std::isnan(f)) REQUIRE(static_cast<float>(fp32::from_bits(code)) == f);
  }
  CHECK_THROWS_AS(fp16::from_bits(0x10000), ArgumentError);
}

TEST_CASE("finite values are enumerated in increasing order, one zero, from lowest() to max()") {
  auto check = [](auto values, std::uint64_t expected_count) {
    using Format = typename decltype(values)::value_type;
    CHECK(values.size() == expected_count);
    CHECK(values.size() == Format::finite_value_count);
    CHECK(values.front() == Format::lowest());
    CHECK(values.back() == Format::max());
    bool increasing = true;
    for (std::size_t i = 1; i < values.size(); ++i) increasing = increasing && values[i - 1] < values[i];
    CHECK(increasing);
    for (std::size_t i = 0; i + 1 < values.size(); ++i) {
      REQUIRE(next_up(values[i]) == values[i + 1]);
      REQUIRE(next_down(values[i + 1]) == values[i]);
    }
  };
  check(finite_values<tiny_e2m1>(), 11);
  check(finite_values<tiny_e3m2>(), 2 * (7 * 4 - 1) + 1);
  check(finite_values<fp8_e4m3>(), 253);   // 256 codes minus two NaNs, -0 merged
  check(finite_values<fp8_e5m2>(), 247);   // 256 minus 6 NaNs and 2 infinities, -0 merged
  check(finite_values<fp16>(), 63487);
  check(finite_values<bf16>(), 65279);  // codes up to 0x7F7F, both signs, one zero
  check(finite_values<q3_12>(), 65536);
  CHECK(next_up(fp16::max()) == fp16::infinity());
  CHECK(next_up(fp8_e4m3::max()) == fp8_e4m3::max());
  CHECK(next_up(-fp16::denorm_min()) == fp16(0.0));
  CHECK(next_up(-fp16::infinity()) == fp16::lowest());
  CHECK(isnan(next_up(fp16::quiet_NaN())));
}

TEST_CASE("exhaustive rounding of tiny formats: values round-trip, midpoints go to the even neighbour") {
  auto check = [](auto values) {
    using Format = typename decltype(values)::value_type;
    using Toward = with_rounding<Format, Rounding::toward_zero>;
    for (std::size_t i = 0; i + 1 < values.size(); ++i) {
      const double lower = static_cast<double>(values[i]);
      const double upper = static_cast<double>(values[i + 1]);
      const double mid = (lower + upper) / 2;  // exact: a format value has few bits
      REQUIRE(Format(lower) == values[i]);
      const Format rounded(mid);
      INFO("between " << lower << " and " << upper);
      REQUIRE((rounded == values[i] || rounded == values[i + 1]));
      REQUIRE((rounded.to_bits() & 1) == 0);  // ties to even: the last fraction bit is 0
      REQUIRE(Format(std::nextafter(mid, -1e300)) == values[i]);
      REQUIRE(Format(std::nextafter(mid, 1e300)) == values[i + 1]);
      // Toward zero: everything strictly between goes to the neighbour nearer zero.
      const double inside = std::nextafter(upper, lower);
      REQUIRE(static_cast<double>(Toward(inside)) == (std::fabs(lower) < std::fabs(upper) ? lower : upper));
    }
  };
  check(finite_values<tiny_e2m1>());
  check(finite_values<tiny_e3m2>());
  check(finite_values<fp8_e4m3>());
  check(finite_values<fp8_e5m2>());
  check(finite_values<fp16>());
}

TEST_CASE("overflow: IEEE formats give inf (or max toward zero), saturating e4m3 gives +-448 and keeps NaN") {
  CHECK(isinf(fp16(65520.0)));                 // the midpoint above max rounds to even: 2^16, an overflow
  CHECK(static_cast<double>(fp16(65519.99)) == 65504.0);
  CHECK(static_cast<double>(with_rounding<fp16, Rounding::toward_zero>(1e10)) == 65504.0);
  CHECK(isinf(with_rounding<fp16, Rounding::toward_zero>(std::numeric_limits<double>::infinity())));
  CHECK(isinf(fp16(60000.0) + fp16(60000.0)));
  CHECK(static_cast<double>(with_rounding<fp16, Rounding::toward_zero>(60000.0) +
                            with_rounding<fp16, Rounding::toward_zero>(60000.0)) == 65504.0);

  CHECK(static_cast<double>(fp8_e4m3(464.0)) == 448.0);  // midpoint of 448 and 480 (the NaN code): even, 448
  CHECK(static_cast<double>(fp8_e4m3(470.0)) == 448.0);  // rounds to 480, which saturates
  CHECK(static_cast<double>(fp8_e4m3(1e30)) == 448.0);
  CHECK(static_cast<double>(fp8_e4m3(-1e30)) == -448.0);
  CHECK(static_cast<double>(fp8_e4m3(std::numeric_limits<double>::infinity())) == 448.0);
  CHECK(static_cast<double>(fp8_e4m3(200.0) * fp8_e4m3(200.0)) == 448.0);
  CHECK(static_cast<double>(fp8_e4m3(1.0) / fp8_e4m3(0.0)) == 448.0);
  CHECK(static_cast<double>(fp8_e4m3(-1.0) / fp8_e4m3(0.0)) == -448.0);
  CHECK(isnan(fp8_e4m3(0.0) / fp8_e4m3(0.0)));
  CHECK(fp8_e4m3::quiet_NaN().to_bits() == 0x7F);
  CHECK((-fp8_e4m3::quiet_NaN()).to_bits() == 0xFF);
  CHECK(fp8_e4m3(448.0).to_bits() == 0x7E);
  CHECK(fp8_e4m3(256.0).to_bits() == 0x78);  // the top exponent code holds finite values
  CHECK(static_cast<double>(with_rounding<fp8_e4m3, Rounding::toward_zero>(479.0)) == 448.0);
  CHECK(isnan(fp8_e4m3(std::numeric_limits<double>::quiet_NaN())));
}

TEST_CASE("signed zeros, underflow and NaN follow IEEE 754") {
  const fp16 zero(0.0), negative_zero(-0.0), one(1.0);
  CHECK(std::signbit(static_cast<double>(negative_zero + negative_zero)));
  CHECK_FALSE(std::signbit(static_cast<double>(zero + negative_zero)));
  CHECK_FALSE(std::signbit(static_cast<double>(one - one)));
  CHECK(std::signbit(static_cast<double>(negative_zero * one)));
  CHECK(std::signbit(static_cast<double>(sqrt(negative_zero))));
  CHECK(std::signbit(static_cast<double>(fp16(-1e-10))));  // underflow keeps the sign
  CHECK(negative_zero == zero);
  CHECK(isnan(sqrt(-one)));
  CHECK(isnan(fp16::infinity() - fp16::infinity()));
  CHECK(isnan(zero * fp16::infinity()));
  const fp16 nan = fp16::quiet_NaN();
  CHECK_FALSE(nan == nan);
  CHECK(nan != nan);
  CHECK_FALSE(nan < one);
  CHECK_FALSE(one < nan);
  CHECK(isnan(nan + one));
  CHECK(min(nan, one) == one);  // minNum ignores NaN
  CHECK(max(one, nan) == one);
  CHECK(abs(fp16(-2.0)) == fp16(2.0));
  CHECK(isfinite(one));
  CHECK_FALSE(isfinite(fp16::infinity()));
  CHECK(isinf(-fp16::infinity()));
  // Subnormals: fp16's smallest subnormal and the rounding of half of it (a tie, to even: 0).
  CHECK(static_cast<double>(fp16(0x1p-24)) == 0x1p-24);
  CHECK(static_cast<double>(fp16(0x1p-25)) == 0.0);
  CHECK(static_cast<double>(fp16(0x1.0000001p-25)) == 0x1p-24);
  CHECK(static_cast<double>(fp16(0x3p-25)) == 0x1p-23);  // 1.5 units: tie, to even (2 units)
}

TEST_CASE("conversions round once from any arithmetic type and from other formats") {
  // 64-bit integers beyond 2^53: one rounding of the exact integer, not two.
  const std::int64_t big = (std::int64_t{1} << 62) + (std::int64_t{1} << 38) + 1;
  CHECK(static_cast<double>(fp32(big)) == static_cast<double>(static_cast<float>(big)));  // x86 rounds once
  // 2^60 + 2^36 is the midpoint of two fp32 neighbours (ulp 2^37); + 1 must round up although double drops it.
  const std::int64_t above_tie = (std::int64_t{1} << 60) + (std::int64_t{1} << 36) + 1;
  CHECK(static_cast<double>(fp32(above_tie)) == 0x1p60 + 0x1p37);
  CHECK(static_cast<double>(fp32(static_cast<double>(above_tie))) == 0x1p60);  // double rounding would give this
  CHECK(static_cast<double>(fp32(-above_tie)) == -(0x1p60 + 0x1p37));
  CHECK(static_cast<double>(fp32(std::numeric_limits<std::uint64_t>::max())) == 0x1p64);
  CHECK(static_cast<double>(fp64(std::numeric_limits<std::int64_t>::min())) == -0x1p63);
  // long double carries 64 bits: the same tie.
  const long double wide = 0x1p60L + 0x1p36L + 1.0L;
  CHECK(static_cast<double>(fp32(wide)) == 0x1p60 + 0x1p37);
  CHECK(static_cast<double>(fp16(3)) == 3.0);
  CHECK(static_cast<double>(fp16(2049)) == 2048.0);  // tie: to even
  CHECK(static_cast<double>(fp16(2051)) == 2052.0);
  // Between formats: exact through double, one rounding.
  CHECK(static_cast<double>(fp8_e4m3(fp16(3.3))) == 3.25);
  CHECK(static_cast<double>(bf16(q7_8(1.00390625))) == 1.0);  // 1 + 2^-8 is a bf16 tie: to even
  CHECK(static_cast<float>(fp16(1.5)) == 1.5f);
  CHECK(static_cast<int>(fp16(-2.75)) == -2);
  CHECK(fp16(1.0).to_double() == 1.0);
  CHECK(convert_scalar<double>(fp16(0.5)) == 0.5);
  CHECK(convert_scalar<fp16>(0.1f) == fp16(0.1f));
  CHECK(scalar_exp(fp16(0.0)) == fp16(1.0));
  CHECK(scalar_sqrt(fp16(4.0)) == fp16(2.0));
}

TEST_CASE("arithmetic of tiny formats is exhaustively one rounding of the exact result") {
  // tiny_e3m2: every pair of finite values, + - * /, against the exact result rounded by the IEEE rule
  // (exact results are doubles here; a double lies between two format values and the nearer one wins).
  const std::vector<tiny_e3m2> values = finite_values<tiny_e3m2>();
  const reference::Format f{3, 2, false};
  for (const tiny_e3m2 a : values) {
    for (const tiny_e3m2 b : values) {
      const double x = static_cast<double>(a);
      const double y = static_cast<double>(b);
      INFO(x << " and " << y);
      if (x + y != 0) REQUIRE(static_cast<double>(a + b) == reference::round_quad(Quad(x + y), f, reference::Mode::nearest_even));
      if (x * y != 0) REQUIRE(static_cast<double>(a * b) == reference::round_quad(Quad(x * y), f, reference::Mode::nearest_even));
      if (x != 0 && y != 0) {
        REQUIRE(static_cast<double>(a / b) ==
                reference::round_quad(reference::exact_quotient(x, y), f, reference::Mode::nearest_even));
      }
    }
  }
}

TEST_CASE_TEMPLATE("fp8 arithmetic is exhaustively one rounding of the exact result, overflow included", Format,
                   fp8_e4m3, fp8_e5m2) {
  // Every pair of finite values, + - * /: products and sums past the largest value exercise the overflow rules
  // (saturation to +-448 for e4m3, inf for e5m2) on the path operation results take, which differs from that of
  // conversions. Exact results are doubles here except quotients, which the reference computes exactly.
  const std::vector<Format> values = finite_values<Format>();
  const reference::Format f{Format::exponent_bits, Format::mantissa_bits, Format::overflow == Overflow::saturate};
  const auto nearest = reference::Mode::nearest_even;
  auto same = [](double got, double want) { return got == want && std::signbit(got) == std::signbit(want); };
  std::int64_t overflowing = 0;
  for (const Format a : values) {
    for (const Format b : values) {
      const double x = static_cast<double>(a), y = static_cast<double>(b);
      INFO(x << " and " << y);
      const double sum = x + y == 0 ? static_cast<double>(a) + static_cast<double>(b)  // +-0 by IEEE's rule
                                    : reference::round_quad(Quad(x + y), f, nearest);
      REQUIRE(same(static_cast<double>(a + b), sum));
      REQUIRE(same(static_cast<double>(a - b), x - y == 0 ? x - y : reference::round_quad(Quad(x - y), f, nearest)));
      REQUIRE(same(static_cast<double>(a * b), x * y == 0 ? x * y : reference::round_quad(Quad(x * y), f, nearest)));
      if (y != 0) {
        const double q = x == 0 ? x / y : reference::round_quad(reference::exact_quotient(x, y), f, nearest);
        REQUIRE(same(static_cast<double>(a / b), q));
      }
      overflowing += std::abs(x * y) > static_cast<double>(std::numeric_limits<Format>::max()) ? 1 : 0;
    }
  }
  CHECK(overflowing > 1000);  // the overflow rules were reached
}
