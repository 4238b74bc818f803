// The papers' constructions as data (theory/construction.hpp). References:
//   UST = Grazzi et al., "Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues" (ICLR 2025);
//   DP  = Siems et al., "DeltaProduct: Improving State-Tracking in Linear RNNs via Householder Products".
// Group elements act on the state from the left: S_t = A(x_t) S_{t-1}. Labels compose left to right
// (label_t = label_{t-1} * x_t), so a representation rho with rho(a b) = rho(a) rho(b) is used as
// A(x) = rho(x)^T, giving S_t = rho(label_t)^T S_0.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <numbers>
#include <string>
#include <vector>

#include "deltaproduct/groups/finite_group.hpp"
#include "deltaproduct/theory/construction.hpp"

namespace deltaproduct {

/// A dense d x d matrix of doubles, row-major.
struct DenseMatrix {
  int dim = 0;
  std::vector<double> entries;

  double operator()(int i, int j) const { return entries[static_cast<std::size_t>(i * dim + j)]; }
  double& operator()(int i, int j) { return entries[static_cast<std::size_t>(i * dim + j)]; }

  static DenseMatrix identity(int d) {
    DenseMatrix m{d, std::vector<double>(static_cast<std::size_t>(d * d), 0.0)};
    for (int i = 0; i < d; ++i) m(i, i) = 1.0;
    return m;
  }
  DenseMatrix transposed() const {
    DenseMatrix t{dim, entries};
    for (int i = 0; i < dim; ++i)
      for (int j = 0; j < dim; ++j) t(i, j) = (*this)(j, i);
    return t;
  }
  friend DenseMatrix operator*(const DenseMatrix& a, const DenseMatrix& b) {
    DenseMatrix c{a.dim, std::vector<double>(a.entries.size(), 0.0)};
    for (int i = 0; i < a.dim; ++i)
      for (int k = 0; k < a.dim; ++k)
        for (int j = 0; j < a.dim; ++j) c(i, j) += a(i, k) * b(k, j);
    return c;
  }
  std::vector<double> apply(const std::vector<double>& x) const {
    std::vector<double> y(static_cast<std::size_t>(dim), 0.0);
    for (int i = 0; i < dim; ++i)
      for (int j = 0; j < dim; ++j) y[i] += (*this)(i, j) * x[j];
    return y;
  }
};

/// Householder directions u_1..u_r, in the order they act (C_1 first), with
/// A = (I - 2 u_r u_r^T/|u_r|^2) ... (I - 2 u_1 u_1^T/|u_1|^2), for an orthogonal A. Column by column, reflect the
/// current column onto e_i (u = A e_i - e_i); at most d reflections, and at most 2 for a rotation in 3-D.
inline std::vector<std::vector<double>> reflections_of(const DenseMatrix& a) {
  DenseMatrix m = a;
  std::vector<std::vector<double>> found;  // H_1, H_2, ... with H_r ... H_1 A = I, so A = H_1 ... H_r
  for (int i = 0; i < m.dim; ++i) {
    std::vector<double> u(static_cast<std::size_t>(m.dim));
    double norm2 = 0.0;
    for (int r = 0; r < m.dim; ++r) {
      u[r] = m(r, i) - (r == i ? 1.0 : 0.0);
      norm2 += u[r] * u[r];
    }
    if (norm2 < 1e-20) continue;
    DenseMatrix h = DenseMatrix::identity(m.dim);
    for (int r = 0; r < m.dim; ++r)
      for (int c = 0; c < m.dim; ++c) h(r, c) -= 2.0 * u[r] * u[c] / norm2;
    m = h * m;
    found.push_back(u);
  }
  std::reverse(found.begin(), found.end());  // H_r acts first
  return found;
}

namespace detail {

inline std::vector<HouseholderFactor> pad_factors(std::vector<HouseholderFactor> factors, int steps, int dim) {
  std::vector<double> e0(static_cast<std::size_t>(dim), 0.0);
  e0[0] = 1.0;
  while (static_cast<int>(factors.size()) < steps) factors.push_back({e0, 0.0, {}});  // beta = 0: identity
  return factors;
}

/// x, or the nearest multiple of 1/8 when x is within 1e-12 of it: cos(pi/2) computed in double is 6e-17, and
/// the exact constructions (D4, Z4, the cube) need their 0 and +-1 entries exactly.
inline double snap(double x) {
  const double r = std::round(x * 8.0) / 8.0;
  return std::abs(x - r) < 1e-12 ? r : x;
}

/// A reflection I - 2 u u^T/|u|^2. Directions whose nonzero entries have equal magnitude, such as
/// (1/sqrt 2, -1/sqrt 2), are given as +-1 vectors, so the raw key form is exact (beta' = 2/|u|^2).
inline HouseholderFactor reflection(std::vector<double> direction) {
  double largest = 0.0;
  for (double& x : direction) largest = std::max(largest, std::abs(x = snap(x)));
  bool equal_magnitudes = largest > 0.0;
  for (double x : direction)
    if (x != 0.0 && std::abs(std::abs(x) / largest - 1.0) > 1e-12) equal_magnitudes = false;
  if (equal_magnitudes)
    for (double& x : direction) x = x == 0.0 ? 0.0 : (x > 0.0 ? 1.0 : -1.0);
  return {std::move(direction), 2.0, {}};
}

inline bool is_unit(const std::vector<double>& u) {
  double n2 = 0.0;
  for (double x : u) n2 += x * x;
  return n2 == 1.0;
}

/// Fills the layer's letters from per-letter factor lists, padding to the most factors any letter needs.
inline void set_letters(ConstructionLayer& layer, std::vector<std::vector<HouseholderFactor>> letters,
                        bool& has_non_unit) {
  layer.householder_steps = 1;
  for (const auto& f : letters)
    layer.householder_steps = std::max<int>(layer.householder_steps, static_cast<int>(f.size()));
  for (auto& f : letters) {
    for (const auto& factor : f)
      if (factor.beta != 0.0 && !is_unit(factor.direction)) has_non_unit = true;
    layer.letters.push_back(pad_factors(std::move(f), layer.householder_steps, layer.key_dim));
  }
}

inline DenseMatrix rotation2(double angle) {
  const double c = snap(std::cos(angle)), s = snap(std::sin(angle));
  return DenseMatrix{2, {c, -s, s, c}};
}
inline DenseMatrix reflection2(double angle) {  // across the line at angle/2: [[cos a, sin a], [sin a, -cos a]]
  const double c = snap(std::cos(angle)), s = snap(std::sin(angle));
  return DenseMatrix{2, {c, s, s, -c}};
}

/// How a one-channel layer (K = V = 1, unit key) flips between two states on its letter 1 (letter 0 keeps it).
enum class ScalarFlip {
  reflection,  ///< h <- -h (beta = 2, v = 0) from h = 1: states 1 and -1
  toggle,      ///< h <- 1 - h (beta = 2, v = 1/2) from h = 0: states 0 and 1 (UST section 4.1)
};

/// The two-state layer the parity constructions and the multi-layer ones share; decoded index = flips mod 2.
inline ConstructionLayer scalar_flip_layer(std::string description, ScalarFlip flip, bool& has_non_unit) {
  const bool toggle = flip == ScalarFlip::toggle;
  ConstructionLayer layer{.description = std::move(description),
                          .initial_state = {toggle ? 0.0 : 1.0},
                          .codebook = {{toggle ? 0.0 : 1.0}, {toggle ? 1.0 : -1.0}}};
  const std::vector<double> flip_value = toggle ? std::vector<double>{0.5} : std::vector<double>{};
  set_letters(layer, {{{{1.0}, 0.0, {}}}, {{{1.0}, 2.0, flip_value}}}, has_non_unit);
  return layer;
}

/// The swaps whose product is A = M(p)^T = M(p^{-1}), with M(p) e_x = e_{p(x)}, C_1 first: a cycle
/// (a1 a2 ... ak) of p^{-1} is (a1 ak) ... (a1 a3)(a1 a2), (a1 a2) acting first. A permutation of d points in c
/// cycles takes d - c swaps, I - 2 u u^T with u = (e_i - e_j)/sqrt(2), given as u = e_i - e_j.
inline std::vector<HouseholderFactor> swaps_of(const Permutation& p) {
  const std::size_t d = p.size();
  std::vector<int> inverse(d);
  for (std::size_t x = 0; x < d; ++x) inverse[static_cast<std::size_t>(p[x])] = static_cast<int>(x);
  std::vector<bool> done(d, false);
  std::vector<HouseholderFactor> factors;
  for (std::size_t start = 0; start < d; ++start) {
    if (done[start]) continue;
    for (std::size_t x = start; !done[x]; x = static_cast<std::size_t>(inverse[x])) {
      done[x] = true;
      if (x != start) {
        std::vector<double> u(d, 0.0);
        u[start] = 1.0;
        u[x] = -1.0;
        factors.push_back(reflection(u));
      }
    }
  }
  return factors;
}

/// The state M(p)^T (1, ..., d): entry x is p(x) + 1.
inline std::vector<double> permutation_codeword(const Permutation& p) {
  std::vector<double> word(p.size());
  for (std::size_t x = 0; x < p.size(); ++x) word[x] = p[x] + 1.0;
  return word;
}

/// A layer of permutation matrices of d points, K = d, V = 1, from the state (1, ..., d); letters and codebook empty.
inline ConstructionLayer permutation_layer(int d) {
  ConstructionLayer layer{.description = "K = " + std::to_string(d) + ", V = 1", .key_dim = d};
  for (int i = 0; i < d; ++i) layer.initial_state.push_back(i + 1.0);
  return layer;
}

}  // namespace detail

/// Parity with one DeltaNet factor (UST Thm 1 and Thm 3): a fixed unit key, beta = 2 on a 1 and beta = 0 on a 0,
/// value 0, state 1 along the key. Each 1 reflects the state: eigenvalue -1, which [0, 1] cannot give.
inline Construction parity_by_reflection() {
  Construction c{.task = "parity",
                 .method = "reflect on 1 (beta = 2, v = 0)",
                 .theorem = "UST Thm 1, 3",
                 .input_letters = 2,
                 .initial_label = 0};
  c.next_label = [](int label, int letter) { return label ^ letter; };
  c.layers = {detail::scalar_flip_layer("K = V = 1", detail::ScalarFlip::reflection, c.has_non_unit_keys)};
  c.label_of = [](std::span<const int> d) { return d[0]; };
  return c;
}

/// Parity by the toggle h <- 1 - h (k = 1, beta = 2, v = 1/2) on a 1 (UST section 4.1): affine, states 0 and 1.
inline Construction parity_by_toggle() {
  Construction c{.task = "parity",
                 .method = "toggle h <- 1 - h (beta = 2, v = 1/2)",
                 .theorem = "UST §4.1",
                 .input_letters = 2,
                 .initial_label = 0};
  c.next_label = [](int label, int letter) { return label ^ letter; };
  c.layers = {detail::scalar_flip_layer("K = V = 1", detail::ScalarFlip::toggle, c.has_non_unit_keys)};
  c.label_of = [](std::span<const int> d) { return d[0]; };
  return c;
}

/// The word problem of any finite group through a faithful permutation representation (UST Thm 3): each letter's
/// permutation matrix (transposed) as a product of swaps I - 2 u u^T, u = (e_i - e_j)/sqrt(2); a permutation of
/// d points in c cycles takes d - c swaps, so n_h = the most any letter needs (n - 1 for S_n). State (1, ..., d).
inline Construction permutation_construction(const FiniteGroup& group) {
  const int d = static_cast<int>(group.faithful_degree());
  Construction c{.task = group.name(),
                 .method = "permutation matrices as swaps",
                 .theorem = "UST Thm 3",
                 .input_letters = static_cast<int>(group.order()),
                 .initial_label = 0};
  c.next_label = [group](int label, int letter) { return static_cast<int>(group.multiply(label, letter)); };
  ConstructionLayer layer = detail::permutation_layer(d);
  std::vector<std::vector<HouseholderFactor>> letters;
  for (GroupElement g = 0; g < group.order(); ++g) {
    const auto p = group.faithful_permutation(g);
    letters.push_back(detail::swaps_of(p));
    layer.codebook.push_back(detail::permutation_codeword(p));
  }
  detail::set_letters(layer, std::move(letters), c.has_non_unit_keys);
  c.layers = {layer};
  c.label_of = [](std::span<const int> decoded) { return decoded[0]; };
  return c;
}

/// A finite group of orthogonal matrices given by generators; elements in discovery order (identity first).
struct MatrixGroup {
  std::vector<DenseMatrix> elements;
  std::vector<std::vector<int>> product;  ///< product[a][b] = index of elements[a] * elements[b]
};

inline MatrixGroup matrix_group_closure(const std::vector<DenseMatrix>& generators, std::size_t max_order = 1000) {
  auto key = [](const DenseMatrix& m) {
    std::vector<long long> k;
    for (double x : m.entries) k.push_back(std::llround(x * 1e6));
    return k;
  };
  MatrixGroup g;
  std::map<std::vector<long long>, int> index;
  g.elements.push_back(DenseMatrix::identity(generators.at(0).dim));
  index[key(g.elements[0])] = 0;
  for (std::size_t i = 0; i < g.elements.size(); ++i)
    for (const auto& gen : generators) {
      DenseMatrix m = g.elements[i] * gen;
      for (double& x : m.entries) x = detail::snap(x);
      if (index.emplace(key(m), static_cast<int>(g.elements.size())).second) g.elements.push_back(m);
      if (g.elements.size() > max_order)
        throw Error("matrix_group_closure: more than " + std::to_string(max_order) + " elements");
    }
  const std::size_t n = g.elements.size();
  g.product.assign(n, std::vector<int>(n));
  for (std::size_t a = 0; a < n; ++a)
    for (std::size_t b = 0; b < n; ++b) {
      DenseMatrix m = g.elements[a] * g.elements[b];
      for (double& x : m.entries) x = detail::snap(x);
      g.product[a][b] = index.at(key(m));
    }
  return g;
}

/// The word problem of a matrix group with one layer: each letter rho(x)^T as the fewest reflections the greedy
/// decomposition finds (2 for rotations in 2-D and 3-D: DP's n_h = 2 for subgroups of O(2) and SO(3)).
inline Construction matrix_group_construction(std::string task, std::string method, std::string theorem,
                                              const MatrixGroup& group, const std::vector<double>& initial) {
  const int d = group.elements.at(0).dim;
  Construction c{.task = std::move(task),
                 .method = std::move(method),
                 .theorem = std::move(theorem),
                 .input_letters = static_cast<int>(group.elements.size()),
                 .initial_label = 0};
  auto table = std::make_shared<std::vector<std::vector<int>>>(group.product);
  c.next_label = [table](int label, int letter) { return (*table)[label][letter]; };
  ConstructionLayer layer{
      .description = "K = " + std::to_string(d) + ", V = 1", .key_dim = d, .initial_state = initial};
  std::vector<std::vector<HouseholderFactor>> letters;
  for (const auto& m : group.elements) {
    std::vector<HouseholderFactor> factors;
    for (auto& u : reflections_of(m.transposed())) factors.push_back(detail::reflection(u));
    letters.push_back(std::move(factors));
    layer.codebook.push_back(m.transposed().apply(initial));
  }
  detail::set_letters(layer, std::move(letters), c.has_non_unit_keys);
  c.layers = {layer};
  c.label_of = [](std::span<const int> decoded) { return decoded[0]; };
  return c;
}

/// Z_m as rotations of the plane by 2 pi w / m, each the product of two reflections (n_h = 2; UST App. C.1).
inline Construction cyclic_by_rotations(int m) {
  auto g = matrix_group_closure({detail::rotation2(2.0 * std::numbers::pi / m)});
  return matrix_group_construction("Z" + std::to_string(m), "2-D rotations, 2 reflections each", "UST Thm 3, App. C.1",
                                   g, {1.0, 0.0});
}

/// D_n as the symmetries of the n-gon in the plane: rotations take 2 reflections, reflections 1 (n_h = 2).
inline Construction dihedral_in_plane(int n) {
  auto g = matrix_group_closure({detail::rotation2(2.0 * std::numbers::pi / n), detail::reflection2(0.0)});
  return matrix_group_construction("D" + std::to_string(n), "2-D symmetries, <= 2 reflections", "DP (O(2), n_h = 2)", g,
                                   {2.0, 1.0});
}

/// S4 as the rotations of the cube (24 signed permutation matrices of determinant 1): n_h = 2, exact keys.
inline Construction s4_as_cube_rotations() {
  const DenseMatrix quarter_z{3, {0, -1, 0, 1, 0, 0, 0, 0, 1}}, quarter_x{3, {1, 0, 0, 0, 0, -1, 0, 1, 0}};
  return matrix_group_construction("S4", "cube rotations in 3-D, 2 reflections", "DP (SO(3), n_h = 2)",
                                   matrix_group_closure({quarter_z, quarter_x}), {1.0, 2.0, 3.0});
}

/// A5 as the rotations of the icosahedron (60 matrices with the golden ratio): n_h = 2, never exact in binary.
inline Construction a5_as_icosahedral_rotations() {
  const double phi = std::numbers::phi, inv = 1.0 / phi;
  const DenseMatrix order3{3, {0, 0, 1, 1, 0, 0, 0, 1, 0}};
  const DenseMatrix order5{3, {0.5, -0.5 * phi, 0.5 * inv, 0.5 * phi, 0.5 * inv, -0.5, 0.5 * inv, 0.5, 0.5 * phi}};
  return matrix_group_construction("A5", "icosahedron rotations in 3-D, 2 reflections", "DP (SO(3), n_h = 2)",
                                   matrix_group_closure({order3, order5}), {1.0, 2.0, 3.0});
}

/// Z_m with two layers of one reflection each (UST Thm 6). Layer 1 tracks the position's parity p_t with the toggle
/// h <- 1 - h; layer 2 applies H(theta(x_t, p_t)), theta(i, 1) = (1 - 2i) pi/m, theta(i, 0) = (1 + 2i) pi/m,
/// H(a) = [[cos a, sin a], [sin a, -cos a]], from h_0 = (1, 0). After t tokens with sum s the state is
/// R(2 pi s/m) h_0 for even t and H((1 - 2s) pi/m) h_0 for odd t: 2m codewords.
inline Construction cyclic_by_two_reflection_layers(int m) {
  Construction c{.task = "Z" + std::to_string(m),
                 .method = "2 layers, 1 reflection each",
                 .theorem = "UST Thm 6",
                 .input_letters = m,
                 .initial_label = 0};
  c.next_label = [m](int label, int letter) { return (label + letter) % m; };
  auto position = detail::scalar_flip_layer("position parity", detail::ScalarFlip::toggle, c.has_non_unit_keys);
  ConstructionLayer rotation{.description = "2-D reflections", .key_dim = 2, .initial_state = {1.0, 0.0}};
  std::vector<std::vector<HouseholderFactor>> letters;  // letter index = 2 x + p
  for (int x = 0; x < m; ++x)
    for (int p = 0; p < 2; ++p) {
      const double theta = (p == 1 ? 1.0 - 2.0 * x : 1.0 + 2.0 * x) * std::numbers::pi / m;
      letters.push_back({detail::reflection({std::sin(theta / 2), -std::cos(theta / 2)})});
    }
  for (int p = 0; p < 2; ++p)
    for (int s = 0; s < m; ++s) {
      const double a = p == 0 ? 2.0 * std::numbers::pi * s / m : (1.0 - 2.0 * s) * std::numbers::pi / m;
      rotation.codebook.push_back({std::cos(a), std::sin(a)});
    }
  rotation.blocks = 2;
  rotation.codebook_block = [](std::span<const int> lower) { return lower[0]; };
  detail::set_letters(rotation, std::move(letters), c.has_non_unit_keys);
  c.layers = {position, rotation};
  c.layer_letter = [](int layer, int letter, std::span<const int> lower) {
    return layer == 0 ? 1 : 2 * letter + lower[0];  // layer 1 toggles at every token
  };
  c.label_of = [](std::span<const int> decoded) { return decoded[1]; };
  return c;
}

/// D_n with two DeltaNet layers (n_h = 1). Layer 1 tracks e_t = t + (reflection letters so far) mod 2; layer 2
/// applies A_t = S^{e_t} rho(x_t)^T S^{e_{t-1}}, which has determinant -1 and so is one reflection; the product
/// telescopes to S^{e_t} rho(x_1 ... x_t)^T. S is a fixed reflection of the plane.
inline Construction dihedral_two_layers(int n) {
  const FiniteGroup group = FiniteGroup::dihedral(n);
  Construction c{.task = group.name(),
                 .method = "2 layers, 1 reflection each",
                 .theorem = "DP (dihedral, 2 layers)",
                 .input_letters = static_cast<int>(group.order()),
                 .initial_label = 0};
  c.next_label = [group](int label, int letter) { return static_cast<int>(group.multiply(label, letter)); };
  auto is_reflection = [n](int element) { return element >= n; };  // r^i s^j has index i + n j
  // rho: r -> rotation by 2 pi/n, s -> x |-> -x (reflection across the first axis), as on the n-gon's vertices.
  auto rho = [n](int element) {
    const int i = element % n, j = element / n;
    return detail::rotation2(2.0 * std::numbers::pi * i / n) *
           (j ? detail::reflection2(0.0) : DenseMatrix::identity(2));
  };
  const DenseMatrix S = detail::reflection2(2.0 * std::numbers::pi / (4.0 * n));  // a reflection outside D_n
  const std::vector<double> h0{2.0, 1.0};

  auto parity = detail::scalar_flip_layer("e_t parity", detail::ScalarFlip::toggle, c.has_non_unit_keys);
  ConstructionLayer plane{.description = "2-D reflections", .key_dim = 2, .initial_state = h0};
  std::vector<std::vector<HouseholderFactor>> letters;  // letter index = 2 x + e_t
  for (int x = 0; x < group.order(); ++x)
    for (int e = 0; e < 2; ++e) {
      const int previous = (e + 1 + (is_reflection(x) ? 1 : 0)) % 2;
      const DenseMatrix a =
          (e ? S : DenseMatrix::identity(2)) * rho(x).transposed() * (previous ? S : DenseMatrix::identity(2));
      std::vector<HouseholderFactor> factors;
      for (auto& u : reflections_of(a)) factors.push_back(detail::reflection(u));
      letters.push_back(std::move(factors));
    }
  for (int e = 0; e < 2; ++e)
    for (int g = 0; g < group.order(); ++g)
      plane.codebook.push_back(((e ? S : DenseMatrix::identity(2)) * rho(g).transposed()).apply(h0));
  plane.blocks = 2;
  plane.codebook_block = [](std::span<const int> lower) { return lower[0]; };
  detail::set_letters(plane, std::move(letters), c.has_non_unit_keys);
  c.layers = {parity, plane};
  c.layer_letter = [n](int layer, int letter, std::span<const int> lower) {
    if (layer == 0) return letter >= n ? 0 : 1;  // rotations toggle e, reflections keep it
    return 2 * letter + lower[0];
  };
  c.label_of = [](std::span<const int> decoded) { return decoded[1]; };
  return c;
}

/// A two-layer Krohn-Rhodes cascade with a reset (UST Thm 4): layer 1 is a flip-flop (letters: read, set 0,
/// set 1), a reset to state q being two factors k = e_j, beta = 1, v = [j == q] (A = 0, B = e_q: betas in [0, 1]);
/// layer 2 counts mod 2 the reads made while the flip-flop holds 1 (a reflection). Label = 2 * flip-flop + count.
inline Construction flip_flop_cascade() {
  Construction c{.task = "flip-flop x Z2",
                 .method = "reset layer + reflection layer",
                 .theorem = "UST Thm 4",
                 .input_letters = 3,
                 .initial_label = 0};
  c.next_label = [](int label, int letter) {
    int stored = label / 2, count = label % 2;
    if (letter == 0)
      count ^= stored;
    else
      stored = letter - 1;
    return 2 * stored + count;
  };
  ConstructionLayer flip_flop{
      .description = "reset to e_q", .key_dim = 2, .initial_state = {1.0, 0.0}, .codebook = {{1.0, 0.0}, {0.0, 1.0}}};
  auto set = [](int q) {
    return std::vector<HouseholderFactor>{{{1.0, 0.0}, 1.0, {q == 0 ? 1.0 : 0.0}},
                                          {{0.0, 1.0}, 1.0, {q == 1 ? 1.0 : 0.0}}};
  };
  detail::set_letters(flip_flop, {{}, set(0), set(1)}, c.has_non_unit_keys);
  auto counter = detail::scalar_flip_layer("reflection", detail::ScalarFlip::reflection, c.has_non_unit_keys);
  c.layers = {flip_flop, counter};
  c.layer_letter = [](int layer, int letter, std::span<const int> lower) {
    return layer == 0 ? letter : (letter == 0 && lower[0] == 1 ? 1 : 0);
  };
  c.label_of = [](std::span<const int> decoded) { return 2 * decoded[0] + decoded[1]; };
  return c;
}

}  // namespace deltaproduct
