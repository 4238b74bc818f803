// The parity and modular-arithmetic tasks: the library's evaluator against hand-computed answers and against two
// evaluators written here independently (recursive descent over the text; sum of products of terms for the task
// without brackets), a bracket generator written here that tracks values, the shapes of generated instances, and
// the scaled accuracy.
#include <doctest/doctest.h>

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "deltaproduct/groups/modular_arithmetic.hpp"
#include "deltaproduct/groups/random.hpp"

namespace dp = deltaproduct;
using dp::ArithmeticVocabulary;
using dp::ChomskyTask;
using dp::ChomskyTaskSpec;

namespace {

// Recursive descent over the text form (m <= 10, one character per token):
//   sum := product (('+' | '-') product)*,  product := factor ('*' factor)*,  factor := '-' factor | digit | '(' sum ')'.
struct TextEvaluator {
  std::string_view s;
  std::int64_t m;
  std::size_t i = 0;

  std::int64_t sum() {
    std::int64_t v = product();
    while (i < s.size() && (s[i] == '+' || s[i] == '-')) {
      const char op = s[i++];
      const std::int64_t w = product();
      v = op == '+' ? (v + w) % m : ((v - w) % m + m) % m;
    }
    return v;
  }
  std::int64_t product() {
    std::int64_t v = factor();
    while (i < s.size() && s[i] == '*') {
      ++i;
      v = v * factor() % m;
    }
    return v;
  }
  std::int64_t factor() {
    REQUIRE(i < s.size());
    if (s[i] == '-') {
      ++i;
      return (m - factor()) % m;
    }
    if (s[i] == '(') {
      ++i;
      const std::int64_t v = sum();
      REQUIRE(i < s.size());
      REQUIRE(s[i] == ')');
      ++i;
      return v;
    }
    REQUIRE((s[i] >= '0' && s[i] <= '9'));
    return s[i++] - '0';
  }
};

int evaluate_text(std::string_view text, int m) {
  TextEvaluator e{text, m};
  const std::int64_t v = e.sum();
  REQUIRE(e.i == text.size());
  return static_cast<int>(v);
}

// Without brackets: the value is a sum of signed terms, each a product of digits (how Deletang et al. compute it).
int evaluate_terms(const std::vector<int>& tokens, int m) {
  const ArithmeticVocabulary v{m};
  std::int64_t total = 0, term = tokens[0], sign = 1;
  for (std::size_t i = 1; i < tokens.size(); i += 2) {
    const int op = tokens[i];
    const std::int64_t d = tokens[i + 1];
    if (op == v.times()) {
      term = term * d % m;
    } else {
      total = (total + sign * term % m + m) % m;
      sign = op == v.plus() ? 1 : -1;
      term = d;
    }
  }
  return static_cast<int>((total + sign * term % m + m) % m);
}

// A bracket-expression generator of this test, returning the expression with its value (computed while building).
struct Valued {
  std::vector<int> tokens;
  std::int64_t value;
};
Valued valued_expression(std::int64_t length, int m, dp::RandomEngine& engine, int depth = 0) {
  const ArithmeticVocabulary v{m};
  const auto d = static_cast<int>(dp::uniform_below(engine, static_cast<std::uint64_t>(m)));
  if (length == 1 || depth > 40) return {{d}, d};
  if (length == 2) return {{v.minus(), d}, (m - d) % m};
  if (length == 3) return {{v.open(), d, v.close()}, d};
  if (length == 4) return {{v.open(), v.minus(), d, v.close()}, (m - d) % m};
  const std::int64_t left = 1 + static_cast<std::int64_t>(dp::uniform_below(engine, static_cast<std::uint64_t>(length - 4)));
  const Valued a = valued_expression(left, m, engine, depth + 1);
  const Valued b = valued_expression(length - 3 - left, m, engine, depth + 1);
  const int which = static_cast<int>(dp::uniform_below(engine, 3));
  Valued r{{v.open()}, 0};
  r.tokens.insert(r.tokens.end(), a.tokens.begin(), a.tokens.end());
  r.tokens.push_back(which == 0 ? v.plus() : which == 1 ? v.minus() : v.times());
  r.tokens.insert(r.tokens.end(), b.tokens.begin(), b.tokens.end());
  r.tokens.push_back(v.close());
  r.value = which == 0 ? (a.value + b.value) % m : which == 1 ? (a.value - b.value + m) % m : a.value * b.value % m;
  return r;
}

bool balanced(const std::vector<int>& tokens, const ArithmeticVocabulary& v) {
  int depth = 0;
  for (int t : tokens) {
    depth += t == v.open() ? 1 : t == v.close() ? -1 : 0;
    if (depth < 0) return false;
  }
  return depth == 0;
}

}  // namespace

