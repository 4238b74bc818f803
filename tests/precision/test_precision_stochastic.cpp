// Stochastic rounding: unbiased (P(round up) equals the fractional distance to the lower neighbour, so
// E[round(x)] = x), always one of the two neighbours, reproducible from a seed, one stream per thread.
//
// Statistical bound used throughout: over N independent draws with P(up) = f, the count of ups is Binomial(N, f),
// so the sample fraction has standard error sqrt(f (1 - f) / N). Each check allows 5 standard errors plus 1/N
// (for f near 0 or 1): a correct implementation fails one check with probability below 6e-7, and there are
// fewer than 100 checks here.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include <deltaproduct/precision/precision.hpp>

#include "reference_rounding.hpp"

using namespace deltaproduct;

namespace {

/// The fraction of N roundings of `round_once()` that gave `upper`, checked against f.
template <class RoundOnce>
void check_probability(RoundOnce round_once, double lower, double upper, double f, int n) {
  int ups = 0;
  for (int i = 0; i < n; ++i) {
    const double r = round_once();
    REQUIRE((r == lower || r == upper));
    ups += r == upper ? 1 : 0;
  }
  const double observed = static_cast<double>(ups) / n;
  const double bound = 5.0 * std::sqrt(f * (1.0 - f) / n) + 1.0 / n;
  INFO("lower " << lower << " upper " << upper << " f " << f << " observed " << observed << " bound " << bound);
  CHECK(std::fabs(observed - f) <= bound);
}

/// Conversion of doubles between two neighbours lower < upper of a format, at fractions f (x - lower = f gap).
template <class Format>
void check_conversion(double lower, int n) {
  using Nearest = with_rounding<Format, Rounding::nearest_even>;
  const double upper = static_cast<double>(next_up(Nearest(lower)));
  const double gap = upper - lower;
  for (const double wanted : {0.5, 0.25, 0.1, 0.9, 1.0 / 3.0, 0.01}) {
    const double x = lower + wanted * gap;
    const double f = (x - lower) / gap;  // exact: the fraction the double x really has
    check_probability([x] { return static_cast<double>(Format(x)); }, lower, upper, f, n);
    check_probability([x] { return static_cast<double>(Format(-x)); }, -upper, -lower, 1.0 - f, n);
  }
  CHECK(static_cast<double>(Format(lower)) == lower);  // representable: no rounding
}

}  // namespace

TEST_CASE("stochastic conversion rounds up with probability equal to the fractional distance") {
  set_stochastic_rounding_seed(1);
  constexpr int n = 40000;
  using fp16_sr = with_rounding<fp16, Rounding::stochastic>;
  using bf16_sr = with_rounding<bf16, Rounding::stochastic>;
  using fp32_sr = with_rounding<fp32, Rounding::stochastic>;
  using e4m3_sr = with_rounding<fp8_e4m3, Rounding::stochastic>;
  using e3m2_sr = with_rounding<tiny_e3m2, Rounding::stochastic>;
  using wide_sr = with_rounding<FloatFormat<8, 40>, Rounding::stochastic>;
  check_conversion<fp16_sr>(1.0, n);
  check_conversion<fp16_sr>(0x1.ff8p-15, n);  // the largest subnormal and the smallest normal
  check_conversion<fp16_sr>(0x1p-24, n);      // subnormal range
  check_conversion<fp16_sr>(0.0, n);          // between 0 and denorm_min
  check_conversion<bf16_sr>(3.0, n);
  check_conversion<fp32_sr>(1.5, n);
  check_conversion<e4m3_sr>(0.375, n);
  check_conversion<e3m2_sr>(0.0625, n);
  check_conversion<wide_sr>(1.25, n);
  // 50 fraction bits: a double has 2 bits below the last bit, so every probability is a multiple of 1/4 and an
  // off-by-one in the random comparison would show as a bias of 1/4.
  check_conversion<with_rounding<FloatFormat<8, 50>, Rounding::stochastic>>(1.0, n);
  check_conversion<with_rounding<FloatFormat<8, 50>, Rounding::stochastic>>(0x1p-150, n);  // subnormal range
}

