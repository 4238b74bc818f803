// Finite groups: indexing as in the reference data, group axioms, orders, products checked against permutation
// arithmetic written here independently (std::next_permutation for the lexicographic order, cycle counting for
// parity), direct-product folding, and the faithful permutation representations.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "deltaproduct/groups/finite_group.hpp"
#include "deltaproduct/groups/permutation.hpp"
#include "deltaproduct/groups/random.hpp"
#include "support/permutations.hpp"

namespace dp = deltaproduct;
using dp::FiniteGroup;
using dp::GroupElement;
using dp::GroupKind;

namespace {

using Perm = std::vector<int>;

using reference::lexicographic_permutations;

// (p * q)(x) = p(q(x)).
Perm compose(const Perm& p, const Perm& q) {
  Perm r(p.size());
  for (std::size_t x = 0; x < p.size(); ++x) r[x] = p[static_cast<std::size_t>(q[x])];
  return r;
}

// Even iff n minus the number of cycles is even (independent of the library's inversion count).
bool is_even(const Perm& p) {
  std::vector<bool> seen(p.size(), false);
  std::size_t cycles = 0;
  for (std::size_t s = 0; s < p.size(); ++s) {
    if (seen[s]) continue;
    ++cycles;
    for (std::size_t x = s; !seen[x]; x = static_cast<std::size_t>(p[x])) seen[x] = true;
  }
  return (p.size() - cycles) % 2 == 0;
}

GroupElement index_in(const std::vector<Perm>& list, const Perm& p) {
  const auto it = std::find(list.begin(), list.end(), p);
  REQUIRE(it != list.end());
  return static_cast<GroupElement>(it - list.begin());
}

std::string one_based(const Perm& p) {
  std::string s;
  for (int x : p) s += std::to_string(x + 1);
  return s;
}

std::vector<FiniteGroup> sample_groups() {
  return {FiniteGroup::symmetric(1),     FiniteGroup::symmetric(2),
          FiniteGroup::symmetric(3),     FiniteGroup::symmetric(4),
          FiniteGroup::symmetric(5),     FiniteGroup::alternating(1),
          FiniteGroup::alternating(2),   FiniteGroup::alternating(3),
          FiniteGroup::alternating(4),   FiniteGroup::alternating(5),
          FiniteGroup::cyclic(1),        FiniteGroup::cyclic(2),
          FiniteGroup::cyclic(5),        FiniteGroup::cyclic(12),
          FiniteGroup::cyclic(60),       FiniteGroup::parity(),
          FiniteGroup::dihedral(1),      FiniteGroup::dihedral(2),
          FiniteGroup::dihedral(3),      FiniteGroup::dihedral(4),
          FiniteGroup::dihedral(5),      FiniteGroup::dihedral(12),
          FiniteGroup::parse("S3_x_Z2"), FiniteGroup::parse("Z2_x_Z2_x_Z3"),
          FiniteGroup::parse("D3_x_Z4"), FiniteGroup::parse("A4_x_Z5"),
          FiniteGroup::parse("A5_x_Z2"), FiniteGroup::parse("parity_x_D4_x_S3")};
}

std::vector<FiniteGroup> larger_groups() {
  return {FiniteGroup::symmetric(6),    FiniteGroup::symmetric(7),   FiniteGroup::symmetric(8),
          FiniteGroup::symmetric(12),   FiniteGroup::alternating(6), FiniteGroup::alternating(9),
          FiniteGroup::cyclic(1000003), FiniteGroup::dihedral(1001), FiniteGroup::parse("A5_x_Z3_x_S4")};
}

}  // namespace

