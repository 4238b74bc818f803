// Exact arithmetic: BigInteger against the compiler's 128-bit integers (an independent reference) and against
// identities with known exact answers on many-digit numbers (Fibonacci gcds, factorials, powers of two), with digit
// patterns that exercise the rare branches of long division; Rational against long double on small values and
// against exact identities; matrices against hand-computed determinants, ranks, inverses and characteristic
// polynomials.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "deltaproduct/core/error.hpp"
#include "deltaproduct/theory/rational.hpp"

namespace dp = deltaproduct;
using dp::BigInteger;
using dp::Rational;
using dp::RationalMatrix;
using dp::RationalVector;

namespace {

__extension__ typedef __int128 Int128;
__extension__ typedef unsigned __int128 UInt128;

std::string int128_text(Int128 value) {
  if (value == 0) return "0";
  const bool negative = value < 0;
  UInt128 magnitude = negative ? UInt128(0) - static_cast<UInt128>(value) : static_cast<UInt128>(value);
  std::string digits;
  while (magnitude != 0) {
    digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(magnitude % 10)));
    magnitude /= 10;
  }
  return negative ? "-" + digits : digits;
}

// Builds the BigInteger from 32-bit pieces with shifts and additions only.
BigInteger big_from_int128(Int128 value) {
  const bool negative = value < 0;
  UInt128 magnitude = negative ? UInt128(0) - static_cast<UInt128>(value) : static_cast<UInt128>(value);
  BigInteger result;
  for (int piece = 3; piece >= 0; --piece) {
    const auto digit = static_cast<std::int64_t>((magnitude >> (32 * piece)) & 0xffffffffu);
    result = result.shifted_left(32) + BigInteger(digit);
  }
  return negative ? -result : result;
}

// A random value of up to `bits` bits (sign random), digits biased toward 0, 1, 2^31 and 2^32 - 1 so that carries,
// borrows and the add-back step of long division happen often.
Int128 random_int128(std::mt19937_64& engine, int bits) {
  static const std::uint64_t patterns[] = {0, 1, 0x7fffffffu, 0x80000000u, 0xfffffffeu, 0xffffffffu};
  UInt128 magnitude = 0;
  for (int piece = 0; piece < 4; ++piece) {
    const std::uint64_t draw = engine();
    const std::uint64_t digit = (draw & 3) == 0 ? (engine() & 0xffffffffu) : patterns[(draw >> 2) % 6];
    magnitude = (magnitude << 32) | digit;
  }
  if (bits < 128) magnitude &= (UInt128(1) << bits) - 1;
  magnitude >>= (engine() % static_cast<std::uint64_t>(bits));  // spread the sizes
  const auto value = static_cast<Int128>(magnitude);
  return (engine() & 1) != 0 ? -value : value;
}

BigInteger power_of_two(std::size_t exponent) { return BigInteger(1).shifted_left(exponent); }

// A many-digit value with digit patterns as in random_int128.
BigInteger random_big(std::mt19937_64& engine, int limbs) {
  BigInteger value;
  for (int i = 0; i < limbs; ++i) {
    const std::uint64_t draw = engine();
    static const std::int64_t patterns[] = {0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff};
    const std::int64_t digit = (draw & 3) == 0 ? static_cast<std::int64_t>(engine() & 0xffffffffu) : patterns[(draw >> 2) % 6];
    value = value.shifted_left(32) + BigInteger(digit);
  }
  return (engine() & 1) != 0 ? -value : value;
}

}  // namespace

