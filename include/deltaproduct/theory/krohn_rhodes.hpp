// Any finite automaton as a cascade of permutation-reset layers (UST Thm 4, through the Krohn-Rhodes theorem in its
// holonomy form), built for the automaton the caller gives and run as DeltaProduct layers.
//
// What this relies on. UST (Grazzi et al., "Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues")
// proves Thm 4 by citing the Krohn-Rhodes theorem: every automaton is a homomorphic image of a cascade of
// permutation-reset automata, each of which one LRNN layer implements (a permutation as swaps, a reset as A = 0 with
// B = e_q). The decomposition below is the holonomy decomposition (Eilenberg; Zeiger), written from its definitions;
// its correctness argument is in the comments, and the tests check every configuration it can reach.
//
// The objects. X = {Q} u {Q.w : w a word} u {{q}}: the images of the state set, and the singletons; letters act on
// the right, and X is closed under them. A subducts B (A <= B) when A is inside some image B.w; the classes of
// mutual subduction are the strongly connected parts of the letters' action on X. The height of a singleton is 0,
// that of a larger set 1 + the largest height strictly below it. The tiles of a set are the largest members of X
// strictly inside it. Each class has a representative R and, for each member A, a word sigma_A mapping A onto R and
// a word tau_A mapping R back onto A, inverse to each other there.
//
// The cascade. Level l (1 .. H, H = height of Q) holds a tile of a representative of height l. A state of the
// automaton is a chain: start at R = Q; at the level of R's height pick a tile T of R holding the point, then go on
// in rep(T) (the point mapped by sigma_T), down to a singleton. Levels the chain skips hold anything.
//
// A letter, top down, with the old chain's current set R, the new chain's current set R' and a word t mapping the
// old point into R' (R.t inside R'; at the top R = R' = Q, t = the letter). At a level where the new chain has a set:
//   - if R.t = R', then R = R' (equal heights and R' <= R make them one class) and t permutes R, hence R's tiles:
//     the level applies that permutation (a holonomy group element) to its old tile;
//   - else R.t is a member of X strictly inside R', so inside a tile of R': the level resets to that tile.
// Then each chain goes down a level: the old through tau of its tile, the new through sigma of its new tile, and t
// becomes tau_T t sigma_T'. Every level's map is a permutation or a constant, and which one depends only on the
// letter and the levels above.
//
// As layers. A layer at level l is one-hot over its tiles (K = their number, V = 1): a permutation is at most K - 1
// swaps (beta = 2), a reset K factors k = e_j, beta = 1, v = [j == target] (A = 0, B = e_target). The map depends on
// the levels above before the letter, while a layer reads the layers below it after the letter. When the new values
// above do not determine the map (checked over every reachable configuration), each level but the last is followed
// by a delay layer: two rows (the level's value now and one token ago), a swap of the rows and a write of the new
// value, two factors per token.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "deltaproduct/core/error.hpp"
#include "deltaproduct/groups/permutation.hpp"
#include "deltaproduct/theory/construction.hpp"
#include "deltaproduct/theory/constructions.hpp"

namespace deltaproduct {

/// A finite automaton: states 0 .. states - 1, letters acting on the right (transitions[a][q] = the state after
/// reading a in q), and a start state. Its labels are its states.
struct Automaton {
  std::string name = {};
  int states = 0;
  int initial_state = 0;
  std::vector<std::vector<int>> transitions = {};

