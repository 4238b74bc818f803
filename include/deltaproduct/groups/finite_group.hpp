// Small finite groups with exact arithmetic on element indices: symmetric S_n, alternating A_n, cyclic Z_m (and
// "parity", Z_2 under the name the parity task uses), dihedral D_n and direct products of any of them.
//
// Element indices are those of the word-problem reference data (the README's Theory section), so data files, labels and
// constructions agree on what "element 3 of S4" is:
//   S_n   the one-line permutations of {0..n-1} in lexicographic order; index 0 is the identity
//         (S3: 0:123 1:132 2:213 3:231 4:312 5:321, written 1-based);
//   A_n   the even permutations in their S_n order, re-indexed 0, 1, 2, ... (index 0 is the identity);
//   Z_m   the residues 0..m-1, product = addition mod m;
//   D_n   the symmetries of a regular n-gon, order 2n (D4 has 8 elements). Index i + n*j is r^i s^j, with r the
//         rotation x -> x + 1 and s the reflection x -> -x of the vertices x in Z_n; so indices 0..n-1 are the
//         rotations r^0..r^(n-1) and n..2n-1 the reflections r^i s. Acting on vertices, r^i s^j: x -> (-1)^j x + i,
//         and the product is (r^a s^b)(r^c s^d) = r^(a + (-1)^b c) s^(b + d)  (the right factor acts first);
//   G_x_H index i_G * |H| + i_H (left factor major); more factors fold left, which is the mixed-radix number with
//         the leftmost factor most significant, so (G_x_H)_x_K and G_x_(H_x_K) index alike and are flattened.
// Permutation products compose right to left, (p * q)(x) = p(q(x)). Every group's identity has index 0.
//
// Names are those of the reference data files: "S3", "A5", "Z60", "D4", "parity", "A5_x_Z2"; parse() reads them
// and name() prints them back.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "deltaproduct/core/error.hpp"
#include "deltaproduct/groups/permutation.hpp"

namespace deltaproduct {

/// The index of a group element (see the file comment for the indexing of each kind of group).
using GroupElement = std::int64_t;

/// What a FiniteGroup is; a direct product's factors are never direct products themselves (they are flattened).
enum class GroupKind {
  symmetric,       ///< S_n, order n!
  alternating,     ///< A_n, order n!/2 (1 for n <= 2)
  cyclic,          ///< Z_m, order m; "parity" is Z_2
  dihedral,        ///< D_n, order 2n
  direct_product,  ///< G_x_H_x..., order the product of the factors' orders
};

/// Groups up to this order get a full multiplication table (built on the first product, 2 bytes per entry: 51 MB for
/// S7), so a product is one lookup. Larger symmetric and alternating groups multiply through permutation arithmetic,
/// O(n^2) per product; cyclic and dihedral groups always use their O(1) formulas.
inline constexpr std::int64_t multiplication_table_limit = 5040;

/// Largest cyclic group order and dihedral degree accepted: residues and their sums stay far from overflow.
inline constexpr std::int64_t max_cyclic_order = std::int64_t{1} << 62;

class FiniteGroup;
namespace detail {
struct GroupData;
}

/// A finite group with exact arithmetic on element indices. A cheap-to-copy value: copies share the (immutable)
/// description and the multiplication table, which is built once, thread-safely, on the first product.
class FiniteGroup {
public:
  /// S_n, 1 <= n <= 20 (20! is the largest factorial that fits a 64-bit index).
  static FiniteGroup symmetric(int n);
  /// A_n, 1 <= n <= 20; A_1 and A_2 are trivial.
  static FiniteGroup alternating(int n);
  /// Z_m, 1 <= m <= 2^62.
  static FiniteGroup cyclic(std::int64_t m);
  /// Z_2 named "parity", the group of the parity task.
  static FiniteGroup parity();
  /// D_n of order 2n, 1 <= n <= 2^61 (D_1 has the two elements 1 and s; D_2 is the Klein four-group).
  static FiniteGroup dihedral(std::int64_t n);
  /// The direct product of the factors, left factor major; products among the factors are flattened, and a single
  /// factor is returned as it is. The order must fit in 63 bits.
  static FiniteGroup direct_product(const std::vector<FiniteGroup>& factors);
  /// Reads a name as the reference data spell it: "S3", "A5", "Z60", "D4" (order 8), "parity", "A5_x_Z2".
  static FiniteGroup parse(std::string_view name);

