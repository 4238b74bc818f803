// Spectral facts in exact arithmetic: Householder factors against their defining eigen-relations, the UST Prop. 1
// checks on their hypotheses (they must hold) and outside them (counterexamples must be found), the key-span block
// against the full characteristic polynomial, Cartan-Dieudonne decompositions multiplied back with reflections built
// here, permutation counts against cycles counted here, and the cube rotation group.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "deltaproduct/core/error.hpp"
#include "deltaproduct/theory/rational.hpp"
#include "deltaproduct/theory/spectral.hpp"

namespace dp = deltaproduct;
using dp::RationalHouseholderFactor;
using dp::Rational;
using dp::RationalMatrix;
using dp::RationalVector;

namespace {

// I - 2 u u^T / u^T u, written out from the definition.
RationalMatrix reflection_by_definition(const RationalVector& u) {
  const Rational scale = Rational(2) / dp::dot(u, u);
  return RationalMatrix::identity(u.size()) - scale * dp::outer_product(u, u);
}

// Number of cycles of a one-line permutation, fixed points included.
std::size_t cycle_count(const std::vector<int>& p) {
  std::vector<bool> seen(p.size(), false);
  std::size_t cycles = 0;
  for (std::size_t start = 0; start < p.size(); ++start) {
    if (seen[start]) continue;
    ++cycles;
    std::size_t x = start;
    while (!seen[x]) {
      seen[x] = true;
      x = static_cast<std::size_t>(p[x]);
    }
  }
  return cycles;
}

std::vector<std::vector<int>> all_permutations(int n) {
  std::vector<int> p(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) p[static_cast<std::size_t>(i)] = i;
  std::vector<std::vector<int>> all;
  do all.push_back(p);
  while (std::next_permutation(p.begin(), p.end()));
  return all;
}

// The product of the reflections in acting order (first acts first), multiplied out here.
RationalMatrix multiply_back(const std::vector<RationalVector>& acting_order, std::size_t n) {
  RationalMatrix product = RationalMatrix::identity(n);
  for (const RationalVector& u : acting_order) product = reflection_by_definition(u) * product;
  return product;
}

}  // namespace

TEST_CASE("A Householder factor has eigenvalue 1 - beta along its key and 1 on the complement") {
  const RationalVector key{1, -2, 2};
  const RationalVector orthogonal_1{2, 1, 0};
  const RationalVector orthogonal_2{0, 1, 1};
  for (const Rational& beta : {Rational(0), Rational(1, 3), Rational(1), Rational(2), Rational(5, 2)}) {
    const RationalMatrix h = dp::householder_matrix(key, beta);
    CHECK(h * key == RationalVector{Rational(1) - beta, -Rational(2) * (Rational(1) - beta), Rational(2) * (Rational(1) - beta)});
    CHECK(h * orthogonal_1 == orthogonal_1);
    CHECK(h * orthogonal_2 == orthogonal_2);
    CHECK(dp::is_symmetric(h));
    // The key's scale does not matter: I - beta k k^T / k^T k depends on the direction only.
    CHECK(dp::householder_matrix(RationalVector{Rational(-1, 3), Rational(2, 3), Rational(-2, 3)}, beta) == h);
  }
  const RationalMatrix reflection = dp::reflection_matrix(key);
  CHECK(reflection == reflection_by_definition(key));
  CHECK(reflection * reflection == RationalMatrix::identity(3));
  CHECK(dp::is_orthogonal(reflection));
  CHECK(dp::determinant(reflection) == Rational(-1));
  CHECK_THROWS_AS((void)dp::householder_matrix(RationalVector{0, 0}, Rational(1)), dp::ArgumentError);
  CHECK_THROWS_AS((void)dp::householder_matrix(RationalVector{}, Rational(1)), dp::ArgumentError);
  CHECK_THROWS_AS((void)dp::householder_product({}), dp::ArgumentError);
  CHECK_THROWS_AS((void)dp::householder_product({{{1, 0}, 1}, {{1, 0, 0}, 1}}), dp::ArgumentError);
}