  int letters() const { return static_cast<int>(transitions.size()); }
};

/// Throws ArgumentError naming what is wrong with an automaton.
inline void check_automaton(const Automaton& a) {
  if (a.states < 1 || a.states > 16)
    detail::argument_error("automaton.states", "1 to 16", std::to_string(a.states));
  if (a.initial_state < 0 || a.initial_state >= a.states)
    detail::argument_error("automaton.initial_state", "a state in [0, " + std::to_string(a.states) + ")",
                           std::to_string(a.initial_state));
  if (a.transitions.empty()) detail::argument_error("automaton.transitions", "at least one letter", "none");
  for (std::size_t letter = 0; letter < a.transitions.size(); ++letter) {
    const auto& map = a.transitions[letter];
    const std::string name = "automaton.transitions[" + std::to_string(letter) + "]";
    if (static_cast<int>(map.size()) != a.states)
      detail::argument_error(name, std::to_string(a.states) + " entries", std::to_string(map.size()));
    for (int q : map)
      if (q < 0 || q >= a.states)
        detail::argument_error(name, "states in [0, " + std::to_string(a.states) + ")", std::to_string(q));
  }
}

/// A few automata with resets and groups mixed, for the report and the tests.
namespace automata {

/// flip-flop x Z2 (the hand-made cascade's automaton): state 2 * stored + count; letters read, set 0, set 1; a read
/// adds the stored bit to the count mod 2.
inline Automaton flip_flop_counter() {
  return {"flip-flop x Z2", 4, 0, {{0, 1, 3, 2}, {0, 1, 0, 1}, {2, 3, 2, 3}}};
}

/// A counter mod m with a reset: letters +1 and reset to 0. Real eigenvalues cannot count mod 3 (UST Thm 2), so
/// the cascade needs a level whose holonomy group is Z_m (done with swaps).
inline Automaton counter_with_reset(int m) {
  if (m < 2 || m > 16) detail::argument_error("m", "2 to 16", std::to_string(m));
  Automaton a{"Z" + std::to_string(m) + " + reset", m, 0, {std::vector<int>(m), std::vector<int>(m, 0)}};
  for (int q = 0; q < m; ++q) a.transitions[0][static_cast<std::size_t>(q)] = (q + 1) % m;
  return a;
}

/// Every map of n points to themselves (the full transformation monoid T_n): generated by a cycle, a swap and a
/// merge of two points.
inline Automaton full_transformations(int n) {
  if (n < 2 || n > 16) detail::argument_error("n", "2 to 16", std::to_string(n));
  Automaton a{"T" + std::to_string(n), n, 0, std::vector<std::vector<int>>(3, std::vector<int>(n))};
  for (int q = 0; q < n; ++q) {
    const auto i = static_cast<std::size_t>(q);
    a.transitions[0][i] = (q + 1) % n;
    a.transitions[1][i] = q < 2 ? 1 - q : q;
    a.transitions[2][i] = q == 1 ? 0 : q;
  }
  return a;
}

/// An automaton with random transitions (a fixed seed gives a fixed automaton).
inline Automaton random_automaton(int states, int letters, std::uint64_t seed) {
  if (states < 1 || states > 16) detail::argument_error("states", "1 to 16", std::to_string(states));
  if (letters < 1) detail::argument_error("letters", "at least 1", std::to_string(letters));
  Automaton a{"random " + std::to_string(states) + "x" + std::to_string(letters) + " #" + std::to_string(seed),
              states, 0, std::vector<std::vector<int>>(static_cast<std::size_t>(letters), std::vector<int>(states))};
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& map : a.transitions)
    for (int& q : map) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64
      q = static_cast<int>(x % static_cast<std::uint64_t>(states));
    }
  return a;
}

}  // namespace automata

/// The holonomy decomposition of an automaton: its levels, the coding of states as level values, and each
/// level's map (a permutation or a reset) for a letter and the levels above.
class HolonomyDecomposition {
 public:
  using Set = std::uint32_t;                  ///< a set of states, bit q for state q
  using Transformation = std::vector<int>;    ///< q -> t[q]

  /// What one letter does to one level: keep (the chain skips the level), permute the tiles, or reset to one.
  struct LevelMap {
    enum class Kind { keep, permute, reset } kind = Kind::keep;
    std::vector<int> permutation = {};  ///< for permute: value y -> permutation[y]
    int target = 0;                     ///< for reset
    bool operator<(const LevelMap& o) const {
      return std::tie(kind, permutation, target) < std::tie(o.kind, o.permutation, o.target);
    }
    bool operator==(const LevelMap& o) const = default;
    int apply(int value) const {
      return kind == Kind::keep ? value : kind == Kind::reset ? target : permutation[static_cast<std::size_t>(value)];
    }
  };

