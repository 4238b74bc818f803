// The contract every backend implements: which shapes, layouts and values forward() and step() accept. It lives here
// once; backends call check_forward() before they touch any data, so every backend rejects the same calls with the
// same messages.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "deltaproduct/core/arguments.hpp"
#include "deltaproduct/core/config.hpp"
#include "deltaproduct/core/error.hpp"
#include "deltaproduct/core/view.hpp"

namespace deltaproduct {

/// Sizes of a validated call, and where each sequence lies.
struct Problem {
  index_t batch = 0;              ///< B
  index_t tokens = 0;             ///< T (per batch row; the packed length with cu_seqlens)
  index_t heads = 0;              ///< H
  index_t key_dim = 0;            ///< K
  index_t value_dim = 0;          ///< V
  int householder_steps = 1;      ///< n_h (1 for a diagonal LRNN)
  index_t sequences = 0;          ///< N: B, or the number of cu_seqlens intervals
  double scale = 1.0;             ///< readout scale
  View<const std::int64_t, 1> cu_seqlens{};

  struct Sequence {
    index_t row;    ///< batch row holding the sequence
    index_t begin;  ///< first token
    index_t end;    ///< one past the last token
  };

  Sequence sequence(index_t n) const noexcept {
    if (cu_seqlens.absent()) return {n, 0, tokens};
    return {0, cu_seqlens(n), cu_seqlens(n + 1)};
  }
};

namespace detail {

inline std::string dims_text(const index_t* dims, std::size_t rank) {
  std::string s = "[";
  for (std::size_t d = 0; d < rank; ++d) s += (d ? ", " : "") + std::to_string(dims[d]);
  return s + "]";
}

/// A required view: present, non-null when it has elements, non-negative extents.
template <class T, std::size_t R>
void check_present(const View<T, R>& view, const char* name, const char* layout) {
  if (view.absent()) argument_error(name, std::string("a view of layout ") + layout, "an absent (default) view");
  for (std::size_t d = 0; d < R; ++d)
    if (view.extent(d) < 0)
      argument_error(name, std::string("non-negative extents (layout ") + layout + ")",
                     dims_text(view.extents().data(), R));
  if (view.size() > 0 && view.data() == nullptr)
    argument_error(name, std::string("non-null data for a view of layout ") + layout + " with " +
                             std::to_string(view.size()) + " elements",
                   "null data");
}

/// A view whose extents must equal `expected`, dimension by dimension.
template <class T, std::size_t R>
void check_shape(const View<T, R>& view, const char* name, const char* layout,
                 const std::array<index_t, R>& expected) {
  check_present(view, name, layout);
  if (view.extents() != expected)
    argument_error(name, std::string("shape ") + layout + " = " + dims_text(expected.data(), R),
                   dims_text(view.extents().data(), R));
}

/// An optional view: absent, or of the expected shape.
template <class T, std::size_t R>
void check_optional_shape(const View<T, R>& view, const char* name, const char* layout,
                          const std::array<index_t, R>& expected) {
  if (!view.absent()) check_shape(view, name, layout, expected);
}

inline void check_options(const Options& options, index_t key_dim, Problem& problem) {
  problem.scale = options.scale ? *options.scale : 1.0 / std::sqrt(static_cast<double>(key_dim));
  if (!std::isfinite(problem.scale))
    argument_error("options.scale", "a finite number", to_text(problem.scale));
  const bool eps_used = options.key_normalization == Normalization::l2_eps ||
                        options.query_normalization == Normalization::l2_eps;
  if (eps_used && !(options.normalization_eps > 0.0 && std::isfinite(options.normalization_eps)))
    argument_error("options.normalization_eps", "a finite value > 0 (Normalization::l2_eps divides by it)",
                   to_text(options.normalization_eps));
}

/// cu_seqlens: B = 1, offsets start at 0, never decrease, end at T. Empty sequences are allowed.
inline void check_cu_seqlens(const View<const std::int64_t, 1>& cu_seqlens, index_t batch, index_t tokens,
                             Problem& problem) {
  if (cu_seqlens.absent()) {
    problem.sequences = batch;
    return;
  }
  check_present(cu_seqlens, "cu_seqlens", "[N + 1]");
  if (batch != 1) argument_error("q", "batch size B = 1 when cu_seqlens is given (sequences packed along T)",
                                 "B = " + std::to_string(batch));
  if (cu_seqlens.extent(0) < 2)
    argument_error("cu_seqlens", "at least 2 offsets (one sequence)", std::to_string(cu_seqlens.extent(0)));
  if (cu_seqlens(0) != 0) argument_error("cu_seqlens", "cu_seqlens[0] = 0", std::to_string(cu_seqlens(0)));
  for (index_t i = 1; i < cu_seqlens.extent(0); ++i)
    if (cu_seqlens(i) < cu_seqlens(i - 1))
      argument_error("cu_seqlens", "non-decreasing offsets",
                     "cu_seqlens[" + std::to_string(i) + "] = " + std::to_string(cu_seqlens(i)) + " < cu_seqlens[" +
                         std::to_string(i - 1) + "] = " + std::to_string(cu_seqlens(i - 1)));
  const index_t last = cu_seqlens(cu_seqlens.extent(0) - 1);
  if (last != tokens)
    argument_error("cu_seqlens", "last offset = T = " + std::to_string(tokens) + " (the length of q)",
                   std::to_string(last));
  problem.sequences = cu_seqlens.extent(0) - 1;
  problem.cu_seqlens = cu_seqlens;
}

inline void check_dimension(index_t value, const char* argument, const char* what) {
  if (value < 1) argument_error(argument, std::string(what) + " >= 1", std::to_string(value));
}

/// Where the [B, T, H, V] output (or its gradient) and the [N, H, K, V] final state (or its gradient) are, and the
/// names errors give them.
template <class O, class F>
struct OutputShapes {
  const View<O, 4>& o;
  const char* o_name;
  const View<F, 4>& final_state;
  const char* final_state_name;
};

/// The shape checks shared by both model families; returns B, T, H, K from q and V from v.
template <class T, class S, class O, class F>
Problem check_common(const View<const T, 4>& q, const View<const T, 4>& k, const View<const T, 4>& v,
                     const View<const S, 4>& initial_state, const View<const std::int64_t, 1>& cu_seqlens,
                     const OutputShapes<O, F>& out, int householder_steps, const char* k_layout, const char* v_layout,
                     const Options& options) {
  check_present(q, "q", "[B, T, H, K]");
  check_present(v, "v", v_layout);
  Problem p;
  p.batch = q.extent(0);
  p.tokens = q.extent(1);
  p.heads = q.extent(2);
  p.key_dim = q.extent(3);
  p.value_dim = v.extent(3);
  p.householder_steps = householder_steps;
  check_dimension(p.heads, "q", "number of heads H (dimension 2)");
  check_dimension(p.key_dim, "q", "key dimension K (dimension 3)");
  check_dimension(p.value_dim, "v", "value dimension V (dimension 3)");
  const index_t rows = p.tokens * householder_steps;
  check_shape(k, "k", k_layout, {p.batch, rows, p.heads, p.key_dim});
  check_shape(v, "v", v_layout, {p.batch, rows, p.heads, p.value_dim});
  check_shape(out.o, out.o_name, "[B, T, H, V]", {p.batch, p.tokens, p.heads, p.value_dim});
  check_cu_seqlens(cu_seqlens, p.batch, p.tokens, p);
  const std::array<index_t, 4> state_shape{p.sequences, p.heads, p.key_dim, p.value_dim};
  check_optional_shape(initial_state, "initial_state", "[N, H, K, V]", state_shape);
  check_optional_shape(out.final_state, out.final_state_name, "[N, H, K, V]", state_shape);
  check_options(options, p.key_dim, p);
  return p;
}

template <class T>
double as_double(const T& x) {
  return static_cast<double>(x);
}

/// The inputs of a DeltaNet / DeltaProduct pass, with its output (or output gradient) shapes.
template <DeltaProductModel Model, class T, class S, class O, class F>
Problem check_delta_inputs(const Model& model, const DeltaInputs<T, S>& in, const OutputShapes<O, F>& out) {
  constexpr int n_h = Model::householder_steps;
  Problem p = check_common(in.q, in.k, in.v, in.initial_state, in.cu_seqlens, out, n_h, "[B, T*n_h, H, K]",
                           "[B, T*n_h, H, V]", model.options);
  check_shape(in.beta, "beta", "[B, T*n_h, H]", {p.batch, p.tokens * n_h, p.heads});
  if constexpr (Model::gating == Gating::scalar_decay) {
    check_shape(in.g, "g", "[B, T, H]", {p.batch, p.tokens, p.heads});
  } else if (!in.g.absent()) {
    argument_error("g", "an absent view (the model has Gating::none; use a Gating::scalar_decay model)",
                   "a view of " + dims_text(in.g.extents().data(), 3));
  }
  return p;
}

/// The inputs of a diagonal LRNN pass, with its output (or output gradient) shapes.
template <DiagonalModel Model, class T, class S, class O, class F>
Problem check_diagonal_inputs(const Model& model, const DiagonalInputs<T, S>& in, const OutputShapes<O, F>& out) {
  Problem p = check_common(in.q, in.k, in.v, in.initial_state, in.cu_seqlens, out, 1, "[B, T, H, K]", "[B, T, H, V]",
                           model.options);
  check_shape(in.a, "a", "[B, T, H, K]", {p.batch, p.tokens, p.heads, p.key_dim});
  return p;
}

/// An optional gradient view: absent, or of the expected shape and without broadcast (zero) strides, since each of
/// its elements receives a gradient of its own.
template <class T, std::size_t R>
void check_gradient_shape(const View<T, R>& view, const char* name, const char* layout,
                          const std::array<index_t, R>& expected) {
  if (view.absent()) return;
  check_shape(view, name, layout, expected);
  for (std::size_t d = 0; d < R; ++d)
    if (view.stride(d) == 0 && view.extent(d) > 1)
      argument_error(name, "non-zero strides (a gradient view cannot broadcast: each element gets its own gradient)",
                     "stride 0 in dimension " + std::to_string(d) + " of extent " + std::to_string(view.extent(d)));
}

}  // namespace detail

/// Shape and layout checks of a DeltaNet / DeltaProduct forward pass (no data is read).
template <DeltaProductModel Model, class T, class S>
Problem check_forward(const Model& model, const DeltaInputs<T, S>& in, const ForwardOutputs<T, S>& out) {
  return detail::check_delta_inputs(model, in, detail::OutputShapes<T, S>{out.o, "o", out.final_state, "final_state"});
}

/// Shape and layout checks of a diagonal LRNN forward pass.
template <DiagonalModel Model, class T, class S>
Problem check_forward(const Model& model, const DiagonalInputs<T, S>& in, const ForwardOutputs<T, S>& out) {
  return detail::check_diagonal_inputs(model, in,
                                       detail::OutputShapes<T, S>{out.o, "o", out.final_state, "final_state"});
}

/// Shape and layout checks of a DeltaNet / DeltaProduct backward pass: the forward's inputs, dL/do in the shape of
/// o, dL/d(final state) in the shape of the final state, and each gradient view present in its input's shape.
template <DeltaProductModel Model, class T, class S>
Problem check_backward(const Model& model, const DeltaInputs<T, S>& in, const OutputGradients<T, S>& output_gradients,
                       const DeltaGradients<T, S>& gradients) {
  const Problem p = detail::check_delta_inputs(
      model, in,
      detail::OutputShapes<const T, const S>{output_gradients.o, "output_gradients.o", output_gradients.final_state,
                                             "output_gradients.final_state"});
  const index_t rows = p.tokens * Model::householder_steps;
  detail::check_gradient_shape(gradients.q, "gradients.q", "[B, T, H, K]", {p.batch, p.tokens, p.heads, p.key_dim});
  detail::check_gradient_shape(gradients.k, "gradients.k", "[B, T*n_h, H, K]", {p.batch, rows, p.heads, p.key_dim});
  detail::check_gradient_shape(gradients.v, "gradients.v", "[B, T*n_h, H, V]", {p.batch, rows, p.heads, p.value_dim});
  detail::check_gradient_shape(gradients.beta, "gradients.beta", "[B, T*n_h, H]", {p.batch, rows, p.heads});
  if constexpr (Model::gating == Gating::scalar_decay) {
    detail::check_gradient_shape(gradients.g, "gradients.g", "[B, T, H]", {p.batch, p.tokens, p.heads});
  } else if (!gradients.g.absent()) {
    detail::argument_error("gradients.g", "an absent view (the model has Gating::none: there is no g)",
                           "a view of " + detail::dims_text(gradients.g.extents().data(), 3));
  }
  detail::check_gradient_shape(gradients.initial_state, "gradients.initial_state", "[N, H, K, V]",
                               {p.sequences, p.heads, p.key_dim, p.value_dim});
  return p;
}

/// Shape and layout checks of a diagonal LRNN backward pass.
template <DiagonalModel Model, class T, class S>
Problem check_backward(const Model& model, const DiagonalInputs<T, S>& in,
                       const OutputGradients<T, S>& output_gradients, const DiagonalGradients<T, S>& gradients) {
  const Problem p = detail::check_diagonal_inputs(
      model, in,
      detail::OutputShapes<const T, const S>{output_gradients.o, "output_gradients.o", output_gradients.final_state,
                                             "output_gradients.final_state"});
  const std::array<index_t, 4> token_keys{p.batch, p.tokens, p.heads, p.key_dim};
  detail::check_gradient_shape(gradients.q, "gradients.q", "[B, T, H, K]", token_keys);
  detail::check_gradient_shape(gradients.k, "gradients.k", "[B, T, H, K]", token_keys);
  detail::check_gradient_shape(gradients.v, "gradients.v", "[B, T, H, V]", {p.batch, p.tokens, p.heads, p.value_dim});
  detail::check_gradient_shape(gradients.a, "gradients.a", "[B, T, H, K]", token_keys);
  detail::check_gradient_shape(gradients.initial_state, "gradients.initial_state", "[N, H, K, V]",
                               {p.sequences, p.heads, p.key_dim, p.value_dim});
  return p;
}

/// Value checks on host memory: beta within the eigenvalue range, g finite and <= 0, a within the range.
/// NaN fails every check. Backends whose data lives elsewhere implement the same checks on their side.
template <DeltaProductModel Model, class T, class S>
void check_values(const Model& model, const Problem& p, const DeltaInputs<T, S>& in) {
  if (!model.options.validate_ranges) return;
  constexpr double hi = max_beta(Model::eigenvalue_range);
  const char* range = Model::eigenvalue_range == EigenvalueRange::unit ? "[0, 1] (EigenvalueRange::unit)"
                                                                        : "[0, 2] (EigenvalueRange::signed_unit)";
  for (index_t b = 0; b < p.batch; ++b)
    for (index_t r = 0; r < in.beta.extent(1); ++r)
      for (index_t h = 0; h < p.heads; ++h) {
        const double x = detail::as_double(in.beta(b, r, h));
        if (!(x >= 0.0 && x <= hi))
          detail::argument_error("beta", std::string("values in ") + range,
                                 detail::to_text(x) + " at [" + std::to_string(b) + ", " + std::to_string(r) + ", " +
                                     std::to_string(h) + "]");
      }
  if constexpr (Model::gating == Gating::scalar_decay) {
    for (index_t b = 0; b < p.batch; ++b)
      for (index_t t = 0; t < p.tokens; ++t)
        for (index_t h = 0; h < p.heads; ++h) {
          const double x = detail::as_double(in.g(b, t, h));
          if (!(x <= 0.0 && std::isfinite(x)))
            detail::argument_error("g", "finite log-decays <= 0 (the gate exp(g) must lie in (0, 1])",
                                   detail::to_text(x) + " at [" + std::to_string(b) + ", " + std::to_string(t) +
                                       ", " + std::to_string(h) + "]");
        }
  }
}

template <DiagonalModel Model, class T, class S>
void check_values(const Model& model, const Problem& p, const DiagonalInputs<T, S>& in) {
  if (!model.options.validate_ranges) return;
  constexpr double lo = min_decay(Model::eigenvalue_range);
  const char* range = Model::eigenvalue_range == EigenvalueRange::unit ? "[0, 1] (EigenvalueRange::unit)"
                                                                        : "[-1, 1] (EigenvalueRange::signed_unit)";
  for (index_t b = 0; b < p.batch; ++b)
    for (index_t t = 0; t < p.tokens; ++t)
      for (index_t h = 0; h < p.heads; ++h)
        for (index_t i = 0; i < p.key_dim; ++i) {
          const double x = detail::as_double(in.a(b, t, h, i));
          if (!(x >= lo && x <= 1.0))
            detail::argument_error("a", std::string("values in ") + range,
                                   detail::to_text(x) + " at [" + std::to_string(b) + ", " + std::to_string(t) +
                                       ", " + std::to_string(h) + ", " + std::to_string(i) + "]");
        }
}

}  // namespace deltaproduct
