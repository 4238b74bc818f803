// The state-tracking tasks of UST Table 3 (Grazzi et al., "Unlocking State-Tracking in Linear RNNs Through Negative
// Eigenvalues", which runs the Chomsky-hierarchy tasks of Deletang et al. in xLSTM's setup; the README's Theory section):
//   parity                        a bit string; answer = number of ones mod 2;
//   modular_arithmetic            digits 0..m-1 alternating with +, -, * (odd length, no brackets); answer = its value
//                                 mod m, * binding tighter than + and -, which associate to the left:
//                                 1+2*3 = 2, 1-1-1 = 4, 0*1+4*3-2 = 0 (mod 5);
//   modular_arithmetic_brackets   expressions of the grammar  E -> d | -d | (d) | (-d) | (E op E),  op in {+, -, *}
//                                 (or {+, -}), every binary operation bracketed; answer = value mod m.
// UST trains on lengths 3..40, tests on 40..256, with m = 5, and reports the scaled accuracy (acc - r) / (1 - r),
// r the chance accuracy (1/2 for parity, 1/5 mod 5).
//
// Vocabulary (token ids): digits 0..m-1 are themselves; '+' = m, '-' = m+1, '*' = m+2, '(' = m+3, ')' = m+4, so
// m = 5 gives 0-4 digits, 5 '+', 6 '-', 7 '*', 8 '(', 9 ')' (the ids of the Deletang et al. brackets task).
// Parity uses the tokens 0 and 1.
//
// Generation (RandomEngine, uniform_below; stable on every platform, not the reference stream):
//   - the length is uniform over the allowed lengths in [min_length, max_length] (odd lengths only without brackets);
//   - parity: each bit uniform; no brackets: digits and operators uniform, left to right;
//   - brackets: a length-n expression is d, -d, (d), (-d) for n = 1..4; for n >= 5 it is (A op B) with |A| uniform in
//     [1, n-4], |B| = n-3-|A|, op uniform; draws happen in the order the tokens are written (pre-order).
// Answers come from evaluate_modular_expression, a parser independent of the generators, which handles unary minus,
// precedence and brackets, so both arithmetic tasks (and hand-written expressions) share one evaluator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "deltaproduct/core/error.hpp"
#include "deltaproduct/groups/random.hpp"

namespace deltaproduct {

enum class ChomskyTask {
  parity,
  modular_arithmetic,           ///< without brackets: regular
  modular_arithmetic_brackets,  ///< with brackets: deterministic context-free
};

inline std::string_view chomsky_task_name(ChomskyTask task) noexcept {
  switch (task) {
    case ChomskyTask::parity:
      return "parity";
    case ChomskyTask::modular_arithmetic:
      return "modular_arithmetic";
    case ChomskyTask::modular_arithmetic_brackets:
      return "modular_arithmetic_brackets";
  }
  return "unknown";
}

/// Largest modulus accepted: products of two residues stay below 2^60.
inline constexpr int max_arithmetic_modulus = 1 << 30;

/// Token ids of the arithmetic tasks (see the file comment).
struct ArithmeticVocabulary {
  int modulus = 5;

  int plus() const noexcept { return modulus; }
  int minus() const noexcept { return modulus + 1; }
  int times() const noexcept { return modulus + 2; }
  int open() const noexcept { return modulus + 3; }
  int close() const noexcept { return modulus + 4; }
  /// Number of token ids, m + 5 (the task without brackets uses only the first m + 3).
  int size() const noexcept { return modulus + 5; }
  bool is_digit(int token) const noexcept { return token >= 0 && token < modulus; }

  /// Text form: "(3+-4)" for m <= 10; tokens separated by spaces for larger m (digits are then several characters).
  std::string to_text(std::span<const int> tokens) const {
    std::string text;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (modulus > 10 && i > 0) text += ' ';
      const int t = tokens[i];
      if (is_digit(t))
        text += std::to_string(t);
      else if (t == plus())
        text += '+';
      else if (t == minus())
        text += '-';
      else if (t == times())
        text += '*';
      else if (t == open())
        text += '(';
      else if (t == close())
        text += ')';
      else
        text += '?';
    }
    return text;
  }