  /// The name parse() reads back: "S3", "Z60", "parity", "A5_x_Z2"...
  const std::string& name() const noexcept;
  GroupKind kind() const noexcept;
  /// n for S_n, A_n and D_n; m for Z_m; 0 for a direct product.
  std::int64_t degree() const noexcept;
  std::int64_t order() const noexcept;
  /// Always 0.
  GroupElement identity() const noexcept { return 0; }
  bool contains(GroupElement g) const noexcept;

  /// a * b (for permutations: b acts first).
  GroupElement multiply(GroupElement a, GroupElement b) const;
  GroupElement inverse(GroupElement a) const;
  /// a^exponent; negative exponents are powers of the inverse.
  GroupElement power(GroupElement a, std::int64_t exponent) const;
  /// The least k >= 1 with a^k = identity, from the structure (cycle type, gcd), not by iterating.
  std::int64_t element_order(GroupElement a) const;
  /// True when products are looked up in a table (order <= multiplication_table_limit, not cyclic or dihedral).
  bool has_multiplication_table() const noexcept;

  /// S_n and A_n: the one-line, 0-based permutation of element g.
  Permutation permutation(GroupElement g) const;
  /// S_n and A_n: the index of a one-line permutation of degree n (for A_n it must be even).
  GroupElement element_of(const Permutation& p) const;

  /// D_n: the index of r^rotation s^reflection (rotation taken mod n, reflection 0 or 1) = rotation + n*reflection.
  GroupElement dihedral_element(std::int64_t rotation, int reflection) const;

  /// A direct product's factors, in index order (leftmost = most significant); empty for the other kinds.
  const std::vector<FiniteGroup>& factors() const noexcept;
  /// A direct product's element as one index per factor; for other kinds, {g}.
  std::vector<GroupElement> components(GroupElement g) const;
  /// The element of a direct product with the given factor indices; for other kinds, the single component.
  GroupElement from_components(std::span<const GroupElement> components) const;

  /// Degree of faithful_permutation: n for S_n and A_n, m for Z_m, n for D_n (n >= 3; 2n for D_1 and D_2, which
  /// use the regular representation), the sum over the factors for a direct product.
  std::int64_t faithful_degree() const noexcept;
  /// A faithful permutation representation, a homomorphism: faithful_permutation(a * b) =
  /// compose_permutations(faithful_permutation(a), faithful_permutation(b)). S_n, A_n: the natural action;
  /// Z_m: rotations x -> x + g of an m-gon; D_n: the action on the n-gon's vertices described above; direct
  /// product: each factor acts on its own block of points, blocks in factor order.
  Permutation faithful_permutation(GroupElement g) const;
  /// The left regular (Cayley) representation x -> g * x on the order() elements: faithful for every group.
  Permutation regular_permutation(GroupElement g) const;

private:
  explicit FiniteGroup(std::shared_ptr<const detail::GroupData> data) : data_(std::move(data)) {}
  static FiniteGroup make(GroupKind kind, std::int64_t degree, std::int64_t order, std::string name,
                          std::vector<FiniteGroup> factors);

  void check_element(GroupElement g, const char* argument) const;
  GroupElement multiply_without_table(GroupElement a, GroupElement b) const;
  void build_table() const;
  std::int64_t symmetric_rank(GroupElement g) const;  // S_n rank of an S_n or A_n element
  GroupElement from_symmetric_rank(std::int64_t rank) const;

  std::shared_ptr<const detail::GroupData> data_;
};

// ------------------------------------------------------------------------------------------------------------------

namespace detail {

struct GroupData {
  GroupKind kind;
  std::int64_t degree;
  std::int64_t order;
  std::string name;
  std::vector<FiniteGroup> factors;
  bool tabulated;
  mutable std::once_flag table_once;
  mutable std::vector<std::uint16_t> table;  // table[a * order + b] = a * b

