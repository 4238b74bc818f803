// The holonomy cascade (theory/krohn_rhodes.hpp): any automaton as permutation-reset layers (UST Thm 4). The truth
// is always the automaton's own transition table, applied letter by letter; the decomposition's coding, its level
// maps and the DeltaProduct layers are each checked against it. Known shapes are checked against facts stated
// independently of this code: the full transformation monoid T_n decomposes into n - 1 levels of widths n .. 2
// (holonomy groups S_n .. S_2), and a permutation automaton needs one level and no reset.
#include <doctest/doctest.h>

#include <deltaproduct/precision/precision.hpp>
#include <deltaproduct/theory/checker.hpp>
#include <deltaproduct/theory/krohn_rhodes.hpp>
#include <set>
#include <string>
#include <vector>

namespace dp = deltaproduct;
using LevelMap = dp::HolonomyDecomposition::LevelMap;

namespace {

// Every word up to `length` letters from the start state: the coding decodes to the automaton's state after each.
void check_every_word(const dp::HolonomyDecomposition& d, int length) {
  const dp::Automaton& a = d.automaton();
  struct Node {
    std::vector<int> values;
    int state;
  };
  std::vector<Node> layer{{d.encode(a.initial_state), a.initial_state}};
  for (int depth = 1; depth <= length; ++depth) {
    std::vector<Node> next;
    for (const Node& node : layer)
      for (int letter = 0; letter < a.letters(); ++letter) {
        Node child = node;
        const auto maps = d.step(child.values, letter);
        child.state = a.transitions[static_cast<std::size_t>(letter)][static_cast<std::size_t>(node.state)];
        REQUIRE(d.decode(child.values) == child.state);
        // Each level's map is a permutation of the level's values or a constant: what one layer can apply.
        for (std::size_t i = 0; i < maps.size(); ++i)
          if (maps[i].kind == LevelMap::Kind::permute) {
            std::set<int> image(maps[i].permutation.begin(), maps[i].permutation.end());
            REQUIRE(static_cast<int>(image.size()) == d.level_size(static_cast<int>(i)));
          }
        next.push_back(std::move(child));
      }
    layer = std::move(next);
  }
}

}  // namespace

TEST_CASE("every state's coding decodes to it, and every short word is followed exactly, on 300 random automata") {
  int with_delays = 0, deepest = 0;
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    const int states = 1 + static_cast<int>(seed % 6), letters = 1 + static_cast<int>(seed / 6 % 3);
    const dp::Automaton a = dp::automata::random_automaton(states, letters, seed);
    CAPTURE(a.name);
    const dp::HolonomyDecomposition d(a);
    for (int q = 0; q < states; ++q) REQUIRE(d.decode(d.encode(q)) == q);
    // Levels are heights, and heights strictly grow up a chain of distinct classes: at most |X| - 1 of them.
    CHECK(d.levels() <= d.images() - 1);
    for (int i = 0; i < d.levels(); ++i) CHECK(d.level_size(i) >= 2);  // a set above a singleton has two tiles
    check_every_word(d, letters == 1 ? 10 : letters == 2 ? 7 : 5);
    const auto plan = dp::plan_holonomy_cascade(d);
    with_delays += plan.delays ? 1 : 0;
    deepest = std::max(deepest, d.levels());
  }
  // The sample must exercise both layer plans and deep cascades, or the cases above test little.
  CHECK(with_delays > 0);
  CHECK(with_delays < 300);
  CHECK(deepest >= 4);
}

TEST_CASE("T_n decomposes into n - 1 levels of widths n, n - 1, ..., 2") {
  for (int n : {2, 3, 4, 5}) {
    const dp::HolonomyDecomposition d(dp::automata::full_transformations(n));
    CAPTURE(n);
    REQUIRE(d.levels() == n - 1);
    for (int i = 0; i < n - 1; ++i) CHECK(d.level_size(i) == n - i);
    CHECK(d.images() == (1 << n) - 1);  // every nonempty subset is an image
    check_every_word(d, n <= 3 ? 7 : 4);
  }
}

