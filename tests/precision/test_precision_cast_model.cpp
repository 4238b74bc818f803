// The papers' cast model (UST Thms 1, 2): nearest element of a finite set, ties to the SMALLER element,
// saturation at both ends; exact sums cast once. Ties are checked where the midpoint is not a double, against an
// exact binary128 reference.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <deltaproduct/core/error.hpp>
#include <deltaproduct/precision/precision.hpp>

#include "reference_rounding.hpp"

using namespace deltaproduct;

TEST_CASE("cast: nearest element, ties to the smaller, saturation at both ends") {
  const CastModel model({3.0, 0.0, 1.0, 1.0, -0.0});
  CHECK(model.values() == std::vector<double>{0.0, 1.0, 3.0});  // sorted, duplicates and -0 merged
  CHECK(model.cast(0.5) == 0.0);   // tie: the smaller
  CHECK(model.cast(2.0) == 1.0);   // tie: the smaller
  CHECK(model.cast(std::nextafter(2.0, 3.0)) == 3.0);
  CHECK(model.cast(std::nextafter(0.5, 0.0)) == 0.0);
  CHECK(model.cast(std::nextafter(0.5, 1.0)) == 1.0);
  CHECK(model.cast(1.0) == 1.0);
  CHECK(model.cast(-5.0) == 0.0);  // saturation
  CHECK(model.cast(10.0) == 3.0);
  CHECK(model.cast(std::numeric_limits<double>::infinity()) == 3.0);
  CHECK(model.cast(-std::numeric_limits<double>::infinity()) == 0.0);
  CHECK(model.cast_index(2.5) == 2);
  CHECK(model.contains(3.0));
  CHECK_FALSE(model.contains(2.0));
  CHECK(model.lowest() == 0.0);
  CHECK(model.highest() == 3.0);
  CHECK_THROWS_AS((void)model.cast(std::numeric_limits<double>::quiet_NaN()), ArgumentError);
  CHECK_THROWS_AS(CastModel(std::vector<double>{}), ArgumentError);
  CHECK_THROWS_AS(CastModel({1.0, std::numeric_limits<double>::infinity()}), ArgumentError);
  CHECK_THROWS_AS(CastModel({std::numeric_limits<double>::quiet_NaN()}), ArgumentError);
  const CastModel single({2.0});
  CHECK(single.cast(-1e300) == 2.0);
  CHECK(single.cast(1e300) == 2.0);
}

TEST_CASE("ties are exact even when the midpoint is not a double") {
  // Random neighbours a < b and doubles x around the rounded midpoint; the reference compares x - a with b - x in
  // binary128 (exact: the three doubles span fewer than 113 bits).
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> unit(0.5, 1.0);
  long mismatches = 0;
  for (int i = 0; i < 100000; ++i) {
    const double a = std::ldexp(unit(rng), static_cast<int>(rng() % 40) - 20) * (rng() % 2 == 0 ? 1 : -1);
    const double b = a + std::ldexp(unit(rng), static_cast<int>(rng() % 40) - 20);
    if (!(a < b)) continue;
    const CastModel model({a, b});
    double x = a / 2 + b / 2;
    for (int step = 0; step < 3; ++step) x = std::nextafter(x, -1e300);
    for (int step = 0; step < 7; ++step, x = std::nextafter(x, 1e300)) {
      if (!(a < x && x < b)) continue;
      const Quad below = Quad(x) - Quad(a);
      const Quad above = Quad(b) - Quad(x);
      const double expected = above < below ? b : a;  // ties (equal) go to a, the smaller
      if (model.cast(x) != expected) ++mismatches;
    }
  }
  CHECK(mismatches == 0);
  // An explicit case: a = 1 + 2^-52 and b = 4 have midpoint 2.5 + 2^-53, not a double. 2.5 is closer to a.
  const CastModel model({1.0 + 0x1p-52, 4.0});
  CHECK(model.cast(2.5) == 1.0 + 0x1p-52);
  CHECK(model.cast(2.5 + 0x1p-51) == 4.0);
  // Huge spans: differences that overflow double.
  const CastModel huge({-std::numeric_limits<double>::max(), std::numeric_limits<double>::max()});
  CHECK(huge.cast(0.0) == -std::numeric_limits<double>::max());  // an exact tie
  CHECK(huge.cast(0x1p-1074) == std::numeric_limits<double>::max());
  CHECK(huge.cast(-1e300) == -std::numeric_limits<double>::max());
}