  GroupData(GroupKind k, std::int64_t d, std::int64_t o, std::string n, std::vector<FiniteGroup> f, bool t)
      : kind(k), degree(d), order(o), name(std::move(n)), factors(std::move(f)), tabulated(t) {}
};

static_assert(multiplication_table_limit <= std::numeric_limits<std::uint16_t>::max() + 1,
              "deltaproduct: multiplication tables store products as uint16_t; keep the limit <= 65536");

/// Lehmer rank of a small permutation held in a raw array (no checks; the table builder's inner loop).
inline std::int64_t lehmer_rank(const int* p, int n) {
  std::int64_t rank = 0;
  for (int i = 0; i < n; ++i) {
    std::int64_t smaller_after = 0;
    for (int j = i + 1; j < n; ++j) smaller_after += p[j] < p[i];
    rank = rank * (n - i) + smaller_after;  // Horner form of sum_i c_i (n-1-i)!
  }
  return rank;
}

inline std::int64_t lcm_of(std::int64_t a, std::int64_t b) { return a / std::gcd(a, b) * b; }

inline std::int64_t parse_group_number(std::string_view digits, bool& ok) {
  ok = !digits.empty() && digits.size() <= 18 && digits[0] != '0';
  std::int64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') ok = false;
    if (!ok) return 0;
    value = value * 10 + (c - '0');
  }
  return value;
}

}  // namespace detail

inline FiniteGroup FiniteGroup::make(GroupKind kind, std::int64_t degree, std::int64_t order, std::string name,
                                     std::vector<FiniteGroup> factors) {
  const bool tabulated = order <= multiplication_table_limit && order > 1 && kind != GroupKind::cyclic &&
                         kind != GroupKind::dihedral;
  return FiniteGroup(std::make_shared<const detail::GroupData>(kind, degree, order, std::move(name),
                                                               std::move(factors), tabulated));
}

inline FiniteGroup FiniteGroup::symmetric(int n) {
  if (n < 1 || n > max_symmetric_degree)
    detail::argument_error("n", "1 <= n <= " + std::to_string(max_symmetric_degree) +
                                    " for S_n (n! must fit a 64-bit element index)",
                           std::to_string(n));
  return make(GroupKind::symmetric, n, factorial(n), "S" + std::to_string(n), {});
}

inline FiniteGroup FiniteGroup::alternating(int n) {
  if (n < 1 || n > max_symmetric_degree)
    detail::argument_error("n", "1 <= n <= " + std::to_string(max_symmetric_degree) +
                                    " for A_n (its elements are indexed through S_n)",
                           std::to_string(n));
  return make(GroupKind::alternating, n, n <= 2 ? 1 : factorial(n) / 2, "A" + std::to_string(n), {});
}

inline FiniteGroup FiniteGroup::cyclic(std::int64_t m) {
  if (m < 1 || m > max_cyclic_order)
    detail::argument_error("m", "1 <= m <= 2^62 for Z_m", std::to_string(m));
  return make(GroupKind::cyclic, m, m, "Z" + std::to_string(m), {});
}

inline FiniteGroup FiniteGroup::parity() { return make(GroupKind::cyclic, 2, 2, "parity", {}); }

inline FiniteGroup FiniteGroup::dihedral(std::int64_t n) {
  if (n < 1 || n > max_cyclic_order / 2)
    detail::argument_error("n", "1 <= n <= 2^61 for D_n (order 2n)", std::to_string(n));
  return make(GroupKind::dihedral, n, 2 * n, "D" + std::to_string(n), {});
}

inline FiniteGroup FiniteGroup::direct_product(const std::vector<FiniteGroup>& factors) {
  if (factors.empty()) detail::argument_error("factors", "at least one group", "an empty list");
  if (factors.size() == 1) return factors.front();
  std::vector<FiniteGroup> flat;
  std::string name;
  std::int64_t order = 1;
  for (const FiniteGroup& f : factors) {
    if (f.kind() == GroupKind::direct_product)
      flat.insert(flat.end(), f.factors().begin(), f.factors().end());
    else
      flat.push_back(f);
    if (order > std::numeric_limits<std::int64_t>::max() / f.order())
      detail::argument_error("factors", "a product whose order fits in 63 bits",
                             "an order above 2^63 at factor " + f.name());
    order *= f.order();
    name += (name.empty() ? "" : "_x_") + f.name();
  }
  return make(GroupKind::direct_product, 0, order, std::move(name), std::move(flat));
}