TEST_CASE("vocabulary: ids for m = 5 and the text form") {
  const ArithmeticVocabulary v{5};
  CHECK(v.plus() == 5);
  CHECK(v.minus() == 6);
  CHECK(v.times() == 7);
  CHECK(v.open() == 8);
  CHECK(v.close() == 9);
  CHECK(v.size() == 10);
  CHECK(v.from_text("(3+-4)*2") == std::vector<int>{8, 3, 5, 6, 4, 9, 7, 2});
  CHECK(v.to_text(std::vector<int>{8, 3, 5, 6, 4, 9, 7, 2}) == "(3+-4)*2");
  CHECK(v.from_text(" 1 + 2 ") == std::vector<int>{1, 5, 2});
  CHECK_THROWS_AS(v.from_text("5"), dp::ArgumentError);
  CHECK_THROWS_AS(v.from_text("1/2"), dp::ArgumentError);
  const ArithmeticVocabulary v13{13};
  CHECK(v13.from_text("12*(11-3)") == std::vector<int>{12, 15, 16, 11, 14, 3, 17});
  CHECK(v13.to_text(v13.from_text("12*(11-3)")) == "12 * ( 11 - 3 )");
}

TEST_CASE("evaluator: hand-computed answers") {
  const auto eval = [](const char* text, int m = 5) {
    return dp::evaluate_modular_expression(ArithmeticVocabulary{m}.from_text(text), m);
  };
  // The examples of Deletang et al.'s task description (mod 5).
  CHECK(eval("1+2*3") == 2);
  CHECK(eval("1-1-1") == 4);
  CHECK(eval("0*1+4*3-2") == 0);
  CHECK(eval("2-3*4+1") == 1);  // 2 - 12 + 1 = -9
  CHECK(eval("3*3*3*3") == 1);  // 81
  CHECK(eval("4") == 4);
  CHECK(eval("-3") == 2);
  CHECK(eval("(3+-4)") == 4);
  CHECK(eval("((1-(-2))*(3+4))") == 1);  // 3 * 7 = 21
  CHECK(eval("(((2)))") == 2);
  CHECK(eval("2*-3") == 4);
  CHECK(eval("-2*3") == 4);
  CHECK(eval("4--3") == 2);
  CHECK(eval("---3") == 2);
  CHECK(eval("(1+2)*(3+4)") == 1);  // brackets override precedence: 21
  CHECK(eval("1+2*3+4", 7) == 4);  // 11 mod 7
  CHECK(eval("6*6", 7) == 1);
  CHECK(eval("1-1*1-1") == 4);  // -1
}

TEST_CASE("evaluator: malformed expressions are rejected with the position") {
  const auto bad = [](std::vector<int> tokens) { return dp::evaluate_modular_expression(tokens, 5); };
  const ArithmeticVocabulary v{5};
  CHECK_THROWS_AS(bad({}), dp::ArgumentError);
  CHECK_THROWS_AS(bad({1, v.plus()}), dp::ArgumentError);
  CHECK_THROWS_AS(bad({v.plus(), 1}), dp::ArgumentError);
  CHECK_THROWS_AS(bad({v.open(), 1, v.plus(), 2}), dp::ArgumentError);
  CHECK_THROWS_AS(bad({1, v.plus(), 2, v.close()}), dp::ArgumentError);
  CHECK_THROWS_AS(bad({1, 2}), dp::ArgumentError);
  CHECK_THROWS_AS(bad({v.open(), v.close()}), dp::ArgumentError);
  CHECK_THROWS_AS(bad({1, v.open(), 2, v.close()}), dp::ArgumentError);
  CHECK_THROWS_AS(bad({10}), dp::ArgumentError);
  CHECK_THROWS_AS(bad({-1}), dp::ArgumentError);
  CHECK_THROWS_AS(dp::evaluate_modular_expression(std::vector<int>{1}, 1), dp::ArgumentError);
  try {
    bad({1, v.plus(), v.times(), 2});
    FAIL("must throw");
  } catch (const dp::ArgumentError& e) {
    CHECK(std::string(e.what()).find("at token 2") != std::string::npos);
  }
}

