// S_n in a fixed number of layers for every n: three DeltaProduct layers with n_h >= 2, four DeltaNet layers
// (n_h = 1), through a lookup table between layers whose size grows exponentially with n.
//
// What this relies on. DP (Siems et al., "DeltaProduct: Improving State-Tracking in Linear RNNs via Householder
// Products") states that DeltaProduct solves the word problem of S_n with one layer and n_h = n - 1, with three
// layers for any n_h >= 2 and with four layers for n_h = 1, its multi-layer constructions needing a very wide MLP
// between layers. Only that statement was available to us (from the abstract's claim of a finite-precision
// characterisation and a secondary summary); the theorem's number, exact wording and proof were not. What follows is
// therefore our own construction in the spirit of that statement, not the paper's, and it is proven here by the
// reachability check (theory/checker.hpp), not taken from the paper.
//
// The construction. One token's permutation can need n - 1 swaps, and a layer applies only n_h reflections per
// token. But a block of m = ceil((n - 1) / n_h) tokens multiplies to one permutation B, and B needs at most n - 1
// swaps too, which the top layer can pay during the next block:
//   - counter: the position t mod 2m. With n_h >= 2, one layer rotates a plane by 2 pi / 2m (two reflections per
//     token); with n_h = 1, a parity layer and a layer reflecting in two mirrors by turns (a dihedral walk, as in
//     UST Thm 6) count with one reflection per token;
//   - buffer: 2m slots holding the previous block and the current one. Token t overwrites slot t mod 2m in one
//     delta-rule step, key e_s and beta = 1: S <- S + e_s (v - S^T e_s)^T sets row s to v, the token's one-line form;
//   - top: S_n as permutation matrices, products of swaps (UST Thm 3). The lookup table multiplies the previous
//     block to B, writes B = c_0 c_1 ... c_{m-1} with each c_j at most n_h swaps, and applies c_j at position j of
//     the current block; after block b the top holds the product of blocks 0 .. b-1.
// The label after position j of the current block is y c_{j+1} ... c_{m-1} x_(first of the block) ... x_t, with y the
// top's element. The tables read 2m tokens: (n!)^(2m) entries, the wide MLP of the statement. Every number is a
// small integer (raw keys: exact in every format) for n <= 5; a counter mod 6 or more with n_h >= 2, or mod 10 or
// more with n_h = 1, takes sines and cosines.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <numbers>
#include <span>
#include <string>
#include <vector>

#include "deltaproduct/core/error.hpp"
#include "deltaproduct/groups/finite_group.hpp"
#include "deltaproduct/theory/construction.hpp"
#include "deltaproduct/theory/constructions.hpp"