TEST_CASE("BigInteger agrees with 128-bit integers on sums, differences, products, quotients and remainders") {
  std::mt19937_64 engine(20250611);
  for (int trial = 0; trial < 20000; ++trial) {
    const Int128 a = random_int128(engine, 126);
    const Int128 b = random_int128(engine, 126);
    const BigInteger big_a = big_from_int128(a);
    const BigInteger big_b = big_from_int128(b);
    REQUIRE(big_a.to_string() == int128_text(a));
    CHECK((big_a + big_b).to_string() == int128_text(a + b));
    CHECK((big_a - big_b).to_string() == int128_text(a - b));
    CHECK((big_a < big_b) == (a < b));
    CHECK((big_a == big_b) == (a == b));
    CHECK(big_a.sign() == (a > 0) - (a < 0));
    // Products need operands of at most 63 bits each to fit the reference.
    const Int128 small_a = a >> 63;
    const Int128 small_b = b >> 64;
    CHECK((big_from_int128(small_a) * big_from_int128(small_b)).to_string() == int128_text(small_a * small_b));
    if (b != 0) {
      CHECK((big_a / big_b).to_string() == int128_text(a / b));  // C++ truncates toward zero, as BigInteger does
      CHECK((big_a % big_b).to_string() == int128_text(a % b));
    }
    if (small_b != 0) {
      CHECK((big_a / big_from_int128(small_b)).to_string() == int128_text(a / small_b));
      CHECK((big_a % big_from_int128(small_b)).to_string() == int128_text(a % small_b));
    }
  }
}

TEST_CASE("BigInteger: small-range boundaries never overflow") {
  const std::int64_t max = std::numeric_limits<std::int64_t>::max();
  const std::int64_t min = std::numeric_limits<std::int64_t>::min();
  CHECK((BigInteger(max) + BigInteger(1)).to_string() == "9223372036854775808");
  CHECK((BigInteger(min) - BigInteger(1)).to_string() == "-9223372036854775809");
  CHECK((-BigInteger(min)).to_string() == "9223372036854775808");
  CHECK(BigInteger(min).to_int64() == min);
  CHECK(BigInteger(min).fits_int64());
  CHECK((BigInteger(max) * BigInteger(max)).to_string() == "85070591730234615847396907784232501249");
  CHECK((BigInteger(min) * BigInteger(-1)).to_string() == "9223372036854775808");
  CHECK((BigInteger(min) / BigInteger(-1)).to_string() == "9223372036854775808");
  CHECK((BigInteger(max) + BigInteger(1) - BigInteger(1)).to_int64() == max);
  CHECK_FALSE((BigInteger(max) + BigInteger(1)).fits_int64());
  CHECK_THROWS_AS((void)(BigInteger(max) + BigInteger(1)).to_int64(), dp::Error);
  CHECK_THROWS_AS((void)(BigInteger(5) / BigInteger(0)), dp::ArgumentError);
  CHECK_THROWS_AS((void)(BigInteger(5) % BigInteger(0)), dp::ArgumentError);
}

TEST_CASE("BigInteger: many-digit values satisfy the division identity and known exact values") {
  CHECK(power_of_two(100).to_string() == "1267650600228229401496703205376");
  CHECK(BigInteger::parse("-1267650600228229401496703205376") == -power_of_two(100));
  CHECK(power_of_two(100).bit_length() == 101);
  CHECK(power_of_two(100).shifted_right(37) == power_of_two(63));

  BigInteger factorial(1);
  for (std::int64_t i = 2; i <= 30; ++i) factorial *= BigInteger(i);
  CHECK(factorial.to_string() == "265252859812191058636308480000000");
  for (std::int64_t i = 30; i >= 2; --i) {
    CHECK(factorial % BigInteger(i) == BigInteger(0));
    factorial /= BigInteger(i);
  }
  CHECK(factorial == BigInteger(1));

  std::mt19937_64 engine(7);
  for (int trial = 0; trial < 3000; ++trial) {
    const BigInteger a = random_big(engine, 1 + static_cast<int>(engine() % 12));
    const BigInteger b = random_big(engine, 1 + static_cast<int>(engine() % 8));
    if (b.is_zero()) continue;
    BigInteger q;
    BigInteger r;
    BigInteger::divide(a, b, q, r);
    REQUIRE(q * b + r == a);
    CHECK(r.abs() < b.abs());
    CHECK((r.is_zero() || r.sign() == a.sign()));
    CHECK((a * b) / b == a);
    CHECK((a * b) % b == BigInteger(0));
    CHECK(BigInteger::parse(a.to_string()) == a);
    CHECK((a + b) - b == a);
  }
}