TEST_CASE("evaluator: deep nesting does not overflow the stack") {
  const ArithmeticVocabulary v{5};
  const int depth = 200000;
  std::vector<int> tokens(depth, v.open());
  tokens.push_back(3);
  tokens.insert(tokens.end(), depth, v.close());
  CHECK(dp::evaluate_modular_expression(tokens, 5) == 3);
  std::vector<int> negations(depth, v.minus());  // an even number of unary minus signs
  negations.push_back(4);
  CHECK(dp::evaluate_modular_expression(negations, 5) == 4);
}

TEST_CASE("random expressions without brackets: odd length, alternating, answers of two independent evaluators") {
  dp::RandomEngine engine(5);
  const ArithmeticVocabulary v{5};
  std::set<int> operators_seen;
  for (int trial = 0; trial < 3000; ++trial) {
    const std::int64_t length = 1 + 2 * static_cast<std::int64_t>(dp::uniform_below(engine, 40));
    const std::vector<int> tokens = dp::random_modular_expression(length, 5, engine);
    REQUIRE(static_cast<std::int64_t>(tokens.size()) == length);
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i % 2 == 0) CHECK(v.is_digit(tokens[i]));
      else {
        CHECK((tokens[i] == v.plus() || tokens[i] == v.minus() || tokens[i] == v.times()));
        operators_seen.insert(tokens[i]);
      }
    }
    const int answer = dp::evaluate_modular_expression(tokens, 5);
    CHECK(answer == evaluate_terms(tokens, 5));
    CHECK(answer == evaluate_text(v.to_text(tokens), 5));
  }
  CHECK(operators_seen.size() == 3);
  CHECK_THROWS_AS(dp::random_modular_expression(4, 5, engine), dp::ArgumentError);
  // Other moduli: the term evaluator does not depend on single-character digits.
  for (int m : {2, 3, 7, 13, 97}) {
    for (int trial = 0; trial < 300; ++trial) {
      const std::vector<int> tokens = dp::random_modular_expression(21, m, engine);
      CHECK(dp::evaluate_modular_expression(tokens, m) == evaluate_terms(tokens, m));
    }
  }
}

TEST_CASE("random bracket expressions: exact length, balanced, answers of an independent evaluator") {
  dp::RandomEngine engine(6);
  const ArithmeticVocabulary v{5};
  for (std::int64_t length = 1; length <= 80; ++length) {
    for (int trial = 0; trial < 40; ++trial) {
      const std::vector<int> tokens = dp::random_bracket_expression(length, 5, true, engine);
      REQUIRE(static_cast<std::int64_t>(tokens.size()) == length);
      CHECK(balanced(tokens, v));
      for (int t : tokens) CHECK((t >= 0 && t < v.size()));
      CHECK(dp::evaluate_modular_expression(tokens, 5) == evaluate_text(v.to_text(tokens), 5));
    }
  }
  // Without multiplication, no '*'; with it, '*' appears.
  bool times_seen = false;
  for (int trial = 0; trial < 200; ++trial) {
    for (int t : dp::random_bracket_expression(30, 5, false, engine)) CHECK(t != v.times());
    for (int t : dp::random_bracket_expression(30, 5, true, engine)) times_seen = times_seen || t == v.times();
  }
  CHECK(times_seen);
  // Expressions built (and valued) by this test's own generator.
  for (int trial = 0; trial < 2000; ++trial) {
    const auto length = static_cast<std::int64_t>(1 + dp::uniform_below(engine, 256));
    const Valued e = valued_expression(length, 5, engine);
    CHECK(dp::evaluate_modular_expression(e.tokens, 5) == e.value);
  }
  CHECK_THROWS_AS(dp::random_bracket_expression(0, 5, true, engine), dp::ArgumentError);
}

