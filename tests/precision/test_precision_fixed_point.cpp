// Fixed point Q(I.F): range, saturation, and one rounding of the exact result, checked exhaustively on a tiny
// format and on random operands of a 16-bit one against a double-based reference (std::nearbyint under the
// default rounding mode for nearest-even, std::trunc toward zero; exact because the reference's quotients and
// square roots are never within double's precision of a half-integer, as noted at each use).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <deltaproduct/core/error.hpp>
#include <deltaproduct/precision/precision.hpp>

using namespace deltaproduct;

namespace {

/// Rounds t (a value in units of 2^-F, exact in double) to an integer as the format should, then saturates.
template <class Fixed>
double reference_round_units(double t) {
  const double rounded = Fixed::rounding == Rounding::nearest_even ? std::nearbyint(t) : std::trunc(t);
  const double clamped = std::fmin(std::fmax(rounded, static_cast<double>(Fixed::min_raw)),
                                   static_cast<double>(Fixed::max_raw));
  return std::ldexp(clamped, -Fixed::fraction_bits);
}

template <class Fixed>
void check_pair(Fixed a, Fixed b, long& mismatches) {
  const double x = static_cast<double>(a);
  const double y = static_cast<double>(b);
  const double unit = std::ldexp(1.0, Fixed::fraction_bits);
  // Sums, differences and products of these words are exact in double.
  if (static_cast<double>(a + b) != reference_round_units<Fixed>((x + y) * unit)) ++mismatches;
  if (static_cast<double>(a - b) != reference_round_units<Fixed>((x - y) * unit)) ++mismatches;
  if (static_cast<double>(a * b) != reference_round_units<Fixed>(x * y * unit)) ++mismatches;
  if (static_cast<double>(fma(a, b, b)) != reference_round_units<Fixed>((x * y + y) * unit)) ++mismatches;
  if (y != 0) {
    // ka 2^F / kb: unless it is exactly an integer or a half-integer, it lies at least 1/(2 |kb|) >= 2^-17 from
    // every one, while double's rounding error on values below 2^32 is below 2^-21: it cannot cross one.
    const double q = (x * unit) * unit / (y * unit);
    if (static_cast<double>(a / b) != reference_round_units<Fixed>(q)) ++mismatches;
  }
}

}  // namespace

static_assert(q1_14::max_raw == 32767 && q1_14::min_raw == -32768);

TEST_CASE("range, resolution and limits of Q(I.F)") {
  CHECK(static_cast<double>(q1_14::max()) == 2.0 - 0x1p-14);
  CHECK(static_cast<double>(q1_14::lowest()) == -2.0);
  CHECK(static_cast<double>(q1_14::resolution()) == 0x1p-14);
  CHECK(static_cast<double>(q7_8::max()) == 128.0 - 0x1p-8);
  CHECK(static_cast<double>(q15_16::lowest()) == -32768.0);
  CHECK(std::numeric_limits<q1_14>::digits == 15);
  CHECK_FALSE(std::numeric_limits<q1_14>::has_infinity);
  CHECK(static_cast<double>(std::numeric_limits<q1_14>::min()) == 0x1p-14);
  CHECK(q1_14::from_raw(-3).raw() == -3);
  CHECK(static_cast<double>(q1_14::from_raw(8192)) == 0.5);
  CHECK_THROWS_AS(q1_14::from_raw(32768), ArgumentError);
  CHECK(finite_values<FixedPoint<2, 3>>().size() == 64);
}