TEST_CASE("BigInteger: long-division vectors whose quotient-digit estimates are too large") {
  // Digit vectors (base 2^32) from the classic long-division test set; quotient and remainder from Python's integers.
  const BigInteger u = BigInteger::parse("2596148429267432260446371920740352");  // (0, 0xfffe0000, 0, 0x8000)
  const BigInteger v = BigInteger::parse("604462910088785269096448");            // (0, 0xffff, 0x8000)
  CHECK(u / v == BigInteger(4294967294));
  CHECK(u % v == BigInteger::parse("36893488138829168640"));
  const BigInteger u2 = BigInteger::parse("170141183420855150474555134919112130560");  // (0, 0, 2^31, 2^31 - 1)
  const BigInteger v2 = BigInteger::parse("39614081257132168796771975169");            // (1, 0, 2^31)
  CHECK(u2 / v2 == BigInteger(4294967294));
  CHECK(u2 % v2 == BigInteger::parse("39614081257132168792477007874"));
}

TEST_CASE("BigInteger: gcd of Fibonacci numbers is the Fibonacci number of the gcd of the indices") {
  std::vector<BigInteger> fibonacci{BigInteger(0), BigInteger(1)};
  while (fibonacci.size() <= 400) fibonacci.push_back(fibonacci[fibonacci.size() - 1] + fibonacci[fibonacci.size() - 2]);
  CHECK(fibonacci[100].to_string() == "354224848179261915075");
  const std::size_t pairs[][2] = {{300, 200}, {400, 360}, {399, 266}, {97, 89}, {384, 256}, {0, 55}};
  for (const auto& pair : pairs) {
    const std::size_t expected = std::gcd(pair[0], pair[1]);
    CHECK(gcd(fibonacci[pair[0]], fibonacci[pair[1]]) == fibonacci[expected]);
    CHECK(gcd(-fibonacci[pair[0]], fibonacci[pair[1]]) == fibonacci[expected]);
  }
  // Common powers of two are found by the binary algorithm: F_100 and F_200 are odd and 2^4 || F_300 (the 2-adic
  // valuation of F_n is v2(n) + 2 for 6 | n), so the gcd is F_100 * 2^(4 + 70).
  CHECK(gcd(fibonacci[300].shifted_left(70), fibonacci[200].shifted_left(90)) == fibonacci[100].shifted_left(74));
  CHECK(gcd(fibonacci[200].shifted_left(70), fibonacci[100].shifted_left(90)) == fibonacci[100].shifted_left(70));
  CHECK(gcd(BigInteger(0), BigInteger(0)) == BigInteger(0));
}

TEST_CASE("Rational: reduced form, parsing and printing") {
  CHECK(Rational(6, -4).to_string() == "-3/2");
  CHECK(Rational(6, -4).denominator() == BigInteger(2));
  CHECK(Rational(0, -7) == Rational(0));
  CHECK(Rational(0, -7).denominator() == BigInteger(1));
  CHECK(Rational::parse("-6/4") == Rational(-3, 2));
  CHECK(Rational::parse("+10/5").to_string() == "2");
  CHECK(Rational::parse("17") == Rational(17));
  CHECK(Rational::parse("123456789012345678901234567890/10").to_string() == "12345678901234567890123456789");
  CHECK_THROWS_AS((void)Rational::parse("1/0"), dp::ArgumentError);
  CHECK_THROWS_AS((void)Rational::parse("1/-2"), dp::ArgumentError);
  CHECK_THROWS_AS((void)Rational::parse("1/"), dp::ArgumentError);
  CHECK_THROWS_AS((void)Rational::parse("/3"), dp::ArgumentError);
  CHECK_THROWS_AS((void)Rational::parse("1.5"), dp::ArgumentError);
  CHECK_THROWS_AS((void)Rational::parse(" 1"), dp::ArgumentError);
  CHECK_THROWS_AS((void)Rational(1, 0), dp::ArgumentError);
  CHECK_THROWS_AS((void)(Rational(1) / Rational(0)), dp::ArgumentError);
}