TEST_CASE("stochastic rounding of values far below the last bit keeps the exact probability") {
  set_stochastic_rounding_seed(2);
  using fp16_sr = with_rounding<fp16, Rounding::stochastic>;
  // x = 0.75 * 2^-12 * denorm_min: the rounding sees 65 bits below fp16's last bit (the split into a power-of-two
  // event and a 53-bit event); P(up) = 0.75 * 2^-12.
  const double x = 0.75 * 0x1p-12 * 0x1p-24;
  check_probability([x] { return static_cast<double>(fp16_sr(x)); }, 0.0, 0x1p-24, 0.75 * 0x1p-12, 400000);
  // Far below (P = 2^-80): never up in practice, and never anything but 0 or denorm_min.
  check_probability([] { return static_cast<double>(fp16_sr(0x1p-104)); }, 0.0, 0x1p-24, 0x1p-80, 20000);
}

TEST_CASE("stochastic arithmetic is unbiased for the exact result, including bits below double's") {
  set_stochastic_rounding_seed(3);
  constexpr int n = 40000;
  using fp64_sr = with_rounding<fp64, Rounding::stochastic>;
  using wide_sr = with_rounding<FloatFormat<8, 52>, Rounding::stochastic>;
  using fp16_sr = with_rounding<fp16, Rounding::stochastic>;
  using bf16_sr = with_rounding<bf16, Rounding::stochastic>;
  const double ulp1 = 0x1p-52;
  // 1 + 0.3 ulp: the exact sum is not a double; P(up) = 0.3 (sums go through the exact error term).
  check_probability([&] { return static_cast<double>(fp64_sr(1.0) + fp64_sr(0.3 * ulp1)); }, 1.0, 1.0 + ulp1,
                    0.3, n);
  check_probability([&] { return static_cast<double>(wide_sr(1.0) + wide_sr(0.3 * ulp1)); }, 1.0, 1.0 + ulp1,
                    0.3, n);
  // Just under a power of two, where the gap below is half as large: 1 - 0.3 * 2^-53 lies 0.7 gaps above
  // 1 - 2^-53.
  check_probability([&] { return static_cast<double>(fp64_sr(1.0) - fp64_sr(0.3 * 0x1p-53)); }, 1.0 - 0x1p-53, 1.0,
                    0.7, n);
  // Products: (1 + 3 2^-27)(1 + 5 2^-27) = 1 + 8 2^-27 + 15 2^-54 = 1 + 2^-24 + 3.75 ulp: 0.75 above.
  const double a = 1.0 + 3 * 0x1p-27;
  const double b = 1.0 + 5 * 0x1p-27;
  const double product_lower = 1.0 + 0x1p-24 + 3 * ulp1;
  check_probability([&] { return static_cast<double>(fp64_sr(a) * fp64_sr(b)); }, product_lower,
                    product_lower + ulp1, 0.75, n);
  // Quotient and square root: fractions from binary128.
  const Quad third = Quad(1) / Quad(3);
  const double third_lower = 0x1.5555555555555p-2;
  const double f_third = static_cast<double>((third - Quad(third_lower)) / Quad(0x1p-54));
  check_probability([] { return static_cast<double>(fp64_sr(1.0) / fp64_sr(3.0)); }, third_lower,
                    third_lower + 0x1p-54, f_third, n);
  const double root_lower = 0x1.6a09e667f3bccp+0;
  const double f_root = static_cast<double>((sqrtf128(Quad(2)) - Quad(root_lower)) / Quad(ulp1));
  check_probability([] { return static_cast<double>(sqrt(fp64_sr(2.0))); }, root_lower, root_lower + ulp1, f_root, n);
  // fp16: 1 + 2^-12 is a quarter of a unit above 1.
  check_probability([] { return static_cast<double>(fp16_sr(1.0) + fp16_sr(0x1p-12)); }, 1.0, 1.0 + 0x1p-10, 0.25,
                    n);
  // bf16: 1.5 * 1.0078125 = 1.51171875 = 193.5 units of 2^-7: halfway between 1.5078125 and 1.515625.
  check_probability([] { return static_cast<double>(bf16_sr(1.5) * bf16_sr(1.0078125)); }, 1.5078125, 1.515625,
                    (1.51171875 - 1.5078125) / 0x1p-7, n);
  // fma with an addend below the last bit: 1 * 1 + c in fp16, c about 0.3 units (an fp16 value).
  const double c = static_cast<double>(fp16(0.3 * 0x1p-10));
  check_probability([c] { return static_cast<double>(fma(fp16_sr(1.0), fp16_sr(1.0), fp16_sr(c))); }, 1.0,
                    1.0 + 0x1p-10, c / 0x1p-10, n);
}