TEST_CASE("a permutation automaton is one level of permutations; a reset adds constants to that level") {
  dp::Automaton cycle = dp::automata::counter_with_reset(5);
  cycle.transitions.pop_back();  // +1 only: Z5
  const dp::HolonomyDecomposition d(cycle);
  REQUIRE(d.levels() == 1);
  CHECK(d.level_size(0) == 5);
  const auto plan = dp::plan_holonomy_cascade(d);
  for (const auto& map : plan.maps[0]) CHECK(map.kind != LevelMap::Kind::reset);
  CHECK(plan.configurations == 5);

  const dp::HolonomyDecomposition with_reset(dp::automata::counter_with_reset(5));
  REQUIRE(with_reset.levels() == 1);
  const auto reset_plan = dp::plan_holonomy_cascade(with_reset);
  int resets = 0;
  for (const auto& map : reset_plan.maps[0]) resets += map.kind == LevelMap::Kind::reset ? 1 : 0;
  CHECK(resets == 1);
  check_every_word(with_reset, 8);
}

TEST_CASE("the cascade as DeltaProduct layers is proven at every length in fp64 and bf16 with raw keys") {
  // Raw keys e_i - e_j (beta' = 1), resets with beta = 1 and 0/1 values: every number is a small integer, so the
  // layers are exact in every binary format and the reachability search must close.
  const std::vector<dp::Automaton> automata{dp::automata::flip_flop_counter(), dp::automata::counter_with_reset(3),
                                            dp::automata::full_transformations(3),
                                            dp::automata::full_transformations(4),
                                            dp::automata::random_automaton(6, 3, 7)};
  bool some_delays = false;
  for (const auto& a : automata) {
    CAPTURE(a.name);
    const dp::Construction c = dp::holonomy_cascade(a);
    some_delays = some_delays || c.method.find("delays") != std::string::npos;
    CHECK(c.needed_range() == dp::EigenvalueRange::signed_unit);  // swaps are reflections
    const dp::CheckOptions options{.max_reachable_pairs = 50000, .random_tokens = 20000};
    const auto exact = dp::check_construction<double>(c, dp::KeyForm::unnormalised, options);
    CHECK(exact.proven);
    CHECK(exact.solved());
    const auto low = dp::check_construction<dp::bf16>(c, dp::KeyForm::unnormalised, options);
    CHECK(low.proven);
    CHECK(low.solved());
    CHECK(low.reachable_pairs == exact.reachable_pairs);  // exact arithmetic reaches the same states
  }
  CHECK(some_delays);
}

TEST_CASE("a wrong level map is caught: the layers must follow the automaton, not the plan") {
  // Corrupt one reset of T3's top level into a keep; the checker, which follows the automaton, must fail.
  dp::Construction c = dp::holonomy_cascade(dp::automata::full_transformations(3));
  bool corrupted = false;
  for (auto& letter : c.layers[0].letters) {
    bool is_reset = false;
    for (const auto& f : letter) is_reset = is_reset || (f.beta == 1.0);
    if (!is_reset) continue;
    for (auto& f : letter) f.beta = 0.0;
    corrupted = true;
    break;
  }
  REQUIRE(corrupted);
  const auto verdict = dp::check_construction<double>(c, dp::KeyForm::unnormalised, {.random_tokens = 1000});
  CHECK_FALSE(verdict.solved());
  CHECK(verdict.first_failure > 0);
}

TEST_CASE("malformed automata are refused with the argument named") {
  auto message = [](const dp::Automaton& a) {
    try {
      dp::HolonomyDecomposition d(a);
    } catch (const dp::ArgumentError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(message({"none", 0, 0, {{}}}).find("automaton.states") != std::string::npos);
  CHECK(message({"start", 2, 2, {{0, 1}}}).find("automaton.initial_state") != std::string::npos);
  CHECK(message({"short", 2, 0, {{0}}}).find("automaton.transitions[0]") != std::string::npos);
  CHECK(message({"range", 2, 0, {{0, 1}, {0, 5}}}).find("automaton.transitions[1]") != std::string::npos);
  CHECK(message({"letters", 2, 0, {}}).find("automaton.transitions") != std::string::npos);
  CHECK_THROWS_AS(dp::holonomy_cascade({"one", 1, 0, {{0}}}), dp::ArgumentError);
}