TEST_CASE("householder_product applies the first factor first") {
  const RationalHouseholderFactor first{{1, 0}, Rational(1, 2)};
  const RationalHouseholderFactor second{{1, 1}, Rational(2)};
  const RationalMatrix product = dp::householder_product({first, second});
  CHECK(product == dp::householder_matrix(second) * dp::householder_matrix(first));
  CHECK(product != dp::householder_matrix(first) * dp::householder_matrix(second));  // they do not commute
}

TEST_CASE("spectral_norm_at_most_one decides exactly, including the boundary") {
  CHECK(dp::spectral_norm_at_most_one(RationalMatrix{{Rational(3, 5), Rational(-4, 5)}, {Rational(4, 5), Rational(3, 5)}}));
  CHECK(dp::spectral_norm_at_most_one(RationalMatrix{{1, 0}, {0, Rational(1, 2)}}));
  CHECK(dp::spectral_norm_at_most_one(RationalMatrix{{Rational(1, 2), Rational(1, 2)}, {Rational(1, 2), Rational(1, 2)}}));
  dp::PrincipalMinor negative;
  CHECK_FALSE(dp::spectral_norm_at_most_one(RationalMatrix{{1, 1}, {0, 1}}, &negative));  // norm (1 + sqrt 5) / 2
  CHECK(negative.value.is_negative());
  // Just above 1 in one direction only.
  CHECK_FALSE(dp::spectral_norm_at_most_one(RationalMatrix{{1, 0}, {0, Rational(1000001, 1000000)}}));
  // A single factor with beta = 5/2 has eigenvalue -3/2 along its key.
  CHECK_FALSE(dp::spectral_norm_at_most_one(dp::householder_matrix(RationalVector{1, 2, 0}, Rational(5, 2))));
  CHECK(dp::spectral_norm_at_most_one(dp::householder_matrix(RationalVector{1, 2, 0}, Rational(2))));
}

TEST_CASE("UST Prop. 1.1: the norm bound holds for beta in [0, 2] and fails beyond 2") {
  const dp::SpectralCheck check = dp::check_spectral_norm_bound(12345, 2000);
  CHECK(check.holds);
  CHECK(check.cases == 2000);
  CHECK(check.counterexample.empty());
  CHECK(check.statement.find("UST Prop. 1.1") != std::string::npos);
  CHECK(dp::to_string(check).rfind("holds on 2000 cases", 0) == 0);
  // Same seed, same cases.
  CHECK(dp::check_spectral_norm_bound(12345, 2000).notes == check.notes);

  const dp::SpectralExampleSearch beyond = dp::find_spectral_norm_violation(777, 500);
  CHECK(beyond.found);
  CHECK(beyond.cases == 500);
  CHECK(beyond.hits > 0);
  CHECK(beyond.hits <= beyond.cases);
  CHECK(beyond.example.find("principal minor") != std::string::npos);
  CHECK(dp::to_string(beyond).rfind("found", 0) == 0);

  CHECK(dp::check_spectral_norm_bound(1, 0).cases == 0);
  CHECK_THROWS_AS((void)dp::check_spectral_norm_bound(1, -1), dp::ArgumentError);
}

