// Word-problem data (Merrill, Petty, Sabharwal, "The Illusion of State in State-Space Models"; the README's Theory section):
// words g_1 ... g_k of group elements, each position labelled with its prefix product
//   label_1 = g_1,   label_t = label_{t-1} * g_t,
// as the reference generator computes it (identity first, then multiply on the right).
//
// Two ways to choose the words, as in the reference tool:
//   - samples = N: N distinct words whose letters are drawn uniformly and independently; duplicates are redrawn.
//     The stream is documented below and identical on every platform (it differs from the Python tool's stream);
//   - no samples: all |L|^k words in lexicographic order (the last position varies fastest), L the alphabet.
// The alphabet is every element by default, or a subset, e.g. DeltaProduct's "S5 only swaps": the identity and the
// ten transpositions (swap_letters()).
//
// Random stream, for reproducibility: RandomEngine(seed) (std::mt19937_64); a word draws its k letters left to right,
// letter = alphabet[uniform_below(engine, |alphabet|)] with the alphabet in ascending index order; a word equal to an
// earlier one is dropped and the next word drawn from where the stream stands. Words are kept in the order drawn.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "deltaproduct/core/error.hpp"
#include "deltaproduct/groups/finite_group.hpp"
#include "deltaproduct/groups/random.hpp"

namespace deltaproduct {

/// An element index as word-problem data store it (the binary files hold uint16 or uint32).
using PackedElement = std::uint32_t;

/// What to generate.
struct WordProblemSpec {
  std::int64_t k = 10;                  ///< letters per word, >= 1
  std::optional<std::int64_t> samples;  ///< N distinct random words; absent: all words in lexicographic order
  std::uint64_t seed = 0;               ///< engine seed; also written in the CSV seed column (every row)
  std::vector<GroupElement> letters;    ///< the alphabet (distinct elements, used in ascending order); empty: all
};

/// Words and their prefix-product labels, row-major: row r holds inputs[r*k, (r+1)*k) and targets likewise.
struct WordProblemData {
  FiniteGroup group;
  std::int64_t k = 0;
  std::uint64_t seed = 0;  ///< the seed the data were generated with (read back from the CSV seed column)
  std::vector<PackedElement> inputs;
  std::vector<PackedElement> targets;

