// Explicit DeltaNet / DeltaProduct parameters that solve state-tracking tasks, described as data, and their
// simulation in any state scalar through the library's own update (core/recurrence.hpp).
//
// A construction is a cascade of layers. Each layer is a DeltaProduct with n_h Householder factors per letter;
// layer l reads a letter computed from the input letter and the decoded outputs of layers 0..l-1 at the same
// position (the "decoder between layers" of the multi-layer theorems). Each layer decodes its state as the nearest
// codeword (Euclidean) among the exact states it can be in, or, for a layer made of independent slots (a buffer of
// tokens), each slot as the nearest codeword of one slot; the task's label is a function of the decoded indices.
// The true label follows the task's automaton, computed exactly with integers.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "deltaproduct/core/config.hpp"
#include "deltaproduct/core/error.hpp"
#include "deltaproduct/core/recurrence.hpp"

namespace deltaproduct {

/// How the keys of a construction are handed to the recurrence. A factor I - beta u u^T / |u|^2 can be given
/// three ways, which round differently in finite precision (the README's Theory section):
enum class KeyForm {
  unnormalised,    ///< key u as it is, beta' = beta / |u|^2 (exact for u = e_i - e_j: beta' = 1)
  normalised,      ///< key u / |u| computed in the format (Normalization::l2), beta as it is
  eps_normalised,  ///< key u / sqrt(|u|^2 + 1e-6) as flash-linear-attention computes it: never an exact reflection
};

inline const char* key_form_name(KeyForm form) {
  switch (form) {
    case KeyForm::unnormalised:
      return "raw";
    case KeyForm::normalised:
      return "unit";
    case KeyForm::eps_normalised:
      return "eps";
  }
  return "?";
}

/// One generalized Householder step with input: S <- (I - beta k k^T) S + beta k v^T with k = u / |u|.
struct HouseholderFactor {
  std::vector<double> direction;  ///< u (any nonzero length; the factor uses u / |u|)
  double beta = 0.0;
  std::vector<double> value = {};  ///< v (length V); empty means zero
};

/// One layer: a DeltaProduct with `householder_steps` factors per letter (padded with beta = 0).
struct ConstructionLayer {
  std::string description = {};
  int key_dim = 1;
  int value_dim = 1;
  int householder_steps = 1;
  std::vector<double> initial_state = {};                    ///< K x V, row-major
  std::vector<std::vector<HouseholderFactor>> letters = {};  ///< the factors of each of the layer's letters, C_1 first
  std::vector<std::vector<double>> codebook = {};            ///< exact states (K x V each) the layer decodes to
  /// Which block of `blocks` equal parts of the codebook to search, from the lower layers' decoded indices
  /// (for decoders that know, e.g., the parity a lower layer tracks); null: the whole codebook.
  std::function<int(std::span<const int> lower)> codebook_block = {};
  int blocks = 1;
  /// The K rows split into `slots` equal groups decoded one by one against `codebook` (each codeword then holds
  /// (K / slots) x V entries): the nearest state of a product of independent slots, without listing the product.
  /// The layer adds `slots` decoded indices, slot 0 first.
  int slots = 1;
};

/// A task (an automaton with integer labels) and the layers that solve it.
struct Construction {
  std::string task = {};     ///< e.g. "parity", "S3", "Z5"
  std::string method = {};   ///< how, in a few words
  std::string theorem = {};  ///< the statement it checks, e.g. "UST Thm 3"
  int input_letters = 0;
  int initial_label = 0;
  std::function<int(int label, int letter)> next_label = {};  ///< the automaton: exact
  std::vector<ConstructionLayer> layers = {};
  /// The letter of layer l from the input letter and the decoded indices of layers 0..l-1 (after this token; a layer
  /// with several slots contributes one index per slot).
  std::function<int(int layer, int letter, std::span<const int> lower)> layer_letter = {};
  /// The label from every layer's decoded index.
  std::function<int(std::span<const int> decoded)> label_of = {};
  bool has_non_unit_keys = false;                        ///< whether raw and unit keys differ

  /// The eigenvalue range the construction needs: [0, 1] when no beta exceeds 1 (resets, projections).
  EigenvalueRange needed_range() const {
    for (const auto& layer : layers)
      for (const auto& letter : layer.letters)
        for (const auto& factor : letter)
          if (factor.beta > 1.0) return EigenvalueRange::signed_unit;
    return EigenvalueRange::unit;
  }

  int max_householder_steps() const {
    int n = 0;
    for (const auto& layer : layers) n = std::max(n, layer.householder_steps);
    return n;
  }
};

/// A construction's factors in the state scalar, ready to run: keys normalised in the format (or not), betas and
/// values rounded to it. Runs every layer with householder_step / normalize from core/recurrence.hpp.
template <class Scalar>
class ConstructionRunner {
 public:
  struct Factor {
    RowVector<Scalar> key, value;
    Scalar beta;
  };
  using States = std::vector<StateMatrix<Scalar>>;

  ConstructionRunner(const Construction& c, KeyForm form) : construction_(&c) {
    for (const auto& layer : c.layers) {
      validate(layer);
      PreparedLayer prepared;
      prepared.initial.resize(layer.key_dim, layer.value_dim);
      for (int i = 0; i < layer.key_dim * layer.value_dim; ++i)
        prepared.initial(i / layer.value_dim, i % layer.value_dim) = static_cast<Scalar>(layer.initial_state.at(i));
      for (const auto& factors : layer.letters) {
        std::vector<Factor> letter;
        for (const auto& f : factors) letter.push_back(prepare(f, layer, form));
        prepared.letters.push_back(std::move(letter));
      }
      prepared.work.resize(layer.value_dim);
      prepared.slot_values.resize(static_cast<std::size_t>(layer.key_dim / layer.slots * layer.value_dim));
      layers_.push_back(std::move(prepared));
    }
  }