TEST_CASE("S3 element indices are the reference table 0:123 1:132 2:213 3:231 4:312 5:321") {
  const FiniteGroup s3 = FiniteGroup::symmetric(3);
  const std::vector<std::string> expected = {"123", "132", "213", "231", "312", "321"};
  REQUIRE(s3.order() == 6);
  for (GroupElement g = 0; g < 6; ++g) {
    CHECK(one_based(s3.permutation(g)) == expected[static_cast<std::size_t>(g)]);
    CHECK(s3.element_of(s3.permutation(g)) == g);
  }
  CHECK(s3.name() == "S3");
  // 132 * 213: (p*q)(x) = p(q(x)) gives 312, index 4; the other order gives 231, index 3.
  CHECK(s3.multiply(1, 2) == 4);
  CHECK(s3.multiply(2, 1) == 3);
}

TEST_CASE("S_n indices are the lexicographic order of one-line permutations") {
  for (int n = 1; n <= 6; ++n) {
    const FiniteGroup s = FiniteGroup::symmetric(n);
    const std::vector<Perm> all = lexicographic_permutations(n);
    REQUIRE(s.order() == static_cast<std::int64_t>(all.size()));
    for (GroupElement g = 0; g < s.order(); ++g) {
      CHECK(s.permutation(g) == all[static_cast<std::size_t>(g)]);
      CHECK(s.element_of(all[static_cast<std::size_t>(g)]) == g);
    }
    CHECK(s.permutation(0) == dp::identity_permutation(n));
  }
}

TEST_CASE("A_n indices are the even permutations in their S_n order") {
  const FiniteGroup a4 = FiniteGroup::alternating(4);
  const std::vector<std::string> a4_expected = {"1234", "1342", "1423", "2143", "2314", "2431",
                                                "3124", "3241", "3412", "4132", "4213", "4321"};
  REQUIRE(a4.order() == 12);
  for (GroupElement g = 0; g < 12; ++g) CHECK(one_based(a4.permutation(g)) == a4_expected[static_cast<std::size_t>(g)]);

  for (int n = 1; n <= 6; ++n) {
    const FiniteGroup a = FiniteGroup::alternating(n);
    std::vector<Perm> even;
    for (const Perm& p : lexicographic_permutations(n))
      if (is_even(p)) even.push_back(p);
    REQUIRE(a.order() == static_cast<std::int64_t>(even.size()));
    for (GroupElement g = 0; g < a.order(); ++g) {
      CHECK(a.permutation(g) == even[static_cast<std::size_t>(g)]);
      CHECK(a.element_of(even[static_cast<std::size_t>(g)]) == g);
    }
  }
  CHECK_THROWS_AS(a4.element_of(dp::transposition(4, 0, 1)), dp::ArgumentError);
}

TEST_CASE("orders: |S_n| = n!, |A_n| = n!/2, |Z_m| = m, |D_n| = 2n, products multiply") {
  std::int64_t f = 1;
  for (int n = 1; n <= 20; ++n) {
    f *= n;
    CHECK(FiniteGroup::symmetric(n).order() == f);
    CHECK(FiniteGroup::alternating(n).order() == (n <= 2 ? 1 : f / 2));
  }
  CHECK(FiniteGroup::symmetric(20).order() == 2432902008176640000LL);
  for (std::int64_t m : {1, 2, 7, 60, 1000000007}) CHECK(FiniteGroup::cyclic(m).order() == m);
  for (std::int64_t n : {1, 2, 3, 4, 9, 100}) CHECK(FiniteGroup::dihedral(n).order() == 2 * n);
  CHECK(FiniteGroup::parity().order() == 2);
  CHECK(FiniteGroup::parse("A5_x_Z2").order() == 120);
  CHECK(FiniteGroup::parse("Z2_x_Z2_x_Z3").order() == 12);
  CHECK(FiniteGroup::parse("S4_x_D5_x_Z7").order() == 24 * 10 * 7);
}