  std::int64_t count() const noexcept { return k > 0 ? static_cast<std::int64_t>(inputs.size()) / k : 0; }
  std::span<const PackedElement> input(std::int64_t row) const {
    return {inputs.data() + row * k, static_cast<std::size_t>(k)};
  }
  std::span<const PackedElement> target(std::int64_t row) const {
    return {targets.data() + row * k, static_cast<std::size_t>(k)};
  }
};

/// DeltaProduct's "only swaps" alphabet of S_n: the identity and the n(n-1)/2 transpositions, ascending.
inline std::vector<GroupElement> swap_letters(const FiniteGroup& symmetric_group) {
  std::vector<GroupElement> letters = transpositions(symmetric_group);
  letters.insert(letters.begin(), symmetric_group.identity());
  return letters;
}

/// The prefix products of a word: label_1 = g_1, label_t = label_{t-1} * g_t.
template <class Element>
std::vector<Element> prefix_products(const FiniteGroup& group, std::span<const Element> word) {
  std::vector<Element> labels(word.size());
  GroupElement acc = group.identity();
  for (std::size_t t = 0; t < word.size(); ++t) {
    acc = group.multiply(acc, static_cast<GroupElement>(word[t]));
    labels[t] = static_cast<Element>(acc);
  }
  return labels;
}

namespace detail {

/// The alphabet of a spec, checked and sorted.
inline std::vector<GroupElement> word_alphabet(const FiniteGroup& group, const WordProblemSpec& spec) {
  if (group.order() - 1 > static_cast<std::int64_t>(std::numeric_limits<PackedElement>::max()))
    argument_error("group", "a group of order <= 2^32 (word-problem data store indices as uint32)",
                   group.name() + " of order " + std::to_string(group.order()));
  std::vector<GroupElement> letters = spec.letters;
  if (letters.empty()) {
    letters.resize(static_cast<std::size_t>(group.order()));
    for (GroupElement g = 0; g < group.order(); ++g) letters[static_cast<std::size_t>(g)] = g;
    return letters;
  }
  std::sort(letters.begin(), letters.end());
  for (std::size_t i = 0; i < letters.size(); ++i) {
    if (!group.contains(letters[i]))
      argument_error("letters", "element indices of " + group.name() + " in [0, " + std::to_string(group.order()) +
                                    ")",
                     std::to_string(letters[i]));
    if (i > 0 && letters[i] == letters[i - 1])
      argument_error("letters", "distinct elements (a repeated letter would be drawn more often)",
                     std::to_string(letters[i]) + " twice");
  }
  return letters;
}

/// |alphabet|^k, or nullopt when it exceeds 2^63 - 1.
inline std::optional<std::int64_t> word_count(std::int64_t alphabet, std::int64_t k) {
  std::int64_t count = 1;
  for (std::int64_t t = 0; t < k; ++t) {
    if (count > std::numeric_limits<std::int64_t>::max() / alphabet) return std::nullopt;
    count *= alphabet;
  }
  return count;
}

/// Index of the first position whose label differs from the prefix product, or -1.
template <class Element>
std::int64_t first_wrong_label(const FiniteGroup& group, std::span<const Element> input,
                               std::span<const Element> target) {
  GroupElement acc = group.identity();
  for (std::size_t t = 0; t < input.size(); ++t) {
    acc = group.multiply(acc, static_cast<GroupElement>(input[t]));
    if (static_cast<GroupElement>(target[t]) != acc) return static_cast<std::int64_t>(t);
  }
  return -1;
}

// Hash and equality of rows stored in one flat buffer, so the set of words seen holds row numbers, not copies.
struct RowHash {
  const std::vector<PackedElement>* rows;
  std::size_t k;
  std::size_t operator()(std::int64_t row) const noexcept {
    std::uint64_t h = 0x9E3779B97F4A7C15ULL;
    const PackedElement* p = rows->data() + static_cast<std::size_t>(row) * k;
    for (std::size_t t = 0; t < k; ++t) {
      h = (h ^ p[t]) * 0xBF58476D1CE4E5B9ULL;  // splitmix64 multipliers
      h ^= h >> 31;
    }
    return static_cast<std::size_t>(h);
  }
};
struct RowEqual {
  const std::vector<PackedElement>* rows;
  std::size_t k;
  bool operator()(std::int64_t a, std::int64_t b) const noexcept {
    const PackedElement* p = rows->data();
    return std::equal(p + static_cast<std::size_t>(a) * k, p + static_cast<std::size_t>(a + 1) * k,
                      p + static_cast<std::size_t>(b) * k);
  }
};

}  // namespace detail

/// The number of words a spec produces: samples, or |alphabet|^k. Throws ArgumentError for k < 1, a negative
/// sample count, more samples than distinct words, or (without samples) more than 2^63 - 1 words.
inline std::int64_t word_problem_count(const FiniteGroup& group, const WordProblemSpec& spec) {
  if (spec.k < 1) detail::argument_error("k", "k >= 1 letters per word", std::to_string(spec.k));
  const auto alphabet = static_cast<std::int64_t>(detail::word_alphabet(group, spec).size());
  const std::optional<std::int64_t> all = detail::word_count(alphabet, spec.k);
  if (!spec.samples) {
    if (!all)
      detail::argument_error("samples", "a sample count (all " + std::to_string(alphabet) + "^" +
                                            std::to_string(spec.k) + " words of " + group.name() +
                                            " are more than 2^63 - 1)",
                             "none");
    return *all;
  }
  const std::int64_t n = *spec.samples;
  if (n < 0) detail::argument_error("samples", "samples >= 0", std::to_string(n));
  if (all && n > *all)
    detail::argument_error("samples", "at most the " + std::to_string(*all) + " distinct words (" +
                                          std::to_string(alphabet) + "^" + std::to_string(spec.k) + ") of " +
                                          group.name(),
                           std::to_string(n));
  return n;
}

/// Calls visitor(std::span<const PackedElement> input, std::span<const PackedElement> target) once per word, in
/// output order, without storing the whole data set (the sampled mode keeps the words drawn, to reject repeats).
template <class Visitor>
void for_each_word_problem(const FiniteGroup& group, const WordProblemSpec& spec, Visitor&& visitor) {
  const std::int64_t count = word_problem_count(group, spec);
  const std::vector<GroupElement> letters = detail::word_alphabet(group, spec);
  const auto k = static_cast<std::size_t>(spec.k);
  std::vector<PackedElement> target(k);
  const auto label = [&](const PackedElement* input, std::size_t from) {
    GroupElement acc = from == 0 ? group.identity() : static_cast<GroupElement>(target[from - 1]);
    for (std::size_t t = from; t < k; ++t) {
      acc = group.multiply(acc, static_cast<GroupElement>(input[t]));
      target[t] = static_cast<PackedElement>(acc);
    }
  };

  if (!spec.samples) {
    // Odometer over letter positions, last position fastest; only the labels from the changed position on are
    // recomputed.
    std::vector<std::size_t> digit(k, 0);
    std::vector<PackedElement> input(k, static_cast<PackedElement>(letters[0]));
    label(input.data(), 0);
    for (std::int64_t row = 0; row < count; ++row) {
      visitor(std::span<const PackedElement>(input), std::span<const PackedElement>(target));
      std::size_t p = k;
      while (p > 0 && digit[p - 1] + 1 == letters.size()) {
        --p;
        digit[p] = 0;
        input[p] = static_cast<PackedElement>(letters[0]);
      }
      if (p == 0) break;  // wrapped around: every word visited
      --p;
      input[p] = static_cast<PackedElement>(letters[++digit[p]]);
      label(input.data(), p);
    }
    return;
  }

  if (count > std::numeric_limits<std::int64_t>::max() / spec.k)
    detail::argument_error("samples", "samples * k < 2^63", std::to_string(count) + " * " + std::to_string(spec.k));
  RandomEngine engine(spec.seed);
  std::vector<PackedElement> words;
  words.reserve(static_cast<std::size_t>(count) * k + k);  // + one candidate row: the spans never move
  std::unordered_set<std::int64_t, detail::RowHash, detail::RowEqual> seen(
      static_cast<std::size_t>(count), detail::RowHash{&words, k}, detail::RowEqual{&words, k});
  for (std::int64_t accepted = 0; accepted < count;) {
    for (std::size_t t = 0; t < k; ++t)
      words.push_back(static_cast<PackedElement>(letters[uniform_below(engine, letters.size())]));
    if (!seen.insert(accepted).second) {
      words.resize(static_cast<std::size_t>(accepted) * k);  // a repeat: draw again
      continue;
    }
    const PackedElement* input = words.data() + static_cast<std::size_t>(accepted) * k;
    label(input, 0);
    visitor(std::span<const PackedElement>(input, k), std::span<const PackedElement>(target));
    ++accepted;
  }
}

/// The whole data set in memory (see for_each_word_problem to stream it instead).
inline WordProblemData generate_word_problems(const FiniteGroup& group, const WordProblemSpec& spec) {
  const std::int64_t count = word_problem_count(group, spec);
  if (count > std::numeric_limits<std::int64_t>::max() / spec.k)
    detail::argument_error("samples", "count * k < 2^63", std::to_string(count) + " * " + std::to_string(spec.k));
  WordProblemData data{group, spec.k, spec.seed, {}, {}};
  data.inputs.reserve(static_cast<std::size_t>(count * spec.k));
  data.targets.reserve(static_cast<std::size_t>(count * spec.k));
  for_each_word_problem(group, spec, [&](std::span<const PackedElement> input, std::span<const PackedElement> target) {
    data.inputs.insert(data.inputs.end(), input.begin(), input.end());
    data.targets.insert(data.targets.end(), target.begin(), target.end());
  });
  return data;
}

/// Checks that every label is the prefix product of its word and every index lies in the group; throws
/// ArgumentError naming the first wrong row and position.
inline void verify_word_problems(const WordProblemData& data) {
  if (data.k < 1) detail::argument_error("data.k", "k >= 1", std::to_string(data.k));
  if (data.inputs.size() != data.targets.size() || data.inputs.size() % static_cast<std::size_t>(data.k) != 0)
    detail::argument_error("data", "inputs and targets of equal size, a multiple of k = " + std::to_string(data.k),
                           std::to_string(data.inputs.size()) + " inputs, " + std::to_string(data.targets.size()) +
                               " targets");
  for (std::size_t i = 0; i < data.inputs.size(); ++i)
    if (!data.group.contains(data.inputs[i]) || !data.group.contains(data.targets[i]))
      detail::argument_error("data", "indices of " + data.group.name() + " in [0, " +
                                         std::to_string(data.group.order()) + ")",
                             std::to_string(data.inputs[i]) + " / " + std::to_string(data.targets[i]) +
                                 " at row " + std::to_string(static_cast<std::int64_t>(i) / data.k));
  for (std::int64_t row = 0; row < data.count(); ++row) {
    const std::int64_t t = detail::first_wrong_label(data.group, data.input(row), data.target(row));
    if (t >= 0)
      detail::argument_error("data.targets", "prefix products of the inputs in " + data.group.name(),
                             "a wrong label at row " + std::to_string(row) + ", position " + std::to_string(t));
  }
}

}  // namespace deltaproduct