inline FiniteGroup FiniteGroup::parse(std::string_view name) {
  const auto fail = [&]() {
    detail::argument_error("group name",
                           "S<n> or A<n> (1 <= n <= 20), Z<m>, D<n> (order 2n), parity, or factors joined by "
                           "_x_ such as A5_x_Z2 (numbers in decimal without leading zeros)",
                           "'" + std::string(name) + "'");
  };
  constexpr std::string_view separator = "_x_";
  if (name.find(separator) != std::string_view::npos) {
    std::vector<FiniteGroup> factors;
    std::size_t begin = 0;
    while (true) {
      const std::size_t end = name.find(separator, begin);
      const std::string_view part = name.substr(begin, end == std::string_view::npos ? end : end - begin);
      if (part.empty() || part.find('_') != std::string_view::npos) fail();
      factors.push_back(parse(part));
      if (end == std::string_view::npos) break;
      begin = end + separator.size();
    }
    return direct_product(factors);
  }
  if (name == "parity") return parity();
  if (name.size() < 2) fail();
  bool ok = false;
  const std::int64_t number = detail::parse_group_number(name.substr(1), ok);
  if (!ok) fail();
  switch (name[0]) {
    case 'S':
      if (number > max_symmetric_degree) fail();
      return symmetric(static_cast<int>(number));
    case 'A':
      if (number > max_symmetric_degree) fail();
      return alternating(static_cast<int>(number));
    case 'Z':
      return cyclic(number);
    case 'D':
      return dihedral(number);
    default:
      fail();
  }
  return parity();  // not reached: fail() throws
}

inline const std::string& FiniteGroup::name() const noexcept { return data_->name; }
inline GroupKind FiniteGroup::kind() const noexcept { return data_->kind; }
inline std::int64_t FiniteGroup::degree() const noexcept { return data_->degree; }
inline std::int64_t FiniteGroup::order() const noexcept { return data_->order; }
inline bool FiniteGroup::contains(GroupElement g) const noexcept { return g >= 0 && g < data_->order; }
inline bool FiniteGroup::has_multiplication_table() const noexcept { return data_->tabulated; }
inline const std::vector<FiniteGroup>& FiniteGroup::factors() const noexcept { return data_->factors; }

inline void FiniteGroup::check_element(GroupElement g, const char* argument) const {
  if (!contains(g))
    detail::argument_error(argument, "an element index of " + name() + " in [0, " + std::to_string(order()) + ")",
                           std::to_string(g));
}

// A_n index i is S_n rank 2i or 2i+1: lexicographic order pairs each permutation with the one that swaps its last
// two entries (ranks 2i, 2i+1), and exactly one of the pair is even.
inline std::int64_t FiniteGroup::symmetric_rank(GroupElement g) const {
  if (kind() == GroupKind::symmetric) return g;
  const int n = static_cast<int>(degree());
  return 2 * g + permutation_parity_of_rank(n, 2 * g);
}

inline GroupElement FiniteGroup::from_symmetric_rank(std::int64_t rank) const {
  return kind() == GroupKind::symmetric ? rank : rank / 2;
}

inline Permutation FiniteGroup::permutation(GroupElement g) const {
  if (kind() != GroupKind::symmetric && kind() != GroupKind::alternating)
    detail::argument_error("group", "S_n or A_n for permutation() (use faithful_permutation() for other groups)",
                           name());
  check_element(g, "g");
  return permutation_from_rank(static_cast<int>(degree()), symmetric_rank(g));
}