TEST_CASE("The key-span block carries the whole spectrum of a two-factor product") {
  // Two reflections whose keys meet at angle theta compose to a rotation by 2 theta in their plane.
  // keys (1, 0) and (1, 1): 45 degrees, a quarter turn: trace 0, determinant 1, eigenvalues +-i.
  const dp::KeySpanSpectrum quarter = dp::key_span_spectrum({{{1, 0}, Rational(2)}, {{1, 1}, Rational(2)}});
  CHECK(quarter.product == RationalMatrix{{0, -1}, {1, 0}});
  CHECK(quarter.span_rank == 2);
  CHECK(quarter.trace == Rational(0));
  CHECK(quarter.determinant == Rational(1));
  CHECK(quarter.discriminant == Rational(-4));
  CHECK_FALSE(quarter.real);
  CHECK_FALSE(quarter.in_unit_interval);

  // keys (1, 0, 0) and (2, 1, 0) in 3-D: cos(2 theta) = 3/5, so trace 6/5, det 1, and the third eigenvalue is 1.
  const dp::KeySpanSpectrum generic = dp::key_span_spectrum({{{1, 0, 0}, Rational(2)}, {{2, 1, 0}, Rational(2)}});
  CHECK(generic.trace == Rational(6, 5));
  CHECK(generic.determinant == Rational(1));
  CHECK_FALSE(generic.real);
  // det(x I - M) = (x - 1)(x^2 - 6/5 x + 1) = x^3 - 11/5 x^2 + 11/5 x - 1.
  CHECK(dp::characteristic_polynomial(generic.product) ==
        std::vector<Rational>{Rational(-1), Rational(11, 5), Rational(-11, 5), Rational(1)});

  // Parallel keys: a 1 x 1 block with eigenvalue (1 - beta_1)(1 - beta_2).
  const dp::KeySpanSpectrum parallel =
      dp::key_span_spectrum({{{1, 2, 0}, Rational(1, 2)}, {{-2, -4, 0}, Rational(3, 4)}});
  CHECK(parallel.span_rank == 1);
  CHECK(parallel.block == RationalMatrix{{Rational(1, 8)}});
  CHECK(parallel.in_unit_interval);

  // One beta <= 1 keeps the spectrum real: beta_1 = 1 (a projection) with a reflection.
  const dp::KeySpanSpectrum projection = dp::key_span_spectrum({{{1, 0}, Rational(1)}, {{1, 1}, Rational(2)}});
  CHECK(projection.real);
  CHECK(projection.discriminant >= Rational(0));
  // Both betas in [0, 1]: eigenvalues real in [0, 1].
  const dp::KeySpanSpectrum contraction =
      dp::key_span_spectrum({{{1, 0, 1}, Rational(3, 4)}, {{1, 1, -1}, Rational(1)}});
  CHECK(contraction.in_unit_interval);
  CHECK(dp::characteristic_polynomial(contraction.product) ==
        dp::multiply_polynomials(dp::characteristic_polynomial(contraction.block), {Rational(-1), Rational(1)}));

  CHECK_THROWS_AS((void)dp::key_span_spectrum({}), dp::ArgumentError);
  CHECK_THROWS_AS((void)dp::key_span_spectrum({{{1, 0}, 1}, {{0, 1}, 1}, {{1, 1}, 1}}), dp::ArgumentError);
  // A span that is not invariant is reported.
  CHECK_THROWS_AS((void)dp::restrict_to_invariant_subspace(RationalMatrix{{0, 1}, {1, 0}}, RationalMatrix{{1}, {0}}),
                  dp::Error);
  CHECK(dp::restrict_to_invariant_subspace(RationalMatrix{{0, 1}, {1, 0}}, RationalMatrix{{1}, {1}}) ==
        RationalMatrix{{1}});
}

TEST_CASE("UST Prop. 1.3: at most two factors with beta in [0, 1] have real eigenvalues in [0, 1]") {
  const dp::SpectralCheck check = dp::check_two_factor_real_spectrum(2024, 2000);
  CHECK(check.holds);
  CHECK(check.cases == 2000);
  CHECK(check.counterexample.empty());
  CHECK(check.statement.find("UST Prop. 1.3") != std::string::npos);
}

