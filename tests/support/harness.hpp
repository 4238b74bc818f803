// Runs the library on a reference::Problem: converts the problem's doubles to the element type under test, builds
// views in the documented layouts, calls forward(), and returns the results as doubles.
#pragma once

#include <cstdint>
#include <deltaproduct/deltaproduct.hpp>
#include <vector>

#include "support/reference.hpp"

namespace harness {

namespace dp = deltaproduct;

template <class T>
std::vector<T> cast_all(const std::vector<double>& x) {
  std::vector<T> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = static_cast<T>(x[i]);
  return out;
}

template <class T>
std::vector<double> to_double(const std::vector<T>& x) {
  std::vector<double> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = static_cast<double>(x[i]);
  return out;
}

inline dp::Normalization normalization_of(int mode) {
  return mode == 0 ? dp::Normalization::none : mode == 1 ? dp::Normalization::l2 : dp::Normalization::l2_eps;
}

inline void configure(dp::Options& options, const reference::Problem& p) {
  options.key_normalization = normalization_of(p.key_norm);
  options.query_normalization = normalization_of(p.query_norm);
  options.normalization_eps = p.eps;
  options.scale = p.scale;
}

/// Element-type copies of a problem's inputs, owning the memory the views point into.
template <class T>
struct Buffers {
  std::vector<T> q, k, v, beta, g, a, initial_state, o, final_state;
  std::vector<std::int64_t> cu_seqlens;

  Buffers(const reference::Problem& p, const std::vector<double>& decay = {})
      : q(cast_all<T>(p.q)),
        k(cast_all<T>(p.k)),
        v(cast_all<T>(p.v)),
        beta(cast_all<T>(p.beta)),
        g(cast_all<T>(p.g)),
        a(cast_all<T>(decay)),
        initial_state(cast_all<T>(p.initial_state)),
        o(static_cast<std::size_t>(p.B) * p.T * p.H * p.V),
        final_state(static_cast<std::size_t>(p.sequences()) * p.H * p.K * p.V),
        cu_seqlens(p.cu_seqlens) {}

  dp::DeltaInputs<T> delta_inputs(const reference::Problem& p) const {
    const dp::index_t R = static_cast<dp::index_t>(p.T) * p.n_h;
    dp::DeltaInputs<T> in{.q = dp::make_view(q.data(), {p.B, p.T, p.H, p.K}),
                          .k = dp::make_view(k.data(), {p.B, R, p.H, p.K}),
                          .v = dp::make_view(v.data(), {p.B, R, p.H, p.V}),
                          .beta = dp::make_view(beta.data(), {p.B, R, p.H})};
    if (p.gated) in.g = dp::make_view(g.data(), {p.B, p.T, p.H});
    if (!initial_state.empty()) in.initial_state = dp::make_view(initial_state.data(), {p.sequences(), p.H, p.K, p.V});
    if (!cu_seqlens.empty())
      in.cu_seqlens = dp::make_view(cu_seqlens.data(), {static_cast<dp::index_t>(cu_seqlens.size())});
    return in;
  }

  dp::DiagonalInputs<T> diagonal_inputs(const reference::Problem& p) const {
    dp::DiagonalInputs<T> in{.q = dp::make_view(q.data(), {p.B, p.T, p.H, p.K}),
                             .k = dp::make_view(k.data(), {p.B, p.T, p.H, p.K}),
                             .v = dp::make_view(v.data(), {p.B, p.T, p.H, p.V}),
                             .a = dp::make_view(a.data(), {p.B, p.T, p.H, p.K})};
    if (!initial_state.empty()) in.initial_state = dp::make_view(initial_state.data(), {p.sequences(), p.H, p.K, p.V});
    if (!cu_seqlens.empty())
      in.cu_seqlens = dp::make_view(cu_seqlens.data(), {static_cast<dp::index_t>(cu_seqlens.size())});
    return in;
  }

  dp::ForwardOutputs<T> outputs(const reference::Problem& p) {
    return {.o = dp::make_view(o.data(), {p.B, p.T, p.H, p.V}),
            .final_state = dp::make_view(final_state.data(), {p.sequences(), p.H, p.K, p.V})};
  }

  reference::Result result() const { return {to_double(o), to_double(final_state)}; }
};

/// forward() of a DeltaNet / DeltaProduct model with element type T on problem p.
template <class Model, class T = typename Model::scalar_type>
reference::Result run_delta(const reference::Problem& p, Model model = {}, dp::CpuBackend backend = dp::cpu) {
  configure(model.options, p);
  Buffers<T> buffers(p);
  dp::forward(backend, model, buffers.delta_inputs(p), buffers.outputs(p));
  return buffers.result();
}

/// forward() of a diagonal LRNN with element type T on problem p and decays a [B,T,H,K].
template <class Model, class T = typename Model::scalar_type>
reference::Result run_diagonal(const reference::Problem& p, const std::vector<double>& a, Model model = {},
                               dp::CpuBackend backend = dp::cpu) {
  configure(model.options, p);
  Buffers<T> buffers(p, a);
  dp::forward(backend, model, buffers.diagonal_inputs(p), buffers.outputs(p));
  return buffers.result();
}

/// Forward error bound for a run in type T: every transition has spectral norm <= 1 (unit keys, beta in [0,2],
/// gate <= 1), so rounding errors add up rather than grow; each of the T*n_h micro-steps and the K-term sums
/// contributes a few ulps. 16 (T n_h + K) eps is a loose multiple of that count.
template <class T>
double tolerance(const reference::Problem& p) {
  return 16.0 * (static_cast<double>(p.T) * p.n_h + p.K) * static_cast<double>(std::numeric_limits<T>::epsilon());
}

}  // namespace harness
