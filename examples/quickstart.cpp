// Quickstart: a gated DeltaProduct layer (two Householder steps per token, eigenvalues in [-1, 1]) on the CPU,
// then streaming one more token with step(). Build with the project, run ./examples/quickstart.
#include <cmath>
#include <cstdio>
#include <vector>

#include <deltaproduct/deltaproduct.hpp>

namespace dp = deltaproduct;

int main() {
  constexpr int B = 2, T = 16, H = 4, K = 32, V = 32, n_h = 2;

  // Inputs in flash-linear-attention's layout; keys, values and betas of token t are rows t*n_h + j.
  std::vector<float> q(B * T * H * K), k(B * T * n_h * H * K), v(B * T * n_h * H * V);
  std::vector<float> beta(B * T * n_h * H), g(B * T * H);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = std::sin(0.1f * static_cast<float>(i));
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = std::cos(0.7f * static_cast<float>(i));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.3f * static_cast<float>(i));
  for (std::size_t i = 0; i < beta.size(); ++i)  // 2 * sigmoid: beta in [0, 2], eigenvalues in [-1, 1]
    beta[i] = dp::beta_from_logit<dp::EigenvalueRange::signed_unit>(std::sin(static_cast<float>(i)));
  for (float& x : g) x = -0.05f;  // gate exp(g) slightly below 1

  std::vector<float> o(B * T * H * V), state(B * H * K * V);

  dp::GatedDeltaProduct<float, n_h> layer;  // float state, eigenvalues in [-1, 1]
  layer.options.key_normalization = dp::Normalization::l2;

  dp::forward(dp::cpu, layer,
              dp::DeltaInputs<float>{.q = dp::make_view(q.data(), {B, T, H, K}),
                                     .k = dp::make_view(k.data(), {B, T * n_h, H, K}),
                                     .v = dp::make_view(v.data(), {B, T * n_h, H, V}),
                                     .beta = dp::make_view(beta.data(), {B, T * n_h, H}),
                                     .g = dp::make_view(g.data(), {B, T, H})},
              dp::ForwardOutputs<float>{.o = dp::make_view(o.data(), {B, T, H, V}),
                                        .final_state = dp::make_view(state.data(), {B, H, K, V})});
  std::printf("o[0, T-1, 0, 0:4] = %.5f %.5f %.5f %.5f\n", o[(T - 1) * H * V + 0], o[(T - 1) * H * V + 1],
              o[(T - 1) * H * V + 2], o[(T - 1) * H * V + 3]);

  // Streaming: one more token per sequence, the state updated in place.
  std::vector<float> q1(B * H * K, 0.1f), k1(B * n_h * H * K, 0.2f), v1(B * n_h * H * V, 0.3f);
  std::vector<float> beta1(B * n_h * H, 1.5f), g1(B * H, -0.05f), o1(B * H * V);
  dp::step(dp::cpu, layer,
           dp::DeltaStepInputs<float>{.q = dp::make_view(q1.data(), {B, H, K}),
                                      .k = dp::make_view(k1.data(), {B, n_h, H, K}),
                                      .v = dp::make_view(v1.data(), {B, n_h, H, V}),
                                      .beta = dp::make_view(beta1.data(), {B, n_h, H}),
                                      .g = dp::make_view(g1.data(), {B, H})},
           dp::make_view(state.data(), {B, H, K, V}), dp::make_view(o1.data(), {B, H, V}));
  std::printf("next token: o[0, 0, 0:4] = %.5f %.5f %.5f %.5f\n", o1[0], o1[1], o1[2], o1[3]);

  // Bad input is a clear error, never undefined behaviour.
  try {
    dp::forward(dp::cpu, layer,
                dp::DeltaInputs<float>{.q = dp::make_view(q.data(), {B, T, H, K}),
                                       .k = dp::make_view(k.data(), {B, T, H, K}),  // forgot n_h
                                       .v = dp::make_view(v.data(), {B, T * n_h, H, V}),
                                       .beta = dp::make_view(beta.data(), {B, T * n_h, H}),
                                       .g = dp::make_view(g.data(), {B, T, H})},
                dp::ForwardOutputs<float>{.o = dp::make_view(o.data(), {B, T, H, V})});
  } catch (const dp::ArgumentError& e) {
    std::printf("%s\n", e.what());
  }
  return 0;
}