TEST_CASE("Rational arithmetic agrees with long double on small values") {
  std::mt19937_64 engine(99);
  auto draw = [&engine](std::int64_t low, std::int64_t high) {
    return low + static_cast<std::int64_t>(engine() % static_cast<std::uint64_t>(high - low + 1));
  };
  for (int trial = 0; trial < 20000; ++trial) {
    const std::int64_t p1 = draw(-60, 60), q1 = draw(1, 60), p2 = draw(-60, 60), q2 = draw(1, 60);
    const Rational x(p1, q1);
    const Rational y(p2, q2);
    const long double lx = static_cast<long double>(p1) / static_cast<long double>(q1);
    const long double ly = static_cast<long double>(p2) / static_cast<long double>(q2);
    const auto close = [](const Rational& exact, long double reference) {
      return std::fabs(static_cast<long double>(exact.to_double()) - reference) <= 1e-12L * (1 + std::fabs(reference));
    };
    CHECK(close(x + y, lx + ly));
    CHECK(close(x - y, lx - ly));
    CHECK(close(x * y, lx * ly));
    if (p2 != 0) CHECK(close(x / y, lx / ly));
    // Distinct values differ by at least 1/3600, far above long double rounding: the orderings must agree.
    CHECK((x < y) == (lx < ly));
    CHECK((x == y) == (p1 * q2 == p2 * q1));
    CHECK((x + y).denominator() > BigInteger(0));
    CHECK(gcd((x * y).numerator(), (x * y).denominator()) == BigInteger(1));
  }
}

TEST_CASE("Rational: exact identities") {
  Rational harmonic;
  for (std::int64_t k = 1; k <= 20; ++k) harmonic += Rational(1, k);
  CHECK(harmonic == Rational(55835135, 15519504));

  std::mt19937_64 engine(3);
  for (int trial = 0; trial < 2000; ++trial) {
    auto draw = [&engine] {
      return Rational(static_cast<std::int64_t>(engine() % 2001) - 1000, 1 + static_cast<std::int64_t>(engine() % 1000));
    };
    const Rational a = draw(), b = draw(), c = draw();
    CHECK(a * (b + c) == a * b + a * c);
    CHECK((a + b) - b == a);
    if (!b.is_zero()) CHECK((a / b) * b == a);
    CHECK(-(a - b) == b - a);
    CHECK(((a < b) || (a == b) || (b < a)));
  }

  // Growth beyond 64 bits stays exact: (41/40)^40 = 41^40 / 40^40 (values from Python's integers).
  Rational power(1);
  for (int i = 0; i < 40; ++i) power *= Rational(41, 40);
  CHECK(power.numerator().to_string() == "32460430015431999968619493682032835511850959272235390105491169601");
  CHECK(power.denominator().to_string() == "12089258196146291747061760000000000000000000000000000000000000000");
  for (int i = 0; i < 40; ++i) power /= Rational(41, 40);
  CHECK(power == Rational(1));
}

TEST_CASE("Rational::to_double scales huge numerators and denominators") {
  BigInteger three_500(1);
  for (int i = 0; i < 500; ++i) three_500 *= BigInteger(3);
  const double tiny = Rational(BigInteger(1), three_500).to_double();
  CHECK(std::fabs(tiny / std::pow(3.0, -500) - 1.0) < 1e-12);
  const double near_two = Rational(power_of_two(1000) + BigInteger(1), power_of_two(999)).to_double();
  CHECK(near_two == 2.0);
  CHECK(Rational(-1, 3).to_double() == -1.0 / 3.0);
  CHECK(static_cast<double>(Rational(7, 2)) == 3.5);
}