TEST_CASE("group axioms: closure, identity, inverses, associativity") {
  for (const FiniteGroup& g : sample_groups()) {
    CAPTURE(g.name());
    const std::int64_t n = g.order();
    REQUIRE(g.identity() == 0);
    for (GroupElement a = 0; a < n; ++a) {
      CHECK(g.multiply(g.identity(), a) == a);
      CHECK(g.multiply(a, g.identity()) == a);
      const GroupElement inv = g.inverse(a);
      CHECK(g.contains(inv));
      CHECK(g.multiply(a, inv) == 0);
      CHECK(g.multiply(inv, a) == 0);
    }
    // Exhaustive associativity and closure up to order 120 (1.7 million triples for S5).
    if (n <= 120) {
      bool associative = true, closed = true;
      for (GroupElement a = 0; a < n; ++a)
        for (GroupElement b = 0; b < n; ++b) {
          const GroupElement ab = g.multiply(a, b);
          closed = closed && g.contains(ab);
          for (GroupElement c = 0; c < n; ++c)
            associative = associative && g.multiply(ab, c) == g.multiply(a, g.multiply(b, c));
        }
      CHECK(associative);
      CHECK(closed);
      // Each row of the Cayley table is a permutation of the elements (cancellation).
      for (GroupElement a = 0; a < n; ++a) {
        std::vector<bool> hit(static_cast<std::size_t>(n), false);
        for (GroupElement b = 0; b < n; ++b) hit[static_cast<std::size_t>(g.multiply(a, b))] = true;
        CHECK(std::all_of(hit.begin(), hit.end(), [](bool h) { return h; }));
      }
    }
  }
  dp::RandomEngine engine(12345);
  for (const FiniteGroup& g : larger_groups()) {
    CAPTURE(g.name());
    const auto n = static_cast<std::uint64_t>(g.order());
    for (int trial = 0; trial < 300; ++trial) {
      const auto a = static_cast<GroupElement>(dp::uniform_below(engine, n));
      const auto b = static_cast<GroupElement>(dp::uniform_below(engine, n));
      const auto c = static_cast<GroupElement>(dp::uniform_below(engine, n));
      const GroupElement ab = g.multiply(a, b);
      REQUIRE(g.contains(ab));
      CHECK(g.multiply(ab, c) == g.multiply(a, g.multiply(b, c)));
      CHECK(g.multiply(a, g.inverse(a)) == 0);
      CHECK(g.multiply(0, a) == a);
    }
  }
}

TEST_CASE("symmetric and alternating products equal composition of one-line arrays") {
  for (int n = 2; n <= 5; ++n) {
    const FiniteGroup s = FiniteGroup::symmetric(n);
    const FiniteGroup a = FiniteGroup::alternating(n);
    const std::vector<Perm> all = lexicographic_permutations(n);
    std::vector<Perm> even;
    for (const Perm& p : all)
      if (is_even(p)) even.push_back(p);
    for (GroupElement x = 0; x < s.order(); ++x)
      for (GroupElement y = 0; y < s.order(); ++y)
        CHECK(s.multiply(x, y) ==
              index_in(all, compose(all[static_cast<std::size_t>(x)], all[static_cast<std::size_t>(y)])));
    for (GroupElement x = 0; x < a.order(); ++x)
      for (GroupElement y = 0; y < a.order(); ++y)
        CHECK(a.multiply(x, y) ==
              index_in(even, compose(even[static_cast<std::size_t>(x)], even[static_cast<std::size_t>(y)])));
  }
}