  /// Tokens of a text such as "1 + 2*(3 - -4)": spaces are ignored, a run of decimal digits is one number < m.
  std::vector<int> from_text(std::string_view text) const {
    std::vector<int> tokens;
    for (std::size_t i = 0; i < text.size();) {
      const char c = text[i];
      if (c >= '0' && c <= '9') {
        std::int64_t value = 0;
        std::size_t end = i;
        while (end < text.size() && text[end] >= '0' && text[end] <= '9' && value < modulus)
          value = value * 10 + (text[end++] - '0');
        if (value >= modulus || (end < text.size() && text[end] >= '0' && text[end] <= '9'))
          detail::argument_error("text", "numbers below the modulus " + std::to_string(modulus),
                                 "'" + std::string(text) + "' at character " + std::to_string(i));
        tokens.push_back(static_cast<int>(value));
        i = end;
        continue;
      }
      switch (c) {
        case ' ':
          break;
        case '+':
          tokens.push_back(plus());
          break;
        case '-':
          tokens.push_back(minus());
          break;
        case '*':
          tokens.push_back(times());
          break;
        case '(':
          tokens.push_back(open());
          break;
        case ')':
          tokens.push_back(close());
          break;
        default:
          detail::argument_error("text", "digits, + - * ( ) and spaces",
                                 "'" + std::string(text) + "' with '" + std::string(1, c) + "' at character " +
                                     std::to_string(i));
      }
      ++i;
    }
    return tokens;
  }
};

/// One instance of a task: input tokens and the answer class.
struct TaskExample {
  std::vector<int> tokens;
  int answer = 0;
};

/// A task and the lengths to draw; modulus and bracket_multiplication concern the arithmetic tasks only.
struct ChomskyTaskSpec {
  ChomskyTask task = ChomskyTask::parity;
  int modulus = 5;
  std::int64_t min_length = 3;   ///< UST: 3 for training, 40 for testing
  std::int64_t max_length = 40;  ///< UST: 40 for training, 256 for testing
  /// Whether '*' may appear in the brackets task. Deletang et al.'s generator makes it optional; the tasks here
  /// include it by default, as the task without brackets does (UST names both "+, -, *" tasks only loosely).
  bool bracket_multiplication = true;
};

namespace detail {
inline void check_modulus(int modulus) {
  if (modulus < 2 || modulus > max_arithmetic_modulus)
    argument_error("modulus", "2 <= modulus <= 2^30", std::to_string(modulus));
}
inline void check_length(std::int64_t length, std::int64_t minimum, const char* what) {
  if (length < minimum)
    argument_error("length", std::string(what) + " needs length >= " + std::to_string(minimum), std::to_string(length));
}
}  // namespace detail

/// Number of ones mod 2 of a bit string (tokens 0 and 1).
inline int parity_of(std::span<const int> bits) {
  int ones = 0;
  for (std::size_t i = 0; i < bits.size(); ++i) {
    if (bits[i] != 0 && bits[i] != 1)
      detail::argument_error("bits", "tokens 0 and 1", std::to_string(bits[i]) + " at position " + std::to_string(i));
    ones ^= bits[i];
  }
  return ones;
}