TEST_CASE("RationalMatrix: determinant, rank and inverse of hand-written matrices") {
  const RationalMatrix singular{{2, 0, 1}, {1, 3, 2}, {1, 1, 1}};  // 2(3 - 2) + 1(1 - 3) = 0
  CHECK(dp::determinant(singular) == Rational(0));
  CHECK(dp::matrix_rank(singular) == 2);
  CHECK_THROWS_AS((void)dp::inverse(singular), dp::ArgumentError);

  const RationalMatrix swapped{{0, 1}, {1, 0}};
  CHECK(dp::determinant(swapped) == Rational(-1));  // one row exchange
  CHECK(dp::determinant(RationalMatrix{{0, 0, 3}, {0, 2, 0}, {5, 0, 0}}) == Rational(-30));

  RationalMatrix hilbert(4, 4);
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < 4; ++j) hilbert(i, j) = Rational(1, static_cast<std::int64_t>(i + j + 1));
  CHECK(dp::determinant(hilbert) == Rational(1, 6048000));
  const RationalMatrix hilbert_inverse{
      {16, -120, 240, -140}, {-120, 1200, -2700, 1680}, {240, -2700, 6480, -4200}, {-140, 1680, -4200, 2800}};
  CHECK(dp::inverse(hilbert) == hilbert_inverse);
  CHECK(hilbert * hilbert_inverse == RationalMatrix::identity(4));

  // Vandermonde: det = prod_{i < j} (x_j - x_i).
  const std::vector<Rational> points{Rational(-2), Rational(1, 3), Rational(5, 2), Rational(7)};
  RationalMatrix vandermonde(4, 4);
  Rational expected(1);
  for (std::size_t i = 0; i < 4; ++i) {
    Rational power(1);
    for (std::size_t j = 0; j < 4; ++j, power *= points[i]) vandermonde(i, j) = power;
    for (std::size_t j = i + 1; j < 4; ++j) expected *= points[j] - points[i];
  }
  CHECK(dp::determinant(vandermonde) == expected);

  CHECK(dp::matrix_rank(RationalMatrix(3, 5)) == 0);
  CHECK(dp::matrix_rank(RationalMatrix{{1, 2, 3, 4}, {2, 4, 6, 8}, {0, 0, 1, 1}}) == 2);
  CHECK(dp::matrix_rank(RationalMatrix{{1, 0}, {0, 1}, {1, 1}}) == 2);
  CHECK(dp::matrix_rank(RationalMatrix{{0, 0, 0}, {0, 0, 1}}) == 1);
  CHECK_THROWS_AS((void)dp::determinant(RationalMatrix(2, 3)), dp::ArgumentError);
  CHECK_THROWS_AS((void)(RationalMatrix(2, 3) * RationalMatrix(2, 3)), dp::ArgumentError);
  CHECK_THROWS_AS((RationalMatrix{{1, 2}, {3}}), dp::ArgumentError);
}