  /// Fails with ArgumentError when the automaton is malformed or has more than `max_images` images.
  explicit HolonomyDecomposition(const Automaton& automaton, std::size_t max_images = 1024)
      : automaton_(automaton) {
    check_automaton(automaton);
    const int n = automaton.states;
    full_ = (Set{1} << n) - 1;
    collect_images(max_images);
    find_classes();
    find_heights();
    find_representatives();
    find_tiles();
  }

  const Automaton& automaton() const { return automaton_; }
  /// H, the number of levels (0 for a one-state automaton).
  int levels() const { return static_cast<int>(level_tiles_.size()); }
  /// Values of level index i (0 = the top level, height H).
  int level_size(int i) const { return static_cast<int>(level_tiles_.at(static_cast<std::size_t>(i)).size()); }
  /// |X|: images of the state set and singletons.
  int images() const { return static_cast<int>(sets_.size()); }

  /// A coding of state q (levels the chain skips hold 0).
  std::vector<int> encode(int q) const {
    std::vector<int> values(static_cast<std::size_t>(levels()), 0);
    int current = index_of(full_);
    int point = q;
    for (int i = 0; i < levels(); ++i) {
      if (height_[static_cast<std::size_t>(current)] != height_of_level(i)) continue;
      int value = -1;
      for (int v = 0; v < level_size(i) && value < 0; ++v) {
        const auto& [rep, tile] = level_tiles_[static_cast<std::size_t>(i)][static_cast<std::size_t>(v)];
        if (rep == current && (sets_[static_cast<std::size_t>(tile)] >> point & 1)) value = v;
      }
      values[static_cast<std::size_t>(i)] = value;
      const int tile = level_tiles_[static_cast<std::size_t>(i)][static_cast<std::size_t>(value)].second;
      point = sigma_[static_cast<std::size_t>(tile)][static_cast<std::size_t>(point)];
      current = rep_[static_cast<std::size_t>(tile)];
    }
    return values;
  }

  /// The state a coding stands for, or -1 when a level's value is not a tile of the set the chain has reached.
  int decode(std::span<const int> values) const {
    int current = index_of(full_);
    Transformation to_state = identity();  // rep-space point -> state
    for (int i = 0; i < levels(); ++i) {
      if (height_[static_cast<std::size_t>(current)] != height_of_level(i)) continue;
      const int v = values[static_cast<std::size_t>(i)];
      if (v < 0 || v >= level_size(i)) return -1;
      const auto& [rep, tile] = level_tiles_[static_cast<std::size_t>(i)][static_cast<std::size_t>(v)];
      if (rep != current) return -1;
      to_state = compose(tau_[static_cast<std::size_t>(tile)], to_state);
      current = rep_[static_cast<std::size_t>(tile)];
    }
    const Set last = sets_[static_cast<std::size_t>(current)];
    return to_state[static_cast<std::size_t>(std::countr_zero(last))];
  }