TEST_CASE("conversion from double rounds once and saturates") {
  using Fixed = FixedPoint<3, 4>;  // resolution 1/16, range [-8, 8 - 1/16]
  using Toward = with_rounding<Fixed, Rounding::toward_zero>;
  CHECK(static_cast<double>(Fixed(0.03125)) == 0.0);      // half a unit: tie to even (0)
  CHECK(static_cast<double>(Fixed(0.09375)) == 0.125);    // 1.5 units: tie to even (2)
  CHECK(static_cast<double>(Fixed(-0.09375)) == -0.125);
  CHECK(static_cast<double>(Fixed(0.0313)) == 0.0625);
  CHECK(static_cast<double>(Toward(-1.1)) == -1.0625);    // toward zero, not toward -inf
  CHECK(static_cast<double>(Toward(1.1)) == 1.0625);
  CHECK(static_cast<double>(Fixed(100.0)) == 8.0 - 0.0625);
  CHECK(static_cast<double>(Fixed(-100.0)) == -8.0);
  CHECK(static_cast<double>(Fixed(std::numeric_limits<double>::infinity())) == 8.0 - 0.0625);
  CHECK(static_cast<double>(Fixed(-std::numeric_limits<double>::infinity())) == -8.0);
  CHECK(static_cast<double>(Fixed(std::numeric_limits<double>::quiet_NaN())) == 0.0);
  CHECK(static_cast<double>(Fixed(7)) == 7.0);
  CHECK(static_cast<double>(Fixed(9)) == 8.0 - 0.0625);
  CHECK(static_cast<double>(Fixed(-9)) == -8.0);
  CHECK(static_cast<double>(Fixed(std::numeric_limits<std::int64_t>::min())) == -8.0);
  CHECK(static_cast<double>(Fixed(std::numeric_limits<std::uint64_t>::max())) == 8.0 - 0.0625);
  CHECK(static_cast<double>(Fixed(fp16(2.5))) == 2.5);
  CHECK(static_cast<double>(q15_16(static_cast<signed char>(-100))) == -100.0);  // narrow types, wide range
  CHECK(static_cast<double>(q15_16(static_cast<unsigned char>(200))) == 200.0);
  CHECK(static_cast<double>(q15_16(true)) == 1.0);
  CHECK(static_cast<double>(q15_16(40000)) == q15_16::max().to_double());
  CHECK(static_cast<double>(q1_14(short{-3})) == -2.0);
  // Every midpoint between consecutive values goes to the even raw value; everything else to the nearer one.
  for (std::int64_t k = Fixed::min_raw; k < Fixed::max_raw; ++k) {
    const double mid = (static_cast<double>(k) + 0.5) / 16;
    REQUIRE(Fixed(mid).raw() % 2 == 0);
    REQUIRE(Fixed(std::nextafter(mid, -1e9)).raw() == k);
    REQUIRE(Fixed(std::nextafter(mid, 1e9)).raw() == k + 1);
  }
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> wide(-10.0, 10.0);
  for (int i = 0; i < 200000; ++i) {
    const double x = wide(rng);
    REQUIRE(static_cast<double>(Fixed(x)) == reference_round_units<Fixed>(x * 16));
    REQUIRE(static_cast<double>(Toward(x)) == reference_round_units<Toward>(x * 16));
  }
}

TEST_CASE("saturation: overflow clamps to the range, x/0 to the end of x's sign, sqrt of negatives to 0") {
  const q1_14 top = q1_14::max();
  const q1_14 bottom = q1_14::lowest();
  const q1_14 one(1.0);
  CHECK(top + q1_14::resolution() == top);
  CHECK(bottom - q1_14::resolution() == bottom);
  CHECK(-bottom == top);
  CHECK(bottom * bottom == top);
  CHECK(bottom * top == bottom);
  CHECK(one / q1_14(0.0) == top);
  CHECK(-one / q1_14(0.0) == bottom);
  CHECK(q1_14(0.0) / q1_14(0.0) == q1_14(0.0));
  CHECK(sqrt(-one) == q1_14(0.0));
  CHECK(abs(bottom) == top);
  CHECK(static_cast<double>(exp(q1_14(1.0))) == top.to_double());  // e > 2 saturates
  CHECK(static_cast<double>(exp(q7_8(1.0))) == std::nearbyint(std::exp(1.0) * 256) / 256);
  CHECK(next_up(top) == top);
  CHECK(next_down(bottom) == bottom);
  CHECK(min(one, top) == one);
  CHECK(max(one, bottom) == one);
}