TEST_CASE("RationalMatrix: determinant is multiplicative and the characteristic polynomial annihilates") {
  std::mt19937_64 engine(11);
  for (int trial = 0; trial < 60; ++trial) {
    const std::size_t n = 1 + engine() % 4;
    RationalMatrix a(n, n);
    RationalMatrix b(n, n);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) {
        a(i, j) = Rational(static_cast<std::int64_t>(engine() % 7) - 3, 1 + static_cast<std::int64_t>(engine() % 3));
        b(i, j) = Rational(static_cast<std::int64_t>(engine() % 5) - 2);
      }
    CHECK(dp::determinant(a * b) == dp::determinant(a) * dp::determinant(b));
    CHECK(dp::determinant(dp::transpose(a)) == dp::determinant(a));
    const std::vector<Rational> p = dp::characteristic_polynomial(a);
    REQUIRE(p.size() == n + 1);
    CHECK(p[n] == Rational(1));
    CHECK(p[n - 1] == -dp::trace(a));
    CHECK(p[0] == (n % 2 == 0 ? dp::determinant(a) : -dp::determinant(a)));
    // Cayley-Hamilton: sum_k p_k a^k = 0.
    RationalMatrix sum(n, n);
    RationalMatrix power = RationalMatrix::identity(n);
    for (std::size_t k = 0; k <= n; ++k, power = power * a) sum = sum + p[k] * power;
    CHECK(sum == RationalMatrix(n, n));
    // det(x I - a) at a few x.
    for (std::int64_t x = -2; x <= 2; ++x)
      CHECK(dp::evaluate_polynomial(p, Rational(x)) ==
            dp::determinant(Rational(x) * RationalMatrix::identity(n) - a));
    if (dp::determinant(a) != Rational(0)) CHECK(a * dp::inverse(a) == RationalMatrix::identity(n));
  }
  // The companion matrix of x^3 - 2x^2 + x/2 - 5 has exactly that characteristic polynomial.
  const RationalMatrix companion{{0, 0, 5}, {1, 0, Rational(-1, 2)}, {0, 1, 2}};
  CHECK(dp::characteristic_polynomial(companion) ==
        std::vector<Rational>{Rational(-5), Rational(1, 2), Rational(-2), Rational(1)});
  CHECK(dp::multiply_polynomials({Rational(-1), Rational(1)}, {Rational(1), Rational(1)}) ==
        std::vector<Rational>{Rational(-1), Rational(0), Rational(1)});
}

TEST_CASE("Principal minors and positive semidefiniteness") {
  const RationalMatrix m{{2, 1, 0}, {1, 3, 1}, {0, 1, 4}};
  const std::vector<dp::PrincipalMinor> minors = dp::principal_minors(m);
  REQUIRE(minors.size() == 7);
  // Minor k has index-set mask k + 1.
  CHECK(minors[0].value == Rational(2));   // {0}
  CHECK(minors[1].value == Rational(3));   // {1}
  CHECK(minors[2].value == Rational(5));   // {0, 1}: 6 - 1
  CHECK(minors[3].value == Rational(4));   // {2}
  CHECK(minors[3].indices == std::vector<std::size_t>{2});
  CHECK(minors[4].value == Rational(8));   // {0, 2}
  CHECK(minors[5].value == Rational(11));  // {1, 2}: 12 - 1
  CHECK(minors[5].indices == std::vector<std::size_t>{1, 2});
  CHECK(minors[6].value == Rational(18));  // all: 2 * 11 - 1 * 4
  CHECK(dp::is_positive_semidefinite(m));

  // Leading minors 0, 0 but not PSD: only the full set of principal minors decides.
  dp::PrincipalMinor negative;
  CHECK_FALSE(dp::is_positive_semidefinite(RationalMatrix{{0, 0}, {0, -1}}, &negative));
  CHECK(negative.indices == std::vector<std::size_t>{1});
  CHECK(negative.value == Rational(-1));
  CHECK(dp::is_positive_semidefinite(RationalMatrix{{1, 1}, {1, 1}}));       // singular PSD
  CHECK_FALSE(dp::is_positive_semidefinite(RationalMatrix{{1, 2}, {2, 1}}));  // eigenvalue -1
  CHECK_THROWS_AS((void)dp::is_positive_semidefinite(RationalMatrix{{1, 2}, {0, 1}}), dp::ArgumentError);
  CHECK(dp::dot(RationalVector{1, Rational(1, 2)}, RationalVector{2, 4}) == Rational(4));
  CHECK(dp::to_string(RationalVector{1, Rational(-1, 2)}) == "(1, -1/2)");
  CHECK(RationalMatrix{{1, 0}, {0, Rational(1, 2)}}.to_string() == "[[1, 0], [0, 1/2]]");
}