  /// Each level's map for `letter` from the old values; `values` becomes the new coding. Returns the maps.
  std::vector<LevelMap> step(std::vector<int>& values, int letter) const {
    std::vector<LevelMap> maps(static_cast<std::size_t>(levels()));
    int old_set = index_of(full_), new_set = old_set;
    Transformation t = automaton_.transitions.at(static_cast<std::size_t>(letter));
    for (int i = 0; i < levels(); ++i) {
      const int h = height_of_level(i);
      const bool old_here = height_[static_cast<std::size_t>(old_set)] == h;
      const bool new_here = height_[static_cast<std::size_t>(new_set)] == h;
      const int old_value = values[static_cast<std::size_t>(i)];
      const int old_tile = old_here ? tile_at(i, old_set, old_value) : -1;
      LevelMap& map = maps[static_cast<std::size_t>(i)];
      if (new_here) {
        const Set image = apply(t, sets_[static_cast<std::size_t>(old_set)]);
        if (image == sets_[static_cast<std::size_t>(new_set)]) {
          if (!old_here || old_set != new_set)
            detail::argument_error("holonomy step", "R.t = R' only for R = R'", "another set (internal error)");
          // t permutes R = R' and so its tiles (a holonomy group element); the other values stay.
          map.kind = LevelMap::Kind::permute;
          map.permutation.resize(static_cast<std::size_t>(level_size(i)));
          for (int v = 0; v < level_size(i); ++v) {
            const auto& [rep, tile] = level_tiles_[static_cast<std::size_t>(i)][static_cast<std::size_t>(v)];
            map.permutation[static_cast<std::size_t>(v)] =
                rep == new_set ? value_of(i, new_set, index_of(apply(t, sets_[static_cast<std::size_t>(tile)]))) : v;
          }
        } else {
          map.kind = LevelMap::Kind::reset;
          map.target = value_of(i, new_set, tile_containing(new_set, image));
        }
        values[static_cast<std::size_t>(i)] = map.apply(old_value);
      }
      if (old_here) {  // the old chain goes down through tau of its tile
        t = compose(tau_[static_cast<std::size_t>(old_tile)], t);
        old_set = rep_[static_cast<std::size_t>(old_tile)];
      }
      if (new_here) {
        const int new_tile = level_tiles_[static_cast<std::size_t>(i)]
                                 [static_cast<std::size_t>(values[static_cast<std::size_t>(i)])].second;
        t = compose(t, sigma_[static_cast<std::size_t>(new_tile)]);
        new_set = rep_[static_cast<std::size_t>(new_tile)];
      }
    }
    return maps;
  }

  /// The height of the sets at level index i.
  int height_of_level(int i) const { return levels() - i; }

 private:
  static int popcount(Set s) { return std::popcount(s); }
  Transformation identity() const {
    Transformation t(static_cast<std::size_t>(automaton_.states));
    for (int q = 0; q < automaton_.states; ++q) t[static_cast<std::size_t>(q)] = q;
    return t;
  }
  /// f first, then g.
  static Transformation compose(const Transformation& f, const Transformation& g) {
    Transformation h(f.size());
    for (std::size_t q = 0; q < f.size(); ++q) h[q] = g[static_cast<std::size_t>(f[q])];
    return h;
  }
  static Set apply(const Transformation& t, Set s) {
    Set image = 0;
    for (; s; s &= s - 1) image |= Set{1} << t[static_cast<std::size_t>(std::countr_zero(s))];
    return image;
  }
  int index_of(Set s) const {
    const auto it = index_.find(s);
    if (it == index_.end())
      detail::argument_error("holonomy set", "a member of the image set X", "a set outside it (internal error)");
    return it->second;
  }

  void add_set(Set s) {
    if (index_.emplace(s, static_cast<int>(sets_.size())).second) sets_.push_back(s);
  }

  void collect_images(std::size_t max_images) {
    add_set(full_);
    for (std::size_t next = 0; next < sets_.size(); ++next) {
      for (const auto& letter : automaton_.transitions) add_set(apply(letter, sets_[next]));
      if (sets_.size() > max_images)
        detail::argument_error("automaton", "at most " + std::to_string(max_images) + " images of its state set",
                               "more (" + automaton_.name + ")");
    }
    for (int q = 0; q < automaton_.states; ++q) add_set(Set{1} << q);
    // X is closed: the image of a singleton is a singleton.
    edges_.assign(sets_.size(), {});
    for (std::size_t i = 0; i < sets_.size(); ++i)
      for (std::size_t a = 0; a < automaton_.transitions.size(); ++a)
        edges_[i].push_back(index_of(apply(automaton_.transitions[a], sets_[i])));
  }