TEST_CASE("large symmetric groups: the table (S7) and permutation arithmetic (S8..S20) agree with composition") {
  CHECK(FiniteGroup::symmetric(7).has_multiplication_table());
  CHECK(FiniteGroup::alternating(7).has_multiplication_table());
  CHECK_FALSE(FiniteGroup::symmetric(8).has_multiplication_table());
  CHECK_FALSE(FiniteGroup::cyclic(5).has_multiplication_table());
  CHECK(FiniteGroup::parse("A5_x_Z2").has_multiplication_table());
  dp::RandomEngine engine(7);
  for (int n : {7, 8, 11, 20}) {
    for (const FiniteGroup& g : {FiniteGroup::symmetric(n), FiniteGroup::alternating(n)}) {
      CAPTURE(g.name());
      for (int trial = 0; trial < 200; ++trial) {
        const auto x = static_cast<GroupElement>(dp::uniform_below(engine, static_cast<std::uint64_t>(g.order())));
        const auto y = static_cast<GroupElement>(dp::uniform_below(engine, static_cast<std::uint64_t>(g.order())));
        const Perm p = g.permutation(x), q = g.permutation(y);
        CHECK(g.kind() == (g.name()[0] == 'S' ? GroupKind::symmetric : GroupKind::alternating));
        CHECK(g.permutation(g.multiply(x, y)) == compose(p, q));
        CHECK(g.element_of(p) == x);
        if (g.kind() == GroupKind::alternating) CHECK(is_even(p));
      }
    }
  }
  // The last element of S_n in lexicographic order is the reversal.
  const FiniteGroup s20 = FiniteGroup::symmetric(20);
  const Perm last = s20.permutation(s20.order() - 1);
  for (int x = 0; x < 20; ++x) CHECK(last[static_cast<std::size_t>(x)] == 19 - x);
}

TEST_CASE("cyclic groups: residues under addition") {
  const FiniteGroup z12 = FiniteGroup::cyclic(12);
  for (GroupElement a = 0; a < 12; ++a)
    for (GroupElement b = 0; b < 12; ++b) CHECK(z12.multiply(a, b) == (a + b) % 12);
  const FiniteGroup big = FiniteGroup::cyclic(dp::max_cyclic_order);
  const GroupElement a = dp::max_cyclic_order - 5, b = dp::max_cyclic_order - 7;
  CHECK(big.multiply(a, b) == dp::max_cyclic_order - 12);
  CHECK(big.inverse(a) == 5);
  CHECK(FiniteGroup::parity().name() == "parity");
  CHECK(FiniteGroup::parity().multiply(1, 1) == 0);
}

TEST_CASE("dihedral D_n: index i + n*j is r^i s^j acting on n-gon vertices as x -> (-1)^j x + i") {
  for (std::int64_t n = 1; n <= 9; ++n) {
    const FiniteGroup d = FiniteGroup::dihedral(n);
    CAPTURE(n);
    REQUIRE(d.order() == 2 * n);
    // The action, written here from the definition.
    const auto act = [n](GroupElement g, std::int64_t x) {
      const std::int64_t i = g % n, j = g / n;
      return (((j == 1 ? -x : x) + i) % n + n) % n;
    };
    for (GroupElement a = 0; a < 2 * n; ++a)
      for (GroupElement b = 0; b < 2 * n; ++b) {
        const GroupElement ab = d.multiply(a, b);
        // r^(i + (-1)^j k) s^(j xor l)
        const std::int64_t i = a % n, j = a / n, k = b % n, l = b / n;
        const std::int64_t rotation = (((j == 0 ? i + k : i - k) % n) + n) % n;
        CHECK(ab == rotation + n * (j ^ l));
        for (std::int64_t x = 0; x < n; ++x) CHECK(act(ab, x) == act(a, act(b, x)));
      }
    const GroupElement r = d.dihedral_element(1, 0), s = d.dihedral_element(0, 1);
    CHECK(r == (n == 1 ? 0 : 1));
    CHECK(s == n);
    CHECK(d.dihedral_element(-1, 1) == (n - 1) % n + n);
    CHECK(d.element_order(r) == n);
    CHECK(d.element_order(s) == 2);
    CHECK(d.multiply(s, d.multiply(r, s)) == d.inverse(r));  // s r s = r^-1
    CHECK(d.name() == "D" + std::to_string(n));
  }
}