inline GroupElement FiniteGroup::element_of(const Permutation& p) const {
  if (kind() != GroupKind::symmetric && kind() != GroupKind::alternating)
    detail::argument_error("group", "S_n or A_n for element_of()", name());
  detail::check_permutation(p, "p");
  if (static_cast<std::int64_t>(p.size()) != degree())
    detail::argument_error("p", "a permutation of degree " + std::to_string(degree()) + " for " + name(),
                           "degree " + std::to_string(p.size()));
  if (kind() == GroupKind::alternating && permutation_parity(p) != 0)
    detail::argument_error("p", "an even permutation (an element of " + name() + ")", "an odd permutation");
  return from_symmetric_rank(permutation_rank(p));
}

inline GroupElement FiniteGroup::dihedral_element(std::int64_t rotation, int reflection) const {
  if (kind() != GroupKind::dihedral) detail::argument_error("group", "D_n for dihedral_element()", name());
  if (reflection != 0 && reflection != 1)
    detail::argument_error("reflection", "0 or 1", std::to_string(reflection));
  const std::int64_t n = degree();
  const std::int64_t r = ((rotation % n) + n) % n;
  return r + n * reflection;
}

inline std::vector<GroupElement> FiniteGroup::components(GroupElement g) const {
  check_element(g, "g");
  if (kind() != GroupKind::direct_product) return {g};
  const auto& fs = factors();
  std::vector<GroupElement> c(fs.size());
  for (std::size_t i = fs.size(); i-- > 0;) {  // least significant (rightmost) factor first
    c[i] = g % fs[i].order();
    g /= fs[i].order();
  }
  return c;
}

inline GroupElement FiniteGroup::from_components(std::span<const GroupElement> components) const {
  if (kind() != GroupKind::direct_product) {
    if (components.size() != 1)
      detail::argument_error("components", "exactly one component for " + name(),
                             std::to_string(components.size()) + " components");
    check_element(components[0], "components[0]");
    return components[0];
  }
  const auto& fs = factors();
  if (components.size() != fs.size())
    detail::argument_error("components", std::to_string(fs.size()) + " components (one per factor of " + name() + ")",
                           std::to_string(components.size()));
  GroupElement g = 0;
  for (std::size_t i = 0; i < fs.size(); ++i) {
    fs[i].check_element(components[i], "components");
    g = g * fs[i].order() + components[i];
  }
  return g;
}

inline GroupElement FiniteGroup::multiply_without_table(GroupElement a, GroupElement b) const {
  switch (kind()) {
    case GroupKind::symmetric:
    case GroupKind::alternating: {
      const int n = static_cast<int>(degree());
      const Permutation p = permutation_from_rank(n, symmetric_rank(a));
      const Permutation q = permutation_from_rank(n, symmetric_rank(b));
      const Permutation pq = compose_permutations(p, q);
      return from_symmetric_rank(detail::lehmer_rank(pq.data(), n));
    }
    case GroupKind::cyclic: {
      const std::int64_t m = degree();
      return a >= m - b ? a - (m - b) : a + b;
    }
    case GroupKind::dihedral: {
      // (r^i s^j)(r^k s^l) = r^(i + (-1)^j k) s^(j xor l)
      const std::int64_t n = degree();
      const std::int64_t i = a % n, j = a / n, k = b % n, l = b / n;
      std::int64_t r = j == 0 ? i + k : i - k;
      if (r >= n) r -= n;
      if (r < 0) r += n;
      return r + n * (j ^ l);
    }
    case GroupKind::direct_product: {
      const auto& fs = factors();
      // Mixed radix, least significant factor last: peel components off from the right.
      std::int64_t weight = 1;
      GroupElement result = 0;
      for (std::size_t i = fs.size(); i-- > 0;) {
        const std::int64_t o = fs[i].order();
        result += fs[i].multiply(a % o, b % o) * weight;
        a /= o;
        b /= o;
        if (i > 0) weight *= o;
      }
      return result;
    }
  }
  return 0;
}

