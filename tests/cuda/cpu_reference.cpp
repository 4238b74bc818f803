#include "cuda/cpu_reference.hpp"

#include <stdexcept>

#include "support/harness.hpp"

namespace cuda_test {
namespace {

namespace dp = deltaproduct;

template <int HouseholderSteps, dp::Gating Gate>
reference::Result run(const reference::Problem& p) {
  dp::DeltaProduct<double, HouseholderSteps, dp::EigenvalueRange::signed_unit, Gate> model;
  model.options.validate_ranges = false;
  return harness::run_delta(p, model, dp::CpuBackend{.threads = 0, .algorithm = dp::CpuAlgorithm::sequential});
}

template <int HouseholderSteps>
reference::Result run_gating(const reference::Problem& p) {
  return p.gated ? run<HouseholderSteps, dp::Gating::scalar_decay>(p) : run<HouseholderSteps, dp::Gating::none>(p);
}

}  // namespace

reference::Result cpu_forward_double(const reference::Problem& p) {
  switch (p.n_h) {
    case 1:
      return run_gating<1>(p);
    case 2:
      return run_gating<2>(p);
    case 3:
      return run_gating<3>(p);
    case 4:
      return run_gating<4>(p);
    default:
      throw std::invalid_argument("cpu_forward_double: n_h must be 1..4");
  }
}

}  // namespace cuda_test
