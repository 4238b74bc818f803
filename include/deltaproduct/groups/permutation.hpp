// Permutations of {0, ..., n-1} in one-line form, and their lexicographic index: the arithmetic behind the
// symmetric and alternating groups of <deltaproduct/groups/finite_group.hpp>.
//
// Conventions (those of the word-problem reference data, the README's Theory section):
//   - one-line form, 0-based: p[x] is the image of x;
//   - product (p * q)(x) = p(q(x)): q acts first;
//   - the index of p in S_n is its position in the lexicographic order of all one-line forms, so index 0 is the
//     identity (S3: 0:012 1:021 2:102 3:120 4:201 5:210, i.e. 123 132 213 231 312 321 written 1-based).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "deltaproduct/core/error.hpp"

namespace deltaproduct {

/// A permutation of {0, ..., n-1} in one-line form: element x goes to p[x].
using Permutation = std::vector<int>;

/// Largest n whose n! fits in a signed 64-bit index (20! = 2432902008176640000 < 2^63 < 21!).
inline constexpr int max_symmetric_degree = 20;

/// n! for 0 <= n <= max_symmetric_degree.
constexpr std::int64_t factorial(int n) {
  if (n < 0 || n > max_symmetric_degree)
    detail::argument_error("n", "0 <= n <= " + std::to_string(max_symmetric_degree) + " (n! must fit in 64 bits)",
                           std::to_string(n));
  std::int64_t f = 1;
  for (int i = 2; i <= n; ++i) f *= i;
  return f;
}

/// The identity of S_n: 0, 1, ..., n-1.
inline Permutation identity_permutation(int n) {
  if (n < 0) detail::argument_error("n", "n >= 0", std::to_string(n));
  Permutation p(static_cast<std::size_t>(n));
  for (int x = 0; x < n; ++x) p[static_cast<std::size_t>(x)] = x;
  return p;
}

/// The transposition of S_n exchanging i and j (the identity when i == j).
inline Permutation transposition(int n, int i, int j) {
  if (i < 0 || i >= n || j < 0 || j >= n)
    detail::argument_error("i, j", "points in [0, " + std::to_string(n) + ")",
                           std::to_string(i) + ", " + std::to_string(j));
  Permutation p = identity_permutation(n);
  p[static_cast<std::size_t>(i)] = j;
  p[static_cast<std::size_t>(j)] = i;
  return p;
}

/// True when p holds each of 0, ..., p.size()-1 exactly once.
inline bool is_permutation(const Permutation& p) {
  std::vector<char> seen(p.size(), 0);
  for (int x : p) {
    if (x < 0 || static_cast<std::size_t>(x) >= p.size() || seen[static_cast<std::size_t>(x)]) return false;
    seen[static_cast<std::size_t>(x)] = 1;
  }
  return true;
}

namespace detail {
inline void check_permutation(const Permutation& p, const char* argument) {
  if (!is_permutation(p)) {
    std::string text = "[";
    for (std::size_t i = 0; i < p.size(); ++i) text += (i ? " " : "") + std::to_string(p[i]);
    argument_error(argument, "a one-line permutation of {0, ..., n-1}", text + "]");
  }
}
}  // namespace detail

/// (p * q)(x) = p(q(x)): q acts first.
inline Permutation compose_permutations(const Permutation& p, const Permutation& q) {
  if (p.size() != q.size())
    detail::argument_error("q", "a permutation of the same degree as p (" + std::to_string(p.size()) + ")",
                           "degree " + std::to_string(q.size()));
  Permutation r(p.size());
  for (std::size_t x = 0; x < q.size(); ++x) r[x] = p[static_cast<std::size_t>(q[x])];
  return r;
}

/// p^-1, with p^-1(p(x)) = x.
inline Permutation invert_permutation(const Permutation& p) {
  Permutation r(p.size());
  for (std::size_t x = 0; x < p.size(); ++x) r[static_cast<std::size_t>(p[x])] = static_cast<int>(x);
  return r;
}

/// 0 for an even permutation, 1 for an odd one: the parity of the number of inversions.
inline int permutation_parity(const Permutation& p) {
  int inversions = 0;
  for (std::size_t i = 0; i < p.size(); ++i)
    for (std::size_t j = i + 1; j < p.size(); ++j) inversions += p[j] < p[i] ? 1 : 0;
  return inversions & 1;
}

/// The index of p in the lexicographic order of S_n (n = p.size() <= 20). Through the Lehmer code:
/// rank = sum_i c_i * (n-1-i)!, where c_i counts the j > i with p[j] < p[i].
inline std::int64_t permutation_rank(const Permutation& p) {
  detail::check_permutation(p, "p");
  const int n = static_cast<int>(p.size());
  if (n > max_symmetric_degree)
    detail::argument_error("p", "degree <= " + std::to_string(max_symmetric_degree) + " (the index must fit in 64 bits)",
                           "degree " + std::to_string(n));
  std::int64_t rank = 0;
  for (int i = 0; i < n; ++i) {
    std::int64_t smaller_after = 0;
    for (int j = i + 1; j < n; ++j) smaller_after += p[static_cast<std::size_t>(j)] < p[static_cast<std::size_t>(i)];
    rank += smaller_after * factorial(n - 1 - i);
  }
  return rank;
}

/// The permutation of S_n at lexicographic index `rank` (0 <= rank < n!): the inverse of permutation_rank.
inline Permutation permutation_from_rank(int n, std::int64_t rank) {
  if (n < 0 || n > max_symmetric_degree)
    detail::argument_error("n", "0 <= n <= " + std::to_string(max_symmetric_degree), std::to_string(n));
  if (rank < 0 || rank >= factorial(n))
    detail::argument_error("rank", "an index in [0, " + std::to_string(factorial(n)) + ")", std::to_string(rank));
  std::vector<int> unused = identity_permutation(n);  // ascending, so the c-th entry is the c-th smallest left
  Permutation p(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const std::int64_t weight = factorial(n - 1 - i);
    const auto digit = static_cast<std::size_t>(rank / weight);
    rank %= weight;
    p[static_cast<std::size_t>(i)] = unused[digit];
    unused.erase(unused.begin() + static_cast<std::ptrdiff_t>(digit));
  }
  return p;
}

/// The parity (0 even, 1 odd) of the permutation at lexicographic index `rank` of S_n, without building it: the
/// inversion count is the sum of the Lehmer digits, which are the factorial-base digits of the rank.
constexpr int permutation_parity_of_rank(int n, std::int64_t rank) {
  std::int64_t digit_sum = 0;
  for (int i = 0; i < n; ++i) {
    const std::int64_t weight = factorial(n - 1 - i);
    digit_sum += rank / weight;
    rank %= weight;
  }
  return static_cast<int>(digit_sum & 1);
}

}  // namespace deltaproduct