namespace deltaproduct {

namespace detail {

/// rank(M(p) - I) = d - (cycles of p): the fewest swaps, or reflections, giving p.
inline int swap_count(const Permutation& p) {
  std::vector<bool> seen(p.size(), false);
  int cycles = 0;
  for (std::size_t start = 0; start < p.size(); ++start) {
    if (seen[start]) continue;
    ++cycles;
    for (std::size_t x = start; !seen[x]; x = static_cast<std::size_t>(p[x])) seen[x] = true;
  }
  return static_cast<int>(p.size()) - cycles;
}

/// How the top layer pays a block's product B = c_0 c_1 ... c_{m-1}, each c_j a product of at most `steps` swaps.
struct BlockPayments {
  std::vector<int> piece;      ///< [B m + j] = c_j
  std::vector<int> remaining;  ///< [B m + j] = c_{j+1} ... c_{m-1}, what is left of B after paying c_j
};

inline BlockPayments block_payments(const FiniteGroup& group, int block_length, int steps) {
  const int n = static_cast<int>(group.degree()), order = static_cast<int>(group.order());
  const auto m = static_cast<std::size_t>(block_length);
  BlockPayments pay{std::vector<int>(static_cast<std::size_t>(order) * m, 0),
                    std::vector<int>(static_cast<std::size_t>(order) * m, 0)};
  for (int b = 0; b < order; ++b) {
    // (a g(a)) g fixes a and has one cycle more, so g = (a g(a)) ((a g(a)) g) peels one swap per step: g = s_1 s_2 ...
    Permutation rest = group.permutation(b);
    std::vector<GroupElement> swaps;
    for (int a = 0; a < n; ++a)
      if (rest[static_cast<std::size_t>(a)] != a) {
        const Permutation swap = transposition(n, a, rest[static_cast<std::size_t>(a)]);
        swaps.push_back(group.element_of(swap));
        rest = compose_permutations(swap, rest);
      }
    const std::size_t row = static_cast<std::size_t>(b) * m;
    for (std::size_t j = 0; j < m; ++j) {
      GroupElement c = 0;
      for (std::size_t s = j * static_cast<std::size_t>(steps);
           s < std::min(swaps.size(), (j + 1) * static_cast<std::size_t>(steps)); ++s)
        c = group.multiply(c, swaps[s]);
      pay.piece[row + j] = static_cast<int>(c);
    }
    GroupElement left = 0;
    for (std::size_t j = m; j-- > 0;) {
      pay.remaining[row + j] = static_cast<int>(left);
      left = group.multiply(pay.piece[row + j], left);
    }
  }
  return pay;
}

/// Two mirrors at angle pi / q (Householder directions) and a start point on neither: reflecting in them by turns
/// visits 2q states, and their product is a rotation by 2 pi / q. In the plane, exact in binary for q = 1, 2, 4;
/// q = 3 uses the swaps (1 2) and (2 3) of R^3, exact too.
struct MirrorPair {
  std::vector<double> first, second, start;
};

inline MirrorPair mirror_pair(int q) {
  if (q == 3) return {{1.0, -1.0, 0.0}, {0.0, 1.0, -1.0}, {1.0, 2.0, 3.0}};
  const double angle = std::numbers::pi / q;  // the second mirror is the line at this angle
  return {{0.0, 1.0}, {snap(std::sin(angle)), snap(-std::cos(angle))}, {2.0, 1.0}};
}

inline std::vector<double> reflect(const std::vector<double>& x, const std::vector<double>& u) {
  double ux = 0.0, uu = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) ux += u[i] * x[i], uu += u[i] * u[i];
  std::vector<double> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = snap(x[i] - 2.0 * ux / uu * u[i]);
  return y;
}

/// The layers that count the position t mod `period` (even) with `steps` reflections per token; the last one decodes
/// to t mod period, t = 0 for the first token. steps >= 2: one layer rotating by 2 pi / period. steps = 1: a parity
/// layer (decoding to (t + 1) mod 2), then mirrors at pi / (period / 2) taken by turns, the first at even t.
inline std::vector<ConstructionLayer> position_counter(int period, int steps, bool& has_non_unit) {
  std::vector<ConstructionLayer> layers;
  if (steps == 1) layers.push_back(scalar_flip_layer("position parity", ScalarFlip::reflection, has_non_unit));
  const MirrorPair mirrors = mirror_pair(steps == 1 ? period / 2 : period);
  const int dim = static_cast<int>(mirrors.start.size());
  ConstructionLayer counter{
      .description = "t mod " + std::to_string(period), .key_dim = dim, .initial_state = mirrors.start};
  // Codeword k: the state after token k, k + 1 reflections (steps = 1) or rotations from the start; the start is
  // also the state after token period - 1.
  std::vector<double> state = mirrors.start;
  for (int k = 0; k < period; ++k) {
    if (steps == 1) {
      state = reflect(state, k % 2 == 0 ? mirrors.first : mirrors.second);
    } else {
      state = reflect(reflect(state, mirrors.first), mirrors.second);
    }
    counter.codebook.push_back(state);
  }
  if (steps == 1)
    set_letters(counter, {{reflection(mirrors.first)}, {reflection(mirrors.second)}}, has_non_unit);
  else
    set_letters(counter, {{reflection(mirrors.first), reflection(mirrors.second)}}, has_non_unit);
  layers.push_back(std::move(counter));
  return layers;
}

}  // namespace detail