  /// orbit_[i][j]: set j is an image of set i (the empty word too).
  void find_classes() {
    const std::size_t count = sets_.size();
    orbit_.assign(count, std::vector<bool>(count, false));
    for (std::size_t start = 0; start < count; ++start) {
      std::vector<int> queue{static_cast<int>(start)};
      orbit_[start][start] = true;
      for (std::size_t next = 0; next < queue.size(); ++next)
        for (int to : edges_[static_cast<std::size_t>(queue[next])])
          if (!orbit_[start][static_cast<std::size_t>(to)]) {
            orbit_[start][static_cast<std::size_t>(to)] = true;
            queue.push_back(to);
          }
    }
  }

  /// A word (as its transformation) taking set `from` onto set `to`, which must be one of its images.
  Transformation word_between(std::size_t from, std::size_t to) const {
    std::vector<Transformation> word(sets_.size());
    std::vector<bool> seen(sets_.size(), false);
    std::vector<std::size_t> queue{from};
    word[from] = identity();
    seen[from] = true;
    for (std::size_t next = 0; next < queue.size(); ++next) {
      const std::size_t at = queue[next];
      if (at == to) return word[at];
      for (std::size_t a = 0; a < automaton_.transitions.size(); ++a) {
        const auto b = static_cast<std::size_t>(edges_[at][a]);
        if (seen[b]) continue;
        seen[b] = true;
        word[b] = compose(word[at], automaton_.transitions[a]);
        queue.push_back(b);
      }
    }
    detail::argument_error("holonomy word", "a word between two sets of one class", "none (internal error)");
  }

  /// A <= B: A lies inside some image of B.
  bool subducts(std::size_t a, std::size_t b) const {
    for (std::size_t c = 0; c < sets_.size(); ++c)
      if (orbit_[b][c] && (sets_[a] & ~sets_[c]) == 0) return true;
    return false;
  }

  void find_heights() {
    const std::size_t count = sets_.size();
    below_.assign(count, std::vector<bool>(count, false));
    for (std::size_t a = 0; a < count; ++a)
      for (std::size_t b = 0; b < count; ++b) below_[a][b] = subducts(a, b);
    height_.assign(count, -1);
    // Strict subduction is acyclic on classes, so a memoised walk down it ends.
    for (std::size_t a = 0; a < count; ++a) height_of(a);
  }

  int height_of(std::size_t a) {
    if (height_[a] >= 0) return height_[a];
    if (popcount(sets_[a]) == 1) return height_[a] = 0;
    int h = 0;
    for (std::size_t b = 0; b < sets_.size(); ++b)
      if (below_[b][a] && !below_[a][b]) h = std::max(h, height_of(b));
    return height_[a] = h + 1;
  }

  /// Representatives: the first member of each class; sigma_A maps A onto it, tau_A maps it back, inverse on A.
  void find_representatives() {
    const std::size_t count = sets_.size();
    rep_.assign(count, -1);
    sigma_.assign(count, {});
    tau_.assign(count, {});
    for (std::size_t a = 0; a < count; ++a) {
      if (popcount(sets_[a]) == 1) {  // singletons need no representative: chains end there
        rep_[a] = static_cast<int>(a);
        sigma_[a] = tau_[a] = identity();
        continue;
      }
      std::size_t r = 0;
      while (!(orbit_[a][r] && orbit_[r][a])) ++r;
      rep_[a] = static_cast<int>(r);
      const Transformation s = word_between(a, r);     // A.s = R, a bijection (equal sizes)
      const Transformation back = word_between(r, a);  // R.back = A
      // s back permutes A; with k its order on A, tau = back (s back)^(k - 1) inverts s there.
      const Transformation cycle = compose(s, back);
      Transformation power = identity(), tau = back;
      for (;;) {
        bool is_identity_on_a = true;
        const Transformation next = compose(power, cycle);
        for (Set m = sets_[a]; m; m &= m - 1) {
          const int q = std::countr_zero(m);
          if (next[static_cast<std::size_t>(q)] != q) is_identity_on_a = false;
        }
        if (is_identity_on_a) break;
        power = next;
        tau = compose(tau, cycle);
      }
      sigma_[a] = s;
      tau_[a] = tau;
    }
  }