TEST_CASE("stochastic results are always one of the two neighbours of the exact result") {
  set_stochastic_rounding_seed(4);
  using sr = with_rounding<bf16, Rounding::stochastic>;
  const reference::Format f{8, 7, false};
  std::mt19937_64 rng(5);
  long outside = 0;
  for (int i = 0; i < 200000; ++i) {
    const double a = reference::random_value(rng, f, false);
    const double b = reference::random_value(rng, f, false);
    if (a == 0 || b == 0 || a == -b) continue;
    const double sum = static_cast<double>(sr(a) + sr(b));
    const double product = static_cast<double>(sr(a) * sr(b));
    const double quotient = static_cast<double>(sr(a) / sr(b));
    auto between = [&](double r, Quad exact) {
      const double down = reference::round_quad(exact, f, reference::Mode::toward_zero);
      const double away = reference::round_quad(exact, f, reference::Mode::away_from_zero);
      return r == down || r == away;
    };
    if (!between(sum, reference::exact_sum(a, b))) ++outside;
    if (!between(product, reference::exact_product(a, b))) ++outside;
    if (!between(quotient, reference::exact_quotient(a, b))) ++outside;
  }
  CHECK(outside == 0);
}

TEST_CASE("stochastic overflow: beyond max rounds to inf with the fractional probability, or saturates") {
  set_stochastic_rounding_seed(6);
  using fp16_sr = with_rounding<fp16, Rounding::stochastic>;
  using e4m3_sr = with_rounding<fp8_e4m3, Rounding::stochastic>;
  // 65520 lies halfway between max (65504) and 2^16 (the next binade, beyond the range).
  check_probability([] { return static_cast<double>(fp16_sr(65520.0)); }, 65504.0,
                    std::numeric_limits<double>::infinity(), 0.5, 40000);
  for (int i = 0; i < 1000; ++i) REQUIRE(static_cast<double>(e4m3_sr(470.0)) == 448.0);
}

TEST_CASE("the same seed gives the same sequence; streams are per thread and restorable") {
  using sr = with_rounding<fp16, Rounding::stochastic>;
  auto run = [] {
    std::vector<double> out;
    for (int i = 0; i < 5000; ++i) out.push_back(static_cast<double>(sr(1.0 + (i % 97) * 0x1p-17)));
    return out;
  };
  set_stochastic_rounding_seed(42);
  const std::vector<double> first = run();
  set_stochastic_rounding_seed(42);
  CHECK(run() == first);
  set_stochastic_rounding_seed(43);
  const std::vector<double> other = run();
  int differences = 0;
  for (std::size_t i = 0; i < first.size(); ++i) differences += first[i] != other[i] ? 1 : 0;
  CHECK(differences > 500);

  // Exact roundings consume no draw; an inexact one consumes one.
  set_stochastic_rounding_seed(7);
  (void)sr(1.5);
  CHECK(stochastic_rounding_stream() == StochasticRoundingStream{7, 0});
  (void)sr(1.0 + 0x1p-12);
  CHECK(stochastic_rounding_stream() == StochasticRoundingStream{7, 1});

  // A scope seeds and then restores.
  set_stochastic_rounding_seed(42);
  const StochasticRoundingStream before = stochastic_rounding_stream();
  {
    ScopedStochasticRoundingSeed scope(99);
    CHECK(stochastic_rounding_stream() == StochasticRoundingStream{99, 0});
    (void)run();
  }
  CHECK(stochastic_rounding_stream() == before);
  CHECK(run() == first);

  // Another thread has its own stream: the same seed there gives the same sequence, and ours is untouched.
  set_stochastic_rounding_seed(42);
  std::vector<double> from_thread;
  std::thread worker([&] {
    set_stochastic_rounding_seed(42);
    from_thread = run();
  });
  worker.join();
  CHECK(from_thread == first);
  CHECK(stochastic_rounding_stream() == StochasticRoundingStream{42, 0});

  // Save and restore mid-stream.
  set_stochastic_rounding_seed(5);
  (void)run();
  const StochasticRoundingStream middle = stochastic_rounding_stream();
  const std::vector<double> continued = run();
  set_stochastic_rounding_stream(middle);
  CHECK(run() == continued);
}