TEST_CASE("Two factors: non-real eigenvalues need both betas > 1, and then they occur") {
  const dp::SpectralCheck check = dp::check_nonreal_needs_both_betas_above_one(99, 40);
  CHECK(check.holds);
  CHECK(check.cases == 40 * 17 * 17);
  CHECK(check.counterexample.empty());
  CHECK(check.notes.find("non-real") != std::string::npos);
  const dp::SpectralCheck coarse = dp::check_nonreal_needs_both_betas_above_one(5, 4, 2);
  CHECK(coarse.holds);
  CHECK(coarse.cases == 4 * 5 * 5);
  CHECK_THROWS_AS((void)dp::check_nonreal_needs_both_betas_above_one(5, 4, 0), dp::ArgumentError);

  const dp::SpectralExampleSearch nonreal = dp::find_nonreal_two_factor_spectrum(31, 500);
  CHECK(nonreal.found);
  CHECK(nonreal.hits > 0);
  CHECK(nonreal.cases == 500);
  CHECK(nonreal.example.find("discriminant -") != std::string::npos);

  // The grid by hand for the quarter-turn keys (1, 0), (1, 1): every pair with a beta <= 1 is real, and a pair just
  // past the boundary, (9/8, 2), is not.
  for (std::int64_t i = 0; i <= 16; ++i)
    for (std::int64_t j = 0; j <= 16; ++j) {
      const dp::KeySpanSpectrum spectrum =
          dp::key_span_spectrum({{{1, 0}, Rational(i, 8)}, {{1, 1}, Rational(j, 8)}});
      if (i <= 8 || j <= 8) CHECK(spectrum.real);
    }
  CHECK_FALSE(dp::key_span_spectrum({{{1, 0}, Rational(9, 8)}, {{1, 1}, Rational(2)}}).real);
}

TEST_CASE("minimal_reflections of every S3 and S4 permutation is n minus its number of cycles") {
  for (int n = 1; n <= 4; ++n)
    for (const std::vector<int>& p : all_permutations(n)) {
      const std::size_t expected = static_cast<std::size_t>(n) - cycle_count(p);
      CHECK(dp::minimal_reflections_of_permutation(p) == expected);
      const RationalMatrix m = dp::rational_permutation_matrix(p);
      for (std::size_t x = 0; x < p.size(); ++x)  // M(p) e_x = e_{p(x)}
        CHECK(m(static_cast<std::size_t>(p[x]), x) == Rational(1));
      const std::vector<RationalVector> swaps = dp::decompose_into_reflections(m);
      CHECK(swaps.size() == expected);
      CHECK(multiply_back(swaps, p.size()) == m);
      for (const RationalVector& u : swaps) {
        CHECK(std::count(u.begin(), u.end(), Rational(1)) == 1);
        CHECK(std::count(u.begin(), u.end(), Rational(-1)) == 1);
        CHECK(std::count(u.begin(), u.end(), Rational(0)) == static_cast<std::ptrdiff_t>(u.size()) - 2);
      }
    }
  // A 4-cycle needs 3 swaps, a product of two disjoint swaps 2.
  CHECK(dp::minimal_reflections_of_permutation({1, 2, 3, 0}) == 3);
  CHECK(dp::minimal_reflections_of_permutation({1, 0, 3, 2}) == 2);
  for (int n = 1; n <= 5; ++n) {
    CHECK(dp::required_reflections_per_step(dp::symmetric_group_matrices(n)) == static_cast<std::size_t>(n - 1));
    const dp::SpectralCheck counts = dp::check_permutation_reflection_counts(n);
    CHECK(counts.holds);
    CHECK(counts.cases == static_cast<std::int64_t>(all_permutations(n).size()));
  }
  CHECK_THROWS_AS((void)dp::rational_permutation_matrix({0, 0}), dp::ArgumentError);
  CHECK_THROWS_AS((void)dp::rational_permutation_matrix({1, 2}), dp::ArgumentError);
  CHECK_THROWS_AS((void)dp::symmetric_group_matrices(0), dp::ArgumentError);
}