TEST_CASE("direct products: index i_G * |H| + i_H, folding left, componentwise products") {
  const FiniteGroup g = FiniteGroup::parse("Z2_x_Z2_x_Z3");
  REQUIRE(g.kind() == GroupKind::direct_product);
  REQUIRE(g.factors().size() == 3);
  CHECK(g.name() == "Z2_x_Z2_x_Z3");
  for (GroupElement a = 0; a < 2; ++a)
    for (GroupElement b = 0; b < 2; ++b)
      for (GroupElement c = 0; c < 3; ++c) {
        const GroupElement index = (a * 2 + b) * 3 + c;
        const std::vector<GroupElement> parts{a, b, c};
        CHECK(g.from_components(parts) == index);
        CHECK(g.components(index) == parts);
      }
  for (GroupElement x = 0; x < 12; ++x)
    for (GroupElement y = 0; y < 12; ++y) {
      const auto cx = g.components(x), cy = g.components(y);
      const std::vector<GroupElement> expected{(cx[0] + cy[0]) % 2, (cx[1] + cy[1]) % 2, (cx[2] + cy[2]) % 3};
      CHECK(g.components(g.multiply(x, y)) == expected);
    }

  // A5_x_Z2: index i_A5 * 2 + i_Z2, products componentwise in A5 and Z2.
  const FiniteGroup a5 = FiniteGroup::alternating(5), z2 = FiniteGroup::cyclic(2);
  const FiniteGroup a5z2 = FiniteGroup::direct_product({a5, z2});
  CHECK(a5z2.name() == "A5_x_Z2");
  for (GroupElement x = 0; x < 120; x += 7)
    for (GroupElement y = 0; y < 120; y += 5)
      CHECK(a5z2.multiply(x, y) == a5.multiply(x / 2, y / 2) * 2 + (x % 2 + y % 2) % 2);

  // (Z2_x_S3)_x_D4 and Z2_x_(S3_x_D4) flatten to the same indexing.
  const FiniteGroup left = FiniteGroup::direct_product(
      {FiniteGroup::direct_product({FiniteGroup::cyclic(2), FiniteGroup::symmetric(3)}), FiniteGroup::dihedral(4)});
  const FiniteGroup right = FiniteGroup::direct_product(
      {FiniteGroup::cyclic(2), FiniteGroup::direct_product({FiniteGroup::symmetric(3), FiniteGroup::dihedral(4)})});
  CHECK(left.name() == "Z2_x_S3_x_D4");
  CHECK(right.name() == "Z2_x_S3_x_D4");
  CHECK(left.factors().size() == 3);
  for (GroupElement x = 0; x < 96; ++x)
    for (GroupElement y = 0; y < 96; y += 3) CHECK(left.multiply(x, y) == right.multiply(x, y));
  CHECK(FiniteGroup::direct_product({FiniteGroup::symmetric(4)}).name() == "S4");
  CHECK_THROWS_AS(FiniteGroup::direct_product({}), dp::ArgumentError);
  CHECK_THROWS_AS(FiniteGroup::direct_product({FiniteGroup::symmetric(20), FiniteGroup::symmetric(20)}),
                  dp::ArgumentError);
}

TEST_CASE("faithful and regular permutation representations are injective homomorphisms") {
  for (const FiniteGroup& g : sample_groups()) {
    CAPTURE(g.name());
    const std::int64_t n = g.order();
    std::vector<Perm> images;
    for (GroupElement a = 0; a < n; ++a) {
      const Perm p = g.faithful_permutation(a);
      REQUIRE(static_cast<std::int64_t>(p.size()) == g.faithful_degree());
      REQUIRE(dp::is_permutation(p));
      images.push_back(p);
    }
    CHECK(images[0] == dp::identity_permutation(static_cast<int>(g.faithful_degree())));
    std::vector<Perm> sorted = images;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());  // faithful: all images distinct
    const GroupElement step = n > 60 ? 7 : 1;
    for (GroupElement a = 0; a < n; a += step)
      for (GroupElement b = 0; b < n; ++b)
        CHECK(images[static_cast<std::size_t>(g.multiply(a, b))] ==
              compose(images[static_cast<std::size_t>(a)], images[static_cast<std::size_t>(b)]));
    if (n <= 24)
      for (GroupElement a = 0; a < n; ++a)
        for (GroupElement b = 0; b < n; ++b)
          CHECK(g.regular_permutation(g.multiply(a, b)) == compose(g.regular_permutation(a), g.regular_permutation(b)));
  }
  CHECK(FiniteGroup::symmetric(5).faithful_degree() == 5);
  CHECK(FiniteGroup::cyclic(7).faithful_degree() == 7);
  CHECK(FiniteGroup::dihedral(6).faithful_degree() == 6);
  CHECK(FiniteGroup::dihedral(2).faithful_degree() == 4);
  CHECK(FiniteGroup::parse("A5_x_Z2").faithful_degree() == 7);
  CHECK(FiniteGroup::cyclic(5).faithful_permutation(2) == Perm{2, 3, 4, 0, 1});
  CHECK(FiniteGroup::dihedral(4).faithful_permutation(4 + 1) == Perm{1, 0, 3, 2});  // r s: x -> 1 - x
  CHECK_THROWS_AS(FiniteGroup::cyclic(dp::max_cyclic_order).faithful_permutation(1), dp::ArgumentError);
}