/// The value mod `modulus` of an expression over digits, binary + - *, unary minus and brackets (the vocabulary
/// above). Precedence: unary minus, then *, then + and - (left-associative). Throws ArgumentError for a malformed
/// expression, naming the token position. Shunting-yard with explicit stacks, so deep nesting cannot overflow the
/// call stack.
inline int evaluate_modular_expression(std::span<const int> tokens, int modulus) {
  detail::check_modulus(modulus);
  const ArithmeticVocabulary vocabulary{modulus};
  const std::int64_t m = modulus;
  enum Operator : int { open_bracket, add, subtract, multiply, negate };
  const auto precedence = [](int op) { return op == negate ? 3 : op == multiply ? 2 : op == open_bracket ? 0 : 1; };
  std::vector<std::int64_t> values;
  std::vector<int> operators;
  const auto fail = [&](std::size_t position, const std::string& problem) {
    detail::argument_error("tokens", "a well-formed expression mod " + std::to_string(modulus),
                           problem + " at token " + std::to_string(position) + " of '" +
                               vocabulary.to_text(tokens) + "'");
  };
  const auto apply = [&](int op) {
    if (op == negate) {
      values.back() = (m - values.back()) % m;
      return;
    }
    const std::int64_t b = values.back();
    values.pop_back();
    std::int64_t& a = values.back();
    if (op == add) a = (a + b) % m;
    if (op == subtract) a = (a - b + m) % m;
    if (op == multiply) a = a * b % m;
  };

  bool expect_operand = true;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const int t = tokens[i];
    if (expect_operand) {
      if (vocabulary.is_digit(t)) {
        values.push_back(t);
        expect_operand = false;
      } else if (t == vocabulary.open()) {
        operators.push_back(open_bracket);
      } else if (t == vocabulary.minus()) {
        operators.push_back(negate);  // prefix: nothing to its left to reduce
      } else {
        fail(i, "expected a digit, '(' or unary '-'");
      }
      continue;
    }
    if (t == vocabulary.plus() || t == vocabulary.minus() || t == vocabulary.times()) {
      const int op = t == vocabulary.plus() ? add : t == vocabulary.minus() ? subtract : multiply;
      while (!operators.empty() && precedence(operators.back()) >= precedence(op)) {
        apply(operators.back());
        operators.pop_back();
      }
      operators.push_back(op);
      expect_operand = true;
    } else if (t == vocabulary.close()) {
      while (!operators.empty() && operators.back() != open_bracket) {
        apply(operators.back());
        operators.pop_back();
      }
      if (operators.empty()) fail(i, "unmatched ')'");
      operators.pop_back();
    } else {
      fail(i, "expected an operator or ')'");
    }
  }
  if (expect_operand) fail(tokens.size(), tokens.empty() ? "empty expression" : "missing operand at the end");
  while (!operators.empty()) {
    if (operators.back() == open_bracket) fail(tokens.size(), "unmatched '('");
    apply(operators.back());
    operators.pop_back();
  }
  return static_cast<int>(values.back());
}

/// A uniform random bit string.
inline std::vector<int> random_parity_string(std::int64_t length, RandomEngine& engine) {
  detail::check_length(length, 1, "parity");
  std::vector<int> bits(static_cast<std::size_t>(length));
  for (int& b : bits) b = static_cast<int>(uniform_below(engine, 2));
  return bits;
}