TEST_CASE("decompose_into_reflections on rational orthogonal matrices multiplies back with rank(g - I) reflections") {
  const RationalMatrix rotation_2d{{Rational(3, 5), Rational(-4, 5)}, {Rational(4, 5), Rational(3, 5)}};
  // A 3-D rotation with rational entries that is not a signed permutation.
  const RationalMatrix rotation_3d{{Rational(2, 3), Rational(-2, 3), Rational(1, 3)},
                                   {Rational(1, 3), Rational(2, 3), Rational(2, 3)},
                                   {Rational(-2, 3), Rational(-1, 3), Rational(2, 3)}};
  REQUIRE(dp::is_orthogonal(rotation_3d));
  REQUIRE(dp::determinant(rotation_3d) == Rational(1));
  const RationalMatrix minus_identity = Rational(-1) * RationalMatrix::identity(3);
  const RationalMatrix reflection = reflection_by_definition({1, 2, 2});
  const struct {
    RationalMatrix g;
    std::size_t reflections;
  } cases[] = {{rotation_2d, 2}, {rotation_3d, 2}, {minus_identity, 3}, {reflection, 1},
               {RationalMatrix::identity(4), 0}, {reflection * rotation_3d, 3}};
  for (const auto& c : cases) {
    CHECK(dp::minimal_reflections(c.g) == c.reflections);
    const std::vector<RationalVector> factors = dp::decompose_into_reflections(c.g);
    CHECK(factors.size() == c.reflections);
    CHECK(multiply_back(factors, c.g.rows()) == c.g);
    CHECK(dp::reflection_product(factors, c.g.rows()) == c.g);
  }
  CHECK_THROWS_AS((void)dp::minimal_reflections(RationalMatrix{{1, 1}, {0, 1}}), dp::ArgumentError);
  CHECK_THROWS_AS((void)dp::minimal_reflections(RationalMatrix{{1, 0, 0}, {0, 1, 0}}), dp::ArgumentError);
  CHECK_THROWS_AS((void)dp::decompose_into_reflections(RationalMatrix{{2, 0}, {0, Rational(1, 2)}}), dp::ArgumentError);

  const dp::SpectralCheck random = dp::check_reflection_decompositions(8, 2000);
  CHECK(random.holds);
  CHECK(random.cases == 2000);
  CHECK(random.counterexample.empty());
}

TEST_CASE("The cube rotation group: 24 distinct orthogonal det-1 matrices, closed, needing at most 2 reflections") {
  const std::vector<RationalMatrix> rotations = dp::cube_rotations();
  REQUIRE(rotations.size() == 24);
  CHECK(rotations[0] == RationalMatrix::identity(3));
  std::size_t rank_zero = 0;
  std::size_t rank_two = 0;
  for (std::size_t a = 0; a < rotations.size(); ++a) {
    const RationalMatrix& g = rotations[a];
    CHECK(dp::transpose(g) * g == RationalMatrix::identity(3));
    CHECK(dp::determinant(g) == Rational(1));
    for (std::size_t b = a + 1; b < rotations.size(); ++b) CHECK(g != rotations[b]);
    for (const RationalMatrix& h : rotations)
      CHECK(std::find(rotations.begin(), rotations.end(), g * h) != rotations.end());
    const std::size_t rank = dp::matrix_rank(g - RationalMatrix::identity(3));
    rank_zero += rank == 0 ? 1 : 0;
    rank_two += rank == 2 ? 1 : 0;
    const std::vector<RationalVector> factors = dp::decompose_into_reflections(g);
    CHECK(factors.size() == rank);
    CHECK(multiply_back(factors, 3) == g);
  }
  // Every rotation other than the identity moves a plane: rank(g - I) = 2 for all 23 of them.
  CHECK(rank_zero == 1);
  CHECK(rank_two == 23);
  CHECK(dp::required_reflections_per_step(rotations) == 2);
  const dp::SpectralCheck check = dp::check_cube_rotation_group();
  CHECK(check.holds);
  CHECK(check.cases == 24 + 24 * 24 + 24 * 23 / 2);
  CHECK(check.counterexample.empty());
  CHECK(dp::required_reflections_per_step({}) == 0);
  CHECK_THROWS_AS((void)dp::required_reflections_per_step({RationalMatrix{{2}}}), dp::ArgumentError);
}