TEST_CASE("the cast model of a format has its finite values; midpoints go to the smaller, unlike nearest-even") {
  const CastModel model = CastModel::of_format<fp8_e4m3>();
  CHECK(model.size() == 253);
  CHECK(model.highest() == 448.0);
  CHECK(model.lowest() == -448.0);
  CHECK(model.cast(1e6) == 448.0);
  int differ_from_nearest_even = 0;
  const std::vector<double>& v = model.values();
  for (std::size_t i = 0; i + 1 < v.size(); ++i) {
    REQUIRE(model.cast(v[i]) == v[i]);
    const double mid = (v[i] + v[i + 1]) / 2;
    REQUIRE(model.cast(mid) == v[i]);
    differ_from_nearest_even += static_cast<double>(fp8_e4m3(mid)) != v[i] ? 1 : 0;
  }
  CHECK(differ_from_nearest_even > 100);  // about half the midpoints
  CHECK(CastModel::of_format<FixedPoint<2, 3>>().size() == 64);
  CHECK(CastModel::of_format<tiny_e2m1>().values() ==
        std::vector<double>{-3, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 3});
}

TEST_CASE("exact sums: no rounding before the cast") {
  ExactSum sum;
  sum.add(1e100);
  sum.add(1.0);
  sum.add(-1e100);
  CHECK(sum.sign() == 1);
  CHECK(sum.compare(1.0) == 0);
  CHECK(sum.approximate() == 1.0);
  sum.add(0x1p-200);
  CHECK(sum.compare(1.0) == 1);

  const CastModel model({0.0, 1.0, 3.0});
  auto cast_of = [&model](std::vector<double> terms) { return model.cast_sum(terms); };
  CHECK(cast_of({0.25, 0.25}) == 0.0);                       // exactly 0.5: a tie, to the smaller
  CHECK(cast_of({0.5, 0x1p-1000}) == 1.0);                   // just above the tie
  CHECK(cast_of({0.5, -0x1p-1000}) == 0.0);
  CHECK(cast_of({1e300, 2.0, -1e300}) == 1.0);               // 2: a tie between 1 and 3, to the smaller
  CHECK(cast_of({1e300, 2.0, 0x1p-900, -1e300}) == 3.0);
  CHECK(cast_of({-7.0}) == 0.0);
  CHECK(cast_of({100.0, 100.0}) == 3.0);
  CHECK(cast_of({}) == 0.0);

  // Products taken exactly: (1 + 2^-30)^2 = 1 + 2^-29 + 2^-60, above 1 + 2^-29 (which double would give).
  ExactSum square;
  square.add_product(1.0 + 0x1p-30, 1.0 + 0x1p-30);
  CHECK(square.compare(1.0 + 0x1p-29) == 1);
  const CastModel pair({1.0, 1.0 + 0x1p-28});
  CHECK(pair.cast(1.0 + 0x1p-29) == 1.0);     // the double: a tie, to the smaller
  CHECK(pair.cast(square) == 1.0 + 0x1p-28);  // the exact value: above the tie
  ExactSum cancelled;
  cancelled.add_product(3.0, 0.1);
  cancelled.add_product(-0.1, 3.0);
  CHECK(cancelled.sign() == 0);
  CHECK_THROWS_AS(square.add(std::numeric_limits<double>::infinity()), ArgumentError);
  CHECK_THROWS_AS(square.add_product(0x1p-600, 0x1p-600), ArgumentError);  // the error term would underflow
}
