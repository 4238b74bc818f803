// Streaming inference: step() advances a state in place by one token and equals forward() token by token.
#include <doctest/doctest.h>

#include "support/harness.hpp"

namespace dp = deltaproduct;

TEST_CASE_TEMPLATE("T calls of step() equal one forward() over T tokens, bit for bit", T, float, double) {
  const auto p = reference::random_problem(3, 9, 2, 6, 5, 2, true, 2.0, true, 81);
  // step() runs the token loop: compare with the same algorithm.
  const dp::CpuBackend sequential{.algorithm = dp::CpuAlgorithm::sequential};
  const auto full = harness::run_delta<dp::GatedDeltaProduct<T, 2>>(p, {}, sequential);

  dp::GatedDeltaProduct<T, 2> model;
  harness::configure(model.options, p);
  harness::Buffers<T> b(p);
  std::vector<T> state = b.initial_state;  // [B, H, K, V], advanced in place
  std::vector<T> o(static_cast<std::size_t>(p.B) * p.H * p.V);
  const dp::index_t R = static_cast<dp::index_t>(p.T) * 2;
  for (int t = 0; t < p.T; ++t) {
    // Token t of every batch row, addressed by strides into the [B, T, ...] buffers: no copies.
    const dp::DeltaStepInputs<T> in{
        .q = dp::make_view(b.q.data() + t * p.H * p.K, {p.B, p.H, p.K}, {p.T * p.H * p.K, p.K, 1}),
        .k = dp::make_view(b.k.data() + 2 * t * p.H * p.K, {p.B, 2, p.H, p.K}, {R * p.H * p.K, p.H * p.K, p.K, 1}),
        .v = dp::make_view(b.v.data() + 2 * t * p.H * p.V, {p.B, 2, p.H, p.V}, {R * p.H * p.V, p.H * p.V, p.V, 1}),
        .beta = dp::make_view(b.beta.data() + 2 * t * p.H, {p.B, 2, p.H}, {R * p.H, p.H, 1}),
        .g = dp::make_view(b.g.data() + t * p.H, {p.B, p.H}, {p.T * p.H, 1})};
    dp::step(dp::cpu, model, in, dp::make_view(state.data(), {p.B, p.H, p.K, p.V}),
             dp::make_view(o.data(), {p.B, p.H, p.V}));
    for (int bb = 0; bb < p.B; ++bb)
      for (int i = 0; i < p.H * p.V; ++i)
        REQUIRE(static_cast<double>(o[bb * p.H * p.V + i]) ==
                full.o[(static_cast<std::size_t>(bb) * p.T + t) * p.H * p.V + i]);
  }
  CHECK(harness::to_double(state) == full.final_state);
}

TEST_CASE("diagonal step() equals forward()") {
  auto p = reference::random_problem(2, 6, 3, 4, 2, 1, false, 1.0, true, 82);
  std::vector<double> a(static_cast<std::size_t>(p.B) * p.T * p.H * p.K);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::cos(double(i));
  const dp::CpuBackend sequential{.algorithm = dp::CpuAlgorithm::sequential};
  const auto full = harness::run_diagonal<dp::DiagonalLrnn<double>>(p, a, {}, sequential);

  dp::DiagonalLrnn<double> model;
  harness::configure(model.options, p);
  std::vector<double> state = p.initial_state, o(static_cast<std::size_t>(p.B) * p.H * p.V);
  for (int t = 0; t < p.T; ++t) {
    const dp::index_t row = static_cast<dp::index_t>(p.T) * p.H;
    const dp::DiagonalStepInputs<double> in{
        .q = dp::make_view(p.q.data() + t * p.H * p.K, {p.B, p.H, p.K}, {row * p.K, p.K, 1}),
        .k = dp::make_view(p.k.data() + t * p.H * p.K, {p.B, p.H, p.K}, {row * p.K, p.K, 1}),
        .v = dp::make_view(p.v.data() + t * p.H * p.V, {p.B, p.H, p.V}, {row * p.V, p.V, 1}),
        .a = dp::make_view(a.data() + t * p.H * p.K, {p.B, p.H, p.K}, {row * p.K, p.K, 1})};
    dp::step(dp::cpu, model, in, dp::make_view(state.data(), {p.B, p.H, p.K, p.V}),
             dp::make_view(o.data(), {p.B, p.H, p.V}));
  }
  CHECK(state == full.final_state);
}