/// A random expression without brackets: d op d op ... d, `length` odd.
inline std::vector<int> random_modular_expression(std::int64_t length, int modulus, RandomEngine& engine) {
  detail::check_modulus(modulus);
  detail::check_length(length, 1, "modular arithmetic");
  if (length % 2 == 0)
    detail::argument_error("length", "an odd length (digits and operators alternate)", std::to_string(length));
  const ArithmeticVocabulary vocabulary{modulus};
  const int operators[3] = {vocabulary.plus(), vocabulary.minus(), vocabulary.times()};
  std::vector<int> tokens(static_cast<std::size_t>(length));
  for (std::size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = i % 2 == 0 ? static_cast<int>(uniform_below(engine, static_cast<std::uint64_t>(modulus)))
                           : operators[uniform_below(engine, 3)];
  return tokens;
}

/// A random bracketed expression of exactly `length` tokens (any length >= 1), by the grammar in the file comment.
inline std::vector<int> random_bracket_expression(std::int64_t length, int modulus, bool multiplication,
                                                  RandomEngine& engine) {
  detail::check_modulus(modulus);
  detail::check_length(length, 1, "modular arithmetic with brackets");
  const ArithmeticVocabulary vocabulary{modulus};
  const int operators[3] = {vocabulary.plus(), vocabulary.minus(), vocabulary.times()};
  const std::uint64_t operator_count = multiplication ? 3 : 2;
  const auto digit = [&] { return static_cast<int>(uniform_below(engine, static_cast<std::uint64_t>(modulus))); };
  // Work stack of pending items, last pushed first: a token to write (>= 0) or an expression of length n (stored -n).
  std::vector<std::int64_t> pending{-length};
  std::vector<int> tokens;
  tokens.reserve(static_cast<std::size_t>(length));
  while (!pending.empty()) {
    const std::int64_t item = pending.back();
    pending.pop_back();
    if (item >= 0) {
      tokens.push_back(static_cast<int>(item));
      continue;
    }
    const std::int64_t n = -item;
    if (n == 1) {
      tokens.push_back(digit());
    } else if (n == 2) {
      tokens.push_back(vocabulary.minus());
      tokens.push_back(digit());
    } else if (n == 3) {
      tokens.push_back(vocabulary.open());
      tokens.push_back(digit());
      tokens.push_back(vocabulary.close());
    } else if (n == 4) {
      tokens.push_back(vocabulary.open());
      tokens.push_back(vocabulary.minus());
      tokens.push_back(digit());
      tokens.push_back(vocabulary.close());
    } else {
      const std::int64_t left = uniform_between(engine, 1, n - 4);
      const int op = operators[uniform_below(engine, operator_count)];
      tokens.push_back(vocabulary.open());
      pending.push_back(vocabulary.close());
      pending.push_back(-(n - 3 - left));
      pending.push_back(op);
      pending.push_back(-left);
    }
  }
  return tokens;
}

/// Size of a task's input vocabulary: 2, m + 3 without brackets, m + 5 with.
inline int task_vocabulary_size(const ChomskyTaskSpec& spec) {
  if (spec.task == ChomskyTask::parity) return 2;
  detail::check_modulus(spec.modulus);
  return spec.task == ChomskyTask::modular_arithmetic ? spec.modulus + 3 : spec.modulus + 5;
}

/// Number of answer classes: 2 for parity, m for the arithmetic tasks.
inline int task_classes(const ChomskyTaskSpec& spec) {
  if (spec.task == ChomskyTask::parity) return 2;
  detail::check_modulus(spec.modulus);
  return spec.modulus;
}

/// The answer to an instance of the task.
inline int task_answer(const ChomskyTaskSpec& spec, std::span<const int> tokens) {
  return spec.task == ChomskyTask::parity ? parity_of(tokens) : evaluate_modular_expression(tokens, spec.modulus);
}

/// A random instance: length uniform over the task's lengths in [min_length, max_length], tokens, answer.
inline TaskExample random_task_example(const ChomskyTaskSpec& spec, RandomEngine& engine) {
  if (spec.min_length < 1 || spec.max_length < spec.min_length)
    detail::argument_error("min_length, max_length", "1 <= min_length <= max_length",
                           std::to_string(spec.min_length) + ", " + std::to_string(spec.max_length));
  TaskExample example;
  switch (spec.task) {
    case ChomskyTask::parity:
      example.tokens = random_parity_string(uniform_between(engine, spec.min_length, spec.max_length), engine);
      break;
    case ChomskyTask::modular_arithmetic: {
      const std::int64_t lowest_odd = spec.min_length | 1;
      const std::int64_t highest_odd = spec.max_length % 2 == 1 ? spec.max_length : spec.max_length - 1;
      if (lowest_odd > highest_odd)
        detail::argument_error("min_length, max_length", "a range holding an odd length (expressions have odd length)",
                               std::to_string(spec.min_length) + ", " + std::to_string(spec.max_length));
      const std::int64_t length = lowest_odd + 2 * uniform_between(engine, 0, (highest_odd - lowest_odd) / 2);
      example.tokens = random_modular_expression(length, spec.modulus, engine);
      break;
    }
    case ChomskyTask::modular_arithmetic_brackets:
      example.tokens = random_bracket_expression(uniform_between(engine, spec.min_length, spec.max_length),
                                                 spec.modulus, spec.bracket_multiplication, engine);
      break;
  }
  example.answer = task_answer(spec, example.tokens);
  return example;
}

/// `count` random instances from RandomEngine(seed).
inline std::vector<TaskExample> random_task_examples(const ChomskyTaskSpec& spec, std::int64_t count,
                                                     std::uint64_t seed) {
  if (count < 0) detail::argument_error("count", "count >= 0", std::to_string(count));
  RandomEngine engine(seed);
  std::vector<TaskExample> examples;
  examples.reserve(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) examples.push_back(random_task_example(spec, engine));
  return examples;
}

/// Accuracy of guessing uniformly: 1 / task_classes (1/2 for parity, 1/5 mod 5).
inline double chance_accuracy(const ChomskyTaskSpec& spec) { return 1.0 / task_classes(spec); }

/// UST's scaled accuracy (acc - r) / (1 - r): 1 for a perfect model, 0 at chance, negative below chance.
inline double scaled_accuracy(double accuracy, double chance) {
  if (!(accuracy >= 0.0 && accuracy <= 1.0))
    detail::argument_error("accuracy", "a value in [0, 1]", detail::to_text(accuracy));
  if (!(chance >= 0.0 && chance < 1.0))
    detail::argument_error("chance", "a chance accuracy in [0, 1)", detail::to_text(chance));
  return (accuracy - chance) / (1.0 - chance);
}

}  // namespace deltaproduct