  void find_tiles() {
    const int top = height_[static_cast<std::size_t>(index_of(full_))];
    level_tiles_.assign(static_cast<std::size_t>(top), {});
    tiles_.assign(sets_.size(), {});
    for (std::size_t r = 0; r < sets_.size(); ++r) {
      if (rep_[r] != static_cast<int>(r) || popcount(sets_[r]) == 1) continue;
      for (std::size_t b = 0; b < sets_.size(); ++b) {
        if (!is_proper_subset(b, r)) continue;
        bool maximal = true;
        for (std::size_t c = 0; c < sets_.size() && maximal; ++c)
          if (c != b && is_proper_subset(c, r) && is_proper_subset(b, c)) maximal = false;
        if (maximal) tiles_[r].push_back(static_cast<int>(b));
      }
      const std::size_t level = static_cast<std::size_t>(top - height_[r]);
      for (int tile : tiles_[r]) level_tiles_[level].push_back({static_cast<int>(r), tile});
    }
  }

  bool is_proper_subset(std::size_t a, std::size_t b) const {
    return sets_[a] != sets_[b] && (sets_[a] & ~sets_[b]) == 0;
  }

  int tile_at(int level, int rep, int value) const {
    const auto& entry = level_tiles_.at(static_cast<std::size_t>(level)).at(static_cast<std::size_t>(value));
    if (entry.first != rep)
      detail::argument_error("values[" + std::to_string(level) + "]", "a tile of the set the chain reached",
                             "value " + std::to_string(value) + ", a tile of another set");
    return entry.second;
  }
  int value_of(int level, int rep, int tile) const {
    const auto& tiles = level_tiles_[static_cast<std::size_t>(level)];
    for (std::size_t v = 0; v < tiles.size(); ++v)
      if (tiles[v].first == rep && tiles[v].second == tile) return static_cast<int>(v);
    detail::argument_error("holonomy tile", "a tile of the representative", "none (internal error)");
  }
  /// The first tile of representative r holding `image` (a member of X strictly inside r, so some tile does).
  int tile_containing(int r, Set image) const {
    for (int tile : tiles_[static_cast<std::size_t>(r)])
      if ((image & ~sets_[static_cast<std::size_t>(tile)]) == 0) return tile;
    detail::argument_error("holonomy image", "inside a tile", "outside every tile (internal error)");
  }

  Automaton automaton_;
  Set full_ = 0;
  std::vector<Set> sets_;
  std::map<Set, int> index_;
  std::vector<std::vector<int>> edges_;  // [set][letter] -> set
  std::vector<std::vector<bool>> orbit_, below_;
  std::vector<int> height_, rep_;
  std::vector<Transformation> sigma_, tau_;
  std::vector<std::vector<int>> tiles_;                          // [representative] -> tiles
  std::vector<std::vector<std::pair<int, int>>> level_tiles_;    // [level index] -> (representative, tile)
};

/// The reachable configurations of a decomposition's levels and each level's maps, as the layers need them.
struct HolonomyCascadePlan {
  std::vector<std::vector<HolonomyDecomposition::LevelMap>> maps;  ///< [level] distinct maps; 0 keeps
  /// [level] (letter, values of the levels above) -> map index; the values above are the new ones when
  /// `delays` is false, the old ones (one token ago) when it is true.
  std::vector<std::map<std::vector<int>, int>> letter_of;
  bool delays = false;
  std::int64_t configurations = 0;  ///< reachable codings from the start state
};

