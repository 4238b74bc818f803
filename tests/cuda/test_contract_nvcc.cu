// The backend-independent contract (views, models, argument checks) compiled by nvcc: the CUDA backend's host code
// includes exactly these headers. Runs on the host, needs no GPU.
#include <cstdio>
#include <vector>

#include <deltaproduct/core/arguments.hpp>
#include <deltaproduct/core/backend.hpp>
#include <deltaproduct/core/config.hpp>
#include <deltaproduct/core/contract.hpp>
#include <deltaproduct/core/error.hpp>
#include <deltaproduct/core/step.hpp>
#include <deltaproduct/core/view.hpp>

namespace dp = deltaproduct;

int main() {
  int failed = 0, passed = 0;
  auto expect = [&](bool ok, const char* what) {
    if (ok) {
      ++passed;
    } else {
      ++failed;
      std::printf("FAILED: %s\n", what);
    }
  };

  std::vector<float> q(2 * 3 * 4 * 8), k(2 * 6 * 4 * 8), v(2 * 6 * 4 * 5), beta(2 * 6 * 4), o(2 * 3 * 4 * 5);
  const dp::DeltaProduct<float, 2> model;
  const dp::DeltaInputs<float> in{.q = dp::make_view(q.data(), {2, 3, 4, 8}),
                                  .k = dp::make_view(k.data(), {2, 6, 4, 8}),
                                  .v = dp::make_view(v.data(), {2, 6, 4, 5}),
                                  .beta = dp::make_view(beta.data(), {2, 6, 4})};
  const dp::ForwardOutputs<float> out{.o = dp::make_view(o.data(), {2, 3, 4, 5})};
  const dp::Problem p = dp::check_forward(model, in, out);
  expect(p.batch == 2 && p.tokens == 3 && p.heads == 4 && p.key_dim == 8 && p.value_dim == 5, "problem sizes");
  expect(p.householder_steps == 2 && p.sequences == 2, "n_h and N");

  auto wrong = in;
  wrong.k = dp::make_view(k.data(), {2, 3, 4, 8});  // T rows instead of T * n_h
  try {
    dp::check_forward(model, wrong, out);
    expect(false, "k with T rows is rejected");
  } catch (const dp::ArgumentError& e) {
    expect(e.argument() == "k", "the error names k");
  }

  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
