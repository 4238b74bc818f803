// Gradients of the independent double references (support/reference.hpp) by central finite differences, for the
// backward tests: the loss is L = <o, W_o> + <final_state, W_s> with fixed random weights W.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "support/reference.hpp"

namespace reference {

/// The weights of the test loss L = <o, W_o> + <final_state, W_s>: W_o = dL/do, W_s = dL/d(final state).
struct LossWeights {
  std::vector<double> o, final_state;
};

inline LossWeights random_loss_weights(const Problem& p, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  LossWeights w;
  w.o.resize(static_cast<std::size_t>(p.B) * p.T * p.H * p.V);
  w.final_state.resize(static_cast<std::size_t>(p.sequences()) * p.H * p.K * p.V);
  for (double& x : w.o) x = normal(rng);
  for (double& x : w.final_state) x = normal(rng);
  return w;
}

inline double weighted_loss(const Result& r, const LossWeights& w) {
  double loss = 0;
  for (std::size_t i = 0; i < r.o.size(); ++i) loss += r.o[i] * w.o[i];
  for (std::size_t i = 0; i < r.final_state.size() && i < w.final_state.size(); ++i)
    loss += r.final_state[i] * w.final_state[i];
  return loss;
}

/// Relative step of the central differences: h = 1e-6 max(1, |x|). In double the difference quotient then errs by
/// about h^2 |L'''| / 6 ~ 1e-12 (truncation) plus eps |L| / h ~ 1e-16 * 100 / 1e-6 = 1e-8 (rounding of L).
constexpr double finite_difference_step = 1e-6;

/// dL/dx_i ~ (L(x + h e_i) - L(x - h e_i)) / (2h) for every element of x; `loss()` evaluates L at the current x.
template <class Loss>
std::vector<double> central_differences(std::vector<double>& x, Loss&& loss) {
  std::vector<double> gradient(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    const double h = finite_difference_step * std::max(1.0, std::abs(saved));
    x[i] = saved + h;
    const double up = loss();
    x[i] = saved - h;
    const double down = loss();
    x[i] = saved;
    gradient[i] = (up - down) / (2 * h);
  }
  return gradient;
}

/// Finite-difference gradients of L with respect to every input, in the inputs' layouts. With no initial state,
/// the gradient is taken at a zero initial state (the reference's meaning of an absent one).
struct Gradients {
  std::vector<double> q, k, v, beta, g, a, initial_state;
};

inline Gradients delta_product_gradients(Problem p, const LossWeights& w) {
  if (p.initial_state.empty()) p.initial_state.assign(static_cast<std::size_t>(p.sequences()) * p.H * p.K * p.V, 0.0);
  auto loss = [&] { return weighted_loss(delta_product(p), w); };
  Gradients d;
  d.q = central_differences(p.q, loss);
  d.k = central_differences(p.k, loss);
  d.v = central_differences(p.v, loss);
  d.beta = central_differences(p.beta, loss);
  if (p.gated) d.g = central_differences(p.g, loss);
  d.initial_state = central_differences(p.initial_state, loss);
  return d;
}

inline Gradients diagonal_gradients(Problem p, std::vector<double> a, const LossWeights& w) {
  if (p.initial_state.empty()) p.initial_state.assign(static_cast<std::size_t>(p.sequences()) * p.H * p.K * p.V, 0.0);
  auto loss = [&] { return weighted_loss(diagonal(p, a), w); };
  Gradients d;
  d.q = central_differences(p.q, loss);
  d.k = central_differences(p.k, loss);
  d.v = central_differences(p.v, loss);
  d.a = central_differences(a, loss);
  d.initial_state = central_differences(p.initial_state, loss);
  return d;
}

}  // namespace reference