/// S_n with `householder_steps` = n_h reflections per token in a fixed number of layers whatever n: three layers for
/// n_h >= 2, four for n_h = 1 (see the file comment; a construction in the spirit of DP's multi-layer statement).
/// Decoded indices: [parity (n_h = 1)] [t mod 2m] [2m buffer slots: token, or n! when empty] [top element].
inline Construction symmetric_group_in_layers(int n, int householder_steps) {
  if (n < 2 || n > 7) detail::argument_error("n", "2 <= n <= 7 (S_n with a multiplication table)", std::to_string(n));
  if (householder_steps < 1)
    detail::argument_error("householder_steps", "at least 1", std::to_string(householder_steps));
  const FiniteGroup group = FiniteGroup::symmetric(n);
  const int order = static_cast<int>(group.order());
  const int m = (n - 1 + householder_steps - 1) / householder_steps;  // ceil((n - 1) / n_h) tokens per block
  const int slots = 2 * m;
  const int counter_layers = householder_steps == 1 ? 2 : 1;

  const std::string counter = "t mod " + std::to_string(slots) + (householder_steps == 1 ? " (2 layers)" : "");
  Construction c{.task = group.name(),
                 .method = counter + ", " + std::to_string(slots) + "-token buffer, swaps",
                 .theorem = householder_steps == 1 ? "DP (S_n, 4 layers, n_h = 1)" : "DP (S_n, 3 layers, n_h >= 2)",
                 .input_letters = order,
                 .initial_label = 0};
  c.next_label = [group](int label, int letter) { return static_cast<int>(group.multiply(label, letter)); };
  c.layers = detail::position_counter(slots, std::min(householder_steps, 2), c.has_non_unit_keys);

  // Buffer: letter s * n! + g writes token g into slot s; a slot decodes to its token, or to n! when empty.
  ConstructionLayer buffer{.description = std::to_string(slots) + " slots of one-line tokens",
                           .key_dim = slots,
                           .value_dim = n,
                           .initial_state = std::vector<double>(static_cast<std::size_t>(slots * n), 0.0),
                           .slots = slots};
  std::vector<std::vector<HouseholderFactor>> writes;
  for (int s = 0; s < slots; ++s)
    for (int g = 0; g < order; ++g) {
      std::vector<double> key(static_cast<std::size_t>(slots), 0.0);
      key[static_cast<std::size_t>(s)] = 1.0;
      writes.push_back({{key, 1.0, detail::permutation_codeword(group.permutation(g))}});
    }
  for (int g = 0; g < order; ++g) buffer.codebook.push_back(detail::permutation_codeword(group.permutation(g)));
  buffer.codebook.push_back(std::vector<double>(static_cast<std::size_t>(n), 0.0));
  detail::set_letters(buffer, std::move(writes), c.has_non_unit_keys);
  c.layers.push_back(std::move(buffer));

  // Top: the permutations of at most n_h swaps as letters; every element as a codeword.
  ConstructionLayer top = detail::permutation_layer(n);
  std::vector<int> letter_of_element(static_cast<std::size_t>(order), -1);
  std::vector<std::vector<HouseholderFactor>> letters;
  for (int g = 0; g < order; ++g) {
    const Permutation p = group.permutation(g);
    top.codebook.push_back(detail::permutation_codeword(p));
    if (detail::swap_count(p) > householder_steps) continue;
    letter_of_element[static_cast<std::size_t>(g)] = static_cast<int>(letters.size());
    letters.push_back(detail::swaps_of(p));
  }
  const auto top_letter = std::make_shared<const std::vector<int>>(std::move(letter_of_element));
  detail::set_letters(top, std::move(letters), c.has_non_unit_keys);
  c.layers.push_back(std::move(top));

  const auto pay = std::make_shared<const detail::BlockPayments>(detail::block_payments(group, m, householder_steps));
  const int phase_at = counter_layers - 1, buffer_at = counter_layers, top_at = counter_layers + slots;
  // The product of the m slots from `first`; empty slots are the identity.
  auto block_product = [group, order, m](std::span<const int> decoded, int first) {
    GroupElement product = 0;
    for (int s = first; s < first + m; ++s) {
      const int token = decoded[static_cast<std::size_t>(s)];
      if (token >= 0 && token < order) product = group.multiply(product, token);
    }
    return static_cast<int>(product);
  };
  c.layer_letter = [=](int layer, int letter, std::span<const int> lower) {
    for (int d : lower)
      if (d < 0) return 0;  // a lower layer decoded nothing: any letter; the label is undecodable anyway
    if (layer < counter_layers) {
      if (counter_layers == 1) return 0;                // the rotation, at every token
      return layer == 0 ? 1 : (lower[0] == 1 ? 0 : 1);  // flip the parity; the first mirror after an even t
    }
    const int phase = lower[static_cast<std::size_t>(phase_at)];
    if (layer == counter_layers) return phase * order + letter;  // the buffer writes slot t mod 2m
    const int previous = phase < m ? buffer_at + m : buffer_at;
    const int b = block_product(lower, previous);
    return (*top_letter)[static_cast<std::size_t>(pay->piece[static_cast<std::size_t>(b * m + phase % m)])];
  };
  c.label_of = [=](std::span<const int> decoded) {
    const int phase = decoded[static_cast<std::size_t>(phase_at)], j = phase % m;
    const int b = block_product(decoded, phase < m ? buffer_at + m : buffer_at);
    const int current = buffer_at + phase - j;  // the current block's first slot
    GroupElement label =
        group.multiply(decoded[static_cast<std::size_t>(top_at)], pay->remaining[static_cast<std::size_t>(b * m + j)]);
    for (int s = current; s <= current + j; ++s) {
      const int token = decoded[static_cast<std::size_t>(s)];
      if (token < order) label = group.multiply(label, token);
    }
    return static_cast<int>(label);
  };
  return c;
}

}  // namespace deltaproduct