TEST_CASE("task instances: lengths in range, answers, vocabulary sizes, reproducibility") {
  ChomskyTaskSpec parity;
  parity.task = ChomskyTask::parity;
  parity.min_length = 3;
  parity.max_length = 40;
  std::set<std::size_t> lengths;
  int odd = 0;
  for (const auto& example : dp::random_task_examples(parity, 2000, 1)) {
    lengths.insert(example.tokens.size());
    int ones = 0;
    for (int b : example.tokens) {
      CHECK((b == 0 || b == 1));
      ones += b;
    }
    CHECK(example.answer == ones % 2);
    odd += example.answer;
  }
  CHECK(*lengths.begin() == 3);
  CHECK(*lengths.rbegin() == 40);
  CHECK(lengths.size() == 38);
  CHECK((odd > 850 && odd < 1150));  // 2000 fair bits: sd 22

  ChomskyTaskSpec arithmetic;
  arithmetic.task = ChomskyTask::modular_arithmetic;
  arithmetic.min_length = 40;
  arithmetic.max_length = 256;
  lengths.clear();
  for (const auto& example : dp::random_task_examples(arithmetic, 1000, 2)) {
    CHECK(example.tokens.size() % 2 == 1);
    lengths.insert(example.tokens.size());
    CHECK(example.answer == evaluate_terms(example.tokens, 5));
  }
  CHECK(*lengths.begin() >= 41);
  CHECK(*lengths.rbegin() <= 255);

  ChomskyTaskSpec brackets;
  brackets.task = ChomskyTask::modular_arithmetic_brackets;
  const auto a = dp::random_task_examples(brackets, 500, 3);
  const auto b = dp::random_task_examples(brackets, 500, 3);
  const auto c = dp::random_task_examples(brackets, 500, 4);
  bool same = true, differ = false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK((a[i].tokens.size() >= 3 && a[i].tokens.size() <= 40));
    CHECK(a[i].answer == evaluate_text(ArithmeticVocabulary{5}.to_text(a[i].tokens), 5));
    same = same && a[i].tokens == b[i].tokens && a[i].answer == b[i].answer;
    differ = differ || a[i].tokens != c[i].tokens;
  }
  CHECK(same);
  CHECK(differ);

  CHECK(dp::task_vocabulary_size(parity) == 2);
  CHECK(dp::task_vocabulary_size(arithmetic) == 8);
  CHECK(dp::task_vocabulary_size(brackets) == 10);
  CHECK(dp::task_classes(parity) == 2);
  CHECK(dp::task_classes(brackets) == 5);
  CHECK(dp::chomsky_task_name(ChomskyTask::modular_arithmetic_brackets) == "modular_arithmetic_brackets");

  ChomskyTaskSpec empty = arithmetic;
  empty.min_length = 4;
  empty.max_length = 4;
  dp::RandomEngine engine(0);
  CHECK_THROWS_AS(dp::random_task_example(empty, engine), dp::ArgumentError);
  empty.max_length = 3;
  CHECK_THROWS_AS(dp::random_task_example(empty, engine), dp::ArgumentError);
}

TEST_CASE("scaled accuracy (acc - r) / (1 - r)") {
  ChomskyTaskSpec parity;
  ChomskyTaskSpec mod5;
  mod5.task = ChomskyTask::modular_arithmetic;
  CHECK(dp::chance_accuracy(parity) == doctest::Approx(0.5));
  CHECK(dp::chance_accuracy(mod5) == doctest::Approx(0.2));
  CHECK(dp::scaled_accuracy(1.0, 0.5) == doctest::Approx(1.0));
  CHECK(dp::scaled_accuracy(0.5, 0.5) == doctest::Approx(0.0));
  CHECK(dp::scaled_accuracy(0.6, 0.2) == doctest::Approx(0.5));
  CHECK(dp::scaled_accuracy(0.0, 0.2) == doctest::Approx(-0.25));
  CHECK_THROWS_AS(dp::scaled_accuracy(1.5, 0.2), dp::ArgumentError);
  CHECK_THROWS_AS(dp::scaled_accuracy(0.5, 1.0), dp::ArgumentError);
}
