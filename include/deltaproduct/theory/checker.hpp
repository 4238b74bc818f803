// Checks a construction in a number format, under step-by-step rounding (every + and * of the update rounds once).
//
// Whole-length proof by reachability: the pair (simulated states, true label) determines everything that follows,
// and a finite format has finitely many states. A breadth-first search over reachable pairs either closes, which
// proves the construction decodes correctly at every length in that format, or meets a pair whose decoded label is
// wrong, which gives the shortest failing word (the BFS depth). When the reachable set grows past a cap (rounding
// drift makes new states), the search reports the length up to which every word was checked. A long random word
// checks far beyond that.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <unordered_set>
#include <vector>

#include "deltaproduct/groups/random.hpp"
#include "deltaproduct/theory/construction.hpp"

namespace deltaproduct {

struct CheckOptions {
  std::int64_t max_reachable_pairs = 20000;  ///< BFS gives up (no proof) beyond this many distinct pairs
  std::int64_t random_tokens = 100000;       ///< length of the random word checked after the BFS
  std::uint64_t seed = 1;
};

struct CheckVerdict {
  bool proven = false;                 ///< BFS closed: correct at every length
  std::int64_t first_failure = 0;      ///< shortest failing length (0: none found)
  std::int64_t exhaustive_length = 0;  ///< every word up to this length decoded correctly
  std::int64_t reachable_pairs = 0;    ///< distinct (state, label) pairs seen
  std::int64_t random_tokens = 0;      ///< random tokens decoded correctly before the first error (or all)
  bool random_failed = false;

  bool solved() const { return first_failure == 0 && !random_failed; }
};

namespace detail {

struct ReachableKey {
  std::vector<std::uint64_t> bits;  // every state entry's double bit pattern, then the label
  bool operator==(const ReachableKey&) const = default;
};

struct ReachableKeyHash {
  std::size_t operator()(const ReachableKey& k) const noexcept {
    std::uint64_t h = 0x9E3779B97F4A7C15ull;
    for (std::uint64_t b : k.bits) h = (h ^ b) * 0x100000001B3ull + (h >> 29);
    return static_cast<std::size_t>(h);
  }
};

template <class Scalar>
ReachableKey key_of(const std::vector<StateMatrix<Scalar>>& states, int label) {
  ReachableKey key;
  for (const auto& s : states)
    for (Eigen::Index i = 0; i < s.size(); ++i) {
      double x = static_cast<double>(s.data()[i]);
      if (x == 0.0) x = 0.0;  // +0 and -0 behave alike in every later step here
      std::uint64_t bits;
      std::memcpy(&bits, &x, sizeof bits);
      key.bits.push_back(bits);
    }
  key.bits.push_back(static_cast<std::uint64_t>(label));
  return key;
}

}  // namespace detail

/// Runs the BFS and the random word for construction `c` with keys given as `form`, in scalar type Scalar.
template <class Scalar>
CheckVerdict check_construction(const Construction& c, KeyForm form, const CheckOptions& options = {}) {
  ConstructionRunner<Scalar> runner(c, form);
  CheckVerdict verdict;
  std::vector<int> decoded;

  struct Node {
    typename ConstructionRunner<Scalar>::States states;
    int label;
  };
  std::unordered_set<detail::ReachableKey, detail::ReachableKeyHash> seen;
  std::vector<Node> frontier{{runner.initial_states(), c.initial_label}};
  seen.insert(detail::key_of(frontier[0].states, c.initial_label));
  bool capped = false;
  for (std::int64_t depth = 1; !frontier.empty() && verdict.first_failure == 0 && !capped; ++depth) {
    std::vector<Node> next;
    for (const Node& node : frontier) {
      for (int letter = 0; letter < c.input_letters; ++letter) {
        Node child{node.states, c.next_label(node.label, letter)};
        if (runner.advance(child.states, letter, decoded) != child.label) {
          verdict.first_failure = depth;
          break;
        }
        if (seen.insert(detail::key_of(child.states, child.label)).second) next.push_back(std::move(child));
      }
      if (verdict.first_failure) break;
    }
    if (verdict.first_failure) break;
    verdict.exhaustive_length = depth;
    if (static_cast<std::int64_t>(seen.size()) > options.max_reachable_pairs) capped = true;
    frontier = std::move(next);
  }
  verdict.reachable_pairs = static_cast<std::int64_t>(seen.size());
  verdict.proven = verdict.first_failure == 0 && frontier.empty();

  // One long random word, uniform letters.
  std::mt19937_64 rng(options.seed);
  auto states = runner.initial_states();
  int label = c.initial_label;
  for (std::int64_t t = 0; t < options.random_tokens; ++t) {
    const int letter = static_cast<int>(uniform_below(rng, static_cast<std::uint64_t>(c.input_letters)));
    label = c.next_label(label, letter);
    if (runner.advance(states, letter, decoded) != label) {
      verdict.random_failed = true;
      break;
    }
    verdict.random_tokens = t + 1;
  }
  return verdict;
}

}  // namespace deltaproduct