  States initial_states() const {
    States s;
    for (const auto& layer : layers_) s.push_back(layer.initial);
    return s;
  }

  /// Advances every layer by one input letter; fills `decoded` with each layer's codeword index (-1 when the
  /// state is not finite) and returns the decoded label.
  int advance(States& states, int letter, std::vector<int>& decoded) {
    const Construction& c = *construction_;
    decoded.clear();
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const int layer_letter = c.layer_letter ? c.layer_letter(static_cast<int>(l), letter, decoded) : letter;
      PreparedLayer& layer = layers_[l];
      for (const Factor& f : layer.letters.at(static_cast<std::size_t>(layer_letter)))
        householder_step<Scalar>(states[l], f.key, f.value, f.beta, layer.work);
      const ConstructionLayer& described = c.layers[l];
      const int block = described.codebook_block ? described.codebook_block(decoded) : 0;
      for (int slot = 0; slot < described.slots; ++slot)
        decoded.push_back(decode(described, states[l], block, slot, layer.slot_values));
    }
    for (int d : decoded)
      if (d < 0) return -1;
    return c.label_of(decoded);
  }

 private:
  struct PreparedLayer {
    StateMatrix<Scalar> initial;
    std::vector<std::vector<Factor>> letters;
    RowVector<Scalar> work;
    std::vector<double> slot_values;  // one slot of the state in double, read once per decode
  };

  static Factor prepare(const HouseholderFactor& f, const ConstructionLayer& layer, KeyForm form) {
    Factor out{RowVector<Scalar>(layer.key_dim), RowVector<Scalar>(layer.value_dim), Scalar(0.0)};
    double norm2 = 0.0;
    for (double x : f.direction) norm2 += x * x;
    if (static_cast<int>(f.direction.size()) != layer.key_dim || !(norm2 > 0.0))
      detail::argument_error("direction", "a nonzero vector of length K = " + std::to_string(layer.key_dim),
                             "length " + std::to_string(f.direction.size()));
    for (int i = 0; i < layer.key_dim; ++i) out.key(i) = static_cast<Scalar>(f.direction[i]);
    // The input term beta k v^T with k = u/|u| equals beta' u v'^T with beta' = beta/|u|^2 and v' = |u| v.
    double value_scale = 1.0;
    if (form == KeyForm::unnormalised) {
      out.beta = static_cast<Scalar>(f.beta / norm2);
      value_scale = std::sqrt(norm2);
    } else {
      normalize(out.key, form == KeyForm::normalised ? Normalization::l2 : Normalization::l2_eps, 1e-6);
      out.beta = static_cast<Scalar>(f.beta);
    }
    for (int j = 0; j < layer.value_dim; ++j)
      out.value(j) = static_cast<Scalar>(f.value.empty() ? 0.0 : f.value.at(j) * value_scale);
    return out;
  }

  static void validate(const ConstructionLayer& layer) {
    if (layer.key_dim < 1 || layer.value_dim < 1)
      detail::argument_error("key_dim, value_dim", "at least 1 each",
                             std::to_string(layer.key_dim) + ", " + std::to_string(layer.value_dim));
    if (layer.slots < 1 || layer.key_dim % layer.slots != 0)
      detail::argument_error("slots", "a divisor of K = " + std::to_string(layer.key_dim), std::to_string(layer.slots));
    if (layer.blocks < 1 || layer.codebook.empty() || layer.codebook.size() % static_cast<std::size_t>(layer.blocks))
      detail::argument_error("blocks",
                             "a divisor of the codebook's " + std::to_string(layer.codebook.size()) + " words",
                             std::to_string(layer.blocks));
    const std::size_t entries = static_cast<std::size_t>(layer.key_dim / layer.slots * layer.value_dim);
    for (const auto& word : layer.codebook)
      if (word.size() != entries)
        detail::argument_error("codebook", "words of (K / slots) x V = " + std::to_string(entries) + " entries",
                               std::to_string(word.size()) + " entries");
    if (layer.initial_state.size() != static_cast<std::size_t>(layer.key_dim * layer.value_dim))
      detail::argument_error("initial_state", "K x V = " + std::to_string(layer.key_dim * layer.value_dim) + " entries",
                             std::to_string(layer.initial_state.size()) + " entries");
  }

  /// The nearest codeword of block `block` to rows [slot K/slots, (slot + 1) K/slots) of the state.
  static int decode(const ConstructionLayer& layer, const StateMatrix<Scalar>& state, int block, int slot,
                    std::vector<double>& values) {
    if (block < 0 || block >= layer.blocks) return -1;  // a lower layer decoded nothing usable
    const std::size_t per_block = layer.codebook.size() / static_cast<std::size_t>(layer.blocks);
    const Eigen::Index rows = state.rows() / layer.slots, first_row = rows * slot, cols = state.cols();
    for (Eigen::Index i = 0; i < rows * cols; ++i)
      values[static_cast<std::size_t>(i)] = static_cast<double>(state(first_row + i / cols, i % cols));
    int best = -1;
    double best_distance = std::numeric_limits<double>::infinity();
    for (std::size_t c = 0; c < per_block; ++c) {
      const auto& word = layer.codebook[static_cast<std::size_t>(block) * per_block + c];
      double d = 0.0;
      for (std::size_t i = 0; i < values.size(); ++i) {
        const double diff = values[i] - word[i];
        d += diff * diff;
      }
      if (d < best_distance) best_distance = d, best = static_cast<int>(c);
    }
    return best;  // stays -1 when the state holds NaN (every distance is NaN)
  }

  const Construction* construction_;
  std::vector<PreparedLayer> layers_;
};

}  // namespace deltaproduct