TEST_CASE("exhaustive: every pair of a tiny Q(2.3) format, + - * / fma, nearest-even and toward zero") {
  long mismatches = 0;
  const std::vector<FixedPoint<2, 3>> values = finite_values<FixedPoint<2, 3>>();
  for (const auto a : values) {
    for (const auto b : values) check_pair(a, b, mismatches);
  }
  const auto toward = finite_values<FixedPoint<2, 3, Rounding::toward_zero>>();
  for (const auto a : toward) {
    for (const auto b : toward) check_pair(a, b, mismatches);
  }
  CHECK(mismatches == 0);
}

TEST_CASE("random pairs of Q1.14 and Q7.8, + - * / fma, nearest-even and toward zero") {
  long mismatches = 0;
  std::mt19937_64 rng(2);
  auto random_raw = [&rng](std::int64_t lo, std::int64_t hi) {
    return lo + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(hi - lo + 1));
  };
  for (int i = 0; i < 300000; ++i) {
    check_pair(q1_14::from_raw(random_raw(q1_14::min_raw, q1_14::max_raw)),
               q1_14::from_raw(random_raw(q1_14::min_raw, q1_14::max_raw)), mismatches);
    using T = with_rounding<q7_8, Rounding::toward_zero>;
    check_pair(T::from_raw(random_raw(T::min_raw, T::max_raw)), T::from_raw(random_raw(-300, 300)), mismatches);
  }
  CHECK(mismatches == 0);
}

TEST_CASE("sqrt is the correctly rounded square root (exhaustive over Q1.14)") {
  for (std::int64_t k = 0; k <= q1_14::max_raw; ++k) {
    // sqrt(k 2^14) in units; never within double's precision of a half-integer (k 2^14 - (j + 1/2)^2 is at least
    // 1/4 in magnitude, so the root is at least 1/(8 * 2^15) from j + 1/2, far above 2^-37).
    const double units = std::sqrt(static_cast<double>(k) * 16384.0);
    REQUIRE(static_cast<double>(sqrt(q1_14::from_raw(k))) == reference_round_units<q1_14>(units));
    using T = with_rounding<q1_14, Rounding::toward_zero>;
    REQUIRE(static_cast<double>(sqrt(T::from_raw(k))) == reference_round_units<T>(units));
  }
}

TEST_CASE("stochastic fixed point is unbiased for conversion, products and quotients") {
  // Bound: 5 standard errors of a binomial fraction, sqrt(f (1 - f) / N), plus 1/N.
  using Fixed = FixedPoint<3, 4, Rounding::stochastic>;
  set_stochastic_rounding_seed(11);
  constexpr int n = 40000;
  auto check = [](auto round_once, double lower, double f) {
    int ups = 0;
    for (int i = 0; i < n; ++i) {
      const double r = round_once();
      REQUIRE((r == lower || r == lower + 0.0625));
      ups += r != lower ? 1 : 0;
    }
    const double observed = static_cast<double>(ups) / n;
    CHECK(std::fabs(observed - f) <= 5.0 * std::sqrt(f * (1 - f) / n) + 1.0 / n);
  };
  const double d = (1.0 + 0.3 / 16 - 1.0) * 16;  // the fraction of a unit the double 1 + 0.3/16 really has
  check([] { return static_cast<double>(Fixed(1.0 + 0.3 / 16)); }, 1.0, d);
  check([] { return static_cast<double>(Fixed(-1.0 - 0.3 / 16)); }, -1.0625, 1.0 - d);
  // 0.6875 * 0.3125 = 0.21484375 = 3.4375 units: 0.4375 above 3 units.
  check([] { return static_cast<double>(Fixed(0.6875) * Fixed(0.3125)); }, 0.1875, 0.4375);
  // 1 / 3 = 5.333... units: probability 1/3 up.
  check([] { return static_cast<double>(Fixed(1.0) / Fixed(3.0)); }, 0.3125, 1.0 / 3.0);
  check([] { return static_cast<double>(Fixed(-1.0) / Fixed(3.0)); }, -0.375, 2.0 / 3.0);
  // sqrt(2) = 22.627... units.
  check([] { return static_cast<double>(sqrt(Fixed(2.0))); }, 22.0 / 16, std::sqrt(2.0) * 16 - 22.0);
}