inline void FiniteGroup::build_table() const {
  const detail::GroupData& d = *data_;
  const std::int64_t order = d.order;
  d.table.assign(static_cast<std::size_t>(order * order), 0);
  if (d.kind == GroupKind::symmetric || d.kind == GroupKind::alternating) {
    // Unrank every element once, then compose and rank each pair: O(order^2 n^2) simple operations.
    const int n = static_cast<int>(d.degree);
    std::vector<int> perms(static_cast<std::size_t>(order * n));
    for (GroupElement g = 0; g < order; ++g) {
      const Permutation p = permutation_from_rank(n, symmetric_rank(g));
      for (int x = 0; x < n; ++x) perms[static_cast<std::size_t>(g * n + x)] = p[static_cast<std::size_t>(x)];
    }
    std::vector<int> pq(static_cast<std::size_t>(n));
    for (GroupElement a = 0; a < order; ++a) {
      const int* p = &perms[static_cast<std::size_t>(a * n)];
      for (GroupElement b = 0; b < order; ++b) {
        const int* q = &perms[static_cast<std::size_t>(b * n)];
        for (int x = 0; x < n; ++x) pq[static_cast<std::size_t>(x)] = p[q[x]];
        d.table[static_cast<std::size_t>(a * order + b)] =
            static_cast<std::uint16_t>(from_symmetric_rank(detail::lehmer_rank(pq.data(), n)));
      }
    }
  } else {
    for (GroupElement a = 0; a < order; ++a)
      for (GroupElement b = 0; b < order; ++b)
        d.table[static_cast<std::size_t>(a * order + b)] = static_cast<std::uint16_t>(multiply_without_table(a, b));
  }
}

inline GroupElement FiniteGroup::multiply(GroupElement a, GroupElement b) const {
  check_element(a, "a");
  check_element(b, "b");
  const detail::GroupData& d = *data_;
  if (d.tabulated) {
    std::call_once(d.table_once, [this] { build_table(); });
    return d.table[static_cast<std::size_t>(a * d.order + b)];
  }
  return multiply_without_table(a, b);
}

inline GroupElement FiniteGroup::inverse(GroupElement a) const {
  check_element(a, "a");
  switch (kind()) {
    case GroupKind::symmetric:
    case GroupKind::alternating: {
      const int n = static_cast<int>(degree());
      const Permutation inv = invert_permutation(permutation_from_rank(n, symmetric_rank(a)));
      return from_symmetric_rank(detail::lehmer_rank(inv.data(), n));
    }
    case GroupKind::cyclic:
      return a == 0 ? 0 : degree() - a;
    case GroupKind::dihedral: {
      const std::int64_t n = degree();
      if (a >= n) return a;  // reflections are involutions
      return a == 0 ? 0 : n - a;
    }
    case GroupKind::direct_product: {
      std::vector<GroupElement> c = components(a);
      for (std::size_t i = 0; i < c.size(); ++i) c[i] = factors()[i].inverse(c[i]);
      return from_components(c);
    }
  }
  return 0;
}

inline GroupElement FiniteGroup::power(GroupElement a, std::int64_t exponent) const {
  check_element(a, "a");
  GroupElement base = a;
  // |exponent| without overflow for INT64_MIN: work with the unsigned magnitude.
  std::uint64_t e = exponent < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(exponent)
                                 : static_cast<std::uint64_t>(exponent);
  if (exponent < 0) base = inverse(a);
  GroupElement result = identity();
  while (e > 0) {  // square and multiply; powers of one element commute, so the order of factors is immaterial
    if (e & 1) result = multiply(result, base);
    base = multiply(base, base);
    e >>= 1;
  }
  return result;
}

inline std::int64_t FiniteGroup::element_order(GroupElement a) const {
  check_element(a, "a");
  switch (kind()) {
    case GroupKind::symmetric:
    case GroupKind::alternating: {
      // The lcm of the cycle lengths.
      const Permutation p = permutation(a);
      std::vector<char> seen(p.size(), 0);
      std::int64_t result = 1;
      for (std::size_t start = 0; start < p.size(); ++start) {
        if (seen[start]) continue;
        std::int64_t length = 0;
        for (std::size_t x = start; !seen[x]; x = static_cast<std::size_t>(p[x])) {
          seen[x] = 1;
          ++length;
        }
        result = detail::lcm_of(result, length);
      }
      return result;
    }
    case GroupKind::cyclic:
      return degree() / std::gcd(a, degree());
    case GroupKind::dihedral:
      return a >= degree() ? 2 : degree() / std::gcd(a, degree());
    case GroupKind::direct_product: {
      const std::vector<GroupElement> c = components(a);
      std::int64_t result = 1;
      for (std::size_t i = 0; i < c.size(); ++i) result = detail::lcm_of(result, factors()[i].element_order(c[i]));
      return result;
    }
  }
  return 1;
}

