// A user's program: one DeltaNet token with K = V = 1 computed by the library and by hand.
#include <cstdio>
#include <string>

#include <deltaproduct/deltaproduct.hpp>

namespace dp = deltaproduct;

int main() {
  // S0 = 2, k = 1, v = 3, beta = 1.5: S1 = (1 - 1.5) * 2 + 1.5 * 3 = 3.5; o = scale * S1 * q = 1 * 3.5 * 2 = 7.
  float q = 2, k = 1, v = 3, beta = 1.5f, s0 = 2, o = 0, s1 = 0;
  dp::DeltaNet<float> model;
  model.options.scale = 1.0;
  dp::forward(dp::cpu, model,
              dp::DeltaInputs<float>{.q = dp::make_view(&q, {1, 1, 1, 1}),
                                     .k = dp::make_view(&k, {1, 1, 1, 1}),
                                     .v = dp::make_view(&v, {1, 1, 1, 1}),
                                     .beta = dp::make_view(&beta, {1, 1, 1}),
                                     .initial_state = dp::make_view(&s0, {1, 1, 1, 1})},
              dp::ForwardOutputs<float>{.o = dp::make_view(&o, {1, 1, 1, 1}),
                                        .final_state = dp::make_view(&s1, {1, 1, 1, 1})});
  const std::string version = std::to_string(dp::version_major) + "." + std::to_string(dp::version_minor) + "." +
                              std::to_string(dp::version_patch);
  const bool ok = s1 == 3.5f && o == 7.0f && version == EXPECTED_VERSION;
  std::printf("deltaproduct %s: S1 = %g, o = %g: %s\n", version.c_str(), s1, o, ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
