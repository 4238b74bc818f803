// The multi-layer S_n constructions (theory/multilayer.hpp): three layers with n_h = 2, four with n_h = 1. The truth
// is the group's exact product (the checker's automaton), never the construction's lookup tables. S3 is proven at
// every length, and its reachable state count is the one worked out by hand below; S4 and S5 have too many reachable
// states for a proof here ((n!)^(2m) buffer contents) and are checked on every short word and on long random words.
// A wrong lookup-table entry is caught at the shortest word that uses it.
#include <doctest/doctest.h>

#include <cmath>
#include <deltaproduct/groups/groups.hpp>
#include <deltaproduct/precision/precision.hpp>
#include <deltaproduct/theory/checker.hpp>
#include <deltaproduct/theory/multilayer.hpp>
#include <vector>

namespace dp = deltaproduct;

namespace {

// The top layer's letter that is the single swap of points i and j: one active factor along +-(e_i - e_j).
int top_letter_swapping(const dp::Construction& c, int i, int j) {
  const auto& letters = c.layers.back().letters;
  for (std::size_t l = 0; l < letters.size(); ++l) {
    std::vector<const dp::HouseholderFactor*> active;
    for (const auto& f : letters[l])
      if (f.beta != 0.0) active.push_back(&f);
    if (active.size() != 1) continue;
    const auto& u = active[0]->direction;
    bool match =
        u[static_cast<std::size_t>(i)] != 0.0 && u[static_cast<std::size_t>(i)] == -u[static_cast<std::size_t>(j)];
    for (std::size_t x = 0; x < u.size(); ++x)
      if (static_cast<int>(x) != i && static_cast<int>(x) != j && u[x] != 0.0) match = false;
    if (match) return static_cast<int>(l);
  }
  return -1;
}

int top_identity_letter(const dp::Construction& c) {
  const auto& letters = c.layers.back().letters;
  for (std::size_t l = 0; l < letters.size(); ++l) {
    bool identity = true;
    for (const auto& f : letters[l]) identity = identity && f.beta == 0.0;
    if (identity) return static_cast<int>(l);
  }
  return -1;
}

}  // namespace

TEST_CASE("S3 in three layers (n_h = 2) and in four (n_h = 1) is proven at every length, exactly, in every format") {
  // Reachable (state, label) pairs, by hand. n_h = 2 (blocks of m = 1 token, 2 buffer slots): the start, the 6
  // states after one token, then at each phase every (slot 0, slot 1, top element): 1 + 6 + 2 * 6^3 = 439.
  // n_h = 1 (m = 2, 4 slots): the start, the states before the buffer is full (6, 36 and 216 after 1, 2 and 3
  // tokens; after 4 tokens every slot holds a token), then at each of the 4 phases every (4 slots, top element):
  // 1 + 6 + 36 + 216 + 4 * 6^5 = 31363. The top element is free at each phase once a token older than the buffer
  // is part of it.
  const std::vector<std::pair<int, std::int64_t>> cases{{2, 439}, {1, 31363}};
  for (const auto& [steps, pairs] : cases) {
    CAPTURE(steps);
    const auto c = dp::symmetric_group_in_layers(3, steps);
    CHECK(c.layers.size() == (steps == 2 ? 3u : 4u));
    CHECK(c.max_householder_steps() == steps);
    CHECK(c.needed_range() == dp::EigenvalueRange::signed_unit);  // reflections: beta = 2
    dp::CheckOptions options;
    options.max_reachable_pairs = 40000;
    options.random_tokens = 3000;
    // Raw keys e_i - e_j (beta' = 1), e_s and the counter's mirrors keep every number a small integer: exact in
    // double and in the 5-bit e3m2 alike, so the search closes with exactly the pairs counted above.
    for (const auto& v : {dp::check_construction<double>(c, dp::KeyForm::unnormalised, options),
                          dp::check_construction<dp::tiny_e3m2>(c, dp::KeyForm::unnormalised, options)}) {
      CHECK(v.proven);
      CHECK(v.first_failure == 0);
      CHECK(v.reachable_pairs == pairs);
      CHECK(v.solved());
    }
  }
}

TEST_CASE("a wrong lookup-table entry fails first at the shortest word that needs it") {
  // Send the top's swap (1 2) to the identity. The top first pays a block's product at the first token of the
  // second block (length m + 1); the product of the first block can be that swap, whose first piece is the swap.
  for (int steps : {2, 1}) {
    CAPTURE(steps);
    auto c = dp::symmetric_group_in_layers(3, steps);
    const int m = steps == 2 ? 1 : 2;
    const int swap = top_letter_swapping(c, 0, 1), identity = top_identity_letter(c);
    REQUIRE(swap >= 0);
    REQUIRE(identity >= 0);
    const int top = static_cast<int>(c.layers.size()) - 1;
    c.layer_letter = [table = c.layer_letter, top, swap, identity](int layer, int letter, std::span<const int> lower) {
      const int chosen = table(layer, letter, lower);
      return layer == top && chosen == swap ? identity : chosen;
    };
    const auto v = dp::check_construction<double>(c, dp::KeyForm::unnormalised);
    CHECK_FALSE(v.solved());
    CHECK(v.first_failure == m + 1);
  }
}

