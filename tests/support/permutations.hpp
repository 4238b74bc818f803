// An independent enumeration of permutations for the group tests: std::next_permutation, no library code.
#pragma once

#include <algorithm>
#include <vector>

namespace reference {

/// All permutations of {0..n-1} in lexicographic order.
inline std::vector<std::vector<int>> lexicographic_permutations(int n) {
  std::vector<int> p(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) p[static_cast<std::size_t>(i)] = i;
  std::vector<std::vector<int>> all;
  do all.push_back(p);
  while (std::next_permutation(p.begin(), p.end()));
  return all;
}

}  // namespace reference