/// Walks every configuration the cascade reaches from the automaton's start state and tabulates each level's map.
inline HolonomyCascadePlan plan_holonomy_cascade(const HolonomyDecomposition& d,
                                                 std::int64_t max_configurations = 200000) {
  using LevelMap = HolonomyDecomposition::LevelMap;
  const auto levels = static_cast<std::size_t>(d.levels());
  const int letters = d.automaton().letters();
  HolonomyCascadePlan plan;
  plan.maps.assign(levels, {LevelMap{}});
  std::vector<std::map<LevelMap, int>> index(levels);
  for (std::size_t i = 0; i < levels; ++i) index[i][LevelMap{}] = 0;
  struct Move {
    std::vector<int> from, to;
    int letter;
    std::vector<int> map;  // per level
  };
  std::vector<Move> moves;
  std::set<std::vector<int>> seen{d.encode(d.automaton().initial_state)};
  std::vector<std::vector<int>> queue{d.encode(d.automaton().initial_state)};
  for (std::size_t next = 0; next < queue.size(); ++next) {
    if (static_cast<std::int64_t>(queue.size()) > max_configurations)
      detail::argument_error("automaton", "a cascade with at most " + std::to_string(max_configurations) +
                                              " reachable configurations", "more (" + d.automaton().name + ")");
    for (int a = 0; a < letters; ++a) {
      Move move{queue[next], queue[next], a, std::vector<int>(levels)};
      const auto level_maps = d.step(move.to, a);
      for (std::size_t i = 0; i < levels; ++i) {
        auto [it, added] = index[i].emplace(level_maps[i], static_cast<int>(plan.maps[i].size()));
        if (added) plan.maps[i].push_back(level_maps[i]);
        move.map[i] = it->second;
      }
      if (seen.insert(move.to).second) queue.push_back(move.to);
      moves.push_back(std::move(move));
    }
  }
  plan.configurations = static_cast<std::int64_t>(queue.size());
  // Whether the new values above (what a layer reads) determine each map; else key on the old ones.
  auto tabulate = [&](bool old_values) {
    std::vector<std::map<std::vector<int>, int>> table(levels);
    for (const Move& m : moves)
      for (std::size_t i = 0; i < levels; ++i) {
        std::vector<int> key{m.letter};
        const auto& above = old_values ? m.from : m.to;
        key.insert(key.end(), above.begin(), above.begin() + static_cast<std::ptrdiff_t>(i));
        auto [it, added] = table[i].emplace(key, m.map[i]);
        if (!added && it->second != m.map[i]) return std::optional<decltype(table)>{};
      }
    return std::optional<decltype(table)>{std::move(table)};
  };
  if (auto table = tabulate(false)) {
    plan.letter_of = std::move(*table);
  } else {
    plan.delays = true;
    auto old_table = tabulate(true);  // the old values above always determine the maps (see the file comment)
    if (!old_table)
      detail::argument_error("holonomy plan", "maps determined by the levels above", "not (internal error)");
    plan.letter_of = std::move(*old_table);
  }
  return plan;
}