TEST_CASE("S4 and S5 in three and four layers decode every short word and long random words in double") {
  // No whole-length proof: the buffer alone reaches (n!)^(2m) states. The search covers every word up to the
  // depth at which the pairs pass the cap; the random words cover every phase of the blocks thousands of times.
  for (int n : {4, 5})
    for (int steps : {2, 1}) {
      CAPTURE(n);
      CAPTURE(steps);
      const auto c = dp::symmetric_group_in_layers(n, steps);
      CHECK(c.layers.size() == (steps == 2 ? 3u : 4u));
      CHECK(c.max_householder_steps() == steps);
      dp::CheckOptions options;
      options.max_reachable_pairs = 2000;
      options.random_tokens = 4000;
      const auto v = dp::check_construction<double>(c, dp::KeyForm::unnormalised, options);
      CHECK(v.first_failure == 0);
      CHECK(v.exhaustive_length >= (n == 4 ? 3 : 2));
      CHECK_FALSE(v.random_failed);
      CHECK(v.random_tokens == options.random_tokens);
    }
}

TEST_CASE("each block product is paid in m pieces of at most n_h swaps, in order") {
  for (int n : {3, 4, 5})
    for (int steps : {1, 2, 3}) {
      CAPTURE(n);
      CAPTURE(steps);
      const auto group = dp::FiniteGroup::symmetric(n);
      const int m = (n - 1 + steps - 1) / steps;
      const auto pay = dp::detail::block_payments(group, m, steps);
      for (dp::GroupElement b = 0; b < group.order(); ++b) {
        dp::GroupElement product = 0;
        for (int j = 0; j < m; ++j) {
          const auto at = static_cast<std::size_t>(b * m + j);
          const auto piece = group.permutation(pay.piece[at]);
          int cycles = 0;  // swaps needed = n - cycles
          std::vector<bool> seen(static_cast<std::size_t>(n), false);
          for (int s = 0; s < n; ++s)
            if (!seen[static_cast<std::size_t>(s)]) {
              ++cycles;
              for (int x = s; !seen[static_cast<std::size_t>(x)]; x = piece[static_cast<std::size_t>(x)])
                seen[static_cast<std::size_t>(x)] = true;
            }
          REQUIRE(n - cycles <= steps);
          product = group.multiply(product, pay.piece[at]);
          REQUIRE(group.multiply(product, pay.remaining[at]) == b);  // paid so far, then the rest: B
        }
        REQUIRE(product == b);
      }
    }
}

TEST_CASE("a layer of slots decodes each slot on its own; inconsistent slot layouts are rejected") {
  // Two slots of one entry each; letter 2s + w writes w + 1 into slot s. Codewords 0 (empty), 1, 2.
  dp::Construction c{.task = "slots", .input_letters = 4};
  c.next_label = [](int, int letter) { return letter; };
  dp::ConstructionLayer layer{.key_dim = 2, .initial_state = {0.0, 0.0}, .codebook = {{0.0}, {1.0}, {2.0}}, .slots = 2};
  for (int s = 0; s < 2; ++s)
    for (int w = 0; w < 2; ++w) {
      std::vector<double> key{0.0, 0.0};
      key[static_cast<std::size_t>(s)] = 1.0;
      layer.letters.push_back({{key, 1.0, {w + 1.0}}});
    }
  c.layers = {layer};
  c.label_of = [](std::span<const int> d) { return 3 * d[0] + d[1]; };
  dp::ConstructionRunner<double> runner(c, dp::KeyForm::normalised);
  auto states = runner.initial_states();
  std::vector<int> decoded;
  CHECK(runner.advance(states, 3, decoded) == 2);  // slot 1 holds 2, slot 0 is still empty
  CHECK(decoded == std::vector<int>{0, 2});
  CHECK(runner.advance(states, 0, decoded) == 5);
  CHECK(decoded == std::vector<int>{1, 2});

  auto bad_slots = c;
  bad_slots.layers[0].slots = 3;
  try {
    dp::ConstructionRunner<double> r(bad_slots, dp::KeyForm::normalised);
    FAIL("three slots of a two-row state were accepted");
  } catch (const dp::ArgumentError& e) {
    CHECK(e.argument() == "slots");
  }
  auto bad_word = c;
  bad_word.layers[0].codebook[1] = {1.0, 0.0};
  CHECK_THROWS_AS(dp::ConstructionRunner<double>(bad_word, dp::KeyForm::normalised), dp::ArgumentError);
}

TEST_CASE("the multi-layer construction rejects sizes it does not cover") {
  CHECK_THROWS_AS(dp::symmetric_group_in_layers(1, 2), dp::ArgumentError);
  CHECK_THROWS_AS(dp::symmetric_group_in_layers(8, 2), dp::ArgumentError);
  CHECK_THROWS_AS(dp::symmetric_group_in_layers(3, 0), dp::ArgumentError);
}