TEST_CASE("names: parse and name() round-trip, bad names are rejected") {
  for (const char* name : {"S1", "S3", "S20", "A5", "A4", "Z60", "Z2", "D4", "D1", "parity", "A5_x_Z2", "Z2_x_Z2_x_Z3",
                           "S3_x_parity", "A4_x_Z5"})
    CHECK(FiniteGroup::parse(name).name() == name);
  CHECK(FiniteGroup::parse("D4").kind() == GroupKind::dihedral);
  CHECK(FiniteGroup::parse("D4").order() == 8);
  CHECK(FiniteGroup::parse("parity").kind() == GroupKind::cyclic);
  CHECK(FiniteGroup::parse("Z60").degree() == 60);
  for (const char* bad : {"", "S", "S0", "S21", "A0", "Z0", "D0", "X3", "s3", "S-1", "S03", "S3 ", "S3_x_", "_x_S3",
                          "S3_x__x_Z2", "S3_Z2", "Z99999999999999999999", "Parity", "S3x"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(FiniteGroup::parse(bad), dp::ArgumentError);
  }
  CHECK_THROWS_AS(FiniteGroup::symmetric(0), dp::ArgumentError);
  CHECK_THROWS_AS(FiniteGroup::symmetric(21), dp::ArgumentError);
  CHECK_THROWS_AS(FiniteGroup::cyclic(0), dp::ArgumentError);
  CHECK_THROWS_AS(FiniteGroup::dihedral(-3), dp::ArgumentError);
  try {
    FiniteGroup::symmetric(21);
    FAIL("S21 must be rejected");
  } catch (const dp::ArgumentError& e) {
    CHECK(std::string(e.what()).find("20") != std::string::npos);  // the message names the limit
  }
}

TEST_CASE("elements out of range, and kind-specific accessors on other kinds, are rejected") {
  const FiniteGroup s3 = FiniteGroup::symmetric(3);
  CHECK_THROWS_AS(s3.multiply(6, 0), dp::ArgumentError);
  CHECK_THROWS_AS(s3.multiply(0, -1), dp::ArgumentError);
  CHECK_THROWS_AS(s3.inverse(6), dp::ArgumentError);
  CHECK_THROWS_AS(FiniteGroup::cyclic(5).permutation(1), dp::ArgumentError);
  CHECK_THROWS_AS(s3.dihedral_element(1, 0), dp::ArgumentError);
  CHECK_THROWS_AS(s3.element_of(Perm{0, 1}), dp::ArgumentError);
  CHECK_THROWS_AS(s3.element_of(Perm{0, 0, 1}), dp::ArgumentError);
  CHECK_THROWS_AS(FiniteGroup::parse("Z2_x_Z3").from_components(std::vector<GroupElement>{1, 3}), dp::ArgumentError);
}

TEST_CASE("powers, element orders, inverses") {
  const FiniteGroup s5 = FiniteGroup::symmetric(5);
  const GroupElement three_cycle = s5.element_of(Perm{1, 2, 0, 3, 4});
  const GroupElement swap = s5.element_of(Perm{1, 0, 2, 3, 4});
  const GroupElement six = s5.element_of(Perm{1, 2, 0, 4, 3});  // (0 1 2)(3 4): order 6
  CHECK(s5.element_order(0) == 1);
  CHECK(s5.element_order(three_cycle) == 3);
  CHECK(s5.element_order(swap) == 2);
  CHECK(s5.element_order(six) == 6);
  CHECK(s5.power(six, 6) == 0);
  CHECK(s5.power(six, 3) == s5.element_of(Perm{0, 1, 2, 4, 3}));  // ((0 1 2)(3 4))^3 = (3 4)
  CHECK(s5.power(six, 2) == s5.inverse(three_cycle));
  CHECK(s5.power(six, -1) == s5.inverse(six));
  CHECK(s5.power(six, 0) == 0);
  CHECK(s5.power(three_cycle, std::numeric_limits<std::int64_t>::min()) ==
        s5.power(three_cycle, std::numeric_limits<std::int64_t>::min() % 3 + 3));
  for (const FiniteGroup& g : sample_groups())
    for (GroupElement a = 0; a < g.order(); ++a) {
      const std::int64_t k = g.element_order(a);
      CHECK(g.power(a, k) == 0);
      for (std::int64_t j = 1; j < k; ++j) CHECK(g.power(a, j) != 0);
      CHECK(g.order() % k == 0);  // Lagrange
    }
  CHECK(FiniteGroup::cyclic(12).element_order(8) == 3);
  CHECK(FiniteGroup::parse("Z4_x_Z6").element_order(
            FiniteGroup::parse("Z4_x_Z6").from_components(std::vector<GroupElement>{1, 2})) == 12);
}

TEST_CASE("transpositions of S_n") {
  const FiniteGroup s5 = FiniteGroup::symmetric(5);
  const std::vector<GroupElement> t = dp::transpositions(s5);
  REQUIRE(t.size() == 10);
  CHECK(std::is_sorted(t.begin(), t.end()));
  for (GroupElement g : t) {
    const Perm p = s5.permutation(g);
    int moved = 0;
    for (int x = 0; x < 5; ++x) moved += p[static_cast<std::size_t>(x)] != x;
    CHECK(moved == 2);
    CHECK(s5.multiply(g, g) == 0);
  }
  CHECK_THROWS_AS(dp::transpositions(FiniteGroup::alternating(5)), dp::ArgumentError);
}

TEST_CASE("permutation helpers: rank and unrank are inverse, parity from the rank") {
  dp::RandomEngine engine(99);
  for (int n : {1, 2, 5, 13, 20}) {
    for (int trial = 0; trial < 100; ++trial) {
      const auto rank =
          static_cast<std::int64_t>(dp::uniform_below(engine, static_cast<std::uint64_t>(dp::factorial(n))));
      const Perm p = dp::permutation_from_rank(n, rank);
      REQUIRE(dp::is_permutation(p));
      CHECK(dp::permutation_rank(p) == rank);
      CHECK(dp::permutation_parity_of_rank(n, rank) == (is_even(p) ? 0 : 1));
      CHECK(dp::permutation_parity(p) == (is_even(p) ? 0 : 1));
      CHECK(dp::compose_permutations(p, dp::invert_permutation(p)) == dp::identity_permutation(n));
    }
  }
  CHECK(dp::factorial(0) == 1);
  CHECK(dp::factorial(20) == 2432902008176640000LL);
  CHECK_THROWS_AS(dp::factorial(21), dp::ArgumentError);
  CHECK_THROWS_AS(dp::permutation_from_rank(3, 6), dp::ArgumentError);
  CHECK_THROWS_AS(dp::permutation_rank(Perm{0, 2}), dp::ArgumentError);
  CHECK_THROWS_AS(dp::compose_permutations(Perm{0, 1}, Perm{0}), dp::ArgumentError);
  CHECK_FALSE(dp::is_permutation(Perm{1, 1}));
  CHECK(dp::is_permutation(Perm{}));
}