inline std::int64_t FiniteGroup::faithful_degree() const noexcept {
  switch (kind()) {
    case GroupKind::symmetric:
    case GroupKind::alternating:
    case GroupKind::cyclic:
      return degree();
    case GroupKind::dihedral:
      return degree() >= 3 ? degree() : order();
    case GroupKind::direct_product: {
      std::int64_t total = 0;
      for (const FiniteGroup& f : factors()) total += f.faithful_degree();
      return total;
    }
  }
  return 0;
}

namespace detail {
inline void check_representation_degree(std::int64_t degree, const std::string& group, const char* what) {
  if (degree > std::numeric_limits<int>::max())
    argument_error("group", std::string("a ") + what + " of degree <= 2^31 - 1 (points are int)",
                   group + " needs degree " + std::to_string(degree));
}
}  // namespace detail

inline Permutation FiniteGroup::faithful_permutation(GroupElement g) const {
  check_element(g, "g");
  detail::check_representation_degree(faithful_degree(), name(), "faithful permutation representation");
  switch (kind()) {
    case GroupKind::symmetric:
    case GroupKind::alternating:
      return permutation(g);
    case GroupKind::cyclic: {
      const int m = static_cast<int>(degree());
      const int shift = static_cast<int>(g);
      Permutation p(static_cast<std::size_t>(m));
      for (int x = 0; x < m; ++x) p[static_cast<std::size_t>(x)] = x < m - shift ? x + shift : x - (m - shift);
      return p;
    }
    case GroupKind::dihedral: {
      if (degree() < 3) return regular_permutation(g);  // D_1, D_2 act unfaithfully on 1 or 2 vertices
      const std::int64_t n = degree();
      const std::int64_t i = g % n;
      const bool reflect = g >= n;
      Permutation p(static_cast<std::size_t>(n));
      for (std::int64_t x = 0; x < n; ++x) {
        const std::int64_t y = reflect ? (n - x) % n : x;  // s: x -> -x, then r^i: x -> x + i
        p[static_cast<std::size_t>(x)] = static_cast<int>((y + i) % n);
      }
      return p;
    }
    case GroupKind::direct_product: {
      Permutation p;
      p.reserve(static_cast<std::size_t>(faithful_degree()));
      const std::vector<GroupElement> c = components(g);
      int offset = 0;
      for (std::size_t i = 0; i < c.size(); ++i) {
        const Permutation block = factors()[i].faithful_permutation(c[i]);
        for (int x : block) p.push_back(x + offset);
        offset += static_cast<int>(block.size());
      }
      return p;
    }
  }
  return {};
}

inline Permutation FiniteGroup::regular_permutation(GroupElement g) const {
  check_element(g, "g");
  detail::check_representation_degree(order(), name(), "regular representation");
  Permutation p(static_cast<std::size_t>(order()));
  for (GroupElement x = 0; x < order(); ++x) p[static_cast<std::size_t>(x)] = static_cast<int>(multiply(g, x));
  return p;
}

/// The transpositions of S_n as element indices, ascending (n(n-1)/2 of them). Other groups: ArgumentError.
inline std::vector<GroupElement> transpositions(const FiniteGroup& symmetric_group) {
  if (symmetric_group.kind() != GroupKind::symmetric)
    detail::argument_error("symmetric_group", "S_n (the only group here whose elements include transpositions)",
                           symmetric_group.name());
  const int n = static_cast<int>(symmetric_group.degree());
  std::vector<GroupElement> result;
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j) result.push_back(permutation_rank(transposition(n, i, j)));
  std::sort(result.begin(), result.end());
  return result;
}

}  // namespace deltaproduct