/// UST Thm 4 for the automaton `a`: its holonomy cascade as DeltaProduct layers, labels = its states.
/// Layers: level 0 (the top), [its delay], level 1, [its delay], ..., the last level; n_h per layer = its width.
inline Construction holonomy_cascade(const Automaton& a) {
  check_automaton(a);
  if (a.states < 2)
    detail::argument_error("automaton.states", "at least 2 (one state needs no layer)", std::to_string(a.states));
  const auto decomposition = std::make_shared<const HolonomyDecomposition>(a);
  const auto plan = std::make_shared<const HolonomyCascadePlan>(plan_holonomy_cascade(*decomposition));
  const HolonomyDecomposition& d = *decomposition;
  const int levels = d.levels();
  const bool delays = plan->delays;
  std::string widths;
  for (int i = 0; i < levels; ++i) widths += (i ? "/" : "") + std::to_string(d.level_size(i));
  Construction c{.task = a.name,
                 .method = "holonomy cascade K " + widths + (delays ? " + delays" : ""),
                 .theorem = "UST Thm 4",
                 .input_letters = a.letters(),
                 .initial_label = a.initial_state};
  c.next_label = [transitions = a.transitions](int label, int letter) {
    return transitions[static_cast<std::size_t>(letter)][static_cast<std::size_t>(label)];
  };
  const std::vector<int> start = d.encode(a.initial_state);
  auto one_hot = [](int size, int at) {
    std::vector<double> v(static_cast<std::size_t>(size), 0.0);
    v[static_cast<std::size_t>(at)] = 1.0;
    return v;
  };
  for (int i = 0; i < levels; ++i) {
    const int k = d.level_size(i);
    ConstructionLayer level{.description = "level " + std::to_string(i) + ": " + std::to_string(k) + " tiles",
                            .key_dim = k,
                            .initial_state = one_hot(k, start[static_cast<std::size_t>(i)])};
    for (int v = 0; v < k; ++v) level.codebook.push_back(one_hot(k, v));
    std::vector<std::vector<HouseholderFactor>> letters;
    for (const auto& map : plan->maps[static_cast<std::size_t>(i)]) {
      std::vector<HouseholderFactor> factors;
      if (map.kind == HolonomyDecomposition::LevelMap::Kind::permute) {
        factors = detail::swaps_of(invert_permutation(map.permutation));  // A = M(permutation)
      } else if (map.kind == HolonomyDecomposition::LevelMap::Kind::reset) {
        for (int j = 0; j < k; ++j)  // row j <- [j == target]: A = 0, B = e_target
          factors.push_back({one_hot(k, j), 1.0, {j == map.target ? 1.0 : 0.0}});
      }
      letters.push_back(std::move(factors));
    }
    detail::set_letters(level, std::move(letters), c.has_non_unit_keys);
    c.layers.push_back(std::move(level));
    if (delays && i + 1 < levels) {
      ConstructionLayer delay{.description = "level " + std::to_string(i) + " one token ago",
                              .key_dim = 2,
                              .value_dim = k,
                              .slots = 2};
      for (int s = 0; s < 2; ++s) {
        const auto row = one_hot(k, start[static_cast<std::size_t>(i)]);
        delay.initial_state.insert(delay.initial_state.end(), row.begin(), row.end());
      }
      for (int v = 0; v < k; ++v) delay.codebook.push_back(one_hot(k, v));
      std::vector<std::vector<HouseholderFactor>> writes;
      for (int v = 0; v < k; ++v)  // swap the rows, then row 0 <- the level's new value
        writes.push_back({detail::reflection({1.0, -1.0}), {{1.0, 0.0}, 1.0, one_hot(k, v)}});
      detail::set_letters(delay, std::move(writes), c.has_non_unit_keys);
      c.layers.push_back(std::move(delay));
    }
  }
  // Decoded indices: level i at stride * i; with delays, its delay's rows (now, one token ago) follow it.
  const std::size_t stride = delays ? 3 : 1;
  c.layer_letter = [plan, stride, delays](int layer, int letter, std::span<const int> lower) {
    const auto l = static_cast<std::size_t>(layer);
    if (delays && l % 2 == 1) return lower[stride * (l / 2)];  // a delay writes its level's new value
    const std::size_t i = delays ? l / 2 : l;
    std::vector<int> key{letter};
    for (std::size_t j = 0; j < i; ++j) key.push_back(lower[stride * j + (delays ? 2 : 0)]);
    const auto& table = plan->letter_of[i];
    const auto it = table.find(key);
    return it == table.end() ? 0 : it->second;  // unreachable context (a layer below decoded wrong): keep
  };
  c.label_of = [decomposition, stride, levels](std::span<const int> decoded) {
    std::vector<int> values(static_cast<std::size_t>(levels));
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = decoded[stride * i];
    return decomposition->decode(values);
  };
  return c;
}

}  // namespace deltaproduct
